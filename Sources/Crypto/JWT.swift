import Base64
import COpenSSL
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
    ///
    /// Measured with callgrind (500 sends): this was about 45,500
    /// instructions per send, of which HMAC-SHA256 only 13,800; the rest
    /// went to copies (the token into an array, `split` into slices, the
    /// signing input into another array, the signature decoded into one)
    /// and to the general JSON parser (a value tree, a key set, a String per
    /// key and number). Now the token's own UTF-8 bytes are read in place,
    /// the MAC is computed over a slice of them into a buffer on the stack
    /// and compared with the signature decoded into another, and a payload
    /// in exactly the form `sign` writes is read by `canonicalClaims`:
    /// about 20,800 instructions a send, of which the MAC is 12,900, reading
    /// the claims 1,800 and decoding the payload 1,300 (callgrind_annotate
    /// --inclusive=yes on Benchmarks/profile.sh callgrind, /500).
    public func verify(_ token: some StringProtocol, now: Int64, leeway: Int64 = 30) throws(TokenError) -> TokenClaims {
        try verify(token, now: now, leeway: leeway, canonicalFastPath: true)
    }

    /// `verify` with every payload read by the general JSON parser: what the
    /// fast path must agree with. For the differential tests only.
    func verifyGeneral(_ token: some StringProtocol, now: Int64, leeway: Int64 = 30) throws(TokenError) -> TokenClaims {
        try verify(token, now: now, leeway: leeway, canonicalFastPath: false)
    }

    func verify(_ token: some StringProtocol, now: Int64, leeway: Int64, canonicalFastPath: Bool) throws(TokenError) -> TokenClaims {
        // Length first, so an oversized header costs no copy.
        guard token.utf8.count <= Self.maximumTokenLength else { throw .malformed }
        // A native String or Substring lends its bytes; anything else is copied once.
        let result = token.utf8.withContiguousStorageIfAvailable { bytes in
            Result { () throws(TokenError) in try verify(bytes: bytes, now: now, leeway: leeway, canonicalFastPath: canonicalFastPath) }
        } ?? Array(token.utf8).withUnsafeBufferPointer { bytes in
            Result { () throws(TokenError) in try verify(bytes: bytes, now: now, leeway: leeway, canonicalFastPath: canonicalFastPath) }
        }
        return try result.get()
    }

    private func verify(bytes: UnsafeBufferPointer<UInt8>, now: Int64, leeway: Int64,
                        canonicalFastPath: Bool) throws(TokenError) -> TokenClaims {
        // Exactly two dots: three segments, any of them empty.
        let dot = UInt8(ascii: ".")
        guard let firstDot = bytes.firstIndex(of: dot),
              let secondDot = bytes[(firstDot + 1)...].firstIndex(of: dot),
              !bytes[(secondDot + 1)...].contains(dot) else { throw .malformed }
        let headerSegment = UnsafeBufferPointer(rebasing: bytes[..<firstDot])
        let payloadSegment = UnsafeBufferPointer(rebasing: bytes[(firstDot + 1)..<secondDot])
        let signatureSegment = UnsafeBufferPointer(rebasing: bytes[(secondDot + 1)...])

        // Header: the one every token we issue carries is known good as is
        // (decoding and parsing it again measured 4% of a send); any other
        // is read: strict base64url, a JSON object, alg exactly "HS256".
        if !headerSegment.elementsEqual(Self.encodedHeaderBytes) {
            guard let headerBytes = Base64.url.decode(headerSegment),
                  let header = try? JSONParser.parse(headerBytes), header.isObject else { throw .malformed }
            // By bytes: String == normalises, which is quadratic on hostile input
            // (and "HS256" must mean exactly these five bytes).
            guard case .string(let alg)? = header["alg"], alg.utf8Equals("HS256") else { throw .unsupportedAlgorithm }
            // RFC 7515 §4.1.11: extensions we do not understand marked critical
            // mean the token must be rejected.
            guard header["crit"] == nil else { throw .malformed }
        }

        // Signature over exactly the received bytes. 32 bytes are exactly the
        // 43-character spellings; any other length is decoded as before only
        // to tell malformed (not strict base64url) from bad (empty, or not 32
        // bytes, so it cannot match).
        var signature = Self.zeroMAC
        if signatureSegment.count == Self.encodedMACLength {
            guard Self.decodeMAC(signatureSegment, into: &signature) else { throw .malformed }
        } else {
            guard Base64.url.decode(signatureSegment) != nil else { throw .malformed }
            throw .badSignature
        }
        var expected = Self.zeroMAC
        do {
            try withUnsafeMutableBytes(of: &expected) { (out) throws(CryptoError) in
                try key.mac(UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: bytes[..<secondDot])), into: out)
            }
        } catch {
            throw .badSignature  // fail closed; cannot happen short of OpenSSL breaking
        }
        let matches = withUnsafeBytes(of: &expected) { a in
            withUnsafeBytes(of: &signature) { b in CRYPTO_memcmp(a.baseAddress, b.baseAddress, a.count) == 0 }
        }
        guard matches else { throw .badSignature }

        // Payload: authenticated now, so read it.
        guard let payloadBytes = Base64.url.decode(payloadSegment) else { throw .malformed }
        if canonicalFastPath, let raw = Self.canonicalClaims(payloadBytes) {
            return try Self.checkedClaims(raw, now: now, leeway: leeway)
        }
        guard let payload = try? JSONParser.parse(payloadBytes), payload.isObject else { throw .malformed }
        return try Self.checkedClaims(RawClaims(payload), now: now, leeway: leeway)
    }

    /// The claims' checks, in one place for both readers of the payload. The
    /// order of the checks (and so which error a payload with several faults
    /// gets) is the order they were written in before the fast path.
    static func checkedClaims(_ raw: RawClaims, now: Int64, leeway: Int64) throws(TokenError) -> TokenClaims {
        guard case .value(let subject) = raw.subject else {
            throw raw.subject == .absent ? .missingClaim("sub") : .invalidClaim("sub")
        }
        guard !subject.isEmpty else { throw .invalidClaim("sub") }

        let exp: Int64
        switch raw.expiresAt {
        case .absent: throw .missingClaim("exp")
        case .invalid: throw .invalidClaim("exp")
        case .value(let value): exp = value
        }
        let leeway = max(0, leeway)
        if exp > saturatingAdd(now, Self.maximumLifetime) { throw .invalidClaim("exp") }
        if now > saturatingAdd(exp, leeway) { throw .expired }

        var notBefore: Int64?
        switch raw.notBefore {
        case .absent: break
        case .invalid: throw .invalidClaim("nbf")
        case .value(let nbf):
            guard saturatingAdd(now, leeway) >= nbf else { throw .notYetValid }
            notBefore = nbf
        }

        var issuedAt: Int64 = 0
        switch raw.issuedAt {
        case .absent: break
        case .invalid: throw .invalidClaim("iat")
        case .value(let iat): issuedAt = iat
        }

        var version: Int64 = 0
        switch raw.version {
        case .absent: break
        case .invalid: throw .invalidClaim("ver")
        case .value(let ver):
            guard ver >= 0 else { throw .invalidClaim("ver") }
            version = ver
        }

        var tokenID: String?
        switch raw.tokenID {
        case .absent: break
        case .invalid: throw .invalidClaim("jti")
        case .value(let id):
            guard TokenClaims.isValidTokenID(id) else { throw .invalidClaim("jti") }
            tokenID = id
        }

        return TokenClaims(subject: subject, issuedAt: issuedAt, expiresAt: exp, notBefore: notBefore, version: version,
                           tokenID: tokenID)
    }

    /// The claims of a payload in exactly the form `sign` writes:
    /// `{"sub":"…","iat":N,"exp":N,"ver":N[,"nbf":N][,"jti":"…"]}`, with a
    /// subject free of escapes and control characters that is valid UTF-8,
    /// numbers as `-?(0|[1-9][0-9]*)` that fit an Int64, and a jti of
    /// base64url characters. nil for anything else, which the general parser
    /// then reads: nothing here decides a refusal.
    ///
    /// Safe to keep narrow and simple: it only ever sees bytes whose MAC has
    /// been checked (so only what we, or a holder of the key, wrote), and it
    /// gives the same values the general parser would for every payload it
    /// accepts (`JSONParser` and `JSONValue.int64Value` read such a payload
    /// to the same strings and integers).
    static func canonicalClaims(_ payload: [UInt8]) -> RawClaims? {
        payload.withUnsafeBufferPointer { bytes in
            var reader = CanonicalReader(bytes: bytes)
            guard reader.expect(#"{"sub":""#), let subject = reader.plainString(),
                  reader.expect(#","iat":"#), let iat = reader.integer(),
                  reader.expect(#","exp":"#), let exp = reader.integer(),
                  reader.expect(#","ver":"#), let ver = reader.integer() else { return nil }
            var raw = RawClaims(subject: .value(subject), issuedAt: .value(iat), expiresAt: .value(exp),
                                notBefore: .absent, version: .value(ver), tokenID: .absent)
            if reader.expect(#","nbf":"#) {
                guard let nbf = reader.integer() else { return nil }
                raw.notBefore = .value(nbf)
            }
            if reader.expect(#","jti":""#) {
                guard let id = reader.tokenIDString() else { return nil }
                raw.tokenID = .value(id)
            }
            guard reader.expect("}"), reader.atEnd else { return nil }
            return raw
        }
    }

    /// 32 bytes on the stack, for a MAC (tuple of bytes, so its memory is
    /// bound to UInt8 as OpenSSL and CRYPTO_memcmp read it).
    typealias MACBuffer = (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                           UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                           UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                           UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8)

    static let zeroMAC: MACBuffer = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                     0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)

    /// A SHA-256 MAC in unpadded base64url: 32 bytes, 43 characters.
    static let encodedMACLength = 43

    /// Decodes 43 base64url characters into the 32 bytes of a MAC, on the
    /// stack, with `Base64.url`'s own strict decoder.
    static func decodeMAC(_ text: UnsafeBufferPointer<UInt8>, into out: inout MACBuffer) -> Bool {
        guard text.count == encodedMACLength else { return false }
        return withUnsafeMutableBytes(of: &out) { Base64.url.decode(text, into: $0) == 32 }
    }

    /// The 6-bit value of a base64url character; 0xFF for any other byte.
    @inline(__always)
    static func base64URLValue(_ byte: UInt8) -> UInt8 {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): byte - UInt8(ascii: "A")
        case UInt8(ascii: "a")...UInt8(ascii: "z"): byte - UInt8(ascii: "a") + 26
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0") + 52
        case UInt8(ascii: "-"): 62
        case UInt8(ascii: "_"): 63
        default: 0xFF
        }
    }
}

