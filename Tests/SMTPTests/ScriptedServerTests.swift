import Testing
@testable import SMTP

/// Server behaviour that real servers do not produce on demand.
@Suite("SMTPConnection against scripted servers", .timeLimit(.minutes(1)))
struct ScriptedServerTests {
    private func config(_ port: Int, _ security: SMTPSecurity = .none, caFile: String? = nil) -> SMTPServerConfig {
        SMTPServerConfig(host: "localhost", port: port, security: security, caFile: caFile, commandTimeout: .seconds(3))
    }

    @Test func bytesInjectedAfterTheStarttlsReplyAreDiscarded() throws {
        let cert = try certificate()
        let server = try ScriptedServer([
            .send("220 scripted ESMTP\r\n"),
            .expect("EHLO localhost"),
            .send("250-scripted\r\n250 STARTTLS\r\n"),
            .expect("STARTTLS"),
            // A man in the middle appends a fake answer to the EHLO that
            // will follow the handshake, hoping we read it as if over TLS.
            .send("220 go ahead\r\n250-fake\r\n250 AUTH PLAIN\r\n"),
            .starttls,
            .expect("EHLO localhost"),
            .send("250-scripted\r\n250 8BITMIME\r\n"),
            .expect("QUIT"),
            .send("221 bye\r\n"),
        ], certificate: cert)
        defer { server.stop() }
        let c = try SMTPConnection.open(config(server.port, .starttls, caFile: cert.certPath), deadline: soon())
        #expect(c.capabilities == [.eightBitMIME])
        c.quit()
    }

    @Test func multiLineGreetingAndHeloFallback() throws {
        let server = try ScriptedServer([
            .send("220-scripted\r\n220 old server\r\n"),
            .expect("EHLO localhost"),
            .send("502 5.5.1 EHLO not implemented\r\n"),
            .expect("HELO localhost"),
            .send("250 scripted\r\n"),
            .expect("MAIL FROM:<a@example.com>\r\n"),  // no SIZE etc. without EHLO
            .send("250 ok\r\n"),
            .expect("RCPT TO:<b@example.com>\r\n"),
            .send("251 will forward\r\n"),
            .expect("DATA"),
            .send("354 go\r\n"),
            .expect("Subject: hi"),
            .expect("\r\n"),
            .expect("..dot\r\n"),
            .expect(".\r\n"),
            .send("250 queued\r\n"),
            .expect("QUIT"),
            .send("221 bye\r\n"),
        ])
        defer { server.stop() }
        let c = try SMTPConnection.open(config(server.port), deadline: soon())
        #expect(c.capabilities.isEmpty)
        let reply = try c.send(SMTPEnvelope(sender: "a@example.com", recipients: ["b@example.com"]),
                               message: Array("Subject: hi\n\n.dot".utf8), resetFirst: false, deadline: soon())
        #expect(reply.text == "queued")
        c.quit()
        #expect(server.clientLines().last == "QUIT\r\n")
    }

    @Test func malformedReplyBreaksTheConnection() throws {
        let server = try ScriptedServer([
            .send("220 scripted\r\n"),
            .expect("EHLO"),
            .send("250 scripted\r\n"),
            .expect("MAIL FROM"),
            .send("hello there\r\n"),
        ])
        defer { server.stop() }
        let c = try SMTPConnection.open(config(server.port), deadline: soon())
        defer { c.quit() }
        let error = #expect(throws: SMTPError.self) {
            try c.send(SMTPEnvelope(sender: "a@example.com", recipients: ["b@example.com"]), message: sampleMessage, resetFirst: false, deadline: soon())
        }
        #expect(error?.stage == .mail)
        if case .protocolViolation? = error?.kind {} else { Issue.record("expected protocolViolation, got \(String(describing: error))") }
        #expect(c.isBroken)
    }

    @Test func mixedCodesInEhloReplyAreAProtocolViolation() throws {
        let server = try ScriptedServer([
            .send("220 scripted\r\n"),
            .expect("EHLO"),
            .send("250-scripted\r\n251 PIPELINING\r\n"),
        ])
        defer { server.stop() }
        let error = #expect(throws: SMTPError.self) { try SMTPConnection.open(config(server.port), deadline: soon()) }
        #expect(error?.stage == .ehlo)
        if case .protocolViolation(let why)? = error?.kind { #expect(why.contains("250 to 251")) } else { Issue.record("expected protocolViolation") }
    }

    @Test func endlessReplyLineIsCutOff() throws {
        let server = try ScriptedServer([.send("220 " + String(repeating: "z", count: 20_000))])
        defer { server.stop() }
        let error = #expect(throws: SMTPError.self) { try SMTPConnection.open(config(server.port), deadline: soon()) }
        #expect(error?.stage == .greeting)
        if case .protocolViolation? = error?.kind {} else { Issue.record("expected protocolViolation, got \(String(describing: error))") }
    }

    @Test func transientMailRejectionWithoutPipeliningIsReset() throws {
        let server = try ScriptedServer([
            .send("220 scripted\r\n"),
            .expect("EHLO"),
            .send("250-scripted\r\n250 SIZE 1000000\r\n"),
            .expect("MAIL FROM:<a@example.com> SIZE="),
            .send("451 4.3.0 try later\r\n"),
            .expect("RSET"),
            .send("250 ok\r\n"),
            .expect("QUIT"),
            .send("221 bye\r\n"),
        ])
        defer { server.stop() }
        let c = try SMTPConnection.open(config(server.port), deadline: soon())
        let error = #expect(throws: SMTPError.self) {
            try c.send(SMTPEnvelope(sender: "a@example.com", recipients: ["b@example.com"]), message: sampleMessage, resetFirst: false, deadline: soon())
        }
        #expect(error?.stage == .mail)
        if case .reply(let r)? = error?.kind { #expect(r.isTransient && r.enhancedStatus == "4.3.0") } else { Issue.record("expected 451") }
        #expect(!c.isBroken)
        c.quit()
        #expect(server.clientLines().last == "QUIT\r\n")
    }
}
