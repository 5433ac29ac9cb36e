@testable import FastCGI
import Testing

@Suite struct BodyPolicyTests {
    @Test(arguments: [
        (nil as String?, BodyPolicy.Decision.read(0)),
        ("", .read(0)),
        ("0", .read(0)),
        ("1024", .read(1024)),
        ("2048", .refuse(.tooLarge(declared: 2048, limit: 1024))),
        ("-1", .refuse(.invalidLength("-1"))),
        ("+5", .refuse(.invalidLength("+5"))),
        (" 5", .refuse(.invalidLength(" 5"))),
        ("0x10", .refuse(.invalidLength("0x10"))),
        ("99999999999999999999999", .refuse(.invalidLength("99999999999999999999999"))),
    ])
    func decidesFromContentLength(header: String?, decision: BodyPolicy.Decision) {
        #expect(BodyPolicy.decide(contentLength: header, limit: 1024) == decision)
    }
}

@Suite struct ResponseTests {
    @Test func serializesStatusHeadersLengthAndBody() {
        var out: [UInt8] = []
        CGIResponse(status: 401, headers: [("Content-Type", "application/json"), ("WWW-Authenticate", "Bearer")],
                    body: Array(#"{"detail": "x"}"#.utf8)).serialize(into: &out)
        #expect(String(decoding: out, as: UTF8.self) ==
            "Status: 401 Unauthorized\r\nContent-Type: application/json\r\nWWW-Authenticate: Bearer\r\nContent-Length: 15\r\n\r\n{\"detail\": \"x\"}")
    }
}

@Suite struct ListenAddressTests {
    @Test func acceptsLoopbackOnly() throws {
        #expect(try ListenAddress.parseTCP("127.0.0.1:9000") == .tcp(host: "127.0.0.1", port: 9000))
        #expect(try ListenAddress.parseTCP("localhost:9000") == .tcp(host: "127.0.0.1", port: 9000))
        #expect(try ListenAddress.parseTCP("[::1]:9000") == .tcp(host: "::1", port: 9000))
        for bad in ["0.0.0.0:9000", "10.0.0.1:9000", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", "example.com:80"] {
            #expect(throws: FastCGIError.self) { try ListenAddress.parseTCP(bad) }
        }
    }
}
