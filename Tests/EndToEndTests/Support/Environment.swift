import Foundation
import MailgateTesting
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Where the SMTP integration of a test user points.
struct SMTPTarget: Sendable {
    var host = "127.0.0.1"
    var port: Int
    var security = "none"
    var username: String? = nil
    var password: String? = nil
    var from = "sender@example.com"
    var fromName: String? = "Mailgate Tester"
}

struct TestUser: Sendable {
    var name: String
    var password: String
}

/// The shared end-to-end environment, started once per test process:
/// a private temp dir, certificates, a capture SMTP server with STARTTLS +
/// AUTH, `mailgate serve` on a Unix socket and nginx on a loopback port.
final class E2E: Sendable {
    static let repoRoot = Repository.root

    static let mailgateBinary: String = ProcessInfo.processInfo.environment["MAILGATE_BIN"]
        ?? repoRoot + "/.build/debug/mailgate"
    static let python = PythonHelper.interpreter

    /// PBKDF2 rounds of test users' passwords (`--password-iterations`, the
    /// floor), passed to `user add` and to every `serve` of the tests: at the
    /// default 600,000, the ~100 logins of one run cost a minute of both
    /// cores and pushed logins past nginx's 30 s timeout. The default itself
    /// is checked in the Secrets suite (`userAddHashesWith600000RoundsByDefault`).
    static let passwordIterations = ["--password-iterations", "10000"]

    private static let shared: Result<E2E, HarnessError> = {
        do { return .success(try E2E.start()) } catch let error as HarnessError {
            ChildRegistry.shared.killAll()
            return .failure(error)
        } catch {
            ChildRegistry.shared.killAll()
            return .failure(HarnessError("\(error)"))
        }
    }()

    /// The environment's start-up outcome, for fixtures built on it (call `get()` first).
    static var sharedResult: Result<E2E, HarnessError> { shared }

    /// The environment, started on first use.
    static func get() async throws -> E2E {
        try await blocking { try shared.get() }
    }

    let dir: String
    let bin: String
    let localhostCert: Certificate
    let otherNameCert: Certificate
    let untrustedCert: Certificate
    /// localhost + other.example certificates: Mailgate's --ca-file.
    let caBundle: String
    let dataDir: String
    let socket: String
    let port: Int
    let mailgateLog: String
    let mailgate: Child
    let nginx: Child
    let capture: CaptureServer
    let smtpLogin = "smtp-login"
    let smtpPassword: String

    private init(dir: String, bin: String, localhostCert: Certificate, otherNameCert: Certificate, untrustedCert: Certificate,
                 caBundle: String, dataDir: String, socket: String, port: Int, mailgateLog: String, mailgate: Child,
                 nginx: Child, capture: CaptureServer, smtpPassword: String) {
        self.dir = dir
        self.bin = bin
        self.localhostCert = localhostCert
        self.otherNameCert = otherNameCert
        self.untrustedCert = untrustedCert
        self.caBundle = caBundle
        self.dataDir = dataDir
        self.socket = socket
        self.port = port
        self.mailgateLog = mailgateLog
        self.mailgate = mailgate
        self.nginx = nginx
        self.capture = capture
        self.smtpPassword = smtpPassword
    }

