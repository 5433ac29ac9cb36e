import Foundation
import MIME
import Testing
@testable import SMTP

/// Issue 12: with CHUNKING and PIPELINING and one recipient, the whole
/// transaction goes out in one write as "BDAT <n> LAST" (RFC 3030), and
/// its failures are reported as the DATA path's are. Scripted servers for
/// the exact bytes and the refusals, aiosmtpd with a BDAT command for
/// delivery.
@Suite("CHUNKING/BDAT", .timeLimit(.minutes(1)))
struct ChunkingTests {
    private func config(_ port: Int) -> SMTPServerConfig {
        SMTPServerConfig(host: "localhost", port: port, security: .none, commandTimeout: .seconds(3))
    }

    /// Greeting and EHLO, the EHLO reply announcing `extensions`.
    private func opening(_ extensions: [String] = ["PIPELINING", "CHUNKING", "SIZE 1000000"]) -> [ScriptedServer.Step] {
        let lines = ["scripted"] + extensions
        var ehlo = ""
        for (i, line) in lines.enumerated() { ehlo += "250\(i == lines.count - 1 ? " " : "-")\(line)\r\n" }
        return [.send("220 scripted ESMTP\r\n"), .expect("EHLO localhost"), .send(ehlo)]
    }

    /// Lines starting with ".", and one that is only ".": in a chunk they
    /// are data like any other, neither stuffed nor an end marker.
    private let dotted = "Subject: dots\r\n\r\n.leading dot\r\n..two\r\n.\r\nend\r\n"

    /// The client's transaction, expected line by line with no reply in
    /// between: the script sends nothing until the whole chunk is in, so a
    /// client that waited for a reply before sending on would stall it.
    private func transaction(_ message: String, reset: Bool = false, rcpt: String = "b@example.com") -> [ScriptedServer.Step] {
        let size = message.utf8.count
        var steps: [ScriptedServer.Step] = reset ? [.expect("RSET\r\n")] : []
        steps += [.expect("MAIL FROM:<a@example.com> SIZE=\(size)\r\n"),
                  .expect("RCPT TO:<\(rcpt)>\r\n"),
                  .expect("BDAT \(size) LAST\r\n")]
        // The body's lines, as a line reader sees them.
        for line in message.utf8.split(separator: 10, omittingEmptySubsequences: false).dropLast() {
            steps.append(.expect(String(decoding: line, as: UTF8.self) + "\n"))
        }
        return steps
    }

    private func transactionText(_ message: String, reset: Bool = false, rcpt: String = "b@example.com") -> String {
        let size = message.utf8.count
        return (reset ? "RSET\r\n" : "") + "MAIL FROM:<a@example.com> SIZE=\(size)\r\nRCPT TO:<\(rcpt)>\r\nBDAT \(size) LAST\r\n" + message
    }

    private func envelope(_ recipients: [String] = ["b@example.com"]) throws -> SMTPEnvelope {
        try SMTPEnvelope(sender: "a@example.com", recipients: recipients)
    }

    /// The client followed the script: on a line it did not expect (or an
    /// I/O error) the server logs a note starting with "!!".
    private func check(_ lines: [String]) {
        #expect(!lines.contains { $0.hasPrefix("!!") }, "the client left the script: \(lines)")
    }

    private let closing: [ScriptedServer.Step] = [.expect("QUIT"), .send("221 bye\r\n")]

    // MARK: the wire

