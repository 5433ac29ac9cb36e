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
}

enum Deployment {
    static func directory(_ name: String) throws -> String {
        guard case .success(let env) = E2E.sharedResult else { throw HarnessError("main environment failed") }
        let dir = "\(env.dir)/deploy-\(name)-\(Counter.shared.next())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// nginx (the shipped mailgate.conf) in front of `upstream` ("unix:PATH"
    /// or "HOST:PORT"), then: a
    /// token from /token, a send that arrives, a 401 with `WWW-Authenticate:
    /// Bearer`, and a 2 MiB body refused with 413.
    static func check(upstream: String, in dir: String, name: String) async throws {
        let env = try await E2E.get()
        let (nginx, port) = try await blocking {
            try E2E.startFromTemplate(prefix: dir + "/nginx", name: "nginx-\(name)", template: "deployment-nginx.conf.in",
                                      values: ["UPSTREAM": upstream])
        }
        defer { nginx.stop() }

        let user = try await env.makeMailUser("deploy-\(name)")
        let login = try await env.login(user.name, user.password, port: port)
        #expect(login.status == 200, "\(name): /token \(login)")
        let token = try #require(login.json?["access_token"] as? String, "\(name): no token in \(login)")
        let marker = uniqueMarker("deploy-\(name)")
        let sent = try await env.send(token: token, to: "bob@example.org", subject: marker, message: "via \(name)", port: port)
        #expect(sent.status == 200, "\(name): send \(sent)")
        _ = try await env.capture.waitForMessage(containing: marker)
        let anonymous = try await env.send(token: nil, to: "bob@example.org", subject: "x", message: "x", port: port)
        #expect(anonymous.status == 401 && anonymous.header("WWW-Authenticate") == "Bearer", "\(name): \(anonymous)")
        let oversized = try await env.sendRaw(token: token, body: [UInt8](repeating: UInt8(ascii: " "), count: 2 << 20),
                                              port: port)
        #expect(oversized.status == 413, "\(name): \(oversized)")
    }
}
