// The entry point of message rendering: the header block (dates,
// addresses, subject, Message-ID, custom headers) and the single-part
// text/plain body. Multipart bodies are in Multipart.swift, attachments in
// Attachment.swift, custom header checks in CustomHeader.swift.

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Why `MailMessage.render()` refused a message. Each description is the
/// text a client sees as the 400 detail, so it names the field (or the
/// attachment's index in `attachments`, counted from 0) at fault.
public enum HeaderError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A header value holds CR, LF or NUL (or, for Message-ID, any octet
    /// that cannot appear in a msg-id). Such values are refused, never
    /// stripped: stripping would hide a header-injection attempt.
    case containsControlCharacter(field: String)
    /// `to` is empty: a message needs at least one To address.
    case noRecipient
    /// A custom header with a valid field name that is not on the allow
    /// list (From, Bcc, Content-Type...): those are Mailgate's to write.
    case headerNotAllowed(String)
    /// A custom header name that is not an RFC 5322 field name (1 to 76
    /// printable ASCII characters other than ':'). The name is kept to its
    /// first 64 Unicode scalars, so an error never echoes a huge input.
    case invalidHeaderName(String)
    /// A custom header's value holds CR, LF or NUL.
    case headerContainsControlCharacter(name: String)
    /// An attachment that cannot be sent; `index` is its position in
    /// `attachments`, from 0.
    case invalidAttachment(index: Int, reason: String)

    public var description: String {
        switch self {
        case .containsControlCharacter(let field):
            if field == "Message-ID" {
                return "Message-ID must be printable ASCII without spaces, '<' or '>'"
            }
            return "\(field) must not contain CR, LF or NUL"
        case .noRecipient:
            return "At least one To address is required"
        case .headerNotAllowed(let name):
            return "Header not allowed: \(name)"
        case .invalidHeaderName(let name):
            return "Header not allowed: \"\(name)\" is not a valid header name"
        case .headerContainsControlCharacter(let name):
            return "Header \(name) must not contain CR, LF or NUL"
        case .invalidAttachment(let index, let reason):
            return "Invalid attachment \(index): \(reason)"
        }
    }
}

public struct MailMessage: Sendable {
    public var from: Mailbox
    /// One or more addresses (render() refuses an empty list).
    public var to: [Mailbox]
    public var cc: [Mailbox]
    public var replyTo: [Mailbox]
    public var subject: String
    /// The plain-text body; always sent, as the only part or as the first
    /// alternative to `html`.
    public var body: String
    /// An HTML alternative to `body`.
    public var html: String?
    /// Files, in order. One with a `contentID` is an inline part the HTML
    /// refers to as "cid:ID" (see Multipart.swift for where it goes).
    public var attachments: [Attachment]
    /// Extra header fields, written in order after Message-ID. Only the
    /// names `CustomHeader` allows are accepted.
    public var headers: [CustomHeader]
    public var date: Date
    /// Without angle brackets, e.g. "1a2b...@example.com".
    public var messageID: String

    /// A text/plain message to one address.
    public init(from: Mailbox, to: Mailbox, subject: String, body: String, date: Date, messageID: String) {
        self.init(from: from, to: [to], subject: subject, body: body, date: date, messageID: messageID)
    }

    public init(from: Mailbox, to: [Mailbox], cc: [Mailbox] = [], replyTo: [Mailbox] = [],
                subject: String, body: String, html: String? = nil, attachments: [Attachment] = [],
                headers: [CustomHeader] = [], date: Date, messageID: String) {
        self.from = from
        self.to = to
        self.cc = cc
        self.replyTo = replyTo
        self.subject = subject
        self.body = body
        self.html = html
        self.attachments = attachments
        self.headers = headers
        self.date = date
        self.messageID = messageID
    }

