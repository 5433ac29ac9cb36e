import MIME

/// The sender and recipients of one mail transaction (MAIL FROM / RCPT TO).
/// The addresses are MIME's validated `EmailAddress`es, the same values the
/// message headers are rendered from: what can be written into
/// "<...>" was decided when they were parsed, and is not checked again.
public struct SMTPEnvelope: Sendable, Equatable {
    /// The reverse path; nil sends the null sender "<>".
    public var sender: EmailAddress?
    /// Every RCPT TO, in order (To, Cc and Bcc alike). A send with none is refused.
    public var recipients: [EmailAddress]

    public init(sender: EmailAddress?, recipients: [EmailAddress]) {
        self.sender = sender
        self.recipients = recipients
    }
}

/// One SMTP session with blocking I/O on the calling thread.
///
/// The session sits on a `NetworkStream` (TCP or TLS bytes, no SMTP): it
/// sends `SMTPCommand`s, reads `SMTPReply`s, learns the server's
/// `ServerInfo` from EHLO, and turns the stream's I/O failures into
/// `SMTPError`s with the stage they happened in, in one place (`io`).
///
/// Every operation takes an absolute deadline; each command round trip is
/// additionally bounded by `commandTimeout` and connecting (TCP and TLS
/// handshake) by `connectTimeout`. Name resolution is part of connecting:
/// it obeys the same bound (see `NameResolver`).
///
/// Not Sendable: use it from one thread at a time (the pool hands each
/// connection to exactly one caller).
public final class SMTPConnection {
    private let config: SMTPServerConfig
    private let stream: NetworkStream
    private var broken = false
    private var closed = false

    public private(set) var messagesSent = 0
    public private(set) var lastUsed: ContinuousClock.Instant

    /// What the EHLO reply announced (after STARTTLS: the second EHLO's).
    /// Nothing after a HELO fallback.
    public private(set) var serverInfo: ServerInfo = .none

    /// The announced extensions, e.g. `.pipelining`, `.size(n)`, `.auth(.plain)`.
    public var capabilities: Set<SMTPExtension> { serverInfo.extensions }

    /// True after any failure that may have left the session in an unknown
    /// state (I/O error, timeout, unexpected reply): never reuse it then.
    public var isBroken: Bool { broken || closed }

    private init(config: SMTPServerConfig, stream: NetworkStream) {
        self.config = config
        self.stream = stream
        self.lastUsed = .now
    }

    deinit { stream.close(graceful: false) }

    private var server: String { config.endpoint }

    private func error(_ kind: SMTPError.Kind, _ stage: SMTPStage) -> SMTPError {
        SMTPError(kind, stage: stage, server: server)
    }

    /// Runs byte-stream work during `stage`: the one place where an I/O
    /// failure becomes an `SMTPError`.
    private func io<T>(_ stage: SMTPStage, _ work: () throws(StreamError) -> T) throws(SMTPError) -> T {
        do throws(StreamError) {
            return try work()
        } catch {
            throw SMTPError(error, stage: stage, server: server)
        }
    }

    /// Reads one complete reply.
    private func readReply(_ stage: SMTPStage, deadline: ContinuousClock.Instant) throws(SMTPError) -> SMTPReply {
        var parser = SMTPReplyParser()
        while true {
            let line = try io(stage) { () throws(StreamError) in
                try stream.readLine(maxLength: SMTPReplyParser.maxLineLength, deadline: deadline)
            }
            do throws(SMTPReplyParser.ParseError) {
                if let reply = try parser.consume(line: line) { return reply }
            } catch {
                throw self.error(.protocolViolation(error.message), stage)
            }
        }
    }

    /// Writes `bytes` (one command group, or the message) during `stage`.
    private func write(_ bytes: [UInt8], _ stage: SMTPStage, deadline: ContinuousClock.Instant) throws(SMTPError) {
        try io(stage) { () throws(StreamError) in try stream.write(bytes, deadline: deadline) }
    }

    /// The TLS handshake, bounded by the connect timeout.
    private func startTLS(_ tls: TLSContext, deadline: ContinuousClock.Instant) throws(SMTPError) {
        let handshakeDeadline = min(deadline, .now + config.connectTimeout)
        try io(.tls) { () throws(StreamError) in
            try stream.startTLS(context: tls, host: config.host, deadline: handshakeDeadline)
        }
    }

