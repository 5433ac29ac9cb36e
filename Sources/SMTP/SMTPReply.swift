/// One complete (possibly multi-line) SMTP reply.
public struct SMTPReply: Sendable, Equatable {
    /// The three-digit reply code.
    public let code: Int
    /// The RFC 3463 enhanced status code ("5.1.1") when the server sent one.
    public let enhancedStatus: String?
    /// The text of each line, without the code, the separator and the
    /// enhanced status code. Control characters are replaced with "?" so the
    /// text is safe to log.
    public let lines: [String]

    public init(code: Int, enhancedStatus: String? = nil, lines: [String]) {
        self.code = code
        self.enhancedStatus = enhancedStatus
        self.lines = lines
    }

    /// The lines joined with " ".
    public var text: String { lines.joined(separator: " ") }
    /// 2xx or 3xx.
    public var isPositive: Bool { (200..<400).contains(code) }
    /// 4xx: try again later.
    public var isTransient: Bool { (400..<500).contains(code) }
    /// 5xx: do not try again.
    public var isPermanent: Bool { (500..<600).contains(code) }
    /// 2xx.
    var isCompletion: Bool { (200..<300).contains(code) }
}

extension SMTPReply: CustomStringConvertible {
    /// "550 5.1.1 User unknown"
    public var description: String {
        var s = String(code)
        if let enhancedStatus { s += " " + enhancedStatus }
        if !text.isEmpty { s += " " + text }
        return s
    }
}

/// Assembles replies from lines (CRLF already removed), one line at a time.
///
/// It is a pure state machine so the syntax rules are unit-tested without a
/// socket; the connection feeds it from its read buffer.
public struct SMTPReplyParser: Sendable {
    public struct ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        public let message: String
        public var description: String { message }
    }

    /// A reply line longer than this is refused (RFC 5321 allows 512 octets;
    /// real servers stay far below this), so a hostile server cannot make us
    /// buffer without bound.
    public static let maxLineLength = 4096
    /// Likewise for the number of lines in one reply (EHLO has ~20).
    public static let maxLines = 256

    private var code: Int?
    private var enhanced: String?
    private var texts: [String] = []

    public init() {}

    /// Feeds one line. Returns the reply when `line` was its last line.
    public mutating func consume<Line: Collection<UInt8>>(line: Line) throws(ParseError) -> SMTPReply? {
        let bytes = Array(line)
        guard bytes.count <= Self.maxLineLength else {
            throw ParseError(message: "reply line longer than \(Self.maxLineLength) bytes")
        }
        guard bytes.count >= 3,
              let c = Self.parseCode(bytes[0], bytes[1], bytes[2]) else {
            throw ParseError(message: "malformed reply line \"\(Self.printable(bytes.prefix(40)))\"")
        }
        let isLast: Bool
        if bytes.count == 3 {
            isLast = true  // "250" alone: allowed by RFC 5321 as a last line
        } else if bytes[3] == UInt8(ascii: " ") {
            isLast = true
        } else if bytes[3] == UInt8(ascii: "-") {
            isLast = false
        } else {
            throw ParseError(message: "malformed reply line \"\(Self.printable(bytes.prefix(40)))\"")
        }
        if let code, code != c {
            throw ParseError(message: "reply code changed from \(code) to \(c) within one reply")
        }
        guard texts.count < Self.maxLines else {
            throw ParseError(message: "reply longer than \(Self.maxLines) lines")
        }
        var text = bytes.count > 4 ? Array(bytes[4...]) : []
        if code == nil {
            code = c
            if let (status, rest) = Self.splitEnhanced(text, classDigit: c / 100) {
                enhanced = status
                text = rest
            }
        } else if let enhanced, let (status, rest) = Self.splitEnhanced(text, classDigit: c / 100), status == enhanced {
            // Servers repeat the enhanced code on every line; keep it once.
            text = rest
        }
        texts.append(Self.printable(text[...]))
        guard isLast else { return nil }
        let reply = SMTPReply(code: c, enhancedStatus: enhanced, lines: texts)
        self = SMTPReplyParser()
        return reply
    }

    /// Parses a whole byte stream of replies (lines ended by CRLF or LF).
    /// A trailing incomplete reply is an error. Used by tests and tools.
    public static func parseAll(_ bytes: [UInt8]) throws(ParseError) -> [SMTPReply] {
        var parser = SMTPReplyParser()
        var replies: [SMTPReply] = []
        var start = 0
        while start < bytes.count {
            guard let lf = bytes[start...].firstIndex(of: 10) else {
                throw ParseError(message: "incomplete reply line at end of input")
            }
            var end = lf
            if end > start, bytes[end - 1] == 13 { end -= 1 }
            if let reply = try parser.consume(line: bytes[start..<end]) { replies.append(reply) }
            start = lf + 1
        }
        guard parser.code == nil else { throw ParseError(message: "incomplete multi-line reply at end of input") }
        return replies
    }

    /// Reply codes are [2-5][0-5][0-9] (RFC 5321 4.2); 1yz is never used in SMTP.
    private static func parseCode(_ a: UInt8, _ b: UInt8, _ c: UInt8) -> Int? {
        guard (UInt8(ascii: "2")...UInt8(ascii: "5")).contains(a),
              (UInt8(ascii: "0")...UInt8(ascii: "5")).contains(b),
              (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(c) else { return nil }
        return Int(a - 48) * 100 + Int(b - 48) * 10 + Int(c - 48)
    }

    /// RFC 3463: class "." subject "." detail, class matching the reply's
    /// first digit, subject and detail 1-3 digits, then a space or the end.
    private static func splitEnhanced(_ text: [UInt8], classDigit: Int) -> (String, [UInt8])? {
        guard text.count >= 5, text[0] == UInt8(48 + classDigit), text[1] == UInt8(ascii: ".") else { return nil }
        var i = 2
        for part in 0..<2 {
            let digitsStart = i
            while i < text.count, (48...57).contains(text[i]), i - digitsStart < 4 { i += 1 }
            let n = i - digitsStart
            guard (1...3).contains(n) else { return nil }
            if part == 0 {
                guard i < text.count, text[i] == UInt8(ascii: ".") else { return nil }
                i += 1
            }
        }
        if i < text.count {
            guard text[i] == UInt8(ascii: " ") else { return nil }
            return (String(decoding: text[..<i], as: UTF8.self), Array(text[(i + 1)...]))
        }
        return (String(decoding: text[..<i], as: UTF8.self), [])
    }

    /// Text that is safe to put in a log line: invalid UTF-8 becomes U+FFFD,
    /// control characters become "?".
    static func printable(_ bytes: some Collection<UInt8>) -> String {
        // The usual reply text is printable ASCII and needs no rewriting
        // (scalar by scalar, this was 4% of a send's instructions).
        if bytes.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) { return String(decoding: bytes, as: UTF8.self) }
        let s = String(decoding: bytes, as: UTF8.self)
        var out = String.UnicodeScalarView()
        for scalar in s.unicodeScalars {
            if scalar.value < 0x20 && scalar != "\t" || scalar.value == 0x7F {
                out.append("?")
            } else {
                out.append(scalar)
            }
        }
        return String(out)
    }
}
