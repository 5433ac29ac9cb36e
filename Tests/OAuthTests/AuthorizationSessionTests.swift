import Base64
import Crypto
import Foundation
import MailgateTesting
import Testing
@testable import OAuth

/// A browser that does not follow redirects: GETs `url` over HTTPS (curl
/// with the test CA) and returns the Location it is sent to.
func followLikeABrowser(_ url: String, caFile: String) throws -> String {
    let dir = try TempDir(prefix: "mailgate-oauth-browser")
    defer { dir.remove() }
    let result = try runTool("/usr/bin/curl", ["-sS", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
                                               "--cacert", caFile, url], in: dir.path, timeout: 20)
    guard result.ok else { throw HarnessError("curl failed: \(result.stderr)") }
    let parts = result.stdoutText.split(separator: " ", maxSplits: 1)
    guard parts.count == 2, parts[0] == "302" else { throw HarnessError("no redirect: \(result.stdoutText)") }
    return String(parts[1])
}

/// GETs a loopback http URL (the redirect target) with the kit's plain client.
func visitLoopback(_ url: String) throws -> HTTPResponse {
    guard let parsed = URLComponents(string: url), parsed.host == "127.0.0.1", let port = parsed.port else {
        throw HarnessError("not a loopback URL: \(url)")
    }
    let target = parsed.percentEncodedPath + (parsed.percentEncodedQuery.map { "?" + $0 } ?? "")
    return try HTTP.exchange(port: port, HTTP.request("GET", target), timeout: 10)
}

func queryItems(_ url: String) -> [String: String] {
    var items: [String: String] = [:]
    for item in URLComponents(string: url)?.queryItems ?? [] { items[item.name] = item.value ?? "" }
    return items
}

@Suite("Authorisation code flow with PKCE and a loopback redirect", .serialized, .timeLimit(.minutes(2)))
struct AuthorizationSessionTests {
    func session(_ fixture: ProviderFixture) throws -> AuthorizationSession {
        try AuthorizationSession(authorizationEndpoint: try EndpointURL(fixture.provider.authorizationURL),
                                 clientID: fixture.provider.clientID, scope: "https://mail.google.com/",
                                 extraParameters: QueryParameter.googleOffline)
    }

    @Test func theAuthorizationURLCarriesPKCEAndTheLoopbackRedirect() throws {
        let fixture = try ProviderFixture()
        defer { fixture.stop() }
        let session = try session(fixture)
        let items = queryItems(session.authorizationURL)
        #expect(session.authorizationURL.hasPrefix(fixture.provider.authorizationURL + "?"))
        #expect(items["response_type"] == "code")
        #expect(items["client_id"] == fixture.provider.clientID)
        #expect(items["redirect_uri"] == session.redirectURI)
        #expect(session.redirectURI.hasPrefix("http://127.0.0.1:") && session.redirectURI.hasSuffix("/"))
        #expect(items["scope"] == "https://mail.google.com/")
        #expect(items["code_challenge_method"] == "S256")
        #expect(items["access_type"] == "offline" && items["prompt"] == "consent")
        #expect((items["state"] ?? "").count >= 22)
        // The challenge is base64url(SHA-256(verifier)), and the verifier is 43 unreserved characters.
        #expect(session.codeVerifier.count == 43)
        #expect(session.codeVerifier.utf8.allSatisfy { FormEncoding.isUnreserved($0) })
        #expect(items["code_challenge"] == Base64.url.encode(try Crypto.sha256(Array(session.codeVerifier.utf8))))
        // Two sessions never share a verifier or state.
        let other = try self.session(fixture)
        #expect(other.codeVerifier != session.codeVerifier)
        #expect(queryItems(other.authorizationURL)["state"] != items["state"])
        #expect(!everyRendering(of: session).contains(session.codeVerifier))
    }

