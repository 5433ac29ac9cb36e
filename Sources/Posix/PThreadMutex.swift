import Glibc

/// A value behind a plain pthread mutex, with `Mutex`'s `withLock` shape.
///
/// For locks that many threads take on every request (the SMTP pool, the
/// per-user send counter): Synchronization's `Mutex` spins before it
/// sleeps, and with 16 workers on 2 cores a spinning waiter mostly burns
/// the time a preempted holder needs (make bench showed 8-10% of the CPU in
/// its `lockSlow`). A default pthread mutex sleeps in the kernel at once.
public final class PThreadMutex<State>: @unchecked Sendable {  // `state` only under `mutex`
    @usableFromInline let mutex: UnsafeMutablePointer<pthread_mutex_t>
    @usableFromInline var state: State

    public init(_ state: State) {
        self.state = state
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        // With default attributes this cannot fail (glibc returns 0).
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deinitialize(count: 1)
        mutex.deallocate()
    }

    @inlinable
    public func withLock<Result, Failure: Error>(_ body: (inout State) throws(Failure) -> Result) throws(Failure) -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&state)
    }
}
