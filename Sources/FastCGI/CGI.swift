import CFastCGI
#if canImport(Glibc)
import Glibc
#endif

/// Plain CGI, for shared hosting where Apache's mod_cgi runs the binary once
/// per request: libfcgi's accept has no CGI fallback, so this reads the
/// environment and stdin itself and writes the response to stdout.
public enum CGIOnce {
    /// True when stdin is not a socket, i.e. we were started as plain CGI.
    public static var isCGI: Bool { FCGX_IsCGI() != 0 }

    public static func serve(maxBodyBytes: Int, handler: CGIHandler) {
        var params: [String: String] = [:]
        var entry = environ
        while let pointer = entry.pointee {
            let text = String(cString: pointer)
            if let equals = text.firstIndex(of: "=") {
                params[String(text[..<equals])] = String(text[text.index(after: equals)...])
            }
            entry += 1
        }
        let body: CGIRequestBody
        switch BodyPolicy.decide(contentLength: params["CONTENT_LENGTH"], limit: maxBodyBytes) {
        case .refuse(let refusal): body = refusal
        case .read(let length): body = readStdin(length: length)
        }
        var output: [UInt8] = []
        handler(CGIRequest(params: params, body: body)).serialize(into: &output)
        var written = 0
        while written < output.count {
            let result = output.withUnsafeBytes { raw -> Int in
                guard let base = raw.baseAddress else { return 0 }
                return write(1, base + written, raw.count - written)
            }
            if result < 0 && errno == EINTR { continue }
            if result <= 0 { return }
            written += result
        }
    }

    private static func readStdin(length: Int) -> CGIRequestBody {
        guard length > 0 else { return .complete([]) }
        var body = [UInt8](repeating: 0, count: length)
        var received = 0
        while received < length {
            let result = body.withUnsafeMutableBytes { raw -> Int in
                guard let base = raw.baseAddress else { return 0 }
                return read(0, base + received, length - received)
            }
            if result < 0 && errno == EINTR { continue }
            if result <= 0 { break }
            received += result
        }
        return received == length ? .complete(body) : .incomplete(declared: length, received: received)
    }
}
