// Attachments: validation, the media type from a file name, the file name
// parameters (RFC 2183 / 2231 / 2047) and the base64 body of the part.

import Base64

/// A file sent with the message. With a `contentID` it is an inline part
/// (Content-Disposition: inline) that the HTML shows as "cid:ID"; without
/// HTML, an inline part is sent as an ordinary attachment.
public struct Attachment: Sendable {
    /// The name shown to the recipient: not empty, no CR, LF, NUL, '/' or
    /// '\'. Any other Unicode is fine (sent per RFC 2231 and RFC 2047).
    public var filename: String
    public var content: [UInt8]
    /// "type/subtype" without parameters; nil: derived from the file name's
    /// extension (`Attachment.mediaType(forFilename:)`).
    public var contentType: String?
    /// Printable ASCII without spaces, '<' or '>', at most 250 characters;
    /// surrounding angle brackets are removed.
    public var contentID: String?

    public init(filename: String, content: [UInt8], contentType: String? = nil, contentID: String? = nil) {
        self.filename = filename
        self.content = content
        self.contentType = contentType
        self.contentID = contentID
    }

    /// The media type for a file name's extension (ASCII case ignored), or
    /// application/octet-stream for any other or no extension.
    public static func mediaType(forFilename filename: String) -> String {
        mediaTypeLiteral(forFilename: filename).withUTF8Buffer { String(decoding: $0, as: UTF8.self) }
    }

    static func mediaTypeLiteral(forFilename filename: String) -> StaticString {
        let name = filename.utf8
        guard let dot = name.lastIndex(of: UInt8(ascii: ".")) else { return octetStream }
        let ext = name[name.index(after: dot)...]
        for (known, type) in mediaTypes where known.utf8CodeUnitCount == ext.count {
            let matches = known.withUTF8Buffer { bytes in
                bytes.elementsEqual(ext) { $0 == EmailAddress.asciiLower($1) }
            }
            if matches { return type }
        }
        return octetStream
    }

    private static let octetStream: StaticString = "application/octet-stream"

