import Foundation
import GRDB

// One record type per table (GRDB's "Recommended Practices for Designing
// Record Types"): the table's name, its named `Columns`, and decoding by
// column name; stored strings read as enums; raw storage forms
// (milliseconds, sealed bytes) kept here and out of the models. SQLiteStore
// writes with SQL over these names (see the note there).

/// A row of `users`.
struct UserRecord: FetchableRecord, TableRecord {
    static let databaseTableName = "users"

    enum Columns {
        static let id = Column("id")
        static let username = Column("username")
        static let passwordHash = Column("password_hash")
        static let isDisabled = Column("is_disabled")
        static let tokenVersion = Column("token_version")
        static let createdAt = Column("created_at_ms")
        static let allowedRecipients = Column("allowed_recipients")
        static let quotaPerMinute = Column("quota_per_minute")
        static let quotaPerHour = Column("quota_per_hour")
        static let quotaPerDay = Column("quota_per_day")
    }

    var id: Int64
    var username: String
    var passwordHash: String
    var isDisabled: Bool
    var tokenVersion: Int64
    var createdAtMilliseconds: Int64
    /// `RecipientPolicy`'s stored form; nil: any recipient.
    var allowedRecipients: String?
    var sendQuota: SendQuota

    init(row: Row) throws {
        id = try row.decode(forColumn: Columns.id)
        username = try row.decode(forColumn: Columns.username)
        passwordHash = try row.decode(forColumn: Columns.passwordHash)
        isDisabled = try row.decode(forColumn: Columns.isDisabled)
        tokenVersion = try row.decode(forColumn: Columns.tokenVersion)
        createdAtMilliseconds = try row.decode(forColumn: Columns.createdAt)
        allowedRecipients = try row.decode(forColumn: Columns.allowedRecipients)
        var quota = SendQuota()
        quota.perWindow[.minute] = try row.decode(forColumn: Columns.quotaPerMinute)
        quota.perWindow[.hour] = try row.decode(forColumn: Columns.quotaPerHour)
        quota.perWindow[.day] = try row.decode(forColumn: Columns.quotaPerDay)
        sendQuota = quota
    }

    var user: User {
        User(id: id, username: username, passwordHash: passwordHash, isDisabled: isDisabled,
             tokenVersion: tokenVersion, createdAt: StoredDate.date(createdAtMilliseconds))
    }
}

/// A row of `removed_usernames`: the token version a user re-created under
/// a removed user's name starts from.
struct RemovedUsernameRecord: TableRecord {
    static let databaseTableName = "removed_usernames"

    enum Columns {
        static let username = Column("username")
        static let nextTokenVersion = Column("next_token_version")
    }
}

/// The stored security string is read and written as the model's enum; a
/// value outside it fails to decode (the schema's CHECK refuses it anyway).
extension SMTPIntegration.Security: DatabaseValueConvertible {}

/// A row of `smtp_integrations`: the integration with its password sealed.
struct SMTPIntegrationRecord: FetchableRecord, TableRecord {
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
        static let sealVersion = Column("password_seal_version")
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
    /// Which `PasswordSeal` version sealed the password.
    var sealVersion: Int

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
        sealVersion = PasswordSeal.currentVersion
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
        sealVersion = try row.decode(forColumn: Columns.sealVersion)
    }

    /// What the row's password is bound to.
    func sealBinding(owner: String) -> PasswordSeal.Binding {
        PasswordSeal.Binding(username: owner, host: host, port: port, security: security, login: username)
    }

    /// The model, with the password already opened (or nil).
    func integration(password: String?) -> SMTPIntegration {
        SMTPIntegration(host: host, port: port, security: security, username: username, password: password,
                        fromAddress: fromAddress, fromName: fromName,
                        updatedAt: StoredDate.date(updatedAtMilliseconds))
    }
}

/// A row of `login_attempts`: an attempt that counts as a failed login,
/// pending while its password is checked. Keyed by the username text (so
/// unknown names are throttled too) and the client key bytes.
struct LoginAttemptRecord: TableRecord {
    static let databaseTableName = "login_attempts"

    enum Columns {
        static let id = Column("id")
        static let username = Column("username")
        static let client = Column("client")
        static let attemptedAt = Column("attempted_at_ms")
        static let isPending = Column("is_pending")
    }
}

