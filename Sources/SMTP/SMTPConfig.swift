/// How the connection to the SMTP server is protected.
public enum SMTPSecurity: String, Sendable, CaseIterable {
    /// Plain TCP, then STARTTLS. Required: a server that does not offer it is refused.
    case starttls
    /// TLS from the first byte ("implicit TLS", usually port 465).
    case tls
    /// No TLS at all (only for loopback or trusted networks).
    case none
}

/// Everything needed to reach and log in to one SMTP server.
///
/// Two configs that compare equal can share connections; that is why the
/// login takes part in equality (a changed password, or a new access token
/// source, must give a new pool).
public struct SMTPServerConfig: Sendable, Hashable {
    public var host: String
    public var port: Int
    public var security: SMTPSecurity
    /// No AUTH is attempted for `.none` or an empty username.
    public var login: SMTPLogin
    /// The EHLO argument.
    public var heloName: String
    /// An extra trust anchor file (PEM). nil: only the system trust store.
    public var caFile: String?
    public var verifyCertificates: Bool
    public var connectTimeout: Duration
    public var commandTimeout: Duration

    public init(
        host: String,
        port: Int,
        security: SMTPSecurity,
        login: SMTPLogin = .none,
        heloName: String = "localhost",
        caFile: String? = nil,
        verifyCertificates: Bool = true,
        connectTimeout: Duration = .seconds(10),
        commandTimeout: Duration = .seconds(10)
    ) {
        self.host = host
        self.port = port
        self.security = security
        self.login = login
        self.heloName = heloName
        self.caFile = caFile
        self.verifyCertificates = verifyCertificates
        self.connectTimeout = connectTimeout
        self.commandTimeout = commandTimeout
    }

    /// A password login (or none, when `username` is nil or empty).
    public init(
        host: String,
        port: Int,
        security: SMTPSecurity,
        username: String?,
        password: String?,
        heloName: String = "localhost",
        caFile: String? = nil,
        verifyCertificates: Bool = true,
        connectTimeout: Duration = .seconds(10),
        commandTimeout: Duration = .seconds(10)
    ) {
        let login: SMTPLogin = if let username, !username.isEmpty {
            .password(username: username, password: password ?? "")
        } else {
            .none
        }
        self.init(host: host, port: port, security: security, login: login, heloName: heloName, caFile: caFile,
                  verifyCertificates: verifyCertificates, connectTimeout: connectTimeout, commandTimeout: commandTimeout)
    }

    /// The login name, nil without AUTH.
    public var username: String? { login.username }

    /// "host:port", with IPv6 literals bracketed, for messages.
    var endpoint: String {
        host.contains(":") && !host.hasPrefix("[") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    /// True when a login is configured: a bearer login always (it has no
    /// meaning without AUTH); a password login with a username.
    var wantsAuth: Bool {
        switch login {
        case .none: false
        case .password(let username, _): !username.isEmpty
        case .bearer: true
        }
    }
}

// Configs end up in logs and error reports; the password (and the token
// source) must never be printed, whichever way the value is turned into text (print, "\(...)",
// debugPrint, dump / Mirror).
extension SMTPServerConfig: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var description: String {
        var parts = ["host: \(host)", "port: \(port)", "security: \(security.rawValue)"]
        parts.append("login: \(login)")
        parts.append("heloName: \(heloName)")
        parts.append("caFile: \(caFile ?? "nil")")
        parts.append("verifyCertificates: \(verifyCertificates)")
        parts.append("connectTimeout: \(connectTimeout)")
        parts.append("commandTimeout: \(commandTimeout)")
        return "SMTPServerConfig(\(parts.joined(separator: ", ")))"
    }

    public var debugDescription: String { description }

    public var customMirror: Mirror {
        Mirror(self, children: [
            "host": host, "port": port, "security": security,
            "login": login,
            "heloName": heloName, "caFile": caFile as Any,
            "verifyCertificates": verifyCertificates,
            "connectTimeout": connectTimeout, "commandTimeout": commandTimeout,
        ], displayStyle: .struct)
    }
}
