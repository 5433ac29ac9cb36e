import Foundation
import Testing
@testable import MIME

@Suite struct MultipartTests {
    static let html = "<html><body><p>Grüße, <b>Jane</b>!</p><img src=\"cid:logo@example.com\"></body></html>\n"
    static let png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + allByteValues(count: 300)

    @Test func textAndHTMLMakeAlternativeWithBothPartsExact() throws {
        let body = "Grüße, Jane!\nSecond line.\n"
        let bytes = try richMessage(body: body, html: Self.html).render()
        checkWireFormat(bytes)
        let parsed = try parseMIMEWithPython(bytes)
        #expect(parsed.unexpectedDefects.isEmpty, "\(parsed.defects)")
        #expect(parsed.root.structure == "multipart/alternative(text/plain,text/html)")
        let (plain, html) = (parsed.root.children[0], parsed.root.children[1])
        #expect(plain.bytes == Array(normalised(body).utf8))
        #expect(plain.text == normalised(body))
        #expect(plain.charset == "utf-8")
        #expect(html.bytes == Array(normalised(Self.html).utf8))
        #expect(html.charset == "utf-8")
        #expect(html.disposition == nil)
    }

    @Test func asciiHTMLIs7bitAndLongOrNonASCIIHTMLIsQuotedPrintable() throws {
        let cases: [(String, String)] = [
            ("<p>short</p>", "7bit"),
            ("<p>" + String(repeating: "long line ", count: 500) + "</p>", "quoted-printable"),
            ("<p>" + String(repeating: "y", count: 998) + "</p>", "quoted-printable"),
            ("<p>ü</p>", "quoted-printable"),
        ]
        var rendered: [[UInt8]] = []
        for (html, cte) in cases {
            let bytes = try richMessage(html: html).render()
            checkWireFormat(bytes)
            let entity = Entity(bytes)
            let htmlPart = try #require(entity.children.last)
            #expect(htmlPart.field("Content-Transfer-Encoding") == " " + cte)
            #expect(htmlPart.bodyLines.allSatisfy { $0.count <= (cte == "7bit" ? 998 : 76) })
            rendered.append(bytes)
        }
        for (p, (html, _)) in zip(try parseMIMEWithPython(rendered), cases) {
            #expect(p.unexpectedDefects.isEmpty, "\(p.defects)")
            #expect(p.root.children.last?.text == normalised(html))
        }
    }

    @Test func inlineImageWithHTMLIsRelatedWithContentID() throws {
        let logo = Attachment(filename: "logo.png", content: Self.png, contentID: "<logo@example.com>")
        let bytes = try richMessage(html: Self.html, attachments: [logo]).render()
        checkWireFormat(bytes)
        let entity = Entity(bytes)
        let related = entity.children[1]
        #expect(related.field("Content-Type")?.hasPrefix(" multipart/related;") == true)
        let image = related.children[1]
        #expect(image.field("Content-ID") == " <logo@example.com>")
        #expect(image.field("Content-Disposition") == " inline; filename=\"logo.png\"")
        #expect(image.field("Content-Type") == " image/png; name=\"logo.png\"")

        let parsed = try parseMIMEWithPython(bytes)
        #expect(parsed.unexpectedDefects.isEmpty, "\(parsed.defects)")
        #expect(parsed.root.structure == "multipart/alternative(text/plain,multipart/related(text/html,image/png))")
        let part = parsed.root.children[1].children[1]
        #expect(part.contentId == "<logo@example.com>")
        #expect(part.disposition == "inline")
        #expect(part.filename == "logo.png")
        #expect(part.bytes == Self.png)
    }

