import Foundation
import MailgateTesting
import Testing

/// Issue 10, item 7, end to end: `mailgate token issue --name` records a
/// token, `token list` shows it, `token revoke ID` makes it alone fail.
@Suite("Named tokens through nginx")
struct NamedTokenTests {
    /// Issues a named token; returns (token, id) (the id is printed on stderr).
    private func issue(_ env: E2E, _ user: String, name: String, ttl: String = "90d") async throws -> (String, String) {
        let result = try await env.cliResult(["token", "issue", user, "--name", name, "--ttl", ttl])
        #expect(result.ok, "\(result.stderr)")
        let id = try #require(result.stderr.split(separator: " ").dropFirst(2).first.map(String.init),
                              "token id on stderr: \(result.stderr)")
        return (result.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines), id)
    }

    @Test func revokingOneNamedTokenLeavesTheUsersOtherTokensWorking() async throws {
        let env = try await E2E.get()
        let user = try await env.makeMailUser("named")
        let (cron, cronID) = try await issue(env, user.name, name: "nightly report")
        let (form, formID) = try await issue(env, user.name, name: "contact form")
        #expect(cronID != formID)
        let plain = try await env.token(user.name)

        for token in [cron, form, plain] {
            let sent = try await env.send(token: token, to: "r@example.org", subject: uniqueMarker("named"), message: "m")
            #expect(sent.status == 200, "\(sent)")
        }

        let listed = try await env.cli(["token", "list", user.name])
        let today = TokenCommandDay.today
        let rows = listed.split(separator: "\n").map { $0.split(separator: "\t").map(String.init) }
        #expect(rows.first == ["ID", "USER", "NAME", "CREATED", "EXPIRES", "LAST USED", "STATE"], "\(listed)")
        let cronRow = try #require(rows.first { $0.first == cronID }, "\(listed)")
        #expect(cronRow == [cronID, user.name, "nightly report", today, cronRow[4], today, "active"], "\(listed)")
        #expect(rows.count == 3, "only named tokens are listed: \(listed)")

        let revoked = try await env.cli(["token", "revoke", cronID])
        #expect(revoked.contains("revoked token \(cronID)"))
        let refused = try await env.send(token: cron, to: "r@example.org", subject: uniqueMarker("revoked"), message: "m")
        #expect(refused.status == 401, "\(refused)")
        #expect(refused.header("WWW-Authenticate") == "Bearer")
        #expect(refused.detail == "Could not validate credentials")
        #expect(refused.json?["code"] as? String == "invalid_token")
        for token in [form, plain] {
            let sent = try await env.send(token: token, to: "r@example.org", subject: uniqueMarker("still"), message: "m")
            #expect(sent.status == 200, "the user's other tokens keep working: \(sent)")
        }
        let after = try await env.cli(["token", "list", user.name])
        #expect(after.contains("\(cronID)\t\(user.name)\tnightly report") && after.contains("\trevoked"), "\(after)")

        // revoke-tokens still ends every token, named or not.
        try await env.cli(["user", "revoke-tokens", user.name])
        let afterAll = try await env.send(token: form, to: "r@example.org", subject: uniqueMarker("all"), message: "m")
        #expect(afterAll.status == 401)
    }

    @Test func unknownIDsBadNamesAndUnknownUsersAreClearErrors() async throws {
        let env = try await E2E.get()
        let user = try await env.makeUser("named-errors")
        let unknown = try await env.cliResult(["token", "revoke", "no-such-id"])
        #expect(!unknown.ok)
        #expect(unknown.stderr.contains("no named token with id no-such-id"), "\(unknown.stderr)")
        // An id that starts with "-" (older versions could issue one) goes after "--".
        let dashed = try await env.cliResult(["token", "revoke", "--", "-no-such-id"])
        #expect(dashed.stderr.contains("no named token with id -no-such-id"), "\(dashed.stderr)")
        let badName = try await env.cliResult(["token", "issue", user.name, "--name", ""])
        #expect(badName.status == .exited(64))
        #expect(badName.stderr.contains("invalid token name"), "\(badName.stderr)")
        let nobody = try await env.cliResult(["token", "list", "nobody-\(Counter.shared.next())"])
        #expect(!nobody.ok)
        #expect(nobody.stderr.contains("no user"), "\(nobody.stderr)")
        let empty = try await env.cli(["token", "list", user.name])
        #expect(empty.split(separator: "\n").count == 1, "a header and no rows: \(empty)")
    }
}

/// Today's UTC date as `token list` prints it.
enum TokenCommandDay {
    static var today: String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd"
        return formatter.string(from: Date())
    }
}
