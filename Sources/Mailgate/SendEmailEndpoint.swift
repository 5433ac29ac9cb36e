import JSON
import FastCGI
import Foundation
import MIME
import SMTP
import Store
import Crypto

extension Application {
    /// `POST /smtp/send-email`: bearer token, JSON body, then one SMTP
    /// transaction. 200 only after the server answered 250 to the message.
    /// With an `Idempotency-Key`, at most one send per key (see Idempotency.swift).
    func sendEmail(_ context: RequestContext) throws(APIError) -> CGIResponse {
        context.isSend = true
        let credentials = try authenticate(context)
        context.log.user = credentials.user.username
        let body = try context.completeBody()
        guard let key = try idempotencyKey(context) else {
            return try send(body, as: credentials, context)
        }
        return try idempotently(key: key, body: body, of: credentials.user.username, context) { () throws(APIError) in
            try send(body, as: credentials, context)
        }
    }

    /// Decodes, checks, renders and sends one message: every answer of the
    /// send route after authentication.
    private func send(_ body: [UInt8], as credentials: Credentials, _ context: RequestContext) throws(APIError) -> CGIResponse {
        let input = try SendEmailBody.decode(body)
        let maxRecipients = configuration.maxRecipients
        guard input.recipientCount <= maxRecipients else {
            throw .validation([.init("too_many_recipients", ["body"],
                                     "Too many recipients: \(input.recipientCount); the limit is \(maxRecipients) (to, cc and bcc together)")],
                              code: .tooManyRecipients)
        }
        let to = try Self.mailboxes(input.to)
        let cc = try input.cc.map(Self.mailboxes) ?? []
        let bcc = try input.bcc.map(Self.mailboxes) ?? []
        let replyTo = try input.replyTo.map(Self.mailboxes) ?? []

        // Before anything else is looked at: a token limited to some
        // recipients (a contact form's) learns nothing more by probing.
        // (Every address as given: a duplicate is only checked twice.)
        for list in [to, cc, bcc] {
            for mailbox in list {
                let address = mailbox.address
                guard credentials.recipientPolicy.permits(localPart: address.localPart, domain: address.domain) else {
                    context.log.outcome = "refused: recipient not allowed"
                    throw APIError(403, .recipientNotAllowed, "Recipient not allowed for this user: \(address)")
                }
            }
        }
        if input.message.utf8.contains(0x00) {
            throw APIError(400, .invalidRequest, "Message must not contain NUL characters")
        }
        if let html = input.html, html.utf8.contains(0x00) {
            throw APIError(400, .invalidRequest, "HTML must not contain NUL characters")
        }
        let attachments = try Self.attachments(input.attachments)
        guard let integration = credentials.integration else {
            throw APIError(400, .noIntegration, "No SMTP integration configured for this user")
        }
        let submission: SMTPSubmission
        do {
            submission = try configuration.submission(for: integration, of: credentials.user.username,
                                                      accessTokens: accessTokens)
        } catch {
            throw internalError("stored SMTP integration is unusable", error)
        }
        let server = submission.server, sender = submission.sender

        let mail: ComposedMail
        do {
            mail = try ComposedMail.compose(
                from: sender.address, fromName: integration.fromName,
                recipients: MessageRecipients(to: to, cc: cc, bcc: bcc, replyTo: replyTo),
                content: MessageContent(subject: input.subject, text: input.message, html: input.html,
                                        attachments: attachments,
                                        headers: input.headers.map { CustomHeader(name: $0.name, value: $0.value) }),
                date: Date(timeIntervalSince1970: TimeInterval(now())))
        } catch {
            // The renderer is the one place header values, custom header
            // names and attachment names are checked.
            throw Self.renderingFailure(error)
        }
        guard mail.message.count <= configuration.maxMessageBytes else {
            context.log.outcome = "refused: message of \(mail.message.count) bytes"
            throw APIError(413, .messageTooLarge,
                           "Message too large: \(mail.message.count) bytes encoded; the limit is \(configuration.maxMessageBytes) bytes")
        }

        // The slot is held for the SMTP exchange only: that is the wait a
        // dead or slow server of this user imposes on a worker.
        let user = credentials.user.username
        guard inFlight.acquire(user) else {
            context.log.outcome = "refused: \(inFlight.limitPerUser) sends already in flight"
            throw APIError(429, .tooManyInFlight, "Too many sends in flight for this user; try again shortly", headers: [("Retry-After", "1")])
        }
        defer { inFlight.release(user) }
        let reservation = try reserveQuota(mail.envelope.recipients.count, of: credentials, context)
        let started = ContinuousClock.now
        let deadline = started.advanced(by: configuration.smtpDeadline)
        let reply: SMTPReply
        do throws(SMTPError) {
            defer { metrics.recordSMTPSend(since: started) }
            reply = try transport.send(owner: credentials.user.username, server: server, envelope: mail.envelope,
                                       message: mail.message, deadline: deadline)
        } catch {
            context.log.outcome = "\(error.stage.rawValue): \(error.description)"
            context.messageHandedOver = !error.isSafeToRetry
            // Not sent: the recipients do not count. A message that may
            // have been delivered (lost after the data) still does.
            var counted = reservation
            if let reservation, Self.certainlyNotDelivered(error) {
                giveBack(reservation, of: user)
                counted = reservation.released
            }
            throw smtpFailure(error, user: user).adding(headers: counted.map(Self.rateLimitHeaders) ?? [])
        }
        let messageID = mail.messageID
        context.log.outcome = "\(reply.code)"
        context.log.messageID = messageID
        return .json(200, .object([
            ("status", .string("Email sent successfully")),
            ("message_id", .string("<\(messageID)>")),
            ("recipients", .number(String(mail.envelope.recipients.count))),
        ]), headers: reservation.map(Self.rateLimitHeaders) ?? [])
    }

