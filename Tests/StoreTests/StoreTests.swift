import Foundation
import Testing
import Store
import Crypto

/// A fresh database file in its own directory, removed at the end.
final class TemporaryStore {
    let directory: String
    let path: String
    let box: SecretBox
    let store: Store

    init(key: [UInt8] = [UInt8](repeating: 9, count: 32)) throws {
        directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("mailgate-store-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        path = directory + "/mailgate.sqlite"
        box = try SecretBox(key: key)
        store = try Store(path: path, secretBox: box)
    }

    /// A second, independent Store on the same file, as the CLI would open.
    func reopen(key: [UInt8]? = nil) throws -> Store {
        try Store(path: path, secretBox: key.map { try SecretBox(key: $0) } ?? box)
    }

    /// Every byte SQLite has written: the database, its WAL and shared memory.
    func rawBytes() -> [UInt8] {
        ["", "-wal", "-shm"].flatMap { suffix in
            (FileManager.default.contents(atPath: path + suffix)).map(Array.init) ?? []
        }
    }

    deinit { try? FileManager.default.removeItem(atPath: directory) }
}

func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
    guard !needle.isEmpty, haystack.count >= needle.count else { return false }
    for start in 0...(haystack.count - needle.count) where haystack[start] == needle[0] {
        if haystack[start..<start + needle.count].elementsEqual(needle) { return true }
    }
    return false
}

func sampleIntegration(password: String? = "s3cret-SMTP-passw0rd-Zq7") -> SMTPIntegration {
    SMTPIntegration(host: "smtp.example.org", port: 587, security: "starttls", username: "mailer@example.org",
                    password: password, fromAddress: "noreply@example.org", fromName: "Example",
                    updatedAt: Date(timeIntervalSince1970: 1_750_000_000.123))
}

@Suite struct SchemaTests {
    @Test func migrationsOnFreshFileAndReopen() throws {
        let t = try TemporaryStore()
        #expect(try t.store.appliedMigrations() == ["v1 users", "v1 smtp_integrations", "v1 login_failures"])
        // WAL mode is recorded in the file header (bytes 18 and 19 == 2).
        let header = try #require(FileManager.default.contents(atPath: t.path))
        #expect(header.count >= 100 && header.prefix(16) == Data("SQLite format 3\0".utf8))
        #expect(header.count >= 20 && header[18] == 2 && header[19] == 2)
        // Private from the start.
        let mode = try FileManager.default.attributesOfItem(atPath: t.path)[.posixPermissions] as? NSNumber
        #expect(mode?.intValue == 0o600)
        _ = try t.store.addUser("alice", passwordHash: "h")
        // Reopening re-runs the migrator, which must find nothing to do and keep the data.
        let again = try t.reopen()
        #expect(try again.appliedMigrations().count == 3)
        #expect(try again.user(named: "alice")?.username == "alice")
    }

    @Test func unusableLocationIsADatabaseError() throws {
        let box = try SecretBox(key: [UInt8](repeating: 1, count: 32))
        #expect(throws: StoreError.self) {
            try Store(path: "/nonexistent-dir-\(UUID().uuidString)/db.sqlite", secretBox: box)
        }
    }
}

@Suite struct UserTests {
    @Test func addAndDuplicate() throws {
        let t = try TemporaryStore()
        let alice = try t.store.addUser("alice", passwordHash: "$pbkdf2-sha256$i=1$x$y")
        #expect(alice.username == "alice" && !alice.isDisabled && alice.tokenVersion == 0)
        #expect(try t.store.user(named: "alice") == alice)   // dates survive the round trip exactly
        #expect(throws: StoreError.userExists("alice")) { try t.store.addUser("alice", passwordHash: "other") }
        #expect(try t.store.user(named: "alice")?.passwordHash == "$pbkdf2-sha256$i=1$x$y")
        // Case-sensitive: a different user.
        #expect(try t.store.user(named: "Alice") == nil)
        _ = try t.store.addUser("Bob.b+tag@example-1_x", passwordHash: "h")
        #expect(try t.store.listUsers().map(\.username) == ["Bob.b+tag@example-1_x", "alice"])
    }

