import Foundation
import MIME
import MailgateTesting
import Synchronization
import Testing
@testable import SMTP

/// A deadline comfortably beyond any single test step.
func soon(_ seconds: Int64 = 10) -> ContinuousClock.Instant { .now + .seconds(seconds) }

let sampleMessage = Array("From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nHello.\r\n".utf8)

func certificate() throws -> TestCertificate {
    try TestCertificate.shared.get()
}

/// Polls until `condition` holds (servers record messages asynchronously).
func eventually(_ timeout: Duration = .seconds(3), _ condition: () throws -> Bool) rethrows -> Bool {
    let end = ContinuousClock.now + timeout
    while ContinuousClock.now < end {
        if try condition() { return true }
        usleep(10_000)
    }
    return try condition()
}

@Suite("SMTPConnection against real servers", .timeLimit(.minutes(1)))
struct ConnectionTests {
    // MARK: plain, smtp-sink

    @Test func pipelinedSendsOnOneConnection() throws {
        let sink = try SMTPSink()
        defer { sink.stop() }
        let c = try SMTPConnection.open(SMTPServerConfig(host: "127.0.0.1", port: sink.port, security: .none), deadline: soon())
        defer { c.quit() }
        #expect(c.capabilities.contains(.pipelining))
        #expect(c.capabilities.contains(.eightBitMIME))
        let first = try c.send(SMTPEnvelope(sender: "a@example.com", recipients: ["b@example.com", "c@example.com"]),
                               message: sampleMessage, resetFirst: false, deadline: soon())
        #expect(first.code == 250)
        // Second message on the same session, with the liveness RSET pipelined in front.
        let second = try c.send(SMTPEnvelope(sender: "", recipients: ["b@example.com"]),
                                message: sampleMessage, resetFirst: true, deadline: soon())
        #expect(second.code == 250)
        #expect(c.messagesSent == 2)
        #expect(!c.isBroken)
        #expect(eventually { sink.messageCount() == 2 })
    }

    @Test func sendsOneCommandAtATimeWithoutPipelining() throws {
        let sink = try SMTPSink(["-p"])  // -p: do not announce PIPELINING
        defer { sink.stop() }
        let c = try SMTPConnection.open(SMTPServerConfig(host: "localhost", port: sink.port, security: .none), deadline: soon())
        defer { c.quit() }
        #expect(!c.capabilities.contains(.pipelining))
        _ = try c.send(SMTPEnvelope(sender: "a@example.com", recipients: ["b@example.com"]),
                       message: sampleMessage, resetFirst: true, deadline: soon())
        #expect(c.messagesSent == 1)
        #expect(eventually { sink.messageCount() == 1 })
    }

