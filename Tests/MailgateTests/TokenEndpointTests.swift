import FastCGI
import Foundation
@testable import Mailgate
import Testing
import Crypto
import MailgateTesting
import Store

@Suite struct TokenEndpointTests {
    func login(_ fixture: AppFixture, _ form: String, from address: String? = nil) -> CGIResponse {
        fixture.post("/token", body: form, contentType: "application/x-www-form-urlencoded", remoteAddress: address)
    }

    @Test func passwordGrantIssuesAVerifiableToken() throws {
        let fixture = try AppFixture()
        let response = login(fixture, "grant_type=password&username=alice&password=correct+horse")
        #expect(response.status == 200)
        #expect(response.header("Cache-Control") == "no-store")
        let body = try #require(response.json as? [String: Any])
        #expect(body["token_type"] as? String == "bearer")
        #expect(body["expires_in"] as? Int == 1800)
        let claims = try fixture.signer.verify(try #require(body["access_token"] as? String), now: fixture.clock.now)
        #expect(claims.subject == "alice")
        #expect(claims.expiresAt == fixture.clock.now + 1800)
    }

    @Test func wrongPasswordUnknownUserAndDisabledUserLookTheSame() throws {
        let fixture = try AppFixture()
        try fixture.store.setDisabled(true, for: "alice")
        for form in ["username=alice&password=nope", "username=zed&password=x", "username=alice&password=correct%20horse"] {
            let response = login(fixture, form)
            #expect(response.status == 401)
            #expect(response.detail as? String == "Incorrect username or password")
            #expect(response.code == "invalid_login")
            #expect(response.header("WWW-Authenticate") == "Bearer")
        }
    }

    @Test func fiveFailuresLockTheUsernameFor15Minutes() throws {
        let fixture = try AppFixture()
        for _ in 0..<5 { #expect(login(fixture, "username=alice&password=wrong").status == 401) }
        let locked = login(fixture, "username=alice&password=correct+horse")
        #expect(locked.status == 429)
        #expect(locked.code == "login_locked")
        let retryAfter = try #require(Int(locked.header("Retry-After") ?? ""))
        #expect((1...900).contains(retryAfter))
        fixture.clock.advance(901)
        #expect(login(fixture, "username=alice&password=correct+horse").status == 200)
    }

    /// The lockout is per (username, client address): a stranger's five bad
    /// guesses lock only the stranger's address (an IPv6 one with its whole
    /// /64), and alice logs in from hers.
    @Test func aStrangersFailuresLockOnlyTheStrangersAddress() throws {
        let fixture = try AppFixture()
        let stranger = "2001:db8:aa:bb::66"
        for _ in 0..<5 { #expect(login(fixture, "username=alice&password=wrong", from: stranger).status == 401) }
        for address in [stranger, "2001:db8:aa:bb:1:2:3:4"] {
            let locked = login(fixture, "username=alice&password=correct+horse", from: address)
            #expect(locked.status == 429, "\(address)")
            #expect(locked.detail as? String == "Too many failed login attempts for this user; try again later")
        }
        #expect(login(fixture, "username=alice&password=correct+horse", from: "192.0.2.10").status == 200)
        #expect(login(fixture, "username=alice&password=correct+horse", from: "2001:db8:aa:bc::1").status == 200)
    }

    /// Past the per-username ceiling, every address is refused, known or new.
    @Test func thePerUsernameCeilingLocksEveryAddress() throws {
        let fixture = try AppFixture { $0.loginThrottle = LoginThrottlePolicy(window: 900, perClient: 5, perUsername: 8) }
        for i in 0..<8 {
            #expect(login(fixture, "username=alice&password=wrong", from: "198.51.100.\(i / 4)").status == 401)
        }
        let locked = login(fixture, "username=alice&password=correct+horse", from: "192.0.2.77")
        #expect(locked.status == 429)
        #expect(Int(locked.header("Retry-After") ?? "") == 900)
        fixture.clock.advance(900)
        #expect(login(fixture, "username=alice&password=correct+horse", from: "192.0.2.77").status == 200)
    }

    /// 24 wrong guesses at once from one address: the count and the mark are
    /// one transaction, before the KDF, so no more than 5 are checked; the
    /// rest are 429 unchecked, and so is the right password after them.
    @Test func concurrentWrongGuessesCheckAtMostFive() async throws {
        let fixture = try AppFixture { $0.kdfConcurrency = 4; $0.kdfWait = .seconds(60) }
        let application = fixture.application
        let statuses = try await onThreads(24) { _ in
            application.handle(CGIRequest(params: [
                "REQUEST_METHOD": "POST", "DOCUMENT_URI": "/token", "REMOTE_ADDR": "192.0.2.5",
                "CONTENT_TYPE": "application/x-www-form-urlencoded",
            ], body: .complete(Array("username=alice&password=wrong".utf8)))).status
        }
        let checked = statuses.filter { $0 == 401 }.count
        #expect(checked <= 5, "\(checked) of 24 concurrent guesses were checked: \(statuses)")
        #expect(statuses.allSatisfy { $0 == 401 || $0 == 429 }, "\(statuses)")
        #expect(login(fixture, "username=alice&password=correct+horse", from: "192.0.2.5").status == 429)
        #expect(login(fixture, "username=alice&password=correct+horse", from: "192.0.2.6").status == 200)
    }

    /// A login whose password was never checked (no KDF slot) is not counted.
    @Test func aBusyKDFDoesNotCountAsAFailure() throws {
        let fixture = try AppFixture { $0.kdfConcurrency = 1; $0.kdfWait = .milliseconds(1) }
        let gate = fixture.application.kdfGate
        let release = DispatchSemaphore(value: 0)
        let holding = DispatchSemaphore(value: 0)
        let released = DispatchSemaphore(value: 0)
        try startThread {
            _ = gate.run { holding.signal(); release.wait() }
            released.signal()
        }
        holding.wait()
        for _ in 0..<8 { #expect(login(fixture, "username=alice&password=wrong", from: "192.0.2.5").status == 503) }
        release.signal()
        released.wait()   // the slot is free again
        #expect(try fixture.store.loginFailureCount("alice", from: nil, since: .distantPast) == 0)
        #expect(login(fixture, "username=alice&password=correct+horse", from: "192.0.2.5").status == 200)
    }

    @Test(arguments: [
        ("username=alice", "application/x-www-form-urlencoded"),
        ("username=alice&password=x&grant_type=client_credentials", "application/x-www-form-urlencoded"),
        ("username=alice&password=x&password=y", "application/x-www-form-urlencoded"),
        ("username=alice&password=%zz", "application/x-www-form-urlencoded"),
        (#"{"username": "alice", "password": "correct horse"}"#, "application/json"),
    ])
    func malformedFormsAre422(form: String, contentType: String) throws {
        let fixture = try AppFixture()
        let response = fixture.post("/token", body: form, contentType: contentType)
        #expect(response.status == 422)
        #expect(response.detail is [Any])
        #expect(response.code == "validation_error")
    }
}

@Suite struct RoutingTests {
    @Test func unknownPathsAre404AndOtherMethods405() throws {
        let fixture = try AppFixture()
        let nope = fixture.post("/nope", body: "")
        #expect(nope.status == 404)
        #expect(nope.code == "not_found")
        #expect(fixture.post("/smtp/send-email/", body: "").status == 404)
        let get = fixture.post("/smtp/send-email", body: "", method: "GET")
        #expect(get.status == 405)
        #expect(get.header("Allow") == "POST")
        #expect(get.code == "method_not_allowed")
        let put = fixture.post("/token", body: "", method: "PUT")
        #expect(put.status == 405)
        #expect(put.code == "method_not_allowed")
    }

    @Test func basePathIsStrippedAndRequired() throws {
        let fixture = try AppFixture { $0.basePath = "/api" }
        #expect(fixture.post("/api/token", body: "username=alice&password=correct+horse",
                             contentType: "application/x-www-form-urlencoded").status == 200)
        #expect(fixture.post("/token", body: "", contentType: "application/x-www-form-urlencoded").status == 404)
    }

    @Test func pathFallsBackToScriptNameAndPathInfo() {
        let request = CGIRequest(params: ["SCRIPT_NAME": "/cgi-bin/mailgate", "PATH_INFO": "/token"], body: .complete([]))
        #expect(RequestContext.routePath(request.path, basePath: "/cgi-bin/mailgate") == "/token")
        let uri = CGIRequest(params: ["REQUEST_URI": "/token?x=1"], body: .complete([]))
        #expect(RequestContext.routePath(uri.path, basePath: "") == "/token")
    }

    @Test(arguments: [
        (CGIRequestBody.tooLarge(declared: 5_000_000, limit: 1 << 20), 413, "body_too_large"),
        (CGIRequestBody.invalidLength("-1"), 400, "invalid_request"),
        (CGIRequestBody.incomplete(declared: 100, received: 10), 400, "invalid_request"),
        (CGIRequestBody.incomplete(declared: nil, received: 10), 400, "invalid_request"),
    ])
    func bodyProblemsGetTheirStatus(body: CGIRequestBody, status: Int, code: String) throws {
        let fixture = try AppFixture()
        for path in ["/token", "/smtp/send-email"] {
            let request = CGIRequest(params: ["REQUEST_METHOD": "POST", "DOCUMENT_URI": path,
                                              "CONTENT_TYPE": "application/x-www-form-urlencoded",
                                              "HTTP_AUTHORIZATION": "Bearer \(try fixture.token())"], body: body)
            let response = fixture.application.handle(request)
            #expect(response.status == status)
            #expect(response.detail is String)
            #expect(response.code == code)
        }
    }
}
