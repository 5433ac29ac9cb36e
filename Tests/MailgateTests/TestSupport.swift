import FastCGI
import Foundation
import Logging
@testable import Mailgate
import SMTP
import Store
import Synchronization
import Crypto

/// A transport that records what it was asked to send and answers as scripted.
final class RecordingTransport: MailTransport {
    struct Sent: Sendable {
        var owner: String
        var server: SMTPServerConfig
        var envelope: SMTPEnvelope
        var message: [UInt8]
    }

    private let state = Mutex<(sent: [Sent], failure: SMTPError?)>(([], nil))

    func fail(with error: SMTPError?) { state.withLock { $0.failure = error } }
    var sent: [Sent] { state.withLock { $0.sent } }

    func send(owner: String, server: SMTPServerConfig, envelope: SMTPEnvelope, message: [UInt8],
              deadline: ContinuousClock.Instant) throws(SMTPError) -> SMTPReply {
        let failure: SMTPError? = state.withLock { state in
            if state.failure == nil { state.sent.append(Sent(owner: owner, server: server, envelope: envelope, message: message)) }
            return state.failure
        }
        if let failure { throw failure }
        return SMTPReply(code: 250, enhancedStatus: "2.0.0", lines: ["OK queued"])
    }

    func shutdown() {}
}

/// An application over a fresh database in a temp dir, with a cheap KDF,
/// a settable clock, and one user "alice" (password "correct horse") whose
/// integration points at a fictitious server.
final class AppFixture {
    static let password = "correct horse"
    let directory: String
    let store: SQLiteStore
    let signer: TokenSigner
    let transport = RecordingTransport()
    let application: Application
    let clock: Clock

    final class Clock: Sendable {
        private let value = Atomic<Int64>(1_800_000_000)
        var now: Int64 { value.load(ordering: .relaxed) }
        func advance(_ seconds: Int64) { value.add(seconds, ordering: .relaxed) }
    }

    init(configure: (inout AppConfiguration) -> Void = { _ in }) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("mailgate-app-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        store = try SQLiteStore(path: directory + "/db.sqlite", secretBox: SecretBox(key: Crypto.randomBytes(32)))
        signer = try TokenSigner(key: Crypto.randomBytes(32))
        let hasher = PasswordHasher(iterations: 1000)
        _ = try store.addUser("alice", passwordHash: hasher.hash(Self.password))
        try store.setIntegration(SMTPIntegration(
            host: "smtp.example.com", port: 587, security: .starttls, username: "alice@example.com",
            password: "smtp-secret", fromAddress: "alice@example.com", fromName: "Alice Example", updatedAt: Date()), for: "alice")
        var configuration = AppConfiguration()
        configure(&configuration)
        let clock = Clock()
        self.clock = clock
        application = Application(configuration: configuration, store: store, signer: signer, hasher: hasher,
                                  transport: transport, logger: Logger(label: "test"), now: { clock.now })
    }

    deinit { try? FileManager.default.removeItem(atPath: directory) }

    func token(for user: String = "alice", lifetime: Int64 = 600, version: Int64 = 0) throws -> String {
        try signer.sign(TokenClaims(subject: user, issuedAt: clock.now, expiresAt: clock.now + lifetime, version: version))
    }

    /// `remoteAddress`: the CGI `REMOTE_ADDR` (none by default).
    /// `headers`: further CGI parameters, e.g. `HTTP_IDEMPOTENCY_KEY`.
    func post(_ path: String, body: String, contentType: String = "application/json", authorization: String? = nil,
              method: String = "POST", remoteAddress: String? = nil, headers: [String: String] = [:]) -> CGIResponse {
        var params = ["REQUEST_METHOD": method, "DOCUMENT_URI": path, "CONTENT_TYPE": contentType,
                      "CONTENT_LENGTH": String(body.utf8.count)].merging(headers) { _, new in new }
        if let authorization { params["HTTP_AUTHORIZATION"] = authorization }
        if let remoteAddress { params["REMOTE_ADDR"] = remoteAddress }
        return application.handle(CGIRequest(params: params, body: .complete(Array(body.utf8))))
    }

    func send(_ json: String, token: String? = nil, idempotencyKey: String? = nil) throws -> CGIResponse {
        post("/smtp/send-email", body: json, authorization: "Bearer \(try token ?? self.token())",
             headers: idempotencyKey.map { ["HTTP_IDEMPOTENCY_KEY": $0] } ?? [:])
    }
}

extension CGIResponse {
    var json: Any? { try? JSONSerialization.jsonObject(with: Data(body)) }
    var detail: Any? { (json as? [String: Any])?["detail"] }
    /// The stable error code (`code`), when the body has one.
    var code: String? { (json as? [String: Any])?["code"] as? String }
    var text: String { String(decoding: body, as: UTF8.self) }
}
