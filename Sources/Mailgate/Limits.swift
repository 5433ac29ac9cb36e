import Dispatch
import Posix

/// Sends in flight per user, in this process. One user whose SMTP server
/// never answers holds a worker for up to the SMTP deadline per request;
/// without a cap, enough of them stop every other user (and `/token`).
final class InFlightLimit: Sendable {
    let limitPerUser: Int
    // Keys are stored usernames (validated ASCII, at most 64 bytes): hashing
    // them is cheap and linear. Every send takes this lock twice from every
    // worker: a pthread mutex, which sleeps instead of spinning (Posix).
    private let counts = PThreadMutex<[String: Int]>([:])

    init(limitPerUser: Int) { self.limitPerUser = max(1, limitPerUser) }

    /// Takes a slot for `user`; false when the user already has the limit.
    func acquire(_ user: String) -> Bool {
        counts.withLock { counts in
            let current = counts[user, default: 0]
            guard current < limitPerUser else { return false }
            counts[user] = current + 1
            return true
        }
    }

    func release(_ user: String) {
        counts.withLock { counts in
            let left = counts[user, default: 1] - 1
            counts[user] = left > 0 ? left : nil
        }
    }

    /// How many sends `user` has in flight now.
    func count(_ user: String) -> Int { counts.withLock { $0[user, default: 0] } }
}

/// Bounds how many password-hash computations (600,000 PBKDF2 rounds each)
/// run at once, so guessing passwords on `/token` cannot take every worker
/// and core from the sends. Over the bound a login waits up to `patience`,
/// then is refused with 503 + Retry-After.
final class KDFGate: Sendable {
    let slots: Int
    let patience: Duration
    private let semaphore: DispatchSemaphore

    init(slots: Int, patience: Duration) {
        self.slots = max(1, slots)
        self.patience = patience
        self.semaphore = DispatchSemaphore(value: self.slots)
    }

    /// Runs `work` in a slot; nil when no slot came free within `patience`.
    func run<T>(_ work: () -> T) -> T? {
        let (seconds, attoseconds) = patience.components
        let nanoseconds = Int(seconds) * 1_000_000_000 + Int(attoseconds / 1_000_000_000)
        guard semaphore.wait(timeout: .now() + .nanoseconds(nanoseconds)) == .success else { return nil }
        defer { semaphore.signal() }
        return work()
    }
}
