import Foundation
import MailgateTesting
import Testing

/// Issue 2: the whole path, curl-like client → nginx → Mailgate → SMTP server
/// with STARTTLS + AUTH.
@Suite("Core: token then send, through nginx")
struct CoreTests {
    @Test func loginThenSendDeliversOverSTARTTLSWithAuth() async throws {
        let env = try await E2E.get()
        let user = try await env.makeMailUser("core")
        let login = try await env.login(user.name, user.password)
        #expect(login.status == 200, "\(login)")
        let token = try #require(login.json?["access_token"] as? String, "\(login)")
        #expect(login.json?["token_type"] as? String == "bearer")

        let marker = uniqueMarker("core")
        let body = "Hello \(marker)\nSecond line.\n"
        let response = try await env.send(token: token, to: "Rcpt Person <rcpt@example.org>",
                                          subject: "Greetings \(marker)", message: body)
        #expect(response.status == 200, "\(response)")
        #expect(response.json?["status"] as? String == "Email sent successfully")
        #expect(response.isJSON)

        let message = try await env.capture.waitForMessage(containing: marker)
        #expect(message.envelope.tls, "message must arrive over STARTTLS")
        #expect(message.envelope.auth)
        #expect(message.envelope.login == env.smtpLogin)
        #expect(message.envelope.mailFrom == "sender@example.com")
        #expect(message.envelope.rcptTos == ["rcpt@example.org"])
        #expect(!message.hasBareCROrLF)

        let parsed = try await parseEmail(message)
        #expect(parsed.subject == "Greetings \(marker)")
        #expect(parsed.from?.contains("Mailgate Tester") == true, "From: \(parsed.from ?? "nil")")
        #expect(parsed.from?.contains("<sender@example.com>") == true)
        #expect(parsed.to?.contains("rcpt@example.org") == true)
        for name in ["Date", "Message-ID", "MIME-Version", "Content-Type", "From", "To", "Subject"] {
            #expect(parsed.headerCount(name) == 1, "header \(name) must appear exactly once: \(parsed.headers)")
        }
        #expect(parsed.contentType == "text/plain")
        #expect(parsed.charset == "utf-8")
        #expect(parsed.text == body, "decoded body: \(String(describing: parsed.body))")
        #expect(parsed.defects.isEmpty, "\(parsed.defects)")
        if let id = response.json?["message_id"] as? String {
            #expect(parsed.header("Message-ID") == id)
        }
    }

    @Test func tokenResponseHasNoStoreAndExpiresIn() async throws {
        let env = try await E2E.get()
        let user = try await env.makeUser("tokresp")
        let response = try await env.login(user.name, user.password)
        #expect(response.status == 200, "\(response)")
        #expect(response.header("Cache-Control")?.lowercased().contains("no-store") == true)
        let expiresIn = try #require(response.json?["expires_in"] as? Int)
        #expect(expiresIn > 0)
        #expect(response.isJSON)
    }

    @Test func wrongPasswordIs401WithBearerChallenge() async throws {
        let env = try await E2E.get()
        let user = try await env.makeUser("wrongpw")
        let response = try await env.login(user.name, user.password + "x")
        #expect(response.status == 401, "\(response)")
        #expect(response.header("WWW-Authenticate") == "Bearer")
        #expect(response.detail == "Incorrect username or password")
        #expect(response.code == "invalid_login")
        #expect(response.json?["access_token"] == nil)
    }

    @Test func unknownUserIs401WithSameDetail() async throws {
        let env = try await E2E.get()
        let response = try await env.login("nobody-\(uniqueMarker("u"))", "whatever")
        #expect(response.status == 401, "\(response)")
        #expect(response.header("WWW-Authenticate") == "Bearer")
        #expect(response.detail == "Incorrect username or password")
        #expect(response.code == "invalid_login")
    }

