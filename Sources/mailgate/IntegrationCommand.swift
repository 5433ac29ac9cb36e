import ArgumentParser
import Foundation
import Mailgate
import MIME
import SMTP
import Store

extension SMTPIntegration.Security: ExpressibleByArgument {}

struct IntegrationCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "integration", abstract: "Manage each user's SMTP server settings.",
        subcommands: [Set.self, Show.self, Test.self])

    struct Set: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Set USER's SMTP server. With --username, the SMTP password is read from a prompt or stdin.",
            discussion: "The password is stored encrypted (AES-256-GCM, key in secret.key). A running server uses the new settings on its next request.")
        @OptionGroup var data: DataDirectoryOptions
        @Argument var user: String
        @Option(help: "SMTP server host name.") var host: String
        @Option(help: "Port (default: 587 for starttls, 465 for tls, 25 for none).") var port: Int?
        @Option(help: "starttls (required, never opportunistic), tls (implicit) or none.") var security: SMTPIntegration.Security = .starttls
        @Option(help: "SMTP login; omit for a server without AUTH.") var username: String?
        @Option(help: "Envelope sender and From address.") var from: String
        @Option(name: .customLong("from-name"), help: "Display name for From.") var fromName: String?

        func run() throws {
            let store = try data.openStore()
            var integration = SMTPIntegration(
                host: host, port: port ?? security.defaultPort, security: security, username: username,
                fromAddress: from, fromName: fromName, updatedAt: Date())
            // What `serve` checks before each send, checked before storing
            // (the mapped configuration itself is not kept).
            do {
                _ = try SMTPSubmission(integration, heloName: "localhost")
            } catch {
                throw ValidationError(error.description)
            }
            integration.password = username == nil ? nil : try SecretInput.read(prompt: "SMTP password for \(username ?? ""): ", confirm: false)
            try store.setIntegration(integration, for: user)
            print("SMTP integration for \(user): \(security.rawValue)://\(host):\(integration.port)")
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show USER's SMTP settings (password redacted).")
        @OptionGroup var data: DataDirectoryOptions
        @Argument var user: String

        func run() throws {
            guard let integration = try data.openStore().integration(for: user) else {
                throw ValidationError("\(user) has no SMTP integration")
            }
            print("""
                host:      \(integration.host)
                port:      \(integration.port)
                security:  \(integration.security.rawValue)
                username:  \(integration.username ?? "(none: no AUTH)")
                password:  \(integration.password == nil ? "(none)" : "******** (stored encrypted)")
                from:      \(integration.fromAddress)
                from name: \(integration.fromName ?? "(none)")
                updated:   \(integration.updatedAt)
                """)
        }
    }

    struct Test: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Connect to USER's SMTP server, log in, and with --send-to send a test message.")
        @OptionGroup var data: DataDirectoryOptions
        @Argument var user: String
        @Option(name: .customLong("send-to"), help: "Also send a test message to this address.") var sendTo: String?
        @Option(name: .customLong("ca-file"), help: "Extra CA certificates (PEM) to trust.") var caFile: String?
        @Option(help: "Overall time limit.") var timeout: DurationArgument = DurationArgument(seconds: 20)

        func run() throws {
            guard let integration = try data.openStore().integration(for: user) else {
                throw ValidationError("\(user) has no SMTP integration")
            }
            let submission: SMTPSubmission
            do {
                submission = try SMTPSubmission(integration, heloName: ProcessInfo.processInfo.hostName, caFile: caFile)
            } catch {
                throw ValidationError("stored SMTP integration of \(user) is unusable: \(error)")
            }
            let config = submission.server, security = submission.server.security
            let deadline = ContinuousClock.now.advanced(by: timeout.duration)
            let connection = try SMTPConnection.open(config, deadline: deadline)
            defer { connection.quit() }
            print("connected to \(integration.host):\(integration.port) (\(security.rawValue)); server offers: \(connection.serverInfo)")
            print(integration.username == nil ? "no login configured" : "logged in as \(integration.username ?? "")")
            guard let sendTo else { return }
            let recipient = try EmailAddress.parse(sendTo)
            let sender = submission.sender
            let mail = try ComposedMail.compose(
                from: sender.address, fromName: integration.fromName, recipients: MessageRecipients(to: [recipient]),
                content: MessageContent(subject: "Mailgate test message",
                                        text: "This is a test message sent by `mailgate integration test`.\n"),
                date: Date())
            let messageID = mail.messageID
            let reply = try connection.send(mail.envelope, message: mail.message, resetFirst: false, deadline: deadline)
            print("sent test message <\(messageID)> to \(recipient.address): \(reply.code) \(reply.text)")
        }
    }
}
