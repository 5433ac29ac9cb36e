import Foundation
import MailgateTesting
import Testing
@testable import Store
import Crypto

/// Issue 14: what the PostgreSQL store adds to the shared behaviour (which
/// the other suites check on both backends): named, recorded migrations
/// that two hosts may apply at once, counting across hosts, outages, and
/// connection strings that never show their password.
@Suite struct PostgresStoreTests {
    static let box: SecretBox? = try? SecretBox(key: [UInt8](repeating: 9, count: 32))

    @Test func migrationsAreNamedRecordedAndAppliedOnce() throws {
        let t = try TemporaryStore(.postgresql)
        let store = try #require(t.store as? PostgresStore)
        let names = PostgresSchema.migrations.map(\.name)
        #expect(try store.appliedMigrations() == names)
        #expect(try t.integer("SELECT count(*) FROM mailgate_migrations WHERE applied_at <= now()") == names.count)
        // Opening again (another host) and migrating again change nothing.
        let again = try #require(try t.reopen() as? PostgresStore)
        #expect(try again.appliedMigrations() == names)
        #expect(try PostgresStore.migrate(uri: t.uri).isEmpty)
        #expect(try t.integer("SELECT count(*) FROM mailgate_migrations") == names.count)
        // Every table the store uses is there.
        for table in ["users", "removed_usernames", "smtp_integrations", "login_attempts", "named_tokens",
                      "idempotency_keys", "send_counts", "mailgate_keys"] {
            #expect(try t.integer("SELECT count(*) FROM pg_tables WHERE tablename = '\(table)'") == 1, "\(table)")
        }
    }

