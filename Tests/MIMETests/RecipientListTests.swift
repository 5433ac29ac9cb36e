import Foundation
import Testing
@testable import MIME

/// To, Cc and Reply-To as address lists.
@Suite struct RecipientListTests {
    static let to = [
        "Jane Doe <jane@example.org>", "bob@example.net", "\"Doe, John (Sales)\" <john@example.com>",
        "Zoë Ünïcode <zoe@example.com>", "\"Say \\\"hi\\\"\" <q@example.org>",
    ]
    static let cc = ["carol@example.com", "\"山田, 太郎 🎉\" <taro@example.org>", "Dave <dave@example.com>"]
    static let replyTo = ["Support Team <support@example.com>", "help@example.com"]

    static func pairs(_ texts: [String]) throws -> [[String]] {
        try texts.map { text in
            let m = try mailbox(text)
            return [m.displayName ?? "", m.address.description]
        }
    }

    @Test func pythonReadsBackEveryAddressOfEachList() throws {
        let msg = try richMessage(to: Self.to, cc: Self.cc, replyTo: Self.replyTo)
        let bytes = try msg.render()
        checkWireFormat(bytes)
        let parsed = try parseMIMEWithPython(bytes)
        #expect(parsed.unexpectedDefects.isEmpty, "\(parsed.defects)")
        let (to, cc, replyTo) = (try Self.pairs(Self.to), try Self.pairs(Self.cc), try Self.pairs(Self.replyTo))
        #expect(parsed.to == to)
        #expect(parsed.cc == cc)
        #expect(parsed.replyTo == replyTo)
        #expect(parsed.fromAddresses == [["Mailgate", "noreply@example.com"]])
        #expect(parsed.bcc == nil)
        #expect(parsed.root.contentType == "text/plain")
    }

    @Test func listsAreCommaSeparatedAndFoldedBetweenMailboxes() throws {
        let many = (1...40).map { "Person Number \($0) <person.\($0)@example.org>" }
        let bare = (1...40).map { "user\($0)@example.com" }
        let encoded = (1...20).map { "Grüße \($0) <g\($0)@example.org>" }
        let msg = try richMessage(to: many, cc: bare, replyTo: encoded)
        let bytes = try msg.render()
        checkWireFormat(bytes)
        let rendered = Rendered(bytes)
        // Unfolding gives back the list, each mailbox after ", ".
        let cc = try #require(rendered.field("Cc"))
        #expect(cc == " " + bare.joined(separator: ", "))
        let to = try #require(rendered.field("To"))
        #expect(to == " " + many.joined(separator: ", "))
        // Folds happen between mailboxes, and there were some.
        let toLines = rendered.headerLines.drop(while: { !$0.hasPrefix("To:") })
            .prefix(while: { $0.hasPrefix("To:") || $0.hasPrefix(" ") })
        #expect(toLines.count > 10)

        let parsed = try parseMIMEWithPython(bytes)
        #expect(parsed.unexpectedDefects.isEmpty, "\(parsed.defects)")
        let (toPairs, ccPairs, replyPairs) = (try Self.pairs(many), try Self.pairs(bare), try Self.pairs(encoded))
        #expect(parsed.to == toPairs)
        #expect(parsed.cc == ccPairs)
        #expect(parsed.replyTo == replyPairs)
    }

    @Test func singleRecipientThroughTheNewInitialiserIsByteIdentical() throws {
        for body in ["Line 1\nLine 2", "Grüße\n", "", String(repeating: "x", count: 2000)] {
            let old = try message(body: body).render()
            let new = try richMessage(body: body).render()
            #expect(old == new)
        }
    }

    @Test func noBccHeaderAnywhere() throws {
        let msg = try richMessage(to: Self.to, cc: Self.cc, replyTo: Self.replyTo, html: "<p>x</p>",
                                  attachments: [Attachment(filename: "a.txt", content: Array("bcc".utf8))])
        let text = String(decoding: try msg.render(), as: UTF8.self)
        #expect(!text.lowercased().contains("\nbcc:"))
        #expect(!text.lowercased().hasPrefix("bcc:"))
    }

    @Test func emptyToIsRefused() throws {
        let msg = try richMessage(to: [])
        #expect(throws: HeaderError.noRecipient) { try msg.render() }
        #expect(HeaderError.noRecipient.description == "At least one To address is required")
    }

    @Test func lineBreaksInAnyListsDisplayNameAreRefused() throws {
        let address = try EmailAddress(localPart: "a", domain: "example.com")
        let evil = Mailbox(displayName: "Eve\r\nBcc: victim@example.com", address: address)
        var msg = try richMessage(to: ["ok@example.com", "fine@example.com"])
        msg.to.append(evil)
        #expect(throws: HeaderError.containsControlCharacter(field: "To")) { try msg.render() }
        msg = try richMessage(cc: ["ok@example.com"])
        msg.cc.append(evil)
        #expect(throws: HeaderError.containsControlCharacter(field: "Cc")) { try msg.render() }
        msg = try richMessage()
        msg.replyTo = [Mailbox(displayName: "x\u{0}", address: address)]
        #expect(throws: HeaderError.containsControlCharacter(field: "Reply-To")) { try msg.render() }
        #expect(HeaderError.containsControlCharacter(field: "Reply-To").description
            == "Reply-To must not contain CR, LF or NUL")
    }
}
