// Store module: users, their SMTP integration, login throttling and
// idempotency records, behind one interface, `Store`, which is all the
// application and the CLI see.
// SQLite (GRDB, WAL) implements it for one host (`SQLiteStore`, under
// SQLite/), PostgreSQL (libpq) for several hosts sharing one store
// (`PostgresStore`, under PostgreSQL/).
//
//   Store.swift            the interface
//   StoreError.swift       its one error type
//   User.swift, SMTPIntegration.swift, Credentials.swift, RecipientPolicy.swift,
//   NamedToken.swift, SendQuota.swift
//                          the models, free of any database type; the rules
//                          for usernames, integration fields and recipient
//                          patterns
//   LoginThrottle.swift    login attempts: client keys, limits, outcomes
//   Idempotency.swift      idempotency records: stored answers, claims
//   OAuth2Credentials.swift
//                          an OAuth2 login's client and grant; provider presets
//   PasswordSeal.swift     SMTP passwords and OAuth2 secrets at rest (AES-256-GCM)
//   StoreRecords.swift     the durable records as stored, for copying a
//                          store to another (`mailgate store copy`)
//   SQLite/                schema and migrations, GRDB records, the store,
//                          the per-request credentials reader
//   PostgreSQL/            the libpq connection (one per thread, bounded
//                          waits), schema and migrations, statements, the store
import Foundation

/// What Mailgate keeps: users, each user's SMTP integration, recent failed
/// logins and recent idempotency keys (shared by every process on the data,
/// hence stored).
///
/// Every method validates usernames the same way (`User.isValidUsername`):
/// writes refuse an invalid one with `.invalidUsername`, reads answer
/// "none". Implementations are thread-safe: FastCGI workers call them
/// concurrently, and the CLI may write from another process meanwhile.
public protocol Store: Sendable {
    // MARK: Users

    /// A new, enabled user. A name used before by a removed user continues
    /// that user's token version, so the old user's tokens stay dead.
    func addUser(_ username: String, passwordHash: String) throws(StoreError) -> User
    /// The user, or nil if there is none (also for names that cannot exist).
    func user(named username: String) throws(StoreError) -> User?
    /// Every user, by name (byte order).
    func listUsers() throws(StoreError) -> [User]
    /// Also revokes the user's tokens: a password change is what people do
    /// after a suspected compromise.
    func setPasswordHash(_ hash: String, for username: String) throws(StoreError)
    /// Disabling also bumps the token version, so tokens issued before stay
    /// dead after re-enabling.
    func setDisabled(_ disabled: Bool, for username: String) throws(StoreError)
    /// Invalidates every token issued so far; returns the new version.
    func revokeTokens(for username: String) throws(StoreError) -> Int64
    /// Removes the user, their integration, their recorded login failures
    /// and their idempotency records.
    func removeUser(_ username: String) throws(StoreError)
    /// Which recipients the user's sends may reach (`.any` clears it);
    /// applies to the next request of any process.
    func setRecipientPolicy(_ policy: RecipientPolicy, for username: String) throws(StoreError)
    /// The user's own send quotas (nil per window: the server's default).
    func setSendQuota(_ quota: SendQuota, for username: String) throws(StoreError)

    // MARK: Send counting

    /// Counts `recipients` against every window of `limits` for `username`,
    /// all or nothing, atomically for every process on the store: granted
    /// only if no window would pass its limit.
    func reserveSends(_ recipients: Int, for username: String, limits: [QuotaWindow: Int],
                      at date: Date) throws(StoreError) -> QuotaReservation
    /// Gives back a granted reservation (the message was not sent), in the
    /// windows it was counted in that are still current.
    func releaseSends(_ reservation: QuotaReservation, for username: String) throws(StoreError)

    // MARK: SMTP integrations

