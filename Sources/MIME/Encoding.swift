// Byte-level encoders used by `MailMessage.render()`. They all append into a
// caller-owned [UInt8] so a message is built in one preallocated buffer.

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Base64

@usableFromInline let asciiCR: UInt8 = 0x0D
@usableFromInline let asciiLF: UInt8 = 0x0A
@usableFromInline let asciiSP: UInt8 = 0x20
@usableFromInline let asciiTab: UInt8 = 0x09

private let hexDigits: [UInt8] = Array("0123456789ABCDEF".utf8)

extension Array where Element == UInt8 {
    @inline(__always)
    mutating func appendCRLF() {
        append(asciiCR)
        append(asciiLF)
    }

    @inline(__always)
    mutating func appendASCII(_ s: StaticString) {
        s.withUTF8Buffer { append(contentsOf: $0) }
    }
}

// MARK: - Body analysis and transfer encodings

/// What one pass over the body tells us: which transfer encoding is needed
/// and how big the output will be (so the buffer is allocated once). Lines
/// are split by `LineBreak`'s rule, like every encoder below.
struct BodyScan {
    var sevenBit = true
    var lineBreaks = 0
    /// Octets the quoted-printable form needs before soft line breaks.
    var qpOctets = 0

    init(_ b: UnsafeBufferPointer<UInt8>) {
        var sevenBit = true
        var lineBreaks = 0
        var qpOctets = 0
        LineBreak.forEachLine(in: b) { line, terminated in
            if line.count > LineBreak.maxLineLength { sevenBit = false }
            for c in line {
                if QuotedPrintable.isLiteral(c) || c == asciiSP || c == asciiTab {
                    qpOctets += 1
                } else {
                    qpOctets += 3
                }
                // 7bit allows other C0 controls, but NUL is forbidden and
                // the rest are better made visible than sent raw.
                if c >= 0x7F || (c < 0x20 && c != asciiTab) { sevenBit = false }
            }
            if terminated {
                lineBreaks += 1
                qpOctets += 3  // a following space may need "=20"; close enough
            }
        }
        self.sevenBit = sevenBit
        self.lineBreaks = lineBreaks
        self.qpOctets = qpOctets
    }

    /// Upper bound of the encoded body size.
    var estimatedOutput: Int {
        if sevenBit { return qpOctets + lineBreaks + 2 }
        return qpOctets + (qpOctets / 73 + 1) * 3 + 2
    }
}

/// A text part's last header field and its body: the encoding the scan
/// chose (7bit, or quoted-printable), the blank line, the encoded text.
enum TransferEncodedText {
    static func append(_ text: UnsafeBufferPointer<UInt8>, sevenBit: Bool, to out: inout [UInt8]) {
        if sevenBit {
            out.appendASCII("Content-Transfer-Encoding: 7bit\r\n\r\n")
            SevenBit.append(text, to: &out)
        } else {
            out.appendASCII("Content-Transfer-Encoding: quoted-printable\r\n\r\n")
            QuotedPrintable.append(text, to: &out)
        }
    }
}

enum SevenBit {
    /// Copies the body line by line, each line ended by CRLF (a message
    /// ends with a line break; SMTP's "<CRLF>.<CRLF>" needs it).
    static func append(_ b: UnsafeBufferPointer<UInt8>, to out: inout [UInt8]) {
        LineBreak.forEachLine(in: b) { line, _ in
            out.append(contentsOf: line)
            out.appendCRLF()
        }
    }
}

enum QuotedPrintable {
    /// Maximum encoded line length, RFC 2045 §6.7 rule 5 (excluding CRLF).
    static let maxLine = 76

    /// Printable ASCII other than '=' stands for itself (rule 2).
    @inline(__always)
    static func isLiteral(_ c: UInt8) -> Bool {
        c >= 33 && c <= 126 && c != UInt8(ascii: "=")
    }

    /// Encodes the body; each line (split by `LineBreak`) ends with a hard
    /// CRLF break, long lines get soft breaks ("=" CRLF).
    static func append(_ b: UnsafeBufferPointer<UInt8>, to out: inout [UInt8]) {
        hexDigits.withUnsafeBufferPointer { hex in
            LineBreak.forEachLine(in: b) { line, _ in
                var column = 0
                let n = line.count
                for i in 0..<n {
                    let c = line[i]
                    let lastOnLine = i + 1 == n
                    // Whitespace at the end of a line would be stripped in
                    // transit (rule 3), so it is encoded there.
                    let literal = isLiteral(c) || ((c == asciiSP || c == asciiTab) && !lastOnLine)
                    let width = literal ? 1 : 3
                    // Leave room for the '=' of a soft break unless this is the
                    // last octet of the line; never split an "=XX" triplet.
                    if column + width > (lastOnLine ? maxLine : maxLine - 1) {
                        out.append(UInt8(ascii: "="))
                        out.appendCRLF()
                        column = 0
                    }
                    if literal {
                        out.append(c)
                    } else {
                        out.append(UInt8(ascii: "="))
                        out.append(hex[Int(c >> 4)])
                        out.append(hex[Int(c & 0x0F)])
                    }
                    column += width
                }
                out.appendCRLF()
            }
        }
    }
}

