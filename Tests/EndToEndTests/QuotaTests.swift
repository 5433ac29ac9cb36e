import Foundation
import MailgateTesting
import Testing

/// Issue 10, item 5, end to end: `mailgate user limits`, 429 with the
/// RateLimit fields through nginx, and no overshoot under concurrency.
/// Day quotas: a minute or an hour could roll over during a test.
@Suite("Send quotas through nginx")
struct SendQuotaEndToEndTests {
    @Test func sendsOverTheDayQuotaAre429UntilTheQuotaIsLifted() async throws {
        let env = try await E2E.get()
        let user = try await env.makeMailUser("quota")
        let set = try await env.cli(["user", "limits", user.name, "--per-day", "3"])
        #expect(set.contains("limits of \(user.name): per minute default, per hour default, per day 3"), "\(set)")
        let token = try await env.token(user.name)

        for remaining in [2, 1, 0] {
            let sent = try await env.send(token: token, to: "r@example.org", subject: uniqueMarker("quota"), message: "m")
            #expect(sent.status == 200, "\(sent)")
            #expect(sent.header("RateLimit-Policy") == #""day";q=3;w=86400"#, "\(sent)")
            #expect(sent.header("RateLimit")?.hasPrefix(#""day";r=\#(remaining);t="#) == true, "\(sent)")
        }
        let marker = uniqueMarker("quota-over")
        let refused = try await env.send(token: token, to: "r@example.org", subject: marker, message: "m")
        #expect(refused.status == 429, "\(refused)")
        #expect(refused.isJSON)
        #expect(refused.detail?.hasPrefix("Send quota exceeded (3 recipients per day); try again in ") == true, "\(refused)")
        #expect(refused.json?["code"] as? String == "quota_exceeded")
        let retry = refused.header("Retry-After").flatMap(Int.init)
        #expect(retry.map { $0 > 0 && $0 <= 86_400 } == true, "\(refused)")
        #expect(refused.header("RateLimit")?.hasPrefix(#""day";r=0;t="#) == true)
        try await Task.sleep(for: .milliseconds(200))
        #expect(env.capture.messages(containing: marker).isEmpty, "nothing sent over the quota")

        // The main instance has no default quota: "default" lifts it.
        _ = try await env.cli(["user", "limits", user.name, "--per-day", "default"])
        let lifted = try await env.send(token: token, to: "r@example.org", subject: uniqueMarker("quota-lifted"), message: "m")
        #expect(lifted.status == 200, "\(lifted)")
        #expect(lifted.header("RateLimit") == nil)
    }

    /// 64 sends at once against a quota of 10: never more than 10 are sent,
    /// and the count is exact (what the flood did not use is still there).
    @Test func sixtyFourConcurrentSendsNeverOvershootTheQuota() async throws {
        let env = try await E2E.get()
        let user = try await env.makeMailUser("quota-flood")
        _ = try await env.cli(["user", "limits", user.name, "--per-day", "10"])
        let token = try await env.token(user.name)
        let prefix = uniqueMarker("flood")
        let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
            for i in 0..<64 {
                group.addTask {
                    try await env.send(token: token, to: "r@example.org", subject: "\(prefix)-\(i)", message: "m").status
                }
            }
            var all: [Int] = []
            for try await status in group { all.append(status) }
            return all
        }
        let sent = statuses.filter { $0 == 200 }.count
        #expect(sent <= 10, "\(statuses)")
        #expect(statuses.allSatisfy { $0 == 200 || $0 == 429 }, "429: over the quota or too many in flight: \(statuses)")
        var more = 0
        while true {
            let next = try await env.send(token: token, to: "r@example.org", subject: "\(prefix)-after-\(more)", message: "m")
            guard next.status == 200 else {
                #expect(next.status == 429 && next.detail?.hasPrefix("Send quota exceeded") == true, "\(next)")
                break
            }
            more += 1
            if sent + more > 10 { break }
        }
        #expect(sent + more == 10, "exactly the quota: \(sent) in the flood, \(more) after")
        let subjects = Set((0..<64).map { "\(prefix)-\($0)" } + (0..<more).map { "\(prefix)-after-\($0)" })
        let delivered = try await env.capture.deliveries(ofSubjects: subjects, timeout: 5)
        #expect(delivered.values.reduce(0, +) == 10, "\(delivered)")
    }

    @Test func unusableLimitsAreRefusedByTheCLI() async throws {
        let env = try await E2E.get()
        let user = try await env.makeUser("quota-cli")
        for bad in ["-1", "lots", "1.5"] {
            let result = try await env.cliResult(["user", "limits", user.name, "--per-hour", bad])
            #expect(result.status == .exited(64), "\(bad): \(result.status)")
            #expect(result.stderr.contains("--per-hour"), "\(result.stderr)")
        }
        let shown = try await env.cli(["user", "limits", user.name, "--per-minute", "0"])
        #expect(shown.contains("per minute unlimited, per hour default, per day default"), "\(shown)")
    }
}
