import Foundation
import MIME
import SMTP

/// Who a message goes to: the header lists and the blind copies, which
/// appear in no header (only in the envelope).
public struct MessageRecipients: Sendable {
    public var to: [Mailbox]
    public var cc: [Mailbox]
    public var bcc: [Mailbox]
    public var replyTo: [Mailbox]

    public init(to: [Mailbox], cc: [Mailbox] = [], bcc: [Mailbox] = [], replyTo: [Mailbox] = []) {
        self.to = to
        self.cc = cc
        self.bcc = bcc
        self.replyTo = replyTo
    }
}

/// What a message says: subject, plain text, optional HTML, attachments
/// and the extra headers the caller may set.
public struct MessageContent: Sendable {
    public var subject: String
    public var text: String
    public var html: String?
    public var attachments: [Attachment]
    public var headers: [CustomHeader]

    public init(subject: String, text: String, html: String? = nil, attachments: [Attachment] = [],
                headers: [CustomHeader] = []) {
        self.subject = subject
        self.text = text
        self.html = html
        self.attachments = attachments
        self.headers = headers
    }
}

/// A message ready to hand to SMTP: the rendered bytes, the envelope and
/// the Message-ID. The one way Mailgate assembles a message, used by
/// `POST /smtp/send-email` and by `mailgate integration test`.
public struct ComposedMail: Sendable {
    public let envelope: SMTPEnvelope
    /// The complete RFC 5322 message, CRLF line ends.
    public let message: [UInt8]
    /// Without angle brackets.
    public let messageID: String

    /// `sender` is both the envelope sender and the From address (shown
    /// with `fromName`); the Message-ID is made in the sender's domain. The
    /// envelope holds every to, cc and bcc address once.
    /// Throws when the renderer refuses the content (CR, LF or NUL in a
    /// header value, a custom header that is not allowed, an unusable
    /// attachment name or type).
    public static func compose(from sender: EmailAddress, fromName: String?, recipients: MessageRecipients,
                               content: MessageContent, date: Date) throws(HeaderError) -> ComposedMail {
        let messageID = MessageID.generate(domain: sender.domain)
        let mail = MailMessage(
            from: Mailbox(displayName: fromName, address: sender), to: recipients.to, cc: recipients.cc,
            replyTo: recipients.replyTo, subject: content.subject, body: content.text, html: content.html,
            attachments: content.attachments, headers: content.headers, date: date, messageID: messageID)
        let envelope = SMTPEnvelope(
            sender: sender,
            recipients: SMTPEnvelope.uniqueRecipients((recipients.to + recipients.cc + recipients.bcc).map(\.address)))
        return ComposedMail(envelope: envelope, message: try mail.render(), messageID: messageID)
    }
}

extension SMTPEnvelope {
    /// `addresses` in order, each once: the local part compared exactly
    /// (RFC 5321 lets servers tell case apart there), the domain without
    /// regard to ASCII case. By bytes: the addresses are the client's.
    static func uniqueRecipients(_ addresses: [EmailAddress]) -> [EmailAddress] {
        var seen = Set<[UInt8]>()
        var out: [EmailAddress] = []
        out.reserveCapacity(addresses.count)
        for address in addresses {
            var key = Array(address.localPart.utf8)
            key.append(UInt8(ascii: "@"))
            for byte in address.domain.utf8 { key.append((0x41...0x5A).contains(byte) ? byte | 0x20 : byte) }
            if seen.insert(key).inserted { out.append(address) }
        }
        return out
    }
}