// MARK: - RFC 2047 encoded-words

enum EncodedWord {
    /// RFC 2047 §2: an encoded-word is at most 75 characters, and a header
    /// line containing one at most 76.
    static let maxWord = 75
    static let maxLine = 76
    static let prefix: StaticString = "=?utf-8?B?"
    static let overhead = 12  // "=?utf-8?B?" + "?="

    /// Input octets that fit in one word starting at `column`.
    @inline(__always)
    static func capacity(atColumn column: Int) -> Int {
        let room = min(maxWord, maxLine - column) - overhead
        return room <= 0 ? 0 : room / 4 * 3
    }

    /// Appends `text` as a run of B-encoded UTF-8 encoded-words separated by
    /// CRLF SP folds. Words end on extended grapheme cluster boundaries (so
    /// no decoder ever sees half a character, nor half an emoji sequence);
    /// a cluster too large for one word is split between Unicode scalars.
    /// Returns the column after the last word.
    static func append(_ text: String, to out: inout [UInt8], column startColumn: Int) -> Int {
        var column = startColumn
        var bytes = text
        return bytes.withUTF8 { utf8 -> Int in
            var chunkStart = 0
            var chunkEnd = 0
            var room = capacity(atColumn: column)

            func fold() {
                out.appendCRLF()
                out.append(asciiSP)
                column = 1
                room = capacity(atColumn: 1)
            }

            // The first word shares its line with the field name; if even a
            // 4-octet character would not fit, start on a fresh line.
            if room < 12 { fold() }

            func flush() {
                guard chunkEnd > chunkStart else { return }
                out.appendASCII(prefix)
                Base64.standard.append(UnsafeBufferPointer(rebasing: utf8[chunkStart..<chunkEnd]), to: &out)
                out.appendASCII("?=")
                column += overhead + Base64.standard.encodedLength(chunkEnd - chunkStart)
                chunkStart = chunkEnd
            }

            func add(unitEnd: Int) {
                if unitEnd - chunkStart > room {
                    // Close the current word (if any) and continue on a new
                    // line: whitespace between adjacent encoded-words is
                    // dropped by decoders, so the fold changes nothing.
                    flush()
                    fold()
                }
                chunkEnd = unitEnd
            }

            var offset = 0
            for character in text {
                let size = character.utf8.count
                if size <= capacity(atColumn: 1) {
                    add(unitEnd: offset + size)
                } else {
                    // A huge cluster (long ZWJ sequence, stacked marks):
                    // scalars are the smallest safe unit.
                    var scalarOffset = offset
                    for scalar in character.unicodeScalars {
                        scalarOffset += UTF8.width(scalar)
                        add(unitEnd: scalarOffset)
                    }
                }
                offset += size
            }
            flush()
            return column
        }
    }
}

// MARK: - Date

enum RFC5322Date {
    private static let dayNames: [StaticString] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    private static let monthNames: [StaticString] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    /// Appends e.g. "Wed, 25 Nov 2026 11:09:25 +0000". Always UTC and English:
    /// computed directly from the epoch (civil-from-days, H. Hinnant) instead
    /// of a locale-dependent and comparatively slow DateFormatter.
    static func append(_ date: Date, to out: inout [UInt8]) {
        var t = date.timeIntervalSince1970
        // Clamp to 1970...9999 so odd inputs (NaN, far past/future) render a
        // four-digit year instead of trapping on the Int conversion.
        if !t.isFinite || t < 0 { t = 0 }
        if t > 253_402_300_799 { t = 253_402_300_799 }
        let seconds = Int(t.rounded(.down))
        let days = seconds / 86_400
        let secondOfDay = seconds % 86_400

        let z = days + 719_468
        let era = z / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yoe + era * 400 + (month <= 2 ? 1 : 0)
        let weekday = (days + 4) % 7  // 1970-01-01 was a Thursday

        out.appendASCII(dayNames[weekday])
        out.appendASCII(", ")
        appendDigits(day, width: 2, to: &out)
        out.append(asciiSP)
        out.appendASCII(monthNames[month - 1])
        out.append(asciiSP)
        appendDigits(year, width: 4, to: &out)
        out.append(asciiSP)
        appendDigits(secondOfDay / 3600, width: 2, to: &out)
        out.append(UInt8(ascii: ":"))
        appendDigits(secondOfDay / 60 % 60, width: 2, to: &out)
        out.append(UInt8(ascii: ":"))
        appendDigits(secondOfDay % 60, width: 2, to: &out)
        out.appendASCII(" +0000")
    }

    private static func appendDigits(_ value: Int, width: Int, to out: inout [UInt8]) {
        var divisor = 1
        for _ in 1..<width { divisor *= 10 }
        var v = value
        while divisor > 0 {
            out.append(UInt8(ascii: "0") + UInt8(v / divisor % 10))
            v %= divisor
            divisor /= 10
        }
    }
}
