import FastCGI
import Foundation
@testable import Mailgate
import Testing
import Crypto

@Suite struct TokenEndpointTests {
    func login(_ fixture: AppFixture, _ form: String) -> CGIResponse {
        fixture.post("/token", body: form, contentType: "application/x-www-form-urlencoded")
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
