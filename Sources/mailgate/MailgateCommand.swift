import ArgumentParser
import Base64
import Foundation
import Mailgate
import Store
import Crypto
import Mailgate
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
        version: BuildInfo.versionLine,
        subcommands: [Init.self, Migrate.self, Serve.self, UserCommand.self, IntegrationCommand.self, TokenCommand.self,
                      StoreCommand.self,
                      OpenAPICommand.self])
}

struct OpenAPICommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "openapi",
        abstract: "Print the OpenAPI 3.1 document of the HTTP API (what GET /openapi.json serves).",
        discussion: "For tools that want a file: mailgate openapi > openapi.json")

    func run() throws {
        FileHandle.standardOutput.write(Data(OpenAPIDocument.json() + [UInt8(ascii: "\n")]))
    }
}

struct Init: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create the data directory, the database and both key files (mode 0600).",
        discussion: """
            Existing keys and data are kept, so running it twice is harmless. With --store postgresql://... \
            it creates the schema in that database (the keys stay files here) and records the keys' \
            fingerprints; a second host then needs a copy of this directory's token.key and secret.key.
            """)

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
        let location = try data.storeLocation()
        switch location {
        case .sqlite(let file):
            let existed = fileManager.fileExists(atPath: file)
            try data.checkKeys(of: data.openStore(create: true))
            chmod(file, 0o600)
            print(existed ? "database \(file) is up to date" : "created database \(file)")
        case .postgresql:
            try data.checkKeys(of: data.openStore(create: true))
            print("schema of \(location.displayName) is up to date; every host needs this directory's token.key and secret.key")
        }
    }
}

struct Migrate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Apply the store's new schema migrations (each is named and recorded; applied ones are skipped).",
        discussion: "`serve` and every command apply them too when they open a SQLite store; a PostgreSQL store shared by several hosts is migrated by this command (or `init`), once.")

    @OptionGroup var data: DataDirectoryOptions

    func run() throws {
        try data.checkKeys(of: data.openStore(create: true))
        print("\(try data.storeLocation().displayName) is up to date")
    }
}

struct TokenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token", abstract: "Mint, list and revoke tokens.", subcommands: [Issue.self, List.self, Revoke.self])

    struct Issue: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a bearer token for USER, e.g. a long-lived one for a cron job.",
            discussion: """
                With --name the token is recorded: `mailgate token list` shows it and \
                `mailgate token revoke ID` makes it fail alone. Every token dies early when the user \
                is disabled or `mailgate user revoke-tokens` runs.
                """)

        @OptionGroup var data: DataDirectoryOptions
        @Argument(help: "The user the token is for.") var username: String
        @Option(help: "Lifetime: 30m, 12h, 90d or seconds (at most 3650d).")
        var ttl: DurationArgument = DurationArgument(seconds: 30 * 60)
        @Option(help: "Record the token under this name (1-64 bytes), to list and revoke it on its own.")
        var name: String?

        func validate() throws {
            if let name, !NamedToken.isValidName(name) { throw ValidationError(StoreError.invalidTokenName.description) }
        }

        func run() throws {
            let store = try data.openStore()
            guard let user = try store.user(named: username) else { throw ValidationError("no user \(username)") }
            guard !user.isDisabled else { throw ValidationError("user \(username) is disabled") }
            let now = Int64(Date().timeIntervalSince1970)
            var claims = TokenClaims(subject: user.username, issuedAt: now, expiresAt: now + ttl.seconds,
                                     notBefore: nil, version: user.tokenVersion)
            let signer = try data.tokenSigner()
            if let name {
                let id = try TokenClaims.newTokenID()
                _ = try store.addNamedToken(id: id, name: name, for: user.username,
                                            createdAt: Date(timeIntervalSince1970: TimeInterval(now)),
                                            expiresAt: Date(timeIntervalSince1970: TimeInterval(claims.expiresAt)))
                claims.tokenID = id
                FileHandle.standardError.write(Data("token id \(id) (mailgate token revoke \(id))\n".utf8))
            }
            print(try signer.sign(claims))
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List named tokens (all users, or USER's): id, user, name, created, expires, last used, state.",
            discussion: "Dates are UTC days. Tokens without --name and tokens from POST /token are not recorded.")

        @OptionGroup var data: DataDirectoryOptions
        @Argument(help: "Only this user's tokens.") var username: String?

        func run() throws {
            let store = try data.openStore()
            if let username, try store.user(named: username) == nil { throw ValidationError("no user \(username)") }
            let now = Date()
            print(["ID", "USER", "NAME", "CREATED", "EXPIRES", "LAST USED", "STATE"].joined(separator: "\t"))
            for token in try store.namedTokens(of: username) {
                let state = token.isRevoked ? "revoked" : token.expiresAt < now ? "expired" : "active"
                let lastUsed = token.lastUsedDay.map { Self.day(Date(timeIntervalSince1970: TimeInterval($0 * 86_400))) }
                print([token.id, token.username, Self.printable(token.name), Self.day(token.createdAt),
                       Self.day(token.expiresAt), lastUsed ?? "never", state].joined(separator: "\t"))
            }
        }

        static func day(_ date: Date) -> String {
            let formatter = DateFormatter()
            formatter.locale = Locale(identifier: "en_US_POSIX")
            formatter.timeZone = TimeZone(identifier: "UTC")
            formatter.dateFormat = "yyyy-MM-dd"
            return formatter.string(from: date)
        }

        /// A tab in a name would shift the columns.
        static func printable(_ name: String) -> String { name.replacingOccurrences(of: "\t", with: " ") }
    }

    struct Revoke: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make one named token fail with 401 from the next request on; the user's other tokens keep working.")

        @OptionGroup var data: DataDirectoryOptions
        @Argument(help: """
            The token's id (from `mailgate token list` or `token issue --name`). \
            An id that starts with "-" (from an earlier version) goes after "--": token revoke -- ID.
            """) var id: String

        func run() throws {
            try data.openStore().revokeNamedToken(id: id)
            print("revoked token \(id)")
        }
    }
}
