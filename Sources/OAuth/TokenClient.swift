import JSON

/// A token endpoint and the client that talks to it.
public struct TokenEndpoint: Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var url: EndpointURL
    public var clientID: String
    /// nil for a public client (no secret is sent).
    public var clientSecret: String?
    /// An extra trust anchor file (PEM) for the endpoint's certificate.
    public var caFile: String?

    public init(url: EndpointURL, clientID: String, clientSecret: String?, caFile: String? = nil) {
        self.url = url
        self.clientID = clientID
        self.clientSecret = clientSecret
        self.caFile = caFile
    }

    public var description: String {
        "TokenEndpoint(url: \(url), clientID: \(clientID), clientSecret: \(clientSecret == nil ? "none" : "<redacted>"), caFile: \(caFile ?? "nil"))"
    }
    public var debugDescription: String { description }
    public var customMirror: Mirror {
        Mirror(self, children: ["url": url, "clientID": clientID,
                                "clientSecret": clientSecret == nil ? "none" : "<redacted>", "caFile": caFile as Any])
    }
}

/// A successful token endpoint answer (RFC 6749 §5.1).
public struct TokenResponse: Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var accessToken: String
    /// `token_type` as sent (normally "Bearer").
    public var tokenType: String?
    /// `expires_in`; nil when the answer had none.
    public var expiresIn: Duration?
    /// A refresh token: always on a code exchange, and on a refresh when the
    /// server rotates them.
    public var refreshToken: String?
    /// `scope` when the server says which scopes it granted.
    public var scope: String?

    public init(accessToken: String, tokenType: String?, expiresIn: Duration?, refreshToken: String?, scope: String?) {
        self.accessToken = accessToken
        self.tokenType = tokenType
        self.expiresIn = expiresIn
        self.refreshToken = refreshToken
        self.scope = scope
    }

    public var description: String {
        "TokenResponse(accessToken: <redacted>, tokenType: \(tokenType ?? "nil"), expiresIn: \(expiresIn.map { "\($0.components.seconds) s" } ?? "nil"), refreshToken: \(refreshToken == nil ? "nil" : "<redacted>"), scope: \(scope ?? "nil"))"
    }
    public var debugDescription: String { description }
    public var customMirror: Mirror {
        Mirror(self, children: ["accessToken": "<redacted>", "tokenType": tokenType as Any, "expiresIn": expiresIn as Any,
                                "refreshToken": refreshToken == nil ? "nil" : "<redacted>", "scope": scope as Any])
    }
}

/// The two grants Mailgate uses, over `HTTPSClient`.
///
/// Client authentication is `client_id` (always) and `client_secret` (when
/// there is one) in the form body (RFC 6749 §2.3.1): Google and Microsoft
/// both accept it, and a public client simply sends no secret.
public struct TokenClient: Sendable {
    public var http: HTTPSClient

    public init(http: HTTPSClient = HTTPSClient()) { self.http = http }

    /// `grant_type=refresh_token` (RFC 6749 §6). `scope` is sent when given
    /// (Microsoft wants it; others accept it as "the same or less").
    public func refresh(_ endpoint: TokenEndpoint, refreshToken: String, scope: String?,
                        deadline: ContinuousClock.Instant) throws(OAuthError) -> TokenResponse {
        var form = [("grant_type", "refresh_token"), ("refresh_token", refreshToken)]
        if let scope, !scope.isEmpty { form.append(("scope", scope)) }
        return try post(endpoint, form, deadline: deadline)
    }

    /// `grant_type=authorization_code` with the PKCE verifier (RFC 6749
    /// §4.1.3, RFC 7636 §4.5). `redirectURI` must be the one the
    /// authorisation request used. A refused code (`invalid_grant`: used,
    /// expired, or a verifier or redirect URI that does not match) is
    /// `.rejected(code: "invalid_grant", ...)`, not `.reauthorize`, which
    /// speaks of a refresh token.
    public func exchange(_ endpoint: TokenEndpoint, code: String, codeVerifier: String, redirectURI: String,
                         deadline: ContinuousClock.Instant) throws(OAuthError) -> TokenResponse {
        let response: TokenResponse
        do throws(OAuthError) {
            response = try post(endpoint, [("grant_type", "authorization_code"), ("code", code),
                                           ("redirect_uri", redirectURI), ("code_verifier", codeVerifier)],
                                deadline: deadline)
        } catch .reauthorize {
            throw .rejected(code: "invalid_grant", status: 400)
        }
        guard response.refreshToken != nil else {
            throw .badResponse("the code exchange returned no refresh_token (Google: the consent must ask for offline access; Microsoft: the scope must include offline_access)")
        }
        return response
    }

    private func post(_ endpoint: TokenEndpoint, _ parameters: [(String, String)],
                      deadline: ContinuousClock.Instant) throws(OAuthError) -> TokenResponse {
        var all = parameters + [("client_id", endpoint.clientID)]
        if let secret = endpoint.clientSecret { all.append(("client_secret", secret)) }
        let response = try http.postForm(endpoint.url, form: FormEncoding.encode(all), caFile: endpoint.caFile, deadline: deadline)
        return try Self.interpret(response)
    }

