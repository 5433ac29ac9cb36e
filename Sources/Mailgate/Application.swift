import JSON
import FastCGI
import Foundation
import Logging
import MIME
import SMTP
import Store
import Crypto

/// The HTTP application: routes a plain CGI request to its handler and turns
/// every outcome, good or bad, into a JSON response and one log line.
/// Thread-safe: libfcgi workers call `handle` concurrently.
public final class Application: Sendable {
    let configuration: AppConfiguration
    let store: Store
    let signer: TokenSigner
    let hasher: PasswordHasher
    let transport: any MailTransport
    let logger: Logger
    /// Unix seconds; injectable so tests can move time.
    let now: @Sendable () -> Int64
    let inFlight: InFlightLimit
    let kdfGate: KDFGate
    /// What `GET /metrics` shows: `serve` passes the one it bootstrapped
    /// `MetricsSystem` with; by default each application has its own.
    let metrics: ServiceMetrics
    /// OAuth2 integrations' access tokens (one cache for every worker).
    let accessTokens: OAuthAccessTokens
    /// `GET /openapi.json`: the document, made once (its `servers` entry
    /// is the base path, when there is one).
    let openAPIResponse: CGIResponse

    public init(configuration: AppConfiguration, store: Store, signer: TokenSigner, hasher: PasswordHasher,
                transport: any MailTransport, logger: Logger, metrics: ServiceMetrics = ServiceMetrics(),
                accessTokens: OAuthAccessTokens? = nil,
                now: @escaping @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970) }) {
        self.configuration = configuration
        self.store = store
        self.signer = signer
        self.hasher = hasher
        self.transport = transport
        self.logger = logger
        self.now = now
        self.metrics = metrics
        self.accessTokens = accessTokens
            ?? OAuthAccessTokens(store: store, caFile: configuration.smtpCAFile, logger: logger)
        self.inFlight = InFlightLimit(limitPerUser: configuration.maxInFlightPerUser)
        self.kdfGate = KDFGate(slots: configuration.kdfConcurrency, patience: configuration.kdfWait)
        self.openAPIResponse = CGIResponse(status: 200, headers: [("Content-Type", "application/json")],
                                           body: OpenAPIDocument.json(basePath: configuration.basePath))
    }

    public func handle(_ request: CGIRequest) -> CGIResponse {
        let context = RequestContext(request: request, basePath: configuration.basePath)
        let response: CGIResponse
        do {
            response = try respond(to: context)
        } catch {
            context.errorCode = error.code
            response = error.response
        }
        metrics.record(route: context.routeIndex, status: response.status, send: context.sendOutcome(status: response.status))
        log(context, status: response.status)
        return response
    }

    /// One entry per route: a new route is one line here and a responder.
    static let routes: [Route] = [
        Route(path: "/token", method: "POST") { app, context throws(APIError) in try app.issueToken(context) },
        Route(path: "/smtp/send-email", method: "POST") { app, context throws(APIError) in try app.sendEmail(context) },
        Route(path: "/health", method: "GET") { app, context throws(APIError) in try app.health(context) },
        Route(path: "/metrics", method: "GET") { app, context throws(APIError) in app.metricsPage(context) },
        Route(path: "/openapi.json", method: "GET") { app, _ throws(APIError) in app.openAPIResponse },
    ]

    private func respond(to context: RequestContext) throws(APIError) -> CGIResponse {
        // Matched by bytes (String == normalises Unicode: quadratic on hostile input).
        // One pass, no allocation on the way to a match: `allowed` only fills
        // when the path matched and the method did not (405). The first
        // route whose path matched names the request in the metrics.
        guard let path = context.path else { throw .notFound }
        let method = context.request.method
        var allowed: [String] = []
        for index in Self.routes.indices where Self.routes[index].path.utf8Equals(path) {
            let route = Self.routes[index]
            if context.routeIndex == nil { context.routeIndex = index }
            if route.method.utf8Equals(method) { return try route.respond(self, context) }
            allowed.append(route.method)
        }
        throw allowed.isEmpty ? .notFound : .methodNotAllowed(allow: allowed.joined(separator: ", "))
    }

    private func log(_ context: RequestContext, status: Int) {
        let elapsed = ContinuousClock.now - context.started
        // Tenths of a millisecond, formatted without Foundation's printf.
        let tenths = elapsed.components.seconds * 10_000 + elapsed.components.attoseconds / 100_000_000_000_000
        let facts = context.log
        // Raw values: the line writer quotes (logfmt) or escapes (JSON)
        // whatever a client or an SMTP server could use to forge a field.
        if let writer = configuration.requestLog {
            writer.writeRequest(method: context.request.method, path: context.path ?? "-", status: status,
                                user: facts.user ?? "-", tenths: tenths, smtp: facts.outcome,
                                messageID: facts.messageID)
        } else {
            var fields: [(String, String)] = [
                ("method", context.request.method), ("path", context.path ?? "-"), ("status", String(status)),
                ("user", facts.user ?? "-"), ("duration_ms", "\(tenths / 10).\(tenths % 10)"),
            ]
            if let outcome = facts.outcome { fields.append(("smtp", outcome)) }
            if let messageID = facts.messageID { fields.append(("message_id", "<\(messageID)>")) }
            var metadata: Logger.Metadata = [:]
            for (key, value) in fields { metadata[key] = .string(value) }
            logger.info("request", metadata: metadata)
        }
    }
}