    private static func start() throws -> E2E {
        let bin = mailgateBinary
        guard FileManager.default.isExecutableFile(atPath: bin) else {
            throw HarnessError("no mailgate binary at \(bin): run `swift build` first or set MAILGATE_BIN")
        }
        let dir = try TempDir(prefix: "mailgate-e2e", in: "/tmp").path
        ChildRegistry.shared.removeAtExit(dir)

        let localhost = try makeCertificate(in: dir, name: "localhost", subject: "/CN=localhost",
                                            san: "DNS:localhost,IP:127.0.0.1", days: 1)
        let other = try makeCertificate(in: dir, name: "other", subject: "/CN=other.example", san: "DNS:other.example",
                                        days: 1)
        let untrusted = try makeCertificate(in: dir, name: "untrusted", subject: "/CN=localhost",
                                            san: "DNS:localhost,IP:127.0.0.1", days: 1)
        let bundle = dir + "/ca-bundle.pem"
        let pems = try [localhost.cert, other.cert].map { try String(contentsOfFile: $0, encoding: .utf8) }
        try pems.joined().write(toFile: bundle, atomically: true, encoding: .utf8)

        // The SMTP password is a recognisable marker the secrets test looks for.
        let smtpPassword = "SmtpPw-\(UInt64.random(in: 1 << 40 ..< 1 << 50))-secret"
        let capture = try CaptureServer.start(in: dir, name: "capture-main", options: .init(
            starttls: true, certificate: localhost, authUser: "smtp-login", authPassword: smtpPassword))

        let dataDir = dir + "/data"
        let initResult = try runTool(bin, ["init", "--data-dir", dataDir], in: dir)
        guard initResult.ok else { throw HarnessError("mailgate init failed: \(initResult.stderr)") }

        let socket = dir + "/mailgate.sock"
        let log = dir + "/mailgate.log"
        // ~100 tests at once log in and send through this one instance: its
        // per-user and password-check limits are opened up (FairnessTests and
        // LimitsTests exercise them; the auxiliary instance keeps defaults).
        let mailgate = try startMailgate(bin: bin, dataDir: dataDir, socket: socket, log: log,
                                         extra: ["--ca-file", bundle, "--smtp-timeout", "25s", "--threads", "8",
                                                 "--max-in-flight-per-user", "8", "--kdf-concurrency", "8"], in: dir)
        // The shipped /token limit (burst 5) at a rate no burst of parallel tests reaches:
        // the aux instance tests the shipped 10r/m.
        let (nginx, port) = try startNginx(in: dir, name: "nginx-main", socket: socket, rate: "10000r/s")
        return E2E(dir: dir, bin: bin, localhostCert: localhost, otherNameCert: other, untrustedCert: untrusted,
                   caBundle: bundle, dataDir: dataDir, socket: socket, port: port, mailgateLog: log,
                   mailgate: mailgate, nginx: nginx, capture: capture, smtpPassword: smtpPassword)
    }

    /// `mailgate serve` on `socket`, stderr (the log) to `log`; returns once it accepts.
    static func startMailgate(bin: String, dataDir: String, socket: String, log: String, extra: [String],
                              in dir: String) throws -> Child {
        let child = try Child.spawn(bin, ["serve", "--data-dir", dataDir, "--socket", socket] + passwordIterations + extra,
                                    stdout: log + ".out", stderr: log, removingEnvironment: ["LISTEN_FDS", "LISTEN_PID"],
                                    name: "mailgate serve")
        do {
            try waitUntil("mailgate socket \(socket)", child: child) { unixAccepts(socket) }
        } catch {
            child.stop()
            throw error
        }
        return child
    }

    /// nginx from nginx/local/render-conf.sh in front of `socket`; returns once it accepts.
    static func startNginx(in dir: String, name: String, socket: String, rate: String) throws -> (Child, Int) {
        try withFreshPort { port in try startNginx(in: dir, name: name, socket: socket, rate: rate, port: port) }
    }

    private static func startNginx(in dir: String, name: String, socket: String, rate: String, port: Int) throws -> (Child, Int) {
        let prefix = "\(dir)/\(name)"
        let render = try runTool("/bin/bash", [repoRoot + "/nginx/local/render-conf.sh", prefix, String(port), socket, rate],
                                 in: dir)
        guard render.ok else { throw HarnessError("render-conf.sh failed: \(render.stderr)") }
        let child = try Child.spawn("/usr/sbin/nginx", ["-p", prefix, "-c", prefix + "/nginx.conf"],
                                    stdout: prefix + "/stdout.log", stderr: prefix + "/stderr.log", name: name)
        do {
            try waitUntil("\(name) on port \(port)", child: child) { tcpAccepts(port) }
        } catch {
            child.stop()
            throw error
        }
        return (child, port)
    }

