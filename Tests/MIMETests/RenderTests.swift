import Foundation
import Testing
@testable import MIME

@Suite struct RenderTests {
    @Test func rendersSimpleASCIIMessageExactly() throws {
        let bytes = try message(subject: "Hello", body: "Line 1\nLine 2").render()
        let expected =
            "Date: Wed, 25 Nov 2026 11:09:25 +0000\r\n"
            + "From: Mailgate <noreply@example.com>\r\n"
            + "To: Jane Doe <jane@example.org>\r\n"
            + "Subject: Hello\r\n"
            + "Message-ID: <0123456789abcdef0123456789abcdef.19abc@example.com>\r\n"
            + "MIME-Version: 1.0\r\n"
            + "Content-Type: text/plain; charset=utf-8\r\n"
            + "Content-Transfer-Encoding: 7bit\r\n"
            + "\r\n"
            + "Line 1\r\nLine 2\r\n"
        #expect(String(decoding: bytes, as: UTF8.self) == expected)
    }

    @Test func requiredHeadersArePresentAndNoBcc() throws {
        let rendered = Rendered(try message().render())
        for name in ["Date", "From", "To", "Subject", "Message-ID", "MIME-Version", "Content-Type",
                     "Content-Transfer-Encoding"] {
            #expect(rendered.fields.filter { $0.name == name }.count == 1, "\(name)")
        }
        #expect(rendered.field("Bcc") == nil)
        #expect(rendered.field("MIME-Version") == " 1.0")
        #expect(rendered.field("Message-ID") == " <0123456789abcdef0123456789abcdef.19abc@example.com>")
    }

    @Test func dateMatchesPOSIXFormatter() throws {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss Z"
        var rng = SystemRandomNumberGenerator()
        var stamps: [Double] = [0, 951_782_400, 4_107_542_400, 1_795_604_965, 253_402_300_799]
        for _ in 0..<500 { stamps.append(Double(UInt64.random(in: 0...4_102_444_800, using: &rng))) }
        for stamp in stamps {
            let date = Date(timeIntervalSince1970: stamp + 0.75)
            var out: [UInt8] = []
            RFC5322Date.append(date, to: &out)
            #expect(String(decoding: out, as: UTF8.self) == formatter.string(from: date), "\(stamp)")
        }
        // Out-of-range dates are clamped rather than trapping.
        for odd in [Date.distantPast, Date.distantFuture, Date(timeIntervalSince1970: .nan)] {
            var out: [UInt8] = []
            RFC5322Date.append(odd, to: &out)
            #expect(out.count == "Thu, 01 Jan 1970 00:00:00 +0000".utf8.count)
        }
    }

    @Test(arguments: ["\r", "\n", "\r\n", "\u{0}", "x\r\nBcc: evil@example.com"])
    func subjectWithLineBreakOrNULThrows(_ bad: String) throws {
        let msg = try message(subject: "Hi" + bad + "there")
        #expect(throws: HeaderError.containsControlCharacter(field: "Subject")) { try msg.render() }
    }

    @Test func displayNamesWithLineBreaksThrow() throws {
        let address = try EmailAddress(localPart: "a", domain: "example.com")
        var msg = try message()
        msg.to = [Mailbox(displayName: "Eve\r\nBcc: victim@example.com", address: address)]
        #expect(throws: HeaderError.containsControlCharacter(field: "To")) { try msg.render() }
        msg = try message()
        msg.from = Mailbox(displayName: "Eve\n", address: address)
        #expect(throws: HeaderError.containsControlCharacter(field: "From")) { try msg.render() }
    }

    @Test(arguments: ["", "a b@example.com", "a\r\n@example.com", "a>b@example.com", "é@example.com"])
    func badMessageIDThrows(_ id: String) throws {
        let msg = try message(messageID: id)
        #expect(throws: HeaderError.containsControlCharacter(field: "Message-ID")) { try msg.render() }
    }

    @Test func messageIDInAngleBracketsIsNotDoubled() throws {
        let rendered = Rendered(try message(messageID: "<x.y@example.com>").render())
        #expect(rendered.field("Message-ID") == " <x.y@example.com>")
    }

    @Test func headerErrorDescription() {
        #expect(HeaderError.containsControlCharacter(field: "Subject").description.contains("Subject"))
    }

    // MARK: Subjects

