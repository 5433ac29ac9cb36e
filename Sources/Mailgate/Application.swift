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

    public init(configuration: AppConfiguration, store: Store, signer: TokenSigner, hasher: PasswordHasher,
                transport: any MailTransport, logger: Logger,
                now: @escaping @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970) }) {
        self.configuration = configuration
        self.store = store
        self.signer = signer
        self.hasher = hasher
        self.transport = transport
        self.logger = logger
        self.now = now
    }

    /// What a handler reports for the request log besides the status.
    struct Outcome {
        var user: String?
        var smtp: String?
        var messageID: String?
    }

    enum Route: Equatable { case token, sendEmail }

    public func handle(_ request: CGIRequest) -> CGIResponse {
        let started = ContinuousClock.now
        let method = request[param: "REQUEST_METHOD"] ?? "GET"
        let path = Self.path(of: request, basePath: configuration.basePath)
        var outcome = Outcome()
        let response: CGIResponse
        do {
            response = try route(method: method, path: path, request: request, outcome: &outcome)
        } catch {
            outcome.smtp = outcome.smtp ?? error.logOutcome
            response = error.response
        }
        log(method: method, path: path, status: response.status, outcome: outcome, started: started)
        return response
    }

    private func route(method: String, path: String?, request: CGIRequest, outcome: inout Outcome) throws(APIError) -> CGIResponse {
        // Matched by bytes (a `switch` on String would use String ==, whose
        // Unicode normalisation is quadratic on hostile input).
        let route: Route
        if let path, path.utf8Equals("/token") {
            route = .token
        } else if let path, path.utf8Equals("/smtp/send-email") {
            route = .sendEmail
        } else {
            throw .notFound
        }
        guard method.utf8Equals("POST") else { throw .methodNotAllowed(allow: "POST") }
        switch route {
        case .token: return try issueToken(request, outcome: &outcome)
        case .sendEmail: return try sendEmail(request, outcome: &outcome)
        }
    }

    /// The route path: nginx's `DOCUMENT_URI` (the decoded, normalised URI),
    /// or `SCRIPT_NAME` + `PATH_INFO` from other servers, less the base path.
    static func path(of request: CGIRequest, basePath: String) -> String? {
        var path: String
        if let uri = request[param: "DOCUMENT_URI"], !uri.isEmpty {
            path = uri
        } else {
            path = (request[param: "SCRIPT_NAME"] ?? "") + (request[param: "PATH_INFO"] ?? "")
            if path.isEmpty, let uri = request[param: "REQUEST_URI"] {
                path = String(uri[..<(uri.utf8.firstIndex(of: UInt8(ascii: "?")) ?? uri.endIndex)])
            }
        }
        // Bytes, not Characters: the path comes from the client.
        if !basePath.isEmpty {
            guard path.utf8.starts(with: basePath.utf8) else { return nil }
            path = String(path[path.utf8.index(path.startIndex, offsetBy: basePath.utf8.count)...])
        }
        return path
    }

    private func log(method: String, path: String?, status: Int, outcome: Outcome, started: ContinuousClock.Instant) {
        let elapsed = ContinuousClock.now - started
        // Tenths of a millisecond, formatted without Foundation's printf.
        let tenths = elapsed.components.seconds * 10_000 + elapsed.components.attoseconds / 100_000_000_000_000
        var line = "\(method) \(path ?? "-") \(status) user=\(outcome.user ?? "-") duration_ms=\(tenths / 10).\(tenths % 10)"
        if let smtp = outcome.smtp { line += " smtp=\"\(smtp)\"" }
        if let messageID = outcome.messageID { line += " message_id=<\(messageID)>" }
        logger.info("\(line)")
    }
}
