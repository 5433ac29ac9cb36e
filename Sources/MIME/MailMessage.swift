// Rendering of a single-part text/plain message into wire bytes.

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

public enum HeaderError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A header value holds CR, LF or NUL (or, for Message-ID, any octet
    /// that cannot appear in a msg-id). Such values are refused, never
    /// stripped: stripping would hide a header-injection attempt.
    case containsControlCharacter(field: String)

    public var description: String {
        switch self {
        case .containsControlCharacter(let field):
            if field == "Message-ID" {
                return "Message-ID must be printable ASCII without spaces, '<' or '>'"
            }
            return "\(field) must not contain CR, LF or NUL"
        }
    }
}

public struct MailMessage: Sendable {
    public var from: Mailbox
    public var to: Mailbox
    public var subject: String
    public var body: String
    public var date: Date
    /// Without angle brackets, e.g. "1a2b...@example.com".
    public var messageID: String

    public init(from: Mailbox, to: Mailbox, subject: String, body: String, date: Date, messageID: String) {
        self.from = from
        self.to = to
        self.subject = subject
        self.body = body
        self.date = date
        self.messageID = messageID
    }

    /// Renders the complete message as CRLF-terminated bytes. The body is not
    /// dot-stuffed (the SMTP layer does that) and there is no Bcc header.
    public func render() throws(HeaderError) -> [UInt8] {
        // All validation happens before any output is built, so nothing
        // below can fail half-way.
        try Self.refuseLineBreaks(subject, field: "Subject")
        if let name = from.displayName { try Self.refuseLineBreaks(name, field: "From") }
        if let name = to.displayName { try Self.refuseLineBreaks(name, field: "To") }
        let id = try Self.validatedMessageID(messageID)

        var body = self.body
        return body.withUTF8 { bodyBytes in
            let scan = BodyScan(bodyBytes)
            var out: [UInt8] = []
            out.reserveCapacity(
                512 + subject.utf8.count * 2 + id.count
                    + Self.estimatedSize(from) + Self.estimatedSize(to) + scan.estimatedOutput)

            out.appendASCII("Date: ")
            RFC5322Date.append(date, to: &out)
            out.appendCRLF()

            Self.appendMailbox(from, field: "From: ", to: &out)
            Self.appendMailbox(to, field: "To: ", to: &out)
            Self.appendSubject(subject, to: &out)

            out.appendASCII("Message-ID: <")
            out.append(contentsOf: id)
            out.appendASCII(">\r\n")
            out.appendASCII("MIME-Version: 1.0\r\n")
            out.appendASCII("Content-Type: text/plain; charset=utf-8\r\n")
            if scan.sevenBit {
                out.appendASCII("Content-Transfer-Encoding: 7bit\r\n\r\n")
                SevenBit.append(bodyBytes, to: &out)
            } else {
                out.appendASCII("Content-Transfer-Encoding: quoted-printable\r\n\r\n")
                QuotedPrintable.append(bodyBytes, to: &out)
            }
            return out
        }
    }

    // MARK: - Validation

    private static func refuseLineBreaks(_ value: String, field: String) throws(HeaderError) {
        for c in value.utf8 where c == asciiCR || c == asciiLF || c == 0 {
            throw .containsControlCharacter(field: field)
        }
    }

