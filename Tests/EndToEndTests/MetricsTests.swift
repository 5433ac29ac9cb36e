import Foundation
import MailgateTesting
import Testing

/// Issue 11: `GET /metrics` through nginx, read by Prometheus's own Python
/// parser. A dedicated `mailgate serve` + nginx pair, so that no other test
/// moves its counts.
@Suite("Metrics")
struct EndToEndMetricsTests {
    @Test func sendsMoveTheCountersByExactlyTheirNumber() async throws {
        let env = try await E2E.get()
        let socket = "\(env.dir)/metrics-\(Counter.shared.next()).sock"
        let mailgate = try await blocking {
            try E2E.startMailgate(bin: env.bin, dataDir: env.dataDir, socket: socket, log: socket + ".log",
                                  extra: ["--threads", "2", "--ca-file", env.caBundle], in: env.dir)
        }
        defer { mailgate.stop() }
        let (nginx, port) = try await blocking {
            try E2E.startNginx(in: env.dir, name: "nginx-metrics-\(Counter.shared.next())", socket: socket, rate: "100r/s")
        }
        defer { nginx.stop() }
        let user = try await env.makeMailUser("metrics")
        let token = try await env.token(user.name)

        let before = try await scrape(env, port: port)
        let sends = 3
        for index in 0..<sends {
            let response = try await env.send(token: token, to: "r@example.org", subject: uniqueMarker("metrics-\(index)"),
                                              message: "counted", port: port)
            #expect(response.status == 200, "\(response)")
        }
        let after = try await scrape(env, port: port)

        #expect(after.type("mailgate_sends") == "counter")
        #expect(after.type("mailgate_http_requests") == "counter")
        #expect(after.type("mailgate_smtp_send_duration_seconds") == "histogram")
        #expect(after.type("mailgate_smtp_connections_open") == "gauge")
        #expect(after.value("mailgate_sends_total", ["code": "sent"]) - before.value("mailgate_sends_total", ["code": "sent"])
                == Double(sends))
        let sendRoute = ["route": "/smtp/send-email", "status": "200"]
        #expect(after.value("mailgate_http_requests_total", sendRoute) - before.value("mailgate_http_requests_total", sendRoute)
                == Double(sends))
        // The first scrape is counted once answered; the second is not in itself.
        let metricsRoute = ["route": "/metrics", "status": "200"]
        #expect(after.value("mailgate_http_requests_total", metricsRoute)
                - before.value("mailgate_http_requests_total", metricsRoute) == 1)
        let count = "mailgate_smtp_send_duration_seconds_count"
        #expect(after.value(count) - before.value(count) == Double(sends))
        let inf = "mailgate_smtp_send_duration_seconds_bucket"
        #expect(after.value(inf, ["le": "+Inf"]) - before.value(inf, ["le": "+Inf"]) == Double(sends))
        #expect(after.value("mailgate_smtp_send_duration_seconds_sum") > before.value("mailgate_smtp_send_duration_seconds_sum"))
        // The sends went one after another over one pooled connection, idle now.
        let open = after.value("mailgate_smtp_connections_open"), idle = after.value("mailgate_smtp_connections_idle")
        #expect(open >= 1 && open == idle, "open \(open), idle \(idle)")
        // Route labels are route paths (or "other", in-process tests: nginx
        // only forwards the shipped routes).
        let routes = Set(after.samples("mailgate_http_requests_total").compactMap { $0.labels["route"] })
        #expect(routes.isSubset(of: ["/token", "/smtp/send-email", "/health", "/metrics", "other"]), "\(routes)")
    }

    /// The shipped location lets only loopback read /metrics: nginx with the
    /// shipped includes takes the client address from X-Forwarded-For
    /// (realip, as behind a proxy), and no Mailgate runs behind it, so an
    /// allowed request gets 502 and a refused one nginx's 403.
    @Test func theShippedConfigLetsOnlyLoopbackRead() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mailgate-e2e-metrics-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (nginx, port) = try E2E.startFromTemplate(prefix: dir, name: "nginx-metrics-acl",
                                                      template: "shipped-ratelimit-nginx.conf.in")
        defer { nginx.stop() }
        func status(from address: String?) throws -> Int {
            let headers = address.map { [("X-Forwarded-For", $0)] } ?? []
            return try HTTP.exchange(port: port, HTTP.request("GET", "/metrics", headers: headers), timeout: 10).status
        }
        #expect(try status(from: nil) == 502, "127.0.0.1 itself")
        #expect(try status(from: "127.0.0.1") == 502)
        #expect(try status(from: "::1") == 502)
        for outsider in ["192.0.2.10", "10.0.0.1", "127.0.0.2", "2001:db8::1", "::ffff:192.0.2.10"] {
            #expect(try status(from: outsider) == 403, "\(outsider)")
        }
        // /health stays open to everyone.
        let health = try HTTP.exchange(port: port, HTTP.request("GET", "/health", headers: [("X-Forwarded-For", "192.0.2.10")]),
                                       timeout: 10)
        #expect(health.status == 502)
    }

    private func scrape(_ env: E2E, port: Int) async throws -> Scrape {
        let response = try await env.http(HTTP.request("GET", "/metrics"), port: port)
        #expect(response.status == 200, "\(response)")
        #expect(response.header("Content-Type") == "text/plain; version=0.0.4; charset=utf-8")
        let parsed = try await blocking {
            try runTool(E2E.python, [PythonHelper.path("parse_prometheus.py")], in: env.dir, stdin: response.body)
        }
        guard parsed.ok else { throw HarnessError("prometheus_client refused the exposition: \(parsed.stderr)\n\(response.text)") }
        return try Scrape(json: parsed.stdout)
    }
}

/// Metric families as prometheus_client's text parser returned them.
private struct Scrape {
    struct Sample {
        var name: String
        var labels: [String: String]
        var value: Double
    }

    private var families: [(name: String, type: String, samples: [Sample])] = []

    init(json: [UInt8]) throws {
        guard let list = try JSONSerialization.jsonObject(with: Data(json)) as? [[String: Any]] else {
            throw HarnessError("parse_prometheus.py printed no list")
        }
        for family in list {
            let samples = (family["samples"] as? [[String: Any]] ?? []).map {
                Sample(name: $0["name"] as? String ?? "", labels: $0["labels"] as? [String: String] ?? [:],
                       value: ($0["value"] as? NSNumber)?.doubleValue ?? .nan)
            }
            families.append((family["name"] as? String ?? "", family["type"] as? String ?? "", samples))
        }
    }

    func type(_ family: String) -> String? { families.first { $0.name == family }?.type }

    func samples(_ name: String) -> [Sample] { families.flatMap(\.samples).filter { $0.name == name } }

    /// The sample's value; 0 when there is none yet (a series made on first use).
    func value(_ name: String, _ labels: [String: String] = [:]) -> Double {
        samples(name).first { $0.labels == labels }?.value ?? 0
    }
}