    @Test(arguments: [
        "Grüße aus Köln",
        "🎉🎉 Party 🎉🎉",
        String(repeating: "👨‍👩‍👧‍👦", count: 40),  // 25-octet clusters
        String(repeating: "e\u{301}\u{302}\u{303}\u{304}\u{305}\u{306}\u{307}\u{308}\u{309}\u{30A}\u{30B}\u{30C}\u{30D}\u{30E}\u{30F}\u{310}\u{311}\u{312}\u{313}\u{314}\u{315}\u{316}\u{317}", count: 3),  // 47-octet cluster
        "Looks like =?utf-8?B?Zm9v?= an encoded word",
        " leading and trailing ",
        "tab\tinside",
        String(repeating: "長い件名", count: 200),
        String(repeating: "x", count: 5_000),
    ])
    func encodedSubjectRoundTripsAndStaysShort(_ subject: String) throws {
        let rendered = Rendered(try message(subject: subject).render())
        let subjectStart = try #require(rendered.headerLines.firstIndex(where: { $0.hasPrefix("Subject: ") }))
        var physical = [rendered.headerLines[subjectStart]]
        for line in rendered.headerLines[(subjectStart + 1)...] {
            guard line.hasPrefix(" ") else { break }
            physical.append(line)
        }
        for line in physical {
            #expect(line.utf8.count <= 76, "\(line)")
        }
        let value = try #require(rendered.field("Subject"))
        let words = try #require(decodeEncodedWords(value))
        #expect(words.joined() == subject)
        // No word ends inside an extended grapheme cluster (when a cluster
        // fits in one word at all).
        if subject.allSatisfy({ $0.utf8.count <= 45 }) {
            #expect(words.map(\.count).reduce(0, +) == subject.count)
        }
    }

    @Test func longASCIISubjectIsFoldedAtSpaces() throws {
        let subject = (1...120).map { "word\($0)" }.joined(separator: " ")  // ~800 octets
        let rendered = Rendered(try message(subject: subject).render())
        let value = try #require(rendered.field("Subject"))
        #expect(value == " " + subject)  // unfolding (removing CRLF) restores it
        let lines = rendered.headerLines.drop(while: { !$0.hasPrefix("Subject:") })
            .prefix(while: { $0.hasPrefix("Subject:") || $0.hasPrefix(" ") })
        #expect(lines.count > 5)
        for line in lines {
            #expect(line.utf8.count <= 78)
            #expect(line.contains(where: { $0 != " " }))
        }
    }

    @Test func shortASCIISubjectIsVerbatim() throws {
        let rendered = Rendered(try message(subject: "Re: [ticket #42] it's (mostly) fixed!").render())
        #expect(rendered.field("Subject") == " Re: [ticket #42] it's (mostly) fixed!")
    }

    // MARK: Display names

    @Test(arguments: [
        ("Jane Doe", "Jane Doe"),
        ("Doe, Jane", "\"Doe, Jane\""),
        ("J. R. \"Bob\" Dobbs", "\"J. R. \\\"Bob\\\" Dobbs\""),
        ("back\\slash", "\"back\\\\slash\""),
    ])
    func asciiDisplayNamesAreQuotedWhenNeeded(_ name: String, _ rendered: String) throws {
        var msg = try message()
        msg.to = [Mailbox(displayName: name, address: try EmailAddress(localPart: "j", domain: "example.org"))]
        let value = Rendered(try msg.render()).field("To")
        #expect(value == " \(rendered) <j@example.org>")
    }

    @Test(arguments: [nil, "", "   "])
    func absentDisplayNameRendersBareAddress(_ name: String?) throws {
        var msg = try message()
        msg.to = [Mailbox(displayName: name, address: try EmailAddress(localPart: "j", domain: "example.org"))]
        #expect(Rendered(try msg.render()).field("To") == " j@example.org")
    }

    @Test func nonASCIIDisplayNameIsEncoded() throws {
        var msg = try message()
        msg.to = [Mailbox(displayName: "Zoë Ünïcode 🎉", address: try EmailAddress(localPart: "z", domain: "example.org"))]
        let value = try #require(Rendered(try msg.render()).field("To"))
        #expect(value.hasSuffix(" <z@example.org>"))
        let words = try #require(decodeEncodedWords(String(value.dropLast(" <z@example.org>".count))))
        #expect(words.joined() == "Zoë Ünïcode 🎉")
    }

    // MARK: Bodies

    @Test(arguments: [
        ("a\nb", "a\r\nb\r\n"),
        ("a\rb", "a\r\nb\r\n"),
        ("a\r\nb\r\n", "a\r\nb\r\n"),
        ("a\r\r\nb", "a\r\n\r\nb\r\n"),
        ("a\n\rb", "a\r\n\r\nb\r\n"),
        ("\n.\n", "\r\n.\r\n"),
        ("", ""),
    ])
    func sevenBitBodyLineEndingsAreNormalised(_ body: String, _ expected: String) throws {
        let bytes = try message(body: body).render()
        let text = String(decoding: bytes, as: UTF8.self)
        #expect(text.contains("Content-Transfer-Encoding: 7bit\r\n"))
        let bodyPart = try #require(text.range(of: "\r\n\r\n")).upperBound
        #expect(String(text[bodyPart...]) == expected)
    }