    /// Extensions (lower case) and their types: the files people mail.
    private static let mediaTypes: [(StaticString, StaticString)] = [
        ("txt", "text/plain"), ("html", "text/html"), ("htm", "text/html"), ("csv", "text/csv"),
        ("ics", "text/calendar"),
        ("pdf", "application/pdf"), ("json", "application/json"), ("xml", "application/xml"),
        ("zip", "application/zip"), ("gz", "application/gzip"),
        ("png", "image/png"), ("jpg", "image/jpeg"), ("jpeg", "image/jpeg"), ("gif", "image/gif"),
        ("webp", "image/webp"), ("svg", "image/svg+xml"),
        ("doc", "application/msword"),
        ("docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
        ("xls", "application/vnd.ms-excel"),
        ("xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        ("ppt", "application/vnd.ms-powerpoint"),
        ("pptx", "application/vnd.openxmlformats-officedocument.presentationml.presentation"),
        ("odt", "application/vnd.oasis.opendocument.text"),
        ("mp3", "audio/mpeg"), ("mp4", "video/mp4"),
    ]
}

/// An attachment that passed validation, with the values its part headers
/// need.
struct PreparedAttachment {
    let filename: String
    let content: [UInt8]
    /// Token characters and one '/' only: written as is.
    let contentType: [UInt8]
    /// Without angle brackets; printable ASCII without space, '<' or '>'.
    let contentID: ArraySlice<UInt8>?

    static let maxContentID = 250
    /// RFC 6838 §4.2: type and subtype names are at most 127 characters.
    static let maxTypeName = 127

    init(_ attachment: Attachment, index: Int) throws(HeaderError) {
        func invalid(_ reason: String) -> HeaderError { .invalidAttachment(index: index, reason: reason) }

        let name = attachment.filename.utf8
        if name.isEmpty { throw invalid("filename must not be empty") }
        for c in name {
            if c == asciiCR || c == asciiLF || c == 0 {
                throw invalid("filename must not contain CR, LF or NUL")
            }
            if c == UInt8(ascii: "/") || c == UInt8(ascii: "\\") {
                throw invalid("filename must not contain a path separator")
            }
        }

        if let given = attachment.contentType {
            let type = Array(given.utf8)
            guard let slash = Self.slashOfMediaType(type) else {
                throw invalid("content type must be type/subtype, without parameters")
            }
            // Multipart and message entities may only be 7bit, 8bit or
            // binary (RFC 2045 §6.4); an attachment is always base64.
            if Self.equalsIgnoringCase(type[..<slash], "multipart") || Self.equalsIgnoringCase(type[..<slash], "message") {
                throw invalid("content type multipart/* or message/* cannot be attached; use application/octet-stream")
            }
            contentType = type
        } else {
            contentType = Attachment.mediaTypeLiteral(forFilename: attachment.filename).withUTF8Buffer { Array($0) }
        }

        if let given = attachment.contentID {
            var id = ArraySlice(given.utf8)
            if id.count >= 2, id.first == UInt8(ascii: "<"), id.last == UInt8(ascii: ">") {
                id = id.dropFirst().dropLast()
            }
            guard !id.isEmpty, id.count <= Self.maxContentID,
                  id.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "<") && $0 != UInt8(ascii: ">") })
            else {
                throw invalid("content ID must be 1 to 250 printable ASCII characters without spaces, '<' or '>'")
            }
            contentID = id
        } else {
            contentID = nil
        }
        filename = attachment.filename
        content = attachment.content
    }

    /// The index of the '/' in "type/subtype" when both halves are 1 to 127
    /// RFC 2045 token characters; nil otherwise.
    private static func slashOfMediaType(_ type: [UInt8]) -> Int? {
        guard let slash = type.firstIndex(of: UInt8(ascii: "/")) else { return nil }
        let major = type[..<slash]
        let minor = type[(slash + 1)...]
        guard (1...maxTypeName).contains(major.count), (1...maxTypeName).contains(minor.count),
              major.allSatisfy(isTokenCharacter), minor.allSatisfy(isTokenCharacter)
        else { return nil }
        return slash
    }

    /// RFC 2045 §5.1 token: printable ASCII except tspecials.
    private static func isTokenCharacter(_ c: UInt8) -> Bool {
        guard c > 0x20 && c < 0x7F else { return false }
        switch c {
        case UInt8(ascii: "("), UInt8(ascii: ")"), UInt8(ascii: "<"), UInt8(ascii: ">"), UInt8(ascii: "@"),
             UInt8(ascii: ","), UInt8(ascii: ";"), UInt8(ascii: ":"), UInt8(ascii: "\\"), UInt8(ascii: "\""),
             UInt8(ascii: "/"), UInt8(ascii: "["), UInt8(ascii: "]"), UInt8(ascii: "?"), UInt8(ascii: "="):
            return false
        default:
            return true
        }
    }

    private static func equalsIgnoringCase(_ bytes: ArraySlice<UInt8>, _ lower: StaticString) -> Bool {
        lower.withUTF8Buffer { known in
            known.elementsEqual(bytes) { $0 == EmailAddress.asciiLower($1) }
        }
    }

    // MARK: - Rendering

    /// Octets of the encoded part, headers included; enough to reserve the
    /// message buffer once.
    var estimatedSize: Int {
        let base64 = Base64.standard.encodedLength(content.count)
        return base64 + base64 / Self.base64Line * 2 + 256 + contentType.count + filename.utf8.count * 8
            + (contentID?.count ?? 0)
    }

    /// Writes the part's header fields, the blank line and the base64 body
    /// (without a final line break: the boundary delimiter brings one).
    func append(inline: Bool, to out: inout [UInt8]) {
        var name = filename
        name.withUTF8 { name in
            let quoted = Self.quotedWidth(name)

            out.appendASCII("Content-Type: ")
            out.append(contentsOf: contentType)
            var column = 14 + contentType.count
            if let quoted {
                Self.appendParameterSeparator(width: 5 + quoted, column: &column, to: &out)
                out.appendASCII("name=")
                Self.appendQuoted(name, to: &out)
            } else {
                // RFC 2047 words in a quoted string: not what RFC 2047
                // allows, but what clients that predate RFC 2231 read
                // (Outlook among them). Modern readers take the RFC 2231
                // filename of Content-Disposition instead. The string
                // starts on its own line so the first word has room.
                out.appendASCII(";\r\n name=\"")
                _ = EncodedWord.append(filename, to: &out, column: 7)
                out.append(UInt8(ascii: "\""))
            }
            out.appendCRLF()

            if inline {
                out.appendASCII("Content-Disposition: inline")
                column = 27
            } else {
                out.appendASCII("Content-Disposition: attachment")
                column = 31
            }
            if let quoted {
                Self.appendParameterSeparator(width: 9 + quoted, column: &column, to: &out)
                out.appendASCII("filename=")
                Self.appendQuoted(name, to: &out)
            } else {
                Self.appendExtendedFilename(name, column: column, to: &out)
            }
            out.appendCRLF()
        }

        out.appendASCII("Content-Transfer-Encoding: base64\r\n")
        if let contentID {
            out.appendASCII("Content-ID: <")
            out.append(contentsOf: contentID)
            out.appendASCII(">\r\n")
        }
        out.appendCRLF()
        content.withUnsafeBufferPointer { Self.appendBase64Lines($0, to: &out) }
    }

    // MARK: Parameters

    /// The longest quoted-string kept: ` filename="..."` then fits a
    /// continuation line of 78 characters.
    static let maxQuoted = 68

    /// The width of `name` as a quoted-string when it can be sent as one:
    /// printable ASCII, no leading or trailing space (parsers may strip
    /// them), no "=?" (parsers may decode it as an encoded-word), and short
    /// enough to fit one line. Nil: use RFC 2231 / RFC 2047 instead.
    static func quotedWidth(_ name: UnsafeBufferPointer<UInt8>) -> Int? {
        guard let first = name.first, let last = name.last, first != asciiSP, last != asciiSP else { return nil }
        var width = 2
        var previous: UInt8 = 0
        for c in name {
            guard c >= 0x20 && c < 0x7F else { return nil }
            if previous == UInt8(ascii: "="), c == UInt8(ascii: "?") { return nil }
            width += c == UInt8(ascii: "\\") || c == UInt8(ascii: "\"") ? 2 : 1
            previous = c
        }
        return width <= maxQuoted ? width : nil
    }

    /// RFC 2045 quoted-string: '"' and '\' are escaped.
    static func appendQuoted(_ name: UnsafeBufferPointer<UInt8>, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for c in name {
            if c == UInt8(ascii: "\\") || c == UInt8(ascii: "\"") { out.append(UInt8(ascii: "\\")) }
            out.append(c)
        }
        out.append(UInt8(ascii: "\""))
    }

    /// ";" then a space, or a fold when a parameter of `width` characters
    /// (after the space) would pass 78 characters.
    static func appendParameterSeparator(width: Int, column: inout Int, to out: inout [UInt8]) {
        out.append(UInt8(ascii: ";"))
        column += 1
        if column + 1 + width > MailMessage.preferredLine {
            out.appendCRLF()
            column = 0
        }
        out.append(asciiSP)
        column += 1 + width
    }

    /// RFC 2231 attribute-char: what an extended value keeps literally;
    /// everything else is percent-encoded.
    @inline(__always)
    static func isAttributeCharacter(_ c: UInt8) -> Bool {
        switch c {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"),
             UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "&"), UInt8(ascii: "+"),
             UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "^"), UInt8(ascii: "_"), UInt8(ascii: "`"),
             UInt8(ascii: "|"), UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }

    /// The value characters of one section of an RFC 2231 continuation,
    /// "utf-8''" included for the first: with " filename*N*=" and ";" a
    /// line stays within 78 characters for up to 100,000 sections.
    static let sectionWidth = 60
    private static let charsetPrefix: StaticString = "utf-8''"

    /// `filename*=utf-8''%C3%A9...` (RFC 2231 §4), or, when that would not
    /// fit on one line, numbered sections `filename*0*=utf-8''...;
    /// filename*1*=...` each on its own line. A section never ends inside a
    /// UTF-8 sequence: Python's email package, for one, decodes each
    /// section on its own.
    static func appendExtendedFilename(_ name: UnsafeBufferPointer<UInt8>, column start: Int, to out: inout [UInt8]) {
        var total = charsetPrefix.utf8CodeUnitCount
        for c in name { total += isAttributeCharacter(c) ? 1 : 3 }
        var column = start
        if total <= sectionWidth {
            appendParameterSeparator(width: 10 + total, column: &column, to: &out)
            out.appendASCII("filename*=")
            out.appendASCII(charsetPrefix)
            for c in name { appendPercentEncoded(c, to: &out) }
            return
        }
        var section = 0
        var width = sectionWidth  // forces the first section header
        var i = 0
        while i < name.count {
            // The whole UTF-8 sequence that starts at i.
            var end = i + 1
            while end < name.count, name[end] & 0xC0 == 0x80 { end += 1 }
            var sequenceWidth = 0
            for c in name[i..<end] { sequenceWidth += isAttributeCharacter(c) ? 1 : 3 }
            if width + sequenceWidth > sectionWidth {
                out.appendASCII(";\r\n filename*")
                appendDecimal(section, to: &out)
                out.appendASCII("*=")
                width = 0
                if section == 0 {
                    out.appendASCII(charsetPrefix)
                    width = charsetPrefix.utf8CodeUnitCount
                }
                section += 1
            }
            for c in name[i..<end] { appendPercentEncoded(c, to: &out) }
            width += sequenceWidth
            i = end
        }
    }

    private static let hexDigits: StaticString = "0123456789ABCDEF"

    @inline(__always)
    private static func appendPercentEncoded(_ c: UInt8, to out: inout [UInt8]) {
        if isAttributeCharacter(c) {
            out.append(c)
            return
        }
        out.append(UInt8(ascii: "%"))
        hexDigits.withUTF8Buffer { hex in
            out.append(hex[Int(c >> 4)])
            out.append(hex[Int(c & 0x0F)])
        }
    }

    private static func appendDecimal(_ value: Int, to out: inout [UInt8]) {
        if value >= 10 { appendDecimal(value / 10, to: &out) }
        out.append(UInt8(ascii: "0") + UInt8(value % 10))
    }

    // MARK: Body

    /// RFC 2045 §6.8: encoded lines of at most 76 characters; 57 input
    /// octets make exactly 76.
    static let base64Line = 76
    private static let octetsPerLine = 57

    /// Base64 in lines of exactly 76 characters (the last one shorter),
    /// separated by CRLF, with no break after the last.
    static func appendBase64Lines(_ bytes: UnsafeBufferPointer<UInt8>, to out: inout [UInt8]) {
        var start = 0
        while start < bytes.count {
            let end = min(start + octetsPerLine, bytes.count)
            if start > 0 { out.appendCRLF() }
            Base64.standard.append(UnsafeBufferPointer(rebasing: bytes[start..<end]), to: &out)
            start = end
        }
    }
}
