import Foundation
import MIME
import SMTP
import Store

/// Everything the application decides per request, with the defaults a
/// deployment gets when it says nothing.
public struct AppConfiguration: Sendable {
    /// Prefix nginx's `location` adds before the routes (e.g. "/api").
    public var basePath: String = ""
    /// Lifetime of tokens from `POST /token`, seconds.
    public var tokenLifetime: Int64 = 30 * 60
    /// Clock skew tolerated on `exp` and `nbf`, seconds.
    public var tokenLeeway: Int64 = 30
    /// Whole SMTP exchange, from connect to the reply after DATA. Kept below
    /// nginx's `fastcgi_read_timeout` (30 s in the shipped config) so the
    /// client gets our 504 rather than nginx's.
    public var smtpDeadline: Duration = .seconds(20)
    public var smtpConnectTimeout: Duration = .seconds(10)
    public var smtpCommandTimeout: Duration = .seconds(10)
    /// Extra trust anchors for SMTP servers with private CAs.
    public var smtpCAFile: String? = nil
    /// EHLO name.
    public var heloName: String = "localhost"
    /// Failed logins allowed within the window (15 minutes) before 429: per
    /// (username, client address) 5, per username from all clients 50.
    public var loginThrottle = LoginThrottlePolicy()
    /// Retry-After sent with 503 when the SMTP server is temporarily unavailable.
    public var smtpRetryAfter: Int = 60
    /// Sends one user may have in flight in this process; more get 429 at
    /// once (`serve` defaults it to a quarter of its workers).
    public var maxInFlightPerUser: Int = 4
    /// Password-hash computations at once (about the number of cores), and
    /// how long a login waits for one before 503.
    public var kdfConcurrency: Int = 2
    public var kdfWait: Duration = .seconds(2)
    /// Recipients per window for users without a quota of their own
    /// (`mailgate user limits`); absent or 0: unlimited.
    public var defaultQuota: [QuotaWindow: Int] = [:]
    /// Addresses in `to`, `cc` and `bcc` together, at most; more is 422.
    public var maxRecipients: Int = 50
    /// The rendered message (headers, encoded parts), at most; more is 413.
    /// Base64 makes attachments 4/3 larger in the JSON body too: `--max-body`
    /// and nginx's `client_max_body_size` must leave room for that.
    public var maxMessageBytes: Int = 25 << 20
    /// How long an `Idempotency-Key` is remembered, seconds.
    public var idempotencyTTL: TimeInterval = 24 * 60 * 60
    /// A key still in flight this long after its claim belongs to a worker
    /// that died mid-send: the SMTP deadline plus a margin for the work
    /// around the send (rendering, the store).
    var idempotencyStaleAfter: TimeInterval {
        let (seconds, attoseconds) = smtpDeadline.components
        return TimeInterval(seconds) + TimeInterval(attoseconds) / 1e18 + 60
    }
    /// Where request lines go directly (`serve`: the same writer as its log
    /// handler); nil: through the logger, as metadata.
    public var requestLog: LineWriter? = nil

    public init() {}

    /// `user`'s stored integration, checked and mapped for this server's sends.
    func submission(for integration: SMTPIntegration, of user: String,
                    accessTokens: OAuthAccessTokens) throws(StoreError) -> SMTPSubmission {
        try SMTPSubmission(integration, heloName: heloName, caFile: smtpCAFile,
                           connectTimeout: smtpConnectTimeout, commandTimeout: smtpCommandTimeout,
                           accessTokens: accessTokens, user: user)
    }
}

/// A user's SMTP integration made ready to send: which server, reached how,
/// and who the mail is from. The one place an integration is checked and
/// mapped to the SMTP client's configuration: `serve` before each send,
/// `mailgate integration set` before storing one, `integration test`.
public struct SMTPSubmission: Sendable {
    public var server: SMTPServerConfig
    /// The envelope sender and From: the integration's address, with its
    /// display name.
    public var sender: Mailbox

    /// Throws `.invalidIntegration(field)`: the Store's rules
    /// (`SMTPIntegration.validate`), then a From address that does not
    /// parse as one mailbox.
    ///
    /// An OAuth2 integration logs in with tokens from `accessTokens` (for
    /// `user`, whose integration it is); without it, only the mapping is
    /// checked and a send would fail at AUTH.
    public init(_ integration: SMTPIntegration, heloName: String, caFile: String? = nil,
                connectTimeout: Duration = .seconds(10), commandTimeout: Duration = .seconds(10),
                accessTokens: OAuthAccessTokens? = nil, user: String = "") throws(StoreError) {
        try integration.validate()
        let from: Mailbox
        do {
            from = try EmailAddress.parse(integration.fromAddress)
        } catch {
            throw .invalidIntegration("fromAddress (\(error))")
        }
        sender = Mailbox(displayName: integration.fromName, address: from.address)
        let login: SMTPLogin
        switch integration.authentication {
        case .none:
            login = .none
        case .password(let username, let password):
            login = .password(username: username, password: password)
        case .oauth2(let mailbox, let credentials):
            login = .bearer(username: mailbox,
                            tokens: try accessTokens?.tokens(user: user, mailbox: mailbox, credentials: credentials)
                                ?? NoAccessTokens.tokens)
        }
        server = SMTPServerConfig(
            host: integration.host,
            port: integration.port,
            security: SMTPSecurity(integration.security),
            login: login,
            heloName: heloName,
            caFile: caFile,
            verifyCertificates: true,
            connectTimeout: connectTimeout,
            commandTimeout: commandTimeout)
    }
}

/// The token source of an OAuth2 integration checked where no access
/// token is ever needed (`integration set` checks the mapping, never
/// sends): asked anyway, it says so.
struct NoAccessTokens: SMTPAccessTokenSource {
    static let tokens = SMTPAccessTokens(NoAccessTokens())

    func accessToken(deadline: ContinuousClock.Instant) throws(SMTPAccessTokenError) -> String {
        throw SMTPAccessTokenError(.misconfigured, "this configuration fetches no OAuth2 access tokens")
    }

    func refused(_ token: String) {}
}

extension SMTPSecurity {
    /// The stored security mode as the SMTP client's (the only conversion).
    public init(_ security: SMTPIntegration.Security) {
        switch security {
        case .starttls: self = .starttls
        case .tls: self = .tls
        case .none: self = .none
        }
    }
}
