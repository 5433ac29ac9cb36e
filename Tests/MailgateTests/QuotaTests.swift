import Foundation
@testable import Mailgate
import SMTP
import Store
import Testing

/// Issue 10, item 5, in process: quotas per recipient with the IETF
/// RateLimit fields; a failed send does not count.
@Suite struct QuotaTests {
    private let body = #"{"to": "bob@example.org", "subject": "s", "message": "m"}"#

    @Test func sendsOverTheQuotaAre429WithRetryAfterAndRateLimitFields() throws {
        // The fixture's clock starts on a minute boundary.
        let fixture = try AppFixture { $0.defaultQuota = [.minute: 2, .day: 100] }
        let first = try fixture.send(body)
        #expect(first.status == 200)
        #expect(first.header("RateLimit-Policy") == #""minute";q=2;w=60, "day";q=100;w=86400"#)
        #expect(first.header("RateLimit") == #""minute";r=1;t=60"#)
        fixture.clock.advance(15)
        #expect(try fixture.send(body).header("RateLimit") == #""minute";r=0;t=45"#)

        let refused = try fixture.send(body)
        #expect(refused.status == 429)
        #expect(refused.header("Retry-After") == "45")
        #expect(refused.header("RateLimit") == #""minute";r=0;t=45"#)
        #expect(refused.detail as? String == "Send quota exceeded (2 recipients per minute); try again in 45 s")
        #expect(refused.code == "quota_exceeded")
        #expect(fixture.transport.sent.count == 2, "nothing sent over the quota")

        fixture.clock.advance(45)
        #expect(try fixture.send(body).status == 200, "a new minute")
    }

    @Test func aUsersOwnQuotaWinsAndZeroIsUnlimited() throws {
        let fixture = try AppFixture { $0.defaultQuota = [.minute: 1] }
        try fixture.store.setSendQuota(SendQuota(perWindow: [.minute: 0]), for: "alice")
        for _ in 0..<3 {
            let sent = try fixture.send(body)
            #expect(sent.status == 200)
            #expect(sent.header("RateLimit") == nil, "no quota applies: no fields, nothing counted")
        }
        try fixture.store.setSendQuota(SendQuota(perWindow: [.minute: 4]), for: "alice")
        #expect(try fixture.send(body).header("RateLimit") == #""minute";r=3;t=60"#)
    }

    @Test func aSendThatFailedBeforeDeliveryDoesNotCount() throws {
        let fixture = try AppFixture { $0.defaultQuota = [.minute: 1] }
        fixture.transport.fail(with: SMTPError(.reply(SMTPReply(code: 550, lines: ["No such user"])), stage: .rcpt))
        #expect(try fixture.send(body).status == 400)
        fixture.transport.fail(with: SMTPError(.connectionRefused, stage: .connect))
        let refused = try fixture.send(body)
        #expect(refused.status == 503)
        #expect(refused.header("RateLimit") == #""minute";r=1;t=60"#, "given back before the answer")
        // Lost after the message was handed over: it may have been delivered,
        // so it counts.
        fixture.transport.fail(with: SMTPError(.connectionClosed, stage: .message))
        #expect(try fixture.send(body).status == 502)
        fixture.transport.fail(with: nil)
        #expect(try fixture.send(body).status == 429)
    }
}
