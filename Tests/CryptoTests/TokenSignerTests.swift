import Base64
import Testing
import Crypto

/// Builds a token with arbitrary header/payload text, signed with `key`,
/// to reach verify()'s checks past the signature.
func forge(header: String, payload: String, key: [UInt8]) throws -> String {
    let input = Base64.url.encode(bytes(header)) + "." + Base64.url.encode(bytes(payload))
    return input + "." + Base64.url.encode(try Crypto.hmacSHA256(key: key, message: bytes(input)))
}

let testKey = [UInt8](repeating: 0x42, count: 32)
let now: Int64 = 1_750_000_000
let hs256Header = #"{"alg":"HS256","typ":"JWT"}"#

func signer() throws -> TokenSigner { try TokenSigner(key: testKey) }

func verifyError(_ token: String, now: Int64 = now, leeway: Int64 = 30) throws -> TokenError? {
    let signer = try signer()
    do {
        _ = try signer.verify(token, now: now, leeway: leeway)
        return nil
    } catch {
        return error
    }
}

@Suite struct RFC7515Tests {
    // RFC 7515 appendix A.1: the HS256 example, with its JWK "k".
    static let token = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9"
        + ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
        + ".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    static let jwkK = "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"

    @Test func macOverSigningInput() throws {
        let key = try #require(Base64.url.decode(Self.jwkK))
        #expect(key.count == 64)
        let parts = Self.token.split(separator: ".")
        let mac = try Crypto.hmacSHA256(key: key, message: bytes(parts[0] + "." + parts[1]))
        #expect(Base64.url.encode(mac) == String(parts[2]))
    }

    @Test func verifyGetsPastSignatureToMissingSub() throws {
        let key = try #require(Base64.url.decode(Self.jwkK))
        let signer = try TokenSigner(key: key)
        // The example's exp (1300819380) is in 2011: check just before it.
        #expect(throws: TokenError.missingClaim("sub")) {
            try signer.verify(Self.token, now: 1_300_819_000)
        }
        // Same token under another key: the signature check is what fails.
        #expect(throws: TokenError.badSignature) {
            try TokenSigner(key: testKey).verify(Self.token, now: 1_300_819_000)
        }
    }
}

@Suite struct TokenSignerTests {
    @Test func refusesShortKey() {
        #expect(throws: TokenError.keyTooShort) { try TokenSigner(key: [UInt8](repeating: 1, count: 31)) }
        #expect(throws: Never.self) { try TokenSigner(key: [UInt8](repeating: 1, count: 32)) }
    }

    @Test func roundTrip() throws {
        let claims = TokenClaims(subject: "alice@example.com", issuedAt: now, expiresAt: now + 3600, version: 7)
        let token = try signer().sign(claims)
        #expect(token.hasPrefix("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."))  // {"alg":"HS256","typ":"JWT"}
        #expect(try signer().verify(token, now: now) == claims)
        let withNbf = TokenClaims(subject: "a\"b\\c\u{1}é", issuedAt: now, expiresAt: now + 60, notBefore: now - 5, version: 0)
        #expect(try signer().verify(try signer().sign(withNbf), now: now) == withNbf)
    }

    @Test func payloadShape() throws {
        let token = try signer().sign(TokenClaims(subject: "bob", issuedAt: 10, expiresAt: 20, version: 3))
        let payload = try #require(Base64.url.decode(token.split(separator: ".")[1]))
        #expect(String(decoding: payload, as: UTF8.self) == #"{"sub":"bob","iat":10,"exp":20,"ver":3}"#)
    }

