import Foundation
import GRDB
import Synchronization
import Crypto
#if canImport(Glibc)
import Glibc
#endif

/// The per-request read, kept off GRDB's `DatabasePool` machinery.
///
/// The pool's barrier queue, per-reader serial queues and BEGIN/COMMIT cost
/// about 90 µs and three context switches per request (measured with
/// `make bench` and perf). Here each thread has its own connection (thread-
/// local, so no lock at all: a shared free list measured 12% of Mailgate's
/// CPU spinning in its mutex with 16 workers on 2 cores) that keeps a cache
/// of decoded, decrypted credentials. The cache is validated on every call
/// with `PRAGMA data_version`, which changes whenever any *other* connection
/// commits: a change made by `mailgate integration set`, a disable or a
/// revoke in another process is seen by the next request.
final class CredentialsReader: Sendable {
    /// One connection and its cache; used only by the thread whose
    /// thread-local slot points at it, which is what makes the unchecked
    /// Sendable safe.
    private final class Connection: @unchecked Sendable {
        let queue: DatabaseQueue
        var dataVersion: Int64 = -1
        var cache: [String: Credentials?] = [:]

        init(queue: DatabaseQueue) { self.queue = queue }
    }

    /// Bounds memory if tokens for very many users arrive.
    static let maximumCachedUsers = 4096

    private let path: String
    /// Each thread's slot holds an unretained pointer to its connection.
    private let slot: pthread_key_t
    /// Owns every connection made (one per thread that ever asked), so they
    /// close with the reader; taken only when a thread makes its first one.
    private let connections = Mutex<[Connection]>([])

    init(path: String) throws(StoreError) {
        self.path = path
        var key = pthread_key_t()
        let created = pthread_key_create(&key, nil)
        guard created == 0 else { throw .database("pthread_key_create failed: \(String(cString: strerror(created)))") }
        slot = key
    }

    deinit {
        pthread_key_delete(slot)
    }

    /// Returns the cached or freshly read credentials; `decrypt` opens the
    /// sealed SMTP password only on a cache miss.
    func credentials(
        for username: String,
        read: (Database) throws -> (User, SMTPIntegration?, Data?)?,
        decrypt: (User, SMTPIntegration, Data) throws(StoreError) -> SMTPIntegration
    ) throws -> Credentials? {
        let connection = try connection()
        let fetched: (User, SMTPIntegration?, Data?)?? = try connection.queue.inDatabase { db in
            let version = try Int64.fetchOne(db.cachedStatement(sql: "PRAGMA data_version")) ?? -1
            if version != connection.dataVersion || connection.cache.count >= Self.maximumCachedUsers {
                connection.cache.removeAll(keepingCapacity: true)
                connection.dataVersion = version
            }
            if connection.cache[username] != nil { return nil }
            return .some(try read(db))
        }
        guard let fetched else { return connection.cache[username] ?? nil }
        let credentials: Credentials?
        if let (user, integration, sealed) = fetched {
            if let integration, let sealed {
                credentials = Credentials(user: user, integration: try decrypt(user, integration, sealed))
            } else {
                credentials = Credentials(user: user, integration: integration)
            }
        } else {
            credentials = nil
        }
        connection.cache[username] = .some(credentials)
        return credentials
    }

    private func connection() throws -> Connection {
        if let raw = pthread_getspecific(slot) {
            return Unmanaged<Connection>.fromOpaque(raw).takeUnretainedValue()
        }
        var configuration = Configuration()
        configuration.readonly = true
        configuration.busyMode = .timeout(5)
        configuration.label = "mailgate.credentials"
        let made = Connection(queue: try DatabaseQueue(path: path, configuration: configuration))
        connections.withLock { $0.append(made) }
        let stored = pthread_setspecific(slot, Unmanaged.passUnretained(made).toOpaque())
        guard stored == 0 else { throw StoreError.database("pthread_setspecific failed: \(String(cString: strerror(stored)))") }
        return made
    }
}
