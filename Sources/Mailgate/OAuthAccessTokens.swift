import Logging
import OAuth
import SMTP
import Store
import Synchronization

/// The OAuth2 access tokens of one process: one `AccessTokenCache` shared
/// by every worker thread, and for each OAuth2 integration one token
/// source the SMTP client asks when it opens a connection.
///
/// A source is kept per `AccessTokenKey` (user, token endpoint, client,
/// scope, CA file, mailbox), so requests for one integration get the same
/// `SMTPAccessTokens` object and therefore the same SMTP pool: its
/// connections stay logged in. A changed integration gets a new key, a new
/// source and a new pool. The refresh token is not in the key (see
/// `AccessTokenKey`); the source carries the newest one the store gave.
///
/// A refresh token the provider rotates is written back to the store at
/// once (`storeRefreshToken(origin: .rotation)`), so the next process, or
/// the next host, starts from the newest one.
public final class OAuthAccessTokens: Sendable {
    private let cache: AccessTokenCache
    private let sources: Sources
    private let caFile: String?

    /// Each key's source with the one `SMTPAccessTokens` made for it (its
    /// identity is the pool's key). Shared with the rotation hook, which
    /// finds there whose refresh token it stores.
    private final class Sources: Sendable {
        let table = Mutex<[AccessTokenKey: (source: IntegrationTokenSource, tokens: SMTPAccessTokens)]>([:])
    }

    /// - Parameters:
    ///   - caFile: extra trust anchors for token endpoints (`serve --ca-file`, as for SMTP).
    ///   - refresh: replaces the HTTPS refresh (tests).
    public init(store: any Store, caFile: String?, logger: Logger,
                refreshMargin: Duration = .seconds(60), refresh: AccessTokenCache.Refresh? = nil) {
        let sources = Sources()
        self.sources = sources
        self.caFile = caFile
        cache = AccessTokenCache(refreshMargin: refreshMargin, rotated: { key, refreshToken in
            guard let entry = sources.table.withLock({ $0[key]?.source }) else { return }
            do {
                try store.storeRefreshToken(refreshToken, for: entry.user, issuedTo: entry.owner, origin: .rotation)
                logger.info("stored the rotated OAuth2 refresh token of \(entry.user)")
            } catch {
                // The cache keeps using the new token in this process; a
                // restart would fall back to the stored (superseded) one.
                logger.error("cannot store the rotated OAuth2 refresh token of \(entry.user): \(error)")
            }
        }, refresh: refresh)
    }

    /// The token source for `user`'s OAuth2 integration as stored now.
    /// Throws `.invalidIntegration` for a token URL the OAuth client refuses.
    func tokens(user: String, mailbox: String, credentials stored: OAuth2Credentials) throws(StoreError) -> SMTPAccessTokens {
        let endpoint: TokenEndpoint
        let key: AccessTokenKey
        let credentials: OAuthCredentials?
        do {
            endpoint = TokenEndpoint(url: try EndpointURL(stored.tokenURL), clientID: stored.clientID,
                                     clientSecret: stored.clientSecret, caFile: caFile)
            credentials = stored.refreshToken.map { OAuthCredentials(endpoint: endpoint, refreshToken: $0, scope: stored.scope) }
            key = try AccessTokenKey(user: user, mailbox: mailbox,
                                     credentials: OAuthCredentials(endpoint: endpoint, refreshToken: "", scope: stored.scope))
        } catch {
            throw .invalidIntegration("oauth2 token URL (\(error))")
        }
        let entry = sources.table.withLock { sources in
            if let entry = sources[key] { return entry }
            // The key fixes the owner: the user, token URL, client id and mailbox.
            let owner = RefreshTokenOwner(tokenURL: stored.tokenURL, clientID: stored.clientID, mailbox: mailbox)
            let source = IntegrationTokenSource(cache: cache, key: key, user: user, owner: owner)
            let entry = (source: source, tokens: SMTPAccessTokens(source))
            sources[key] = entry
            return entry
        }
        entry.source.update(credentials)
        return entry.tokens
    }

    /// Refreshes sent so far, and how those that failed failed (for `GET /metrics`).
    public func refreshCounts() -> RefreshCounts { cache.refreshCounts() }
}

/// One integration's access tokens, as the SMTP client sees them.
private final class IntegrationTokenSource: SMTPAccessTokenSource {
    let cache: AccessTokenCache
    let key: AccessTokenKey
    let user: String
    /// Whose grant the refresh token is (`storeRefreshToken` checks it).
    let owner: RefreshTokenOwner
    /// The newest credentials the store gave; nil: no refresh token stored.
    private let credentials = Mutex<OAuthCredentials?>(nil)

    init(cache: AccessTokenCache, key: AccessTokenKey, user: String, owner: RefreshTokenOwner) {
        self.cache = cache
        self.key = key
        self.user = user
        self.owner = owner
    }

    func update(_ newest: OAuthCredentials?) {
        credentials.withLock { $0 = newest }
    }

    func accessToken(deadline: ContinuousClock.Instant) throws(SMTPAccessTokenError) -> String {
        guard let credentials = credentials.withLock({ $0 }) else {
            throw SMTPAccessTokenError(.reauthorize, "no OAuth2 refresh token is stored")
        }
        do {
            return try cache.accessToken(key, credentials: credentials, deadline: deadline)
        } catch {
            throw Self.smtpError(error)
        }
    }

    func refused(_ token: String) {
        cache.discard(key, token: token)
    }

    /// What a failed refresh means for the send (`OAuthError` texts carry
    /// no token and nothing from the endpoint's answer but its error code).
    static func smtpError(_ error: OAuthError) -> SMTPAccessTokenError {
        let message = "\(error)"
        switch error {
        case .reauthorize:
            return SMTPAccessTokenError(.reauthorize, message)
        case .unavailable(_, let retryAfter):
            return SMTPAccessTokenError(.unavailable(retryAfterSeconds: Int(max(1, retryAfter.components.seconds))), message)
        case .badResponse:
            // A proxy's error page or a half-broken endpoint: usually passes.
            return SMTPAccessTokenError(.unavailable(retryAfterSeconds: Int(OAuthError.defaultRetryAfter.components.seconds)), message)
        case .timedOut:
            return SMTPAccessTokenError(.timedOut, message)
        case .rejected, .invalidConfiguration, .internalFailure, .authorizationDenied, .stateMismatch, .noRedirect:
            return SMTPAccessTokenError(.misconfigured, message)
        }
    }
}
