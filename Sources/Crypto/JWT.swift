import Base64
import JSON
/// The claims Mailgate puts in, and reads from, its bearer tokens.
public struct TokenClaims: Sendable, Equatable {
    /// `sub`: the username.
    public var subject: String
    /// `iat`: issue time, Unix seconds. A received token without `iat` reads as 0.
    public var issuedAt: Int64
    /// `exp`: expiry, Unix seconds. Required.
    public var expiresAt: Int64
    /// `nbf`: not valid before, Unix seconds.
    public var notBefore: Int64?
    /// `ver`: the user's token version when the token was issued. Bumping the
    /// stored version revokes every earlier token. Absent in a received token = 0.
    public var version: Int64
    /// `jti`: the id of a named token (`mailgate token issue --name`), which
    /// the store can revoke alone. Absent in tokens from `/token`.
    public var tokenID: String?

    public init(subject: String, issuedAt: Int64, expiresAt: Int64, notBefore: Int64? = nil, version: Int64 = 0,
                tokenID: String? = nil) {
        self.subject = subject
        self.issuedAt = issuedAt
        self.expiresAt = expiresAt
        self.notBefore = notBefore
        self.version = version
        self.tokenID = tokenID
    }

    /// A new id for a named token: 16 random bytes in base64url (unguessable,
    /// so an id in a log or a list says which token without being one),
    /// redrawn while it starts with `-` or `_`. An id is typed as a command
    /// argument (`mailgate token revoke ID`), where a leading `-` reads as
    /// an option; 1 draw in 32 would start with one of the two.
    public static func newTokenID() throws(CryptoError) -> String {
        while true {
            let id = Base64.url.encode(try Crypto.randomBytes(16))
            if let first = id.utf8.first, first != UInt8(ascii: "-"), first != UInt8(ascii: "_") { return id }
        }
    }

    /// A token id is 1-64 characters of the base64url alphabet.
    public static func isValidTokenID(_ id: some StringProtocol) -> Bool {
        (1...64).contains(id.utf8.count) && id.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"):
                return true
            default:
                return false
            }
        }
    }
}

/// Why a token was refused. Descriptions never include the token or key, so
/// they are safe to log.
public enum TokenError: Error, Sendable, Equatable, CustomStringConvertible {
    case keyTooShort
    /// OpenSSL could not set up HMAC-SHA256 with the key (the reason is
    /// OpenSSL's; it never contains the key).
    case keyUnusable(CryptoError)
    case malformed
    case unsupportedAlgorithm
    case badSignature
    case expired
    case notYetValid
    case missingClaim(String)
    case invalidClaim(String)

    public var description: String {
        switch self {
        case .keyTooShort: return "token signing key shorter than \(TokenSigner.minimumKeyLength) bytes"
        case .keyUnusable(let error): return "token signing key unusable: \(error)"
        case .malformed: return "malformed token"
        case .unsupportedAlgorithm: return "token algorithm not allowed (only HS256)"
        case .badSignature: return "token signature does not match"
        case .expired: return "token expired"
        case .notYetValid: return "token not yet valid"
        case .missingClaim(let name): return "token lacks required claim \"\(name)\""
        case .invalidClaim(let name): return "token claim \"\(name)\" has an invalid value"
        }
    }
}

/// Issues and checks HS256 JWTs (RFC 7519) with one symmetric key.
public struct TokenSigner: Sendable {
    public static let minimumKeyLength = 32
    /// Tokens longer than this are refused before any parsing.
    public static let maximumTokenLength = 8192
    /// `exp` further ahead than this is refused: it is almost certainly a
    /// millisecond timestamp or a token meant to never expire.
    public static let maximumLifetime: Int64 = 10 * 366 * 86_400

    private let key: HMACSHA256Key

