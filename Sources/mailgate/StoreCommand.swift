import ArgumentParser
import Foundation
import Store

struct StoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "store", abstract: "Work on a store as a whole: copy it into another (SQLite to PostgreSQL).",
        subcommands: [Copy.self])

    struct Copy: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Copy every user, SMTP integration, named token and policy from one store into a new, empty one.",
            discussion: """
                For moving from one host's SQLite file to a PostgreSQL database that several hosts share:
                  mailgate store copy --data-dir /var/lib/mailgate \\
                      --from sqlite:/var/lib/mailgate/mailgate.sqlite \\
                      --to 'postgresql://mailgate@db.example.com/mailgate?sslmode=verify-full'
                Stop `serve` (or accept that changes made meanwhile are not copied), run this once, then \
                start every host with --store set to the target.

                Copied, as they are stored: users (password hashes, disabled flag, token versions, so \
                tokens issued before the copy keep working and revoked ones stay revoked), the token \
                versions of removed users' names, SMTP integrations with their sealed password, OAuth2 \
                client secret and refresh token (copied byte for byte, never decrypted), named tokens \
                (expiry, last use, revocation), recipient policies, send quota limits, and the key \
                fingerprints.

                Not copied, being short-lived: login attempts (lockouts start afresh), idempotency keys \
                (a retry of a request made before the copy sends again), and send counts (the current \
                quota windows start at 0).

                The target's schema is created or brought up to date first, as `mailgate init --store` \
                does. A target that already holds users is refused (exit status 1) and left as it is: \
                the copy never merges. Everything is written in one transaction.

                The keys stay files: this directory's secret.key opens both stores, and both must have \
                been initialised with this directory's token.key and secret.key (if they record \
                fingerprints). Every host serving the target needs the same two files, copied from \
                here; sealed values open only with the secret.key that sealed them.
                """)

        @Option(name: .customLong("data-dir"),
                help: "Data directory holding token.key and secret.key. Default: $MAILGATE_DATA_DIR or /var/lib/mailgate.")
        var dataDir: String?

        @Option(name: .customLong("from"), help: "The store to copy: sqlite:PATH or a PostgreSQL URI. Its records are read, not changed (an old SQLite file's schema is brought up to date first, as every command does).")
        var from: String

        @Option(name: .customLong("to"),
                help: "The new store: a PostgreSQL URI (postgresql://user@host:5432/mailgate?sslmode=verify-full) or sqlite:PATH. Must hold no users.")
        var to: String

        var directory: String {
            dataDir ?? ProcessInfo.processInfo.environment["MAILGATE_DATA_DIR"] ?? "/var/lib/mailgate"
        }

        func validate() throws {
            let source = try StoreLocation(parsing: from, option: "--from")
            let target = try StoreLocation(parsing: to, option: "--to")
            guard source != target else { throw ValidationError("--from and --to name the same store") }
        }

        func run() throws {
            let source = try StoreLocation(parsing: from, option: "--from")
            let target = try StoreLocation(parsing: to, option: "--to")
            let keys = KeyFiles(directory: directory)
            // Opens the stores; the sealed values are copied, never opened.
            let box = try keys.secretBox()
            if case .sqlite(let file) = source, !FileManager.default.fileExists(atPath: file) {
                throw ValidationError("no database at \(file)")
            }
            let from = try source.open(secretBox: box)
            // A source made with other keys holds values these keys cannot
            // open and tokens they did not sign: refuse before writing.
            try keys.check(from, record: false)
            let to = try target.open(secretBox: box, create: true)
            try keys.check(to, record: false)
            let records = try from.exportRecords()
            do {
                try to.importRecords(records)
            } catch .targetNotEmpty {
                throw CopyRefused(message: """
                    \(target.displayName) is not empty (it holds users, or token versions of removed users): \
                    nothing was copied. Copy only into a new database.
                    """)
            }
            // A source from before fingerprints were recorded gave none.
            try keys.check(to)
            let counts = records.counts
            print("copied \(source.displayName) to \(target.displayName):")
            for (label, count) in [
                ("users", "\(counts.users) (\(counts.disabledUsers) disabled)"),
                ("SMTP integrations", "\(counts.integrations)"),
                ("named tokens", "\(counts.namedTokens)"),
                ("recipient policies", "\(counts.recipientPolicies)"),
                ("send quotas", "\(counts.sendQuotas)"),
                ("removed users' token versions", "\(counts.removedUsernames)"),
                ("key fingerprints", "\(counts.keyFingerprints)"),
            ] {
                print("  \(label): \(count)")
            }
            print("not copied: login attempts, idempotency keys, send counts")
        }
    }
}

/// A refusal worth exit status 1 rather than a usage error's 64: the
/// command was right, the target was not.
struct CopyRefused: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}
