import Foundation
import MailgateTesting
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Issue 11: each way Mailgate is started, tested against the real server
/// on loopback: a token, a mail that arrives, a 401 with its challenge, and
/// an oversized body refused.
@Suite("Deployments")
struct DeploymentTests {
    /// `mailgate serve --listen 127.0.0.1:PORT` behind nginx.
    @Test func nginxOverLoopbackTCP() async throws {
        let env = try await E2E.get()
        let dir = try Deployment.directory("tcp")
        let port = try freePort()
        let mailgate = try Child.spawn(env.bin, ["serve", "--data-dir", env.dataDir, "--ca-file", env.caBundle,
                                                 "--listen", "127.0.0.1:\(port)", "--threads", "4"],
                                       stdout: dir + "/mailgate.out", stderr: dir + "/mailgate.log",
                                       removingEnvironment: ["LISTEN_FDS", "LISTEN_PID"], name: "mailgate-tcp")
        defer { mailgate.stop() }
        try await blocking { try waitUntil("mailgate on 127.0.0.1:\(port)", child: mailgate) { tcpAccepts(port) } }
        try await Deployment.check(upstream: "127.0.0.1:\(port)", in: dir, name: "tcp")
    }

    /// `spawn-fcgi -s SOCKET -n -- mailgate serve ...`: the socket comes as fd 0.
    @Test func spawnFcgiBehindNginx() async throws {
        let env = try await E2E.get()
        let dir = try Deployment.directory("spawn-fcgi")
        let socket = dir + "/mailgate.sock"
        let spawner = try Child.spawn("/usr/bin/spawn-fcgi", [
            "-n", "-s", socket, "-M", "0600", "--",
            env.bin, "serve", "--data-dir", env.dataDir, "--ca-file", env.caBundle, "--threads", "4",
        ], stdout: dir + "/mailgate.out", stderr: dir + "/mailgate.log",
           removingEnvironment: ["LISTEN_FDS", "LISTEN_PID"], name: "spawn-fcgi")
        defer { spawner.stop() }
        try await blocking { try waitUntil("spawn-fcgi socket", child: spawner) { unixAccepts(socket) } }
        try await Deployment.check(upstream: "unix:\(socket)", in: dir, name: "spawn-fcgi")
        #expect(spawner.stderrText.contains("inherited fd 0"), "mailgate served the socket spawn-fcgi passed as fd 0")
    }

    /// `systemd-socket-activate -l SOCKET mailgate serve ...`: systemd's
    /// socket activation protocol (LISTEN_FDS, fd 3); Mailgate starts on
    /// the first connection.
    @Test func systemdSocketActivationBehindNginx() async throws {
        let env = try await E2E.get()
        let dir = try Deployment.directory("socket-activate")
        let socket = dir + "/mailgate.sock"
        let activator = try Child.spawn("/usr/bin/systemd-socket-activate", [
            "-l", socket, "--",
            env.bin, "serve", "--data-dir", env.dataDir, "--ca-file", env.caBundle, "--threads", "4",
        ], stdout: dir + "/mailgate.out", stderr: dir + "/mailgate.log",
           removingEnvironment: ["LISTEN_FDS", "LISTEN_PID"], name: "systemd-socket-activate")
        defer { activator.stop() }
        try await blocking { try waitUntil("activation socket", child: activator) { FileManager.default.fileExists(atPath: socket) } }
        try await Deployment.check(upstream: "unix:\(socket)", in: dir, name: "socket-activate")
        #expect(activator.stderrText.contains("inherited fd 3"), "mailgate served the socket systemd passed as fd 3")
    }