    /// Turns an answer into a token response or the error it means.
    static func interpret(_ response: HTTPSResponse) throws(OAuthError) -> TokenResponse {
        switch response.status {
        case 200:
            return try parseSuccess(response.body)
        case 400, 401, 403:
            // RFC 6749 §5.2: {"error": "...", ...}. Only the code is read.
            let code = (try? JSONParser.parse(response.body)).flatMap { json -> String? in
                if case .string(let code)? = json["error"] { return code }
                return nil
            }
            guard let code else {
                throw .rejected(code: "HTTP \(response.status) without an OAuth error code", status: response.status)
            }
            if code.utf8Equals("invalid_grant") { throw .reauthorize }
            throw .rejected(code: OAuthError.sanitisedCode(code), status: response.status)
        case 429, 500..<600:
            throw .unavailable(reason: "HTTP \(response.status)", retryAfter: retryAfter(response.retryAfter))
        default:
            throw .badResponse("unexpected HTTP status \(response.status)")
        }
    }

    /// Retry-After as delta-seconds between 1 and 3600; anything else
    /// (an HTTP date, garbage, an hour-plus) gives the default.
    static func retryAfter(_ header: String?) -> Duration {
        guard let header, header.utf8.count <= 5, header.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
              let seconds = Int(header), (1...3600).contains(seconds) else { return OAuthError.defaultRetryAfter }
        return .seconds(seconds)
    }

    static func parseSuccess(_ body: [UInt8]) throws(OAuthError) -> TokenResponse {
        let json: JSONValue
        do { json = try JSONParser.parse(body) } catch { throw .badResponse("not JSON (\(error.message))") }
        guard json.isObject else { throw .badResponse("not a JSON object") }
        guard case .string(let accessToken)? = json["access_token"], !accessToken.isEmpty else {
            throw .badResponse("no access_token string")
        }
        // A token goes into an SMTP AUTH line: printable ASCII only.
        guard accessToken.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f }), accessToken.utf8.count <= 16 * 1024 else {
            throw .badResponse("the access_token is not printable ASCII or is too long")
        }
        var refreshToken: String?
        switch json["refresh_token"] {
        case nil, .null?: break
        case .string(let value)? where !value.isEmpty && value.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f }):
            refreshToken = value
        default: throw .badResponse("refresh_token is not a printable ASCII string")
        }
        var expiresIn: Duration?
        switch json["expires_in"] {
        case nil, .null?: break
        case .number(let text)?:
            guard let seconds = JSONValue.number(text).int64Value, seconds >= 0 else { throw .badResponse("expires_in is not a whole number of seconds") }
            expiresIn = .seconds(min(seconds, 366 * 86_400))
        case .string(let text)?:
            // Some servers (older Microsoft endpoints) send it as a string.
            guard text.utf8.count <= 12, let seconds = Int64(text), seconds >= 0 else { throw .badResponse("expires_in is not a whole number of seconds") }
            expiresIn = .seconds(min(seconds, 366 * 86_400))
        default: throw .badResponse("expires_in is not a number")
        }
        var tokenType: String?
        if case .string(let type)? = json["token_type"] {
            guard type.utf8Equals("Bearer") || type.utf8Equals("bearer") else {
                throw .badResponse("token_type is not Bearer")
            }
            tokenType = type
        }
        var scope: String?
        if case .string(let granted)? = json["scope"] { scope = granted }
        return TokenResponse(accessToken: accessToken, tokenType: tokenType, expiresIn: expiresIn,
                             refreshToken: refreshToken, scope: scope)
    }
}

/// application/x-www-form-urlencoded, percent-encoding every byte but the
/// RFC 3986 unreserved ones (so `+`, `/`, `=` in secrets survive).
public enum FormEncoding {
    public static func encode(_ parameters: [(String, String)]) -> [UInt8] {
        var out: [UInt8] = []
        for (index, (name, value)) in parameters.enumerated() {
            if index > 0 { out.append(UInt8(ascii: "&")) }
            percentEncode(name, into: &out)
            out.append(UInt8(ascii: "="))
            percentEncode(value, into: &out)
        }
        return out
    }

    public static func percentEncode(_ text: String, into out: inout [UInt8]) {
        let hex = Array("0123456789ABCDEF".utf8)
        for byte in text.utf8 {
            if isUnreserved(byte) {
                out.append(byte)
            } else {
                out.append(UInt8(ascii: "%"))
                out.append(hex[Int(byte >> 4)])
                out.append(hex[Int(byte & 0x0f)])
            }
        }
    }

    public static func percentEncoded(_ text: String) -> String {
        var out: [UInt8] = []
        percentEncode(text, into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    static func isUnreserved(_ byte: UInt8) -> Bool {
        (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a)
            || byte == UInt8(ascii: "-") || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "~")
    }

    /// Decodes one form/query component: `+` is a space, `%XX` a byte.
    /// nil on a malformed escape or bytes that are not UTF-8.
    public static func decodeComponent(_ bytes: ArraySlice<UInt8>) -> String? {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var index = bytes.startIndex
        while index < bytes.endIndex {
            let byte = bytes[index]
            if byte == UInt8(ascii: "+") {
                out.append(0x20)
            } else if byte == UInt8(ascii: "%") {
                guard index + 2 < bytes.endIndex, let high = hexValue(bytes[index + 1]), let low = hexValue(bytes[index + 2]) else { return nil }
                out.append(high << 4 | low)
                index += 2
            } else {
                out.append(byte)
            }
            index += 1
        }
        return String(validating: out, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case 0x30...0x39: byte - 0x30
        case 0x41...0x46: byte - 0x41 + 10
        case 0x61...0x66: byte - 0x61 + 10
        default: nil
        }
    }
}
