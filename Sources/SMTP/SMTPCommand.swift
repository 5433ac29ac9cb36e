import MIME

/// A parameter of MAIL FROM (RFC 1870 SIZE, RFC 6152 BODY=8BITMIME, RFC 6531 SMTPUTF8).
enum MailParameter: Sendable, Equatable {
    case size(Int)
    case body8BitMIME
    case smtpUTF8

    var wire: String {
        switch self {
        case .size(let octets): "SIZE=\(octets)"
        case .body8BitMIME: "BODY=8BITMIME"
        case .smtpUTF8: "SMTPUTF8"
        }
    }
}

/// One SMTP command. Its rendering (`wire`) is exactly the line that goes
/// to the server, CRLF included; every argument is typed or was checked
/// when its value was made (addresses are `EmailAddress`es, the EHLO name
/// is checked when the connection opens), so no rendering can inject a line.
enum SMTPCommand: Sendable, Equatable {
    case ehlo(String)
    case helo(String)
    case startTLS
    /// AUTH with a SASL mechanism and its base64 initial response, if any.
    case auth(AuthMechanism, initialResponse: String?)
    /// A base64 line answering a 334 challenge.
    case authResponse(String)
    /// MAIL FROM; a nil sender is the null reverse path "<>".
    case mail(from: EmailAddress?, parameters: [MailParameter])
    case rcpt(to: EmailAddress)
    case data
    /// RFC 3030: the last (here: only) chunk of the message, of `size`
    /// octets, which follow the line directly.
    case bdatLast(size: Int)
    case rset
    case noop
    case quit

    /// The stage an error in this command's round trip is reported with.
    var stage: SMTPStage {
        switch self {
        case .ehlo, .helo: .ehlo
        case .startTLS: .starttls
        case .auth, .authResponse: .auth
        case .mail: .mail
        case .rcpt: .rcpt
        case .data: .data
        // Its reply is the server's verdict on the message itself, as the
        // reply after DATA's final "." is.
        case .bdatLast: .message
        case .rset: .rset
        case .noop: .noop
        case .quit: .quit
        }
    }

    /// The command line, without CRLF. Carries the AUTH payloads: never log it
    /// (`description` is the loggable form).
    var line: String {
        switch self {
        case .ehlo(let name): "EHLO \(name)"
        case .helo(let name): "HELO \(name)"
        case .startTLS: "STARTTLS"
        case .auth(let mechanism, let response?): "AUTH \(mechanism.keyword) \(response)"
        case .auth(let mechanism, nil): "AUTH \(mechanism.keyword)"
        case .authResponse(let response): response
        case .mail(let sender, let parameters):
            "MAIL FROM:<\(sender?.description ?? "")>" + parameters.map { " " + $0.wire }.joined()
        case .rcpt(let recipient): "RCPT TO:<\(recipient)>"
        case .data: "DATA"
        case .bdatLast(let size): "BDAT \(size) LAST"
        case .rset: "RSET"
        case .noop: "NOOP"
        case .quit: "QUIT"
        }
    }

    /// Appends the wire form (the line and CRLF) to `out`.
    func append(to out: inout [UInt8]) {
        out.append(contentsOf: line.utf8)
        out.append(13)
        out.append(10)
    }

    /// The wire form: the line and CRLF.
    var wire: [UInt8] {
        var out: [UInt8] = []
        append(to: &out)
        return out
    }
}

extension SMTPCommand: CustomStringConvertible {
    /// The command as it may be logged: AUTH payloads are left out.
    var description: String {
        switch self {
        case .auth(let mechanism, let response): "AUTH \(mechanism.keyword)\(response == nil ? "" : " <redacted>")"
        case .authResponse: "<redacted>"
        default: line
        }
    }
}
