import Foundation
import Testing
@testable import Store

@Suite struct CredentialsTests {
    @Test(arguments: Backend.allCases) func seesChangesFromAnotherStoreInstance(_ backend: Backend) throws {
        let t = try TemporaryStore(backend)
        _ = try t.store.addUser("alice", passwordHash: "h")
        #expect(try t.store.credentials(for: "nobody") == nil)
        var credentials = try #require(try t.store.credentials(for: "alice"))
        #expect(credentials.user.username == "alice" && credentials.integration == nil)

        let cli = try t.reopen()   // as `mailgate integration set` would
        try cli.setIntegration(sampleIntegration(), for: "alice")
        credentials = try #require(try t.store.credentials(for: "alice"))
        #expect(credentials.integration == sampleIntegration())

        let changed = sampleIntegration(password: "rotated-password")
        try cli.setIntegration(changed, for: "alice")
        #expect(try t.store.credentials(for: "alice")?.integration?.password == "rotated-password")

        _ = try cli.revokeTokens(for: "alice")
        try cli.setDisabled(true, for: "alice")
        credentials = try #require(try t.store.credentials(for: "alice"))
        #expect(credentials.user.isDisabled && credentials.user.tokenVersion == 2)

        try cli.removeUser("alice")
        #expect(try t.store.credentials(for: "alice") == nil)
    }

    @Test(arguments: Backend.allCases) func concurrentReadersAndAWriter(_ backend: Backend) async throws {
        let t = try TemporaryStore(backend)
        _ = try t.store.addUser("alice", passwordHash: "h")
        try t.store.setIntegration(sampleIntegration(), for: "alice")
        let store = t.store
        let total = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    var seen = 0
                    for _ in 0..<200 {
                        if try store.credentials(for: "alice")?.integration?.password == "s3cret-SMTP-passw0rd-Zq7" { seen += 1 }
                    }
                    return seen
                }
            }
            group.addTask {
                for i in 0..<50 {
                    var next = sampleIntegration()
                    next.host = "smtp\(i).example.org"
                    try store.setIntegration(next, for: "alice")
                }
                return 0
            }
            var total = 0
            for try await seen in group { total += seen }
            return total
        }
        #expect(total == 1600)
    }
}
