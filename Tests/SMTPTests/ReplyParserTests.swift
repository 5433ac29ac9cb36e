import Testing
@testable import SMTP

@Suite("Reply parser")
struct ReplyParserTests {
    private func parse(_ text: String) throws -> [SMTPReply] {
        try SMTPReplyParser.parseAll(Array(text.utf8))
    }

    @Test func singleLineWithEnhancedStatus() throws {
        let replies = try parse("550 5.1.1 User unknown\r\n")
        #expect(replies == [SMTPReply(code: 550, enhancedStatus: "5.1.1", lines: ["User unknown"])])
        let r = try #require(replies.first)
        #expect(r.text == "User unknown")
        #expect(r.isPermanent && !r.isTransient && !r.isPositive)
        #expect(r.description == "550 5.1.1 User unknown")
    }

    @Test func singleLineWithoutEnhancedStatus() throws {
        let r = try #require(try parse("220 mail.example.com ESMTP ready\r\n").first)
        #expect(r.code == 220)
        #expect(r.enhancedStatus == nil)
        #expect(r.text == "mail.example.com ESMTP ready")
        #expect(r.isPositive)
    }

    @Test func multiLineEHLO() throws {
        let replies = try parse("250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n")
        #expect(replies.count == 1)
        let r = try #require(replies.first)
        #expect(r.code == 250)
        #expect(r.lines == ["mx.example.com", "PIPELINING", "SIZE 10240000", "AUTH PLAIN LOGIN", "8BITMIME"])
        let info = ServerInfo(ehlo: r)
        #expect(info.extensions == [.pipelining, .size(10_240_000), .auth(.plain), .auth(.login), .eightBitMIME])
        #expect(info.size.limit == 10_240_000)
        #expect(info.authMechanisms == [.plain, .login])
    }

    @Test func obsoleteAuthEqualsFormMergesIntoAuth() throws {
        let r = try #require(try parse("250-host\r\n250-auth=LOGIN\r\n250 AUTH PLAIN\r\n").first)
        let info = ServerInfo(ehlo: r)
        #expect(info.authMechanisms == [.login, .plain])
        #expect(info.extensions == [.auth(.login), .auth(.plain)])  // no "AUTH=LOGIN" keyword
    }

    @Test func repeatedEnhancedStatusIsStrippedFromEveryLine() throws {
        let r = try #require(try parse("550-5.7.1 Message rejected\r\n550-5.7.1 see https://example.com\r\n550 5.7.1 policy\r\n").first)
        #expect(r.enhancedStatus == "5.7.1")
        #expect(r.lines == ["Message rejected", "see https://example.com", "policy"])
        #expect(r.text == "Message rejected see https://example.com policy")
    }

    @Test func enhancedStatusMustMatchTheReplyClass() throws {
        // "5.0.0" after a 250 is just text, not an enhanced status code.
        let r = try #require(try parse("250 5.0.0 odd\r\n").first)
        #expect(r.enhancedStatus == nil)
        #expect(r.text == "5.0.0 odd")
        // Not the x.y.z pattern (four-digit subject), so also text.
        let r2 = try #require(try parse("451 4.1234.1 later\r\n").first)
        #expect(r2.enhancedStatus == nil)
        let r3 = try #require(try parse("250 2.0.0\r\n").first)
        #expect(r3.enhancedStatus == "2.0.0")
        #expect(r3.lines == [""])
    }

    @Test func bareCodeIsAValidLastLine() throws {
        let r = try #require(try parse("250-first\r\n250\r\n").first)
        #expect(r.lines == ["first", ""])
    }

    @Test func bareLFLineEndsAreAccepted() throws {
        #expect(try parse("221 bye\n").first?.code == 221)
    }

    @Test func severalRepliesInOneStream() throws {
        let replies = try parse("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n")
        #expect(replies.map(\.code) == [250, 250, 354])
        #expect(replies[2].text == "End data with <CR><LF>.<CR><LF>")
    }

    @Test(arguments: [
        "abc hello\r\n",     // not a code
        "25\r\n",            // too short
        "250x text\r\n",     // bad separator
        "600 text\r\n",      // first digit out of range
        "199 text\r\n",      // 1yz is not used in SMTP
        "260 text\r\n",      // second digit out of range
        " 250 text\r\n",     // leading space
        "\r\n",              // empty line
    ])
    func malformedLinesAreRejected(_ input: String) {
        #expect(throws: SMTPReplyParser.ParseError.self) { try parse(input) }
    }

    @Test func mixedCodesInOneReplyAreRejected() {
        let error = #expect(throws: SMTPReplyParser.ParseError.self) { try parse("250-first\r\n251 second\r\n") }
        #expect(error?.message.contains("changed from 250 to 251") == true)
    }

    @Test func incompleteInputIsRejected() {
        #expect(throws: SMTPReplyParser.ParseError.self) { try parse("250-more to come\r\n") }
        #expect(throws: SMTPReplyParser.ParseError.self) { try parse("250 no line end") }
    }

    @Test func overlongLineIsRejected() {
        let long = "250 " + String(repeating: "x", count: SMTPReplyParser.maxLineLength)
        #expect(throws: SMTPReplyParser.ParseError.self) { try parse(long + "\r\n") }
        let justFits = "250 " + String(repeating: "x", count: SMTPReplyParser.maxLineLength - 4)
        #expect(throws: Never.self) { try parse(justFits + "\r\n") }
    }

    @Test func tooManyLinesAreRejected() {
        let many = String(repeating: "250-x\r\n", count: SMTPReplyParser.maxLines) + "250 end\r\n"
        #expect(throws: SMTPReplyParser.ParseError.self) { try parse(many) }
    }

    @Test func controlCharactersAndInvalidUTF8AreMadePrintable() throws {
        var bytes = Array("550 bad\u{1B}[31m text\u{7F}".utf8)
        bytes += [0xFF, 0x0D, 0x0A]
        let r = try #require(try SMTPReplyParser.parseAll(bytes).first)
        #expect(r.text == "bad?[31m text?\u{FFFD}")
    }

    @Test func replyClassification() {
        #expect(SMTPReply(code: 354, lines: []).isPositive)
        #expect(SMTPReply(code: 421, lines: []).isTransient)
        #expect(!SMTPReply(code: 421, lines: []).isPositive)
        #expect(SMTPReply(code: 535, lines: []).isPermanent)
        #expect(SMTPReply(code: 251, lines: ["a", "b"]).text == "a b")
    }
}
