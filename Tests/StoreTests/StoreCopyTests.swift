import Foundation
import GRDB
import MailgateTesting
import Testing
@testable import Store
import Crypto

/// Issue 14, item 7: `exportRecords` on one backend, `importRecords` on the
/// other (what `mailgate store copy` does), and the target answers every
/// read as the source does, with the sealed secrets byte for byte.
@Suite struct StoreCopyTests {
    static let now = Date()
    static let tokenFingerprint = [UInt8](repeating: 0xA5, count: 32)
    static let secretFingerprint = [UInt8](repeating: 0x5A, count: 32)
    static let usernames = ["alice", "bob", "carol", "dave"]

    /// The pairs copied: SQLite → PostgreSQL (the move the command is for)
    /// and back.
    static let pairs: [(Backend, Backend)] = [(.sqlite, .postgresql), (.postgresql, .sqlite)]

    /// Users of every kind, their integrations, tokens, policies, quotas,
    /// a removed user, key fingerprints, and transient state (attempts,
    /// idempotency keys, send counts) that is not to be copied.
    func populate(_ store: any Store) throws {
        _ = try store.addUser("alice", passwordHash: "pbkdf2-sha256$10000$alice-salt$alice-hash")
        try store.setIntegration(sampleIntegration(), for: "alice")
        _ = try store.revokeTokens(for: "alice")
        _ = try store.revokeTokens(for: "alice")
        try store.setRecipientPolicy(try RecipientPolicy(parsing: ["owner@example.com", "*@team.example.org"]), for: "alice")
        try store.setSendQuota(SendQuota(perWindow: [.minute: 5, .day: 100]), for: "alice")
        let created = Date(timeIntervalSince1970: 1_767_225_600.25)
        _ = try store.addNamedToken(id: "tok-used", name: "contact form", for: "alice", createdAt: created,
                                    expiresAt: created.addingTimeInterval(90 * 86_400))
        try store.recordNamedTokenUse(id: "tok-used", day: NamedToken.day(of: created) + 3)
        _ = try store.addNamedToken(id: "tok-revoked", name: "nightly report ✓", for: "alice",
                                    createdAt: created.addingTimeInterval(1), expiresAt: created.addingTimeInterval(86_400))
        try store.revokeNamedToken(id: "tok-revoked")

        _ = try store.addUser("bob", passwordHash: "pbkdf2-sha256$10000$bob-salt$bob-hash")
        try store.setIntegration(sampleOAuth2Integration(), for: "bob")
        let grant = try #require(sampleOAuth2Integration().refreshTokenOwner)
        try store.storeRefreshToken("1//rotated-refresh-Zq7-qrstuv", for: "bob", issuedTo: grant, origin: .rotation)
        try store.setDisabled(true, for: "bob")
        _ = try store.addNamedToken(id: "tok-bob", name: "backup", for: "bob", createdAt: created,
                                    expiresAt: created.addingTimeInterval(3600))

        _ = try store.addUser("carol", passwordHash: "pbkdf2-sha256$10000$carol-salt$carol-hash")
        try store.setSendQuota(SendQuota(perWindow: [.hour: 0]), for: "carol")
        var none = sampleIntegration()
        none.authentication = .none
        try store.setIntegration(none, for: "carol")

        // Removed with its tokens at version 3: a new "dave" starts at 4.
        _ = try store.addUser("dave", passwordHash: "h")
        for _ in 0..<3 { _ = try store.revokeTokens(for: "dave") }
        try store.removeUser("dave")

        try store.setKeyFingerprint(named: "token.key", Self.tokenFingerprint)
        try store.setKeyFingerprint(named: "secret.key", Self.secretFingerprint)

        let client = LoginClient(remoteAddress: "192.0.2.1")
        if case .allowed(let pending) = try store.beginLoginAttempt("alice", from: client, at: Self.now,
                                                                     policy: LoginThrottlePolicy()) {
            try store.finishLoginAttempt(pending, .failed)
        }
        _ = try store.claimIdempotencyKey(Array("key-1".utf8), for: "alice", fingerprint: [1, 2, 3], at: Self.now,
                                          ttl: 86_400, staleAfter: 60, abandonedAnswer: IdempotentAnswer(status: 500))
        #expect(try store.reserveSends(3, for: "alice", limits: [.day: 100], at: Self.now).granted)
    }

    /// A user's fields apart from the row id, which each store numbers itself.
    func fields(_ user: User) -> [String] {
        [user.username, user.passwordHash, "\(user.isDisabled)", "\(user.tokenVersion)",
         "\(user.createdAt.timeIntervalSince1970)"]
    }

