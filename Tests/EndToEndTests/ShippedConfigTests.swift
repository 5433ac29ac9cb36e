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
}