    @Test func refusedRecipientWithoutPipeliningResetsTheTransaction() throws {
        let sink = try SMTPSink(["-f", "RCPT"])  // 5xx for every RCPT (implies no PIPELINING)
        defer { sink.stop() }
        let c = try SMTPConnection.open(SMTPServerConfig(host: "127.0.0.1", port: sink.port, security: .none), deadline: soon())
        defer { c.quit() }
        let error = #expect(throws: SMTPError.self) {
            try c.send(SMTPEnvelope(sender: "a@example.com", recipients: ["b@example.com"]),
                       message: sampleMessage, resetFirst: false, deadline: soon())
        }
        #expect(error?.stage == .rcpt)
        guard case .reply(let reply)? = error?.kind else { Issue.record("expected a reply error, got \(String(describing: error))"); return }
        #expect(reply.isPermanent)
        #expect(error?.isSafeToRetry == true)
        #expect(error?.description.hasPrefix("RCPT TO rejected: b@example.com: 5") == true)
        #expect(error?.refusedRecipients.map(\.address.description) == ["b@example.com"])
        // The transaction was reset with RSET, so the session stays usable.
        #expect(!c.isBroken)
        try c.noop(deadline: soon())
        #expect(sink.messageCount() == 0)
    }

    @Test func serviceClosingReplyBreaksTheConnection() throws {
        let sink = try SMTPSink(["-Q", "RCPT"])  // 421 and hang up at RCPT
        defer { sink.stop() }
        let c = try SMTPConnection.open(SMTPServerConfig(host: "127.0.0.1", port: sink.port, security: .none), deadline: soon())
        defer { c.quit() }
        let error = #expect(throws: SMTPError.self) {
            try c.send(SMTPEnvelope(sender: "a@example.com", recipients: ["b@example.com"]),
                       message: sampleMessage, resetFirst: false, deadline: soon())
        }
        #expect(error?.stage == .rcpt)
        if case .reply(let r)? = error?.kind { #expect(r.code == 421) } else { Issue.record("expected 421, got \(String(describing: error))") }
        #expect(error?.looksLikeDeadConnection == true)
        #expect(c.isBroken)
    }

    @Test func droppedAfterTheBodyIsNotSafeToRetry() throws {
        let sink = try SMTPSink(["-q", "."])  // hang up without answering the end of data
        defer { sink.stop() }
        let c = try SMTPConnection.open(SMTPServerConfig(host: "127.0.0.1", port: sink.port, security: .none), deadline: soon())
        defer { c.quit() }
        let error = #expect(throws: SMTPError.self) {
            try c.send(SMTPEnvelope(sender: "a@example.com", recipients: ["b@example.com"]),
                       message: sampleMessage, resetFirst: false, deadline: soon())
        }
        #expect(error?.stage == .message)
        if case .connectionClosed? = error?.kind {} else { Issue.record("expected connectionClosed, got \(String(describing: error))") }
        #expect(error?.isSafeToRetry == false)
        #expect(c.isBroken)
    }

    @Test func badEnvelopeAddressesAreRefusedBeforeAnythingIsSent() throws {
        let sink = try SMTPSink()
        defer { sink.stop() }
        let c = try SMTPConnection.open(SMTPServerConfig(host: "127.0.0.1", port: sink.port, security: .none), deadline: soon())
        defer { c.quit() }
        // An address that would smuggle a command or truncate the path cannot
        // be put in an envelope at all: the envelope holds MIME's parsed
        // EmailAddress values, and the parser refuses these.
        #expect(throws: AddressError.containsControlCharacter) {
            try SMTPEnvelope(sender: "a@example.com", recipients: ["b@example.com>\r\nRCPT TO:<evil@example.com"])
        }
        #expect(throws: AddressError.containsControlCharacter) {
            try SMTPEnvelope(sender: "a@example.com\0", recipients: ["b@example.com"])
        }
        let noRecipients = #expect(throws: SMTPError.self) {
            try c.send(SMTPEnvelope(sender: "a@example.com", recipients: []), message: sampleMessage, resetFirst: false, deadline: soon())
        }
        #expect(noRecipients?.stage == .rcpt)
        // Nothing reached the server, so the session is still in sync.
        #expect(!c.isBroken)
        _ = try c.send(SMTPEnvelope(sender: "a@example.com", recipients: ["b@example.com"]),
                       message: sampleMessage, resetFirst: false, deadline: soon())
        #expect(eventually { sink.messageCount() == 1 })
    }

    @Test func loginWithoutServerAuthIsRefused() throws {
        let sink = try SMTPSink()  // -a: no AUTH advertised
        defer { sink.stop() }
        let config = SMTPServerConfig(host: "127.0.0.1", port: sink.port, security: .none, username: "u", password: "secret-pw")
        let error = #expect(throws: SMTPError.self) { try SMTPConnection.open(config, deadline: soon()) }
        #expect(error?.stage == .auth)
        if case .authUnavailable? = error?.kind {} else { Issue.record("expected authUnavailable, got \(String(describing: error))") }
        #expect(error?.description.contains("secret-pw") == false)
    }

    @Test func requiredStarttlsThatIsNotOfferedFails() throws {
        let sink = try SMTPSink()  // smtp-sink has no STARTTLS
        defer { sink.stop() }
        let error = #expect(throws: SMTPError.self) {
            try SMTPConnection.open(SMTPServerConfig(host: "127.0.0.1", port: sink.port, security: .starttls), deadline: soon())
        }
        #expect(error?.stage == .starttls)
        if case .starttlsUnavailable? = error?.kind {} else { Issue.record("expected starttlsUnavailable, got \(String(describing: error))") }
    }

    // MARK: connect failures and timeouts

    @Test func connectionRefused() throws {
        let port = try Ports.closed()
        let error = #expect(throws: SMTPError.self) {
            try SMTPConnection.open(SMTPServerConfig(host: "127.0.0.1", port: port, security: .none), deadline: soon())
        }
        #expect(error?.stage == .connect)
        if case .connectionRefused? = error?.kind {} else { Issue.record("expected connectionRefused, got \(String(describing: error))") }
        #expect(error?.description == "connection to 127.0.0.1:\(port) refused")
        #expect(error?.isSafeToRetry == true)
    }

    @Test func silentServerTimesOutAtTheGreeting() throws {
        let listener = try SilentListener()
        defer { listener.stop() }
        let config = SMTPServerConfig(host: "127.0.0.1", port: listener.port, security: .none, commandTimeout: .milliseconds(300))
        let start = ContinuousClock.now
        let error = #expect(throws: SMTPError.self) { try SMTPConnection.open(config, deadline: soon()) }
        let elapsed = start.duration(to: .now)
        #expect(error?.stage == .greeting)
        if case .timeout? = error?.kind {} else { Issue.record("expected timeout, got \(String(describing: error))") }
        #expect(elapsed >= .milliseconds(290) && elapsed < .seconds(5), "the 300 ms timeout fired, well before the 10 s defaults")
    }

    @Test func callerDeadlineWinsOverLongerTimeouts() throws {
        let listener = try SilentListener()
        defer { listener.stop() }
        let config = SMTPServerConfig(host: "127.0.0.1", port: listener.port, security: .tls, verifyCertificates: false)
        let start = ContinuousClock.now
        // Implicit TLS: the handshake waits for a ServerHello that never comes.
        let error = #expect(throws: SMTPError.self) { try SMTPConnection.open(config, deadline: .now + .milliseconds(250)) }
        let elapsed = start.duration(to: .now)
        #expect(error?.stage == .tls)
        if case .timeout? = error?.kind {} else { Issue.record("expected timeout, got \(String(describing: error))") }
        #expect(elapsed < .seconds(5), "the 250 ms deadline beat the 10 s timeouts")
    }

    @Test func invalidPortIsReported() {
        let error = #expect(throws: SMTPError.self) {
            try SMTPConnection.open(SMTPServerConfig(host: "127.0.0.1", port: 70000, security: .none), deadline: soon())
        }
        #expect(error?.stage == .connect)
    }

    // MARK: TLS and AUTH, aiosmtpd

    @Test func starttlsWithAuthPlainDeliversExactBytes() throws {
        let cert = try certificate()
        var options = AiosmtpdServer.Options()
        options.tls = cert
        options.user = "mailer"
        options.password = "pa:ss wörd"
        let server = try AiosmtpdServer(options)
        defer { server.stop() }
        let config = SMTPServerConfig(host: "localhost", port: server.port, security: .starttls,
                                      username: "mailer", password: "pa:ss wörd", caFile: cert.certPath)
        let c = try SMTPConnection.open(config, deadline: soon())
        defer { c.quit() }
        #expect(!c.serverInfo.authMechanisms.isEmpty)
        #expect(!c.capabilities.contains(.startTLS))  // EHLO after TLS no longer offers it
        // Smuggling attempts and mixed line ends in the body, and a body
        // large enough to need many TLS records and partial writes.
        let bulkLine = Array(repeating: UInt8(ascii: "x"), count: 99) + [10]  // LF only, normalised on the way
        var message = Array("Subject: test\n\nline one\n.\nMAIL FROM:<evil@x>\r\n.\r\nbare\rcr\r\r\nend\n".utf8)
        for _ in 0..<3000 { message += bulkLine }
        let reply = try c.send(SMTPEnvelope(sender: "from@example.com", recipients: ["to@example.com"]),
                               message: message, resetFirst: false, deadline: soon())
        #expect(reply.code == 250)
        #expect(reply.enhancedStatus == "2.0.0")
        #expect(eventually { (try? server.messages().count) == 1 })
        let got = try #require(try server.messages().first)
        #expect(got.tls)
        #expect(got.authenticated)
        #expect(got.mailFrom == "from@example.com")
        #expect(got.recipients == ["to@example.com"])
        // "cr\r\r\nend": a bare CR, then a CRLF (MIME.LineBreak's rule): two line ends.
        var expected = Array("Subject: test\r\n\r\nline one\r\n.\r\nMAIL FROM:<evil@x>\r\n.\r\nbare\r\ncr\r\n\r\nend\r\n".utf8)
        for _ in 0..<3000 { expected += Array(repeating: UInt8(ascii: "x"), count: 99) + [13, 10] }
        // Un-stuffed by the server: exactly one message, all lines intact.
        // (Compared as a Bool: on failure Swift Testing would otherwise diff
        // two 300 KB arrays, which takes minutes.)
        #expect(got.raw.count == expected.count)
        let firstDifference = zip(got.raw, expected).enumerated().first { $0.element.0 != $0.element.1 }?.offset
        #expect(firstDifference == nil)
        #expect(got.raw.elementsEqual(expected))
    }

    @Test func certificateIsVerifiedByDefault() throws {
        let cert = try certificate()
        var options = AiosmtpdServer.Options()
        options.tls = cert
        let server = try AiosmtpdServer(options)
        defer { server.stop() }
        let error = #expect(throws: SMTPError.self) {
            try SMTPConnection.open(SMTPServerConfig(host: "localhost", port: server.port, security: .starttls), deadline: soon())
        }
        #expect(error?.stage == .tls)
        guard case .certificateRejected(let why)? = error?.kind else { Issue.record("expected a certificate error, got \(String(describing: error))"); return }
        #expect(why.contains("certificate verify failed"))
        #expect(error?.description.contains("self-signed certificate") == true)
    }

    @Test(arguments: ["localhost", "127.0.0.1"])
    func hostNameIsVerified(host: String) throws {
        let cert = try TestCertificate.otherName.get()
        var options = AiosmtpdServer.Options()
        options.tls = cert
        options.implicitTLS = true
        let server = try AiosmtpdServer(options)
        defer { server.stop() }
        // The certificate is trusted (it is the CA file) but names other.example.
        let config = SMTPServerConfig(host: host, port: server.port, security: .tls, caFile: cert.certPath)
        let error = #expect(throws: SMTPError.self) { try SMTPConnection.open(config, deadline: soon()) }
        #expect(error?.stage == .tls)
        guard case .certificateRejected(let why)? = error?.kind else { Issue.record("expected a certificate error, got \(String(describing: error))"); return }
        #expect(why.contains(host == "localhost" ? "hostname mismatch" : "IP address mismatch"))
    }

    @Test func implicitTLSToAnIPLiteral() throws {
        let cert = try certificate()
        var options = AiosmtpdServer.Options()
        options.tls = cert
        options.implicitTLS = true
        let server = try AiosmtpdServer(options)
        defer { server.stop() }
        let config = SMTPServerConfig(host: "127.0.0.1", port: server.port, security: .tls, caFile: cert.certPath)
        let c = try SMTPConnection.open(config, deadline: soon())
        defer { c.quit() }
        _ = try c.send(SMTPEnvelope(sender: "a@example.com", recipients: ["b@example.com"]),
                       message: sampleMessage, resetFirst: false, deadline: soon())
        #expect(eventually { (try? server.messages().first?.tls) == true })
    }

    @Test func verificationCanBeSwitchedOff() throws {
        let cert = try certificate()
        var options = AiosmtpdServer.Options()
        options.tls = cert
        let server = try AiosmtpdServer(options)
        defer { server.stop() }
        let config = SMTPServerConfig(host: "localhost", port: server.port, security: .starttls, verifyCertificates: false)
        let c = try SMTPConnection.open(config, deadline: soon())
        c.quit()
        #expect(c.isBroken)  // closed connections are never reusable
    }

    @Test func authLoginIsUsedWhenPlainIsNotOffered() throws {
        var options = AiosmtpdServer.Options()
        options.user = "mailer"
        options.password = "s3cret"
        options.excludeMechanisms = ["PLAIN"]
        let server = try AiosmtpdServer(options)
        defer { server.stop() }
        let config = SMTPServerConfig(host: "127.0.0.1", port: server.port, security: .none, username: "mailer", password: "s3cret")
        let c = try SMTPConnection.open(config, deadline: soon())
        defer { c.quit() }
        _ = try c.send(SMTPEnvelope(sender: "a@example.com", recipients: ["b@example.com"]),
                       message: sampleMessage, resetFirst: false, deadline: soon())
        #expect(eventually { (try? server.messages().first?.authenticated) == true })
    }

    @Test(arguments: [[String](), ["PLAIN"]])
    func wrongPasswordFailsWith535(excluded: [String]) throws {
        var options = AiosmtpdServer.Options()
        options.user = "mailer"
        options.password = "right"
        options.excludeMechanisms = excluded
        let server = try AiosmtpdServer(options)
        defer { server.stop() }
        let config = SMTPServerConfig(host: "127.0.0.1", port: server.port, security: .none, username: "mailer", password: "wrong-secret")
        let error = #expect(throws: SMTPError.self) { try SMTPConnection.open(config, deadline: soon()) }
        #expect(error?.stage == .auth)
        if case .reply(let r)? = error?.kind { #expect(r.code == 535) } else { Issue.record("expected 535, got \(String(describing: error))") }
        #expect(error?.description.hasPrefix("authentication failed: 535") == true)
        #expect(error?.description.contains("wrong-secret") == false)
    }

    @Test func pipelinedRefusalOfOneRecipientNeverSendsTheBody() throws {
        var options = AiosmtpdServer.Options()
        options.pipelining = true
        options.rejectRecipientsContaining = "nobody"
        let server = try AiosmtpdServer(options)
        defer { server.stop() }
        let c = try SMTPConnection.open(SMTPServerConfig(host: "127.0.0.1", port: server.port, security: .none), deadline: soon())
        defer { c.quit() }
        #expect(c.capabilities.contains(.pipelining))
        let error = #expect(throws: SMTPError.self) {
            try c.send(SMTPEnvelope(sender: "a@example.com", recipients: ["ok@example.com", "nobody@example.com"]),
                       message: sampleMessage, resetFirst: false, deadline: soon())
        }
        #expect(error?.stage == .rcpt)
        #expect(error?.description == "RCPT TO rejected: nobody@example.com: 550 5.1.1 <nobody@example.com>: User unknown (127.0.0.1:\(server.port))")
        // DATA got 354 for the accepted recipient; the only safe way out is to hang up.
        #expect(c.isBroken)
        usleep(200_000)
        #expect(try server.messages().isEmpty)
    }

    @Test func pipelinedRefusalOfAllRecipientsKeepsTheSession() throws {
        var options = AiosmtpdServer.Options()
        options.pipelining = true
        options.rejectRecipientsContaining = "nobody"
        let server = try AiosmtpdServer(options)
        defer { server.stop() }
        let c = try SMTPConnection.open(SMTPServerConfig(host: "127.0.0.1", port: server.port, security: .none), deadline: soon())
        defer { c.quit() }
        let error = #expect(throws: SMTPError.self) {
            try c.send(SMTPEnvelope(sender: "a@example.com", recipients: ["nobody@example.com"]),
                       message: sampleMessage, resetFirst: false, deadline: soon())
        }
        #expect(error?.stage == .rcpt)
        #expect(!c.isBroken)  // DATA was refused too, the RSET succeeded
        _ = try c.send(SMTPEnvelope(sender: "a@example.com", recipients: ["ok@example.com"]),
                       message: sampleMessage, resetFirst: true, deadline: soon())
        #expect(eventually { (try? server.messages().map(\.recipients)) == [["ok@example.com"]] })
    }
}

