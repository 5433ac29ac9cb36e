import Foundation
import MailgateTesting
import Testing

/// What oauth_smtp_probe.py reports.
struct ProbeResult {
    let mechanisms: [String]
    let authCode: Int
    let challenge: String?
    let sent: Bool
}

/// The test kit's XOAUTH2/OAUTHBEARER SMTP server (for the end-to-end tests),
/// driven by Python's smtplib with tokens from the test provider.
@Suite("Test SMTP server with XOAUTH2 and OAUTHBEARER", .serialized, .timeLimit(.minutes(2)))
struct OAuthSMTPServerTests {
    func probe(_ server: TestOAuthSMTPServer, mailbox: String, token: String, mechanism: String = "XOAUTH2") throws -> ProbeResult {
        let dir = try TempDir(prefix: "mailgate-oauth-probe")
        defer { dir.remove() }
        let result = try runTool(PythonHelper.interpreter, [
            PythonHelper.path("oauth_smtp_probe.py"), "--port", String(server.port), "--ca-file", try TestCA.certificate().cert,
            "--mailbox", mailbox, "--mechanism", mechanism,
        ], in: dir.path, stdin: Array((token + "\n").utf8), timeout: 30)
        guard result.ok, let json = (try? JSONSerialization.jsonObject(with: Data(result.stdout))) as? [String: Any] else {
            throw HarnessError("probe failed: \(result.stdoutText) \(result.stderr) \(server.server.stderrText)")
        }
        return ProbeResult(mechanisms: json["mechanisms"] as? [String] ?? [], authCode: json["auth_code"] as? Int ?? -1,
                           challenge: json["challenge"] as? String, sent: json["sent"] as? Bool ?? false)
    }

    @Test func tokensFromTheProviderLogInAndOthersDoNot() throws {
        let certificate = try TestCA.certificate()
        let provider = try TestOAuthProvider(certificate: certificate)
        defer { provider.stop() }
        let server = try TestOAuthSMTPServer(certificate: certificate, tokenSecret: provider.tokenSecret, mailboxes: ["alice@example.com"])
        defer { server.stop() }

        let good = try probe(server, mailbox: "alice@example.com", token: try provider.mintAccessToken(lifetime: 600))
        #expect(good.mechanisms.contains("XOAUTH2") && good.mechanisms.contains("OAUTHBEARER"))
        #expect(!good.mechanisms.contains("PLAIN"))
        #expect(good.authCode == 235 && good.sent)
        let stored = try Data(contentsOf: URL(fileURLWithPath: server.messagesDirectory + "/1.json"))
        let envelope = try #require(try JSONSerialization.jsonObject(with: stored) as? [String: Any])
        #expect(envelope["auth_mailbox"] as? String == "alice@example.com")
        #expect(envelope["tls"] as? Bool == true)

        let expired = try probe(server, mailbox: "alice@example.com", token: try provider.mintAccessToken(lifetime: -10))
        #expect(expired.authCode == 535 && !expired.sent)
        #expect(expired.challenge?.contains("\"status\": \"401\"") == true)

        let wrongMailbox = try probe(server, mailbox: "mallory@example.com", token: try provider.mintAccessToken(lifetime: 600))
        #expect(wrongMailbox.authCode == 535)

        let forged = try probe(server, mailbox: "alice@example.com", token: "ya29.9999999999.abc.0000")
        #expect(forged.authCode == 535)

        try server.refuseNext(1)
        let valid = try provider.mintAccessToken(lifetime: 600)
        #expect(try probe(server, mailbox: "alice@example.com", token: valid).authCode == 535)
        #expect(try probe(server, mailbox: "alice@example.com", token: valid).authCode == 235)
        #expect(try server.counters() == ["auth_ok": 2, "auth_failed": 4, "messages": 2])
    }

    @Test func oauthBearerAlone() throws {
        let certificate = try TestCA.certificate()
        let provider = try TestOAuthProvider(certificate: certificate)
        defer { provider.stop() }
        let server = try TestOAuthSMTPServer(certificate: certificate, tokenSecret: provider.tokenSecret,
                                             mailboxes: ["bob@example.com"], onlyOAuthBearer: true)
        defer { server.stop() }
        let token = try provider.mintAccessToken(lifetime: 600)
        let ok = try probe(server, mailbox: "bob@example.com", token: token, mechanism: "OAUTHBEARER")
        #expect(ok.mechanisms == ["OAUTHBEARER"])
        #expect(ok.authCode == 235 && ok.sent)
        let bad = try probe(server, mailbox: "bob@example.com", token: try provider.mintAccessToken(lifetime: -1), mechanism: "OAUTHBEARER")
        #expect(bad.authCode == 535)
        #expect(bad.challenge?.contains("invalid_token") == true)
    }
}
