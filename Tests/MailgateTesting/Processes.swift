import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// How a child ended.
public enum ExitStatus: Equatable, Sendable, CustomStringConvertible {
    case exited(Int32)
    case signaled(Int32)

    public init(raw: Int32) {
        if raw & 0x7f == 0 { self = .exited((raw >> 8) & 0xff) } else { self = .signaled(raw & 0x7f) }
    }

    public var description: String {
        switch self {
        case .exited(let code): "exit \(code)"
        case .signaled(let signal): "signal \(signal)"
        }
    }
}

/// Every child still running; killed (group and all) when the test process exits.
public final class ChildRegistry: Sendable {
    public static let shared = ChildRegistry()
    private let pids = Mutex<Set<pid_t>>([])
    private let installed = Mutex(false)
    private let directories = Mutex<[String]>([])

    /// Removed at exit after the children are gone (unless MAILGATE_E2E_KEEP is set).
    public func removeAtExit(_ directory: String) { directories.withLock { $0.append(directory) } }

    public func add(_ pid: pid_t) {
        installed.withLock { done in
            if !done {
                done = true
                atexit { ChildRegistry.shared.killAll() }
            }
        }
        pids.withLock { _ = $0.insert(pid) }
    }

    public func remove(_ pid: pid_t) { pids.withLock { _ = $0.remove(pid) } }

    /// SIGTERM to each child's process group, a short grace, then SIGKILL.
    public func killAll() {
        defer {
            let dirs = directories.withLock { dirs in defer { dirs.removeAll() }; return dirs }
            if ProcessInfo.processInfo.environment["MAILGATE_E2E_KEEP"] == nil {
                for dir in dirs { try? FileManager.default.removeItem(atPath: dir) }
            }
        }
        let all = pids.withLock { pids in defer { pids.removeAll() }; return pids }
        guard !all.isEmpty else { return }
        for pid in all { kill(-pid, SIGTERM); kill(pid, SIGTERM) }
        let deadline = Date().addingTimeInterval(2)
        var alive = all
        while !alive.isEmpty && Date() < deadline {
            var status: Int32 = 0
            alive = alive.filter { waitpid($0, &status, WNOHANG) == 0 }
            if !alive.isEmpty { usleep(20_000) }
        }
        for pid in alive {
            kill(-pid, SIGKILL); kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
        }
    }
}

/// A child process whose stdin comes from a file (or /dev/null) and whose
/// stdout and stderr go to files: never pipes, so nothing can hang on them.
/// Its signal mask and dispositions are reset, whatever the spawning
/// thread had blocked.
public final class Child: Sendable {
    public let pid: pid_t
    public let name: String
    public let stdoutPath: String
    public let stderrPath: String
    private let exit = Mutex<ExitStatus?>(nil)

    private init(pid: pid_t, name: String, stdoutPath: String, stderrPath: String) {
        self.pid = pid
        self.name = name
        self.stdoutPath = stdoutPath
        self.stderrPath = stderrPath
    }

    /// Starts `executable` in its own process group. `listeningSocket`, when
    /// given, becomes the child's fd 3, as systemd socket activation passes it.
    public static func spawn(_ executable: String, _ arguments: [String], stdin: String = "/dev/null",
                             stdout: String, stderr: String, environment: [String: String]? = nil,
                             removingEnvironment: Set<String> = [], listeningSocket: Int32? = nil,
                             name: String? = nil) throws -> Child {
        var env = environment ?? ProcessInfo.processInfo.environment
        if environment == nil { for key in removingEnvironment { env[key] = nil } }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, stdin, O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        if let listeningSocket {
            // dup2 clears close-on-exec on fd 3 (the caller's fd is never 3: see InheritableSocket).
            posix_spawn_file_actions_adddup2(&actions, listeningSocket, 3)
        }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGPIPE, SIGTERM, SIGINT, SIGCHLD, SIGHUP, SIGUSR1] { sigaddset(&defaults, signal) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP))

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        guard rc == 0 else { throw HarnessError("posix_spawn \(executable): \(String(cString: strerror(rc)))") }
        ChildRegistry.shared.add(pid)
        return Child(pid: pid, name: name ?? (executable as NSString).lastPathComponent,
                     stdoutPath: stdout, stderrPath: stderr)
    }

    /// Non-blocking: the exit status once the child has ended.
    public func poll() -> ExitStatus? {
        exit.withLock { stored in
            if let stored { return stored }
            var raw: Int32 = 0
            let rc = waitpid(pid, &raw, WNOHANG)
            guard rc == pid else { return nil }
            ChildRegistry.shared.remove(pid)
            stored = ExitStatus(raw: raw)
            return stored
        }
    }

    /// Waits up to `timeout` seconds for the child to end.
    public func wait(timeout: Double) -> ExitStatus? {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            if let status = poll() { return status }
            if Date() >= deadline { return nil }
            usleep(10_000)
        }
    }

    public func signal(_ signal: Int32) { if poll() == nil { kill(pid, signal) } }

    /// SIGTERM to the group, then SIGKILL if it lingers.
    public func stop() {
        guard poll() == nil else { return }
        kill(-pid, SIGTERM)
        if wait(timeout: 3) == nil {
            kill(-pid, SIGKILL)
            _ = wait(timeout: 5)
        }
    }

    public var stdoutText: String { (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "" }
    public var stderrText: String {
        guard let data = FileManager.default.contents(atPath: stderrPath) else { return "" }
        return String(decoding: data, as: UTF8.self)
    }
}

/// What a finished tool printed.
public struct ToolResult: Sendable {
    public var status: ExitStatus
    public var stdout: [UInt8]
    public var stderr: String
    public var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
    public var ok: Bool { status == .exited(0) }
}

/// Runs a program to completion (stdin from bytes written to a file); its
/// output goes through files in `directory`, removed afterwards.
public func runTool(_ executable: String, _ arguments: [String], in directory: String, stdin: [UInt8]? = nil,
                    environment: [String: String]? = nil, timeout: Double = 60) throws -> ToolResult {
    let n = Counter.shared.next()
    let base = "\(directory)/run-\(n)"
    var stdinPath = "/dev/null"
    if let stdin {
        stdinPath = base + ".in"
        guard FileManager.default.createFile(atPath: stdinPath, contents: Data(stdin),
                                             attributes: [.posixPermissions: 0o600]) else {
            throw HarnessError("cannot write \(stdinPath)")
        }
    }
    let child = try Child.spawn(executable, arguments, stdin: stdinPath, stdout: base + ".out", stderr: base + ".err",
                                environment: environment)
    guard let status = child.wait(timeout: timeout) else {
        child.stop()
        throw HarnessError("\(executable) \(arguments.joined(separator: " ")) did not finish within \(timeout) s")
    }
    let out = FileManager.default.contents(atPath: base + ".out").map { [UInt8]($0) } ?? []
    let result = ToolResult(status: status, stdout: out, stderr: child.stderrText)
    for suffix in [".in", ".out", ".err"] { unlink(base + suffix) }
    return result
}
