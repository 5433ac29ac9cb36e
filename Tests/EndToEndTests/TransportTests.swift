import Foundation
import MailgateTesting
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Issue 13: the FastCGI transport never cuts an answer off, a restart on an
/// inherited socket loses no request, and the socket file never has a mode
/// other than `--socket-mode`.
@Suite("FastCGI transport through real servers", .serialized)
struct TransportTests {
    static let sizes = [16 << 10, 1 << 20, 4 << 20]

    /// An answer that comes before (413) or right after (401, 422) the body is
    /// read is delivered whole through nginx and through Apache
    /// mod_proxy_fcgi, 200 times in a row for each body size, and nginx logs
    /// no connection reset by Mailgate.
    @Test(arguments: [TransportFixture.Front.nginx, .apache])
    func earlyAnswersArriveWhole(front: TransportFixture.Front) async throws {
        let env = try await E2E.get()
        let fixture = try await TransportFixture.get()
        let user = try await env.makeUser("transport")
        let token = try await env.token(user.name)
        let port = fixture.port(of: front)
        let cases: [(name: String, status: Int, path: String, token: String?, filler: UInt8)] = [
            ("over --max-body", 413, "/tight/smtp/send-email", token, UInt8(ascii: "{")),
            ("no token", 401, "/roomy/smtp/send-email", nil, UInt8(ascii: "{")),
            ("not JSON", 422, "/roomy/smtp/send-email", token, UInt8(ascii: "x")),
        ]
        for size in Self.sizes {
            for answer in cases {
                var headers = [("Content-Type", "application/json")]
                if let bearer = answer.token { headers.append(("Authorization", "Bearer \(bearer)")) }
                let raw = HTTP.request("POST", answer.path, headers: headers,
                                       body: [UInt8](repeating: answer.filler, count: size))
                let started = Date()
                let failures = try await blocking {
                    try Self.repeatRequest(raw, port: port, times: 200, clients: 4, expecting: answer.status)
                }
                print("TransportTests \(front) \(answer.name), \(size) bytes: 200 requests in \(String(format: "%.2f", Date().timeIntervalSince(started))) s")
                #expect(failures.isEmpty,
                        "\(front) \(answer.name), \(size) bytes: \(failures.count) of 200 not answered \(answer.status) whole, e.g. \(failures.prefix(3))")
            }
        }
        let errorLog = (try? String(contentsOfFile: fixture.errorLog(of: front), encoding: .utf8)) ?? ""
        #expect(!errorLog.contains("reset by peer"), "\(front) error log: \(errorLog.suffix(1500))")
        #expect(!errorLog.contains("prematurely closed"), "\(front) error log: \(errorLog.suffix(1500))")
    }

    /// `times` requests from `clients` concurrent clients; the descriptions
    /// of those that did not get `status` with a complete JSON `detail`.
    private static func repeatRequest(_ raw: [UInt8], port: Int, times: Int, clients: Int,
                                      expecting status: Int) throws -> [String] {
        let failures = Mutex<[String]>([])
        DispatchQueue.concurrentPerform(iterations: clients) { client in
            for _ in stride(from: client, to: times, by: clients) {
                do {
                    let response = try HTTP.exchange(port: port, raw, timeout: 30)
                    if response.status != status || response.json?["detail"] == nil {
                        failures.withLock { $0.append(response.description) }
                    }
                } catch {
                    failures.withLock { $0.append("\(error)") }
                }
            }
        }
        return failures.withLock { $0 }
    }

    /// systemd keeps the listening socket across a restart: the old process
    /// stops accepting on SIGTERM and finishes what it took, connections
    /// meanwhile wait in the socket's backlog, and the new process serves
    /// them. Every send made during the change is answered 200 and delivered
    /// exactly once.
    @Test func restartOnAnInheritedSocketLosesNoRequest() async throws {
        let env = try await E2E.get()
        let fixture = try await TransportFixture.get()
        let user = try await env.makeMailUser("restart")
        let token = try await env.token(user.name)
        let socket = try InheritableSocket(path: fixture.dir + "/inherited.sock", mode: 0o660)
        defer { socket.close() }
        let first = try fixture.serveInherited(socket, name: "inherited-1")
        let (nginx, port) = try await blocking {
            try E2E.startNginx(in: fixture.dir, name: "nginx-restart", socket: socket.path, rate: "100r/s")
        }
        defer { nginx.stop() }
        let warmUp = try await env.send(token: token, to: "bob@example.org", subject: "warm-up", message: "x", port: port)
        try #require(warmUp.status == 200, "\(warmUp)")

        let load = SendLoad(port: port, token: token, clients: 4)
        try load.start()
        usleep(400_000)
        let stopSent = Date()
        first.signal(SIGTERM)
        let firstExit = try await blocking { first.wait(timeout: 30) }
        // As systemd's restart does: the new process starts once the old one
        // has gone; until then connections wait in the socket's backlog.
        usleep(300_000)
        let second = try fixture.serveInherited(socket, name: "inherited-2")
        let secondStarted = Date()
        usleep(600_000)
        let results = try await blocking { try load.stop() }
        second.stop()

        #expect(firstExit == .exited(0), "old process: \(first.stderrText.suffix(1000))")
        let duringChange = results.filter { $0.started >= stopSent && $0.started <= secondStarted }
        #expect(!duringChange.isEmpty, "no send was made between SIGTERM and the new process's start")
        let failed = results.filter { $0.status != 200 }
        #expect(failed.isEmpty, "\(failed.count) of \(results.count) sends not answered 200: \(failed.prefix(5).map(\.outcome))")
        let answered = Set(results.filter { $0.status == 200 }.map(\.marker))
        let deliveries = try await env.capture.deliveries(ofSubjects: answered)
        let notOnce = answered.filter { deliveries[$0] != 1 }.map { "\($0): \(deliveries[$0] ?? 0)" }
        #expect(notOnce.isEmpty, "sends answered 200 but not delivered exactly once: \(notOnce.prefix(5))")
    }

    /// The socket file appears with `--socket-mode` (bound under a private
    /// name, then renamed into place) across many restarts; a watcher looks
    /// at it as fast as it can.
    @Test func socketFileNeverHasAnotherMode() async throws {
        let env = try await E2E.get()
        let fixture = try await TransportFixture.get()
        let path = fixture.dir + "/mode.sock"
        let watcher = ModeWatcher(path: path)
        try watcher.start()
        for round in 0..<15 {
            let child = try await blocking {
                try E2E.startMailgate(bin: env.bin, dataDir: env.dataDir, socket: path,
                                      log: fixture.dir + "/mode-\(round).log",
                                      extra: ["--socket-mode", "0640", "--threads", "2"], in: fixture.dir)
            }
            child.signal(SIGTERM)
            let status = try await blocking { child.wait(timeout: 30) }
            #expect(status == .exited(0))
        }
        let (sightings, otherModes) = try await blocking { try watcher.stop() }
        #expect(sightings > 0, "the watcher never saw the socket file")
        #expect(otherModes.isEmpty, "modes seen other than 0640: \(otherModes.map { String($0, radix: 8) })")
    }
}

