import Foundation
@testable import Mailgate
import Testing

/// Issue 11: `GET /health` answers from the store, with no token.
@Suite struct HealthTests {
    @Test func healthIsOkWithoutATokenWhileTheStoreReads() throws {
        let fixture = try AppFixture()
        let response = fixture.post("/health", body: "", method: "GET")
        #expect(response.status == 200)
        #expect(response.json as? [String: String] == ["status": "ok"])
        #expect(fixture.transport.sent.isEmpty)
        #expect(fixture.post("/health", body: "").status == 405)
    }

    @Test func anUnreadableStoreIs503() throws {
        let fixture = try AppFixture()
        // Something wrecks the database, its WAL and their index: every read fails.
        for suffix in ["", "-wal", "-shm"] {
            let handle = try #require(FileHandle(forWritingAtPath: fixture.directory + "/db.sqlite" + suffix))
            try handle.write(contentsOf: Data(repeating: 0xFF, count: 32_768))
            try handle.close()
        }
        let response = fixture.post("/health", body: "", method: "GET")
        #expect(response.status == 503)
        #expect(response.code == "unhealthy")
        #expect(response.detail as? String == "Store unavailable")
        #expect(response.header("Retry-After") == "5")
    }
}
