import Foundation
import MailgateTesting
import Testing

/// Issue 14, item 7 end to end: `mailgate store copy` from the main SQLite
/// data directory into a new PostgreSQL database, then a `serve` on that
/// database (the same key files) behind its own nginx answers as the SQLite
/// store did: tokens issued before the copy work, revoked ones stay
/// revoked, the password logs in; a second copy into it is refused.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct StoreCopyCommandTests {
    @Test func aCopiedStoreServesTheSameAnswers() async throws {
        let e2e = try await E2E.get()
        // Before the copy, on the SQLite store: a mail user, a token from
        // before a revoke-tokens (dead), one from after (live), a named
        // token revoked and one kept.
        let user = try await e2e.makeMailUser("copy")
        let dead = try await e2e.token(user.name)
        _ = try await e2e.cli(["user", "revoke-tokens", user.name])
        let token = try await e2e.token(user.name)
        let kept = try await e2e.cli(["token", "issue", user.name, "--name", "kept"])
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let revokedResult = try await e2e.cliResult(["token", "issue", user.name, "--name", "revoked"])
        #expect(revokedResult.ok, "\(revokedResult.stderr)")
        let revoked = revokedResult.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
        let id = try #require(revokedResult.stderr.split(separator: " ").dropFirst(2).first.map(String.init))
        _ = try await e2e.cli(["token", "revoke", id])

        let uri = try PostgresCluster.shared().newDatabase()
        let copy = try await e2e.cliResult(["store", "copy", "--from", "sqlite:\(e2e.dataDir)/mailgate.sqlite", "--to", uri])
        #expect(copy.ok, "\(copy.stderr)")
        #expect(copy.stdoutText.contains("users: "), "\(copy.stdoutText)")
        #expect(copy.stdoutText.contains("not copied: login attempts, idempotency keys, send counts"), "\(copy.stdoutText)")

        // Another host: a directory with only the two key files.
        let dir = e2e.dir + "/copied-\(UInt32.random(in: 0 ..< .max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        for key in ["token.key", "secret.key"] {
            try FileManager.default.copyItem(atPath: e2e.dataDir + "/" + key, toPath: dir + "/" + key)
        }
        let socket = dir + "/mailgate.sock"
        let mailgate = try E2E.startMailgate(bin: e2e.bin, dataDir: dir, socket: socket, log: dir + "/mailgate.log",
                                             extra: ["--store", uri, "--ca-file", e2e.caBundle], in: e2e.dir)
        defer { mailgate.stop() }
        let (nginx, port) = try E2E.startNginx(in: e2e.dir, name: "nginx-copied", socket: socket, rate: "10000r/s")
        defer { nginx.stop() }

        func send(_ token: String, _ subject: String) async throws -> HTTPResponse {
            try await e2e.sendJSON(token: token, ["to": "rcpt@example.org", "subject": subject, "message": "x"], port: port)
        }
        let marker = uniqueMarker("copied")
        let sent = try await send(token, marker)
        #expect(sent.status == 200, "\(sent.text)")
        _ = try await e2e.capture.waitForMessage(containing: marker)
        let named = uniqueMarker("copied-named")
        #expect(try await send(kept, named).status == 200)
        _ = try await e2e.capture.waitForMessage(containing: named)
        #expect(try await send(dead, uniqueMarker("dead")).status == 401, "revoked before the copy")
        #expect(try await send(revoked, uniqueMarker("revoked")).status == 401, "named token revoked before the copy")

        let login = try await e2e.login(user.name, user.password, port: port)
        #expect(login.status == 200, "\(login.text)")
        let fresh = try #require(login.json?["access_token"] as? String)
        #expect(try await send(fresh, uniqueMarker("login")).status == 200)

        // A second copy into the same database: refused, status 1, and the
        // database serves on as before.
        let again = try await e2e.cliResult(["store", "copy", "--from", "sqlite:\(e2e.dataDir)/mailgate.sqlite", "--to", uri])
        #expect(again.status == .exited(1), "\(again.status) \(again.stderr)")
        #expect(again.stderr.contains("is not empty") && again.stderr.contains("nothing was copied"), "\(again.stderr)")
        #expect(try await send(token, uniqueMarker("after-refusal")).status == 200)
    }
}
