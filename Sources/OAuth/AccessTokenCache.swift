import Crypto
import JSON

/// What the cache needs to refresh one integration's access token.
public struct OAuthCredentials: Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var endpoint: TokenEndpoint
    public var refreshToken: String
    /// Sent with each refresh when set.
    public var scope: String?

    public init(endpoint: TokenEndpoint, refreshToken: String, scope: String?) {
        self.endpoint = endpoint
        self.refreshToken = refreshToken
        self.scope = scope
    }

    public var description: String {
        "OAuthCredentials(endpoint: \(endpoint), refreshToken: <redacted>, scope: \(scope ?? "nil"))"
    }
    public var debugDescription: String { description }
    public var customMirror: Mirror {
        Mirror(self, children: ["endpoint": endpoint, "refreshToken": "<redacted>", "scope": scope as Any])
    }
}

/// Which cached token belongs to which integration: the user's name (by
/// its UTF-8 bytes) and a SHA-256 fingerprint of everything that decides
/// whose token it is (token URL, client id, client secret, scope, CA file,
/// SMTP mailbox). A changed integration gets a new key, so it never uses the
/// old integration's token.
///
/// The refresh token is deliberately not in the fingerprint: a server that
/// rotates refresh tokens would otherwise give every refresh a new key (and
/// the rotated token is tracked by the cache, see `AccessTokenCache`).
public struct AccessTokenKey: Hashable, Sendable, CustomStringConvertible {
    public let user: [UInt8]
    public let fingerprint: [UInt8]

    public init(user: String, mailbox: String, credentials: OAuthCredentials) throws(OAuthError) {
        var material: [UInt8] = []
        // Length-prefixed fields, so ("ab", "c") and ("a", "bc") differ.
        func field(_ value: String?) {
            guard let value else {
                material.append(0)
                return
            }
            material.append(1)
            let bytes = Array(value.utf8)
            withUnsafeBytes(of: UInt64(bytes.count).bigEndian) { material.append(contentsOf: $0) }
            material.append(contentsOf: bytes)
        }
        field(credentials.endpoint.url.text)
        field(credentials.endpoint.clientID)
        field(credentials.endpoint.clientSecret)
        field(credentials.scope)
        field(credentials.endpoint.caFile)
        field(mailbox)
        do {
            fingerprint = try Crypto.sha256(material)
        } catch {
            throw .internalFailure("SHA-256 failed: \(error)")
        }
        self.user = Array(user.utf8)
    }

    public var description: String {
        let hex = fingerprint.prefix(6).map { byte in
            let digits = Array("0123456789abcdef")
            return String([digits[Int(byte >> 4)], digits[Int(byte & 0x0f)]])
        }.joined()
        return "AccessTokenKey(user: \(String(decoding: user, as: UTF8.self).excerpt()), fingerprint: \(hex)…)"
    }
}

/// How many refreshes the cache sent, and how those that failed failed.
public struct RefreshCounts: Sendable, Equatable {
    public var total = 0
    public var succeeded = 0
    public var reauthorize = 0
    public var rejected = 0
    public var unavailable = 0
    public var timedOut = 0
    public var badResponse = 0
    /// Configuration and internal failures.
    public var other = 0

    public init() {}

    public var failed: Int { total - succeeded }
}

/// Access tokens in memory, per integration, shared by all worker threads.
///
/// **Lifetime.** A token is used until `margin` before it expires, where
/// `margin` is the configured `refreshMargin` (default 60 s) or half the
/// token's lifetime if that is less (a 60-second token is not refreshed on
/// every call). The lifetime counts from when the refresh was sent, not
/// when the answer came, so a slow answer never makes a token look younger.
///
/// **Single flight.** When a token is missing or due, the first caller for
/// that key sends the refresh and marks the key as "refreshing"; every
/// other caller for the key finds the mark and, if the due token has not
/// actually expired yet (see `CachedToken.usableUntil`), is given it at
/// once; otherwise it sleeps on a condition variable (plain blocking
/// waits: the callers are worker threads) until the refresh ends or its
/// own deadline passes, whichever comes first. A waiter whose deadline
/// passes gets `.timedOut` at once while the refresh goes on for the rest.
/// All the waiters still there get that one refresh's outcome: the token,
/// or the same error. An error is not kept: the next call after it sends a
/// new refresh. If the refresh failed only for the moment (`.unavailable`,
/// `.timedOut`) while the old token is still usable, the caller that sent it
/// gets the old token; any other failure drops the old token. Different keys
/// never wait for each other (the lock is held only to read and update the
/// table, never during HTTP).
///
/// **Rotation.** When the answer carries a new `refresh_token`, the
/// `rotated` hook is called with it (the app stores it at once) before the
/// waiters are released, so two rotations of one key are never stored out
/// of order. The caller's credentials come from a store snapshot that may
/// predate the rotation, so the cache remembers the refresh tokens it saw
/// replaced for each key: a caller that passes one of those gets the newest
/// token used instead. A refresh token the cache has never seen (the user
/// authorised again) is used as given.
public final class AccessTokenCache: Sendable {
    public typealias Refresh = @Sendable (OAuthCredentials, ContinuousClock.Instant) throws(OAuthError) -> TokenResponse
    public typealias RotationHook = @Sendable (AccessTokenKey, String) -> Void

