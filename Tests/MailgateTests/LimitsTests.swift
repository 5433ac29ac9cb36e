import Dispatch
import FastCGI
@testable import Mailgate
import Testing

@Suite struct LimitsTests {
    @Test func inFlightLimitCountsPerUser() {
        let limit = InFlightLimit(limitPerUser: 2)
        #expect(limit.acquire("alice"))
        #expect(limit.acquire("alice"))
        #expect(!limit.acquire("alice"), "a third send of the same user is refused")
        #expect(limit.acquire("bob"), "other users are not affected")
        limit.release("alice")
        #expect(limit.count("alice") == 1)
        #expect(limit.acquire("alice"))
        limit.release("alice")
        limit.release("alice")
        limit.release("bob")
        #expect(limit.count("alice") == 0 && limit.count("bob") == 0)
    }

    @Test func sendOverTheCapIs429AtOnceAndNothingIsSent() throws {
        let fixture = try AppFixture { $0.maxInFlightPerUser = 1 }
        // A send of alice's is in flight (its SMTP exchange holds the slot).
        #expect(fixture.application.inFlight.acquire("alice"))
        let refused = try fixture.send(#"{"to": "bob@example.org", "subject": "s", "message": "m"}"#)
        #expect(refused.status == 429)
        #expect(refused.header("Retry-After") == "1")
        #expect(refused.code == "too_many_in_flight")
        #expect(fixture.transport.sent.isEmpty)
        fixture.application.inFlight.release("alice")
        let sent = try fixture.send(#"{"to": "bob@example.org", "subject": "s", "message": "m"}"#)
        #expect(sent.status == 200)
        #expect(fixture.application.inFlight.count("alice") == 0, "the slot is given back after the send")
    }

    @Test func kdfGateRefusesWhenEverySlotStaysBusy() {
        let gate = KDFGate(slots: 1, patience: .milliseconds(50))
        let holding = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0), done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            _ = gate.run { holding.signal(); release.wait() }
            done.signal()
        }
        holding.wait()
        #expect(gate.run { 1 } == nil)
        release.signal()
        done.wait()
        #expect(gate.run { 2 } == 2)
    }

    @Test func loginWhileEveryKDFSlotIsBusyIs503() throws {
        let fixture = try AppFixture {
            $0.kdfConcurrency = 1
            $0.kdfWait = .milliseconds(50)
        }
        let holding = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0), done = DispatchSemaphore(value: 0)
        let gate = fixture.application.kdfGate
        DispatchQueue.global().async {
            _ = gate.run { holding.signal(); release.wait() }
            done.signal()
        }
        holding.wait()
        let busy = fixture.post("/token", body: "username=alice&password=correct+horse",
                                contentType: "application/x-www-form-urlencoded")
        #expect(busy.status == 503)
        #expect(busy.header("Retry-After") == "1")
        #expect(busy.code == "login_busy")
        release.signal()
        done.wait()
        let ok = fixture.post("/token", body: "username=alice&password=correct+horse",
                              contentType: "application/x-www-form-urlencoded")
        #expect(ok.status == 200)
    }
}