    /// Renders the complete message as CRLF-terminated bytes, no line over
    /// 998 octets. The body is not dot-stuffed (the SMTP layer does that)
    /// and there is no Bcc header (Bcc lives only in the SMTP envelope).
    /// Multipart boundaries take their random part from the system's
    /// generator.
    public func render() throws(HeaderError) -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return try render(using: &generator)
    }

    /// `render()` with the boundaries' random part drawn from `generator`
    /// (one 64-bit value, and only for a multipart message), so a test can
    /// make the output repeatable. The boundaries' safety does not depend
    /// on that randomness (see `Multipart`).
    public func render<Generator: RandomNumberGenerator>(using generator: inout Generator) throws(HeaderError) -> [UInt8] {
        // All validation happens before any output is built, so nothing
        // below can fail half-way.
        try Self.refuseLineBreaks(subject, field: "Subject")
        if let name = from.displayName { try Self.refuseLineBreaks(name, field: "From") }
        if to.isEmpty { throw .noRecipient }
        for mailbox in to { if let name = mailbox.displayName { try Self.refuseLineBreaks(name, field: "To") } }
        for mailbox in cc { if let name = mailbox.displayName { try Self.refuseLineBreaks(name, field: "Cc") } }
        for mailbox in replyTo {
            if let name = mailbox.displayName { try Self.refuseLineBreaks(name, field: "Reply-To") }
        }
        let id = try Self.validatedMessageID(messageID)
        try CustomHeader.validate(headers)
        var prepared: [PreparedAttachment] = []
        prepared.reserveCapacity(attachments.count)
        for (index, attachment) in attachments.enumerated() {
            prepared.append(try PreparedAttachment(attachment, index: index))
        }

        if html == nil && prepared.isEmpty {
            return renderTextOnly(id: id)
        }
        return Multipart.render(self, id: id, attachments: prepared, token: generator.next())
    }

    /// The single-part text/plain message: the common case, kept to one
    /// scan of the body and one buffer.
    private func renderTextOnly(id: ArraySlice<UInt8>) -> [UInt8] {
        var body = self.body
        return body.withUTF8 { bodyBytes in
            let scan = BodyScan(bodyBytes)
            var out: [UInt8] = []
            out.reserveCapacity(estimatedHeaderSize(id: id) + scan.estimatedOutput)
            appendHeaders(id: id, to: &out)
            out.appendASCII("Content-Type: text/plain; charset=utf-8\r\n")
            TransferEncodedText.append(bodyBytes, sevenBit: scan.sevenBit, to: &out)
            return out
        }
    }

    /// Every header up to and including MIME-Version; the caller writes the
    /// Content-* fields of the message's top-level part.
    func appendHeaders(id: ArraySlice<UInt8>, to out: inout [UInt8]) {
        out.appendASCII("Date: ")
        RFC5322Date.append(date, to: &out)
        out.appendCRLF()

        Self.appendMailboxList(CollectionOfOne(from), field: "From: ", to: &out)
        if !replyTo.isEmpty { Self.appendMailboxList(replyTo, field: "Reply-To: ", to: &out) }
        Self.appendMailboxList(to, field: "To: ", to: &out)
        if !cc.isEmpty { Self.appendMailboxList(cc, field: "Cc: ", to: &out) }
        Self.appendSubject(subject, to: &out)

        out.appendASCII("Message-ID: <")
        out.append(contentsOf: id)
        out.appendASCII(">\r\n")
        CustomHeader.append(headers, to: &out)
        out.appendASCII("MIME-Version: 1.0\r\n")
    }

    /// Room for the header block and the top-level Content-* fields.
    func estimatedHeaderSize(id: ArraySlice<UInt8>) -> Int {
        var size = 512 + subject.utf8.count * 2 + id.count + Self.estimatedSize(from)
        for mailbox in to { size += Self.estimatedSize(mailbox) }
        for mailbox in cc { size += Self.estimatedSize(mailbox) }
        for mailbox in replyTo { size += Self.estimatedSize(mailbox) }
        for header in headers { size += header.name.utf8.count + header.value.utf8.count * 2 + 4 }
        return size
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
    static let preferredLine = 78
    /// Above this, an ASCII value is encoded so it can be folded: a line
    /// must never exceed 998 octets.
    static let maxRawValue = 900

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
    /// value is unchanged. Callers guarantee no leading/trailing space and
    /// no stretch between two break opportunities longer than `maxRawValue`
    /// octets (the Subject by limiting the whole value), so with a field
    /// name of at most 76 characters every line stays below 998.
    static func appendFolded(_ value: String, to out: inout [UInt8], column start: Int) {
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

    /// One address field: the mailboxes comma-separated, a fold (CRLF SP)
    /// before a mailbox that would pass 78 characters. A single mailbox
    /// renders exactly as Mailgate always has.
    private static func appendMailboxList<Mailboxes: Collection<Mailbox>>(
        _ mailboxes: Mailboxes, field: StaticString, to out: inout [UInt8]
    ) {
        out.appendASCII(field)
        var column = field.utf8CodeUnitCount
        var remaining = mailboxes.count
        for mailbox in mailboxes {
            remaining -= 1
            // Every mailbox but the last is followed by a comma on its line.
            let comma = remaining > 0 ? 1 : 0
            if remaining < mailboxes.count - 1 {
                out.append(UInt8(ascii: ","))
                column += 1
                if column + 1 + leadingWidth(mailbox, comma: comma) > preferredLine {
                    out.appendCRLF()
                    column = 0
                }
                out.append(asciiSP)
                column += 1
            }
            column = appendMailbox(mailbox, column: column, comma: comma, to: &out)
        }
        out.appendCRLF()
    }

    /// A name of nothing but spaces carries no information: it is omitted.
    private static func visibleName(_ mailbox: Mailbox) -> String? {
        guard let name = mailbox.displayName, name.utf8.contains(where: { $0 != asciiSP }) else { return nil }
        return name
    }

    /// How much of `mailbox` must fit after ", " for it to start on the
    /// current line: the bare address, or the display name. An encoded name
    /// folds itself, but only after its first word; 30 columns leave that
    /// word room for a 4-octet character, so `EncodedWord` never has to
    /// fold right after the ", " (which would leave a line ending in a space).
    private static func leadingWidth(_ mailbox: Mailbox, comma: Int) -> Int {
        guard let name = visibleName(mailbox) else {
            return mailbox.address.localPart.utf8.count + 1 + mailbox.address.domain.utf8.count + comma
        }
        if needsEncoding(name) { return 30 }
        if isPlainPhrase(name) { return name.utf8.count }
        return quotedWidth(name)
    }

    /// RFC 5322 quoted-string: only '\' and '"' need escaping, and each
    /// escape is a byte on the line: the width is what is written.
    private static func quotedWidth(_ name: String) -> Int {
        name.utf8.reduce(0) { $0 + ($1 == UInt8(ascii: "\\") || $1 == UInt8(ascii: "\"") ? 1 : 0) } + name.utf8.count + 2
    }

    /// Writes one mailbox starting at `column`; returns the column after it.
    /// `comma` (0 or 1) is the width of what will follow on the line.
    private static func appendMailbox(_ mailbox: Mailbox, column start: Int, comma: Int, to out: inout [UInt8]) -> Int {
        var column = start
        let local = mailbox.address.localPart.utf8
        let domain = mailbox.address.domain.utf8
        guard let name = visibleName(mailbox) else {
            out.append(contentsOf: local)
            out.append(UInt8(ascii: "@"))
            out.append(contentsOf: domain)
            return column + local.count + 1 + domain.count
        }
        let quotedWidth = quotedWidth(name)
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
        if column + 1 + addressWidth + comma > preferredLine {
            out.appendCRLF()
            column = 0
        }
        out.append(asciiSP)
        out.append(UInt8(ascii: "<"))
        out.append(contentsOf: local)
        out.append(UInt8(ascii: "@"))
        out.append(contentsOf: domain)
        out.append(UInt8(ascii: ">"))
        return column + 1 + addressWidth
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
