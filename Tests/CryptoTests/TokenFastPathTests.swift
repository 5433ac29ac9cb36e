import Base64
import Testing
@testable import Crypto

/// Like `forge`, for payload bytes that need not be UTF-8.
private func forgeBytes(payload: [UInt8], key: [UInt8] = testKey) throws -> String {
    let input = Base64.url.encode(bytes(hs256Header)) + "." + Base64.url.encode(payload)
    return input + "." + Base64.url.encode(try Crypto.hmacSHA256(key: key, message: bytes(input)))
}

private func result(_ body: () throws(TokenError) -> TokenClaims) -> Result<TokenClaims, TokenError> {
    Result { () throws(TokenError) in try body() }
}

/// The payload bytes of a token (its second segment, decoded).
private func payloadBytes(_ token: String) throws -> [UInt8] {
    try #require(Base64.url.decode(token.split(separator: ".", omittingEmptySubsequences: false)[1]))
}

/// The fast path of `verify` (a payload in `sign`'s own form read without the
/// general JSON parser) against the general path on the same tokens.
@Suite struct TokenFastPathTests {
    static let times: [Int64] = [now, now - 1, now + 1, now + 29, now + 30, now + 31, now + 60, now + 89, now + 90, now + 91,
                                 now - 100, now + 3600, 0, -1, .max, .min]
    static let leeways: [Int64] = [30, 0, -5, .max]

    /// Asserts both paths give the same claims or the same error for `token`
    /// at every time and leeway; returns how many of those were accepted.
    @discardableResult
    private func agree(_ token: String, _ comment: Comment? = nil) throws -> Int {
        let signer = try signer()
        var accepted = 0
        for time in Self.times {
            for leeway in Self.leeways {
                let fast = result { () throws(TokenError) in try signer.verify(token, now: time, leeway: leeway) }
                let general = result { () throws(TokenError) in try signer.verifyGeneral(token, now: time, leeway: leeway) }
                #expect(fast == general, "now \(time) leeway \(leeway) \(comment?.description ?? token)")
                if case .success = fast { accepted += 1 }
            }
        }
        return accepted
    }

    static let subjects = ["bob", "alice@example.com", "é", "e\u{301}", "日本語のユーザー", "🙂 emoji", "a b", "~!@#$%^&*()",
                           String(repeating: "x", count: 5000), String(repeating: "é", count: 1000), "",
                           "quote\"inside", "back\\slash", "ctl\u{1}", "tab\t", "del\u{7F}", "/slash"]
    static let numbers: [Int64] = [0, 1, -1, 9, 10, now, now + 60, now - 60, .max, .min, .max - 1, .min + 1, 1 << 53, -(1 << 53)]

    @Test func canonicalTokensFromSignAgree() throws {
        var accepted = 0
        for subject in Self.subjects {
            for (exp, nbf) in [(now, nil), (now + 60, now + 60), (now + 30, now - 30), (now - 31, nil), (now + 120, now + 90),
                               (now + 11 * 366 * 86_400, nil), (Int64.max, Int64.min), (Int64.min, Int64.max)] as [(Int64, Int64?)] {
                for tokenID in [nil, "Ab-_09xyzAb-_09xyzAb-w", "a", String(repeating: "Z", count: 64)] as [String?] {
                    let claims = TokenClaims(subject: subject, issuedAt: now - 10, expiresAt: exp, notBefore: nbf, version: 3,
                                             tokenID: tokenID)
                    accepted += try agree(try signer().sign(claims))
                }
            }
        }
        for number in Self.numbers {
            for claims in [TokenClaims(subject: "n", issuedAt: number, expiresAt: now + 60, version: 0),
                           TokenClaims(subject: "n", issuedAt: 0, expiresAt: number, version: 0),
                           TokenClaims(subject: "n", issuedAt: 0, expiresAt: now + 60, notBefore: number, version: 0),
                           TokenClaims(subject: "n", issuedAt: 0, expiresAt: now + 60, version: number)] {
                accepted += try agree(try signer().sign(claims))
            }
        }
        #expect(accepted > 1000)  // not only refusals
    }

