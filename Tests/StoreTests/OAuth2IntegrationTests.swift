import Foundation
import Testing
@testable import Store
import Crypto
import GRDB
import Synchronization

let sampleClientSecret = "GOCSPX-client-secret-Zq7-abcdef"
let sampleRefreshToken = "1//0refresh-token-Zq7-ghijklmnop"

func sampleOAuth2Integration(clientSecret: String? = sampleClientSecret,
                             refreshToken: String? = sampleRefreshToken) -> SMTPIntegration {
    SMTPIntegration(
        host: "smtp.gmail.com", port: 587, security: .starttls,
        authentication: .oauth2(username: "mailer@gmail.example", OAuth2Credentials(
            provider: .google, tokenURL: "https://oauth2.googleapis.com/token",
            authorizationURL: "https://accounts.google.com/o/oauth2/v2/auth", clientID: "1234.apps.googleusercontent.com",
            clientSecret: clientSecret, refreshToken: refreshToken, scope: "https://mail.google.com/")),
        fromAddress: "mailer@gmail.example", fromName: "Mailer", updatedAt: Date(timeIntervalSince1970: 1_760_000_000.5))
}

/// Issue 9: OAuth2 integrations in the store.
@Suite struct OAuth2IntegrationTests {
    /// Runs `sql` on the file as another writer would (no key involved).
    private func tamper(_ t: TemporaryStore, _ sql: String, _ arguments: StatementArguments = []) throws {
        guard arguments.isEmpty else {
            let queue = try DatabaseQueue(path: t.path)
            try queue.write { db in try db.execute(sql: sql, arguments: arguments) }
            try queue.close()
            return
        }
        try t.execute(sql)
    }

    @Test(arguments: Backend.allCases) func eachKindRoundTrips(_ backend: Backend) throws {
        let t = try TemporaryStore(backend)
        _ = try t.store.addUser("alice", passwordHash: "h")
        var none = sampleIntegration()
        none.authentication = .none
        let microsoft = SMTPIntegration(
            host: "smtp.office365.com", port: 587, security: .starttls,
            authentication: .oauth2(username: "mailer@contoso.example", OAuth2Credentials(
                provider: .microsoft, tokenURL: "https://login.microsoftonline.com/contoso.example/oauth2/v2.0/token",
                authorizationURL: nil, clientID: "00000000-aaaa-bbbb-cccc-000000000000", clientSecret: nil,
                refreshToken: nil, scope: "https://outlook.office.com/SMTP.Send offline_access", tenant: "contoso.example")),
            fromAddress: "mailer@contoso.example", updatedAt: Date(timeIntervalSince1970: 1_760_000_001))
        for integration in [sampleIntegration(), none, sampleOAuth2Integration(), microsoft, sampleIntegration()] {
            try t.store.setIntegration(integration, for: "alice")
            #expect(try t.store.integration(for: "alice") == integration)
            // And as a fresh process (the CLI) reads it.
            #expect(try t.reopen().integration(for: "alice") == integration)
        }
        #expect(try t.store.integration(for: "alice")?.authentication.kind == "password")
    }

