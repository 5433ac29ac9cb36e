import FastCGI
import Foundation
@testable import Mailgate
import Testing

/// U+0301 U+0316 repeated: Swift's String `==` and hashing on this run are
/// quadratic (canonical reordering), so request names and values must be
/// compared by bytes.
private func marks(pairs: Int) -> String { String(repeating: "\u{301}\u{316}", count: pairs) }

private let precomposed = "\u{E9}"    // é: C3 A9
private let decomposed = "e\u{301}"   // e + U+0301: 65 CC 81

@Suite struct FormDecodingTests {
    func decode(_ form: String, keeping names: [String]) throws(FormDecoding.Failure) -> FormFields {
        try FormDecoding.decode(Array(form.utf8), keeping: names)
    }

    @Test func canonicallyEquivalentNamesAreDifferentFields() throws {
        let fields = try decode("%C3%A9=one&e%CC%81=two", keeping: [precomposed, decomposed])
        #expect(fields[precomposed] == "one")
        #expect(fields[decomposed] == "two")
        #expect(fields["e"] == nil)
        // Only the exact bytes are found.
        let onlyPrecomposed = try decode("%C3%A9=one", keeping: [precomposed, decomposed])
        #expect(onlyPrecomposed[decomposed] == nil)
        #expect(onlyPrecomposed[precomposed] == "one")
    }

    @Test func exactDuplicatesAreRefusedHoweverEncoded() {
        for form in ["username=a&username=b", "%C3%A9=1&%C3%A9=2", "\(precomposed)=1&%C3%A9=2", "e%CC%81=1&e\u{301}=2",
                     "junk=1&junk=2", "user+name=1&user%20name=2"] {
            #expect(throws: FormDecoding.Failure.self, "\(form)") { try decode(form, keeping: ["username"]) }
        }
    }

    @Test func onlyRequestedFieldsAreKept() throws {
        let fields = try decode("username=alice&client_id=x&scope=a+b&password=pw", keeping: ["username", "password"])
        #expect(fields["username"] == "alice")
        #expect(fields["password"] == "pw")
        #expect(fields["client_id"] == nil && fields["scope"] == nil)
    }

    @Test func aHugeDuplicateNameIsRefusedWithAnExcerpt() {
        let name = marks(pairs: 50_000)
        do {
            _ = try decode("\(name)=1&\(name)=2", keeping: ["username"])
            Issue.record("duplicate accepted")
        } catch {
            guard case .duplicateField(let excerpt) = error else { Issue.record("\(error)"); return }
            #expect(excerpt.unicodeScalars.count <= 64 + 3)
            #expect(excerpt.hasSuffix("..."))
        }
    }

    /// A 128 KiB form whose one name is the hostile run decodes about as
    /// fast as one whose name is plain ASCII (before: seconds; minutes at 1 MiB).
    @Test(arguments: ["one name", "duplicate"])
    func hostileNamesCostAboutWhatPlainNamesCost(shape: String) {
        let pairs = (128 << 10) / 4
        func form(plain: Bool) -> [UInt8] {
            func name(_ pairs: Int) -> String { plain ? String(repeating: "aaaa", count: pairs) : marks(pairs: pairs) }
            let text = shape == "duplicate" ? "\(name(pairs / 2))=1&\(name(pairs / 2))=2" : "\(name(pairs))=x"
            return Array(text.utf8)
        }
        let forms = [true: form(plain: true), false: form(plain: false)]
        var best: [Bool: Duration] = [:]
        for _ in 0..<5 {
            for plain in [true, false] {
                let started = ContinuousClock.now
                let result = Result { () throws(FormDecoding.Failure) -> FormFields in
                    try FormDecoding.decode(forms[plain]!, keeping: ["username", "password", "grant_type"])
                }
                let elapsed = ContinuousClock.now - started
                if shape == "duplicate" {
                    #expect(throws: FormDecoding.Failure.self) { try result.get() }
                } else {
                    let fields = try? result.get()
                    #expect(fields != nil && fields?["username"] == nil)
                }
                best[plain] = min(best[plain] ?? elapsed, elapsed)
            }
        }
        let ratio = best[false]! / best[true]!
        #expect(ratio < 3, "\(shape): hostile \(best[false]!) against plain \(best[true]!)")
    }
}

@Suite struct RequestByteComparisonTests {
    @Test func tokenFormWithCanonicallyEquivalentExtraFieldsStillLogsIn() throws {
        let fixture = try AppFixture()
        let response = fixture.post("/token", body: "username=alice&password=correct+horse&%C3%A9=1&e%CC%81=2",
                                    contentType: "Application/X-WWW-Form-Urlencoded; charset=utf-8")
        #expect(response.status == 200, "\(response.text)")
    }

