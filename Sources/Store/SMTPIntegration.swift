import Foundation

/// A user's SMTP server settings, as stored. The checks every stored
/// integration passes are `validate()`; turning one into an SMTP client
/// configuration is the application's business (Mailgate's
/// `SMTPSubmission`), so this module does not depend on the SMTP client.
public struct SMTPIntegration: Sendable, Equatable {
    /// How the connection to the SMTP server is protected; stored as its
    /// raw value, which the schema restricts to these three.
    public enum Security: String, Sendable, CaseIterable {
        /// Plain TCP, then STARTTLS, required (never opportunistic).
        case starttls
        /// TLS from the first byte ("implicit TLS").
        case tls
        /// No TLS at all (loopback or trusted networks only).
        case none

        /// The usual port for the mode: 587 (submission), 465, 25.
        public var defaultPort: Int {
            switch self {
            case .starttls: return 587
            case .tls: return 465
            case .none: return 25
            }
        }
    }

    /// How the integration logs in to the SMTP server.
    public enum Authentication: Sendable, Equatable {
        /// No AUTH.
        case none
        /// AUTH PLAIN/LOGIN. The password is clear text only in memory; the
        /// database holds it AES-GCM sealed.
        case password(username: String, password: String)
        /// AUTH XOAUTH2/OAUTHBEARER as the mailbox `username`, with access
        /// tokens from the OAuth2 client `credentials`.
        case oauth2(username: String, OAuth2Credentials)

        /// The SMTP login name (for OAuth2 the mailbox), nil for `.none`.
        public var username: String? {
            switch self {
            case .none: nil
            case .password(let username, _), .oauth2(let username, _): username
            }
        }

        /// "none", "password" or "oauth2", as stored and shown.
        public var kind: String {
            switch self {
            case .none: "none"
            case .password: "password"
            case .oauth2: "oauth2"
            }
        }
    }

    public var host: String
    public var port: Int
    public var security: Security
    public var authentication: Authentication
    public var fromAddress: String
    public var fromName: String?
    /// Stored with millisecond resolution. Changes with every
    /// `setIntegration` (and an OAuth2 re-authorisation), not when the
    /// token endpoint rotates the refresh token: see `Store.storeRefreshToken`.
    public var updatedAt: Date

    public init(host: String, port: Int, security: Security, authentication: Authentication = .none,
                fromAddress: String, fromName: String? = nil, updatedAt: Date = Date()) {
        self.host = host
        self.port = port
        self.security = security
        self.authentication = authentication
        self.fromAddress = fromAddress
        self.fromName = fromName
        self.updatedAt = updatedAt
    }

    /// A password login when `username` is given (a missing password is
    /// the empty one), else none.
    public init(host: String, port: Int, security: Security, username: String?, password: String?,
                fromAddress: String, fromName: String? = nil, updatedAt: Date = Date()) {
        self.init(host: host, port: port, security: security,
                  authentication: username.map { .password(username: $0, password: password ?? "") } ?? .none,
                  fromAddress: fromAddress, fromName: fromName, updatedAt: updatedAt)
    }

    /// The SMTP login name (for OAuth2 the mailbox), nil without AUTH.
    public var username: String? { authentication.username }

    /// The SMTP password of a password login, nil for other logins.
    public var password: String? {
        if case .password(_, let password) = authentication { return password }
        return nil
    }

    /// The OAuth2 client credentials, nil for other logins.
    public var oauth2: OAuth2Credentials? {
        if case .oauth2(_, let credentials) = authentication { return credentials }
        return nil
    }

    /// Who the stored refresh token was issued to, nil for other logins.
    public var refreshTokenOwner: RefreshTokenOwner? {
        guard case .oauth2(let mailbox, let credentials) = authentication else { return nil }
        return RefreshTokenOwner(tokenURL: credentials.tokenURL, clientID: credentials.clientID, mailbox: mailbox)
    }