    @Test(arguments: Backend.allCases) func oauth2SecretsNeverInTheFileInClear(_ backend: Backend) throws {
        let t = try TemporaryStore(backend)
        _ = try t.store.addUser("alice", passwordHash: "h")
        try t.store.setIntegration(sampleOAuth2Integration(), for: "alice")
        try t.store.storeRefreshToken("1//rotated-refresh-Zq7-qrstuv", for: "alice",
                                      issuedTo: try #require(sampleOAuth2Integration().refreshTokenOwner), origin: .rotation)
        #expect(try t.store.integration(for: "alice")?.oauth2?.refreshToken == "1//rotated-refresh-Zq7-qrstuv")
        let raw = try t.rawBytes()
        // The scan finds what is stored in clear, so its silence on the secrets means something.
        #expect(contains(raw, Array("1234.apps.googleusercontent.com".utf8)))
        for secret in [sampleClientSecret, sampleRefreshToken, "1//rotated-refresh-Zq7-qrstuv"] {
            let leaked = holdsInClear(raw, secret)
            #expect(!leaked)
        }
    }

    @Test(arguments: [
        // The client secret moved into the refresh token's column.
        "UPDATE smtp_integrations SET oauth2_refresh_token_sealed = oauth2_client_secret_sealed",
        "UPDATE smtp_integrations SET oauth2_client_secret_sealed = oauth2_refresh_token_sealed",
        // Where the secrets (or the access tokens they yield) would go.
        "UPDATE smtp_integrations SET oauth2_token_url = 'https://attacker.example/token'",
        "UPDATE smtp_integrations SET oauth2_client_id = 'attacker-client'",
        "UPDATE smtp_integrations SET host = 'smtp.attacker.example'",
        "UPDATE smtp_integrations SET security = 'tls'",
        "UPDATE smtp_integrations SET username = 'attacker@example.org'",
    ])
    func movedOrRedirectedSecretsDoNotOpen(change: String) throws {
        for backend in Backend.allCases { try movedOrRedirectedSecretsDoNotOpen(change: change, on: backend) }
    }

    private func movedOrRedirectedSecretsDoNotOpen(change: String, on backend: Backend) throws {
        let t = try TemporaryStore(backend)
        _ = try t.store.addUser("alice", passwordHash: "h")
        try t.store.setIntegration(sampleOAuth2Integration(), for: "alice")
        #expect(try t.store.integration(for: "alice")?.oauth2?.clientSecret == sampleClientSecret)
        try tamper(t, change)
        #expect(throws: StoreError.corruptOAuth2Secret("alice")) { try t.reopen().credentials(for: "alice") }
        #expect(throws: StoreError.corruptOAuth2Secret("alice")) { try t.store.credentials(for: "alice") }
        #expect(!StoreError.corruptOAuth2Secret("alice").description.contains(sampleRefreshToken))
    }

    @Test(arguments: Backend.allCases) func secretsDoNotOpenInAnotherUsersRow(_ backend: Backend) throws {
        let t = try TemporaryStore(backend)
        _ = try t.store.addUser("alice", passwordHash: "h")
        _ = try t.store.addUser("bob", passwordHash: "h")
        try t.store.setIntegration(sampleOAuth2Integration(), for: "alice")
        try t.store.setIntegration(sampleOAuth2Integration(clientSecret: "bobs-secret", refreshToken: "bobs-token"), for: "bob")
        try tamper(t, """
            UPDATE smtp_integrations SET oauth2_refresh_token_sealed =
                (SELECT oauth2_refresh_token_sealed FROM smtp_integrations WHERE user_id = 1)
            WHERE user_id = 2
            """)
        #expect(try t.store.integration(for: "alice")?.oauth2?.refreshToken == sampleRefreshToken)
        #expect(throws: StoreError.corruptOAuth2Secret("bob")) { try t.store.credentials(for: "bob") }
    }

    @Test(arguments: Backend.allCases) func fieldsThatDoNotDecideWhereSecretsGoCanChange(_ backend: Backend) throws {
        let t = try TemporaryStore(backend)
        _ = try t.store.addUser("alice", passwordHash: "h")
        try t.store.setIntegration(sampleOAuth2Integration(), for: "alice")
        try tamper(t, "UPDATE smtp_integrations SET oauth2_scope = 'openid', from_name = 'Renamed', updated_at_ms = 1")
        #expect(try t.store.integration(for: "alice")?.oauth2?.refreshToken == sampleRefreshToken)
    }

    /// A database of v3 (before OAuth2) upgrades: its password and
    /// login-less integrations read back as they were, and keep working.
    @Test func aVersion3DatabaseKeepsItsIntegrations() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mailgate-v3-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/mailgate.sqlite"
        let box = try SecretBox(key: [UInt8](repeating: 5, count: 32))
        let password = sampleIntegration()
        var none = sampleIntegration()
        none.authentication = .none
        do {
            let old = try DatabasePool(path: path, configuration: SQLiteSchema.configuration(busyTimeout: 5))
            try SQLiteSchema.migrator.migrate(old, upTo: "v3 idempotency_keys")
            let sealed = try PasswordSeal(box: box).seal("s3cret-SMTP-passw0rd-Zq7",
                                                         for: PasswordSeal.Binding(username: "alice", integration: password))
            try old.write { db in
                for (id, name) in [(1, "alice"), (2, "bob")] {
                    try db.execute(sql: "INSERT INTO users (id, username, password_hash, created_at_ms) VALUES (?, ?, 'h', 0)",
                                   arguments: [id, name])
                }
                try db.execute(sql: """
                    INSERT INTO smtp_integrations (user_id, host, port, security, username, password_sealed, from_address,
                        from_name, updated_at_ms, password_seal_version)
                    VALUES (1, 'smtp.example.org', 587, 'starttls', 'mailer@example.org', ?, 'noreply@example.org', 'Example', ?, 2),
                           (2, 'smtp.example.org', 587, 'starttls', NULL, NULL, 'noreply@example.org', 'Example', ?, 2)
                    """, arguments: [sealed, StoredDate.milliseconds(password.updatedAt), StoredDate.milliseconds(none.updatedAt)])
            }
            try old.close()
        }
        let store = try SQLiteStore(path: path, secretBox: box)
        #expect(try store.appliedMigrations().contains("v4 smtp_integrations.oauth2"))
        #expect(try store.integration(for: "alice") == password)
        #expect(try store.integration(for: "bob") == none)
        // Still writable as before, and now as OAuth2 too.
        try store.setIntegration(sampleIntegration(password: "new-password"), for: "alice")
        #expect(try store.integration(for: "alice")?.password == "new-password")
        try store.setIntegration(sampleOAuth2Integration(), for: "bob")
        #expect(try store.integration(for: "bob") == sampleOAuth2Integration())
    }