    @Test func oneTransactionIsMailRcptAndBdatWithTheRawMessage() throws {
        let server = try ScriptedServer(opening() + transaction(dotted)
            + [.send("250 2.1.0 ok\r\n250 2.1.5 ok\r\n250 2.0.0 queued as 1\r\n")] + closing)
        defer { server.stop() }
        let c = try SMTPConnection.open(config(server.port), deadline: soon())
        #expect(c.capabilities.contains(.chunking))
        let reply = try c.send(envelope(), message: Array(dotted.utf8), resetFirst: false, deadline: soon())
        #expect(reply.code == 250)
        #expect(reply.text == "queued as 1")
        #expect(c.messagesSent == 1)
        #expect(!c.isBroken)
        c.quit()
        let lines = server.clientLinesAfterHangUp()
        check(lines)
        // Everything the client sent, byte for byte: no DATA, no stuffed
        // dot, no "." line after the chunk.
        #expect(lines.joined() == "EHLO localhost\r\n" + transactionText(dotted) + "QUIT\r\n")
    }

    @Test func aReusedSessionResetsFirstInTheSameWrite() throws {
        let server = try ScriptedServer(opening() + transaction(dotted)
            + [.send("250 ok\r\n250 ok\r\n250 2.0.0 queued as 1\r\n")]
            + transaction(dotted, reset: true)
            + [.send("250 2.0.0 reset\r\n250 ok\r\n250 ok\r\n250 2.0.0 queued as 2\r\n")] + closing)
        defer { server.stop() }
        let pool = SMTPConnectionPool(config: config(server.port))
        _ = try pool.send(envelope(), message: Array(dotted.utf8), deadline: soon())
        let second = try pool.send(envelope(), message: Array(dotted.utf8), deadline: soon())
        #expect(second.text == "queued as 2")
        #expect(pool.idleCount == 1)
        pool.shutdown()
        let lines = server.clientLinesAfterHangUp()
        check(lines)
        #expect(lines.joined() == "EHLO localhost\r\n" + transactionText(dotted) + transactionText(dotted, reset: true) + "QUIT\r\n")
    }

