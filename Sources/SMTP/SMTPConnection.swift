/// The sender and recipients of one mail transaction (MAIL FROM / RCPT TO).
public struct SMTPEnvelope: Sendable {
    /// The reverse path; "" sends the null sender "<>".
    public var sender: String
    public var recipients: [String]

    public init(sender: String, recipients: [String]) {
        self.sender = sender
        self.recipients = recipients
    }
}

/// One SMTP session with blocking I/O on the calling thread.
///
/// Every operation takes an absolute deadline; each command round trip is
/// additionally bounded by `commandTimeout` and connecting (TCP and TLS
/// handshake) by `connectTimeout`. Name resolution (getaddrinfo) cannot be
/// interrupted and is not bounded by the deadline.
///
/// Not Sendable: use it from one thread at a time (the pool hands each
/// connection to exactly one caller).
public final class SMTPConnection {
    private let config: SMTPServerConfig
    private let channel: Channel
    private var extensions: [String: [String]] = [:]
    private var broken = false
    private var closed = false

    public private(set) var messagesSent = 0
    public private(set) var lastUsed: ContinuousClock.Instant

    /// Upper-cased EHLO keywords, e.g. "PIPELINING", "8BITMIME", "SIZE", "AUTH".
    /// Empty after a HELO fallback.
    public var capabilities: Set<String> { Set(extensions.keys) }

    /// True after any failure that may have left the session in an unknown
    /// state (I/O error, timeout, unexpected reply): never reuse it then.
    public var isBroken: Bool { broken || closed }

    private init(config: SMTPServerConfig, channel: Channel) {
        self.config = config
        self.channel = channel
        self.lastUsed = .now
    }

    deinit { channel.close(graceful: false) }

    private var server: String { config.endpoint }

    private func error(_ kind: SMTPError.Kind, _ stage: SMTPStage) -> SMTPError {
        SMTPError(kind, stage: stage, server: server)
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
        let server = config.endpoint
        // The HELO name is written into a command line as is: a CR/LF in it
        // would inject commands.
        if let problem = SMTPWire.heloNameProblem(config.heloName) {
            throw SMTPError(.protocolViolation(problem), stage: .ehlo, server: server)
        }
        // Build the TLS context first: a bad CA file is a configuration
        // error, reported without touching the network.
        let tls: TLSContext? = config.security == .none
            ? nil
            : try TLSContext.shared(caFile: config.caFile, verify: config.verifyCertificates, server: server)
        let connectDeadline = min(deadline, .now + config.connectTimeout)
        let channel = try Channel.connect(host: config.host, port: config.port, server: server, deadline: connectDeadline)
        let connection = SMTPConnection(config: config, channel: channel)
        do throws(SMTPError) {
            try connection.handshake(tls: tls, deadline: deadline)
        } catch {
            connection.broken = true
            connection.channel.close(graceful: false)
            connection.closed = true
            throw error
        }
        connection.lastUsed = .now
        return connection
    }

    private func handshake(tls: TLSContext?, deadline: ContinuousClock.Instant) throws(SMTPError) {
        if config.security == .tls, let tls {
            try channel.startTLS(context: tls, host: config.host, deadline: min(deadline, .now + config.connectTimeout))
        }
        let greeting = try channel.readReply(stage: .greeting, deadline: commandDeadline(deadline))
        guard greeting.code == 220 else { throw error(.reply(greeting), .greeting) }

        try hello(deadline: deadline)

        if config.security == .starttls, let tls {
            guard extensions["STARTTLS"] != nil else { throw error(.starttlsUnavailable, .starttls) }
            let reply = try command("STARTTLS", stage: .starttls, deadline: deadline)
            guard reply.code == 220 else { throw error(.reply(reply), .starttls) }
            // Anything that arrived after the 220 was sent in clear text and
            // possibly injected (CVE-2011-0411 style): it must not be read as
            // a reply to what we send over TLS.
            channel.discardBuffered()
            try channel.startTLS(context: tls, host: config.host, deadline: min(deadline, .now + config.connectTimeout))
            // RFC 3207: forget everything learnt before TLS and ask again.
            extensions = [:]
            try hello(deadline: deadline)
        }

        if config.wantsAuth {
            try authenticate(deadline: deadline)
        }
    }

    /// EHLO, falling back to HELO when the server rejects EHLO with 5xx.
    private func hello(deadline: ContinuousClock.Instant) throws(SMTPError) {
        let ehlo = try command("EHLO \(config.heloName)", stage: .ehlo, deadline: deadline)
        if ehlo.code == 250 {
            extensions = SMTPWire.parseExtensions(ehlo)
            return
        }
        guard ehlo.isPermanent else { throw error(.reply(ehlo), .ehlo) }
        let helo = try command("HELO \(config.heloName)", stage: .ehlo, deadline: deadline)
        guard helo.code == 250 else { throw error(.reply(helo), .ehlo) }
        extensions = [:]
    }

