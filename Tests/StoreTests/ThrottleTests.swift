import Foundation
import Testing
@testable import Store

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
