import Foundation
import MailgateTesting
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Issue 8: `Idempotency-Key` makes a retry safe: one key, at most one
/// message, through nginx into a real SMTP server.
@Suite("Idempotency")
struct IdempotencyTests {
    private func key(_ prefix: String) -> (String, String) { ("Idempotency-Key", uniqueMarker(prefix)) }

    @Test func aRepeatReplaysTheFirstAnswerAndSendsNothing() async throws {
        let env = try await E2E.get()
        let user = try await env.makeMailUser("idem-replay")
        let token = try await env.token(user.name)
        let marker = uniqueMarker("idem-replay")
        let body: [String: Any] = ["to": "r@example.org", "subject": marker, "message": "once"]
        let header = key("replay")
        let first = try await env.sendJSON(token: token, body, headers: [header])
        #expect(first.status == 200, "\(first)")
        #expect(first.header("Idempotent-Replayed") == nil)
        let second = try await env.sendJSON(token: token, body, headers: [header])
        #expect(second.status == 200, "\(second)")
        #expect(second.header("Idempotent-Replayed") == "true")
        #expect(second.body == first.body, "the same message_id: \(second)")
        _ = try await env.capture.waitForMessage(sentWith: first)
        try await Task.sleep(for: .milliseconds(300))
        #expect(env.capture.messages(containing: marker).count == 1)

        // Another user's same key is another key.
        let other = try await env.makeMailUser("idem-other")
        let otherResponse = try await env.sendJSON(token: try await env.token(other.name), body, headers: [header])
        #expect(otherResponse.status == 200 && otherResponse.header("Idempotent-Replayed") == nil, "\(otherResponse)")
    }

    @Test func theSameKeyWithAnotherBodyIs422() async throws {
        let env = try await E2E.get()
        let user = try await env.makeMailUser("idem-mismatch")
        let token = try await env.token(user.name)
        let marker = uniqueMarker("idem-mismatch")
        let header = key("mismatch")
        let first = try await env.sendJSON(token: token, ["to": "r@example.org", "subject": marker, "message": "a"], headers: [header])
        #expect(first.status == 200, "\(first)")
        let second = try await env.sendJSON(token: token, ["to": "r@example.org", "subject": marker, "message": "b"], headers: [header])
        #expect(second.status == 422, "\(second)")
        #expect(second.code == "idempotency_key_reused")
        #expect((second.detailList?.first?["msg"] as? String)?.contains("different request") == true, "\(second)")
        try await Task.sleep(for: .milliseconds(300))
        #expect(env.capture.messages(containing: marker).count == 1)
    }

    @Test func anInvalidKeyIs400() async throws {
        let env = try await E2E.get()
        let user = try await env.makeMailUser("idem-invalid")
        let token = try await env.token(user.name)
        for bad in [String(repeating: "k", count: 256), "tab\there", "é"] {
            let response = try await env.sendJSON(token: token, ["to": "r@example.org", "subject": "s", "message": "m"],
                                                  headers: [("Idempotency-Key", bad)])
            #expect(response.status == 400, "\(bad.prefix(10)): \(response)")
            #expect(response.code == "invalid_idempotency_key")
        }
    }

    /// Requests racing with one key: exactly one message, every answer a
    /// 200 (the send or its replay) or a 409 (the send still in flight).
    @Test func concurrentRequestsWithOneKeySendOnce() async throws {
        let env = try await E2E.get()
        let user = try await env.makeMailUser("idem-race")
        let token = try await env.token(user.name)
        let marker = uniqueMarker("idem-race")
        let header = key("race")
        let body = try jsonBytes(["to": "r@example.org", "subject": marker, "message": "race"])
        let responses = try await withThrowingTaskGroup(of: HTTPResponse.self) { group in
            for _ in 0..<4 { group.addTask { try await env.sendRaw(token: token, body: body, headers: [header]) } }
            return try await group.reduce(into: [HTTPResponse]()) { $0.append($1) }
        }
        for response in responses {
            #expect(response.status == 200 || (response.status == 409 && response.header("Retry-After") == "1"), "\(response)")
        }
        #expect(responses.contains { $0.status == 200 })
        try await Task.sleep(for: .seconds(1))
        #expect(env.capture.messages(containing: marker).count == 1)
    }

    /// While the first request waits on a slow server (8 s before its
    /// greeting), a second with the same key gets 409 at once; afterwards
    /// the key replays the 200.
    @Test func aRequestInFlightAnswers409() async throws {
        let env = try await E2E.get()
        let smtpPort = try freePort()
        let smtp = try await blocking {
            let name = "slow-smtp-\(Counter.shared.next())"
            let server = try Child.spawn(E2E.python, [PythonHelper.path("slow_smtp_server.py"), String(smtpPort), "8"],
                                         stdout: "\(env.dir)/\(name).out", stderr: "\(env.dir)/\(name).err", name: name)
            try waitUntil("slow SMTP server", child: server) { server.stdoutText.contains("READY") }
            return server
        }
        defer { smtp.stop() }
        let user = try await env.makeUser("idem-inflight", smtp: SMTPTarget(port: smtpPort))
        let token = try await env.token(user.name)
        let header = key("inflight")
        let body: [String: Any] = ["to": "r@example.org", "subject": "in flight", "message": "m"]
        let bytes = try jsonBytes(body)
        let first = Task { try await env.sendRaw(token: token, body: bytes, headers: [header]) }
        try await blocking { try waitUntil("SMTP connection from mailgate", timeout: 20, child: smtp) { smtp.stdoutText.contains("CONNECTED") } }
        let second = try await env.sendJSON(token: token, body, headers: [header])
        #expect(second.status == 409, "\(second)")
        #expect(second.code == "idempotency_key_in_flight")
        #expect(second.header("Retry-After") == "1")
        let firstResponse = try await first.value
        #expect(firstResponse.status == 200, "\(firstResponse)")
        let third = try await env.sendJSON(token: token, body, headers: [header])
        #expect(third.status == 200 && third.header("Idempotent-Replayed") == "true", "\(third)")
        #expect(smtp.stdoutText.components(separatedBy: "DELIVERED").count == 2, "delivered once")
    }

