import JSON
import FastCGI

/// The stable, machine-readable name of an error answer, sent as `code`
/// next to `detail` in every error body. `detail` is text for people and
/// may be reworded (or quote an SMTP server); a program switches on `code`.
/// The raw values are part of the HTTP contract: never rename one, only add.
enum ErrorCode: String, Sendable, CaseIterable {
    /// 401: no `Authorization` header, or not `Bearer <token>`.
    case notAuthenticated = "not_authenticated"
    /// 401: the token is malformed, badly signed, expired or revoked, or its
    /// user is disabled or gone.
    case invalidToken = "invalid_token"
    /// 401: `/token` with a wrong username or password.
    case invalidLogin = "invalid_login"
    /// 429: too many failed logins for this username lately.
    case loginLocked = "login_locked"
    /// 503: every password-check slot stayed busy.
    case loginBusy = "login_busy"
    /// 422: the body is not the expected JSON object or form (FastAPI's list in `detail`).
    case validationError = "validation_error"
    /// 400: a value or the request itself is unusable (CR/LF/NUL in the
    /// subject, NUL in the message, a bad or lying Content-Length).
    case invalidRequest = "invalid_request"
    /// 400: `to` is not one usable address.
    case invalidRecipient = "invalid_recipient"
    /// 413: the body is over `--max-body`.
    case bodyTooLarge = "body_too_large"
    /// 404: no such path.
    case notFound = "not_found"
    /// 405: the path exists, the method does not.
    case methodNotAllowed = "method_not_allowed"
    /// 400: the user has no SMTP integration.
    case noIntegration = "no_integration"
    /// 429: the user already has `--max-in-flight-per-user` sends waiting.
    case tooManyInFlight = "too_many_in_flight"
    /// 429: the send would take the user past a send quota.
    case quotaExceeded = "quota_exceeded"
    /// 403: a recipient outside the user's recipient policy.
    case recipientNotAllowed = "recipient_not_allowed"
    /// 400: the SMTP server permanently refused the recipient (5xx to RCPT).
    case recipientRejected = "recipient_rejected"
    /// 502: the SMTP server permanently refused something else: our stored
    /// login (535), the sender, or the message.
    case smtpRejected = "smtp_rejected"
    /// 503: the SMTP server is unavailable for now (4xx/421, connection
    /// refused or lost before the message was handed over, name not found).
    case smtpUnavailable = "smtp_unavailable"
    /// 504: the SMTP server (or its name's resolution) took too long.
    case smtpTimeout = "smtp_timeout"
    /// 502: any other SMTP failure: TLS or certificate, STARTTLS not offered,
    /// no usable AUTH mechanism, a protocol violation, or the connection lost
    /// after the message was handed over.
    case smtpFailed = "smtp_failed"
    /// 422: more addresses in `to`, `cc` and `bcc` together than
    /// `--max-recipients`.
    case tooManyRecipients = "too_many_recipients"
    /// 400: a custom header whose name is not allowed (From, Bcc,
    /// Content-Type...) or is not a field name, or whose value holds CR, LF
    /// or NUL.
    case headerNotAllowed = "header_not_allowed"
    /// 400: an attachment without a usable `filename`, with `content` that
    /// is not base64, or with an unusable `content_type` or `content_id`.
    case invalidAttachment = "invalid_attachment"
    /// 413: the encoded message is over `--max-message-bytes`, or over the
    /// limit the SMTP server announced (SIZE).
    case messageTooLarge = "message_too_large"
    /// 400: an `Idempotency-Key` header that is not 1 to 255 printable
    /// ASCII characters.
    case invalidIdempotencyKey = "invalid_idempotency_key"
    /// 422: the `Idempotency-Key` was used before with another body.
    case idempotencyKeyReused = "idempotency_key_reused"
    /// 409: a request with this `Idempotency-Key` is still being sent.
    case idempotencyKeyInFlight = "idempotency_key_in_flight"
    /// 502: the SMTP server refused the stored login (AUTH answered 5xx).
    case smtpAuthFailed = "smtp_auth_failed"
    /// 502: the connection was lost after the message was handed over (or a
    /// send with this idempotency key never finished): it may or may not
    /// have been delivered. Do not retry blindly.
    case deliveryUnknown = "delivery_unknown"
    /// 502: the OAuth2 grant is gone (the token endpoint answered
    /// `invalid_grant`: revoked, expired, password changed) or was never
    /// stored: run `mailgate integration authorize USER`.
    case oauthReauthorize = "oauth_reauthorize"
    /// 502: the token endpoint refused the client or the request
    /// (`invalid_client`, `unauthorized_client`, ...): a configuration error.
    case oauthFailed = "oauth_failed"
    /// 503: the token endpoint is unreachable, failing (5xx) or answered
    /// something unusable; nothing was sent.
    case oauthUnavailable = "oauth_unavailable"
    /// 504: the token endpoint did not answer in time; nothing was sent.
    case oauthTimeout = "oauth_timeout"
    /// 503: the store (PostgreSQL) cannot be reached; nothing was done.
    case storeUnavailable = "store_unavailable"
    /// 503: `GET /health` found the store unreadable.
    case unhealthy = "unhealthy"
    /// 500: something failed on our side (details in the log only).
    case internalError = "internal_error"
}

