#if canImport(Glibc)
import Glibc
#endif

/// Runs `work` on a new detached thread (`stackSize` bytes of stack when
/// given). Unlike Foundation's `Thread.start()`, which ignores a failed
/// pthread_create (the work then never runs), a failure is thrown: EAGAIN
/// when the process or the machine is out of threads.
public func startDetachedThread(stackSize: Int? = nil,
                                _ work: @escaping @Sendable () -> Void) throws(SystemCallError) {
    final class Work: Sendable {
        let run: @Sendable () -> Void
        init(_ run: @escaping @Sendable () -> Void) { self.run = run }
    }
    var attributes = pthread_attr_t()
    let initialised = pthread_attr_init(&attributes)
    guard initialised == 0 else { throw SystemCallError("pthread_attr_init", code: initialised) }
    // pthread_attr_destroy has nothing to report on an initialised object (glibc returns 0).
    defer { _ = pthread_attr_destroy(&attributes) }
    let detached = pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
    guard detached == 0 else { throw SystemCallError("pthread_attr_setdetachstate", code: detached) }
    if let stackSize {
        let sized = pthread_attr_setstacksize(&attributes, stackSize)
        guard sized == 0 else { throw SystemCallError("pthread_attr_setstacksize", code: sized) }
    }
    let box = Unmanaged.passRetained(Work(work)).toOpaque()
    var thread = pthread_t()
    let created = pthread_create(&thread, &attributes, { raw in
        guard let raw else { return nil }
        Unmanaged<Work>.fromOpaque(raw).takeRetainedValue().run()
        return nil
    }, box)
    guard created == 0 else {
        Unmanaged<Work>.fromOpaque(box).release()
        throw SystemCallError("pthread_create", code: created)
    }
}
