import Foundation
import Testing
@testable import MIME

@Suite struct AttachmentTests {
    // MARK: Media types

    static let byExtension: [(String, String)] = [
        ("notes.txt", "text/plain"), ("page.html", "text/html"), ("PAGE.HTM", "text/html"),
        ("t.csv", "text/csv"), ("invite.ics", "text/calendar"), ("Report.PDF", "application/pdf"),
        ("d.json", "application/json"), ("d.xml", "application/xml"), ("a.zip", "application/zip"),
        ("a.tar.gz", "application/gzip"), ("p.png", "image/png"), ("p.JpG", "image/jpeg"),
        ("p.jpeg", "image/jpeg"), ("p.gif", "image/gif"), ("p.webp", "image/webp"), ("p.svg", "image/svg+xml"),
        ("w.doc", "application/msword"),
        ("w.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
        ("s.xls", "application/vnd.ms-excel"),
        ("s.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        ("p.ppt", "application/vnd.ms-powerpoint"),
        ("p.pptx", "application/vnd.openxmlformats-officedocument.presentationml.presentation"),
        ("o.odt", "application/vnd.oasis.opendocument.text"), ("m.mp3", "audio/mpeg"), ("v.mp4", "video/mp4"),
        // Fallbacks.
        ("README", "application/octet-stream"), ("a.", "application/octet-stream"),
        ("archive.tar", "application/octet-stream"), ("x.unknownextension", "application/octet-stream"),
        ("pdf", "application/octet-stream"), ("a.pdf.exe", "application/octet-stream"),
        // Compared as ASCII bytes: look-alikes do not match.
        ("a.ＰＤＦ", "application/octet-stream"), ("a.p\u{0301}ng", "application/octet-stream"),
        ("a.\u{212A}ml", "application/octet-stream"),
    ]

    @Test func mediaTypeFromExtension() {
        for (name, type) in Self.byExtension {
            #expect(Attachment.mediaType(forFilename: name) == type, "\(name)")
        }
    }

    @Test func renderedContentTypeIsDerivedOrGiven() throws {
        let attachments = Self.byExtension.map { Attachment(filename: $0.0, content: [1, 2, 3]) }
            + [Attachment(filename: "photo.png", content: [1], contentType: "image/x-special")]
        let bytes = try richMessage(attachments: attachments).render()
        checkWireFormat(bytes)
        let parsed = try parseMIMEWithPython(bytes)
        #expect(parsed.unexpectedDefects.isEmpty, "\(parsed.defects)")
        let types = parsed.root.children.dropFirst().map(\.contentType)
        #expect(Array(types) == Self.byExtension.map(\.1) + ["image/x-special"])
        #expect(parsed.root.children.dropFirst().map(\.filename) == attachments.map(\.filename))
    }

    // MARK: File names

    static let names = [
        "Résumé ünïcode.pdf",
        "plain.pdf",
        "with space.txt",
        "say \"hi\".txt",
        "semi;colon,comma(paren)=eq?.txt",
        "=?utf-8?B?Zm9v?=.txt",          // must not be decoded as an encoded-word
        " leading and trailing ",
        "tab\tinside.txt",
        "日本語のファイル名.docx",
        "👨‍👩‍👧‍👦 family.png",
        String(repeating: "a", count: 66) + ".txt",                       // ASCII, just too long to quote
        String(repeating: "Ünïcödé ", count: 40) + "end.pdf",            // many RFC 2231 sections
        String(repeating: "長", count: 300) + ".txt",
        "percent%20literal'quote*star.txt",
    ]

    @Test func fileNamesReadBackByPython() throws {
        let attachments = Self.names.map { Attachment(filename: $0, content: Array($0.utf8)) }
        let bytes = try richMessage(attachments: attachments).render()
        checkWireFormat(bytes)
        let parsed = try parseMIMEWithPython(bytes)
        #expect(parsed.unexpectedDefects.isEmpty, "\(parsed.defects)")
        let parts = Array(parsed.root.children.dropFirst())
        try #require(parts.count == Self.names.count)
        for (part, name) in zip(parts, Self.names) {
            // get_filename() strips surrounding whitespace, by design.
            #expect(part.filename == name.trimmingCharacters(in: .whitespaces))
            #expect(part.bytes == Array(name.utf8))
        }
        // The RFC 2047 name of Content-Type, for clients older than RFC 2231.
        #expect(parts[0].ctName == "Résumé ünïcode.pdf")
        #expect(parts[11].ctName == Self.names[11])
    }

    @Test func safeASCIINamesAreQuotedStrings() throws {
        let bytes = try richMessage(attachments: [
            Attachment(filename: "a.pdf", content: [1]),
            Attachment(filename: "say \"hi\".txt", content: [1]),
        ]).render()
        let parts = Entity(bytes).children
        #expect(parts[1].headerLines.contains("Content-Disposition: attachment; filename=\"a.pdf\""))
        #expect(parts[1].headerLines.contains("Content-Type: application/pdf; name=\"a.pdf\""))
        #expect(parts[2].headerLines.contains("Content-Disposition: attachment; filename=\"say \\\"hi\\\".txt\""))
    }

    @Test func nonASCIINamesUseRFC2231AndRFC2047() throws {
        let bytes = try richMessage(attachments: [Attachment(filename: "Résumé ünïcode.pdf", content: [1])]).render()
        let part = Entity(bytes).children[1]
        #expect(part.headerLines == [
            "Content-Type: application/pdf;",
            " name=\"=?utf-8?B?UsOpc3Vtw6kgw7xuw69jb2RlLnBkZg==?=\"",
            "Content-Disposition: attachment;",
            " filename*=utf-8''R%C3%A9sum%C3%A9%20%C3%BCn%C3%AFcode.pdf",
            "Content-Transfer-Encoding: base64",
        ])
        #expect(decodeEncodedWords("=?utf-8?B?UsOpc3Vtw6kgw7xuw69jb2RlLnBkZg==?=")?.joined() == "Résumé ünïcode.pdf")
    }