    /// The shipped units pass `systemd-analyze verify` (with ExecStart
    /// pointed at the built binary) and the service's exposure, by
    /// `systemd-analyze security --offline`, is low (below 2.0 of 10).
    @Test func shippedSystemdUnitsVerify() async throws {
        let env = try await E2E.get()
        let dir = try Deployment.directory("units")
        for unit in ["mailgate.socket", "mailgate.service"] {
            let text = try String(contentsOfFile: E2E.repoRoot + "/deploy/systemd/" + unit, encoding: .utf8)
            try text.replacingOccurrences(of: "ExecStart=/usr/bin/mailgate", with: "ExecStart=\(env.bin)")
                .write(toFile: dir + "/" + unit, atomically: true, encoding: .utf8)
        }
        let verify = try runTool("/usr/bin/systemd-analyze", ["verify", dir + "/mailgate.socket", dir + "/mailgate.service"],
                                 in: dir)
        #expect(verify.ok, "systemd-analyze verify: \(verify.stderr) \(verify.stdoutText)")
        let security = try runTool("/usr/bin/systemd-analyze", ["security", "--offline=true", "--no-pager",
                                                                 dir + "/mailgate.service"], in: dir)
        let line = security.stdoutText.split(separator: "\n").first { $0.contains("Overall exposure level") } ?? ""
        let score = line.split(separator: " ").compactMap { Double($0) }.first
        #expect(score.map { $0 < 2.0 } == true, "exposure: \(line) \(security.stderr.suffix(500))")
    }

    // MARK: - Apache httpd

    /// Apache mod_fcgid with the shipped deploy/apache/mailgate-fcgid.conf
    /// and mailgate.fcgi: Apache starts Mailgate itself (its listening
    /// socket as fd 0). The usual checks, then 12 sends at once: every one
    /// 200, every mail arrives exactly once, and the request log shows
    /// several Mailgate processes served them, on one data directory. When
    /// Apache stops, its Mailgate processes end too.
    @Test func apacheModFcgidRunsSeveralMailgateProcesses() async throws {
        let env = try await E2E.get()
        let dir = try Deployment.directory("fcgid")
        let data = try await ApacheDeployment.dataDirectory(in: dir)
        let user = try await env.makeMailUser("fcgid", dataDir: data)
        let (apache, port, log) = try await Self.startFcgid(in: dir, dataDir: data)
        defer { apache.stop() }

        let token = try await Deployment.checkRoutes(port: port, user: user, name: "Apache mod_fcgid")
        let subjects = uniqueMarker("fcgid-burst")
        let answers = try await Deployment.sendAtOnce(12, token: token, subjectPrefix: subjects, port: port)
        #expect(answers.values.allSatisfy { $0.status == 200 }, "\(answers.values.map(\.status))")
        let delivered = try await env.capture.deliveries(ofSubjects: Set(answers.keys), timeout: 20)
        #expect(delivered.count == 12 && delivered.values.allSatisfy { $0 == 1 }, "each mail exactly once: \(delivered)")

        let served = ApacheDeployment.loggedPids(in: log(), containing: ["method=POST path=/smtp/send-email status=200 user=\(user.name) "])
        #expect(served.count == 13, "one log line per send: \(served)")
        #expect(Set(served).count > 1, "several Mailgate processes served the sends: \(served)")
        #expect(log().contains("mailgate listening on inherited fd 0"), "Mailgate served the socket mod_fcgid passed as fd 0")

        apache.stop()
        let pids = Set(served)
        try await blocking {
            try waitUntil("Apache's Mailgate processes \(pids.sorted()) to end", timeout: 10) {
                !pids.contains(where: ApacheDeployment.isRunning)
            }
        }
    }

