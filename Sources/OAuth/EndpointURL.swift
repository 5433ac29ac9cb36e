import CCurl

/// A URL the OAuth module may talk to (a token endpoint) or send a browser
/// to (an authorisation endpoint): `https://`, or `http://` only to the
/// loopback host (127.0.0.1, ::1, localhost), which is what tests and a
/// provider on the same machine need and what nothing on the network can
/// intercept. No user:password part (it would end up in error messages),
/// no fragment.
///
/// Parsed with libcurl's own URL parser (curl_url), and the HTTPS client
/// hands curl that same parsed handle: the URL checked is the URL fetched,
/// with no second parser to disagree about what the host is.
public struct EndpointURL: Sendable, CustomStringConvertible {
    /// The URL as curl normalised it.
    public let text: String
    /// "https" or "http".
    public let scheme: String
    /// The host as curl read it (an IPv6 literal in brackets).
    public let host: String

    public var description: String { text }

    /// Hosts that `http://` is allowed to (byte comparison, after curl lower-cased the host).
    static let loopbackHosts: Set<[UInt8]> = [Array("127.0.0.1".utf8), Array("[::1]".utf8), Array("localhost".utf8)]

    public init(_ string: String) throws(OAuthError) {
        guard !string.isEmpty, string.utf8.count <= 2048 else {
            throw .invalidConfiguration("a URL must be 1 to 2048 bytes long")
        }
        // Control characters and spaces would be percent-encoded or refused by
        // curl depending on flags; refuse them outright.
        guard string.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f }) else {
            throw .invalidConfiguration("a URL must be printable ASCII without spaces")
        }
        let parsed = try ParsedURL(string)
        let scheme = try parsed.part(CURLUPART_SCHEME, "scheme").lowercased()
        let host = try parsed.part(CURLUPART_HOST, "host").lowercased()
        if parsed.optionalPart(CURLUPART_USER) != nil || parsed.optionalPart(CURLUPART_PASSWORD) != nil {
            throw .invalidConfiguration("a URL must not contain a user name or password")
        }
        if parsed.optionalPart(CURLUPART_FRAGMENT) != nil {
            throw .invalidConfiguration("a URL must not contain a fragment (#...)")
        }
        switch scheme {
        case "https":
            break
        case "http":
            guard Self.loopbackHosts.contains(Array(host.utf8)) else {
                throw .invalidConfiguration("an http:// URL is allowed only to 127.0.0.1, [::1] or localhost; use https://")
            }
        default:
            throw .invalidConfiguration("a URL must start with https://")
        }
        self.text = try parsed.part(CURLUPART_URL, "URL")
        self.scheme = scheme
        self.host = host
    }

    /// A constant https URL of a preset (not parsed: it is known good).
    init(constant text: String, host: String) {
        self.text = text
        self.scheme = "https"
        self.host = host
    }

    /// Whether the URL has a query already (then parameters are appended with `&`).
    var hasQuery: Bool { text.utf8.contains(UInt8(ascii: "?")) }
}

/// A curl_url handle, freed on deinit.
final class ParsedURL {
    let handle: OpaquePointer

    init(_ string: String) throws(OAuthError) {
        guard let handle = curl_url() else { throw .internalFailure("curl_url: out of memory") }
        self.handle = handle
        let rc = curl_url_set(handle, CURLUPART_URL, string, 0)
        guard rc == CURLUE_OK else {
            throw .invalidConfiguration("not a valid URL: \(String(cString: curl_url_strerror(rc)))")
        }
    }

    deinit { curl_url_cleanup(handle) }

    func optionalPart(_ part: CURLUPart) -> String? {
        var value: UnsafeMutablePointer<CChar>?
        guard curl_url_get(handle, part, &value, 0) == CURLUE_OK, let value else { return nil }
        defer { curl_free(value) }
        return String(cString: value)
    }

    func part(_ part: CURLUPart, _ name: String) throws(OAuthError) -> String {
        guard let value = optionalPart(part), !value.isEmpty else {
            throw .invalidConfiguration("the URL has no \(name)")
        }
        return value
    }
}