    /// Each address of a member parsed; the first bad one is a 400 naming
    /// it (`to` alone keeps the original one-recipient text).
    private static func mailboxes(_ member: SendEmailBody.Addresses) throws(APIError) -> [Mailbox] {
        var out: [Mailbox] = []
        out.reserveCapacity(member.values.count)
        for (index, text) in member.values.enumerated() {
            do {
                out.append(try EmailAddress.parse(text))
            } catch {
                let place = member.isList || !member.member.utf8Equals("to") ? " in \(member.label(index))" : ""
                throw APIError(400, .invalidRecipient, "Invalid recipient address\(place): \(error)")
            }
        }
        return out
    }

    /// Attachment contents decoded from base64; the file name must be there
    /// (its characters are the renderer's to judge).
    private static func attachments(_ inputs: [SendEmailBody.AttachmentInput]) throws(APIError) -> [Attachment] {
        var out: [Attachment] = []
        out.reserveCapacity(inputs.count)
        for (index, input) in inputs.enumerated() {
            guard let filename = input.filename else {
                throw APIError(400, .invalidAttachment, "Invalid attachment \(index): filename is required")
            }
            guard let content = AttachmentContent.decode(input.content) else {
                throw APIError(400, .invalidAttachment, "Invalid attachment \(index): content is not valid base64")
            }
            out.append(Attachment(filename: filename, content: content, contentType: input.contentType,
                                  contentID: input.contentID))
        }
        return out
    }

    /// The renderer's refusals by what the client got wrong: a custom
    /// header, an attachment, or a header value (CR, LF or NUL in the
    /// subject: "Subject must not contain ...").
    private static func renderingFailure(_ error: HeaderError) -> APIError {
        switch error {
        case .headerNotAllowed, .invalidHeaderName, .headerContainsControlCharacter:
            APIError(400, .headerNotAllowed, error.description)
        case .invalidAttachment:
            APIError(400, .invalidAttachment, error.description)
        case .containsControlCharacter, .noRecipient:
            APIError(400, .invalidRequest, error.description)
        }
    }

