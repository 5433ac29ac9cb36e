import Foundation
import Synchronization
import Testing
@testable import SMTP

/// A token source that hands out `tokens` in order (or throws `failure`),
/// and records what it was asked and told.
final class ScriptedTokenSource: SMTPAccessTokenSource {
    private struct State {
        var tokens: [String]
        var fetches = 0
        var refused: [String] = []
    }

    private let state: Mutex<State>
    private let failure: SMTPAccessTokenError?

    init(_ tokens: [String], failure: SMTPAccessTokenError? = nil) {
        state = Mutex(State(tokens: tokens))
        self.failure = failure
    }

    func accessToken(deadline: ContinuousClock.Instant) throws(SMTPAccessTokenError) -> String {
        if let failure {
            state.withLock { $0.fetches += 1 }
            throw failure
        }
        return state.withLock { s in
            s.fetches += 1
            return s.tokens.isEmpty ? "exhausted" : s.tokens.removeFirst()
        }
    }

    func refused(_ token: String) {
        state.withLock { $0.refused.append(token) }
    }

    var fetches: Int { state.withLock { $0.fetches } }
    var refusedTokens: [String] { state.withLock { $0.refused } }
}

/// Issue 9: the OAuth2 login (XOAUTH2, OAUTHBEARER), against scripted servers.
@Suite("SMTP bearer login", .timeLimit(.minutes(1)))
struct BearerLoginTests {
    static let mailbox = "mailer@example.org"

    private func config(_ port: Int, _ source: ScriptedTokenSource, mailbox: String = mailbox) -> SMTPServerConfig {
        SMTPServerConfig(host: "localhost", port: port, security: .none,
                         login: .bearer(username: mailbox, tokens: SMTPAccessTokens(source)), commandTimeout: .seconds(3))
    }

    /// Base64 by Foundation, not by the code under test.
    private func base64(_ text: String) -> String { Data(text.utf8).base64EncodedString() }

    private func envelope() throws -> SMTPEnvelope {
        try SMTPEnvelope(sender: "mailer@example.org", recipients: ["rcpt@example.com"])
    }

    /// The steps of one session up to AUTH, the server offering `mechanisms`.
    private func greeting(offering mechanisms: String) -> [ScriptedServer.Step] {
        [.send("220 scripted ESMTP\r\n"), .expect("EHLO localhost"), .send("250-scripted\r\n250 AUTH \(mechanisms)\r\n")]
    }

    /// The steps of one accepted message, then QUIT.
    private let delivery: [ScriptedServer.Step] = [
        .expect("MAIL FROM:<mailer@example.org>"), .send("250 ok\r\n"),
        .expect("RCPT TO:<rcpt@example.com>"), .send("250 ok\r\n"),
        .expect("DATA"), .send("354 go\r\n"),
        .expect("Subject: test"), .expect("\r\n"), .expect("body"), .expect(".\r\n"), .send("250 queued\r\n"),
        .expect("QUIT"), .send("221 bye\r\n"),
    ]

    @Test func xoauth2IsPreferredAndItsInitialResponseIsExact() throws {
        let server = try ScriptedServer(greeting(offering: "PLAIN OAUTHBEARER XOAUTH2") + [
            .expect("AUTH XOAUTH2 "), .send("235 2.7.0 Accepted\r\n"),
            .expect("QUIT"), .send("221 bye\r\n"),
        ])
        defer { server.stop() }
        let source = ScriptedTokenSource(["ya29.token-1"])
        let c = try SMTPConnection.open(config(server.port, source), deadline: soon())
        c.quit()
        let expected = "AUTH XOAUTH2 " + base64("user=mailer@example.org\u{1}auth=Bearer ya29.token-1\u{1}\u{1}") + "\r\n"
        #expect(server.clientLinesAfterHangUp() == ["EHLO localhost\r\n", expected, "QUIT\r\n"])
        #expect(source.fetches == 1 && source.refusedTokens.isEmpty)
    }

    @Test func oauthBearerWhenOnlyItIsOffered() throws {
        let server = try ScriptedServer(greeting(offering: "OAUTHBEARER PLAIN") + [
            .expect("AUTH OAUTHBEARER "), .send("235 2.7.0 Accepted\r\n"),
            .expect("QUIT"), .send("221 bye\r\n"),
        ])
        defer { server.stop() }
        let source = ScriptedTokenSource(["token-1"])
        let c = try SMTPConnection.open(config(server.port, source), deadline: soon())
        c.quit()
        // RFC 7628 section 3.1: GS2 header with the authzid, then host, port and auth.
        let message = "n,a=mailer@example.org,\u{1}host=localhost\u{1}port=\(server.port)\u{1}auth=Bearer token-1\u{1}\u{1}"
        #expect(server.clientLinesAfterHangUp() == ["EHLO localhost\r\n", "AUTH OAUTHBEARER \(base64(message))\r\n", "QUIT\r\n"])
    }

