import Foundation
import GRDB
import Synchronization
import Tokens

/// The per-request read, kept off GRDB's `DatabasePool` machinery.
///
/// The pool's barrier queue, per-reader serial queues and BEGIN/COMMIT cost
/// about 90 µs and three context switches per request (measured with
/// `make bench` and perf). Here each caller checks out a private connection
/// (one mutex operation, no dispatch hop under contention) that keeps a
/// cache of decoded, decrypted credentials. The cache is validated on every
/// call with `PRAGMA data_version`, which changes whenever any *other*
/// connection commits: a change made by `mailgate integration set`, a
/// disable or a revoke in another process is seen by the next request.
final class CredentialsReader: Sendable {
    /// One connection and its cache; owned by exactly one caller between
    /// checkout and checkin, which is what makes the unchecked Sendable safe.
    private final class Connection: @unchecked Sendable {
        let queue: DatabaseQueue
        var dataVersion: Int64 = -1
        var cache: [String: Credentials?] = [:]

        init(queue: DatabaseQueue) { self.queue = queue }
    }

    /// Bounds memory if tokens for very many users arrive.
    static let maximumCachedUsers = 4096

    private let path: String
    private let idle = Mutex<[Connection]>([])

    init(path: String) { self.path = path }

    /// Returns the cached or freshly read credentials; `decrypt` opens the
    /// sealed SMTP password only on a cache miss.
    func credentials(
        for username: String,
        read: (Database) throws -> (User, SMTPIntegration?, Data?)?,
        decrypt: (User, SMTPIntegration, Data) throws(StoreError) -> SMTPIntegration
    ) throws -> Credentials? {
        let connection = try checkout()
        defer { checkin(connection) }
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

    private func checkout() throws -> Connection {
        if let connection = idle.withLock({ $0.popLast() }) { return connection }
        var configuration = Configuration()
        configuration.readonly = true
        configuration.busyMode = .timeout(5)
        configuration.label = "mailgate.credentials"
        return Connection(queue: try DatabaseQueue(path: path, configuration: configuration))
    }

    private func checkin(_ connection: Connection) {
        idle.withLock { $0.append(connection) }
    }
}
