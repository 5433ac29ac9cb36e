import Foundation
import Testing
@testable import Store
import GRDB

/// Issue 10, item 6: which recipients a user's sends may reach.
@Suite struct RecipientPolicyTests {
    @Test(arguments: [
        ("owner@example.com", "owner@example.com"),
        ("*@Example.COM", "*@example.com"),
        ("*@*.example.com", "*@*.example.com"),
        ("first.last+tag@mail.example.org", "first.last+tag@mail.example.org"),
        ("o'brien@example.ie", "o'brien@example.ie"),
    ])
    func patternsParseToTheirCanonicalForm(text: String, canonical: String) throws {
        #expect(try RecipientPolicy.Pattern(parsing: text).description == canonical)
    }

    @Test(arguments: ["", "example.com", "@example.com", "*@", "user@", "a b@example.com", "user@exa mple.com",
                      "user@-example.com", "user@example..com", ".user@example.com", "us..er@example.com",
                      "user@[192.0.2.1]", "user@*", "user@*.", "\"quoted\"@example.com", "user@ex_ample.com",
                      "user@example.com\n*@evil.example", String(repeating: "l", count: 65) + "@example.com"])
    func unusablePatternsAreRefusedSayingWhy(text: String) {
        #expect {
            try RecipientPolicy.Pattern(parsing: text)
        } throws: { error in
            guard case .invalidRecipientPattern(let reason) = error as? StoreError else { return false }
            return reason.hasPrefix(text + ":")
        }
    }

    @Test func matchingIsExactOnTheLocalPartAndCaseInsensitiveOnTheDomain() throws {
        let policy = try RecipientPolicy(parsing: ["owner@example.com", "*@team.example.org", "*@*.example.net"])
        let permitted: [(String, String)] = [
            ("owner", "example.com"), ("owner", "EXAMPLE.com"),
            ("anyone", "team.example.org"), ("x", "Team.Example.Org"),
            ("x", "a.example.net"), ("x", "deep.a.EXAMPLE.net"),
        ]
        let refused: [(String, String)] = [
            ("Owner", "example.com"), ("other", "example.com"), ("owner", "example.com.evil.test"),
            ("owner", "sub.example.com"), ("x", "example.org"), ("x", "evilteam.example.org"),
            ("x", "example.net"), ("x", "aexample.net"), ("x", ".example.net"), ("owner", "[192.0.2.1]"),
        ]
        for (local, domain) in permitted {
            #expect(policy.permits(localPart: local, domain: domain), "\(local)@\(domain)")
        }
        for (local, domain) in refused {
            #expect(!policy.permits(localPart: local, domain: domain), "\(local)@\(domain)")
        }
        #expect(RecipientPolicy.any.permits(localPart: "x", domain: "[192.0.2.1]"))
    }

    @Test(arguments: Backend.allCases) func policyIsStoredReadByTheNextRequestAndCleared(_ backend: Backend) throws {
        let t = try TemporaryStore(backend)
        _ = try t.store.addUser("form", passwordHash: "h")
        #expect(try t.store.recipientPolicy(for: "form").allowsAny, "a new user may write to anyone")

        let policy = try RecipientPolicy(parsing: ["owner@example.com", "*@*.Example.org", "owner@example.com"])
        #expect(policy.patterns.count == 2, "duplicates are kept once")
        try t.store.setRecipientPolicy(policy, for: "form")
        #expect(try t.store.recipientPolicy(for: "form") == policy)
        // Another process (the CLI) sees it, and a change there reaches this one.
        let other = try t.reopen()
        #expect(try other.recipientPolicy(for: "form") == policy)
        try other.setRecipientPolicy(.any, for: "form")
        #expect(try t.store.recipientPolicy(for: "form").allowsAny)

        #expect(throws: StoreError.userNotFound("nobody")) { try t.store.setRecipientPolicy(policy, for: "nobody") }
        #expect(throws: StoreError.invalidUsername) { try t.store.setRecipientPolicy(policy, for: "bad name") }
    }

    /// A row altered by hand must not turn into "any recipient".
    @Test(arguments: Backend.allCases) func unreadableStoredPolicyFailsClosed(_ backend: Backend) throws {
        let t = try TemporaryStore(backend)
        _ = try t.store.addUser("form", passwordHash: "h")
        for damaged in ["", "not a pattern", "owner@example.com\n"] {
            try t.execute("UPDATE users SET allowed_recipients = '\(damaged)' WHERE username = 'form'")
            #expect(throws: StoreError.self, "\(damaged.debugDescription)") { try t.store.credentials(for: "form") }
        }
    }
}