    /// The fixed header every token we issue carries: `{"alg":"HS256","typ":"JWT"}`.
    private static let encodedHeader = Base64.url.encode(Array(#"{"alg":"HS256","typ":"JWT"}"#.utf8))
    private static let encodedHeaderBytes = Array(encodedHeader.utf8)

    public init(key: [UInt8]) throws(TokenError) {
        guard key.count >= Self.minimumKeyLength else { throw .keyTooShort }
        do {
            self.key = try HMACSHA256Key(key)
        } catch {
            throw .keyUnusable(error)
        }
    }

    /// Returns a signed compact JWS. Payload: `{"sub","iat","exp","ver"[,"nbf"][,"jti"]}`.
    ///
    /// Throws only if OpenSSL's HMAC fails (allocation failure or a broken
    /// provider), which must not be papered over with an unsigned token.
    public func sign(_ claims: TokenClaims) throws(CryptoError) -> String {
        var payload = "{\"sub\":" + JSONWriter.quoted(claims.subject)
        payload += ",\"iat\":\(claims.issuedAt),\"exp\":\(claims.expiresAt),\"ver\":\(claims.version)"
        if let nbf = claims.notBefore { payload += ",\"nbf\":\(nbf)" }
        if let id = claims.tokenID {
            guard TokenClaims.isValidTokenID(id) else { throw .invalidArgument("token id must be 1-64 base64url characters") }
            payload += ",\"jti\":\"\(id)\""
        }
        payload += "}"
        let signingInput = Self.encodedHeader + "." + Base64.url.encode(Array(payload.utf8))
        let mac = try key.mac(Array(signingInput.utf8))
        return signingInput + "." + Base64.url.encode(mac)
    }

    /// Checks a received token and returns its claims. See `TokenError` for
    /// the refusals. The algorithm is checked before any MAC work, the MAC
    /// over the received `<header>.<payload>` bytes before the payload is
    /// parsed, and the time claims last.
    public func verify(_ token: some StringProtocol, now: Int64, leeway: Int64 = 30) throws(TokenError) -> TokenClaims {
        // Length first, so an oversized header costs no copy.
        guard token.utf8.count <= Self.maximumTokenLength else { throw .malformed }
        let bytes = Array(token.utf8)
        let segments = bytes.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard segments.count == 3 else { throw .malformed }

        // Header: the one every token we issue carries is known good as is
        // (decoding and parsing it again measured 4% of a send); any other
        // is read: strict base64url, a JSON object, alg exactly "HS256".
        if !segments[0].elementsEqual(Self.encodedHeaderBytes) {
            guard let headerBytes = Base64.url.decode(segments[0]),
                  let header = try? JSONParser.parse(headerBytes), header.isObject else { throw .malformed }
            // By bytes: String == normalises, which is quadratic on hostile input
            // (and "HS256" must mean exactly these five bytes).
            guard case .string(let alg)? = header["alg"], alg.utf8Equals("HS256") else { throw .unsupportedAlgorithm }
            // RFC 7515 §4.1.11: extensions we do not understand marked critical
            // mean the token must be rejected.
            guard header["crit"] == nil else { throw .malformed }
        }

        // Signature over exactly the received bytes.
        guard let signature = Base64.url.decode(segments[2]) else { throw .malformed }
        guard !signature.isEmpty else { throw .badSignature }
        let signingInput = Array(bytes[..<segments[1].endIndex])
        let expected: [UInt8]
        do {
            expected = try key.mac(signingInput)
        } catch {
            throw .badSignature  // fail closed; cannot happen short of OpenSSL breaking
        }
        guard Crypto.constantTimeEquals(expected, signature) else { throw .badSignature }

        // Payload: authenticated now, so parse it.
        guard let payloadBytes = Base64.url.decode(segments[1]),
              let payload = try? JSONParser.parse(payloadBytes), payload.isObject else { throw .malformed }

        guard let subValue = payload["sub"] else { throw .missingClaim("sub") }
        guard case .string(let subject) = subValue, !subject.isEmpty else { throw .invalidClaim("sub") }

        guard let expValue = payload["exp"] else { throw .missingClaim("exp") }
        guard let exp = expValue.int64Value else { throw .invalidClaim("exp") }
        let leeway = max(0, leeway)
        if exp > saturatingAdd(now, Self.maximumLifetime) { throw .invalidClaim("exp") }
        if now > saturatingAdd(exp, leeway) { throw .expired }

        var notBefore: Int64?
        if let nbfValue = payload["nbf"] {
            guard let nbf = nbfValue.int64Value else { throw .invalidClaim("nbf") }
            guard saturatingAdd(now, leeway) >= nbf else { throw .notYetValid }
            notBefore = nbf
        }

        var issuedAt: Int64 = 0
        if let iatValue = payload["iat"] {
            guard let iat = iatValue.int64Value else { throw .invalidClaim("iat") }
            issuedAt = iat
        }

        var version: Int64 = 0
        if let verValue = payload["ver"] {
            guard let ver = verValue.int64Value, ver >= 0 else { throw .invalidClaim("ver") }
            version = ver
        }

        var tokenID: String?
        if let jtiValue = payload["jti"] {
            guard case .string(let id) = jtiValue, TokenClaims.isValidTokenID(id) else { throw .invalidClaim("jti") }
            tokenID = id
        }

        return TokenClaims(subject: subject, issuedAt: issuedAt, expiresAt: exp, notBefore: notBefore, version: version,
                           tokenID: tokenID)
    }
}

/// Time arithmetic on attacker-chosen values must not trap on overflow.
@inline(__always)
func saturatingAdd(_ a: Int64, _ b: Int64) -> Int64 {
    let (sum, overflow) = a.addingReportingOverflow(b)
    if overflow { return b > 0 ? .max : .min }
    return sum
}
