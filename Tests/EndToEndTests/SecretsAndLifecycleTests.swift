import Foundation
import MailgateTesting
import Testing
#if canImport(Glibc)
import Glibc
#endif

private func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

private func fileMode(_ path: String) throws -> UInt32 {
    var info = stat()
    guard stat(path, &info) == 0 else { throw HarnessError("stat \(path) failed") }
    return UInt32(info.st_mode) & 0o777
}

private func contents(_ path: String) -> [UInt8] {
    FileManager.default.contents(atPath: path).map { [UInt8]($0) } ?? []
}

private func contains(_ haystack: [UInt8], _ needle: String) -> Bool {
    haystack.firstRange(of: Array(needle.utf8)) != nil
}

/// A fresh data dir (mailgate init) for tests that break it on purpose.
private func freshDataDir(_ env: E2E, _ name: String) async throws -> String {
    let dir = "\(env.dir)/\(name)-\(Counter.shared.next())"
    try await env.cli(["init"], dataDir: dir)
    return dir
}

/// `mailgate serve` on `dataDir` must exit non-zero, quickly, saying why.
private func expectServeRefuses(_ env: E2E, dataDir: String, mentioning words: [String],
                                sourceLocation: SourceLocation = #_sourceLocation) async throws {
    let socket = dataDir + "/refuse.sock"
    let bin = env.bin, dir = env.dir
    let result = try await blocking {
        try runTool(bin, ["serve", "--data-dir", dataDir, "--socket", socket], in: dir, timeout: 15)
    }
    #expect(result.status != .exited(0), "serve must refuse: \(result.status)", sourceLocation: sourceLocation)
    let output = (result.stderr + result.stdoutText).lowercased()
    for word in words {
        #expect(output.contains(word.lowercased()), "message should mention \(word): \(output)", sourceLocation: sourceLocation)
    }
    #expect(!unixAccepts(socket), "nothing may listen", sourceLocation: sourceLocation)
}

