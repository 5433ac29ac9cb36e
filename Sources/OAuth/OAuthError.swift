/// Everything that can go wrong in the OAuth module, by what the caller
/// should do about it.
///
/// Nothing from a token endpoint's answer that could be a secret ever goes
/// into a case: no token, no body. The only text taken from an answer is
/// the RFC 6749 §5.2 `error` code, and only when it is a short run of
/// `[A-Za-z0-9_.-]` (otherwise "unrecognised"). `error_description` is
/// never echoed: it is free text the server controls, and it adds nothing a
/// user can act on that the code does not say.
public enum OAuthError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The refresh token was refused (`invalid_grant`: revoked, expired,
    /// password changed): the user must authorise again.
    case reauthorize
    /// The token endpoint refused the client or the request (`invalid_client`,
    /// `unauthorized_client`, `invalid_scope`, ...): a configuration error.
    /// `code` is the sanitised OAuth error code, `status` the HTTP status.
    case rejected(code: String, status: Int)
    /// The endpoint could not be reached or answered 5xx; worth trying again
    /// after `retryAfter`. `reason` says what failed (curl's message, or the status).
    case unavailable(reason: String, retryAfter: Duration)
    /// The deadline passed before an answer (or, for a waiter of the access
    /// token cache, before the refresh it waited for ended).
    case timedOut
    /// The answer was not a usable token response (not JSON, no
    /// `access_token`, too large, a redirect, ...).
    case badResponse(String)
    /// A URL, tenant or other setting is unusable; says which and why.
    case invalidConfiguration(String)
    /// The browser came back with `error=...` (e.g. access_denied): the
    /// user or the provider refused. The code is sanitised as above.
    case authorizationDenied(code: String)
    /// The browser came back with a `state` that is not this session's: the
    /// code (if any) was not exchanged.
    case stateMismatch
    /// No browser came back to the loopback listener in time.
    case noRedirect
    /// A system call, libcurl or OpenSSL failed in a way no input explains.
    case internalFailure(String)

    /// The default pause before retrying when an unavailable endpoint gave
    /// no usable Retry-After.
    public static let defaultRetryAfter: Duration = .seconds(5)

    public var description: String {
        switch self {
        case .reauthorize:
            "the refresh token was refused (invalid_grant): authorise again"
        case .rejected(let code, let status):
            "the token endpoint refused the request: \(code) (HTTP \(status))"
        case .unavailable(let reason, let retryAfter):
            "the token endpoint is unavailable: \(reason) (retry after \(retryAfter.components.seconds) s)"
        case .timedOut:
            "the token endpoint did not answer before the deadline"
        case .badResponse(let what):
            "the token endpoint's answer is unusable: \(what)"
        case .invalidConfiguration(let what):
            "invalid OAuth2 configuration: \(what)"
        case .authorizationDenied(let code):
            "the authorisation was refused: \(code)"
        case .stateMismatch:
            "the authorisation redirect carried a wrong state; its code was not used"
        case .noRedirect:
            "no browser came back to the loopback redirect in time"
        case .internalFailure(let what):
            "OAuth2 internal failure: \(what)"
        }
    }

    /// An OAuth error code as it may appear in an error: short, and only
    /// `[A-Za-z0-9_.-]`; anything else becomes "unrecognised".
    static func sanitisedCode(_ code: String) -> String {
        let bytes = Array(code.utf8)
        let allowed = bytes.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a)
                || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "-")
        }
        return !bytes.isEmpty && bytes.count <= 64 && allowed ? code : "unrecognised"
    }
}
