import Base64
import MIME
import Testing
@testable import SMTP

@Suite("DATA payload: CRLF normalisation and dot-stuffing")
struct DataPayloadTests {
    private func payload(_ s: String) -> String {
        String(decoding: SMTPWire.dataPayload(Array(s.utf8)), as: UTF8.self)
    }

    @Test(arguments: [
        // (input, expected bytes on the wire after 354)
        ("a\r\nb\r\n", "a\r\nb\r\n.\r\n"),
        ("a\nb\n", "a\r\nb\r\n.\r\n"),
        ("x", "x\r\n.\r\n"),                          // missing final newline
        ("", ".\r\n"),                                // empty message
        ("a\rb", "a\r\nb\r\n.\r\n"),                  // bare CR
        ("a\r\r\nb", "a\r\n\r\nb\r\n.\r\n"),          // CR CR LF: a bare CR, then CRLF (MIME.LineBreak)
        ("a\r\r\r\nb", "a\r\n\r\n\r\nb\r\n.\r\n"),
        ("a\n\nb", "a\r\n\r\nb\r\n.\r\n"),            // blank line kept
        ("a\r\rb", "a\r\n\r\nb\r\n.\r\n"),            // two lone CRs, two line ends
        (".\r\n", "..\r\n.\r\n"),                     // dot on the first line
        (".hidden\r\n", "..hidden\r\n.\r\n"),
        ("...", "....\r\n.\r\n"),                     // body of only dots
        (".\n.\n.", "..\r\n..\r\n..\r\n.\r\n"),
        ("a.b\r\n", "a.b\r\n.\r\n"),                  // dot inside a line untouched
        // SMTP smuggling: every end-of-data look-alike gets stuffed.
        ("a\n.\nb", "a\r\n..\r\nb\r\n.\r\n"),
        ("a\n.\r\nb", "a\r\n..\r\nb\r\n.\r\n"),
        ("a\r\n.\nb", "a\r\n..\r\nb\r\n.\r\n"),
        ("a\r\n.\r\nb", "a\r\n..\r\nb\r\n.\r\n"),
        ("a\r.\rb", "a\r\n..\r\nb\r\n.\r\n"),
        ("a\r\n.\r\nMAIL FROM:<evil@x>\r\n", "a\r\n..\r\nMAIL FROM:<evil@x>\r\n.\r\n"),
        ("a\r\n.\r\n", "a\r\n..\r\n.\r\n"),
    ])
    func examples(_ input: String, _ expected: String) {
        #expect(payload(input) == expected)
    }

    /// Exhaustive over every string up to length 7 from the alphabet that
    /// matters ("a", ".", CR, LF): the invariants that make smuggling
    /// impossible hold, and undoing the stuffing gives the normalised input.
    @Test func invariantsHoldForAllShortInputs() {
        let alphabet: [UInt8] = [UInt8(ascii: "a"), UInt8(ascii: "."), 13, 10]
        var inputs: [[UInt8]] = [[]]
        var frontier: [[UInt8]] = [[]]
        for _ in 1...7 {
            frontier = frontier.flatMap { prefix in alphabet.map { prefix + [$0] } }
            inputs += frontier
        }
        var failures = 0
        for input in inputs {
            let out = SMTPWire.dataPayload(input)
            if !holdsInvariants(input, out) {
                failures += 1
                if failures < 5 { Issue.record("invariant broken for \(input) -> \(out)") }
            }
        }
        #expect(failures == 0)
        #expect(inputs.count == 21845)
    }