    /// Every read the application and the CLI make gives the same answer.
    func expectSameAnswers(_ source: any Store, _ target: any Store) throws {
        #expect(try target.listUsers().map(fields) == source.listUsers().map(fields))
        #expect(try target.listUsers().count == 3)
        for name in Self.usernames {
            #expect(try target.user(named: name).map(fields) == source.user(named: name).map(fields), "\(name)")
            let expected = try source.credentials(for: name), actual = try target.credentials(for: name)
            #expect(actual.map { fields($0.user) } == expected.map { fields($0.user) }, "\(name)")
            #expect(actual?.integration == expected?.integration, "\(name)")
            #expect(actual?.recipientPolicy == expected?.recipientPolicy, "\(name)")
            #expect(actual?.sendQuota == expected?.sendQuota, "\(name)")
            guard expected != nil else { continue }
            #expect(try target.integration(for: name) == source.integration(for: name), "\(name)")
            #expect(try target.recipientPolicy(for: name) == source.recipientPolicy(for: name), "\(name)")
            #expect(try target.sendQuota(for: name) == source.sendQuota(for: name), "\(name)")
            #expect(try target.namedTokens(of: name) == source.namedTokens(of: name), "\(name)")
        }
        #expect(try target.namedTokens(of: nil) == source.namedTokens(of: nil))
        #expect(try target.namedTokens(of: nil).count == 3)
        for id in ["tok-used", "tok-revoked", "tok-bob", "tok-none"] {
            #expect(try target.namedToken(id: id) == source.namedToken(id: id), "\(id)")
        }
        for key in ["token.key", "secret.key"] {
            #expect(try target.keyFingerprint(named: key) == source.keyFingerprint(named: key))
        }
        #expect(try target.exportRecords() == source.exportRecords())
    }

