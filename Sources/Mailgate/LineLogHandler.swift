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
        emit(LineLogHandler.render(format: format, timestamp: LineLogHandler.timestamp(), level: level, pid: pid,
                                   message: message, fields: fields))
    }

    /// The request log line, rendered straight into one byte buffer: no
    /// field list, no String per value (the status and the duration are
    /// appended as digits, the message id in pieces). The same bytes as
    /// `write(level:message:fields:)` with the fields `Application` names.
    func writeRequest(method: String, path: String, status: Int, user: String, tenths: Int64, smtp: String?,
                      messageID: String?) {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        emit(LineLogHandler.renderRequest(format: format, seconds: Int(now.tv_sec), nanoseconds: Int(now.tv_nsec),
                                          pid: pid, method: method, path: path, status: status, user: user,
                                          tenths: tenths, smtp: smtp, messageID: messageID))
    }

    /// One write(2) for the whole line (retried only for what is left).
    private func emit(_ line: [UInt8]) {
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
            appendBytes(value, to: &line)
        } else {
            RequestLog.appendQuoted(value, to: &line)
        }
    }

    private static func isPlainToken(_ value: String) -> Bool {
        func plain(_ byte: UInt8) -> Bool {
            byte > 0x20 && byte < 0x7F && byte != UInt8(ascii: "\"") && byte != UInt8(ascii: "=")
                && byte != UInt8(ascii: "\\")
        }
        // A loop over the contiguous bytes: allSatisfy over the UTF8View
        // cost ~28 instructions a byte.
        let fast: Bool? = value.utf8.withContiguousStorageIfAvailable { bytes in
            for byte in bytes where !plain(byte) { return false }
            return true
        }
        return !value.isEmpty && (fast ?? value.utf8.allSatisfy(plain))
    }

    /// UTC, millisecond precision: 2026-11-29T10:01:28.123Z.
    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var out: [UInt8] = []
        out.reserveCapacity(24)
        appendTimestamp(seconds: Int(now.tv_sec), nanoseconds: Int(now.tv_nsec), to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// `timestamp()` of the given instant, appended to `out`. The civil date
    /// by arithmetic (days since 1970 to year, month, day: H. Hinnant's
    /// `civil_from_days`): gmtime_r took glibc's time zone lock and cost more
    /// than the rest of the line. UTC has no leap seconds in POSIX time, so
    /// this is what gmtime_r answers.
    static func appendTimestamp(seconds: Int, nanoseconds: Int, to out: inout [UInt8]) {
        let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let secondOfDay = seconds - days * 86_400
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let shiftedMonth = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * shiftedMonth + 2) / 5 + 1
        let month = shiftedMonth < 10 ? shiftedMonth + 3 : shiftedMonth - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        // The 24 bytes written in place: an append a byte (a capacity and
        // uniqueness check each) cost more than the arithmetic.
        let start = out.count
        out.append(contentsOf: timestampTemplate)
        out.withUnsafeMutableBufferPointer { buffer in
            func put(_ value: Int, _ count: Int, at offset: Int) {
                var value = value
                for index in stride(from: start + offset + count - 1, through: start + offset, by: -1) {
                    buffer[index] = UInt8(ascii: "0") + UInt8(value % 10)
                    value /= 10
                }
            }
            put(year, 4, at: 0)
            put(month, 2, at: 5)
            put(day, 2, at: 8)
            put(secondOfDay / 3600, 2, at: 11)
            put(secondOfDay / 60 % 60, 2, at: 14)
            put(secondOfDay % 60, 2, at: 17)
            put(nanoseconds / 1_000_000, 3, at: 20)
        }
    }

    private static let timestampTemplate = Array("0000-00-00T00:00:00.000Z".utf8)

    /// `String(value)`'s bytes for a value that is not negative.
    private static func appendDecimal(_ value: Int64, to out: inout [UInt8]) {
        var divisor: Int64 = 1
        while divisor <= value / 10 { divisor *= 10 }
        while divisor > 0 {
            out.append(UInt8(ascii: "0") + UInt8(value / divisor % 10))
            divisor /= 10
        }
    }

    /// The request line: the same bytes as `render` with the fields method,
    /// path, status, user, duration_ms (`tenths / 10` "." `tenths % 10`),
    /// smtp (when present) and message_id (`<id>`, when present), message
    /// "request", level info. Each value is quoted or escaped by the same
    /// rules as `render`: only what is a number by construction (a status
    /// and a duration not negative) is appended as digits unchecked.
    static func renderRequest(format: LogFormat, seconds: Int, nanoseconds: Int, pid: Int32, method: String,
                              path: String, status: Int, user: String, tenths: Int64, smtp: String?,
                              messageID: String?) -> [UInt8] {
        var line: [UInt8] = []
        line.reserveCapacity(200 + path.utf8.count + (smtp?.utf8.count ?? 0) + (messageID?.utf8.count ?? 0))
        let json = format == .json
        appendLiteral(json ? #"{"ts": ""# : "ts=", to: &line)
        appendTimestamp(seconds: seconds, nanoseconds: nanoseconds, to: &line)
        appendLiteral(json ? #"", "level": "info", "pid": "# : " level=info pid=", to: &line)
        if pid >= 0 { appendDecimal(Int64(pid), to: &line) } else { line.append(contentsOf: String(pid).utf8) }
        appendLiteral(json ? #", "msg": "request", "method": "# : " msg=request method=", to: &line)
        appendValue(method, json: json, to: &line)
        appendLiteral(json ? #", "path": "# : " path=", to: &line)
        appendValue(path, json: json, to: &line)
        appendLiteral(json ? #", "status": "# : " status=", to: &line)
        if status >= 0 {
            appendDecimal(Int64(status), to: &line)  // a plain decimal: a JSON number, a logfmt token
        } else {
            appendValue(String(status), json: json, to: &line)
        }
        appendLiteral(json ? #", "user": "# : " user=", to: &line)
        appendValue(user, json: json, to: &line)
        appendLiteral(json ? #", "duration_ms": "# : " duration_ms=", to: &line)
        if tenths >= 0 {
            appendDecimal(tenths / 10, to: &line)
            line.append(UInt8(ascii: "."))
            line.append(UInt8(ascii: "0") + UInt8(tenths % 10))
        } else {
            appendValue("\(tenths / 10).\(tenths % 10)", json: json, to: &line)
        }
        if let smtp {
            appendLiteral(json ? #", "smtp": "# : " smtp=", to: &line)
            appendValue(smtp, json: json, to: &line)
        }
        if let messageID {
            appendLiteral(json ? #", "message_id": "# : " message_id=", to: &line)
            // `<id>` without building it, when the id needs no quoting or
            // escaping (the brackets never do); otherwise the whole value
            // through the same rules as any other.
            let plain = json ? !needsJSONEscape(messageID) : isPlainToken(messageID)
            if plain {
                if json { line.append(UInt8(ascii: "\"")) }
                line.append(UInt8(ascii: "<"))
                appendBytes(messageID, to: &line)
                line.append(UInt8(ascii: ">"))
                if json { line.append(UInt8(ascii: "\"")) }
            } else {
                appendValue("<\(messageID)>", json: json, to: &line)
            }
        }
        appendLiteral(json ? "}\n" : "\n", to: &line)
        return line
    }

    /// A literal's bytes, copied from its static buffer.
    private static func appendLiteral(_ text: StaticString, to line: inout [UInt8]) {
        text.withUTF8Buffer { line.append(contentsOf: $0) }
    }

    /// `line.append(contentsOf: text.utf8)` from the String's contiguous
    /// storage: the generic append over a UTF8View cost ~170 instructions
    /// a call.
    static func appendBytes(_ text: String, to line: inout [UInt8]) {
        let copied: Void? = text.utf8.withContiguousStorageIfAvailable { line.append(contentsOf: $0) }
        if copied == nil { line.append(contentsOf: text.utf8) }
    }

    /// A string value as `render` writes it: a JSON string, or a logfmt value.
    private static func appendValue(_ value: String, json: Bool, to line: inout [UInt8]) {
        if json {
            JSONWriter.string(value, into: &line)
        } else {
            appendLogfmtValue(value, to: &line)
        }
    }

    /// Whether JSONWriter.string would escape a byte of `value`.
    private static func needsJSONEscape(_ value: String) -> Bool {
        func escaped(_ byte: UInt8) -> Bool {
            byte < 0x20 || byte == 0x7F || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\")
        }
        let fast: Bool? = value.utf8.withContiguousStorageIfAvailable { bytes in
            for byte in bytes where escaped(byte) { return true }
            return false
        }
        return fast ?? value.utf8.contains(where: escaped)
    }
}