    /// Renders `Tests/EndToEndTests/Fixtures/TEMPLATE` into PREFIX/server.conf
    /// (@PREFIX@, @PORT@ on a fresh port, @ROOT@, @USER_LINE@ for nginx run
    /// as root, and `values`), with nginx's temp directories and
    /// fastcgi_params in PREFIX, starts `command(PREFIX)` and returns once
    /// it accepts on the port.
    static func startFromTemplate(prefix: String, name: String, template: String, values: [String: String] = [:],
                                  command: (String) -> (String, [String]) = nginxCommand) throws -> (Child, Int) {
        for sub in ["", "/tmp/client_body", "/tmp/proxy", "/tmp/fastcgi", "/tmp/uwsgi", "/tmp/scgi"] {
            try FileManager.default.createDirectory(atPath: prefix + sub, withIntermediateDirectories: true)
        }
        if !FileManager.default.fileExists(atPath: prefix + "/fastcgi_params") {
            // mailgate.conf includes it relative to nginx's prefix.
            try FileManager.default.copyItem(atPath: "/etc/nginx/fastcgi_params", toPath: prefix + "/fastcgi_params")
        }
        let text = try String(contentsOfFile: repoRoot + "/Tests/EndToEndTests/Fixtures/" + template, encoding: .utf8)
        return try withFreshPort { port in
            var rendered = text.replacingOccurrences(of: "@PREFIX@", with: prefix)
                .replacingOccurrences(of: "@PORT@", with: String(port))
                .replacingOccurrences(of: "@ROOT@", with: repoRoot)
                .replacingOccurrences(of: "@USER_LINE@", with: getuid() == 0 ? "user root root;" : "")
            for (key, value) in values { rendered = rendered.replacingOccurrences(of: "@\(key)@", with: value) }
            try rendered.write(toFile: prefix + "/server.conf", atomically: true, encoding: .utf8)
            let (executable, arguments) = command(prefix)
            let child = try Child.spawn(executable, arguments, stdout: prefix + "/stdout.log",
                                        stderr: prefix + "/stderr.log", name: name)
            do {
                try waitUntil("\(name) on port \(port)", child: child) { tcpAccepts(port) }
            } catch {
                child.stop()
                let log = (try? String(contentsOfFile: prefix + "/error.log", encoding: .utf8)) ?? ""
                throw HarnessError("\(error) \(log.suffix(1000))")
            }
            return (child, port)
        }
    }

    /// nginx in the foreground on PREFIX/server.conf.
    static func nginxCommand(_ prefix: String) -> (String, [String]) {
        ("/usr/sbin/nginx", ["-p", prefix, "-c", prefix + "/server.conf"])
    }

    // MARK: - CLI

    /// Runs `mailgate ARGS --data-dir DATA` and requires success.
    @discardableResult
    func cli(_ arguments: [String], stdin: String? = nil, dataDir: String? = nil) async throws -> String {
        let result = try await cliResult(arguments, stdin: stdin, dataDir: dataDir)
        guard result.ok else {
            throw HarnessError("mailgate \(arguments.joined(separator: " ")) failed (\(result.status)): \(result.stderr)")
        }
        return result.stdoutText
    }

    func cliResult(_ arguments: [String], stdin: String? = nil, dataDir: String? = nil) async throws -> ToolResult {
        let bin = self.bin, dir = self.dir, data = dataDir ?? self.dataDir
        return try await blocking {
            E2E.cliSlots.wait()
            defer { E2E.cliSlots.signal() }
            // The option goes before a "--", after which everything is an argument.
            var withData = arguments
            withData.insert(contentsOf: ["--data-dir", data], at: arguments.firstIndex(of: "--") ?? arguments.endIndex)
            return try runTool(bin, withData, in: dir, stdin: stdin.map { Array(($0 + "\n").utf8) })
        }
    }

    /// CLI commands at once. Every test makes its users with the CLI, and
    /// 150 tests start together: unbounded, that herd of processes queued on
    /// the database's write lock long enough for the server's own writes
    /// (logins, idempotency keys) to give up after their 5 s (500s). An
    /// administrator runs a command at a time; four is plenty for the tests.
    static let cliSlots = DispatchSemaphore(value: 4)

