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

    @Test func tokenHasNoSpaceQuoteOrControl() {
        #expect(RequestLog.token("/smtp/send-email") == "/smtp/send-email")
        #expect(RequestLog.token("/a b\"c%d") == "/a%20b%22c%25d")
        #expect(RequestLog.token("/\u{E9}\n") == "/%C3%A9%0A")
    }

    @Test func routesAreATableWith405ListingTheMethods() throws {
        let fixture = try AppFixture()
        let response = fixture.post("/token", body: "", method: "GET")
        #expect(response.status == 405)
        #expect(response.header("Allow") == "POST")
        #expect(Application.routes.map { "\($0.method) \($0.path)" } == ["POST /token", "POST /smtp/send-email", "GET /health"])
    }
}