    /// A 503 sent nothing: the key is released, and the retry sends (once).
    @Test func aRetryAfter503Sends() async throws {
        let env = try await E2E.get()
        let closedPort = try freePort()
        let user = try await env.makeUser("idem-503", smtp: SMTPTarget(port: closedPort))
        let token = try await env.token(user.name)
        let marker = uniqueMarker("idem-503")
        let header = key("after503")
        let body: [String: Any] = ["to": "r@example.org", "subject": marker, "message": "m"]
        let refused = try await env.sendJSON(token: token, body, headers: [header])
        #expect(refused.status == 503, "\(refused)")
        try await env.setIntegration(user.name, env.mainCaptureTarget)
        let retry = try await env.sendJSON(token: token, body, headers: [header])
        #expect(retry.status == 200, "\(retry)")
        #expect(retry.header("Idempotent-Replayed") == nil)
        let again = try await env.sendJSON(token: token, body, headers: [header])
        #expect(again.status == 200 && again.header("Idempotent-Replayed") == "true", "\(again)")
        _ = try await env.capture.waitForMessage(sentWith: retry)
        try await Task.sleep(for: .milliseconds(300))
        #expect(env.capture.messages(containing: marker).count == 1)
    }

    /// A 400 ends the matter: it is replayed, even after the cause is fixed.
    @Test func aRefusalIsReplayedToo() async throws {
        let env = try await E2E.get()
        let user = try await env.makeMailUser("idem-400")
        let token = try await env.token(user.name)
        let header = key("refusal")
        let body: [String: Any] = ["to": "r@example.org", "subject": "s", "message": "m", "headers": ["From": "x@example.org"]]
        let first = try await env.sendJSON(token: token, body, headers: [header])
        #expect(first.status == 400, "\(first)")
        let second = try await env.sendJSON(token: token, body, headers: [header])
        #expect(second.status == 400 && second.header("Idempotent-Replayed") == "true", "\(second)")
        #expect(second.body == first.body)
    }

    /// Keys live in the store: a restarted `mailgate serve` replays them.
    /// The restart is also with `--idempotency-ttl 1s`, which applies to
    /// keys claimed from then on: a key claimed there is forgotten after a
    /// second (the stored expiry of the first key stays 24 hours, so how
    /// long the restart takes does not matter).
    @Test func keysSurviveARestartAndExpire() async throws {
        let env = try await E2E.get()
        let socket = "\(env.dir)/idem-\(Counter.shared.next()).sock"
        func start(_ extra: [String]) async throws -> Child {
            try await blocking {
                try E2E.startMailgate(bin: env.bin, dataDir: env.dataDir, socket: socket, log: socket + ".log",
                                      extra: ["--threads", "2", "--ca-file", env.caBundle] + extra, in: env.dir)
            }
        }
        var mailgate = try await start([])
        defer { mailgate.stop() }
        let (nginx, port) = try await blocking {
            try E2E.startNginx(in: env.dir, name: "nginx-idem-\(Counter.shared.next())", socket: socket, rate: "100r/s")
        }
        defer { nginx.stop() }
        let user = try await env.makeMailUser("idem-restart")
        let token = try await env.token(user.name)
        let marker = uniqueMarker("idem-restart")
        let header = key("restart")
        let body: [String: Any] = ["to": "r@example.org", "subject": marker, "message": "m"]
        let first = try await env.sendJSON(token: token, body, headers: [header], port: port)
        #expect(first.status == 200, "\(first)")

        let stopping = mailgate
        stopping.signal(SIGTERM)
        _ = try await blocking { stopping.wait(timeout: 15) }
        mailgate = try await start(["--idempotency-ttl", "1s"])
        let replay = try await env.sendJSON(token: token, body, headers: [header], port: port)
        #expect(replay.status == 200 && replay.header("Idempotent-Replayed") == "true", "\(replay)")
        #expect(replay.body == first.body)

        let shortMarker = uniqueMarker("idem-expiry")
        let shortKey = key("expiry")
        let shortBody: [String: Any] = ["to": "r@example.org", "subject": shortMarker, "message": "m"]
        let once = try await env.sendJSON(token: token, shortBody, headers: [shortKey], port: port)
        #expect(once.status == 200, "\(once)")
        try await Task.sleep(for: .seconds(2))
        let afterExpiry = try await env.sendJSON(token: token, shortBody, headers: [shortKey], port: port)
        #expect(afterExpiry.status == 200 && afterExpiry.header("Idempotent-Replayed") == nil, "\(afterExpiry)")
        _ = try await env.capture.waitForMessage(sentWith: afterExpiry)
        #expect(env.capture.messages(containing: marker).count == 1, "the first key was sent once")
        #expect(env.capture.messages(containing: shortMarker).count == 2, "sent again once the key expired")
    }
}

/// `object` as the JSON bytes `sendJSON` would send (Sendable, for tasks).
private func jsonBytes(_ object: [String: Any]) throws -> [UInt8] {
    [UInt8](try JSONSerialization.data(withJSONObject: object, options: [.withoutEscapingSlashes, .sortedKeys]))
}