    /// A per-user send quota (`user limits --per-day 5`, counted in the
    /// table every process maps) holds across the processes mod_fcgid runs:
    /// of 12 sends at once exactly 5 are sent, the rest get 429, and more
    /// than one process answered them.
    @Test func apacheModFcgidQuotaHoldsAcrossProcesses() async throws {
        let env = try await E2E.get()
        let dir = try Deployment.directory("fcgid-quota")
        let data = try await ApacheDeployment.dataDirectory(in: dir)
        let user = try await env.makeMailUser("fcgid-quota", dataDir: data)
        try await env.cli(["user", "limits", user.name, "--per-day", "5"], dataDir: data)
        let (apache, port, log) = try await Self.startFcgid(in: dir, dataDir: data)
        defer { apache.stop() }

        let login = try await env.login(user.name, user.password, port: port)
        let token = try #require(login.json?["access_token"] as? String, "\(login)")
        let subjects = uniqueMarker("fcgid-quota")
        let answers = try await Deployment.sendAtOnce(12, token: token, subjectPrefix: subjects, port: port)
        let statuses = answers.values.map(\.status)
        #expect(statuses.filter { $0 == 200 }.count == 5, "\(statuses)")
        #expect(statuses.filter { $0 == 429 }.count == 7, "\(statuses)")
        for refused in answers.values where refused.status == 429 {
            #expect(refused.detail?.hasPrefix("Send quota exceeded (5 recipients per day)") == true, "\(refused)")
        }
        let sent = Set(answers.filter { $0.value.status == 200 }.keys)
        let delivered = try await env.capture.deliveries(ofSubjects: sent, timeout: 10)
        #expect(delivered.count == 5 && delivered.values.allSatisfy { $0 == 1 }, "each sent mail arrived once: \(delivered)")
        let notSent = try await env.capture.deliveries(ofSubjects: Set(answers.keys).subtracting(sent), timeout: 0)
        #expect(notSent.isEmpty, "nothing refused arrived: \(notSent)")
        let answeredBy = ApacheDeployment.loggedPids(in: log(), containing: ["method=POST path=/smtp/send-email ", "user=\(user.name) "])
        #expect(answeredBy.count == 12 && Set(answeredBy).count > 1, "several processes shared the quota: \(answeredBy)")
    }

    /// Shared hosting: Apache mod_cgi runs the shipped deploy/apache/cgi/
    /// mailgate.cgi once per request (plain CGI: fd 0 is no socket), routed
    /// by the shipped .htaccess. The usual checks under /mail, each request
    /// in a process of its own; and a copy of the directory whose .htaccess
    /// lacks `CGIPassAuth On` gets a clear 401 for a good token, since
    /// Apache then keeps the Authorization header from the program.
    @Test func apacheModCgiOneProcessPerRequest() async throws {
        let env = try await E2E.get()
        let dir = try Deployment.directory("cgi")
        let data = try await ApacheDeployment.dataDirectory(in: dir)
        let user = try await env.makeMailUser("cgi", dataDir: data)
        try await ApacheDeployment.handOver(data)
        let prefix = dir + "/apache"
        let script: [(String, String)] = [
            ("/usr/bin/mailgate", env.bin), ("/var/lib/mailgate", data),
            ("--base-path", try ApacheDeployment.serveOptions + " --base-path"),
        ]
        for (site, passesAuthorization) in [("mail", true), ("bare", false)] {
            try ApacheDeployment.installShipped("cgi/.htaccess", to: "\(prefix)/htdocs/\(site)/.htaccess",
                                                replacing: passesAuthorization ? [] : [("CGIPassAuth On\n", "")])
            try ApacheDeployment.installShipped("cgi/mailgate.cgi", to: "\(prefix)/htdocs/\(site)/mailgate.cgi",
                                                replacing: script, mode: 0o755)
        }
        let (apache, port) = try await ApacheDeployment.start(template: "deployment-apache-cgi.conf.in", prefix: prefix,
                                                              name: "apache-cgi")
        defer { apache.stop() }

        let token = try await Deployment.checkRoutes(port: port, prefix: "/mail", user: user, name: "Apache mod_cgi")
        let withoutPassAuth = try await env.send(token: token, to: "bob@example.org", subject: "x", message: "x", port: port,
                                                 prefix: "/bare")
        #expect(withoutPassAuth.status == 401, "\(withoutPassAuth)")
        #expect(withoutPassAuth.header("WWW-Authenticate") == "Bearer")
        #expect(withoutPassAuth.detail == "Not authenticated", "\(withoutPassAuth)")

        // mod_cgi logs a program's stderr as it reads it: maybe after the answer.
        let log = prefix + "/error.log", name = user.name
        let pids = try await blocking {
            var pids: [Int] = []
            try waitUntil("the request log lines of \(name) in \(log)", timeout: 5) {
                let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
                pids = ApacheDeployment.loggedPids(in: text, containing: ["user=\(name) "])
                return pids.count >= 2
            }
            return pids
        }
        #expect(Set(pids).count == pids.count, "one Mailgate process per request: \(pids)")
    }

