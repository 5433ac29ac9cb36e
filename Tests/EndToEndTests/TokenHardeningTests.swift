import Foundation
import MailgateTesting
import Testing
import Crypto

/// One user with a working integration, shared by the hostile-token tests
/// (they never change its state). Created on first use.
private let victim = Task { () throws -> TestUser in
    let env = try await E2E.get()
    return try await env.makeMailUser("victim")
}

/// Sends a harmless message with `token` through nginx.
private func attempt(_ token: String) async throws -> HTTPResponse {
    let env = try await E2E.get()
    return try await env.send(token: token, to: "r@example.org", subject: uniqueMarker("tok"), message: "token test")
}

private func expectRefused(_ response: HTTPResponse, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(response.status == 401, "\(response)", sourceLocation: sourceLocation)
    #expect(response.header("WWW-Authenticate") == "Bearer", sourceLocation: sourceLocation)
    #expect(response.detail == "Could not validate credentials", "\(response)", sourceLocation: sourceLocation)
    #expect(response.code == "invalid_token", "\(response)", sourceLocation: sourceLocation)
}

/// Issue 4, tokens: every hostile token is refused with 401 end to end.
@Suite("Hostile tokens through nginx")
struct TokenHardeningTests {
    // MARK: Controls: the crafting itself produces tokens Mailgate accepts.

    @Test func handCraftedValidTokenIsAccepted() async throws {
        let env = try await E2E.get()
        let user = try await victim.value
        let token = try TokenCraft.make(payload: TokenCraft.claims(sub: user.name), key: try env.tokenKey)
        let response = try await attempt(token)
        #expect(response.status == 200, "\(response)")
    }

    @Test func expiredOnlyWithinLeewayIsAccepted() async throws {
        let env = try await E2E.get()
        let user = try await victim.value
        let token = try TokenCraft.make(payload: TokenCraft.claims(sub: user.name, exp: String(TokenCraft.now - 5)),
                                        key: try env.tokenKey)
        let response = try await attempt(token)
        #expect(response.status == 200, "exp 5 s ago is inside the 30 s leeway: \(response)")
    }

    // MARK: Algorithms

