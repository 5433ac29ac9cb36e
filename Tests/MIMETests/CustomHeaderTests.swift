import Foundation
import Testing
@testable import MIME

@Suite struct CustomHeaderTests {
    static let refused = [
        "From", "To", "Cc", "Bcc", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type",
        "Received", "Return-Path", "DKIM-Signature", "Sender",
        // Case and near-misses.
        "from", "BCC", "content-transfer-encoding", "Reply-To", "X-", "x-", "XFoo", "List-Unsubscribe-Posts",
        "List", "Resent-From", "Authentication-Results", "ARC-Seal", "Disposition-Notification-To",
    ]

    @Test(arguments: refused)
    func disallowedNamesAreRefused(_ name: String) throws {
        let msg = try richMessage(headers: [CustomHeader(name: "X-Ok", value: "1"), CustomHeader(name: name, value: "x")])
        #expect(throws: HeaderError.headerNotAllowed(name)) { try msg.render() }
        #expect(HeaderError.headerNotAllowed(name).description == "Header not allowed: \(name)")
    }

    static let allowed = [
        "X-Campaign", "x-lowercase", "X-A", "List-Unsubscribe", "list-unsubscribe-post", "List-Id", "In-Reply-To",
        "REFERENCES", "Auto-Submitted", "Precedence", "Importance", "Priority",
    ]

