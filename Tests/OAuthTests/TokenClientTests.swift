import Foundation
import JSON
import MailgateTesting
import Testing
@testable import OAuth

@Suite("TokenClient against the test provider", .serialized, .timeLimit(.minutes(2)))
struct TokenClientTests {
    let client = TokenClient()

    @Test func refreshReturnsAnAccessToken() throws {
        let fixture = try ProviderFixture()
        defer { fixture.stop() }
        let refreshToken = try fixture.provider.seedRefreshToken()
        let response = try client.refresh(try fixture.endpoint(), refreshToken: refreshToken,
                                          scope: "https://mail.google.com/", deadline: soon())
        #expect(response.accessToken.hasPrefix("ya29."))
        #expect(response.expiresIn == .seconds(3600))
        #expect(response.tokenType == "Bearer")
        #expect(response.refreshToken == nil)
        #expect(try fixture.refreshCount() == 1)
        // The description shows neither token.
        let shown = everyRendering(of: response)
        #expect(!shown.contains(response.accessToken))
        #expect(shown.contains("<redacted>"))
    }

    @Test func rotationReturnsANewRefreshTokenAndRetiresTheOld() throws {
        let fixture = try ProviderFixture(rotation: true)
        defer { fixture.stop() }
        let first = try fixture.provider.seedRefreshToken()
        let response = try client.refresh(try fixture.endpoint(), refreshToken: first, scope: nil, deadline: soon())
        let second = try #require(response.refreshToken)
        #expect(second != first)
        #expect(oauthError { try client.refresh(try fixture.endpoint(), refreshToken: first, scope: nil, deadline: soon()) } == .reauthorize)
        #expect(throws: Never.self) { try client.refresh(try fixture.endpoint(), refreshToken: second, scope: nil, deadline: soon()) }
    }

    @Test func invalidGrantMeansReauthorize() throws {
        let fixture = try ProviderFixture()
        defer { fixture.stop() }
        let refreshToken = try fixture.provider.seedRefreshToken()
        try fixture.provider.set(["mode": "invalid_grant"])
        let error = oauthError { try client.refresh(try fixture.endpoint(), refreshToken: refreshToken, scope: nil, deadline: soon()) }
        #expect(error == .reauthorize)
        let text = "\(error.map(String.init(describing:)) ?? "")"
        #expect(!text.contains(refreshToken))
        #expect(!text.contains("expired or revoked"))  // error_description is not echoed
    }

    @Test func wrongClientSecretIsAConfigurationError() throws {
        let fixture = try ProviderFixture()
        defer { fixture.stop() }
        let refreshToken = try fixture.provider.seedRefreshToken()
        let wrongSecret = "wrong-secret-\(UUID().uuidString)"
        let error = oauthError {
            try client.refresh(try fixture.endpoint(clientSecret: .some(wrongSecret)), refreshToken: refreshToken, scope: nil, deadline: soon())
        }
        #expect(error == .rejected(code: "invalid_client", status: 401))
        let text = error.map(String.init(describing:)) ?? ""
        #expect(!text.contains(wrongSecret) && !text.contains(refreshToken))
    }

