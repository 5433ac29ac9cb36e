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
    let credentialsReader: CredentialsReader
    /// Send counts for quotas, in a file every process maps (`SendCounter`).
    private let sendCounter: SendCounter

    /// Opens (creating if needed) the database at `path` and migrates it.
    /// A new file is created with mode 0600; SQLite gives the -wal and -shm
    /// files the same mode.
    /// `busyTimeout`: how long a write waits for the write lock held by
    /// another connection (any process). A request should not wait long
    /// (the server's default, 5 s, then 500); an administrator's command
    /// can wait out a burst of writes (the CLI's, 60 s).
    public init(path: String, secretBox: SecretBox, busyTimeout: TimeInterval = 5) throws(StoreError) {
        seal = PasswordSeal(box: secretBox)
        credentialsReader = try CredentialsReader(path: path, seal: seal)
        try Self.createPrivateFileIfMissing(path)
        sendCounter = try SendCounter(path: Self.countersPath(for: path), ownerOf: path)
        do {
            pool = try DatabasePool(path: path, configuration: SQLiteSchema.configuration(busyTimeout: busyTimeout))
        } catch {
            throw Self.wrap(error, "open \(path)")
        }
        do {
            // A read first, as for the re-seal below: every CLI command opens
            // the store, and a current schema needs no write lock (the
            // migrator would take it even with nothing to apply).
            let migrator = SQLiteSchema.migrator
            if try !pool.read({ db in try migrator.hasCompletedMigrations(db) }) {
                try migrator.migrate(pool)
            }
        } catch {
            throw Self.wrap(error, "migrate \(path)")
        }
        try resealVersion1Passwords()
    }

    /// Re-seals passwords still sealed as version 1 (the username only) as
    /// version 2 (bound to host, port, security and login too): once, when
    /// a database from before the binding is first opened. A row that does
    /// not open is left as it is; reading it reports the corrupt secret.
    private func resealVersion1Passwords() throws(StoreError) {
        // A read first: every CLI command opens the store, and after the
        // one upgrade there is nothing to do, which needs no write lock.
        let pending = try perform("look for version 1 SMTP passwords") { () throws -> Bool in
            try pool.read { db in
                try Bool.fetchOne(db, sql: """
                    SELECT 1 FROM smtp_integrations WHERE password_seal_version = 1 AND password_sealed IS NOT NULL LIMIT 1
                    """) ?? false
            }
        }
        guard pending else { return }
        try perform("re-seal SMTP passwords") { () throws in
            try pool.write { db in
                let rows = try Row.fetchAll(db, sql: """
                    SELECT i.*, u.username AS owner FROM smtp_integrations i JOIN users u ON u.id = i.user_id
                    WHERE i.password_seal_version = 1 AND i.password_sealed IS NOT NULL
                    """)
                for row in rows {
                    let record = try SMTPIntegrationRecord(row: row)
                    let owner: String = try row.decode(forColumn: "owner")
                    guard let sealed = record.sealedPassword,
                          let password = try? seal.openVersion1(sealed, for: owner) else { continue }
                    let resealed = try seal.seal(password, for: record.sealBinding(owner: owner))
                    try db.execute(literal: """
                        UPDATE \(SMTPIntegrationRecord.self)
                        SET \(IntegrationColumns.sealedPassword) = \(resealed),
                            \(IntegrationColumns.sealVersion) = \(PasswordSeal.currentVersion)
                        WHERE \(IntegrationColumns.userID) = \(record.userID)
                        """)
                }
            }
        }
    }

    /// The send counters' file: `mailgate.sqlite` → `mailgate-counters.map`.
    public static func countersPath(for path: String) -> String {
        (path.hasSuffix(".sqlite") ? String(path.dropLast(7)) : path) + "-counters.map"
    }

    /// Names of the migrations applied to this database, in order.
    func appliedMigrations() throws(StoreError) -> [String] {
        try perform("read migrations") { () throws -> [String] in
            try pool.read { db in try SQLiteSchema.migrator.appliedMigrations(db) }
        }
    }

    // MARK: Users
    //
    // Writes are spelled out as SQL over the records' named columns: GRDB's
    // persistence methods (insert, upsert, fetch by key) first read the
    // schema (PRAGMA table_xinfo, index_list...), and every CLI command is a
    // new process with a cold schema cache, so they would do that inside the
    // write lock that the server and other commands wait on.

    private typealias UserColumns = UserRecord.Columns
    private typealias IntegrationColumns = SMTPIntegrationRecord.Columns
    private typealias AttemptColumns = LoginAttemptRecord.Columns
    private typealias RemovedColumns = RemovedUsernameRecord.Columns

    public func addUser(_ username: String, passwordHash: String) throws(StoreError) -> User {
        try User.requireValid(username)
        let createdAt = StoredDate.milliseconds(Date())
        return try perform("add user \(username)") { () throws -> User in
            try pool.write { db in
                let version = try SQLRequest<Int64>(literal: """
                    SELECT \(RemovedColumns.nextTokenVersion) FROM \(RemovedUsernameRecord.self)
                    WHERE \(RemovedColumns.username) = \(username)
                    """).fetchOne(db) ?? 0
                do {
                    try db.execute(literal: """
                        INSERT INTO \(UserRecord.self) (\(UserColumns.username), \(UserColumns.passwordHash),
                            \(UserColumns.isDisabled), \(UserColumns.tokenVersion), \(UserColumns.createdAt))
                        VALUES (\(username), \(passwordHash), 0, \(version), \(createdAt))
                        """)
                } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_UNIQUE {
                    throw StoreError.userExists(username)
                }
                return User(id: db.lastInsertedRowID, username: username, passwordHash: passwordHash,
                            isDisabled: false, tokenVersion: version, createdAt: StoredDate.date(createdAt))
            }
        }
    }

    public func user(named username: String) throws(StoreError) -> User? {
        guard User.isValidUsername(username) else { return nil }
        return try perform("read user \(username)") { () throws -> User? in
            try pool.read { db in
                try SQLRequest<UserRecord>(literal: """
                    SELECT * FROM \(UserRecord.self) WHERE \(UserColumns.username) = \(username)
                    """, cached: true).fetchOne(db)?.user
            }
        }
    }

    public func listUsers() throws(StoreError) -> [User] {
        try perform("list users") { () throws -> [User] in
            try pool.read { db in
                try SQLRequest<UserRecord>(literal: "SELECT * FROM \(UserRecord.self) ORDER BY \(UserColumns.username)")
                    .fetchAll(db).map(\.user)
            }
        }
    }

    public func setPasswordHash(_ hash: String, for username: String) throws(StoreError) {
        try User.requireValid(username)
        try updateUser(username, "set password", """
            UPDATE \(UserRecord.self)
            SET \(UserColumns.passwordHash) = \(hash), \(UserColumns.tokenVersion) = \(UserColumns.tokenVersion) + 1
            WHERE \(UserColumns.username) = \(username)
            """)
    }

    public func setDisabled(_ disabled: Bool, for username: String) throws(StoreError) {
        try User.requireValid(username)
        try updateUser(username, "set disabled", """
            UPDATE \(UserRecord.self)
            SET \(UserColumns.isDisabled) = \(disabled),
                \(UserColumns.tokenVersion) = \(UserColumns.tokenVersion) + \(disabled ? 1 : 0)
            WHERE \(UserColumns.username) = \(username)
            """)
    }

    public func setRecipientPolicy(_ policy: RecipientPolicy, for username: String) throws(StoreError) {
        try User.requireValid(username)
        try updateUser(username, "set recipient policy", """
            UPDATE \(UserRecord.self) SET \(UserColumns.allowedRecipients) = \(policy.storedText)
            WHERE \(UserColumns.username) = \(username)
            """)
    }

    public func setSendQuota(_ quota: SendQuota, for username: String) throws(StoreError) {
        try User.requireValid(username)
        guard quota.perWindow.values.allSatisfy({ $0 >= 0 }) else { throw .database("a quota must be 0 or more") }
        try updateUser(username, "set send quota", """
            UPDATE \(UserRecord.self)
            SET \(UserColumns.quotaPerMinute) = \(quota.perWindow[.minute]),
                \(UserColumns.quotaPerHour) = \(quota.perWindow[.hour]),
                \(UserColumns.quotaPerDay) = \(quota.perWindow[.day])
            WHERE \(UserColumns.username) = \(username)
            """)
    }

    // MARK: Send counting

    public func reserveSends(_ recipients: Int, for username: String, limits: [QuotaWindow: Int],
                             at date: Date) throws(StoreError) -> QuotaReservation {
        let second = Int64(date.timeIntervalSince1970.rounded(.down))
        return try sendCounter.reserve(recipients, for: username, limits: limits, second: second)
    }

    public func releaseSends(_ reservation: QuotaReservation, for username: String) throws(StoreError) {
        try sendCounter.release(reservation, for: username)
    }

    public func revokeTokens(for username: String) throws(StoreError) -> Int64 {
        try User.requireValid(username)
        return try perform("revoke tokens of \(username)") { () throws -> Int64 in
            try pool.write { db in
                try db.execute(literal: """
                    UPDATE \(UserRecord.self) SET \(UserColumns.tokenVersion) = \(UserColumns.tokenVersion) + 1
                    WHERE \(UserColumns.username) = \(username)
                    """)
                guard db.changesCount == 1, let version = try Self.tokenVersion(of: username, db) else {
                    throw StoreError.userNotFound(username)
                }
                return version
            }
        }
    }

    /// The integration goes with the user (foreign key cascade); login
    /// attempts and idempotency records, keyed by the name, are deleted;
    /// the token version is remembered for a later user of the same name.
    public func removeUser(_ username: String) throws(StoreError) {
        try User.requireValid(username)
        try perform("remove user \(username)") { () throws in
            try pool.write { db in
                guard let version = try Self.tokenVersion(of: username, db) else {
                    throw StoreError.userNotFound(username)
                }
                try db.execute(literal: "DELETE FROM \(UserRecord.self) WHERE \(UserColumns.username) = \(username)")
                try db.execute(literal: "DELETE FROM \(LoginAttemptRecord.self) WHERE \(AttemptColumns.username) = \(username)")
                try db.execute(literal: """
                    DELETE FROM \(IdempotencyKeyRecord.self) WHERE \(IdempotencyKeyRecord.Columns.username) = \(username)
                    """)
                try db.execute(literal: """
                    INSERT INTO \(RemovedUsernameRecord.self) (\(RemovedColumns.username), \(RemovedColumns.nextTokenVersion))
                    VALUES (\(username), \(version + 1))
                    ON CONFLICT (\(RemovedColumns.username)) DO UPDATE
                    SET \(RemovedColumns.nextTokenVersion) = excluded.\(RemovedColumns.nextTokenVersion)
                    """)
            }
        }
    }

    private static func tokenVersion(of username: String, _ db: Database) throws -> Int64? {
        try SQLRequest<Int64>(literal: """
            SELECT \(UserColumns.tokenVersion) FROM \(UserRecord.self) WHERE \(UserColumns.username) = \(username)
            """).fetchOne(db)
    }

    static func userID(of username: String, _ db: Database) throws -> Int64? {
        try SQLRequest<Int64>(literal: """
            SELECT \(UserColumns.id) FROM \(UserRecord.self) WHERE \(UserColumns.username) = \(username)
            """).fetchOne(db)
    }

    private func updateUser(_ username: String, _ what: String, _ update: SQL) throws(StoreError) {
        try perform("\(what) for \(username)") { () throws in
            try pool.write { db in
                try db.execute(literal: update)
                guard db.changesCount == 1 else { throw StoreError.userNotFound(username) }
            }
        }
    }

    // MARK: SMTP integrations

    public func setIntegration(_ integration: SMTPIntegration, for username: String) throws(StoreError) {
        try User.requireValid(username)
        try integration.validate()
        // Sealed before the write lock is taken (OpenSSL work); only a kept
        // refresh token is re-sealed inside it, where it is read.
        var row = try SMTPIntegrationRecord(userID: 0, owner: username, integration: integration, seal: seal)
        let keepsRefreshToken = integration.oauth2.map { $0.refreshToken == nil } ?? false
        try perform("set integration for \(username)") { () throws in
            try pool.write { db in
                guard let userID = try Self.userID(of: username, db) else { throw StoreError.userNotFound(username) }
                row.userID = userID
                if keepsRefreshToken, let owner = integration.refreshTokenOwner,
                   let binding = row.oauth2SealBinding(owner: username),
                   let kept = try Self.storedRefreshToken(of: userID, owner: username, ifIssuedTo: owner, seal: seal, db) {
                    row.oauth2SealedRefreshToken = try seal.seal(kept, as: .refreshToken, for: binding)
                }
                let columns = row.columnValues
                let names = columns.map { SQL($0.column) }.joined(separator: ", ")
                let values = columns.map { SQL("\($0.value)") }.joined(separator: ", ")
                let updates = columns.dropFirst().map { SQL("\($0.column) = excluded.\($0.column)") }.joined(separator: ", ")
                try db.execute(literal: """
                    INSERT INTO \(SMTPIntegrationRecord.self) (\(names)) VALUES (\(values))
                    ON CONFLICT (\(IntegrationColumns.userID)) DO UPDATE SET \(updates)
                    """)
            }
        }
    }

    /// The refresh token stored for `userID` (owned by `owner`), opened, if
    /// it was issued to `grant`'s client and mailbox; nil otherwise, and
    /// for one that no longer opens (the new row starts without one).
    private static func storedRefreshToken(of userID: Int64, owner: String, ifIssuedTo grant: RefreshTokenOwner,
                                           seal: PasswordSeal, _ db: Database) throws -> String? {
        guard let stored = try SQLRequest<SMTPIntegrationRecord>(literal: """
                SELECT * FROM \(SMTPIntegrationRecord.self) WHERE \(IntegrationColumns.userID) = \(userID)
                """).fetchOne(db),
              let storedOwner = stored.refreshTokenOwner, storedOwner.matches(grant),
              let sealed = stored.oauth2SealedRefreshToken,
              let binding = stored.oauth2SealBinding(owner: owner) else { return nil }
        return try? seal.open(sealed, as: .refreshToken, for: binding)
    }

    public func storeRefreshToken(_ refreshToken: String, for username: String, issuedTo grant: RefreshTokenOwner,
                                  origin: RefreshTokenOrigin) throws(StoreError) {
        try User.requireValid(username)
        try OAuth2Credentials.requireValid(refreshToken: refreshToken)
        let now = StoredDate.milliseconds(Date())
        try perform("store the refresh token of \(username)") { () throws in
            try pool.write { db in
                guard let userID = try Self.userID(of: username, db) else { throw StoreError.userNotFound(username) }
                guard let stored = try SQLRequest<SMTPIntegrationRecord>(literal: """
                    SELECT * FROM \(SMTPIntegrationRecord.self) WHERE \(IntegrationColumns.userID) = \(userID)
                    """).fetchOne(db) else { throw StoreError.integrationNotFound(username) }
                guard let storedOwner = stored.refreshTokenOwner, let binding = stored.oauth2SealBinding(owner: username) else {
                    throw StoreError.invalidIntegration("not an OAuth2 integration")
                }
                guard storedOwner.matches(grant) else { throw StoreError.integrationChanged(username) }
                // A few microseconds of AES-GCM, inside the lock: the seal
                // must match the row as it is now.
                let sealed = try seal.seal(refreshToken, as: .refreshToken, for: binding)
                let updatedAt = origin == .authorization ? now : stored.updatedAtMilliseconds
                try db.execute(literal: """
                    UPDATE \(SMTPIntegrationRecord.self)
                    SET \(IntegrationColumns.oauth2SealedRefreshToken) = \(sealed), \(IntegrationColumns.updatedAt) = \(updatedAt)
                    WHERE \(IntegrationColumns.userID) = \(userID)
                    """)
            }
        }
    }

    public func removeIntegration(for username: String) throws(StoreError) {
        try User.requireValid(username)
        try perform("remove integration for \(username)") { () throws in
            try pool.write { db in
                guard let userID = try Self.userID(of: username, db) else { throw StoreError.userNotFound(username) }
                try db.execute(literal: """
                    DELETE FROM \(SMTPIntegrationRecord.self) WHERE \(IntegrationColumns.userID) = \(userID)
                    """)
                guard db.changesCount == 1 else { throw StoreError.integrationNotFound(username) }
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

    public func checkReadable() throws(StoreError) {
        try perform("health check read") { () throws in try credentialsReader.checkReadable() }
    }

    // MARK: Login throttling

    public func beginLoginAttempt(_ username: String, from client: LoginClient, at now: Date,
                                  policy: LoginThrottlePolicy) throws(StoreError) -> LoginAttempt {
        guard User.isValidUsername(username) else {
            return .allowed(PendingLogin(username: username, client: client, markID: nil))
        }
        let counted = LoginAttemptWindow(now: now, policy: policy)
        let at = counted.at, window = counted.window, windowStart = counted.start, retention = counted.retention
        let key = Data(client.bytes)
        return try perform("begin login attempt for \(username)") { () throws -> LoginAttempt in
            // BEGIN IMMEDIATE: the write lock is taken before the count, so
            // no other connection (this process's or another's) can count or
            // insert between this count and this insert.
            try pool.writeWithoutTransaction { db in
                var attempt = LoginAttempt.allowed(PendingLogin(username: username, client: client, markID: nil))
                try db.inTransaction(.immediate) {
                    let perClient = try Self.lockout(db, limit: policy.perClient, windowStart: windowStart, window: window, """
                        FROM \(LoginAttemptRecord.self)
                        WHERE \(AttemptColumns.username) = \(username) AND \(AttemptColumns.client) = \(key)
                          AND \(AttemptColumns.attemptedAt) > \(windowStart)
                        """)
                    let perUsername = try Self.lockout(db, limit: policy.perUsername, windowStart: windowStart, window: window, """
                        FROM \(LoginAttemptRecord.self)
                        WHERE \(AttemptColumns.username) = \(username) AND \(AttemptColumns.attemptedAt) > \(windowStart)
                        """)
                    // Locked until both limits have room again.
                    if let freedAt = [perClient, perUsername].compactMap({ $0 }).max() {
                        attempt = .locked(retryAt: StoredDate.date(freedAt),
                                          scope: perUsername == freedAt ? .username : .client)
                        return .rollback
                    }
                    try db.execute(literal: """
                        DELETE FROM \(LoginAttemptRecord.self) WHERE \(AttemptColumns.attemptedAt) < \(at - retention)
                        """)
                    try db.execute(literal: """
                        INSERT INTO \(LoginAttemptRecord.self) (\(AttemptColumns.username), \(AttemptColumns.client),
                            \(AttemptColumns.attemptedAt), \(AttemptColumns.isPending))
                        VALUES (\(username), \(key), \(at), 1)
                        """)
                    attempt = .allowed(PendingLogin(username: username, client: client, markID: db.lastInsertedRowID))
                    return .commit
                }
                return attempt
            }
        }
    }

    /// Nil while fewer than `limit` attempts match `condition` (a FROM ...
    /// WHERE ... within the window); else when the limit frees up: once
    /// enough of the oldest have left the window to leave `limit - 1`.
    /// (Rows are only added below the limit, so that is the oldest, unless
    /// the limit was lowered.)
    private static func lockout(_ db: Database, limit: Int, windowStart: Int64, window: Int64,
                                _ condition: SQL) throws -> Int64? {
        let count = try SQLRequest<Int>(literal: "SELECT count(*) " + condition).fetchOne(db) ?? 0
        guard count >= max(0, limit) else { return nil }
        // The (count - limit + 1)-th oldest must leave: that is the one at
        // offset count - limit in time order.
        let pivot = try SQLRequest<Int64>(literal: "SELECT \(AttemptColumns.attemptedAt) " + condition + """
             ORDER BY \(AttemptColumns.attemptedAt) LIMIT 1 OFFSET \(count - max(0, limit))
            """).fetchOne(db) ?? windowStart
        return pivot + window
    }

    public func finishLoginAttempt(_ attempt: PendingLogin, _ outcome: LoginOutcome) throws(StoreError) {
        guard let markID = attempt.markID else { return }
        let username = attempt.username
        let key = Data(attempt.client.bytes)
        try perform("finish login attempt for \(username)") { () throws in
            try pool.write { db in
                switch outcome {
                case .failed:
                    // Stays, now as a failure (if `removeUser` took it meanwhile, so be it).
                    try db.execute(literal: """
                        UPDATE \(LoginAttemptRecord.self) SET \(AttemptColumns.isPending) = 0
                        WHERE \(AttemptColumns.id) = \(markID)
                        """)
                case .succeeded:
                    // This mark and this client's failures for the name;
                    // other clients' failures, and attempts still pending
                    // (another request's, from the same address), stay.
                    try db.execute(literal: """
                        DELETE FROM \(LoginAttemptRecord.self)
                        WHERE \(AttemptColumns.id) = \(markID)
                           OR (\(AttemptColumns.username) = \(username) AND \(AttemptColumns.client) = \(key)
                               AND \(AttemptColumns.isPending) = 0)
                        """)
                case .abandoned:
                    try db.execute(literal: "DELETE FROM \(LoginAttemptRecord.self) WHERE \(AttemptColumns.id) = \(markID)")
                }
            }
        }
    }

    public func loginFailureCount(_ username: String, from client: LoginClient?, since: Date) throws(StoreError) -> Int {
        guard User.isValidUsername(username) else { return 0 }
        let start = StoredDate.milliseconds(since)
        let clientCondition: SQL = client.map { client -> SQL in "AND \(AttemptColumns.client) = \(Data(client.bytes))" } ?? ""
        return try perform("count failed logins for \(username)") { () throws -> Int in
            try pool.read { db in
                try SQLRequest<Int>(literal: """
                    SELECT count(*) FROM \(LoginAttemptRecord.self)
                    WHERE \(AttemptColumns.username) = \(username) \(clientCondition)
                      AND \(AttemptColumns.attemptedAt) >= \(start)
                    """).fetchOne(db) ?? 0
            }
        }
    }

    // MARK: Helpers

    /// Runs `body`, turning any error into a StoreError.
    func perform<T>(_ operation: String, _ body: () throws -> T) throws(StoreError) -> T {
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
