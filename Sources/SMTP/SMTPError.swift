import MIME

/// Where in the SMTP conversation something went wrong.
public enum SMTPStage: String, Sendable {
    case connect, greeting, ehlo, starttls, tls, auth, mail, rcpt, data, message, rset, noop, quit

    /// How the stage is named in messages.
    var label: String {
        switch self {
        case .connect: "connection"
        case .greeting: "server greeting"
        case .ehlo: "EHLO"
        case .starttls: "STARTTLS"
        case .tls: "TLS"
        case .auth: "authentication"
        case .mail: "MAIL FROM"
        case .rcpt: "RCPT TO"
        case .data: "DATA"
        case .message: "message"
        case .rset: "RSET"
        case .noop: "NOOP"
        case .quit: "QUIT"
        }
    }
}

/// Every failure of the SMTP client. Descriptions never contain passwords or
/// AUTH payloads: only host names, reply codes and server reply text (with
/// control characters removed), and OpenSSL/libc error strings.
public struct SMTPError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable {
        /// getaddrinfo failed; the string is its explanation.
        case resolveFailed(String)
        /// The host name did not resolve before the deadline or the connect
        /// timeout (whichever came first); `after` is the time it was given.
        case resolveTimedOut(host: String, after: Duration)
        /// Every address of the host refused the TCP connection.
        case connectionRefused
        /// Setting up or connecting the socket failed for another reason than
        /// a refusal (also: an invalid port); the string says which call and why.
        case connectFailed(String)
        /// Receiving from the server failed; the string says why.
        case readFailed(String)
        /// Sending to the server failed; the string says why.
        case writeFailed(String)
        /// The deadline, the connect timeout or the command timeout passed.
        case timeout
        /// The server closed the connection (end of stream, reset, broken pipe).
        case connectionClosed
        /// TLS could not be set up (context, CA file), or the TLS layer failed
        /// on an established session; the string is the whole explanation.
        case tls(String)
        /// The TLS handshake failed (not a verification failure); the string says why.
        case tlsHandshakeFailed(String)
        /// The server's certificate or its name did not verify; the string
        /// says why, e.g. "certificate verify failed (hostname mismatch)".
        case certificateRejected(String)
        /// The server answered with an unexpected (usually negative) reply.
        case reply(SMTPReply)
        /// The server (or the caller's input) broke the protocol's rules.
        case protocolViolation(String)
        /// A login is configured but the server offers no mechanism we can use.
        case authUnavailable(String)
        /// A bearer login's token source gave no access token (nothing was
        /// sent to the server with it).
        case accessToken(SMTPAccessTokenError)
        /// The server refused the OAuth2 access token, and again the fresh
        /// one fetched after that (on a new connection): not a wrong
        /// password, and no retry of the send can help until the grant or
        /// the account is fixed. `reply` is the server's final refusal.
        case accessTokenRefused(SMTPReply)
        /// STARTTLS is required by the config but the server does not offer it.
        case starttlsUnavailable
        /// The message (`size` octets, as MAIL FROM would declare it) is
        /// larger than the `limit` the server announced with SIZE (RFC 1870).
        /// Found before anything was sent, so the session is untouched and
        /// the error is safe to retry, but no retry can succeed: it is not
        /// a server reply, so callers can tell it from a refusal.
        case messageTooLarge(size: Int, limit: Int)
    }

    public let kind: Kind
    public let stage: SMTPStage
    /// "host:port" of the server, when known.
    public let server: String?
    /// Stage `.rcpt`: every recipient the server refused, in envelope order,
    /// each with its own reply (a send is all or nothing, so the caller
    /// needs all of them, not just the first). `kind` is then `.reply` of
    /// the deciding refusal (see `decidingReply`). Empty otherwise.
    public let refusedRecipients: [RefusedRecipient]

    public init(_ kind: Kind, stage: SMTPStage, server: String? = nil, refusedRecipients: [RefusedRecipient] = []) {
        self.kind = kind
        self.stage = stage
        self.server = server
        self.refusedRecipients = refusedRecipients
    }

    /// The refusal that decides what the caller is told: the first permanent
    /// one (5xx) if any, since retrying the send cannot help then; else the
    /// first transient one (4xx); else the first (a reply that is neither
    /// is the server breaking the protocol). Nil for no refusals.
    public static func decidingReply(_ refused: [RefusedRecipient]) -> SMTPReply? {
        (refused.first { $0.reply.isPermanent } ?? refused.first { $0.reply.isTransient } ?? refused.first)?.reply
    }

    /// At most this many refusals are spelled out in `description` (the
    /// application allows 50 recipients by default; a server's refusals
    /// must not make an unbounded message).
    static let maxListedRefusals = 50
    /// Each refusal's reply is cut to this many Unicode scalars there
    /// (multi-line replies can be kilobytes).
    static let maxListedReplyLength = 200

    public var description: String {
        let at = server.map { " (\($0))" } ?? ""
        switch kind {
        case .resolveFailed(let why):
            return "could not resolve \(server ?? "host"): \(why)"
        case .resolveTimedOut(let host, let after):
            return "name resolution of \(host) timed out after \(Self.seconds(after)) s"
        case .connectionRefused:
            return "connection to \(server ?? "server") refused"
        case .connectFailed(let why):
            return "\(why)\(at)"
        case .readFailed(let why):
            return "reading from the server failed: \(why)\(at)"
        case .writeFailed(let why):
            return "writing to the server failed: \(why)\(at)"
        case .timeout:
            switch stage {
            case .connect: return "timed out connecting to \(server ?? "server")"
            case .greeting: return "timed out waiting for the server greeting\(at)"
            case .tls: return "timed out during the TLS handshake\(at)"
            case .message: return "timed out waiting for the server to accept the message\(at)"
            default: return "timed out waiting for the reply to \(stage.label)\(at)"
            }
        case .tls(let why):
            return "\(why)\(at)"
        case .tlsHandshakeFailed(let why), .certificateRejected(let why):
            return "TLS handshake failed: \(why)\(at)"
        case .reply(let reply):
            switch stage {
            case .greeting: return "server refused the session: \(reply)\(at)"
            case .auth: return "authentication failed: \(reply)\(at)"
            case .rcpt where !refusedRecipients.isEmpty:
                return "RCPT TO rejected: \(Self.listing(refusedRecipients))\(at)"
            case .message: return "message rejected: \(reply)\(at)"
            default: return "\(stage.label) rejected: \(reply)\(at)"
            }
        case .protocolViolation(let why):
            return "\(stage.label): \(why)\(at)"
        case .connectionClosed:
            return "connection closed by the server during \(stage.label)\(at)"
        case .authUnavailable(let why):
            return "cannot log in: \(why)\(at)"
        case .accessToken(let failure):
            return "cannot get an OAuth2 access token: \(failure.message)\(at)"
        case .accessTokenRefused(let reply):
            return "the server refused the OAuth2 access token even after a refresh: \(reply)\(at)"
        case .starttlsUnavailable:
            return "server does not offer STARTTLS, which the configuration requires\(at)"
        case .messageTooLarge(let size, let limit):
            return "message of \(size) bytes exceeds the SMTP server's limit of \(limit) bytes\(at)"
        }
    }

    /// "a@x: 550 5.1.1 no such user; b@y: 451 try later", bounded by
    /// `maxListedRefusals` and `maxListedReplyLength`.
    static func listing(_ refused: [RefusedRecipient]) -> String {
        var parts = refused.prefix(maxListedRefusals).map { "\($0.address): \(truncated($0.reply.description))" }
        if refused.count > maxListedRefusals { parts.append("and \(refused.count - maxListedRefusals) more") }
        return parts.joined(separator: "; ")
    }

    /// `text` cut to `maxListedReplyLength` scalars, with "..." when cut.
    /// By scalars, not Characters: one Character of server text can hold
    /// any number of combining marks.
    private static func truncated(_ text: String) -> String {
        let scalars = text.unicodeScalars
        guard let cut = scalars.index(scalars.startIndex, offsetBy: maxListedReplyLength, limitedBy: scalars.endIndex),
              cut != scalars.endIndex else { return text }
        return String(scalars[..<cut]) + "..."
    }

    /// `duration` in seconds for messages: "3", "0.3", "2.5".
    static func seconds(_ duration: Duration) -> String {
        let tenths = max(0, Int((duration / .milliseconds(100)).rounded()))
        return tenths % 10 == 0 ? "\(tenths / 10)" : "\(tenths / 10).\(tenths % 10)"
    }

    /// True when the failure happened before the server accepted DATA (354),
    /// so the message was certainly not delivered and may be retried once on
    /// a fresh connection. Once the body was sent (stage `.message`) the
    /// server may have queued it even if we never saw its answer.
    public var isSafeToRetry: Bool { stage != .message }

    /// True when the failure says the connection itself is gone or unusable
    /// (as opposed to the server disliking this particular message). Used by
    /// the pool to decide whether a reused connection was simply stale.
    var looksLikeDeadConnection: Bool {
        if stage == .rset || stage == .noop { return true }
        switch kind {
        case .connectionClosed, .connectFailed, .readFailed, .writeFailed: return true
        case .reply(let r): return r.code == 421
        default: return false
        }
    }
}