    /// Counts the recipients against the user's quotas (nil: no quota
    /// applies, and nothing is written); over a quota, 429 with when to
    /// come back.
    private func reserveQuota(_ recipients: Int, of credentials: Credentials,
                              _ context: RequestContext) throws(APIError) -> QuotaReservation? {
        let limits = credentials.sendQuota.effective(defaults: configuration.defaultQuota)
        guard !limits.isEmpty else { return nil }
        let reservation: QuotaReservation
        do {
            reservation = try store.reserveSends(recipients, for: credentials.user.username, limits: limits,
                                                 at: Date(timeIntervalSince1970: TimeInterval(now())))
        } catch {
            throw internalError("send counting failed", error)
        }
        guard reservation.granted else {
            let exhausted = reservation.windows.filter { $0.used + recipients > $0.limit }
            let wait = exhausted.map(\.resetsIn).max() ?? 1
            metrics.quotaRefusals.increment()
            context.log.outcome = "refused: quota per \(exhausted.map(\.window.description).joined(separator: ", ")) reached"
            throw APIError(429, .quotaExceeded, "Send quota exceeded (\(exhausted.map { "\($0.limit) recipients per \($0.window)" }.joined(separator: ", "))); try again in \(wait) s",
                           headers: [("Retry-After", String(wait))] + Self.rateLimitHeaders(reservation))
        }
        return reservation
    }

    /// Failed before the message was handed over, or the server answered
    /// the message with a refusal.
    static func certainlyNotDelivered(_ error: SMTPError) -> Bool {
        if error.isSafeToRetry { return true }
        if case .reply = error.kind { return true }
        return false
    }

    private func giveBack(_ reservation: QuotaReservation, of user: String) {
        do {
            try store.releaseSends(reservation, for: user)
        } catch {
            logger.warning("cannot give back the quota of a send that failed: \(error)")
        }
    }

    /// The IETF httpapi rate-limit fields (draft-ietf-httpapi-ratelimit-
    /// headers): every policy, and the one closest to its limit.
    static func rateLimitHeaders(_ reservation: QuotaReservation) -> [(name: String, value: String)] {
        let policies = reservation.windows.map { "\"\($0.window)\";q=\($0.limit);w=\($0.window.seconds)" }
        guard let tightest = reservation.windows.min(by: { ($0.remaining, $0.window) < ($1.remaining, $1.window) }) else {
            return []
        }
        return [
            ("RateLimit-Policy", policies.joined(separator: ", ")),
            ("RateLimit", "\"\(tightest.window)\";r=\(tightest.remaining);t=\(tightest.resetsIn)"),
        ]
    }

