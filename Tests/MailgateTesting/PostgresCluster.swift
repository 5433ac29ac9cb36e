import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A throwaway PostgreSQL server for tests, from Debian's `postgresql`
/// package: `initdb` into a temporary directory (as the `postgres` user
/// when the tests run as root, since initdb refuses root), `pg_ctl start`
/// on a free loopback port with a socket directory of its own, fsync off.
/// One per test process (`shared()`), stopped and removed at exit; each
/// test takes a database of its own (`newDatabase()`), so tests run in
/// parallel on it. Every wait is bounded.
public final class PostgresCluster: Sendable {
    /// The superuser `initdb` creates (trust authentication on loopback
    /// and the socket: nothing else can reach this server).
    public static let user = "mailgate"

    public let port: Int
    /// Holds the data directory, the socket directory and the log.
    public let directory: String
    public let socketDirectory: String
    private let binaries: String
    private let runAs: [String]
    private let databases = Mutex(0)

    /// The cluster, or why it could not start (not tried again).
    private static let instance = Mutex<(cluster: PostgresCluster?, failure: String?)>((nil, nil))

    /// The process's cluster, started on first use.
    public static func shared() throws -> PostgresCluster {
        try instance.withLock { instance in
            if let cluster = instance.cluster { return cluster }
            if let failure = instance.failure { throw HarnessError(failure) }
            do {
                let cluster = try PostgresCluster()
                instance.cluster = cluster
                return cluster
            } catch {
                instance.failure = "the test PostgreSQL server did not start: \(error)"
                throw HarnessError(instance.failure ?? "")
            }
        }
    }

    /// A cluster of its own (for a test that stops and starts it), stopped
    /// and removed at exit like the shared one.
    public static func dedicated() throws -> PostgresCluster {
        try PostgresCluster()
    }

