import Foundation
import Testing
@testable import MIME

struct RoundTripCase: Sendable, CustomTestStringConvertible {
    var label: String
    var subject: String
    var body: String
    var from = "Mailgate <noreply@example.com>"
    var to = "Jane Doe <jane@example.org>"
    var testDescription: String { label }
}

/// Every rendered message is parsed by Python's `email` package (Debian's
/// /usr/bin/python3, policy=default): an implementation we did not write.
@Suite struct PythonRoundTripTests {
    static let cases: [RoundTripCase] = [
        .init(label: "ASCII", subject: "Hello", body: "Hi there,\nall fine.\n"),
        .init(label: "UTF-8 body", subject: "Grüße", body: "Grüße aus Köln!\nЗдравствуйте 你好 🎉\n"),
        .init(label: "emoji subject", subject: "🎉 Party 👨‍👩‍👧‍👦 time 🇩🇪🎂", body: "See you."),
        .init(label: "long emoji subject",
              subject: String(repeating: "🎉 Party ", count: 60), body: "x"),
        .init(label: "long CJK subject", subject: String(repeating: "長い件名です。", count: 100), body: "x"),
        .init(label: "long ASCII subject",
              subject: (1...150).map { "word\($0)" }.joined(separator: " "), body: "x"),
        .init(label: "subject that looks encoded", subject: "=?utf-8?B?Zm9v?= literally", body: "x"),
        .init(label: "100,000-character line", subject: "long line",
              body: String(repeating: "0123456789", count: 10_000)),
        .init(label: "100,000-character UTF-8 line", subject: "long line",
              body: String(repeating: "é", count: 100_000)),
        .init(label: "only dots and newlines", subject: "dots",
              body: ".\n..\n.\n\n...\n.\r\n.\r."),
        .init(label: "dot line", subject: "dot", body: "before\n.\nafter"),
        .init(label: "bare CR and CR CR LF", subject: "breaks", body: "one\rtwo\r\r\nthree\n\rfour\r"),
        .init(label: "bare CR in UTF-8 body", subject: "breaks", body: "ein\rzwei ü\r\r\ndrei\n"),
        .init(label: "trailing whitespace", subject: "ws", body: "space \ntab\t\nü \n"),
        .init(label: "equals signs", subject: "eq", body: "a=b\n=?utf-8?Q?x?=\nü=3D"),
        .init(label: "quoted display names", subject: "names", body: "x",
              from: "\"Doe, John (Sales)\" <john@example.com>", to: "\"Say \\\"hi\\\"\" <q@example.org>"),
        .init(label: "non-ASCII display names", subject: "names", body: "x",
              from: "Zoë Ünïcode <zoe@example.com>", to: "\"山田, 太郎 🎉\" <taro@example.org>"),
        .init(label: "empty body", subject: "empty", body: ""),
    ]

    @Test func pythonEmailPackageReadsEverythingBack() throws {
        let date = Date(timeIntervalSince1970: 1_795_604_965)
        var rendered: [[UInt8]] = []
        var expected: [(RoundTripCase, Mailbox, Mailbox, String)] = []
        for c in Self.cases {
            let id = MessageID.generate(domain: "example.com")
            let msg = try message(subject: c.subject, body: c.body, from: c.from, to: c.to, date: date, messageID: id)
            rendered.append(try msg.render())
            expected.append((c, msg.from, msg.to[0], id))
        }

        let parsed = try parseWithPython(rendered)
        try #require(parsed.count == expected.count)
        for (p, (c, from, to, id)) in zip(parsed, expected) {
            let label = Comment(rawValue: c.label)
            #expect(p.defects.isEmpty, label)
            #expect(p.subject == c.subject, label)
            // Python keeps the wire line endings: every break must be CRLF.
            #expect(p.content == normalised(c.body), label)
            #expect(p.from_display == (from.displayName ?? ""), label)
            #expect(p.from_addr == from.address.description, label)
            #expect(p.to_display == (to.displayName ?? ""), label)
            #expect(p.to_addr == to.address.description, label)
            #expect(p.date == "2026-11-25T11:09:25+00:00", label)
            #expect(p.message_id == "<\(id)>", label)
            #expect(p.mime_version == "1.0", label)
        }
        #expect(parsed[0].cte == "7bit")
        #expect(parsed[1].cte == "quoted-printable")
        #expect(parsed[7].cte == "quoted-printable")  // the 100,000-octet ASCII line
    }
}
