#if canImport(Glibc)
import Glibc
#else
#error("Mailgate runs on Linux only: it calls Glibc directly (sockets, poll, libfcgi)")
#endif

/// A system call that failed: which call (with what it was called on), and errno.
public struct SystemCallError: Error, Sendable, Equatable, CustomStringConvertible {
    public let call: String
    public let code: Int32

    public init(_ call: String, code: Int32) {
        self.call = call
        self.code = code
    }

    public var description: String { "\(call) failed: \(Self.describe(code))" }

    /// The text of an errno value (strerror_r: thread-safe, unlike strerror).
    public static func describe(_ code: Int32) -> String {
        var buffer = [CChar](repeating: 0, count: 128)
        // The XSI strerror_r (what Swift's Glibc module exposes) fills buffer.
        guard strerror_r(code, &buffer, buffer.count) == 0 else { return "errno \(code)" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// Runs a system call that reports failure as -1 and errno, retrying while
/// it fails with EINTR (a signal arrived; the call did nothing). `call`
/// names it for the error, and is only evaluated on failure.
///
/// Never use it for close(2): see `closeDescriptor`.
@inlinable
public func systemCall<Result: FixedWidthInteger>(
    _ call: @autoclosure () -> String, _ body: () -> Result
) throws(SystemCallError) -> Result {
    while true {
        let result = body()
        if result != -1 { return result }
        let code = errno
        if code == EINTR { continue }
        throw SystemCallError(call(), code: code)
    }
}

/// What a call on a non-blocking descriptor did: its result, or nothing yet.
public enum NonBlockingResult<Result: Sendable>: Sendable {
    case done(Result)
    case wouldBlock
}

/// `systemCall` for non-blocking descriptors: EAGAIN/EWOULDBLOCK (and
/// EINPROGRESS, for connect) mean "not yet", not failure.
@inlinable
public func nonBlockingSystemCall<Result: FixedWidthInteger & Sendable>(
    _ call: @autoclosure () -> String, _ body: () -> Result
) throws(SystemCallError) -> NonBlockingResult<Result> {
    while true {
        let result = body()
        if result != -1 { return .done(result) }
        let code = errno
        switch code {
        case EINTR: continue
        case EAGAIN, EWOULDBLOCK, EINPROGRESS: return .wouldBlock
        default: throw SystemCallError(call(), code: code)
        }
    }
}

/// close(2), never retried: Linux releases the descriptor even when close
/// reports EINTR, and a retry could close one another thread just opened.
/// Its error tells nothing a caller could act on, so it is not returned.
public func closeDescriptor(_ fd: Int32) {
    _ = Glibc.close(fd)
}

/// Waits until `fd` is ready for `events` or `deadline` passes: the ready
/// events, or nil on time-out. EINTR waits again for the time that is left.
public func waitUntilReady(_ fd: Int32, for events: Int16, until deadline: ContinuousClock.Instant,
                           _ call: @autoclosure () -> String = "poll") throws(SystemCallError) -> Int16? {
    while true {
        let left = deadline - .now
        guard left > .zero else { return nil }
        var entry = pollfd(fd: fd, events: events, revents: 0)
        // Rounded up, so a wait never ends early and spins.
        let milliseconds = Int32(clamping: Int((left / .milliseconds(1)).rounded(.up)))
        let ready = poll(&entry, 1, milliseconds)
        if ready > 0 { return entry.revents }
        if ready == 0 { continue }  // the clock decides, on the next turn
        let code = errno
        if code == EINTR { continue }
        throw SystemCallError(call(), code: code)
    }
}
