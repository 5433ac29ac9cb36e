import Foundation
import GRDB

// Idempotency records (issue 8): see `Store.claimIdempotencyKey`.
extension SQLiteStore {
    private typealias KeyColumns = IdempotencyKeyRecord.Columns

    /// Expired records each claim deletes at most: more than the one row a
    /// claim adds, so the expired backlog shrinks while claims go on, and
    /// few enough to keep a claim's write transaction short.
    static let expiredRecordsPerClaim = 64

    public func claimIdempotencyKey(_ key: [UInt8], for username: String, fingerprint: [UInt8], at now: Date,
                                    ttl: TimeInterval, staleAfter: TimeInterval,
                                    abandonedAnswer: IdempotentAnswer) throws(StoreError) -> IdempotencyClaim {
        try IdempotencyLimits.requireValidClaim(key, for: username, fingerprint: fingerprint, abandonedAnswer: abandonedAnswer)
        let at = StoredDate.milliseconds(now)
        let expiresAt = at + IdempotencyLimits.milliseconds(ttl)
        let staleAfter = IdempotencyLimits.milliseconds(staleAfter)
        let keyBytes = Data(key), fingerprintBytes = Data(fingerprint)
        let token = IdempotencyLimits.newClaimToken()
        return try perform("claim an idempotency key of \(username)") { () throws -> IdempotencyClaim in
            // BEGIN IMMEDIATE: the write lock is taken before the read, so
            // no other connection (this process's or another's) can claim
            // the key between this read and this write.
            try pool.writeWithoutTransaction { db in
                var claim = IdempotencyClaim.inFlight
                try db.inTransaction(.immediate) {
                    try db.execute(literal: """
                        DELETE FROM \(IdempotencyKeyRecord.self) WHERE rowid IN (
                            SELECT rowid FROM \(IdempotencyKeyRecord.self) WHERE \(KeyColumns.expiresAt) <= \(at)
                            ORDER BY \(KeyColumns.expiresAt) LIMIT \(Self.expiredRecordsPerClaim))
                        """)
                    let record = try SQLRequest<IdempotencyKeyRecord>(literal: """
                        SELECT * FROM \(IdempotencyKeyRecord.self)
                        WHERE \(KeyColumns.username) = \(username) AND \(KeyColumns.key) = \(keyBytes)
                        """).fetchOne(db)
                    if let record, record.expiresAtMilliseconds > at {
                        if record.fingerprint != fingerprintBytes {   // Data ==: by bytes
                            claim = .mismatch
                        } else if let answer = record.answer {
                            claim = .replay(answer)
                        } else if record.claimedAtMilliseconds + staleAfter <= at {
                            try Self.storeAnswer(abandonedAnswer, db, where: """
                                \(KeyColumns.username) = \(username) AND \(KeyColumns.key) = \(keyBytes)
                                """)
                            claim = .abandoned(abandonedAnswer)
                        } else {
                            claim = .inFlight
                        }
                        return .commit
                    }
                    // None, or expired (and not in this claim's batch): a fresh claim.
                    try db.execute(literal: """
                        INSERT INTO \(IdempotencyKeyRecord.self) (\(KeyColumns.username), \(KeyColumns.key),
                            \(KeyColumns.fingerprint), \(KeyColumns.claim), \(KeyColumns.claimedAt), \(KeyColumns.expiresAt))
                        VALUES (\(username), \(keyBytes), \(fingerprintBytes), \(Data(token)), \(at), \(expiresAt))
                        ON CONFLICT (\(KeyColumns.username), \(KeyColumns.key)) DO UPDATE SET
                            \(KeyColumns.fingerprint) = excluded.\(KeyColumns.fingerprint),
                            \(KeyColumns.claim) = excluded.\(KeyColumns.claim),
                            \(KeyColumns.claimedAt) = excluded.\(KeyColumns.claimedAt),
                            \(KeyColumns.expiresAt) = excluded.\(KeyColumns.expiresAt),
                            \(KeyColumns.status) = NULL, \(KeyColumns.headers) = NULL, \(KeyColumns.body) = NULL
                        """)
                    claim = .claimed(IdempotencyClaimID(username: username, key: key, token: token))
                    return .commit
                }
                return claim
            }
        }
    }

    public func completeIdempotencyKey(_ claim: IdempotencyClaimID, answer: IdempotentAnswer) throws(StoreError) {
        try IdempotencyLimits.requireValid(answer)
        try perform("complete an idempotency key of \(claim.username)") { () throws in
            try pool.write { db in
                try Self.storeAnswer(answer, db, where: Self.stillInFlight(claim))
            }
        }
    }

    public func releaseIdempotencyKey(_ claim: IdempotencyClaimID) throws(StoreError) {
        try perform("release an idempotency key of \(claim.username)") { () throws in
            try pool.write { db in
                try db.execute(literal: "DELETE FROM \(IdempotencyKeyRecord.self) WHERE \(Self.stillInFlight(claim))")
            }
        }
    }

    /// The record of `claim`, while it is still in flight under that claim.
    private static func stillInFlight(_ claim: IdempotencyClaimID) -> SQL {
        """
        \(KeyColumns.username) = \(claim.username) AND \(KeyColumns.key) = \(Data(claim.key))
        AND \(KeyColumns.claim) = \(Data(claim.token)) AND \(KeyColumns.status) IS NULL
        """
    }

    /// Completes the record `condition` selects with `answer`, if it is in flight.
    private static func storeAnswer(_ answer: IdempotentAnswer, _ db: Database, where condition: SQL) throws {
        try db.execute(literal: """
            UPDATE \(IdempotencyKeyRecord.self)
            SET \(KeyColumns.status) = \(answer.status),
                \(KeyColumns.headers) = \(IdempotencyKeyRecord.encodeHeaders(answer.headers)),
                \(KeyColumns.body) = \(Data(answer.body))
            WHERE \(condition) AND \(KeyColumns.status) IS NULL
            """)
    }
}
