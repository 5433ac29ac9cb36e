import Foundation
import MailgateTesting
import Synchronization
import Testing

/// A stop signal a test sets and clears while tasks poll it.
final class Flag: Sendable {
    private let value = Atomic<Bool>(false)
    var isSet: Bool { value.load(ordering: .acquiring) }
    func set() { value.store(true, ordering: .releasing) }
    func clear() { value.store(false, ordering: .releasing) }
}

/// Issue 14 end to end: two "hosts", each a `mailgate serve` behind its own
/// nginx with its own data directory (the same two key files), sharing one
/// PostgreSQL database from a throwaway cluster.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct SeveralHostsTests {
    /// Two hosts on one fresh database.
    final class Hosts: Sendable {
        let e2e: E2E
        let cluster: PostgresCluster
        let uri: String
        let dirA: String
        let dirB: String
        let a: Host
        let b: Host

        struct Host: Sendable {
            let mailgate: Child
            let nginx: Child
            let port: Int
            func stop() {
                nginx.stop()
                mailgate.stop()
            }
        }

        init(_ e2e: E2E, name: String) throws {
            self.e2e = e2e
            cluster = try PostgresCluster.shared()
            uri = try cluster.newDatabase()
            dirA = e2e.dir + "/\(name)-a"
            dirB = e2e.dir + "/\(name)-b"
            let initA = try runTool(e2e.bin, ["init", "--data-dir", dirA, "--store", uri], in: e2e.dir)
            guard initA.ok else { throw HarnessError("init --store failed: \(initA.stderr)") }
            // Host B: the same two keys, nothing else (its state is the database).
            try FileManager.default.createDirectory(atPath: dirB, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
            for key in ["token.key", "secret.key"] {
                try FileManager.default.copyItem(atPath: dirA + "/" + key, toPath: dirB + "/" + key)
            }
            a = try Self.startHost(e2e, dir: dirA, uri: uri, name: name + "-a")
            do {
                b = try Self.startHost(e2e, dir: dirB, uri: uri, name: name + "-b")
            } catch {
                a.stop()
                throw error
            }
        }

        static func startHost(_ e2e: E2E, dir: String, uri: String, name: String) throws -> Host {
            let socket = dir + "/mailgate.sock"
            let mailgate = try E2E.startMailgate(bin: e2e.bin, dataDir: dir, socket: socket, log: dir + "/mailgate.log",
                                                 extra: ["--store", uri, "--ca-file", e2e.caBundle, "--max-in-flight-per-user", "16"], in: e2e.dir)
            do {
                let (nginx, port) = try E2E.startNginx(in: e2e.dir, name: "nginx-\(name)", socket: socket, rate: "10000r/s")
                return Host(mailgate: mailgate, nginx: nginx, port: port)
            } catch {
                mailgate.stop()
                throw error
            }
        }

        func stop() {
            a.stop()
            b.stop()
        }

        /// A CLI command against the shared database (from host A's directory).
        func cli(_ arguments: [String], stdin: String? = nil) async throws -> String {
            try await e2e.cli(arguments + ["--store", uri], stdin: stdin, dataDir: dirA)
        }

        /// A user whose mail goes to the main capture server.
        func mailUser(_ prefix: String) async throws -> TestUser {
            let name = "\(prefix)-\(UInt32.random(in: 0 ..< .max))"
            let password = "Pw-\(name)"
            _ = try await cli(["user", "add", name] + E2E.passwordIterations, stdin: password)
            let smtp = e2e.mainCaptureTarget
            _ = try await cli(["integration", "set", name, "--host", smtp.host, "--port", String(smtp.port),
                               "--security", smtp.security, "--from", smtp.from, "--username", smtp.username ?? ""],
                              stdin: smtp.password ?? "")
            return TestUser(name: name, password: password)
        }

        func token(_ user: String, name: String? = nil) async throws -> String {
            try await cli(["token", "issue", user] + (name.map { ["--name", $0] } ?? []))
                .trimmingCharacters(in: .whitespacesAndNewlines)
        }

        func send(via host: Host, token: String, subject: String, headers: [(String, String)] = []) async throws -> HTTPResponse {
            try await e2e.sendJSON(token: token, ["to": "rcpt@example.org", "subject": subject, "message": "x"],
                                   headers: headers, port: host.port)
        }

        /// Polls `host` until a send with `token` is refused (401), for at most `within` seconds.
        func refusedWithin(_ within: Double, via host: Host, token: String) async throws -> Bool {
            let deadline = Date().addingTimeInterval(within)
            repeat {
                let response = try await send(via: host, token: token, subject: uniqueMarker("poll"))
                if response.status == 401 { return true }
                try await Task.sleep(for: .milliseconds(50))
            } while Date() < deadline
            return false
        }
    }

    @Test func aTokenFromOneHostWorksOnTheOtherAndRevocationReachesItWithinASecond() async throws {
        let e2e = try await E2E.get()
        let hosts = try await blocking { try Hosts(e2e, name: "hosts-tokens") }
        defer { hosts.stop() }
        let user = try await hosts.mailUser("hosts")
        // Logged in at A, used at B.
        let login = try await e2e.login(user.name, user.password, port: hosts.a.port)
        #expect(login.status == 200, "\(login.text)")
        let token = try #require(login.json?["access_token"] as? String)
        let marker = uniqueMarker("a-to-b")
        let sent = try await hosts.send(via: hosts.b, token: token, subject: marker)
        #expect(sent.status == 200, "\(sent.text)")
        _ = try await e2e.capture.waitForMessage(containing: marker)

        // user revoke-tokens (the CLI on the shared database): B refuses within 1 s.
        _ = try await hosts.cli(["user", "revoke-tokens", user.name])
        #expect(try await hosts.refusedWithin(1, via: hosts.b, token: token))

        // token revoke ID: that named token fails at A and B within 1 s.
        let named = try await hosts.token(user.name, name: "cron")
        #expect(try await hosts.send(via: hosts.a, token: named, subject: uniqueMarker("named")).status == 200)
        let list = try await hosts.cli(["token", "list", user.name])
        let id = try #require(list.split(separator: "\n").dropFirst().first?.split(whereSeparator: { $0 == " " || $0 == "\t" }).first.map(String.init))
        _ = try await hosts.cli(["token", "revoke", id])
        #expect(try await hosts.refusedWithin(1, via: hosts.b, token: named))
        #expect(try await hosts.refusedWithin(1, via: hosts.a, token: named))
    }

    @Test func aQuotaAndAnIdempotencyKeyCountAcrossHosts() async throws {
        let e2e = try await E2E.get()
        let hosts = try await blocking { try Hosts(e2e, name: "hosts-counts") }
        defer { hosts.stop() }
        let user = try await hosts.mailUser("hosts-quota")
        _ = try await hosts.cli(["user", "limits", user.name, "--per-hour", "6"])
        let token = try await hosts.token(user.name)
        let prefix = uniqueMarker("quota")
        let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
            for index in 0..<20 {
                let host = index % 2 == 0 ? hosts.a : hosts.b
                group.addTask { try await hosts.send(via: host, token: token, subject: "\(prefix)-\(index)").status }
            }
            return try await group.reduce(into: [Int]()) { $0.append($1) }
        }
        #expect(statuses.filter { $0 == 200 }.count == 6, "\(statuses.sorted())")
        #expect(statuses.filter { $0 == 429 }.count == 14, "\(statuses.sorted())")
        try await Task.sleep(for: .milliseconds(500))
        #expect(e2e.capture.messages(containing: prefix).count == 6)

        let other = try await hosts.mailUser("hosts-idem")
        let otherToken = try await hosts.token(other.name)
        let key = ("Idempotency-Key", uniqueMarker("key"))
        let marker = uniqueMarker("idem")
        let first = try await hosts.send(via: hosts.a, token: otherToken, subject: marker, headers: [key])
        let second = try await hosts.send(via: hosts.b, token: otherToken, subject: marker, headers: [key])
        #expect(first.status == 200 && second.status == 200, "\(first.text) \(second.text)")
        #expect(second.header("Idempotent-Replayed") == "true")
        try await Task.sleep(for: .milliseconds(500))
        #expect(e2e.capture.messages(containing: marker).count == 1)
    }

    @Test func theLoginLockoutCountsAttemptsAtBothHosts() async throws {
        let e2e = try await E2E.get()
        let hosts = try await blocking { try Hosts(e2e, name: "hosts-lockout") }
        defer { hosts.stop() }
        let user = try await hosts.mailUser("hosts-lock")
        // 5 failures per (user, client address) within 15 minutes: 3 at A, 2 at B.
        for index in 0..<5 {
            let response = try await e2e.login(user.name, "wrong", port: index < 3 ? hosts.a.port : hosts.b.port)
            #expect(response.status == 401, "\(response.text)")
        }
        let locked = try await e2e.login(user.name, user.password, port: hosts.a.port)
        #expect(locked.status == 429 && locked.code == "login_locked", "\(locked.text)")
    }

    @Test func aDatabaseStoppedMidLoadIs503ThenSendsResumeWithNothingDoubled() async throws {
        let e2e = try await E2E.get()
        let hosts = try await blocking { try Hosts(e2e, name: "hosts-outage") }
        defer { hosts.stop() }
        let user = try await hosts.mailUser("hosts-outage")
        let token = try await hosts.token(user.name)
        #expect(try await hosts.send(via: hosts.a, token: token, subject: uniqueMarker("before")).status == 200)

        // 4 senders (2 per host) keep sending while the database stops and
        // starts again under them.
        let cluster = hosts.cluster
        let prefix = uniqueMarker("outage")
        let running = Flag()
        let load = Task {
            try await withThrowingTaskGroup(of: [HTTPResponse].self) { group in
                for sender in 0..<4 {
                    group.addTask {
                        var answers: [HTTPResponse] = []
                        var index = 0
                        while running.isSet || index < 3 {
                            let host = sender % 2 == 0 ? hosts.a : hosts.b
                            answers.append(try await hosts.send(via: host, token: token, subject: "\(prefix)-\(sender)-\(index)"))
                            index += 1
                            try await Task.sleep(for: .milliseconds(20))
                        }
                        return answers
                    }
                }
                return try await group.reduce(into: [HTTPResponse]()) { $0 += $1 }
            }
        }
        running.set()
        try await Task.sleep(for: .milliseconds(300))
        try await blocking { try cluster.stop() }
        // While it is down: /health says so, sends are 503 store_unavailable.
        for host in [hosts.a, hosts.b] {
            let health = try await e2e.http(HTTP.request("GET", "/health"), port: host.port)
            #expect(health.status == 503, "\(health.text)")
        }
        try await Task.sleep(for: .milliseconds(500))
        do {
            try await blocking { try cluster.start() }
        } catch {
            running.clear()
            _ = try? await load.value
            throw error
        }
        try await Task.sleep(for: .milliseconds(500))
        running.clear()
        let answers = try await load.value
        let statuses = answers.map(\.status)
        #expect(answers.allSatisfy { $0.status == 200 || ($0.status == 503 && $0.code == "store_unavailable") },
                "only 200 or 503 store_unavailable: \(statuses)")
        #expect(answers.filter { $0.status == 503 }.allSatisfy { $0.header("Retry-After") != nil })
        #expect(statuses.contains(503), "some sends met the stopped database: \(statuses)")
        // Connections are re-made on later requests: no restart of Mailgate.
        for host in [hosts.a, hosts.b] {
            let marker = uniqueMarker("after")
            let response = try await hosts.send(via: host, token: token, subject: marker)
            #expect(response.status == 200, "\(response.text)")
            _ = try await e2e.capture.waitForMessage(containing: marker)
        }
        // Every 200 was delivered once, and no refused send was delivered.
        try await Task.sleep(for: .milliseconds(500))
        #expect(e2e.capture.messages(containing: prefix).count == statuses.filter { $0 == 200 }.count)
    }

    @Test func serveRefusesOtherKeysThanTheDatabaseWasInitialisedWith() async throws {
        let e2e = try await E2E.get()
        let cluster = try PostgresCluster.shared()
        let uri = try cluster.newDatabase()
        let first = e2e.dir + "/keys-\(UInt32.random(in: 0 ..< .max))", second = first + "-other"
        for dir in [first, second] {
            let result = try runTool(e2e.bin, ["init", "--data-dir", dir, "--store", uri], in: e2e.dir)
            if dir == first {
                #expect(result.ok, "\(result.stderr)")
            } else {
                #expect(!result.ok && result.stderr.contains("other keys"), "\(result.stderr)")
            }
        }
        let serve = try runTool(e2e.bin, ["serve", "--data-dir", second, "--store", uri, "--socket", second + "/s.sock"],
                                in: e2e.dir)
        #expect(!serve.ok && serve.stderr.contains("other keys"), "\(serve.stderr)")
    }
}
