import COpenSSL

/// HMAC-SHA256 under one fixed key, with OpenSSL's set-up done once: the
/// MAC algorithm fetched and the key schedule computed when the key is
/// made, so each MAC is a copy of that state, an update and a final.
/// (OpenSSL 3's one-shot `HMAC()` fetches the algorithm by name on every
/// call: 7% of a send's instructions when every request verified a token
/// through it.) Same results as `Crypto.hmacSHA256`.
public final class HMACSHA256Key: @unchecked Sendable {
    // @unchecked: after init the keyed context is only ever read, by
    // EVP_MAC_CTX_dup, which leaves its source untouched; each MAC runs
    // on its own copy.
    private let keyed: OpaquePointer

    public init(_ key: [UInt8]) throws(CryptoError) {
        guard let mac = EVP_MAC_fetch(nil, "HMAC", nil) else { throw .openSSL("EVP_MAC_fetch") }
        defer { EVP_MAC_free(mac) }
        guard let context = EVP_MAC_CTX_new(mac) else { throw .openSSL("EVP_MAC_CTX_new") }
        let initialised = "digest".withCString { name in
            "SHA256".withCString { digest in
                var params = [OSSL_PARAM_construct_utf8_string(name, UnsafeMutablePointer(mutating: digest), 0),
                              OSSL_PARAM_construct_end()]
                return withNonNullPointer(key) { bytes, count in EVP_MAC_init(context, bytes, count, &params) == 1 }
            }
        }
        guard initialised else {
            EVP_MAC_CTX_free(context)
            throw .openSSL("EVP_MAC_init")
        }
        keyed = context
    }

    deinit { EVP_MAC_CTX_free(keyed) }

    /// The 32-byte MAC of `message`. Throws rather than returning an empty
    /// array (see `Crypto.hmacSHA256`).
    public func mac(_ message: [UInt8]) throws(CryptoError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Crypto.sha256Length)
        let result = message.withUnsafeBytes { bytes in
            out.withUnsafeMutableBytes { buffer in
                Result { () throws(CryptoError) in try mac(bytes, into: buffer) }
            }
        }
        try result.get()
        return out
    }

    /// Writes the 32-byte MAC of `message` to the start of `out` (at least
    /// 32 bytes), with no copy of the message and no array: token
    /// verification MACs a slice of the token's own bytes into a buffer on
    /// the stack.
    public func mac(_ message: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer) throws(CryptoError) {
        guard out.count >= Crypto.sha256Length, let outBase = out.baseAddress else {
            throw .invalidArgument("MAC output buffer shorter than \(Crypto.sha256Length) bytes")
        }
        guard let context = EVP_MAC_CTX_dup(keyed) else { throw .openSSL("EVP_MAC_CTX_dup") }
        defer { EVP_MAC_CTX_free(context) }
        // OpenSSL wants a non-null pointer even for an empty message.
        let dummy: UInt8 = 0
        let updated = withUnsafePointer(to: dummy) { fallback in
            let base = message.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? fallback
            return EVP_MAC_update(context, base, message.count) == 1
        }
        guard updated else { throw .openSSL("EVP_MAC_update") }
        var length = 0
        let finished = EVP_MAC_final(context, outBase.assumingMemoryBound(to: UInt8.self), &length, Crypto.sha256Length) == 1
        guard finished else { throw .openSSL("EVP_MAC_final") }
        guard length == Crypto.sha256Length else {
            throw .openSSL(call: "EVP_MAC_final", reason: "unexpected output length \(length)")
        }
    }
}