/// Two Mailgate instances on the main environment's data directory:
/// `tight` (`--max-body 8192`, under `/tight`) and `roomy` (`--max-body`
/// 8 MiB, under `/roomy`), on Unix sockets of mode 0666 so Apache's worker
/// user reaches them, with nginx and Apache mod_proxy_fcgi in front (bodies
/// up to 8 MiB). Started on first use.
final class TransportFixture: Sendable {
    enum Front: Sendable, CustomStringConvertible {
        case nginx, apache
        var description: String { self == .nginx ? "nginx" : "Apache mod_proxy_fcgi" }
    }

    let dir: String
    let nginxPort: Int
    let apachePort: Int
    private let children: [Child]

    private init(dir: String, nginxPort: Int, apachePort: Int, children: [Child]) {
        self.dir = dir
        self.nginxPort = nginxPort
        self.apachePort = apachePort
        self.children = children
    }

    func port(of front: Front) -> Int { front == .nginx ? nginxPort : apachePort }
    func errorLog(of front: Front) -> String { dir + (front == .nginx ? "/nginx/error.log" : "/apache/error.log") }

    private static let shared: Result<TransportFixture, HarnessError> = {
        do { return .success(try start()) } catch let error as HarnessError {
            return .failure(error)
        } catch {
            return .failure(HarnessError("\(error)"))
        }
    }()

    static func get() async throws -> TransportFixture {
        _ = try await E2E.get()
        return try await blocking { try shared.get() }
    }

    private static func start() throws -> TransportFixture {
        guard case .success(let env) = E2E.sharedResult else { throw HarnessError("main environment failed") }
        let dir = env.dir + "/transport"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        // Apache's workers run as www-data: let them through to the sockets.
        chmod(env.dir, 0o711)
        chmod(dir, 0o755)
        var children: [Child] = []
        do {
            let tight = dir + "/tight.sock", roomy = dir + "/roomy.sock"
            for (socket, name, maxBody) in [(tight, "tight", "8192"), (roomy, "roomy", String(8 << 20))] {
                children.append(try E2E.startMailgate(
                    bin: env.bin, dataDir: env.dataDir, socket: socket, log: "\(dir)/mailgate-\(name).log",
                    extra: ["--max-body", maxBody, "--base-path", "/\(name)", "--socket-mode", "0666", "--threads", "8"],
                    in: dir))
            }
            let isRoot = getuid() == 0
            let (nginx, nginxPort) = try E2E.startFromTemplate(
                prefix: dir + "/nginx", name: "nginx", template: "transport-nginx.conf.in",
                values: ["TIGHT_SOCKET": tight, "ROOMY_SOCKET": roomy])
            children.append(nginx)
            let (apache, apachePort) = try E2E.startFromTemplate(
                prefix: dir + "/apache", name: "apache", template: "transport-apache.conf.in",
                values: ["USER_LINES": isRoot ? "User www-data\nGroup www-data" : "", "TIGHT_SOCKET": tight, "ROOMY_SOCKET": roomy]
            ) { prefix in ("/usr/sbin/apache2", ["-f", prefix + "/server.conf", "-DFOREGROUND"]) }
            children.append(apache)
            return TransportFixture(dir: dir, nginxPort: nginxPort, apachePort: apachePort, children: children)
        } catch {
            for child in children { child.stop() }
            throw error
        }
    }