    @Test func theBrowserFlowEndsInARefreshToken() async throws {
        let fixture = try ProviderFixture()
        defer { fixture.stop() }
        let session = try session(fixture)
        async let code = blocking { try session.waitForRedirect(timeout: .seconds(20)) }
        // A browser's side request first: 404, and the wait goes on.
        let port = try #require(URLComponents(string: session.redirectURI)?.port)
        let favicon = try await blocking { try HTTP.exchange(port: port, HTTP.request("GET", "/favicon.ico"), timeout: 10) }
        #expect(favicon.status == 404)
        let location = try await blocking { try followLikeABrowser(session.authorizationURL, caFile: fixture.certificate.cert) }
        #expect(location.hasPrefix(session.redirectURI + "?"))
        let page = try await blocking { try visitLoopback(location) }
        #expect(page.status == 200)
        #expect(page.text.contains("close this window"))
        let received = try await code
        #expect(received == queryItems(location)["code"])

        let tokens = try session.exchange(code: received, endpoint: try fixture.endpoint(), deadline: soon())
        let refreshToken = try #require(tokens.refreshToken)
        #expect(tokens.accessToken.hasPrefix("ya29."))
        #expect(try fixture.codeCount() == 1)
        // The refresh token works, and the code is single-use.
        #expect(throws: Never.self) { try TokenClient().refresh(try fixture.endpoint(), refreshToken: refreshToken, scope: nil, deadline: soon()) }
        #expect(oauthError { try session.exchange(code: received, endpoint: try fixture.endpoint(), deadline: soon()) }
            == .rejected(code: "invalid_grant", status: 400))
    }

    @Test func aCodeIsUselessWithoutItsVerifier() async throws {
        let fixture = try ProviderFixture()
        defer { fixture.stop() }
        let session = try session(fixture)
        async let code = blocking { try session.waitForRedirect(timeout: .seconds(20)) }
        let location = try await blocking { try followLikeABrowser(session.authorizationURL, caFile: fixture.certificate.cert) }
        _ = try await blocking { try visitLoopback(location) }
        let received = try await code
        let otherVerifier = try self.session(fixture).codeVerifier
        let error = oauthError {
            try TokenClient().exchange(try fixture.endpoint(), code: received, codeVerifier: otherVerifier,
                                       redirectURI: session.redirectURI, deadline: soon())
        }
        #expect(error == .rejected(code: "invalid_grant", status: 400))
        #expect(!(error.map(String.init(describing:)) ?? "").contains(received))
    }

    @Test func aWrongStateIsRefusedAndTheCodeIsNotExchanged() async throws {
        let fixture = try ProviderFixture()
        defer { fixture.stop() }
        try fixture.provider.set(["wrong_state": "1"])
        let session = try session(fixture)
        async let outcome = blocking { () -> OAuthError? in oauthError { try session.waitForRedirect(timeout: .seconds(20)) } }
        let location = try await blocking { try followLikeABrowser(session.authorizationURL, caFile: fixture.certificate.cert) }
        #expect(queryItems(location)["code"] != nil)
        let page = try await blocking { try visitLoopback(location) }
        #expect(page.status == 400)
        let error = await (try? outcome) ?? nil
        #expect(error == .stateMismatch)
        #expect(try fixture.codeCount() == 0)
    }

    @Test func aRefusalIsReported() async throws {
        let fixture = try ProviderFixture()
        defer { fixture.stop() }
        try fixture.provider.set(["deny": "1"])
        let session = try session(fixture)
        async let outcome = blocking { () -> OAuthError? in oauthError { try session.waitForRedirect(timeout: .seconds(20)) } }
        let location = try await blocking { try followLikeABrowser(session.authorizationURL, caFile: fixture.certificate.cert) }
        _ = try await blocking { try visitLoopback(location) }
        let error = await (try? outcome) ?? nil
        #expect(error == .authorizationDenied(code: "access_denied"))
    }

    @Test func noBrowserMeansATimeOut() throws {
        let fixture = try ProviderFixture()
        defer { fixture.stop() }
        let session = try session(fixture)
        let started = ContinuousClock.now
        #expect(oauthError { try session.waitForRedirect(timeout: .milliseconds(300)) } == .noRedirect)
        #expect(ContinuousClock.now < started + .seconds(3))
    }

    @Test func anIdleConnectionDoesNotHoldUpTheRedirect() async throws {
        let fixture = try ProviderFixture()
        defer { fixture.stop() }
        let session = try session(fixture)
        let port = try #require(URLComponents(string: session.redirectURI)?.port)
        async let code = blocking { try session.waitForRedirect(timeout: .seconds(20)) }
        // A pre-connection that never sends anything, held open meanwhile.
        let idle = try connectLoopback(port: port)
        defer { close(idle) }
        let location = try await blocking { try followLikeABrowser(session.authorizationURL, caFile: fixture.certificate.cert) }
        let page = try await blocking { try visitLoopback(location) }
        #expect(page.status == 200)
        #expect(try await code == queryItems(location)["code"])
    }

    @Test func anOversizedRequestHeadIsRefused() async throws {
        let fixture = try ProviderFixture()
        defer { fixture.stop() }
        let session = try session(fixture)
        let port = try #require(URLComponents(string: session.redirectURI)?.port)
        async let outcome = blocking { () -> OAuthError? in oauthError { try session.waitForRedirect(timeout: .seconds(3)) } }
        // The listener answers 431 and closes with the rest unread, which may
        // reset the connection before the client reads the answer: either is fine.
        let huge = try? await blocking {
            try HTTP.exchange(port: port, HTTP.request("GET", "/?" + String(repeating: "a", count: 20_000)), timeout: 10)
        }
        if let huge { #expect(huge.status == 431) }
        // The session is still waiting for the real redirect (and times out without one).
        #expect(await (try? outcome) ?? nil == .noRedirect)
    }
}
