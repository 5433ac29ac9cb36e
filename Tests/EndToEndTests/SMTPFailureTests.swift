import Foundation
import MailgateTesting
import Testing

/// One failing-server scenario: smtp-sink options and the answer expected.
struct SinkCase: Sendable, CustomTestStringConvertible {
    var options: [String]
    /// nil: anything but 200 (the exact mapping is not specified).
    var status: Int?
    var retryAfter = false
    /// The `code` expected with `status` (derived from it: one code per status here).
    var code: String? {
        switch status {
        case 400?: "recipient_rejected"
        case 502?: "smtp_rejected"  // every 502 case below is a 5xx reply
        case 503?: "smtp_unavailable"
        case 504?: "smtp_timeout"
        default: nil
        }
    }
    var testDescription: String { "smtp-sink \(options.joined(separator: " ")) → \(status.map(String.init) ?? "not 200")" }
}

/// Sends one message through nginx for a fresh user whose integration
/// points at 127.0.0.1:port (no TLS, no login).
private func sendThrough(port: Int, security: String = "none", prefix: String,
                         httpPort: Int? = nil) async throws -> (HTTPResponse, Duration) {
    let (response, elapsed, _) = try await sendThroughNamed(port: port, security: security, prefix: prefix, httpPort: httpPort)
    return (response, elapsed)
}

private func sendThroughNamed(port: Int, security: String = "none", prefix: String,
                              httpPort: Int? = nil) async throws -> (HTTPResponse, Duration, String) {
    let env = try await E2E.get()
    let user = try await env.makeUser(prefix, smtp: SMTPTarget(port: port, security: security))
    let token = try await env.token(user.name)
    let started = ContinuousClock.now
    let response = try await env.send(token: token, to: "rcpt@example.org", subject: uniqueMarker(prefix), message: "body",
                                      port: httpPort)
    return (response, ContinuousClock.now - started, user.name)
}

/// `duration_ms` of the request log line for `user` in `log`.
private func loggedDuration(user: String, log: String) -> Double? {
    let text = String(decoding: FileManager.default.contents(atPath: log) ?? Data(), as: UTF8.self)
    guard let line = text.split(separator: "\n").last(where: { $0.contains("user=\(user) ") }),
          let range = line.range(of: "duration_ms=") else { return nil }
    return Double(line[range.upperBound...].prefix { $0.isNumber || $0 == "." })
}

/// Issue 4, failing SMTP servers, end to end through nginx: the SMTP reply
/// decides the HTTP status, and nothing the server did not accept is a 200.
@Suite("Failing SMTP servers through nginx")
struct SMTPFailureTests {
    @Test func plainSinkControlIsAccepted() async throws {
        let sink = try await SinkServer.start([])
        defer { sink.stop() }
        let (response, _) = try await sendThrough(port: sink.port, prefix: "sinkok")
        #expect(response.status == 200, "\(response)")
        #expect(response.json?["status"] as? String == "Email sent successfully")
    }

