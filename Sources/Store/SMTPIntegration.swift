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

    public var host: String
    public var port: Int
    public var security: Security
    public var username: String?
    /// Clear text only in memory; the database holds it AES-GCM sealed.
    public var password: String?
    public var fromAddress: String
    public var fromName: String?
    /// Stored with millisecond resolution.
    public var updatedAt: Date

    public init(host: String, port: Int, security: Security, username: String? = nil, password: String? = nil,
                fromAddress: String, fromName: String? = nil, updatedAt: Date = Date()) {
        self.host = host
        self.port = port
        self.security = security
        self.username = username
        self.password = password
        self.fromAddress = fromAddress
        self.fromName = fromName
        self.updatedAt = updatedAt
    }

    /// The rules every stored integration follows; `Store.setIntegration`
    /// refuses anything else with `.invalidIntegration(field)`.
    public func validate() throws(StoreError) {
        func clean(_ text: String) -> Bool {
            // Control characters (CR/LF above all) have no place in host
            // names, addresses or SMTP login names; refuse them at the door.
            !text.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F }
        }
        guard !host.isEmpty, host.utf8.count <= 253, clean(host), !host.contains(" ") else {
            throw .invalidIntegration("host")
        }
        guard (1...65535).contains(port) else { throw .invalidIntegration("port") }
        if let username { guard clean(username) else { throw .invalidIntegration("username") } }
        if let password {
            // AUTH PLAIN separates fields with NUL; nothing else is refused.
            guard !password.utf8.contains(0) else { throw .invalidIntegration("password") }
        }
        guard !fromAddress.isEmpty, clean(fromAddress) else { throw .invalidIntegration("fromAddress") }
        if let fromName { guard clean(fromName) else { throw .invalidIntegration("fromName") } }
        // A login over a connection without TLS sends the password in the
        // clear: only to this machine, where no network carries it.
        if security == .none, username != nil, !Self.isLoopback(host) {
            throw .invalidIntegration("security (a login without TLS is allowed only to a loopback host; use starttls or tls)")
        }
    }

    /// `localhost`, 127.0.0.0/8 or ::1 (with or without brackets).
    static func isLoopback(_ host: String) -> Bool {
        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        if bare.lowercased() == "localhost" || bare == "::1" { return true }
        let octets = bare.split(separator: ".", omittingEmptySubsequences: false)
        return octets.count == 4 && octets[0] == "127" && octets.allSatisfy { UInt8($0) != nil }
    }
}

// Integrations end up in logs and error reports; the SMTP password must
// never be printed, whichever way the value is turned into text.
extension SMTPIntegration: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var description: String {
        var parts = ["host: \(host)", "port: \(port)", "security: \(security.rawValue)"]
        parts.append("username: \(username.map { "\"\($0)\"" } ?? "nil")")
        parts.append("password: \(password == nil ? "nil" : "<redacted>")")
        parts.append("fromAddress: \(fromAddress)")
        parts.append("fromName: \(fromName.map { "\"\($0)\"" } ?? "nil")")
        parts.append("updatedAt: \(updatedAt)")
        return "SMTPIntegration(\(parts.joined(separator: ", ")))"
    }

    public var debugDescription: String { description }

    public var customMirror: Mirror {
        Mirror(self, children: [
            "host": host, "port": port, "security": security,
            "username": username as Any,
            "password": (password == nil ? "nil" : "<redacted>") as Any,
            "fromAddress": fromAddress, "fromName": fromName as Any, "updatedAt": updatedAt,
        ], displayStyle: .struct)
    }
}
