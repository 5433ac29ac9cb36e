import MIME
import Testing
@testable import SMTP

/// Issue 8: a send to several recipients is all or nothing, and a refusal
/// names every refused recipient; the server's SIZE limit is its own error.
/// Scripted servers, with and without PIPELINING: the script answers one
/// command at a time, which a pipelining client reads just the same.
@Suite("Refused recipients and SIZE against scripted servers", .timeLimit(.minutes(1)))
struct RecipientRefusalTests {
    private func config(_ port: Int) -> SMTPServerConfig {
        SMTPServerConfig(host: "localhost", port: port, security: .none, commandTimeout: .seconds(3))
    }

    /// Greeting and EHLO, the EHLO reply announcing `extensions`.
    private func opening(_ extensions: [String]) -> [ScriptedServer.Step] {
        let lines = ["scripted"] + extensions
        var ehlo = ""
        for (i, line) in lines.enumerated() { ehlo += "250\(i == lines.count - 1 ? " " : "-")\(line)\r\n" }
        return [.send("220 scripted ESMTP\r\n"), .expect("EHLO localhost"), .send(ehlo)]
    }

    private func envelope(_ recipients: [String]) throws -> SMTPEnvelope {
        try SMTPEnvelope(sender: "a@example.com", recipients: recipients)
    }

    private func address(_ text: String) throws -> EmailAddress {
        try EmailAddress.parse(text).address
    }

    /// MAIL FROM and one RCPT TO per (recipient, reply line).
    private func envelopeSteps(_ rcpts: [(String, String)]) -> [ScriptedServer.Step] {
        var steps: [ScriptedServer.Step] = [.expect("MAIL FROM:<a@example.com>\r\n"), .send("250 2.1.0 ok\r\n")]
        for (recipient, reply) in rcpts {
            steps += [.expect("RCPT TO:<\(recipient)>\r\n"), .send(reply + "\r\n")]
        }
        return steps
    }

    private let closing: [ScriptedServer.Step] = [.expect("QUIT"), .send("221 bye\r\n")]

    /// The client followed the script: on a line it did not expect (or an
    /// I/O error) the server logs a note starting with "!!".
    private func check(_ lines: [String]) {
        #expect(!lines.contains { $0.hasPrefix("!!") }, "the client left the script: \(lines)")
    }

    // MARK: without PIPELINING

    @Test func withoutPipeliningEveryRcptIsAskedThenRsetAndNoData() throws {
        let server = try ScriptedServer(opening([])
            + envelopeSteps([("one@example.com", "250 2.1.5 ok"),
                             ("two@example.com", "550 5.1.1 no such user"),
                             ("three@example.com", "551 5.1.6 user has moved")])
            + [.expect("RSET"), .send("250 2.0.0 ok\r\n")]
            + closing)
        defer { server.stop() }
        let c = try SMTPConnection.open(config(server.port), deadline: soon())
        let error = #expect(throws: SMTPError.self) {
            try c.send(envelope(["one@example.com", "two@example.com", "three@example.com"]),
                       message: sampleMessage, resetFirst: false, deadline: soon())
        }
        let expected = [
            RefusedRecipient(address: try address("two@example.com"), reply: SMTPReply(code: 550, enhancedStatus: "5.1.1", lines: ["no such user"])),
            RefusedRecipient(address: try address("three@example.com"), reply: SMTPReply(code: 551, enhancedStatus: "5.1.6", lines: ["user has moved"])),
        ]
        #expect(error?.stage == .rcpt)
        #expect(error?.refusedRecipients == expected)
        if case .reply(let r)? = error?.kind { #expect(r.code == 550) } else { Issue.record("expected the 550, got \(String(describing: error))") }
        #expect(error?.description == "RCPT TO rejected: two@example.com: 550 5.1.1 no such user; three@example.com: 551 5.1.6 user has moved (localhost:\(server.port))")
        #expect(error?.isSafeToRetry == true)
        #expect(!c.isBroken)  // RSET answered 250: the session is reusable
        c.quit()
        let lines = server.clientLinesAfterHangUp()
        check(lines)
        #expect(lines.filter { $0.hasPrefix("RCPT") }.count == 3)
        #expect(!lines.contains("DATA\r\n"))
        #expect(!lines.contains { $0.hasPrefix("Subject:") })
        #expect(lines.suffix(2) == ["RSET\r\n", "QUIT\r\n"])
    }

