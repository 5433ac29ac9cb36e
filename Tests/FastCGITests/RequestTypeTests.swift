import FastCGI
import Testing

@Suite struct RequestTypeTests {
    @Test func headersByTheirHTTPNameInAnyCase() {
        let request = CGIRequest(params: [
            "HTTP_AUTHORIZATION": "Bearer x", "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": "12",
            "HTTP_X_REQUEST_ID": "abc",
        ], body: .complete([]))
        #expect(request.header("Authorization") == "Bearer x")
        #expect(request.header("authorization") == "Bearer x")
        #expect(request.header("Content-Type") == "application/json")
        #expect(request.header("content-length") == "12")
        #expect(request.header("X-Request-Id") == "abc")
        #expect(request.header("Accept") == nil)
        // Content-Type is never read from an HTTP_ parameter (CGI does not send one).
        let spoofed = CGIRequest(params: ["HTTP_CONTENT_TYPE": "text/plain"], body: .complete([]))
        #expect(spoofed.header("Content-Type") == nil)
    }

    @Test func methodAndPath() {
        #expect(CGIRequest(params: [:], body: .complete([])).method == "GET")
        let nginx = CGIRequest(params: ["REQUEST_METHOD": "POST", "DOCUMENT_URI": "/token", "REQUEST_URI": "/x?y",
                                        "SCRIPT_NAME": "/s"], body: .complete([]))
        #expect(nginx.method == "POST")
        #expect(nginx.path == "/token")
        let apache = CGIRequest(params: ["SCRIPT_NAME": "/cgi-bin/mailgate", "PATH_INFO": "/token", "REQUEST_URI": "/x"],
                                body: .complete([]))
        #expect(apache.path == "/cgi-bin/mailgate/token")
        let bare = CGIRequest(params: ["REQUEST_URI": "/smtp/send-email?debug=1"], body: .complete([]))
        #expect(bare.path == "/smtp/send-email")
        #expect(CGIRequest(params: [:], body: .complete([])).path == "")
    }
}