    @Test(arguments: Backend.allCases) func storeRefreshTokenChangesOnlyTheToken(_ backend: Backend) throws {
        let t = try TemporaryStore(backend)
        _ = try t.store.addUser("alice", passwordHash: "h")
        let integration = sampleOAuth2Integration(refreshToken: nil)
        try t.store.setIntegration(integration, for: "alice")
        let owner = try #require(integration.refreshTokenOwner)
        // The server's cache is warm; the CLI (another instance) stores the token.
        #expect(try t.store.integration(for: "alice")?.oauth2?.refreshToken == nil)
        let cli = try t.reopen()
        try cli.storeRefreshToken("first-grant", for: "alice", issuedTo: owner, origin: .authorization)
        let authorized = try #require(try t.store.integration(for: "alice"))
        var expected = integration
        expected.authentication = .oauth2(username: "mailer@gmail.example", {
            var credentials = integration.oauth2!
            credentials.refreshToken = "first-grant"
            return credentials
        }())
        expected.updatedAt = authorized.updatedAt
        #expect(authorized == expected, "only the token and updatedAt changed")
        #expect(authorized.updatedAt > integration.updatedAt, "a new grant is a new version")

        // A rotation, from a worker thread of the running server: updatedAt stays.
        let store = t.store
        let done = DispatchSemaphore(value: 0)
        let failure = Mutex<StoreError?>(nil)
        Thread.detachNewThread {
            do throws(StoreError) {
                try store.storeRefreshToken("rotated", for: "alice", issuedTo: owner, origin: .rotation)
            } catch {
                failure.withLock { $0 = error }
            }
            done.signal()
        }
        done.wait()
        #expect(failure.withLock { $0 } == nil)
        let rotated = try #require(try t.store.integration(for: "alice"))
        expected.authentication = .oauth2(username: "mailer@gmail.example", {
            var credentials = integration.oauth2!
            credentials.refreshToken = "rotated"
            return credentials
        }())
        #expect(rotated == expected, "only the token changed, updatedAt included")
    }