    private let lock = ConditionLock(State())
    private let refreshMargin: Duration
    private let defaultLifetime: Duration
    private let rotated: RotationHook
    private let refresh: Refresh

    /// How many superseded refresh tokens are remembered per key.
    static let supersededLimit = 8
    /// Entries unused for this long are dropped (at the next refresh of any key).
    static let idleLimit: Duration = .seconds(24 * 3600)

    /// - Parameters:
    ///   - refreshMargin: how long before expiry a token is replaced.
    ///   - defaultLifetime: assumed when an answer has no `expires_in`.
    ///   - rotated: called with a new refresh token (never under the cache's lock).
    ///   - refresh: the refresh itself; by default `TokenClient().refresh`.
    public init(refreshMargin: Duration = .seconds(60), defaultLifetime: Duration = .seconds(300),
                rotated: @escaping RotationHook,
                refresh: Refresh? = nil) {
        self.refreshMargin = refreshMargin
        self.defaultLifetime = defaultLifetime
        self.rotated = rotated
        // Not `refresh ?? { ... }`: Swift 6.3's SILGen crashes on a typed-throws closure in that autoclosure.
        if let refresh {
            self.refresh = refresh
        } else {
            self.refresh = Self.refreshWithTokenClient
        }
    }

    private static func refreshWithTokenClient(_ credentials: OAuthCredentials,
                                               _ deadline: ContinuousClock.Instant) throws(OAuthError) -> TokenResponse {
        try TokenClient().refresh(credentials.endpoint, refreshToken: credentials.refreshToken,
                                  scope: credentials.scope, deadline: deadline)
    }

    /// A usable access token for `key`: the cached one, or a new one from
    /// the single refresh in flight for this key (started by this call if
    /// none is). Throws the refresh's error, or `.timedOut` when `deadline`
    /// passes first.
    public func accessToken(_ key: AccessTokenKey, credentials: OAuthCredentials,
                            deadline: ContinuousClock.Instant) throws(OAuthError) -> String {
        enum Step {
            case answer(Result<String, OAuthError>)
            case send(Flight, OAuthCredentials)
        }
        let step: Step = lock.withLock { state, waiter in
            let now = ContinuousClock.now
            let entry = state.entry(key, now: now)
            if let token = entry.token, now < token.refreshAfter { return .answer(.success(token.value)) }
            if let flight = entry.flight {
                // Due but not expired: no need to wait for its successor.
                if let token = entry.token, now < token.usableUntil { return .answer(.success(token.value)) }
                while flight.result == nil {
                    guard waiter.wait(until: deadline) else { return .answer(.failure(.timedOut)) }
                }
                return .answer(flight.result ?? .failure(.timedOut))
            }
            let flight = Flight()
            entry.flight = flight
            state.counts.total += 1
            state.pruneIdle(now: now, except: key)
            var effective = credentials
            effective.refreshToken = entry.refreshTokenToUse(credentials.refreshToken)
            return .send(flight, effective)
        }
        switch step {
        case .answer(let result):
            return try result.get()
        case .send(let flight, let effective):
            return try send(flight, key: key, credentials: effective, deadline: deadline)
        }
    }

    /// Forgets `token` if it is still the one cached for `key` (the SMTP
    /// server refused it), so the next call refreshes.
    public func discard(_ key: AccessTokenKey, token: String) {
        lock.withLock { state, _ in
            guard let entry = state.entries[key], let cached = entry.token, cached.value.utf8Equals(token) else { return }
            entry.token = nil
        }
    }

    /// Refreshes sent so far, and their failures by kind.
    public func refreshCounts() -> RefreshCounts {
        lock.withLock { state, _ in state.counts }
    }

