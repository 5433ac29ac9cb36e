import JSON
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// How `serve` writes its log: one line per message on stderr, every field
/// named. logfmt (`ts=... level=info pid=42 msg=request method=POST ...`)
/// or JSON (one object per line, for `jq` and log shippers).
public enum LogFormat: String, Sendable, CaseIterable {
    case logfmt
    case json
}

/// Writes one log line with one write(2): the handler's output, and the
/// request log's direct path (an ordered list of fields, no dictionary:
/// a `Logger.Metadata` per request measured 8% of Mailgate's CPU).
public struct LineWriter: Sendable {
    public let format: LogFormat
    let pid: Int32
    let fd: Int32

    public init(format: LogFormat, fd: Int32 = 2) {
        self.format = format
        self.pid = getpid()
        self.fd = fd
    }

    public func write(level: Logger.Level, message: String, fields: [(String, String)]) {
        let line = LineLogHandler.render(format: format, timestamp: LineLogHandler.timestamp(), level: level, pid: pid,
                                         message: message, fields: fields)
        line.withUnsafeBufferPointer { bytes in
            var offset = 0
            while offset < bytes.count, let base = bytes.baseAddress {
                let written = Glibc.write(fd, base + offset, bytes.count - offset)
                if written < 0 && errno == EINTR { continue }
                guard written > 0 else { return }  // nowhere left to report it
                offset += written
            }
        }
    }
}

/// The log handler of `serve`. Each line is built whole and written with
/// one write(2), so lines of the worker threads (and of several processes
/// sharing one log, as under Apache mod_fcgid) never interleave. Field
/// values come from clients and SMTP servers: logfmt quotes and escapes any
/// value that is not a plain token, JSON escapes as JSON, so no value can
/// forge a field or a line.
public struct LineLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public let writer: LineWriter

    /// Fields printed first, in this order, when present; the rest follow
    /// sorted by name.
    static let leadingFields = ["method", "path", "status", "user", "duration_ms", "smtp", "message_id"]
    /// JSON numbers rather than strings.
    static let numericFields: Set<String> = ["status", "duration_ms"]

    public init(writer: LineWriter) {
        self.writer = writer
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var fields = event.metadata ?? [:]
        if !metadata.isEmpty { fields.merge(metadata) { event, _ in event } }
        writer.write(level: event.level, message: "\(event.message)", fields: Self.ordered(fields))
    }

    /// The leading fields in their order, then the rest sorted by name.
    static func ordered(_ fields: Logger.Metadata) -> [(String, String)] {
        var ordered: [(String, String)] = []
        ordered.reserveCapacity(fields.count)
        for key in leadingFields { if let value = fields[key] { ordered.append((key, "\(value)")) } }
        if ordered.count < fields.count {
            for key in fields.keys.sorted() where !leadingFields.contains(key) {
                if let value = fields[key] { ordered.append((key, "\(value)")) }
            }
        }
        return ordered
    }

    /// One line, newline included.
    static func render(format: LogFormat, timestamp: String, level: Logger.Level, pid: Int32, message: String,
                       fields ordered: [(String, String)]) -> [UInt8] {
        switch format {
        case .logfmt:
            // Bytes appended to one buffer: String interpolation and a
            // String per field measured 5% of a send's instructions.
            var line: [UInt8] = []
            line.reserveCapacity(256)
            line.append(contentsOf: "ts=".utf8)
            line.append(contentsOf: timestamp.utf8)
            line.append(contentsOf: " level=".utf8)
            line.append(contentsOf: level.rawValue.utf8)
            line.append(contentsOf: " pid=".utf8)
            line.append(contentsOf: String(pid).utf8)
            line.append(contentsOf: " msg=".utf8)
            appendLogfmtValue(message, to: &line)
            for (key, value) in ordered {
                line.append(UInt8(ascii: " "))
                line.append(contentsOf: key.utf8)
                line.append(UInt8(ascii: "="))
                appendLogfmtValue(value, to: &line)
            }
            line.append(UInt8(ascii: "\n"))
            return line
        case .json:
            var members: [(String, JSONValue)] = [
                ("ts", .string(timestamp)), ("level", .string(level.rawValue)), ("pid", .number(String(pid))),
                ("msg", .string(message)),
            ]
            for (key, value) in ordered {
                if numericFields.contains(key), isPlainDecimal(value) {
                    members.append((key, .number(value)))
                } else {
                    members.append((key, .string(value)))
                }
            }
            return JSONWriter.encode(.object(members)) + [UInt8(ascii: "\n")]
        }
    }

    /// Digits, optionally one dot and more digits: a valid JSON number.
    static func isPlainDecimal(_ text: String) -> Bool {
        let parts = text.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        return (1...2).contains(parts.count)
            && parts.allSatisfy { !$0.isEmpty && $0.allSatisfy { (0x30...0x39).contains($0) } }
    }

    /// A plain token as it is; anything else in double quotes, with `"` and
    /// `\` escaped and control bytes as `\xNN`.
    static func logfmtValue(_ value: String) -> String {
        isPlainToken(value) ? value : RequestLog.quoted(value)
    }

    /// `logfmtValue(value)`, appended to `line`.
    static func appendLogfmtValue(_ value: String, to line: inout [UInt8]) {
        if isPlainToken(value) {
            line.append(contentsOf: value.utf8)
        } else {
            line.append(contentsOf: RequestLog.quoted(value).utf8)
        }
    }

    private static func isPlainToken(_ value: String) -> Bool {
        !value.isEmpty && value.utf8.allSatisfy { byte in
            byte > 0x20 && byte < 0x7F && byte != UInt8(ascii: "\"") && byte != UInt8(ascii: "=")
                && byte != UInt8(ascii: "\\")
        }
    }

    /// UTC, millisecond precision: 2026-11-29T10:01:28.123Z.
    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        // Digits written into a fixed buffer (interpolating eight numbers
        // cost more than the rest of the line).
        var out: [UInt8] = []
        out.reserveCapacity(24)
        func digits(_ value: Int, _ count: Int) {
            var divisor = 1
            for _ in 1..<count { divisor *= 10 }
            while divisor > 0 {
                out.append(UInt8(ascii: "0") + UInt8((value / divisor) % 10))
                divisor /= 10
            }
        }
        digits(Int(parts.tm_year) + 1900, 4)
        out.append(UInt8(ascii: "-")); digits(Int(parts.tm_mon) + 1, 2)
        out.append(UInt8(ascii: "-")); digits(Int(parts.tm_mday), 2)
        out.append(UInt8(ascii: "T")); digits(Int(parts.tm_hour), 2)
        out.append(UInt8(ascii: ":")); digits(Int(parts.tm_min), 2)
        out.append(UInt8(ascii: ":")); digits(Int(parts.tm_sec), 2)
        out.append(UInt8(ascii: ".")); digits(now.tv_nsec / 1_000_000, 3)
        out.append(UInt8(ascii: "Z"))
        return String(decoding: out, as: UTF8.self)
    }
}