    /// A BDAT chunk is the DATA payload without the stuffing and the "."
    /// line: the same message arrives either way. Its announced length is
    /// its length.
    @Test func chunkBodyIsTheUnstuffedDataPayload() {
        let alphabet: [UInt8] = [UInt8(ascii: "a"), UInt8(ascii: "."), 13, 10]
        var frontier: [[UInt8]] = [[]]
        var failures = 0
        for _ in 1...6 {
            frontier = frontier.flatMap { prefix in alphabet.map { prefix + [$0] } }
            for input in frontier {
                let chunk = SMTPWire.chunkBody(input)
                var unstuffed: [UInt8] = []
                for line in SMTPWire.dataPayload(input).split(separator: 10, omittingEmptySubsequences: false).dropLast(2) {
                    unstuffed += (line.first == 46 ? line.dropFirst() : line) + [10]
                }
                if chunk != unstuffed || SMTPWire.chunkBodyLength(input) != chunk.count {
                    failures += 1
                    if failures < 5 { Issue.record("chunk of \(input) is \(chunk), DATA gives \(unstuffed)") }
                }
            }
        }
        #expect(failures == 0)
        #expect(SMTPWire.chunkBody(Array(".\n..x\ra".utf8)) == Array(".\r\n..x\r\na\r\n".utf8))
        #expect(SMTPWire.chunkBody([]) == [])
    }

    private func holdsInvariants(_ input: [UInt8], _ out: [UInt8]) -> Bool {
        // Ends with the terminator, which is preceded by a line end (or is all there is).
        guard out.count >= 3, Array(out.suffix(3)) == [46, 13, 10] else { return false }
        let body = Array(out.dropLast(3))
        guard body.isEmpty || Array(body.suffix(2)) == [13, 10] else { return false }
        // Every CR is followed by LF and every LF preceded by CR.
        for (i, b) in body.enumerated() {
            if b == 13 && (i + 1 >= body.count || body[i + 1] != 10) { return false }
            if b == 10 && (i == 0 || body[i - 1] != 13) { return false }
        }
        // Split into lines; no line is exactly "." and dot-leading lines are stuffed.
        var lines: [[UInt8]] = []
        var current: [UInt8] = []
        var i = 0
        while i < body.count {
            if body[i] == 13 { lines.append(current); current = []; i += 2; continue }
            current.append(body[i]); i += 1
        }
        for line in lines {
            if line == [46] { return false }
            if line.first == 46 && (line.count < 2 || line[1] != 46) { return false }
        }
        // Unstuffing gives back the input's content with line ends normalised.
        let unstuffed = lines.map { $0.first == 46 ? Array($0.dropFirst()) : $0 }
        return unstuffed == expectedLines(input)
    }

    /// Reference splitter: CR LF, a lone CR or a lone LF ends a line
    /// (the rule of MIME.LineBreak).
    private func expectedLines(_ input: [UInt8]) -> [[UInt8]] {
        var s = String(decoding: input, as: UTF8.self)
        s = s.replacingOccurrences("\r\n", "\n").replacingOccurrences("\r", "\n")
        var lines = s.split(separator: "\n", omittingEmptySubsequences: false).map { Array($0.utf8) }
        if lines.last == [] { lines.removeLast() }
        return lines
    }
}

private extension String {
    func replacingOccurrences(_ target: String, _ replacement: String) -> String {
        var result = ""
        var rest = self[...]
        while let range = rest.range(of: target) {
            result += rest[..<range.lowerBound] + replacement
            rest = rest[range.upperBound...]
        }
        return result + rest
    }
}