    @Test func tamperedPayloadFails() throws {
        let token = try signer().sign(TokenClaims(subject: "bob", issuedAt: now, expiresAt: now + 60))
        let parts = token.split(separator: ".").map(String.init)
        let evil = Base64.url.encode(bytes(#"{"sub":"admin","iat":0,"exp":\#(now + 60),"ver":0}"#))
        #expect(try verifyError(parts[0] + "." + evil + "." + parts[2]) == .badSignature)
        // Flip one bit of the signature.
        var sig = try #require(Base64.url.decode(parts[2]))
        sig[0] ^= 1
        #expect(try verifyError(parts[0] + "." + parts[1] + "." + Base64.url.encode(sig)) == .badSignature)
    }

    @Test func otherKeyFails() throws {
        let other = try TokenSigner(key: [UInt8](repeating: 0x43, count: 32))
        let token = try other.sign(TokenClaims(subject: "bob", issuedAt: now, expiresAt: now + 60))
        #expect(try verifyError(token) == .badSignature)
    }

    /// A header other than the one we write (members in another order, an
    /// extra member) is parsed and accepted when it says HS256: only our
    /// own header's bytes skip the parse.
    @Test func otherValidHeaderIsParsedAndAccepted() throws {
        let payload = #"{"sub":"bob","iat":\#(now),"exp":\#(now + 60)}"#
        for header in [#"{"typ":"JWT","alg":"HS256"}"#, #"{"alg":"HS256"}"#, #"{"alg":"HS256","kid":"1"}"#] {
            let claims = try signer().verify(try forge(header: header, payload: payload, key: testKey), now: now)
            #expect(claims.subject == "bob", "header \(header)")
        }
    }

    @Test func emptySignature() throws {
        let token = try signer().sign(TokenClaims(subject: "bob", issuedAt: now, expiresAt: now + 60))
        let parts = token.split(separator: ".")
        #expect(try verifyError(parts[0] + "." + parts[1] + ".") == .badSignature)
    }

    @Test(arguments: [
        #"{"alg":"none","typ":"JWT"}"#, #"{"alg":"None"}"#, #"{"alg":"NONE"}"#, #"{"alg":"hs256"}"#,
        #"{"alg":"HS384"}"#, #"{"alg":"HS512"}"#, #"{"alg":"RS256"}"#, #"{"alg":"ES256"}"#,
        #"{"typ":"JWT"}"#, #"{"alg":null}"#, #"{"alg":["HS256"]}"#, #"{"alg":"HS256 "}"#,
    ])
    func refusesOtherAlgorithms(_ header: String) throws {
        let payload = #"{"sub":"bob","exp":\#(now + 60)}"#
        // Correctly MACed with our key, so only the alg check can refuse it.
        #expect(try verifyError(forge(header: header, payload: payload, key: testKey)) == .unsupportedAlgorithm)
        // The classic "alg":"none" token with an empty signature.
        let unsigned = Base64.url.encode(bytes(header)) + "." + Base64.url.encode(bytes(payload)) + "."
        #expect(try verifyError(unsigned) == .unsupportedAlgorithm)
    }

    @Test func duplicateAlgIsMalformed() throws {
        let token = try forge(header: #"{"alg":"HS256","alg":"none"}"#, payload: #"{"sub":"b","exp":\#(now + 60)}"#, key: testKey)
        #expect(try verifyError(token) == .malformed)
    }

    @Test func expiryAndLeeway() throws {
        let token = try signer().sign(TokenClaims(subject: "bob", issuedAt: now - 100, expiresAt: now))
        #expect(try verifyError(token, now: now) == nil)
        #expect(try verifyError(token, now: now + 30) == nil)       // within default leeway
        #expect(try verifyError(token, now: now + 31) == .expired)
        #expect(try verifyError(token, now: now + 1, leeway: 0) == .expired)
    }

    @Test func expClaimChecks() throws {
        func check(_ payload: String) throws -> TokenError? {
            try verifyError(forge(header: hs256Header, payload: payload, key: testKey))
        }
        #expect(try check(#"{"sub":"bob"}"#) == .missingClaim("exp"))
        #expect(try check(#"{"sub":"bob","exp":"\#(now + 60)"}"#) == .invalidClaim("exp"))
        #expect(try check(#"{"sub":"bob","exp":true}"#) == .invalidClaim("exp"))
        #expect(try check(#"{"sub":"bob","exp":null}"#) == .invalidClaim("exp"))
        #expect(try check(#"{"sub":"bob","exp":\#(now + 60).5}"#) == .invalidClaim("exp"))
        #expect(try check(#"{"sub":"bob","exp":1e400}"#) == .invalidClaim("exp"))
        #expect(try check(#"{"sub":"bob","exp":99999999999999999999999}"#) == .invalidClaim("exp"))
        // Milliseconds instead of seconds: decades ahead, refused.
        #expect(try check(#"{"sub":"bob","exp":\#((now + 60) * 1000)}"#) == .invalidClaim("exp"))
        // Overflow-prone extremes must not trap.
        #expect(try check(#"{"sub":"bob","exp":9223372036854775807}"#) == .invalidClaim("exp"))
        #expect(try check(#"{"sub":"bob","exp":-9223372036854775808}"#) == .expired)
        // Integral values in other spellings are accepted.
        #expect(try check(#"{"sub":"bob","exp":\#(now + 60).0}"#) == nil)
    }

    @Test func notBefore() throws {
        let future = try signer().sign(TokenClaims(subject: "bob", issuedAt: now, expiresAt: now + 600, notBefore: now + 100))
        #expect(try verifyError(future, now: now) == .notYetValid)
        #expect(try verifyError(future, now: now + 70) == nil)   // 70 + 30 leeway reaches nbf
        let stringNbf = try forge(header: hs256Header, payload: #"{"sub":"bob","exp":\#(now + 60),"nbf":"0"}"#, key: testKey)
        #expect(try verifyError(stringNbf) == .invalidClaim("nbf"))
    }

    @Test func subjectAndOtherClaims() throws {
        func check(_ payload: String) throws -> TokenError? {
            try verifyError(forge(header: hs256Header, payload: payload, key: testKey))
        }
        let exp = now + 60
        #expect(try check(#"{"exp":\#(exp)}"#) == .missingClaim("sub"))
        #expect(try check(#"{"sub":"","exp":\#(exp)}"#) == .invalidClaim("sub"))
        #expect(try check(#"{"sub":42,"exp":\#(exp)}"#) == .invalidClaim("sub"))
        #expect(try check(#"{"sub":"bob","exp":\#(exp),"iat":"x"}"#) == .invalidClaim("iat"))
        #expect(try check(#"{"sub":"bob","exp":\#(exp),"ver":-1}"#) == .invalidClaim("ver"))
        #expect(try check(#"{"sub":"bob","exp":\#(exp),"ver":1.5}"#) == .invalidClaim("ver"))
        // Absent ver and iat read as 0.
        let claims = try signer().verify(forge(header: hs256Header, payload: #"{"sub":"bob","exp":\#(exp)}"#, key: testKey), now: now)
        #expect(claims.version == 0 && claims.issuedAt == 0 && claims.notBefore == nil)
        // Payload that is not an object, or not JSON, is malformed even when signed.
        #expect(try check("[1]") == .malformed)
        #expect(try check(#"{"sub":"bob","exp":\#(exp)"#) == .malformed)
        #expect(try check(#"{"sub":"bob","exp":\#(exp)} x"#) == .malformed)
    }

    @Test func structure() throws {
        let token = try signer().sign(TokenClaims(subject: "bob", issuedAt: now, expiresAt: now + 60))
        let parts = token.split(separator: ".").map(String.init)
        #expect(try verifyError(parts[0] + "." + parts[1]) == .malformed)                       // 2 segments
        #expect(try verifyError(token + "." + parts[2]) == .malformed)                          // 4 segments
        #expect(try verifyError("") == .malformed)
        #expect(try verifyError("..") == .malformed)
        #expect(try verifyError(String(repeating: "A", count: 8193)) == .malformed)             // > 8 KiB
        #expect(try verifyError(parts[0] + "." + parts[1] + "." + String(repeating: "A", count: 8200)) == .malformed)
        #expect(try verifyError(token + " ") == .malformed)
        #expect(try verifyError(" " + token) == .malformed)
        // Non-UTF-8 bytes (decoded lossily into U+FFFD) are not base64url.
        let junk = String(decoding: bytes(token) + [0xff, 0xfe], as: UTF8.self)
        #expect(try verifyError(junk) == .malformed)
        // A Substring works the same as a String.
        #expect(try signer().verify(("x" + token).dropFirst(), now: now).subject == "bob")
    }

    @Test func nonCanonicalBase64Segments() throws {
        let token = try signer().sign(TokenClaims(subject: "bob", issuedAt: now, expiresAt: now + 60))
        let parts = token.split(separator: ".").map(String.init)
        // Padding added to a segment.
        #expect(try verifyError(parts[0] + "=." + parts[1] + "." + parts[2]) == .malformed)
        #expect(try verifyError(parts[0] + "." + parts[1] + "." + parts[2] + "=") == .malformed)
        // Standard-alphabet characters instead of - and _.
        let sig = try #require(Base64.url.decode(parts[2]))
        let standardSig = parts[2].replacingOccurrences("-", "+").replacingOccurrences("_", "/")
        if standardSig != parts[2] {
            #expect(try verifyError(parts[0] + "." + parts[1] + "." + standardSig) == .malformed)
        }
        #expect(try verifyError(parts[0] + "." + parts[1] + ".+" + parts[2].dropFirst()) == .malformed)
        #expect(try verifyError(parts[0] + "." + parts[1] + "./" + parts[2].dropFirst()) == .malformed)
        #expect(sig.count == 32)
        // A header that is valid base64url but not JSON.
        #expect(try verifyError(Base64.url.encode(bytes("hello")) + "." + parts[1] + "." + parts[2]) == .malformed)
        // Header bytes that are not UTF-8 inside a JSON string.
        let badUTF8Header = Base64.url.encode(bytes(#"{"alg":""#) + [0xC3, 0x28] + bytes(#""}"#))
        #expect(try verifyError(badUTF8Header + "." + parts[1] + "." + parts[2]) == .malformed)
    }

    @Test func junk8KiB() throws {
        var junk = ""
        for i in 0..<8192 { junk.append(Character(Unicode.Scalar(UInt8(33 + (i * 7) % 90)))) }
        #expect(try verifyError(junk) == .malformed)
    }

    @Test func descriptionsDoNotLeak() throws {
        let token = try signer().sign(TokenClaims(subject: "secret-user", issuedAt: now, expiresAt: now - 1000))
        let error = try #require(try verifyError(token))
        #expect(error == .expired)
        #expect(!error.description.contains("secret-user"))
        #expect(!error.description.contains(token))
    }
}

extension String {
    func replacingOccurrences(_ target: Character, _ replacement: Character) -> String {
        String(map { $0 == target ? replacement : $0 })
    }
}

/// Issue 10, item 7: named tokens carry their id as `jti`.
@Suite struct TokenIDTests {
    @Test func tokenIDRoundTripsAndIsAbsentUnlessGiven() throws {
        let named = TokenClaims(subject: "alice", issuedAt: now, expiresAt: now + 60, tokenID: "Ab-_09xyzAb-_09xyzAb-w")
        #expect(try signer().verify(try signer().sign(named), now: now) == named)
        let plain = TokenClaims(subject: "alice", issuedAt: now, expiresAt: now + 60)
        #expect(try signer().verify(try signer().sign(plain), now: now).tokenID == nil)
    }

    @Test(arguments: [#""""#, "17", "null", #""has space""#, #""a.b""#, #""\#(String(repeating: "a", count: 65))""#,
                      #"["x"]"#])
    func unusableTokenIDIsRefused(jti: String) throws {
        let token = try forge(header: hs256Header, payload: #"{"sub":"bob","exp":\#(now + 60),"jti":\#(jti)}"#, key: testKey)
        #expect(try verifyError(token) == .invalidClaim("jti"))
    }

    /// A new id is valid, 22 characters, never starts with "-" or "_" (it is
    /// typed as a command argument) and does not repeat.
    @Test func newTokenIDsAreValidDistinctAndNeverStartLikeAnOption() throws {
        var seen = Set<String>()
        for _ in 0..<4_000 {
            let id = try TokenClaims.newTokenID()
            #expect(TokenClaims.isValidTokenID(id) && id.utf8.count == 22, "\(id)")
            #expect(id.first != "-" && id.first != "_", "\(id)")
            seen.insert(id)
        }
        #expect(seen.count == 4_000)
    }

    @Test func signingRefusesAnUnusableTokenID() {
        #expect(throws: CryptoError.self) {
            try signer().sign(TokenClaims(subject: "a", issuedAt: now, expiresAt: now + 1, tokenID: "no spaces"))
        }
    }
}