    @Test func oauthBearerAuthzidEscapesCommaAndEquals() {
        let response = SMTPWire.authOAuthBearer(username: "a=b,c@example.org", token: "t", host: "h", port: 25)
        let decoded = Data(base64Encoded: response).map { String(decoding: $0, as: UTF8.self) }
        #expect(decoded == "n,a=a=3Db=2Cc@example.org,\u{1}host=h\u{1}port=25\u{1}auth=Bearer t\u{1}\u{1}")
    }

    /// Gmail: a 334 error challenge, the client's empty answer, a final 535,
    /// and the connection closed. The token source is told, a fresh token
    /// is fetched, and a new connection logs in with it and sends.
    @Test func aRefusedTokenIsRefreshedOnceOnANewConnection() throws {
        let challenge = base64(#"{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}"#)
        let server = try ScriptedServer(greeting(offering: "XOAUTH2") + [
            .expect("AUTH XOAUTH2 "), .send("334 \(challenge)\r\n"),
            .expect("\r\n"),
            .send("535-5.7.8 Username and Password not accepted.\r\n535 5.7.8 BadCredentials\r\n"),
            .accept,
        ] + greeting(offering: "XOAUTH2") + [
            .expect("AUTH XOAUTH2 "), .send("235 2.7.0 Accepted\r\n"),
        ] + delivery)
        defer { server.stop() }
        let source = ScriptedTokenSource(["stale-token-1", "fresh-token-2"])
        let pool = SMTPConnectionPool(config: config(server.port, source))
        let reply = try pool.send(try envelope(), message: Array("Subject: test\r\n\r\nbody\r\n".utf8), deadline: soon())
        #expect(reply.code == 250)
        pool.shutdown()
        #expect(source.refusedTokens == ["stale-token-1"])
        #expect(source.fetches == 2)
        let lines = server.clientLinesAfterHangUp()
        #expect(Array(lines.prefix(5)) == [
            "EHLO localhost\r\n",
            "AUTH XOAUTH2 " + base64("user=mailer@example.org\u{1}auth=Bearer stale-token-1\u{1}\u{1}") + "\r\n",
            "\r\n",
            "## new connection\n",
            "EHLO localhost\r\n",
        ])
        #expect(lines.count > 5 && lines[5] == "AUTH XOAUTH2 " + base64("user=mailer@example.org\u{1}auth=Bearer fresh-token-2\u{1}\u{1}") + "\r\n")
        #expect(lines.last == "QUIT\r\n")
    }

    /// Refused again after the refresh (here Exchange's plain 535 first,
    /// then an OAUTHBEARER error challenge, answered with ^A): the typed
    /// error, each token reported once, and nothing of the message sent.
    @Test func aTokenRefusedTwiceIsTheTypedErrorAndNothingIsSent() throws {
        let server = try ScriptedServer(greeting(offering: "OAUTHBEARER") + [
            .expect("AUTH OAUTHBEARER "), .send("535 5.7.3 Authentication unsuccessful\r\n"),
            .accept,
        ] + greeting(offering: "OAUTHBEARER") + [
            .expect("AUTH OAUTHBEARER "), .send("334 \(base64(#"{"status":"invalid_token"}"#))\r\n"),
            .expect("AQ==\r\n"), .send("535 5.7.8 token rejected\r\n"),
        ])
        defer { server.stop() }
        let source = ScriptedTokenSource(["secret-token-one", "secret-token-two"])
        let config = config(server.port, source)
        let error = #expect(throws: SMTPError.self) {
            try SMTPConnectionPool(config: config).send(try envelope(), message: sampleMessage, deadline: soon())
        }
        #expect(error?.stage == .auth)
        if case .accessTokenRefused(let reply)? = error?.kind {
            #expect(reply.code == 535 && reply.text.contains("token rejected"))
        } else {
            Issue.record("expected accessTokenRefused, got \(String(describing: error))")
        }
        #expect(error?.description.contains("refused the OAuth2 access token even after a refresh") == true)
        #expect(source.refusedTokens == ["secret-token-one", "secret-token-two"])
        let lines = server.clientLinesAfterHangUp()
        #expect(!lines.contains { $0.hasPrefix("MAIL") || $0.hasPrefix("DATA") }, "\(lines.count) lines")
        #expect(lines.filter { $0.hasPrefix("AUTH OAUTHBEARER ") }.count == 2)
        // No token in any text made of the error or the config.
        var dumped = ""
        dump(config, to: &dumped)
        let texts = [String(describing: error), String(reflecting: error), config.description, String(reflecting: config), dumped]
        for text in texts {
            for token in ["secret-token-one", "secret-token-two"] {
                let leaked = text.contains(token)
                #expect(!leaked)
            }
        }
        #expect(config.description.contains("mailer@example.org"))
    }

    /// A transient refusal is not a refused token: no refresh, no retry.
    @Test func aTransientAuthFailureIsNotRetried() throws {
        let server = try ScriptedServer(greeting(offering: "XOAUTH2") + [
            .expect("AUTH XOAUTH2 "), .send("454 4.7.0 Temporary authentication failure\r\n"),
        ])
        defer { server.stop() }
        let source = ScriptedTokenSource(["token-1", "token-2"])
        let error = #expect(throws: SMTPError.self) { try SMTPConnection.open(config(server.port, source), deadline: soon()) }
        if case .reply(let reply)? = error?.kind { #expect(reply.code == 454) } else { Issue.record("expected 454") }
        #expect(source.fetches == 1 && source.refusedTokens.isEmpty)
    }

    @Test(arguments: [
        SMTPAccessTokenError.Kind.reauthorize, .unavailable(retryAfterSeconds: 30), .timedOut, .misconfigured,
    ])
    func aTokenSourceFailureSurfacesAndNothingIsSent(kind: SMTPAccessTokenError.Kind) throws {
        let server = try ScriptedServer(greeting(offering: "XOAUTH2"))
        defer { server.stop() }
        let source = ScriptedTokenSource([], failure: SMTPAccessTokenError(kind, "the grant is gone: run authorize"))
        let error = #expect(throws: SMTPError.self) { try SMTPConnection.open(config(server.port, source), deadline: soon()) }
        #expect(error?.stage == .auth)
        if case .accessToken(let failure)? = error?.kind {
            #expect(failure.kind == kind)
        } else {
            Issue.record("expected accessToken, got \(String(describing: error))")
        }
        #expect(error?.description.contains("the grant is gone: run authorize") == true)
        #expect(error?.isSafeToRetry == true)
        #expect(source.refusedTokens.isEmpty)
        #expect(server.clientLinesAfterHangUp() == ["EHLO localhost\r\n"], "no AUTH without a token")
    }

    @Test func aServerWithoutAnOAuth2MechanismIsAuthUnavailable() throws {
        let server = try ScriptedServer(greeting(offering: "PLAIN LOGIN"))
        defer { server.stop() }
        let source = ScriptedTokenSource(["token-1"])
        let error = #expect(throws: SMTPError.self) { try SMTPConnection.open(config(server.port, source), deadline: soon()) }
        if case .authUnavailable(let why)? = error?.kind {
            #expect(why.contains("XOAUTH2 or OAUTHBEARER") && why.contains("server offers: LOGIN PLAIN"), "\(why)")
        } else {
            Issue.record("expected authUnavailable, got \(String(describing: error))")
        }
        #expect(source.fetches == 0, "no token fetched for a server that cannot take one")
        #expect(server.clientLinesAfterHangUp() == ["EHLO localhost\r\n"])
    }

    @Test func aTokenThatCannotBeFramedIsRefusedBeforeSending() throws {
        let server = try ScriptedServer(greeting(offering: "XOAUTH2"))
        defer { server.stop() }
        let source = ScriptedTokenSource(["bad\u{1}token\r\nMAIL FROM:<x@y>"])
        let error = #expect(throws: SMTPError.self) { try SMTPConnection.open(config(server.port, source), deadline: soon()) }
        if case .protocolViolation? = error?.kind {} else { Issue.record("expected protocolViolation, got \(String(describing: error))") }
        #expect(error?.description.contains("token") == true && error?.description.contains("MAIL FROM") == false)
        #expect(source.refusedTokens.count == 1, "a junk token is dropped from the cache")
        #expect(server.clientLinesAfterHangUp() == ["EHLO localhost\r\n"])
    }

    @Test func authCommandDescriptionsHideTheToken() {
        let response = SMTPWire.authXOAuth2(username: Self.mailbox, token: "ya29.secret")
        let auth = SMTPCommand.auth(.xoauth2, initialResponse: response)
        #expect(auth.description == "AUTH XOAUTH2 <redacted>")
        #expect(auth.line.hasSuffix(response))
        #expect(SMTPCommand.authResponse("").description == "<redacted>")
        #expect(AuthMechanism(keyword: "oauthbearer") == .oauthBearer && AuthMechanism.oauthBearer.keyword == "OAUTHBEARER")
    }
}
