import Foundation
import Testing
@testable import Store
import GRDB

/// Issue 10: the sealed SMTP password is bound to the user and to where it
/// may be sent (host, port, security, login), so someone who can write the
/// database but not read the key cannot redirect it to their own server.
@Suite struct PasswordBindingTests {
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

    @Test(arguments: [
        "UPDATE smtp_integrations SET host = 'smtp.attacker.example'",
        "UPDATE smtp_integrations SET port = 2525",
        "UPDATE smtp_integrations SET security = 'tls'",
        "UPDATE smtp_integrations SET username = 'attacker@example.org'",
        "UPDATE smtp_integrations SET username = NULL",
        "UPDATE smtp_integrations SET password_seal_version = 1",
    ])
    func changingWhereThePasswordGoesMakesItUnreadable(change: String) throws {
        for backend in Backend.allCases { try changingWhereThePasswordGoesMakesItUnreadable(change: change, on: backend) }
    }

    private func changingWhereThePasswordGoesMakesItUnreadable(change: String, on backend: Backend) throws {
        let t = try TemporaryStore(backend)
        _ = try t.store.addUser("alice", passwordHash: "h")
        try t.store.setIntegration(sampleIntegration(), for: "alice")
        #expect(try t.store.credentials(for: "alice")?.integration?.password == "s3cret-SMTP-passw0rd-Zq7")
        try tamper(t, change)
        // A fresh open (as the server after a restart) and the running one alike.
        #expect(throws: StoreError.corruptSecret("alice")) { try t.reopen().credentials(for: "alice") }
        #expect(throws: StoreError.corruptSecret("alice")) { try t.store.credentials(for: "alice") }
    }

    @Test(arguments: Backend.allCases) func fieldsThatDoNotDecideTheDestinationCanChange(_ backend: Backend) throws {
        let t = try TemporaryStore(backend)
        _ = try t.store.addUser("alice", passwordHash: "h")
        try t.store.setIntegration(sampleIntegration(), for: "alice")
        try tamper(t, "UPDATE smtp_integrations SET from_name = 'Renamed', updated_at_ms = 1")
        #expect(try t.store.credentials(for: "alice")?.integration?.password == "s3cret-SMTP-passw0rd-Zq7")
    }

    /// A database from before the binding: its version 1 rows are re-sealed
    /// when the store opens it, and are bound from then on.
    @Test func version1PasswordsAreResealedWhenTheStoreOpens() throws {
        let t = try TemporaryStore()
        _ = try t.store.addUser("alice", passwordHash: "h")
        _ = try t.store.addUser("bob", passwordHash: "h")
        try t.store.setIntegration(sampleIntegration(), for: "alice")
        try t.store.setIntegration(sampleIntegration(), for: "bob")
        let seal = PasswordSeal(box: t.box)
        try tamper(t, "UPDATE smtp_integrations SET password_sealed = ?, password_seal_version = 1 WHERE user_id = 1",
                   [try seal.sealVersion1("s3cret-SMTP-passw0rd-Zq7", for: "alice")])
        // bob's row gets alice's version 1 ciphertext: it must not open for bob.
        try tamper(t, "UPDATE smtp_integrations SET password_sealed = ?, password_seal_version = 1 WHERE user_id = 2",
                   [try seal.sealVersion1("s3cret-SMTP-passw0rd-Zq7", for: "alice")])

        let upgraded = try t.reopen()
        #expect(try upgraded.credentials(for: "alice")?.integration?.password == "s3cret-SMTP-passw0rd-Zq7")
        #expect(throws: StoreError.corruptSecret("bob")) { try upgraded.credentials(for: "bob") }
        let versions = try DatabaseQueue(path: t.path).read { db in
            try Int.fetchAll(db, sql: "SELECT password_seal_version FROM smtp_integrations ORDER BY user_id")
        }
        #expect(versions == [2, 1], "alice's row re-sealed; bob's, which does not open, left as it was")

        try tamper(t, "UPDATE smtp_integrations SET host = 'smtp.attacker.example' WHERE user_id = 1")
        #expect(throws: StoreError.corruptSecret("alice")) { try t.reopen().credentials(for: "alice") }
    }
}