/// Issue 4, secrets: logs, database and key files.
@Suite("Secrets")
struct SecretsTests {
    @Test func logsHoldNoPasswordsKeysTokensOrBodies() async throws {
        let env = try await E2E.get()
        let user = try await env.makeMailUser("secrets")
        let login = try await env.login(user.name, user.password)
        let loginToken = try #require(login.json?["access_token"] as? String, "\(login)")
        let cliToken = try await env.token(user.name)
        let bodyMarker = uniqueMarker("BODYSECRET")
        let subjectMarker = uniqueMarker("SUBJECTSECRET")
        let sent = try await env.send(token: loginToken, to: "r@example.org", subject: subjectMarker, message: "body \(bodyMarker)")
        #expect(sent.status == 200, "\(sent)")
        // Failures log too: a refused token, a wrong password, an SMTP failure.
        _ = try await env.send(token: cliToken + "x", to: "r@example.org", subject: "s", message: bodyMarker)
        _ = try await env.login(user.name, "wrong-\(user.password)")
        var badTarget = env.mainCaptureTarget
        badTarget.password = env.smtpPassword + "-bad"
        let badUser = try await env.makeUser("secrets-bad", smtp: badTarget)
        _ = try await env.send(token: try await env.token(badUser.name), to: "r@example.org", subject: "s", message: bodyMarker)

        let log = contents(env.mailgateLog)
        #expect(contains(log, "method=POST path=/smtp/send-email status=200"), "the request log is there at all")
        let tokenKey = try env.tokenKey
        let secretKey = contents(env.dataDir + "/secret.key")
        var forbidden: [(String, String)] = [
            ("SMTP password", env.smtpPassword), ("wrong SMTP password", badTarget.password ?? ""),
            ("user password", user.password), ("bearer token from /token", loginToken), ("bearer token from CLI", cliToken),
            ("token signature", String(loginToken.split(separator: ".").last ?? "")),
            ("message body", bodyMarker),
        ]
        for (name, key) in [("token.key", tokenKey), ("secret.key", secretKey)] {
            forbidden.append(("\(name) hex", hex(key)))
            forbidden.append(("\(name) HEX", hex(key).uppercased()))
            forbidden.append(("\(name) base64", Data(key).base64EncodedString()))
            forbidden.append(("\(name) base64url", Data(key).base64EncodedString().replacingOccurrences(of: "+", with: "-")
                .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")))
            forbidden.append(("\(name) hex prefix", String(hex(key).prefix(16))))
        }
        let nginxLog = contents(env.dir + "/nginx-main/access.log") + contents(env.dir + "/nginx-main/error.log")
        // `leaked` is computed first so a failure prints `leaked → true`, never the secret itself.
        for (what, secret) in forbidden where !secret.isEmpty {
            do { let leaked = contains(log, secret); #expect(!leaked, "mailgate log contains the \(what)") }
            do { let leaked = contains(nginxLog, secret); #expect(!leaked, "nginx logs contain the \(what)") }
        }
    }

    @Test func databaseHoldsNoSMTPOrUserPasswordInClear() async throws {
        let env = try await E2E.get()
        let user = try await env.makeMailUser("dbsecret")
        _ = try await env.send(token: try await env.token(user.name), to: "r@example.org", subject: "s", message: "m")
        var bytes: [UInt8] = []
        for suffix in ["", "-wal", "-shm"] { bytes += contents(env.dataDir + "/mailgate.sqlite" + suffix) }
        #expect(!bytes.isEmpty)
        #expect(contains(bytes, user.name), "the database is the right file")
        do { let leaked = contains(bytes, env.smtpPassword); #expect(!leaked, "SMTP password stored in clear") }
        do { let leaked = contains(bytes, Data(env.smtpPassword.utf8).base64EncodedString()); #expect(!leaked, "SMTP password stored as base64") }
        do { let leaked = contains(bytes, user.password); #expect(!leaked, "user password stored in clear") }
        let shown = try await env.cli(["integration", "show", user.name])
        do { let leaked = shown.contains(env.smtpPassword); #expect(!leaked, "integration show must redact") }
        #expect(shown.contains("smtp-login"))
    }

    /// The tests' users are hashed with 10,000 rounds (E2E.passwordIterations);
    /// a user added without the option gets the default 600,000, a login
    /// checks it at the cost it was stored with, and no count under the
    /// floor is accepted.
    @Test func userAddHashesWith600000RoundsByDefault() async throws {
        let env = try await E2E.get()
        let name = "defaultcost-\(Counter.shared.next())"
        let password = "Pw-\(name)-\(UInt32.random(in: 0 ..< .max))"
        _ = try await env.cli(["user", "add", name], stdin: password)
        var bytes: [UInt8] = []
        for suffix in ["", "-wal"] { bytes += contents(env.dataDir + "/mailgate.sqlite" + suffix) }
        #expect(contains(bytes, "$pbkdf2-sha256$i=600000$"), "the default cost is stored with the hash")
        let login = try await env.login(name, password)
        #expect(login.status == 200, "\(login)")

        let tooCheap = try await env.cliResult(["user", "add", name + "-cheap", "--password-iterations", "9999"],
                                               stdin: password)
        #expect(tooCheap.status == .exited(64), "\(tooCheap.status) \(tooCheap.stderr)")
        #expect(tooCheap.stderr.contains("--password-iterations must be 10000 to 10000000"), "\(tooCheap.stderr)")
    }

    /// Issue 10: someone who can write the database but not read the key
    /// points a user's integration at their own server; the sealed password
    /// no longer opens, the send is a 500, and their server hears nothing.
    @Test func integrationRedirectedInTheDatabaseNeverSendsThePasswordThere() async throws {
        let env = try await E2E.get()
        let user = try await env.makeMailUser("redirect")
        let token = try await env.token(user.name)
        let before = try await env.send(token: token, to: "r@example.org", subject: uniqueMarker("redirect-ok"), message: "m")
        #expect(before.status == 200, "\(before)")

        let attacker = try await CaptureServer.startAsync(name: "attacker", options: .init())
        defer { attacker.stop() }
        let script = """
            import sqlite3, sys
            db = sqlite3.connect(sys.argv[1])
            db.execute("UPDATE smtp_integrations SET port = ?, security = 'none' WHERE user_id = (SELECT id FROM users WHERE username = ?)",
                       (int(sys.argv[2]), sys.argv[3]))
            db.commit()
            """
        let dir = env.dir, database = env.dataDir + "/mailgate.sqlite", port = String(attacker.port), name = user.name
        let edit = try await blocking { try runTool(E2E.python, ["-c", script, database, port, name], in: dir) }
        #expect(edit.ok, "\(edit.stderr)")

        let marker = uniqueMarker("redirected")
        let after = try await env.send(token: token, to: "r@example.org", subject: marker, message: "m")
        #expect(after.status == 500, "\(after)")
        #expect(after.detail == "Internal server error")
        do { let leaked = after.text.contains(env.smtpPassword); #expect(!leaked) }
        try await Task.sleep(for: .milliseconds(300))
        #expect(attacker.allMessages().isEmpty, "nothing reached the attacker's server")
        let log = String(decoding: FileManager.default.contents(atPath: env.mailgateLog) ?? Data(), as: UTF8.self)
        #expect(log.contains("cannot decrypt the stored SMTP password of user \(user.name)"), "the log says why")
        do { let leaked = log.contains(env.smtpPassword); #expect(!leaked) }
    }

    @Test func keyFilesAndDatabaseAreOwnerOnly() async throws {
        let env = try await E2E.get()
        #expect(try fileMode(env.dataDir + "/token.key") == 0o600)
        #expect(try fileMode(env.dataDir + "/secret.key") == 0o600)
        #expect(try fileMode(env.dataDir + "/mailgate.sqlite") & 0o077 == 0)
        #expect(try fileMode(env.dataDir) & 0o077 == 0)
        #expect(try env.tokenKey.count >= 32)
        #expect(try fileMode(env.socket) == 0o660, "the FastCGI socket is 0660")
    }

    @Test(arguments: [("token.key", 0o640 as UInt32), ("token.key", 0o604), ("token.key", 0o644), ("secret.key", 0o640), ("secret.key", 0o604)])
    func serveRefusesKeyFilesReadableByOthers(file: String, mode: UInt32) async throws {
        let env = try await E2E.get()
        let dir = try await freshDataDir(env, "badmode")
        #expect(chmod(dir + "/" + file, mode_t(mode)) == 0)
        try await expectServeRefuses(env, dataDir: dir, mentioning: [file])
    }

    @Test(arguments: [0, 16, 31])
    func serveRefusesShortTokenKey(length: Int) async throws {
        let env = try await E2E.get()
        let dir = try await freshDataDir(env, "shortkey")
        let path = dir + "/token.key"
        unlink(path)
        #expect(FileManager.default.createFile(atPath: path, contents: Data((0..<length).map { UInt8($0 & 0xff) }),
                                               attributes: [.posixPermissions: 0o600]))
        try await expectServeRefuses(env, dataDir: dir, mentioning: ["token.key"])
    }

    @Test func serveRefusesMissingTokenKey() async throws {
        let env = try await E2E.get()
        let dir = try await freshDataDir(env, "nokey")
        unlink(dir + "/token.key")
        try await expectServeRefuses(env, dataDir: dir, mentioning: ["token.key"])
    }

    @Test func serveStartsWithAFreshDataDirControl() async throws {
        let env = try await E2E.get()
        let dir = try await freshDataDir(env, "goodkey")
        let socket = dir + "/ok.sock"
        let child = try await blocking {
            try E2E.startMailgate(bin: env.bin, dataDir: dir, socket: socket, log: dir + "/serve.log", extra: ["--threads", "2"], in: env.dir)
        }
        defer { child.stop() }
        #expect(unixAccepts(socket))
    }
}

/// Issue 2, lifecycle: graceful stop on SIGTERM/SIGINT.
@Suite("Lifecycle")
struct LifecycleTests {
    @Test(arguments: [SIGTERM, SIGINT])
    func idleServerExitsZeroOnSignal(signal: Int32) async throws {
        let env = try await E2E.get()
        let socket = "\(env.dir)/sig-\(Counter.shared.next()).sock"
        let child = try await blocking {
            try E2E.startMailgate(bin: env.bin, dataDir: env.dataDir, socket: socket, log: socket + ".log",
                                  extra: ["--threads", "4"], in: env.dir)
        }
        defer { child.stop() }
        child.signal(signal)
        let status = try await blocking { child.wait(timeout: 10) }
        #expect(status == .exited(0), "exit status \(String(describing: status)); log: \(child.stderrText.suffix(500))")
    }

    @Test func sigtermFinishesTheRequestInFlightThenExitsZero() async throws {
        let env = try await E2E.get()
        let socket = "\(env.dir)/inflight-\(Counter.shared.next()).sock"
        let child = try await blocking {
            try E2E.startMailgate(bin: env.bin, dataDir: env.dataDir, socket: socket, log: socket + ".log",
                                  extra: ["--threads", "2", "--smtp-timeout", "10s"], in: env.dir)
        }
        defer { child.stop() }
        let (nginx, port) = try await blocking {
            try E2E.startNginx(in: env.dir, name: "nginx-inflight-\(Counter.shared.next())", socket: socket, rate: "100r/s")
        }
        defer { nginx.stop() }
        let smtpPort = try freePort()
        let smtp = try await blocking {
            let name = "slow-smtp-\(Counter.shared.next())"
            let server = try Child.spawn(E2E.python, [PythonHelper.path("slow_smtp_server.py"), String(smtpPort)],
                                         stdout: "\(env.dir)/\(name).out", stderr: "\(env.dir)/\(name).err", name: name)
            try waitUntil("slow SMTP server", child: server) { server.stdoutText.contains("READY") }
            return server
        }
        defer { smtp.stop() }
        let user = try await env.makeUser("inflight", smtp: SMTPTarget(port: smtpPort, security: "none"))
        let token = try await env.token(user.name)

        let request = Task { try await env.send(token: token, to: "r@example.org", subject: "in flight", message: "m", port: port) }
        try await blocking { try waitUntil("SMTP connection from mailgate", timeout: 20, child: smtp) { smtp.stdoutText.contains("CONNECTED") } }
        child.signal(SIGTERM)
        let response = try await request.value
        #expect(response.status == 200, "the request in flight completes: \(response)")
        // The server prints DELIVERED right after its 250, which may be after Mailgate's 200.
        try await blocking { try waitUntil("the server's DELIVERED", timeout: 10) { smtp.stdoutText.contains("DELIVERED") } }
        let status = try await blocking { child.wait(timeout: 15) }
        #expect(status == .exited(0), "exit status \(String(describing: status)); log: \(child.stderrText.suffix(500))")
        #expect(!unixAccepts(socket), "no longer accepting")
    }
}
