import Foundation
import GRDB
import Crypto
import Posix

/// The `Store` on one SQLite file (GRDB, WAL), shared by the server and the
/// CLI, and by several server processes (Apache mod_fcgid) on one host.
public final class SQLiteStore: Store {
    /// Writes and the CLI's reads.
    let pool: DatabasePool
    private let seal: PasswordSeal
    /// The per-request read (`credentials(for:)`), off the pool.
    private let credentialsReader: CredentialsReader

    /// Opens (creating if needed) the database at `path` and migrates it.
    /// A new file is created with mode 0600; SQLite gives the -wal and -shm
    /// files the same mode.
    public init(path: String, secretBox: SecretBox) throws(StoreError) {
        seal = PasswordSeal(box: secretBox)
        credentialsReader = try CredentialsReader(path: path, seal: seal)
        try Self.createPrivateFileIfMissing(path)
        do {
            pool = try DatabasePool(path: path, configuration: SQLiteSchema.configuration())
        } catch {
            throw Self.wrap(error, "open \(path)")
        }
        do {
            try SQLiteSchema.migrator.migrate(pool)
        } catch {
            throw Self.wrap(error, "migrate \(path)")
        }
    }

    /// Names of the migrations applied to this database, in order.
    func appliedMigrations() throws(StoreError) -> [String] {
        try perform("read migrations") { () throws -> [String] in
            try pool.read { db in try SQLiteSchema.migrator.appliedMigrations(db) }
        }
    }

    // MARK: Users

    public func addUser(_ username: String, passwordHash: String) throws(StoreError) -> User {
        try User.requireValid(username)
        return try perform("add user \(username)") { () throws -> User in
            try pool.write { db in
                let version = try RemovedUsernameRecord.fetchOne(db, key: username)?.nextTokenVersion ?? 0
                var record = UserRecord(username: username, passwordHash: passwordHash, tokenVersion: version,
                                        createdAt: Date())
                do {
                    try record.insert(db)
                } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_UNIQUE {
                    throw StoreError.userExists(username)
                }
                return try record.user()
            }
        }
    }

    public func user(named username: String) throws(StoreError) -> User? {
        guard User.isValidUsername(username) else { return nil }
        return try perform("read user \(username)") { () throws -> User? in
            try pool.read { db in try UserRecord.all().filter(username: username).fetchOne(db)?.user() }
        }
    }

    public func listUsers() throws(StoreError) -> [User] {
        try perform("list users") { () throws -> [User] in
            try pool.read { db in
                try UserRecord.order(UserRecord.Columns.username).fetchAll(db).map { record throws in try record.user() }
            }
        }
    }

    public func setPasswordHash(_ hash: String, for username: String) throws(StoreError) {
        try User.requireValid(username)
        try updateUser(username, "set password", [
            UserRecord.Columns.passwordHash.set(to: hash),
            UserRecord.Columns.tokenVersion += 1,
        ])
    }

    public func setDisabled(_ disabled: Bool, for username: String) throws(StoreError) {
        try User.requireValid(username)
        try updateUser(username, "set disabled", [
            UserRecord.Columns.isDisabled.set(to: disabled),
            UserRecord.Columns.tokenVersion += disabled ? 1 : 0,
        ])
    }

    public func revokeTokens(for username: String) throws(StoreError) -> Int64 {
        try User.requireValid(username)
        return try perform("revoke tokens of \(username)") { () throws -> Int64 in
            try pool.write { db in
                let users = UserRecord.all().filter(username: username)
                guard try users.updateAll(db, UserRecord.Columns.tokenVersion += 1) == 1,
                      let version = try users.select(UserRecord.Columns.tokenVersion, as: Int64.self).fetchOne(db) else {
                    throw StoreError.userNotFound(username)
                }
                return version
            }
        }
    }

    /// The integration goes with the user (foreign key cascade); the token
    /// version is remembered for a later user of the same name.
    public func removeUser(_ username: String) throws(StoreError) {
        try User.requireValid(username)
        try perform("remove user \(username)") { () throws in
            try pool.write { db in
                let users = UserRecord.all().filter(username: username)
                guard let version = try users.select(UserRecord.Columns.tokenVersion, as: Int64.self).fetchOne(db) else {
                    throw StoreError.userNotFound(username)
                }
                try users.deleteAll(db)
                try LoginFailureRecord.all().filter(username: username).deleteAll(db)
                try RemovedUsernameRecord(username: username, nextTokenVersion: version + 1).upsert(db)
            }
        }
    }

