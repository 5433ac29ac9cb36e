import Foundation
import MailgateTesting
import Testing

/// Issue 10, item 6, end to end: `mailgate user recipients` limits where a
/// user's sends may go; outside it, 403 through nginx and nothing is sent.
@Suite("Recipient policy through nginx")
struct RecipientPolicyTests {
    @Test func onlyAllowedRecipientsAreSentToUntilThePolicyIsCleared() async throws {
        let env = try await E2E.get()
        let user = try await env.makeMailUser("contactform")
        let owner = "owner-\(Counter.shared.next())@example.com"
        let set = try await env.cli(["user", "recipients", user.name, "--allow", owner, "*@*.Example.org"])
        #expect(set.contains("recipients of \(user.name): \(owner) *@*.example.org"), "\(set)")
        let token = try await env.token(user.name)

        let allowed = uniqueMarker("policy-ok")
        let sent = try await env.send(token: token, to: "Site Owner <\(owner)>", subject: allowed, message: "m")
        #expect(sent.status == 200, "\(sent)")
        let delivered = try await env.capture.waitForMessage(sentWith: sent)
        #expect(delivered.envelope.rcptTos == [owner])
        let underDomain = try await env.send(token: token, to: "desk@support.example.org", subject: uniqueMarker("policy-sub"),
                                             message: "m")
        #expect(underDomain.status == 200, "\(underDomain)")

        for outside in ["spam-target@example.net", "owner@example.org", "x@[127.0.0.1]"] {
            let marker = uniqueMarker("policy-refused")
            let refused = try await env.send(token: token, to: outside, subject: marker, message: "m")
            #expect(refused.status == 403, "\(outside): \(refused)")
            #expect(refused.isJSON)
            #expect(refused.detail == "Recipient not allowed for this user: \(outside)", "\(refused)")
            #expect(refused.json?["code"] as? String == "recipient_not_allowed")
            #expect(env.capture.messages(containing: marker).isEmpty, "nothing is sent to \(outside)")
        }

        let shown = try await env.cli(["user", "recipients", user.name])
        #expect(shown.contains("\(owner) *@*.example.org"), "\(shown)")
        let cleared = try await env.cli(["user", "recipients", user.name, "--any"])
        #expect(cleared.contains("recipients of \(user.name): any"), "\(cleared)")
        let afterClearing = try await env.send(token: token, to: "anyone@example.net", subject: uniqueMarker("policy-any"),
                                               message: "m")
        #expect(afterClearing.status == 200, "the same token, no new login: \(afterClearing)")
    }

    @Test func unusablePatternsAreRefusedByTheCLIAndChangeNothing() async throws {
        let env = try await E2E.get()
        let user = try await env.makeUser("badpattern")
        _ = try await env.cli(["user", "recipients", user.name, "--allow", "owner@example.com"])
        let bad = try await env.cliResult(["user", "recipients", user.name, "--allow", "ok@example.com", "example.com"])
        #expect(bad.status == .exited(64), "\(bad.status)")
        #expect(bad.stderr.contains("invalid recipient pattern example.com: no @"), "\(bad.stderr)")
        let both = try await env.cliResult(["user", "recipients", user.name, "--allow", "a@example.com", "--any"])
        #expect(both.status == .exited(64))
        #expect(both.stderr.contains("give --allow or --any, not both"), "\(both.stderr)")
        let unknown = try await env.cliResult(["user", "recipients", "nobody-\(Counter.shared.next())", "--any"])
        #expect(!unknown.ok)
        #expect(unknown.stderr.contains("no user named"), "\(unknown.stderr)")
        let shown = try await env.cli(["user", "recipients", user.name])
        #expect(shown.contains(": owner@example.com"), "the earlier policy stands: \(shown)")
    }
}