    @Test func serverErrorIsUnavailableWithRetryAfter() throws {
        let fixture = try ProviderFixture()
        defer { fixture.stop() }
        let refreshToken = try fixture.provider.seedRefreshToken()
        try fixture.provider.set(["mode": "error_500", "retry_after": "7"])
        #expect(oauthError { try client.refresh(try fixture.endpoint(), refreshToken: refreshToken, scope: nil, deadline: soon()) }
            == .unavailable(reason: "HTTP 500", retryAfter: .seconds(7)))
        try fixture.provider.set(["retry_after": "Wed, 21 Oct 2015 07:28:00 GMT"])
        #expect(oauthError { try client.refresh(try fixture.endpoint(), refreshToken: refreshToken, scope: nil, deadline: soon()) }
            == .unavailable(reason: "HTTP 500", retryAfter: OAuthError.defaultRetryAfter))
    }

    @Test func slowerThanTheDeadlineTimesOutNearTheDeadline() throws {
        let fixture = try ProviderFixture()
        defer { fixture.stop() }
        let refreshToken = try fixture.provider.seedRefreshToken()
        try fixture.provider.set(["mode": "slow", "slow": "6"])
        let deadline = ContinuousClock.now + .seconds(1)
        let error = oauthError { try client.refresh(try fixture.endpoint(), refreshToken: refreshToken, scope: nil, deadline: deadline) }
        #expect(error == .timedOut)
        // A bound, not a speed test: the call must not wait for the provider's 6 s.
        #expect(ContinuousClock.now < deadline + .seconds(2))
    }

    @Test func aPassedDeadlineSendsNothing() throws {
        let fixture = try ProviderFixture()
        defer { fixture.stop() }
        #expect(oauthError { try client.refresh(try fixture.endpoint(), refreshToken: "x", scope: nil, deadline: .now - .seconds(1)) } == .timedOut)
        #expect(try fixture.provider.counters()["token_requests"] == 0)
    }

    @Test func redirectsAreRefused() throws {
        let fixture = try ProviderFixture()
        defer { fixture.stop() }
        try fixture.provider.set(["mode": "redirect"])
        let error = oauthError { try client.refresh(try fixture.endpoint(), refreshToken: "x", scope: nil, deadline: soon()) }
        guard case .badResponse(let what)? = error else {
            Issue.record("expected badResponse, got \(String(describing: error))")
            return
        }
        #expect(what.contains("302"))
    }

    @Test func oversizedAnswersAreRefused() throws {
        let fixture = try ProviderFixture()
        defer { fixture.stop() }
        try fixture.provider.set(["mode": "oversized"])
        let error = oauthError { try client.refresh(try fixture.endpoint(), refreshToken: "x", scope: nil, deadline: soon()) }
        guard case .badResponse(let what)? = error else {
            Issue.record("expected badResponse, got \(String(describing: error))")
            return
        }
        #expect(what.contains("larger than"))
    }

    @Test func aCertificateFromAnUnknownCAIsRefused() throws {
        let fixture = try ProviderFixture()
        defer { fixture.stop() }
        let refreshToken = try fixture.provider.seedRefreshToken()
        let error = oauthError { try client.refresh(try fixture.endpoint(caFile: false), refreshToken: refreshToken, scope: nil, deadline: soon()) }
        guard case .unavailable(let reason, _)? = error else {
            Issue.record("expected unavailable, got \(String(describing: error))")
            return
        }
        #expect(reason.lowercased().contains("certificate"))
        // Nothing reached the token endpoint.
        #expect(try fixture.refreshCount() == 0)
    }

    @Test func aCertificateForAnotherNameIsRefused() throws {
        let dir = try TempDir(prefix: "mailgate-oauth-other")
        defer { dir.remove() }
        let other = try makeCertificate(in: dir.path, name: "other", subject: "/CN=other.example", san: "DNS:other.example")
        let provider = try TestOAuthProvider(certificate: other)
        defer { provider.stop() }
        let endpoint = TokenEndpoint(url: try EndpointURL(provider.tokenURL), clientID: provider.clientID,
                                     clientSecret: provider.clientSecret, caFile: other.cert)
        let error = oauthError { try client.refresh(endpoint, refreshToken: "x", scope: nil, deadline: soon()) }
        guard case .unavailable? = error else {
            Issue.record("expected unavailable, got \(String(describing: error))")
            return
        }
        #expect(try provider.counters()["refresh"] == 0)
    }

    @Test func theNameInTheCertificateVerifies() throws {
        let fixture = try ProviderFixture()
        defer { fixture.stop() }
        let endpoint = TokenEndpoint(url: try EndpointURL("https://localhost:\(fixture.provider.port)/token"),
                                     clientID: fixture.provider.clientID, clientSecret: fixture.provider.clientSecret,
                                     caFile: fixture.certificate.cert)
        let refreshToken = try fixture.provider.seedRefreshToken()
        #expect(throws: Never.self) { try client.refresh(endpoint, refreshToken: refreshToken, scope: nil, deadline: soon()) }
    }

    @Test func aClosedPortIsUnavailable() throws {
        let port = try freePort()
        let endpoint = TokenEndpoint(url: try EndpointURL("https://127.0.0.1:\(port)/token"), clientID: "c", clientSecret: nil)
        let error = oauthError { try client.refresh(endpoint, refreshToken: "x", scope: nil, deadline: soon()) }
        guard case .unavailable(_, let retryAfter)? = error else {
            Issue.record("expected unavailable, got \(String(describing: error))")
            return
        }
        #expect(retryAfter == OAuthError.defaultRetryAfter)
    }

    @Test func anUnreadableCAFileIsAConfigurationError() throws {
        let fixture = try ProviderFixture()
        defer { fixture.stop() }
        let endpoint = TokenEndpoint(url: try EndpointURL(fixture.provider.tokenURL), clientID: fixture.provider.clientID,
                                     clientSecret: fixture.provider.clientSecret, caFile: "/nonexistent/ca.pem")
        let error = oauthError { try client.refresh(endpoint, refreshToken: "x", scope: nil, deadline: soon()) }
        guard case .invalidConfiguration? = error else {
            Issue.record("expected invalidConfiguration, got \(String(describing: error))")
            return
        }
    }

    @Test func aPublicClientSendsNoSecret() throws {
        let fixture = try ProviderFixture(clientSecret: nil)
        defer { fixture.stop() }
        let refreshToken = try fixture.provider.seedRefreshToken()
        let response = try client.refresh(try fixture.endpoint(), refreshToken: refreshToken, scope: nil, deadline: soon())
        #expect(response.accessToken.hasPrefix("ya29."))
    }
}
