import Foundation
import MailgateTesting
import Synchronization
import Testing
@testable import OAuth

/// Rotated refresh tokens the cache reported, in order.
final class RotationLog: Sendable {
    private let tokens = Mutex<[String]>([])
    func record(_ token: String) { tokens.withLock { $0.append(token) } }
    var all: [String] { tokens.withLock { $0 } }
}

@Suite("AccessTokenCache", .serialized, .timeLimit(.minutes(2)))
struct AccessTokenCacheTests {
    @Test func aCachedTokenIsReused() throws {
        let fixture = try ProviderFixture()
        defer { fixture.stop() }
        let credentials = try fixture.credentials(refreshToken: try fixture.provider.seedRefreshToken())
        let key = try AccessTokenKey(user: "alice", mailbox: "alice@example.com", credentials: credentials)
        let cache = AccessTokenCache(rotated: { _, _ in })
        let first = try cache.accessToken(key, credentials: credentials, deadline: soon())
        let second = try cache.accessToken(key, credentials: credentials, deadline: soon())
        #expect(first == second)
        #expect(try fixture.refreshCount() == 1)
        #expect(cache.refreshCounts().total == 1 && cache.refreshCounts().succeeded == 1)
    }

    @Test func aTokenNearExpiryIsRefreshed() throws {
        // A 2-second token: the margin is half its life (1 s), so after 1.2 s it is due.
        let fixture = try ProviderFixture(lifetime: 2)
        defer { fixture.stop() }
        let credentials = try fixture.credentials(refreshToken: try fixture.provider.seedRefreshToken())
        let key = try AccessTokenKey(user: "alice", mailbox: "alice@example.com", credentials: credentials)
        let cache = AccessTokenCache(rotated: { _, _ in })
        let first = try cache.accessToken(key, credentials: credentials, deadline: soon())
        #expect(try cache.accessToken(key, credentials: credentials, deadline: soon()) == first)
        usleep(1_200_000)
        let second = try cache.accessToken(key, credentials: credentials, deadline: soon())
        #expect(second != first)
        #expect(try fixture.refreshCount() == 2)
    }

    @Test func thirtyTwoThreadsWithAnExpiredTokenSendOneRefresh() async throws {
        let fixture = try ProviderFixture(lifetime: 2)
        defer { fixture.stop() }
        let credentials = try fixture.credentials(refreshToken: try fixture.provider.seedRefreshToken())
        let key = try AccessTokenKey(user: "alice", mailbox: "alice@example.com", credentials: credentials)
        let cache = AccessTokenCache(rotated: { _, _ in })
        let stale = try cache.accessToken(key, credentials: credentials, deadline: soon())
        usleep(2_000_000)  // past its 2 s life: nobody may be given it
        // Slow answers, so every thread arrives while the one refresh is out.
        try fixture.provider.set(["mode": "slow", "slow": "1", "lifetime": "3600"])
        let tokens = try await onThreads(32) { _ in try cache.accessToken(key, credentials: credentials, deadline: soon()) }
        #expect(tokens.count == 32)
        #expect(Set(tokens).count == 1)
        #expect(tokens.first != stale)
        #expect(try fixture.refreshCount() == 2)  // the first fill, and exactly one for the 32
        #expect(cache.refreshCounts().total == 2)
    }

    @Test func aDueTokenThatHasNotExpiredIsGivenOutWhileItIsRefreshed() async throws {
        // 4 s tokens: due after 2 s (half the life), usable until 3.6 s.
        let fixture = try ProviderFixture(lifetime: 4)
        defer { fixture.stop() }
        let credentials = try fixture.credentials(refreshToken: try fixture.provider.seedRefreshToken())
        let key = try AccessTokenKey(user: "alice", mailbox: "alice@example.com", credentials: credentials)
        let cache = AccessTokenCache(rotated: { _, _ in })
        let old = try cache.accessToken(key, credentials: credentials, deadline: soon())
        usleep(2_200_000)
        try fixture.provider.set(["mode": "slow", "slow": "1"])
        async let refresher = blocking { try cache.accessToken(key, credentials: credentials, deadline: soon()) }
        try await Task.sleep(for: .milliseconds(300))
        let meanwhile = try await blocking { try cache.accessToken(key, credentials: credentials, deadline: soon()) }
        #expect(meanwhile == old)
        let new = try await refresher
        #expect(new != old)
        #expect(try cache.accessToken(key, credentials: credentials, deadline: soon()) == new)
        #expect(try fixture.refreshCount() == 2)
    }

