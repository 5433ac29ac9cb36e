import ArgumentParser
import Foundation
import Store
import Crypto
#if canImport(Glibc)
import Glibc
#endif

/// The PBKDF2 cost of new password hashes. Every stored hash carries its
/// own count, so logins check each password at the cost it was made with;
/// `serve` needs the option only so a login naming an unknown user spends
/// what a known one would. Keep the value the same for `user` and `serve`.
struct PasswordHashOptions: ParsableArguments {
    static let minimum = 10_000

    @Option(name: .customLong("password-iterations"),
            help: "PBKDF2-SHA256 rounds of new password hashes (\(PasswordHashOptions.minimum)-\(PasswordHasher.maximumIterations); lower only for tests or very slow machines).")
    var iterations: Int = PasswordHasher.defaultIterations

    func validate() throws {
        guard (Self.minimum...PasswordHasher.maximumIterations).contains(iterations) else {
            throw ValidationError("--password-iterations must be \(Self.minimum) to \(PasswordHasher.maximumIterations)")
        }
    }

    var hasher: PasswordHasher { PasswordHasher(iterations: iterations) }
}

/// Where the state lives: the data directory's SQLite file (the default),
/// another SQLite file, or a PostgreSQL database several hosts share.
enum StoreLocation: Equatable {
    case sqlite(path: String)
    /// A libpq connection URI (`postgresql://` or `postgres://`).
    case postgresql(uri: String)

    /// `sqlite:PATH` or a libpq URI; anything else is refused with a
    /// message naming `option`.
    init(parsing text: String, option: String = "--store") throws {
        if text.hasPrefix("sqlite:") {
            let path = String(text.dropFirst("sqlite:".count))
            guard !path.isEmpty else { throw ValidationError("\(option) sqlite:PATH needs a path") }
            self = .sqlite(path: path)
        } else if text.hasPrefix("postgresql://") || text.hasPrefix("postgres://") {
            self = .postgresql(uri: text)
        } else {
            throw ValidationError("\(option) must be sqlite:PATH or a PostgreSQL URI (postgresql://user@host:5432/db)")
        }
    }

    /// Opens the store (a SQLite file is created if missing; a PostgreSQL
    /// schema is created or migrated only with `create`). `serving`: the
    /// server's store, which caches credentials between requests (SQLite
    /// always does; PostgreSQL then listens for change notifications).
    func open(secretBox: SecretBox, busyTimeout: TimeInterval = 60, create: Bool = false,
              serving: Bool = false) throws -> any Store {
        switch self {
        case .sqlite(let file):
            return try SQLiteStore(path: file, secretBox: secretBox, busyTimeout: busyTimeout)
        case .postgresql(let uri):
            return try PostgresStore(uri: uri, secretBox: secretBox, migrate: create, cacheCredentials: serving)
        }
    }

    /// For messages: a PostgreSQL URI without its password.
    var displayName: String {
        switch self {
        case .sqlite(let path): "sqlite:\(path)"
        case .postgresql(let uri): PostgresStore.redacted(uri)
        }
    }
}

/// Where Mailgate keeps its state: two key files in the data directory, and
/// the store (`--store`, default the directory's SQLite database).
struct DataDirectoryOptions: ParsableArguments {
    @Option(name: .customLong("data-dir"),
            help: "Data directory (key files, and the SQLite database by default). Default: $MAILGATE_DATA_DIR or /var/lib/mailgate.")
    var dataDir: String?

    @Option(name: .customLong("store"),
            help: "The store: sqlite:PATH or a PostgreSQL URI (postgresql://user@host:5432/mailgate?sslmode=verify-full) that several hosts share. Default: $MAILGATE_STORE, else the data directory's mailgate.sqlite.")
    var store: String?

    var path: String {
        dataDir ?? ProcessInfo.processInfo.environment["MAILGATE_DATA_DIR"] ?? "/var/lib/mailgate"
    }
    var databasePath: String { path + "/mailgate.sqlite" }
    /// HMAC key for tokens.
    var tokenKeyPath: String { keys.tokenKeyPath }
    /// AES-256-GCM key for SMTP passwords and OAuth2 secrets at rest.
    var secretKeyPath: String { keys.secretKeyPath }

    func storeLocation() throws -> StoreLocation {
        guard let text = store ?? ProcessInfo.processInfo.environment["MAILGATE_STORE"], !text.isEmpty else {
            return .sqlite(path: databasePath)
        }
        return try StoreLocation(parsing: text)
    }

    /// `busyTimeout`: how long a SQLite write waits for another process's
    /// (see `SQLiteStore`); commands wait a minute, `serve` passes its own.
    /// `create`: make the database (`init`); otherwise it must exist.
    func openStore(busyTimeout: TimeInterval = 60, create: Bool = false, serving: Bool = false) throws -> any Store {
        let location = try storeLocation()
        if case .sqlite(let file) = location, !create, !FileManager.default.fileExists(atPath: file) {
            throw ValidationError("no database at \(file); run `mailgate init --data-dir \(path)` first")
        }
        return try location.open(secretBox: keys.secretBox(), busyTimeout: busyTimeout, create: create, serving: serving)
    }

    func tokenSigner() throws -> TokenSigner {
        try TokenSigner(key: KeyFile.load(at: tokenKeyPath, minimumLength: TokenSigner.minimumKeyLength))
    }

