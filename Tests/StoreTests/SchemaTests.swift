import Foundation
import Testing
@testable import Store
import Crypto
import GRDB

@Suite struct SchemaTests {
    @Test func migrationsOnFreshFileAndReopen() throws {
        let t = try TemporaryStore()
        #expect(try t.sqlite.appliedMigrations() == ["v1 users", "v1 smtp_integrations", "v1 login_failures",
                                                      "v2 login_attempts", "v2 users.allowed_recipients", "v2 named_tokens",
                                                      "v2 smtp_integrations.password_seal_version",
                                                      "v2 users.send quotas", "v3 idempotency_keys",
                                                      "v4 smtp_integrations.oauth2", "v5 mailgate_keys"])
        // WAL mode is recorded in the file header (bytes 18 and 19 == 2).
        let header = try #require(FileManager.default.contents(atPath: t.path))
        #expect(header.count >= 100 && header.prefix(16) == Data("SQLite format 3\0".utf8))
        #expect(header.count >= 20 && header[18] == 2 && header[19] == 2)
        // Private from the start.
        let mode = try FileManager.default.attributesOfItem(atPath: t.path)[.posixPermissions] as? NSNumber
        #expect(mode?.intValue == 0o600)
        _ = try t.store.addUser("alice", passwordHash: "h")
        // Reopening re-runs the migrator, which must find nothing to do and keep the data.
        let again = try #require(try t.reopen() as? SQLiteStore)
        #expect(try again.appliedMigrations().count == 11)
        #expect(try again.user(named: "alice")?.username == "alice")
    }

    /// A database made before v2 (failures by username only) upgrades on
    /// open: its failures stay, from the unknown client, so they count
    /// towards the per-username ceiling and nothing else.
    @Test func loginFailuresOfAnOldDatabaseAreKeptOnUpgrade() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mailgate-old-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/mailgate.sqlite"
        let base = Date(timeIntervalSince1970: 1_750_000_000)
        do {
            let old = try DatabasePool(path: path, configuration: SQLiteSchema.configuration(busyTimeout: 5))
            try SQLiteSchema.migrator.migrate(old, upTo: "v1 login_failures")
            try old.write { db in
                for offset in 0..<3 {
                    try db.execute(sql: "INSERT INTO login_failures (username, failed_at_ms) VALUES (?, ?)",
                                   arguments: ["alice", StoredDate.milliseconds(base) + Int64(offset) * 1000])
                }
            }
            try old.close()
        }
        let store = try SQLiteStore(path: path, secretBox: SecretBox(key: [UInt8](repeating: 3, count: 32)))
        #expect(try store.appliedMigrations().contains("v2 login_attempts"))
        #expect(try store.loginFailureCount("alice", from: nil, since: base) == 3)
        #expect(try store.loginFailureCount("alice", from: .unknown, since: base) == 3)
        #expect(try store.loginFailureCount("alice", from: LoginClient(remoteAddress: "192.0.2.1"), since: base) == 0)
        let tables = try store.pool.read { db in
            try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        }
        #expect(!tables.contains("login_failures"))
        // Two more from the unknown client reach a per-username ceiling of 5.
        let policy = LoginThrottlePolicy(window: 900, perClient: 100, perUsername: 5)
        for _ in 0..<2 {
            guard case .allowed(let pending) = try store.beginLoginAttempt("alice", from: LoginClient(remoteAddress: "192.0.2.1"),
                                                                           at: base.addingTimeInterval(10), policy: policy) else {
                Issue.record("locked before the ceiling")
                return
            }
            try store.finishLoginAttempt(pending, .failed)
        }
        let locked = try store.beginLoginAttempt("alice", from: LoginClient(remoteAddress: "192.0.2.9"),
                                                 at: base.addingTimeInterval(10), policy: policy)
        #expect(locked == .locked(retryAt: base.addingTimeInterval(900), scope: .username))
    }

    @Test func unusableLocationIsADatabaseError() throws {
        let box = try SecretBox(key: [UInt8](repeating: 1, count: 32))
        #expect(throws: StoreError.self) {
            try SQLiteStore(path: "/nonexistent-dir-\(UUID().uuidString)/db.sqlite", secretBox: box)
        }
    }
}
