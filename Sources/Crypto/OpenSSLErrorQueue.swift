import COpenSSL

/// The one place Mailgate reads OpenSSL's per-thread error queue: Crypto's
/// libcrypto calls and SMTP's TLS both report through it.
public enum OpenSSLErrorQueue {
    /// Empties the queue before a call whose failure will be examined.
    public static func clear() { ERR_clear_error() }

    /// The reason of the error at the head of the queue, without removing it.
    public static func peekReason() -> Int32 { ERR_GET_REASON(ERR_peek_error()) }

    /// The queued errors, most specific reason first, and the queue emptied
    /// (it is per thread and threads are reused). Bounded, so a misbehaving
    /// library cannot keep us looping.
    @discardableResult
    public static func drain() -> String {
        var reasons: [String] = []
        for _ in 0..<32 {
            let e = ERR_get_error()
            if e == 0 { break }
            if let reason = ERR_reason_error_string(e) {
                reasons.append(String(cString: reason))
            } else {
                var buf = [CChar](repeating: 0, count: 256)
                ERR_error_string_n(e, &buf, buf.count)
                reasons.append(String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
            }
        }
        ERR_clear_error()
        return reasons.isEmpty ? "unknown error" : reasons.joined(separator: "; ")
    }
}
