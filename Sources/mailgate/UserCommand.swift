import ArgumentParser
import Foundation
import Store
import Crypto

struct UserCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "user", abstract: "Manage the users who may send mail.",
        subcommands: [Add.self, Passwd.self, Disable.self, Enable.self, RevokeTokens.self, Recipients.self, Limits.self, List.self,
                      Remove.self])

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add a user; the password comes from a prompt, or the first line of stdin.")
        @OptionGroup var data: DataDirectoryOptions
        @OptionGroup var passwordHash: PasswordHashOptions
        @Argument(help: "1-64 characters of A-Z a-z 0-9 . _ @ + -") var username: String

        func run() throws {
            let store = try data.openStore()
            let password = try SecretInput.read(prompt: "Password for \(username): ", confirm: true)
            let hash = try passwordHash.hasher.hash(password)
            _ = try store.addUser(username, passwordHash: hash)
            print("added user \(username)")
        }
    }

    struct Passwd: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Set a user's password (prompt or stdin).")
        @OptionGroup var data: DataDirectoryOptions
        @OptionGroup var passwordHash: PasswordHashOptions
        @Argument var username: String

        func run() throws {
            let store = try data.openStore()
            guard try store.user(named: username) != nil else { throw ValidationError("no user \(username)") }
            let password = try SecretInput.read(prompt: "New password for \(username): ", confirm: true)
            try store.setPasswordHash(passwordHash.hasher.hash(password), for: username)
            print("password changed for \(username)")
        }
    }

    struct Disable: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Disable a user: logins fail and every token issued so far is refused at once.")
        @OptionGroup var data: DataDirectoryOptions
        @Argument var username: String

        func run() throws {
            try data.openStore().setDisabled(true, for: username)
            print("disabled \(username); earlier tokens are revoked")
        }
    }

    struct Enable: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Enable a disabled user (old tokens stay revoked).")
        @OptionGroup var data: DataDirectoryOptions
        @Argument var username: String

        func run() throws {
            try data.openStore().setDisabled(false, for: username)
            print("enabled \(username)")
        }
    }

    struct RevokeTokens: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "revoke-tokens", abstract: "Make every token issued to the user so far fail with 401.")
        @OptionGroup var data: DataDirectoryOptions
        @Argument var username: String

        func run() throws {
            let version = try data.openStore().revokeTokens(for: username)
            print("revoked all tokens of \(username) (token version now \(version))")
        }
    }

    struct Recipients: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show or set which recipients the user's sends may reach.",
            discussion: """
                A send with any recipient outside the patterns gets 403 (recipient_not_allowed) and \
                nothing is sent. Patterns: user@example.com (that address), *@example.com (any \
                address at example.com), *@*.example.com (any address under example.com, not at \
                example.com itself). Domains compare case-insensitively, local parts exactly. \
                Without options, prints the current patterns ("any" when unrestricted).
                """)
        @OptionGroup var data: DataDirectoryOptions
        @Argument var username: String
        @Option(name: .customLong("allow"), parsing: .upToNextOption,
                help: "Only these recipients (replaces the current patterns).")
        var patterns: [String] = []
        @Flag(name: .customLong("any"), help: "Any recipient (clears the patterns).") var any = false

        func validate() throws {
            if any && !patterns.isEmpty { throw ValidationError("give --allow or --any, not both") }
        }

        func run() throws {
            let store = try data.openStore()
            if any {
                try store.setRecipientPolicy(.any, for: username)
            } else if !patterns.isEmpty {
                let policy: RecipientPolicy
                do {
                    policy = try RecipientPolicy(parsing: patterns)
                } catch {
                    throw ValidationError(error.description)
                }
                try store.setRecipientPolicy(policy, for: username)
            }
            let policy = try store.recipientPolicy(for: username)
            print("recipients of \(username): \(policy)")
        }
    }

    struct Limits: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show or set how many recipients the user may send to per minute, hour and day.",
            discussion: """
                Each value is a number (0: unlimited) or "default" (the server's --quota-per-... value). \
                Counted per recipient, shared by every worker and process on this data directory. A send \
                over a quota gets 429 with Retry-After and RateLimit headers; nothing is sent. Without \
                options, prints the current values.
                """)
        @OptionGroup var data: DataDirectoryOptions
        @Argument var username: String
        @Option(name: .customLong("per-minute"), help: "Recipients per minute (a number, 0 or default).")
        var perMinute: QuotaArgument?
        @Option(name: .customLong("per-hour"), help: "Recipients per hour (a number, 0 or default).")
        var perHour: QuotaArgument?
        @Option(name: .customLong("per-day"), help: "Recipients per day (a number, 0 or default).")
        var perDay: QuotaArgument?

        func run() throws {
            let store = try data.openStore()
            var quota = try store.sendQuota(for: username)
            let changes: [(QuotaWindow, QuotaArgument?)] = [(.minute, perMinute), (.hour, perHour), (.day, perDay)]
            if changes.contains(where: { $0.1 != nil }) {
                for case let (window, change?) in changes { quota.perWindow[window] = change.limit }
                try store.setSendQuota(quota, for: username)
            }
            let shown = QuotaWindow.allCases.map { window in
                let value = quota.perWindow[window].map { $0 == 0 ? "unlimited" : String($0) } ?? "default"
                return "per \(window) \(value)"
            }
            print("limits of \(username): \(shown.joined(separator: ", "))")
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List users.")
        @OptionGroup var data: DataDirectoryOptions

        func run() throws {
            let store = try data.openStore()
            for user in try store.listUsers() {
                let integration = try store.integration(for: user.username)
                let smtp = integration.map { "\($0.host):\($0.port)" } ?? "no SMTP integration"
                print("\(user.username)\t\(user.isDisabled ? "disabled" : "enabled")\t\(smtp)")
            }
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a user and their SMTP integration.")
        @OptionGroup var data: DataDirectoryOptions
        @Argument var username: String

        func run() throws {
            try data.openStore().removeUser(username)
            print("removed \(username)")
        }
    }
}