    /// Payloads in the canonical layout with values `sign` would not write,
    /// and payloads that deviate from it in every way the brief lists.
    @Test func forgedPayloadsAgree() throws {
        let e = now + 60
        let payloads: [String] = [
            // Canonical layout, odd values.
            #"{"sub":"bob","iat":0,"exp":\#(e),"ver":0}"#,
            #"{"sub":"","iat":0,"exp":\#(e),"ver":0}"#,
            #"{"sub":"bob","iat":0,"exp":\#(e),"ver":-1}"#,
            #"{"sub":"bob","iat":-0,"exp":\#(e),"ver":-0}"#,
            #"{"sub":"bob","iat":0,"exp":\#(e),"ver":0,"nbf":-0}"#,
            #"{"sub":"bob","iat":0,"exp":\#(e),"ver":0,"jti":""}"#,
            #"{"sub":"bob","iat":0,"exp":\#(e),"ver":0,"jti":"\#(String(repeating: "a", count: 65))"}"#,
            #"{"sub":"bob","iat":0,"exp":\#(e),"ver":0,"jti":"-x"}"#,
            #"{"sub":"bob","iat":0,"exp":\#(e),"ver":0,"jti":"has space"}"#,
            #"{"sub":"bob","iat":0,"exp":\#(e),"ver":0,"jti":"a.b"}"#,
            #"{"sub":"bob","iat":0,"exp":\#(e),"ver":0,"jti":"\u0041"}"#,
            #"{"sub":"bob","iat":0,"exp":\#(e),"ver":0,"jti":17}"#,
            #"{"sub":"bob","iat":0,"exp":\#(e),"ver":0,"jti":null}"#,
            #"{"sub":"bob","iat":0,"exp":\#(e),"ver":0,"nbf":\#(e),"jti":"x"}"#,
            #"{"sub":"bob","iat":9223372036854775807,"exp":\#(e),"ver":9223372036854775807}"#,
            #"{"sub":"bob","iat":-9223372036854775808,"exp":\#(e),"ver":0}"#,
            #"{"sub":"bob","iat":-9223372036854775808,"exp":-9223372036854775808,"ver":0}"#,
            #"{"sub":"bob","iat":9223372036854775808,"exp":\#(e),"ver":0}"#,
            #"{"sub":"bob","iat":-9223372036854775809,"exp":\#(e),"ver":0}"#,
            #"{"sub":"bob","iat":0,"exp":99999999999999999999999,"ver":0}"#,
            #"{"sub":"bob","iat":0,"exp":\#(e),"ver":0,"nbf":99999999999999999999}"#,
            // Escapes and such in sub.
            #"{"sub":"\u0041","iat":0,"exp":\#(e),"ver":0}"#,
            #"{"sub":"a\"b","iat":0,"exp":\#(e),"ver":0}"#,
            #"{"sub":"a\\b","iat":0,"exp":\#(e),"ver":0}"#,
            #"{"sub":"a\/b","iat":0,"exp":\#(e),"ver":0}"#,
            #"{"sub":"\ud83d\ude42","iat":0,"exp":\#(e),"ver":0}"#,
            #"{"sub":"\ud83d","iat":0,"exp":\#(e),"ver":0}"#,
            #"{"sub":"\x","iat":0,"exp":\#(e),"ver":0}"#,
            "{\"sub\":\"a\u{1}b\",\"iat\":0,\"exp\":\(e),\"ver\":0}",
            "{\"sub\":\"a\tb\",\"iat\":0,\"exp\":\(e),\"ver\":0}",
            "{\"sub\":\"a\u{7F}b\",\"iat\":0,\"exp\":\(e),\"ver\":0}",
            #"{"sub":"bob,"iat":0,"exp":\#(e),"ver":0}"#,
            #"{"sub":"bob"#,
            #"{"sub":"#,
            #"{"sub":42,"iat":0,"exp":\#(e),"ver":0}"#,
            #"{"sub":null,"iat":0,"exp":\#(e),"ver":0}"#,
            // Numbers in other spellings.
            #"{"sub":"bob","iat":1e3,"exp":\#(e),"ver":0}"#,
            #"{"sub":"bob","iat":1.0,"exp":\#(e),"ver":0}"#,
            #"{"sub":"bob","iat":0,"exp":\#(e).0,"ver":0}"#,
            #"{"sub":"bob","iat":0,"exp":\#(e)e0,"ver":0}"#,
            #"{"sub":"bob","iat":0,"exp":\#(e)E0,"ver":0}"#,
            #"{"sub":"bob","iat":0,"exp":\#(e),"ver":1.5}"#,
            #"{"sub":"bob","iat":0,"exp":\#(e),"ver":00}"#,
            #"{"sub":"bob","iat":0,"exp":\#(e),"ver":01}"#,
            #"{"sub":"bob","iat":0,"exp":0\#(e),"ver":0}"#,
            #"{"sub":"bob","iat":+1,"exp":\#(e),"ver":0}"#,
            #"{"sub":"bob","iat":-,"exp":\#(e),"ver":0}"#,
            #"{"sub":"bob","iat":--1,"exp":\#(e),"ver":0}"#,
            #"{"sub":"bob","iat":,"exp":\#(e),"ver":0}"#,
            #"{"sub":"bob","iat":"0","exp":\#(e),"ver":0}"#,
            #"{"sub":"bob","iat":0,"exp":"\#(e)","ver":0}"#,
            #"{"sub":"bob","iat":0,"exp":true,"ver":0}"#,
            #"{"sub":"bob","iat":0,"exp":\#(e),"ver":null}"#,
            #"{"sub":"bob","iat":0,"exp":\#(e),"ver":0,"nbf":"0"}"#,
            #"{"sub":"bob","iat":0,"exp":\#(e),"ver":0,"nbf":1e400}"#,
            // Keys reordered, duplicated, missing, extra; whitespace; trailing data.
            #"{"iat":0,"sub":"bob","exp":\#(e),"ver":0}"#,
            #"{"sub":"bob","exp":\#(e),"iat":0,"ver":0}"#,
            #"{"sub":"bob","iat":0,"exp":\#(e),"ver":0,"jti":"x","nbf":0}"#,
            #"{"sub":"bob","iat":0,"exp":\#(e),"ver":0,"nbf":0,"nbf":0}"#,
            #"{"sub":"bob","iat":0,"exp":\#(e),"ver":0,"jti":"x","jti":"y"}"#,
            #"{"sub":"bob","sub":"eve","iat":0,"exp":\#(e),"ver":0}"#,
            #"{"sub":"bob","iat":0,"iat":1,"exp":\#(e),"ver":0}"#,
            #"{"sub":"bob","iat":0,"exp":\#(e)}"#,
            #"{"sub":"bob","iat":0,"ver":0}"#,
            #"{"iat":0,"exp":\#(e),"ver":0}"#,
            #"{"sub":"bob","exp":\#(e)}"#,
            #"{"sub":"bob","iat":0,"exp":\#(e),"ver":0,"x":1}"#,
            #"{"sub":"bob","iat":0,"exp":\#(e),"ver":0,"nbf":0,"jti":"x","x":1}"#,
            #"{"sub":"bob","iat":0,"exp":\#(e),"ver":0,"admin":true}"#,
            #"{ "sub":"bob","iat":0,"exp":\#(e),"ver":0}"#,
            #"{"sub" :"bob","iat":0,"exp":\#(e),"ver":0}"#,
            #"{"sub":"bob", "iat":0,"exp":\#(e),"ver":0}"#,
            #"{"sub":"bob","iat":0,"exp":\#(e),"ver":0 }"#,
            #"{"sub":"bob","iat":0,"exp":\#(e),"ver":0} "#,
            " {\"sub\":\"bob\",\"iat\":0,\"exp\":\(e),\"ver\":0}",
            "{\"sub\":\"bob\",\"iat\":0,\"exp\":\(e),\"ver\":0}\n",
            #"{"sub":"bob","iat":0,"exp":\#(e),"ver":0}x"#,
            #"{"sub":"bob","iat":0,"exp":\#(e),"ver":0}}"#,
            #"{"sub":"bob","iat":0,"exp":\#(e),"ver":0,}"#,
            #"{"sub":"bob","iat":0,"exp":\#(e),"ver":0"#,
            #"{"sub":"bob","iat":0,"exp":\#(e),"ver":"#,
            #"{"sub":"bob","iat":0,"exp":\#(e),"ver":0,"nbf":}"#,
            #"{"sub":"bob","iat":0,"exp":\#(e),"ver":0,"jti":"x}"#,
            #"{"Sub":"bob","iat":0,"exp":\#(e),"ver":0}"#,
            #"{"\u0073ub":"bob","iat":0,"exp":\#(e),"ver":0}"#,
            #"[{"sub":"bob","iat":0,"exp":\#(e),"ver":0}]"#,
            "", "{}", "[]", "null", "1", #""x""#,
        ]
        for payload in payloads {
            try agree(try forge(header: hs256Header, payload: payload, key: testKey), "\(payload)")
        }
    }

