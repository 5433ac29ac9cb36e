/// A request as the application sees it: the CGI parameters the web server
/// sent and the body, already read (or refused) according to the size
/// policy. Plain values only, so handlers are testable without libfcgi.
public struct CGIRequest: Sendable {
    public var params: [String: String]
    public var body: CGIRequestBody

    public init(params: [String: String], body: CGIRequestBody) {
        self.params = params
        self.body = body
    }

    /// A raw CGI parameter (`REQUEST_METHOD`, `HTTP_AUTHORIZATION`, ...).
    public subscript(param name: String) -> String? { params[name] }

    /// The HTTP method (`REQUEST_METHOD`), as sent.
    public var method: String { params["REQUEST_METHOD"] ?? "GET" }

    /// The request path without the query: nginx's `DOCUMENT_URI` (decoded
    /// and normalised), else `SCRIPT_NAME` + `PATH_INFO` (Apache, CGI), else
    /// `REQUEST_URI` up to its `?`. Cut by bytes: the path is the client's.
    public var path: String {
        if let uri = params["DOCUMENT_URI"], !uri.isEmpty { return uri }
        let joined = (params["SCRIPT_NAME"] ?? "") + (params["PATH_INFO"] ?? "")
        if !joined.isEmpty { return joined }
        guard let uri = params["REQUEST_URI"] else { return "" }
        return String(uri[..<(uri.utf8.firstIndex(of: UInt8(ascii: "?")) ?? uri.endIndex)])
    }

    /// A request header by its HTTP name, in any case (`"Authorization"`):
    /// CGI passes `Content-Type` and `Content-Length` as `CONTENT_TYPE` and
    /// `CONTENT_LENGTH`, every other header as `HTTP_` + its name upper-cased
    /// with `-` as `_`. `name` is the caller's constant, never client input.
    public func header(_ name: String) -> String? {
        let upper = String(decoding: name.utf8.map { byte -> UInt8 in
            if byte == UInt8(ascii: "-") { return UInt8(ascii: "_") }
            return (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) ? byte - 0x20 : byte
        }, as: UTF8.self)
        if upper == "CONTENT_TYPE" || upper == "CONTENT_LENGTH" { return params[upper] }
        return params["HTTP_" + upper]
    }
}

/// What became of the request body. The reader never buffers more than the
/// configured limit, so an oversized body is refused without being read whole.
public enum CGIRequestBody: Sendable, Equatable {
    /// The body, exactly `CONTENT_LENGTH` bytes (empty when there was none),
    /// or, over FastCGI without `CONTENT_LENGTH`, the whole FCGI_STDIN stream.
    case complete([UInt8])
    /// `CONTENT_LENGTH` exceeds the limit; the body was not read. (Without
    /// `CONTENT_LENGTH`: `declared` is what was read before the limit passed.)
    case tooLarge(declared: Int, limit: Int)
    /// `CONTENT_LENGTH` is not a non-negative decimal number.
    case invalidLength(String)
    /// The peer sent fewer bytes than `CONTENT_LENGTH` announced (nil: none
    /// was, and the FCGI_STDIN stream broke off before its end).
    case incomplete(declared: Int?, received: Int)
}

/// A response: serialised as CGI (`Status:` line, headers, blank line, body)
/// and written in one call.
public struct CGIResponse: Sendable, Equatable {
    public var status: Int
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public init(status: Int, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public static func == (lhs: CGIResponse, rhs: CGIResponse) -> Bool {
        lhs.status == rhs.status && lhs.body == rhs.body && lhs.headers.count == rhs.headers.count
            && zip(lhs.headers, rhs.headers).allSatisfy {
                $0.name.utf8.elementsEqual($1.name.utf8) && $0.value.utf8.elementsEqual($1.value.utf8)
            }
    }

    /// The first header named `name`, ASCII letters in either case, compared
    /// as UTF-8 bytes (String's `lowercased() ==` normalises Unicode, which
    /// is quadratic on a long run of combining marks).
    public func header(_ name: String) -> String? {
        headers.first { Self.headerNamesMatch($0.name, name) }?.value
    }

    static func headerNamesMatch(_ a: String, _ b: String) -> Bool {
        func lowered(_ byte: UInt8) -> UInt8 { (0x41...0x5A).contains(byte) ? byte | 0x20 : byte }
        return a.utf8.count == b.utf8.count && a.utf8.elementsEqual(b.utf8) { lowered($0) == lowered($1) }
    }

    /// Appends the CGI wire form to `buffer` (reused per worker thread).
    public func serialize(into buffer: inout [UInt8]) {
        buffer.append(contentsOf: "Status: \(status) \(Self.reason(for: status))\r\n".utf8)
        for (name, value) in headers {
            buffer.append(contentsOf: name.utf8)
            buffer.append(contentsOf: ": ".utf8)
            buffer.append(contentsOf: value.utf8)
            buffer.append(contentsOf: "\r\n".utf8)
        }
        buffer.append(contentsOf: "Content-Length: \(body.count)\r\n\r\n".utf8)
        buffer.append(contentsOf: body)
    }

    public static func reason(for status: Int) -> String {
        switch status {
        case 200: "OK"
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 411: "Length Required"
        case 413: "Content Too Large"
        case 415: "Unsupported Media Type"
        case 422: "Unprocessable Content"
        case 429: "Too Many Requests"
        case 500: "Internal Server Error"
        case 502: "Bad Gateway"
        case 503: "Service Unavailable"
        case 504: "Gateway Timeout"
        default: "Status"
        }
    }
}

/// Decides how much of a body to read from its declared `CONTENT_LENGTH`.
public enum BodyPolicy {
    public enum Decision: Equatable, Sendable {
        case read(Int)
        case refuse(CGIRequestBody)
    }

    public static func decide(contentLength: String?, limit: Int) -> Decision {
        guard let raw = contentLength, !raw.isEmpty else { return .read(0) }
        // Digits only: "+5", " 5", "-1" and "0x10" are all refused.
        guard raw.utf8.count <= 19, raw.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }), let length = Int(raw) else {
            return .refuse(.invalidLength(String(raw.prefix(32))))
        }
        if length > limit { return .refuse(.tooLarge(declared: length, limit: limit)) }
        return .read(length)
    }
}