/// A claim as read from a payload, before the checks: absent, present with
/// a value of the wrong type (or a number that is not an integer fitting an
/// Int64), or present with a value.
enum RawClaim<Value: Equatable>: Equatable {
    case absent
    case invalid
    case value(Value)
}

/// The claims `TokenSigner.checkedClaims` checks, from either reader.
struct RawClaims: Equatable {
    var subject: RawClaim<String>
    var issuedAt: RawClaim<Int64>
    var expiresAt: RawClaim<Int64>
    var notBefore: RawClaim<Int64>
    var version: RawClaim<Int64>
    var tokenID: RawClaim<String>
}

// In an extension, so the memberwise initialiser stays synthesised.
extension RawClaims {
    /// From the general parser's object. Pure reads, so taking them all up
    /// front and checking afterwards refuses exactly as checking each as it
    /// was read did.
    init(_ payload: JSONValue) {
        func integer(_ name: String) -> RawClaim<Int64> {
            guard let value = payload[name] else { return .absent }
            guard let int = value.int64Value else { return .invalid }
            return .value(int)
        }
        func string(_ name: String) -> RawClaim<String> {
            guard let value = payload[name] else { return .absent }
            guard case .string(let text) = value else { return .invalid }
            return .value(text)
        }
        self.init(subject: string("sub"), issuedAt: integer("iat"), expiresAt: integer("exp"),
                  notBefore: integer("nbf"), version: integer("ver"), tokenID: string("jti"))
    }
}

