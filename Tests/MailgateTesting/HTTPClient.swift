import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A parsed HTTP/1.1 response.
public struct HTTPResponse: Sendable, CustomStringConvertible {
    public var status: Int
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public init(status: Int, headers: [(name: String, value: String)], body: [UInt8]) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    public var text: String { String(decoding: body, as: UTF8.self) }

    /// The body as a JSON object, or nil when it is not one.
    public var json: [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any]
    }

    /// `detail` when it is a string.
    public var detail: String? { json?["detail"] as? String }

    /// `code`, the stable error key beside `detail`.
    public var code: String? { json?["code"] as? String }

    /// `detail` when it is FastAPI's validation list.
    public var detailList: [[String: Any]]? { json?["detail"] as? [[String: Any]] }

    public var isJSON: Bool { (header("Content-Type") ?? "").hasPrefix("application/json") && json != nil }

    public var description: String {
        "HTTP \(status) \(headers.map { "\($0.name): \($0.value)" }.joined(separator: "; ")) body=\(text.prefix(600))"
    }
}

/// A minimal HTTP/1.1 client over a raw socket: sends exactly the bytes it
/// is given (so tests can lie about Content-Length), reads to EOF.
public enum HTTP {
    /// Builds a request. `contentLength: nil` computes it; pass a string to
    /// send any value, or `omitContentLength` to send none.
    public static func request(_ method: String, _ path: String, headers: [(String, String)] = [], body: [UInt8] = [],
                               contentLength: String? = nil, omitContentLength: Bool = false) -> [UInt8] {
        var head = "\(method) \(path) HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        if !omitContentLength && (method != "GET" || !body.isEmpty || contentLength != nil) {
            head += "Content-Length: \(contentLength ?? String(body.count))\r\n"
        }
        head += "\r\n"
        return Array(head.utf8) + body
    }

    /// Sends `raw` to 127.0.0.1:port and reads the answer until the server
    /// closes (or `timeout` seconds pass: a harness error, not a hang).
    public static func exchange(port: Int, _ raw: [UInt8], halfClose: Bool = false, timeout: Double = 40) throws -> HTTPResponse {
        let fd = try connectLoopback(port: port)
        defer { close(fd) }
        let received = try exchangeBytes(fd: fd, raw, halfClose: halfClose, timeout: timeout, peer: "port \(port)")
        return try parse(received)
    }

    /// A CGI response ("Status: 401 Unauthorized\r\n...", as a FastCGI
    /// responder or a CGI program prints it) parsed as HTTP.
    public static func parseCGI(_ output: [UInt8]) throws -> HTTPResponse {
        var bytes = output
        guard bytes.starts(with: Array("Status: ".utf8)) else {
            throw HarnessError("CGI output does not start with Status: \(String(decoding: output.prefix(300), as: UTF8.self))")
        }
        bytes.replaceSubrange(0..<8, with: Array("HTTP/1.1 ".utf8))
        return try parse(bytes)
    }

    public static func parse(_ bytes: [UInt8]) throws -> HTTPResponse {
        let separator: [UInt8] = [13, 10, 13, 10]
        guard let end = bytes.firstRange(of: separator) else {
            throw HarnessError("no header end in response: \(String(decoding: bytes.prefix(300), as: UTF8.self))")
        }
        let headText = String(decoding: bytes[..<end.lowerBound], as: UTF8.self)
        var lines = headText.components(separatedBy: "\r\n")
        let statusLine = lines.removeFirst()
        let parts = statusLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, let status = Int(parts[1]) else { throw HarnessError("bad status line \(statusLine)") }
        var headers: [(name: String, value: String)] = []
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers.append((String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
        }
        var body = Array(bytes[end.upperBound...])
        if headers.contains(where: { $0.name.lowercased() == "transfer-encoding" && $0.value.lowercased().contains("chunked") }) {
            body = try dechunk(body)
        }
        return HTTPResponse(status: status, headers: headers, body: body)
    }

    private static func dechunk(_ bytes: [UInt8]) throws -> [UInt8] {
        var out: [UInt8] = []
        var index = 0
        while index < bytes.count {
            guard let lineEnd = bytes[index...].firstRange(of: [13, 10]) else { throw HarnessError("bad chunk") }
            let sizeText = String(decoding: bytes[index..<lineEnd.lowerBound], as: UTF8.self).split(separator: ";").first ?? ""
            guard let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16) else { throw HarnessError("bad chunk size") }
            if size == 0 { break }
            let start = lineEnd.upperBound
            guard start + size <= bytes.count else { throw HarnessError("short chunk") }
            out.append(contentsOf: bytes[start..<start + size])
            index = start + size + 2
        }
        return out
    }
}