    /// Creates or replaces the user's integration after `validate()`; the
    /// password, client secret and refresh token are stored sealed, never
    /// in clear.
    ///
    /// An OAuth2 integration given without a refresh token keeps the one
    /// stored, if the stored integration is OAuth2 with the same
    /// `refreshTokenOwner` (token URL, client id and mailbox: changing
    /// the SMTP host or the scope keeps the grant; another client or
    /// account drops it, since it was not issued to them).
    func setIntegration(_ integration: SMTPIntegration, for username: String) throws(StoreError)
    /// Stores `refreshToken` (sealed) in the user's OAuth2 integration, in
    /// one short write transaction, changing no other field; safe while
    /// `serve` runs, from any thread or process.
    ///
    /// Only while the integration still belongs to `grant` (its token URL,
    /// client id and mailbox: what the token was issued to): otherwise
    /// `.integrationChanged`, nothing stored (a rotation answered for a
    /// client that was replaced meanwhile must not land in the new one).
    ///
    /// `origin` decides `updatedAt`: a new grant (`.authorization`) sets it
    /// to now, so caches keyed on it start afresh; a rotation leaves it, so
    /// the access token that came with the rotated refresh token stays
    /// cached. Throws `.userNotFound`, `.integrationNotFound`,
    /// `.invalidIntegration` (not OAuth2, or an unusable token).
    func storeRefreshToken(_ refreshToken: String, for username: String, issuedTo grant: RefreshTokenOwner,
                           origin: RefreshTokenOrigin) throws(StoreError)
    /// Throws `.userNotFound`, or `.integrationNotFound` if there is none.
    func removeIntegration(for username: String) throws(StoreError)

    /// The per-request read: the user and their integration (password
    /// opened) as one consistent snapshot, or nil if there is no such user.
    /// Changes made by any process apply to the next call.
    func credentials(for username: String) throws(StoreError) -> Credentials?
    /// Reads from the store the way a request does; throws if it cannot
    /// (`GET /health`).
    func checkReadable() throws(StoreError)

    // MARK: Named tokens

    /// Records a named token of `username` (its `jti` is `id`).
    func addNamedToken(id: String, name: String, for username: String, createdAt: Date,
                       expiresAt: Date) throws(StoreError) -> NamedToken
    /// The named tokens of `username`, or of every user when nil; by user,
    /// then by creation.
    func namedTokens(of username: String?) throws(StoreError) -> [NamedToken]
    /// Makes the token fail from the next request of any process on. Revoking
    /// a revoked token changes nothing; an unknown id is `.tokenNotFound`.
    func revokeNamedToken(id: String) throws(StoreError)
    /// The per-request read of a named token (cached like `credentials`);
    /// nil if there is no token with this id.
    func namedToken(id: String) throws(StoreError) -> NamedToken?
    /// Sets the token's last-used day to `day` if it is earlier.
    func recordNamedTokenUse(id: String, day: Int64) throws(StoreError)

    // MARK: Login throttling

    /// Starts a login attempt by `username` (existing or not) from `client`:
    /// in one write transaction, counts the failed and still-pending
    /// attempts within `policy.window` for (username, client) and for the
    /// username from every client, and either refuses (`.locked`, nothing
    /// stored) or stores a pending mark and answers `.allowed`. The mark
    /// counts as a failure until `finishLoginAttempt`, so of any number of
    /// concurrent attempts (in any process on the store) at most
    /// `policy.perClient` get past the count.
    ///
    /// Names that can never log in (`User.isValidUsername` false) are
    /// allowed without a row, so they cannot grow the table. Marks and
    /// failures older than a day (or the window, if longer) are pruned.
    func beginLoginAttempt(_ username: String, from client: LoginClient, at now: Date,
                           policy: LoginThrottlePolicy) throws(StoreError) -> LoginAttempt
    /// Ends an attempt `beginLoginAttempt` allowed (see `LoginOutcome`).
    /// Should this fail, the mark stays and counts as a failure until it
    /// leaves the window: the safe side.
    func finishLoginAttempt(_ attempt: PendingLogin, _ outcome: LoginOutcome) throws(StoreError)
    /// Failed and pending attempts for `username` at or after `since`: from
    /// `client`, or from every client when nil.
    func loginFailureCount(_ username: String, from client: LoginClient?, since: Date) throws(StoreError) -> Int

    // MARK: Idempotency keys