    @Test func anOutageDuringTheRefreshFallsBackToAStillUsableToken() throws {
        let fixture = try ProviderFixture(lifetime: 4)
        defer { fixture.stop() }
        let credentials = try fixture.credentials(refreshToken: try fixture.provider.seedRefreshToken())
        let key = try AccessTokenKey(user: "alice", mailbox: "alice@example.com", credentials: credentials)
        let cache = AccessTokenCache(rotated: { _, _ in })
        let old = try cache.accessToken(key, credentials: credentials, deadline: soon())
        usleep(2_200_000)
        try fixture.provider.set(["mode": "error_500"])
        #expect(try cache.accessToken(key, credentials: credentials, deadline: soon()) == old)
        #expect(cache.refreshCounts().unavailable == 1)
        // Once it has expired, the outage shows.
        usleep(1_600_000)
        guard case .unavailable? = oauthError({ try cache.accessToken(key, credentials: credentials, deadline: soon()) }) else {
            Issue.record("expected unavailable")
            return
        }
        // invalid_grant is not an outage: the old token is dropped and the error shown.
        try fixture.provider.set(["mode": "normal"])
        _ = try cache.accessToken(key, credentials: credentials, deadline: soon())
        usleep(2_200_000)
        try fixture.provider.set(["mode": "invalid_grant"])
        #expect(oauthError { try cache.accessToken(key, credentials: credentials, deadline: soon()) } == .reauthorize)
        #expect(oauthError { try cache.accessToken(key, credentials: credentials, deadline: soon()) } == .reauthorize)
    }

    @Test func aWaiterGivesUpAtItsOwnDeadlineWhileTheRefreshGoesOn() async throws {
        let fixture = try ProviderFixture()
        defer { fixture.stop() }
        let credentials = try fixture.credentials(refreshToken: try fixture.provider.seedRefreshToken())
        let key = try AccessTokenKey(user: "alice", mailbox: "alice@example.com", credentials: credentials)
        let cache = AccessTokenCache(rotated: { _, _ in })
        try fixture.provider.set(["mode": "slow", "slow": "3"])
        async let refresher = blocking { try cache.accessToken(key, credentials: credentials, deadline: soon()) }
        try await Task.sleep(for: .milliseconds(500))  // the refresh is out
        let waiterDeadline = ContinuousClock.now + .milliseconds(500)
        let waiter = try await blocking { () -> OAuthError? in
            oauthError { try cache.accessToken(key, credentials: credentials, deadline: waiterDeadline) }
        }
        #expect(waiter == .timedOut)
        #expect(ContinuousClock.now < waiterDeadline + .seconds(2))  // a bound, well before the 3 s answer
        let token = try await refresher
        #expect(token.hasPrefix("ya29."))
        #expect(try fixture.refreshCount() == 1)
        // The waiter's time-out is not counted as a failed refresh.
        #expect(cache.refreshCounts() == { var c = RefreshCounts(); c.total = 1; c.succeeded = 1; return c }())
    }

    @Test func discardMakesTheNextCallRefresh() throws {
        let fixture = try ProviderFixture()
        defer { fixture.stop() }
        let credentials = try fixture.credentials(refreshToken: try fixture.provider.seedRefreshToken())
        let key = try AccessTokenKey(user: "alice", mailbox: "alice@example.com", credentials: credentials)
        let cache = AccessTokenCache(rotated: { _, _ in })
        let first = try cache.accessToken(key, credentials: credentials, deadline: soon())
        cache.discard(key, token: "some-other-token")  // not the cached one: no effect
        #expect(try cache.accessToken(key, credentials: credentials, deadline: soon()) == first)
        #expect(try fixture.refreshCount() == 1)
        cache.discard(key, token: first)
        let second = try cache.accessToken(key, credentials: credentials, deadline: soon())
        #expect(second != first)
        #expect(try fixture.refreshCount() == 2)
    }