    /// The directory of the newest installed server version's programs
    /// (`/usr/lib/postgresql/<version>/bin`).
    public static func binaryDirectory() throws -> String {
        let root = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [])
            .compactMap { Int($0) }.sorted()
        for version in versions.reversed() where FileManager.default.isExecutableFile(atPath: "\(root)/\(version)/bin/pg_ctl") {
            return "\(root)/\(version)/bin"
        }
        throw HarnessError("no PostgreSQL server under \(root) (Debian package postgresql)")
    }

    private init() throws {
        binaries = try Self.binaryDirectory()
        // Short: the socket path must stay under 108 bytes.
        let temporary = try TempDir(prefix: "mg-pg", in: "/tmp")
        directory = temporary.path
        socketDirectory = directory + "/socket"
        if geteuid() == 0 {
            guard let account = getpwnam("postgres") else {
                temporary.remove()
                throw HarnessError("no postgres user to run the test server as (Debian package postgresql)")
            }
            runAs = ["/usr/sbin/runuser", "-u", "postgres", "--"]
            for path in [directory] where chown(path, account.pointee.pw_uid, account.pointee.pw_gid) != 0 {
                temporary.remove()
                throw HarnessError("chown \(path): \(String(cString: strerror(errno)))")
            }
        } else {
            runAs = []
        }
        let (directory, socketDirectory, binaries, runAs) = (self.directory, self.socketDirectory, self.binaries, self.runAs)
        let run = { (what: String, command: [String], timeout: Double) throws in
            try Self.run(what, command, runAs: runAs, directory: directory, timeout: timeout)
        }
        var started: Int?
        do {
            try run("mkdir", ["/bin/mkdir", "-m", "0700", socketDirectory], 10)
            try run("initdb", ["\(binaries)/initdb", "-D", directory + "/data", "-A", "trust", "-U", Self.user,
                               "-E", "UTF8", "--no-locale", "--no-sync"], 120)
            // A free port now may be taken by the time the server binds it:
            // a few tries.
            var lastError: (any Error)?
            for _ in 0..<3 {
                let probe = try boundLoopbackSocket(listen: nil)
                close(probe.fd)
                do {
                    try Self.start(run: run, binaries: binaries, directory: directory, socketDirectory: socketDirectory,
                                   port: probe.port)
                    started = probe.port
                    break
                } catch {
                    lastError = error
                }
            }
            guard started != nil else { throw lastError ?? HarnessError("pg_ctl start failed") }
        } catch {
            Self.stopAndRemove(binaries: binaries, directory: directory, runAs: runAs)
            throw error
        }
        port = started ?? 0
        atexit_register { Self.stopAndRemove(binaries: binaries, directory: directory, runAs: runAs) }
    }

    /// A new, empty database (owned by `user`), and its URI.
    public func newDatabase() throws -> String {
        let name = "t_\(getpid())_\(databases.withLock { $0 += 1; return $0 })"
        try psql("CREATE DATABASE \(name)")
        return uri(database: name)
    }

    /// A libpq URI of `database` over loopback TCP.
    public func uri(database: String) -> String {
        "postgresql://\(Self.user)@127.0.0.1:\(port)/\(database)"
    }

    /// A libpq URI of `database` over the Unix socket (the `host=/dir` form).
    public func socketURI(database: String) -> String {
        "postgresql:///\(database)?host=\(socketDirectory)&port=\(port)&user=\(Self.user)"
    }

    /// Runs SQL with psql on `database` (stops at the first error);
    /// answers what it printed (unaligned, tuples only).
    @discardableResult
    public func psql(_ sql: String, database: String = "postgres") throws -> String {
        let result = try runTool("\(binaries)/psql", [
            "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", socketDirectory, "-p", String(port),
            "-U", Self.user, "-d", database, "-c", sql,
        ], in: directory, timeout: 60)
        guard result.ok else { throw HarnessError("psql \(sql.prefix(80)): \(result.status): \(result.stderr)") }
        return result.stdoutText
    }

    /// Stops the server (fast shutdown: sessions are ended), for outage tests.
    public func stop() throws {
        try Self.run("pg_ctl stop", ["\(binaries)/pg_ctl", "stop", "-D", directory + "/data", "-m", "fast", "-w", "-t", "30"],
                     runAs: runAs, directory: directory, timeout: 40)
    }

    /// Starts it again, on the same port; returns once it accepts connections.
    public func start() throws {
        let (runAs, directory) = (runAs, directory)
        let run = { (what: String, command: [String], timeout: Double) throws in
            try Self.run(what, command, runAs: runAs, directory: directory, timeout: timeout)
        }
        try Self.start(run: run, binaries: binaries, directory: directory, socketDirectory: socketDirectory, port: port)
    }

    private static func start(run: (String, [String], Double) throws -> Void, binaries: String, directory: String,
                              socketDirectory: String, port: Int) throws {
        let options = [
            "-p \(port)", "-k \(socketDirectory)", "-c listen_addresses=127.0.0.1", "-c fsync=off",
            "-c synchronous_commit=off", "-c full_page_writes=off", "-c max_connections=400",
            "-c shared_buffers=32MB", "-c log_min_messages=warning",
        ].joined(separator: " ")
        // -w: returns once the server accepts connections (or -t passes).
        try run("pg_ctl start", ["\(binaries)/pg_ctl", "start", "-D", directory + "/data", "-l", directory + "/server.log",
                                 "-w", "-t", "60", "-o", options], 70)
        try run("pg_isready", ["\(binaries)/pg_isready", "-h", socketDirectory, "-p", String(port), "-t", "10"], 20)
    }

    private static func run(_ what: String, _ command: [String], runAs: [String], directory: String,
                            timeout: Double) throws {
        let result = try runTool(runAs.first ?? command[0], Array((runAs + command).dropFirst()), in: "/tmp",
                                 timeout: timeout)
        guard result.ok else {
            let log = (try? String(contentsOfFile: directory + "/server.log", encoding: .utf8)) ?? ""
            throw HarnessError("\(what): \(result.status): \(result.stderr) \(result.stdoutText) \(log.suffix(2000))")
        }
    }

    /// At exit: immediate shutdown (nothing to keep), then the directory.
    private static func stopAndRemove(binaries: String, directory: String, runAs: [String]) {
        let data = directory + "/data"
        if FileManager.default.fileExists(atPath: data + "/postmaster.pid") {
            let command = runAs + ["\(binaries)/pg_ctl", "stop", "-D", data, "-m", "immediate", "-w", "-t", "20"]
            _ = try? runTool(command[0], Array(command.dropFirst()), in: "/tmp", timeout: 30)
        }
        if ProcessInfo.processInfo.environment["MAILGATE_E2E_KEEP"] == nil {
            try? FileManager.default.removeItem(atPath: directory)
        }
    }
}

/// `atexit` with a Swift closure (atexit takes no context pointer).
private let exitActions = Mutex<[@Sendable () -> Void]>([])

private func atexit_register(_ action: @escaping @Sendable () -> Void) {
    let first = exitActions.withLock { actions in
        actions.append(action)
        return actions.count == 1
    }
    if first {
        atexit {
            for action in exitActions.withLock({ $0 }) { action() }
        }
    }
}