    @Test(arguments: ["", String(repeating: "a", count: 65), "al ice", "al\nice", "alice;", "älice", "a/b", "a\0"])
    func invalidUsernames(_ name: String) throws {
        let t = try TemporaryStore()
        #expect(throws: StoreError.invalidUsername) { try t.store.addUser(name, passwordHash: "h") }
        #expect(try t.store.user(named: name) == nil)
        #expect(try t.store.credentials(for: name) == nil)
        #expect(throws: StoreError.invalidUsername) { try t.store.revokeTokens(for: name) }
        #expect(!StoreError.invalidUsername.description.contains(name) || name.isEmpty)
    }

    @Test func sixtyFourCharactersIsFine() throws {
        let t = try TemporaryStore()
        let name = String(repeating: "a", count: 64)
        #expect(try t.store.addUser(name, passwordHash: "h").username == name)
    }

    @Test func tokenVersionBumps() throws {
        let t = try TemporaryStore()
        _ = try t.store.addUser("alice", passwordHash: "h")
        #expect(try t.store.revokeTokens(for: "alice") == 1)
        #expect(try t.store.revokeTokens(for: "alice") == 2)
        #expect(try t.store.user(named: "alice")?.tokenVersion == 2)

        try t.store.setDisabled(true, for: "alice")
        var alice = try #require(try t.store.user(named: "alice"))
        #expect(alice.isDisabled && alice.tokenVersion == 3)
        try t.store.setDisabled(false, for: "alice")
        alice = try #require(try t.store.user(named: "alice"))
        #expect(!alice.isDisabled && alice.tokenVersion == 3)   // re-enabling does not revive old tokens

        try t.store.setPasswordHash("new-hash", for: "alice")
        alice = try #require(try t.store.user(named: "alice"))
        #expect(alice.passwordHash == "new-hash" && alice.tokenVersion == 4)

        #expect(throws: StoreError.userNotFound("nobody")) { try t.store.revokeTokens(for: "nobody") }
        #expect(throws: StoreError.userNotFound("nobody")) { try t.store.setDisabled(true, for: "nobody") }
        #expect(throws: StoreError.userNotFound("nobody")) { try t.store.setPasswordHash("x", for: "nobody") }
    }

    @Test func removeCascadesAndDoesNotRecycleTokenVersions() throws {
        let t = try TemporaryStore()
        _ = try t.store.addUser("alice", passwordHash: "h")
        _ = try t.store.revokeTokens(for: "alice")   // version 1
        try t.store.setIntegration(sampleIntegration(), for: "alice")
        let now = Date()
        try t.store.recordFailedLogin("alice", at: now)
        try t.store.removeUser("alice")
        #expect(try t.store.user(named: "alice") == nil)
        #expect(try t.store.failedLoginCount("alice", since: now.addingTimeInterval(-60)) == 0)
        #expect(throws: StoreError.userNotFound("alice")) { try t.store.removeUser("alice") }
        // A new "alice" must not accept tokens issued to the old one (ver 0 or 1).
        let reborn = try t.store.addUser("alice", passwordHash: "h2")
        #expect(reborn.tokenVersion == 2)
        #expect(try t.store.integration(for: "alice") == nil)   // the old integration went with the old user
    }
}

@Suite struct IntegrationTests {
    @Test func roundTripAndReplace() throws {
        let t = try TemporaryStore()
        _ = try t.store.addUser("alice", passwordHash: "h")
        #expect(try t.store.integration(for: "alice") == nil)
        let integration = sampleIntegration()
        try t.store.setIntegration(integration, for: "alice")
        #expect(try t.store.integration(for: "alice") == integration)

        var changed = integration
        changed.host = "mail.example.net"
        changed.port = 465
        changed.security = "tls"
        changed.password = nil
        changed.username = nil
        changed.fromName = nil
        try t.store.setIntegration(changed, for: "alice")
        #expect(try t.store.integration(for: "alice") == changed)

        var unicode = integration
        unicode.password = "pässwörd 🔑 with spaces"
        try t.store.setIntegration(unicode, for: "alice")
        #expect(try t.store.integration(for: "alice")?.password == "pässwörd 🔑 with spaces")

        #expect(throws: StoreError.userNotFound("bob")) { try t.store.setIntegration(integration, for: "bob") }
        #expect(throws: StoreError.userNotFound("bob")) { try t.store.integration(for: "bob") }
        try t.store.removeIntegration(for: "alice")
        #expect(try t.store.integration(for: "alice") == nil)
        #expect(throws: StoreError.integrationNotFound("alice")) { try t.store.removeIntegration(for: "alice") }
    }