    @Test func allowedNamesAreRenderedInOrderAfterMessageID() throws {
        let headers = Self.allowed.enumerated().map { CustomHeader(name: $1, value: "value \($0)") }
            + [CustomHeader(name: "X-Campaign", value: "again"), CustomHeader(name: "X-Empty", value: "")]
        let bytes = try richMessage(headers: headers).render()
        checkWireFormat(bytes)
        let rendered = Rendered(bytes)
        let names = rendered.fields.map(\.name)
        let idIndex = try #require(names.firstIndex(of: "Message-ID"))
        #expect(Array(names[(idIndex + 1)...]) == headers.map(\.name) + ["MIME-Version", "Content-Type",
                                                                        "Content-Transfer-Encoding"])
        #expect(rendered.headerLines.contains("List-Unsubscribe: value 3"))
        #expect(rendered.headerLines.contains("X-Empty:"))

        let parsed = try parseMIMEWithPython(bytes)
        #expect(parsed.unexpectedDefects.isEmpty, "\(parsed.defects)")
        #expect(parsed.headerValues("X-Campaign") == ["value 0", "again"])
        #expect(parsed.headerValues("REFERENCES") == ["value 7"])
    }

    /// A 76-character name is valid; its value still starts on the name's
    /// line (a fold right after the colon would read as a leading space).
    @Test func theLongestNameKeepsItsValueOnItsLine() throws {
        let name = "X-" + String(repeating: "n", count: 74)
        let values = ["short", "Zoë Ünïcode", (1...30).map { "w\($0)" }.joined(separator: " ")]
        let bytes = try richMessage(headers: values.map { CustomHeader(name: name, value: $0) }).render()
        let rendered = Rendered(bytes)
        #expect(rendered.headerLines.contains(name + ": short"))
        for line in rendered.headerLines {
            #expect(line.utf8.count <= (line.hasPrefix(name) ? 998 : 78), "\(line)")
            #expect(line != name + ":")
        }
        let parsed = try parseMIMEWithPython(bytes)
        #expect(parsed.unexpectedDefects.isEmpty, "\(parsed.defects)")
        #expect(parsed.headerValues(name) == values)
    }

    @Test func listUnsubscribeIsWrittenVerbatim() throws {
        let value = "<mailto:unsubscribe@example.com?subject=unsubscribe>, <https://example.com/u/abc123>"
        let bytes = try richMessage(headers: [
            CustomHeader(name: "List-Unsubscribe", value: value),
            CustomHeader(name: "List-Unsubscribe-Post", value: "List-Unsubscribe=One-Click"),
        ]).render()
        checkWireFormat(bytes)
        let rendered = Rendered(bytes)
        #expect(rendered.field("List-Unsubscribe") == " " + value)
        #expect(rendered.headerLines.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"))
        let parsed = try parseMIMEWithPython(bytes)
        #expect(parsed.headerValues("List-Unsubscribe") == [value])
    }

    static let invalidNames = [
        "", "X Foo", "X-Foo:", ":", "X-Ü", "X-\u{7F}", "X-\t", "X-\u{0}", "X-\r\nBcc",
        "X-" + String(repeating: "n", count: 75),  // 77 characters
    ]

    @Test(arguments: invalidNames)
    func invalidNamesAreRefused(_ name: String) throws {
        let msg = try richMessage(headers: [CustomHeader(name: name, value: "x")])
        // Names over 64 Unicode scalars come back cut short.
        var expected = String.UnicodeScalarView()
        expected.append(contentsOf: name.unicodeScalars.prefix(64))
        if name.unicodeScalars.count > 64 { expected.append("…") }
        #expect(throws: HeaderError.invalidHeaderName(String(expected))) { try msg.render() }
    }

    @Test func invalidNameIsShortenedInTheError() throws {
        let name = String(repeating: "ü", count: 10_000)
        let msg = try richMessage(headers: [CustomHeader(name: name, value: "x")])
        let expected = String(repeating: "ü", count: 64) + "…"
        #expect(throws: HeaderError.invalidHeaderName(expected)) { try msg.render() }
        #expect(HeaderError.invalidHeaderName("X Y").description
            == "Header not allowed: \"X Y\" is not a valid header name")
    }

    @Test(arguments: ["\r", "\n", "\r\n", "\u{0}", "ok\r\nBcc: victim@example.com"])
    func lineBreaksAndNULInValuesAreRefused(_ bad: String) throws {
        let msg = try richMessage(headers: [CustomHeader(name: "X-Foo", value: "a" + bad + "b")])
        #expect(throws: HeaderError.headerContainsControlCharacter(name: "X-Foo")) { try msg.render() }
        #expect(HeaderError.headerContainsControlCharacter(name: "X-Foo").description
            == "Header X-Foo must not contain CR, LF or NUL")
    }

    @Test func theFirstBadHeaderInOrderIsReported() throws {
        let msg = try richMessage(headers: [
            CustomHeader(name: "X-Ok", value: "fine"),
            CustomHeader(name: "X-Bad", value: "a\nb"),
            CustomHeader(name: "From", value: "x"),
        ])
        #expect(throws: HeaderError.headerContainsControlCharacter(name: "X-Bad")) { try msg.render() }
    }

    static let encodedValues = [
        "Grüße aus Köln 🎉",
        "tab\tinside",
        " leading space",
        "looks =?utf-8?B?Zm9v?= encoded",
        String(repeating: "長い値", count: 200),
        String(repeating: "x", count: 3_000),  // no break opportunity: encoded to fold
    ]

    @Test func valuesThatNeedEncodingAreEncodedWordsPythonDecodes() throws {
        let headers = Self.encodedValues.enumerated().map { CustomHeader(name: "X-Value-\($0)", value: $1) }
            + [CustomHeader(name: "X-" + String(repeating: "L", count: 74), value: "Zoë")]
        let bytes = try richMessage(headers: headers).render()
        checkWireFormat(bytes)
        let rendered = Rendered(bytes)
        for (i, value) in Self.encodedValues.enumerated() {
            let raw = try #require(rendered.field("X-Value-\(i)"))
            let words = try #require(decodeEncodedWords(raw))
            #expect(words.joined() == value)
        }
        let parsed = try parseMIMEWithPython(bytes)
        #expect(parsed.unexpectedDefects.isEmpty, "\(parsed.defects)")
        for (i, value) in Self.encodedValues.enumerated() {
            #expect(parsed.headerValues("X-Value-\(i)") == [value])
        }
        #expect(parsed.headerValues("X-" + String(repeating: "L", count: 74)) == ["Zoë"])
    }

    @Test func longValuesOfShortWordsAreFoldedNotEncoded() throws {
        let references = (1...60).map { "<\($0).0123456789abcdef@mail.example.com>" }.joined(separator: " ")
        let words = (1...400).map { "word\($0)" }.joined(separator: " ")  // ~3,000 octets
        let bytes = try richMessage(headers: [
            CustomHeader(name: "References", value: references),
            CustomHeader(name: "X-Words", value: words),
        ]).render()
        checkWireFormat(bytes)
        let rendered = Rendered(bytes)
        #expect(rendered.field("References") == " " + references)
        #expect(rendered.field("X-Words") == " " + words)
        let referenceLines = rendered.headerLines.drop(while: { !$0.hasPrefix("References:") })
            .prefix(while: { $0.hasPrefix("References:") || $0.hasPrefix(" ") })
        #expect(referenceLines.count > 20)
        let parsed = try parseMIMEWithPython(bytes)
        #expect(parsed.unexpectedDefects.isEmpty, "\(parsed.defects)")
        #expect(parsed.headerValues("References") == [references])
        #expect(parsed.headerValues("X-Words") == [words])
    }

    @Test func anUnbreakableRunJustUnderTheLimitStaysRawAndUnder998() throws {
        // 900 octets without a space after a 76-character name: the longest
        // line a raw value can make.
        let name = "X-" + String(repeating: "n", count: 74)
        let value = "a " + String(repeating: "b", count: 899)
        let bytes = try richMessage(headers: [CustomHeader(name: name, value: value)]).render()
        checkWireFormat(bytes)
        #expect(Rendered(bytes).field(name) == " " + value)
        #expect(Rendered(bytes).headerLines.contains(" " + String(repeating: "b", count: 899)))
        let parsed = try parseMIMEWithPython(bytes)
        #expect(parsed.headerValues(name) == [value])
    }
}