/// Reads the canonical payload form left to right; every method answers
/// false or nil, never traps, on anything unexpected.
private struct CanonicalReader {
    let bytes: UnsafeBufferPointer<UInt8>
    var index = 0

    init(bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    var atEnd: Bool { index == bytes.count }

    /// Consumes `literal` if the bytes at the index are exactly it.
    mutating func expect(_ literal: StaticString) -> Bool {
        let count = literal.utf8CodeUnitCount
        guard bytes.count - index >= count else { return false }
        let matches = literal.withUTF8Buffer { expected in
            var i = 0
            while i < count {
                if bytes[index + i] != expected[i] { return false }
                i += 1
            }
            return true
        }
        if matches { index += count }
        return matches
    }

    /// The rest of a string whose opening quote has been consumed, up to and
    /// including the closing quote: nil on a backslash (an escape: the
    /// general parser decodes those), a control character (which it
    /// refuses), no closing quote, or invalid UTF-8. Without escapes the
    /// general parser's string is these very bytes, validated the same way.
    mutating func plainString() -> String? {
        quoted(allowing: { $0 >= 0x20 && $0 != UInt8(ascii: "\\") }, validateUTF8: true)
    }

    /// Like `plainString`, for a jti: only base64url characters (ASCII, so
    /// valid UTF-8), any number of them; `isValidTokenID` judges the length.
    mutating func tokenIDString() -> String? {
        quoted(allowing: { TokenSigner.base64URLValue($0) < 64 }, validateUTF8: false)
    }

    /// The bytes up to the closing quote as a String, past the quote; nil
    /// on a byte `allowing` refuses, no closing quote, or (when asked)
    /// invalid UTF-8.
    private mutating func quoted(allowing: (UInt8) -> Bool, validateUTF8: Bool) -> String? {
        let start = index
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                let run = UnsafeBufferPointer(rebasing: bytes[start..<index])
                index += 1
                return validateUTF8 ? String(validating: run, as: UTF8.self) : String(decoding: run, as: UTF8.self)
            }
            guard allowing(byte) else { return nil }
            index += 1
        }
        return nil
    }

    /// `-?(0|[1-9][0-9]*)` whose value fits an Int64 (`Int64(text)` gives the
    /// same value, including 0 for `-0`); nil otherwise. A fraction,
    /// exponent or leading zero stops the digits where the next literal
    /// expected then fails to match.
    mutating func integer() -> Int64? {
        var negative = false
        if index < bytes.count, bytes[index] == UInt8(ascii: "-") {
            negative = true
            index += 1
        }
        guard index < bytes.count else { return nil }
        let first = bytes[index]
        guard first >= UInt8(ascii: "0"), first <= UInt8(ascii: "9") else { return nil }
        index += 1
        // Accumulated as a negative number, whose range reaches Int64.min;
        // anything beyond the range goes to the general path.
        var negated = -Int64(first - UInt8(ascii: "0"))
        if first != UInt8(ascii: "0") {
            while index < bytes.count, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9") {
                let (times10, overflow1) = negated.multipliedReportingOverflow(by: 10)
                let (difference, overflow2) = times10.subtractingReportingOverflow(Int64(bytes[index] - UInt8(ascii: "0")))
                if overflow1 || overflow2 { return nil }
                negated = difference
                index += 1
            }
        }
        if negative { return negated }
        let (value, overflow) = Int64(0).subtractingReportingOverflow(negated)
        return overflow ? nil : value
    }
}

/// Time arithmetic on attacker-chosen values must not trap on overflow.
@inline(__always)
func saturatingAdd(_ a: Int64, _ b: Int64) -> Int64 {
    let (sum, overflow) = a.addingReportingOverflow(b)
    if overflow { return b > 0 ? .max : .min }
    return sum
}
