import Foundation
import JSON
import Testing
@testable import OAuth

@Suite("OAuth parsing and validation")
struct ParsingTests {
    @Test func formEncodingKeepsOnlyUnreservedBytes() {
        let encoded = String(decoding: FormEncoding.encode([("a b", "x+y/z=&é~-._"), ("k", "")]), as: UTF8.self)
        #expect(encoded == "a%20b=x%2By%2Fz%3D%26%C3%A9~-._&k=")
    }

    @Test func formDecodingHandlesPlusAndEscapesAndRefusesBadOnes() {
        #expect(FormEncoding.decodeComponent(ArraySlice("a+b%2Fc%C3%A9".utf8)) == "a b/cé")
        #expect(FormEncoding.decodeComponent(ArraySlice("%2".utf8)) == nil)
        #expect(FormEncoding.decodeComponent(ArraySlice("%zz".utf8)) == nil)
        #expect(FormEncoding.decodeComponent(ArraySlice("%FF".utf8)) == nil)  // not UTF-8
    }

    @Test func successAnswersParse() throws {
        let response = try TokenClient.parseSuccess(Array(#"{"access_token":"ya29.a","expires_in":"3599","token_type":"Bearer","refresh_token":"1//r"}"#.utf8))
        #expect(response.accessToken == "ya29.a")
        #expect(response.expiresIn == .seconds(3599))
        #expect(response.refreshToken == "1//r")
        let noExpiry = try TokenClient.parseSuccess(Array(#"{"access_token":"t"}"#.utf8))
        #expect(noExpiry.expiresIn == nil)
    }

    @Test(arguments: [
        #"not json"#, #"[]"#, #"{}"#, #"{"access_token":""}"#, #"{"access_token":5}"#,
        #"{"access_token":"a b"}"#, #"{"access_token":"t","expires_in":-1}"#, #"{"access_token":"t","expires_in":1.5}"#,
        #"{"access_token":"t","token_type":"mac"}"#, #"{"access_token":"t","refresh_token":7}"#,
        #"{"access_token":"t","access_token":"u"}"#,
    ])
    func unusableAnswersAreBadResponses(body: String) {
        let error = oauthError { try TokenClient.parseSuccess(Array(body.utf8)) }
        guard case .badResponse? = error else {
            Issue.record("\(body): expected badResponse, got \(String(describing: error))")
            return
        }
    }

    @Test func badResponseDescriptionsNeverQuoteTheToken() {
        let secret = "ya29.SECRET-VALUE"
        let error = oauthError { try TokenClient.parseSuccess(Array(#"{"access_token":"\#(secret) x"}"#.utf8)) }
        #expect(!(error.map(String.init(describing:)) ?? "").contains("SECRET"))
    }

    @Test func errorCodesAreMappedAndSanitised() {
        func interpret(_ status: Int, _ body: String, retryAfter: String? = nil) -> OAuthError? {
            oauthError { try TokenClient.interpret(HTTPSResponse(status: status, body: Array(body.utf8), retryAfter: retryAfter)) }
        }
        #expect(interpret(400, #"{"error":"invalid_grant","error_description":"Bad Request"}"#) == .reauthorize)
        #expect(interpret(400, #"{"error":"invalid_scope"}"#) == .rejected(code: "invalid_scope", status: 400))
        #expect(interpret(401, #"{"error":"ya29.secret token\u0000"}"#) == .rejected(code: "unrecognised", status: 401))
        #expect(interpret(401, "<html>") == .rejected(code: "HTTP 401 without an OAuth error code", status: 401))
        #expect(interpret(503, "", retryAfter: "30") == .unavailable(reason: "HTTP 503", retryAfter: .seconds(30)))
        #expect(interpret(503, "", retryAfter: "999999") == .unavailable(reason: "HTTP 503", retryAfter: OAuthError.defaultRetryAfter))
        #expect(interpret(429, "") == .unavailable(reason: "HTTP 429", retryAfter: OAuthError.defaultRetryAfter))
        #expect(interpret(204, "") == .badResponse("unexpected HTTP status 204"))
    }

    @Test func endpointURLsMustBeHTTPSOrLoopbackHTTP() throws {
        #expect(try EndpointURL("https://oauth2.googleapis.com/token").host == "oauth2.googleapis.com")
        #expect(try EndpointURL("http://127.0.0.1:8080/token").scheme == "http")
        #expect(try EndpointURL("http://localhost/token").scheme == "http")
        #expect(try EndpointURL("http://[::1]:99/token").scheme == "http")
        for bad in ["http://example.com/token", "ftp://127.0.0.1/x", "https://user:pw@example.com/token",
                    "https://example.com/token#frag", "https://exa mple.com/", "", "token", "http://127.0.0.2/x",
                    "http://localhost.example.com/"] {
            guard case .invalidConfiguration? = oauthError({ try EndpointURL(bad) }) else {
                Issue.record("\(bad) was accepted")
                continue
            }
        }
        // The password never appears in the error.
        #expect(!(oauthError { try EndpointURL("https://user:hunter2@example.com/") }.map(String.init(describing:)) ?? "").contains("hunter2"))
    }

    @Test func scopesAreRFC6749Tokens() throws {
        try OAuthScope.validate("https://outlook.office.com/SMTP.Send offline_access")
        for bad in ["", "a  b", " a", "a ", "a\"b", "a\\b", "ü", "a\tb"] {
            #expect(oauthError { try OAuthScope.validate(bad) } != nil, "scope \(bad)")
        }
    }

    @Test func secretsAreRedactedEverywhere() throws {
        let secret = "client-secret-VALUE", refresh = "1//refresh-VALUE"
        let endpoint = TokenEndpoint(url: try EndpointURL("https://id.example/token"), clientID: "cid", clientSecret: secret)
        let credentials = OAuthCredentials(endpoint: endpoint, refreshToken: refresh, scope: "s")
        let response = TokenResponse(accessToken: "ya29.ACCESS-VALUE", tokenType: "Bearer", expiresIn: .seconds(1),
                                     refreshToken: refresh, scope: nil)
        for value in [endpoint, credentials, response] as [Any] {
            let shown = everyRendering(of: value)
            #expect(!shown.contains("VALUE"), "\(shown)")
        }
        let key = try AccessTokenKey(user: "alice", mailbox: "alice@example.com", credentials: credentials)
        #expect(!everyRendering(of: key).contains("VALUE"))
    }

    @Test func keysDifferWhenTheIntegrationDiffersButNotWhenOnlyTheRefreshTokenDoes() throws {
        let endpoint = TokenEndpoint(url: try EndpointURL("https://id.example/token"), clientID: "cid", clientSecret: "s")
        let base = OAuthCredentials(endpoint: endpoint, refreshToken: "r1", scope: "x")
        let key = try AccessTokenKey(user: "alice", mailbox: "a@example.com", credentials: base)
        var rotated = base
        rotated.refreshToken = "r2"
        #expect(try AccessTokenKey(user: "alice", mailbox: "a@example.com", credentials: rotated) == key)
        var otherSecret = base
        otherSecret.endpoint.clientSecret = "t"
        #expect(try AccessTokenKey(user: "alice", mailbox: "a@example.com", credentials: otherSecret) != key)
        #expect(try AccessTokenKey(user: "alice", mailbox: "b@example.com", credentials: base) != key)
        #expect(try AccessTokenKey(user: "bob", mailbox: "a@example.com", credentials: base) != key)
        // Composed and decomposed é are different users (bytes, not canonical equivalence).
        #expect(try AccessTokenKey(user: "\u{e9}", mailbox: "m", credentials: base)
            != AccessTokenKey(user: "e\u{301}", mailbox: "m", credentials: base))
    }
}