    /// Deadline for one command's round trip: the command timeout, but never
    /// past the caller's overall deadline.
    private func commandDeadline(_ deadline: ContinuousClock.Instant) -> ContinuousClock.Instant {
        min(deadline, .now + config.commandTimeout)
    }

    // MARK: opening

    /// Connects, reads the greeting, says EHLO, runs STARTTLS or implicit TLS
    /// as configured, and logs in when a username is configured.
    public static func open(_ config: SMTPServerConfig, deadline: ContinuousClock.Instant) throws(SMTPError) -> SMTPConnection {
        try open(config, deadline: deadline, resolver: .system)
    }

    /// `open` with the host name resolved by `resolver` (tests substitute its lookup).
    ///
    /// With a bearer login whose access token the server refuses, the
    /// token source is told (`refused`), and the connection is opened once
    /// more, from scratch, with the token the source gives then: a new
    /// connection, since servers may close one after a failed AUTH (Gmail
    /// does). Nothing of a message has been sent by then. A second refusal
    /// is `.accessTokenRefused`.
    static func open(_ config: SMTPServerConfig, deadline: ContinuousClock.Instant,
                     resolver: NameResolver) throws(SMTPError) -> SMTPConnection {
        do {
            return try openOnce(config, deadline: deadline, resolver: resolver)
        } catch {
            guard case .accessTokenRefused = error.kind else { throw error }
            return try openOnce(config, deadline: deadline, resolver: resolver)
        }
    }

    /// Connects, greets, secures and logs in, once.
    private static func openOnce(_ config: SMTPServerConfig, deadline: ContinuousClock.Instant,
                                 resolver: NameResolver) throws(SMTPError) -> SMTPConnection {
        let server = config.endpoint
        // The HELO name is written into a command line as is: a CR/LF in it
        // would inject commands.
        if let problem = SMTPWire.heloNameProblem(config.heloName) {
            throw SMTPError(.protocolViolation(problem), stage: .ehlo, server: server)
        }
        // Build the TLS context first: a bad CA file is a configuration
        // error, reported without touching the network.
        let tls: TLSContext?
        let stream: NetworkStream
        do throws(StreamError) {
            tls = config.security == .none
                ? nil
                : try TLSContext.shared(caFile: config.caFile, verify: config.verifyCertificates)
        } catch {
            throw SMTPError(error, stage: .tls, server: server)
        }
        do throws(StreamError) {
            // One bound for the whole connect step: resolving the name and
            // the TCP connect share the connect timeout (and the deadline).
            stream = try NetworkStream.connect(host: config.host, port: config.port,
                                               deadline: min(deadline, .now + config.connectTimeout),
                                               resolver: resolver)
        } catch {
            throw SMTPError(error, stage: .connect, server: server)
        }
        let connection = SMTPConnection(config: config, stream: stream)
        do throws(SMTPError) {
            try connection.handshake(tls: tls, deadline: deadline)
        } catch {
            connection.close()
            throw error
        }
        connection.lastUsed = .now
        return connection
    }

    private func handshake(tls: TLSContext?, deadline: ContinuousClock.Instant) throws(SMTPError) {
        if config.security == .tls, let tls {
            try startTLS(tls, deadline: deadline)
        }
        let greeting = try readReply(.greeting, deadline: commandDeadline(deadline))
        guard greeting.code == 220 else { throw error(.reply(greeting), .greeting) }

        try hello(deadline: deadline)

        if config.security == .starttls, let tls {
            guard serverInfo.supports(.startTLS) else { throw error(.starttlsUnavailable, .starttls) }
            let reply = try command(.startTLS, deadline: deadline)
            guard reply.code == 220 else { throw error(.reply(reply), .starttls) }
            // Anything that arrived after the 220 was sent in clear text and
            // possibly injected (CVE-2011-0411 style): it must not be read as
            // a reply to what we send over TLS.
            stream.discardBuffered()
            try startTLS(tls, deadline: deadline)
            // RFC 3207: forget everything learnt before TLS and ask again.
            serverInfo = .none
            try hello(deadline: deadline)
        }

        if config.wantsAuth {
            try authenticate(deadline: deadline)
        }
    }