/// An error answer: the status, the body `{"detail": ..., "code": ...}`
/// (FastAPI's `detail`, plus our stable `code`) and any headers the status
/// needs (`WWW-Authenticate`, `Retry-After`, `Allow`). Every error has a
/// code: there is no way to make one without.
/// `detail` never carries secrets: callers pass only what the client sent
/// or what a server replied.
struct APIError: Error, Sendable {
    let status: Int
    let code: ErrorCode
    let detail: JSONValue
    let headers: [(name: String, value: String)]

    init(_ status: Int, _ code: ErrorCode, _ detail: String, headers: [(name: String, value: String)] = []) {
        self.init(status: status, code: code, detail: .string(detail), headers: headers)
    }

    private init(status: Int, code: ErrorCode, detail: JSONValue, headers: [(name: String, value: String)]) {
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers
    }

    /// The same error with `extra` headers after its own.
    func adding(headers extra: [(name: String, value: String)]) -> APIError {
        APIError(status: status, code: code, detail: detail, headers: headers + extra)
    }

    var response: CGIResponse {
        var out: [UInt8] = []
        JSONWriter.encode(.object([("detail", detail), ("code", .string(code.rawValue))]), into: &out)
        return CGIResponse(status: status, headers: [("Content-Type", "application/json")] + headers, body: out)
    }

    static let bearerChallenge: [(name: String, value: String)] = [("WWW-Authenticate", "Bearer")]

    static let notAuthenticated = APIError(401, .notAuthenticated, "Not authenticated", headers: bearerChallenge)
    static let invalidCredentials = APIError(401, .invalidToken, "Could not validate credentials", headers: bearerChallenge)
    static let wrongLogin = APIError(401, .invalidLogin, "Incorrect username or password", headers: bearerChallenge)
    static let notFound = APIError(404, .notFound, "Not Found")

    static func methodNotAllowed(allow: String) -> APIError {
        APIError(405, .methodNotAllowed, "Method Not Allowed", headers: [("Allow", allow)])
    }

    /// FastAPI's validation error shape: a list of `{type, loc, msg}`.
    /// Every 422 has it, also those with their own code (too many
    /// recipients, a reused idempotency key).
    static func validation(_ problems: [ValidationProblem], code: ErrorCode = .validationError) -> APIError {
        APIError(status: 422, code: code, detail: .array(problems.map { problem in
            .object([
                ("type", .string(problem.type)),
                ("loc", .array(problem.location.map(\.json))),
                ("msg", .string(problem.message)),
            ])
        }), headers: [])
    }
}

extension CGIResponse {
    static func json(_ status: Int, _ value: JSONValue, headers: [(name: String, value: String)] = []) -> CGIResponse {
        CGIResponse(status: status, headers: [("Content-Type", "application/json")] + headers, body: JSONWriter.encode(value))
    }
}
