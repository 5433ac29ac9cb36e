import JSON
import FastCGI

/// An error answer: the status, FastAPI's `{"detail": ...}` body and any
/// headers the status needs (`WWW-Authenticate`, `Retry-After`, `Allow`).
/// `detail` never carries secrets: callers pass only what the client sent
/// or what a server replied.
struct APIError: Error, Sendable {
    var status: Int
    var detail: JSONValue
    var headers: [(name: String, value: String)] = []

    init(_ status: Int, _ detail: String, headers: [(name: String, value: String)] = []) {
        self.status = status
        self.detail = .string(detail)
        self.headers = headers
    }

    init(status: Int, detail: JSONValue) {
        self.status = status
        self.detail = detail
    }

    var response: CGIResponse {
        var out: [UInt8] = []
        JSONWriter.encode(.object([("detail", detail)]), into: &out)
        return CGIResponse(status: status, headers: [("Content-Type", "application/json")] + headers, body: out)
    }

    static let bearerChallenge: [(name: String, value: String)] = [("WWW-Authenticate", "Bearer")]

    static let notAuthenticated = APIError(401, "Not authenticated", headers: bearerChallenge)
    static let invalidCredentials = APIError(401, "Could not validate credentials", headers: bearerChallenge)
    static let wrongLogin = APIError(401, "Incorrect username or password", headers: bearerChallenge)
    static let notFound = APIError(404, "Not Found")

    static func methodNotAllowed(allow: String) -> APIError {
        APIError(405, "Method Not Allowed", headers: [("Allow", allow)])
    }

    /// FastAPI's validation error shape: a list of `{type, loc, msg}`.
    static func validation(_ problems: [(type: String, location: [String], message: String)]) -> APIError {
        APIError(status: 422, detail: .array(problems.map { problem in
            .object([
                ("type", .string(problem.type)),
                ("loc", .array(problem.location.map { .string($0) })),
                ("msg", .string(problem.message)),
            ])
        }))
    }
}

extension CGIResponse {
    static func json(_ status: Int, _ value: JSONValue, headers: [(name: String, value: String)] = []) -> CGIResponse {
        CGIResponse(status: status, headers: [("Content-Type", "application/json")] + headers, body: JSONWriter.encode(value))
    }
}