    /// Apache mod_proxy_fcgi with the shipped deploy/apache/
    /// mailgate-proxy-fcgi.conf in front of `mailgate serve --socket`: the
    /// usual checks, and a chunked 40 KB send (mod_proxy_fcgi passes it on
    /// with no CONTENT_LENGTH) is sent whole.
    @Test func apacheModProxyFcgiBehindTheShippedConfig() async throws {
        let env = try await E2E.get()
        let dir = try Deployment.directory("proxy-fcgi")
        let socket = dir + "/mailgate.sock"
        // 0666 here so Apache's worker user gets in; the shipped note says group www-data, 0660.
        let mailgate = try await blocking {
            try E2E.startMailgate(bin: env.bin, dataDir: env.dataDir, socket: socket, log: dir + "/mailgate.log",
                                  extra: ["--ca-file", env.caBundle, "--threads", "4", "--socket-mode", "0666"], in: dir)
        }
        defer { mailgate.stop() }
        if ApacheDeployment.isRoot { chmod(env.dir, 0o711) }
        let conf = dir + "/apache-mailgate.conf"
        try ApacheDeployment.installShipped("mailgate-proxy-fcgi.conf", to: conf,
                                            replacing: [("/run/mailgate/mailgate.sock", socket)])
        let (apache, port) = try await ApacheDeployment.start(template: "deployment-apache-proxy-fcgi.conf.in",
                                                              prefix: dir + "/apache", name: "apache-proxy-fcgi",
                                                              values: ["MAILGATE_CONF": conf])
        defer { apache.stop() }

        let user = try await env.makeMailUser("proxy-fcgi")
        let token = try await Deployment.checkRoutes(port: port, user: user, name: "Apache mod_proxy_fcgi")
        let marker = uniqueMarker("chunked")
        let json = try JSONSerialization.data(withJSONObject: [
            "to": "bob@example.org", "subject": marker, "message": String(repeating: "chunked body ", count: 3000),
        ])
        var chunked: [UInt8] = []
        for start in stride(from: 0, to: json.count, by: 8000) {
            let piece = json[start..<min(start + 8000, json.count)]
            chunked += Array("\(String(piece.count, radix: 16))\r\n".utf8) + piece + Array("\r\n".utf8)
        }
        chunked += Array("0\r\n\r\n".utf8)
        let sent = try await env.http(HTTP.request("POST", "/smtp/send-email", headers: [
            ("Content-Type", "application/json"), ("Authorization", "Bearer \(token)"), ("Transfer-Encoding", "chunked"),
        ], body: chunked, omitContentLength: true), port: port)
        #expect(sent.status == 200, "\(sent)")
        let arrived = try await env.capture.waitForMessage(containing: marker)
        #expect(arrived.raw.count > json.count - 1000, "the whole message arrived")
    }