    /// A 421 ends the session: the RCPTs after it are not sent, and the
    /// refusals seen so far are still reported.
    @Test func serviceClosingAtARcptStopsAndBreaksTheConnection() throws {
        let server = try ScriptedServer(opening([])
            + envelopeSteps([("one@example.com", "550 5.1.1 no such user"),
                             ("two@example.com", "421 4.3.2 shutting down")]))
        defer { server.stop() }
        let c = try SMTPConnection.open(config(server.port), deadline: soon())
        let error = #expect(throws: SMTPError.self) {
            try c.send(envelope(["one@example.com", "two@example.com", "three@example.com"]),
                       message: sampleMessage, resetFirst: false, deadline: soon())
        }
        #expect(error?.stage == .rcpt)
        #expect(error?.refusedRecipients.map(\.reply.code) == [550, 421])
        if case .reply(let r)? = error?.kind { #expect(r.code == 550) } else { Issue.record("expected the 550, got \(String(describing: error))") }
        #expect(c.isBroken)
        c.quit()  // broken: no QUIT, just the hang-up
        let lines = server.clientLinesAfterHangUp()
        check(lines)
        #expect(!lines.contains { $0.hasPrefix("RCPT TO:<three@") || $0 == "RSET\r\n" || $0 == "DATA\r\n" || $0 == "QUIT\r\n" })
    }

    // MARK: with PIPELINING