    static let qpBodies: [String] = [
        "Grüße\nZeile zwei",
        String(repeating: "x", count: 100_000),
        String(repeating: "é", count: 5_000) + "\n" + String(repeating: "=", count: 300),
        "ü trailing space \ntrailing tab\t\nend ",
        "nul \u{0} and escape \u{1B}",
        "a\r\rb\r\r\nc\n\n\r" + String(repeating: "ü", count: 2),
        String(repeating: "y", count: 999),
        String(repeating: "y ", count: 600),
    ]

    @Test(arguments: qpBodies)
    func quotedPrintableBodiesDecodeBackAndKeepLinesShort(_ body: String) throws {
        let rendered = Rendered(try message(body: body).render())
        #expect(rendered.field("Content-Transfer-Encoding") == " quoted-printable")
        #expect(!rendered.bareBreak)
        #expect(rendered.endsWithCRLF)
        for line in rendered.bodyLines {
            #expect(line.count <= 76)
            #expect(line.last != 0x20 && line.last != 0x09)
            #expect(line.allSatisfy { $0 >= 0x21 && $0 <= 0x7E || $0 == 0x20 || $0 == 0x09 })
        }
        let decoded = try #require(decodeQuotedPrintable(rendered.bodyLines))
        #expect(decoded == Array(normalised(body).utf8))
    }

    @Test func sevenBitAllowsLinesUpTo998() throws {
        let body = String(repeating: "y", count: 998) + "\n" + String(repeating: "z", count: 998)
        let rendered = Rendered(try message(body: body).render())
        #expect(rendered.field("Content-Transfer-Encoding") == " 7bit")
        #expect(rendered.bodyLines.map(\.count) == [998, 998])
    }

    @Test func everyLineIsShortAndCRLFTerminated() throws {
        let subjects = ["Hi", String(repeating: "🎉", count: 300), String(repeating: "a ", count: 700)]
        let bodies = Self.qpBodies + ["plain", String(repeating: ".\n", count: 1000)]
        for subject in subjects {
            for body in bodies {
                let bytes = try message(subject: subject, body: body).render()
                let rendered = Rendered(bytes)
                #expect(!rendered.bareBreak)
                #expect(rendered.endsWithCRLF)
                #expect(rendered.headerLines.allSatisfy { $0.utf8.count <= 78 })
                #expect(rendered.bodyLines.allSatisfy { $0.count <= 998 })
                #expect(bytes.allSatisfy { $0 != 0 })
            }
        }
    }

    @Test func longDisplayNameAndAddressFold() throws {
        let address = try EmailAddress(localPart: String(repeating: "l", count: 64),
                                       domain: String(repeating: "d", count: 60) + ".example.com")
        var msg = try message()
        msg.to = [Mailbox(displayName: String(repeating: "Name ", count: 300) + "End", address: address)]
        let rendered = Rendered(try msg.render())
        #expect(rendered.headerLines.allSatisfy { $0.utf8.count <= 998 })
        let toLines = rendered.headerLines.drop(while: { !$0.hasPrefix("To:") })
            .prefix(while: { $0.hasPrefix("To:") || $0.hasPrefix(" ") })
        #expect(toLines.last == " <\(address)>")
    }

    // MARK: Message-ID

    @Test func generatedMessageIDsAreUniqueAndWellFormed() throws {
        var seen = Set<String>()
        for _ in 0..<1000 {
            let id = MessageID.generate(domain: "mail.example.com")
            #expect(seen.insert(id).inserted)
            let parts = id.split(separator: "@")
            #expect(parts.count == 2)
            #expect(parts.last == "mail.example.com")
            let local = parts[0].split(separator: ".")
            #expect(local.count == 2)
            #expect(local[0].count == 32)
            #expect(local.allSatisfy { $0.allSatisfy(\.isHexDigit) })
        }
        _ = try message(messageID: MessageID.generate(domain: "example.com")).render()
    }

    @Test(arguments: ["[192.0.2.1]", "[IPv6:2001:db8::1]", "localhost", "a-b.example"])
    func generatedMessageIDKeepsUsableDomains(_ domain: String) throws {
        let id = MessageID.generate(domain: domain)
        #expect(id.hasSuffix("@" + domain))
        let rendered = Rendered(try message(messageID: id).render())
        #expect(rendered.field("Message-ID") == " <\(id)>")
    }

    @Test(arguments: ["", "[]", "[a b]", "[x", "bad domain", "evil\r\nBcc: x", "-x.com", "ex..com", "ünï.com"])
    func generatedMessageIDFallsBackForUnusableDomain(_ domain: String) throws {
        let id = MessageID.generate(domain: domain)
        #expect(id.hasSuffix("@localhost"))
        _ = try message(messageID: id).render()
    }
}
