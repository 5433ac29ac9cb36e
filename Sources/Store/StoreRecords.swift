import Foundation

/// The durable records of a store, as stored, independent of the backend:
/// what `mailgate store copy` moves from one store to another
/// (`Store.exportRecords()`, then `Store.importRecords(_:)`).
///
/// Copied: users (name, password hash, disabled flag, token version,
/// creation time, recipient policy, send quota limits), the token versions
/// of removed users' names, SMTP integrations (every column, the OAuth2
/// ones included), named token records (expiry, last use, revocation) and
/// the key fingerprints. Sealed values (SMTP password, OAuth2 client secret
/// and refresh token) are copied byte for byte, never opened: both backends
/// seal with the same associated data (owner, host, port, security, login;
/// token URL and client id), none of it a row id, so the bytes open in the
/// target with the same `secret.key`. Token versions are kept, so tokens
/// issued before the copy keep working and revoked ones stay revoked.
///
/// Not copied, being transient and aging out on their own: login attempts
/// (lockouts start afresh), idempotency keys (a retry after the move sends
/// again), send counts (the current windows start at 0).
///
/// Row ids are not part of the snapshot: the target numbers its own rows,
/// and integrations and tokens refer to their user by name.
///
/// The fields are the store's own: a snapshot is made only by
/// `exportRecords()`. Its description gives counts only (password hashes
/// and sealed bytes never reach a log).
public struct StoreRecords: Sendable, Equatable {
    /// A row of `smtp_integrations`, its user by name (`record.userID` is
    /// 0 here; the target sets its own).
    struct IntegrationRow: Sendable, Equatable {
        var owner: String
        var record: SMTPIntegrationRecord

        init(owner: String, record: SMTPIntegrationRecord) {
            self.owner = owner
            var record = record
            record.userID = 0
            self.record = record
        }
    }

    /// A row of `named_tokens`, its user by name, times as stored.
    struct NamedTokenRow: Sendable, Equatable {
        var id: String
        var owner: String
        var name: String
        var createdAtMilliseconds: Int64
        var expiresAtMilliseconds: Int64
        var lastUsedDay: Int64?
        var revokedAtMilliseconds: Int64?
    }

    /// A row of `removed_usernames`.
    struct RemovedUsername: Sendable, Equatable {
        var username: String
        var nextTokenVersion: Int64
    }

    /// A row of `mailgate_keys`.
    struct KeyFingerprint: Sendable, Equatable {
        var name: String
        var fingerprint: [UInt8]
    }

    /// Each list in byte order of its key (username; owner, then creation
    /// and id for tokens; key name), the same on both backends, so two
    /// snapshots of the same records compare equal.
    /// Rows of `users`, their `id` 0 (see `UserRecord.withoutID`).
    var users: [UserRecord] = []
    var integrations: [IntegrationRow] = []
    var namedTokens: [NamedTokenRow] = []
    var removedUsernames: [RemovedUsername] = []
    var keyFingerprints: [KeyFingerprint] = []

    init() {}

    /// How many records of each kind the snapshot holds.
    public struct Counts: Sendable, Equatable {
        public let users: Int
        public let disabledUsers: Int
        public let integrations: Int
        public let namedTokens: Int
        public let removedUsernames: Int
        public let recipientPolicies: Int
        public let sendQuotas: Int
        public let keyFingerprints: Int
    }

    public var counts: Counts {
        Counts(users: users.count, disabledUsers: users.count(where: { $0.isDisabled }), integrations: integrations.count,
               namedTokens: namedTokens.count, removedUsernames: removedUsernames.count,
               recipientPolicies: users.count(where: { $0.allowedRecipients != nil }),
               sendQuotas: users.count(where: { !$0.sendQuota.perWindow.isEmpty }),
               keyFingerprints: keyFingerprints.count)
    }

    /// Refuses a snapshot whose integrations or tokens name a user it does
    /// not hold (the target could not attach them), or that holds a name
    /// twice. Only names appear in the message.
    func requireConsistent() throws(StoreError) {
        var names = Set<[UInt8]>()
        for user in users {
            guard User.isValidUsername(user.username) else { throw .invalidUsername }
            guard names.insert(Array(user.username.utf8)).inserted else {
                throw .database("the records to import hold user \(user.username) twice")
            }
        }
        for integration in integrations where !names.contains(Array(integration.owner.utf8)) {
            throw .database("the records to import hold an SMTP integration of user \(integration.owner), who is not among them")
        }
        for token in namedTokens where !names.contains(Array(token.owner.utf8)) {
            throw .database("the records to import hold named token \(token.id) of user \(token.owner), who is not among them")
        }
    }
}

// Counts only: the rows hold password hashes and sealed secrets.
extension StoreRecords: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var description: String {
        let c = counts
        return "StoreRecords(users: \(c.users), integrations: \(c.integrations), namedTokens: \(c.namedTokens), "
            + "removedUsernames: \(c.removedUsernames), keyFingerprints: \(c.keyFingerprints))"
    }

    public var debugDescription: String { description }

    public var customMirror: Mirror {
        let c = counts
        return Mirror(self, children: [
            "users": c.users, "integrations": c.integrations, "namedTokens": c.namedTokens,
            "removedUsernames": c.removedUsernames, "keyFingerprints": c.keyFingerprints,
        ], displayStyle: .struct)
    }
}

/// What an import checks of the target's recorded key fingerprints: one
/// under a name the snapshot also has must be the same, or the target was
/// initialised with other key files (its sealed values and tokens would
/// not be these).
enum ImportedKeys {
    static func requireMatching(_ existing: [UInt8]?, _ imported: StoreRecords.KeyFingerprint) throws(StoreError) {
        if let existing, existing != imported.fingerprint { throw .keyMismatch(imported.name) }
    }
}

extension UserRecord {
    /// The row as a snapshot holds it: its id 0, since the target numbers
    /// its own rows.
    var withoutID: UserRecord {
        var row = self
        row.id = 0
        return row
    }
}
