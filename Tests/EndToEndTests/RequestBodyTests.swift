import Foundation
import MailgateTesting
import Testing

/// A user on the main capture server with a token.
private func sender(_ prefix: String) async throws -> (E2E, String) {
    let env = try await E2E.get()
    let user = try await env.makeMailUser(prefix)
    return (env, try await env.token(user.name))
}

/// After a hostile request: the server still delivers a normal message.
private func expectStillServing(_ env: E2E, token: String, sourceLocation: SourceLocation = #_sourceLocation) async throws {
    let marker = uniqueMarker("alive")
    let response = try await env.send(token: token, to: "r@example.org", subject: marker, message: "still here")
    #expect(response.status == 200, "server must still answer: \(response)", sourceLocation: sourceLocation)
}

private func expect422List(_ response: HTTPResponse, field: String? = nil, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(response.status == 422, "\(response)", sourceLocation: sourceLocation)
    let list = response.detailList
    #expect(list?.isEmpty == false, "detail must be FastAPI's list: \(response)", sourceLocation: sourceLocation)
    #expect(response.code == "validation_error", "\(response)", sourceLocation: sourceLocation)
    if let field {
        let locations = (list ?? []).compactMap { $0["loc"] as? [Any] }.map { $0.map { "\($0)" } }
        #expect(locations.contains { $0.contains(field) }, "loc names \(field): \(response)", sourceLocation: sourceLocation)
    }
}

/// Issue 2/4: the JSON body shape (422), sizes (413) and Content-Length lies.
@Suite("Request bodies: JSON shape, size and Content-Length")
struct RequestBodyTests {
    // MARK: JSON shape → 422

