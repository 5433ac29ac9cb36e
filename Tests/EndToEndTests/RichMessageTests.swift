import Foundation
import MailgateTesting
import Testing

/// Issue 8: several recipients, cc/bcc, reply-to, HTML, attachments, inline
/// images and custom headers, through nginx into a real SMTP server,
/// asserted on what the server received (envelope, and the message as
/// Python's `email` package parses it).
@Suite("Rich messages")
struct RichMessageTests {
    @Test func recipientsGoToTheEnvelopeOnceAndBccIntoNoHeader() async throws {
        let env = try await E2E.get()
        let user = try await env.makeMailUser("rich-rcpt")
        let token = try await env.token(user.name)
        let marker = uniqueMarker("rich-rcpt")
        let response = try await env.sendJSON(token: token, [
            "to": ["Ann Example <ann@example.org>", "bob@example.net"],
            "cc": "Carl <carl@example.com>",
            "bcc": ["hidden@example.biz", "BOB@EXAMPLE.NET", "bob@Example.Net"],
            "reply_to": ["Replies <replies@example.org>"],
            "subject": marker, "message": "Hello all.\n",
        ])
        #expect(response.status == 200, "\(response)")
        // BOB@EXAMPLE.NET differs from bob@example.net in the local part (which
        // servers may tell apart); bob@Example.Net only in the domain's case.
        #expect(response.json?["recipients"] as? Int == 5, "\(response)")
        let message = try await env.capture.waitForMessage(sentWith: response)
        #expect(message.envelope.rcptTos == ["ann@example.org", "bob@example.net", "carl@example.com",
                                             "hidden@example.biz", "BOB@EXAMPLE.NET"], "\(message.envelope.rcptTos)")
        let parsed = try await parseEmail(message)
        #expect(parsed.to == "Ann Example <ann@example.org>, bob@example.net")
        #expect(parsed.header("Cc") == "Carl <carl@example.com>")
        #expect(parsed.header("Reply-To") == "Replies <replies@example.org>")
        #expect(parsed.headerCount("Bcc") == 0)
        #expect(!String(decoding: message.raw, as: UTF8.self).lowercased().contains("hidden"), "no header or part names the bcc")
        #expect(parsed.defects.isEmpty, "\(parsed.defects)")
    }

    @Test func htmlMakesAnAlternativeTextFirst() async throws {
        let env = try await E2E.get()
        let user = try await env.makeMailUser("rich-html")
        let token = try await env.token(user.name)
        let marker = uniqueMarker("rich-html")
        let text = "Plain text, naïve café.\n"
        let html = "<html><body><p>" + String(repeating: "A long line of HTML without breaks. ", count: 60) + "naïve</p></body></html>"
        let response = try await env.sendJSON(token: token, ["to": "r@example.org", "subject": marker, "message": text, "html": html])
        #expect(response.status == 200, "\(response)")
        let parsed = try await parseEmail(try await env.capture.waitForMessage(sentWith: response))
        #expect(parsed.structure == "multipart/alternative(text/plain,text/html)")
        #expect(parsed.parts.map(\.charset) == ["utf-8", "utf-8"])
        #expect(parsed.parts.first?.text == text)
        // A part's content ends with a line end (the renderer adds CRLF to a
        // text that has none); nothing else differs.
        #expect(parsed.parts.last?.text == html + "\n")
        #expect(parsed.defects.isEmpty, "\(parsed.defects)")
    }

    @Test func attachmentsAndInlineImagesArriveByteForByte() async throws {
        let env = try await E2E.get()
        let user = try await env.makeMailUser("rich-attach")
        let token = try await env.token(user.name)
        let marker = uniqueMarker("rich-attach")
        let binary = (0..<3000).map { UInt8(truncatingIfNeeded: $0 * 7 + $0 / 256) }
        let image = [UInt8](repeating: 0x89, count: 1) + Array("PNG\r\n\u{1A}\n".utf8) + (0..<500).map { UInt8($0 % 251) }
        let response = try await env.sendJSON(token: token, [
            "to": "r@example.org", "subject": marker, "message": "See the attachment.\n",
            "html": "<p>Logo: <img src=\"cid:logo@mailgate\"></p>",
            "attachments": [
                ["filename": "report.pdf", "content": Data(binary).base64EncodedString()],
                ["filename": "Résumé ünïcode.txt", "content": Data("naïve\n".utf8).base64EncodedString(),
                 "content_type": "text/plain"],
                ["filename": "logo.png", "content": Data(image).base64EncodedString(), "content_id": "logo@mailgate"],
                ["filename": "data.unknownext", "content": Data([1, 2, 3]).base64EncodedString()],
            ],
        ])
        #expect(response.status == 200, "\(response)")
        let message = try await env.capture.waitForMessage(sentWith: response)
        let parsed = try await parseEmail(message)
        #expect(parsed.structure == "multipart/mixed(multipart/alternative(text/plain,multipart/related(text/html,image/png)),application/pdf,text/plain,application/octet-stream)",
                "\(parsed.structure)")
        let pdf = try #require(parsed.parts.first { $0.filename == "report.pdf" })
        #expect(pdf.content == binary)
        #expect(pdf.disposition == "attachment")
        #expect(pdf.transferEncoding == "base64")
        let named = try #require(parsed.parts.first { $0.filename == "Résumé ünïcode.txt" }, "the non-ASCII name reads back")
        #expect(named.content == Array("naïve\n".utf8))
        let logo = try #require(parsed.parts.first { $0.contentType == "image/png" })
        #expect(logo.content == image)
        #expect(logo.contentID == "<logo@mailgate>")
        #expect(logo.disposition == "inline")
        #expect(parsed.parts.last?.content == [1, 2, 3])
        #expect(parsed.defects.isEmpty, "\(parsed.defects)")
        #expect(message.maxLineLength <= 78, "base64 at 76 columns, headers folded: \(message.maxLineLength)")
    }

    @Test func allowedCustomHeadersAreWrittenEncodedAndFolded() async throws {
        let env = try await E2E.get()
        let user = try await env.makeMailUser("rich-headers")
        let token = try await env.token(user.name)
        let marker = uniqueMarker("rich-headers")
        let long = String(repeating: "<https://example.org/unsubscribe/abcdefghij>, ", count: 4) + "<mailto:u@example.org>"
        let response = try await env.sendJSON(token: token, [
            "to": "r@example.org", "subject": marker, "message": "m",
            "headers": ["X-Campaign": "Été 2026", "List-Unsubscribe": long, "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                        "in-reply-to": "<abc@example.org>"],
        ])
        #expect(response.status == 200, "\(response)")
        let message = try await env.capture.waitForMessage(sentWith: response)
        let parsed = try await parseEmail(message)
        #expect(parsed.header("X-Campaign") == "Été 2026")
        #expect(parsed.header("List-Unsubscribe") == long)
        #expect(parsed.header("List-Unsubscribe-Post") == "List-Unsubscribe=One-Click")
        #expect(parsed.header("In-Reply-To") == "<abc@example.org>")
        #expect(message.maxLineLength <= 78)
        #expect(parsed.defects.isEmpty, "\(parsed.defects)")
    }

    /// Each refusal of the request itself: the right status and code, and
    /// nothing reaches the server.
    @Test(arguments: [
        (["headers": ["Bcc": "x@example.org"]], 400, "header_not_allowed", "Bcc"),
        (["headers": ["content-type": "text/html"]], 400, "header_not_allowed", "content-type"),
        (["headers": ["X-Evil": "a\r\nBcc: x@example.org"]], 400, "header_not_allowed", "X-Evil"),
        (["headers": ["Bad Name": "v"]], 400, "header_not_allowed", "Bad Name"),
        (["attachments": [["filename": "a.txt", "content": "not base64!"]]], 400, "invalid_attachment", "Invalid attachment 0"),
        (["attachments": [["content": "YQ=="]]], 400, "invalid_attachment", "filename"),
        (["attachments": [["filename": "../etc/passwd", "content": "YQ=="]]], 400, "invalid_attachment", "Invalid attachment 0"),
        (["attachments": [["filename": "a\r\nb.txt", "content": "YQ=="]]], 400, "invalid_attachment", "Invalid attachment 0"),
        (["cc": ["ok@example.org", "not an address"]], 400, "invalid_recipient", "cc[1]"),
        (["reply_to": "nope"], 400, "invalid_recipient", "reply_to"),
    ] as [([String: any Sendable], Int, String, String)])
    func refusalsSendNothing(extra: [String: any Sendable], status: Int, code: String, mentions: String) async throws {
        let env = try await E2E.get()
        let user = try await env.makeMailUser("rich-refuse")
        let token = try await env.token(user.name)
        let marker = uniqueMarker("rich-refuse")
        var body: [String: Any] = ["to": "r@example.org", "subject": marker, "message": "m"]
        for (key, value) in extra { body[key] = value }
        let response = try await env.sendJSON(token: token, body)
        #expect(response.status == status, "\(response)")
        #expect(response.code == code, "\(response)")
        #expect(response.detail?.contains(mentions) == true, "\(response)")
        try await Task.sleep(for: .milliseconds(200))
        #expect(env.capture.messages(containing: marker).isEmpty)
    }

    @Test func wrongJSONTypesAre422WithThePath() async throws {
        let env = try await E2E.get()
        let user = try await env.makeMailUser("rich-422")
        let token = try await env.token(user.name)
        let response = try await env.sendJSON(token: token, [
            "to": ["a@example.org", 5], "subject": "s", "message": "m",
            "attachments": [["filename": "a", "content": "YQ=="], ["filename": "b", "content": "YQ=="], ["filename": "c", "content": 7]],
            "headers": ["X-A": true],
        ])
        #expect(response.status == 422, "\(response)")
        #expect(response.code == "validation_error")
        let locations = (response.detailList ?? []).map { ($0["loc"] as? [Any] ?? []).map { "\($0)" } }
        #expect(locations == [["body", "to", "1"], ["body", "attachments", "2", "content"], ["body", "headers", "X-A"]], "\(locations)")
    }

    @Test func moreThanFiftyRecipientsIs422() async throws {
        let env = try await E2E.get()
        let user = try await env.makeMailUser("rich-many")
        let token = try await env.token(user.name)
        let marker = uniqueMarker("rich-many")
        let response = try await env.sendJSON(token: token, [
            "to": (0..<30).map { "to\($0)@example.org" }, "bcc": (0..<21).map { "bcc\($0)@example.org" },
            "subject": marker, "message": "m",
        ])
        #expect(response.status == 422, "\(response)")
        #expect(response.code == "too_many_recipients", "\(response)")
        let exactly = try await env.sendJSON(token: token, [
            "to": (0..<30).map { "to\($0)@example.org" }, "bcc": (0..<20).map { "bcc\($0)@example.org" },
            "subject": marker, "message": "m",
        ])
        #expect(exactly.status == 200, "\(exactly)")
        #expect(exactly.json?["recipients"] as? Int == 50)
        #expect(env.capture.messages(containing: marker).count <= 1)
    }

    @Test func anyPermanentlyRefusedRecipientSendsNothingAndIsNamed() async throws {
        let env = try await E2E.get()
        let user = try await env.makeMailUser("rich-refused")
        let token = try await env.token(user.name)
        let marker = uniqueMarker("rich-refused")
        let response = try await env.sendJSON(token: token, [
            "to": ["fine@example.org", "refuse5-one@example.org"], "cc": "refuse4-later@example.org",
            "bcc": "refuse5-two@example.org", "subject": marker, "message": "m",
        ])
        #expect(response.status == 400, "\(response)")
        #expect(response.code == "recipient_rejected")
        let detail = response.detail ?? ""
        #expect(detail.contains("refuse5-one@example.org") && detail.contains("refuse5-two@example.org"), "\(detail)")
        #expect(detail.contains("550"), "the server's reply: \(detail)")
        try await Task.sleep(for: .milliseconds(300))
        #expect(env.capture.messages(containing: marker).isEmpty)
    }

    @Test func aTransientlyRefusedRecipientIs503AndSendsNothing() async throws {
        let env = try await E2E.get()
        let user = try await env.makeMailUser("rich-transient")
        let token = try await env.token(user.name)
        let marker = uniqueMarker("rich-transient")
        let response = try await env.sendJSON(token: token, [
            "to": ["fine@example.org", "refuse4-busy@example.org"], "subject": marker, "message": "m",
        ])
        #expect(response.status == 503, "\(response)")
        #expect(response.code == "smtp_unavailable")
        #expect(response.header("Retry-After") != nil)
        #expect(response.detail?.contains("refuse4-busy@example.org") == true, "\(response)")
        try await Task.sleep(for: .milliseconds(300))
        #expect(env.capture.messages(containing: marker).isEmpty)
    }

    /// The server announces SIZE 20000: a bigger message is refused before
    /// MAIL, with the server's limit in the answer.
    @Test func overTheServersSizeIs413BeforeAnythingIsSent() async throws {
        let env = try await E2E.get()
        let server = try await CaptureServer.startAsync(name: "capture-size", options: .init(sizeLimit: 20000))
        defer { server.stop() }
        let user = try await env.makeUser("rich-size", smtp: SMTPTarget(port: server.port))
        let token = try await env.token(user.name)
        let big = Data((0..<30000).map { UInt8($0 % 256) }).base64EncodedString()
        let response = try await env.sendJSON(token: token, [
            "to": "r@example.org", "subject": "big", "message": "m",
            "attachments": [["filename": "big.bin", "content": big]],
        ])
        #expect(response.status == 413, "\(response)")
        #expect(response.code == "message_too_large")
        #expect(response.detail?.contains("20000") == true, "says the server's limit: \(response)")
        let small = try await env.sendJSON(token: token, ["to": "r@example.org", "subject": "small", "message": "m"])
        #expect(small.status == 200, "\(small)")
        try await Task.sleep(for: .milliseconds(300))
        #expect(server.allMessages().count == 1, "only the small one")
    }
}