    /// Two hosts starting on an empty database at once: the advisory lock
    /// lets one apply everything, the other finds nothing left to do.
    @Test func concurrentMigrationsApplyEachMigrationOnce() async throws {
        let uri = try PostgresCluster.shared().newDatabase()
        let applied = try await onThreads(4) { _ in try PostgresStore.migrate(uri: uri) }
        #expect(applied.map(\.count).sorted() == [0, 0, 0, PostgresSchema.migrations.count])
        let store = try PostgresStore(uri: uri, secretBox: try #require(Self.box), migrate: false)
        #expect(try store.appliedMigrations() == PostgresSchema.migrations.map(\.name))
    }

    /// `serve`'s store caches credentials, and a change made through
    /// another store (another host, or the CLI) reaches it through the
    /// change notifications: within a second, without a restart.
    @Test func cachedCredentialsFollowChangesMadeElsewhere() async throws {
        let t = try TemporaryStore(.postgresql)
        _ = try t.store.addUser("alice", passwordHash: "h")
        let serving = try PostgresStore(uri: t.uri, secretBox: try #require(Self.box), migrate: false,
                                        cacheCredentials: true)
        let other = t.store
        // The listener connects in the background; until then reads go to the database.
        try await Self.eventually("the listener connects", within: 15) { serving.listensForChanges }
        #expect(try serving.credentials(for: "alice")?.user.isDisabled == false)
        let before = try #require(try serving.credentials(for: "alice"))
        try other.setDisabled(true, for: "alice")
        try await Self.eventually("disabled") { try serving.credentials(for: "alice")?.user.isDisabled == true }
        let disabled = try #require(try other.credentials(for: "alice"))
        #expect(disabled.user.tokenVersion > before.user.tokenVersion, "disabling ends earlier tokens")
        _ = try other.revokeTokens(for: "alice")
        try await Self.eventually("tokens revoked") {
            try serving.credentials(for: "alice")?.user.tokenVersion == disabled.user.tokenVersion + 1
        }
        try other.setIntegration(SMTPIntegration(host: "smtp.example.org", port: 587, security: .starttls,
                                                 fromAddress: "a@example.org"), for: "alice")
        try await Self.eventually("integration set") { try serving.credentials(for: "alice")?.integration?.host == "smtp.example.org" }
        try other.removeUser("alice")
        try await Self.eventually("user removed") { try serving.credentials(for: "alice") == nil }
    }

    /// Polls `condition` for up to `seconds` (the bound the issue sets for
    /// a change to reach every host).
    static func eventually(_ what: String, within seconds: Double = 1, _ condition: () throws -> Bool) async throws {
        let deadline = Date().addingTimeInterval(seconds)
        while try !condition() {
            guard Date() < deadline else {
                Issue.record("\(what): not within \(seconds) s")
                return
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Two hosts (two stores on one database), 8 threads each, one quota:
    /// exactly the limit is granted, and the table holds exactly that.
    @Test func aQuotaAcrossTwoHostsGrantsExactlyTheLimit() async throws {
        let t = try TemporaryStore(.postgresql)
        let stores = [t.store, try t.reopen()]
        let at = Date(timeIntervalSince1970: 1_767_225_600)
        let granted = try await onThreads(16) { index -> Int in
            var count = 0
            for _ in 0..<4 where try stores[index % 2].reserveSends(1, for: "alice", limits: [.minute: 100, .hour: 25],
                                                                   at: at).granted {
                count += 1
            }
            return count
        }
        #expect(granted.reduce(0, +) == 25, "\(granted)")
        #expect(try t.integer("SELECT count FROM send_counts WHERE username = 'alice' AND window_seconds = 3600") == 25)
        #expect(try t.integer("SELECT count FROM send_counts WHERE username = 'alice' AND window_seconds = 60") == 25)
        #expect(!(try t.store.reserveSends(1, for: "alice", limits: [.hour: 25], at: at).granted))
    }

    @Test(arguments: Backend.allCases) func keyFingerprintsAreRecordedAndReplaced(_ backend: Backend) throws {
        let t = try TemporaryStore(backend)
        #expect(try t.store.keyFingerprint(named: "token.key") == nil)
        let first = [UInt8](repeating: 0xA5, count: 32), second = [UInt8](repeating: 0x5A, count: 32)
        try t.store.setKeyFingerprint(named: "token.key", first)
        try t.store.setKeyFingerprint(named: "secret.key", second)
        #expect(try t.reopen().keyFingerprint(named: "token.key") == first)
        #expect(try t.store.keyFingerprint(named: "secret.key") == second)
        try t.store.setKeyFingerprint(named: "token.key", second)
        #expect(try t.store.keyFingerprint(named: "token.key") == second)
        #expect(try t.store.keyFingerprint(named: "Token.key") == nil, "names compare by bytes")
        for bad in ["", String(repeating: "k", count: 65), "a\nb"] {
            #expect(throws: StoreError.self) { try t.store.setKeyFingerprint(named: bad, first) }
            #expect(throws: StoreError.self) { try t.store.keyFingerprint(named: bad) }
        }
        #expect(throws: StoreError.self) { try t.store.setKeyFingerprint(named: "x", []) }
        #expect(throws: StoreError.self) { try t.store.setKeyFingerprint(named: "x", [UInt8](repeating: 1, count: 65)) }
    }

    /// The database stopped under a store in use: calls throw
    /// `.unavailable` (never hang, never `.database`); once it is back, the
    /// same store object works again, its connections made anew.
    @Test func anOutageIsUnavailableAndTheSameStoreRecovers() throws {
        let cluster = try PostgresCluster.dedicated()
        let uri = try cluster.newDatabase()
        let store = try PostgresStore(uri: uri, secretBox: try #require(Self.box))
        _ = try store.addUser("alice", passwordHash: "h")
        #expect(try store.credentials(for: "alice") != nil)

        try cluster.stop()
        for _ in 0..<3 {
            let error = #expect(throws: StoreError.self) { try store.credentials(for: "alice") }
            if case .unavailable(let message)? = error {
                #expect(message.contains("127.0.0.1"), "\(message)")
            } else {
                Issue.record("not .unavailable: \(String(describing: error))")
            }
        }
        #expect(throws: StoreError.self) { try store.checkReadable() }
        #expect(throws: StoreError.self) { try PostgresStore(uri: uri, secretBox: try #require(Self.box)) }

        try cluster.start()
        #expect(try store.credentials(for: "alice")?.user.username == "alice")
        try store.checkReadable()
        _ = try store.revokeTokens(for: "alice")

        // A restart under an idle connection: the next call goes through.
        try cluster.stop()
        try cluster.start()
        #expect(try store.credentials(for: "alice")?.user.tokenVersion == 1)
    }

    @Test func anUnreachableServerIsUnavailableAndThePasswordIsNeverShown() throws {
        let probe = try boundLoopbackSocket(listen: nil)   // bound, never listening: connections are refused
        defer { close(probe.fd) }
        let uri = "postgresql://mailgate:hunter2-Zq7@127.0.0.1:\(probe.port)/mailgate?sslmode=disable"
        let store = try PostgresStore(uri: uri, secretBox: try #require(Self.box), migrate: false)
        #expect(!store.description.contains("hunter2-Zq7"))
        #expect(store.description.contains("mailgate:<redacted>@127.0.0.1"))
        let error = #expect(throws: StoreError.self) { try store.checkReadable() }
        guard case .unavailable(let message)? = error else {
            Issue.record("not .unavailable: \(String(describing: error))")
            return
        }
        #expect(!message.contains("hunter2") && !(error?.description.contains("hunter2") ?? true))
        let migrating = #expect(throws: StoreError.self) { try PostgresStore(uri: uri, secretBox: try #require(Self.box)) }
        #expect(!(migrating?.description.contains("hunter2") ?? true))
        // A string libpq cannot parse is refused before any connection,
        // without libpq's message (which can quote it).
        let unparsable = #expect(throws: StoreError.self) {
            try PostgresStore(uri: "postgresql://u:hunter2-Zq7@h/db?nonsense=1", secretBox: try #require(Self.box))
        }
        #expect(!(unparsable?.description.contains("hunter2") ?? true))
    }

    /// A server that takes the connection but never answers (a host gone
    /// quiet): connect_timeout ends the wait, as `.unavailable`.
    @Test func aServerThatNeverAnswersIsUnavailableNotAHang() throws {
        let silent = try boundLoopbackSocket(listen: 16)   // the kernel accepts; nobody reads
        defer { close(silent.fd) }
        let store = try PostgresStore(uri: "postgresql://mailgate@127.0.0.1:\(silent.port)/mailgate?sslmode=disable",
                                      secretBox: try #require(Self.box), migrate: false, connectTimeout: 2)
        let error = #expect(throws: StoreError.self) { try store.credentials(for: "alice") }
        guard case .unavailable? = error else {
            Issue.record("not .unavailable: \(String(describing: error))")
            return
        }
    }

    /// Every connection carries the statement timeout: a statement that
    /// runs past it is cancelled by the server, `.unavailable` (worth a
    /// retry), and the connection stays usable.
    @Test func everyConnectionHasTheStatementTimeout() throws {
        let uri = try PostgresCluster.shared().newDatabase()
        let connection = PGConnection(settings: try PGConnectionSettings(conninfo: uri, connectTimeout: 5,
                                                                         statementTimeout: 0.5))
        let setting = try connection.run(PGStatement("timeout", "SELECT current_setting('statement_timeout')"), [], "read")
        #expect(try setting.text(0, 0) == "500ms")
        #expect {
            try connection.run(PGStatement("sleep", "SELECT pg_sleep(5)"), [], "sleep")
        } throws: { error in
            guard case .unavailable(let message) = error as? StoreError else { return false }
            return message.contains("57014")
        }
        #expect(try connection.run(PGStatement("one", "SELECT 1"), [], "after").int(0, 0) == 1)
    }

    @Test(arguments: [
        ("postgresql://user:secret@host:5432/db", "postgresql://user:<redacted>@host:5432/db"),
        ("postgres://user:p%40ss@host/db?sslmode=require", "postgres://user:<redacted>@host/db?sslmode=require"),
        ("postgresql://user@host/db?password=secret&sslmode=verify-full",
         "postgresql://user@host/db?password=<redacted>&sslmode=verify-full"),
        ("host=db.example user=mg password=secret dbname=mailgate", "host=db.example user=mg password=<redacted> dbname=mailgate"),
        ("host=db password = 'se cr\\'et' dbname=m", "host=db password =<redacted> dbname=m"),
        ("postgresql:///mailgate?host=/run/postgresql", "postgresql:///mailgate?host=/run/postgresql"),
    ])
    func passwordsAreRedactedFromConnectionStrings(uri: String, redacted: String) {
        #expect(PGConnectionSettings.redact(uri) == redacted)
        #expect(!PGConnectionSettings.redact(uri).contains("secret") && !PGConnectionSettings.redact(uri).contains("se cr"))
    }

    /// The `host=/socket/dir` form: over the cluster's Unix socket.
    @Test func aUnixSocketURIWorks() throws {
        let cluster = try PostgresCluster.shared()
        let name = try #require(try cluster.newDatabase().split(separator: "/").last.map(String.init))
        let store = try PostgresStore(uri: cluster.socketURI(database: name), secretBox: try #require(Self.box))
        _ = try store.addUser("alice", passwordHash: "h")
        #expect(try store.listUsers().map(\.username) == ["alice"])
    }

    /// Statements that fail are `.database` with the SQLSTATE, never the
    /// values (a duplicate named token id: the unique violation's detail
    /// would quote it).
    @Test func aRefusedStatementIsADatabaseErrorWithoutItsValues() throws {
        let t = try TemporaryStore(.postgresql)
        _ = try t.store.addUser("alice", passwordHash: "h")
        let created = Date(timeIntervalSince1970: 1_750_000_000)
        _ = try t.store.addNamedToken(id: "secret-id-Zq7", name: "n", for: "alice", createdAt: created, expiresAt: created)
        let error = #expect(throws: StoreError.self) {
            try t.store.addNamedToken(id: "secret-id-Zq7", name: "n", for: "alice", createdAt: created, expiresAt: created)
        }
        guard case .database(let message)? = error else {
            Issue.record("not .database: \(String(describing: error))")
            return
        }
        #expect(message.contains("23505"), "\(message)")
        #expect(!message.contains("(id)=(secret-id-Zq7)"), "\(message)")
    }
}
