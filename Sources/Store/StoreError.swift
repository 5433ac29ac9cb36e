/// Store failures. Descriptions carry usernames and the database's message
/// but never password hashes, SMTP passwords, OAuth2 secrets or sealed bytes.
public enum StoreError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Not 1–64 characters of `A-Z a-z 0-9 . _ @ + -`. The rejected text is
    /// not echoed: people type passwords into username fields.
    case invalidUsername
    case userExists(String)
    case userNotFound(String)
    case integrationNotFound(String)
    /// A field of an SMTP integration is unusable; the string names the field.
    case invalidIntegration(String)
    /// No named token has this id.
    case tokenNotFound(String)
    /// A named token's name is empty, over 64 bytes or has control characters.
    case invalidTokenName
    /// An idempotency key that is empty or over 255 bytes.
    case invalidIdempotencyKey
    /// A recipient pattern does not parse; the string quotes it and says why.
    case invalidRecipientPattern(String)
    /// A stored SMTP password cannot be decrypted (wrong key file, or the
    /// row was modified or copied from another user). Names the user.
    case corruptSecret(String)
    /// A stored OAuth2 client secret or refresh token cannot be decrypted
    /// (as `corruptSecret`; also when the row's token URL or client id
    /// changed since sealing). Names the user.
    case corruptOAuth2Secret(String)
    /// A refresh token was not stored: the user's integration no longer
    /// uses the OAuth2 client and mailbox it was issued to (changed
    /// meanwhile). Names the user.
    case integrationChanged(String)
    /// Sealing a secret (SMTP password, OAuth2 secret) failed (OpenSSL); the string says which call.
    case crypto(String)
    /// A database failure: the operation and the database's message.
    case database(String)
    /// The database cannot be reached: no connection could be made, or the
    /// connection was lost or gave no answer in time (a shared server down
    /// or restarting). Worth retrying later, unlike `.database` (a statement
    /// the database refused); the application answers 503. Names the
    /// operation and the server (its password redacted), never parameters.
    case unavailable(String)
    /// `importRecords` into a store that already holds users (or the token
    /// versions of removed ones): records are only copied into an empty
    /// store, never merged.
    case targetNotEmpty
    /// `importRecords` into a store that records another fingerprint for
    /// this key (e.g. "secret.key"): it was initialised with other key files.
    case keyMismatch(String)

    public var description: String {
        switch self {
        case .invalidUsername:
            return "invalid username: use 1-64 characters of A-Z a-z 0-9 . _ @ + -"
        case .userExists(let name): return "user \(name) already exists"
        case .userNotFound(let name): return "no user named \(name)"
        case .integrationNotFound(let name): return "user \(name) has no SMTP integration"
        case .invalidIntegration(let field): return "invalid SMTP integration: \(field)"
        case .tokenNotFound(let id): return "no named token with id \(id)"
        case .invalidTokenName: return "invalid token name: use 1-64 bytes without control characters"
        case .invalidIdempotencyKey: return "invalid idempotency key: use 1-255 bytes"
        case .invalidRecipientPattern(let reason): return "invalid recipient pattern \(reason)"
        case .corruptSecret(let name):
            return "cannot decrypt the stored SMTP password of user \(name) (wrong secret key file, or the row was altered)"
        case .corruptOAuth2Secret(let name):
            return "cannot decrypt the stored OAuth2 client secret or refresh token of user \(name) (wrong secret key file, or the row was altered)"
        case .integrationChanged(let name):
            return "the SMTP integration of user \(name) changed meanwhile (another OAuth2 client, token URL or mailbox); the refresh token was not stored"
        case .crypto(let message): return "encryption failed: \(message)"
        case .database(let message): return "database error: \(message)"
        case .unavailable(let message): return "database unavailable: \(message)"
        case .targetNotEmpty:
            return "the target store is not empty (it holds users, or token versions of removed users); copy only into a new, empty store"
        case .keyMismatch(let name):
            return "the target store was initialised with another \(name) than the records copied: every store and host needs the same key files"
        }
    }
}
