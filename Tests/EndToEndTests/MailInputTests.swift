import Foundation
import MailgateTesting
import Testing

/// A user on the main capture server with a token, per test.
private func mailUser(_ prefix: String) async throws -> (E2E, String) {
    let env = try await E2E.get()
    let user = try await env.makeMailUser(prefix)
    return (env, try await env.token(user.name))
}

/// Sends a second message on the same user's (pooled) connection and waits
/// for it, so anything the first send might have smuggled has been seen.
private func fence(_ env: E2E, token: String) async throws {
    let marker = uniqueMarker("fence")
    let response = try await env.send(token: token, to: "fence@example.org", subject: marker, message: "fence")
    #expect(response.status == 200, "fence: \(response)")
    guard response.status == 200 else { return }
    _ = try await env.capture.waitForMessage(containing: marker)
}

/// Text with every line end (CRLF, bare CR, bare LF) as "\n".
/// Every line end as "\n". `crRunIsOneBreak`: a run of CRs ended by LF is
/// one line end (CR CR LF as a CRLF converted twice, SMTPWire.dataPayload's
/// reading); otherwise each bare CR is a line end of its own.
private func lineEnds(_ text: String, crRunIsOneBreak: Bool) -> String {
    let pattern = crRunIsOneBreak ? "\r+\n" : "\r\n"
    return text.replacingOccurrences(of: pattern, with: "\n", options: .regularExpression)
        .replacingOccurrences(of: "\r", with: "\n")
}

/// JSON string literal with \r \n \u0000 escaped (JSONSerialization does that).
private func jsonBody(to: String, subject: String, message: String) throws -> [UInt8] {
    [UInt8](try JSONSerialization.data(withJSONObject: ["to": to, "subject": subject, "message": message],
                                       options: [.withoutEscapingSlashes]))
}

/// Issue 4, mail input: header injection, addresses, SMTP smuggling,
/// long lines, UTF-8; asserted on the bytes the SMTP server received.
@Suite("Mail input through nginx")
struct MailInputTests {
    // MARK: Header injection

    @Test(arguments: ["\r", "\n", "\r\n", "\u{0}", "\r\nBcc: evil@example.net"])
    func controlCharactersInSubjectAre400AndNothingIsSent(injection: String) async throws {
        let (env, token) = try await mailUser("subjinj")
        let marker = uniqueMarker("subjinj")
        let response = try await env.send(token: token, to: "r@example.org", subject: "\(marker)\(injection)X-Injected: yes",
                                          message: "body")
        #expect(response.status == 400, "\(response)")
        #expect(response.isJSON && response.detail != nil)
        #expect(response.code == "invalid_request", "\(response)")
        #expect(env.capture.messages(containing: marker).isEmpty, "nothing may reach the SMTP server")
    }

    @Test(arguments: ["\r", "\n", "\r\n", "\u{0}", "\r\nBcc: evil@example.net"])
    func controlCharactersInToAre400AndNothingIsSent(injection: String) async throws {
        let (env, token) = try await mailUser("toinj")
        let marker = uniqueMarker("toinj")
        let response = try await env.send(token: token, to: "r@example.org\(injection)", subject: marker, message: "body")
        #expect(response.status == 400, "\(response)")
        #expect(response.code == "invalid_recipient", "\(response)")
        #expect(env.capture.messages(containing: marker).isEmpty, "nothing may reach the SMTP server")
    }

