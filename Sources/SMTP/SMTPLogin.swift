/// How the client logs in to the SMTP server, if at all.
public enum SMTPLogin: Sendable, Hashable {
    /// No AUTH.
    case none
    /// AUTH PLAIN (or LOGIN) with a password.
    case password(username: String, password: String)
    /// AUTH XOAUTH2 (or OAUTHBEARER, RFC 7628) with an OAuth2 access token
    /// for the mailbox `username`, taken from `tokens` when a connection
    /// opens.
    case bearer(username: String, tokens: SMTPAccessTokens)

    /// The login name, nil without AUTH.
    public var username: String? {
        switch self {
        case .none: nil
        case .password(let username, _), .bearer(let username, _): username
        }
    }
}

// A login ends up in logs through the config that holds it: neither the
// password nor anything of the token source is ever printed.
extension SMTPLogin: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var description: String {
        switch self {
        case .none: "none"
        case .password(let username, _): "password(username: \"\(username)\", password: <redacted>)"
        case .bearer(let username, _): "bearer(username: \"\(username)\", tokens: <redacted>)"
        }
    }

    public var debugDescription: String { description }

    public var customMirror: Mirror {
        switch self {
        case .none: Mirror(self, children: [], displayStyle: .enum)
        case .password(let username, _):
            Mirror(self, children: ["username": username, "password": "<redacted>"], displayStyle: .enum)
        case .bearer(let username, _):
            Mirror(self, children: ["username": username, "tokens": "<redacted>"], displayStyle: .enum)
        }
    }
}

/// Where a bearer login gets its OAuth2 access tokens: implemented outside
/// this module (a token cache that refreshes over HTTPS). Called from the
/// thread that opens a connection, possibly from many threads at once.
public protocol SMTPAccessTokenSource: Sendable {
    /// A current access token (cached, or fetched now), before `deadline`.
    func accessToken(deadline: ContinuousClock.Instant) throws(SMTPAccessTokenError) -> String
    /// The server refused `token`: forget it, so that the next call fetches
    /// a fresh one (unless another caller already did).
    func refused(_ token: String)
}

/// An access token source, compared by identity, so that `SMTPServerConfig`
/// stays Hashable (it is the pool key): make one per version of an
/// integration's credentials, and a changed integration gets a new pool.
public final class SMTPAccessTokens: Sendable, Hashable, CustomStringConvertible {
    public let source: any SMTPAccessTokenSource

    public init(_ source: any SMTPAccessTokenSource) {
        self.source = source
    }

    public static func == (lhs: SMTPAccessTokens, rhs: SMTPAccessTokens) -> Bool { lhs === rhs }

    public func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(self)) }

    /// The source is never described: it may hold tokens.
    public var description: String { "SMTPAccessTokens(<redacted>)" }
}

// Not even a Mirror of the source: a cache's stored properties are tokens.
extension SMTPAccessTokens: CustomReflectable {
    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .class) }
}

/// Why a token source could not give an access token. `message` is shown
/// to operators and callers: it never holds a token, a secret or anything
/// the token endpoint answered that could be one.
public struct SMTPAccessTokenError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// The grant is gone (revoked, expired, password changed: OAuth2
        /// `invalid_grant`) or no refresh token is stored: someone must
        /// authorise again.
        case reauthorize
        /// The token endpoint is unreachable or failing (5xx); worth trying
        /// again after `retryAfterSeconds`.
        case unavailable(retryAfterSeconds: Int)
        /// No token before the deadline.
        case timedOut
        /// The client registration or the integration is wrong
        /// (`invalid_client`, a bad URL...): retrying cannot help.
        case misconfigured
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}