    /// Subjects that are not valid UTF-8, or are at its edges.
    @Test func subjectBytesAgree() throws {
        let e = now + 60
        let subjects: [[UInt8]] = [[0xC3, 0x28], [0xFF], [0xC3], [0xE2, 0x82], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80],
                                   [0xC0, 0xAF], [0xEF, 0xBB, 0xBF], [0xF0, 0x9F, 0x99, 0x82], [0x00], [0x7F], [0xC2, 0x80]]
        for subject in subjects {
            let payload = bytes(#"{"sub":""#) + subject + bytes(#"","iat":0,"exp":\#(e),"ver":0}"#)
            try agree(try forgeBytes(payload: payload), "sub bytes \(subject)")
        }
    }

    /// The fast path is taken for what `sign` writes, and declines every
    /// deviation, which the general parser then reads.
    @Test func canonicalClaimsReadsSignsOwnForm() throws {
        let full = TokenClaims(subject: "alice é", issuedAt: -5, expiresAt: now + 60, notBefore: now - 1, version: 7,
                               tokenID: "Ab-_09")
        let raw = try #require(TokenSigner.canonicalClaims(try payloadBytes(try signer().sign(full))))
        #expect(raw == RawClaims(subject: .value("alice é"), issuedAt: .value(-5), expiresAt: .value(now + 60),
                                 notBefore: .value(now - 1), version: .value(7), tokenID: .value("Ab-_09")))
        for claims in [TokenClaims(subject: "bob", issuedAt: now, expiresAt: now + 60),
                       TokenClaims(subject: "bob", issuedAt: now, expiresAt: now + 60, notBefore: now),
                       TokenClaims(subject: "bob", issuedAt: now, expiresAt: now + 60, tokenID: "x"),
                       TokenClaims(subject: String(repeating: "日", count: 500), issuedAt: .min, expiresAt: .max, version: .max)] {
            #expect(TokenSigner.canonicalClaims(try payloadBytes(try signer().sign(claims))) != nil, "\(claims)")
        }
        // Subjects `sign` escapes: the general parser reads those.
        for subject in ["a\"b", "a\\b", "a\u{1}", "a\u{7F}", "a\nb"] {
            let token = try signer().sign(TokenClaims(subject: subject, issuedAt: 0, expiresAt: now + 60))
            #expect(TokenSigner.canonicalClaims(try payloadBytes(token)) == nil, "\(subject)")
            #expect(try signer().verify(token, now: now).subject == subject)
        }
        let e = now + 60
        for payload in [#"{"sub":"bob","exp":\#(e),"iat":0,"ver":0}"#, #"{"sub":"bob","iat":0,"exp":\#(e)}"#,
                        #"{"sub":"bob","iat":1.0,"exp":\#(e),"ver":0}"#, #"{"sub":"bob","iat":01,"exp":\#(e),"ver":0}"#,
                        #"{"sub":"\u0062ob","iat":0,"exp":\#(e),"ver":0}"#, #"{"sub":"bob","iat":0,"exp":\#(e),"ver":0} "#,
                        #"{"sub":"bob","iat":0,"exp":\#(e),"ver":0,"x":1}"#, #"{"sub":"bob","iat":+1,"exp":\#(e),"ver":0}"#,
                        #"{"sub":"bob","iat":9223372036854775808,"exp":\#(e),"ver":0}"#,
                        #"{"sub":"bob","iat":0,"exp":\#(e),"ver":0,"jti":"a b"}"#] {
            #expect(TokenSigner.canonicalClaims(bytes(payload)) == nil, "\(payload)")
        }
        #expect(TokenSigner.canonicalClaims([0x7B, 0x22, 0x73, 0x75, 0x62, 0x22, 0x3A, 0x22, 0xFF] + bytes(#"","iat":0,"exp":1,"ver":0}"#)) == nil)
    }

    /// The signature decoded into a fixed buffer refuses exactly what
    /// `Base64.url.decode` refuses, and decodes to the same bytes.
    @Test func macDecodingMatchesBase64() throws {
        let alphabet = bytes("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        var generator = SystemRandomNumberGenerator()
        var samples: [[UInt8]] = []
        for _ in 0..<2000 {
            var text = (0..<TokenSigner.encodedMACLength).map { _ in alphabet.randomElement(using: &generator) ?? 65 }
            if Bool.random(using: &generator) {
                text[Int.random(in: 0..<text.count, using: &generator)] = [UInt8(ascii: "+"), UInt8(ascii: "/"),
                                                                           UInt8(ascii: "="), 0, 0xFF, UInt8(ascii: ".")].randomElement() ?? 0
            }
            samples.append(text)
        }
        for last in alphabet { samples.append(Array(repeating: UInt8(ascii: "A"), count: 42) + [last]) }
        for text in samples {
            var out = TokenSigner.zeroMAC
            let decoded = text.withUnsafeBufferPointer { TokenSigner.decodeMAC($0, into: &out) }
            let reference = Base64.url.decode(text)
            #expect(decoded == (reference != nil), "\(String(decoding: text, as: UTF8.self))")
            if decoded, let reference {
                #expect(withUnsafeBytes(of: &out) { Array($0) } == reference)
            }
        }
    }

    /// Signature segments of every length near 43: malformed exactly when not
    /// strict base64url, otherwise a bad signature.
    @Test func signatureSegmentErrors() throws {
        let token = try signer().sign(TokenClaims(subject: "bob", issuedAt: now, expiresAt: now + 60))
        let parts = token.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        #expect(try verifyError(token) == nil)
        for length in 0...50 {
            for fill in ["A", "B", "_", "=", "+"] {
                let sig = String(repeating: fill, count: length)
                let expected: TokenError = Base64.url.decode(sig) == nil ? .malformed : .badSignature
                #expect(try verifyError(parts[0] + "." + parts[1] + "." + sig) == expected, "\(length) \(fill)")
            }
        }
        // The right MAC with nonzero unused low bits in its last character.
        var sig = Array(parts[2].utf8)
        let alphabet = bytes("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        let index = try #require(alphabet.firstIndex(of: sig[42]))
        sig[42] = alphabet[index ^ 1]
        #expect(try verifyError(parts[0] + "." + parts[1] + "." + String(decoding: sig, as: UTF8.self)) == .malformed)
    }
}
