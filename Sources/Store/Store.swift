// Store module: users, their SMTP integration and login throttling in one
// SQLite database (GRDB, WAL), shared by the server and the CLI.
import Foundation
import GRDB
import Crypto

/// Store failures. Descriptions carry usernames and SQLite's message but
/// never password hashes, SMTP passwords or sealed bytes.
public enum StoreError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Not 1–64 characters of `A-Z a-z 0-9 . _ @ + -`. The rejected text is
    /// not echoed: people type passwords into username fields.
    case invalidUsername
    case userExists(String)
    case userNotFound(String)
    case integrationNotFound(String)
    /// A field of an SMTP integration is unusable; the string names the field.
    case invalidIntegration(String)
    /// A stored SMTP password cannot be decrypted (wrong key file, or the
    /// row was modified or copied from another user). Names the user.
    case corruptSecret(String)
    /// Sealing an SMTP password failed (OpenSSL); the string says which call.
    case crypto(String)
    /// An SQLite/GRDB failure: the operation and SQLite's message.
    case database(String)

    public var description: String {
        switch self {
        case .invalidUsername:
            return "invalid username: use 1-64 characters of A-Z a-z 0-9 . _ @ + -"
        case .userExists(let name): return "user \(name) already exists"
        case .userNotFound(let name): return "no user named \(name)"
        case .integrationNotFound(let name): return "user \(name) has no SMTP integration"
        case .invalidIntegration(let field): return "invalid SMTP integration: \(field)"
        case .corruptSecret(let name):
            return "cannot decrypt the stored SMTP password of user \(name) (wrong secret key file, or the row was altered)"
        case .crypto(let message): return "encryption failed: \(message)"
        case .database(let message): return "database error: \(message)"
        }
    }
}

public struct User: Sendable, Equatable {
    public let id: Int64
    public let username: String
    public let passwordHash: String
    public let isDisabled: Bool
    /// Tokens carry the version they were issued under; a token whose `ver`
    /// differs from this is revoked.
    public let tokenVersion: Int64
    public let createdAt: Date

    public init(id: Int64, username: String, passwordHash: String, isDisabled: Bool, tokenVersion: Int64, createdAt: Date) {
        self.id = id
        self.username = username
        self.passwordHash = passwordHash
        self.isDisabled = isDisabled
        self.tokenVersion = tokenVersion
        self.createdAt = createdAt
    }
}

public struct SMTPIntegration: Sendable, Equatable {
    public static let securityModes: Set<String> = ["starttls", "tls", "none"]

    public var host: String
    public var port: Int
    /// "starttls" | "tls" | "none"
    public var security: String
    public var username: String?
    /// Clear text only in memory; the database holds it AES-GCM sealed.
    public var password: String?
    public var fromAddress: String
    public var fromName: String?
    /// Stored with millisecond resolution.
    public var updatedAt: Date

    public init(host: String, port: Int, security: String, username: String? = nil, password: String? = nil,
                fromAddress: String, fromName: String? = nil, updatedAt: Date = Date()) {
        self.host = host
        self.port = port
        self.security = security
        self.username = username
        self.password = password
        self.fromAddress = fromAddress
        self.fromName = fromName
        self.updatedAt = updatedAt
    }
}

/// Everything one authenticated request needs, read in one statement.
public struct Credentials: Sendable {
    public let user: User
    public let integration: SMTPIntegration?

    public init(user: User, integration: SMTPIntegration?) {
        self.user = user
        self.integration = integration
    }
}

public final class Store: Sendable {
    private let pool: DatabasePool
    private let secretBox: SecretBox
    private let credentialsReader: CredentialsReader

