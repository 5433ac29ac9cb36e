import Foundation

/// An OAuth2 client that gets access tokens for an SMTP login (XOAUTH2):
/// where its token endpoint is, who it is, and the grant it holds. The
/// client secret and refresh token are clear text only in memory; the
/// database holds them AES-GCM sealed.
public struct OAuth2Credentials: Sendable, Equatable {
    /// Whose identity platform issues the tokens; stored as its raw value.
    /// Decides the presets (`OAuth2Preset`) and whether a tenant applies.
    public enum Provider: String, Sendable, CaseIterable {
        case google
        case microsoft
        case custom
    }

    public var provider: Provider
    /// Where refresh tokens are exchanged for access tokens (RFC 6749
    /// section 6). https, or http to a loopback host.
    public var tokenURL: String
    /// Where `mailgate integration authorize` sends the browser; nil until
    /// known (a custom provider given without it).
    public var authorizationURL: String?
    public var clientID: String
    /// Nil for a public client (RFC 6749 section 2.1), which has none.
    public var clientSecret: String?
    /// Nil until `mailgate integration authorize` stores one.
    public var refreshToken: String?
    /// Space-separated scope tokens requested (may be empty: none sent).
    public var scope: String
    /// The Microsoft Entra tenant (a GUID or domain, or `common`,
    /// `organizations`, `consumers`); nil for other providers.
    public var tenant: String?

    public init(provider: Provider, tokenURL: String, authorizationURL: String? = nil, clientID: String,
                clientSecret: String? = nil, refreshToken: String? = nil, scope: String, tenant: String? = nil) {
        self.provider = provider
        self.tokenURL = tokenURL
        self.authorizationURL = authorizationURL
        self.clientID = clientID
        self.clientSecret = clientSecret
        self.refreshToken = refreshToken
        self.scope = scope
        self.tenant = tenant
    }

    /// Longest accepted URL, client id, scope and secret, in bytes: far
    /// above what providers issue, low enough to keep rows small.
    static let maxURLLength = 2048
    static let maxClientIDLength = 512
    static let maxScopeLength = 2048
    static let maxSecretLength = 16384

    /// The rules `SMTPIntegration.validate` applies to an OAuth2 login.
    /// A refresh token as stored: set with the integration, or stored
    /// alone after an authorisation or a rotation (both backends).
    static func requireValid(refreshToken: String) throws(StoreError) {
        guard !refreshToken.isEmpty, refreshToken.utf8.count <= maxSecretLength, SMTPIntegration.isClean(refreshToken) else {
            throw .invalidIntegration("OAuth2 refresh token")
        }
    }

    func validate() throws(StoreError) {
        guard !clientID.isEmpty, clientID.utf8.count <= Self.maxClientIDLength, SMTPIntegration.isClean(clientID) else {
            throw .invalidIntegration("OAuth2 client id")
        }
        if let problem = Self.endpointProblem(tokenURL) { throw .invalidIntegration("OAuth2 token URL (\(problem))") }
        if let authorizationURL, let problem = Self.endpointProblem(authorizationURL) {
            throw .invalidIntegration("OAuth2 authorization URL (\(problem))")
        }
        // Both travel in form bodies (escaped), never in a line of their
        // own; still no control character has a use in them.
        if let clientSecret {
            guard clientSecret.utf8.count <= Self.maxSecretLength, SMTPIntegration.isClean(clientSecret) else {
                throw .invalidIntegration("OAuth2 client secret")
            }
        }
        if let refreshToken { try Self.requireValid(refreshToken: refreshToken) }
        // RFC 6749 section 3.3: scope tokens are printable ASCII, separated by spaces.
        guard scope.utf8.count <= Self.maxScopeLength, scope.utf8.allSatisfy({ (0x20...0x7E).contains($0) }) else {
            throw .invalidIntegration("OAuth2 scope (printable ASCII, tokens separated by spaces)")
        }
        switch (provider, tenant) {
        case (.microsoft, let tenant?):
            guard Self.isValidTenant(tenant) else {
                throw .invalidIntegration("OAuth2 tenant (a GUID, a domain or common/organizations/consumers: letters, digits, '.' and '-')")
            }
        case (_, nil):
            break
        case (_, .some):
            throw .invalidIntegration("OAuth2 tenant (only the microsoft provider has one)")
        }
    }

    /// A Microsoft tenant as it goes into the token URL's path: a GUID, a
    /// domain name, or one of the well-known names (common, organizations,
    /// consumers): dot-separated labels of letters, digits and "-", none
    /// empty or starting or ending with "-", 1-253 bytes. So never "." or
    /// "..", a "/" or a "%", which would change the path.
    public static func isValidTenant(_ tenant: String) -> Bool {
        let bytes = Array(tenant.utf8)
        guard (1...253).contains(bytes.count) else { return false }
        return bytes.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false).allSatisfy { label in
            !label.isEmpty && label.count <= 63 && label.first != UInt8(ascii: "-") && label.last != UInt8(ascii: "-")
                && label.allSatisfy { byte in
                    (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
                        || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || byte == UInt8(ascii: "-")
                }
        }
    }

