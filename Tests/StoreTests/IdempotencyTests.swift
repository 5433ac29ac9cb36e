import Foundation
import GRDB
import MailgateTesting
import Testing
@testable import Store

/// Issue 8: idempotency records, shared by every process on the store.
@Suite struct IdempotencyTests {
    static let base = Date(timeIntervalSince1970: 1_750_000_000)
    static let ttl: TimeInterval = 86_400
    static let staleAfter: TimeInterval = 120
    static let key = Array("order-4711".utf8)
    static let bodyA = [UInt8](repeating: 0xA1, count: 32)
    static let bodyB = [UInt8](repeating: 0xB2, count: 32)
    static let sent = IdempotentAnswer(
        status: 200, headers: [StoredHeader(name: "Content-Type", value: "application/json"),
                               StoredHeader(name: "RateLimit-Remaining", value: "7")],
        body: Array(#"{"message_id":"<a@b>"}"#.utf8))
    static let unknown = IdempotentAnswer(
        status: 502, headers: [StoredHeader(name: "Content-Type", value: "application/json")],
        body: Array(#"{"detail":"may or may not have been delivered","code":"delivery_unknown"}"#.utf8))

    func claim(_ store: any Store, _ username: String = "alice", key: [UInt8] = key, body: [UInt8] = bodyA,
               at date: Date = base) throws -> IdempotencyClaim {
        try store.claimIdempotencyKey(key, for: username, fingerprint: body, at: date, ttl: Self.ttl,
                                      staleAfter: Self.staleAfter, abandonedAnswer: Self.unknown)
    }

    func claimed(_ store: any Store, _ username: String = "alice", key: [UInt8] = key, body: [UInt8] = bodyA,
                 at date: Date = base) throws -> IdempotencyClaimID {
        let result = try claim(store, username, key: key, body: body, at: date)
        guard case .claimed(let id) = result else { throw HarnessError("not claimed: \(result)") }
        return id
    }

    /// Records in the table (of `username`: a plain test name, quoted as is).
    func recordCount(_ t: TemporaryStore, of username: String? = nil) throws -> Int {
        try t.integer("SELECT count(*) FROM idempotency_keys" + (username.map { " WHERE username = '\($0)'" } ?? ""))
    }

    @Test(arguments: Backend.allCases) func aCompletedClaimIsReplayedToTheSameBodyAndRefusedToAnother(_ backend: Backend) throws {
        let t = try TemporaryStore(backend)
        let id = try claimed(t.store)
        #expect(id.username == "alice" && id.key == Self.key)
        // Still in flight: the same body waits, another body is a mismatch.
        #expect(try claim(t.store, at: Self.base.addingTimeInterval(1)) == .inFlight)
        #expect(try claim(t.store, body: Self.bodyB, at: Self.base.addingTimeInterval(1)) == .mismatch)
        try t.store.completeIdempotencyKey(id, answer: Self.sent)
        #expect(try claim(t.store, at: Self.base.addingTimeInterval(2)) == .replay(Self.sent))
        #expect(try claim(t.store, at: Self.base.addingTimeInterval(3)) == .replay(Self.sent))
        #expect(try claim(t.store, body: Self.bodyB, at: Self.base.addingTimeInterval(4)) == .mismatch)
        // A second completion by the same claim changes nothing.
        try t.store.completeIdempotencyKey(id, answer: Self.unknown)
        #expect(try claim(t.store, at: Self.base.addingTimeInterval(5)) == .replay(Self.sent))
    }

    @Test(arguments: Backend.allCases) func aStoredAnswerKeepsItsBytesHeadersAndOrder(_ backend: Backend) throws {
        let t = try TemporaryStore(backend)
        let answers = [
            IdempotentAnswer(status: 200),
            IdempotentAnswer(status: 422, headers: [StoredHeader(name: "X-Empty", value: "")], body: [0, 255, 10, 13]),
            IdempotentAnswer(status: 599, headers: [StoredHeader(name: "B", value: "2"), StoredHeader(name: "A", value: "é\u{301}"),
                                                    StoredHeader(name: "B", value: String(repeating: "v", count: 70_000))],
                             body: [UInt8](repeating: 7, count: 100_000)),
        ]
        for (index, answer) in answers.enumerated() {
            let key = Array("k\(index)".utf8)
            try t.store.completeIdempotencyKey(try claimed(t.store, key: key), answer: answer)
            #expect(try claim(t.reopen(), key: key) == .replay(answer))
        }
        // Compared by bytes: a canonically equivalent spelling is another header.
        #expect(StoredHeader(name: "A", value: "\u{E9}") != StoredHeader(name: "A", value: "e\u{301}"))
    }

    @Test(arguments: Backend.allCases) func aReleasedKeyIsClaimedAfresh(_ backend: Backend) throws {
        let t = try TemporaryStore(backend)
        let first = try claimed(t.store)
        try t.store.releaseIdempotencyKey(first)
        #expect(try recordCount(t) == 0)
        // A released key is free for any body.
        let second = try claimed(t.store, body: Self.bodyB, at: Self.base.addingTimeInterval(1))
        #expect(second != first)
        // The first claim's release no longer applies: the record is the second's.
        try t.store.releaseIdempotencyKey(first)
        try t.store.completeIdempotencyKey(first, answer: Self.unknown)
        #expect(try claim(t.store, body: Self.bodyB, at: Self.base.addingTimeInterval(2)) == .inFlight)
        try t.store.completeIdempotencyKey(second, answer: Self.sent)
        #expect(try claim(t.store, body: Self.bodyB, at: Self.base.addingTimeInterval(3)) == .replay(Self.sent))
        // Releasing a completed record changes nothing.
        try t.store.releaseIdempotencyKey(second)
        #expect(try claim(t.store, body: Self.bodyB, at: Self.base.addingTimeInterval(4)) == .replay(Self.sent))
    }

    @Test(arguments: Backend.allCases) func aRecordIsForgottenTTLAfterItsClaim(_ backend: Backend) throws {
        let t = try TemporaryStore(backend)
        try t.store.completeIdempotencyKey(try claimed(t.store), answer: Self.sent)
        let lastMoment = Self.base.addingTimeInterval(Self.ttl - 0.001)
        #expect(try claim(t.store, body: Self.bodyB, at: lastMoment) == .mismatch)
        #expect(try claim(t.store, at: lastMoment) == .replay(Self.sent))
        // Expired: absent, whatever the body.
        let id = try claimed(t.store, body: Self.bodyB, at: Self.base.addingTimeInterval(Self.ttl))
        #expect(try claim(t.store, body: Self.bodyB, at: Self.base.addingTimeInterval(Self.ttl + 1)) == .inFlight)
        try t.store.completeIdempotencyKey(id, answer: Self.unknown)
        #expect(try claim(t.store, body: Self.bodyB, at: Self.base.addingTimeInterval(Self.ttl + 2)) == .replay(Self.unknown))
        // The new claim lives its own TTL.
        #expect(try claim(t.store, body: Self.bodyB, at: Self.base.addingTimeInterval(2 * Self.ttl - 1)) == .replay(Self.unknown))
        #expect(try claim(t.store, at: Self.base.addingTimeInterval(2 * Self.ttl)) != .mismatch)
    }

    /// An in-flight record expires too (its claimer died and nobody retried
    /// within the TTL): a new claim takes it over as a fresh claim.
    @Test(arguments: Backend.allCases) func anExpiredInFlightRecordIsClaimedAfresh(_ backend: Backend) throws {
        let t = try TemporaryStore(backend)
        let old = try claimed(t.store)
        let new = try claimed(t.store, at: Self.base.addingTimeInterval(Self.ttl))
        try t.store.completeIdempotencyKey(old, answer: Self.unknown)   // too late: not the record's claim
        #expect(try claim(t.store, at: Self.base.addingTimeInterval(Self.ttl + 1)) == .inFlight)
        try t.store.completeIdempotencyKey(new, answer: Self.sent)
        #expect(try claim(t.store, at: Self.base.addingTimeInterval(Self.ttl + 2)) == .replay(Self.sent))
    }

    @Test(arguments: Backend.allCases) func claimsDeleteExpiredRecordsOfEveryUserInBatches(_ backend: Backend) throws {
        let t = try TemporaryStore(backend)
        let batch = SQLiteStore.expiredRecordsPerClaim
        for index in 0..<(batch + 10) {
            _ = try claimed(t.store, "bob", key: Array("bob-\(index)".utf8))
        }
        _ = try claimed(t.store, "carol", at: Self.base.addingTimeInterval(10))
        #expect(try recordCount(t, of: "bob") == batch + 10)
        // Bob's records have expired, carol's not yet: alice's claim deletes
        // one batch of bob's, the next claim the rest.
        _ = try claimed(t.store, "alice", at: Self.base.addingTimeInterval(Self.ttl))
        #expect(try recordCount(t, of: "bob") == 10)
        #expect(try claim(t.store, "alice", at: Self.base.addingTimeInterval(Self.ttl + 1)) == .inFlight)
        #expect(try recordCount(t, of: "bob") == 0)
        #expect(try recordCount(t, of: "carol") == 1)
        #expect(try recordCount(t) == 2)
        // The deletion goes by the expiry index, not a scan of the table.
        guard backend == .sqlite else { return }
        let plan = try t.sqlite.pool.read { db in
            try String.fetchAll(db, sql: """
                EXPLAIN QUERY PLAN SELECT rowid FROM idempotency_keys WHERE expires_at_ms <= 0
                ORDER BY expires_at_ms LIMIT 64
                """, adapter: SuffixRowAdapter(fromIndex: 3))
        }
        #expect(plan.contains { $0.contains("idempotency_keys_by_expiry") }, "\(plan)")
    }

    /// A claimer that died mid-send: after `staleAfter` its record is
    /// completed with the 502 the later claim passed, once and for all.
    @Test(arguments: Backend.allCases) func anAbandonedClaimIsCompletedWithTheAbandonedAnswer(_ backend: Backend) throws {
        let t = try TemporaryStore(backend)
        let dead = try claimed(t.store)
        #expect(try claim(t.store, at: Self.base.addingTimeInterval(Self.staleAfter - 0.001)) == .inFlight)
        // Another body is a mismatch even then, and takes nothing over.
        #expect(try claim(t.store, body: Self.bodyB, at: Self.base.addingTimeInterval(Self.staleAfter)) == .mismatch)
        #expect(try claim(t.store, at: Self.base.addingTimeInterval(Self.staleAfter)) == .abandoned(Self.unknown))
        let other = IdempotentAnswer(status: 502, body: Array("other".utf8))
        #expect(try t.store.claimIdempotencyKey(Self.key, for: "alice", fingerprint: Self.bodyA,
                                                at: Self.base.addingTimeInterval(Self.staleAfter + 1), ttl: Self.ttl,
                                                staleAfter: Self.staleAfter, abandonedAnswer: other) == .replay(Self.unknown))
        // The original claimer wakes up: its completion and release change nothing.
        try t.store.completeIdempotencyKey(dead, answer: Self.sent)
        #expect(try claim(t.store, at: Self.base.addingTimeInterval(Self.staleAfter + 2)) == .replay(Self.unknown))
        try t.store.releaseIdempotencyKey(dead)
        #expect(try claim(t.reopen(), at: Self.base.addingTimeInterval(Self.staleAfter + 3)) == .replay(Self.unknown))
        // It still expires TTL after the first claim.
        #expect(try claim(t.store, body: Self.bodyB, at: Self.base.addingTimeInterval(Self.ttl)) != .mismatch)
    }

    @Test(arguments: Backend.allCases) func recordsSurviveReopeningTheStore(_ backend: Backend) throws {
        let t = try TemporaryStore(backend)
        let done = try claimed(t.store, key: Array("done".utf8))
        try t.store.completeIdempotencyKey(done, answer: Self.sent)
        let pending = try claimed(t.store, key: Array("pending".utf8))
        if backend == .sqlite { try t.sqlite.pool.close() }
        let again = try t.reopen()
        #expect(try claim(again, key: Array("done".utf8), at: Self.base.addingTimeInterval(1)) == .replay(Self.sent))
        #expect(try claim(again, key: Array("pending".utf8), at: Self.base.addingTimeInterval(1)) == .inFlight)
        // The claim still names its record in the reopened store.
        try again.completeIdempotencyKey(pending, answer: Self.unknown)
        #expect(try claim(again, key: Array("pending".utf8), at: Self.base.addingTimeInterval(2)) == .replay(Self.unknown))
    }

    /// 32 requests with one key at once, from 32 threads over two Store
    /// instances (as two processes would): exactly one claims it.
    @Test(arguments: Backend.allCases) func concurrentClaimsFromTwoInstancesGrantTheKeyOnce(_ backend: Backend) async throws {
        let t = try TemporaryStore(backend)
        let stores = [t.store, try t.reopen()]
        let results = try await onThreads(32) { index -> IdempotencyClaim in
            try self.claim(stores[index % 2], at: Self.base)
        }
        #expect(results.count == 32)
        let claims = results.compactMap { result -> IdempotencyClaimID? in
            if case .claimed(let id) = result { return id }
            return nil
        }
        #expect(claims.count == 1)
        #expect(results.filter { $0 == .inFlight }.count == 31)
        #expect(try recordCount(t) == 1)
    }

    /// The same: concurrent takeovers of one abandoned record all answer
    /// the same 502, and one of them wrote it.
    @Test(arguments: Backend.allCases) func concurrentClaimsOfAnAbandonedKeyAllGetItsAnswer(_ backend: Backend) async throws {
        let t = try TemporaryStore(backend)
        _ = try claimed(t.store)
        let stores = [t.store, try t.reopen()]
        let later = Self.base.addingTimeInterval(Self.staleAfter)
        let results = try await onThreads(16) { index -> IdempotencyClaim in
            try self.claim(stores[index % 2], at: later)
        }
        #expect(results.filter { $0 == .abandoned(Self.unknown) }.count == 1)
        #expect(results.filter { $0 == .replay(Self.unknown) }.count == 15)
    }

    @Test(arguments: Backend.allCases) func keysArePerUser(_ backend: Backend) throws {
        let t = try TemporaryStore(backend)
        let alice = try claimed(t.store, "alice")
        let bob = try claimed(t.store, "bob", body: Self.bodyB)
        #expect(alice != bob)
        try t.store.completeIdempotencyKey(alice, answer: Self.sent)
        #expect(try claim(t.store, "bob", body: Self.bodyB) == .inFlight)
        #expect(try claim(t.store, "alice") == .replay(Self.sent))
        // Key bytes, not text: case and prefixes are other keys.
        #expect(try claim(t.store, "alice", key: Array("ORDER-4711".utf8)) != .replay(Self.sent))
        #expect(try claim(t.store, "alice", key: Array("order-471".utf8)) != .replay(Self.sent))
    }

    @Test(arguments: Backend.allCases) func removingAUserRemovesTheirRecords(_ backend: Backend) throws {
        let t = try TemporaryStore(backend)
        _ = try t.store.addUser("alice", passwordHash: "h")
        _ = try t.store.addUser("bob", passwordHash: "h")
        try t.store.completeIdempotencyKey(try claimed(t.store, "alice"), answer: Self.sent)
        _ = try claimed(t.store, "alice", key: Array("other".utf8))
        _ = try claimed(t.store, "bob")
        try t.store.removeUser("alice")
        #expect(try recordCount(t, of: "alice") == 0)
        #expect(try recordCount(t, of: "bob") == 1)
        // A new alice starts with no keys.
        _ = try t.store.addUser("alice", passwordHash: "h")
        #expect(try claim(t.store, "alice", body: Self.bodyB) != .mismatch)
    }

    @Test(arguments: Backend.allCases) func invalidInputsAreRefused(_ backend: Backend) throws {
        let t = try TemporaryStore(backend)
        #expect(throws: StoreError.invalidUsername) { try claim(t.store, "not valid!") }
        #expect(throws: StoreError.invalidUsername) { try claim(t.store, String(repeating: "x", count: 65)) }
        #expect(throws: StoreError.invalidIdempotencyKey) { try claim(t.store, key: []) }
        #expect(throws: StoreError.invalidIdempotencyKey) { try claim(t.store, key: [UInt8](repeating: 0x41, count: 256)) }
        _ = try claimed(t.store, key: [UInt8](repeating: 0x41, count: 255))
        #expect(throws: StoreError.self) { try claim(t.store, body: []) }
        #expect(throws: StoreError.self) {
            try t.store.claimIdempotencyKey(Self.key, for: "alice", fingerprint: Self.bodyA, at: Self.base, ttl: Self.ttl,
                                            staleAfter: Self.staleAfter, abandonedAnswer: IdempotentAnswer(status: 99))
        }
        let id = try claimed(t.store)
        #expect(throws: StoreError.self) { try t.store.completeIdempotencyKey(id, answer: IdempotentAnswer(status: 600)) }
        #expect(try claim(t.store, at: Self.base.addingTimeInterval(1)) == .inFlight)
        #expect(try recordCount(t) == 2)
    }

    @Test func headerEncodingRoundTripsAndRefusesDamage() {
        let headers = [StoredHeader(name: "A", value: ""), StoredHeader(name: "", value: "ü"), StoredHeader(name: "B", value: "x")]
        let encoded = IdempotencyKeyRecord.encodeHeaders(headers)
        #expect(IdempotencyKeyRecord.decodeHeaders(encoded) == headers)
        #expect(IdempotencyKeyRecord.decodeHeaders(Data()) == [])
        // A cut inside a field does not decode; one between headers drops the rest.
        for cut in 1..<encoded.count {
            let decoded = IdempotencyKeyRecord.decodeHeaders(encoded.prefix(cut))
            #expect(decoded.map { $0.count < headers.count && headers.starts(with: $0) } ?? true, "\(cut)")
        }
        #expect((1..<encoded.count).filter { IdempotencyKeyRecord.decodeHeaders(encoded.prefix($0)) != nil } == [9, 19])
        #expect(IdempotencyKeyRecord.decodeHeaders(Data([0, 0, 0, 1, 0xFF, 0, 0, 0, 0])) == nil, "not UTF-8")
        #expect(IdempotencyKeyRecord.decodeHeaders(Data([0xFF, 0xFF, 0xFF, 0xFF])) == nil)
    }
}