@Suite("Input checks before the network", .timeLimit(.minutes(1)))
struct InputCheckTests {
    @Test func heloNameWithLineBreakIsRefusedBeforeConnecting() {
        // Port 1 on 127.0.0.1 would refuse; the check must come first.
        let config = SMTPServerConfig(host: "127.0.0.1", port: 1, security: .none, heloName: "x\r\nMAIL FROM:<a@b>")
        let error = #expect(throws: SMTPError.self) { try SMTPConnection.open(config, deadline: soon()) }
        #expect(error?.stage == .ehlo)
        if case .protocolViolation? = error?.kind {} else { Issue.record("expected protocolViolation, got \(String(describing: error))") }
    }

    @Test func overlongLineIsRefusedBeforeMailFrom() throws {
        let sink = try SMTPSink()
        defer { sink.stop() }
        let c = try SMTPConnection.open(SMTPServerConfig(host: "127.0.0.1", port: sink.port, security: .none), deadline: soon())
        defer { c.quit() }
        let message = Array("Subject: x\r\n\r\n".utf8) + Array(repeating: UInt8(ascii: "y"), count: 999)
        let error = #expect(throws: SMTPError.self) {
            try c.send(SMTPEnvelope(sender: "a@example.com", recipients: ["b@example.com"]), message: message, resetFirst: false, deadline: soon())
        }
        #expect(error?.stage == .data)
        #expect(error?.description.contains("999 octets") == true)
        #expect(!c.isBroken)
        let fits = Array("Subject: x\r\n\r\n".utf8) + Array(repeating: UInt8(ascii: "y"), count: 998)
        _ = try c.send(SMTPEnvelope(sender: "a@example.com", recipients: ["b@example.com"]), message: fits, resetFirst: false, deadline: soon())
        #expect(eventually { sink.messageCount() == 1 })
    }

    @Test func nulInCredentialsIsRefused() throws {
        var options = AiosmtpdServer.Options()
        options.user = "mailer"
        options.password = "pw"
        let server = try AiosmtpdServer(options)
        defer { server.stop() }
        let config = SMTPServerConfig(host: "127.0.0.1", port: server.port, security: .none, username: "mailer\0admin", password: "pw")
        let error = #expect(throws: SMTPError.self) { try SMTPConnection.open(config, deadline: soon()) }
        #expect(error?.stage == .auth)
        if case .protocolViolation? = error?.kind {} else { Issue.record("expected protocolViolation, got \(String(describing: error))") }
    }
}

/// Workers that open their first TLS connections at once share one context
/// build (each build parses the whole trust store: 16 racing builds made
/// the first sends over TLS take 600-700 ms).
@Suite struct TLSContextTests {
    @Test func concurrentFirstUsesBuildTheContextOnce() throws {
        let cert = try TestCertificate.shared.get()
        // A CA file of its own, so no other test has built this context.
        let dir = try TempDir(prefix: "mailgate-tls-context")
        let caFile = dir.path + "/ca.pem"
        try FileManager.default.copyItem(atPath: cert.certPath, toPath: caFile)
        let contexts = Mutex<[ObjectIdentifier]>([])
        let failures = Mutex<[String]>([])
        DispatchQueue.concurrentPerform(iterations: 16) { _ in
            do {
                let context = try TLSContext.shared(caFile: caFile, verify: true)
                contexts.withLock { $0.append(ObjectIdentifier(context)) }
            } catch {
                failures.withLock { $0.append("\(error)") }
            }
        }
        #expect(failures.withLock { $0 }.isEmpty)
        #expect(Set(contexts.withLock { $0 }).count == 1)
        #expect(TLSContext.buildCount(caFile: caFile, verify: true) == 1)
    }
}
