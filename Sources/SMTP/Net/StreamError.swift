import Posix

/// A failure of the byte stream below the SMTP session: what failed, in
/// I/O terms only. The session (`SMTPConnection`) turns it into an
/// `SMTPError` with the stage it was in, in one place.
enum StreamError: Error, Sendable, Equatable {
    /// The host name did not resolve; the string is getaddrinfo's reason.
    case resolve(String)
    /// The caller's deadline passed before the host name resolved; `after`
    /// is how long the lookup was given.
    case resolveTimedOut(host: String, after: Duration)
    /// The port is outside 1...65535.
    case invalidPort(Int)
    /// Every address of the host refused the TCP connection.
    case refused
    /// Creating, setting up or connecting the socket failed.
    case connect(SystemCallError)
    /// Receiving failed; the string is the whole reason.
    case read(String)
    /// Sending failed; the string is the whole reason.
    case write(String)
    /// The deadline passed while waiting for the socket.
    case timedOut
    /// The peer closed the connection (EOF, reset, broken pipe).
    case closedByPeer
    /// A line grew past the caller's limit without a line end.
    case lineTooLong(limit: Int)
    /// TLS could not be set up (context, CA file, session), or the TLS layer
    /// failed on an established session; the string is the whole reason.
    case tls(String)
    /// The TLS handshake failed for another reason than verification.
    case tlsHandshake(String)
    /// The peer's certificate or name did not verify; the whole reason.
    case certificate(String)
}