    /// The directory's key files.
    var keys: KeyFiles { KeyFiles(directory: path) }

    /// Refuses a store initialised with other keys (every host must have the
    /// same two files); records this directory's when it has none yet.
    func checkKeys(of store: any Store) throws {
        try keys.check(store)
    }
}

/// The two key files of a data directory (`token.key`, `secret.key`), apart
/// from where the store is: `store copy` names two stores and one directory.
struct KeyFiles {
    let directory: String

    /// HMAC key for tokens.
    var tokenKeyPath: String { directory + "/token.key" }
    /// AES-256-GCM key for SMTP passwords and OAuth2 secrets at rest.
    var secretKeyPath: String { directory + "/secret.key" }

    func secretBox() throws -> SecretBox {
        try SecretBox(key: KeyFile.load(at: secretKeyPath, minimumLength: 32))
    }

    /// Refuses a store initialised with other keys (every host must have the
    /// same two files); with `record`, records this directory's fingerprints
    /// where the store has none yet, else leaves the store as it is.
    /// Only fingerprints are stored: SHA-256 of a fixed label and the key.
    func check(_ store: any Store, record: Bool = true) throws {
        for (name, path) in [("token.key", tokenKeyPath), ("secret.key", secretKeyPath)] {
            let key = try KeyFile.load(at: path, minimumLength: 32)
            let fingerprint = try Crypto.sha256(Array("mailgate key fingerprint v1\u{0}\(name)\u{0}".utf8) + key)
            if let stored = try store.keyFingerprint(named: name) {
                guard stored == fingerprint else {
                    throw ValidationError("""
                        the store was initialised with other keys than \(path): every host needs the same \
                        token.key and secret.key (copy them from the first host)
                        """)
                }
            } else if record {
                try store.setKeyFingerprint(named: name, fingerprint)
            }
        }
    }
}

/// Reads a secret without it ever appearing in argv: from a prompt with echo
/// off on a terminal, else the first line of stdin.
enum SecretInput {
    /// `what` names the secret in errors ("password", "client secret").
    static func read(prompt: String, confirm: Bool, what: String = "password") throws -> String {
        if isatty(0) != 0 {
            let first = try promptHidden(prompt)
            if confirm {
                let second = try promptHidden("Repeat: ")
                guard first == second else { throw ValidationError("the two entries differ") }
            }
            guard !first.isEmpty else { throw ValidationError("empty \(what)") }
            return first
        }
        guard let line = Swift.readLine(strippingNewline: true), !line.isEmpty else {
            throw ValidationError("expected the \(what) on the first line of stdin")
        }
        return line.hasSuffix("\r") ? String(line.dropLast()) : line
    }

    private static func promptHidden(_ prompt: String) throws -> String {
        FileHandle.standardError.write(Data(prompt.utf8))
        var saved = termios()
        guard tcgetattr(0, &saved) == 0 else { throw ValidationError("cannot read terminal settings") }
        var quiet = saved
        quiet.c_lflag &= ~tcflag_t(ECHO)
        guard tcsetattr(0, TCSAFLUSH, &quiet) == 0 else { throw ValidationError("cannot turn off echo") }
        defer {
            tcsetattr(0, TCSAFLUSH, &saved)
            FileHandle.standardError.write(Data("\n".utf8))
        }
        return Swift.readLine(strippingNewline: true) ?? ""
    }
}

/// "90d", "12h", "30m", "45s" or plain seconds.
struct DurationArgument: ExpressibleByArgument, Sendable {
    let seconds: Int64

    init(seconds: Int64) { self.seconds = seconds }

    init?(argument: String) {
        guard let last = argument.last else { return nil }
        let multiplier: Int64
        var digits = Substring(argument)
        switch last {
        case "s": multiplier = 1; digits = digits.dropLast()
        case "m": multiplier = 60; digits = digits.dropLast()
        case "h": multiplier = 3600; digits = digits.dropLast()
        case "d": multiplier = 86400; digits = digits.dropLast()
        case "0"..."9": multiplier = 1
        default: return nil
        }
        guard let value = Int64(digits), value > 0, value <= 3650 * 86400 / multiplier else { return nil }
        seconds = value * multiplier
    }

    var duration: Duration { .seconds(seconds) }
    var defaultValueDescription: String { "\(seconds)s" }
}

/// Octal file mode such as 660 or 0660.
struct FileModeArgument: ExpressibleByArgument, Sendable {
    let mode: UInt32
    init(mode: UInt32) { self.mode = mode }
    init?(argument: String) {
        guard let value = UInt32(argument, radix: 8), value <= 0o777 else { return nil }
        mode = value
    }
    var defaultValueDescription: String { String(mode, radix: 8) }
}

/// A quota on the command line: a count of recipients (0: unlimited) or
/// "default" (the server's).
struct QuotaArgument: ExpressibleByArgument, Equatable {
    /// nil: the server's default.
    let limit: Int?

    init?(argument: String) {
        if argument == "default" {
            limit = nil
        } else if let value = Int(argument), value >= 0, value <= 1_000_000_000 {
            limit = value
        } else {
            return nil
        }
    }

    static var defaultCompletionKind: CompletionKind { .list(["default", "0"]) }
}
