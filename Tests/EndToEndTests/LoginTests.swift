import Foundation
import MailgateTesting
import Testing

/// Issue 4, `/token`: lockout in the database (issue 10: per username and
/// client address, with a per-username ceiling, counted before the KDF) and
/// the shipped nginx per-client rate limit.
@Suite("Login throttling and /token validation")
struct LoginTests {
    @Test func fiveFailuresLockTheUserEvenWithTheRightPasswordAndSurviveARestart() async throws {
        let env = try await E2E.get()
        let user = try await env.makeMailUser("lockout")
        // Concurrently: the failures land on different worker threads and
        // must all count (the state lives in the shared database).
        try await withThrowingTaskGroup(of: Int.self) { group in
            for i in 0..<5 {
                group.addTask { try await env.login(user.name, "wrong-\(i)").status }
            }
            for try await status in group { #expect(status == 401) }
        }
        let locked = try await env.login(user.name, user.password)
        #expect(locked.status == 429, "\(locked)")
        let retryAfter = try #require(locked.header("Retry-After").flatMap { Int($0) }, "\(locked)")
        #expect(retryAfter > 0 && retryAfter <= 15 * 60)
        #expect(locked.isJSON && locked.detail != nil, "\(locked)")
        #expect(locked.code == "login_locked", "\(locked)")
        #expect(locked.json?["access_token"] == nil)

        // A fresh process (plain CGI mode, same database) still refuses the
        // same client address.
        let body = Array("username=\(formEncode(user.name))&password=\(formEncode(user.password))".utf8)
        let (fresh, run) = try await env.cgi(uri: "/token", params: [
            "CONTENT_TYPE": "application/x-www-form-urlencoded", "CONTENT_LENGTH": String(body.count),
            "REMOTE_ADDR": "127.0.0.1",
        ], stdin: body)
        #expect(run.ok)
        #expect(fresh.status == 429, "\(fresh)")
        #expect(fresh.code == "login_locked", "\(fresh)")
        #expect(fresh.header("Retry-After") != nil)

        // Tokens issued before still work: the lockout is about logins only.
        let token = try await env.token(user.name)
        let send = try await env.send(token: token, to: "r@example.org", subject: uniqueMarker("lock"), message: "m")
        #expect(send.status == 200, "\(send)")
    }

    @Test func lockoutIsPerUsername() async throws {
        let env = try await E2E.get()
        let locked = try await env.makeUser("lockA")
        let other = try await env.makeUser("lockB")
        for i in 0..<5 { #expect(try await env.login(locked.name, "bad\(i)").status == 401) }
        let refused = try await env.login(locked.name, locked.password)
        #expect(refused.status == 429)
        #expect(refused.code == "login_locked", "\(refused)")
        let fine = try await env.login(other.name, other.password)
        #expect(fine.status == 200, "\(fine)")
    }

    /// Issue 10 through nginx: 16 wrong guesses at once from one address get
    /// at most 5 password checks (the rest 429 unchecked), after which the
    /// right password from that address is refused too, while from another
    /// address it works: a stranger cannot lock the user out. The client
    /// address is nginx's $remote_addr, from X-Forwarded-For (realip, in
    /// this test's nginx only).
    @Test func concurrentGuessesLockTheirAddressButNotTheUser() async throws {
        let env = try await E2E.get()
        let user = try await env.makeUser("perclient")
        let prefix = env.dir + "/nginx-login-realip-\(Counter.shared.next())"
        let socket = env.socket
        let (nginx, port) = try await blocking {
            try E2E.startFromTemplate(prefix: prefix, name: "nginx-login-realip", template: "login-realip-nginx.conf.in",
                                      values: ["SOCKET": socket])
        }
        defer { nginx.stop() }
        func login(_ password: String, from address: String) async throws -> HTTPResponse {
            let body = "grant_type=password&username=\(formEncode(user.name))&password=\(formEncode(password))"
            return try await env.http(HTTP.request("POST", "/token", headers: [
                ("Content-Type", "application/x-www-form-urlencoded"), ("X-Forwarded-For", address),
            ], body: Array(body.utf8)), port: port)
        }
        let stranger = "203.0.113.66"
        let guesses = try await withThrowingTaskGroup(of: HTTPResponse.self) { group in
            for i in 0..<16 { group.addTask { try await login("wrong-\(i)", from: stranger) } }
            var responses: [HTTPResponse] = []
            for try await response in group { responses.append(response) }
            return responses
        }
        let statuses = guesses.map(\.status)
        #expect(statuses.allSatisfy { $0 == 401 || $0 == 429 }, "\(statuses)")
        #expect(guesses.allSatisfy { $0.isJSON && $0.detail != nil }, "Mailgate's answers, not nginx's: \(guesses)")
        let checked = statuses.filter { $0 == 401 }.count
        #expect(checked <= 5, "\(checked) of 16 concurrent guesses were checked: \(statuses)")

        let locked = try await login(user.password, from: stranger)
        #expect(locked.status == 429, "\(locked)")
        #expect(locked.detail == "Too many failed login attempts for this user; try again later")
        #expect(locked.header("Retry-After").flatMap { Int($0) }.map { (1...900).contains($0) } == true, "\(locked)")

        let elsewhere = try await login(user.password, from: "198.51.100.23")
        #expect(elsewhere.status == 200, "the user is locked out by a stranger: \(elsewhere)")
        #expect(elsewhere.json?["access_token"] != nil)
    }

    @Test func unknownUsernamesAreThrottledToo() async throws {
        let env = try await E2E.get()
        let name = "ghost-\(Counter.shared.next())"
        for i in 0..<5 {
            let response = try await env.login(name, "x\(i)")
            #expect(response.status == 401, "\(response)")
            #expect(response.detail == "Incorrect username or password")
            #expect(response.code == "invalid_login")
        }
        let locked = try await env.login(name, "x")
        #expect(locked.status == 429)
        #expect(locked.code == "login_locked", "\(locked)")
    }

    @Test func tokenRequestValidationIs422() async throws {
        let env = try await E2E.get()
        func post(_ body: String, contentType: String = "application/x-www-form-urlencoded") async throws -> HTTPResponse {
            try await env.http(HTTP.request("POST", "/token", headers: [("Content-Type", contentType)], body: Array(body.utf8)))
        }
        for (body, type) in [("username=a", "application/x-www-form-urlencoded"),
                             ("password=a", "application/x-www-form-urlencoded"),
                             ("", "application/x-www-form-urlencoded"),
                             (#"{"username":"a","password":"b"}"#, "application/json"),
                             ("username=a&password=b&grant_type=client_credentials", "application/x-www-form-urlencoded"),
                             ("username=a&password=%zz", "application/x-www-form-urlencoded"),
                             ("username=a&username=b&password=c", "application/x-www-form-urlencoded")] {
            let response = try await post(body, contentType: type)
            #expect(response.status == 422, "\(body): \(response)")
            #expect(response.detailList?.isEmpty == false, "detail must be FastAPI's list: \(response)")
            #expect(response.code == "validation_error", "\(body): \(response)")
        }
    }

    @Test func shippedNginxConfigLimitsTokenPerClient() async throws {
        // The shipped files say so...
        let location = try String(contentsOfFile: E2E.repoRoot + "/nginx/mailgate.conf", encoding: .utf8)
        let http = try String(contentsOfFile: E2E.repoRoot + "/nginx/mailgate-http.conf", encoding: .utf8)
        let tokenBlock = try #require(location.range(of: "location = /token").map { location[$0.lowerBound...] })
        let tokenLocation = tokenBlock.prefix { $0 != "}" }
        #expect(tokenLocation.contains("limit_req zone=mailgate_token burst=5 nodelay;"))
        #expect(tokenLocation.contains("limit_req_status 429;"))
        // Keyed by address, IPv6 by /64 (ShippedConfigTests checks the key through nginx).
        #expect(http.contains("limit_req_zone $mailgate_token_client zone=mailgate_token:1m rate=10r/m;"))

        // ...and an nginx with that rate (10r/m) and the shipped location
        // lets the first request plus a burst of 5 through, then answers 429.
        let env = try await E2E.get()
        let aux = try await env.aux()
        // All 9 at once: sent one after another on a loaded machine they
        // spread over more than the 6 s in which the zone earns a new request.
        let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<9 {
                group.addTask { try await env.http(HTTP.request("GET", "/token"), port: aux.port).status }
            }
            return try await group.reduce(into: [Int]()) { $0.append($1) }
        }
        #expect(statuses.filter { $0 == 405 }.count == 6, "\(statuses)")
        #expect(statuses.filter { $0 == 429 }.count == 3, "\(statuses)")
        // Other locations are not limited.
        let send = try await env.http(HTTP.request("GET", "/smtp/send-email"), port: aux.port)
        #expect(send.status == 405)
    }
}
