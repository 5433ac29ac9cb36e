import Foundation
import Testing
@testable import Store
import Crypto
import GRDB

@Suite struct SchemaTests {
    @Test func migrationsOnFreshFileAndReopen() throws {
        let t = try TemporaryStore()
        #expect(try t.store.appliedMigrations() == ["v1 users", "v1 smtp_integrations", "v1 login_failures",
                                                      "v2 users.allowed_recipients", "v2 named_tokens",
                                                      "v2 smtp_integrations.password_seal_version",
                                                      "v2 users.send quotas"])
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
        #expect(try again.appliedMigrations().count == 7)
        #expect(try again.user(named: "alice")?.username == "alice")
    }

    @Test func unusableLocationIsADatabaseError() throws {
        let box = try SecretBox(key: [UInt8](repeating: 1, count: 32))
        #expect(throws: StoreError.self) {
            try SQLiteStore(path: "/nonexistent-dir-\(UUID().uuidString)/db.sqlite", secretBox: box)
        }
    }
}
