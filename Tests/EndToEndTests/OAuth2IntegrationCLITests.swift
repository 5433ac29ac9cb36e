import Foundation
import MailgateTesting
import Testing

/// Issue 9: `mailgate integration set --auth oauth2` and `integration show`,
/// run as an administrator would, on a data directory of their own.
@Suite("OAuth2 integrations on the command line")
struct OAuth2IntegrationCLITests {
    static let clientSecret = "GOCSPX-e2e-client-secret-Zq7"

    /// A fresh data directory with the user "alice".
    final class DataDirectory {
        let dir: TempDir
        var data: String { dir.path + "/data" }

        init() throws {
            dir = try TempDir(prefix: "mailgate-e2e-oauth2")
            let initialised = try runTool(E2E.mailgateBinary, ["init", "--data-dir", data], in: dir.path)
            guard initialised.ok else { throw HarnessError("mailgate init: \(initialised.stderr)") }
            let added = try run(["user", "add", "alice"] + E2E.passwordIterations, stdin: "alice-login-password")
            guard added.ok else { throw HarnessError("mailgate user add: \(added.stderr)") }
        }

        /// `mailgate ARGS --data-dir DATA`, `stdin` as its first line.
        func run(_ arguments: [String], stdin: String? = nil) throws -> ToolResult {
            try runTool(E2E.mailgateBinary, arguments + ["--data-dir", data], in: dir.path,
                        stdin: stdin.map { Array(($0 + "\n").utf8) })
        }

        /// `integration show alice`, required to succeed.
        func show() throws -> String {
            let shown = try run(["integration", "show", "alice"])
            guard shown.ok else { throw HarnessError("integration show: \(shown.stderr)") }
            return shown.stdoutText
        }

        /// Every byte SQLite wrote: the database, its WAL and shared memory.
        func databaseBytes() -> [UInt8] {
            ["", "-wal", "-shm"].flatMap { suffix in
                FileManager.default.contents(atPath: data + "/mailgate.sqlite" + suffix).map(Array.init) ?? []
            }
        }

        deinit { dir.remove() }
    }

    private static func bytes(_ haystack: [UInt8], contain needle: String) -> Bool {
        let n = Array(needle.utf8)
        guard !n.isEmpty, haystack.count >= n.count else { return false }
        return (0...(haystack.count - n.count)).contains { haystack[$0..<$0 + n.count].elementsEqual(n) }
    }

    /// `show`'s "label: value" lines, by label.
    private static func fields(_ shown: String) -> [String: String] {
        var fields: [String: String] = [:]
        for line in shown.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            fields[String(line[..<colon])] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return fields
    }