    /// Apache with mod_fcgid and the shipped mailgate-fcgid.conf and
    /// mailgate.fcgi (paths pointed at this test's) on `dataDir`, handed
    /// over to Apache's worker user first. Returns Apache, its port and a
    /// reader of its ErrorLog, where Mailgate's stderr goes.
    static func startFcgid(in dir: String, dataDir: String) async throws -> (Child, Int, @Sendable () -> String) {
        let env = try await E2E.get()
        let bin = dir + "/bin"
        try ApacheDeployment.installShipped("mailgate.fcgi", to: bin + "/mailgate.fcgi", replacing: [
            ("/usr/bin/mailgate", env.bin), ("/var/lib/mailgate", dataDir),
            ("--threads 1", "--threads 1 " + (try ApacheDeployment.serveOptions)),
        ], mode: 0o755)
        try ApacheDeployment.installShipped("mailgate-fcgid.conf", to: dir + "/apache-mailgate.conf",
                                            replacing: [("/usr/local/lib/mailgate", bin)])
        try await ApacheDeployment.handOver(dataDir)
        let prefix = dir + "/apache"
        let (apache, port) = try await ApacheDeployment.start(template: "deployment-apache-fcgid.conf.in", prefix: prefix,
                                                              name: "apache-fcgid",
                                                              values: ["MAILGATE_CONF": dir + "/apache-mailgate.conf"])
        let log = prefix + "/error.log"
        return (apache, port, { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" })
    }
}

enum Deployment {
    static func directory(_ name: String) throws -> String {
        guard case .success(let env) = E2E.sharedResult else { throw HarnessError("main environment failed") }
        let dir = "\(env.dir)/deploy-\(name)-\(Counter.shared.next())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// nginx (the shipped mailgate.conf) in front of `upstream` ("unix:PATH"
    /// or "HOST:PORT"), then `checkRoutes`.
    static func check(upstream: String, in dir: String, name: String) async throws {
        let env = try await E2E.get()
        let (nginx, port) = try await blocking {
            try E2E.startFromTemplate(prefix: dir + "/nginx", name: "nginx-\(name)", template: "deployment-nginx.conf.in",
                                      values: ["UPSTREAM": upstream])
        }
        defer { nginx.stop() }
        let user = try await env.makeMailUser("deploy-\(name)")
        try await checkRoutes(port: port, user: user, name: name)
    }

    /// Through the web server on `port`, routes under `prefix`: a token from
    /// /token, a send that arrives, a 401 with `WWW-Authenticate: Bearer`,
    /// and a body over both the shipped nginx limit (36 MiB) and Apache's
    /// (1 MiB) refused with 413. Returns the token.
    @discardableResult
    static func checkRoutes(port: Int, prefix: String = "", user: TestUser, name: String) async throws -> String {
        let env = try await E2E.get()
        let login = try await env.login(user.name, user.password, port: port, prefix: prefix)
        #expect(login.status == 200, "\(name): /token \(login)")
        let token = try #require(login.json?["access_token"] as? String, "\(name): no token in \(login)")
        let marker = uniqueMarker("deploy-\(name)")
        let sent = try await env.send(token: token, to: "bob@example.org", subject: marker, message: "via \(name)", port: port,
                                      prefix: prefix)
        #expect(sent.status == 200, "\(name): send \(sent)")
        _ = try await env.capture.waitForMessage(containing: marker)
        let anonymous = try await env.send(token: nil, to: "bob@example.org", subject: "x", message: "x", port: port,
                                           prefix: prefix)
        #expect(anonymous.status == 401 && anonymous.header("WWW-Authenticate") == "Bearer", "\(name): \(anonymous)")
        let oversized = try await env.sendRaw(token: token, body: [UInt8](repeating: UInt8(ascii: " "), count: (36 << 20) + 1),
                                              port: port, prefix: prefix)
        #expect(oversized.status == 413, "\(name): \(oversized)")
        return token
    }

    /// `count` sends at once with `token`, subjects "`prefix`-0"...: their
    /// answers by subject.
    static func sendAtOnce(_ count: Int, token: String, subjectPrefix: String, port: Int,
                           prefix: String = "") async throws -> [String: HTTPResponse] {
        let env = try await E2E.get()
        return try await withThrowingTaskGroup(of: (String, HTTPResponse).self) { group in
            for i in 0..<count {
                let subject = "\(subjectPrefix)-\(i)"
                group.addTask {
                    (subject, try await env.send(token: token, to: "bob@example.org", subject: subject, message: "m",
                                                 port: port, prefix: prefix))
                }
            }
            return try await group.reduce(into: [:]) { $0[$1.0] = $1.1 }
        }
    }
}

/// Apache httpd started by a test, from a private ServerRoot (as root, its
/// workers run as www-data), with a shipped file of deploy/apache/ in its
/// config.
enum ApacheDeployment {
    static let isRoot = getuid() == 0
    static let workerUser = "www-data"

    /// A data directory of its own for the Mailgate processes Apache
    /// starts: under a root test run they run as Apache's worker user and
    /// must own it (`handOver`), after its users are made.
    static func dataDirectory(in dir: String) async throws -> String {
        let env = try await E2E.get()
        let data = dir + "/data"
        try await env.cli(["init"], dataDir: data)
        return data
    }

    /// Gives `dataDir` to Apache's worker user (when the tests run as root),
    /// and lets it through the directories above.
    static func handOver(_ dataDir: String) async throws {
        guard isRoot else { return }
        let env = try await E2E.get()
        chmod(env.dir, 0o711)
        let result = try await blocking {
            try runTool("/bin/chown", ["-R", "\(workerUser):\(workerUser)", dataDir], in: env.dir)
        }
        guard result.ok else { throw HarnessError("chown \(dataDir): \(result.stderr)") }
    }

    /// deploy/apache/`name` with each of `replacing` substituted (each must
    /// occur: the test follows the shipped file), written to `path`.
    static func installShipped(_ name: String, to path: String, replacing: [(String, String)] = [],
                               mode: mode_t = 0o644) throws {
        var text = try String(contentsOfFile: E2E.repoRoot + "/deploy/apache/" + name, encoding: .utf8)
        for (old, new) in replacing {
            guard text.contains(old) else { throw HarnessError("deploy/apache/\(name) no longer contains \(old)") }
            text = text.replacingOccurrences(of: old, with: new)
        }
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent,
                                                withIntermediateDirectories: true)
        // Through a descriptor closed on exec, not Foundation's write: a child
        // another test spawns meanwhile would inherit that one open for
        // writing, and running the script would then fail (ETXTBSY, which
        // mod_fcgid reports as its program exiting 255) while that child lives.
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw HarnessError("open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        var written = 0
        while written < bytes.count {
            let count = bytes.withUnsafeBytes { buffer in
                buffer.baseAddress.map { write(fd, $0 + written, buffer.count - written) } ?? -1
            }
            guard count > 0 else { throw HarnessError("write \(path): \(String(cString: strerror(errno)))") }
            written += count
        }
        fchmod(fd, mode)
    }

    /// What a shipped script's `serve` gets on top of its own options here:
    /// the test CA and the tests' password rounds.
    static var serveOptions: String {
        get throws {
            guard case .success(let env) = E2E.sharedResult else { throw HarnessError("main environment failed") }
            return (["--ca-file", env.caBundle] + E2E.passwordIterations).joined(separator: " ")
        }
    }

    /// Apache in the foreground on Tests/EndToEndTests/Fixtures/`template`
    /// rendered into `prefix`; returns once it accepts.
    static func start(template: String, prefix: String, name: String,
                      values: [String: String] = [:]) async throws -> (Child, Int) {
        var values = values
        values["USER_LINES"] = isRoot ? "User \(workerUser)\nGroup \(workerUser)" : ""
        let all = values
        return try await blocking {
            try E2E.startFromTemplate(prefix: prefix, name: name, template: template, values: all) { prefix in
                ("/usr/sbin/apache2", ["-f", prefix + "/server.conf", "-DFOREGROUND"])
            }
        }
    }

    /// The pids of the log lines (Mailgate's request log: `pid=N` on each)
    /// that contain every one of `parts`.
    static func loggedPids(in log: String, containing parts: [String]) -> [Int] {
        log.split(separator: "\n").compactMap { line in
            guard parts.allSatisfy({ line.contains($0) }), let pid = line.range(of: " pid=") else { return nil }
            return Int(line[pid.upperBound...].prefix { $0.isNumber })
        }
    }

    /// Whether `pid` is a live process (not gone, not a zombie).
    static func isRunning(_ pid: Int) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.range(of: ") ", options: .backwards) else { return false }
        return stat[close.upperBound...].first != "Z"
    }
}