    /// Claims `key` (1-255 bytes, else `.invalidIdempotencyKey`) of
    /// `username` for a request whose body has `fingerprint` (1-64 bytes,
    /// the body's SHA-256), before anything is sent. In one write
    /// transaction, atomic for every process on the store, the record of
    /// (username, key) decides:
    ///
    /// - none, or one claimed `ttl` or more before `now` (expired: it
    ///   counts as absent): a record in flight is stored, `.claimed`;
    /// - another fingerprint: `.mismatch`, whatever the record's state;
    /// - completed: `.replay` of its answer;
    /// - in flight since less than `staleAfter`: `.inFlight`;
    /// - in flight since `staleAfter` or longer (its claimer died
    ///   mid-send): completed with `abandonedAnswer` in this transaction,
    ///   `.abandoned(abandonedAnswer)`; later claims replay it.
    ///
    /// A record lives `ttl` from its first claim, whatever happens to it
    /// after. Each claim also deletes a bounded batch of expired records
    /// (of any user), so the table keeps itself to the keys of the last
    /// `ttl`.
    func claimIdempotencyKey(_ key: [UInt8], for username: String, fingerprint: [UInt8], at now: Date,
                             ttl: TimeInterval, staleAfter: TimeInterval,
                             abandonedAnswer: IdempotentAnswer) throws(StoreError) -> IdempotencyClaim
    /// Stores `answer` (an answer that ends the matter) for the claimed
    /// key: later claims with its fingerprint replay it. Only while the
    /// record is still this claim's, in flight; otherwise (taken over as
    /// abandoned, expired and claimed again, its user removed) nothing
    /// changes.
    func completeIdempotencyKey(_ claim: IdempotencyClaimID, answer: IdempotentAnswer) throws(StoreError)
    /// Deletes the claimed key's record (its answer invites a retry, which
    /// then claims the key afresh and sends). Only while the record is
    /// still this claim's, in flight; otherwise nothing changes.
    func releaseIdempotencyKey(_ claim: IdempotencyClaimID) throws(StoreError)

    // MARK: Key fingerprints

    /// The fingerprint recorded under `name` (e.g. "token.key"), nil if
    /// none is. `serve` compares it with its own key files' and refuses
    /// keys other than those the database was initialised with (every
    /// host needs the same key files). Throws `.database` for a name that
    /// is not 1-64 bytes without control characters.
    func keyFingerprint(named name: String) throws(StoreError) -> [UInt8]?
    /// Records `fingerprint` (1-64 bytes) under `name`, replacing any. The
    /// caller computes it (a keyed hash of the key with a fixed label);
    /// the store never sees a key.
    func setKeyFingerprint(named name: String, _ fingerprint: [UInt8]) throws(StoreError)

    // MARK: Copying between stores

    /// The durable records (see `StoreRecords`: what is and is not copied),
    /// read as one consistent snapshot, sealed values as stored.
    func exportRecords() throws(StoreError) -> StoreRecords
    /// Writes `records` into this store in one transaction: all of them or
    /// nothing. Refuses (`.targetNotEmpty`, nothing written) a store that
    /// already holds a user or a removed user's token version, and
    /// (`.keyMismatch`) one that records another fingerprint for a key the
    /// records have. Sealed values are written as they are: they open only
    /// with the `secret.key` they were sealed with.
    func importRecords(_ records: StoreRecords) throws(StoreError)
}

/// The rules for recorded key fingerprints, the same on every backend.
enum KeyFingerprints {
    static let nameLength = 1...64
    static let fingerprintLength = 1...64

    static func requireValid(name: String, fingerprint: [UInt8]? = nil) throws(StoreError) {
        guard nameLength.contains(name.utf8.count), SMTPIntegration.isClean(name) else {
            throw .database("a key name must be 1 to 64 bytes without control characters")
        }
        if let fingerprint, !fingerprintLength.contains(fingerprint.count) {
            throw .database("a key fingerprint must be 1 to 64 bytes")
        }
    }
}

extension Store {
    /// The user's integration with its secrets decrypted, or nil if none
    /// is configured. Throws `.userNotFound` if there is no such user.
    public func integration(for username: String) throws(StoreError) -> SMTPIntegration? {
        guard let credentials = try credentials(for: username) else { throw .userNotFound(username) }
        return credentials.integration
    }

    /// The user's own send quotas. Throws `.userNotFound` if there is no such user.
    public func sendQuota(for username: String) throws(StoreError) -> SendQuota {
        guard let credentials = try credentials(for: username) else { throw .userNotFound(username) }
        return credentials.sendQuota
    }

    /// The user's recipient policy. Throws `.userNotFound` if there is no such user.
    public func recipientPolicy(for username: String) throws(StoreError) -> RecipientPolicy {
        guard let credentials = try credentials(for: username) else { throw .userNotFound(username) }
        return credentials.recipientPolicy
    }
}
