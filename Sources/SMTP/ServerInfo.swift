/// A SASL mechanism named in the EHLO AUTH keyword.
public enum AuthMechanism: Hashable, Sendable, CustomStringConvertible {
    case plain
    case login
    case xoauth2
    /// RFC 7628.
    case oauthBearer
    /// Any other mechanism, upper-cased (e.g. "CRAM-MD5").
    case other(String)

    public init(keyword: String) {
        switch keyword.uppercased() {
        case "PLAIN": self = .plain
        case "LOGIN": self = .login
        case "XOAUTH2": self = .xoauth2
        case "OAUTHBEARER": self = .oauthBearer
        case let other: self = .other(other)
        }
    }

    public var keyword: String {
        switch self {
        case .plain: "PLAIN"
        case .login: "LOGIN"
        case .xoauth2: "XOAUTH2"
        case .oauthBearer: "OAUTHBEARER"
        case .other(let keyword): keyword
        }
    }

    public var description: String { keyword }
}

/// An SMTP service extension announced in the EHLO reply.
public enum SMTPExtension: Hashable, Sendable, CustomStringConvertible {
    case startTLS              // RFC 3207
    case pipelining            // RFC 2920
    case eightBitMIME          // RFC 6152
    case smtpUTF8              // RFC 6531
    case chunking              // RFC 3030
    case binaryMIME            // RFC 3030
    case enhancedStatusCodes   // RFC 2034
    case dsn                   // RFC 3461
    /// RFC 1870: the largest message the server takes, in octets; 0 when it
    /// announces no fixed limit (or an unreadable one).
    case size(Int)
    /// One mechanism of the AUTH keyword (RFC 4954).
    case auth(AuthMechanism)
    /// Any other keyword, upper-cased.
    case other(String)

    public var description: String {
        switch self {
        case .startTLS: "STARTTLS"
        case .pipelining: "PIPELINING"
        case .eightBitMIME: "8BITMIME"
        case .smtpUTF8: "SMTPUTF8"
        case .chunking: "CHUNKING"
        case .binaryMIME: "BINARYMIME"
        case .enhancedStatusCodes: "ENHANCEDSTATUSCODES"
        case .dsn: "DSN"
        case .size(let limit): limit > 0 ? "SIZE \(limit)" : "SIZE"
        case .auth(let mechanism): "AUTH \(mechanism)"
        case .other(let keyword): keyword
        }
    }
}

/// What the server said about itself in its EHLO reply.
public struct ServerInfo: Sendable, Equatable, CustomStringConvertible {
    /// The text of the reply's first line (usually the server's name).
    public let name: String
    public let extensions: Set<SMTPExtension>

    public init(name: String, extensions: Set<SMTPExtension>) {
        self.name = name
        self.extensions = extensions
    }

    /// After a HELO fallback: nothing is known.
    static let none = ServerInfo(name: "", extensions: [])

    public func supports(_ feature: SMTPExtension) -> Bool { extensions.contains(feature) }

    /// Whether SIZE was announced, and its limit (nil: no fixed limit).
    public var size: (offered: Bool, limit: Int?) {
        for case .size(let limit) in extensions { return (true, limit > 0 ? limit : nil) }
        return (false, nil)
    }

    public var authMechanisms: Set<AuthMechanism> {
        var mechanisms: Set<AuthMechanism> = []
        for case .auth(let mechanism) in extensions { mechanisms.insert(mechanism) }
        return mechanisms
    }

    /// The extensions, one keyword each, sorted (for messages).
    public var description: String {
        extensions.map(\.description).sorted().joined(separator: " ")
    }

    /// Reads the EHLO reply's lines after the first: one keyword and its
    /// parameters per line, keywords case-insensitive. The obsolete
    /// "AUTH=LOGIN PLAIN" form some old servers send counts as "AUTH".
    public init(ehlo reply: SMTPReply) {
        var extensions: Set<SMTPExtension> = []
        for line in reply.lines.dropFirst() {
            var words = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
            guard !words.isEmpty else { continue }
            var keyword = words.removeFirst().uppercased()
            if keyword.hasPrefix("AUTH=") {
                words.insert(String(keyword.dropFirst(5)), at: 0)
                keyword = "AUTH"
            }
            switch keyword {
            case "STARTTLS": extensions.insert(.startTLS)
            case "PIPELINING": extensions.insert(.pipelining)
            case "8BITMIME": extensions.insert(.eightBitMIME)
            case "SMTPUTF8": extensions.insert(.smtpUTF8)
            case "CHUNKING": extensions.insert(.chunking)
            case "BINARYMIME": extensions.insert(.binaryMIME)
            case "ENHANCEDSTATUSCODES": extensions.insert(.enhancedStatusCodes)
            case "DSN": extensions.insert(.dsn)
            case "SIZE":
                // A second SIZE line would be odd; the first one counts.
                if !extensions.contains(where: { if case .size = $0 { true } else { false } }) {
                    extensions.insert(.size(words.first.flatMap { Int($0) }.map { max(0, $0) } ?? 0))
                }
            case "AUTH":
                for word in words { extensions.insert(.auth(AuthMechanism(keyword: word))) }
            default: extensions.insert(.other(keyword))
            }
        }
        self.init(name: reply.lines.first ?? "", extensions: extensions)
    }
}
