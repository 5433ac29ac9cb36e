import FastCGI
import Foundation
@testable import Mailgate
import SMTP
import Testing

/// Issue 11, in process: `GET /metrics` counts exactly what the application
/// answered. Each AppFixture has its own registry (MetricsSystem is never
/// bootstrapped here), so the counts start at zero in every test.
@Suite struct MetricsTests {
    private let body = #"{"to": "bob@example.org", "subject": "s", "message": "m"}"#
    private static let send = "/smtp/send-email"

    @Test func sendsAndFailuresMoveTheCountersByExactlyThat() throws {
        let fixture = try AppFixture()
        let successes = 4
        for _ in 0..<successes { #expect(try fixture.send(body).status == 200) }
        let failures: [(SMTPError, Int)] = [
            (SMTPError(.timeout, stage: .message), 504),
            (SMTPError(.timeout, stage: .connect), 504),
            (SMTPError(.reply(SMTPReply(code: 550, lines: ["No such user"])), stage: .rcpt), 400),
            (SMTPError(.connectionRefused, stage: .connect), 503),
        ]
        for (error, status) in failures {
            fixture.transport.fail(with: error)
            #expect(try fixture.send(body).status == status)
        }
        fixture.transport.fail(with: nil)
        // Refused before any SMTP traffic: sends, but not SMTP sends.
        #expect(fixture.post(Self.send, body: body).status == 401)
        #expect(try fixture.send(#"{"to": 1}"#).status == 422)

        let page = fixture.post("/metrics", body: "", method: "GET")
        #expect(page.status == 200)
        #expect(page.header("Content-Type") == "text/plain; version=0.0.4; charset=utf-8")
        let scrape = try Exposition(page.text)
        #expect(scrape.sends == ["sent": 4, "smtp_timeout": 2, "recipient_rejected": 1, "smtp_unavailable": 1,
                                 "not_authenticated": 1, "validation_error": 1])
        #expect(scrape.requests(route: Self.send) == ["200": 4, "504": 2, "400": 1, "503": 1, "401": 1, "422": 1])
        #expect(scrape.requests(route: "/metrics").isEmpty, "a scrape is counted once it has been answered")

        // Every transport.send, good or bad, and nothing else.
        let duration = "mailgate_smtp_send_duration_seconds"
        #expect(scrape.value(duration + "_count") == Double(successes + failures.count))
        #expect(scrape.value(duration + "_bucket", ["le": "+Inf"]) == Double(successes + failures.count))
        let bounds = scrape.samples.filter { $0.name == duration + "_bucket" }.compactMap { Double($0.labels["le"] ?? "") }
        #expect(bounds == [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, .infinity])
        #expect(scrape.value(duration + "_sum") >= 0)
        #expect(scrape.types[duration] == "histogram")
        #expect(scrape.types["mailgate_sends_total"] == "counter")
        #expect(scrape.types["mailgate_http_requests_total"] == "counter")
        // The test transport pools nothing: the gauges are there, at 0.
        #expect(scrape.types["mailgate_smtp_connections_open"] == "gauge")
        #expect(scrape.value("mailgate_smtp_connections_open") == 0)
        #expect(scrape.value("mailgate_smtp_connections_idle") == 0)

