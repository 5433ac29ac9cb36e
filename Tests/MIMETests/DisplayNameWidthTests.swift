import Foundation
import MIME
import Testing

/// Issue 10: what the address parser accepts can be sent, and a display
/// name never makes a header line longer than SMTP allows.
@Suite struct DisplayNameWidthTests {
    @Test(arguments: [#""a>b"@example.com"#, #""a<b"@example.com"#, #"Name <"x>y"@example.com>"#])
    func angleBracketsInAQuotedLocalPartAreRefused(_ text: String) {
        #expect(throws: AddressError.self) { try EmailAddress.parse(text) }
    }

    @Test func otherQuotedLocalPartsStillParse() throws {
        #expect(try EmailAddress.parse(#""john doe"@example.com"#).address.localPart == #""john doe""#)
    }

    /// 600 `"` are 1,200 octets once escaped: counted as written, the name is
    /// encoded (and folded) instead of overflowing the line.
    @Test(arguments: [600, 480, 300])
    func escapedQuotesAreCountedAsWritten(quotes: Int) throws {
        let name = String(repeating: "\"", count: quotes)
        let box = Mailbox(displayName: name, address: try EmailAddress.parse("r@example.org").address)
        let message = MailMessage(from: box, to: box, subject: "s", body: "b", date: Date(timeIntervalSince1970: 0),
                                  messageID: "x@example.org")
        let rendered = Rendered(try message.render())
        let longest = rendered.headerLines.map(\.utf8.count).max() ?? 0
        #expect(longest <= 998, "a header line of \(longest) octets")
        #expect(!rendered.bareBreak)
        let to = try #require(rendered.field("To"))
        #expect(to.hasSuffix("<r@example.org>"), "\(to.prefix(80))...")
    }
}
