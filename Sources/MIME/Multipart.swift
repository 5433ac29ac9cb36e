// Multipart bodies (RFC 2046): the structure of a message with HTML or
// attachments, boundaries, and the text parts.
//
// Structure, from the inside out:
//   - the HTML, when there are inline parts (attachments with a Content-ID):
//     multipart/related(html, inline parts in order);
//   - with HTML: multipart/alternative(text/plain, the HTML or its related);
//   - with attachments that are not inline: multipart/mixed(the above,
//     attachments in order).
// So text + HTML + inline + files is
//   mixed(alternative(text, related(html, inline...)), files...).
// Without HTML nothing can refer to "cid:": inline parts are then ordinary
// attachments of the mixed part (Content-Disposition: attachment, in their
// place in `attachments`), keeping their Content-ID, so no file is lost.
//
// Why the boundaries cannot occur in the content. Every boundary is
// "=_mg_" + 16 hex digits + "_" + the nesting depth (0, 1 or 2), so a
// delimiter line starts with "--=_". A parser only takes a line that
// starts with "--" + boundary for a delimiter (RFC 2046 §5.1.1). Inside a
// part, the lines are:
//   - part header lines, written here: each starts with a field name
//     ("Content-...") or, folded, with a space;
//   - base64 (attachments): only A-Z a-z 0-9 + / =, never '-';
//   - quoted-printable: '=' only ever starts "=XX" with a hex digit X, or
//     ends a line (soft break), so "=_" cannot occur at all;
//   - 7bit text: copied line by line, so a line could start with "--=_";
//     such a text is sent as quoted-printable instead (`TextBody`).
// And the delimiters of nested multiparts differ from each other in the
// depth digit, at the same position, so none is a prefix of another.
// Hence no line but a real delimiter starts with any of the message's
// delimiters, whatever the random digits are. The random part only keeps
// boundaries unique when a message is later quoted inside another one.

enum Multipart {
    enum Kind {
        case mixed, alternative, related

        var subtype: StaticString {
            switch self {
            case .mixed: return "mixed"
            case .alternative: return "alternative"
            case .related: return "related"
            }
        }
    }

    indirect enum Part {
        case text(TextBody)
        /// An index into the prepared attachments.
        case attachment(Int, inline: Bool)
        case multipart(Kind, [Part])
    }

    /// A text part (plain or HTML) and the transfer encoding chosen for it.
    struct TextBody {
        var text: String
        var subtype: StaticString
        var sevenBit: Bool
        var estimatedOutput: Int

        /// One scan of the text: 7bit unless it has a line over 998
        /// octets, non-ASCII or a control (as a single-part body), or a
        /// line starting with "--=_" (see the boundary note above).
        init(_ text: String, subtype: StaticString) {
            var bytes = text
            let chosen = bytes.withUTF8 { b in
                var scan = BodyScan(b)
                // Only a 7bit text needs the look: quoted-printable cannot
                // hold "=_".
                if scan.sevenBit && Multipart.hasDelimiterLikeLine(b) { scan.sevenBit = false }
                return scan
            }
            self.text = text
            self.subtype = subtype
            sevenBit = chosen.sevenBit
            estimatedOutput = chosen.estimatedOutput
        }
    }

    /// Whether a line starts with "--=_", the start of every delimiter line
    /// of ours.
    static func hasDelimiterLikeLine(_ b: UnsafeBufferPointer<UInt8>) -> Bool {
        var found = false
        LineBreak.forEachLine(in: b) { line, _ in
            if line.count >= 4, line[0] == UInt8(ascii: "-"), line[1] == UInt8(ascii: "-"),
               line[2] == UInt8(ascii: "="), line[3] == UInt8(ascii: "_") {
                found = true
            }
        }
        return found
    }

    /// The whole message: `message`'s headers, then the structure above.
    /// `token` is the random part of the boundaries.
    static func render(_ message: MailMessage, id: ArraySlice<UInt8>, attachments: [PreparedAttachment],
                       token: UInt64) -> [UInt8] {
        let plain = TextBody(message.body, subtype: "plain")
        var size = message.estimatedHeaderSize(id: id) + plain.estimatedOutput + 512
        var textual = Part.text(plain)
        var files: [Part] = []
        if let html = message.html {
            let htmlBody = TextBody(html, subtype: "html")
            size += htmlBody.estimatedOutput + 256
            var htmlPart = Part.text(htmlBody)
            var inline: [Part] = []
            for (index, attachment) in attachments.enumerated() {
                if attachment.contentID != nil {
                    inline.append(.attachment(index, inline: true))
                } else {
                    files.append(.attachment(index, inline: false))
                }
            }
            if !inline.isEmpty { htmlPart = .multipart(.related, [htmlPart] + inline) }
            textual = .multipart(.alternative, [textual, htmlPart])
        } else {
            files = attachments.indices.map { .attachment($0, inline: false) }
        }
        let root = files.isEmpty ? textual : .multipart(.mixed, [textual] + files)
        for attachment in attachments { size += attachment.estimatedSize + 64 }

        var out: [UInt8] = []
        out.reserveCapacity(size)
        message.appendHeaders(id: id, to: &out)
        let writer = Writer(attachments: attachments, token: token)
        writer.appendEntity(root, depth: 0, to: &out)
        // The root is always multipart, which ends with its close delimiter;
        // a message ends with a line break.
        out.appendCRLF()
        return out
    }

    struct Writer {
        let attachments: [PreparedAttachment]
        let token: UInt64

        private static let hexDigits: StaticString = "0123456789abcdef"

        /// "=_mg_" + 16 hex digits + "_" + depth.
        func boundary(depth: Int) -> [UInt8] {
            var out: [UInt8] = Array("=_mg_".utf8)
            out.reserveCapacity(24)
            Self.hexDigits.withUTF8Buffer { hex in
                var shift = 60
                while shift >= 0 {
                    out.append(hex[Int(token >> UInt64(shift) & 0xF)])
                    shift -= 4
                }
            }
            out.append(UInt8(ascii: "_"))
            out.append(UInt8(ascii: "0") + UInt8(depth % 10))
            return out
        }

        /// The part's Content-* header fields, the blank line and its
        /// content. Content ends without a line break unless it is text
        /// (whose lines all end in CRLF): the delimiter that follows starts
        /// with the CRLF that belongs to it (RFC 2046 §5.1.1).
        func appendEntity(_ part: Part, depth: Int, to out: inout [UInt8]) {
            switch part {
            case .text(let body):
                out.appendASCII("Content-Type: text/")
                out.appendASCII(body.subtype)
                out.appendASCII("; charset=utf-8\r\n")
                var text = body.text
                text.withUTF8 { TransferEncodedText.append($0, sevenBit: body.sevenBit, to: &out) }
            case .attachment(let index, let inline):
                attachments[index].append(inline: inline, to: &out)
            case .multipart(let kind, let children):
                let boundary = boundary(depth: depth)
                out.appendASCII("Content-Type: multipart/")
                out.appendASCII(kind.subtype)
                out.appendASCII("; boundary=\"")
                out.append(contentsOf: boundary)
                out.appendASCII("\"\r\n\r\n")
                out.appendASCII("--")
                out.append(contentsOf: boundary)
                for child in children {
                    out.appendCRLF()
                    appendEntity(child, depth: depth + 1, to: &out)
                    out.appendASCII("\r\n--")
                    out.append(contentsOf: boundary)
                }
                out.appendASCII("--")
            }
        }
    }
}