    @Test func missingAuthorizationIs401NotAuthenticated() async throws {
        let env = try await E2E.get()
        let response = try await env.send(token: nil, to: "a@example.org", subject: "s", message: "m")
        #expect(response.status == 401, "\(response)")
        #expect(response.header("WWW-Authenticate") == "Bearer")
        #expect(response.detail == "Not authenticated")
        #expect(response.code == "not_authenticated")
    }

    @Test func nonBearerSchemeIs401NotAuthenticated() async throws {
        let env = try await E2E.get()
        let body = Array(#"{"to":"a@example.org","subject":"s","message":"m"}"#.utf8)
        let response = try await env.http(HTTP.request("POST", "/smtp/send-email", headers: [
            ("Content-Type", "application/json"), ("Authorization", "Basic dXNlcjpwYXNz"),
        ], body: body))
        #expect(response.status == 401, "\(response)")
        #expect(response.header("WWW-Authenticate") == "Bearer")
        #expect(response.detail == "Not authenticated")
        #expect(response.code == "not_authenticated")
    }

    @Test func garbageTokenIs401CouldNotValidate() async throws {
        let env = try await E2E.get()
        let response = try await env.send(token: "garbage", to: "a@example.org", subject: "s", message: "m")
        #expect(response.status == 401, "\(response)")
        #expect(response.header("WWW-Authenticate") == "Bearer")
        #expect(response.detail == "Could not validate credentials")
        #expect(response.code == "invalid_token")
    }

    @Test func revokeTokensKillsEarlierTokenAndNewOneWorks() async throws {
        let env = try await E2E.get()
        let user = try await env.makeMailUser("revoke")
        let old = try await env.token(user.name)
        let before = try await env.send(token: old, to: "r@example.org", subject: uniqueMarker("rv0"), message: "x")
        #expect(before.status == 200, "\(before)")

        try await env.cli(["user", "revoke-tokens", user.name])
        let after = try await env.send(token: old, to: "r@example.org", subject: uniqueMarker("rv1"), message: "x")
        #expect(after.status == 401, "\(after)")
        #expect(after.detail == "Could not validate credentials")
        #expect(after.code == "invalid_token")
        #expect(after.header("WWW-Authenticate") == "Bearer")

        let fresh = try await env.token(user.name)
        let marker = uniqueMarker("rv2")
        let again = try await env.send(token: fresh, to: "r@example.org", subject: marker, message: "x")
        #expect(again.status == 200, "\(again)")
        _ = try await env.capture.waitForMessage(containing: marker)
    }

    @Test func disabledUserTokenIs401AndLoginFails() async throws {
        let env = try await E2E.get()
        let user = try await env.makeMailUser("disabled")
        let token = try await env.token(user.name)
        try await env.cli(["user", "disable", user.name])
        let response = try await env.send(token: token, to: "r@example.org", subject: "s", message: "m")
        #expect(response.status == 401, "\(response)")
        #expect(response.detail == "Could not validate credentials")
        #expect(response.code == "invalid_token")
        let login = try await env.login(user.name, user.password)
        #expect(login.status == 401, "\(login)")
        #expect(login.detail == "Incorrect username or password")
        #expect(login.code == "invalid_login")
    }

    @Test func userWithoutIntegrationIs400() async throws {
        let env = try await E2E.get()
        let user = try await env.makeUser("nointeg")
        let token = try await env.token(user.name)
        let response = try await env.send(token: token, to: "r@example.org", subject: "s", message: "m")
        #expect(response.status == 400, "\(response)")
        #expect(response.detail?.contains("integration") == true, "\(response)")
        #expect(response.code == "no_integration", "\(response)")
    }

    /// Issue 11: `GET /health` through the shipped location, no token.
    @Test func healthAnswersOkThroughNginxWithoutAToken() async throws {
        let env = try await E2E.get()
        let response = try await env.http(HTTP.request("GET", "/health"))
        #expect(response.status == 200, "\(response)")
        #expect(response.isJSON)
        #expect(response.json?["status"] as? String == "ok")
        let post = try await env.http(HTTP.request("POST", "/health", body: Array("{}".utf8)))
        #expect(post.status == 405)
        #expect(post.header("Allow") == "GET")
    }

    /// Issue 11: `serve --log-format json` writes one JSON object per line,
    /// every field named (here a plain CGI request: its log goes to stderr).
    @Test func jsonLogLinesParseOneByOne() async throws {
        let env = try await E2E.get()
        let (response, result) = try await env.cgi(method: "GET", uri: "/health", extraArguments: ["--log-format", "json"])
        #expect(response.status == 200, "\(response) \(result.stderr)")
        let lines = result.stderr.split(separator: "\n")
        #expect(!lines.isEmpty)
        var requests: [[String: Any]] = []
        for line in lines {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                                      "not a JSON object: \(line)")
            #expect(object["ts"] is String && object["level"] is String && object["pid"] is Int)
            if object["msg"] as? String == "request" { requests.append(object) }
        }
        #expect(requests.count == 1, "\(result.stderr)")
        #expect(requests.first?["method"] as? String == "GET" && requests.first?["path"] as? String == "/health")
        #expect(requests.first?["status"] as? Int == 200 && requests.first?["duration_ms"] is Double)
        // And as an operator reads them: jq, one object per line.
        let jq = try await blocking {
            try runTool("/usr/bin/jq", ["-c", "-e", "select(.msg == \"request\") | [.method, .path, .status]"],
                        in: env.dir, stdin: Array(result.stderr.utf8))
        }
        #expect(jq.ok, "\(jq.stderr)")
        #expect(jq.stdoutText == "[\"GET\",\"/health\",200]\n", "\(jq.stdoutText)")

        let bad = try await env.cliResult(["serve", "--log-format", "xml"])
        #expect(bad.status == .exited(64))
        #expect(bad.stderr.contains("--log-format must be logfmt or json"), "\(bad.stderr)")
    }