    /// The rules every stored integration follows; `Store.setIntegration`
    /// refuses anything else with `.invalidIntegration(field)`.
    public func validate() throws(StoreError) {
        // Byte checks: `serve` validates before every send, and String's
        // `contains(" ")` goes through Foundation's range(of:) (1.4% of the
        // CPU of a send in perf).
        guard !host.isEmpty, host.utf8.count <= 253, Self.isClean(host), !host.utf8.contains(UInt8(ascii: " ")) else {
            throw .invalidIntegration("host")
        }
        guard (1...65535).contains(port) else { throw .invalidIntegration("port") }
        switch authentication {
        case .none:
            break
        case .password(let username, let password):
            guard Self.isClean(username) else { throw .invalidIntegration("username") }
            // AUTH PLAIN separates fields with NUL; nothing else is refused.
            guard !password.utf8.contains(0) else { throw .invalidIntegration("password") }
        case .oauth2(let mailbox, let credentials):
            guard !mailbox.isEmpty, mailbox.utf8.count <= 320, Self.isClean(mailbox) else {
                throw .invalidIntegration("username (the mailbox an OAuth2 login is for)")
            }
            try credentials.validate()
        }
        guard !fromAddress.isEmpty, Self.isClean(fromAddress) else { throw .invalidIntegration("fromAddress") }
        if let fromName { guard Self.isClean(fromName) else { throw .invalidIntegration("fromName") } }
        // A login over a connection without TLS sends the password (or the
        // access token) in the clear: only to this machine, where no
        // network carries it.
        if security == .none, username != nil, !Self.isLoopback(host) {
            throw .invalidIntegration("security (a login without TLS is allowed only to a loopback host; use starttls or tls)")
        }
    }

    /// Control characters (CR/LF above all) have no place in host names,
    /// addresses, SMTP login names or OAuth2 parameters; refused at the door.
    /// (C0 controls and DEL are single bytes in UTF-8 that never occur
    /// inside another character's encoding: checked on the bytes.)
    static func isClean(_ text: String) -> Bool {
        !text.utf8.contains { $0 < 0x20 || $0 == 0x7F }
    }

    /// `localhost`, 127.0.0.0/8 or ::1 (with or without brackets).
    static func isLoopback(_ host: String) -> Bool {
        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        if bare.lowercased() == "localhost" || bare == "::1" { return true }
        let octets = bare.split(separator: ".", omittingEmptySubsequences: false)
        return octets.count == 4 && octets[0] == "127" && octets.allSatisfy { UInt8($0) != nil }
    }
}

// Integrations end up in logs and error reports; the SMTP password, the
// OAuth2 client secret and refresh token must never be printed, whichever
// way the value is turned into text.
extension SMTPIntegration: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var description: String {
        var parts = ["host: \(host)", "port: \(port)", "security: \(security.rawValue)"]
        parts.append("authentication: \(authentication)")
        parts.append("fromAddress: \(fromAddress)")
        parts.append("fromName: \(fromName.map { "\"\($0)\"" } ?? "nil")")
        parts.append("updatedAt: \(updatedAt)")
        return "SMTPIntegration(\(parts.joined(separator: ", ")))"
    }

    public var debugDescription: String { description }

    public var customMirror: Mirror {
        Mirror(self, children: [
            "host": host, "port": port, "security": security, "authentication": authentication,
            "fromAddress": fromAddress, "fromName": fromName as Any, "updatedAt": updatedAt,
        ], displayStyle: .struct)
    }
}

extension SMTPIntegration.Authentication: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var description: String {
        switch self {
        case .none: "none"
        case .password(let username, _): "password(username: \"\(username)\", password: <redacted>)"
        case .oauth2(let username, let credentials): "oauth2(username: \"\(username)\", \(credentials))"
        }
    }

    public var debugDescription: String { description }

    public var customMirror: Mirror {
        switch self {
        case .none: Mirror(self, children: [], displayStyle: .enum)
        case .password(let username, _):
            Mirror(self, children: ["username": username, "password": "<redacted>"], displayStyle: .enum)
        case .oauth2(let username, let credentials):
            Mirror(self, children: ["username": username, "credentials": credentials], displayStyle: .enum)
        }
    }
}
