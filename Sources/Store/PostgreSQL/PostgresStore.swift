import Foundation
import Crypto

/// The `Store` on a PostgreSQL database shared by several hosts (libpq).
/// Behaves as `SQLiteStore` does, method for method; what differs is how
/// the rules hold across hosts:
///
/// - each worker thread keeps its own connection (`PerThread`), made on
///   first use and made again on the first call after it broke, so a
///   PostgreSQL restart needs no Mailgate restart; a call that cannot reach
///   the server throws `.unavailable` within a bound (connect_timeout, and
///   statement_timeout plus a margin for an answer);
/// - counting (quotas, login attempts, idempotency keys) is done in the
///   database with row or advisory locks, never read here and written back;
/// - secrets are sealed by the same `PasswordSeal` calls with the same
///   associated data as SQLite's (`SMTPIntegrationRecord`), so sealed
///   bytes move between the backends as they are;
/// - `credentials(for:)`, on every request's path, is cached per thread
///   only when asked (`serve`), and the cache is dropped on every change
///   notification from the database (see `ChangeListener`).
public final class PostgresStore: Store, CustomStringConvertible {
    private let settings: PGConnectionSettings
    private let seal: PasswordSeal
    private let connections: PerThread<PGConnection>
    /// nil: no cache (the CLI: one command, a few reads).
    private let changes: ChangeListener?
    private let credentialsCaches: PerThread<CredentialsCache>

    /// One thread's cached credentials, good for one generation of the
    /// listener. Unknown names are cached too (nil).
    final class CredentialsCache: @unchecked Sendable {  // used only by the thread that owns it (PerThread)
        var generation: UInt64 = .max
        var entries: [[UInt8]: Credentials?] = [:]
        /// Bounded: a stream of tokens for many names cannot grow it without end.
        static let maximumEntries = 10_000
    }

    /// A store on the database `uri` names: a libpq connection URI
    /// (`postgresql://user@host:5432/mailgate?sslmode=verify-full`, or
    /// `postgresql:///mailgate?host=/run/postgresql`) or keyword/value
    /// string. TLS, passwords (also from `~/.pgpass` or `PGPASSWORD`) and
    /// the rest are libpq's.
    ///
    /// `migrate`: apply missing migrations now (as SQLiteStore does at
    /// open; a read first, so a current schema takes no lock); this
    /// connects, so it throws `.unavailable` if the server cannot be
    /// reached. Without it nothing connects until the first call.
    /// `connectTimeout` (seconds) is the URI's `connect_timeout` unless it
    /// sets one; `statementTimeout` bounds each statement on the server
    /// (a request should not wait long: 5 s, like SQLite's busy timeout).
    ///
    /// `cacheCredentials` (`serve`): keep each thread's credentials between
    /// requests, dropped on every change notification (a thread and a
    /// connection of its own LISTEN; see `ChangeListener`); while that
    /// listener is not connected, every call reads the database.
    public init(uri: String, secretBox: SecretBox, migrate: Bool = true, connectTimeout: Int = 5,
                statementTimeout: TimeInterval = 5, cacheCredentials: Bool = false) throws(StoreError) {
        let settings = try PGConnectionSettings(conninfo: uri, connectTimeout: connectTimeout,
                                                statementTimeout: statementTimeout)
        self.settings = settings
        seal = PasswordSeal(box: secretBox)
        connections = try PerThread { PGConnection(settings: settings) }
        credentialsCaches = try PerThread { CredentialsCache() }
        changes = cacheCredentials ? ChangeListener(settings: settings) : nil
        if migrate {
            let names = Set(try appliedMigrations())
            if !PostgresSchema.migrations.allSatisfy({ names.contains($0.name) }) {
                _ = try perform("migrate") { connection throws -> [String] in try PostgresSchema.migrate(connection) }
            }
        }
    }

    deinit {
        changes?.stop()
    }

    /// True while credentials may be served from the cache: asked for, and
    /// the change listener connected.
    var listensForChanges: Bool { changes?.generation() != nil }