        let again = try Exposition(fixture.post("/metrics", body: "", method: "GET").text)
        #expect(again.requests(route: "/metrics") == ["200": 1])
        #expect(again.sends == scrape.sends, "a scrape changes no count but its own")
    }

    /// The route label is a route table path or "other", whatever the
    /// client sends; the send counter only counts requests the send
    /// responder answered (a 405 is not a send).
    @Test func routeLabelsComeFromTheRouteTableNeverFromTheClient() throws {
        let fixture = try AppFixture { $0.basePath = "/api" }
        let probe = "probe-\(UUID().uuidString)"
        #expect(fixture.post("/api/\(probe)", body: "", method: "GET").status == 404)
        #expect(fixture.post("/\(probe)/health", body: "", method: "GET").status == 404)
        #expect(fixture.post("/api/smtp/send-email", body: "", method: "GET").status == 405)
        #expect(fixture.post("/api/health", body: "", method: "GET").status == 200)
        #expect(fixture.post("/api/health", body: "", method: "DELETE").status == 405)
        let page = fixture.post("/api/metrics", body: "", method: "GET")
        #expect(page.status == 200)
        #expect(!page.text.contains(probe))
        let scrape = try Exposition(page.text)
        #expect(scrape.requests(route: "other") == ["404": 2])
        #expect(scrape.requests(route: Self.send) == ["405": 1])
        #expect(scrape.requests(route: "/health") == ["200": 1, "405": 1])
        let routes = Set(scrape.samples.filter { $0.name == "mailgate_http_requests_total" }.compactMap { $0.labels["route"] })
        #expect(routes.isSubset(of: Set(Application.routes.map(\.path) + ["other"])), "\(routes)")
        #expect(scrape.sends == ["sent": 0])
    }

    /// Quota refusals are counted, and so are replays, which send nothing:
    /// they are not counted as sends.
    @Test func quotaRefusalsAndIdempotentReplaysAreCounted() throws {
        let fixture = try AppFixture { $0.defaultQuota = [.minute: 1] }
        let first = try fixture.send(body, idempotencyKey: "k-1")
        #expect(first.status == 200)
        let replay = try fixture.send(body, idempotencyKey: "k-1")
        #expect(replay.status == 200 && replay.header("Idempotent-Replayed") == "true")
        #expect(try fixture.send(body).status == 429)
        #expect(fixture.transport.sent.count == 1)

        let scrape = try Exposition(fixture.post("/metrics", body: "", method: "GET").text)
        #expect(scrape.value("mailgate_quota_refusals_total") == 1)
        #expect(scrape.value("mailgate_idempotent_replays_total") == 1)
        #expect(scrape.sends == ["sent": 1, "quota_exceeded": 1])
        #expect(scrape.requests(route: Self.send) == ["200": 2, "429": 1])
        #expect(scrape.value("mailgate_smtp_send_duration_seconds_count") == 1)
    }

    @Test func eachApplicationCountsForItselfOnly() throws {
        let one = try AppFixture(), other = try AppFixture()
        #expect(try one.send(body).status == 200)
        let scrape = try Exposition(other.post("/metrics", body: "", method: "GET").text)
        #expect(scrape.sends == ["sent": 0])
        #expect(scrape.requests(route: Self.send).isEmpty)
        #expect(scrape.value("mailgate_smtp_send_duration_seconds_count") == 0)
    }
}

/// The Prometheus text format as the application writes it: `# TYPE`
/// lines and `name{label="value",...} number` samples (label values here
/// never need escapes, which the parser refuses rather than guesses).
struct Exposition {
    struct Sample {
        var name: String
        var labels: [String: String]
        var value: Double
    }

    var samples: [Sample] = []
    var types: [String: String] = [:]

    init(_ text: String) throws {
        for line in text.split(separator: "\n") {
            if line.hasPrefix("# TYPE ") {
                let parts = line.split(separator: " ")
                guard parts.count == 4 else { throw ParseError(line: String(line)) }
                types[String(parts[2])] = String(parts[3])
                continue
            }
            if line.hasPrefix("#") { continue }
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else {
                throw ParseError(line: String(line))
            }
            let series = line[..<space]
            var labels: [String: String] = [:]
            var name = String(series)
            if let open = series.firstIndex(of: "{") {
                guard series.last == "}", !series.contains("\\") else { throw ParseError(line: String(line)) }
                name = String(series[..<open])
                for pair in series[series.index(after: open)..<series.index(before: series.endIndex)].split(separator: ",") {
                    let halves = pair.split(separator: "=", maxSplits: 1)
                    guard halves.count == 2, halves[1].count >= 2, halves[1].first == "\"", halves[1].last == "\"" else {
                        throw ParseError(line: String(line))
                    }
                    labels[String(halves[0])] = String(halves[1].dropFirst().dropLast())
                }
            }
            samples.append(Sample(name: name, labels: labels, value: value))
        }
    }

    struct ParseError: Error { var line: String }

    /// The sample's value; 0 when there is none (a series not made yet).
    func value(_ name: String, _ labels: [String: String] = [:]) -> Double {
        samples.first { $0.name == name && $0.labels == labels }?.value ?? 0
    }

    /// `mailgate_sends_total` by code.
    var sends: [String: Double] {
        var out: [String: Double] = [:]
        for sample in samples where sample.name == "mailgate_sends_total" { out[sample.labels["code"] ?? "?"] = sample.value }
        return out
    }

    /// `mailgate_http_requests_total` of one route, by status.
    func requests(route: String) -> [String: Double] {
        var out: [String: Double] = [:]
        for sample in samples where sample.name == "mailgate_http_requests_total" && sample.labels["route"] == route {
            out[sample.labels["status"] ?? "?"] = sample.value
        }
        return out
    }
}
