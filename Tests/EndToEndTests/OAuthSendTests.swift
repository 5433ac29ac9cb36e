import Foundation
import MailgateTesting
import Testing

/// Issue 9 end to end: sends through nginx to `mailgate serve` for users
/// whose integration logs in with OAuth2 (XOAUTH2), against the test
/// provider (oauth_provider.py, HTTPS with the test CA) and an SMTP server
/// that accepts only that provider's unexpired tokens (oauth_smtp_server.py).
///
/// The instance here keeps no idle SMTP connections (`--pool-size 0`), so
/// every send opens a connection and asks the token cache: that is what
/// makes refreshes countable at the provider. (Pooled connections staying
/// logged in is the pool's business, tested in SMTPTests.)
@Suite(.timeLimit(.minutes(5)))
struct OAuthSendTests {
    static let mailbox = "mailer@example.org"

    /// One test's provider, SMTP server and user, on `instance`.
    struct Setup {
        let e2e: E2E
        let provider: TestOAuthProvider
        let smtp: TestOAuthSMTPServer
        let user: TestUser
        let token: String
        let refreshToken: String

        func stop() {
            provider.stop()
            smtp.stop()
        }

        func refreshes() throws -> Int { try provider.counters()["refresh"] ?? -1 }
        func messages() throws -> Int { try smtp.counters()["messages"] ?? -1 }

        func send(_ instance: OAuthInstance, _ subject: String = "OAuth2 send") async throws -> HTTPResponse {
            try await e2e.send(token: token, to: "rcpt@example.com", subject: subject, message: "Hello over XOAUTH2",
                               port: instance.port)
        }
    }

    /// A user with an OAuth2 integration (custom provider: the test one) and
    /// a refresh token stored with `integration authorize --refresh-token-stdin`.
    static func setUp(_ e2e: E2E, lifetime: Int = 3600, rotation: Bool = false, authorize: Bool = true) async throws -> Setup {
        let provider = try TestOAuthProvider(certificate: e2e.localhostCert, lifetime: lifetime, rotation: rotation)
        let smtp = try TestOAuthSMTPServer(certificate: e2e.localhostCert, tokenSecret: provider.tokenSecret,
                                           mailboxes: [mailbox])
        let user = try await e2e.makeUser("oauth")
        try await e2e.cli(["integration", "set", user.name, "--auth", "oauth2", "--provider", "custom",
                           "--client-id", provider.clientID, "--token-url", provider.tokenURL,
                           "--authorization-url", provider.authorizationURL, "--scope", "https://mail.google.com/",
                           "--host", "127.0.0.1", "--port", String(smtp.port), "--security", "starttls",
                           "--username", mailbox], stdin: provider.clientSecret ?? "")
        var refreshToken = ""
        if authorize {
            refreshToken = try provider.seedRefreshToken()
            let stored = try await e2e.cli(["integration", "authorize", user.name, "--refresh-token-stdin"], stdin: refreshToken)
            #expect(stored.contains("stored the refresh token"))
        }
        return Setup(e2e: e2e, provider: provider, smtp: smtp, user: user, token: try await e2e.token(user.name),
                     refreshToken: refreshToken)
    }