    /// A fresh user (unique name from `prefix`), optionally with an SMTP
    /// integration, in `dataDir` (default: the main data directory).
    func makeUser(_ prefix: String, smtp: SMTPTarget? = nil, dataDir: String? = nil) async throws -> TestUser {
        let name = "\(prefix)-\(Counter.shared.next())"
        let password = "Pw-\(name)-\(UInt32.random(in: 0 ..< .max))"
        try await cli(["user", "add", name] + E2E.passwordIterations, stdin: password, dataDir: dataDir)
        if let smtp { try await setIntegration(name, smtp, dataDir: dataDir) }
        return TestUser(name: name, password: password)
    }

    /// A user whose mail goes to the main capture server (STARTTLS + AUTH).
    func makeMailUser(_ prefix: String, dataDir: String? = nil) async throws -> TestUser {
        try await makeUser(prefix, smtp: mainCaptureTarget, dataDir: dataDir)
    }

    var mainCaptureTarget: SMTPTarget {
        SMTPTarget(port: capture.port, security: "starttls", username: smtpLogin, password: smtpPassword,
                   from: "sender@example.com", fromName: "Mailgate Tester")
    }

    func setIntegration(_ user: String, _ smtp: SMTPTarget, dataDir: String? = nil) async throws {
        var arguments = ["integration", "set", user, "--host", smtp.host, "--port", String(smtp.port),
                         "--security", smtp.security, "--from", smtp.from]
        if let name = smtp.fromName { arguments += ["--from-name", name] }
        if let login = smtp.username { arguments += ["--username", login] }
        try await cli(arguments, stdin: smtp.username == nil ? nil : (smtp.password ?? ""), dataDir: dataDir)
    }

