import Foundation
import GRDB
import Synchronization
import Posix
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
///
/// Validating the cache that way takes a read transaction per request,
/// which costs SQLite's shared-memory locks (about 0.9 `fcntl(F_SETLK)` per
/// send) and, with 16 workers in one process, contention on SQLite's
/// per-process mutex of the -shm file (`strace -f` of `mailgate serve`:
/// about 1.7 `futex` per send, nearly all on that one address). So a
/// connection first compares the WAL-index header (`WALIndexHeader`), which
/// every commit by any connection rewrites, with the one under which its
/// cache was last validated: the same, and the cache answers without any
/// SQLite call. Otherwise, or without a header to read (not WAL, no shared
/// memory), the read transaction validates as before.
final class CredentialsReader: Sendable {
    /// What the cache knows about one username. Unknown names are cached
    /// too, so a stream of tokens for a removed user reads nothing either.
    enum CachedCredentials: Sendable {
        case found(Credentials)
        case noSuchUser

        var credentials: Credentials? {
            switch self {
            case .found(let credentials): return credentials
            case .noSuchUser: return nil
            }
        }
    }

    /// One user's row and their integration's, as read: the SMTP password
    /// and OAuth2 secrets still sealed.
    struct StoredCredentials {
        var user: UserRecord
        var integration: SMTPIntegrationRecord?
    }

    /// What one look at a connection gave: the cache's answer, or a read
    /// (nil: no such user) still to be opened and cached.
    private enum Lookup {
        case cached(CachedCredentials)
        case read(StoredCredentials?)
    }

    /// One connection and its cache; used only by the thread whose
    /// thread-local slot points at it, which is what makes the unchecked
    /// Sendable safe.
    private final class Connection: @unchecked Sendable {
        let queue: DatabaseQueue
        /// The WAL-index header of `queue`'s database, read through
        /// `queue`'s own shared-memory mapping: valid while `queue` is open,
        /// which is as long as this object lives. Nil until the first
        /// validation has opened the WAL, and for good if that found none.
        var walIndex: WALIndexHeader?
        var triedWALIndex = false
        /// The header as it was before the last validation began (nil:
        /// none readable then): while it reads the same, nothing has been
        /// committed since, and the caches need no new validation.
        var validatedUnder: WALIndexHeader.Snapshot?
        /// The `data_version` the cache is valid for.
        var dataVersion: Int64 = -1
        var cache: [String: CachedCredentials] = [:]
        /// Named tokens by id (nil: no such token), under the same version.
        var tokens: [String: NamedToken?] = [:]

        init(queue: DatabaseQueue) { self.queue = queue }

        /// The header now, nil if there is none or it cannot be trusted.
        func header() -> WALIndexHeader.Snapshot? { walIndex?.snapshot() }

        /// Whether the caches are known current without asking SQLite:
        /// `header`, read now, is the one they were validated under.
        func isCurrent(_ header: WALIndexHeader.Snapshot?) -> Bool {
            guard let header, let validatedUnder else { return false }
            return header == validatedUnder
        }

        /// Empties the caches when another connection has committed since
        /// they were filled, or when one has grown too large.
        func validate(_ version: Int64) {
            if version != dataVersion || cache.count >= CredentialsReader.maximumCachedUsers
                || tokens.count >= CredentialsReader.maximumCachedUsers {
                cache.removeAll(keepingCapacity: true)
                tokens.removeAll(keepingCapacity: true)
                dataVersion = version
            }
        }
    }

    /// Bounds memory if tokens for very many users arrive.
    static let maximumCachedUsers = 4096

    /// User and integration in one statement, so one consistent snapshot.
    /// The two tables both have a `username` column: each side is read
    /// through its own scope (`StoredCredentials.read`).
    private static let sql = """
        SELECT u.id, u.username, u.password_hash, u.is_disabled, u.token_version, u.created_at_ms,
               u.allowed_recipients, u.quota_per_minute, u.quota_per_hour, u.quota_per_day, i.user_id, i.host, i.port, i.security, i.username, i.password_sealed,
               i.from_address, i.from_name, i.updated_at_ms, i.password_seal_version, i.auth, i.oauth2_provider,
               i.oauth2_token_url, i.oauth2_authorization_url, i.oauth2_client_id, i.oauth2_client_secret_sealed,
               i.oauth2_refresh_token_sealed, i.oauth2_scope, i.oauth2_tenant
        FROM users u LEFT JOIN smtp_integrations i ON i.user_id = u.id
        WHERE u.username = ?
        """