    @Test func sendsWithAnAccessTokenFromTheRefreshToken() async throws {
        let e2e = try await E2E.get()
        let instance = try await OAuthInstance.shared()
        let setup = try await Self.setUp(e2e)
        defer { setup.stop() }
        let response = try await setup.send(instance)
        #expect(response.status == 200, "\(response.text)")
        #expect(try setup.messages() == 1)
        #expect(try setup.refreshes() == 1)
        let envelope = try #require(try JSONSerialization.jsonObject(
            with: Data(contentsOf: URL(fileURLWithPath: setup.smtp.messagesDirectory + "/1.json"))) as? [String: Any])
        #expect(envelope["auth_mailbox"] as? String == Self.mailbox)
        #expect(envelope["tls"] as? Bool == true)
        // A second send uses the cached access token: no refresh.
        #expect(try await setup.send(instance).status == 200)
        #expect(try setup.refreshes() == 1)
    }

    @Test func anExpiredTokenIsRefreshedOnceThenTheSendGoesThrough() async throws {
        let e2e = try await E2E.get()
        let instance = try await OAuthInstance.shared()
        let setup = try await Self.setUp(e2e, lifetime: 2)
        defer { setup.stop() }
        #expect(try await setup.send(instance).status == 200)
        #expect(try setup.refreshes() == 1)
        try setup.provider.set(["lifetime": "3600"])
        try await Task.sleep(for: .milliseconds(2500))  // the 2 s token has expired
        let response = try await setup.send(instance)
        #expect(response.status == 200, "\(response.text)")
        #expect(try setup.refreshes() == 2)
        #expect(try setup.messages() == 2)
    }

    @Test func thirtyTwoConcurrentSendsWithAnExpiredTokenMakeOneRefresh() async throws {
        let e2e = try await E2E.get()
        let instance = try await OAuthInstance.shared()
        let setup = try await Self.setUp(e2e, lifetime: 2)
        defer { setup.stop() }
        #expect(try await setup.send(instance).status == 200)
        try setup.provider.set(["lifetime": "3600", "mode": "slow", "slow": "1"])  // waiters pile up behind one refresh
        try await Task.sleep(for: .milliseconds(2500))
        let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
            for index in 0..<32 {
                group.addTask { try await setup.send(instance, "burst \(index)").status }
            }
            return try await group.reduce(into: [Int]()) { $0.append($1) }
        }
        #expect(statuses.allSatisfy { $0 == 200 }, "\(statuses)")
        #expect(try setup.refreshes() == 2, "the first send's refresh, then exactly one for the 32")
        #expect(try setup.messages() == 33)
    }

    @Test func aRotatedRefreshTokenIsStoredAndSurvivesARestart() async throws {
        let e2e = try await E2E.get()
        let setup = try await Self.setUp(e2e, rotation: true)
        defer { setup.stop() }
        let first = try await OAuthInstance.start(e2e, name: "oauth-rotation-1")
        let response = try await setup.send(first)
        first.stop()
        #expect(response.status == 200, "\(response.text)")
        // The seeded refresh token is now dead at the provider: a fresh
        // process can only send with the rotated one, from the store.
        let second = try await OAuthInstance.start(e2e, name: "oauth-rotation-2")
        defer { second.stop() }
        let again = try await setup.send(second)
        #expect(again.status == 200, "\(again.text)")
        #expect(try setup.refreshes() == 2)
        #expect(try setup.messages() == 2)
        let database = try Self.databaseBytes(e2e)
        #expect(database.range(of: Data(setup.refreshToken.utf8)) == nil)
    }

    @Test func aRevokedGrantIs502AskingToAuthoriseAgain() async throws {
        let e2e = try await E2E.get()
        let instance = try await OAuthInstance.shared()
        let setup = try await Self.setUp(e2e)
        defer { setup.stop() }
        try setup.provider.revokeAll()
        let response = try await setup.send(instance)
        #expect(response.status == 502, "\(response.text)")
        #expect(response.code == "oauth_reauthorize")
        #expect(response.detail?.contains("mailgate integration authorize \(setup.user.name)") == true, "\(response.text)")
        #expect(!response.text.contains(setup.refreshToken))
        #expect(try setup.messages() == 0)
    }

    @Test func noRefreshTokenStoredIs502AskingToAuthorise() async throws {
        let e2e = try await E2E.get()
        let instance = try await OAuthInstance.shared()
        let setup = try await Self.setUp(e2e, authorize: false)
        defer { setup.stop() }
        let response = try await setup.send(instance)
        #expect(response.status == 502 && response.code == "oauth_reauthorize", "\(response.text)")
        #expect(try setup.refreshes() == 0)
    }

    @Test func aFailingOrUnreachableProviderIs503WithRetryAfter() async throws {
        let e2e = try await E2E.get()
        let instance = try await OAuthInstance.shared()
        let setup = try await Self.setUp(e2e)
        defer { setup.stop() }
        try setup.provider.set(["mode": "error_500", "retry_after": "7"])
        let failing = try await setup.send(instance)
        #expect(failing.status == 503 && failing.code == "oauth_unavailable", "\(failing.text)")
        #expect(failing.header("Retry-After") == "7")
        setup.provider.stop()
        let down = try await setup.send(instance)
        #expect(down.status == 503 && down.code == "oauth_unavailable", "\(down.text)")
        #expect(Int(down.header("Retry-After") ?? "") ?? 0 >= 1)
        #expect(try setup.messages() == 0)
    }

    @Test func aTokenTheSMTPServerRefusesIsRefreshedOnceThenSent() async throws {
        let e2e = try await E2E.get()
        let instance = try await OAuthInstance.shared()
        let setup = try await Self.setUp(e2e)
        defer { setup.stop() }
        try setup.smtp.refuseNext(1)
        let response = try await setup.send(instance)
        #expect(response.status == 200, "\(response.text)")
        #expect(try setup.refreshes() == 2, "the first token, then one refresh after the refusal")
        let counters = try setup.smtp.counters()
        #expect(counters["auth_failed"] == 1 && counters["messages"] == 1, "\(counters)")
        // Refused again and again: 502 after one refresh, nothing sent.
        try setup.smtp.refuseNext(2)  // the cached token, then the refreshed one
        let refused = try await setup.send(instance)
        #expect(refused.status == 502 && refused.code == "smtp_auth_failed", "\(refused.text)")
        #expect(try setup.messages() == 1)
        #expect(try setup.refreshes() == 3)
    }

    @Test func integrationAuthorizeFollowsTheBrowserFlowAndRefusesAWrongState() async throws {
        let e2e = try await E2E.get()
        let instance = try await OAuthInstance.shared()
        let setup = try await Self.setUp(e2e, authorize: false)
        defer { setup.stop() }

        let (status, output) = try await Self.authorizeLikeABrowser(e2e, setup.user.name)
        #expect(status == .exited(0), "\(output)")
        #expect(output.contains("authorised: stored the refresh token"), "\(output)")
        #expect(try setup.provider.counters()["code"] == 1)
        let response = try await setup.send(instance)
        #expect(response.status == 200, "\(response.text)")

        try setup.provider.set(["wrong_state": "1"])
        let (refusedStatus, refusedOutput) = try await Self.authorizeLikeABrowser(e2e, setup.user.name)
        #expect(refusedStatus != .exited(0))
        #expect(refusedOutput.contains("wrong state"), "\(refusedOutput)")
        #expect(try setup.provider.counters()["code"] == 1, "the code of a wrong state is never exchanged")
    }

    @Test func secretsStayOutOfLogsShowErrorsAndTheDatabase() async throws {
        let e2e = try await E2E.get()
        let instance = try await OAuthInstance.shared()
        let setup = try await Self.setUp(e2e)
        defer { setup.stop() }
        #expect(try await setup.send(instance).status == 200)
        try setup.provider.set(["mode": "invalid_grant"])
        try setup.smtp.refuseNext(1)  // the cached token refused: a refresh, refused
        let failed = try await setup.send(instance)
        #expect(failed.status == 502, "\(failed.text)")
        let show = try await e2e.cli(["integration", "show", setup.user.name])
        #expect(show.contains("refresh token") && show.contains("stored encrypted"), "\(show)")
        let clientSecret = try #require(setup.provider.clientSecret)
        let database = try Self.databaseBytes(e2e)
        let log = (try? String(contentsOfFile: instance.log, encoding: .utf8)) ?? ""
        for secret in [clientSecret, setup.refreshToken] {
            #expect(!show.contains(secret))
            #expect(!failed.text.contains(secret))
            #expect(!log.contains(secret))
            #expect(database.range(of: Data(secret.utf8)) == nil)
        }
        // Access tokens (ya29.<expiry>.<random>.<mac>) never reach the log.
        #expect(!log.contains("ya29."))
    }

    /// Runs `integration authorize USER` and plays the browser: reads the
    /// printed URL, GETs it at the (auto-approving) provider without
    /// following the redirect, then GETs the redirect's loopback address.
    static func authorizeLikeABrowser(_ e2e: E2E, _ user: String) async throws -> (MailgateTesting.ExitStatus, String) {
        let out = e2e.dir + "/authorize-\(user)-\(UInt32.random(in: 0 ..< .max))"
        let child = try Child.spawn(e2e.bin, ["integration", "authorize", user, "--data-dir", e2e.dataDir,
                                              "--ca-file", e2e.caBundle, "--timeout", "30"],
                                    stdout: out + ".out", stderr: out + ".err", name: "integration authorize")
        defer { child.stop() }
        return try await blocking {
            func printedURL() -> String? {
                child.stdoutText.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
                    .first { $0.hasPrefix("https://") }
            }
            try waitUntil("the authorisation URL", child: child) { printedURL() != nil }
            let location = try curl(["-s", "-o", "/dev/null", "-w", "%{redirect_url}", "--cacert", e2e.caBundle,
                                     printedURL() ?? ""])
            guard location.hasPrefix("http://127.0.0.1:") else { throw HarnessError("no redirect from the provider: \(location)") }
            _ = try curl(["-s", "-o", "/dev/null", location])
            let status = child.wait(timeout: 30) ?? .exited(-1)
            return (status, child.stdoutText + child.stderrText)
        }
    }

    /// The database with its write-ahead log (a secret may sit in either).
    static func databaseBytes(_ e2e: E2E) throws -> Data {
        var bytes = Data()
        for suffix in ["", "-wal"] {
            let path = e2e.dataDir + "/mailgate.sqlite" + suffix
            if FileManager.default.fileExists(atPath: path) { bytes.append(try Data(contentsOf: URL(fileURLWithPath: path))) }
        }
        return bytes
    }

    private static func curl(_ arguments: [String]) throws -> String {
        let result = try runTool("/usr/bin/curl", ["--max-time", "10"] + arguments, in: "/tmp")
        return result.stdoutText
    }
}

