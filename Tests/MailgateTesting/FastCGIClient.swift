import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What a FastCGI responder sent back for one request.
public struct FastCGIResponse: Sendable {
    /// The FCGI_STDOUT stream: a CGI response ("Status: ...", headers, body).
    public var stdout: [UInt8] = []
    public var stderr: [UInt8] = []
    /// From FCGI_END_REQUEST; nil when the connection ended without one.
    public var appStatus: UInt32?
    public var protocolStatus: UInt8?
    /// How many FCGI_STDOUT records carried the stdout bytes.
    public var stdoutRecords = 0

    public var ended: Bool { protocolStatus != nil }

    /// The CGI response parsed as HTTP (its `Status:` line as the status line).
    public func http() throws -> HTTPResponse { try HTTP.parseCGI(stdout) }
}

/// A minimal FastCGI client (the web server's side of the FastCGI spec,
/// version 1, role FCGI_RESPONDER) over a raw socket: one request per
/// connection, records written exactly as asked.
public enum FastCGIClient {
    public enum Address: Sendable {
        case unix(String)
        case tcp(port: Int)
    }

    enum RecordType: UInt8 {
        case beginRequest = 1, abortRequest = 2, endRequest = 3, params = 4, stdin = 5, stdout = 6, stderr = 7
    }

    /// The records of one request: FCGI_BEGIN_REQUEST, the params in
    /// FCGI_PARAMS records and their empty terminator, then, unless `stdin`
    /// is nil, the body in FCGI_STDIN records of at most `chunk` bytes and
    /// the empty record that ends it. (`stdin: nil` sends no input at all,
    /// as a web server still waiting for its client's body would.)
    public static func requestRecords(params: [(String, String)], stdin: [UInt8]?, requestID: UInt16 = 1,
                                      keepConnection: Bool = false, chunk: Int = 65535) -> [UInt8] {
        var out: [UInt8] = []
        // role FCGI_RESPONDER (1), flags (FCGI_KEEP_CONN = 1), 5 reserved bytes
        appendRecord(.beginRequest, requestID, [0, 1, keepConnection ? 1 : 0, 0, 0, 0, 0, 0], to: &out)
        var encoded: [UInt8] = []
        for (name, value) in params {
            appendLength(name.utf8.count, to: &encoded)
            appendLength(value.utf8.count, to: &encoded)
            encoded += Array(name.utf8) + Array(value.utf8)
        }
        appendStream(.params, requestID, encoded, chunk: chunk, to: &out)
        if let stdin { appendStream(.stdin, requestID, stdin, chunk: chunk, to: &out) }
        return out
    }

    /// A CGI request's usual params for `method` and `uri`, plus `extra`
    /// (e.g. CONTENT_LENGTH, CONTENT_TYPE, HTTP_AUTHORIZATION).
    public static func params(method: String = "POST", uri: String = "/", extra: [(String, String)] = []) -> [(String, String)] {
        [("GATEWAY_INTERFACE", "CGI/1.1"), ("SERVER_PROTOCOL", "HTTP/1.1"), ("REQUEST_METHOD", method),
         ("REQUEST_URI", uri), ("DOCUMENT_URI", uri), ("SCRIPT_NAME", uri)] + extra
    }

    /// Connects, writes `records` while reading the answer (a responder may
    /// answer before it has read the input), and returns once
    /// FCGI_END_REQUEST arrived or the responder closed the connection
    /// (`ended` tells which). `timeout` seconds without either is a harness
    /// error, not a hang.
    public static func exchange(_ address: Address, records: [UInt8], timeout: Double = 20) throws -> FastCGIResponse {
        let fd: Int32
        switch address {
        case .unix(let path): fd = try connectUnix(path)
        case .tcp(let port): fd = try connectLoopback(port: port)
        }
        defer { close(fd) }
        var response = FastCGIResponse()
        var parsed = 0
        _ = try exchangeBytes(fd: fd, records, timeout: timeout, peer: "the FastCGI responder") { received in
            try parse(received, from: &parsed, into: &response)
            return response.ended
        }
        return response
    }

    /// One request: params from `params(method:uri:extra:)` and `body` as stdin.
    public static func send(_ address: Address, method: String = "POST", uri: String = "/",
                            headers: [(String, String)] = [], body: [UInt8] = [], timeout: Double = 20) throws -> FastCGIResponse {
        let records = requestRecords(params: params(method: method, uri: uri,
                                                    extra: [("CONTENT_LENGTH", String(body.count))] + headers),
                                     stdin: body)
        return try exchange(address, records: records, timeout: timeout)
    }

    private static func parse(_ bytes: [UInt8], from offset: inout Int, into response: inout FastCGIResponse) throws {
        while bytes.count - offset >= 8 {
            let header = bytes[offset..<offset + 8]
            let base = header.startIndex
            guard header[base] == 1 else { throw HarnessError("FastCGI record version \(header[base])") }
            let length = Int(header[base + 4]) << 8 | Int(header[base + 5])
            let padding = Int(header[base + 6])
            guard bytes.count - offset >= 8 + length + padding else { return }
            let content = bytes[offset + 8 ..< offset + 8 + length]
            switch RecordType(rawValue: header[base + 1]) {
            case .stdout:
                response.stdout += content
                if length > 0 { response.stdoutRecords += 1 }
            case .stderr:
                response.stderr += content
            case .endRequest:
                guard length >= 5 else { throw HarnessError("short FCGI_END_REQUEST") }
                let c = content.startIndex
                response.appStatus = UInt32(content[c]) << 24 | UInt32(content[c + 1]) << 16
                    | UInt32(content[c + 2]) << 8 | UInt32(content[c + 3])
                response.protocolStatus = content[c + 4]
            default:
                throw HarnessError("unexpected FastCGI record type \(header[base + 1])")
            }
            offset += 8 + length + padding
        }
    }

    private static func appendLength(_ length: Int, to out: inout [UInt8]) {
        if length < 128 {
            out.append(UInt8(length))
        } else {
            out += [UInt8(length >> 24 & 0x7f) | 0x80, UInt8(length >> 16 & 0xff), UInt8(length >> 8 & 0xff), UInt8(length & 0xff)]
        }
    }

    /// A stream's content in records of at most `chunk` bytes, then the empty record that ends it.
    private static func appendStream(_ type: RecordType, _ id: UInt16, _ content: [UInt8], chunk: Int, to out: inout [UInt8]) {
        var start = 0
        while start < content.count {
            let end = min(start + min(chunk, 65535), content.count)
            appendRecord(type, id, content[start..<end], to: &out)
            start = end
        }
        appendRecord(type, id, [], to: &out)
    }

    private static func appendRecord(_ type: RecordType, _ id: UInt16, _ content: some Collection<UInt8>, to out: inout [UInt8]) {
        let padding = (8 - content.count % 8) % 8
        out += [1, type.rawValue, UInt8(id >> 8), UInt8(id & 0xff), UInt8(content.count >> 8), UInt8(content.count & 0xff),
                UInt8(padding), 0]
        out += content
        out += [UInt8](repeating: 0, count: padding)
    }
}