@Suite("Envelope, commands, AUTH encoding, config and error texts")
struct WireTests {
    /// What goes inside MAIL FROM:<...> / RCPT TO:<...> is an EmailAddress
    /// (MIME's parser decided it), written as is; "" is the null sender.
    @Test(arguments: ["a@example.com", "", "\"quoted local\"@example.com"])
    func acceptableAddresses(_ address: String) throws {
        let envelope = try SMTPEnvelope(sender: address, recipients: [address.isEmpty ? "b@example.com" : address])
        #expect(SMTPCommand.mail(from: envelope.sender, parameters: []).line == "MAIL FROM:<\(address)>")
        if !address.isEmpty { #expect(SMTPCommand.rcpt(to: envelope.recipients[0]).line == "RCPT TO:<\(address)>") }
    }

    /// Non-ASCII local parts need SMTPUTF8, which the address type does not
    /// support: such an address cannot reach the envelope.
    @Test(arguments: ["a@b\r\nRCPT TO:<c@d>", "a@b\n", "a@b\r", "a\0@b", "a>@b", "<a@b", "a@b> SIZE=1", "ünï@example.com"])
    func refusedAddresses(_ address: String) {
        #expect(throws: AddressError.self) { try SMTPEnvelope(sender: address, recipients: ["b@example.com"]) }
    }

    @Test func commandsRenderTheirWireForm() throws {
        let a = try EmailAddress(localPart: "a", domain: "example.com")
        #expect(SMTPCommand.mail(from: a, parameters: [.size(1234), .body8BitMIME]).wire == Array("MAIL FROM:<a@example.com> SIZE=1234 BODY=8BITMIME\r\n".utf8))
        #expect(SMTPCommand.mail(from: nil, parameters: []).wire == Array("MAIL FROM:<>\r\n".utf8))
        #expect(SMTPCommand.rcpt(to: a).wire == Array("RCPT TO:<a@example.com>\r\n".utf8))
        #expect(SMTPCommand.ehlo("mail.example.com").wire == Array("EHLO mail.example.com\r\n".utf8))
        for (command, line) in [(SMTPCommand.data, "DATA"), (.rset, "RSET"), (.noop, "NOOP"), (.quit, "QUIT"), (.startTLS, "STARTTLS")] {
            #expect(command.wire == Array((line + "\r\n").utf8))
        }
        let auth = SMTPCommand.auth(.plain, initialResponse: SMTPWire.authPlain(username: "user", password: "pass"))
        #expect(auth.line == "AUTH PLAIN AHVzZXIAcGFzcw==")
        #expect(!auth.description.contains("AHVzZXIAcGFzcw=="))
        #expect(!SMTPCommand.authResponse(SMTPWire.authLogin("pass")).description.contains(SMTPWire.authLogin("pass")))
    }

    @Test func ehloCapabilitiesAreTyped() {
        let reply = SMTPReply(code: 250, lines: ["mx.example.com greets you", "PIPELINING", "size 35882577", "8BITMIME",
                                                 "AUTH PLAIN LOGIN cram-md5", "AUTH=XOAUTH2", "STARTTLS", "SMTPUTF8", "CHUNKING",
                                                 "ENHANCEDSTATUSCODES", "X-EXPS GSSAPI"])
        let info = ServerInfo(ehlo: reply)
        #expect(info.name == "mx.example.com greets you")
        for feature: SMTPExtension in [.pipelining, .eightBitMIME, .startTLS, .smtpUTF8, .chunking, .enhancedStatusCodes, .other("X-EXPS")] {
            #expect(info.supports(feature))
        }
        #expect(info.size.offered && info.size.limit == 35_882_577)
        #expect(info.authMechanisms == [.plain, .login, .xoauth2, .other("CRAM-MD5")])
        #expect(!info.supports(.dsn))
        let bare = ServerInfo(ehlo: SMTPReply(code: 250, lines: ["x", "SIZE"]))
        #expect(bare.size.offered && bare.size.limit == nil)
        #expect(ServerInfo(ehlo: SMTPReply(code: 250, lines: ["x"])).extensions.isEmpty)
    }

    @Test func base64Vectors() {  // RFC 4648 section 10: the encoder AUTH uses
        #expect(Base64.standard.encode(Array("".utf8)) == "")
        #expect(Base64.standard.encode(Array("f".utf8)) == "Zg==")
        #expect(Base64.standard.encode(Array("fo".utf8)) == "Zm8=")
        #expect(Base64.standard.encode(Array("foo".utf8)) == "Zm9v")
        #expect(Base64.standard.encode(Array("foob".utf8)) == "Zm9vYg==")
        #expect(Base64.standard.encode(Array("fooba".utf8)) == "Zm9vYmE=")
        #expect(Base64.standard.encode(Array("foobar".utf8)) == "Zm9vYmFy")
        #expect(Base64.standard.encode([0xFB, 0xFF]) == "+/8=")
        #expect(SMTPWire.authLogin("foobar") == "Zm9vYmFy")
    }

    @Test func authPlainInitialResponse() {
        // base64("\0user\0pass")
        #expect(SMTPWire.authPlain(username: "user", password: "pass") == "AHVzZXIAcGFzcw==")
    }

    @Test func configNeverPrintsThePassword() {
        let secret = "hunter2-very-secret"
        let config = SMTPServerConfig(host: "smtp.example.com", port: 587, security: .starttls,
                                      username: "me", password: secret)
        var dumped = ""
        dump(config, to: &dumped)
        for text in [config.description, config.debugDescription, "\(config)", String(reflecting: config), dumped] {
            #expect(!text.contains(secret))
            #expect(text.contains("smtp.example.com"))
        }
        #expect(config.description.contains("<redacted>"))
    }

    @Test func configDefaults() {
        let c = SMTPServerConfig(host: "h", port: 25, security: .none)
        #expect(c.heloName == "localhost")
        #expect(c.verifyCertificates)
        #expect(c.connectTimeout == .seconds(10) && c.commandTimeout == .seconds(10))
        #expect(c.login == .none && c.username == nil && c.caFile == nil)
        #expect(SMTPServerConfig(host: "::1", port: 25, security: .none).endpoint == "[::1]:25")
    }

    @Test func errorDescriptions() {
        let rcpt = SMTPError(.reply(SMTPReply(code: 550, enhancedStatus: "5.1.1", lines: ["User unknown"])), stage: .rcpt)
        #expect(rcpt.description == "RCPT TO rejected: 550 5.1.1 User unknown")
        #expect(rcpt.isSafeToRetry)
        let refused = SMTPError(.connectionRefused, stage: .connect, server: "smtp.example.com:587")
        #expect(refused.description == "connection to smtp.example.com:587 refused")
        let tls = SMTPError(.tls("TLS handshake failed: certificate verify failed (unable to get local issuer certificate)"), stage: .tls)
        #expect(tls.description == "TLS handshake failed: certificate verify failed (unable to get local issuer certificate)")
        let afterData = SMTPError(.timeout, stage: .message)
        #expect(!afterData.isSafeToRetry)
        #expect(SMTPError(.connectionClosed, stage: .data).isSafeToRetry)
    }

    @Test func deadConnectionClassification() {
        #expect(SMTPError(.connectionClosed, stage: .mail).looksLikeDeadConnection)
        #expect(SMTPError(.reply(SMTPReply(code: 421, lines: [])), stage: .rcpt).looksLikeDeadConnection)
        #expect(SMTPError(.timeout, stage: .rset).looksLikeDeadConnection)
        #expect(SMTPError(.connectFailed("write failed: Broken pipe"), stage: .mail).looksLikeDeadConnection)
        #expect(SMTPError(.writeFailed("send failed: Broken pipe"), stage: .mail).looksLikeDeadConnection)
        #expect(SMTPError(.readFailed("recv failed: No route to host"), stage: .rcpt).looksLikeDeadConnection)
        #expect(!SMTPError(.reply(SMTPReply(code: 550, lines: [])), stage: .rcpt).looksLikeDeadConnection)
        #expect(!SMTPError(.reply(SMTPReply(code: 452, lines: [])), stage: .rcpt).looksLikeDeadConnection)
        #expect(!SMTPError(.timeout, stage: .mail).looksLikeDeadConnection)
    }
}

@Suite("Input limits")
struct InputLimitTests {
    @Test func longestLineCountsEveryKindOfLineEnd() {
        #expect(LineBreak.longestLine(in: []) == 0)
        #expect(LineBreak.longestLine(in: Array("abc".utf8)) == 3)
        #expect(LineBreak.longestLine(in: Array("ab\r\nabcd\nx\rabcde".utf8)) == 5)
        #expect(LineBreak.longestLine(in: Array("abcdef\r\n".utf8)) == 6)
    }

    @Test(arguments: ["mail.example.com", "[127.0.0.1]", "localhost"])
    func acceptableHeloNames(_ name: String) {
        #expect(SMTPWire.heloNameProblem(name) == nil)
    }

    @Test(arguments: ["", "a b", "host\r\nMAIL FROM:<x>", "host\n", "host\0", "tab\there"])
    func refusedHeloNames(_ name: String) {
        #expect(SMTPWire.heloNameProblem(name) != nil)
    }
}
