import Foundation
import GRDB

// One record type per table (GRDB's "Recommended Practices for Designing
// Record Types"): the table's name, its named `Columns`, and decoding by
// column name; stored strings read as enums; raw storage forms
// (milliseconds, sealed bytes) kept here and out of the models. SQLiteStore
// writes with SQL over these names (see the note there).

/// A row of `users`.
struct UserRecord: FetchableRecord, TableRecord, Sendable, Equatable {
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

/// How the stored OAuth2 provider is read and written.
extension OAuth2Credentials.Provider: DatabaseValueConvertible {}

/// A row of `smtp_integrations`: the integration with its password and
/// OAuth2 secrets sealed.
struct SMTPIntegrationRecord: FetchableRecord, TableRecord, Equatable {
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
        static let auth = Column("auth")
        static let oauth2Provider = Column("oauth2_provider")
        static let oauth2TokenURL = Column("oauth2_token_url")
        static let oauth2AuthorizationURL = Column("oauth2_authorization_url")
        static let oauth2ClientID = Column("oauth2_client_id")
        static let oauth2SealedClientSecret = Column(PasswordSeal.OAuth2Secret.clientSecret.rawValue)
        static let oauth2SealedRefreshToken = Column(PasswordSeal.OAuth2Secret.refreshToken.rawValue)
        static let oauth2Scope = Column("oauth2_scope")
        static let oauth2Tenant = Column("oauth2_tenant")
    }

    /// The stored `auth` text.
    enum AuthKind: String, DatabaseValueConvertible {
        case none, password, oauth2
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
    var auth: AuthKind
    var oauth2Provider: OAuth2Credentials.Provider?
    var oauth2TokenURL: String?
    var oauth2AuthorizationURL: String?
    var oauth2ClientID: String?
    var oauth2SealedClientSecret: Data?
    var oauth2SealedRefreshToken: Data?
    var oauth2Scope: String?
    var oauth2Tenant: String?

    /// The row for `owner`'s `integration`, its secrets sealed.
    init(userID: Int64, owner: String, integration: SMTPIntegration, seal: PasswordSeal) throws(StoreError) {
        self.userID = userID
        host = integration.host
        port = integration.port
        security = integration.security
        username = integration.username
        fromAddress = integration.fromAddress
        fromName = integration.fromName
        updatedAtMilliseconds = StoredDate.milliseconds(integration.updatedAt)
        sealVersion = PasswordSeal.currentVersion
        let smtpBinding = PasswordSeal.Binding(username: owner, integration: integration)
        switch integration.authentication {
        case .none:
            auth = .none
        case .password(_, let password):
            auth = .password
            sealedPassword = try seal.seal(password, for: smtpBinding)
        case .oauth2(_, let credentials):
            auth = .oauth2
            oauth2Provider = credentials.provider
            oauth2TokenURL = credentials.tokenURL
            oauth2AuthorizationURL = credentials.authorizationURL
            oauth2ClientID = credentials.clientID
            oauth2Scope = credentials.scope
            oauth2Tenant = credentials.tenant
            let binding = PasswordSeal.OAuth2Binding(smtp: smtpBinding, tokenURL: credentials.tokenURL,
                                                     clientID: credentials.clientID)
            oauth2SealedClientSecret = try credentials.clientSecret.map { secret throws(StoreError) in
                try seal.seal(secret, as: .clientSecret, for: binding)
            }
            oauth2SealedRefreshToken = try credentials.refreshToken.map { token throws(StoreError) in
                try seal.seal(token, as: .refreshToken, for: binding)
            }
        }
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
        auth = try row.decode(forColumn: Columns.auth)
        oauth2Provider = try row.decode(forColumn: Columns.oauth2Provider)
        oauth2TokenURL = try row.decode(forColumn: Columns.oauth2TokenURL)
        oauth2AuthorizationURL = try row.decode(forColumn: Columns.oauth2AuthorizationURL)
        oauth2ClientID = try row.decode(forColumn: Columns.oauth2ClientID)
        oauth2SealedClientSecret = try row.decode(forColumn: Columns.oauth2SealedClientSecret)
        oauth2SealedRefreshToken = try row.decode(forColumn: Columns.oauth2SealedRefreshToken)
        oauth2Scope = try row.decode(forColumn: Columns.oauth2Scope)
        oauth2Tenant = try row.decode(forColumn: Columns.oauth2Tenant)
    }