    /// EHLO, falling back to HELO when the server rejects EHLO with 5xx.
    private func hello(deadline: ContinuousClock.Instant) throws(SMTPError) {
        let ehlo = try command(.ehlo(config.heloName), deadline: deadline)
        if ehlo.code == 250 {
            serverInfo = ServerInfo(ehlo: ehlo)
            return
        }
        guard ehlo.isPermanent else { throw error(.reply(ehlo), .ehlo) }
        let helo = try command(.helo(config.heloName), deadline: deadline)
        guard helo.code == 250 else { throw error(.reply(helo), .ehlo) }
        serverInfo = .none
    }

    private func authenticate(deadline: ContinuousClock.Instant) throws(SMTPError) {
        let offered = serverInfo.authMechanisms
        guard !offered.isEmpty else {
            throw error(.authUnavailable("the server does not offer AUTH"), .auth)
        }
        switch config.login {
        case .none:
            return
        case .password(let username, let password):
            try authenticate(username: username, password: password, offered: offered, deadline: deadline)
        case .bearer(let username, let tokens):
            try authenticate(username: username, tokens: tokens.source, offered: offered, deadline: deadline)
        }
    }

    private func authenticate(username: String, password: String, offered: Set<AuthMechanism>,
                              deadline: ContinuousClock.Instant) throws(SMTPError) {
        // NUL separates the fields of a PLAIN response: one inside a field
        // would change who we log in as. (The values are not quoted here.)
        if username.utf8.contains(0) || password.utf8.contains(0) {
            throw error(.protocolViolation("username or password contains a NUL character"), .auth)
        }
        if offered.contains(.plain) {
            // The command carries the password (base64 is not encryption):
            // it never goes into an error, only the server's reply does.
            let reply = try command(.auth(.plain, initialResponse: SMTPWire.authPlain(username: username, password: password)),
                                    deadline: deadline)
            guard reply.code == 235 else { throw authFailure(reply) }
        } else if offered.contains(.login) {
            let start = try command(.auth(.login, initialResponse: nil), deadline: deadline)
            guard start.code == 334 else { throw authFailure(start) }
            let afterUser = try command(.authResponse(SMTPWire.authLogin(username)), deadline: deadline)
            guard afterUser.code == 334 else { throw authFailure(afterUser) }
            let done = try command(.authResponse(SMTPWire.authLogin(password)), deadline: deadline)
            guard done.code == 235 else { throw authFailure(done) }
        } else {
            throw error(.authUnavailable("no supported AUTH mechanism (server offers: \(Self.listing(offered)))"), .auth)
        }
    }

