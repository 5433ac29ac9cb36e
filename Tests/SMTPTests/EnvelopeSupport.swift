import MIME
@testable import SMTP

extension SMTPEnvelope {
    /// An envelope from addresses written as text, as the tests do; "" is
    /// the null sender. The addresses are parsed by MIME, like the app does.
    init(sender: String, recipients: [String]) throws {
        self.init(sender: sender.isEmpty ? nil : try EmailAddress.parse(sender).address,
                  recipients: try recipients.map { try EmailAddress.parse($0).address })
    }
}