    /// Why `url` cannot be an OAuth2 endpoint, nil when it can: an absolute
    /// https URL (http only to a loopback host: secrets travel in its
    /// requests), with a host, without user info (it would be a credential
    /// stored in clear) or fragment.
    static func endpointProblem(_ url: String) -> String? {
        guard !url.isEmpty, url.utf8.count <= maxURLLength, SMTPIntegration.isClean(url), !url.contains(" ") else {
            return "not a URL"
        }
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased() else {
            return "not a URL"
        }
        guard let host = components.host, !host.isEmpty else { return "no host" }
        guard components.user == nil, components.password == nil else { return "user info is not allowed" }
        guard components.fragment == nil else { return "a fragment is not allowed" }
        switch scheme {
        case "https": return nil
        case "http": return SMTPIntegration.isLoopback(host) ? nil : "https is required (http only to a loopback host)"
        default: return "https is required"
        }
    }
}

// The client secret and the refresh token are never printed, whichever way
// the value is turned into text.
extension OAuth2Credentials: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var description: String {
        var parts = ["provider: \(provider.rawValue)", "tokenURL: \(tokenURL)"]
        parts.append("authorizationURL: \(authorizationURL ?? "nil")")
        parts.append("clientID: \"\(clientID)\"")
        parts.append("clientSecret: \(clientSecret == nil ? "nil" : "<redacted>")")
        parts.append("refreshToken: \(refreshToken == nil ? "nil" : "<redacted>")")
        parts.append("scope: \"\(scope)\"")
        parts.append("tenant: \(tenant ?? "nil")")
        return "OAuth2Credentials(\(parts.joined(separator: ", ")))"
    }

    public var debugDescription: String { description }

    public var customMirror: Mirror {
        Mirror(self, children: [
            "provider": provider, "tokenURL": tokenURL, "authorizationURL": authorizationURL as Any,
            "clientID": clientID,
            "clientSecret": (clientSecret == nil ? "nil" : "<redacted>") as Any,
            "refreshToken": (refreshToken == nil ? "nil" : "<redacted>") as Any,
            "scope": scope, "tenant": tenant as Any,
        ], displayStyle: .struct)
    }
}

/// Who a refresh token was issued to: an OAuth2 client (its id at its
/// token endpoint), for the account of one mailbox. A refresh token is
/// kept or stored only for the integration it still belongs to.
public struct RefreshTokenOwner: Sendable, Equatable {
    public var tokenURL: String
    public var clientID: String
    public var mailbox: String

    public init(tokenURL: String, clientID: String, mailbox: String) {
        self.tokenURL = tokenURL
        self.clientID = clientID
        self.mailbox = mailbox
    }

    /// Compared by bytes: URLs, client ids and mailboxes that look alike
    /// under Unicode equivalence are still different grants.
    func matches(_ other: RefreshTokenOwner) -> Bool {
        tokenURL.utf8.elementsEqual(other.tokenURL.utf8) && clientID.utf8.elementsEqual(other.clientID.utf8)
            && mailbox.utf8.elementsEqual(other.mailbox.utf8)
    }
}

/// How `Store.storeRefreshToken` came by the token; decides whether the
/// integration's `updatedAt` changes.
public enum RefreshTokenOrigin: Sendable {
    /// A new grant (`mailgate integration authorize`): `updatedAt` becomes
    /// now, so whatever is keyed on it (cached access tokens of the old
    /// grant, pooled connections) starts afresh.
    case authorization
    /// The token endpoint answered a refresh with a new refresh token
    /// (rotation, as Microsoft does): `updatedAt` is left alone, so the
    /// access token that came with it stays cached and the pool stays.
    case rotation
}

/// What a provider implies for an OAuth2 integration, for
/// `mailgate integration set`: data only.
public struct OAuth2Preset: Sendable, Equatable {
    public var host: String
    public var port: Int
    public var security: SMTPIntegration.Security
    public var tokenURL: String
    public var authorizationURL: String
    public var scope: String

    /// Microsoft's default tenant: any work, school or personal account.
    public static let defaultMicrosoftTenant = "common"

    /// The presets of `provider` (for Microsoft, of `tenant`, which must
    /// pass `OAuth2Credentials.isValidTenant`); nil for custom.
    public static func of(_ provider: OAuth2Credentials.Provider, tenant: String = defaultMicrosoftTenant) -> OAuth2Preset? {
        switch provider {
        case .google:
            return OAuth2Preset(host: "smtp.gmail.com", port: 587, security: .starttls,
                                tokenURL: "https://oauth2.googleapis.com/token",
                                authorizationURL: "https://accounts.google.com/o/oauth2/v2/auth",
                                scope: "https://mail.google.com/")
        case .microsoft:
            return OAuth2Preset(host: "smtp.office365.com", port: 587, security: .starttls,
                                tokenURL: "https://login.microsoftonline.com/\(tenant)/oauth2/v2.0/token",
                                authorizationURL: "https://login.microsoftonline.com/\(tenant)/oauth2/v2.0/authorize",
                                scope: "https://outlook.office.com/SMTP.Send offline_access")
        case .custom:
            return nil
        }
    }
}
