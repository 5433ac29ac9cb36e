import JSON
import FastCGI
import Foundation
import MIME
import SMTP
import Store
import Crypto

/// The validated body of `POST /smtp/send-email`.
struct SendEmailBody {
    var to: String
    var subject: String
    var message: String

    /// Decodes the JSON body with FastAPI's 422 shapes for every problem.
    static func decode(_ body: [UInt8]) throws(APIError) -> SendEmailBody {
        let value: JSONValue
        do {
            value = try JSONParser.parse(body)
        } catch {
            throw .validation([("json_invalid", ["body", String(error.offset)], "JSON decode error: \(error.message)")])
        }
        guard case .object(let members) = value else {
            throw .validation([("model_attributes_type", ["body"], "Input should be a valid dictionary or object to extract fields from")])
        }
        var problems: [(type: String, location: [String], message: String)] = []
        func field(_ name: String) -> String? {
            // By bytes, not String ==: linear on any key (see `utf8Equals`).
            guard let member = members.first(where: { $0.0.utf8Equals(name) }) else {
                problems.append(("missing", ["body", name], "Field required"))
                return nil
            }
            guard case .string(let text) = member.1 else {
                problems.append(("string_type", ["body", name], "Input should be a valid string, not \(member.1.typeName)"))
                return nil
            }
            return text
        }
        let to = field("to"), subject = field("subject"), message = field("message")
        guard problems.isEmpty, let to, let subject, let message else { throw .validation(problems) }
        return SendEmailBody(to: to, subject: subject, message: message)
    }
}

extension Application {
    /// `POST /smtp/send-email`: bearer token, JSON body, then one SMTP
    /// transaction. 200 only after the server answered 250 to the message.
    func sendEmail(_ request: CGIRequest, outcome: inout Outcome) throws(APIError) -> CGIResponse {
        let credentials = try authenticate(request)
        outcome.user = credentials.user.username

        if let bodyError = APIError.body(request.body) { throw bodyError }
        guard case .complete(let body) = request.body else { throw APIError(400, "Request body missing") }
        let input = try SendEmailBody.decode(body)

        let recipient: Mailbox
        do {
            recipient = try EmailAddress.parse(input.to)
        } catch {
            throw APIError(400, "Invalid recipient address: \(error)")
        }
        if input.message.utf8.contains(0x00) {
            throw APIError(400, "Message must not contain NUL characters")
        }
        guard let integration = credentials.integration else {
            throw APIError(400, "No SMTP integration configured for this user")
        }
        let submission: SMTPSubmission
        do {
            submission = try configuration.submission(for: integration)
        } catch {
            throw internalError("stored SMTP integration is unusable", error)
        }
        let server = submission.server, sender = submission.sender

        let messageID = MessageID.generate(domain: sender.address.domain)
        let mail = MailMessage(
            from: Mailbox(displayName: integration.fromName, address: sender.address),
            to: recipient, subject: input.subject, body: input.message,
            date: Date(timeIntervalSince1970: TimeInterval(now())), messageID: messageID)
        let rendered: [UInt8]
        do {
            rendered = try mail.render()
        } catch {
            // The renderer is the one place header values are checked
            // (CR, LF or NUL in the subject): "Subject must not contain ...".
            throw APIError(400, error.description)
        }

        let envelope = SMTPEnvelope(sender: sender.address.description, recipients: [recipient.address.description])
        let deadline = ContinuousClock.now.advanced(by: configuration.smtpDeadline)
        let reply: SMTPReply
        do throws(SMTPError) {
            reply = try transport.send(owner: credentials.user.username, server: server, envelope: envelope,
                                       message: rendered, deadline: deadline)
        } catch {
            throw smtpFailure(error)
        }
        outcome.smtp = "\(reply.code)"
        outcome.messageID = messageID
        return .json(200, .object([
            ("status", .string("Email sent successfully")),
            ("message_id", .string("<\(messageID)>")),
        ]))
    }

    /// Bearer token → the user's current credentials. Every failure is a 401
    /// with `WWW-Authenticate: Bearer`; the reason goes to the log only.
    private func authenticate(_ request: CGIRequest) throws(APIError) -> Credentials {
        guard let header = request[param: "HTTP_AUTHORIZATION"] else { throw .notAuthenticated }
        // Split and compared as bytes: Character-wise splitting and String ==
        // are quadratic on a long run of combining marks.
        let parts = header.utf8.split(separator: UInt8(ascii: " "), maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, ASCIIBytes.equals(parts[0], ignoringCase: "bearer") else { throw .notAuthenticated }
        let token = Substring(parts[1]).trimmingCharacters(in: .whitespaces)
        guard !token.isEmpty else { throw .notAuthenticated }

        let claims: TokenClaims
        do {
            claims = try signer.verify(token, now: now(), leeway: configuration.tokenLeeway)
        } catch {
            var refusal = APIError.invalidCredentials
            refusal.logOutcome = "token refused: \(error)"
            throw refusal
        }
        let credentials: Credentials?
        do {
            credentials = try store.credentials(for: claims.subject)
        } catch {
            throw internalError("credentials lookup failed", error)
        }
        guard let credentials else {
            var refusal = APIError.invalidCredentials
            refusal.logOutcome = "token refused: unknown user"
            throw refusal
        }
        guard !credentials.user.isDisabled, credentials.user.tokenVersion == claims.version else {
            var refusal = APIError.invalidCredentials
            refusal.logOutcome = credentials.user.isDisabled ? "token refused: user disabled" : "token refused: revoked"
            throw refusal
        }
        return credentials
    }

    /// SMTP failures by who can fix them: the caller (400: recipient
    /// refused), the operator (502: login refused, TLS, protocol), or time
    /// (503 + Retry-After: transient; 504: too slow).
    func smtpFailure(_ error: SMTPError) -> APIError {
        let detail = "SMTP error: \(error.description)"
        let logOutcome = "\(error.stage.rawValue): \(error.description)"
        let retry: [(name: String, value: String)] = [("Retry-After", String(configuration.smtpRetryAfter))]
        switch error.kind {
        case .reply(let reply):
            if reply.isTransient { return APIError(503, detail, headers: retry, logOutcome: logOutcome) }
            if error.stage == .rcpt && reply.isPermanent { return APIError(400, detail, logOutcome: logOutcome) }
            return APIError(502, detail, logOutcome: logOutcome)
        case .timeout:
            return APIError(504, detail, logOutcome: logOutcome)
        case .connectionRefused, .connectionClosed, .resolveFailed, .connectFailed:
            // Lost after the message was handed over: the server may have
            // kept it, so inviting a retry could send it twice.
            if !error.isSafeToRetry {
                return APIError(502, detail + " (the message may or may not have been delivered)", logOutcome: logOutcome)
            }
            return APIError(503, detail, headers: retry, logOutcome: logOutcome)
        case .tls, .protocolViolation, .authUnavailable, .starttlsUnavailable:
            return APIError(502, detail, logOutcome: logOutcome)
        }
    }
}
