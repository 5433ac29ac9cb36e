import FastCGI
import Foundation
@testable import Mailgate
import SMTP
import Store
import Testing

/// Issues 8 and 10: every error body carries `code`, a stable snake_case key,
/// next to FastAPI's `detail` (kept as it was).
@Suite struct ErrorCodeTests {
    /// The contract: these names are what clients switch on. A rename breaks
    /// them, so it must break this list first.
    static let contract: Set<String> = [
        "not_authenticated", "invalid_token", "invalid_login", "login_locked", "login_busy",
        "validation_error", "invalid_request", "invalid_recipient", "body_too_large",
        "not_found", "method_not_allowed", "no_integration", "too_many_in_flight", "quota_exceeded",
        "recipient_not_allowed", "recipient_rejected", "smtp_rejected", "smtp_unavailable", "smtp_timeout", "smtp_failed",
        "unhealthy", "internal_error",
        "too_many_recipients", "header_not_allowed", "invalid_attachment", "message_too_large",
        "invalid_idempotency_key", "idempotency_key_reused", "idempotency_key_in_flight",
        "smtp_auth_failed", "delivery_unknown",
        "oauth_reauthorize", "oauth_failed", "oauth_unavailable", "oauth_timeout", "store_unavailable",
    ]

    @Test func codesAreTheDocumentedSnakeCaseNames() {
        let codes = ErrorCode.allCases.map(\.rawValue)
        #expect(Set(codes) == Self.contract)
        #expect(Set(codes).count == codes.count)
        for code in codes {
            #expect(code.wholeMatch(of: /[a-z]+(_[a-z]+)*/) != nil, "\(code)")
        }
    }

    @Test func everyCodeIsInTheREADMETable() throws {
        let readme = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("README.md")
        let text = try String(contentsOf: readme, encoding: .utf8)
        for code in ErrorCode.allCases {
            #expect(text.contains("| `\(code.rawValue)` |"), "README's table of errors lists \(code.rawValue)")
        }
    }

    @Test func bodyIsDetailThenCode() throws {
        let fixture = try AppFixture()
        let response = fixture.post("/nope", body: "")
        #expect(response.text == #"{"detail": "Not Found", "code": "not_found"}"#)
        #expect(response.header("Content-Type") == "application/json")
    }

    @Test func validationKeepsFastAPIsListAndAddsTheCode() throws {
        let fixture = try AppFixture()
        let response = try fixture.send(#"{"to": "a@b.c"}"#)
        #expect(response.status == 422)
        let body = try #require(response.json as? [String: Any])
        #expect(Set(body.keys) == ["detail", "code"])
        let problems = try #require(body["detail"] as? [[String: Any]])
        #expect(problems.map { $0["type"] as? String } == ["missing", "missing"])
        #expect(body["code"] as? String == "validation_error")
    }

    @Test func unusableStoredIntegrationIs500InternalErrorWithNothingInside() throws {
        let fixture = try AppFixture()
        // Store's rules let it through; the From address does not parse.
        try fixture.store.setIntegration(SMTPIntegration(
            host: "smtp.example.com", port: 587, security: .starttls, username: "alice@example.com",
            password: "smtp-secret", fromAddress: "not an address", updatedAt: Date()), for: "alice")
        let response = try fixture.send(#"{"to": "bob@example.org", "subject": "s", "message": "m"}"#)
        #expect(response.status == 500)
        #expect(response.detail as? String == "Internal server error")
        #expect(response.code == "internal_error")
        #expect(!response.text.contains("smtp-secret") && !response.text.contains("not an address"))
        #expect(fixture.transport.sent.isEmpty)
    }

    /// Every error the endpoints answer, one request each: the code is there
    /// and is one of ours, and `detail` is still there beside it.
    @Test func everyErrorAnswerHasACode() throws {
        let fixture = try AppFixture { $0.maxInFlightPerUser = 1 }
        let form = "application/x-www-form-urlencoded"
        let good = #"{"to": "bob@example.org", "subject": "s", "message": "m"}"#
        var answers: [(String, String, CGIResponse)] = [
            ("no auth", "not_authenticated", fixture.post("/smtp/send-email", body: good)),
            ("bad token", "invalid_token", try fixture.send(good, token: "x.y.z")),
            ("bad json", "validation_error", try fixture.send("{")),
            ("bad recipient", "invalid_recipient", try fixture.send(#"{"to": "nope", "subject": "s", "message": "m"}"#)),
            ("bad subject", "invalid_request", try fixture.send(#"{"to": "bob@example.org", "subject": "a\nb", "message": "m"}"#)),
            ("404", "not_found", fixture.post("/elsewhere", body: "")),
            ("405", "method_not_allowed", fixture.post("/token", body: "", method: "GET")),
            ("bad login", "invalid_login", fixture.post("/token", body: "username=alice&password=no", contentType: form)),
            ("bad form", "validation_error", fixture.post("/token", body: "username=alice", contentType: form)),
        ]
        #expect(fixture.application.inFlight.acquire("alice"))
        answers.append(("in flight", "too_many_in_flight", try fixture.send(good)))
        fixture.application.inFlight.release("alice")
        fixture.transport.fail(with: SMTPError(.connectionRefused, stage: .connect, server: "smtp.example.com:587"))
        answers.append(("smtp refused", "smtp_unavailable", try fixture.send(good)))
        for _ in 0..<5 { _ = fixture.post("/token", body: "username=alice&password=no", contentType: form) }
        answers.append(("locked", "login_locked",
                        fixture.post("/token", body: "username=alice&password=correct+horse", contentType: form)))

        for (label, expected, response) in answers {
            #expect(response.status >= 400, "\(label): \(response.text)")
            #expect(response.code == expected, "\(label): \(response.text)")
            #expect(response.code.flatMap(ErrorCode.init(rawValue:)) != nil, "\(label)")
            #expect(response.detail != nil, "\(label): detail stays")
        }
    }
}
