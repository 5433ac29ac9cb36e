import CCurl

/// What came back from one POST.
public struct HTTPSResponse: Sendable {
    public var status: Int
    /// The body; may hold tokens, so this type has no description of it.
    public var body: [UInt8]
    /// The last response's Retry-After header, trimmed, if it had one.
    public var retryAfter: String?
}

/// A form POST over libcurl, with the rules a token endpoint needs.
///
/// - HTTPS with certificate and host name verification (TLS 1.2 or later).
///   The trust anchors are the system's (Debian's libcurl reads
///   /etc/ssl/certs/ca-certificates.crt and the hashed /etc/ssl/certs);
///   `caFile` replaces the bundle file (CURLOPT_CAINFO) while the hashed
///   directory (CURLOPT_CAPATH, left at its default) stays, so the system's
///   anchors still verify and the file adds to them, as SMTP's `--ca-file`.
/// - `http://` only to loopback (see `EndpointURL`), and curl is told to
///   speak only the scheme that was checked.
/// - Redirects are never followed and a 3xx is an error: following one
///   would re-send the client secret and refresh token to wherever the
///   Location points (another host, or plain http), and no token endpoint
///   redirects a POST.
/// - Connect and total time-outs both come from the caller's deadline
///   (never curl's 0, "no limit"); CURLOPT_NOSIGNAL, because the callers are
///   worker threads and curl's SIGALRM-based resolver timeout is not thread-safe.
/// - The answer is capped at `maximumResponseBytes`: the write callback
///   aborts the transfer past it, and a larger Content-Length is refused
///   before the body is read.
/// - One easy handle per request: nothing is shared between threads but
///   curl's global state, initialised once.
public struct HTTPSClient: Sendable {
    public var maximumResponseBytes: Int
    public var userAgent: String

    public init(maximumResponseBytes: Int = 64 * 1024, userAgent: String = "mailgate") {
        self.maximumResponseBytes = maximumResponseBytes
        self.userAgent = userAgent
    }