    private let seal: PasswordSeal
    private let connections: PerThread<Connection>
    /// How many times a cache was validated with a read transaction (all
    /// threads): for the tests that the header spares them.
    let validations = Atomic<Int>(0)

    init(path: String, seal: PasswordSeal) throws(StoreError) {
        self.seal = seal
        connections = try PerThread {
            Connection(queue: try DatabaseQueue(path: path, configuration: SQLiteSchema.readerConfiguration()))
        }
    }

    /// One read of the users table on this thread's connection.
    func checkReadable() throws {
        _ = try connections.value().queue.inDatabase { db in
            try Int.fetchOne(db.cachedStatement(sql: "SELECT count(*) FROM (SELECT 1 FROM users LIMIT 1)"))
        }
    }

    /// The cached or freshly read credentials, nil if there is no such user.
    /// The sealed secrets are opened only on a cache miss, and outside
    /// the database closure: no connection is busy while OpenSSL works.
    func credentials(for username: String) throws -> Credentials? {
        let connection = try connections.value()
        let header = connection.header()
        if connection.isCurrent(header), let cached = connection.cache[username] {
            return cached.credentials
        }
        let lookup: Lookup = try withCurrentCaches(connection, headerBefore: header) { db in
            if let cached = connection.cache[username] { return .cached(cached) }
            return .read(try Self.read(username, db))
        }
        let entry: CachedCredentials
        switch lookup {
        case .cached(let cached):
            return cached.credentials
        case .read(nil):
            entry = .noSuchUser
        case .read(let stored?):
            entry = .found(try open(stored))
        }
        connection.cache[username] = entry
        return entry.credentials
    }

    private static func read(_ username: String, _ db: Database) throws -> StoredCredentials? {
        let statement = try db.cachedStatement(sql: sql)
        let scopes = ScopeAdapter([
            "user": RangeRowAdapter(0..<10),
            "integration": RangeRowAdapter(10..<29),
        ])
        guard let row = try Row.fetchOne(statement, arguments: [username], adapter: scopes) else { return nil }
        // An integration scope of NULLs (no row joined) decodes as nil.
        return StoredCredentials(user: try row.decode(forKey: "user"),
                                 integration: try row.decodeIfPresent(forKey: "integration"))
    }

    private func open(_ stored: StoredCredentials) throws -> Credentials {
        let user = stored.user.user
        let policy = try RecipientPolicy(storedText: stored.user.allowedRecipients, of: user.username)
        guard let integration = stored.integration else {
            return Credentials(user: user, integration: nil, recipientPolicy: policy, sendQuota: stored.user.sendQuota)
        }
        return Credentials(user: user, integration: try integration.integration(owner: user.username, seal: seal),
                           recipientPolicy: policy, sendQuota: stored.user.sendQuota)
    }

    /// The named token `id`, cached per thread like the credentials.
    func namedToken(id: String) throws -> NamedToken? {
        let connection = try connections.value()
        let header = connection.header()
        if connection.isCurrent(header), let cached = connection.tokens[id] {
            return cached
        }
        return try withCurrentCaches(connection, headerBefore: header) { db in
            if let cached = connection.tokens[id] { return cached }
            let statement = try db.cachedStatement(sql: NamedTokenRecord.selection + " WHERE t.id = ?")
            let token = try NamedTokenRecord.fetchOne(statement, arguments: [id])?.token
            connection.tokens[id] = .some(token)
            return token
        }
    }

    /// Runs `body` on `connection` once its caches are valid: emptied when
    /// `PRAGMA data_version` says another connection committed since.
    ///
    /// `headerBefore` must be read before this is called, and is what the
    /// caches count as validated under afterwards: a commit published after
    /// that read changes the header, so the next call validates again even
    /// if this transaction already saw the commit. (Reading it afterwards
    /// instead could record a header newer than what the transaction saw,
    /// and miss a commit for good.)
    private func withCurrentCaches<T>(_ connection: Connection, headerBefore: WALIndexHeader.Snapshot?,
                                      _ body: (Database) throws -> T) throws -> T {
        try connection.queue.inDatabase { db in
            connection.validate(try Int64.fetchOne(db.cachedStatement(sql: "PRAGMA data_version")) ?? -1)
            connection.validatedUnder = headerBefore
            validations.add(1, ordering: .relaxed)
            if !connection.triedWALIndex {
                // After a read, so the connection has opened the WAL and
                // its shared memory: the header is then that of the -shm
                // file in use, which stays in place while this connection
                // is open. Once per connection; nil means the fallback.
                connection.triedWALIndex = true
                connection.walIndex = WALIndexHeader.mapped(by: db)
            }
            return try body(db)
        }
    }
}