    @Test func longNamesAreSplitIntoSectionsOnCharacterBoundaries() throws {
        let name = String(repeating: "Ünïcödé ", count: 40) + "end.pdf"
        let bytes = try richMessage(attachments: [Attachment(filename: name, content: [1])]).render()
        checkWireFormat(bytes)
        let part = Entity(bytes).children[1]
        let sections = part.headerLines.filter { $0.hasPrefix(" filename*") }
        #expect(sections.count > 10)
        #expect(sections.first?.hasPrefix(" filename*0*=utf-8''") == true)
        for (i, line) in sections.enumerated() {
            #expect(line.hasPrefix(" filename*\(i)*="))
            // Each section decodes on its own to valid UTF-8.
            let value = line.split(separator: "=", maxSplits: 1)[1].replacingOccurrences(of: "utf-8''", with: "")
                .trimmingCharacters(in: CharacterSet(charactersIn: ";"))
            #expect(value.removingPercentEncoding != nil, "\(line)")
        }
    }

    // MARK: Validation

    static var invalid: [(Attachment, String)] {
        var cases: [(Attachment, String)] = [
            (Attachment(filename: "", content: []), "filename must not be empty"),
            (Attachment(filename: "a\rb", content: []), "filename must not contain CR, LF or NUL"),
            (Attachment(filename: "a\nb", content: []), "filename must not contain CR, LF or NUL"),
            (Attachment(filename: "a\u{0}b", content: []), "filename must not contain CR, LF or NUL"),
            (Attachment(filename: "../etc/passwd", content: []), "filename must not contain a path separator"),
            (Attachment(filename: "C:\\x.txt", content: []), "filename must not contain a path separator"),
        ]
        let badTypes: [String] = [
            "text", "text/", "/plain", "text/plain; charset=utf-8", "text/pl ain", "text/plain/x", "tëxt/plain",
            "text/plain\r\nBcc: x", String(repeating: "a", count: 128) + "/b", "a/" + String(repeating: "b", count: 128), "",
        ]
        for type in badTypes {
            cases.append((Attachment(filename: "a.txt", content: [], contentType: type),
                          "content type must be type/subtype, without parameters"))
        }
        for type in ["multipart/mixed", "Message/rfc822", "MULTIPART/alternative"] {
            cases.append((Attachment(filename: "a.txt", content: [], contentType: type),
                          "content type multipart/* or message/* cannot be attached; use application/octet-stream"))
        }
        let badIDs: [String] = ["", "<>", "a b", "a<b", "a>b", "<<a>>", "é@x", "a\tb", "a\r\nb", String(repeating: "i", count: 251)]
        for id in badIDs {
            cases.append((Attachment(filename: "a.png", content: [], contentID: id),
                          "content ID must be 1 to 250 printable ASCII characters without spaces, '<' or '>'"))
        }
        return cases
    }

    @Test func invalidAttachmentsAreRefusedWithTheirIndex() throws {
        for (attachment, reason) in Self.invalid {
            let ok = Attachment(filename: "ok.txt", content: [1])
            let msg = try richMessage(html: "<p>x</p>", attachments: [ok, ok, attachment])
            #expect(throws: HeaderError.invalidAttachment(index: 2, reason: reason)) { try msg.render() }
        }
        #expect(HeaderError.invalidAttachment(index: 2, reason: "filename must not contain a path separator").description
            == "Invalid attachment 2: filename must not contain a path separator")
    }

    @Test func validEdgeCasesAreAccepted() throws {
        let attachments = [
            Attachment(filename: "x", content: [], contentType: "application/vnd.example+json"),
            Attachment(filename: "y", content: [], contentType: String(repeating: "a", count: 127) + "/"
                + String(repeating: "b", count: 127)),
            Attachment(filename: "..", content: [1]),
            Attachment(filename: "i.png", content: [1], contentID: String(repeating: "i", count: 250)),
            Attachment(filename: "j.png", content: [1], contentID: "<" + String(repeating: "j", count: 250) + ">"),
            Attachment(filename: "k.png", content: [1], contentID: "a!\"#$%&'()*+,-./:;=?@[\\]^_`{|}~"),
        ]
        let bytes = try richMessage(html: "<p>x</p>", attachments: attachments).render()
        checkWireFormat(bytes)
        let parsed = try parseMIMEWithPython(bytes)
        let leaves = parsed.root.leaves
        #expect(leaves.compactMap(\.contentId) == [
            "<" + String(repeating: "i", count: 250) + ">", "<" + String(repeating: "j", count: 250) + ">",
            "<a!\"#$%&'()*+,-./:;=?@[\\]^_`{|}~>",
        ])
    }
}
