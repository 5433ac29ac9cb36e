import Foundation
import MailgateTesting
import Synchronization
import Testing
@testable import Store

@Suite struct ThrottleTests {
    static let base = Date(timeIntervalSince1970: 1_750_000_000)
    static let policy = LoginThrottlePolicy(window: 900, perClient: 5, perUsername: 50)
    static let clientA = LoginClient(remoteAddress: "192.0.2.1")
    static let clientB = LoginClient(remoteAddress: "198.51.100.7")

    /// One attempt that fails: begun (and so counted), then finished as failed.
    @discardableResult
    func fail(_ store: any Store, _ username: String, from client: LoginClient = clientA, at date: Date = base,
              policy: LoginThrottlePolicy = policy) throws -> LoginAttempt {
        let attempt = try store.beginLoginAttempt(username, from: client, at: date, policy: policy)
        if case .allowed(let pending) = attempt { try store.finishLoginAttempt(pending, .failed) }
        return attempt
    }

    func isLocked(_ attempt: LoginAttempt) -> Bool {
        if case .locked = attempt { return true }
        return false
    }

    @Test(arguments: Backend.allCases) func attemptsCountUntilTheLimitThenLockUntilTheOldestLeavesTheWindow(_ backend: Backend) throws {
        let t = try TemporaryStore(backend)
        _ = try t.store.addUser("alice", passwordHash: "h")
        for offset in 0..<5 {
            #expect(!isLocked(try fail(t.store, "alice", at: Self.base.addingTimeInterval(Double(offset * 10)))))
        }
        #expect(try t.store.loginFailureCount("alice", from: Self.clientA, since: Self.base) == 5)
        #expect(try t.store.loginFailureCount("alice", from: nil, since: Self.base.addingTimeInterval(15)) == 3)
        let later = Self.base.addingTimeInterval(100)
        let locked = try t.store.beginLoginAttempt("alice", from: Self.clientA, at: later, policy: Self.policy)
        #expect(locked == .locked(retryAt: Self.base.addingTimeInterval(900), scope: .client))
        // A refused attempt is not stored: it does not push the lock further.
        #expect(try t.store.loginFailureCount("alice", from: nil, since: .distantPast) == 5)
        // Shared across Store instances (and so across processes and restarts).
        let other = try t.reopen()
        #expect(try other.loginFailureCount("alice", from: Self.clientA, since: Self.base) == 5)
        #expect(try other.beginLoginAttempt("alice", from: Self.clientA, at: later, policy: Self.policy) == locked)
        // Once the oldest failure has left the window, one more attempt may run.
        #expect(!isLocked(try fail(t.store, "alice", at: Self.base.addingTimeInterval(900.5))))
        #expect(isLocked(try fail(t.store, "alice", at: Self.base.addingTimeInterval(901))))


        // Unknown usernames are throttled too; impossible ones get no rows.
        for _ in 0..<5 { try fail(t.store, "ghost") }
        #expect(isLocked(try fail(t.store, "ghost")))
        for _ in 0..<10 { #expect(!isLocked(try fail(t.store, "not valid!"))) }
        #expect(try t.store.loginFailureCount("not valid!", from: nil, since: .distantPast) == 0)
        #expect(try t.store.loginFailureCount(String(repeating: "x", count: 65), from: nil, since: .distantPast) == 0)
    }

    /// The race of issue 10: 32 wrong guesses for one (user, client) at once,
    /// from 32 threads over 4 Store instances (as 4 processes would), each
    /// holding its attempt for a moment as the KDF would. The count and the
    /// mark are one transaction, so at most 5 get past the check.
    @Test(arguments: Backend.allCases) func concurrentGuessesGetNoMoreThanTheLimitPastTheCheck(_ backend: Backend) async throws {
        let t = try TemporaryStore(backend)
        _ = try t.store.addUser("alice", passwordHash: "h")
        let stores = [t.store, try t.reopen(), try t.reopen(), try t.reopen()]
        let outcomes = try await onThreads(32) { index -> Bool in
            let store = stores[index % stores.count]
            switch try store.beginLoginAttempt("alice", from: Self.clientA, at: Self.base, policy: Self.policy) {
            case .allowed(let pending):
                usleep(20_000)   // the password check
                try store.finishLoginAttempt(pending, .failed)
                return true
            case .locked:
                return false
            }
        }
        let allowed = outcomes.filter { $0 }.count
        #expect(outcomes.count == 32)
        #expect(allowed <= 5, "\(allowed) of 32 concurrent guesses got past the check")
        #expect(allowed == 5)
        #expect(try t.store.loginFailureCount("alice", from: nil, since: .distantPast) == allowed)
    }

    /// A stranger exhausting the budget of (alice, A) does not lock alice out
    /// from B; her success from B clears B's failures only.
    @Test(arguments: Backend.allCases) func aStrangerCannotLockTheUserOutFromAnotherClient(_ backend: Backend) throws {
        let t = try TemporaryStore(backend)
        _ = try t.store.addUser("alice", passwordHash: "h")
        for _ in 0..<5 { try fail(t.store, "alice", from: Self.clientA) }
        #expect(isLocked(try t.store.beginLoginAttempt("alice", from: Self.clientA, at: Self.base, policy: Self.policy)))

        try fail(t.store, "alice", from: Self.clientB)   // a typo of her own
        let fromB = try t.store.beginLoginAttempt("alice", from: Self.clientB, at: Self.base, policy: Self.policy)
        guard case .allowed(let pending) = fromB else {
            Issue.record("alice is locked out from B by A's failures: \(fromB)")
            return
        }
        try t.store.finishLoginAttempt(pending, .succeeded)
        #expect(try t.store.loginFailureCount("alice", from: Self.clientB, since: .distantPast) == 0)
        #expect(try t.store.loginFailureCount("alice", from: Self.clientA, since: .distantPast) == 5)
        #expect(isLocked(try t.store.beginLoginAttempt("alice", from: Self.clientA, at: Self.base, policy: Self.policy)))
        // Another user from A is not locked either.
        #expect(!isLocked(try t.store.beginLoginAttempt("bob", from: Self.clientA, at: Self.base, policy: Self.policy)))
    }

    /// Guessing from many addresses: once the username has `perUsername`
    /// failures in the window, every client is locked, even a fresh one.
    @Test(arguments: Backend.allCases) func thePerUsernameCeilingLocksEveryClient(_ backend: Backend) throws {
        let t = try TemporaryStore(backend)
        let policy = LoginThrottlePolicy(window: 900, perClient: 5, perUsername: 12)
        var failures = 0
        var client = 0
        while failures < 12 {
            client += 1
            let address = LoginClient(remoteAddress: "203.0.113.\(client)")
            for _ in 0..<5 where failures < 12 {
                let attempt = try fail(t.store, "alice", from: address,
                                       at: Self.base.addingTimeInterval(Double(failures)), policy: policy)
                #expect(!isLocked(attempt))
                failures += 1
            }
        }
        for address in ["203.0.113.200", "2001:db8::1", "203.0.113.1"] {
            let attempt = try t.store.beginLoginAttempt("alice", from: LoginClient(remoteAddress: address),
                                                        at: Self.base.addingTimeInterval(60), policy: policy)
            #expect(attempt == .locked(retryAt: Self.base.addingTimeInterval(900), scope: .username), "\(address)")
        }
        // Another username is not affected.
        #expect(!isLocked(try t.store.beginLoginAttempt("bob", from: Self.clientA, at: Self.base, policy: policy)))
        // The ceiling frees up as failures leave the window.
        #expect(!isLocked(try t.store.beginLoginAttempt("alice", from: LoginClient(remoteAddress: "203.0.113.250"),
                                                        at: Self.base.addingTimeInterval(900), policy: policy)))
    }

    /// A process that dies mid-check leaves its marks pending: they count
    /// as failures, and only until they leave the window.
    @Test(arguments: Backend.allCases) func pendingMarksCountAndExpireWithTheWindow(_ backend: Backend) throws {
        let t = try TemporaryStore(backend)
        for _ in 0..<5 {
            #expect(!isLocked(try t.store.beginLoginAttempt("alice", from: Self.clientA, at: Self.base, policy: Self.policy)))
        }
        #expect(isLocked(try t.store.beginLoginAttempt("alice", from: Self.clientA, at: Self.base.addingTimeInterval(899),
                                                       policy: Self.policy)))
        #expect(!isLocked(try t.store.beginLoginAttempt("alice", from: Self.clientA, at: Self.base.addingTimeInterval(900),
                                                        policy: Self.policy)))
    }

    @Test(arguments: Backend.allCases) func abandonedAttemptsAreNotCountedAndSuccessLeavesOthersPendingMarks(_ backend: Backend) throws {
        let t = try TemporaryStore(backend)
        func begin() throws -> PendingLogin {
            let attempt = try t.store.beginLoginAttempt("alice", from: Self.clientA, at: Self.base, policy: Self.policy)
            guard case .allowed(let pending) = attempt else { throw HarnessError("locked: \(attempt)") }
            return pending
        }
        try t.store.finishLoginAttempt(try begin(), .abandoned)
        #expect(try t.store.loginFailureCount("alice", from: nil, since: .distantPast) == 0)

        try fail(t.store, "alice")
        let concurrent = try begin()        // another request's check, still running
        try t.store.finishLoginAttempt(try begin(), .succeeded)
        // The recorded failure went; the other request's mark did not.
        #expect(try t.store.loginFailureCount("alice", from: nil, since: .distantPast) == 1)
        try t.store.finishLoginAttempt(concurrent, .failed)
        #expect(try t.store.loginFailureCount("alice", from: nil, since: .distantPast) == 1)
    }

    /// Two Store instances (server and CLI) writing at once must wait for
    /// each other's write lock instead of failing with SQLITE_BUSY.
    @Test(arguments: Backend.allCases) func concurrentWritersOnTwoInstances(_ backend: Backend) async throws {
        let t = try TemporaryStore(backend)
        let stores = [t.store, try t.reopen()]
        let open = LoginThrottlePolicy(window: 900, perClient: 1000, perUsername: 1000)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<4 {
                let store = stores[worker % 2]
                group.addTask {
                    for i in 0..<50 {
                        let attempt = try store.beginLoginAttempt("ghost", from: Self.clientA,
                                                                  at: Self.base.addingTimeInterval(Double(i)), policy: open)
                        guard case .allowed(let pending) = attempt else { throw HarnessError("locked: \(attempt)") }
                        try store.finishLoginAttempt(pending, .failed)
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(try t.store.loginFailureCount("ghost", from: nil, since: Self.base) == 200)
    }

    @Test(arguments: Backend.allCases) func oldRowsArePrunedOnInsert(_ backend: Backend) throws {
        let t = try TemporaryStore(backend)
        try fail(t.store, "ghost")
        try fail(t.store, "other", at: Self.base.addingTimeInterval(3600))
        #expect(try t.store.loginFailureCount("ghost", from: nil, since: .distantPast) == 1)
        try fail(t.store, "other", at: Self.base.addingTimeInterval(86_401))
        #expect(try t.store.loginFailureCount("ghost", from: nil, since: .distantPast) == 0)   // over a day old: gone
        #expect(try t.store.loginFailureCount("other", from: nil, since: .distantPast) == 2)
    }

    /// Client keys are address bytes: one key per IPv4 address, per IPv6 /64
    /// however it is written, and one shared key for anything unusable.
    @Test func clientKeys() {
        func key(_ address: String?) -> [UInt8] { LoginClient(remoteAddress: address).bytes }
        #expect(key("192.0.2.1") == [4, 192, 0, 2, 1])
        #expect(key("::ffff:192.0.2.1") == key("192.0.2.1"))
        #expect(key("192.0.2.2") != key("192.0.2.1"))
        #expect(key("2001:db8:aa:bb::1") == [6, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0xaa, 0x00, 0xbb])
        #expect(key("2001:0db8:00aa:00bb:ffff:ffff:ffff:ffff") == key("2001:db8:aa:bb::1"))
        #expect(key("2001:DB8:AA:BB::7") == key("2001:db8:aa:bb::1"))
        #expect(key("2001:db8:aa:bc::1") != key("2001:db8:aa:bb::1"))
        #expect(key("fe80::1%eth0") == key("fe80::2"))
        for junk: String? in [nil, "", "unix:", "localhost", "192.0.2.1 ", "192.0.2.1\u{0}junk", "0192.0.2.1",
                              "1.2.3", String(repeating: "1", count: 10_000), "::1::1"] {
            #expect(key(junk) == LoginClient.unknown.bytes, "\(String(describing: junk).prefix(40))")
        }
        #expect(LoginClient(remoteAddress: "192.0.2.1").description == "04c0000201")
    }
}