    /// Every column and its value, for writing the whole row.
    var columnValues: [(column: Column, value: (any DatabaseValueConvertible)?)] {
        [
            (Columns.userID, userID), (Columns.host, host), (Columns.port, port), (Columns.security, security),
            (Columns.username, username), (Columns.sealedPassword, sealedPassword), (Columns.fromAddress, fromAddress),
            (Columns.fromName, fromName), (Columns.updatedAt, updatedAtMilliseconds), (Columns.sealVersion, sealVersion),
            (Columns.auth, auth), (Columns.oauth2Provider, oauth2Provider), (Columns.oauth2TokenURL, oauth2TokenURL),
            (Columns.oauth2AuthorizationURL, oauth2AuthorizationURL), (Columns.oauth2ClientID, oauth2ClientID),
            (Columns.oauth2SealedClientSecret, oauth2SealedClientSecret),
            (Columns.oauth2SealedRefreshToken, oauth2SealedRefreshToken),
            (Columns.oauth2Scope, oauth2Scope), (Columns.oauth2Tenant, oauth2Tenant),
        ]
    }

    /// What the row's password is bound to.
    func sealBinding(owner: String) -> PasswordSeal.Binding {
        PasswordSeal.Binding(username: owner, host: host, port: port, security: security, login: username)
    }

    /// What the row's OAuth2 secrets are bound to; nil for other rows.
    func oauth2SealBinding(owner: String) -> PasswordSeal.OAuth2Binding? {
        guard auth == .oauth2, let oauth2TokenURL, let oauth2ClientID else { return nil }
        return PasswordSeal.OAuth2Binding(smtp: sealBinding(owner: owner), tokenURL: oauth2TokenURL, clientID: oauth2ClientID)
    }

    /// Who the row's refresh token was issued to; nil for other rows.
    var refreshTokenOwner: RefreshTokenOwner? {
        guard auth == .oauth2, let oauth2TokenURL, let oauth2ClientID, let username else { return nil }
        return RefreshTokenOwner(tokenURL: oauth2TokenURL, clientID: oauth2ClientID, mailbox: username)
    }

    /// The model, its secrets opened. Throws `.corruptSecret` /
    /// `.corruptOAuth2Secret` for secrets that do not open, `.database`
    /// for an OAuth2 row without its required columns.
    func integration(owner: String, seal: PasswordSeal) throws(StoreError) -> SMTPIntegration {
        let authentication: SMTPIntegration.Authentication
        switch auth {
        case .none:
            authentication = .none
        case .password:
            // Only a row altered behind the store's back: the password was
            // sealed for a login, which is gone.
            guard let username else { throw .corruptSecret(owner) }
            let password = try sealedPassword.map { sealed throws(StoreError) in
                // Only the current version is ever used: see PasswordSeal.
                guard sealVersion == PasswordSeal.currentVersion else { throw StoreError.corruptSecret(owner) }
                return try seal.open(sealed, for: sealBinding(owner: owner))
            }
            // A row from before passwords were required (none stored) logs
            // in with the empty one, as the client always did with it.
            authentication = .password(username: username, password: password ?? "")
        case .oauth2:
            guard let username, let provider = oauth2Provider, let tokenURL = oauth2TokenURL,
                  let clientID = oauth2ClientID, let binding = oauth2SealBinding(owner: owner) else {
                throw .database("smtp_integrations row of \(owner): an OAuth2 login without its mailbox, provider, token URL or client id")
            }
            let clientSecret = try oauth2SealedClientSecret.map { sealed throws(StoreError) in
                try seal.open(sealed, as: .clientSecret, for: binding)
            }
            let refreshToken = try oauth2SealedRefreshToken.map { sealed throws(StoreError) in
                try seal.open(sealed, as: .refreshToken, for: binding)
            }
            authentication = .oauth2(username: username, OAuth2Credentials(
                provider: provider, tokenURL: tokenURL, authorizationURL: oauth2AuthorizationURL, clientID: clientID,
                clientSecret: clientSecret, refreshToken: refreshToken, scope: oauth2Scope ?? "", tenant: oauth2Tenant))
        }
        return SMTPIntegration(host: host, port: port, security: security, authentication: authentication,
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