    /// POSTs `form` (already application/x-www-form-urlencoded) to `url`.
    /// Throws `.timedOut`, `.unavailable` (connect, DNS, TLS, transfer),
    /// `.badResponse` (too large, a redirect), `.invalidConfiguration` (an
    /// unreadable CA file), `.internalFailure`.
    public func postForm(_ url: EndpointURL, form: [UInt8], caFile: String?,
                         deadline: ContinuousClock.Instant) throws(OAuthError) -> HTTPSResponse {
        try CurlGlobal.ensureInitialised()
        guard !form.isEmpty else { throw .internalFailure("an empty form") }
        let left = deadline - .now
        guard left > .zero else { throw .timedOut }
        // Rounded up, so a call never gets 0 ms (which curl reads as "no limit").
        let milliseconds = max(1, Int((left / .milliseconds(1)).rounded(.up)))

        let parsed = try ParsedURL(url.text)
        guard let handle = curl_easy_init() else { throw .internalFailure("curl_easy_init failed") }
        defer { curl_easy_cleanup(handle) }
        var errorBuffer = [CChar](repeating: 0, count: Int(mailgate_CURL_ERROR_SIZE()) + 1)
        let sink = ResponseSink(limit: maximumResponseBytes)
        let sinkPointer = Unmanaged.passUnretained(sink).toOpaque()
        var headers: UnsafeMutablePointer<curl_slist>?
        defer { curl_slist_free_all(headers) }
        for header in ["Content-Type: application/x-www-form-urlencoded", "Accept: application/json", "Expect:"] {
            guard let appended = curl_slist_append(headers, header) else {
                throw .internalFailure("curl_slist_append failed")
            }
            headers = appended
        }

        return try errorBuffer.withUnsafeMutableBufferPointer { errorBytes throws(OAuthError) -> HTTPSResponse in
            func set(_ name: String, _ rc: CURLcode) throws(OAuthError) {
                guard rc == CURLE_OK else {
                    throw .internalFailure("curl_easy_setopt \(name): \(String(cString: curl_easy_strerror(rc)))")
                }
            }
            try set("ERRORBUFFER", mailgate_curl_setopt_pointer(handle, CURLOPT_ERRORBUFFER, errorBytes.baseAddress))
            try set("CURLU", mailgate_curl_setopt_pointer(handle, CURLOPT_CURLU, UnsafeMutableRawPointer(parsed.handle)))
            try set("PROTOCOLS_STR", mailgate_curl_setopt_string(handle, CURLOPT_PROTOCOLS_STR, url.scheme))
            try set("NOSIGNAL", mailgate_curl_setopt_long(handle, CURLOPT_NOSIGNAL, 1))
            try set("FOLLOWLOCATION", mailgate_curl_setopt_long(handle, CURLOPT_FOLLOWLOCATION, 0))
            try set("SSL_VERIFYPEER", mailgate_curl_setopt_long(handle, CURLOPT_SSL_VERIFYPEER, 1))
            try set("SSL_VERIFYHOST", mailgate_curl_setopt_long(handle, CURLOPT_SSL_VERIFYHOST, 2))
            try set("SSLVERSION", mailgate_curl_setopt_long(handle, CURLOPT_SSLVERSION, Int(CURL_SSLVERSION_TLSv1_2)))
            if let caFile {
                try set("CAINFO", mailgate_curl_setopt_string(handle, CURLOPT_CAINFO, caFile))
            }
            try set("TIMEOUT_MS", mailgate_curl_setopt_long(handle, CURLOPT_TIMEOUT_MS, milliseconds))
            try set("CONNECTTIMEOUT_MS", mailgate_curl_setopt_long(handle, CURLOPT_CONNECTTIMEOUT_MS, milliseconds))
            try set("MAXFILESIZE_LARGE", mailgate_curl_setopt_offset(handle, CURLOPT_MAXFILESIZE_LARGE, curl_off_t(maximumResponseBytes)))
            try set("USERAGENT", mailgate_curl_setopt_string(handle, CURLOPT_USERAGENT, userAgent))
            try set("HTTPHEADER", mailgate_curl_setopt_pointer(handle, CURLOPT_HTTPHEADER, UnsafeMutableRawPointer(headers)))
            try set("POST", mailgate_curl_setopt_long(handle, CURLOPT_POST, 1))
            try set("POSTFIELDSIZE_LARGE", mailgate_curl_setopt_offset(handle, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(form.count)))
            // COPYPOSTFIELDS: curl keeps its own copy, so the array's lifetime does not matter.
            // (A form is never empty: grant_type and client_id are always in it.)
            try form.withUnsafeBufferPointer { bytes throws(OAuthError) in
                try set("COPYPOSTFIELDS", mailgate_curl_setopt_pointer(handle, CURLOPT_COPYPOSTFIELDS,
                                                                       UnsafeMutableRawPointer(mutating: bytes.baseAddress)))
            }
            try set("WRITEFUNCTION", mailgate_curl_setopt_callback(handle, CURLOPT_WRITEFUNCTION, { data, size, count, context in
                guard let context else { return 0 }
                let sink = Unmanaged<ResponseSink>.fromOpaque(context).takeUnretainedValue()
                return sink.appendBody(data, size * count)
            }))
            try set("WRITEDATA", mailgate_curl_setopt_pointer(handle, CURLOPT_WRITEDATA, sinkPointer))
            try set("HEADERFUNCTION", mailgate_curl_setopt_callback(handle, CURLOPT_HEADERFUNCTION, { data, size, count, context in
                guard let context else { return 0 }
                let sink = Unmanaged<ResponseSink>.fromOpaque(context).takeUnretainedValue()
                return sink.header(data, size * count)
            }))
            try set("HEADERDATA", mailgate_curl_setopt_pointer(handle, CURLOPT_HEADERDATA, sinkPointer))

            let rc = withExtendedLifetime(sink) { withExtendedLifetime(parsed) { curl_easy_perform(handle) } }
            if rc != CURLE_OK {
                let detail = String(decoding: errorBytes.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                let message = String(cString: curl_easy_strerror(rc)) + (detail.isEmpty ? "" : ": " + detail)
                switch rc {
                case CURLE_OPERATION_TIMEDOUT:
                    throw .timedOut
                case CURLE_WRITE_ERROR where sink.exceeded, CURLE_FILESIZE_EXCEEDED:
                    throw .badResponse("the answer is larger than \(maximumResponseBytes) bytes")
                case CURLE_SSL_CACERT_BADFILE:
                    throw .invalidConfiguration("cannot use the CA file: \(message)")
                case CURLE_OUT_OF_MEMORY, CURLE_FAILED_INIT, CURLE_BAD_FUNCTION_ARGUMENT, CURLE_UNKNOWN_OPTION:
                    throw .internalFailure(message)
                default:
                    // Name resolution, connect, TLS handshake or verification,
                    // a transfer cut short: the endpoint is not usable now.
                    throw .unavailable(reason: message, retryAfter: OAuthError.defaultRetryAfter)
                }
            }
            var status = 0
            let info = mailgate_curl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
            guard info == CURLE_OK else {
                throw .internalFailure("curl_easy_getinfo RESPONSE_CODE: \(String(cString: curl_easy_strerror(info)))")
            }
            if (300..<400).contains(status) {
                throw .badResponse("HTTP \(status): redirects are not followed (the token URL must be the endpoint itself)")
            }
            return HTTPSResponse(status: status, body: sink.body, retryAfter: sink.retryAfter)
        }
    }
}

/// curl_global_init, once per process (it is not thread-safe itself; a
/// Swift global `let` is initialised exactly once, under a lock).
enum CurlGlobal {
    private static let result: CURLcode = curl_global_init(mailgate_CURL_GLOBAL_DEFAULT())