    /// Bearer token → the user's current credentials. Every failure is a 401
    /// with `WWW-Authenticate: Bearer`; the reason goes to the log only.
    private func authenticate(_ context: RequestContext) throws(APIError) -> Credentials {
        guard let header = context.request.header("Authorization") else { throw .notAuthenticated }
        // Split and compared as bytes: Character-wise splitting and String ==
        // are quadratic on a long run of combining marks.
        let parts = header.utf8.split(separator: UInt8(ascii: " "), maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, ASCIIBytes.equals(parts[0], ignoringCase: "bearer") else { throw .notAuthenticated }
        // Trailing blanks trimmed as bytes (Foundation's trimming converts
        // to UTF-16: 5% of a send's CPU in make bench).
        let blank: (UInt8) -> Bool = { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") }
        // Index arithmetic, not reversed().drop().reversed(): String(decoding:)
        // of that lazy view copied byte by byte (4% of a send's instructions).
        let value = parts[1]
        guard let first = value.firstIndex(where: { !blank($0) }),
              let last = value.lastIndex(where: { !blank($0) }) else { throw .notAuthenticated }
        let token = String(decoding: value[first...last], as: UTF8.self)
        guard !token.isEmpty else { throw .notAuthenticated }

        let claims: TokenClaims
        do {
            claims = try signer.verify(token, now: now(), leeway: configuration.tokenLeeway)
        } catch {
            context.log.outcome = "token refused: \(error)"
            throw .invalidCredentials
        }
        let credentials: Credentials?
        do {
            credentials = try store.credentials(for: claims.subject)
        } catch {
            throw internalError("credentials lookup failed", error)
        }
        guard let credentials else {
            context.log.outcome = "token refused: unknown user"
            throw .invalidCredentials
        }
        guard !credentials.user.isDisabled, credentials.user.tokenVersion == claims.version else {
            context.log.outcome = credentials.user.isDisabled ? "token refused: user disabled" : "token refused: revoked"
            throw .invalidCredentials
        }
        if let tokenID = claims.tokenID { try checkNamedToken(tokenID, of: credentials.user.username, context) }
        return credentials
    }

    /// A token with a `jti` was issued by `mailgate token issue --name`: it
    /// must be on record, for this user, and not revoked. Its last-used day
    /// is written at most once a day, so the usual request writes nothing.
    private func checkNamedToken(_ id: String, of username: String, _ context: RequestContext) throws(APIError) {
        let token: NamedToken?
        do {
            token = try store.namedToken(id: id)
        } catch {
            throw internalError("named token lookup failed", error)
        }
        guard let token, token.username.utf8.elementsEqual(username.utf8) else {
            context.log.outcome = "token refused: unknown token id"
            throw .invalidCredentials
        }
        guard !token.isRevoked else {
            context.log.outcome = "token refused: token \(id) revoked"
            throw .invalidCredentials
        }
        let today = NamedToken.day(of: Date(timeIntervalSince1970: TimeInterval(now())))
        if token.lastUsedDay.map({ $0 < today }) ?? true {
            // Bookkeeping: a failed write must not fail the send.
            do {
                try store.recordNamedTokenUse(id: id, day: today)
            } catch {
                logger.warning("cannot record the use of token \(id): \(error)")
            }
        }
    }

    /// SMTP failures by who can fix them: the caller (400: a recipient
    /// refused for good; 413: the message is over the server's SIZE limit),
    /// the operator (502: login refused, TLS, protocol), or time
    /// (503 + Retry-After: transient; 504: too slow).
    func smtpFailure(_ error: SMTPError, user: String) -> APIError {
        let detail = "SMTP error: \(error.description)"
        let retry: [(name: String, value: String)] = [("Retry-After", String(configuration.smtpRetryAfter))]
        switch error.kind {
        case .reply(let reply):
            if reply.isTransient { return APIError(503, .smtpUnavailable, detail, headers: retry) }
            if reply.isPermanent {
                switch error.stage {
                case .rcpt: return APIError(400, .recipientRejected, detail)
                case .auth: return APIError(502, .smtpAuthFailed, detail)
                default: return APIError(502, .smtpRejected, detail)
                }
            }
            // A 1xx/2xx/3xx where another reply was due: the server broke the protocol.
            return APIError(502, .smtpFailed, detail)
        case .timeout, .resolveTimedOut:
            return APIError(504, .smtpTimeout, detail)
        case .connectionRefused, .connectionClosed, .resolveFailed, .connectFailed, .readFailed, .writeFailed:
            // Lost after the message was handed over: the server may have
            // kept it, so inviting a retry could send it twice.
            if !error.isSafeToRetry {
                return APIError(502, .deliveryUnknown, detail + " (the message may or may not have been delivered)")
            }
            return APIError(503, .smtpUnavailable, detail, headers: retry)
        case .tls, .tlsHandshakeFailed, .certificateRejected, .protocolViolation, .authUnavailable, .starttlsUnavailable:
            return APIError(502, .smtpFailed, detail)
        case .messageTooLarge:
            // Found before anything was sent; only a smaller message helps.
            return APIError(413, .messageTooLarge, detail)
        case .accessToken(let failure):
            // Nothing was sent: the login never started.
            let detail = "OAuth2 error: \(failure.message)"
            switch failure.kind {
            case .reauthorize:
                return APIError(502, .oauthReauthorize,
                                detail + "; the mailbox must be authorised again: run `mailgate integration authorize \(user)`")
            case .unavailable(let seconds):
                return APIError(503, .oauthUnavailable, detail, headers: [("Retry-After", String(max(1, seconds)))])
            case .timedOut:
                return APIError(504, .oauthTimeout, detail)
            case .misconfigured:
                return APIError(502, .oauthFailed, detail)
            }
        case .accessTokenRefused:
            return APIError(502, .smtpAuthFailed, detail)
        }
    }
}
