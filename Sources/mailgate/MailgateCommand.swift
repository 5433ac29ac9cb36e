import ArgumentParser
import Foundation
import Store
import Crypto
#if canImport(Glibc)
import Glibc
#endif

@main
struct MailgateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mailgate",
        abstract: "Send email over HTTP: a FastCGI responder for nginx.",
        discussion: """
            Mailgate answers POST /token (OAuth2 password grant) and POST /smtp/send-email \
            (bearer token, JSON {"to", "subject", "message"}) behind nginx, and sends each \
            message through the user's SMTP server.

            Typical set-up:
              mailgate init --data-dir /var/lib/mailgate
              mailgate user add alice                 (password from prompt or stdin)
              mailgate integration set alice --host smtp.example.com --port 587 \\
                  --security starttls --username alice@example.com --from alice@example.com
              mailgate serve --socket /run/mailgate/mailgate.sock
            """,
        subcommands: [Init.self, Serve.self, UserCommand.self, IntegrationCommand.self, TokenCommand.self])
}

struct Init: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create the data directory, the database and both key files (mode 0600).",
        discussion: "Existing keys and data are kept, so running it twice is harmless.")

    @OptionGroup var data: DataDirectoryOptions

    func run() throws {
        let fileManager = FileManager.default
        if !fileManager.fileExists(atPath: data.path) {
            try fileManager.createDirectory(atPath: data.path, withIntermediateDirectories: true,
                                            attributes: [.posixPermissions: 0o700])
            print("created \(data.path)")
        }
        for (path, length) in [(data.tokenKeyPath, 64), (data.secretKeyPath, 32)] {
            if fileManager.fileExists(atPath: path) {
                _ = try KeyFile.load(at: path, minimumLength: 32)
                print("kept existing key \(path)")
            } else {
                try KeyFile.create(at: path, byteCount: length)
                print("created key \(path) (\(length) random bytes, mode 0600)")
            }
        }
        let existed = fileManager.fileExists(atPath: data.databasePath)
        _ = try SQLiteStore(path: data.databasePath, secretBox: SecretBox(key: KeyFile.load(at: data.secretKeyPath)))
        chmod(data.databasePath, 0o600)
        print(existed ? "database \(data.databasePath) is up to date" : "created database \(data.databasePath)")
    }
}

struct TokenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token", abstract: "Mint tokens.", subcommands: [Issue.self])

    struct Issue: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a bearer token for USER, e.g. a long-lived one for a cron job.",
            discussion: "The token dies early when the user is disabled or `mailgate user revoke-tokens` runs.")

        @OptionGroup var data: DataDirectoryOptions
        @Argument(help: "The user the token is for.") var username: String
        @Option(help: "Lifetime: 30m, 12h, 90d or seconds (at most 3650d).")
        var ttl: DurationArgument = DurationArgument(seconds: 30 * 60)

        func run() throws {
            let store = try data.openStore()
            guard let user = try store.user(named: username) else { throw ValidationError("no user \(username)") }
            guard !user.isDisabled else { throw ValidationError("user \(username) is disabled") }
            let now = Int64(Date().timeIntervalSince1970)
            let claims = TokenClaims(subject: user.username, issuedAt: now, expiresAt: now + ttl.seconds,
                                     notBefore: nil, version: user.tokenVersion)
            print(try data.tokenSigner().sign(claims))
        }
    }
}