    @Test func rawUnescapedControlCharactersInJSONStringsAreRefused() async throws {
        let (env, token) = try await mailUser("rawctl")
        let marker = uniqueMarker("rawctl")
        for raw in ["\r", "\n", "\u{0}"] {
            let body = Array(#"{"to":"r@example.org","subject":"\#(marker)\#(raw)Bcc: x@example.net","message":"m"}"#.utf8)
            let response = try await env.sendRaw(token: token, body: body)
            #expect([400, 422].contains(response.status), "\(response)")
            let toBody = Array(#"{"to":"r@example.org\#(raw)","subject":"\#(marker)","message":"m"}"#.utf8)
            let toResponse = try await env.sendRaw(token: token, body: toBody)
            #expect([400, 422].contains(toResponse.status), "\(toResponse)")
        }
        #expect(env.capture.messages(containing: marker).isEmpty)
    }

    @Test func nulInMessageIsRefused() async throws {
        let (env, token) = try await mailUser("nulbody")
        let marker = uniqueMarker("nulbody")
        let response = try await env.send(token: token, to: "r@example.org", subject: marker, message: "a\u{0}b")
        #expect(response.status == 400, "\(response)")
        #expect(env.capture.messages(containing: marker).isEmpty)
    }

    // MARK: Addresses

    /// Issue 10: a display name of 600 escaped quotes is 1,200 octets on the
    /// wire; it used to pass the checks and make a To: line SMTP refuses
    /// (502 after connecting). Counted as written, it is encoded and folded.
    @Test func displayNameOfEscapedQuotesIsDeliveredWithinLineLimits() async throws {
        let (env, token) = try await mailUser("quotes")
        let marker = uniqueMarker("quotes")
        let to = "\"" + String(repeating: "\\\"", count: 600) + "\" <rcpt@example.org>"
        let response = try await env.send(token: token, to: to, subject: marker, message: "m")
        #expect(response.status == 200, "\(response)")
        let message = try await env.capture.waitForMessage(containing: marker)
        #expect(message.maxLineLength <= 998, "longest line \(message.maxLineLength)")
        #expect(message.envelope.rcptTos == ["rcpt@example.org"])
    }

    @Test(arguments: [
        "a@example.org, b@example.org",
        "a@example.org;b@example.org",
        "<a@example.org> <b@example.org>",
        "a@example.org b@example.org",
        "Group: a@example.org, b@example.org;",
        "\"Name\r\nBcc: evil@example.net\" <a@example.org>",
        "Name\nBcc: evil@example.net <a@example.org>",
        "Name <a@example.org>\r\nBcc: evil@example.net",
        "not-an-address",
        "",
        "a@",
        "@example.org",
        "a@@example.org",
        "<a@example.org",
        "a@example.org>",
        "\"a>b\"@example.org",
        "Name <\"x<y\"@example.org>",
    ])
    func unusableRecipientIs400AndNothingIsSent(address: String) async throws {
        let (env, token) = try await mailUser("badaddr")
        let marker = uniqueMarker("badaddr")
        let response = try await env.send(token: token, to: address, subject: marker, message: "m")
        #expect(response.status == 400, "\(address.debugDescription): \(response)")
        #expect(response.isJSON && response.detail != nil)
        #expect(response.code == "invalid_recipient", "\(address.debugDescription): \(response)")
        #expect(env.capture.messages(containing: marker).isEmpty)
    }

    @Test func addressLengthLimits() async throws {
        let (env, token) = try await mailUser("addrlen")
        let local64 = String(repeating: "l", count: 64)
        let label63 = String(repeating: "d", count: 63)
        // 64 + 1 + 189 = 254 octets: the longest allowed address.
        let domain189 = [label63, label63, String(repeating: "e", count: 57), "org"].joined(separator: ".")
        try #require(domain189.utf8.count == 189)
        let longest = local64 + "@" + domain189
        try #require(longest.utf8.count == 254)

        let okMarker = uniqueMarker("addr254")
        let ok = try await env.send(token: token, to: longest, subject: okMarker, message: "m")
        #expect(ok.status == 200, "254 octets is allowed: \(ok)")
        if ok.status == 200 {
            let message = try await env.capture.waitForMessage(containing: okMarker)
            #expect(message.envelope.rcptTos == [longest])
        }

        let tooLong = local64 + "@" + "f" + domain189  // 255 octets
        let tooLongMarker = uniqueMarker("addr255")
        let refused = try await env.send(token: token, to: tooLong, subject: tooLongMarker, message: "m")
        #expect(refused.status == 400, "255 octets: \(refused)")

        let local65 = String(repeating: "l", count: 65) + "@example.org"
        let local65Marker = uniqueMarker("local65")
        let refusedLocal = try await env.send(token: token, to: local65, subject: local65Marker, message: "m")
        #expect(refusedLocal.status == 400, "65-octet local part: \(refusedLocal)")

        let local64Marker = uniqueMarker("local64")
        let okLocal = try await env.send(token: token, to: local64 + "@example.org", subject: local64Marker, message: "m")
        #expect(okLocal.status == 200, "64-octet local part is allowed: \(okLocal)")
        #expect(env.capture.messages(containing: tooLongMarker).isEmpty)
        #expect(env.capture.messages(containing: local65Marker).isEmpty)
    }

    @Test func displayNameRecipientIsDeliveredWithNameIntact() async throws {
        let (env, token) = try await mailUser("dispname")
        let marker = uniqueMarker("dispname")
        let response = try await env.send(token: token, to: "Jürgen Müller <jm@example.org>", subject: marker, message: "m")
        #expect(response.status == 200, "\(response)")
        let message = try await env.capture.waitForMessage(sentWith: response)
        #expect(message.envelope.rcptTos == ["jm@example.org"])
        let parsed = try await parseEmail(message)
        #expect(parsed.to?.contains("Jürgen Müller") == true, "\(parsed.to ?? "nil")")
        #expect(parsed.to?.contains("<jm@example.org>") == true)
        #expect(message.rawLines.allSatisfy { line in line.allSatisfy { $0 < 0x80 } } || parsed.transferEncoding == "8bit",
                "non-ASCII only in an 8bit body, never raw in headers")
    }

    // MARK: SMTP smuggling

    @Test(arguments: ["\n.\n", "\n.\r\n", "\r\n.\r\n", "\r.\r", "\r\r\n", "\r\n.\n", "\n..\n", "\r"])
    func smugglingBodyArrivesAsExactlyOneIntactMessage(separator: String) async throws {
        let (env, token) = try await mailUser("smuggle")
        let marker = uniqueMarker("smuggle")
        let lines = ["first line \(marker)", ".", "MAIL FROM:<evil-\(marker)@example.net>", "RCPT TO:<victim@example.net>", "DATA",
                     "Subject: smuggled \(marker)", "", "smuggled body", ".", "QUIT", "last line"]
        let body = lines.joined(separator: separator)
        let response = try await env.send(token: token, to: "r@example.org", subject: "Smuggle \(marker)", message: body)
        #expect(response.status == 200, "\(response)")
        try await fence(env, token: token)

        let found = env.capture.messages(containing: marker)
        #expect(found.count == 1, "exactly one message, got \(found.count)")
        let smuggled = env.capture.allMessages().filter { $0.envelope.mailFrom == "evil-\(marker)@example.net" }
        #expect(smuggled.isEmpty, "SMTP smuggling: the server received a second, injected transaction from evil-\(marker)@example.net")
        let message = try #require(found.first)
        #expect(!message.hasBareCROrLF, "the wire form has CRLF line ends only")
        #expect(message.maxLineLength <= 998)
        let parsed = try await parseEmail(message)
        #expect(parsed.subject == "Smuggle \(marker)")
        // Both readings of "\r\r\n" (one line end or two) keep the text intact.
        let decoded = parsed.text.map { lineEnds($0, crRunIsOneBreak: false).trimmingSuffixNewlines }
        #expect(decoded == lineEnds(body, crRunIsOneBreak: true).trimmingSuffixNewlines
                    || decoded == lineEnds(body, crRunIsOneBreak: false).trimmingSuffixNewlines,
                "decoded: \(String(describing: parsed.body?.debugDescription))")
    }