    @Test(arguments: Backend.allCases) func storeRefreshTokenOnlyForTheClientAndMailboxItWasIssuedTo(_ backend: Backend) throws {
        let t = try TemporaryStore(backend)
        _ = try t.store.addUser("alice", passwordHash: "h")
        _ = try t.store.addUser("bob", passwordHash: "h")
        try t.store.setIntegration(sampleOAuth2Integration(), for: "alice")
        let owner = try #require(sampleOAuth2Integration().refreshTokenOwner)
        for other in [RefreshTokenOwner(tokenURL: owner.tokenURL, clientID: "another-client", mailbox: owner.mailbox),
                      RefreshTokenOwner(tokenURL: "https://other.example/token", clientID: owner.clientID, mailbox: owner.mailbox),
                      RefreshTokenOwner(tokenURL: owner.tokenURL, clientID: owner.clientID, mailbox: "other@gmail.example")] {
            #expect(throws: StoreError.integrationChanged("alice")) {
                try t.store.storeRefreshToken("stale", for: "alice", issuedTo: other, origin: .rotation)
            }
        }
        #expect(try t.store.integration(for: "alice")?.oauth2?.refreshToken == sampleRefreshToken)
        #expect(throws: StoreError.integrationNotFound("bob")) {
            try t.store.storeRefreshToken("x", for: "bob", issuedTo: owner, origin: .authorization)
        }
        try t.store.setIntegration(sampleIntegration(), for: "bob")
        #expect(throws: StoreError.invalidIntegration("not an OAuth2 integration")) {
            try t.store.storeRefreshToken("x", for: "bob", issuedTo: owner, origin: .authorization)
        }
        #expect(throws: StoreError.userNotFound("carol")) {
            try t.store.storeRefreshToken("x", for: "carol", issuedTo: owner, origin: .authorization)
        }
        #expect(throws: StoreError.invalidIntegration("OAuth2 refresh token")) {
            try t.store.storeRefreshToken("line\r\nbreak", for: "alice", issuedTo: owner, origin: .rotation)
        }
    }

    /// Setting an integration again without a refresh token keeps the
    /// stored one only while it belongs to the same client and mailbox.
    @Test(arguments: Backend.allCases) func resettingKeepsTheGrantOnlyForTheSameClientAndMailbox(_ backend: Backend) throws {
        let t = try TemporaryStore(backend)
        _ = try t.store.addUser("alice", passwordHash: "h")
        try t.store.setIntegration(sampleOAuth2Integration(), for: "alice")
        var moved = sampleOAuth2Integration(refreshToken: nil)
        moved.host = "smtp-relay.gmail.com"
        moved.port = 465
        moved.security = .tls
        try t.store.setIntegration(moved, for: "alice")
        // Re-sealed for the new host: it opens there.
        #expect(try t.reopen().integration(for: "alice")?.oauth2?.refreshToken == sampleRefreshToken)

        let changes: [(inout OAuth2Credentials, inout String) -> Void] = [
            { credentials, _ in credentials.clientID = "another-client" },
            { credentials, _ in credentials.tokenURL = "https://oauth2.example.org/token" },
            { _, mailbox in mailbox = "someone-else@gmail.example" },
        ]
        for change in changes {
            try t.store.setIntegration(sampleOAuth2Integration(), for: "alice")
            var credentials = try #require(sampleOAuth2Integration(refreshToken: nil).oauth2)
            var mailbox = "mailer@gmail.example"
            change(&credentials, &mailbox)
            var changed = sampleOAuth2Integration()
            changed.authentication = .oauth2(username: mailbox, credentials)
            try t.store.setIntegration(changed, for: "alice")
            #expect(try t.store.integration(for: "alice")?.oauth2?.refreshToken == nil)
        }
        // From a password integration there is nothing to keep.
        try t.store.setIntegration(sampleIntegration(), for: "alice")
        try t.store.setIntegration(sampleOAuth2Integration(refreshToken: nil), for: "alice")
        #expect(try t.store.integration(for: "alice")?.oauth2?.refreshToken == nil)
    }

    /// One unusable change to the sample OAuth2 integration, and the
    /// field `validate` names for it.
    struct Unusable: Sendable, CustomTestStringConvertible {
        let what: String
        let field: String
        let change: @Sendable (inout SMTPIntegration) -> Void

        /// A change to the OAuth2 credentials.
        init(_ what: String, _ field: String, credentials change: @escaping @Sendable (inout OAuth2Credentials) -> Void) {
            self.what = what
            self.field = field
            self.change = { integration in
                guard case .oauth2(let mailbox, var credentials) = integration.authentication else { return }
                change(&credentials)
                integration.authentication = .oauth2(username: mailbox, credentials)
            }
        }

        init(_ what: String, _ field: String, integration change: @escaping @Sendable (inout SMTPIntegration) -> Void) {
            self.what = what
            self.field = field
            self.change = change
        }

        var testDescription: String { what }
    }

    @Test(arguments: [
        Unusable("empty client id", "OAuth2 client id", credentials: { $0.clientID = "" }),
        Unusable("client id CR/LF", "OAuth2 client id", credentials: { $0.clientID = "id\r\nX: y" }),
        Unusable("http token URL", "OAuth2 token URL", credentials: { $0.tokenURL = "http://oauth2.example.org/token" }),
        Unusable("ftp token URL", "OAuth2 token URL", credentials: { $0.tokenURL = "ftp://oauth2.example.org/token" }),
        Unusable("token URL with user info", "OAuth2 token URL", credentials: { $0.tokenURL = "https://user:pw@oauth2.example.org/token" }),
        Unusable("relative token URL", "OAuth2 token URL", credentials: { $0.tokenURL = "/token" }),
        Unusable("http authorization URL", "OAuth2 authorization URL", credentials: { $0.authorizationURL = "http://accounts.example.org/auth" }),
        Unusable("client secret with NUL", "OAuth2 client secret", credentials: { $0.clientSecret = "a\0b" }),
        Unusable("refresh token with LF", "OAuth2 refresh token", credentials: { $0.refreshToken = "a\nb" }),
        Unusable("empty refresh token", "OAuth2 refresh token", credentials: { $0.refreshToken = "" }),
        Unusable("non-ASCII scope", "OAuth2 scope", credentials: { $0.scope = "mail.send \u{2709}" }),
        Unusable("scope with a tab", "OAuth2 scope", credentials: { $0.scope = "a\tb" }),
        Unusable("tenant for google", "OAuth2 tenant", credentials: { $0.tenant = "common" }),
        Unusable("path in tenant", "OAuth2 tenant", credentials: { $0.provider = .microsoft; $0.tenant = "../evil" }),
        Unusable("dot tenant", "OAuth2 tenant", credentials: { $0.provider = .microsoft; $0.tenant = ".." }),
        Unusable("empty mailbox", "username", integration: { i in
            if let c = i.oauth2 { i.authentication = .oauth2(username: "", c) }
        }),
        Unusable("mailbox with CR", "username", integration: { i in
            if let c = i.oauth2 { i.authentication = .oauth2(username: "a@b\r", c) }
        }),
        Unusable("no TLS to a remote host", "security", integration: { $0.security = .none }),
    ])
    func unusableOAuth2FieldsAreRefused(_ unusable: Unusable) throws {
        var integration = sampleOAuth2Integration()
        try integration.validate()
        unusable.change(&integration)
        let error = #expect(throws: StoreError.self) { try integration.validate() }
        if case .invalidIntegration(let named)? = error {
            #expect(named.hasPrefix(unusable.field), "\(named)")
        } else {
            Issue.record("\(String(describing: error))")
        }
        // setIntegration refuses it the same way, storing nothing.
        for backend in Backend.allCases {
            let t = try TemporaryStore(backend)
            _ = try t.store.addUser("alice", passwordHash: "h")
            #expect(throws: StoreError.self) { try t.store.setIntegration(integration, for: "alice") }
            #expect(try t.store.integration(for: "alice") == nil)
        }
    }

    @Test func validOAuth2Variants() throws {
        var integration = sampleOAuth2Integration(clientSecret: nil, refreshToken: nil)
        try integration.validate()
        var credentials = try #require(integration.oauth2)
        credentials.provider = .custom
        credentials.tokenURL = "http://127.0.0.1:8080/token"
        credentials.authorizationURL = "http://[::1]:8080/authorize"
        credentials.scope = ""
        integration.authentication = .oauth2(username: "mailer@example.org", credentials)
        integration.host = "127.0.0.1"
        integration.security = .none
        try integration.validate()
        credentials.provider = .microsoft
        for tenant in ["common", "organizations", "contoso.onmicrosoft.com", "72f988bf-86f1-41af-91ab-2d7cd011db47"] {
            credentials.tenant = tenant
            integration.authentication = .oauth2(username: "mailer@example.org", credentials)
            try integration.validate()
        }
        for tenant in ["", "a/b", "..", "a..b", "-a", "a-", "evil.com/x?", "tenant%2F", "a b", "ü", ".a"] {
            #expect(!OAuth2Credentials.isValidTenant(tenant), "tenant \(tenant)")
        }
    }

    @Test(arguments: Backend.allCases) func descriptionsRedactOAuth2Secrets(_ backend: Backend) throws {
        let t = try TemporaryStore(backend)
        _ = try t.store.addUser("alice", passwordHash: "h")
        try t.store.setIntegration(sampleOAuth2Integration(), for: "alice")
        let credentials = try #require(try t.store.credentials(for: "alice"))
        let oauth2 = try #require(credentials.integration?.oauth2)
        var texts = [String(describing: credentials), String(reflecting: credentials),
                     String(describing: credentials.integration), String(describing: oauth2), String(reflecting: oauth2),
                     String(describing: credentials.integration?.authentication), "\(oauth2)"]
        for value in [credentials as Any, oauth2 as Any, credentials.integration?.authentication as Any] {
            var dumped = ""
            dump(value, to: &dumped)
            texts.append(dumped)
        }
        for text in texts {
            #expect(text.contains("1234.apps.googleusercontent.com"), "the client id is shown: \(text.prefix(80))")
            let leaked = text.contains(sampleClientSecret) || text.contains(sampleRefreshToken)
            #expect(!leaked)
        }
        #expect(String(describing: oauth2).contains("refreshToken: <redacted>"))
    }

    @Test func presetsAreTheProvidersEndpoints() {
        let google = OAuth2Preset.of(.google)
        #expect(google?.host == "smtp.gmail.com" && google?.port == 587 && google?.security == .starttls)
        #expect(google?.tokenURL == "https://oauth2.googleapis.com/token" && google?.scope == "https://mail.google.com/")
        let microsoft = OAuth2Preset.of(.microsoft, tenant: "contoso.example")
        #expect(microsoft?.host == "smtp.office365.com")
        #expect(microsoft?.tokenURL == "https://login.microsoftonline.com/contoso.example/oauth2/v2.0/token")
        #expect(microsoft?.authorizationURL == "https://login.microsoftonline.com/contoso.example/oauth2/v2.0/authorize")
        #expect(microsoft?.scope == "https://outlook.office.com/SMTP.Send offline_access")
        #expect(OAuth2Preset.of(.microsoft)?.tokenURL.contains("/common/") == true)
        #expect(OAuth2Preset.of(.custom) == nil)
    }
}