    /// Returns the id's octets (surrounding angle brackets tolerated and
    /// removed); the id must be printable ASCII without space or brackets,
    /// so it cannot break out of "<...>" nor out of the header line.
    private static func validatedMessageID(_ raw: String) throws(HeaderError) -> ArraySlice<UInt8> {
        var id = ArraySlice(raw.utf8)
        if id.count >= 2, id.first == UInt8(ascii: "<"), id.last == UInt8(ascii: ">") {
            id = id.dropFirst().dropLast()
        }
        guard !id.isEmpty, id.count <= 900,
              id.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "<") && $0 != UInt8(ascii: ">") })
        else { throw .containsControlCharacter(field: "Message-ID") }
        return id
    }

    // MARK: - Headers

    /// RFC 5322 §2.1.1: lines SHOULD stay within 78 characters.
    private static let preferredLine = 78
    /// Above this, an ASCII value is encoded so it can be folded: a line
    /// must never exceed 998 octets.
    private static let maxRawValue = 900

    private static func estimatedSize(_ mailbox: Mailbox) -> Int {
        (mailbox.displayName?.utf8.count ?? 0) * 2 + mailbox.address.localPart.utf8.count
            + mailbox.address.domain.utf8.count + 16
    }

    /// Whether an unstructured value must become encoded-words: non-ASCII,
    /// controls (TAB included), text that a decoder would mistake for an
    /// encoded-word, values too long to keep on one line, and leading or
    /// trailing whitespace (which parsers strip).
    private static func needsEncoding(_ value: String) -> Bool {
        var previous: UInt8 = 0
        var count = 0
        for c in value.utf8 {
            if c < 0x20 || c >= 0x7F { return true }
            if previous == UInt8(ascii: "="), c == UInt8(ascii: "?") { return true }
            previous = c
            count += 1
        }
        if count > maxRawValue { return true }
        return value.utf8.first == asciiSP || value.utf8.last == asciiSP
    }

    private static func appendSubject(_ subject: String, to out: inout [UInt8]) {
        out.appendASCII("Subject:")
        if subject.isEmpty {
            out.appendCRLF()
            return
        }
        out.append(asciiSP)
        if needsEncoding(subject) {
            _ = EncodedWord.append(subject, to: &out, column: 9)
        } else {
            appendFolded(subject, to: &out, column: 9)
        }
        out.appendCRLF()
    }

    /// Writes printable ASCII, folding (CRLF inserted before a space) where a
    /// line would pass 78 characters. Unfolding removes only the CRLF, so the
    /// value is unchanged. Callers guarantee no leading/trailing space and at
    /// most `maxRawValue` octets, so every line stays far below 998.
    private static func appendFolded(_ value: String, to out: inout [UInt8], column start: Int) {
        var value = value
        value.withUTF8 { b in
            if start + b.count <= preferredLine {
                out.append(contentsOf: b)
                return
            }
            // Break opportunities are spaces that follow a non-space, so each
            // continuation line starts with whitespace followed by text.
            var column = start
            var segmentStart = 0
            func emit(upTo end: Int) {
                let width = end - segmentStart
                if segmentStart > 0 && column + width > preferredLine {
                    out.appendCRLF()
                    column = 0
                }
                out.append(contentsOf: UnsafeBufferPointer(rebasing: b[segmentStart..<end]))
                column += width
                segmentStart = end
            }
            for i in 1..<b.count where b[i] == asciiSP && b[i - 1] != asciiSP {
                emit(upTo: i)
            }
            emit(upTo: b.count)
        }
    }

    private static func appendMailbox(_ mailbox: Mailbox, field: StaticString, to out: inout [UInt8]) {
        out.appendASCII(field)
        var column = field.utf8CodeUnitCount
        let local = mailbox.address.localPart.utf8
        let domain = mailbox.address.domain.utf8
        // A name of nothing but spaces carries no information: omit it.
        guard let name = mailbox.displayName, name.utf8.contains(where: { $0 != asciiSP }) else {
            out.append(contentsOf: local)
            out.append(UInt8(ascii: "@"))
            out.append(contentsOf: domain)
            out.appendCRLF()
            return
        }
        // RFC 5322 quoted-string: only '\' and '"' need escaping, and each
        // escape is a byte on the line: the width is what is written.
        let escapes = name.utf8.reduce(0) { $0 + ($1 == UInt8(ascii: "\\") || $1 == UInt8(ascii: "\"") ? 1 : 0) }
        let quotedWidth = name.utf8.count + escapes + 2
        if needsEncoding(name) || quotedWidth > maxRawValue {
            // Encoded-words fold; a quoted-string without spaces cannot.
            column = EncodedWord.append(name, to: &out, column: column)
        } else if isPlainPhrase(name) {
            out.append(contentsOf: name.utf8)
            column += name.utf8.count
        } else {
            out.append(UInt8(ascii: "\""))
            for c in name.utf8 {
                if c == UInt8(ascii: "\\") || c == UInt8(ascii: "\"") { out.append(UInt8(ascii: "\\")) }
                out.append(c)
            }
            out.append(UInt8(ascii: "\""))
            column += quotedWidth
        }
        // " <local@domain>": fold before '<' (CFWS is allowed there) when it
        // would overflow the preferred line length.
        let addressWidth = local.count + domain.count + 3
        if column + 1 + addressWidth > preferredLine {
            out.appendCRLF()
        }
        out.append(asciiSP)
        out.append(UInt8(ascii: "<"))
        out.append(contentsOf: local)
        out.append(UInt8(ascii: "@"))
        out.append(contentsOf: domain)
        out.append(UInt8(ascii: ">"))
        out.appendCRLF()
    }

    /// Words of RFC 5322 atext separated by single spaces: safe unquoted.
    private static func isPlainPhrase(_ name: String) -> Bool {
        var previousSpace = true
        for c in name.utf8 {
            if c == asciiSP {
                if previousSpace { return false }
                previousSpace = true
            } else if EmailAddress.isAtext(c) {
                previousSpace = false
            } else {
                return false
            }
        }
        return !previousSpace
    }
}