    @Test func rejectsUnusableFields() throws {
        let t = try TemporaryStore()
        _ = try t.store.addUser("alice", passwordHash: "h")
        var bad = sampleIntegration()
        bad.port = 0
        #expect(throws: StoreError.invalidIntegration("port")) { try t.store.setIntegration(bad, for: "alice") }
        bad = sampleIntegration()
        bad.security = "STARTTLS"
        #expect(throws: StoreError.self) { try t.store.setIntegration(bad, for: "alice") }
        bad = sampleIntegration()
        bad.fromAddress = "a@b.c\r\nBcc: victim@example.com"
        #expect(throws: StoreError.invalidIntegration("fromAddress")) { try t.store.setIntegration(bad, for: "alice") }
        bad = sampleIntegration()
        bad.host = ""
        #expect(throws: StoreError.invalidIntegration("host")) { try t.store.setIntegration(bad, for: "alice") }
        #expect(try t.store.integration(for: "alice") == nil)
    }

    @Test func passwordNeverInTheFileInClear() throws {
        let t = try TemporaryStore()
        _ = try t.store.addUser("alice", passwordHash: "h")
        let integration = sampleIntegration()
        let password = Array(try #require(integration.password).utf8)
        try t.store.setIntegration(integration, for: "alice")
        #expect(try t.store.credentials(for: "alice")?.integration?.password == integration.password)
        var raw = t.rawBytes()
        // The scan finds what is stored in clear, so its silence on the password means something.
        #expect(contains(raw, Array("smtp.example.org".utf8)))
        do { let leaked = contains(raw, password); #expect(!leaked) }
        // Also after the row is rewritten.
        var again = integration
        again.host = "smtp2.example.org"
        try t.store.setIntegration(again, for: "alice")
        raw = t.rawBytes()
        #expect(contains(raw, Array("smtp2.example.org".utf8)))
        do { let leaked = contains(raw, password); #expect(!leaked) }
    }

    @Test func wrongKeyIsCorruptSecret() throws {
        let t = try TemporaryStore()
        _ = try t.store.addUser("alice", passwordHash: "h")
        try t.store.setIntegration(sampleIntegration(), for: "alice")
        let wrong = try t.reopen(key: [UInt8](repeating: 10, count: 32))
        #expect(throws: StoreError.corruptSecret("alice")) { try wrong.credentials(for: "alice") }
        // The error names the user, never the secret.
        #expect(!StoreError.corruptSecret("alice").description.contains("s3cret"))
        // Without a password there is nothing to decrypt.
        try t.store.setIntegration(sampleIntegration(password: nil), for: "alice")
        #expect(try wrong.credentials(for: "alice")?.integration?.password == nil)
    }
}

@Suite struct CredentialsTests {
    @Test func seesChangesFromAnotherStoreInstance() throws {
        let t = try TemporaryStore()
        _ = try t.store.addUser("alice", passwordHash: "h")
        #expect(try t.store.credentials(for: "nobody") == nil)
        var credentials = try #require(try t.store.credentials(for: "alice"))
        #expect(credentials.user.username == "alice" && credentials.integration == nil)

        let cli = try t.reopen()   // as `mailgate integration set` would
        try cli.setIntegration(sampleIntegration(), for: "alice")
        credentials = try #require(try t.store.credentials(for: "alice"))
        #expect(credentials.integration == sampleIntegration())

        var changed = sampleIntegration()
        changed.password = "rotated-password"
        try cli.setIntegration(changed, for: "alice")
        #expect(try t.store.credentials(for: "alice")?.integration?.password == "rotated-password")

        _ = try cli.revokeTokens(for: "alice")
        try cli.setDisabled(true, for: "alice")
        credentials = try #require(try t.store.credentials(for: "alice"))
        #expect(credentials.user.isDisabled && credentials.user.tokenVersion == 2)

        try cli.removeUser("alice")
        #expect(try t.store.credentials(for: "alice") == nil)
    }

    @Test func concurrentReadersAndAWriter() async throws {
        let t = try TemporaryStore()
        _ = try t.store.addUser("alice", passwordHash: "h")
        try t.store.setIntegration(sampleIntegration(), for: "alice")
        let store = t.store
        let total = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    var seen = 0
                    for _ in 0..<200 {
                        if try store.credentials(for: "alice")?.integration?.password == "s3cret-SMTP-passw0rd-Zq7" { seen += 1 }
                    }
                    return seen
                }
            }
            group.addTask {
                for i in 0..<50 {
                    var next = sampleIntegration()
                    next.host = "smtp\(i).example.org"
                    try store.setIntegration(next, for: "alice")
                }
                return 0
            }
            var total = 0
            for try await seen in group { total += seen }
            return total
        }
        #expect(total == 1600)
    }
}