    /// A token minted by the CLI (no KDF work).
    func token(_ user: String, ttl: String? = nil) async throws -> String {
        var arguments = ["token", "issue", user]
        if let ttl { arguments += ["--ttl", ttl] }
        return try await cli(arguments).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    var tokenKey: [UInt8] {
        get throws {
            guard let data = FileManager.default.contents(atPath: dataDir + "/token.key") else {
                throw HarnessError("cannot read token.key")
            }
            return [UInt8](data)
        }
    }

    // MARK: - HTTP

    func http(_ raw: [UInt8], port: Int? = nil, halfClose: Bool = false, timeout: Double = 40) async throws -> HTTPResponse {
        let target = port ?? self.port
        return try await blocking { try HTTP.exchange(port: target, raw, halfClose: halfClose, timeout: timeout) }
    }

    /// POST /token with a form body (`prefix`: a path before the route, e.g. "/mail").
    func login(_ user: String, _ password: String, port: Int? = nil, prefix: String = "") async throws -> HTTPResponse {
        let body = "grant_type=password&username=\(formEncode(user))&password=\(formEncode(password))"
        return try await http(HTTP.request("POST", prefix + "/token",
                                           headers: [("Content-Type", "application/x-www-form-urlencoded")],
                                           body: Array(body.utf8)), port: port)
    }

    /// POST /smtp/send-email with a JSON object built from `fields`.
    func send(token: String?, to: String, subject: String, message: String, port: Int? = nil,
              prefix: String = "") async throws -> HTTPResponse {
        let object: [String: String] = ["to": to, "subject": subject, "message": message]
        let body = try JSONSerialization.data(withJSONObject: object, options: [.withoutEscapingSlashes])
        return try await sendRaw(token: token, body: [UInt8](body), port: port, prefix: prefix)
    }

    /// POST /smtp/send-email with any JSON object (arrays, attachments...)
    /// and extra request headers (e.g. `Idempotency-Key`).
    func sendJSON(token: String?, _ object: [String: Any], headers extra: [(String, String)] = [],
                  port: Int? = nil) async throws -> HTTPResponse {
        let body = try JSONSerialization.data(withJSONObject: object, options: [.withoutEscapingSlashes, .sortedKeys])
        return try await sendRaw(token: token, body: [UInt8](body), headers: extra, port: port)
    }

    func sendRaw(token: String?, body: [UInt8], contentType: String = "application/json",
                 headers extra: [(String, String)] = [], port: Int? = nil,
                 prefix: String = "") async throws -> HTTPResponse {
        var headers = [("Content-Type", contentType)] + extra
        if let token { headers.append(("Authorization", "Bearer \(token)")) }
        return try await http(HTTP.request("POST", prefix + "/smtp/send-email", headers: headers, body: body), port: port)
    }

    /// One request in plain CGI mode: `mailgate serve` with the CGI variables
    /// in its environment and `stdin` as the body; parses what it prints.
    func cgi(method: String = "POST", uri: String = "/smtp/send-email", params: [String: String] = [:],
             stdin: [UInt8] = [], extraArguments: [String] = [], dataDir: String? = nil) async throws -> (HTTPResponse, ToolResult) {
        var environment: [String: String] = [
            "PATH": "/usr/bin:/bin", "GATEWAY_INTERFACE": "CGI/1.1", "SERVER_PROTOCOL": "HTTP/1.1",
            "REQUEST_METHOD": method, "DOCUMENT_URI": uri, "REQUEST_URI": uri,
        ]
        for (key, value) in params { environment[key] = value }
        let bin = self.bin, dir = self.dir, data = dataDir ?? self.dataDir, childEnvironment = environment
        let result = try await blocking {
            try runTool(bin, ["serve", "--data-dir", data] + extraArguments, in: dir, stdin: stdin,
                        environment: childEnvironment, timeout: 30)
        }
        // CGI output: "Status: 401 Unauthorized\r\n..."
        guard result.stdout.starts(with: Array("Status: ".utf8)) else {
            throw HarnessError("CGI output does not start with Status: (\(result.status)) \(result.stdoutText.prefix(300)) \(result.stderr.prefix(500))")
        }
        return (try HTTP.parseCGI(result.stdout), result)
    }

    /// A second `mailgate serve` (same data dir, `--max-body 1000`,
    /// `--smtp-timeout 3s`) behind a second nginx whose /token rate is the
    /// shipped 10r/m: for the body-limit, rate-limit and deadline tests,
    /// started on first use. (The main instance allows 25 s, below nginx's
    /// 30 s: a loaded 2-core machine with one Python SMTP server for ~100
    /// parallel tests stalled it past 10 s once in CI, and a good send must
    /// not turn into a 504.)
    static let auxiliary: Result<Auxiliary, HarnessError> = {
        do {
            guard case .success(let main) = shared else { throw HarnessError("main environment failed") }
            let socket = main.dir + "/mailgate-aux.sock"
            let mailgate = try startMailgate(bin: main.bin, dataDir: main.dataDir, socket: socket,
                                             log: main.dir + "/mailgate-aux.log",
                                             extra: ["--max-body", "1000", "--smtp-timeout", "3s", "--threads", "8",
                                                     "--ca-file", main.caBundle], in: main.dir)
            let (nginx, port) = try startNginx(in: main.dir, name: "nginx-aux", socket: socket, rate: "10r/m")
            return .success(Auxiliary(mailgate: mailgate, nginx: nginx, port: port, log: main.dir + "/mailgate-aux.log"))
        } catch let error as HarnessError {
            return .failure(error)
        } catch {
            return .failure(HarnessError("\(error)"))
        }
    }()

    func aux() async throws -> Auxiliary {
        try await blocking { try E2E.auxiliary.get() }
    }
}

struct Auxiliary: Sendable {
    let mailgate: Child
    let nginx: Child
    let port: Int
    let log: String
}

func formEncode(_ text: String) -> String {
    var allowed = CharacterSet.alphanumerics
    allowed.insert(charactersIn: "-._~")
    return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
}

/// A unique marker for finding one test's message in a shared spool.
func uniqueMarker(_ prefix: String) -> String {
    "\(prefix)-\(Counter.shared.next())-\(UInt64.random(in: 0 ..< .max))"
}