    /// Opens (creating if needed) the database at `path` and migrates it.
    /// A new file is created with mode 0600; SQLite gives the -wal and -shm
    /// files the same mode.
    public init(path: String, secretBox: SecretBox) throws(StoreError) {
        self.secretBox = secretBox
        credentialsReader = try CredentialsReader(path: path)
        try Self.createPrivateFileIfMissing(path)
        var configuration = Configuration()
        configuration.foreignKeysEnabled = true
        // The CLI and the server write the same file; wait for each other
        // rather than failing with SQLITE_BUSY.
        configuration.busyMode = .timeout(5)
        configuration.label = "mailgate.store"
        do {
            pool = try DatabasePool(path: path, configuration: configuration)
        } catch {
            throw Self.wrap(error, "open \(path)")
        }
        do {
            try Self.migrator.migrate(pool)
        } catch {
            throw Self.wrap(error, "migrate \(path)")
        }
    }

    // MARK: Schema

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1 users") { db in
            try db.execute(sql: """
                CREATE TABLE users (
                    id INTEGER PRIMARY KEY,
                    username TEXT NOT NULL UNIQUE CHECK (length(username) BETWEEN 1 AND 64),
                    password_hash TEXT NOT NULL,
                    is_disabled INTEGER NOT NULL DEFAULT 0 CHECK (is_disabled IN (0, 1)),
                    token_version INTEGER NOT NULL DEFAULT 0 CHECK (token_version >= 0),
                    created_at_ms INTEGER NOT NULL
                ) STRICT;
                -- Token versions of removed users, so a user re-created under
                -- the same name does not accept the old user's tokens.
                CREATE TABLE removed_usernames (
                    username TEXT PRIMARY KEY,
                    next_token_version INTEGER NOT NULL
                ) STRICT;
                """)
        }
        migrator.registerMigration("v1 smtp_integrations") { db in
            try db.execute(sql: """
                CREATE TABLE smtp_integrations (
                    user_id INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
                    host TEXT NOT NULL CHECK (length(host) > 0),
                    port INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
                    security TEXT NOT NULL CHECK (security IN ('starttls', 'tls', 'none')),
                    username TEXT,
                    password_sealed BLOB,
                    from_address TEXT NOT NULL CHECK (length(from_address) > 0),
                    from_name TEXT,
                    updated_at_ms INTEGER NOT NULL
                ) STRICT;
                """)
        }
        migrator.registerMigration("v1 login_failures") { db in
            // Keyed by the username text, not a user id: attempts on unknown
            // names are throttled too.
            try db.execute(sql: """
                CREATE TABLE login_failures (
                    id INTEGER PRIMARY KEY,
                    username TEXT NOT NULL,
                    failed_at_ms INTEGER NOT NULL
                ) STRICT;
                CREATE INDEX login_failures_by_username ON login_failures(username, failed_at_ms);
                CREATE INDEX login_failures_by_time ON login_failures(failed_at_ms);
                """)
        }
        return migrator
    }

    /// Names of the migrations applied to this database, in order (for
    /// diagnostics such as a CLI status command).
    public func appliedMigrations() throws(StoreError) -> [String] {
        try perform("read migrations") { () throws -> [String] in
            try pool.read { db in try Self.migrator.appliedMigrations(db) }
        }
    }

    // MARK: Usernames

    /// 1–64 characters of `A-Z a-z 0-9 . _ @ + -`.
    public static func isValidUsername(_ name: String) -> Bool {
        let utf8 = name.utf8
        guard (1...64).contains(utf8.count) else { return false }
        return utf8.allSatisfy { c in
            switch c {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "@"), UInt8(ascii: "+"), UInt8(ascii: "-"):
                return true
            default:
                return false
            }
        }
    }

    private static func requireValid(_ name: String) throws(StoreError) {
        guard isValidUsername(name) else { throw .invalidUsername }
    }

    // MARK: Users

    private static let userColumns = "id, username, password_hash, is_disabled, token_version, created_at_ms"

    public func addUser(_ username: String, passwordHash: String) throws(StoreError) -> User {
        try Self.requireValid(username)
        let createdAt = Self.milliseconds(Date())
        return try perform("add user \(username)") { () throws -> User in
            try pool.write { db in
                let version = try Int64.fetchOne(
                    db, sql: "SELECT next_token_version FROM removed_usernames WHERE username = ?",
                    arguments: [username]) ?? 0
                do {
                    try db.execute(
                        sql: "INSERT INTO users (username, password_hash, is_disabled, token_version, created_at_ms) VALUES (?, ?, 0, ?, ?)",
                        arguments: [username, passwordHash, version, createdAt])
                } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_UNIQUE {
                    throw StoreError.userExists(username)
                }
                return User(id: db.lastInsertedRowID, username: username, passwordHash: passwordHash,
                            isDisabled: false, tokenVersion: version, createdAt: Self.date(createdAt))
            }
        }
    }

    /// The user, or nil if there is none (also for names that cannot exist).
    public func user(named username: String) throws(StoreError) -> User? {
        guard Self.isValidUsername(username) else { return nil }
        return try perform("read user \(username)") { () throws -> User? in
            try pool.read { db in
                let statement = try db.cachedStatement(sql: "SELECT \(Self.userColumns) FROM users WHERE username = ?")
                guard let row = try Row.fetchOne(statement, arguments: [username]) else { return nil }
                return try Self.decodeUser(row, from: 0)
            }
        }
    }

    public func listUsers() throws(StoreError) -> [User] {
        try perform("list users") { () throws -> [User] in
            try pool.read { db in
                try Row.fetchAll(db, sql: "SELECT \(Self.userColumns) FROM users ORDER BY username")
                    .map { row in try Self.decodeUser(row, from: 0) }
            }
        }
    }

    /// Also revokes the user's tokens: a password change is what people do
    /// after a suspected compromise.
    public func setPasswordHash(_ hash: String, for username: String) throws(StoreError) {
        try Self.requireValid(username)
        try updateUser(username, "set password",
                       sql: "UPDATE users SET password_hash = ?, token_version = token_version + 1 WHERE username = ?",
                       arguments: [hash, username])
    }

    /// Disabling also bumps the token version, so tokens issued before stay
    /// dead after re-enabling.
    public func setDisabled(_ disabled: Bool, for username: String) throws(StoreError) {
        try Self.requireValid(username)
        try updateUser(username, "set disabled",
                       sql: "UPDATE users SET is_disabled = ?, token_version = token_version + ? WHERE username = ?",
                       arguments: [disabled, disabled ? 1 : 0, username])
    }

    /// Invalidates every token issued so far; returns the new version.
    public func revokeTokens(for username: String) throws(StoreError) -> Int64 {
        try Self.requireValid(username)
        return try perform("revoke tokens of \(username)") { () throws -> Int64 in
            try pool.write { db in
                try db.execute(sql: "UPDATE users SET token_version = token_version + 1 WHERE username = ?",
                               arguments: [username])
                guard db.changesCount == 1,
                      let version = try Int64.fetchOne(db, sql: "SELECT token_version FROM users WHERE username = ?",
                                                       arguments: [username]) else {
                    throw StoreError.userNotFound(username)
                }
                return version
            }
        }
    }

    /// Removes the user, their integration (foreign key cascade) and their
    /// login failures, and remembers the token version so a new user with
    /// the same name does not accept the old user's tokens.
    public func removeUser(_ username: String) throws(StoreError) {
        try Self.requireValid(username)
        try perform("remove user \(username)") { () throws in
            try pool.write { db in
                guard let version = try Int64.fetchOne(db, sql: "SELECT token_version FROM users WHERE username = ?",
                                                       arguments: [username]) else {
                    throw StoreError.userNotFound(username)
                }
                try db.execute(sql: "DELETE FROM users WHERE username = ?", arguments: [username])
                try db.execute(sql: "DELETE FROM login_failures WHERE username = ?", arguments: [username])
                try db.execute(sql: """
                    INSERT INTO removed_usernames (username, next_token_version) VALUES (?, ?)
                    ON CONFLICT (username) DO UPDATE SET next_token_version = excluded.next_token_version
                    """, arguments: [username, version + 1])
            }
        }
    }

    private func updateUser(_ username: String, _ what: String, sql: String, arguments: StatementArguments) throws(StoreError) {
        try perform("\(what) for \(username)") { () throws in
            try pool.write { db in
                try db.execute(sql: sql, arguments: arguments)
                guard db.changesCount == 1 else { throw StoreError.userNotFound(username) }
            }
        }
    }

    // MARK: SMTP integrations

    /// Creates or replaces the user's integration. The password is sealed
    /// with the SecretBox, bound to the username; only ciphertext is stored.
    public func setIntegration(_ integration: SMTPIntegration, for username: String) throws(StoreError) {
        try Self.requireValid(username)
        try Self.validate(integration)
        var sealed: Data?
        if let password = integration.password {
            do {
                sealed = Data(try secretBox.seal(Array(password.utf8), associatedData: Self.passwordContext(username)))
            } catch {
                throw .crypto(error.description)
            }
        }
        let updatedAt = Self.milliseconds(integration.updatedAt)
        try perform("set integration for \(username)") { () throws in
            try pool.write { db in
                guard let userID = try Int64.fetchOne(db, sql: "SELECT id FROM users WHERE username = ?",
                                                      arguments: [username]) else {
                    throw StoreError.userNotFound(username)
                }
                try db.execute(sql: """
                    INSERT INTO smtp_integrations
                        (user_id, host, port, security, username, password_sealed, from_address, from_name, updated_at_ms)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT (user_id) DO UPDATE SET
                        host = excluded.host, port = excluded.port, security = excluded.security,
                        username = excluded.username, password_sealed = excluded.password_sealed,
                        from_address = excluded.from_address, from_name = excluded.from_name,
                        updated_at_ms = excluded.updated_at_ms
                    """, arguments: [userID, integration.host, integration.port, integration.security,
                                     integration.username, sealed, integration.fromAddress, integration.fromName,
                                     updatedAt])
            }
        }
    }

    /// The user's integration with the password decrypted, or nil if none
    /// is configured. Throws `.userNotFound` if there is no such user.
    public func integration(for username: String) throws(StoreError) -> SMTPIntegration? {
        guard let credentials = try credentials(for: username) else { throw .userNotFound(username) }
        return credentials.integration
    }

    public func removeIntegration(for username: String) throws(StoreError) {
        try Self.requireValid(username)
        try perform("remove integration for \(username)") { () throws in
            try pool.write { db in
                guard try Int64.fetchOne(db, sql: "SELECT id FROM users WHERE username = ?", arguments: [username]) != nil else {
                    throw StoreError.userNotFound(username)
                }
                try db.execute(sql: "DELETE FROM smtp_integrations WHERE user_id = (SELECT id FROM users WHERE username = ?)",
                               arguments: [username])
                guard db.changesCount == 1 else { throw StoreError.integrationNotFound(username) }
            }
        }
    }

    private static let credentialsSQL = """
        SELECT u.id, u.username, u.password_hash, u.is_disabled, u.token_version, u.created_at_ms,
               i.user_id, i.host, i.port, i.security, i.username, i.password_sealed,
               i.from_address, i.from_name, i.updated_at_ms
        FROM users u LEFT JOIN smtp_integrations i ON i.user_id = u.id
        WHERE u.username = ?
        """

    /// The per-request read: user and integration in one statement (so one
    /// consistent snapshot), nil if the user does not exist. Served from a
    /// per-connection cache that any commit by another connection (e.g. the
    /// CLI) invalidates, so changes apply to the next request.
    public func credentials(for username: String) throws(StoreError) -> Credentials? {
        guard Self.isValidUsername(username) else { return nil }
        let secretBox = self.secretBox
        return try perform("read credentials of \(username)") { () throws -> Credentials? in
            try credentialsReader.credentials(for: username, read: { db in
                let statement = try db.cachedStatement(sql: Self.credentialsSQL)
                guard let row = try Row.fetchOne(statement, arguments: [username]) else { return nil }
                let user = try Self.decodeUser(row, from: 0)
                guard try row.decode(Int64?.self, atIndex: 6) != nil else { return (user, nil, nil) }
                let integration = SMTPIntegration(
                    host: try row.decode(String.self, atIndex: 7),
                    port: try row.decode(Int.self, atIndex: 8),
                    security: try row.decode(String.self, atIndex: 9),
                    username: try row.decode(String?.self, atIndex: 10),
                    password: nil,
                    fromAddress: try row.decode(String.self, atIndex: 12),
                    fromName: try row.decode(String?.self, atIndex: 13),
                    updatedAt: Self.date(try row.decode(Int64.self, atIndex: 14)))
                return (user, integration, try row.decode(Data?.self, atIndex: 11))
            }, decrypt: { (user, integration, sealed) throws(StoreError) -> SMTPIntegration in
                // Decrypted outside the database closure: no connection is
                // busy while OpenSSL works.
                guard let plain = try? secretBox.open(Array(sealed), associatedData: Self.passwordContext(user.username)),
                      let password = String(validating: plain, as: UTF8.self) else {
                    throw .corruptSecret(user.username)
                }
                var opened = integration
                opened.password = password
                return opened
            })
        }
    }

    /// Associated data for a sealed SMTP password: the owning username, so
    /// a ciphertext copied into another user's row does not open.
    private static func passwordContext(_ username: String) -> [UInt8] {
        Array("mailgate/smtp-password/v1/".utf8) + Array(username.utf8)
    }

    private static func validate(_ integration: SMTPIntegration) throws(StoreError) {
        func clean(_ text: String) -> Bool {
            // Control characters (CR/LF above all) have no place in host
            // names, addresses or SMTP login names; refuse them at the door.
            !text.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F }
        }
        let host = integration.host
        guard !host.isEmpty, host.utf8.count <= 253, clean(host), !host.contains(" ") else {
            throw .invalidIntegration("host")
        }
        guard (1...65535).contains(integration.port) else { throw .invalidIntegration("port") }
        guard SMTPIntegration.securityModes.contains(integration.security) else {
            throw .invalidIntegration("security (must be starttls, tls or none)")
        }
        if let username = integration.username { guard clean(username) else { throw .invalidIntegration("username") } }
        if let password = integration.password {
            // AUTH PLAIN separates fields with NUL; nothing else is refused.
            guard !password.utf8.contains(0) else { throw .invalidIntegration("password") }
        }
        guard !integration.fromAddress.isEmpty, clean(integration.fromAddress) else {
            throw .invalidIntegration("fromAddress")
        }
        if let name = integration.fromName { guard clean(name) else { throw .invalidIntegration("fromName") } }
    }

    // MARK: Login throttling

    private static let failureRetentionMilliseconds: Int64 = 86_400_000

    /// Records a failed login for `username` (existing or not) and prunes
    /// failures older than a day. Names that cannot be valid are ignored:
    /// they can never log in, so there is nothing to protect, and storing
    /// them would let junk grow the table.
    public func recordFailedLogin(_ username: String, at date: Date) throws(StoreError) {
        guard Self.isValidUsername(username) else { return }
        let at = Self.milliseconds(date)
        try perform("record failed login for \(username)") { () throws in
            try pool.write { db in
                try db.execute(sql: "DELETE FROM login_failures WHERE failed_at_ms < ?",
                               arguments: [at - Self.failureRetentionMilliseconds])
                try db.execute(sql: "INSERT INTO login_failures (username, failed_at_ms) VALUES (?, ?)",
                               arguments: [username, at])
            }
        }
    }

    /// Failures for `username` at or after `since`.
    public func failedLoginCount(_ username: String, since: Date) throws(StoreError) -> Int {
        guard Self.isValidUsername(username) else { return 0 }
        return try perform("count failed logins for \(username)") { () throws -> Int in
            try pool.read { db in
                let statement = try db.cachedStatement(
                    sql: "SELECT count(*) FROM login_failures WHERE username = ? AND failed_at_ms >= ?")
                return try Int.fetchOne(statement, arguments: [username, Self.milliseconds(since)]) ?? 0
            }
        }
    }

    /// The oldest failure at or after `since` (to compute Retry-After), or nil.
    public func oldestFailedLogin(_ username: String, since: Date) throws(StoreError) -> Date? {
        guard Self.isValidUsername(username) else { return nil }
        let oldest = try perform("read failed logins for \(username)") { () throws -> Int64? in
            try pool.read { db in
                let statement = try db.cachedStatement(
                    sql: "SELECT min(failed_at_ms) FROM login_failures WHERE username = ? AND failed_at_ms >= ?")
                return try Int64.fetchOne(statement, arguments: [username, Self.milliseconds(since)])
            }
        }
        return oldest.map(Self.date)
    }

    public func clearFailedLogins(_ username: String) throws(StoreError) {
        guard Self.isValidUsername(username) else { return }
        try perform("clear failed logins for \(username)") { () throws in
            try pool.write { db in
                try db.execute(sql: "DELETE FROM login_failures WHERE username = ?", arguments: [username])
            }
        }
    }

    // MARK: Helpers

    /// Runs `body`, turning any error into a StoreError.
    private func perform<T>(_ operation: String, _ body: () throws -> T) throws(StoreError) -> T {
        do {
            return try body()
        } catch {
            throw Self.wrap(error, operation)
        }
    }

    /// GRDB's own descriptions can include row contents (row decoding
    /// errors print the row), so only SQLite's code and message are kept.
    private static func wrap(_ error: any Error, _ operation: String) -> StoreError {
        switch error {
        case let error as StoreError:
            return error
        case let error as DatabaseError:
            return .database("\(operation): SQLite error \(error.extendedResultCode.rawValue): \(error.message ?? "no message")")
        default:
            return .database("\(operation): \(type(of: error))")
        }
    }

    private static func decodeUser(_ row: Row, from start: Int) throws -> User {
        User(id: try row.decode(Int64.self, atIndex: start),
             username: try row.decode(String.self, atIndex: start + 1),
             passwordHash: try row.decode(String.self, atIndex: start + 2),
             isDisabled: try row.decode(Bool.self, atIndex: start + 3),
             tokenVersion: try row.decode(Int64.self, atIndex: start + 4),
             createdAt: date(try row.decode(Int64.self, atIndex: start + 5)))
    }

    /// Dates are stored as integer Unix milliseconds; reading back what was
    /// written gives an equal Date.
    static func milliseconds(_ date: Date) -> Int64 {
        let value = (date.timeIntervalSince1970 * 1000).rounded()
        // Clamp absurd dates instead of trapping on conversion.
        guard value.isFinite else { return 0 }
        return Int64(max(-9e15, min(9e15, value)))
    }

    static func date(_ milliseconds: Int64) -> Date {
        Date(timeIntervalSince1970: Double(milliseconds) / 1000)
    }

    /// Creates an empty database file readable only by its owner, so the
    /// hashes and sealed secrets are private from the first byte.
    private static func createPrivateFileIfMissing(_ path: String) throws(StoreError) {
        let fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o600)
        if fd >= 0 {
            close(fd)
            return
        }
        let code = errno
        if code == EEXIST { return }
        throw .database("create \(path): \(String(cString: strerror(code))) (errno \(code))")
    }
}