    private func send(_ flight: Flight, key: AccessTokenKey, credentials: OAuthCredentials,
                      deadline: ContinuousClock.Instant) throws(OAuthError) -> String {
        let sent = ContinuousClock.now
        let result: Result<TokenResponse, OAuthError>
        do throws(OAuthError) {
            result = .success(try refresh(credentials, deadline))
        } catch {
            result = .failure(error)
        }
        // The rotation is recorded and stored before anyone is released.
        if case .success(let response) = result, let newToken = response.refreshToken,
           !newToken.utf8Equals(credentials.refreshToken) {
            lock.withLock { state, _ in
                state.entries[key]?.recordRotation(from: credentials.refreshToken, to: newToken)
            }
            rotated(key, newToken)
        }
        let outcome: Result<String, OAuthError> = result.map(\.accessToken)
        let fallback: String? = lock.withLock { state, _ in
            var fallback: String?
            if let entry = state.entries[key], entry.flight === flight {
                entry.flight = nil
                switch result {
                case .success(let response):
                    entry.token = CachedToken(response, sent: sent, margin: refreshMargin, defaultLifetime: defaultLifetime)
                case .failure(.unavailable), .failure(.timedOut):
                    // A passing outage: the token being replaced may still be good.
                    if let token = entry.token, ContinuousClock.now < token.usableUntil { fallback = token.value }
                case .failure:
                    entry.token = nil
                }
            }
            state.counts.record(outcome)
            flight.result = outcome
            return fallback
        }
        lock.broadcast()
        if let fallback { return fallback }
        return try outcome.get()
    }
}

/// One refresh in flight; its result is set once, under the cache's lock.
private final class Flight {
    var result: Result<String, OAuthError>?
}

private struct CachedToken {
    let value: String
    /// From here on, the next caller sends a refresh.
    let refreshAfter: ContinuousClock.Instant
    /// Until here, callers may still be given it while its refresh is out
    /// (a safety of a tenth of its life, at most 10 s, before it expires).
    let usableUntil: ContinuousClock.Instant

    init(_ response: TokenResponse, sent: ContinuousClock.Instant, margin: Duration, defaultLifetime: Duration) {
        let lifetime = response.expiresIn ?? defaultLifetime
        value = response.accessToken
        refreshAfter = sent + lifetime - min(margin, lifetime / 2)
        usableUntil = sent + lifetime - min(.seconds(10), lifetime / 10)
    }
}

private final class Entry {
    var token: CachedToken?
    var flight: Flight?
    /// The newest refresh token a rotation gave, and the ones it replaced.
    var currentRefreshToken: String?
    var superseded: [String] = []
    var lastUsed: ContinuousClock.Instant

    init(now: ContinuousClock.Instant) { lastUsed = now }

    func refreshTokenToUse(_ given: String) -> String {
        guard let current = currentRefreshToken else { return given }
        return superseded.contains(where: { $0.utf8Equals(given) }) ? current : given
    }

    func recordRotation(from old: String, to new: String) {
        if !superseded.contains(where: { $0.utf8Equals(old) }) { superseded.append(old) }
        superseded.removeAll { $0.utf8Equals(new) }
        if superseded.count > AccessTokenCache.supersededLimit {
            superseded.removeFirst(superseded.count - AccessTokenCache.supersededLimit)
        }
        currentRefreshToken = new
    }
}

private final class State {
    var entries: [AccessTokenKey: Entry] = [:]
    var counts = RefreshCounts()

    func entry(_ key: AccessTokenKey, now: ContinuousClock.Instant) -> Entry {
        if let entry = entries[key] {
            entry.lastUsed = now
            return entry
        }
        let entry = Entry(now: now)
        entries[key] = entry
        return entry
    }

    /// Drops entries nobody asked for in a day (old credentials of changed
    /// integrations); linear, and run only when a refresh goes out.
    func pruneIdle(now: ContinuousClock.Instant, except key: AccessTokenKey) {
        entries = entries.filter { entryKey, entry in
            entryKey == key || entry.flight != nil || now - entry.lastUsed < AccessTokenCache.idleLimit
        }
    }
}

extension RefreshCounts {
    fileprivate mutating func record(_ outcome: Result<String, OAuthError>) {
        switch outcome {
        case .success: succeeded += 1
        case .failure(.reauthorize): reauthorize += 1
        case .failure(.rejected): rejected += 1
        case .failure(.unavailable): unavailable += 1
        case .failure(.timedOut): timedOut += 1
        case .failure(.badResponse): badResponse += 1
        case .failure: other += 1
        }
    }
}
