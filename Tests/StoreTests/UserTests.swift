import Foundation
import Testing
@testable import Store

@Suite struct UserTests {
    @Test(arguments: Backend.allCases) func addAndDuplicate(_ backend: Backend) throws {
        let t = try TemporaryStore(backend)
        let alice = try t.store.addUser("alice", passwordHash: "$pbkdf2-sha256$i=1$x$y")
        #expect(alice.username == "alice" && !alice.isDisabled && alice.tokenVersion == 0)
        #expect(try t.store.user(named: "alice") == alice)   // dates survive the round trip exactly
        #expect(throws: StoreError.userExists("alice")) { try t.store.addUser("alice", passwordHash: "other") }
        #expect(try t.store.user(named: "alice")?.passwordHash == "$pbkdf2-sha256$i=1$x$y")
        // Case-sensitive: a different user.
        #expect(try t.store.user(named: "Alice") == nil)
        _ = try t.store.addUser("Bob.b+tag@example-1_x", passwordHash: "h")
        #expect(try t.store.listUsers().map(\.username) == ["Bob.b+tag@example-1_x", "alice"])
    }

    @Test(arguments: ["", String(repeating: "a", count: 65), "al ice", "al\nice", "alice;", "älice", "a/b", "a\0"])
    func invalidUsernames(_ name: String) throws {
        let t = try TemporaryStore()
        #expect(throws: StoreError.invalidUsername) { try t.store.addUser(name, passwordHash: "h") }
        #expect(try t.store.user(named: name) == nil)
        #expect(try t.store.credentials(for: name) == nil)
        #expect(throws: StoreError.invalidUsername) { try t.store.revokeTokens(for: name) }
        #expect(!StoreError.invalidUsername.description.contains(name) || name.isEmpty)
    }

    @Test(arguments: Backend.allCases) func sixtyFourCharactersIsFine(_ backend: Backend) throws {
        let t = try TemporaryStore(backend)
        let name = String(repeating: "a", count: 64)
        #expect(try t.store.addUser(name, passwordHash: "h").username == name)
    }

    @Test(arguments: Backend.allCases) func tokenVersionBumps(_ backend: Backend) throws {
        let t = try TemporaryStore(backend)
        _ = try t.store.addUser("alice", passwordHash: "h")
        #expect(try t.store.revokeTokens(for: "alice") == 1)
        #expect(try t.store.revokeTokens(for: "alice") == 2)
        #expect(try t.store.user(named: "alice")?.tokenVersion == 2)

        try t.store.setDisabled(true, for: "alice")
        var alice = try #require(try t.store.user(named: "alice"))
        #expect(alice.isDisabled && alice.tokenVersion == 3)
        try t.store.setDisabled(false, for: "alice")
        alice = try #require(try t.store.user(named: "alice"))
        #expect(!alice.isDisabled && alice.tokenVersion == 3)   // re-enabling does not revive old tokens

        try t.store.setPasswordHash("new-hash", for: "alice")
        alice = try #require(try t.store.user(named: "alice"))
        #expect(alice.passwordHash == "new-hash" && alice.tokenVersion == 4)

        #expect(throws: StoreError.userNotFound("nobody")) { try t.store.revokeTokens(for: "nobody") }
        #expect(throws: StoreError.userNotFound("nobody")) { try t.store.setDisabled(true, for: "nobody") }
        #expect(throws: StoreError.userNotFound("nobody")) { try t.store.setPasswordHash("x", for: "nobody") }
    }

    @Test(arguments: Backend.allCases) func removeCascadesAndDoesNotRecycleTokenVersions(_ backend: Backend) throws {
        let t = try TemporaryStore(backend)
        _ = try t.store.addUser("alice", passwordHash: "h")
        _ = try t.store.revokeTokens(for: "alice")   // version 1
        try t.store.setIntegration(sampleIntegration(), for: "alice")
        let now = Date()
        if case .allowed(let pending) = try t.store.beginLoginAttempt("alice", from: .unknown, at: now, policy: .init()) {
            try t.store.finishLoginAttempt(pending, .failed)
        }
        #expect(try t.store.loginFailureCount("alice", from: nil, since: now.addingTimeInterval(-60)) == 1)
        try t.store.removeUser("alice")
        #expect(try t.store.user(named: "alice") == nil)
        #expect(try t.store.loginFailureCount("alice", from: nil, since: now.addingTimeInterval(-60)) == 0)
        #expect(throws: StoreError.userNotFound("alice")) { try t.store.removeUser("alice") }
        // A new "alice" must not accept tokens issued to the old one (ver 0 or 1).
        let reborn = try t.store.addUser("alice", passwordHash: "h2")
        #expect(reborn.tokenVersion == 2)
        #expect(try t.store.integration(for: "alice") == nil)   // the old integration went with the old user
    }
}