    /// Applies the migrations `uri`'s database lacks (`mailgate init` /
    /// `mailgate migrate`), on a connection of its own; safe to run from
    /// several processes at once (an advisory lock: the later ones find
    /// nothing to do). Returns the names it applied, in order.
    @discardableResult
    public static func migrate(uri: String, connectTimeout: Int = 5,
                               statementTimeout: TimeInterval = 60) throws(StoreError) -> [String] {
        let settings = try PGConnectionSettings(conninfo: uri, connectTimeout: connectTimeout,
                                                statementTimeout: statementTimeout)
        let connection = PGConnection(settings: settings)
        do {
            return try PostgresSchema.migrate(connection)
        } catch {
            throw wrap(error, "migrate \(settings.redacted)")
        }
    }

    /// Names of the migrations applied to the database, in order.
    public func appliedMigrations() throws(StoreError) -> [String] {
        try perform("read migrations") { connection throws -> [String] in try PostgresSchema.applied(connection) }
    }

    /// The database, password redacted.
    public var description: String { "PostgresStore(\(settings.redacted))" }

    /// A connection URI as it may be shown: any password replaced by `<redacted>`.
    public static func redacted(_ uri: String) -> String { PGConnectionSettings.redact(uri) }

    private typealias SQL = PostgresStatements

    // MARK: Users

    public func addUser(_ username: String, passwordHash: String) throws(StoreError) -> User {
        try User.requireValid(username)
        let createdAt = StoredDate.milliseconds(Date())
        return try perform("add user \(username)") { connection throws -> User in
            let result = try connection.run(SQL.addUser, [.text(username), .text(passwordHash), .int(createdAt)],
                                            "add user \(username)")
            guard result.rowCount == 1 else { throw StoreError.userExists(username) }
            return User(id: try result.requiredInt(0, 0), username: username, passwordHash: passwordHash,
                        isDisabled: false, tokenVersion: try result.requiredInt(0, 1), createdAt: StoredDate.date(createdAt))
        }
    }

    public func user(named username: String) throws(StoreError) -> User? {
        guard User.isValidUsername(username) else { return nil }
        return try perform("read user \(username)") { connection throws -> User? in
            let result = try connection.run(SQL.user, [.text(username)], "read user \(username)")
            guard result.rowCount == 1 else { return nil }
            return try UserRecord(result, row: 0, from: 0).user
        }
    }

    public func listUsers() throws(StoreError) -> [User] {
        try perform("list users") { connection throws -> [User] in
            let result = try connection.run(SQL.listUsers, [], "list users")
            var users: [User] = []
            for row in 0..<result.rowCount { users.append(try UserRecord(result, row: row, from: 0).user) }
            return users
        }
    }

    public func setPasswordHash(_ hash: String, for username: String) throws(StoreError) {
        try User.requireValid(username)
        try updateUser(username, "set password", SQL.setPasswordHash, [.text(username), .text(hash)])
    }

    public func setDisabled(_ disabled: Bool, for username: String) throws(StoreError) {
        try User.requireValid(username)
        try updateUser(username, "set disabled", SQL.setDisabled, [.text(username), .bool(disabled)])
    }

    public func setRecipientPolicy(_ policy: RecipientPolicy, for username: String) throws(StoreError) {
        try User.requireValid(username)
        try updateUser(username, "set recipient policy", SQL.setRecipientPolicy,
                       [.text(username), .optionalText(policy.storedText)])
    }

    public func setSendQuota(_ quota: SendQuota, for username: String) throws(StoreError) {
        try User.requireValid(username)
        guard quota.perWindow.values.allSatisfy({ $0 >= 0 }) else { throw .database("a quota must be 0 or more") }
        try updateUser(username, "set send quota", SQL.setSendQuota, [
            .text(username), .optionalInt(quota.perWindow[.minute]), .optionalInt(quota.perWindow[.hour]),
            .optionalInt(quota.perWindow[.day]),
        ])
    }

    public func revokeTokens(for username: String) throws(StoreError) -> Int64 {
        try User.requireValid(username)
        return try perform("revoke tokens of \(username)") { connection throws -> Int64 in
            let result = try connection.run(SQL.revokeTokens, [.text(username)], "revoke tokens of \(username)")
            guard result.rowCount == 1 else { throw StoreError.userNotFound(username) }
            return try result.requiredInt(0, 0)
        }
    }

    /// The integration and named tokens go with the user (foreign key
    /// cascade); login attempts and idempotency records, keyed by the name,
    /// are deleted; the token version is remembered for a later user of
    /// the same name. One statement.
    public func removeUser(_ username: String) throws(StoreError) {
        try User.requireValid(username)
        try perform("remove user \(username)") { connection throws in
            let result = try connection.run(SQL.removeUser, [.text(username)], "remove user \(username)")
            guard try result.requiredInt(0, 0) == 1 else { throw StoreError.userNotFound(username) }
        }
    }

