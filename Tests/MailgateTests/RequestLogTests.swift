import Foundation
import Logging
@testable import Mailgate
import Testing

@Suite struct RequestLogTests {
    @Test func quotedOutcomeCannotEndItsField() {
        #expect(RequestLog.quoted("250 OK") == #""250 OK""#)
        #expect(RequestLog.quoted(#"550 no" user=admin"#) == #""550 no\" user=admin""#)
        #expect(RequestLog.quoted("a\\b") == #""a\\b""#)
        #expect(RequestLog.quoted("a\r\nb\u{7F}") == #""a\x0D\x0Ab\x7F""#)
        #expect(RequestLog.quoted("caf\u{E9}") == "\"caf\u{E9}\"")
    }

    /// Issue 11: every field named; a value from a client or an SMTP
    /// server cannot forge another field, in either format.
    @Test func logfmtNamesEveryFieldAndQuotesWhatIsNotAPlainToken() {
        let fields: Logger.Metadata = [
            "zeta": "last", "smtp": .string(#"550 no" user=admin"#), "status": .stringConvertible(502),
            "method": "POST", "path": .string("/a b\n"), "user": "alice", "duration_ms": "2.5",
        ]
        let line = String(decoding: LineLogHandler.render(format: .logfmt, timestamp: "2026-11-29T10:00:00.000Z",
                                                          level: .info, pid: 42, message: "request",
                                                          fields: LineLogHandler.ordered(fields)),
                          as: UTF8.self)
        #expect(line == #"ts=2026-11-29T10:00:00.000Z level=info pid=42 msg=request method=POST path="/a b\x0A" status=502 user=alice duration_ms=2.5 smtp="550 no\" user=admin" zeta=last"# + "\n")
        #expect(LineLogHandler.logfmtValue("a=b") == #""a=b""#)
        #expect(LineLogHandler.logfmtValue("") == #""""#)
    }

    @Test func jsonIsOneObjectPerLineWithNumbersForStatusAndDuration() throws {
        let fields: Logger.Metadata = [
            "method": "POST", "status": .stringConvertible(200), "duration_ms": "12.3",
            "smtp": .string("250 ok\n{\"forged\": 1}"), "user": "alice",
        ]
        let bytes = LineLogHandler.render(format: .json, timestamp: "2026-11-29T10:00:00.000Z", level: .warning,
                                          pid: 7, message: "request", fields: LineLogHandler.ordered(fields))
        #expect(bytes.last == UInt8(ascii: "\n"))
        #expect(bytes.dropLast().contains(UInt8(ascii: "\n")) == false, "one line")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
        #expect(object["level"] as? String == "warning" && object["pid"] as? Int == 7 && object["msg"] as? String == "request")
        #expect(object["status"] as? Int == 200 && object["duration_ms"] as? Double == 12.3)
        #expect(object["smtp"] as? String == "250 ok\n{\"forged\": 1}")
        #expect(object["forged"] == nil)
        #expect(LineLogHandler.timestamp().count == 24 && LineLogHandler.timestamp().hasSuffix("Z"))
    }

    @Test func routesAreATableWith405ListingTheMethods() throws {
        let fixture = try AppFixture()
        let response = fixture.post("/token", body: "", method: "GET")
        #expect(response.status == 405)
        #expect(response.header("Allow") == "POST")
        #expect(Application.routes.map { "\($0.method) \($0.path)" } == ["POST /token", "POST /smtp/send-email", "GET /health",
                                                                     "GET /metrics", "GET /openapi.json"])
    }
}