/// A route: its path (after the base path), its method, and the responder.
struct Route: Sendable {
    let path: String
    let method: String
    let respond: @Sendable (Application, RequestContext) throws(APIError) -> CGIResponse

    init(path: String, method: String,
         respond: @escaping @Sendable (Application, RequestContext) throws(APIError) -> CGIResponse) {
        self.path = path
        self.method = method
        self.respond = respond
    }
}

/// One request on its way through the application: the request, its route
/// path, and what the request log will say of it. Responders write the log
/// facts here as they learn them, on success and before they throw; it is
/// the one way those facts travel. Lives on one worker thread.
final class RequestContext {
    let request: CGIRequest
    /// The path after `--base-path`, or nil when it lies outside it.
    let path: String?
    let started = ContinuousClock.now
    var log = RequestLog()
    /// Set when an SMTP failure came after the message was handed over (it
    /// may have been delivered): such an answer ends an idempotent request.
    var messageHandedOver = false
    /// For the metrics: the index in `Application.routes` of the route
    /// whose path matched (nil: none, a 404); whether the send responder
    /// ran; whether it answered from an idempotency key (sending nothing);
    /// and the code of the error that became the answer, if one did.
    var routeIndex: Int?
    var isSend = false
    var replayed = false
    var errorCode: ErrorCode?

    init(request: CGIRequest, basePath: String) {
        self.request = request
        self.path = Self.routePath(request.path, basePath: basePath)
    }

    /// How the send responder's request ended, for `mailgate_sends_total`:
    /// nil for other routes and for replays (they sent nothing).
    func sendOutcome(status: Int) -> ServiceMetrics.SendOutcome? {
        guard isSend, !replayed else { return nil }
        if status == 200 { return .sent }
        return .failed(errorCode ?? .internalError)
    }

    /// The request path less the base path (by bytes: the path is the client's).
    static func routePath(_ path: String, basePath: String) -> String? {
        guard !basePath.isEmpty else { return path }
        guard path.utf8.starts(with: basePath.utf8) else { return nil }
        return String(path[path.utf8.index(path.startIndex, offsetBy: basePath.utf8.count)...])
    }

    /// The body, read whole: decided once, here, for every responder.
    func completeBody() throws(APIError) -> [UInt8] {
        switch request.body {
        case .complete(let bytes): return bytes
        case .tooLarge(_, let limit): throw APIError(413, .bodyTooLarge, "Request body too large (limit \(limit) bytes)")
        case .invalidLength: throw APIError(400, .invalidRequest, "Invalid Content-Length header")
        case .incomplete(let declared?, let received):
            throw APIError(400, .invalidRequest, "Request body incomplete: Content-Length is \(declared) but \(received) bytes arrived")
        case .incomplete(nil, let received):
            throw APIError(400, .invalidRequest, "Request body incomplete: the input broke off after \(received) bytes")
        }
    }
}

/// What the request log records besides method, path, status and duration.
struct RequestLog {
    var user: String?
    /// The SMTP server's answer, or why the request failed (never a secret).
    var outcome: String?
    var messageID: String?

    /// `text` in double quotes, with `"` and `\\` escaped by a backslash and
    /// control characters as `\\xNN`: it cannot end the quoted field early.
    static func quoted(_ text: String) -> String {
        var out: [UInt8] = []
        appendQuoted(text, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// `quoted(text)`, appended to `out`.
    static func appendQuoted(_ text: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"):
                out.append(UInt8(ascii: "\\"))
                out.append(byte)
            case 0..<0x20, 0x7F:
                out.append(contentsOf: "\\x".utf8)
                out.append(hexDigits[Int(byte >> 4)])
                out.append(hexDigits[Int(byte & 0xF)])
            default:
                out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    private static let hexDigits = Array("0123456789ABCDEF".utf8)
}

extension Application {
    /// `GET /health`: 200 when the store answers a read (the keys were
    /// loaded before the server started); 503 otherwise, with the reason in
    /// the log only. No token, no SMTP traffic: cheap enough to poll.
    func health(_ context: RequestContext) throws(APIError) -> CGIResponse {
        do {
            try store.checkReadable()
        } catch {
            logger.error("health check: the store cannot be read: \(error)")
            context.log.outcome = "unhealthy: store unreadable"
            throw APIError(503, .unhealthy, "Store unavailable", headers: [("Retry-After", "5")])
        }
        return .json(200, .object([("status", .string("ok"))]))
    }

    /// `GET /metrics`: this process's metrics in the Prometheus text format
    /// (see ServiceMetrics). No token: the shipped nginx config lets only
    /// loopback read it.
    func metricsPage(_ context: RequestContext) -> CGIResponse {
        CGIResponse(status: 200, headers: [("Content-Type", ServiceMetrics.contentType)],
                    body: metrics.exposition(connections: transport.pooledConnections(),
                                              tokenRefreshes: accessTokens.refreshCounts()))
    }
}
