// Mailgate's one line-break rule. The MIME renderer (body encodings) and
// the SMTP client (CRLF normalisation, dot-stuffing and the line-length
// check of DATA) both split text into lines here, so what a message calls a
// line and what goes on the wire as one cannot disagree.
//
// The rule: CR LF is one line break; a CR that is not followed by LF, and an
// LF that does not follow a CR, are each a line break of their own.
//
// So "a\r\r\nb" is three lines, "a", "" and "b" (a bare CR, then a CRLF), as
// Python's str.splitlines() and every "universal newlines" reader see it.
// (An earlier SMTP-only rule read a run of CRs ended by LF as one break; with
// either rule no bare CR or LF reaches the wire, which is what stops SMTP
// smuggling, but two rules meant two readings of the same body.)

public enum LineBreak {
    /// RFC 5322 §2.1.1 / RFC 5321 §4.5.3.1.6: a line is at most 998 octets
    /// without its CRLF.
    public static let maxLineLength = 998

    /// Calls `body` with each line's content (line break excluded) and
    /// whether a line break ended it. Only the last line can be unterminated;
    /// input that ends with a line break has no empty last line, and empty
    /// input has no lines at all.
    @inlinable
    public static func forEachLine(in bytes: UnsafeBufferPointer<UInt8>,
                                   _ body: (_ line: UnsafeBufferPointer<UInt8>, _ terminated: Bool) -> Void) {
        let n = bytes.count
        var start = 0
        var i = 0
        while i < n {
            let c = bytes[i]
            if c == 0x0D || c == 0x0A {
                body(UnsafeBufferPointer(rebasing: bytes[start..<i]), true)
                i += c == 0x0D && i + 1 < n && bytes[i + 1] == 0x0A ? 2 : 1
                start = i
            } else {
                i += 1
            }
        }
        if start < n { body(UnsafeBufferPointer(rebasing: bytes[start..<n]), false) }
    }

    /// The length in octets of the longest line (line breaks excluded).
    public static func longestLine(in bytes: [UInt8]) -> Int {
        var longest = 0
        bytes.withUnsafeBufferPointer { b in
            forEachLine(in: b) { line, _ in longest = max(longest, line.count) }
        }
        return longest
    }
}