    @Test(arguments: [#"{"to":"#, "not json", #"{"to":"a@example.org","subject":"s","message":"m"} trailing"#,
                      #"{'to':'a@example.org'}"#, #"{"to":"a@example.org","subject":"s","message":"m",}"#, ""])
    func invalidJSONIs422(body: String) async throws {
        let (env, token) = try await sender("badjson")
        expect422List(try await env.sendRaw(token: token, body: Array(body.utf8)))
    }

    @Test(arguments: ["[]", #""a string""#, "42", "null", "true", #"[{"to":"a@example.org","subject":"s","message":"m"}]"#])
    func jsonThatIsNotAnObjectIs422(body: String) async throws {
        let (env, token) = try await sender("notobj")
        expect422List(try await env.sendRaw(token: token, body: Array(body.utf8)))
    }

    @Test func missingFieldIs422NamingIt() async throws {
        let (env, token) = try await sender("missing")
        expect422List(try await env.sendRaw(token: token, body: Array(#"{"to":"a@example.org","subject":"s"}"#.utf8)), field: "message")
        expect422List(try await env.sendRaw(token: token, body: Array(#"{"subject":"s","message":"m"}"#.utf8)), field: "to")
        expect422List(try await env.sendRaw(token: token, body: Array("{}".utf8)), field: "subject")
    }

    @Test(arguments: [(#"{"to":1,"subject":"s","message":"m"}"#, "to"), (#"{"to":"a@example.org","subject":null,"message":"m"}"#, "subject"),
                      (#"{"to":"a@example.org","subject":"s","message":["m"]}"#, "message"), (#"{"to":{"a":"b"},"subject":"s","message":"m"}"#, "to"),
                      (#"{"to":"a@example.org","subject":true,"message":"m"}"#, "subject")])
    func wrongTypeIs422NamingTheField(body: String, field: String) async throws {
        let (env, token) = try await sender("wrongtype")
        expect422List(try await env.sendRaw(token: token, body: Array(body.utf8)), field: field)
    }

    @Test func duplicateKeysAreRefusedAndNothingIsSent() async throws {
        let (env, token) = try await sender("dupkey")
        let marker = uniqueMarker("dupkey")
        let body = #"{"to":"first@example.org","subject":"\#(marker)","message":"m","to":"second@example.org"}"#
        let response = try await env.sendRaw(token: token, body: Array(body.utf8))
        #expect([400, 422].contains(response.status), "\(response)")
        #expect(response.isJSON)
        #expect(response.code == (response.status == 422 ? "validation_error" : "invalid_request"), "\(response)")
        #expect(env.capture.messages(containing: marker).isEmpty)
    }

    @Test func deepNestingIs4xxAndServerSurvives() async throws {
        let (env, token) = try await sender("deep")
        for body in [String(repeating: "[", count: 10_000), String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000),
                     #"{"to":"a@example.org","subject":"s","message":"m","x":"# + String(repeating: #"{"a":"#, count: 50_000) + "1" + String(repeating: "}", count: 50_000) + "}"] {
            let response = try await env.sendRaw(token: token, body: Array(body.utf8))
            #expect(response.status == 422, "\(response)")
            #expect(response.code == "validation_error", "\(response)")
        }
        try await expectStillServing(env, token: token)
    }

    @Test(arguments: [[0xFF], [0xC0, 0xAF], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xE2, 0x82]] as [[UInt8]])
    func invalidUTF8IsRefused(bytes: [UInt8]) async throws {
        let (env, token) = try await sender("badutf8")
        let marker = uniqueMarker("badutf8")
        let body = Array(#"{"to":"a@example.org","subject":"\#(marker)"#.utf8) + bytes + Array(#"","message":"m"}"#.utf8)
        let response = try await env.sendRaw(token: token, body: body)
        #expect([400, 422].contains(response.status), "\(response)")
        #expect(response.code == (response.status == 422 ? "validation_error" : "invalid_request"), "\(response)")
        #expect(env.capture.messages(containing: marker).isEmpty)
    }

    @Test(arguments: [#"\ud800"#, #"\udc00"#, #"\ud800\u0041"#])
    func loneSurrogateEscapesAreRefused(escape: String) async throws {
        let (env, token) = try await sender("surrogate")
        let marker = uniqueMarker("surrogate")
        let body = #"{"to":"a@example.org","subject":"\#(marker)\#(escape)","message":"m"}"#
        let response = try await env.sendRaw(token: token, body: Array(body.utf8))
        #expect([400, 422].contains(response.status), "\(response)")
        #expect(response.code == (response.status == 422 ? "validation_error" : "invalid_request"), "\(response)")
        #expect(env.capture.messages(containing: marker).isEmpty)
    }

    // MARK: Size → 413

    /// Over the shipped `client_max_body_size 36m` of the send route.
    @Test func bodyOverNginxLimitIs413() async throws {
        let (env, token) = try await sender("big")
        let body = Array(#"{"to":"a@example.org","subject":"s","message":""#.utf8) + [UInt8](repeating: 0x61, count: 36 << 20)
            + Array(#""}"#.utf8)
        let response = try await env.sendRaw(token: token, body: body)
        #expect(response.status == 413, "\(response)")
    }

    @Test func bodyOverMailgateMaxBodyIs413JSONThroughFastCGI() async throws {
        let (env, token) = try await sender("maxbody")
        let aux = try await env.aux()  // mailgate --max-body 1000 behind its own nginx
        let marker = uniqueMarker("maxbody")
        let message = String(repeating: "b", count: 2000)
        let response = try await env.send(token: token, to: "r@example.org", subject: marker, message: message, port: aux.port)
        #expect(response.status == 413, "\(response)")
        #expect(response.isJSON && response.detail != nil, "Mailgate's own JSON 413: \(response)")
        #expect(response.code == "body_too_large", "\(response)")
        #expect(env.capture.messages(containing: marker).isEmpty)
        // The same instance still serves a small request. (Its SMTP deadline
        // is 3 s: on a loaded machine the Python SMTP server can take longer
        // to accept, and Mailgate rightly answers 504; try again then.)
        var small = try await env.send(token: token, to: "r@example.org", subject: uniqueMarker("small"), message: "ok", port: aux.port)
        for _ in 0..<3 where small.status == 504 {
            small = try await env.send(token: token, to: "r@example.org", subject: uniqueMarker("small"), message: "ok", port: aux.port)
        }
        #expect(small.status == 200, "\(small)")
    }

    @Test func declaredLengthOverMaxBodyIs413WithoutReadingInCGIMode() async throws {
        let (env, token) = try await sender("cgi413")
        // 2 MB declared, nothing on stdin: answering at all proves it did not wait for the body.
        let (response, run) = try await env.cgi(params: ["HTTP_AUTHORIZATION": "Bearer " + token, "CONTENT_LENGTH": "2000000",
                                                         "CONTENT_TYPE": "application/json"],
                                                extraArguments: ["--max-body", "1000"])
        #expect(run.ok)
        #expect(response.status == 413, "\(response)")
        #expect(response.isJSON)
        #expect(response.code == "body_too_large", "\(response)")
    }

    // MARK: Content-Length lies

    @Test(arguments: ["-1", "abc", "+5", " 5", "0x10", "99999999999999999999999", "1e3"])
    func invalidContentLengthInCGIModeIs400(length: String) async throws {
        let (env, token) = try await sender("cgicl")
        let body = Array(#"{"to":"a@example.org","subject":"s","message":"m"}"#.utf8)
        let (response, run) = try await env.cgi(params: ["HTTP_AUTHORIZATION": "Bearer " + token, "CONTENT_LENGTH": length,
                                                         "CONTENT_TYPE": "application/json"], stdin: body)
        #expect(run.ok, "\(run.status) \(run.stderr)")
        #expect([400, 413].contains(response.status), "\(length): \(response)")
        #expect(response.isJSON)
        #expect(response.code == (response.status == 413 ? "body_too_large" : "invalid_request"), "\(length): \(response)")
    }

    @Test func missingContentLengthInCGIModeIsAClear4xx() async throws {
        let (env, token) = try await sender("cgino")
        let body = Array(#"{"to":"a@example.org","subject":"s","message":"m"}"#.utf8)
        let (response, run) = try await env.cgi(params: ["HTTP_AUTHORIZATION": "Bearer " + token, "CONTENT_TYPE": "application/json"],
                                                stdin: body)
        #expect(run.ok)
        #expect((400..<500).contains(response.status) && response.status != 401, "\(response)")
        #expect(response.isJSON)
        #expect(response.code != nil, "\(response)")
    }

    @Test func contentLengthLargerThanBodyInCGIModeIs400() async throws {
        let (env, token) = try await sender("cgilong")
        let body = Array(#"{"to":"a@example.org","subject":"s","message":"m"}"#.utf8)
        let (response, run) = try await env.cgi(params: ["HTTP_AUTHORIZATION": "Bearer " + token, "CONTENT_LENGTH": String(body.count + 100),
                                                         "CONTENT_TYPE": "application/json"], stdin: body)
        #expect(run.ok)
        #expect(response.status == 400, "\(response)")
        #expect(response.detail?.contains("incomplete") == true, "\(response)")
        #expect(response.code == "invalid_request", "\(response)")
    }

    @Test func contentLengthSmallerThanBodyInCGIModeIs422() async throws {
        let (env, token) = try await sender("cgishort")
        let body = Array(#"{"to":"a@example.org","subject":"s","message":"m"}"#.utf8)
        let (response, run) = try await env.cgi(params: ["HTTP_AUTHORIZATION": "Bearer " + token, "CONTENT_LENGTH": String(body.count - 5),
                                                         "CONTENT_TYPE": "application/json"], stdin: body)
        #expect(run.ok)
        #expect(response.status == 422, "\(response)")
        #expect(response.code == "validation_error", "\(response)")
    }

    @Test func contentLengthSmallerThanBodyThroughNginxIs422AndServerSurvives() async throws {
        let (env, token) = try await sender("shortcl")
        let marker = uniqueMarker("shortcl")
        let body = Array(#"{"to":"a@example.org","subject":"\#(marker)","message":"m"}"#.utf8)
        let raw = HTTP.request("POST", "/smtp/send-email", headers: [("Content-Type", "application/json"),
                                                                     ("Authorization", "Bearer " + token)],
                               body: body, contentLength: String(body.count - 10))
        let response = try await env.http(raw)
        #expect(response.status == 422, "\(response)")
        #expect(response.code == "validation_error", "\(response)")
        #expect(env.capture.messages(containing: marker).isEmpty)
        try await expectStillServing(env, token: token)
    }

    @Test func contentLengthLargerThanBodyThroughNginxDoesNotHang() async throws {
        let (env, token) = try await sender("longcl")
        let marker = uniqueMarker("longcl")
        let body = Array(#"{"to":"a@example.org","subject":"\#(marker)","message":"m"}"#.utf8)
        let raw = HTTP.request("POST", "/smtp/send-email", headers: [("Content-Type", "application/json"),
                                                                     ("Authorization", "Bearer " + token)],
                               body: body, contentLength: String(body.count + 100))
        // The client half-closes: nginx sees the body end early and gives up
        // (a 400, or closing without an answer); nothing is sent.
        do {
            let response = try await env.http(raw, halfClose: true, timeout: 20)
            #expect((400..<500).contains(response.status), "\(response)")
        } catch let error as HarnessError where error.description.contains("no header end") {
            // nginx closed the connection without an answer: acceptable, not a hang.
        }
        #expect(env.capture.messages(containing: marker).isEmpty)
        try await expectStillServing(env, token: token)
    }

    @Test(arguments: ["-1", "abc", "1 2"])
    func invalidContentLengthThroughNginxIs400(length: String) async throws {
        let (env, token) = try await sender("nginxcl")
        let raw = HTTP.request("POST", "/smtp/send-email", headers: [("Content-Type", "application/json"), ("Authorization", "Bearer " + token)],
                               body: Array("{}".utf8), contentLength: length)
        let response = try await env.http(raw)
        #expect(response.status == 400, "\(response)")
        try await expectStillServing(env, token: token)
    }

    @Test func missingContentLengthThroughNginxIsAClear4xx() async throws {
        let (env, token) = try await sender("nocl")
        let raw = HTTP.request("POST", "/smtp/send-email", headers: [("Content-Type", "application/json"), ("Authorization", "Bearer " + token)],
                               omitContentLength: true)
        let response = try await env.http(raw)
        #expect((400..<500).contains(response.status) && response.status != 401, "\(response)")
        try await expectStillServing(env, token: token)
    }

    @Test func chunkedBodyThroughNginxIsDelivered() async throws {
        let (env, token) = try await sender("chunked")
        let marker = uniqueMarker("chunked")
        let json = Array(#"{"to":"r@example.org","subject":"\#(marker)","message":"chunked body"}"#.utf8)
        let half = json.count / 2
        var body: [UInt8] = []
        for part in [json[..<half], json[half...]] {
            body += Array(String(part.count, radix: 16).utf8) + [13, 10] + part + [13, 10]
        }
        body += Array("0\r\n\r\n".utf8)
        let raw = HTTP.request("POST", "/smtp/send-email", headers: [("Content-Type", "application/json"), ("Authorization", "Bearer " + token),
                                                                     ("Transfer-Encoding", "chunked")],
                               body: body, omitContentLength: true)
        let response = try await env.http(raw)
        // nginx buffers a chunked body and passes its length on; either it is
        // delivered, or refused with a clear 4xx; never a hang or a 5xx.
        #expect(response.status == 200 || (400..<500).contains(response.status), "\(response)")
        if response.status == 200 { _ = try await env.capture.waitForMessage(containing: marker) }
    }
}
