import Foundation

// Idempotency records (issue 8, safe retries), as the store keeps them: a
// send that carries an `Idempotency-Key` first claims the key, in one write
// transaction shared by every process on the store, and only then sends;
// its answer is stored, or the key released, when it is done. See
// `Store.claimIdempotencyKey`.

/// One response header of a stored answer. Compared by bytes (String ==
/// normalises Unicode).
public struct StoredHeader: Sendable, Equatable {
    public var name: String
    public var value: String

    public init(name: String, value: String) {
        self.name = name
        self.value = value
    }

    public static func == (lhs: StoredHeader, rhs: StoredHeader) -> Bool {
        lhs.name.utf8.elementsEqual(rhs.name.utf8) && lhs.value.utf8.elementsEqual(rhs.value.utf8)
    }
}

/// The answer a request with an idempotency key got, as it is replayed to
/// every later request with the same key and body: the HTTP status (100-599),
/// the headers worth repeating, in order, and the body bytes.
public struct IdempotentAnswer: Sendable, Equatable {
    public var status: Int
    public var headers: [StoredHeader]
    public var body: [UInt8]

    public init(status: Int, headers: [StoredHeader] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }
}

/// A claim `Store.claimIdempotencyKey` granted: names the key and this one
/// claim of it, so that `completeIdempotencyKey` and `releaseIdempotencyKey`
/// apply only while the record is still this claim's, in flight (not after
/// a later request took it over as abandoned, or claimed it again after it
/// expired).
public struct IdempotencyClaimID: Sendable, Equatable {
    public let username: String
    /// The `Idempotency-Key` as bytes.
    public let key: [UInt8]
    /// Random, made at the claim (16 bytes).
    let token: [UInt8]

    init(username: String, key: [UInt8], token: [UInt8]) {
        self.username = username
        self.key = key
        self.token = token
    }

    /// By bytes (String == normalises Unicode).
    public static func == (lhs: IdempotencyClaimID, rhs: IdempotencyClaimID) -> Bool {
        lhs.token == rhs.token && lhs.key == rhs.key && lhs.username.utf8.elementsEqual(rhs.username.utf8)
    }
}

/// The answer to `Store.claimIdempotencyKey`.
public enum IdempotencyClaim: Sendable, Equatable {
    /// This request owns the key (now recorded as in flight): send, then
    /// `completeIdempotencyKey` with an answer that ends the matter, or
    /// `releaseIdempotencyKey` for one that invites a retry.
    case claimed(IdempotencyClaimID)
    /// A request with the same key and fingerprint was answered this way
    /// before: answer the same, send nothing.
    case replay(IdempotentAnswer)
    /// The key was used with another fingerprint (another body), whatever
    /// that request's state: send nothing.
    case mismatch
    /// A request with the same key and fingerprint is still being sent, and
    /// not yet for `staleAfter`: send nothing.
    case inFlight
    /// A request with the same key and fingerprint was in flight for
    /// `staleAfter` or longer (its worker or process died mid-send): the
    /// record now holds the `abandonedAnswer` this claim passed, which this
    /// and every later request with the key gets. Send nothing.
    case abandoned(IdempotentAnswer)
}

/// Idempotency keys are 1-255 bytes (the HTTP layer also requires
/// printable ASCII); fingerprints 1-64 bytes (a SHA-256 is 32).
enum IdempotencyLimits {
    static let keyLength = 1...255
    static let fingerprintLength = 1...64
    static let status = 100...599
}

// Shared by both backends, so they validate and time records alike.
extension IdempotencyLimits {
    /// What `claimIdempotencyKey` checks before touching the database.
    static func requireValidClaim(_ key: [UInt8], for username: String, fingerprint: [UInt8],
                                  abandonedAnswer: IdempotentAnswer) throws(StoreError) {
        try User.requireValid(username)
        guard keyLength.contains(key.count) else { throw .invalidIdempotencyKey }
        guard fingerprintLength.contains(fingerprint.count) else {
            throw .database("an idempotency fingerprint must be 1 to 64 bytes")
        }
        try requireValid(abandonedAnswer)
    }

    static func requireValid(_ answer: IdempotentAnswer) throws(StoreError) {
        guard IdempotencyLimits.status.contains(answer.status) else {
            throw .database("an idempotent answer's status must be 100 to 599, not \(answer.status)")
        }
    }

    /// A duration in whole milliseconds: 0 for anything not above 0 (NaN
    /// too), at most ten years (so sums with dates cannot overflow).
    static func milliseconds(_ interval: TimeInterval) -> Int64 {
        guard interval > 0 else { return 0 }
        return Int64((min(interval, 3660 * 86_400) * 1000).rounded())
    }

    /// 16 random bytes (getrandom, which does not fail on Linux).
    static func newClaimToken() -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        var token: [UInt8] = []
        token.reserveCapacity(16)
        for _ in 0..<2 { withUnsafeBytes(of: generator.next() as UInt64) { token.append(contentsOf: $0) } }
        return token
    }
}
