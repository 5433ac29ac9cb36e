import Foundation
import MailgateTesting
import Testing
@testable import MIME

/// Swift Testing has an `Attachment` of its own; in these tests the name
/// means the MIME one.
typealias Attachment = MIME.Attachment

// MARK: - Fixtures

/// A message with every issue-8 field; addresses parsed from text.
func richMessage(
    to: [String] = ["Jane Doe <jane@example.org>"],
    cc: [String] = [],
    replyTo: [String] = [],
    subject: String = "Hello",
    body: String = "Hi there.\n",
    html: String? = nil,
    attachments: [Attachment] = [],
    headers: [CustomHeader] = []
) throws -> MailMessage {
    MailMessage(
        from: try mailbox("Mailgate <noreply@example.com>"),
        to: try to.map(mailbox), cc: try cc.map(mailbox), replyTo: try replyTo.map(mailbox),
        subject: subject, body: body, html: html, attachments: attachments, headers: headers,
        date: Date(timeIntervalSince1970: 1_795_604_965),
        messageID: "0123456789abcdef0123456789abcdef.19abc@example.com")
}

/// Always the same value: boundaries become "=_mg_<16 hex>_<depth>" with
/// known hex digits.
struct FixedGenerator: RandomNumberGenerator {
    var value: UInt64
    mutating func next() -> UInt64 { value }
}

/// Renders with a fixed boundary token (0x0123456789abcdef unless given).
func renderFixed(_ message: MailMessage, token: UInt64 = 0x0123_4567_89ab_cdef) throws -> [UInt8] {
    var generator = FixedGenerator(value: token)
    return try message.render(using: &generator)
}

/// Bytes 0...255 repeated to `count`.
func allByteValues(count: Int = 256 * 3 + 17) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: $0) }
}

/// Pseudo-random bytes (xorshift), so a large attachment is not one
/// repeating 57-octet pattern.
func noiseBytes(count: Int, seed: UInt64 = 0x9E37_79B9_7F4A_7C15) -> [UInt8] {
    var state = seed
    var out: [UInt8] = []
    out.reserveCapacity(count)
    while out.count < count {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        withUnsafeBytes(of: state) { out.append(contentsOf: $0.prefix(count - out.count)) }
    }
    return out
}

func crc32(_ bytes: [UInt8]) -> UInt32 {
    let table: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 == 1 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }
    var crc: UInt32 = 0xFFFF_FFFF
    for b in bytes { crc = table[Int((crc ^ UInt32(b)) & 0xFF)] ^ (crc >> 8) }
    return crc ^ 0xFFFF_FFFF
}

// MARK: - An independent MIME splitter for line-level checks

/// A message or body part split by CRLF lines: its header lines, its body
/// lines and, for a multipart, its parts (found by the boundary parameter
/// of its Content-Type). The CRLF before a delimiter line belongs to the
/// delimiter (RFC 2046 §5.1.1), so `body` is the part's exact content.
struct Entity: HeaderBlock {
    var headerLines: [String]
    var bodyLines: [[UInt8]]
    var children: [Entity] = []
    /// Lines between the close delimiter and the end (nested parts only).
    var epilogue: [[UInt8]] = []

    init(_ bytes: [UInt8]) {
        self.init(lines: crlfLines(bytes).lines[...])
    }

    init(lines: ArraySlice<[UInt8]>) {
        let blank = lines.firstIndex(where: { $0.isEmpty }) ?? lines.endIndex
        headerLines = lines[..<blank].map { String(decoding: $0, as: UTF8.self) }
        bodyLines = blank < lines.endIndex ? Array(lines[(blank + 1)...]) : []
        guard let boundary else { return }
        let delimiter = Array(("--" + boundary).utf8)
        let close = delimiter + Array("--".utf8)
        var current: [[UInt8]]?
        var closed = false
        for line in bodyLines {
            if closed {
                epilogue.append(line)
            } else if line == delimiter || line == close {
                if let part = current { children.append(Entity(lines: part[...])) }
                current = line == delimiter ? [] : nil
                closed = line == close
            } else {
                current?.append(line)
            }
        }
    }

