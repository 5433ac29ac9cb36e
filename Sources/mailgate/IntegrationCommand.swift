import ArgumentParser
import Foundation
import Logging
import Mailgate
import MIME
import OAuth
import SMTP
import Store

extension SMTPIntegration.Security: ExpressibleByArgument {}
extension OAuth2Credentials.Provider: ExpressibleByArgument {}

/// How `integration set` logs in; `--auth`.
enum AuthenticationKind: String, ExpressibleByArgument, CaseIterable {
    case password, oauth2, none
}

struct IntegrationCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "integration", abstract: "Manage each user's SMTP server settings.",
        subcommands: [Set.self, Show.self, Authorize.self, Test.self])

    struct Set: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Set USER's SMTP server and how Mailgate logs in to it.",
            discussion: """
                --auth password (the default with --username): AUTH PLAIN/LOGIN; the SMTP password is read from a \
                prompt, or the first line of stdin.
                --auth none (the default without --username): no AUTH.
                --auth oauth2: AUTH XOAUTH2 (or OAUTHBEARER) as the mailbox --username, with access tokens from \
                the OAuth2 client --client-id. Its client secret is read like a password (prompt, or the first \
                line of stdin); --no-client-secret for a public client. --provider presets the rest:

                \(Set.presetTable)

                Options given override the presets. Then run `mailgate integration authorize USER` to store a \
                refresh token. Setting the same client id, token URL and mailbox again (e.g. to change the host \
                or the scope) keeps the stored refresh token; another client or mailbox drops it.

                Secrets are stored encrypted (AES-256-GCM, key in secret.key). A running server uses the new \
                settings on its next request.
                """)
        @OptionGroup var data: DataDirectoryOptions
        @Argument(help: "The Mailgate user.") var user: String
        @Option(help: "How to log in: password, oauth2 or none (default: password with --username, else none).")
        var auth: AuthenticationKind?
        @Option(help: "SMTP server host name (oauth2 google/microsoft: preset).") var host: String?
        @Option(help: "Port (default: 587 for starttls, 465 for tls, 25 for none).") var port: Int?
        @Option(help: "starttls (required, never opportunistic), tls (implicit) or none (default: starttls).")
        var security: SMTPIntegration.Security?
        @Option(help: "SMTP login; for oauth2 the mailbox address. Omit for a server without AUTH.") var username: String?
        @Option(help: "Envelope sender and From address (oauth2: default the mailbox).") var from: String?
        @Option(name: .customLong("from-name"), help: "Display name for From.") var fromName: String?
        @Option(help: "oauth2: google, microsoft or custom (presets: see above).") var provider: OAuth2Credentials.Provider?
        @Option(name: .customLong("client-id"), help: "oauth2: the client (application) id registered with the provider.")
        var clientID: String?
        @Option(name: .customLong("token-url"), help: "oauth2: the token endpoint, https (required for custom).")
        var tokenURL: String?
        @Option(name: .customLong("authorization-url"),
                help: "oauth2: where `integration authorize` sends the browser, https (custom: needed before authorizing).")
        var authorizationURL: String?
        @Option(help: "oauth2: the scopes to request, separated by spaces (default: the provider's; custom: none).")
        var scope: String?
        @Option(help: "oauth2, microsoft: the tenant, a GUID or domain, or common, organizations or consumers (default: common).")
        var tenant: String?
        @Flag(name: .customLong("no-client-secret"), help: "oauth2: a public client, without a client secret (none is read).")
        var noClientSecret = false

        /// The presets, as `--help` shows them (from `OAuth2Preset`, the one
        /// table), in lines that fit 80 columns.
        static var presetTable: String {
            OAuth2Credentials.Provider.allCases.map { provider in
                guard let preset = OAuth2Preset.of(provider, tenant: "TENANT") else {
                    return "  \(provider.rawValue): no presets; give --host and --token-url (and --authorization-url)"
                }
                let tenant = provider == .microsoft ? " (TENANT: --tenant, default \(OAuth2Preset.defaultMicrosoftTenant))" : ""
                return """
                      \(provider.rawValue)\(tenant)
                        SMTP      \(preset.host):\(preset.port) \(preset.security.rawValue)
                        scope     \(preset.scope)
                        token     \(preset.tokenURL)
                        authorize \(preset.authorizationURL)
                    """
            }.joined(separator: "\n")
        }

        /// --auth as given, or what the other options imply (as before --auth existed).
        var kind: AuthenticationKind { auth ?? (username == nil ? .none : .password) }

        func validate() throws {
            let oauth2Options = [("--provider", provider != nil), ("--client-id", clientID != nil),
                                 ("--token-url", tokenURL != nil), ("--authorization-url", authorizationURL != nil),
                                 ("--scope", scope != nil), ("--tenant", tenant != nil),
                                 ("--no-client-secret", noClientSecret)]
            switch kind {
            case .password, .none:
                if let (name, _) = oauth2Options.first(where: \.1) {
                    throw ValidationError("\(name) applies only to --auth oauth2")
                }
                guard host != nil else { throw ValidationError("missing --host") }
                guard from != nil else { throw ValidationError("missing --from") }
                if kind == .password, username == nil { throw ValidationError("--auth password needs --username") }
                if kind == .none, username != nil { throw ValidationError("--auth none takes no --username") }
            case .oauth2:
                guard let provider else { throw ValidationError("--auth oauth2 needs --provider google, microsoft or custom") }
                guard clientID != nil else { throw ValidationError("--auth oauth2 needs --client-id (the client id registered with the provider)") }
                guard username != nil else { throw ValidationError("--auth oauth2 needs --username (the mailbox address to log in as)") }
                if let tenant {
                    guard provider == .microsoft else { throw ValidationError("--tenant applies only to --provider microsoft") }
                    guard OAuth2Credentials.isValidTenant(tenant) else {
                        throw ValidationError("--tenant must be a GUID, a domain name, or common, organizations or consumers (letters, digits, '.' and '-')")
                    }
                }
                if provider == .custom {
                    guard tokenURL != nil else { throw ValidationError("--provider custom needs --token-url (the provider's token endpoint)") }
                    guard host != nil else { throw ValidationError("--provider custom needs --host (the SMTP server)") }
                }
            }
        }

        func run() throws {
            let store = try data.openStore()
            var integration = try settings()
            // What `serve` checks before each send, checked before storing
            // (the mapped configuration itself is not kept), and before any
            // secret is asked for.
            do {
                _ = try SMTPSubmission(integration, heloName: "localhost")
            } catch {
                throw ValidationError(error.description)
            }
            switch integration.authentication {
            case .none:
                break
            case .password(let username, _):
                let password = try SecretInput.read(prompt: "SMTP password for \(username): ", confirm: false)
                integration.authentication = .password(username: username, password: password)
            case .oauth2(let mailbox, var credentials):
                if !noClientSecret {
                    credentials.clientSecret = try SecretInput.read(
                        prompt: "OAuth2 client secret for \(credentials.clientID): ", confirm: false, what: "client secret")
                }
                integration.authentication = .oauth2(username: mailbox, credentials)
            }
            try store.setIntegration(integration, for: user)
            print("SMTP integration for \(user): \(integration.security.rawValue)://\(integration.host):\(integration.port)")
            guard case .oauth2(let mailbox, let credentials) = integration.authentication else { return }
            // The store kept the refresh token if it still belongs to this client and mailbox.
            let stored = try store.integration(for: user)?.oauth2
            print("OAuth2 (\(credentials.provider.rawValue)) login as \(mailbox)")
            if stored?.refreshToken != nil {
                print("refresh token: kept (same client and mailbox)")
            } else {
                print("refresh token: not stored yet; run: mailgate integration authorize \(user)")
            }
        }

        /// The integration the options describe, without its secrets.
        func settings() throws -> SMTPIntegration {
            switch kind {
            case .password, .none:
                let security = security ?? .starttls
                return SMTPIntegration(
                    host: host ?? "", port: port ?? security.defaultPort, security: security, username: username,
                    password: nil, fromAddress: from ?? "", fromName: fromName, updatedAt: Date())
            case .oauth2:
                guard let provider, let clientID, let mailbox = username else {
                    throw ValidationError("--auth oauth2 needs --provider, --client-id and --username")
                }
                let tenant = provider == .microsoft ? (tenant ?? OAuth2Preset.defaultMicrosoftTenant) : nil
                let preset = OAuth2Preset.of(provider, tenant: tenant ?? OAuth2Preset.defaultMicrosoftTenant)
                let security = security ?? preset?.security ?? .starttls
                let presetPort = preset.flatMap { $0.security == security ? $0.port : nil }
                let credentials = OAuth2Credentials(
                    provider: provider, tokenURL: tokenURL ?? preset?.tokenURL ?? "",
                    authorizationURL: authorizationURL ?? preset?.authorizationURL, clientID: clientID,
                    clientSecret: nil, refreshToken: nil, scope: scope ?? preset?.scope ?? "", tenant: tenant)
                return SMTPIntegration(
                    host: host ?? preset?.host ?? "", port: port ?? presetPort ?? security.defaultPort, security: security,
                    authentication: .oauth2(username: mailbox, credentials), fromAddress: from ?? mailbox,
                    fromName: fromName, updatedAt: Date())
            }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show USER's SMTP settings: whether secrets are stored, never their values.")
        @OptionGroup var data: DataDirectoryOptions
        @Argument(help: "The Mailgate user.") var user: String

        func run() throws {
            guard let integration = try data.openStore().integration(for: user) else {
                throw ValidationError("\(user) has no SMTP integration")
            }
            var lines: [(String, String)] = [
                ("host", integration.host), ("port", String(integration.port)), ("security", integration.security.rawValue),
            ]
            switch integration.authentication {
            case .none:
                lines += [("auth", "none"), ("username", "(none: no AUTH)")]
            case .password(let username, _):
                lines += [("auth", "password"), ("username", username), ("password", "******** (stored encrypted)")]
            case .oauth2(let mailbox, let credentials):
                lines += [
                    ("auth", "oauth2 (\(credentials.provider.rawValue))"),
                    ("username", "\(mailbox) (the mailbox)"),
                    ("client id", credentials.clientID),
                    ("client secret", credentials.clientSecret == nil ? "none (public client)" : "stored encrypted"),
                    ("token URL", credentials.tokenURL),
                    ("authorization URL", credentials.authorizationURL
                        ?? "(none: set one with `integration set ... --authorization-url URL`)"),
                    ("scope", credentials.scope.isEmpty ? "(none)" : credentials.scope),
                ]
                if let tenant = credentials.tenant { lines.append(("tenant", tenant)) }
                lines.append(("refresh token", credentials.refreshToken == nil
                    ? "not stored (run: mailgate integration authorize \(user))" : "stored encrypted"))
            }
            lines += [("from", integration.fromAddress), ("from name", integration.fromName ?? "(none)"),
                      ("updated", "\(integration.updatedAt)")]
            let width = lines.map { $0.0.count }.max() ?? 0
            for (label, value) in lines {
                print((label + ":").padding(toLength: width + 2, withPad: " ", startingAt: 0) + value)
            }
        }
    }

    struct Authorize: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Store a refresh token for USER's OAuth2 integration: approve in a browser, or give one on stdin.",
            discussion: """
                Runs the OAuth2 authorisation-code flow with PKCE (RFC 7636) and a loopback redirect (RFC 8252): \
                listens on http://127.0.0.1:PORT/ (a free port), prints the provider's authorisation URL and waits \
                (--timeout) for the browser to come back there after you approve. The code is exchanged at the \
                token endpoint and the refresh token stored encrypted; a wrong `state` or a refusal stores nothing. \
                Open the URL in a browser on this machine, or forward the port (ssh -L PORT:127.0.0.1:PORT) first.

                --refresh-token-stdin stores a refresh token obtained elsewhere (first line of stdin) instead.
                """)
        @OptionGroup var data: DataDirectoryOptions
        @Argument(help: "The Mailgate user, whose integration was set with --auth oauth2.") var user: String
        @Option(name: .customLong("authorization-url"),
                help: "The provider's authorisation endpoint (default: the stored one; custom providers may need it).")
        var authorizationURL: String?
        @Option(name: .customLong("ca-file"), help: "Extra CA certificates (PEM) to trust for the token endpoint.")
        var caFile: String?
        @Option(help: "How long to wait for the browser.") var timeout: DurationArgument = DurationArgument(seconds: 300)
        @Flag(name: .customLong("refresh-token-stdin"), help: "Read a refresh token from the first line of stdin instead.")
        var refreshTokenStdin = false

        func run() throws {
            let store = try data.openStore()
            guard let integration = try store.integration(for: user) else {
                throw ValidationError("\(user) has no SMTP integration")
            }
            guard case .oauth2(let mailbox, let credentials) = integration.authentication,
                  let owner = integration.refreshTokenOwner else {
                throw ValidationError("\(user)'s integration does not use OAuth2 (set it with `integration set \(user) --auth oauth2 ...`)")
            }
            if refreshTokenStdin {
                guard let line = Swift.readLine(strippingNewline: true) else {
                    throw ValidationError("expected the refresh token on the first line of stdin")
                }
                let token = line.hasSuffix("\r") ? String(line.dropLast()) : line
                guard !token.isEmpty, token.utf8.allSatisfy({ (0x21...0x7E).contains($0) }) else {
                    throw ValidationError("a refresh token is printable ASCII without spaces")
                }
                try store.storeRefreshToken(token, for: user, issuedTo: owner, origin: .authorization)
                print("stored the refresh token for \(user) (\(mailbox))")
                return
            }
            guard let authorizationURL = authorizationURL ?? credentials.authorizationURL else {
                throw ValidationError("no authorisation URL is stored for \(user): give --authorization-url URL")
            }
            let session = try AuthorizationSession(
                authorizationEndpoint: try EndpointURL(authorizationURL), clientID: credentials.clientID,
                scope: credentials.scope,
                extraParameters: credentials.provider == .google ? QueryParameter.googleOffline : [])
            print("""
                Open this URL in a browser on this machine and approve the access for \(mailbox):

                  \(session.authorizationURL)

                Waiting up to \(timeout.duration.components.seconds) s for the browser to come back to \(session.redirectURI) ...
                """)
            fflush(nil)  // (all streams) a pipe, a script or a test sees the URL now, not at exit
            let code = try session.waitForRedirect(timeout: timeout.duration)
            let endpoint = TokenEndpoint(url: try EndpointURL(credentials.tokenURL), clientID: credentials.clientID,
                                         clientSecret: credentials.clientSecret, caFile: caFile)
            let answer = try session.exchange(code: code, endpoint: endpoint, deadline: .now.advanced(by: .seconds(30)))
            guard let refreshToken = answer.refreshToken else {
                throw ValidationError("the token endpoint answered without a refresh token")
            }
            try store.storeRefreshToken(refreshToken, for: user, issuedTo: owner, origin: .authorization)
            print("authorised: stored the refresh token for \(user) (\(mailbox)); try it with `mailgate integration test \(user)`")
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
            let store = try data.openStore()
            guard let integration = try store.integration(for: user) else {
                throw ValidationError("\(user) has no SMTP integration")
            }
            // An OAuth2 integration refreshes its access token as `serve`
            // does (a rotated refresh token is stored back).
            let accessTokens = OAuthAccessTokens(store: store, caFile: caFile, logger: Logger(label: "mailgate"))
            let submission: SMTPSubmission
            do {
                submission = try SMTPSubmission(integration, heloName: ProcessInfo.processInfo.hostName, caFile: caFile,
                                                accessTokens: accessTokens, user: user)
            } catch {
                throw ValidationError("stored SMTP integration of \(user) is unusable: \(error)")
            }
            let config = submission.server, security = submission.server.security
            let deadline = ContinuousClock.now.advanced(by: timeout.duration)
            let connection = try SMTPConnection.open(config, deadline: deadline)
            defer { connection.quit() }
            print("connected to \(integration.host):\(integration.port) (\(security.rawValue)); server offers: \(connection.serverInfo)")
            if accessTokens.refreshCounts().succeeded > 0 { print("refreshed the OAuth2 access token") }
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
