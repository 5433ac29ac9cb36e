/// A query parameter of an authorisation URL.
public struct QueryParameter: Sendable {
    public var name: String
    public var value: String
    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }

    /// What Google needs beyond RFC 6749 to issue a refresh token: it issues
    /// one only with `access_type=offline`, and only on first consent unless
    /// `prompt=consent` asks again (an authorisation repeated to replace a
    /// revoked token would otherwise come back without one). Microsoft
    /// issues one for the `offline_access` scope and needs neither; it would
    /// show the consent screen every time for `prompt=consent`, so it gets none.
    public static let googleOffline = [QueryParameter("access_type", "offline"), QueryParameter("prompt", "consent")]
}

/// RFC 6749 §3.3 scopes.
public enum OAuthScope {
    /// Scope tokens of %x21 / %x23-5B / %x5D-7E, separated by single spaces.
    public static func validate(_ scope: String) throws(OAuthError) {
        let bytes = Array(scope.utf8)
        guard !bytes.isEmpty, bytes.count <= 1024 else { throw .invalidConfiguration("the scope must be 1 to 1024 characters") }
        for token in bytes.split(separator: 0x20, omittingEmptySubsequences: false) {
            guard !token.isEmpty, token.allSatisfy({ $0 == 0x21 || (0x23...0x5b).contains($0) || (0x5d...0x7e).contains($0) }) else {
                throw .invalidConfiguration("the scope must be tokens of printable ASCII (no \" or \\) separated by single spaces")
            }
        }
    }
}
