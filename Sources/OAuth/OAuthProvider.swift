/// Where an OAuth2 provider's endpoints are and what Mailgate asks it for,
/// with the SMTP server that takes its tokens.
public struct OAuthProvider: Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable, CaseIterable {
        case google, microsoft, custom
    }

    /// A query parameter added to the authorisation URL.
    public struct Parameter: Sendable {
        public var name: String
        public var value: String
        public init(_ name: String, _ value: String) {
            self.name = name
            self.value = value
        }
    }

    public var kind: Kind
    /// nil for a custom provider given no authorisation URL (its refresh
    /// token then comes from elsewhere).
    public var authorizationURL: EndpointURL?
    public var tokenURL: EndpointURL
    /// Space-separated scopes (RFC 6749 §3.3).
    public var scope: String
    /// The SMTP server the preset implies (nil for custom: the CLI asks for it).
    public var smtpHost: String?
    public var smtpPort: Int?
    /// SMTP's `--security` value for the preset ("starttls").
    public var smtpSecurity: String?
    /// Added to the authorisation URL. Google issues a refresh token only
    /// with `access_type=offline`, and only on first consent unless
    /// `prompt=consent` asks again (an authorisation repeated to replace a
    /// revoked token would otherwise come back without one). Microsoft
    /// issues one for the `offline_access` scope and needs neither; it would
    /// ignore `access_type` but show the consent screen every time for
    /// `prompt=consent`, so its preset sends neither.
    public var authorizationParameters: [Parameter]

    public var description: String {
        "OAuthProvider(\(kind.rawValue), authorization: \(authorizationURL?.text ?? "none"), token: \(tokenURL), scope: \(scope))"
    }

    /// Google: smtp.gmail.com:587 STARTTLS, scope https://mail.google.com/
    /// (the only scope Gmail's SMTP accepts).
    public static let google = OAuthProvider(
        kind: .google,
        authorizationURL: EndpointURL(constant: "https://accounts.google.com/o/oauth2/v2/auth", host: "accounts.google.com"),
        tokenURL: EndpointURL(constant: "https://oauth2.googleapis.com/token", host: "oauth2.googleapis.com"),
        scope: "https://mail.google.com/", smtpHost: "smtp.gmail.com", smtpPort: 587, smtpSecurity: "starttls",
        authorizationParameters: [Parameter("access_type", "offline"), Parameter("prompt", "consent")])

    /// Microsoft identity platform (v2.0 endpoints) for `tenant` ("common",
    /// "organizations", a tenant GUID or a domain such as contoso.onmicrosoft.com):
    /// smtp.office365.com:587 STARTTLS, scope SMTP.Send plus offline_access
    /// (without which no refresh token is issued).
    public static func microsoft(tenant: String = "common") throws(OAuthError) -> OAuthProvider {
        try validateTenant(tenant)
        let base = "https://login.microsoftonline.com/\(tenant)/oauth2/v2.0"
        return OAuthProvider(kind: .microsoft, authorizationURL: try EndpointURL(base + "/authorize"),
                             tokenURL: try EndpointURL(base + "/token"),
                             scope: "https://outlook.office.com/SMTP.Send offline_access",
                             smtpHost: "smtp.office365.com", smtpPort: 587, smtpSecurity: "starttls",
                             authorizationParameters: [])
    }

    /// Any provider: the URLs (https, or http to loopback) and scope as given.
    public static func custom(authorizationURL: String?, tokenURL: String, scope: String) throws(OAuthError) -> OAuthProvider {
        try validateScope(scope)
        return OAuthProvider(kind: .custom, authorizationURL: try authorizationURL.map { (url) throws(OAuthError) in try EndpointURL(url) },
                             tokenURL: try EndpointURL(tokenURL), scope: scope,
                             smtpHost: nil, smtpPort: nil, smtpSecurity: nil, authorizationParameters: [])
    }

    /// A tenant GUID (8-4-4-4-12 hex digits) or a domain-like name: letters,
    /// digits, `.` and `-`, at most 253 bytes, labels not empty and not
    /// starting or ending with `-`. It becomes a URL path segment, so
    /// nothing else may pass.
    public static func validateTenant(_ tenant: String) throws(OAuthError) {
        let bytes = Array(tenant.utf8)
        guard !bytes.isEmpty, bytes.count <= 253 else {
            throw .invalidConfiguration("the tenant must be 1 to 253 characters")
        }
        let labels = bytes.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        for label in labels {
            guard !label.isEmpty, label.count <= 63,
                  label.first != UInt8(ascii: "-"), label.last != UInt8(ascii: "-"),
                  label.allSatisfy({ isAlphanumeric($0) || $0 == UInt8(ascii: "-") }) else {
                throw .invalidConfiguration("the tenant must be a tenant ID (GUID) or a domain name such as contoso.onmicrosoft.com")
            }
        }
    }

    /// RFC 6749 §3.3: scope tokens of %x21 / %x23-5B / %x5D-7E, separated by single spaces.
    public static func validateScope(_ scope: String) throws(OAuthError) {
        let bytes = Array(scope.utf8)
        guard !bytes.isEmpty, bytes.count <= 1024 else { throw .invalidConfiguration("the scope must be 1 to 1024 characters") }
        for token in bytes.split(separator: 0x20, omittingEmptySubsequences: false) {
            guard !token.isEmpty, token.allSatisfy({ $0 == 0x21 || (0x23...0x5b).contains($0) || (0x5d...0x7e).contains($0) }) else {
                throw .invalidConfiguration("the scope must be tokens of printable ASCII (no \" or \\) separated by single spaces")
            }
        }
    }

    private static func isAlphanumeric(_ byte: UInt8) -> Bool {
        (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a)
    }
}
