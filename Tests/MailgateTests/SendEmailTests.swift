import Crypto
import FastCGI
import Foundation
@testable import Mailgate
import SMTP
import Testing
import Store

@Suite struct SendEmailTests {
    @Test func sendsAndAnswersTheContractStatus() throws {
        let fixture = try AppFixture()
        let response = try fixture.send(#"{"to": "Bob <bob@example.org>", "subject": "Hi", "message": "Hello\nBob"}"#)
        #expect(response.status == 200)
        let body = try #require(response.json as? [String: Any])
        #expect(body["status"] as? String == "Email sent successfully")
        let sent = try #require(fixture.transport.sent.first)
        #expect(sent.owner == "alice")
        #expect(sent.envelope.sender?.description == "alice@example.com")
        #expect(sent.envelope.recipients.map(\.description) == ["bob@example.org"])
        #expect(sent.server.host == "smtp.example.com" && sent.server.security == .starttls)
        #expect(sent.server.login == .password(username: "alice@example.com", password: "smtp-secret"))
        let text = String(decoding: sent.message, as: UTF8.self)
        #expect(text.contains("\r\nSubject: Hi\r\n"))
        #expect(text.contains("From: Alice Example <alice@example.com>\r\n"))
        #expect(text.contains("Message-ID: \(try #require(body["message_id"] as? String))\r\n"))
        #expect(text.hasSuffix("Hello\r\nBob\r\n"))
    }

    /// Issue 10, item 6: a recipient outside the user's policy is a 403 and
    /// nothing is sent; one inside it is sent as usual.
    @Test func recipientOutsideThePolicyIs403AndNothingIsSent() throws {
        let fixture = try AppFixture()
        try fixture.store.setRecipientPolicy(RecipientPolicy(parsing: ["owner@example.com", "*@*.example.org"]),
                                             for: "alice")
        for to in ["bob@example.com", "Owner@example.com", "x@example.org", "x@[192.0.2.1]"] {
            let refused = try fixture.send(#"{"to": "\#(to)", "subject": "s", "message": "m"}"#)
            #expect(refused.status == 403, "\(to)")
            #expect(refused.detail as? String == "Recipient not allowed for this user: \(to)")
            #expect(refused.code == "recipient_not_allowed")
        }
        #expect(fixture.transport.sent.isEmpty)
        for to in ["Site Owner <owner@EXAMPLE.com>", "x@team.example.org"] {
            #expect(try fixture.send(#"{"to": "\#(to)", "subject": "s", "message": "m"}"#).status == 200, "\(to)")
        }
        #expect(fixture.transport.sent.map { $0.envelope.recipients.map(\.description) }
                == [["owner@EXAMPLE.com"], ["x@team.example.org"]])
    }

    /// Issue 10, item 7: a named token works until revoked, alone; its use
    /// is recorded once a day.
    @Test func revokedNamedTokenIs401WhileTheOthersWork() throws {
        let fixture = try AppFixture()
        let issued = fixture.clock.now
        let now = Date(timeIntervalSince1970: TimeInterval(issued))
        for id in ["tok-a", "tok-b"] {
            _ = try fixture.store.addNamedToken(id: id, name: id, for: "alice", createdAt: now,
                                                expiresAt: now.addingTimeInterval(600))
        }
        func token(_ id: String, for user: String = "alice") throws -> String {
            try fixture.signer.sign(TokenClaims(subject: user, issuedAt: issued, expiresAt: issued + 600, tokenID: id))
        }
        let body = #"{"to": "bob@example.org", "subject": "s", "message": "m"}"#
        #expect(try fixture.send(body, token: token("tok-a")).status == 200)
        #expect(try fixture.store.namedToken(id: "tok-a")?.lastUsedDay != nil, "the use is recorded")
        #expect(try fixture.store.namedToken(id: "tok-b")?.lastUsedDay == nil)

        try fixture.store.revokeNamedToken(id: "tok-a")
        let revoked = try fixture.send(body, token: token("tok-a"))
        #expect(revoked.status == 401)
        #expect(revoked.detail as? String == "Could not validate credentials")
        #expect(revoked.code == "invalid_token")
        #expect(try fixture.send(body, token: token("tok-b")).status == 200, "the user's other named token")
        #expect(try fixture.send(body, token: fixture.token()).status == 200, "and tokens without an id")
        #expect(try fixture.send(body, token: token("never-issued")).status == 401)
        _ = try fixture.store.addUser("mallory", passwordHash: "h")
        #expect(try fixture.send(body, token: token("tok-b", for: "mallory")).status == 401, "another user's token id")
    }

    @Test func missingOrMalformedAuthorizationIsNotAuthenticated() throws {
        let fixture = try AppFixture()
        for header in [nil, "Basic abc", "Bearer", "Bearer    "] as [String?] {
            let response = fixture.post("/smtp/send-email", body: "{}", authorization: header)
            #expect(response.status == 401)
            #expect(response.header("WWW-Authenticate") == "Bearer")
            #expect(response.detail as? String == "Not authenticated")
            #expect(response.code == "not_authenticated")
        }
    }

    @Test func badExpiredRevokedOrDisabledTokensAreRefused() throws {
        let fixture = try AppFixture()
        let valid = try fixture.token()
        let body = #"{"to": "bob@example.org", "subject": "s", "message": "m"}"#
        #expect(try fixture.send(body, token: valid).status == 200)

        let refused = [
            "garbage",
            try fixture.token(for: "nobody"),
            try fixture.token(version: 7),
            String(valid.dropLast(2)) + "AA",
        ]
        for token in refused {
            let response = try fixture.send(body, token: token)
            #expect(response.status == 401)
            #expect(response.detail as? String == "Could not validate credentials")
            #expect(response.code == "invalid_token")
            #expect(response.header("WWW-Authenticate") == "Bearer")
        }

        fixture.clock.advance(600 + 31)
        let expired = try fixture.send(body, token: valid)
        #expect(expired.status == 401, "expired beyond the leeway")
        #expect(expired.code == "invalid_token")

        let fresh = try fixture.token()
        _ = try fixture.store.revokeTokens(for: "alice")
        let revoked = try fixture.send(body, token: fresh)
        #expect(revoked.status == 401, "revoked")
        #expect(revoked.code == "invalid_token")
        let afterRevoke = try fixture.token(version: 1)
        #expect(try fixture.send(body, token: afterRevoke).status == 200)
        try fixture.store.setDisabled(true, for: "alice")
        let disabled = try fixture.send(body, token: try fixture.token(version: 2))
        #expect(disabled.status == 401, "disabled")
        #expect(disabled.code == "invalid_token")
    }

    @Test(arguments: [
        ("not json", "json_invalid"),
        ("[1, 2]", "model_attributes_type"),
        (#"{"to": "a@b.c", "subject": "s"}"#, "missing"),
        (#"{"to": 5, "subject": "s", "message": "m"}"#, "string_type"),
        (#"{"to": "a@b.c", "to": "c@d.e", "subject": "s", "message": "m"}"#, "json_invalid"),
        (String(repeating: "[", count: 10_000), "json_invalid"),
        ("", "json_invalid"),
    ])
    func badBodiesAre422WithValidationDetail(body: String, type: String) throws {
        let fixture = try AppFixture()
        let response = try fixture.send(body)
        #expect(response.status == 422)
        let problems = try #require(response.detail as? [[String: Any]])
        #expect(problems.first?["type"] as? String == type)
        #expect(response.code == "validation_error")
        #expect(fixture.transport.sent.isEmpty)
    }

    @Test func invalidUTF8IsRefusedNotReplaced() throws {
        let fixture = try AppFixture()
        var bytes = Array(#"{"to": "a@b.c", "subject": "x"#.utf8)
        bytes += [0xC3, 0x28]
        bytes += Array(#"", "message": "m"}"#.utf8)
        let request = CGIRequest(params: ["REQUEST_METHOD": "POST", "DOCUMENT_URI": "/smtp/send-email",
                                          "HTTP_AUTHORIZATION": "Bearer \(try fixture.token())"], body: .complete(bytes))
        let response = fixture.application.handle(request)
        #expect(response.status == 422)
        #expect(response.code == "validation_error")
    }

    @Test(arguments: [
        (#"{"to": "bob@example.org", "subject": "a\r\nBcc: x@y.z", "message": "m"}"#, "invalid_request"),
        (#"{"to": "bob@example.org", "subject": "a\nb", "message": "m"}"#, "invalid_request"),
        (#"{"to": "bob@example.org", "subject": "a\u0000b", "message": "m"}"#, "invalid_request"),
        (#"{"to": "bob@example.org\r\nBcc: x@y.z", "subject": "s", "message": "m"}"#, "invalid_recipient"),
        (#"{"to": "a@x.com, b@y.com", "subject": "s", "message": "m"}"#, "invalid_recipient"),
        (#"{"to": "not an address", "subject": "s", "message": "m"}"#, "invalid_recipient"),
        (#"{"to": "bob@example.org", "subject": "s", "message": "nul\u0000here"}"#, "invalid_request"),
    ])
    func unusableValuesAre400AndNothingIsSent(body: String, code: String) throws {
        let fixture = try AppFixture()
        let response = try fixture.send(body)
        #expect(response.status == 400)
        #expect(response.detail is String)
        #expect(response.code == code, "\(response.text)")
        #expect(fixture.transport.sent.isEmpty)
    }

    @Test func userWithoutIntegrationIs400() throws {
        let fixture = try AppFixture()
        try fixture.store.removeIntegration(for: "alice")
        let response = try fixture.send(#"{"to": "bob@example.org", "subject": "s", "message": "m"}"#)
        #expect(response.status == 400)
        #expect(response.detail as? String == "No SMTP integration configured for this user")
        #expect(response.code == "no_integration")
    }

    @Test func integrationChangesApplyToTheNextRequest() throws {
        let fixture = try AppFixture()
        let body = #"{"to": "bob@example.org", "subject": "s", "message": "m"}"#
        _ = try fixture.send(body)
        try fixture.store.setIntegration(.init(host: "other.example.com", port: 465, security: .tls,
                                               fromAddress: "noreply@example.com", updatedAt: Date()), for: "alice")
        _ = try fixture.send(body)
        let servers = fixture.transport.sent.map { $0.server }
        #expect(servers.map(\.host) == ["smtp.example.com", "other.example.com"])
        #expect(servers.last?.security == .tls && servers.last?.username == nil)
        #expect(fixture.transport.sent.last?.envelope.sender?.description == "noreply@example.com")
    }

    static let failures: [(SMTPError, Int, String)] = [
        (SMTPError(.reply(SMTPReply(code: 550, enhancedStatus: "5.1.1", lines: ["User unknown"])), stage: .rcpt), 400, "recipient_rejected"),
        (SMTPError(.reply(SMTPReply(code: 535, enhancedStatus: "5.7.8", lines: ["Bad credentials"])), stage: .auth), 502, "smtp_auth_failed"),
        (SMTPError(.reply(SMTPReply(code: 554, lines: ["Rejected"])), stage: .message), 502, "smtp_rejected"),
        (SMTPError(.reply(SMTPReply(code: 550, lines: ["No"])), stage: .mail), 502, "smtp_rejected"),
        (SMTPError(.reply(SMTPReply(code: 451, lines: ["Try later"])), stage: .rcpt), 503, "smtp_unavailable"),
        (SMTPError(.reply(SMTPReply(code: 421, lines: ["Closing"])), stage: .greeting), 503, "smtp_unavailable"),
        (SMTPError(.connectionRefused, stage: .connect), 503, "smtp_unavailable"),
        (SMTPError(.connectionClosed, stage: .mail), 503, "smtp_unavailable"),
        (SMTPError(.connectionClosed, stage: .message), 502, "delivery_unknown"),
        (SMTPError(.timeout, stage: .message), 504, "smtp_timeout"),
        (SMTPError(.resolveTimedOut(host: "smtp.example.com", after: .seconds(10)), stage: .connect), 504, "smtp_timeout"),
        (SMTPError(.resolveFailed("Name or service not known"), stage: .connect), 503, "smtp_unavailable"),
        (SMTPError(.tls("certificate verify failed"), stage: .tls), 502, "smtp_failed"),
        (SMTPError(.starttlsUnavailable, stage: .starttls), 502, "smtp_failed"),
        (SMTPError(.certificateRejected("certificate verify failed (hostname mismatch)"), stage: .tls), 502, "smtp_failed"),
        (SMTPError(.authUnavailable("no mechanism offered"), stage: .auth), 502, "smtp_failed"),
        (SMTPError(.protocolViolation("reply line longer than 2048 bytes"), stage: .ehlo), 502, "smtp_failed"),
        (SMTPError(.reply(SMTPReply(code: 250, lines: ["OK"])), stage: .data), 502, "smtp_failed"),
        (SMTPError(.connectFailed("connect failed: Network is unreachable"), stage: .connect), 503, "smtp_unavailable"),
        (SMTPError(.messageTooLarge(size: 2_000_003, limit: 1_000_000), stage: .mail), 413, "message_too_large"),
        // OAuth2 (issue 9): no access token, so nothing was sent.
        (SMTPError(.accessToken(SMTPAccessTokenError(.reauthorize, "invalid_grant")), stage: .auth), 502, "oauth_reauthorize"),
        (SMTPError(.accessToken(SMTPAccessTokenError(.misconfigured, "invalid_client")), stage: .auth), 502, "oauth_failed"),
        (SMTPError(.accessToken(SMTPAccessTokenError(.unavailable(retryAfterSeconds: 5), "HTTP 500")), stage: .auth), 503, "oauth_unavailable"),
        (SMTPError(.accessToken(SMTPAccessTokenError(.timedOut, "no answer")), stage: .auth), 504, "oauth_timeout"),
        (SMTPError(.accessTokenRefused(SMTPReply(code: 535, lines: ["Username and Password not accepted"])), stage: .auth),
         502, "smtp_auth_failed"),
    ]

    @Test func nameResolutionTimeoutIs504NamingTheStep() throws {
        let fixture = try AppFixture()
        fixture.transport.fail(with: SMTPError(.resolveTimedOut(host: "smtp.example.com", after: .milliseconds(2500)),
                                               stage: .connect, server: "smtp.example.com:587"))
        let response = try fixture.send(#"{"to": "bob@example.org", "subject": "s", "message": "m"}"#)
        #expect(response.status == 504)
        #expect(response.detail as? String == "SMTP error: name resolution of smtp.example.com timed out after 2.5 s")
        #expect(response.code == "smtp_timeout")
        #expect(response.header("Retry-After") == nil)
    }

    @Test(arguments: failures)
    func smtpFailuresMapToStatuses(error: SMTPError, status: Int, code: String) throws {
        let fixture = try AppFixture()
        fixture.transport.fail(with: error)
        let response = try fixture.send(#"{"to": "bob@example.org", "subject": "s", "message": "m"}"#)
        #expect(response.status == status)
        let prefix = code.hasPrefix("oauth_") ? "OAuth2 error: " : "SMTP error: "
        #expect((response.detail as? String)?.hasPrefix(prefix) == true, "\(String(describing: response.detail))")
        #expect((response.header("Retry-After") != nil) == (status == 503))
        #expect(response.code == code)
        #expect(status != 200 && status != 401)
    }
}