    static func ensureInitialised() throws(OAuthError) {
        guard result == CURLE_OK else {
            throw .internalFailure("curl_global_init: \(String(cString: curl_easy_strerror(result)))")
        }
    }
}

/// Collects one response inside curl's callbacks (on the calling thread:
/// curl_easy_perform runs them synchronously, so no lock is needed).
private final class ResponseSink {
    let limit: Int
    var body: [UInt8] = []
    var exceeded = false
    var retryAfter: String?
    /// Header bytes seen; capped like the body (curl caps single headers only).
    var headerBytes = 0

    init(limit: Int) { self.limit = limit }

    /// Returns the bytes taken; anything else makes curl abort with CURLE_WRITE_ERROR.
    func appendBody(_ data: UnsafeMutablePointer<CChar>?, _ count: Int) -> Int {
        guard count > 0 else { return 0 }
        guard let data, body.count + count <= limit else {
            exceeded = true
            return 0
        }
        data.withMemoryRebound(to: UInt8.self, capacity: count) { body.append(contentsOf: UnsafeBufferPointer(start: $0, count: count)) }
        return count
    }

    func header(_ data: UnsafeMutablePointer<CChar>?, _ count: Int) -> Int {
        guard let data, count > 0 else { return count }
        headerBytes += count
        guard headerBytes <= limit else {
            exceeded = true
            return 0
        }
        let line = data.withMemoryRebound(to: UInt8.self, capacity: count) { Array(UnsafeBufferPointer(start: $0, count: count)) }
        // A new status line (after a 100 Continue, say) starts a new header block.
        if line.starts(with: Array("HTTP/".utf8)) {
            retryAfter = nil
        } else if let value = Self.value(of: "retry-after", in: line) {
            retryAfter = value
        }
        return count
    }

    /// The trimmed value when `line` is the header `name` (ASCII, case-insensitive).
    private static func value(of name: String, in line: [UInt8]) -> String? {
        let nameBytes = Array(name.utf8)
        guard line.count > nameBytes.count, line[nameBytes.count] == UInt8(ascii: ":") else { return nil }
        for (index, byte) in nameBytes.enumerated() where (line[index] | 0x20) != byte { return nil }
        let isSpace: (UInt8) -> Bool = { $0 == 0x20 || $0 == 0x09 || $0 == 0x0d || $0 == 0x0a }
        var value = line[(nameBytes.count + 1)...]
        while let first = value.first, isSpace(first) { value = value.dropFirst() }
        while let last = value.last, isSpace(last) { value = value.dropLast() }
        return String(decoding: value, as: UTF8.self)
    }
}