    @Test func otherPathIs404() async throws {
        let env = try await E2E.get()
        for path in ["/smtp/send-emails", "/"] {
            let response = try await env.http(HTTP.request("POST", path, headers: [("Content-Type", "application/json")],
                                                           body: Array("{}".utf8)))
            #expect(response.status == 404, "\(path): \(response)")
        }
    }

    @Test func getOnSendEmailIs405WithAllow() async throws {
        let env = try await E2E.get()
        let response = try await env.http(HTTP.request("GET", "/smtp/send-email"))
        #expect(response.status == 405, "\(response)")
        #expect(response.header("Allow")?.contains("POST") == true)
        #expect(response.detail == "Method Not Allowed")
        #expect(response.code == "method_not_allowed")
        let token = try await env.http(HTTP.request("GET", "/token"))
        #expect(token.status == 405, "\(token)")
        #expect(token.code == "method_not_allowed", "\(token)")
    }
}

@Suite("CLI against the real SMTP server")
struct IntegrationCommandTests {
    @Test func integrationTestConnectsLogsInAndSendsATestMessage() async throws {
        let env = try await E2E.get()
        let user = try await env.makeMailUser("itest")
        let recipient = "\(uniqueMarker("itest").lowercased())@example.org"
        let output = try await env.cli(["integration", "test", user.name, "--ca-file", env.localhostCert.cert,
                                        "--send-to", recipient])
        #expect(output.contains("STARTTLS") || output.contains("starttls"), "\(output)")
        #expect(output.contains("logged in as \(env.smtpLogin)"), "\(output)")
        #expect(output.contains("sent test message"), "\(output)")
        let message = try await env.capture.waitForMessage(containing: recipient)
        #expect(message.envelope.rcptTos == [recipient])
        #expect(message.envelope.tls && message.envelope.auth)
        do { let leaked = output.contains(env.smtpPassword); #expect(!leaked) }
    }

    @Test func integrationTestWithoutTheCAFailsOnTheCertificate() async throws {
        let env = try await E2E.get()
        let user = try await env.makeMailUser("itest-ca")
        let result = try await env.cliResult(["integration", "test", user.name])
        #expect(!result.ok)
        #expect(result.stderr.lowercased().contains("certificate"), "\(result.stderr)")
    }
}