    // MARK: Long lines, dots, UTF-8

    @Test func hundredThousandCharacterLineIsEncodedAndDecodesBack() async throws {
        let (env, token) = try await mailUser("longline")
        let marker = uniqueMarker("longline")
        let body = marker + String(repeating: "x", count: 100_000 - marker.count)
        let response = try await env.send(token: token, to: "r@example.org", subject: marker, message: body)
        #expect(response.status == 200, "\(response)")
        let message = try await env.capture.waitForMessage(sentWith: response, timeout: 20)
        #expect(message.maxLineLength <= 998, "longest raw line \(message.maxLineLength)")
        let parsed = try await parseEmail(message)
        #expect(parsed.text?.trimmingSuffixNewlines == body)
    }

    @Test func longMixedLinesAndLongUTF8LineDecodeBack() async throws {
        let (env, token) = try await mailUser("longutf8")
        let marker = uniqueMarker("longutf8")
        let body = "short \(marker)\n" + String(repeating: "Grüße ☃ 🎉 ", count: 3000) + "\n" + String(repeating: "y", count: 998)
            + "\n" + String(repeating: "z", count: 999) + "\nend"
        let response = try await env.send(token: token, to: "r@example.org", subject: marker, message: body)
        #expect(response.status == 200, "\(response)")
        let message = try await env.capture.waitForMessage(sentWith: response)
        #expect(message.maxLineLength <= 998)
        let parsed = try await parseEmail(message)
        #expect(parsed.text?.trimmingSuffixNewlines == body)
    }

