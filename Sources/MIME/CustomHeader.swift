// Caller-supplied header fields: which names are accepted, and how values
// are written.
//
// The allow list is deliberately short. Every field that says who sent the
// message, to whom, when, or how its body is to be read (From, Sender, To,
// Cc, Bcc, Date, Message-ID, MIME-Version, Content-*, trace and
// authentication fields) is Mailgate's to write: a caller-supplied copy
// would contradict the real one or be a spoofing tool.

/// One extra header field. `name` must be an RFC 5322 field name that
/// `MailMessage.render()` accepts: any `X-...`, or one of List-Unsubscribe,
/// List-Unsubscribe-Post, List-Id, In-Reply-To, References, Auto-Submitted,
/// Precedence, Importance, Priority (compared ignoring ASCII case). The same
/// name may be given more than once; fields are written in order.
public struct CustomHeader: Sendable {
    public var name: String
    /// Unstructured text: non-ASCII values are sent as RFC 2047
    /// encoded-words, long ones folded at spaces. CR, LF and NUL are refused.
    public var value: String

    public init(name: String, value: String) {
        self.name = name
        self.value = value
    }
}

extension CustomHeader {
    /// RFC 5322 §2.1.1: a name must leave room on its line for ": " and a
    /// little of the value; 76 keeps "Name:" within 78 characters.
    static let maxNameLength = 76

    /// Names allowed besides `X-*`.
    private static let allowedNames: [StaticString] = [
        "List-Unsubscribe", "List-Unsubscribe-Post", "List-Id", "In-Reply-To", "References",
        "Auto-Submitted", "Precedence", "Importance", "Priority",
    ]

    /// Throws for the first header (in order) with an invalid or disallowed
    /// name, or with CR, LF or NUL in its value. Work is linear in the
    /// headers' size: names are compared as bytes against a fixed list.
    static func validate(_ headers: [CustomHeader]) throws(HeaderError) {
        for header in headers {
            let name = header.name.utf8
            guard (1...maxNameLength).contains(name.count),
                  name.allSatisfy({ $0 >= 33 && $0 <= 126 && $0 != UInt8(ascii: ":") })
            else { throw .invalidHeaderName(shortened(header.name)) }
            guard isAllowed(name) else { throw .headerNotAllowed(header.name) }
            for c in header.value.utf8 where c == asciiCR || c == asciiLF || c == 0 {
                throw .headerContainsControlCharacter(name: header.name)
            }
        }
    }

    /// At most 64 Unicode scalars of an invalid name, for the error text.
    private static func shortened(_ name: String) -> String {
        var scalars = String.UnicodeScalarView()
        scalars.append(contentsOf: name.unicodeScalars.prefix(64))
        if !name.unicodeScalars.dropFirst(64).isEmpty { scalars.append("…") }
        return String(scalars)
    }

    /// `X-` followed by at least one character, or a name on the list,
    /// ignoring ASCII case (bytes, never String ==: no Unicode
    /// normalisation of untrusted input).
    static func isAllowed(_ name: String.UTF8View) -> Bool {
        if name.count > 2,
           EmailAddress.asciiLower(name[name.startIndex]) == UInt8(ascii: "x"),
           name[name.index(after: name.startIndex)] == UInt8(ascii: "-") {
            return true
        }
        for allowed in allowedNames where allowed.utf8CodeUnitCount == name.count {
            let matches = allowed.withUTF8Buffer { known in
                known.elementsEqual(name) { EmailAddress.asciiLower($0) == EmailAddress.asciiLower($1) }
            }
            if matches { return true }
        }
        return false
    }

    /// Writes validated headers, one field each: "Name: value" CRLF.
    static func append(_ headers: [CustomHeader], to out: inout [UInt8]) {
        for header in headers {
            out.append(contentsOf: header.name.utf8)
            out.append(UInt8(ascii: ":"))
            if header.value.isEmpty {
                out.appendCRLF()
                continue
            }
            out.append(asciiSP)
            // The value always starts on the name's line: a fold right after
            // the colon reads as a leading space to some parsers (Python's
            // email package among them). So with a name near 76 characters
            // that first line is longer than 78 (never near 998).
            let column = header.name.utf8.count + 2
            if needsEncoding(header.value) {
                // EncodedWord would fold before its first word when the
                // column leaves no room: give it a column that does.
                _ = EncodedWord.append(header.value, to: &out, column: min(column, 48))
            } else {
                MailMessage.appendFolded(header.value, to: &out, column: column)
            }
            out.appendCRLF()
        }
    }

    /// Like the Subject's rule (non-ASCII, controls including TAB, "=?",
    /// leading or trailing space), except for length: a long value of short
    /// words (References with many ids) is folded, not encoded, because
    /// encoded-words would break structured values. Only a stretch without
    /// a break opportunity longer than `MailMessage.maxRawValue` forces
    /// encoding, which is what `appendFolded` needs to stay below 998.
    static func needsEncoding(_ value: String) -> Bool {
        var previous: UInt8 = asciiSP
        var segment = 0
        for c in value.utf8 {
            if c < 0x20 || c >= 0x7F { return true }
            if previous == UInt8(ascii: "="), c == UInt8(ascii: "?") { return true }
            // appendFolded breaks before a space that follows a non-space;
            // a segment runs from one such space to the next.
            if c == asciiSP && previous != asciiSP { segment = 0 }
            segment += 1
            if segment > MailMessage.maxRawValue { return true }
            previous = c
        }
        return value.utf8.first == asciiSP || value.utf8.last == asciiSP
    }
}