    var body: [UInt8] {
        var out: [UInt8] = []
        for (i, line) in bodyLines.enumerated() {
            if i > 0 { out += [0x0D, 0x0A] }
            out += line
        }
        return out
    }

    var boundary: String? {
        guard let type = field("Content-Type"), let start = type.range(of: "boundary=\"") else { return nil }
        let rest = type[start.upperBound...]
        guard let end = rest.firstIndex(of: "\"") else { return nil }
        return String(rest[..<end])
    }

    /// Leaves in depth-first order.
    var leaves: [Entity] {
        children.isEmpty ? [self] : children.flatMap(\.leaves)
    }
}

// MARK: - Python's email package on multipart messages

struct PythonPart: Decodable {
    var contentType: String
    var disposition: String?
    var filename: String?
    var ctName: String?
    var contentId: String?
    var cte: String?
    var charset: String?
    var text: String?
    var payload: String?
    var payloadLength: Int?
    var payloadCrc32: UInt32?
    var children: [PythonPart]

    var bytes: [UInt8]? { payload.flatMap { Data(base64Encoded: $0) }.map { Array($0) } }
    var leaves: [PythonPart] { children.isEmpty ? [self] : children.flatMap(\.leaves) }
    var structure: String {
        children.isEmpty ? contentType : contentType + "(" + children.map(\.structure).joined(separator: ",") + ")"
    }
}

struct PythonMessage: Decodable {
    var subject: String
    var fromAddresses: [[String]]?
    var to: [[String]]?
    var cc: [[String]]?
    var replyTo: [[String]]?
    var bcc: [[String]]?
    var headers: [[String]]
    var root: PythonPart
    var defects: [String]

    func headerValues(_ name: String) -> [String] {
        headers.filter { $0.first?.lowercased() == name.lowercased() }.compactMap { $0.last }
    }

    /// Defects other than the two that the Content-Type name parameter of
    /// a non-ASCII file name raises by design: RFC 2047 words inside a
    /// quoted string are what pre-RFC 2231 clients read (see
    /// PreparedAttachment.append).
    var unexpectedDefects: [String] {
        defects.filter { defect in
            !(defect.contains("/Content-Type: ")
              && (defect.contains("encoded word inside quoted string")
                  || defect.contains("missing trailing whitespace after encoded-word")))
        }
    }
}

/// Parses rendered messages with Python's email package, one interpreter
/// for the batch (Tests/MailgateTesting/Python/parse_mime_messages.py).
func parseMIMEWithPython(_ messages: [[UInt8]]) throws -> [PythonMessage] {
    let output = try runPython("parse_mime_messages.py", on: messages)
    let decoder = JSONDecoder()
    decoder.keyDecodingStrategy = .convertFromSnakeCase
    return try decoder.decode([PythonMessage].self, from: Data(output))
}

func parseMIMEWithPython(_ message: [UInt8]) throws -> PythonMessage {
    let parsed = try parseMIMEWithPython([message])
    return try #require(parsed.first)
}

// MARK: - Line checks every rendered message must pass

/// CRLF only, a final CRLF, no NUL, no line over 998 octets; header lines
/// (of the message and of every part) within 78 characters unless they
/// could not be folded: one unbreakable token after the field name or the
/// continuation's leading space (a long media type, Content-ID...).
func checkWireFormat(_ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) {
    let (lines, bare) = crlfLines(bytes)
    #expect(!bare, "bare CR or LF", sourceLocation: sourceLocation)
    #expect(bytes.suffix(2) == [0x0D, 0x0A], sourceLocation: sourceLocation)
    #expect(!bytes.contains(0), sourceLocation: sourceLocation)
    #expect(lines.allSatisfy { $0.count <= 998 }, sourceLocation: sourceLocation)
    func check(_ entity: Entity) {
        for line in entity.headerLines {
            if line.utf8.count > 78 {
                let content = line.first == " " ? line.dropFirst() : line.drop(while: { $0 != " " }).dropFirst()
                #expect(!content.contains(" "), "foldable line over 78: \(line)", sourceLocation: sourceLocation)
            }
            #expect(line.last != " ", "trailing space: \(line)", sourceLocation: sourceLocation)
        }
        entity.children.forEach(check)
    }
    check(Entity(bytes))
}