/// A row of `named_tokens` joined with its user's name.
struct NamedTokenRecord: FetchableRecord, TableRecord {
    static let databaseTableName = "named_tokens"

    enum Columns {
        static let id = Column("id")
        static let userID = Column("user_id")
        static let name = Column("name")
        static let createdAt = Column("created_at_ms")
        static let expiresAt = Column("expires_at_ms")
        static let lastUsedDay = Column("last_used_day")
        static let revokedAt = Column("revoked_at_ms")
    }

    /// Selects every field of `NamedTokenRecord` for rows `t` joined to users `u`.
    static let selection = """
        SELECT t.id, u.username, t.name, t.created_at_ms, t.expires_at_ms, t.last_used_day, t.revoked_at_ms
        FROM named_tokens t JOIN users u ON u.id = t.user_id
        """

    var token: NamedToken

    init(row: Row) throws {
        token = NamedToken(
            id: try row.decode(atIndex: 0), username: try row.decode(atIndex: 1), name: try row.decode(atIndex: 2),
            createdAt: StoredDate.date(try row.decode(atIndex: 3)), expiresAt: StoredDate.date(try row.decode(atIndex: 4)),
            lastUsedDay: try row.decode(atIndex: 5),
            revokedAt: (try row.decode(atIndex: 6) as Int64?).map(StoredDate.date))
    }
}

/// A row of `idempotency_keys`: a user's key, in flight (`status` NULL) or
/// with its stored answer.
struct IdempotencyKeyRecord: FetchableRecord, TableRecord {
    static let databaseTableName = "idempotency_keys"

    enum Columns {
        static let username = Column("username")
        static let key = Column("key")
        static let fingerprint = Column("fingerprint")
        static let claim = Column("claim")
        static let claimedAt = Column("claimed_at_ms")
        static let expiresAt = Column("expires_at_ms")
        static let status = Column("status")
        static let headers = Column("headers")
        static let body = Column("body")
    }

    var fingerprint: Data
    var claimedAtMilliseconds: Int64
    var expiresAtMilliseconds: Int64
    /// nil while in flight.
    var answer: IdempotentAnswer?

    init(row: Row) throws {
        fingerprint = try row.decode(forColumn: Columns.fingerprint)
        claimedAtMilliseconds = try row.decode(forColumn: Columns.claimedAt)
        expiresAtMilliseconds = try row.decode(forColumn: Columns.expiresAt)
        if let status: Int = try row.decode(forColumn: Columns.status) {
            let headers: Data = try row.decode(forColumn: Columns.headers)
            let body: Data = try row.decode(forColumn: Columns.body)
            guard let decoded = Self.decodeHeaders(headers) else {
                throw StoreError.database("an idempotency record's stored headers do not decode")
            }
            answer = IdempotentAnswer(status: status, headers: decoded, body: Array(body))
        }
    }

    /// The stored form of headers: per header, the name's UTF-8 length
    /// (4 bytes, big-endian), the name, the value's length, the value.
    static func encodeHeaders(_ headers: [StoredHeader]) -> Data {
        var out = Data()
        func append(_ text: String) {
            let bytes = Array(text.utf8)
            withUnsafeBytes(of: UInt32(bytes.count).bigEndian) { out.append(contentsOf: $0) }
            out.append(contentsOf: bytes)
        }
        for header in headers {
            append(header.name)
            append(header.value)
        }
        return out
    }

    /// nil unless `data` is exactly a sequence of `encodeHeaders` fields
    /// holding valid UTF-8.
    static func decodeHeaders(_ data: Data) -> [StoredHeader]? {
        let bytes = [UInt8](data)
        var index = 0
        func text() -> String? {
            guard bytes.count - index >= 4 else { return nil }
            let length = bytes[index..<index + 4].reduce(0) { $0 << 8 | Int($1) }
            index += 4
            guard bytes.count - index >= length else { return nil }
            defer { index += length }
            return String(validating: bytes[index..<index + length], as: UTF8.self)
        }
        var headers: [StoredHeader] = []
        while index < bytes.count {
            guard let name = text(), let value = text() else { return nil }
            headers.append(StoredHeader(name: name, value: value))
        }
        return headers
    }
}
