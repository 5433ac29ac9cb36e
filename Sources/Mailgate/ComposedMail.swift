import Foundation
import MIME
import SMTP

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
    /// with `fromName`); the Message-ID is made in the sender's domain.
    /// Throws when the renderer refuses a header value (CR, LF or NUL in
    /// the subject or a display name).
    public static func compose(from sender: EmailAddress, fromName: String?, to recipient: Mailbox,
                               subject: String, body: String, date: Date) throws(HeaderError) -> ComposedMail {
        let messageID = MessageID.generate(domain: sender.domain)
        let mail = MailMessage(
            from: Mailbox(displayName: fromName, address: sender), to: recipient,
            subject: subject, body: body, date: date, messageID: messageID)
        return ComposedMail(envelope: SMTPEnvelope(sender: sender, recipients: [recipient.address]),
                            message: try mail.render(), messageID: messageID)
    }
}