    private func updateUser(_ username: String, _ what: String, _ assignments: [ColumnAssignment]) throws(StoreError) {
        try perform("\(what) for \(username)") { () throws in
            try pool.write { db in
                guard try UserRecord.all().filter(username: username).updateAll(db, assignments) == 1 else {
                    throw StoreError.userNotFound(username)
                }
            }
        }
    }

    // MARK: SMTP integrations

    public func setIntegration(_ integration: SMTPIntegration, for username: String) throws(StoreError) {
        try User.requireValid(username)
        try integration.validate()
        let sealed = try integration.password.map { password throws(StoreError) in try seal.seal(password, for: username) }
        try perform("set integration for \(username)") { () throws in
            try pool.write { db in
                let userID = try UserRecord.all().filter(username: username)
                    .select(UserRecord.Columns.id, as: Int64.self).fetchOne(db)
                guard let userID else { throw StoreError.userNotFound(username) }
                try SMTPIntegrationRecord(userID: userID, integration: integration, sealedPassword: sealed).upsert(db)
            }
        }
    }

    public func removeIntegration(for username: String) throws(StoreError) {
        try User.requireValid(username)
        try perform("remove integration for \(username)") { () throws in
            try pool.write { db in
                let userID = try UserRecord.all().filter(username: username)
                    .select(UserRecord.Columns.id, as: Int64.self).fetchOne(db)
                guard let userID else { throw StoreError.userNotFound(username) }
                guard try SMTPIntegrationRecord.deleteOne(db, key: userID) else {
                    throw StoreError.integrationNotFound(username)
                }
            }
        }
    }

    /// Served from a per-thread cache that any commit by another connection
    /// (e.g. the CLI) invalidates: see `CredentialsReader`.
    public func credentials(for username: String) throws(StoreError) -> Credentials? {
        guard User.isValidUsername(username) else { return nil }
        return try perform("read credentials of \(username)") { () throws -> Credentials? in
            try credentialsReader.credentials(for: username)
        }
    }

    // MARK: Login throttling

    private static let failureRetentionMilliseconds: Int64 = 86_400_000

    public func recordFailedLogin(_ username: String, at date: Date) throws(StoreError) {
        guard User.isValidUsername(username) else { return }
        let failure = LoginFailureRecord(username: username, failedAt: date)
        try perform("record failed login for \(username)") { () throws in
            try pool.write { db in
                try LoginFailureRecord.all()
                    .filter(failedBeforeMilliseconds: failure.failedAtMilliseconds - Self.failureRetentionMilliseconds)
                    .deleteAll(db)
                try failure.insert(db)
            }
        }
    }

    public func failedLoginCount(_ username: String, since: Date) throws(StoreError) -> Int {
        guard User.isValidUsername(username) else { return 0 }
        return try perform("count failed logins for \(username)") { () throws -> Int in
            try pool.read { db in try LoginFailureRecord.all().filter(username: username, since: since).fetchCount(db) }
        }
    }

    public func oldestFailedLogin(_ username: String, since: Date) throws(StoreError) -> Date? {
        guard User.isValidUsername(username) else { return nil }
        let oldest = try perform("read failed logins for \(username)") { () throws -> Int64? in
            try pool.read { db in
                try LoginFailureRecord.all().filter(username: username, since: since)
                    .select(min(LoginFailureRecord.Columns.failedAt), as: Int64.self).fetchOne(db)
            }
        }
        return oldest.map(StoredDate.date)
    }

    public func clearFailedLogins(_ username: String) throws(StoreError) {
        guard User.isValidUsername(username) else { return }
        try perform("clear failed logins for \(username)") { () throws in
            try pool.write { db in _ = try LoginFailureRecord.all().filter(username: username).deleteAll(db) }
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
    static func wrap(_ error: any Error, _ operation: String) -> StoreError {
        switch error {
        case let error as StoreError:
            return error
        case let error as DatabaseError:
            return .database("\(operation): SQLite error \(error.extendedResultCode.rawValue): \(error.message ?? "no message")")
        default:
            return .database("\(operation): \(type(of: error))")
        }
    }

    /// Creates an empty database file readable only by its owner, so the
    /// hashes and sealed secrets are private from the first byte.
    private static func createPrivateFileIfMissing(_ path: String) throws(StoreError) {
        do throws(SystemCallError) {
            let fd = try systemCall("open \(path)") { open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o600) }
            closeDescriptor(fd)
        } catch where error.code == EEXIST {
            return
        } catch {
            throw .database("create \(path): \(SystemCallError.describe(error.code)) (errno \(error.code))")
        }
    }
}
