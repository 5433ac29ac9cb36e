import Foundation
import Logging
@testable import Mailgate
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The request log line, byte for byte: these pin the output of both
/// formats so that a faster writer cannot change a single byte of it.
@Suite struct RequestLogGoldenTests {
    static let timestamp = "2026-11-29T17:51:21.799Z"

    static func line(_ format: LogFormat, _ fields: [(String, String)], level: Logger.Level = .info,
                     pid: Int32 = 10622) -> String {
        String(decoding: LineLogHandler.render(format: format, timestamp: timestamp, level: level, pid: pid,
                                               message: "request", fields: fields),
               as: UTF8.self)
    }

    static let typical: [(String, String)] = [
        ("method", "POST"), ("path", "/smtp/send-email"), ("status", "200"), ("user", "bench"),
        ("duration_ms", "31.6"), ("smtp", "250 2.0.0 Ok: queued as 4XyZ"), ("message_id", "<d44a1b@localhost>"),
    ]

    @Test func typicalRequestLineInLogfmt() {
        #expect(Self.line(.logfmt, Self.typical) == #"ts=2026-11-29T17:51:21.799Z level=info pid=10622 msg=request method=POST path=/smtp/send-email status=200 user=bench duration_ms=31.6 smtp="250 2.0.0 Ok: queued as 4XyZ" message_id=<d44a1b@localhost>"# + "\n")
    }

    @Test func typicalRequestLineInJSON() {
        #expect(Self.line(.json, Self.typical) == #"{"ts": "2026-11-29T17:51:21.799Z", "level": "info", "pid": 10622, "msg": "request", "method": "POST", "path": "/smtp/send-email", "status": 200, "user": "bench", "duration_ms": 31.6, "smtp": "250 2.0.0 Ok: queued as 4XyZ", "message_id": "<d44a1b@localhost>"}"# + "\n")
    }

    /// Spaces, quotes, backslashes, newlines, control characters, DEL,
    /// non-ASCII, `=` and an empty value: quoted (logfmt) or escaped (JSON).
    static let hostile: [(String, String)] = [
        ("method", "GET"), ("path", "/a b\"c\\d\ne\r\tf\u{01}g\u{7F}h\u{E9}=i"), ("status", "404"), ("user", ""),
        ("duration_ms", "0.0"), ("smtp", "550 no\" user=admin\n{\"forged\": 1}"), ("message_id", "<x=y@h>"),
    ]

    @Test func hostileValuesInLogfmt() {
        #expect(Self.line(.logfmt, Self.hostile, level: .warning, pid: 1) == #"ts=2026-11-29T17:51:21.799Z level=warning pid=1 msg=request method=GET path="/a b\"c\\d\x0Ae\x0D\x09f\x01g\x7Fh"# + "\u{E9}" + #"=i" status=404 user="" duration_ms=0.0 smtp="550 no\" user=admin\x0A{\"forged\": 1}" message_id="<x=y@h>""# + "\n")
    }

    @Test func hostileValuesInJSON() {
        #expect(Self.line(.json, Self.hostile, level: .warning, pid: 1) == #"{"ts": "2026-11-29T17:51:21.799Z", "level": "warning", "pid": 1, "msg": "request", "method": "GET", "path": "/a b\"c\\d\ne\r\tf\u0001g\u007fh"# + "\u{E9}" + #"=i", "status": 404, "user": "", "duration_ms": 0.0, "smtp": "550 no\" user=admin\n{\"forged\": 1}", "message_id": "<x=y@h>"}"# + "\n")
    }

    /// A status or duration that is not a plain decimal stays a JSON string.
    @Test func numericFieldsThatAreNotPlainDecimalsStayStrings() {
        let fields: [(String, String)] = [("status", "-1"), ("duration_ms", "1e5"), ("user", "-"), ("smtp", "1.2.3")]
        #expect(Self.line(.json, fields) == #"{"ts": "2026-11-29T17:51:21.799Z", "level": "info", "pid": 10622, "msg": "request", "status": "-1", "duration_ms": "1e5", "user": "-", "smtp": "1.2.3"}"# + "\n")
        #expect(Self.line(.logfmt, fields) == "ts=2026-11-29T17:51:21.799Z level=info pid=10622 msg=request status=-1 duration_ms=1e5 user=- smtp=1.2.3\n")
    }

