import Crypto
import COpenSSL
import Synchronization

/// One OpenSSL client context (SSL_CTX). Contexts are costly to build
/// (loading the system trust store parses hundreds of certificates), and
/// OpenSSL allows SSL_new on one context from many threads, so there is one
/// per (caFile, verify) pair for the life of the process.
final class TLSContext: @unchecked Sendable {  // ctx is never mutated after init
    let ctx: OpaquePointer
    let verify: Bool

    private init(ctx: OpaquePointer, verify: Bool) {
        self.ctx = ctx
        self.verify = verify
    }

    deinit { SSL_CTX_free(ctx) }

    private struct Key: Hashable {
        var caFile: String?
        var verify: Bool
    }

    private struct Cache {
        var contexts: [Key: TLSContext] = [:]
        /// How many contexts were built per key (what the test of single
        /// building reads; failed builds are not counted).
        var builds: [Key: Int] = [:]
    }
    private static let cache = Mutex(Cache())

    /// The shared context for this configuration. Failures are not cached,
    /// so a CA file that is fixed later is picked up on the next connection.
    /// A CA file that changes while cached is not re-read.
    ///
    /// Built under the lock, so threads that want it at the same time wait
    /// for the one build instead of each making their own: when 16 workers
    /// raced on a cold pool, each parsed the whole trust store and the
    /// first 16 sends over TLS took 600-700 ms instead of a few (measured
    /// with Benchmarks/profile.sh). Only a new connection gets here.
    static func shared(caFile: String?, verify: Bool) throws(StreamError) -> TLSContext {
        let key = Key(caFile: verify ? caFile : nil, verify: verify)
        return try cache.withLock { cache throws(StreamError) in
            if let existing = cache.contexts[key] { return existing }
            let made = try make(caFile: key.caFile, verify: verify)
            cache.contexts[key] = made
            cache.builds[key, default: 0] += 1
            return made
        }
    }

    /// How many times the context for this configuration was built.
    static func buildCount(caFile: String?, verify: Bool) -> Int {
        cache.withLock { $0.builds[Key(caFile: verify ? caFile : nil, verify: verify)] ?? 0 }
    }

    private static func make(caFile: String?, verify: Bool) throws(StreamError) -> TLSContext {
        func failure(_ what: String) -> StreamError {
            .tls("TLS setup failed: \(what): \(OpenSSLErrorQueue.drain())")
        }
        OpenSSLErrorQueue.clear()
        guard let method = TLS_client_method(), let ctx = SSL_CTX_new(method) else {
            throw failure("SSL_CTX_new")
        }
        let context = TLSContext(ctx: ctx, verify: verify)  // frees ctx on the error paths below
        guard mailgate_SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) == 1 else {
            throw failure("cannot require TLS 1.2")
        }
        if verify {
            guard SSL_CTX_set_default_verify_paths(ctx) == 1 else {
                throw failure("cannot load the system trust store")
            }
            if let caFile {
                guard SSL_CTX_load_verify_locations(ctx, caFile, nil) == 1 else {
                    throw failure("cannot load CA file \(caFile)")
                }
            }
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nil)
        } else {
            SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nil)
        }
        return context
    }
}