    @Test func rotationCallsTheHookAndTheCacheUsesTheNewTokenEvenIfTheCallerLags() throws {
        let fixture = try ProviderFixture(rotation: true)
        defer { fixture.stop() }
        let original = try fixture.provider.seedRefreshToken()
        let credentials = try fixture.credentials(refreshToken: original)
        let key = try AccessTokenKey(user: "alice", mailbox: "alice@example.com", credentials: credentials)
        let log = RotationLog()
        let cache = AccessTokenCache(rotated: { rotatedKey, token in
            #expect(rotatedKey == key)
            log.record(token)
        })
        let first = try cache.accessToken(key, credentials: credentials, deadline: soon())
        #expect(log.all.count == 1)
        #expect(log.all.first != original)
        // The provider has revoked `original`; the caller still passes it.
        cache.discard(key, token: first)
        let second = try cache.accessToken(key, credentials: credentials, deadline: soon())
        #expect(second != first)
        #expect(log.all.count == 2)
        // A caller that caught up (passes the latest) works too.
        cache.discard(key, token: second)
        let caughtUp = try fixture.credentials(refreshToken: try #require(log.all.last))
        #expect(throws: Never.self) { try cache.accessToken(key, credentials: caughtUp, deadline: soon()) }
        #expect(cache.refreshCounts().failed == 0)
    }

    @Test func anErrorIsSharedButNotKept() throws {
        let fixture = try ProviderFixture()
        defer { fixture.stop() }
        let credentials = try fixture.credentials(refreshToken: try fixture.provider.seedRefreshToken())
        let key = try AccessTokenKey(user: "alice", mailbox: "alice@example.com", credentials: credentials)
        let cache = AccessTokenCache(rotated: { _, _ in })
        try fixture.provider.set(["mode": "error_500"])
        guard case .unavailable? = oauthError({ try cache.accessToken(key, credentials: credentials, deadline: soon()) }) else {
            Issue.record("expected unavailable")
            return
        }
        try fixture.provider.set(["mode": "normal"])
        #expect(throws: Never.self) { try cache.accessToken(key, credentials: credentials, deadline: soon()) }
        var expected = RefreshCounts()
        expected.total = 2
        expected.succeeded = 1
        expected.unavailable = 1
        #expect(cache.refreshCounts() == expected)
    }

    @Test func reauthorizeIsCounted() throws {
        let fixture = try ProviderFixture()
        defer { fixture.stop() }
        let refreshToken = try fixture.provider.seedRefreshToken()
        let credentials = try fixture.credentials(refreshToken: refreshToken)
        let key = try AccessTokenKey(user: "alice", mailbox: "alice@example.com", credentials: credentials)
        let cache = AccessTokenCache(rotated: { _, _ in })
        try fixture.provider.revokeAll()
        let error = oauthError { try cache.accessToken(key, credentials: credentials, deadline: soon()) }
        #expect(error == .reauthorize)
        #expect(!(error.map(String.init(describing:)) ?? "").contains(refreshToken))
        #expect(cache.refreshCounts().reauthorize == 1)
    }

    @Test func allWaitersGetTheSameFailure() async throws {
        // No server: an injected refresh that fails after a pause.
        let calls = Locked(0)
        let cache = AccessTokenCache(rotated: { _, _ in }, refresh: { _, _ throws(OAuthError) -> TokenResponse in
            calls.withLock { $0 += 1 }
            usleep(500_000)
            throw .reauthorize
        })
        let credentials = OAuthCredentials(
            endpoint: TokenEndpoint(url: try EndpointURL("https://id.example/token"), clientID: "c", clientSecret: nil),
            refreshToken: "r", scope: nil)
        let key = try AccessTokenKey(user: "u", mailbox: "m", credentials: credentials)
        let errors = try await onThreads(8) { _ in
            oauthError { try cache.accessToken(key, credentials: credentials, deadline: soon()) }
        }
        #expect(errors.allSatisfy { $0 == .reauthorize })
        #expect(calls.value == 1)
        // Not kept: the next call tries again.
        _ = oauthError { try cache.accessToken(key, credentials: credentials, deadline: soon()) }
        #expect(calls.value == 2)
    }

    @Test func differentKeysDoNotWaitForEachOther() async throws {
        let cache = AccessTokenCache(rotated: { _, _ in }, refresh: { credentials, _ throws(OAuthError) -> TokenResponse in
            if credentials.refreshToken == "slow" { usleep(3_000_000) }
            return TokenResponse(accessToken: "t-" + credentials.refreshToken, tokenType: "Bearer",
                                 expiresIn: .seconds(3600), refreshToken: nil, scope: nil)
        })
        let endpoint = TokenEndpoint(url: try EndpointURL("https://id.example/token"), clientID: "c", clientSecret: nil)
        let slow = OAuthCredentials(endpoint: endpoint, refreshToken: "slow", scope: nil)
        let fast = OAuthCredentials(endpoint: endpoint, refreshToken: "fast", scope: nil)
        let slowKey = try AccessTokenKey(user: "slow", mailbox: "m", credentials: slow)
        let fastKey = try AccessTokenKey(user: "fast", mailbox: "m", credentials: fast)
        async let slowToken = blocking { try cache.accessToken(slowKey, credentials: slow, deadline: soon()) }
        try await Task.sleep(for: .milliseconds(200))
        let deadline = ContinuousClock.now + .seconds(1)
        let fastToken = try await blocking { try cache.accessToken(fastKey, credentials: fast, deadline: deadline) }
        #expect(fastToken == "t-fast")
        #expect(try await slowToken == "t-slow")
    }
}
