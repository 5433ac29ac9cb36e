import SMTP
import Store

/// Hands a finished message to an SMTP server. The production transport is
/// the connection pool registry; tests may substitute their own.
public protocol MailTransport: Sendable {
    func send(owner: String, server: SMTPServerConfig, envelope: SMTPEnvelope, message: [UInt8],
              deadline: ContinuousClock.Instant) throws(SMTPError) -> SMTPReply
    /// QUITs whatever connections the transport keeps open.
    func shutdown()
    /// The SMTP connections it holds now, for `GET /metrics`; nil when it
    /// keeps none.
    func pooledConnections() -> SMTPConnectionCounts?
}

extension MailTransport {
    public func pooledConnections() -> SMTPConnectionCounts? { nil }
}

extension SMTPPoolRegistry: MailTransport {
    public func send(owner: String, server: SMTPServerConfig, envelope: SMTPEnvelope, message: [UInt8],
                     deadline: ContinuousClock.Instant) throws(SMTPError) -> SMTPReply {
        try pool(for: owner, config: server).send(envelope, message: message, deadline: deadline)
    }

    public func pooledConnections() -> SMTPConnectionCounts? { connectionCounts() }
}