    @Test(arguments: [
        SinkCase(options: ["-r", "MAIL"], status: 503, retryAfter: true),
        SinkCase(options: ["-r", "RCPT"], status: 503, retryAfter: true),
        SinkCase(options: ["-r", "DATA"], status: 503, retryAfter: true),
        SinkCase(options: ["-r", "."], status: 503, retryAfter: true),
        SinkCase(options: ["-r", "CONNECT"], status: 503, retryAfter: true),
        SinkCase(options: ["-Q", "MAIL"], status: 503, retryAfter: true),
        SinkCase(options: ["-Q", "RCPT"], status: 503, retryAfter: true),
        SinkCase(options: ["-Q", "DATA"], status: 503, retryAfter: true),
        SinkCase(options: ["-f", "RCPT"], status: 400),
        SinkCase(options: ["-f", "MAIL"], status: 502),
        SinkCase(options: ["-f", "DATA"], status: 502),
        SinkCase(options: ["-f", "."], status: 502),
        SinkCase(options: ["-f", "CONNECT"], status: 502),
        SinkCase(options: ["-q", "."], status: nil),
        SinkCase(options: ["-q", "DATA"], status: nil),
        SinkCase(options: ["-q", "MAIL"], status: nil),
        SinkCase(options: ["-A", "0"], status: nil),
    ])
    func failingServerMapsToStatus(_ scenario: SinkCase) async throws {
        let sink = try await SinkServer.start(scenario.options)
        defer { sink.stop() }
        let (response, _) = try await sendThrough(port: sink.port, prefix: "sinkfail")
        if let status = scenario.status {
            #expect(response.status == status, "\(response)")
            #expect(response.code == scenario.code, "\(response)")
        } else {
            #expect(response.status != 200 && response.status >= 500, "\(response)")
            #expect(["smtp_failed", "delivery_unknown", "smtp_rejected", "smtp_unavailable", "smtp_timeout"].contains(response.code ?? ""), "\(response)")
        }
        #expect(response.status != 401, "the client's token was fine")
        #expect(response.isJSON, "Mailgate's own JSON answer, not nginx's: \(response)")
        #expect(response.detail?.contains("SMTP") == true, "\(response)")
        #expect(response.json?["status"] == nil)
        if scenario.retryAfter {
            let retry = response.header("Retry-After").flatMap { Int($0) }
            #expect(retry != nil && retry! > 0, "Retry-After: \(response)")
        }
    }

    @Test func ehloRejectedFallsBackToHELO() async throws {
        let sink = try await SinkServer.start(["-f", "EHLO"])
        defer { sink.stop() }
        let (response, _) = try await sendThrough(port: sink.port, prefix: "helo")
        #expect(response.status == 200, "\(response)")
    }

    @Test func connectionRefusedIs503WithRetryAfter() async throws {
        let port = try freePort()  // nothing listens there
        let (response, _) = try await sendThrough(port: port, prefix: "refused")
        #expect(response.status == 503, "\(response)")
        #expect(response.header("Retry-After") != nil)
        #expect(response.isJSON)
        #expect(response.code == "smtp_unavailable", "\(response)")
    }

    // -p: without PIPELINING, as smtp-sink answers pipelined commands out of
    // order while it delays one of them.
    @Test(arguments: [["-w", "10"], ["-p", "-W", "MAIL:10"], ["-p", "-W", "RCPT:10"], ["-W", "CONNECT:10"]])
    func serverSlowerThanDeadlineIs504WithinDeadline(options: [String]) async throws {
        let sink = try await SinkServer.start(options)
        defer { sink.stop() }
        // Through the auxiliary instance: mailgate --smtp-timeout 3s.
        let aux = try await E2E.get().aux()
        let (response, elapsed, user) = try await sendThroughNamed(port: sink.port, prefix: "slow", httpPort: aux.port)
        #expect(response.status == 504, "\(response)")
        #expect(response.code == "smtp_timeout", "\(response)")
        #expect(response.isJSON, "Mailgate's JSON 504, not nginx's (fastcgi_read_timeout 30 s): \(response)")
        // Mailgate's own clock: the request took the 3 s deadline, not the
        // server's 10 s (the client's clock includes a loaded test machine).
        let duration = try #require(loggedDuration(user: user, log: aux.log), "request log line for \(user)")
        #expect(duration >= 2500 && duration < 5000, "Mailgate answered after \(duration) ms")
        #expect(elapsed < .seconds(25), "below nginx's fastcgi_read_timeout: \(elapsed)")
    }

    @Test func wrongStoredSMTPPasswordIs502Never401() async throws {
        let env = try await E2E.get()
        var target = env.mainCaptureTarget
        target.password = "wrong-" + env.smtpPassword
        let user = try await env.makeUser("badsmtppw", smtp: target)
        let token = try await env.token(user.name)
        let marker = uniqueMarker("badsmtppw")
        let response = try await env.send(token: token, to: "r@example.org", subject: marker, message: "m")
        #expect(response.status == 502, "\(response)")
        #expect(response.header("WWW-Authenticate") == nil)
        #expect(response.detail?.contains("535") == true, "the SMTP reply goes into detail: \(response)")
        #expect(response.code == "smtp_auth_failed", "\(response)")
        #expect(env.capture.messages(containing: marker).isEmpty)
    }
}
