import Foundation
import Posix
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Failures of the test harness itself (not of the code under test).
public struct HarnessError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Runs blocking work (waitpid polling, socket reads) on its own thread so
/// parallel tests do not starve Swift's cooperative pool (2 threads here).
public func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
        do {
            try startThread {
                do { continuation.resume(returning: try body()) } catch { continuation.resume(throwing: error) }
            }
        } catch {
            continuation.resume(throwing: error)
        }
    }
}

/// Runs `work` on a new detached thread (4 MiB stack) through Posix's
/// `startDetachedThread`, not Foundation's `Thread`, whose `start()` ignores
/// a failed pthread_create: a test awaiting work that never runs waits for
/// ever. A machine out of threads (EAGAIN, e.g. a container's pids limit)
/// is retried for 10 s, then a harness error.
public func startThread(_ work: @escaping @Sendable () -> Void) throws {
    let deadline = Date().addingTimeInterval(10)
    while true {
        do throws(SystemCallError) {
            try startDetachedThread(stackSize: 4 << 20, work)
            return
        } catch where error.code == EAGAIN && Date() < deadline {
            usleep(50_000)
        } catch {
            throw HarnessError("\(error)")
        }
    }
}

/// Runs `body(0..<count)` on `count` threads of their own at once: each
/// thread waits until all have started (at most 10 s), so the calls race as
/// hard as the machine allows. Answers in index order; the first error
/// thrown is rethrown.
public func onThreads<T: Sendable>(_ count: Int, _ body: @escaping @Sendable (Int) throws -> T) async throws -> [T] {
    let gate = StartGate(count)
    return try await withThrowingTaskGroup(of: (Int, T).self) { group in
        for index in 0..<count {
            group.addTask {
                try await blocking {
                    gate.arriveAndWait()
                    return (index, try body(index))
                }
            }
        }
        var results = [T?](repeating: nil, count: count)
        for try await (index, value) in group { results[index] = value }
        return results.compactMap { $0 }
    }
}

/// A one-shot barrier for `onThreads`: blocks each caller until `count`
/// have arrived, or 10 s have passed (then lets everyone go).
private final class StartGate: Sendable {
    private let count: Int
    private let arrived = Atomic<Int>(0)

    init(_ count: Int) { self.count = count }

    func arriveAndWait() {
        arrived.add(1, ordering: .acquiringAndReleasing)
        let deadline = Date().addingTimeInterval(10)
        while arrived.load(ordering: .acquiring) < count && Date() < deadline { usleep(200) }
    }
}

/// Polls `condition` every 20 ms until it holds; fails with `what` (and the
/// child's stderr if it died) after `timeout` seconds.
public func waitUntil(_ what: String, timeout: Double = 15, child: Child? = nil, _ condition: () -> Bool) throws {
    let deadline = Date().addingTimeInterval(timeout)
    while !condition() {
        if let child, let status = child.poll() {
            throw HarnessError("\(child.name) ended (\(status)) while waiting for \(what): \(child.stderrText.suffix(2000)) \(child.stdoutText.suffix(500))")
        }
        if Date() >= deadline {
            throw HarnessError("timed out after \(timeout) s waiting for \(what)\(child.map { ": " + $0.stderrText.suffix(2000) } ?? "")")
        }
        usleep(20_000)
    }
}

/// A counter for unique file and user names within one test process.
public final class Counter: Sendable {
    public static let shared = Counter()
    private let value = Mutex(0)
    public func next() -> Int { value.withLock { $0 += 1; return $0 } }
}

/// A fresh private directory (mkdtemp), removed by `remove()`.
public struct TempDir: Sendable {
    public let path: String

    /// `<parent>/<prefix>-XXXXXX`. Unix socket paths must stay under 108
    /// bytes: pass "/tmp" as `parent` where sockets go inside.
    public init(prefix: String = "mailgate-test", in parent: String = NSTemporaryDirectory()) throws {
        var template = Array((parent + "/\(prefix)-XXXXXX").utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw HarnessError("mkdtemp failed: \(String(cString: strerror(errno)))")
        }
        path = String(cString: made)
    }

    public func file(_ name: String) -> String { path + "/" + name }

    public func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// The checkout the tests were built from: for files the tests read in
/// place (configs, fixtures, the Python helpers in Tests/MailgateTesting/Python).
public enum Repository {
    public static let root: String = {
        var url = URL(fileURLWithPath: #filePath)  // <root>/Tests/MailgateTesting/Harness.swift
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()
}

/// The Python helper scripts of the tests (Tests/MailgateTesting/Python),
/// run with Debian's interpreter: the python3 on PATH cannot see Debian's
/// python3-aiosmtpd or python3-jwt.
public enum PythonHelper {
    public static let interpreter = "/usr/bin/python3"

    /// The path of `Tests/MailgateTesting/Python/<name>`.
    public static func path(_ name: String) -> String {
        Repository.root + "/Tests/MailgateTesting/Python/" + name
    }
}

/// A value shared between threads behind a lock: what an escaping closure
/// (a server's handler) can capture, where a `Mutex` cannot be.
public final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>

    public init(_ value: Value) { mutex = Mutex(value) }

    public func withLock<T: Sendable>(_ body: (inout Value) throws -> T) rethrows -> T {
        try mutex.withLock { try body(&$0) }
    }

    public var value: Value {
        get { mutex.withLock { $0 } }
        set { mutex.withLock { $0 = newValue } }
    }
}