    @Test(arguments: ["0.0", "0.9", "10.0", "12345.6"])
    func durations(_ duration: String) {
        let fields: [(String, String)] = [("method", "POST"), ("path", "/token"), ("status", "401"), ("user", "-"),
                                          ("duration_ms", duration)]
        #expect(Self.line(.logfmt, fields) == "ts=2026-11-29T17:51:21.799Z level=info pid=10622 msg=request method=POST path=/token status=401 user=- duration_ms=\(duration)\n")
        #expect(Self.line(.json, fields) == #"{"ts": "2026-11-29T17:51:21.799Z", "level": "info", "pid": 10622, "msg": "request", "method": "POST", "path": "/token", "status": 401, "user": "-", "duration_ms": "# + duration + "}\n")
    }

    /// The line `Application` writes for a send, read back from a pipe:
    /// one line, every field in its place, the message id in brackets.
    @Test(arguments: LogFormat.allCases)
    func applicationWritesOneRequestLine(_ format: LogFormat) throws {
        var fds: [Int32] = [0, 0]
        try #require(pipe(&fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        let fixture = try AppFixture { $0.requestLog = LineWriter(format: format, fd: fds[1]) }
        let response = try fixture.send(#"{"to": "bob@example.org", "subject": "s", "message": "m"}"#)
        #expect(response.status == 200)
        let sent = try #require((response.json as? [String: Any])?["message_id"] as? String)
        var buffer = [UInt8](repeating: 0, count: 65536)
        let count = buffer.withUnsafeMutableBytes { read(fds[0], $0.baseAddress, $0.count) }
        try #require(count > 0)
        let line = String(decoding: buffer[..<count], as: UTF8.self)
        #expect(line.hasSuffix("\n") && line.dropLast().contains("\n") == false, "one line: \(line)")
        let bracketed = sent.hasPrefix("<") ? sent : "<\(sent)>"
        switch format {
        case .logfmt:
            // ts=YYYY-MM-DDTHH:MM:SS.mmmZ, then the fixed fields.
            let stamp = line.utf8.dropFirst(3).prefix(24)
            #expect(line.hasPrefix("ts=") && Self.isTimestamp(String(decoding: stamp, as: UTF8.self)), "\(line)")
            let rest = String(decoding: line.utf8.dropFirst(27), as: UTF8.self)
            #expect(rest.hasPrefix(" level=info pid=\(getpid()) msg=request method=POST path=/smtp/send-email status=200 user=alice duration_ms="), "\(line)")
            #expect(rest.hasSuffix(" message_id=\(bracketed)\n"), "\(line)")
            let duration = rest.split(separator: " ").first { $0.hasPrefix("duration_ms=") }?.dropFirst(12) ?? ""
            let parts = duration.split(separator: ".", omittingEmptySubsequences: false)
            #expect(parts.count == 2 && parts[1].count == 1 && parts.allSatisfy { !$0.isEmpty && $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }, "\(line)")
        case .json:
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            #expect(object["status"] as? Int == 200 && object["duration_ms"] is NSNumber)
            #expect(object["message_id"] as? String == bracketed && object["user"] as? String == "alice")
            #expect(line.hasPrefix("{\"ts\": \""))
            #expect(line.contains(#""msg": "request", "method": "POST", "path": "/smtp/send-email", "status": 200, "user": "alice", "duration_ms": "#))
        }
    }

    /// The timestamp: UTC, milliseconds, `Z`, 24 bytes.
    @Test func timestampShape() throws {
        let stamp = LineLogHandler.timestamp()
        #expect(Self.isTimestamp(stamp), "\(stamp)")
    }

    static func isTimestamp(_ text: String) -> Bool {
        let shape = Array("dddd-dd-ddTdd:dd:dd.dddZ".utf8)
        let bytes = Array(text.utf8)
        return bytes.count == shape.count && zip(bytes, shape).allSatisfy { byte, want in
            want == UInt8(ascii: "d") ? (0x30...0x39).contains(byte) : byte == want
        }
    }
}