    private func updateUser(_ username: String, _ what: String, _ statement: PGStatement,
                            _ parameters: [PGValue]) throws(StoreError) {
        try perform("\(what) for \(username)") { connection throws in
            guard try connection.run(statement, parameters, "\(what) for \(username)").affectedRows == 1 else {
                throw StoreError.userNotFound(username)
            }
        }
    }

    // MARK: Send counting

    /// One transaction: lock (or create) the user's row of every window,
    /// read the counts, then add to all or none. The row locks make
    /// reservations of one user from any number of hosts take turns.
    public func reserveSends(_ recipients: Int, for username: String, limits: [QuotaWindow: Int],
                             at date: Date) throws(StoreError) -> QuotaReservation {
        try User.requireValid(username)
        let second = Int64(date.timeIntervalSince1970.rounded(.down))
        let windows = limits.keys.sorted()
        guard !windows.isEmpty else {
            return QuotaReservation(granted: true, recipients: recipients, windows: [], second: second)
        }
        let seconds = windows.map(\.seconds), starts = windows.map { $0.start(of: second) }
        let operation = "reserve sends for \(username)"
        return try perform(operation) { connection throws -> QuotaReservation in
            try connection.transaction(operation) { () throws -> QuotaReservation in
                let result = try connection.run(SQL.lockSendCounts, [.text(username), .intArray(seconds), .intArray(starts)],
                                                operation)
                var counts: [Int64: Int] = [:]
                for row in 0..<result.rowCount {
                    counts[try result.requiredInt(row, 0)] = Int(try result.requiredInt(row, 1))
                }
                let granted = windows.allSatisfy { (counts[$0.seconds] ?? 0) + recipients <= limits[$0] ?? 0 }
                if granted {
                    _ = try connection.run(SQL.addSends, [.text(username), .intArray(seconds), .int(recipients)], operation)
                }
                return QuotaReservation(
                    granted: granted, recipients: recipients,
                    windows: zip(windows, starts).map { window, start in
                        QuotaWindowState(window: window, limit: limits[window] ?? 0,
                                         used: (counts[window.seconds] ?? 0) + (granted ? recipients : 0),
                                         resetsIn: start + window.seconds - second)
                    },
                    second: second)
            }
        }
    }

    public func releaseSends(_ reservation: QuotaReservation, for username: String) throws(StoreError) {
        try User.requireValid(username)
        guard reservation.granted, !reservation.windows.isEmpty else { return }
        let seconds = reservation.windows.map(\.window.seconds)
        let starts = reservation.windows.map { $0.window.start(of: reservation.second) }
        try perform("release sends for \(username)") { connection throws in
            _ = try connection.run(SQL.releaseSends, [.text(username), .intArray(seconds), .intArray(starts),
                                                      .int(reservation.recipients)], "release sends for \(username)")
        }
    }

    // MARK: SMTP integrations

    public func setIntegration(_ integration: SMTPIntegration, for username: String) throws(StoreError) {
        try User.requireValid(username)
        try integration.validate()
        // Sealed before the transaction (OpenSSL work); only a kept refresh
        // token is re-sealed inside it, where it is read.
        var row = try SMTPIntegrationRecord(userID: 0, owner: username, integration: integration, seal: seal)
        let keepsRefreshToken = integration.oauth2.map { $0.refreshToken == nil } ?? false
        let operation = "set integration for \(username)"
        try perform(operation) { connection throws in
            try connection.transaction(operation) { () throws in
                guard let userID = try Self.lockUser(username, connection, operation) else {
                    throw StoreError.userNotFound(username)
                }
                row.userID = userID
                if keepsRefreshToken, let owner = integration.refreshTokenOwner,
                   let binding = row.oauth2SealBinding(owner: username),
                   let stored = try Self.integrationRecord(of: userID, connection, operation),
                   let storedOwner = stored.refreshTokenOwner, storedOwner.matches(owner),
                   let sealed = stored.oauth2SealedRefreshToken,
                   let storedBinding = stored.oauth2SealBinding(owner: username),
                   let kept = try? seal.open(sealed, as: .refreshToken, for: storedBinding) {
                    row.oauth2SealedRefreshToken = try seal.seal(kept, as: .refreshToken, for: binding)
                }
                _ = try connection.run(SQL.upsertIntegration, row.postgresParameters, operation)
            }
        }
    }