    @Test func tokenFormDuplicateNameIsNamedInTheLocation() throws {
        let fixture = try AppFixture()
        let duplicate = fixture.post("/token", body: "username=alice&password=x&%C3%A9=1&%C3%A9=2",
                                     contentType: "application/x-www-form-urlencoded")
        #expect(duplicate.status == 422)
        let problem = try #require((duplicate.detail as? [[String: Any]])?.first)
        #expect(problem["type"] as? String == "duplicate")
        #expect(problem["loc"] as? [String] == ["body", precomposed])
    }

    @Test func grantTypeMustBeExactlyPassword() throws {
        let fixture = try AppFixture()
        for grant in ["Password", "password%CC%81", "password+", "passwor"] {
            let response = fixture.post("/token", body: "username=alice&password=correct+horse&grant_type=\(grant)",
                                        contentType: "application/x-www-form-urlencoded")
            #expect(response.status == 422, "\(grant)")
        }
    }

    @Test func hostileFormNameIs422Missing() throws {
        let fixture = try AppFixture()
        let response = fixture.post("/token", body: "\(marks(pairs: 100_000))=x", contentType: "application/x-www-form-urlencoded")
        #expect(response.status == 422)
        let types = (response.detail as? [[String: Any]])?.compactMap { $0["type"] as? String }
        #expect(types == ["missing", "missing"])
    }

    @Test func sendBodyKeysAreMatchedByBytes() throws {
        let fixture = try AppFixture()
        // Extra members that Swift's String == would call equal are neither a
        // duplicate nor in the way.
        let accepted = try fixture.send(
            #"{"to": "bob@example.org", "subject": "s", "message": "m", "\#(precomposed)": 1, "\#(decomposed)": 2}"#)
        #expect(accepted.status == 200, "\(accepted.text)")
        // A key equal to "to" only after normalisation would not be "to"; a
        // key with a combining mark after it is another key.
        let missing = try fixture.send(#"{"to\#u{301}": "bob@example.org", "subject": "s", "message": "m"}"#)
        #expect(missing.status == 422)
        let problem = try #require((missing.detail as? [[String: Any]])?.first)
        #expect(problem["type"] as? String == "missing")
        #expect(problem["loc"] as? [String] == ["body", "to"])
    }

    @Test func hostileSendKeysAre422() throws {
        let fixture = try AppFixture()
        let key = marks(pairs: 100_000)
        let one = try fixture.send(#"{"\#(key)": 1}"#)
        #expect(one.status == 422)
        #expect((one.detail as? [[String: Any]])?.count == 3)
        let duplicate = try fixture.send(#"{"\#(key)": 1, "\#(key)": 2}"#)
        #expect(duplicate.status == 422)
        #expect((duplicate.detail as? [[String: Any]])?.first?["type"] as? String == "json_invalid")
        #expect(duplicate.body.count < 1024, "the key is quoted as an excerpt, not whole")
        #expect(fixture.transport.sent.isEmpty)
    }

    @Test func bearerSchemeIsCaseInsensitiveASCII() throws {
        let fixture = try AppFixture()
        let body = #"{"to": "bob@example.org", "subject": "s", "message": "m"}"#
        let token = try fixture.token()
        for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
            #expect(fixture.post("/smtp/send-email", body: body, authorization: "\(scheme) \(token)").status == 200, "\(scheme)")
        }
        for header in ["Bearer\u{301} \(token)", "\(marks(pairs: 2000)) \(token)", marks(pairs: 2000), "Be\u{301}arer \(token)"] {
            let response = fixture.post("/smtp/send-email", body: body, authorization: header)
            #expect(response.status == 401)
            #expect(response.detail as? String == "Not authenticated")
        }
    }

    @Test func routesAndMethodsAreMatchedByBytes() throws {
        let fixture = try AppFixture()
        #expect(fixture.post("/token\u{301}", body: "").status == 404)
        #expect(fixture.post("/\(marks(pairs: 1000))", body: "").status == 404)
        #expect(fixture.post("/token", body: "", method: "POST\u{301}").status == 405)
        let uri = CGIRequest(params: ["REQUEST_URI": "/api/t\u{E9}st?x=\u{301}"], body: .complete([]))
        #expect(RequestContext.routePath(uri.path, basePath: "/api") == "/t\u{E9}st")
        #expect(RequestContext.routePath(uri.path, basePath: "/api/te\u{301}") == nil, "only the exact bytes are a prefix")
    }

    @Test func responseHeadersAreFoundASCIICaseInsensitively() {
        let response = CGIResponse(status: 200, headers: [("WWW-Authenticate", "Bearer"), ("X-\u{E9}", "1")])
        #expect(response.header("www-authenticate") == "Bearer")
        #expect(response.header("WWW-AUTHENTICATE") == "Bearer")
        #expect(response.header("x-\u{E9}") == "1")
        #expect(response.header("x-e\u{301}") == nil)
        #expect(response.header("WWW-Authenticat") == nil)
    }
}
