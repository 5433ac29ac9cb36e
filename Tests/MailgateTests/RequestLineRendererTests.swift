import Foundation
import Logging
@testable import Mailgate
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `LineLogHandler.renderRequest` (the request log's direct path) against
/// `render` with the field list `Application` used to build: the same bytes.
@Suite struct RequestLineRendererTests {
    /// The fields as `Application.log` named them before the direct path.
    static func fields(method: String, path: String, status: Int, user: String, tenths: Int64, smtp: String?,
                       messageID: String?) -> [(String, String)] {
        var fields: [(String, String)] = [
            ("method", method), ("path", path), ("status", String(status)), ("user", user),
            ("duration_ms", "\(tenths / 10).\(tenths % 10)"),
        ]
        if let smtp { fields.append(("smtp", smtp)) }
        if let messageID { fields.append(("message_id", "<\(messageID)>")) }
        return fields
    }

    static let values = ["POST", "/smtp/send-email", "", "-", "a b", "a=b", "q\"uote", "back\\slash", "line\nbreak",
                         "cr\rtab\t", "\u{01}\u{1F}\u{7F}", "caf\u{E9} \u{1F600}", "<>", "250 2.0.0 Ok: queued as 4XyZ",
                         "550 no\" user=admin\n{\"forged\": 1}", "d44a1b@localhost"]

    @Test(arguments: LogFormat.allCases)
    func sameBytesAsTheFieldList(_ format: LogFormat) {
        let seconds = 1_796_233_881  // 2026-12-02T17:51:21Z
        var stamp: [UInt8] = []
        LineLogHandler.appendTimestamp(seconds: seconds, nanoseconds: 799_123_456, to: &stamp)
        let timestamp = String(decoding: stamp, as: UTF8.self)
        let tenthsCases: [Int64] = [0, 9, 10, 100, 316, 123_456, 99, 1_000_000_007, -5]
        let statuses = [200, 0, 5, 404, 502, -1]
        var checked = 0
        for value in Self.values {
            for (index, tenths) in tenthsCases.enumerated() {
                let status = statuses[index % statuses.count]
                for (smtp, messageID) in [(value, value), (nil, nil), (value, nil), (nil, value)] as [(String?, String?)] {
                    for pid: Int32 in [10622, 1] {
                        let fast = LineLogHandler.renderRequest(
                            format: format, seconds: seconds, nanoseconds: 799_123_456, pid: pid, method: value,
                            path: value, status: status, user: value, tenths: tenths, smtp: smtp, messageID: messageID)
                        let reference = LineLogHandler.render(
                            format: format, timestamp: timestamp, level: .info, pid: pid, message: "request",
                            fields: Self.fields(method: value, path: value, status: status, user: value, tenths: tenths,
                                                smtp: smtp, messageID: messageID))
                        #expect(fast == reference, "\(String(decoding: fast, as: UTF8.self)) vs \(String(decoding: reference, as: UTF8.self))")
                        checked += 1
                    }
                }
            }
        }
        #expect(checked == Self.values.count * tenthsCases.count * 8)
    }

    @Test func typicalLineGolden() {
        let logfmt = LineLogHandler.renderRequest(
            format: .logfmt, seconds: 1_795_974_681, nanoseconds: 799_000_000, pid: 10622, method: "POST",
            path: "/smtp/send-email", status: 200, user: "bench", tenths: 316, smtp: "250 2.0.0 Ok: queued as 4XyZ",
            messageID: "d44a1b@localhost")
        #expect(String(decoding: logfmt, as: UTF8.self) == #"ts=2026-11-29T17:51:21.799Z level=info pid=10622 msg=request method=POST path=/smtp/send-email status=200 user=bench duration_ms=31.6 smtp="250 2.0.0 Ok: queued as 4XyZ" message_id=<d44a1b@localhost>"# + "\n")
        let json = LineLogHandler.renderRequest(
            format: .json, seconds: 1_795_974_681, nanoseconds: 799_000_000, pid: 10622, method: "POST",
            path: "/smtp/send-email", status: 200, user: "bench", tenths: 316, smtp: "250 2.0.0 Ok: queued as 4XyZ",
            messageID: "d44a1b@localhost")
        #expect(String(decoding: json, as: UTF8.self) == #"{"ts": "2026-11-29T17:51:21.799Z", "level": "info", "pid": 10622, "msg": "request", "method": "POST", "path": "/smtp/send-email", "status": 200, "user": "bench", "duration_ms": 31.6, "smtp": "250 2.0.0 Ok: queued as 4XyZ", "message_id": "<d44a1b@localhost>"}"# + "\n")
    }

    /// The date by arithmetic against gmtime_r: every day of 1970...2200
    /// (leap years, 2000, 2100), and seconds across a day.
    @Test func timestampMatchesGmtime() {
        func reference(_ seconds: Int, _ nanoseconds: Int) -> String {
            var time = time_t(seconds)
            var parts = tm()
            gmtime_r(&time, &parts)
            func pad(_ value: Int32, _ width: Int) -> String {
                let text = String(value)
                return String(repeating: "0", count: max(0, width - text.count)) + text
            }
            return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
                + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2)).\(pad(Int32(nanoseconds / 1_000_000), 3))Z"
        }
        func fast(_ seconds: Int, _ nanoseconds: Int) -> String {
            var out: [UInt8] = []
            LineLogHandler.appendTimestamp(seconds: seconds, nanoseconds: nanoseconds, to: &out)
            return String(decoding: out, as: UTF8.self)
        }
        var mismatches = 0
        var seconds = 0
        while seconds < 7_258_118_400 {  // 2200-01-01
            let probe = seconds + (seconds / 86_400 * 7_919) % 86_400
            if fast(probe, 123_456_789) != reference(probe, 123_456_789) { mismatches += 1 }
            seconds += 86_400
        }
        for second in stride(from: 1_795_996_800 - 5, to: 1_795_996_800 + 86_405, by: 1) {
            if fast(second, 999_999_999) != reference(second, 999_999_999) { mismatches += 1 }
        }
        #expect(mismatches == 0)
        #expect(fast(0, 0) == "1970-01-01T00:00:00.000Z")
        #expect(fast(951_782_400, 5_000_000) == "2000-02-29T00:00:00.005Z")
        #expect(fast(4_107_542_399, 999_999_999) == "2100-02-28T23:59:59.999Z")
    }
}
