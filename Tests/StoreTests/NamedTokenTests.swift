import Foundation
import Testing
@testable import Store

/// Issue 10, item 7: named tokens on record, listed and revoked one by one.
@Suite struct NamedTokenTests {
    private let created = Date(timeIntervalSince1970: 1_750_000_000)

    @Test(arguments: Backend.allCases) func tokensAreListedByUserThenCreationAndRevokedOneByOne(_ backend: Backend) throws {
        let t = try TemporaryStore(backend)
        _ = try t.store.addUser("bob", passwordHash: "h")
        _ = try t.store.addUser("alice", passwordHash: "h")
        let cron = try t.store.addNamedToken(id: "id-cron", name: "nightly report", for: "bob", createdAt: created,
                                             expiresAt: created.addingTimeInterval(86_400 * 90))
        _ = try t.store.addNamedToken(id: "id-form", name: "contact form", for: "bob",
                                      createdAt: created.addingTimeInterval(1), expiresAt: created.addingTimeInterval(60))
        _ = try t.store.addNamedToken(id: "id-alice", name: "laptop ☃", for: "alice", createdAt: created,
                                      expiresAt: created.addingTimeInterval(60))
        #expect(try t.store.namedTokens(of: nil).map(\.id) == ["id-alice", "id-cron", "id-form"])
        #expect(try t.store.namedTokens(of: "bob").map(\.name) == ["nightly report", "contact form"])
        #expect(try t.store.namedTokens(of: "bob").first == cron)
        #expect(try t.store.namedToken(id: "id-cron") == cron)

        // The CLI revokes in another process; this one sees it on its next read.
        let cli = try t.reopen()
        try cli.revokeNamedToken(id: "id-cron")
        #expect(try t.store.namedToken(id: "id-cron")?.isRevoked == true)
        #expect(try t.store.namedToken(id: "id-form")?.isRevoked == false, "the other token keeps working")
        try cli.revokeNamedToken(id: "id-cron")  // again: no change, no error
        #expect(throws: StoreError.tokenNotFound("nope")) { try cli.revokeNamedToken(id: "nope") }
        #expect(try t.store.namedToken(id: "nope") == nil)
    }

    @Test(arguments: Backend.allCases) func lastUseIsKeptPerDayAndNeverGoesBack(_ backend: Backend) throws {
        let t = try TemporaryStore(backend)
        _ = try t.store.addUser("bob", passwordHash: "h")
        _ = try t.store.addNamedToken(id: "id", name: "n", for: "bob", createdAt: created, expiresAt: created)
        #expect(try t.store.namedToken(id: "id")?.lastUsedDay == nil)
        try t.store.recordNamedTokenUse(id: "id", day: 20_300)
        #expect(try t.store.namedToken(id: "id")?.lastUsedDay == 20_300)
        try t.store.recordNamedTokenUse(id: "id", day: 20_299)
        #expect(try t.store.namedToken(id: "id")?.lastUsedDay == 20_300)
        #expect(NamedToken.day(of: Date(timeIntervalSince1970: 86_400 * 20_300 + 86_399)) == 20_300)
    }

    @Test(arguments: Backend.allCases) func badNamesAndUnknownUsersAreRefusedAndRemovalTakesTheTokens(_ backend: Backend) throws {
        let t = try TemporaryStore(backend)
        _ = try t.store.addUser("bob", passwordHash: "h")
        for bad in ["", String(repeating: "n", count: 65), "line\nbreak", "tab\tname"] {
            #expect(throws: StoreError.invalidTokenName) {
                try t.store.addNamedToken(id: "x", name: bad, for: "bob", createdAt: created, expiresAt: created)
            }
        }
        #expect(throws: StoreError.userNotFound("nobody")) {
            try t.store.addNamedToken(id: "x", name: "n", for: "nobody", createdAt: created, expiresAt: created)
        }
        _ = try t.store.addNamedToken(id: "gone", name: "n", for: "bob", createdAt: created, expiresAt: created)
        try t.store.removeUser("bob")
        #expect(try t.store.namedToken(id: "gone") == nil)
        #expect(try t.store.namedTokens(of: nil).isEmpty)
    }
}