    /// `mailgate serve` on `socket` as systemd starts it: the socket as fd 3,
    /// LISTEN_FDS=1 and LISTEN_PID set to the server's own pid (the shell
    /// execs it, keeping its pid). Returns once it has started.
    func serveInherited(_ socket: InheritableSocket, name: String) throws -> Child {
        guard case .success(let env) = E2E.sharedResult else { throw HarnessError("main environment failed") }
        let log = "\(dir)/\(name).log"
        var environment = ProcessInfo.processInfo.environment
        environment["LISTEN_FDS"] = "1"
        let child = try Child.spawn("/bin/sh", [
            "-c", "export LISTEN_PID=$$; exec \"$@\"", "sh",
            env.bin, "serve", "--data-dir", env.dataDir, "--ca-file", env.caBundle, "--threads", "8",
            "--max-in-flight-per-user", "8",
        ], stdout: log + ".out", stderr: log, environment: environment, listeningSocket: socket.fd, name: name)
        try waitUntil("\(name) listening", child: child) { child.stderrText.contains("listening on inherited fd 3") }
        return child
    }
}

/// Clients that send mail in a loop, each with a unique subject, until stopped.
final class SendLoad: Sendable {
    struct Result: Sendable {
        var marker: String
        var started: Date
        var status: Int
        var outcome: String
    }

    let port: Int
    let token: String
    let clients: Int
    private let stopping = Atomic<Bool>(false)
    private let results = Mutex<[Result]>([])
    private let finished = Atomic<Int>(0)

    init(port: Int, token: String, clients: Int) {
        self.port = port
        self.token = token
        self.clients = clients
    }

    func start() throws {
        for _ in 0..<clients {
            try startThread { [self] in
                while !stopping.load(ordering: .relaxed) { sendOne() }
                finished.add(1, ordering: .sequentiallyConsistent)
            }
        }
    }

    private func sendOne() {
        let marker = uniqueMarker("restart")
        let body = #"{"to": "bob@example.org", "subject": "\#(marker)", "message": "restart"}"#
        let raw = HTTP.request("POST", "/smtp/send-email",
                               headers: [("Content-Type", "application/json"), ("Authorization", "Bearer \(token)")],
                               body: Array(body.utf8))
        let started = Date()
        do {
            let response = try HTTP.exchange(port: port, raw, timeout: 30)
            results.withLock { $0.append(Result(marker: marker, started: started, status: response.status,
                                                outcome: response.description)) }
        } catch {
            results.withLock { $0.append(Result(marker: marker, started: started, status: 0, outcome: "\(error)")) }
        }
    }

    /// Stops the clients, waits for their last requests, returns every result.
    func stop() throws -> [Result] {
        stopping.store(true, ordering: .sequentiallyConsistent)
        try waitUntil("send clients to finish", timeout: 40) { finished.load(ordering: .sequentiallyConsistent) == clients }
        return results.withLock { $0 }
    }
}

/// Polls a path's mode as fast as it can on its own thread.
final class ModeWatcher: Sendable {
    let path: String
    private let stopping = Atomic<Bool>(false)
    private let seen = Mutex<(sightings: Int, otherModes: Set<mode_t>, done: Bool)>((0, [], false))

    init(path: String) { self.path = path }

    func start() throws {
        try startThread { [self] in
            var info = stat()
            while !stopping.load(ordering: .relaxed) {
                guard lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFSOCK else { continue }
                let mode = info.st_mode & 0o777
                seen.withLock { state in
                    state.sightings += 1
                    if mode != 0o640 { state.otherModes.insert(mode) }
                }
            }
            seen.withLock { $0.done = true }
        }
    }

    func stop() throws -> (Int, Set<mode_t>) {
        stopping.store(true, ordering: .sequentiallyConsistent)
        try waitUntil("mode watcher to finish") { seen.withLock { $0.done } }
        return seen.withLock { ($0.sightings, $0.otherModes) }
    }
}
