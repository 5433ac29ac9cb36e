import Foundation
import MailgateTesting
import Testing

/// The files a user includes into their own nginx must be valid together,
/// exactly as the README tells them to include them.
@Suite("Shipped nginx configuration")
struct ShippedConfigTests {
    @Test func includesPassNginxConfigTest() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mailgate-e2e-conf-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.copyItem(atPath: "/etc/nginx/fastcgi_params", toPath: dir + "/fastcgi_params")
        let root = E2E.repoRoot
        let config = """
            pid \(dir)/nginx.pid;
            error_log \(dir)/error.log;
            events {}
            http {
                access_log off;
                client_body_temp_path \(dir)/cb; proxy_temp_path \(dir)/p; fastcgi_temp_path \(dir)/f;
                uwsgi_temp_path \(dir)/u; scgi_temp_path \(dir)/s;
                include \(root)/nginx/mailgate-http.conf;
                server {
                    listen 127.0.0.1:\(try freePort());
                    include \(root)/nginx/mailgate.conf;
                }
            }
            """
        try config.write(toFile: dir + "/nginx.conf", atomically: true, encoding: .utf8)
        let result = try runTool("/usr/sbin/nginx", ["-t", "-p", dir, "-c", dir + "/nginx.conf"], in: dir)
        #expect(result.ok, "nginx -t: \(result.stderr)")
        #expect(result.stderr.contains("test is successful"))
    }

    /// The shipped /token limit (10r/m, burst 5) keys an IPv6 client by its
    /// /64: addresses of one /64 share the budget, another /64 has its own,
    /// and IPv4 clients are still keyed by their address.
    @Test func tokenLimitKeysIPv6ClientsByTheirSlash64() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mailgate-e2e-v6-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (nginx, port) = try E2E.startFromTemplate(prefix: dir, name: "nginx-ratelimit",
                                                      template: "shipped-ratelimit-nginx.conf.in")
        defer { nginx.stop() }
        func login(from address: String) throws -> Int {
            let raw = HTTP.request("POST", "/token", headers: [
                ("Content-Type", "application/x-www-form-urlencoded"), ("X-Forwarded-For", address),
            ], body: Array("username=a&password=b".utf8))
            return try HTTP.exchange(port: port, raw, timeout: 10).status
        }
        // 1 + burst 5 pass (502: no Mailgate behind), then 429, from any
        // address of the same /64.
        let sameBlock = (1...7).map { "2001:db8:aa:bb:\(String($0, radix: 16))::\(String($0 * 7, radix: 16))" }
        let statuses = try sameBlock.map { try login(from: $0) }
        #expect(statuses.prefix(6).allSatisfy { $0 != 429 }, "\(statuses)")
        #expect(statuses.last == 429, "the 7th attempt from the same /64 is limited: \(statuses)")
        #expect(try login(from: "2001:db8:aa:bb:ffff:ffff:ffff:ffff") == 429)
        #expect(try login(from: "2001:db8:aa:bc::1") != 429, "another /64 has its own budget")
        // IPv4: still one address, one budget.
        let v4 = try (1...7).map { _ in try login(from: "192.0.2.10") }
        #expect(v4.last == 429 && v4.prefix(6).allSatisfy { $0 != 429 }, "\(v4)")
        #expect(try login(from: "192.0.2.11") != 429)
    }
}