    public func storeRefreshToken(_ refreshToken: String, for username: String, issuedTo grant: RefreshTokenOwner,
                                  origin: RefreshTokenOrigin) throws(StoreError) {
        try User.requireValid(username)
        try OAuth2Credentials.requireValid(refreshToken: refreshToken)
        let now = StoredDate.milliseconds(Date())
        let operation = "store the refresh token of \(username)"
        try perform(operation) { connection throws in
            try connection.transaction(operation) { () throws in
                guard let userID = try Self.lockUser(username, connection, operation) else {
                    throw StoreError.userNotFound(username)
                }
                guard let stored = try Self.integrationRecord(of: userID, connection, operation) else {
                    throw StoreError.integrationNotFound(username)
                }
                guard let storedOwner = stored.refreshTokenOwner, let binding = stored.oauth2SealBinding(owner: username) else {
                    throw StoreError.invalidIntegration("not an OAuth2 integration")
                }
                guard storedOwner.matches(grant) else { throw StoreError.integrationChanged(username) }
                let sealed = try seal.seal(refreshToken, as: .refreshToken, for: binding)
                let updatedAt = origin == .authorization ? now : stored.updatedAtMilliseconds
                _ = try connection.run(SQL.storeRefreshToken, [.int(userID), .bytes(Array(sealed)), .int(updatedAt)],
                                       operation)
            }
        }
    }

    public func removeIntegration(for username: String) throws(StoreError) {
        try User.requireValid(username)
        let operation = "remove integration for \(username)"
        try perform(operation) { connection throws in
            guard try connection.run(SQL.removeIntegration, [.text(username)], operation).affectedRows == 0 else { return }
            guard try connection.run(SQL.userExists, [.text(username)], operation).rowCount == 1 else {
                throw StoreError.userNotFound(username)
            }
            throw StoreError.integrationNotFound(username)
        }
    }

    /// The user's id, their row locked until the transaction ends (so one
    /// user's integration writes, from any host, take turns); nil if none.
    private static func lockUser(_ username: String, _ connection: PGConnection, _ operation: String) throws -> Int64? {
        let result = try connection.run(SQL.lockUser, [.text(username)], operation)
        return result.rowCount == 1 ? try result.requiredInt(0, 0) : nil
    }

    private static func integrationRecord(of userID: Int64, _ connection: PGConnection,
                                          _ operation: String) throws -> SMTPIntegrationRecord? {
        let result = try connection.run(SQL.integration, [.int(userID)], operation)
        return result.rowCount == 1 ? try SMTPIntegrationRecord(result, row: 0, from: 0) : nil
    }

    /// The cross-host invalidation choice: with `cacheCredentials`, each
    /// thread keeps what it read, good for one generation of the change
    /// listener. Triggers NOTIFY at every commit that touches users or
    /// integrations, on any host or from the CLI anywhere; the listener
    /// moves the generation on when the notification arrives (milliseconds),
    /// and the next request reads again. While the listener is not connected
    /// (a notification could be missed) nothing is served from the cache.
    /// A per-request version row would cost the round trip this saves:
    /// measured with `make bench`, the cached path ran at 107-132% of the
    /// SQLite store's rate, the uncached one at 59-70%. Without the cache,
    /// one prepared statement (a join), one round trip.
    public func credentials(for username: String) throws(StoreError) -> Credentials? {
        guard User.isValidUsername(username) else { return nil }
        guard let changes, let generation = changes.generation() else { return try readCredentials(username) }
        let cache: CredentialsCache
        do {
            cache = try credentialsCaches.value()
        } catch {
            return try readCredentials(username)
        }
        if cache.generation != generation {
            cache.generation = generation
            cache.entries.removeAll(keepingCapacity: true)
        }
        let key = Array(username.utf8)
        if let hit = cache.entries[key] { return hit }
        let fresh = try readCredentials(username)
        // Read in this generation: a change committed meanwhile has moved
        // it on (or will when its notification arrives), which drops this.
        if cache.entries.count < CredentialsCache.maximumEntries { cache.entries[key] = .some(fresh) }
        return fresh
    }