/// A recipient the server refused at RCPT TO, and the reply it refused it with.
public struct RefusedRecipient: Sendable, Equatable {
    public let address: EmailAddress
    public let reply: SMTPReply

    public init(address: EmailAddress, reply: SMTPReply) {
        self.address = address
        self.reply = reply
    }
}

extension SMTPError {
    /// The one place an I/O failure of the byte stream becomes an SMTP
    /// error: the stream says what failed, the session says when.
    init(_ failure: StreamError, stage: SMTPStage, server: String) {
        let kind: Kind
        switch failure {
        case .resolve(let why): kind = .resolveFailed(why)
        case .resolveTimedOut(let host, let after): kind = .resolveTimedOut(host: host, after: after)
        case .invalidPort(let port): kind = .connectFailed("invalid port \(port)")
        case .refused: kind = .connectionRefused
        case .connect(let error): kind = .connectFailed(error.description)
        case .read(let why): kind = .readFailed(why)
        case .write(let why): kind = .writeFailed(why)
        case .timedOut: kind = .timeout
        case .closedByPeer: kind = .connectionClosed
        case .lineTooLong(let limit): kind = .protocolViolation("reply line longer than \(limit) bytes")
        case .tls(let why): kind = .tls(why)
        case .tlsHandshake(let why): kind = .tlsHandshakeFailed(why)
        case .certificate(let why): kind = .certificateRejected(why)
        }
        self.init(kind, stage: stage, server: server)
    }
}