    private func authenticate(deadline: ContinuousClock.Instant) throws(SMTPError) {
        let username = config.username ?? ""
        let password = config.password ?? ""
        guard let offered = extensions["AUTH"] else {
            throw error(.authUnavailable("the server does not offer AUTH"), .auth)
        }
        // NUL separates the fields of a PLAIN response: one inside a field
        // would change who we log in as. (The values are not quoted here.)
        if username.utf8.contains(0) || password.utf8.contains(0) {
            throw error(.protocolViolation("username or password contains a NUL character"), .auth)
        }
        let mechanisms = Set(offered.map { $0.uppercased() })
        if mechanisms.contains("PLAIN") {
            // The command carries the password (base64 is not encryption):
            // it never goes into an error, only the server's reply does.
            let reply = try command("AUTH PLAIN \(SMTPWire.authPlain(username: username, password: password))",
                                    stage: .auth, deadline: deadline)
            guard reply.code == 235 else { throw authFailure(reply) }
        } else if mechanisms.contains("LOGIN") {
            let start = try command("AUTH LOGIN", stage: .auth, deadline: deadline)
            guard start.code == 334 else { throw authFailure(start) }
            let afterUser = try command(SMTPWire.base64(Array(username.utf8)), stage: .auth, deadline: deadline)
            guard afterUser.code == 334 else { throw authFailure(afterUser) }
            let done = try command(SMTPWire.base64(Array(password.utf8)), stage: .auth, deadline: deadline)
            guard done.code == 235 else { throw authFailure(done) }
        } else {
            let list = offered.joined(separator: " ")
            throw error(.authUnavailable("no supported AUTH mechanism (server offers: \(list.isEmpty ? "none" : list))"), .auth)
        }
    }

    private func authFailure(_ reply: SMTPReply) -> SMTPError {
        // A positive but unexpected reply (e.g. 334 to PLAIN with an initial
        // response) means we and the server disagree about the exchange.
        if reply.isPositive {
            return error(.protocolViolation("unexpected reply \(reply.code) during AUTH"), .auth)
        }
        return error(.reply(reply), .auth)
    }

