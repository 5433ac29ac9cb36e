import FastCGI
import Foundation
import JSON
@testable import Mailgate
import Testing

/// Issue 11: the OpenAPI document the binary carries, served at
/// `GET /openapi.json`, says what the code and README.md say.
@Suite struct OpenAPITests {
    static let readme: String = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("README.md")
        return (try? String(contentsOf: url, encoding: .utf8)) ?? ""
    }()

    /// The document as `GET /openapi.json` serves it (no token), parsed.
    static func servedDocument(basePath: String = "") throws -> (CGIResponse, [String: Any]) {
        let fixture = try AppFixture { $0.basePath = basePath }
        let response = fixture.post(basePath + "/openapi.json", body: "", method: "GET")
        let document = try #require(response.json as? [String: Any], "served: \(response.text.prefix(200))")
        return (response, document)
    }

    @Test func servedWithoutATokenAsJSON() throws {
        let (response, document) = try Self.servedDocument()
        #expect(response.status == 200)
        #expect(response.header("Content-Type") == "application/json")
        #expect(response.body == OpenAPIDocument.json())
        let version = try #require(document["openapi"] as? String)
        #expect(version.wholeMatch(of: /3\.1\.\d+/) != nil, "\(version)")
        let servers = try #require(document["servers"] as? [[String: Any]])
        #expect(servers.map { $0["url"] as? String } == ["/"], "relative to where it is served")
        let post = try AppFixture().post("/openapi.json", body: "")
        #expect(post.status == 405)
        #expect(post.header("Allow") == "GET")
    }

    /// Mailgate's own strict parser refuses duplicate names, which
    /// JSONSerialization would let through (keeping either).
    @Test func parsesStrictlyWithNoDuplicateNames() throws {
        #expect(throws: Never.self) { try JSONParser.parse(OpenAPIDocument.json()) }
    }

    @Test func underABasePathTheServerIsThatPath() throws {
        let (response, document) = try Self.servedDocument(basePath: "/mail")
        #expect(response.status == 200)
        let servers = try #require(document["servers"] as? [[String: Any]])
        #expect(servers.map { $0["url"] as? String } == ["/mail"])
        // Everything else as written.
        var original = try #require(try JSONSerialization.jsonObject(with: Data(OpenAPIDocument.json())) as? [String: Any])
        var served = document
        original["servers"] = nil
        served["servers"] = nil
        #expect(NSDictionary(dictionary: original).isEqual(to: served))
    }

    @Test func documentsEveryRouteAndNothingElse() throws {
        let (_, document) = try Self.servedDocument()
        let paths = try #require(document["paths"] as? [String: [String: Any]])
        let documented = Set(paths.flatMap { path, item in
            item.keys.filter(Self.httpMethods.contains).map { "\($0.uppercased()) \(path)" }
        })
        #expect(documented == Set(Application.routes.map { "\($0.method) \($0.path)" }))
    }

    @Test func codeIsAnEnumOfEveryErrorCode() throws {
        let (_, document) = try Self.servedDocument()
        let schema = try #require(Self.resolve(["$ref": "#/components/schemas/ErrorCode"], in: document))
        let values = try #require(schema["enum"] as? [String])
        #expect(Set(values) == Set(ErrorCode.allCases.map(\.rawValue)))
        #expect(values.count == ErrorCode.allCases.count, "no value twice")
    }

    /// README.md's table of errors and the document name the same
    /// (status, code) pairs: each row is a documented response with that
    /// code, and each documented code of a status is a row.
    @Test func errorResponsesAreREADMEsTableOfErrors() throws {
        let (_, document) = try Self.servedDocument()
        let table = Self.readmeErrorRows()
        #expect(table.count >= ErrorCode.allCases.count, "README's table parsed: \(table.count) rows")
        let documented = try Self.documentedErrors(document)
        for row in table.subtracting(documented) {
            Issue.record("README lists \(row.status) \(row.code); the document has no response \(row.status) with that code")
        }
        for pair in documented.subtracting(table) {
            Issue.record("the document has \(pair.status) \(pair.code); README's table of errors does not")
        }
        #expect(Set(table.map(\.status)) == Set(documented.map(\.status)))
    }

    /// The send body's members are README's table of members.
    @Test func sendMembersAreREADMEsTableOfMembers() throws {
        let (_, document) = try Self.servedDocument()
        let schema = try #require(Self.resolve(["$ref": "#/components/schemas/SendEmailRequest"], in: document))
        let properties = try #require(schema["properties"] as? [String: Any])
        let lines = Self.readme.split(separator: "\n", omittingEmptySubsequences: false)
        let start = try #require(lines.firstIndex { $0.hasPrefix("| member | type | meaning |") })
        var members: Set<String> = []
        for line in lines[(start + 2)...] {
            guard line.hasPrefix("|") else { break }
            let first = line.split(separator: "|", omittingEmptySubsequences: true).first ?? ""
            for match in first.matches(of: /`([a-z_]+)`/) { members.insert(String(match.1)) }
        }
        #expect(members.count >= 9, "\(members)")
        #expect(Set(properties.keys) == members)
        #expect(schema["required"] as? [String] == ["to", "subject", "message"])
    }

    @Test func everyReferenceResolves() throws {
        let (_, document) = try Self.servedDocument()
        var references: [String] = []
        func walk(_ value: Any) {
            if let object = value as? [String: Any] {
                if let reference = object["$ref"] as? String { references.append(reference) }
                object.values.forEach(walk)
            } else if let array = value as? [Any] {
                array.forEach(walk)
            }
        }
        walk(document)
        #expect(references.count > 50)
        for reference in Set(references) {
            #expect(Self.resolve(["$ref": reference], in: document) != nil, "\(reference)")
        }
    }

    // MARK: - Reading the document and README

    static let httpMethods: Set<String> = ["get", "put", "post", "delete", "options", "head", "patch", "trace"]

    struct StatusCode: Hashable, CustomStringConvertible {
        var status: Int
        var code: String
        var description: String { "\(status) \(code)" }
    }

    /// `| 401 + ... | `invalid_token` | ...` rows of README's `### Errors`.
    static func readmeErrorRows() -> Set<StatusCode> {
        guard let start = readme.range(of: "\n### Errors\n") else { return [] }
        let section = readme[start.upperBound...]
        var rows: Set<StatusCode> = []
        for line in section.split(separator: "\n") {
            if line.hasPrefix("## ") || line.hasPrefix("### ") { break }
            if let match = line.wholeMatch(of: /\| (\d{3})[^|]*\| `([a-z_]+)` \|.*/), let status = Int(match.1) {
                rows.insert(StatusCode(status: status, code: String(match.2)))
            }
        }
        return rows
    }

    /// (status, code) of every error response: those of each operation, and
    /// those that belong to no operation (`components.responses`, their
    /// status in `x-status`). Each must give its JSON body's `code` an enum.
    static func documentedErrors(_ document: [String: Any]) throws -> Set<StatusCode> {
        var responses: [(String, Int, [String: Any])] = []
        let paths = try #require(document["paths"] as? [String: [String: Any]])
        for (path, item) in paths {
            for (method, operation) in item where httpMethods.contains(method) {
                let operation = try #require(operation as? [String: Any])
                for (status, response) in try #require(operation["responses"] as? [String: Any]) {
                    let value = try #require(Int(status), "\(method) \(path): status \(status)")
                    responses.append(("\(method) \(path) \(status)", value, try #require(response as? [String: Any])))
                }
            }
        }
        let components = try #require(document["components"] as? [String: Any])
        for (name, response) in try #require(components["responses"] as? [String: [String: Any]]) {
            responses.append(("components.responses.\(name)", try #require(response["x-status"] as? Int, "\(name)"), response))
        }
        var pairs: Set<StatusCode> = []
        for (label, status, reference) in responses where status >= 400 {
            let response = try #require(resolve(reference, in: document), "\(label)")
            let content = try #require(response["content"] as? [String: Any], "\(label)")
            let json = try #require(content["application/json"] as? [String: Any], "\(label): a JSON body")
            let codes = try #require(Self.codes(of: json["schema"] as Any, in: document), "\(label): a code enum")
            #expect(!codes.isEmpty, "\(label)")
            for code in codes { pairs.insert(StatusCode(status: status, code: code)) }
        }
        return pairs
    }

    /// The values `code` may take in `schema`: its enum, through `$ref`s and
    /// `allOf` (each member narrows it); nil when nothing constrains it.
    static func codes(of schema: Any, in document: [String: Any]) -> Set<String>? {
        guard let schema = resolve(schema, in: document) else { return nil }
        var result: Set<String>?
        func narrow(_ values: Set<String>?) {
            guard let values else { return }
            result = result.map { $0.intersection(values) } ?? values
        }
        if let properties = schema["properties"] as? [String: Any], let code = properties["code"],
           let resolved = resolve(code, in: document), let values = resolved["enum"] as? [String] {
            narrow(Set(values))
        }
        for member in schema["allOf"] as? [Any] ?? [] { narrow(codes(of: member, in: document)) }
        return result
    }

    /// The object `value` is, following `$ref`s within the document.
    static func resolve(_ value: Any, in document: [String: Any]) -> [String: Any]? {
        guard var object = value as? [String: Any] else { return nil }
        var hops = 0
        while let reference = object["$ref"] as? String {
            guard reference.hasPrefix("#/"), hops < 16 else { return nil }
            var node: Any = document
            for step in reference.dropFirst(2).split(separator: "/") {
                guard let next = (node as? [String: Any])?[String(step)] else { return nil }
                node = next
            }
            guard let next = node as? [String: Any] else { return nil }
            object = next
            hops += 1
        }
        return object
    }
}