    /// One prepared join: the user, their policy and quotas, their integration.
    private func readCredentials(_ username: String) throws(StoreError) -> Credentials? {
        let operation = "read credentials of \(username)"
        return try perform(operation) { connection throws -> Credentials? in
            let result = try connection.run(SQL.credentials, [.text(username)], operation)
            guard result.rowCount == 1 else { return nil }
            let user = try UserRecord(result, row: 0, from: 0)
            let policy = try RecipientPolicy(storedText: user.allowedRecipients, of: user.username)
            let integration = result.isNull(0, 10) ? nil
                : try SMTPIntegrationRecord(result, row: 0, from: 10).integration(owner: user.username, seal: seal)
            return Credentials(user: user.user, integration: integration, recipientPolicy: policy,
                               sendQuota: user.sendQuota)
        }
    }

    /// One read of the users table; `.unavailable` when the server cannot
    /// be reached.
    public func checkReadable() throws(StoreError) {
        try perform("health check read") { connection throws in
            _ = try connection.run(SQL.checkReadable, [], "health check read")
        }
    }

    // MARK: Named tokens

    public func addNamedToken(id: String, name: String, for username: String, createdAt: Date,
                              expiresAt: Date) throws(StoreError) -> NamedToken {
        try User.requireValid(username)
        guard NamedToken.isValidName(name) else { throw .invalidTokenName }
        let created = StoredDate.milliseconds(createdAt), expires = StoredDate.milliseconds(expiresAt)
        let operation = "add named token for \(username)"
        try perform(operation) { connection throws in
            let result = try connection.run(SQL.addNamedToken, [.text(id), .text(name), .int(created), .int(expires),
                                                                .text(username)], operation)
            guard result.affectedRows == 1 else { throw StoreError.userNotFound(username) }
        }
        return NamedToken(id: id, username: username, name: name, createdAt: StoredDate.date(created),
                          expiresAt: StoredDate.date(expires), lastUsedDay: nil, revokedAt: nil)
    }

    public func namedTokens(of username: String?) throws(StoreError) -> [NamedToken] {
        if let username, !User.isValidUsername(username) { return [] }
        return try perform("list named tokens") { connection throws -> [NamedToken] in
            let result = try username.map { username throws in
                try connection.run(SQL.namedTokensOfUser, [.text(username)], "list named tokens")
            } ?? connection.run(SQL.allNamedTokens, [], "list named tokens")
            var tokens: [NamedToken] = []
            for row in 0..<result.rowCount { tokens.append(try Self.namedToken(result, row: row)) }
            return tokens
        }
    }

    public func revokeNamedToken(id: String) throws(StoreError) {
        let now = StoredDate.milliseconds(Date())
        let operation = "revoke named token \(id)"
        try perform(operation) { connection throws in
            guard try connection.run(SQL.revokeNamedToken, [.text(id), .int(now)], operation).affectedRows == 0 else { return }
            guard try connection.run(SQL.namedTokenExists, [.text(id)], operation).rowCount == 1 else {
                throw StoreError.tokenNotFound(id)
            }
        }
    }

    /// Read on every request that carries a named token, uncached for the
    /// reason `credentials(for:)` gives.
    public func namedToken(id: String) throws(StoreError) -> NamedToken? {
        try perform("read named token \(id)") { connection throws -> NamedToken? in
            let result = try connection.run(SQL.namedToken, [.text(id)], "read named token \(id)")
            return result.rowCount == 1 ? try Self.namedToken(result, row: 0) : nil
        }
    }

    public func recordNamedTokenUse(id: String, day: Int64) throws(StoreError) {
        try perform("record use of named token \(id)") { connection throws in
            _ = try connection.run(SQL.recordNamedTokenUse, [.text(id), .int(day)], "record use of named token \(id)")
        }
    }

    private static func namedToken(_ result: PGResult, row: Int) throws(StoreError) -> NamedToken {
        NamedToken(id: try result.requiredText(row, 0), username: try result.requiredText(row, 1),
                   name: try result.requiredText(row, 2), createdAt: StoredDate.date(try result.requiredInt(row, 3)),
                   expiresAt: StoredDate.date(try result.requiredInt(row, 4)), lastUsedDay: try result.int(row, 5),
                   revokedAt: try result.int(row, 6).map(StoredDate.date))
    }

    // MARK: Login throttling