/// `mailgate serve` (on the main data directory, trusting the test CA)
/// behind its own nginx, for the OAuth2 tests.
final class OAuthInstance: Sendable {
    let mailgate: Child
    let nginx: Child
    let port: Int
    let log: String

    private init(mailgate: Child, nginx: Child, port: Int, log: String) {
        self.mailgate = mailgate
        self.nginx = nginx
        self.port = port
        self.log = log
    }

    private static let sharedInstance: Result<OAuthInstance, HarnessError> = {
        do {
            return .success(try start(E2E.sharedResult.get(), name: "oauth-shared"))
        } catch let error as HarnessError {
            return .failure(error)
        } catch {
            return .failure(HarnessError("\(error)"))
        }
    }()

    /// One instance for the suite's tests that need no restart (32 workers:
    /// the burst test's 32 sends at once).
    static func shared() async throws -> OAuthInstance {
        try await blocking { try sharedInstance.get() }
    }

    static func start(_ e2e: E2E, name: String) async throws -> OAuthInstance {
        try await blocking { try start(e2e, name: name) }
    }

    private static func start(_ e2e: E2E, name: String) throws -> OAuthInstance {
        let socket = e2e.dir + "/\(name).sock", log = e2e.dir + "/\(name).log"
        let mailgate = try E2E.startMailgate(bin: e2e.bin, dataDir: e2e.dataDir, socket: socket, log: log,
                                             extra: ["--ca-file", e2e.caBundle, "--pool-size", "0", "--threads", "40",
                                                     "--max-in-flight-per-user", "40"], in: e2e.dir)
        do {
            let (nginx, port) = try E2E.startNginx(in: e2e.dir, name: "nginx-\(name)", socket: socket, rate: "10000r/s")
            return OAuthInstance(mailgate: mailgate, nginx: nginx, port: port, log: log)
        } catch {
            mailgate.stop()
            throw error
        }
    }

    func stop() {
        nginx.stop()
        mailgate.stop()
    }
}
