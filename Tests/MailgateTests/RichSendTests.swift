import Crypto
import FastCGI
import Foundation
@testable import Mailgate
import SMTP
import Store
import Testing

/// Issue 8 in process: the request body's members, the envelope, the limits
/// and how each outcome settles an idempotency key.
@Suite struct RichSendTests {
    @Test func envelopeHoldsEveryAddressOnceAndTheAnswerCountsThem() throws {
        let fixture = try AppFixture()
        let response = try fixture.send(#"""
            {"to": ["a@example.org", "B <b@example.org>"], "cc": "a@EXAMPLE.org", "bcc": ["c@example.org", "b@example.org"],
             "subject": "s", "message": "m"}
            """#)
        #expect(response.status == 200, "\(response.text)")
        #expect((response.json as? [String: Any])?["recipients"] as? Int == 3)
        let sent = try #require(fixture.transport.sent.first)
        #expect(sent.envelope.recipients.map(\.description) == ["a@example.org", "b@example.org", "c@example.org"])
        let text = String(decoding: sent.message, as: UTF8.self)
        #expect(text.contains("\r\nCc: a@EXAMPLE.org\r\n"))
        #expect(!text.contains("c@example.org"), "the bcc is in no header")
    }

    @Test func aStringToKeepsTheOriginalAnswers() throws {
        let fixture = try AppFixture()
        let bad = try fixture.send(#"{"to": "not an address", "subject": "s", "message": "m"}"#)
        #expect(bad.status == 400)
        #expect((bad.detail as? String)?.hasPrefix("Invalid recipient address: ") == true, "\(bad.text)")
        let listed = try fixture.send(#"{"to": ["a@example.org", "nope"], "subject": "s", "message": "m"}"#)
        #expect((listed.detail as? String)?.hasPrefix("Invalid recipient address in to[1]: ") == true, "\(listed.text)")
        let empty = try fixture.send(#"{"to": [], "subject": "s", "message": "m"}"#)
        #expect(empty.status == 422, "\(empty.text)")
        #expect(fixture.transport.sent.isEmpty)
    }

    /// Every shape problem at once, each at its member's path.
    @Test func attachmentShapeProblemsAre422AtTheirPaths() throws {
        let fixture = try AppFixture()
        let response = try fixture.send(#"""
            {"to": "a@example.org", "subject": "s", "message": "m", "html": 3, "headers": {"X-A": "1", "X-B": null},
             "attachments": [{"filename": "a"}, {"filename": 1, "content": "YQ=="}, "x", {"content": "YQ==", "content_id": []}]}
            """#)
        #expect(response.status == 422)
        let problems = try #require(response.detail as? [[String: Any]])
        let locations = problems.map { ($0["loc"] as? [Any] ?? []).map { "\($0)" }.joined(separator: ".") }
        #expect(locations == ["body.html", "body.attachments.0.content", "body.attachments.1.filename", "body.attachments.2",
                              "body.attachments.3.content_id", "body.headers.X-B"], "\(locations)")
        #expect(problems.map { $0["type"] as? String } == ["string_type", "missing", "string_type", "dict_type", "string_type", "string_type"])
        #expect(fixture.transport.sent.isEmpty)
    }

    @Test func theRecipientPolicyCoversCcAndBcc() throws {
        let fixture = try AppFixture()
        try fixture.store.setRecipientPolicy(RecipientPolicy(parsing: ["*@example.org"]), for: "alice")
        for member in ["cc", "bcc"] {
            let response = try fixture.send(#"{"to": "a@example.org", "\#(member)": "x@elsewhere.net", "subject": "s", "message": "m"}"#)
            #expect(response.status == 403, "\(member)")
        }
        #expect(fixture.transport.sent.isEmpty)
    }

    @Test func aMessageOverMaxMessageBytesIs413AndNotSent() throws {
        let fixture = try AppFixture { $0.maxMessageBytes = 4000 }
        let content = Data([UInt8](repeating: 7, count: 4000)).base64EncodedString()
        let response = try fixture.send(#"""
            {"to": "a@example.org", "subject": "s", "message": "m", "attachments": [{"filename": "a.bin", "content": "\#(content)"}]}
            """#)
        #expect(response.status == 413)
        #expect(response.code == "message_too_large")
        #expect((response.detail as? String)?.contains("the limit is 4000 bytes") == true, "\(response.text)")
        #expect(fixture.transport.sent.isEmpty)
    }

    @Test func theQuotaCountsEveryEnvelopeRecipient() throws {
        let fixture = try AppFixture { $0.defaultQuota = [.day: 3] }
        let two = try fixture.send(#"{"to": ["a@example.org", "b@example.org"], "subject": "s", "message": "m"}"#)
        #expect(two.status == 200)
        let twoMore = try fixture.send(#"{"to": "a@example.org", "bcc": "c@example.org", "subject": "s", "message": "m"}"#)
        #expect(twoMore.status == 429, "\(twoMore.text)")
        #expect(fixture.transport.sent.count == 1)
    }

    // MARK: - Idempotency

    private static let body = #"{"to": "a@example.org", "subject": "s", "message": "m"}"#

    @Test func aTimeoutAfterTheDataIsKeptABeforeTheDataReleased() throws {
        let fixture = try AppFixture()
        fixture.transport.fail(with: SMTPError(.timeout, stage: .message))
        let lost = try fixture.send(Self.body, idempotencyKey: "after-data")
        #expect(lost.status == 504)
        fixture.transport.fail(with: nil)
        let replay = try fixture.send(Self.body, idempotencyKey: "after-data")
        #expect(replay.status == 504 && replay.header("Idempotent-Replayed") == "true", "may have been delivered: never resent")

        fixture.transport.fail(with: SMTPError(.timeout, stage: .connect))
        #expect(try fixture.send(Self.body, idempotencyKey: "before-data").status == 504)
        fixture.transport.fail(with: nil)
        let retried = try fixture.send(Self.body, idempotencyKey: "before-data")
        #expect(retried.status == 200 && retried.header("Idempotent-Replayed") == nil, "nothing was handed over: sent now")
        #expect(fixture.transport.sent.count == 1)
    }

    @Test func answersThatInviteARetryReleaseTheKey() throws {
        let fixture = try AppFixture { $0.defaultQuota = [.day: 1] }
        #expect(try fixture.send(#"{"to": "x@example.org", "subject": "s", "message": "m"}"#).status == 200)
        #expect(try fixture.send(Self.body, idempotencyKey: "quota").status == 429)
        fixture.clock.advance(86_400)
        #expect(try fixture.send(Self.body, idempotencyKey: "quota").status == 200, "429 released the key")

        fixture.clock.advance(86_400)
        fixture.transport.fail(with: SMTPError(.reply(SMTPReply(code: 451, lines: ["later"])), stage: .mail))
        #expect(try fixture.send(Self.body, idempotencyKey: "busy").status == 503)
        fixture.transport.fail(with: nil)
        // The 503's recipient was given back to the quota, and the key released.
        #expect(try fixture.send(Self.body, idempotencyKey: "busy").header("Idempotent-Replayed") == nil)
        #expect(fixture.transport.sent.count == 3)
    }

    /// A worker that died mid-send left its key in flight: 409 until the
    /// SMTP deadline plus the margin has passed, then the "outcome unknown"
    /// 502 for ever (never a second send).
    @Test func aKeyLeftInFlightBecomesOutcomeUnknown() throws {
        let fixture = try AppFixture()
        let configuration = AppConfiguration()
        let claim = try fixture.store.claimIdempotencyKey(
            Array("dead".utf8), for: "alice", fingerprint: Crypto.sha256(Array(Self.body.utf8)),
            at: Date(timeIntervalSince1970: TimeInterval(fixture.clock.now)), ttl: configuration.idempotencyTTL,
            staleAfter: configuration.idempotencyStaleAfter, abandonedAnswer: Application.abandonedAnswer)
        guard case .claimed = claim else { Issue.record("expected a claim, got \(claim)"); return }
        let busy = try fixture.send(Self.body, idempotencyKey: "dead")
        #expect(busy.status == 409 && busy.code == "idempotency_key_in_flight")
        fixture.clock.advance(Int64(configuration.idempotencyStaleAfter) + 1)
        let unknown = try fixture.send(Self.body, idempotencyKey: "dead")
        #expect(unknown.status == 502 && unknown.code == "delivery_unknown", "\(unknown.text)")
        #expect(try fixture.send(Self.body, idempotencyKey: "dead").code == "delivery_unknown")
        #expect(fixture.transport.sent.isEmpty)
    }

    @Test func theKeyIsCheckedBeforeTheBody() throws {
        let fixture = try AppFixture()
        let response = try fixture.send(Self.body, idempotencyKey: String(repeating: "k", count: 256))
        #expect(response.status == 400 && response.code == "invalid_idempotency_key")
        let malformed = try fixture.send("{", idempotencyKey: "bad-json")
        #expect(malformed.status == 422)
        #expect(try fixture.send("{", idempotencyKey: "bad-json").header("Idempotent-Replayed") == "true", "422 is kept")
        #expect(try fixture.send(Self.body, idempotencyKey: "bad-json").code == "idempotency_key_reused")
    }
}