    /// One transaction holding the username's advisory lock: attempts on
    /// one name, from any host, count and mark one at a time.
    public func beginLoginAttempt(_ username: String, from client: LoginClient, at now: Date,
                                  policy: LoginThrottlePolicy) throws(StoreError) -> LoginAttempt {
        guard User.isValidUsername(username) else {
            return .allowed(PendingLogin(username: username, client: client, markID: nil))
        }
        let counted = LoginAttemptWindow(now: now, policy: policy)
        let at = counted.at, window = counted.window, windowStart = counted.start, retention = counted.retention
        let key = PGValue.bytes(client.bytes)
        let operation = "begin login attempt for \(username)"
        return try perform(operation) { connection throws -> LoginAttempt in
            try connection.transaction(operation) { () throws -> LoginAttempt in
                _ = try connection.run(SQL.lockUsername, [.text(username)], operation)
                let counts = try connection.run(SQL.countAttempts, [.text(username), key, .int(windowStart)], operation)
                let perClientCount = Int(try counts.requiredInt(0, 0)), perUsernameCount = Int(try counts.requiredInt(0, 1))
                // Nil while fewer than `limit`; else when the limit frees
                // up: once enough of the oldest have left the window to
                // leave `limit - 1` (SQLiteStore.lockout).
                func lockout(_ count: Int, _ limit: Int, _ pivot: PGStatement, _ parameters: [PGValue]) throws -> Int64? {
                    guard count >= max(0, limit) else { return nil }
                    let result = try connection.run(pivot, parameters + [.int(count - max(0, limit))], operation)
                    return (try result.int(0, 0) ?? windowStart) + window
                }
                let perClient = try lockout(perClientCount, policy.perClient, SQL.clientPivot,
                                            [.text(username), key, .int(windowStart)])
                let perUsername = try lockout(perUsernameCount, policy.perUsername, SQL.usernamePivot,
                                              [.text(username), .int(windowStart)])
                // Locked until both limits have room again; nothing stored
                // (the transaction ends with nothing written).
                if let freedAt = [perClient, perUsername].compactMap({ $0 }).max() {
                    return .locked(retryAt: StoredDate.date(freedAt), scope: perUsername == freedAt ? .username : .client)
                }
                _ = try connection.run(SQL.pruneAttempts, [.int(at - retention)], operation)
                let mark = try connection.run(SQL.markAttempt, [.text(username), key, .int(at)], operation)
                return .allowed(PendingLogin(username: username, client: client, markID: try mark.requiredInt(0, 0)))
            }
        }
    }

    public func finishLoginAttempt(_ attempt: PendingLogin, _ outcome: LoginOutcome) throws(StoreError) {
        guard let markID = attempt.markID else { return }
        let operation = "finish login attempt for \(attempt.username)"
        try perform(operation) { connection throws in
            switch outcome {
            case .failed:
                // Stays, now as a failure (if `removeUser` took it meanwhile, so be it).
                _ = try connection.run(SQL.attemptFailed, [.int(markID)], operation)
            case .succeeded:
                // This mark and this client's failures for the name; other
                // clients' failures and pending marks stay.
                _ = try connection.run(SQL.attemptSucceeded, [.int(markID), .text(attempt.username),
                                                              .bytes(attempt.client.bytes)], operation)
            case .abandoned:
                _ = try connection.run(SQL.attemptAbandoned, [.int(markID)], operation)
            }
        }
    }

    public func loginFailureCount(_ username: String, from client: LoginClient?, since: Date) throws(StoreError) -> Int {
        guard User.isValidUsername(username) else { return 0 }
        let start = StoredDate.milliseconds(since)
        let operation = "count failed logins for \(username)"
        return try perform(operation) { connection throws -> Int in
            let result = try client.map { client throws in
                try connection.run(SQL.failureCountFromClient, [.text(username), .int(start), .bytes(client.bytes)], operation)
            } ?? connection.run(SQL.failureCount, [.text(username), .int(start)], operation)
            return Int(try result.requiredInt(0, 0))
        }
    }

    // MARK: Idempotency keys