    /// The server accepted one recipient, so it says 354 to the pipelined
    /// DATA: any body would be delivered to it, so the client hangs up.
    @Test func pipelinedDataAcceptedDespiteRefusalsDropsTheConnection() throws {
        let server = try ScriptedServer(opening(["PIPELINING"])
            + envelopeSteps([("one@example.com", "250 2.1.5 ok"),
                             ("two@example.com", "550 5.1.1 no such user"),
                             ("three@example.com", "551 5.1.6 user has moved")])
            + [.expect("DATA"), .send("354 go ahead\r\n")])
        defer { server.stop() }
        let c = try SMTPConnection.open(config(server.port), deadline: soon())
        #expect(c.capabilities.contains(.pipelining))
        let error = #expect(throws: SMTPError.self) {
            try c.send(envelope(["one@example.com", "two@example.com", "three@example.com"]),
                       message: sampleMessage, resetFirst: false, deadline: soon())
        }
        #expect(error?.stage == .rcpt)
        #expect(error?.refusedRecipients.map(\.address.description) == ["two@example.com", "three@example.com"])
        #expect(error?.description.hasPrefix("RCPT TO rejected: two@example.com: 550 5.1.1 no such user; three@example.com: 551 ") == true)
        #expect(error?.isSafeToRetry == true)
        #expect(c.isBroken)
        c.quit()
        let lines = server.clientLinesAfterHangUp()
        check(lines)
        #expect(lines.last == "DATA\r\n")  // no body, no end-of-data, no RSET, no QUIT
    }

    // MARK: both

    /// Both refused, transient first: the permanent refusal decides (the
    /// caller answers 400, not "try again").
    @Test(arguments: [false, true])
    func permanentRefusalDecidesOverAnEarlierTransientOne(pipelining: Bool) throws {
        let server = try ScriptedServer(opening(pipelining ? ["PIPELINING"] : [])
            + envelopeSteps([("one@example.com", "450 4.2.1 mailbox busy"),
                             ("two@example.com", "550 5.1.1 no such user")])
            + (pipelining ? [.expect("DATA"), .send("554 5.5.1 no valid recipients\r\n")] : [])
            + [.expect("RSET"), .send("250 ok\r\n")]
            + closing)
        defer { server.stop() }
        let c = try SMTPConnection.open(config(server.port), deadline: soon())
        let error = #expect(throws: SMTPError.self) {
            try c.send(envelope(["one@example.com", "two@example.com"]), message: sampleMessage, resetFirst: false, deadline: soon())
        }
        #expect(error?.stage == .rcpt)
        if case .reply(let r)? = error?.kind {
            #expect(r == SMTPReply(code: 550, enhancedStatus: "5.1.1", lines: ["no such user"]))
        } else {
            Issue.record("expected the 550, got \(String(describing: error))")
        }
        #expect(error?.refusedRecipients.map(\.reply.code) == [450, 550])
        #expect(error?.description == "RCPT TO rejected: one@example.com: 450 4.2.1 mailbox busy; two@example.com: 550 5.1.1 no such user (localhost:\(server.port))")
        #expect(!c.isBroken)
        c.quit()
        let lines = server.clientLinesAfterHangUp()
        check(lines)
        #expect(lines.suffix(2) == ["RSET\r\n", "QUIT\r\n"])
        #expect(!lines.contains { $0.hasPrefix("Subject:") })
    }

    @Test(arguments: [false, true])
    func onlyTransientRefusalsAreTransient(pipelining: Bool) throws {
        let server = try ScriptedServer(opening(pipelining ? ["PIPELINING"] : [])
            + envelopeSteps([("one@example.com", "250 ok"), ("two@example.com", "450 4.2.1 mailbox busy")])
            + (pipelining ? [.expect("DATA"), .send("354 go ahead\r\n")] : [.expect("RSET"), .send("250 ok\r\n")] + closing))
        defer { server.stop() }
        let c = try SMTPConnection.open(config(server.port), deadline: soon())
        let error = #expect(throws: SMTPError.self) {
            try c.send(envelope(["one@example.com", "two@example.com"]), message: sampleMessage, resetFirst: false, deadline: soon())
        }
        #expect(error?.stage == .rcpt)
        if case .reply(let r)? = error?.kind { #expect(r.isTransient && r.code == 450) } else { Issue.record("expected the 450, got \(String(describing: error))") }
        #expect(error?.refusedRecipients.map(\.address.description) == ["two@example.com"])
        #expect(c.isBroken == pipelining)  // pipelined: DATA got 354, so the client hung up
        c.quit()
        let lines = server.clientLinesAfterHangUp()
        check(lines)
        #expect(!lines.contains { $0.hasPrefix("Subject:") })
        #expect(lines.contains("DATA\r\n") == pipelining)
    }

    @Test(arguments: [false, true])
    func allAcceptedSendsOneMessage(pipelining: Bool) throws {
        let server = try ScriptedServer(opening(pipelining ? ["PIPELINING"] : [])
            + envelopeSteps([("one@example.com", "250 ok"), ("two@example.com", "250 ok"), ("three@example.com", "251 will forward")])
            + [.expect("DATA"), .send("354 go ahead\r\n"),
               .expect("From: a@example.com\r\n"), .expect("To: b@example.com\r\n"), .expect("Subject: hi\r\n"),
               .expect("\r\n"), .expect("Hello.\r\n"), .expect(".\r\n"), .send("250 2.0.0 queued\r\n")]
            + closing)
        defer { server.stop() }
        let c = try SMTPConnection.open(config(server.port), deadline: soon())
        let reply = try c.send(envelope(["one@example.com", "two@example.com", "three@example.com"]),
                               message: sampleMessage, resetFirst: false, deadline: soon())
        #expect(reply.code == 250 && reply.text == "queued")
        #expect(c.messagesSent == 1)
        #expect(!c.isBroken)
        c.quit()
        let lines = server.clientLinesAfterHangUp()
        check(lines)
        #expect(lines.filter { $0 == "DATA\r\n" }.count == 1)
        #expect(!lines.contains("RSET\r\n"))
        #expect(lines.last == "QUIT\r\n")
    }

    // MARK: SIZE

    @Test func messageOverTheServersSizeLimitIsRefusedBeforeMail() throws {
        let server = try ScriptedServer(opening(["PIPELINING", "SIZE 100"]) + closing)
        defer { server.stop() }
        let c = try SMTPConnection.open(config(server.port), deadline: soon())
        let error = #expect(throws: SMTPError.self) {
            try c.send(envelope(["b@example.com"]), message: Array(repeating: UInt8(ascii: "m"), count: 200),
                       resetFirst: false, deadline: soon())
        }
        // 200 octets and the CRLF the transfer ends them with (RFC 1870
        // counts neither doubled dots nor the final ".\r\n").
        if case .messageTooLarge(let size, let limit)? = error?.kind {
            #expect(size == 202 && limit == 100)
        } else {
            Issue.record("expected messageTooLarge, got \(String(describing: error))")
        }
        #expect(error?.description == "message of 202 bytes exceeds the SMTP server's limit of 100 bytes (localhost:\(server.port))")
        #expect(error?.isSafeToRetry == true)  // nothing was sent
        #expect(error?.looksLikeDeadConnection == false)  // so the pool does not try again
        #expect(error?.refusedRecipients == [])
        #expect(!c.isBroken)
        c.quit()
        let lines = server.clientLinesAfterHangUp()
        check(lines)
        #expect(lines == ["EHLO localhost\r\n", "QUIT\r\n"])
    }

    @Test func mailFromDeclaresTheExactSize() throws {
        let size = sampleMessage.count  // CRLF lines already; the final ".\r\n" does not count
        let server = try ScriptedServer(opening(["SIZE \(size)"])
            + [.expect("MAIL FROM:<a@example.com> SIZE=\(size)\r\n"), .send("250 ok\r\n"),
               .expect("RCPT TO:<b@example.com>\r\n"), .send("250 ok\r\n"),
               .expect("DATA"), .send("354 go ahead\r\n"),
               .expect("From:"), .expect("To:"), .expect("Subject:"), .expect("\r\n"), .expect("Hello."), .expect(".\r\n"),
               .send("250 queued\r\n")]
            + closing)
        defer { server.stop() }
        let c = try SMTPConnection.open(config(server.port), deadline: soon())
        #expect(c.serverInfo.size.limit == size)  // exactly at the limit is allowed
        _ = try c.send(envelope(["b@example.com"]), message: sampleMessage, resetFirst: false, deadline: soon())
        c.quit()
        let lines = server.clientLinesAfterHangUp()
        check(lines)
        #expect(lines.contains("MAIL FROM:<a@example.com> SIZE=\(size)\r\n"))
    }
}

