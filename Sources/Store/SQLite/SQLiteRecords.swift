import Foundation
import GRDB

// One record type per table, each responsible for its table (GRDB's
// "Recommended Practices for Designing Record Types"): named `Columns`,
// stored strings read as enums, raw storage forms (milliseconds, sealed
// bytes) kept here and out of the models.

/// A row of `users`.
struct UserRecord: FetchableRecord, MutablePersistableRecord {
    static let databaseTableName = "users"

    enum Columns {
        static let id = Column("id")
        static let username = Column("username")
        static let passwordHash = Column("password_hash")
        static let isDisabled = Column("is_disabled")
        static let tokenVersion = Column("token_version")
        static let createdAt = Column("created_at_ms")
    }

    /// nil until inserted.
    var id: Int64?
    var username: String
    var passwordHash: String
    var isDisabled: Bool
    var tokenVersion: Int64
    var createdAtMilliseconds: Int64

    init(username: String, passwordHash: String, tokenVersion: Int64, createdAt: Date) {
        id = nil
        self.username = username
        self.passwordHash = passwordHash
        isDisabled = false
        self.tokenVersion = tokenVersion
        createdAtMilliseconds = StoredDate.milliseconds(createdAt)
    }

    init(row: Row) throws {
        id = try row.decode(Int64.self, forColumn: Columns.id)
        username = try row.decode(forColumn: Columns.username)
        passwordHash = try row.decode(forColumn: Columns.passwordHash)
        isDisabled = try row.decode(forColumn: Columns.isDisabled)
        tokenVersion = try row.decode(forColumn: Columns.tokenVersion)
        createdAtMilliseconds = try row.decode(forColumn: Columns.createdAt)
    }

    func encode(to container: inout PersistenceContainer) {
        container[Columns.id] = id
        container[Columns.username] = username
        container[Columns.passwordHash] = passwordHash
        container[Columns.isDisabled] = isDisabled
        container[Columns.tokenVersion] = tokenVersion
        container[Columns.createdAt] = createdAtMilliseconds
    }

    mutating func didInsert(_ inserted: InsertionSuccess) {
        id = inserted.rowID
    }

    /// The model; only a record read from (or inserted into) the table has one.
    func user() throws(StoreError) -> User {
        guard let id else { throw .database("user \(username) has no id") }
        return User(id: id, username: username, passwordHash: passwordHash, isDisabled: isDisabled,
                    tokenVersion: tokenVersion, createdAt: StoredDate.date(createdAtMilliseconds))
    }
}

extension DerivableRequest<UserRecord> {
    func filter(username: String) -> Self {
        filter(UserRecord.Columns.username == username)
    }
}

/// A row of `removed_usernames`: the token version a user re-created under
/// a removed user's name starts from.
struct RemovedUsernameRecord: FetchableRecord, PersistableRecord {
    static let databaseTableName = "removed_usernames"

    enum Columns {
        static let username = Column("username")
        static let nextTokenVersion = Column("next_token_version")
    }

    var username: String
    var nextTokenVersion: Int64

    init(username: String, nextTokenVersion: Int64) {
        self.username = username
        self.nextTokenVersion = nextTokenVersion
    }

    init(row: Row) throws {
        username = try row.decode(forColumn: Columns.username)
        nextTokenVersion = try row.decode(forColumn: Columns.nextTokenVersion)
    }

    func encode(to container: inout PersistenceContainer) {
        container[Columns.username] = username
        container[Columns.nextTokenVersion] = nextTokenVersion
    }
}

/// The stored security string is read and written as the model's enum; a
/// value outside it fails to decode (the schema's CHECK refuses it anyway).
extension SMTPIntegration.Security: DatabaseValueConvertible {}

/// A row of `smtp_integrations`: the integration with its password sealed.
struct SMTPIntegrationRecord: FetchableRecord, PersistableRecord {
    static let databaseTableName = "smtp_integrations"

    enum Columns {
        static let userID = Column("user_id")
        static let host = Column("host")
        static let port = Column("port")
        static let security = Column("security")
        static let username = Column("username")
        static let sealedPassword = Column("password_sealed")
        static let fromAddress = Column("from_address")
        static let fromName = Column("from_name")
        static let updatedAt = Column("updated_at_ms")
    }

    var userID: Int64
    var host: String
    var port: Int
    var security: SMTPIntegration.Security
    var username: String?
    /// `PasswordSeal` output; nil when the integration has no password.
    var sealedPassword: Data?
    var fromAddress: String
    var fromName: String?
    var updatedAtMilliseconds: Int64

    init(userID: Int64, integration: SMTPIntegration, sealedPassword: Data?) {
        self.userID = userID
        host = integration.host
        port = integration.port
        security = integration.security
        username = integration.username
        self.sealedPassword = sealedPassword
        fromAddress = integration.fromAddress
        fromName = integration.fromName
        updatedAtMilliseconds = StoredDate.milliseconds(integration.updatedAt)
    }

    init(row: Row) throws {
        userID = try row.decode(forColumn: Columns.userID)
        host = try row.decode(forColumn: Columns.host)
        port = try row.decode(forColumn: Columns.port)
        security = try row.decode(forColumn: Columns.security)
        username = try row.decode(forColumn: Columns.username)
        sealedPassword = try row.decode(forColumn: Columns.sealedPassword)
        fromAddress = try row.decode(forColumn: Columns.fromAddress)
        fromName = try row.decode(forColumn: Columns.fromName)
        updatedAtMilliseconds = try row.decode(forColumn: Columns.updatedAt)
    }

    func encode(to container: inout PersistenceContainer) {
        container[Columns.userID] = userID
        container[Columns.host] = host
        container[Columns.port] = port
        container[Columns.security] = security
        container[Columns.username] = username
        container[Columns.sealedPassword] = sealedPassword
        container[Columns.fromAddress] = fromAddress
        container[Columns.fromName] = fromName
        container[Columns.updatedAt] = updatedAtMilliseconds
    }

    /// The model, with the password already opened (or nil).
    func integration(password: String?) -> SMTPIntegration {
        SMTPIntegration(host: host, port: port, security: security, username: username, password: password,
                        fromAddress: fromAddress, fromName: fromName,
                        updatedAt: StoredDate.date(updatedAtMilliseconds))
    }
}

/// A row of `login_failures`.
struct LoginFailureRecord: FetchableRecord, PersistableRecord {
    static let databaseTableName = "login_failures"

    enum Columns {
        static let id = Column("id")
        static let username = Column("username")
        static let failedAt = Column("failed_at_ms")
    }

    var username: String
    var failedAtMilliseconds: Int64

    init(username: String, failedAt: Date) {
        self.username = username
        failedAtMilliseconds = StoredDate.milliseconds(failedAt)
    }

    init(row: Row) throws {
        username = try row.decode(forColumn: Columns.username)
        failedAtMilliseconds = try row.decode(forColumn: Columns.failedAt)
    }

    /// No id: SQLite assigns it.
    func encode(to container: inout PersistenceContainer) {
        container[Columns.username] = username
        container[Columns.failedAt] = failedAtMilliseconds
    }
}

extension DerivableRequest<LoginFailureRecord> {
    func filter(username: String) -> Self {
        filter(LoginFailureRecord.Columns.username == username)
    }

    func filter(username: String, since: Date) -> Self {
        filter(LoginFailureRecord.Columns.username == username
               && LoginFailureRecord.Columns.failedAt >= StoredDate.milliseconds(since))
    }

    func filter(failedBeforeMilliseconds cutoff: Int64) -> Self {
        filter(LoginFailureRecord.Columns.failedAt < cutoff)
    }
}