    /// One transaction: delete a batch of expired records, then insert the
    /// claim if the key is free (ON CONFLICT DO NOTHING: of concurrent
    /// claims from any host, one inserts, the others wait for it and find
    /// its row), else lock the record and decide as SQLiteStore does.
    public func claimIdempotencyKey(_ key: [UInt8], for username: String, fingerprint: [UInt8], at now: Date,
                                    ttl: TimeInterval, staleAfter: TimeInterval,
                                    abandonedAnswer: IdempotentAnswer) throws(StoreError) -> IdempotencyClaim {
        try IdempotencyLimits.requireValidClaim(key, for: username, fingerprint: fingerprint, abandonedAnswer: abandonedAnswer)
        let at = StoredDate.milliseconds(now)
        let expiresAt = at + IdempotencyLimits.milliseconds(ttl)
        let staleAfter = IdempotencyLimits.milliseconds(staleAfter)
        let token = IdempotencyLimits.newClaimToken()
        let record: [PGValue] = [.text(username), .bytes(key)]
        let fresh: [PGValue] = record + [.bytes(fingerprint), .bytes(token), .int(at), .int(expiresAt)]
        let claimed = IdempotencyClaim.claimed(IdempotencyClaimID(username: username, key: key, token: token))
        let operation = "claim an idempotency key of \(username)"
        return try perform(operation) { connection throws -> IdempotencyClaim in
            try connection.transaction(operation) { () throws -> IdempotencyClaim in
                _ = try connection.run(SQL.deleteExpiredKeys, [.int(at), .int(SQLiteStore.expiredRecordsPerClaim)], operation)
                // A record deleted between the insert and the lock (released
                // by its claimer) frees the key: insert again.
                for _ in 0..<3 {
                    if try connection.run(SQL.insertClaim, fresh, operation).affectedRows == 1 { return claimed }
                    let stored = try connection.run(SQL.lockKey, record, operation)
                    guard stored.rowCount == 1 else { continue }
                    guard try stored.requiredInt(0, 2) > at else {
                        // Expired (and not in this claim's batch): a fresh claim.
                        _ = try connection.run(SQL.reclaimKey, fresh, operation)
                        return claimed
                    }
                    guard try stored.requiredBytes(0, 0) == fingerprint else { return .mismatch }
                    if let status = try stored.int(0, 3) {
                        guard let headers = IdempotencyKeyRecord.decodeHeaders(Data(try stored.requiredBytes(0, 4))) else {
                            throw StoreError.database("an idempotency record's stored headers do not decode")
                        }
                        return .replay(IdempotentAnswer(status: Int(status), headers: headers,
                                                        body: try stored.requiredBytes(0, 5)))
                    }
                    guard try stored.requiredInt(0, 1) + staleAfter <= at else { return .inFlight }
                    _ = try connection.run(SQL.abandonKey, record + Self.answerParameters(abandonedAnswer), operation)
                    return .abandoned(abandonedAnswer)
                }
                throw StoreError.database("\(operation): the record kept changing under the claim")
            }
        }
    }

    public func completeIdempotencyKey(_ claim: IdempotencyClaimID, answer: IdempotentAnswer) throws(StoreError) {
        try IdempotencyLimits.requireValid(answer)
        let operation = "complete an idempotency key of \(claim.username)"
        try perform(operation) { connection throws in
            _ = try connection.run(SQL.completeKey, [.text(claim.username), .bytes(claim.key), .bytes(claim.token)]
                                       + Self.answerParameters(answer), operation)
        }
    }

    public func releaseIdempotencyKey(_ claim: IdempotencyClaimID) throws(StoreError) {
        let operation = "release an idempotency key of \(claim.username)"
        try perform(operation) { connection throws in
            _ = try connection.run(SQL.releaseKey, [.text(claim.username), .bytes(claim.key), .bytes(claim.token)],
                                   operation)
        }
    }

    private static func answerParameters(_ answer: IdempotentAnswer) -> [PGValue] {
        [.int(answer.status), .bytes(Array(IdempotencyKeyRecord.encodeHeaders(answer.headers))), .bytes(answer.body)]
    }

    // MARK: Key fingerprints

    public func keyFingerprint(named name: String) throws(StoreError) -> [UInt8]? {
        try KeyFingerprints.requireValid(name: name)
        return try perform("read the fingerprint of key \(name)") { connection throws -> [UInt8]? in
            try connection.run(SQL.keyFingerprint, [.text(name)], "read the fingerprint of key \(name)").bytes(0, 0)
        }
    }

    public func setKeyFingerprint(named name: String, _ fingerprint: [UInt8]) throws(StoreError) {
        try KeyFingerprints.requireValid(name: name, fingerprint: fingerprint)
        try perform("record the fingerprint of key \(name)") { connection throws in
            _ = try connection.run(SQL.setKeyFingerprint, [.text(name), .bytes(fingerprint)],
                                   "record the fingerprint of key \(name)")
        }
    }

