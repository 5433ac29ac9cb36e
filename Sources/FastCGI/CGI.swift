import CFastCGI
import Glibc
import Posix

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
        // A failed write means the web server gave up on us: nothing to add.
        var written = 0
        while written < output.count,
              let result = try? systemCall("write", { output.withUnsafeBytes { write(1, $0.baseAddress.map { $0 + written }, $0.count - written) } }),
              result > 0 {
            written += result
        }
    }

    private static func readStdin(length: Int) -> CGIRequestBody {
        guard length > 0 else { return .complete([]) }
        var body = [UInt8](repeating: 0, count: length)
        var received = 0
        // Short or failed: reported as an incomplete body, not an error.
        while received < length,
              let result = try? systemCall("read", { body.withUnsafeMutableBytes { read(0, $0.baseAddress.map { $0 + received }, length - received) } }),
              result > 0 {
            received += result
        }
        return received == length ? .complete(body) : .incomplete(declared: length, received: received)
    }
}
