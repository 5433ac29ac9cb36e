import Synchronization
import Posix
#if canImport(Glibc)
import Glibc
#endif

/// One `Value` per thread, made on the thread's first call and owned here
/// (so they all end with this object). No lock on the way to a thread's
/// own value: FastCGI workers each keep their SQLite connection (a shared
/// free list measured 12% of Mailgate's CPU spinning in its mutex with 16
/// workers on 2 cores).
final class PerThread<Value: AnyObject & Sendable>: Sendable {
    /// Each thread's slot holds an unretained pointer to its value.
    private let slot: pthread_key_t
    /// Taken only when a thread makes its first value.
    private let values = Mutex<[Value]>([])
    private let make: @Sendable () throws -> Value

    init(make: @escaping @Sendable () throws -> Value) throws(StoreError) {
        var key = pthread_key_t()
        let created = pthread_key_create(&key, nil)
        guard created == 0 else { throw .database(SystemCallError("pthread_key_create", code: created).description) }
        slot = key
        self.make = make
    }

    deinit {
        pthread_key_delete(slot)
    }

    /// The calling thread's value.
    func value() throws -> Value {
        if let raw = pthread_getspecific(slot) {
            return Unmanaged<Value>.fromOpaque(raw).takeUnretainedValue()
        }
        let made = try make()
        values.withLock { $0.append(made) }
        let stored = pthread_setspecific(slot, Unmanaged.passUnretained(made).toOpaque())
        guard stored == 0 else { throw StoreError.database(SystemCallError("pthread_setspecific", code: stored).description) }
        return made
    }
}