    /// The server hung up while the connection sat in the pool. The chunk
    /// must not go out on it (a reply missing after the chunk is "may have
    /// been delivered"): the pool finds the connection dead before writing
    /// and sends once on a fresh one.
    @Test func aPooledSessionTheServerClosedIsNotWrittenTo() throws {
        let server = try ScriptedServer(opening() + transaction(dotted)
            + [.send("250 ok\r\n250 ok\r\n250 2.0.0 queued as 1\r\n"), .hangUp]
            + opening() + transaction(dotted)
            + [.send("250 ok\r\n250 ok\r\n250 2.0.0 queued as 2\r\n")] + closing)
        defer { server.stop() }
        let pool = SMTPConnectionPool(config: config(server.port))
        _ = try pool.send(envelope(), message: Array(dotted.utf8), deadline: soon())
        #expect(eventually { server.clientLines().contains("## hung up\n") })
        let second = try pool.send(envelope(), message: Array(dotted.utf8), deadline: soon())
        #expect(second.text == "queued as 2")
        pool.shutdown()
        let lines = server.clientLinesAfterHangUp()
        check(lines)
        #expect(lines.joined() == "EHLO localhost\r\n" + transactionText(dotted) + "## hung up\n"
            + "## new connection\n" + "EHLO localhost\r\n" + transactionText(dotted) + "QUIT\r\n")
    }

    /// The same with a 421 before the hang-up, already in the client's
    /// buffer when the next send comes.
    @Test func aPooledSessionTheServerEndedWith421IsNotWrittenTo() throws {
        let server = try ScriptedServer(opening() + transaction(dotted)
            // One write: the 421 arrives with the 250.
            + [.send("250 ok\r\n250 ok\r\n250 2.0.0 queued as 1\r\n421 4.4.2 idle too long\r\n"), .hangUp]
            + opening() + transaction(dotted)
            + [.send("250 ok\r\n250 ok\r\n250 2.0.0 queued as 2\r\n")] + closing)
        defer { server.stop() }
        let pool = SMTPConnectionPool(config: config(server.port))
        _ = try pool.send(envelope(), message: Array(dotted.utf8), deadline: soon())
        #expect(eventually { server.clientLines().contains("## hung up\n") })
        let second = try pool.send(envelope(), message: Array(dotted.utf8), deadline: soon())
        #expect(second.text == "queued as 2")
        pool.shutdown()
        let lines = server.clientLinesAfterHangUp()
        check(lines)
        #expect(lines.joined() == "EHLO localhost\r\n" + transactionText(dotted) + "## hung up\n"
            + "## new connection\n" + "EHLO localhost\r\n" + transactionText(dotted) + "QUIT\r\n")
    }

    // MARK: refusals

    @Test func aRefusedRecipientIsTheRecipientErrorAndTheSessionIsDropped() throws {
        let server = try ScriptedServer(opening() + transaction(dotted)
            + [.send("250 2.1.0 ok\r\n550 5.1.1 no such user\r\n554 5.5.1 no valid recipients\r\n")])
        defer { server.stop() }
        let c = try SMTPConnection.open(config(server.port), deadline: soon())
        let error = #expect(throws: SMTPError.self) {
            try c.send(envelope(), message: Array(dotted.utf8), resetFirst: false, deadline: soon())
        }
        #expect(error?.stage == .rcpt)
        #expect(error?.refusedRecipients == [RefusedRecipient(address: try EmailAddress.parse("b@example.com").address,
                                                              reply: SMTPReply(code: 550, enhancedStatus: "5.1.1", lines: ["no such user"]))])
        if case .reply(let r)? = error?.kind { #expect(r.code == 550) } else { Issue.record("expected the 550, got \(String(describing: error))") }
        #expect(error?.isSafeToRetry == true)
        #expect(c.isBroken)  // closed, not reset: nothing more is said on it
        c.quit()
        let lines = server.clientLinesAfterHangUp()
        check(lines)
        #expect(lines.joined() == "EHLO localhost\r\n" + transactionText(dotted))
    }

    @Test func aRefusedSenderIsTheMailError() throws {
        let server = try ScriptedServer(opening() + transaction(dotted)
            + [.send("550 5.7.1 sender refused\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need RCPT\r\n")])
        defer { server.stop() }
        let c = try SMTPConnection.open(config(server.port), deadline: soon())
        let error = #expect(throws: SMTPError.self) {
            try c.send(envelope(), message: Array(dotted.utf8), resetFirst: false, deadline: soon())
        }
        #expect(error?.stage == .mail)
        if case .reply(let r)? = error?.kind { #expect(r.code == 550) } else { Issue.record("expected the 550, got \(String(describing: error))") }
        #expect(error?.isSafeToRetry == true)
        #expect(c.isBroken)
    }

    /// BDAT refused with MAIL and RCPT accepted: the server's verdict on the
    /// message, reported as DATA's final reply is (stage .message, a reply:
    /// certainly not delivered).
    @Test(arguments: [("554 5.7.1 looks like spam", true), ("451 4.3.0 try again later", false)])
    func aRefusedChunkIsTheMessageRejection(reply: String, permanent: Bool) throws {
        let server = try ScriptedServer(opening() + transaction(dotted)
            + [.send("250 ok\r\n250 ok\r\n\(reply)\r\n")])
        defer { server.stop() }
        let c = try SMTPConnection.open(config(server.port), deadline: soon())
        let error = #expect(throws: SMTPError.self) {
            try c.send(envelope(), message: Array(dotted.utf8), resetFirst: false, deadline: soon())
        }
        #expect(error?.stage == .message)
        if case .reply(let r)? = error?.kind {
            #expect(r.isPermanent == permanent)
            #expect(r.isTransient == !permanent)
        } else {
            Issue.record("expected a reply, got \(String(describing: error))")
        }
        #expect(error?.description.hasPrefix("message rejected: \(reply)") == true)
        #expect(c.isBroken)
    }

    @Test func aChunkAcceptedAfterARefusedRecipientIsAProtocolViolation() throws {
        let server = try ScriptedServer(opening() + transaction(dotted)
            + [.send("250 ok\r\n550 5.1.1 no such user\r\n250 2.0.0 queued anyway\r\n")])
        defer { server.stop() }
        let c = try SMTPConnection.open(config(server.port), deadline: soon())
        let error = #expect(throws: SMTPError.self) {
            try c.send(envelope(), message: Array(dotted.utf8), resetFirst: false, deadline: soon())
        }
        #expect(error?.stage == .message)  // it may have gone somewhere
        if case .protocolViolation? = error?.kind {} else { Issue.record("expected protocolViolation, got \(String(describing: error))") }
        #expect(c.isBroken)
    }

    /// No reply at all once the chunk has left: a pipelining server may hold
    /// its replies until it has queued the message, so this may have been
    /// delivered.
    @Test func lostAfterTheChunkMayHaveBeenDelivered() throws {
        let server = try ScriptedServer(opening() + transaction(dotted) + [.close])
        defer { server.stop() }
        let c = try SMTPConnection.open(config(server.port), deadline: soon())
        let error = #expect(throws: SMTPError.self) {
            try c.send(envelope(), message: Array(dotted.utf8), resetFirst: false, deadline: soon())
        }
        #expect(error?.stage == .message)
        #expect(error?.isSafeToRetry == false)
        if case .connectionClosed? = error?.kind {} else { Issue.record("expected connectionClosed, got \(String(describing: error))") }
        #expect(c.isBroken)
    }

    // MARK: when DATA is used instead

    @Test func twoRecipientsUseData() throws {
        let server = try ScriptedServer(opening() + [
            .expect("MAIL FROM:<a@example.com> SIZE="),
            .expect("RCPT TO:<b@example.com>"),
            .expect("RCPT TO:<c@example.com>"),
            .expect("DATA\r\n"),
            .send("250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n"),
            .expect("Subject: dots"), .expect("\r\n"), .expect("..leading dot\r\n"), .expect("...two\r\n"),
            .expect("..\r\n"), .expect("end\r\n"), .expect(".\r\n"),
            .send("250 2.0.0 queued\r\n"),
        ] + closing)
        defer { server.stop() }
        let c = try SMTPConnection.open(config(server.port), deadline: soon())
        let reply = try c.send(envelope(["b@example.com", "c@example.com"]), message: Array(dotted.utf8),
                               resetFirst: false, deadline: soon())
        #expect(reply.text == "queued")
        c.quit()
        check(server.clientLinesAfterHangUp())
    }

    @Test func chunkingWithoutPipeliningUsesData() throws {
        let server = try ScriptedServer(opening(["CHUNKING"]) + [
            .expect("MAIL FROM:<a@example.com>\r\n"), .send("250 ok\r\n"),
            .expect("RCPT TO:<b@example.com>\r\n"), .send("250 ok\r\n"),
            .expect("DATA\r\n"), .send("354 go\r\n"),
            .expect("Subject: dots"), .expect("\r\n"), .expect("..leading dot\r\n"), .expect("...two\r\n"),
            .expect("..\r\n"), .expect("end\r\n"), .expect(".\r\n"),
            .send("250 2.0.0 queued\r\n"),
        ] + closing)
        defer { server.stop() }
        let c = try SMTPConnection.open(config(server.port), deadline: soon())
        let reply = try c.send(envelope(), message: Array(dotted.utf8), resetFirst: false, deadline: soon())
        #expect(reply.text == "queued")
        c.quit()
        check(server.clientLinesAfterHangUp())
    }

    // MARK: against aiosmtpd with BDAT

    private func chunkingServer(_ configure: (inout AiosmtpdServer.Options) -> Void = { _ in }) throws -> AiosmtpdServer {
        var options = AiosmtpdServer.Options()
        options.pipelining = true
        options.chunking = true
        configure(&options)
        return try AiosmtpdServer(options)
    }

    private func received(_ server: AiosmtpdServer, count: Int) throws -> [ReceivedMessage] {
        _ = eventually { (try? server.messages().count) == count }
        return try server.messages()
    }

    /// Over TLS, with a message of many TLS records and mixed line ends:
    /// what arrives is what the DATA path delivers.
    @Test func deliversOverTLSExactlyWhatDataWould() throws {
        let cert = try certificate()
        let server = try chunkingServer { $0.tls = cert }
        defer { server.stop() }
        let c = try SMTPConnection.open(SMTPServerConfig(host: "localhost", port: server.port, security: .starttls,
                                                         caFile: cert.certPath), deadline: soon())
        defer { c.quit() }
        var message = Array("Subject: test\n\n.\nMAIL FROM:<evil@x>\r\n.\r\nbare\rcr\r\r\nend\n".utf8)
        for _ in 0..<3000 { message += Array(repeating: UInt8(ascii: "x"), count: 99) + [10] }
        let reply = try c.send(envelope(), message: message, resetFirst: false, deadline: soon())
        #expect(reply.code == 250)
        let got = try #require(try received(server, count: 1).first)
        #expect(got.bdat)
        #expect(got.tls)
        #expect(got.recipients == ["b@example.com"])
        var expected = Array("Subject: test\r\n\r\n.\r\nMAIL FROM:<evil@x>\r\n.\r\nbare\r\ncr\r\n\r\nend\r\n".utf8)
        for _ in 0..<3000 { expected += Array(repeating: UInt8(ascii: "x"), count: 99) + [13, 10] }
        // Compared as Bools: a failing #expect would diff 300 KB arrays.
        #expect(got.raw.count == expected.count)
        #expect(got.raw.elementsEqual(expected))
    }

    @Test func pooledSendsUseOneSessionAndSeveralRecipientsUseData() throws {
        let server = try chunkingServer()
        defer { server.stop() }
        let pool = SMTPConnectionPool(config: config(server.port))
        defer { pool.shutdown() }
        _ = try pool.send(envelope(), message: sampleMessage, deadline: soon())
        _ = try pool.send(envelope(), message: sampleMessage, deadline: soon())
        _ = try pool.send(envelope(["b@example.com", "c@example.com"]), message: sampleMessage, deadline: soon())
        let messages = try received(server, count: 3)
        #expect(messages.map(\.bdat) == [true, true, false])
        #expect(messages.allSatisfy { $0.raw == sampleMessage })
        #expect(Set(messages.map(\.peerPort)).count == 1)
    }

    @Test func aRefusedRecipientDeliversNothing() throws {
        let server = try chunkingServer { $0.rejectRecipientsContaining = "nobody" }
        defer { server.stop() }
        let pool = SMTPConnectionPool(config: config(server.port))
        defer { pool.shutdown() }
        let error = #expect(throws: SMTPError.self) {
            try pool.send(envelope(["nobody@example.com"]), message: sampleMessage, deadline: soon())
        }
        #expect(error?.stage == .rcpt)
        #expect(error?.refusedRecipients.count == 1)
        // The next send works on a new session, and is the only message.
        _ = try pool.send(envelope(), message: sampleMessage, deadline: soon())
        let messages = try received(server, count: 1)
        #expect(messages.map(\.recipients) == [["b@example.com"]])
    }

    @Test func neverResendsAfterTheChunkWasSent() throws {
        let server = try chunkingServer { $0.hangUpOnMessage = 2 }  // stores message 2, then hangs up
        defer { server.stop() }
        let pool = SMTPConnectionPool(config: config(server.port))
        defer { pool.shutdown() }
        _ = try pool.send(envelope(), message: sampleMessage, deadline: soon())
        let error = #expect(throws: SMTPError.self) { try pool.send(envelope(), message: sampleMessage, deadline: soon()) }
        #expect(error?.stage == .message)
        #expect(error?.isSafeToRetry == false)
        #expect(pool.idleCount == 0)
        let messages = try received(server, count: 2)
        #expect(messages.count == 2)  // not 3: no second attempt
        #expect(messages.allSatisfy { $0.bdat })
    }
}