@Suite("Refusal errors")
struct RefusalErrorTests {
    private func refusal(_ address: String, _ code: Int, _ text: String = "no") throws -> RefusedRecipient {
        RefusedRecipient(address: try EmailAddress.parse(address).address, reply: SMTPReply(code: code, lines: [text]))
    }

    @Test func decidingReply() throws {
        #expect(SMTPError.decidingReply([]) == nil)
        let mixed = [try refusal("a@x.example", 450), try refusal("b@x.example", 550), try refusal("c@x.example", 551)]
        #expect(SMTPError.decidingReply(mixed)?.code == 550)
        let transient = [try refusal("a@x.example", 452), try refusal("b@x.example", 421)]
        #expect(SMTPError.decidingReply(transient)?.code == 452)
        // Neither 4xx nor 5xx: the server broke the protocol; that reply is reported.
        let odd = [try refusal("a@x.example", 354)]
        #expect(SMTPError.decidingReply(odd)?.code == 354)
    }

    @Test func descriptionIsBounded() throws {
        let refused = try (0..<60).map { try refusal("user\($0)@x.example", 550, String(repeating: "é", count: 1000)) }
        let error = SMTPError(.reply(refused[0].reply), stage: .rcpt, server: "smtp.example.com:25", refusedRecipients: refused)
        let text = error.description
        #expect(text.hasPrefix("RCPT TO rejected: user0@x.example: 550 éé"))
        #expect(text.contains("user49@x.example: "))
        #expect(!text.contains("user50@"))
        #expect(text.hasSuffix("...; and 10 more (smtp.example.com:25)"))
        #expect(text.unicodeScalars.count < 50 * (SMTPError.maxListedReplyLength + 40) + 100)
    }

    @Test func withoutRefusalsTheReplyIsDescribedAsBefore() {
        let rcpt = SMTPError(.reply(SMTPReply(code: 550, enhancedStatus: "5.1.1", lines: ["User unknown"])), stage: .rcpt)
        #expect(rcpt.description == "RCPT TO rejected: 550 5.1.1 User unknown")
        #expect(rcpt.refusedRecipients.isEmpty)
    }
}
