import Glibc

/// An object behind a pthread mutex with one condition variable: the
/// blocking wait the access token cache's waiters need (they are plain
/// worker threads, not tasks). The condition uses CLOCK_MONOTONIC, so a
/// wall-clock change cannot stretch or cut a wait.
///
/// The state is a class instance handed to the body by reference (not
/// `inout`): a body that waits releases the lock, other threads change the
/// state meanwhile, and an `inout` access must not span that.
final class ConditionLock<State: AnyObject>: @unchecked Sendable {  // `state` only under `mutex`
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>
    private let state: State

    init(_ state: State) {
        self.state = state
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        condition = .allocate(capacity: 1)
        condition.initialize(to: pthread_cond_t())
        // With default attributes and CLOCK_MONOTONIC these cannot fail on glibc.
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deinitialize(count: 1)
        condition.deallocate()
        mutex.deinitialize(count: 1)
        mutex.deallocate()
    }

    /// Runs `body` under the lock. `body` may call `wait(until:)` on the
    /// `Waiter` it is given, which releases the lock while it sleeps.
    func withLock<Result, Failure: Error>(_ body: (State, Waiter) throws(Failure) -> Result) throws(Failure) -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(state, Waiter(mutex: mutex, condition: condition))
    }

    /// Wakes every waiter (they re-check their condition).
    func broadcast() {
        pthread_cond_broadcast(condition)
    }

    struct Waiter {
        fileprivate let mutex: UnsafeMutablePointer<pthread_mutex_t>
        fileprivate let condition: UnsafeMutablePointer<pthread_cond_t>

        /// Sleeps until woken or `deadline`; false once the deadline has
        /// passed. Spurious wake-ups return true: callers loop on their condition.
        func wait(until deadline: ContinuousClock.Instant) -> Bool {
            let left = deadline - .now
            guard left > .zero else { return false }
            var now = timespec()
            clock_gettime(CLOCK_MONOTONIC, &now)
            let (seconds, attoseconds) = left.components
            var nanoseconds = Int(now.tv_nsec) + Int(attoseconds / 1_000_000_000)
            var wholeSeconds = Int(now.tv_sec) + Int(clamping: seconds)
            if nanoseconds >= 1_000_000_000 {
                nanoseconds -= 1_000_000_000
                wholeSeconds += 1
            }
            var until = timespec(tv_sec: wholeSeconds, tv_nsec: nanoseconds)
            // ETIMEDOUT or a wake-up: either way the caller re-checks.
            _ = pthread_cond_timedwait(condition, mutex, &until)
            return true
        }
    }
}