    @Test(arguments: ["none", "None", "NONE"])
    func algNoneIsRefused(alg: String) async throws {
        let user = try await victim.value
        let unsigned = TokenCraft.encode(#"{"alg":"\#(alg)","typ":"JWT"}"#) + "."
            + TokenCraft.encode(TokenCraft.claims(sub: user.name)) + "."
        expectRefused(try await attempt(unsigned))
        // And with a (valid HS256) signature attached, in case the empty one is what fails.
        let env = try await E2E.get()
        let signed = try TokenCraft.make(header: #"{"alg":"\#(alg)","typ":"JWT"}"#,
                                         payload: TokenCraft.claims(sub: user.name), key: try env.tokenKey)
        expectRefused(try await attempt(signed))
    }

    @Test(arguments: ["HS384", "HS512"])
    func otherHMACAlgorithmsMintedByPyJWTAreRefused(alg: String) async throws {
        let user = try await victim.value
        let token = try await PyJWT.encode(payloadJSON: TokenCraft.claims(sub: user.name), algorithm: alg)
        expectRefused(try await attempt(token))
    }

    @Test(arguments: ["RS256", "ES256"])
    func asymmetricAlgorithmsAreRefused(alg: String) async throws {
        let user = try await victim.value
        // A real signature with a fresh private key...
        let keySource = alg == "RS256"
            ? "__import__('cryptography.hazmat.primitives.asymmetric.rsa', fromlist=['x']).generate_private_key(65537, 2048)"
            : "__import__('cryptography.hazmat.primitives.asymmetric.ec', fromlist=['x']).generate_private_key(__import__('cryptography.hazmat.primitives.asymmetric.ec', fromlist=['x']).SECP256R1())"
        let real = try await PyJWT.encode(payloadJSON: TokenCraft.claims(sub: user.name), algorithm: alg, keySource: keySource)
        expectRefused(try await attempt(real))
        // ...and the key-confusion attack: that header, MAC'd with the HMAC key.
        let env = try await E2E.get()
        let confused = try TokenCraft.make(header: #"{"alg":"\#(alg)","typ":"JWT"}"#,
                                           payload: TokenCraft.claims(sub: user.name), key: try env.tokenKey)
        expectRefused(try await attempt(confused))
    }

    @Test func missingAlgIsRefused() async throws {
        let env = try await E2E.get()
        let user = try await victim.value
        let token = try TokenCraft.make(header: #"{"typ":"JWT"}"#, payload: TokenCraft.claims(sub: user.name),
                                        key: try env.tokenKey)
        expectRefused(try await attempt(token))
    }

    // MARK: Signatures and keys

    @Test func emptySignatureIsRefused() async throws {
        let user = try await victim.value
        let token = TokenCraft.encode(TokenCraft.hs256Header) + "." + TokenCraft.encode(TokenCraft.claims(sub: user.name)) + "."
        expectRefused(try await attempt(token))
    }

    @Test func signatureByAnotherKeyIsRefused() async throws {
        let user = try await victim.value
        let otherKey = try Crypto.randomBytes(64)
        let token = try TokenCraft.make(payload: TokenCraft.claims(sub: user.name), key: otherKey)
        expectRefused(try await attempt(token))
    }

    @Test func tokenSignedWithEmptyKeyIsRefused() async throws {
        let user = try await victim.value
        let token = try TokenCraft.make(payload: TokenCraft.claims(sub: user.name), key: [])
        expectRefused(try await attempt(token))
    }

    @Test func truncatedKeySignatureIsRefused() async throws {
        let env = try await E2E.get()
        let user = try await victim.value
        let token = try TokenCraft.make(payload: TokenCraft.claims(sub: user.name), key: Array(try env.tokenKey.prefix(32)))
        expectRefused(try await attempt(token))
    }

    // MARK: Time claims

    @Test func expiredTokenMintedByPyJWTIsRefused() async throws {
        let user = try await victim.value
        let now = TokenCraft.now
        let token = try await PyJWT.encode(payloadJSON: #"{"sub":"\#(user.name)","iat":\#(now - 7200),"exp":\#(now - 3600),"ver":0}"#)
        expectRefused(try await attempt(token))
    }

    @Test func expiredJustBeyondLeewayIsRefused() async throws {
        let env = try await E2E.get()
        let user = try await victim.value
        let token = try TokenCraft.make(payload: TokenCraft.claims(sub: user.name, exp: String(TokenCraft.now - 120)),
                                        key: try env.tokenKey)
        expectRefused(try await attempt(token))
    }

    @Test(arguments: ["missing", "string", "milliseconds", "float", "null", "huge"])
    func badExpIsRefused(kind: String) async throws {
        let env = try await E2E.get()
        let user = try await victim.value
        let exp: String? = switch kind {
        case "missing": nil
        case "string": "\"\(TokenCraft.now + 600)\""
        case "milliseconds": String((TokenCraft.now + 600) * 1000)
        case "float": "\(TokenCraft.now + 600).5"
        case "null": "null"
        default: "99999999999999999999999"
        }
        let token = try TokenCraft.make(payload: TokenCraft.claims(sub: user.name, exp: exp), key: try env.tokenKey)
        expectRefused(try await attempt(token))
    }

    @Test func notBeforeInTheFutureIsRefused() async throws {
        let env = try await E2E.get()
        let user = try await victim.value
        let token = try TokenCraft.make(
            payload: TokenCraft.claims(sub: user.name, extra: "\"nbf\":\(TokenCraft.now + 3600)"), key: try env.tokenKey)
        expectRefused(try await attempt(token))
    }

    // MARK: Subject and version

    @Test func missingSubIsRefused() async throws {
        let env = try await E2E.get()
        let token = try TokenCraft.make(payload: TokenCraft.claims(sub: nil), key: try env.tokenKey)
        expectRefused(try await attempt(token))
    }

    @Test func unknownSubIsRefused() async throws {
        let env = try await E2E.get()
        let token = try TokenCraft.make(payload: TokenCraft.claims(sub: "ghost-\(Counter.shared.next())"), key: try env.tokenKey)
        expectRefused(try await attempt(token))
    }

    @Test func nonStringSubIsRefused() async throws {
        let env = try await E2E.get()
        let payload = #"{"sub":["x"],"exp":\#(TokenCraft.now + 600),"ver":0}"#
        expectRefused(try await attempt(try TokenCraft.make(payload: payload, key: try env.tokenKey)))
    }

    @Test func disabledUserHandCraftedTokenIsRefused() async throws {
        let env = try await E2E.get()
        let user = try await env.makeMailUser("tokdis")
        let token = try TokenCraft.make(payload: TokenCraft.claims(sub: user.name), key: try env.tokenKey)
        #expect(try await attempt(token).status == 200)
        try await env.cli(["user", "disable", user.name])
        expectRefused(try await attempt(token))
        // Enabling again does not resurrect earlier tokens.
        try await env.cli(["user", "enable", user.name])
        expectRefused(try await attempt(token))
    }

    @Test func revokedVersionAndFutureVersionAreRefused() async throws {
        let env = try await E2E.get()
        let user = try await env.makeMailUser("tokver")
        try await env.cli(["user", "revoke-tokens", user.name])  // version now 1
        let key = try env.tokenKey
        for ver in ["0", "2", "-1", "\"1\""] {
            let token = try TokenCraft.make(payload: TokenCraft.claims(sub: user.name, ver: ver), key: key)
            expectRefused(try await attempt(token))
        }
        let current = try TokenCraft.make(payload: TokenCraft.claims(sub: user.name, ver: "1"), key: key)
        #expect(try await attempt(current).status == 200, "version 1 is current")
    }

    // MARK: Encoding

    @Test func base64PaddingIsRefused() async throws {
        let env = try await E2E.get()
        let user = try await victim.value
        // Pick a payload whose length is not a multiple of 3, so standard base64 pads.
        var payload = TokenCraft.claims(sub: user.name)
        while payload.utf8.count % 3 == 0 { payload = TokenCraft.claims(sub: user.name, extra: "\"p\":\"\(String(repeating: "x", count: payload.count % 7 + 1))\"") }
        let padded = Data(payload.utf8).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
        try #require(padded.hasSuffix("="))
        let token = try TokenCraft.sign(encodedHeader: TokenCraft.encode(TokenCraft.hs256Header), encodedPayload: padded,
                                        key: try env.tokenKey)
        expectRefused(try await attempt(token))
        // Padding on the signature only.
        let valid = try TokenCraft.make(payload: TokenCraft.claims(sub: user.name), key: try env.tokenKey)
        expectRefused(try await attempt(valid + "="))
    }

    @Test(arguments: ["+", "/"])
    func standardBase64AlphabetIsRefused(character: String) async throws {
        let env = try await E2E.get()
        let user = try await victim.value
        let urlChar = character == "+" ? "-" : "_"
        // Find filler that makes the base64url payload contain - or _.
        var encoded = ""
        for filler in ["?>", "??>", ">?", "~~~", "\u{FF}\u{FE}", "ÿþ", "~>?", "???"] {
            for n in 1...6 {
                let candidate = TokenCraft.encode(TokenCraft.claims(sub: user.name,
                                                                    extra: "\"f\":\"\(String(repeating: filler, count: n))\""))
                if candidate.contains(urlChar) { encoded = candidate; break }
            }
            if !encoded.isEmpty { break }
        }
        try #require(!encoded.isEmpty, "no filler produced \(urlChar)")
        let standard = encoded.replacingOccurrences(of: urlChar, with: character)
        let token = try TokenCraft.sign(encodedHeader: TokenCraft.encode(TokenCraft.hs256Header), encodedPayload: standard,
                                        key: try env.tokenKey)
        expectRefused(try await attempt(token))
        // Control: the same payload in base64url, signed the same way, is accepted.
        let control = try TokenCraft.sign(encodedHeader: TokenCraft.encode(TokenCraft.hs256Header), encodedPayload: encoded,
                                          key: try env.tokenKey)
        #expect(try await attempt(control).status == 200)
    }

    @Test func twoAndFourSegmentsAreRefused() async throws {
        let env = try await E2E.get()
        let user = try await victim.value
        let valid = try TokenCraft.make(payload: TokenCraft.claims(sub: user.name), key: try env.tokenKey)
        let parts = valid.split(separator: ".").map(String.init)
        expectRefused(try await attempt(parts[0] + "." + parts[1]))
        expectRefused(try await attempt(valid + "." + parts[2]))
        expectRefused(try await attempt(valid + "."))
        // Four segments where the MAC covers the first three.
        let four = try TokenCraft.sign(encodedHeader: parts[0], encodedPayload: parts[1] + "." + parts[1], key: try env.tokenKey)
        expectRefused(try await attempt(four))
    }

    @Test func eightKiBOfJunkIsRefusedAndServerStillAnswers() async throws {
        let env = try await E2E.get()
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
        // Through nginx (its header buffer is 8 KiB per line: keep the line under it).
        let junk = String((0..<8100).map { _ in alphabet.randomElement()! })
        expectRefused(try await attempt(junk))
        let dots = String(repeating: ".", count: 8000)
        expectRefused(try await attempt(dots))
        // Plain CGI: no nginx limit in front, so 8 KiB + 1 and 64 KiB.
        let user = try await victim.value
        let valid = try TokenCraft.make(payload: TokenCraft.claims(sub: user.name, extra: "\"x\":\"\(String(repeating: "y", count: 9000))\""),
                                        key: try env.tokenKey)
        for token in [String((0..<8193).map { _ in alphabet.randomElement()! }), String(repeating: "A", count: 65536), valid] {
            let (response, run) = try await env.cgi(params: ["HTTP_AUTHORIZATION": "Bearer " + token, "CONTENT_LENGTH": "0"])
            expectRefused(response)
            #expect(run.ok, "CGI run: \(run.status) \(run.stderr)")
        }
        // Still serving.
        #expect(try await attempt(try TokenCraft.make(payload: TokenCraft.claims(sub: user.name), key: try env.tokenKey)).status == 200)
    }

    @Test func nonUTF8BytesInTokenAreRefused() async throws {
        let env = try await E2E.get()
        let user = try await victim.value
        let valid = try TokenCraft.make(payload: TokenCraft.claims(sub: user.name), key: try env.tokenKey)
        let body = Array(#"{"to":"r@example.org","subject":"s","message":"m"}"#.utf8)
        var raw = Array("POST /smtp/send-email HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nAuthorization: Bearer ".utf8)
        raw += Array(valid.utf8) + [0xFF, 0xFE, 0x80]
        raw += Array("\r\nContent-Length: \(body.count)\r\n\r\n".utf8) + body
        expectRefused(try await env.http(raw))
        // Non-UTF-8 in the middle of a segment.
        var inner = Array("POST /smtp/send-email HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nAuthorization: Bearer ".utf8)
        var tokenBytes = Array(valid.utf8)
        tokenBytes[10] = 0xC3
        inner += tokenBytes + Array("\r\nContent-Length: \(body.count)\r\n\r\n".utf8) + body
        expectRefused(try await env.http(inner))
    }

    @Test func criticalHeaderAndNonObjectHeaderAreRefused() async throws {
        let env = try await E2E.get()
        let user = try await victim.value
        let key = try env.tokenKey
        for header in [#"{"alg":"HS256","crit":["exp"],"exp":1}"#, #"["HS256"]"#, #""HS256""#, #"{"alg":["HS256"]}"#, #"{"alg":"hs256"}"#] {
            expectRefused(try await attempt(try TokenCraft.make(header: header, payload: TokenCraft.claims(sub: user.name), key: key)))
        }
    }
}

/// Interoperability with PyJWT both ways.
@Suite("PyJWT interop")
struct PyJWTInteropTests {
    @Test func tokenMintedByPyJWTIsAccepted() async throws {
        let user = try await victim.value
        let now = TokenCraft.now
        let withVersion = try await PyJWT.encode(payloadJSON: #"{"sub":"\#(user.name)","iat":\#(now),"exp":\#(now + 600),"ver":0}"#)
        #expect(try await attempt(withVersion).status == 200)
        let withoutVersion = try await PyJWT.encode(payloadJSON: #"{"sub":"\#(user.name)","exp":\#(now + 600)}"#)
        #expect(try await attempt(withoutVersion).status == 200)
    }

    @Test func tokenFromLoginVerifiesInPyJWT() async throws {
        let env = try await E2E.get()
        let user = try await env.makeUser("pyjwt")
        let login = try await env.login(user.name, user.password)
        let token = try #require(login.json?["access_token"] as? String, "\(login)")
        let claims = try await PyJWT.decode(token)
        #expect(claims["sub"] as? String == user.name)
        let exp = try #require(claims["exp"] as? Int)
        let iat = try #require(claims["iat"] as? Int)
        #expect(exp - iat == login.json?["expires_in"] as? Int)
        // The CLI's long-lived token too.
        let issued = try await env.token(user.name, ttl: "90d")
        let issuedClaims = try await PyJWT.decode(issued)
        #expect(issuedClaims["sub"] as? String == user.name)
        #expect((issuedClaims["exp"] as? Int ?? 0) - (issuedClaims["iat"] as? Int ?? 0) == 90 * 86400)
    }
}