    /// Writes one command line and reads its reply. Any transport failure
    /// marks the connection broken.
    private func command(_ line: String, stage: SMTPStage, deadline: ContinuousClock.Instant) throws(SMTPError) -> SMTPReply {
        let d = commandDeadline(deadline)
        do throws(SMTPError) {
            try channel.write(Array((line + "\r\n").utf8), stage: stage, deadline: d)
            return try channel.readReply(stage: stage, deadline: d)
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
    /// `SMTPWire.dataPayload`). Addresses containing CR, LF, NUL, "<" or ">",
    /// an empty recipient list, and lines over 998 octets are refused before
    /// anything is sent.
    ///
    /// With PIPELINING, [RSET when `resetFirst`,] MAIL FROM, every RCPT TO and
    /// DATA go out in one write and the replies are read in order; without
    /// it, one command at a time. The body then goes out in one write.
    ///
    /// A refused RCPT (any recipient) fails the whole send with stage `.rcpt`
    /// and nothing is delivered: the transaction is reset with RSET, or, when
    /// the server already said 354 to a pipelined DATA, the connection is
    /// closed before any body is sent.
    public func send(_ envelope: SMTPEnvelope, message: [UInt8], resetFirst: Bool,
                     deadline: ContinuousClock.Instant) throws(SMTPError) -> SMTPReply {
        // Everything that can be refused without the server is checked
        // before the first byte goes out.
        if let problem = SMTPWire.addressProblem(envelope.sender) {
            throw error(.protocolViolation("sender \(problem)"), .mail)
        }
        guard !envelope.recipients.isEmpty else {
            throw error(.protocolViolation("no recipients"), .rcpt)
        }
        for recipient in envelope.recipients {
            if let problem = SMTPWire.addressProblem(recipient) {
                throw error(.protocolViolation("recipient \(problem)"), .rcpt)
            }
            if recipient.isEmpty {
                throw error(.protocolViolation("recipient address is empty"), .rcpt)
            }
        }
        guard !isBroken else { throw error(.connectionClosed, resetFirst ? .rset : .mail) }

        // Long lines must have been encoded by whoever built the message;
        // servers truncate, wrap or refuse them, so never send one raw.
        let longest = SMTPWire.longestLineLength(message)
        guard longest <= SMTPWire.maxLineLength else {
            throw error(.protocolViolation("message has a line of \(longest) octets; the limit is \(SMTPWire.maxLineLength) (RFC 5321)"), .data)
        }
        let payload = SMTPWire.dataPayload(message)
        var mailParams = ""
        if let size = extensions["SIZE"] {
            // Lets the server refuse an oversized message before we send it.
            if let limitText = size.first, let limit = Int(limitText), limit > 0, payload.count > limit {
                throw error(.reply(SMTPReply(code: 552, enhancedStatus: "5.3.4",
                                             lines: ["message size \(payload.count) exceeds the server's limit of \(limit)"])), .mail)
            }
            mailParams += " SIZE=\(payload.count)"
        }
        if extensions["8BITMIME"] != nil, message.contains(where: { $0 >= 0x80 }) {
            mailParams += " BODY=8BITMIME"
        }
        let allAddresses = [envelope.sender] + envelope.recipients
        if extensions["SMTPUTF8"] != nil, allAddresses.contains(where: { $0.utf8.contains { $0 >= 0x80 } }) {
            mailParams += " SMTPUTF8"
        }

        var commands: [(line: String, stage: SMTPStage)] = []
        if resetFirst { commands.append(("RSET", .rset)) }
        commands.append(("MAIL FROM:<\(envelope.sender)>\(mailParams)", .mail))
        for recipient in envelope.recipients { commands.append(("RCPT TO:<\(recipient)>", .rcpt)) }
        commands.append(("DATA", .data))

        do throws(SMTPError) {
            if extensions["PIPELINING"] != nil {
                try sendPipelined(commands, deadline: deadline)
            } else {
                try sendOneByOne(commands, deadline: deadline)
            }
            // 354 received: from here a failure may mean the server has the
            // message, so errors carry stage .message (not safe to retry).
            // The body may be large: its transfer is bounded by the caller's
            // deadline only; the command timeout starts once it is sent.
            try channel.write(payload, stage: .message, deadline: deadline)
            let final = try channel.readReply(stage: .message, deadline: commandDeadline(deadline))
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
    private func sendPipelined(_ commands: [(line: String, stage: SMTPStage)], deadline: ContinuousClock.Instant) throws(SMTPError) {
        var bytes: [UInt8] = []
        for c in commands { bytes += Array((c.line + "\r\n").utf8) }
        do throws(SMTPError) {
            try channel.write(bytes, stage: commands[0].stage, deadline: commandDeadline(deadline))
        } catch {
            broken = true
            throw error
        }
        var firstFailure: SMTPError?
        var dataAccepted = false
        for c in commands {
            let reply: SMTPReply
            do throws(SMTPError) {
                reply = try channel.readReply(stage: c.stage, deadline: commandDeadline(deadline))
            } catch {
                broken = true
                throw firstFailure ?? error
            }
            if c.stage == .data {
                if reply.code == 354 { dataAccepted = true } else if firstFailure == nil { firstFailure = self.error(.reply(reply), .data) }
            } else if !reply.isCompletion, firstFailure == nil {
                firstFailure = self.error(.reply(reply), c.stage)
            }
            if reply.code == 421 { broken = true }
        }
        guard let failure = firstFailure else { return }
        if dataAccepted || broken || failure.stage == .rset {
            // The server wants a body for the recipients it accepted, but one
            // was refused. Any body we send (even an empty one) would be
            // delivered, so drop the connection: a server discards a
            // transaction whose connection ends before "<CRLF>.<CRLF>".
            broken = true
            channel.close(graceful: false)
        } else {
            resetAfterRejection(deadline: deadline)
        }
        throw failure
    }

    /// One command, one reply: for servers without PIPELINING.
    private func sendOneByOne(_ commands: [(line: String, stage: SMTPStage)], deadline: ContinuousClock.Instant) throws(SMTPError) {
        for c in commands {
            let reply = try command(c.line, stage: c.stage, deadline: deadline)
            let ok = c.stage == .data ? reply.code == 354 : reply.isCompletion
            if ok { continue }
            if reply.code == 421 || c.stage == .rset {
                broken = true
            } else {
                resetAfterRejection(deadline: deadline)
            }
            throw error(.reply(reply), c.stage)
        }
    }

    /// Ends a refused transaction so the session can be reused; when even
    /// that fails the connection is marked broken.
    private func resetAfterRejection(deadline: ContinuousClock.Instant) {
        do throws(SMTPError) {
            let reply = try command("RSET", stage: .rset, deadline: deadline)
            if reply.code != 250 { broken = true }
        } catch {
            broken = true
        }
    }

    /// NOOP: checks that the session is alive.
    public func noop(deadline: ContinuousClock.Instant) throws(SMTPError) {
        try simple("NOOP", stage: .noop, deadline: deadline)
    }

    /// RSET: abandons any transaction in progress.
    public func reset(deadline: ContinuousClock.Instant) throws(SMTPError) {
        try simple("RSET", stage: .rset, deadline: deadline)
    }

    private func simple(_ verb: String, stage: SMTPStage, deadline: ContinuousClock.Instant) throws(SMTPError) {
        guard !isBroken else { throw error(.connectionClosed, stage) }
        let reply = try command(verb, stage: stage, deadline: deadline)
        guard reply.code == 250 else {
            broken = true
            throw error(.reply(reply), stage)
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
                try channel.write(Array("QUIT\r\n".utf8), stage: .quit, deadline: .now + .seconds(1))
                if waitFor > .zero { _ = try channel.readReply(stage: .quit, deadline: d) }
            } catch {
                broken = true
            }
        }
        channel.close(graceful: !broken)
        closed = true
    }

    /// Closes without QUIT (after errors).
    func close() {
        guard !closed else { return }
        broken = true
        channel.close(graceful: false)
        closed = true
    }
}