    /// XOAUTH2 when offered (what Gmail and Exchange Online announce), else
    /// OAUTHBEARER (RFC 7628). The token is fetched only once the server is
    /// known to take one, and it never goes into an error.
    ///
    /// A refused token is answered with a 334 error challenge (a base64
    /// JSON status: Gmail, RFC 7628), which the client must answer (an
    /// empty response for XOAUTH2, ^A for OAUTHBEARER) to get the final
    /// 5xx; or with a plain 535 (Exchange Online). Either is taken as "this
    /// token is refused": the source is told, and `open` tries once more.
    private func authenticate(username: String, tokens: any SMTPAccessTokenSource, offered: Set<AuthMechanism>,
                              deadline: ContinuousClock.Instant) throws(SMTPError) {
        let mechanism: AuthMechanism
        if offered.contains(.xoauth2) {
            mechanism = .xoauth2
        } else if offered.contains(.oauthBearer) {
            mechanism = .oauthBearer
        } else {
            throw error(.authUnavailable("an OAuth2 login needs XOAUTH2 or OAUTHBEARER (server offers: \(Self.listing(offered)))"), .auth)
        }
        if username.isEmpty {
            throw error(.protocolViolation("an OAuth2 login needs the mailbox name"), .auth)
        }
        // ^A separates the fields of both mechanisms' messages.
        if username.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
            throw error(.protocolViolation("the mailbox name contains a control character"), .auth)
        }
        let token: String
        do throws(SMTPAccessTokenError) {
            token = try tokens.accessToken(deadline: deadline)
        } catch {
            throw self.error(.accessToken(error), .auth)
        }
        if let problem = SMTPWire.bearerTokenProblem(token) {
            tokens.refused(token)
            throw error(.protocolViolation(problem), .auth)
        }
        let initialResponse = mechanism == .xoauth2
            ? SMTPWire.authXOAuth2(username: username, token: token)
            : SMTPWire.authOAuthBearer(username: username, token: token, host: config.host, port: config.port)
        var reply = try command(.auth(mechanism, initialResponse: initialResponse), deadline: deadline)
        var challenged = false
        if reply.code == 334 {
            // The challenge's JSON says why; the final reply says it too,
            // in words an operator reads, so the challenge is not kept.
            challenged = true
            reply = try command(.authResponse(mechanism == .xoauth2 ? "" : Self.oauthBearerAbort), deadline: deadline)
        }
        if reply.code == 235 { return }
        if reply.isPermanent && (challenged || reply.code == 535) {
            tokens.refused(token)
            throw error(.accessTokenRefused(reply), .auth)
        }
        throw authFailure(reply)
    }

    /// RFC 7628 section 3.2.3: the client's answer to an error challenge,
    /// a single ^A, in base64.
    private static let oauthBearerAbort = "AQ=="

    /// The offered mechanisms, sorted, for messages.
    private static func listing(_ offered: Set<AuthMechanism>) -> String {
        offered.map(\.keyword).sorted().joined(separator: " ")
    }

    private func authFailure(_ reply: SMTPReply) -> SMTPError {
        // A positive but unexpected reply (e.g. 334 to PLAIN with an initial
        // response) means we and the server disagree about the exchange.
        if reply.isPositive {
            return error(.protocolViolation("unexpected reply \(reply.code) during AUTH"), .auth)
        }
        return error(.reply(reply), .auth)
    }

    /// Writes one command and reads its reply. Any transport failure marks
    /// the connection broken.
    private func command(_ command: SMTPCommand, deadline: ContinuousClock.Instant) throws(SMTPError) -> SMTPReply {
        let d = commandDeadline(deadline)
        do throws(SMTPError) {
            try write(command.wire, command.stage, deadline: d)
            return try readReply(command.stage, deadline: d)
        } catch {
            broken = true
            throw error
        }
    }

    // MARK: sending

    /// Sends one message and returns the server's final 2xx reply to it.
    ///
    /// `message` is the complete RFC 5322 message (headers and body, LF or
    /// CRLF line ends); it is normalised to CRLF and dot-stuffed (see
    /// `SMTPWire.dataPayload`). An empty recipient list and lines over 998
    /// octets are refused before anything is sent.
    ///
    /// With PIPELINING, [RSET when `resetFirst`,] MAIL FROM, every RCPT TO and
    /// DATA go out in one write and the replies are read in order; without
    /// it, one command at a time. The body then goes out in one write.
    ///
    /// With CHUNKING and PIPELINING and exactly one recipient, the whole
    /// transaction goes out in one write instead, the message as one
    /// "BDAT <n> LAST" chunk (CRLF line ends, not dot-stuffed): see
    /// `sendChunked`, which also says how its failures are reported.
    ///
    /// All or nothing: if the server refuses any recipient, nothing is
    /// delivered to the others either, and the error (stage `.rcpt`) lists
    /// every refused recipient with its reply (`refusedRecipients`), so the
    /// caller learns all of them from one attempt. Without PIPELINING the
    /// remaining RCPTs are still sent after a refusal, but never DATA; the
    /// transaction is then reset with RSET. With PIPELINING, when the server
    /// already said 354 to DATA (it accepted some recipient), the connection
    /// is closed before any body is sent. A 421 ends the session wherever it
    /// comes.
    ///
    /// A message larger than the server's announced SIZE limit is refused
    /// with `.messageTooLarge` before anything is sent.
    public func send(_ envelope: SMTPEnvelope, message: [UInt8], resetFirst: Bool,
                     deadline: ContinuousClock.Instant) throws(SMTPError) -> SMTPReply {
        // Everything that can be refused without the server is checked
        // before the first byte goes out.
        guard !envelope.recipients.isEmpty else {
            throw error(.protocolViolation("no recipients"), .rcpt)
        }
        guard !isBroken else { throw error(.connectionClosed, resetFirst ? .rset : .mail) }

        // Long lines must have been encoded by whoever built the message;
        // servers truncate, wrap or refuse them, so never send one raw.
        let longest = LineBreak.longestLine(in: message)
        guard longest <= LineBreak.maxLineLength else {
            throw error(.protocolViolation("message has a line of \(longest) octets; the limit is \(LineBreak.maxLineLength) (RFC 5321)"), .data)
        }
        var parameters: [MailParameter] = []
        let size = serverInfo.size
        if size.offered {
            // Lets the server refuse an oversized message before we send it.
            // Not dressed up as a server reply: the caller must be able to
            // tell "too large for this server" from a refusal of the sender.
            // RFC 1870 §3: the message's octets with its CRLFs, without the
            // doubled dots and the final "." line of the DATA transfer.
            let endsWithCRLF = message.count >= 2 && message[message.count - 2] == 13 && message[message.count - 1] == 10
            let messageSize = message.count + (endsWithCRLF || message.isEmpty ? 0 : 2)
            if let limit = size.limit, messageSize > limit {
                throw error(.messageTooLarge(size: messageSize, limit: limit), .mail)
            }
            parameters.append(.size(messageSize))
        }
        if serverInfo.supports(.eightBitMIME), message.contains(where: { $0 >= 0x80 }) {
            parameters.append(.body8BitMIME)
        }
        // (EmailAddress is ASCII only, so SMTPUTF8 is never needed yet.)

        var commands: [SMTPCommand] = []
        if resetFirst { commands.append(.rset) }
        commands.append(.mail(from: envelope.sender, parameters: parameters))
        for recipient in envelope.recipients { commands.append(.rcpt(to: recipient)) }

        // BDAT only for one recipient: with several, a refused one would not
        // stop BDAT delivering to the others, and a send is all or nothing.
        // With one, a refused RCPT leaves no valid recipient, so the server
        // must refuse the chunk (RFC 3030 section 2). Without PIPELINING
        // the one-write transaction would break RFC 2920's rules.
        if envelope.recipients.count == 1, serverInfo.supports(.chunking), serverInfo.supports(.pipelining) {
            return try sendChunked(commands, message: message, deadline: deadline)
        }
        commands.append(.data)
        let payload = SMTPWire.dataPayload(message)

        do throws(SMTPError) {
            if serverInfo.supports(.pipelining) {
                try sendPipelined(commands, deadline: deadline)
            } else {
                try sendOneByOne(commands, deadline: deadline)
            }
            // 354 received: from here a failure may mean the server has the
            // message, so errors carry stage .message (not safe to retry).
            // The body may be large: its transfer is bounded by the caller's
            // deadline only; the command timeout starts once it is sent.
            try write(payload, .message, deadline: deadline)
            let final = try readReply(.message, deadline: commandDeadline(deadline))
            lastUsed = .now
            guard final.isCompletion else { throw error(.reply(final), .message) }
            messagesSent += 1
            return final
        } catch {
            // Before DATA the helpers already reset the transaction or marked
            // the connection. After it, only a clean final rejection leaves
            // the session usable (the server has ended the transaction).
            if error.stage == .message {
                if case .reply(let r) = error.kind, r.code != 421 {} else { broken = true }
            }
            throw error
        }
    }

    /// All commands in one write, then the replies in order (RFC 2920).
    private func sendPipelined(_ commands: [SMTPCommand], deadline: ContinuousClock.Instant) throws(SMTPError) {
        var bytes: [UInt8] = []
        for command in commands { command.append(to: &bytes) }
        do throws(SMTPError) {
            try write(bytes, commands[0].stage, deadline: commandDeadline(deadline))
        } catch {
            broken = true
            throw error
        }
        // Every reply is read, so that all refused recipients are known. A
        // failed RSET or MAIL comes first (the RCPTs after a refused MAIL
        // are refused only because of it); a refused DATA last (usually
        // refused only because no recipient was accepted).
        var envelopeFailure: SMTPError?
        var refused: [RefusedRecipient] = []
        var dataFailure: SMTPError?
        var dataAccepted = false
        for command in commands {
            let reply: SMTPReply
            do throws(SMTPError) {
                reply = try readReply(command.stage, deadline: commandDeadline(deadline))
            } catch {
                broken = true
                // What the server said before the session failed tells the
                // caller more than how it failed.
                throw envelopeFailure ?? refusal(refused) ?? error
            }
            if reply.code == 421 { broken = true }
            switch command {
            case .data:
                if reply.code == 354 { dataAccepted = true } else { dataFailure = self.error(.reply(reply), .data) }
            case .rcpt(let address):
                if !reply.isCompletion { refused.append(RefusedRecipient(address: address, reply: reply)) }
            default:
                if !reply.isCompletion, envelopeFailure == nil { envelopeFailure = self.error(.reply(reply), command.stage) }
            }
        }
        guard let failure = envelopeFailure ?? refusal(refused) ?? dataFailure else { return }
        if dataAccepted || broken || failure.stage == .rset {
            // The server wants a body for the recipients it accepted, but one
            // was refused. Any body we send (even an empty one) would be
            // delivered, so drop the connection: a server discards a
            // transaction whose connection ends before "<CRLF>.<CRLF>".
            broken = true
            stream.close(graceful: false)
        } else {
            resetAfterRejection(deadline: deadline)
        }
        throw failure
    }

    /// The whole transaction in one write: [RSET,] MAIL FROM, the one RCPT
    /// TO and "BDAT <n> LAST" with the message's n octets right after it
    /// (RFC 3030), then the replies in order: one round trip where DATA
    /// takes two (its 354, then the final reply).
    ///
    /// The message has left before any reply is read, so what a failure
    /// means depends on what was heard:
    /// - a refused MAIL, a refused RCPT (the only recipient: the server
    ///   has none left and must refuse the chunk), or a 421 to RSET (the
    ///   server takes no more commands): not delivered, reported as by the
    ///   DATA path (stage .mail, .rcpt with `refusedRecipients`, .rset);
    /// - BDAT refused after MAIL and RCPT were accepted: the server's
    ///   verdict on the message, stage .message like DATA's final reply
    ///   (a reply, so the caller knows it was not delivered);
    /// - the write failed: not all of the chunk left, and a server
    ///   delivers nothing without its last octet; stage of the first
    ///   command, safe to retry;
    /// - the connection failed after the write, before such a refusal was
    ///   read: stage .message, may have been delivered. Even a missing
    ///   reply to MAIL does not prove otherwise: a pipelining server may
    ///   hold all its replies until it has read (and queued) the message,
    ///   as Postfix does.
    ///
    /// A connection the server closed while it sat in the pool would fall
    /// in the last case, so the session is first checked to be silent
    /// (`isQuiet`, one non-blocking read): a hang-up or a 421 found there
    /// is a dead connection found before anything was sent.
    ///
    /// After any failure the connection is closed, not reset: a server may
    /// have refused the chunk without reading it, and would then take the
    /// message's lines for commands.
    private func sendChunked(_ commands: [SMTPCommand], message: [UInt8],
                             deadline: ContinuousClock.Instant) throws(SMTPError) -> SMTPReply {
        let firstStage = commands[0].stage
        do throws(SMTPError) {
            let quiet = try io(firstStage) { () throws(StreamError) in try stream.isQuiet() }
            guard quiet else {
                throw error(.protocolViolation("the server sent something while the session was idle"), firstStage)
            }
        } catch {
            close()
            throw error
        }

        let size = SMTPWire.chunkBodyLength(message)
        let transaction = commands + [.bdatLast(size: size)]
        var bytes: [UInt8] = []
        bytes.reserveCapacity(size + 256)
        for command in transaction { command.append(to: &bytes) }
        SMTPWire.appendChunkBody(message, to: &bytes)
        do throws(SMTPError) {
            // The message's transfer is bounded by the caller's deadline
            // only, as DATA's body is.
            try write(bytes, firstStage, deadline: deadline)
        } catch {
            close()
            throw error
        }

        // Every reply is read, as in sendPipelined. `definite` is the first
        // refusal that proves the message was not delivered.
        var definite: SMTPError?
        var rsetRefused = false
        var refused: [RefusedRecipient] = []
        func read(_ stage: SMTPStage) throws(SMTPError) -> SMTPReply {
            do throws(SMTPError) {
                return try readReply(stage, deadline: commandDeadline(deadline))
            } catch {
                close()
                // Lost with the whole message sent: unless a refusal was
                // heard first, the server may have it.
                throw definite ?? SMTPError(error.kind, stage: .message, server: server)
            }
        }
        for command in commands {
            let reply = try read(command.stage)
            if reply.isCompletion { continue }
            switch command {
            case .rset:
                // After a 421 the server takes no more commands; after
                // another refusal it may still have run the transaction.
                if reply.code == 421 { definite = definite ?? self.error(.reply(reply), .rset) } else { rsetRefused = true }
            case .rcpt(let address):
                refused.append(RefusedRecipient(address: address, reply: reply))
                definite = definite ?? refusal(refused)
            default:
                definite = definite ?? self.error(.reply(reply), command.stage)
            }
        }
        let final = try read(.message)
        if final.isCompletion {
            guard definite == nil else {
                // The server accepted a message it had no envelope for: what
                // it did with it is unknown, and it is not one to keep.
                close()
                throw self.error(.protocolViolation("BDAT accepted (\(final.code)) after a refused \(definite?.stage.label ?? "command")"), .message)
            }
            lastUsed = .now
            messagesSent += 1
            // Delivered; but a session that refused RSET is not reused.
            if rsetRefused { broken = true }
            return final
        }
        close()
        throw definite ?? self.error(.reply(final), .message)
    }

    /// One command, one reply: for servers without PIPELINING. After a
    /// refused RCPT the other RCPTs still go out, to learn about every
    /// recipient, but DATA does not.
    private func sendOneByOne(_ commands: [SMTPCommand], deadline: ContinuousClock.Instant) throws(SMTPError) {
        var refused: [RefusedRecipient] = []
        for command in commands {
            if command == .data, let failure = refusal(refused) {
                resetAfterRejection(deadline: deadline)
                throw failure
            }
            let reply = try self.command(command, deadline: deadline)
            let ok = command == .data ? reply.code == 354 : reply.isCompletion
            if ok { continue }
            if case .rcpt(let address) = command {
                refused.append(RefusedRecipient(address: address, reply: reply))
                guard reply.code == 421 else { continue }
                // The server is closing the session: no more answers to learn.
                broken = true
                throw refusal(refused) ?? error(.reply(reply), .rcpt)
            }
            if reply.code == 421 || command == .rset {
                broken = true
            } else {
                resetAfterRejection(deadline: deadline)
            }
            throw error(.reply(reply), command.stage)
        }
    }

    /// The error for a send whose recipients were (partly) refused, nil when
    /// none was: `.reply` of the deciding refusal, with all of them listed.
    private func refusal(_ refused: [RefusedRecipient]) -> SMTPError? {
        guard let deciding = SMTPError.decidingReply(refused) else { return nil }
        return SMTPError(.reply(deciding), stage: .rcpt, server: server, refusedRecipients: refused)
    }

    /// Ends a refused transaction so the session can be reused; when even
    /// that fails the connection is marked broken.
    private func resetAfterRejection(deadline: ContinuousClock.Instant) {
        do throws(SMTPError) {
            let reply = try command(.rset, deadline: deadline)
            if reply.code != 250 { broken = true }
        } catch {
            broken = true
        }
    }

    /// NOOP: checks that the session is alive.
    public func noop(deadline: ContinuousClock.Instant) throws(SMTPError) {
        guard !isBroken else { throw error(.connectionClosed, .noop) }
        let reply = try command(.noop, deadline: deadline)
        guard reply.code == 250 else {
            broken = true
            throw error(.reply(reply), .noop)
        }
        lastUsed = .now
    }

    /// Best-effort QUIT (waiting up to a second for the 221) and close.
    /// Never throws; calling it again does nothing.
    public func quit() {
        quit(waitFor: .seconds(1))
    }

    /// `waitFor: .zero` sends QUIT without waiting for the answer, for
    /// closing many stale connections without stalling the caller.
    func quit(waitFor: Duration) {
        guard !closed else { return }
        if !broken {
            let d = min(ContinuousClock.now + waitFor, .now + config.commandTimeout)
            do throws(SMTPError) {
                try write(SMTPCommand.quit.wire, .quit, deadline: .now + .seconds(1))
                if waitFor > .zero { _ = try readReply(.quit, deadline: d) }
            } catch {
                broken = true
            }
        }
        stream.close(graceful: !broken)
        closed = true
    }

    /// Closes without QUIT (after errors).
    func close() {
        guard !closed else { return }
        broken = true
        stream.close(graceful: false)
        closed = true
    }
}
