import Foundation
import MailgateTesting
import Testing
@testable import MIME

// MARK: - Fixtures

func mailbox(_ text: String) throws -> Mailbox {
    try EmailAddress.parse(text)
}

func message(
    subject: String = "Hello",
    body: String = "Hi there.\n",
    from: String = "Mailgate <noreply@example.com>",
    to: String = "Jane Doe <jane@example.org>",
    date: Date = Date(timeIntervalSince1970: 1_795_604_965),
    messageID: String = "0123456789abcdef0123456789abcdef.19abc@example.com"
) throws -> MailMessage {
    MailMessage(
        from: try mailbox(from), to: try mailbox(to), subject: subject, body: body,
        date: date, messageID: messageID)
}

/// Splits on CRLF; records whether any bare CR or LF occurs (it must not).
func crlfLines(_ bytes: [UInt8]) -> (lines: [[UInt8]], bareBreak: Bool) {
    var lines: [[UInt8]] = []
    var current: [UInt8] = []
    var bare = false
    var i = 0
    while i < bytes.count {
        let c = bytes[i]
        if c == 0x0D, i + 1 < bytes.count, bytes[i + 1] == 0x0A {
            lines.append(current)
            current = []
            i += 2
            continue
        }
        if c == 0x0D || c == 0x0A { bare = true }
        current.append(c)
        i += 1
    }
    if !current.isEmpty { lines.append(current) }
    return (lines, bare)
}

struct Rendered: HeaderBlock {
    var headerLines: [String]  // physical lines, before unfolding
    var bodyLines: [[UInt8]]
    var endsWithCRLF: Bool
    var bareBreak: Bool

    init(_ bytes: [UInt8]) {
        let (lines, bare) = crlfLines(bytes)
        bareBreak = bare
        endsWithCRLF = bytes.suffix(2) == [0x0D, 0x0A]
        let blank = lines.firstIndex(where: { $0.isEmpty }) ?? lines.count
        headerLines = lines[..<blank].map { String(decoding: $0, as: UTF8.self) }
        bodyLines = blank < lines.count ? Array(lines[(blank + 1)...]) : []
    }

}

/// A rendered message or part, seen as its physical header lines.
protocol HeaderBlock {
    var headerLines: [String] { get }
}

extension HeaderBlock {
    /// Unfolded header fields as (name, raw value).
    var fields: [(name: String, value: String)] {
        var result: [(String, String)] = []
        for line in headerLines {
            if line.first == " " || line.first == "\t", let last = result.popLast() {
                result.append((last.0, last.1 + line))
            } else if let colon = line.firstIndex(of: ":") {
                result.append((String(line[..<colon]), String(line[line.index(after: colon)...])))
            }
        }
        return result
    }

    func field(_ name: String) -> String? {
        fields.first(where: { $0.name.lowercased() == name.lowercased() })?.value
    }
}

// MARK: - An independent RFC 2047 / quoted-printable decoder for tests

/// Decodes a header value made only of B-encoded UTF-8 encoded-words
/// separated by folding whitespace; returns each word's decoded text.
func decodeEncodedWords(_ value: String) -> [String]? {
    var words: [String] = []
    for token in value.split(whereSeparator: { $0 == " " || $0 == "\t" }) {
        guard token.hasPrefix("=?utf-8?B?"), token.hasSuffix("?="), token.count <= 75 else { return nil }
        let payload = token.dropFirst(10).dropLast(2)
        guard let data = Data(base64Encoded: String(payload)),
              let text = String(data: data, encoding: .utf8)
        else { return nil }
        words.append(text)
    }
    return words
}

func decodeQuotedPrintable(_ lines: [[UInt8]]) -> [UInt8]? {
    var out: [UInt8] = []
    func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: return c - 0x30
        case 0x41...0x46: return c - 0x41 + 10
        default: return nil
        }
    }
    for line in lines {
        var i = 0
        var soft = false
        while i < line.count {
            if line[i] == UInt8(ascii: "=") {
                if i == line.count - 1 { soft = true; break }
                guard i + 2 < line.count, let h = hexValue(line[i + 1]), let l = hexValue(line[i + 2])
                else { return nil }
                out.append(h << 4 | l)
                i += 3
            } else {
                out.append(line[i])
                i += 1
            }
        }
        if !soft { out.append(contentsOf: [0x0D, 0x0A]) }
    }
    return out
}

/// What a body should decode to: every CRLF, bare CR and bare LF becomes
/// one `newline`, and a non-empty body ends with one.
func normalised(_ body: String, newline: String = "\r\n") -> String {
    var out = ""
    var previousCR = false
    for scalar in body.unicodeScalars {
        if scalar == "\r" {
            out += newline
            previousCR = true
        } else if scalar == "\n" {
            if !previousCR { out += newline }
            previousCR = false
        } else {
            out.unicodeScalars.append(scalar)
            previousCR = false
        }
    }
    if !out.isEmpty && !out.hasSuffix(newline) { out += newline }
    return out
}

// MARK: - Python's email package as an independent parser

struct PythonParsed: Decodable {
    var subject: String
    var content: String
    var from_display: String
    var from_addr: String
    var to_display: String
    var to_addr: String
    var date: String
    var message_id: String
    var mime_version: String
    var cte: String
    var defects: [String]
}

/// Parses rendered messages with Debian's Python `email` package (policy
/// default), one interpreter for the whole batch
/// (Tests/MailgateTesting/Python/parse_rendered_messages.py).
func parseWithPython(_ messages: [[UInt8]]) throws -> [PythonParsed] {
    try JSONDecoder().decode([PythonParsed].self, from: Data(runPython("parse_rendered_messages.py", on: messages)))
}

/// Runs one of the Python helpers on `messages` (written to files, in
/// order, one interpreter for the batch); returns what it printed.
func runPython(_ script: String, on messages: [[UInt8]]) throws -> [UInt8] {
    let dir = try TempDir(prefix: "mime-tests")
    defer { dir.remove() }
    var paths: [String] = []
    for (i, bytes) in messages.enumerated() {
        let path = dir.file("\(i).eml")
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        paths.append(path)
    }
    let result = try runTool(PythonHelper.interpreter, [PythonHelper.path(script)] + paths, in: dir.path)
    guard result.ok else { throw HarnessError("python \(result.status): \(result.stderr)") }
    return result.stdout
}