    @Test func googlePresetsAreStoredAndTheSecretIsNeverShown() throws {
        let d = try DataDirectory()
        let set = try d.run(["integration", "set", "alice", "--auth", "oauth2", "--provider", "google",
                             "--client-id", "1234.apps.googleusercontent.com", "--username", "mailer@gmail.example"],
                            stdin: Self.clientSecret)
        #expect(set.ok, "\(set.stderr)")
        #expect(set.stdoutText.contains("run: mailgate integration authorize alice"), "\(set.stdoutText)")
        let shown = try d.show()
        let f = Self.fields(shown)
        #expect(f["host"] == "smtp.gmail.com" && f["port"] == "587" && f["security"] == "starttls", "\(shown)")
        #expect(f["auth"] == "oauth2 (google)")
        #expect(f["username"]?.hasPrefix("mailer@gmail.example") == true)
        #expect(f["client id"] == "1234.apps.googleusercontent.com")
        #expect(f["client secret"] == "stored encrypted")
        #expect(f["token URL"] == "https://oauth2.googleapis.com/token")
        #expect(f["authorization URL"] == "https://accounts.google.com/o/oauth2/v2/auth")
        #expect(f["scope"] == "https://mail.google.com/")
        #expect(f["refresh token"] == "not stored (run: mailgate integration authorize alice)")
        #expect(f["from"] == "mailer@gmail.example", "the mailbox is the default From")
        #expect(f["tenant"] == nil, "no tenant outside Microsoft")
        do { let leaked = shown.contains(Self.clientSecret) || set.stdoutText.contains(Self.clientSecret) || set.stderr.contains(Self.clientSecret); #expect(!leaked) }
        let stored = d.databaseBytes()
        #expect(Self.bytes(stored, contain: "1234.apps.googleusercontent.com"), "the scan reads the right file")
        do { let leaked = Self.bytes(stored, contain: Self.clientSecret); #expect(!leaked, "client secret stored in clear") }
        do { let leaked = Self.bytes(stored, contain: Data(Self.clientSecret.utf8).base64EncodedString()); #expect(!leaked) }
    }

    @Test func microsoftPresetsFollowTheTenantAndExplicitOptionsOverrideThem() throws {
        let d = try DataDirectory()
        let set = try d.run(["integration", "set", "alice", "--auth", "oauth2", "--provider", "microsoft",
                             "--client-id", "00000000-aaaa-bbbb-cccc-000000000000", "--username", "mailer@contoso.example",
                             "--tenant", "contoso.example", "--no-client-secret", "--port", "25", "--from", "noreply@contoso.example"])
        #expect(set.ok, "\(set.stderr)")
        let f = Self.fields(try d.show())
        #expect(f["host"] == "smtp.office365.com" && f["port"] == "25" && f["security"] == "starttls")
        #expect(f["token URL"] == "https://login.microsoftonline.com/contoso.example/oauth2/v2.0/token")
        #expect(f["authorization URL"] == "https://login.microsoftonline.com/contoso.example/oauth2/v2.0/authorize")
        #expect(f["scope"] == "https://outlook.office.com/SMTP.Send offline_access")
        #expect(f["tenant"] == "contoso.example")
        #expect(f["client secret"] == "none (public client)")
        #expect(f["from"] == "noreply@contoso.example")

        let common = try d.run(["integration", "set", "alice", "--auth", "oauth2", "--provider", "microsoft",
                                "--client-id", "c", "--username", "mailer@contoso.example", "--no-client-secret"])
        #expect(common.ok, "\(common.stderr)")
        #expect(Self.fields(try d.show())["token URL"] == "https://login.microsoftonline.com/common/oauth2/v2.0/token")

        for tenant in ["../evil", "contoso.example/x", "a b", ".."] {
            let bad = try d.run(["integration", "set", "alice", "--auth", "oauth2", "--provider", "microsoft",
                                 "--client-id", "c", "--username", "mailer@contoso.example", "--tenant", tenant, "--no-client-secret"])
            #expect(bad.status == .exited(64), "\(tenant): \(bad.status)")
            #expect(bad.stderr.contains("--tenant must be a GUID, a domain name"), "\(bad.stderr)")
        }
        let google = try d.run(["integration", "set", "alice", "--auth", "oauth2", "--provider", "google",
                                "--client-id", "c", "--username", "m@gmail.example", "--tenant", "common", "--no-client-secret"])
        #expect(google.status == .exited(64) && google.stderr.contains("--tenant applies only to --provider microsoft"), "\(google.stderr)")
        // Nothing refused was stored.
        #expect(Self.fields(try d.show())["token URL"] == "https://login.microsoftonline.com/common/oauth2/v2.0/token")
    }

    @Test func customNeedsATokenURLAndAHost() throws {
        let d = try DataDirectory()
        let base = ["integration", "set", "alice", "--auth", "oauth2", "--provider", "custom", "--client-id", "c",
                    "--username", "mailer@example.org", "--no-client-secret"]
        let noURL = try d.run(base + ["--host", "smtp.example.org"])
        #expect(noURL.status == .exited(64))
        #expect(noURL.stderr.contains("--provider custom needs --token-url (the provider's token endpoint)"), "\(noURL.stderr)")
        let noHost = try d.run(base + ["--token-url", "https://id.example.org/token"])
        #expect(noHost.status == .exited(64) && noHost.stderr.contains("--provider custom needs --host"), "\(noHost.stderr)")
        let plainHTTP = try d.run(base + ["--host", "smtp.example.org", "--token-url", "http://id.example.org/token"])
        #expect(plainHTTP.status == .exited(64) && plainHTTP.stderr.contains("https is required"), "\(plainHTTP.stderr)")
        #expect(try d.run(["integration", "show", "alice"]).ok == false, "nothing stored so far")

        let ok = try d.run(base + ["--host", "smtp.example.org", "--token-url", "https://id.example.org/token",
                                   "--scope", "smtp.send offline"])
        #expect(ok.ok, "\(ok.stderr)")
        let f = Self.fields(try d.show())
        #expect(f["auth"] == "oauth2 (custom)" && f["host"] == "smtp.example.org" && f["port"] == "587")
        #expect(f["token URL"] == "https://id.example.org/token" && f["scope"] == "smtp.send offline")
        #expect(f["authorization URL"]?.hasPrefix("(none") == true)
    }

    @Test func oauth2OptionsAreRefusedWithOtherLogins() throws {
        let d = try DataDirectory()
        let mixed = try d.run(["integration", "set", "alice", "--host", "smtp.example.org", "--from", "a@example.org",
                               "--username", "u", "--client-id", "c"], stdin: "pw")
        #expect(mixed.status == .exited(64) && mixed.stderr.contains("--client-id applies only to --auth oauth2"), "\(mixed.stderr)")
        let noUser = try d.run(["integration", "set", "alice", "--auth", "oauth2", "--provider", "google", "--client-id", "c"])
        #expect(noUser.status == .exited(64) && noUser.stderr.contains("--username"), "\(noUser.stderr)")
    }

    /// A password integration is set and shown as before, with `auth: password`.
    @Test func passwordIntegrationsWorkAsBefore() throws {
        let d = try DataDirectory()
        let password = "smtp-password-e2e-Zq7"
        let set = try d.run(["integration", "set", "alice", "--host", "smtp.example.org", "--port", "2525", "--security", "tls",
                             "--username", "smtp-login", "--from", "sender@example.org", "--from-name", "Sender"], stdin: password)
        #expect(set.ok, "\(set.stderr)")
        #expect(set.stdoutText == "SMTP integration for alice: tls://smtp.example.org:2525\n")
        let shown = try d.show()
        let f = Self.fields(shown)
        #expect(f["auth"] == "password" && f["username"] == "smtp-login" && f["password"] == "******** (stored encrypted)")
        #expect(f["host"] == "smtp.example.org" && f["port"] == "2525" && f["security"] == "tls" && f["from name"] == "Sender")
        do { let leaked = shown.contains(password) || Self.bytes(d.databaseBytes(), contain: password); #expect(!leaked) }

        let none = try d.run(["integration", "set", "alice", "--host", "relay.example.org", "--from", "sender@example.org"])
        #expect(none.ok, "\(none.stderr)")
        let g = Self.fields(try d.show())
        #expect(g["auth"] == "none" && g["username"] == "(none: no AUTH)" && g["port"] == "587")
    }
}