    @Test(arguments: pairs) func aCopyAnswersAsTheSourceDoes(_ from: Backend, _ to: Backend) throws {
        let source = try TemporaryStore(from), target = try TemporaryStore(to)
        try populate(source.store)
        let records = try source.store.exportRecords()
        #expect(records.counts == StoreRecords.Counts(
            users: 3, disabledUsers: 1, integrations: 3, namedTokens: 3, removedUsernames: 1, recipientPolicies: 1,
            sendQuotas: 2, keyFingerprints: 2))
        try target.store.importRecords(records)
        try expectSameAnswers(source.store, target.store)
        // And as another process (the CLI, another host) opens it.
        try expectSameAnswers(source.store, try target.reopen())

        // The secrets opened as they were set: the copy moved the sealed
        // bytes, and they open with the same key.
        #expect(try target.store.integration(for: "alice") == sampleIntegration())
        var rotated = sampleOAuth2Integration(refreshToken: "1//rotated-refresh-Zq7-qrstuv")
        rotated.updatedAt = try #require(try source.store.integration(for: "bob")).updatedAt
        #expect(try target.store.integration(for: "bob") == rotated)
        #expect(try target.store.user(named: "alice")?.tokenVersion == 2)
        #expect(try target.store.user(named: "bob")?.tokenVersion == 1)
        #expect(try target.store.namedToken(id: "tok-revoked")?.isRevoked == true)
        #expect(try target.store.namedToken(id: "tok-used")?.lastUsedDay != nil)

        // Byte for byte, read with each database's own SQL.
        let sealed = try sealedColumns(source)
        #expect(try sealedColumns(target) == sealed)
        #expect(sealed.count == 3 && sealed[0].count == 4)
        #expect(sealed[0][1] != nil && sealed[1][2] != nil && sealed[1][3] != nil, "alice's password, bob's secrets")
        // Nor in clear in the target (the copy did not open them).
        let raw = try target.rawBytes()
        for secret in ["s3cret-SMTP-passw0rd-Zq7", sampleClientSecret, "1//rotated-refresh-Zq7-qrstuv"] {
            #expect(!holdsInClear(raw, secret))
        }

        // Not copied: login attempts, idempotency keys, send counts.
        #expect(try target.store.loginFailureCount("alice", from: nil, since: Self.now.addingTimeInterval(-60)) == 0)
        #expect(try source.store.loginFailureCount("alice", from: nil, since: Self.now.addingTimeInterval(-60)) == 1)
        let claim = try target.store.claimIdempotencyKey(Array("key-1".utf8), for: "alice", fingerprint: [1, 2, 3],
                                                         at: Self.now, ttl: 86_400, staleAfter: 60,
                                                         abandonedAnswer: IdempotentAnswer(status: 500))
        guard case .claimed = claim else { Issue.record("the key was copied: \(claim)"); return }
        #expect(try target.store.reserveSends(1, for: "alice", limits: [.day: 100], at: Self.now).windows.first?.used == 1)

        // A removed user's token version came along: the name re-created
        // does not accept the old user's tokens, on either store.
        #expect(try target.store.addUser("dave", passwordHash: "h").tokenVersion == 4)
        #expect(try source.store.addUser("dave", passwordHash: "h").tokenVersion == 4)
    }

    @Test(arguments: Backend.allCases) func aTargetWithUsersIsRefusedAndLeftAsItIs(_ backend: Backend) throws {
        let source = try TemporaryStore(backend == .sqlite ? .postgresql : .sqlite), target = try TemporaryStore(backend)
        try populate(source.store)
        let records = try source.store.exportRecords()
        _ = try target.store.addUser("zed", passwordHash: "zed-hash")
        let before = try target.store.exportRecords()
        #expect(throws: StoreError.targetNotEmpty) { try target.store.importRecords(records) }
        #expect(try target.store.exportRecords() == before)
        #expect(try target.store.listUsers().map(\.username) == ["zed"])

        // A copy into a copy: refused too.
        let copy = try TemporaryStore(backend)
        try copy.store.importRecords(records)
        #expect(throws: StoreError.targetNotEmpty) { try copy.store.importRecords(records) }
        #expect(try copy.store.exportRecords() == records)

        // Only a removed user's token version left: not empty either (a
        // merge could hand the name an older version).
        let emptied = try TemporaryStore(backend)
        _ = try emptied.store.addUser("gone", passwordHash: "h")
        try emptied.store.removeUser("gone")
        #expect(throws: StoreError.targetNotEmpty) { try emptied.store.importRecords(records) }
        #expect(try emptied.store.listUsers().isEmpty)
    }

    @Test(arguments: Backend.allCases) func aTargetWithOtherKeysIsRefused(_ backend: Backend) throws {
        let source = try TemporaryStore(.sqlite), target = try TemporaryStore(backend)
        try populate(source.store)
        try target.store.setKeyFingerprint(named: "secret.key", [UInt8](repeating: 1, count: 32))
        #expect(throws: StoreError.keyMismatch("secret.key")) {
            try target.store.importRecords(try source.store.exportRecords())
        }
        #expect(try target.store.listUsers().isEmpty)
        #expect(try target.store.keyFingerprint(named: "token.key") == nil)
        // The same fingerprint already recorded (as `init` would): fine.
        let initialised = try TemporaryStore(backend)
        try initialised.store.setKeyFingerprint(named: "secret.key", Self.secretFingerprint)
        try initialised.store.importRecords(try source.store.exportRecords())
        #expect(try initialised.store.listUsers().count == 3)
    }

    /// All or nothing: a row the target refuses part way (a token whose
    /// name breaks the schema's CHECK, after the users went in) leaves the
    /// target empty.
    @Test(arguments: Backend.allCases) func aFailedImportWritesNothing(_ backend: Backend) throws {
        let source = try TemporaryStore(.sqlite), target = try TemporaryStore(backend)
        try populate(source.store)
        var records = try source.store.exportRecords()
        records.namedTokens[records.namedTokens.count - 1].name = String(repeating: "n", count: 65)
        #expect(throws: StoreError.self) { try target.store.importRecords(records) }
        #expect(try target.store.listUsers().isEmpty)
        #expect(try target.store.namedTokens(of: nil).isEmpty)
        #expect(try target.store.keyFingerprint(named: "token.key") == nil)
        #expect(try target.integer("SELECT count(*) FROM smtp_integrations") == 0)
        // And the store still takes the good records afterwards.
        try target.store.importRecords(try source.store.exportRecords())
        try expectSameAnswers(source.store, target.store)
    }

    @Test func recordsNeverDescribeTheirSecrets() throws {
        let source = try TemporaryStore(.sqlite)
        try populate(source.store)
        let records = try source.store.exportRecords()
        for text in [String(describing: records), String(reflecting: records), "\(records)"] {
            #expect(!text.contains("hash"), "\(text)")
            #expect(text.contains("users: 3"), "\(text)")
        }
    }

    /// Per integration (by owner's name): owner, sealed password, sealed
    /// client secret, sealed refresh token, as the database holds them.
    func sealedColumns(_ t: TemporaryStore) throws -> [[[UInt8]?]] {
        let sql = """
            SELECT u.username, i.password_sealed, i.oauth2_client_secret_sealed, i.oauth2_refresh_token_sealed
            FROM smtp_integrations i JOIN users u ON u.id = i.user_id ORDER BY u.username
            """
        switch t.backend {
        case .sqlite:
            let queue = try DatabaseQueue(path: t.path)
            defer { try? queue.close() }
            return try queue.read { db in
                try Row.fetchAll(db, sql: sql).map { row in
                    [Array((row[0] as String).utf8)] + (1...3).map { (row[$0] as Data?).map(Array.init) }
                }
            }
        case .postgresql:
            let connection = PGConnection(settings: try PGConnectionSettings(conninfo: t.uri, connectTimeout: 5,
                                                                              statementTimeout: 30))
            let result = try connection.run(PGStatement("sealed", sql), [], "read sealed columns")
            return try (0..<result.rowCount).map { row in
                [Array(try result.requiredText(row, 0).utf8)] + (1...3).map { result.bytes(row, $0) }
            }
        }
    }
}