    // MARK: Helpers

    /// Runs `body` on this thread's connection, turning any error into a
    /// StoreError.
    func perform<T>(_ operation: String, _ body: (PGConnection) throws -> T) throws(StoreError) -> T {
        do {
            return try body(try connections.value())
        } catch {
            throw Self.wrap(error, operation)
        }
    }

    static func wrap(_ error: any Error, _ operation: String) -> StoreError {
        switch error {
        case let error as StoreError: return error
        case let error as PGStatementError: return error.error
        default: return .database("\(operation): \(type(of: error))")
        }
    }
}

// The records' PostgreSQL side: built from a result's columns (binary
// format), and the integration's values for `upsertIntegration`. The same
// records as SQLite's, so sealing and opening are the same code.
extension UserRecord {
    /// Reads `PostgresStatements.userColumns` starting at column `first`.
    init(_ result: PGResult, row: Int, from first: Int) throws(StoreError) {
        id = try result.requiredInt(row, first)
        username = try result.requiredText(row, first + 1)
        passwordHash = try result.requiredText(row, first + 2)
        isDisabled = try result.requiredBool(row, first + 3)
        tokenVersion = try result.requiredInt(row, first + 4)
        createdAtMilliseconds = try result.requiredInt(row, first + 5)
        allowedRecipients = try result.text(row, first + 6)
        var quota = SendQuota()
        quota.perWindow[.minute] = try result.int(row, first + 7).map { Int($0) }
        quota.perWindow[.hour] = try result.int(row, first + 8).map { Int($0) }
        quota.perWindow[.day] = try result.int(row, first + 9).map { Int($0) }
        sendQuota = quota
    }
}

extension SMTPIntegrationRecord {
    /// Reads `PostgresStatements.integrationColumns` starting at column `first`.
    init(_ result: PGResult, row: Int, from first: Int) throws(StoreError) {
        func text(_ offset: Int) throws(StoreError) -> String? { try result.text(row, first + offset) }
        func data(_ offset: Int) -> Data? { result.bytes(row, first + offset).map { Data($0) } }
        userID = try result.requiredInt(row, first)
        host = try result.requiredText(row, first + 1)
        port = Int(try result.requiredInt(row, first + 2))
        guard let security = SMTPIntegration.Security(rawValue: try result.requiredText(row, first + 3)) else {
            throw .database("smtp_integrations row \(userID): unknown security")
        }
        self.security = security
        username = try text(4)
        sealedPassword = data(5)
        fromAddress = try result.requiredText(row, first + 6)
        fromName = try text(7)
        updatedAtMilliseconds = try result.requiredInt(row, first + 8)
        sealVersion = Int(try result.requiredInt(row, first + 9))
        guard let auth = AuthKind(rawValue: try result.requiredText(row, first + 10)) else {
            throw .database("smtp_integrations row \(userID): unknown auth")
        }
        self.auth = auth
        let provider = try text(11)
        oauth2Provider = try provider.map { name throws(StoreError) in
            guard let provider = OAuth2Credentials.Provider(rawValue: name) else {
                throw .database("smtp_integrations row \(userID): unknown OAuth2 provider")
            }
            return provider
        }
        oauth2TokenURL = try text(12)
        oauth2AuthorizationURL = try text(13)
        oauth2ClientID = try text(14)
        oauth2SealedClientSecret = data(15)
        oauth2SealedRefreshToken = data(16)
        oauth2Scope = try text(17)
        oauth2Tenant = try text(18)
    }

    /// The values of `PostgresStatements.upsertIntegration`, in its order.
    var postgresParameters: [PGValue] {
        [
            .int(userID), .text(host), .int(port), .text(security.rawValue), .optionalText(username),
            .optionalBytes(sealedPassword), .text(fromAddress), .optionalText(fromName), .int(updatedAtMilliseconds),
            .int(sealVersion), .text(auth.rawValue), .optionalText(oauth2Provider?.rawValue),
            .optionalText(oauth2TokenURL), .optionalText(oauth2AuthorizationURL), .optionalText(oauth2ClientID),
            .optionalBytes(oauth2SealedClientSecret), .optionalBytes(oauth2SealedRefreshToken),
            .optionalText(oauth2Scope), .optionalText(oauth2Tenant),
        ]
    }
}