    @Test func attachmentsMakeMixedAndDecodeToTheExactBytes() throws {
        let binary = Attachment(filename: "all-bytes.bin", content: allByteValues())
        let empty = Attachment(filename: "empty.txt", content: [])
        let short = Attachment(filename: "one.dat", content: [0xFF], contentType: "application/x-custom")
        let bytes = try richMessage(attachments: [binary, empty, short]).render()
        checkWireFormat(bytes)
        let parsed = try parseMIMEWithPython(bytes)
        #expect(parsed.unexpectedDefects.isEmpty, "\(parsed.defects)")
        #expect(parsed.root.structure
            == "multipart/mixed(text/plain,application/octet-stream,text/plain,application/x-custom)")
        let parts = parsed.root.children
        #expect(parts[0].disposition == nil)
        #expect(parts[0].text == "Hi there.\r\n")
        #expect(parts[1].bytes == allByteValues())
        #expect(parts[1].disposition == "attachment")
        #expect(parts[1].filename == "all-bytes.bin")
        #expect(parts[1].cte == "base64")
        #expect(parts[2].bytes == [])
        #expect(parts[2].filename == "empty.txt")
        #expect(parts[3].bytes == [0xFF])
    }

    @Test func base64LinesAreExactly76Columns() throws {
        for count in [0, 1, 56, 57, 58, 114, 1000, 57 * 40] {
            let bytes = try richMessage(attachments: [Attachment(filename: "f.bin", content: noiseBytes(count: count))])
                .render()
            let part = Entity(bytes).children[1]
            let lines = part.bodyLines
            if count == 0 {
                #expect(lines == [[]])
                continue
            }
            #expect(lines.dropLast().allSatisfy { $0.count == 76 }, "\(count)")
            if let last = lines.last {
                #expect(last.count >= 4 && last.count <= 76 && last.count % 4 == 0, "\(count)")
            }
            #expect(lines.count == (count + 56) / 57, "\(count)")
            let joined = lines.reduce(into: [UInt8]()) { $0 += $1 }
            #expect(Data(base64Encoded: Data(joined)).map(Array.init) == noiseBytes(count: count), "\(count)")
        }
    }

    @Test func aLargeAttachmentRoundTrips() throws {
        let content = noiseBytes(count: 1_048_576 + 12_345)
        let bytes = try richMessage(body: "see attachment", attachments: [
            Attachment(filename: "big.bin", content: content),
        ]).render()
        checkWireFormat(bytes)
        let lines = Entity(bytes).children[1].bodyLines
        #expect(lines.dropLast().allSatisfy { $0.count == 76 })
        let parsed = try parseMIMEWithPython(bytes)
        #expect(parsed.unexpectedDefects.isEmpty, "\(parsed.defects)")
        let part = parsed.root.children[1]
        #expect(part.payload == nil)  // too big to ship back: length and CRC only
        #expect(part.payloadLength == content.count)
        #expect(part.payloadCrc32 == crc32(content))
    }

    @Test func everythingTogetherNestsMixedAlternativeRelated() throws {
        let attachments = [
            Attachment(filename: "report.pdf", content: Array("%PDF-1.4".utf8)),
            Attachment(filename: "logo.png", content: Self.png, contentID: "logo@example.com"),
            Attachment(filename: "data.csv", content: Array("a,b\n1,2\n".utf8)),
            Attachment(filename: "banner.gif", content: [0x47, 0x49, 0x46], contentID: "banner"),
        ]
        let bytes = try renderFixed(try richMessage(to: ["a@example.com", "b@example.com"], cc: ["c@example.com"],
                                                    html: Self.html, attachments: attachments,
                                                    headers: [CustomHeader(name: "X-Tag", value: "all")]))
        checkWireFormat(bytes)
        let entity = Entity(bytes)
        #expect(entity.field("Content-Type") == " multipart/mixed; boundary=\"=_mg_0123456789abcdef_0\"")
        #expect(entity.children[0].field("Content-Type")
            == " multipart/alternative; boundary=\"=_mg_0123456789abcdef_1\"")
        #expect(entity.children[0].children[1].field("Content-Type")
            == " multipart/related; boundary=\"=_mg_0123456789abcdef_2\"")
        #expect(entity.bodyLines.first == Array("--=_mg_0123456789abcdef_0".utf8))

        let parsed = try parseMIMEWithPython(bytes)
        #expect(parsed.unexpectedDefects.isEmpty, "\(parsed.defects)")
        #expect(parsed.root.structure == "multipart/mixed(multipart/alternative(text/plain,"
            + "multipart/related(text/html,image/png,image/gif)),application/pdf,text/csv)")
        let leaves = parsed.root.leaves
        #expect(leaves.map(\.filename) == [nil, nil, "logo.png", "banner.gif", "report.pdf", "data.csv"])
        #expect(leaves.map(\.contentId) == [nil, nil, "<logo@example.com>", "<banner>", nil, nil])
        #expect(leaves.map(\.disposition) == [nil, nil, "inline", "inline", "attachment", "attachment"])
        #expect(leaves[2].bytes == Self.png)
        #expect(leaves[4].bytes == Array("%PDF-1.4".utf8))
        #expect(leaves[5].bytes == Array("a,b\n1,2\n".utf8))
    }

    @Test func inlinePartsWithoutHTMLBecomeOrdinaryAttachmentsInOrder() throws {
        let attachments = [
            Attachment(filename: "a.txt", content: Array("A".utf8)),
            Attachment(filename: "logo.png", content: Self.png, contentID: "logo"),
            Attachment(filename: "b.txt", content: Array("B".utf8)),
        ]
        let bytes = try richMessage(attachments: attachments).render()
        checkWireFormat(bytes)
        let parsed = try parseMIMEWithPython(bytes)
        #expect(parsed.unexpectedDefects.isEmpty, "\(parsed.defects)")
        #expect(parsed.root.structure == "multipart/mixed(text/plain,text/plain,image/png,text/plain)")
        let logo = parsed.root.children[2]
        #expect(logo.disposition == "attachment")
        #expect(logo.contentId == "<logo>")
        #expect(logo.bytes == Self.png)
    }

    @Test func htmlWithoutAttachmentsAndEmptyBodies() throws {
        let bytes = try richMessage(body: "", html: "").render()
        checkWireFormat(bytes)
        let parsed = try parseMIMEWithPython(bytes)
        #expect(parsed.unexpectedDefects.isEmpty, "\(parsed.defects)")
        #expect(parsed.root.structure == "multipart/alternative(text/plain,text/html)")
        #expect(parsed.root.children.map(\.bytes) == [[], []])
    }

    /// A 7bit text could hold a line that looks like one of our delimiters;
    /// it is then sent quoted-printable, where "=_" cannot occur.
    @Test func aBodyHoldingTheBoundaryStillParses() throws {
        let token: UInt64 = 0x0123_4567_89ab_cdef
        let trap = "before\n--=_mg_0123456789abcdef_0\nContent-Type: text/html\n\nevil\n--=_mg_0123456789abcdef_0--\n"
            + "--=_mg_0123456789abcdef_1\n--=_other\nafter\n"
        let attachment = Attachment(filename: "x.txt", content: Array(trap.utf8))
        let bytes = try renderFixed(try richMessage(body: trap, html: trap, attachments: [attachment]), token: token)
        checkWireFormat(bytes)
        let text = String(decoding: bytes, as: UTF8.self)
        #expect(text.contains("boundary=\"=_mg_0123456789abcdef_0\""))
        // No line starts with "--=_" except the real delimiters.
        let delimiters = Set((0...1).flatMap { d in ["--=_mg_0123456789abcdef_\(d)", "--=_mg_0123456789abcdef_\(d)--"] })
        for line in crlfLines(bytes).lines where line.starts(with: Array("--=_".utf8)) {
            #expect(delimiters.contains(String(decoding: line, as: UTF8.self)))
        }
        let entity = Entity(bytes)
        #expect(entity.children[0].children.allSatisfy {
            $0.field("Content-Transfer-Encoding") == " quoted-printable"
        })

        let parsed = try parseMIMEWithPython(bytes)
        #expect(parsed.unexpectedDefects.isEmpty, "\(parsed.defects)")
        #expect(parsed.root.structure == "multipart/mixed(multipart/alternative(text/plain,text/html),text/plain)")
        let leaves = parsed.root.leaves
        #expect(leaves[0].text == normalised(trap))
        #expect(leaves[1].text == normalised(trap))
        #expect(leaves[2].bytes == Array(trap.utf8))
    }

    @Test func aBodyWithDashesButNoDelimiterPrefixStays7bit() throws {
        let body = "-- \nSignature\n--=\n---=_x\n"
        let bytes = try richMessage(body: body, html: "<p>x</p>").render()
        let plain = Entity(bytes).children[0]
        #expect(plain.field("Content-Transfer-Encoding") == " 7bit")
        #expect(plain.body == Array(normalised(body).utf8))
    }

    @Test func boundariesComeFromTheGenerator() throws {
        let msg = try richMessage(html: "<p>x</p>")
        let a = try renderFixed(msg, token: 1)
        #expect(try renderFixed(msg, token: 1) == a)
        #expect(try renderFixed(msg, token: 2) != a)
        #expect(Entity(a).boundary == "=_mg_0000000000000001_0")
        // The system generator: 16 hex digits, different each time.
        let first = try #require(Entity(try msg.render()).boundary)
        let second = try #require(Entity(try msg.render()).boundary)
        #expect(first != second)
        #expect(first.utf8.count == 23)
        #expect(first.hasPrefix("=_mg_") && first.hasSuffix("_0"))
    }

    @Test func textOnlyMessagesDrawNoRandomness() throws {
        struct Trap: RandomNumberGenerator {
            mutating func next() -> UInt64 { Issue.record("drew a random number"); return 0 }
        }
        var trap = Trap()
        let msg = try richMessage(to: ["a@example.com", "b@example.com"], cc: ["c@example.com"],
                                  headers: [CustomHeader(name: "X-A", value: "b")])
        _ = try msg.render(using: &trap)
    }

    @Test func everyLineIsShortAcrossAMixOfParts() throws {
        let bodies = ["plain", String(repeating: "é", count: 3000), String(repeating: "x", count: 999),
                      String(repeating: ".\n", count: 500)]
        for body in bodies {
            let msg = try richMessage(
                to: (1...10).map { "Recipient \($0) <r\($0)@example.com>" },
                subject: String(repeating: "🎉", count: 50), body: body, html: body,
                attachments: [
                    Attachment(filename: String(repeating: "Ünïcödé ", count: 20) + ".pdf", content: allByteValues()),
                    Attachment(filename: String(repeating: "long-ascii-name-", count: 10) + ".txt", content: [1]),
                    Attachment(filename: "inline.png", content: [2], contentID: "i@x"),
                ],
                headers: [CustomHeader(name: "X-Long", value: String(repeating: "word ", count: 300) + "end")])
            checkWireFormat(try msg.render())
        }
    }
}