@Suite struct ThrottleTests {
    @Test func countingAndClearing() throws {
        let t = try TemporaryStore()
        _ = try t.store.addUser("alice", passwordHash: "h")
        let base = Date(timeIntervalSince1970: 1_750_000_000)
        for offset in [0.0, 10, 20, 30] {
            try t.store.recordFailedLogin("alice", at: base.addingTimeInterval(offset))
        }
        try t.store.recordFailedLogin("ghost", at: base.addingTimeInterval(5))   // unknown users count too
        #expect(try t.store.failedLoginCount("alice", since: base) == 4)
        #expect(try t.store.failedLoginCount("alice", since: base.addingTimeInterval(15)) == 2)
        #expect(try t.store.failedLoginCount("ghost", since: base) == 1)
        #expect(try t.store.oldestFailedLogin("alice", since: base.addingTimeInterval(15)) == base.addingTimeInterval(20))
        #expect(try t.store.oldestFailedLogin("alice", since: base.addingTimeInterval(31)) == nil)

        // Shared across Store instances (and so across processes and restarts).
        let other = try t.reopen()
        #expect(try other.failedLoginCount("alice", since: base) == 4)

        try t.store.clearFailedLogins("alice")
        #expect(try t.store.failedLoginCount("alice", since: base) == 0)
        #expect(try t.store.failedLoginCount("ghost", since: base) == 1)

        // Invalid names are ignored rather than stored.
        try t.store.recordFailedLogin("not valid!", at: base)
        #expect(try t.store.failedLoginCount("not valid!", since: base) == 0)
    }

    /// Two Store instances (server and CLI) writing at once must wait for
    /// each other's write lock instead of failing with SQLITE_BUSY.
    @Test func concurrentWritersOnTwoInstances() async throws {
        let t = try TemporaryStore()
        let stores = [t.store, try t.reopen()]
        let base = Date(timeIntervalSince1970: 1_750_000_000)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<4 {
                let store = stores[worker % 2]
                group.addTask {
                    for i in 0..<50 {
                        try store.recordFailedLogin("ghost", at: base.addingTimeInterval(Double(i)))
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(try t.store.failedLoginCount("ghost", since: base) == 200)
    }

    @Test func oldRowsArePrunedOnInsert() throws {
        let t = try TemporaryStore()
        let base = Date(timeIntervalSince1970: 1_750_000_000)
        try t.store.recordFailedLogin("ghost", at: base)
        try t.store.recordFailedLogin("other", at: base.addingTimeInterval(3600))
        #expect(try t.store.failedLoginCount("ghost", since: .distantPast) == 1)
        try t.store.recordFailedLogin("other", at: base.addingTimeInterval(86_401))
        #expect(try t.store.failedLoginCount("ghost", since: .distantPast) == 0)   // over a day old: gone
        #expect(try t.store.failedLoginCount("other", since: .distantPast) == 2)
    }
}