    @Test(arguments: [".", "..", "...", ".\n.\n.", ". .\n..\n...", String(repeating: ".", count: 2000)])
    func bodyOfOnlyDotsIsDeliveredIntact(dots: String) async throws {
        let (env, token) = try await mailUser("dots")
        let marker = uniqueMarker("dots")
        let response = try await env.send(token: token, to: "r@example.org", subject: marker, message: dots)
        #expect(response.status == 200, "\(response)")
        try await fence(env, token: token)
        let found = env.capture.messages(containing: marker)
        #expect(found.count == 1)
        let message = try #require(found.first)
        #expect(message.maxLineLength <= 998)
        let parsed = try await parseEmail(message)
        #expect(parsed.text?.trimmingSuffixNewlines == dots, "decoded: \(String(describing: parsed.body?.prefix(100).debugDescription))")
    }

    @Test(arguments: ["Grüße aus Köln — ☃ naïve café", "🎉🚀 Emoji only 👍🏽👨‍👩‍👧", "日本語の件名です、とても長い件名" + String(repeating: "長", count: 200)])
    func utf8SubjectAndBodyAreEncodedAndDecodeBack(text: String) async throws {
        let (env, token) = try await mailUser("utf8")
        let marker = uniqueMarker("utf8")
        let subject = "\(text) \(marker)"
        let body = "Body: \(text)\nZweite Zeile: ÄÖÜ äöü ß €\n"
        let response = try await env.send(token: token, to: "r@example.org", subject: subject, message: body)
        #expect(response.status == 200, "\(response)")
        // The subject is RFC 2047 encoded, so look for the message by its ASCII marker.
        let message = try await env.capture.waitForMessage(sentWith: response)
        #expect(message.maxLineLength <= 998)
        let headerEnd = message.raw.firstRange(of: Array("\r\n\r\n".utf8))?.lowerBound ?? message.raw.endIndex
        #expect(message.raw[..<headerEnd].allSatisfy { $0 < 0x80 }, "headers must be 7-bit (RFC 2047)")
        let parsed = try await parseEmail(message)
        #expect(parsed.subject == subject)
        #expect(parsed.text == body)
        #expect(parsed.charset == "utf-8")
        #expect(parsed.defects.isEmpty, "\(parsed.defects)")
    }

    @Test func longASCIISubjectIsFoldedAndDecodesBack() async throws {
        let (env, token) = try await mailUser("longsubj")
        let marker = uniqueMarker("longsubj")
        let subject = marker + " " + (0..<400).map { "word\($0)" }.joined(separator: " ") + " " + String(repeating: "n", count: 1200)
        let response = try await env.send(token: token, to: "r@example.org", subject: subject, message: "m")
        #expect(response.status == 200, "\(response)")
        let message = try await env.capture.waitForMessage(sentWith: response)
        #expect(message.maxLineLength <= 998)
        let parsed = try await parseEmail(message)
        #expect(parsed.subject == subject)
    }
}

extension String {
    /// Without trailing line ends (a renderer may end the body with CRLF).
    var trimmingSuffixNewlines: String {
        var text = self
        while text.hasSuffix("\n") || text.hasSuffix("\r") { text.removeLast() }
        return text
    }
}
