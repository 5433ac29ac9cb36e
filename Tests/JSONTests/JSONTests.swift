import JSON
import Testing

@Suite struct JSONParserTests {
    func parse(_ text: String) throws(JSONError) -> JSONValue { try JSONParser.parse(Array(text.utf8)) }

    @Test func parsesObjectsStringsAndEscapesInOrder() throws {
        let value = try parse(#" {"a": "x\u00e9\ud83d\ude00\n", "b": [1, -2.5e3, true, false, null], "c": {}} "#)
        #expect(value == .object([
            ("a", .string("xé😀\n")),
            ("b", .array([.number("1"), .number("-2.5e3"), .bool(true), .bool(false), .null])),
            ("c", .object([])),
        ]))
        #expect(value["a"] == .string("xé😀\n"))
        #expect(value["missing"] == nil)
        #expect(JSONValue.string("x")["a"] == nil)
    }

    @Test(arguments: [
        #"{"a":1,"a":2}"#, #"{"alg":"HS256","alg":"none"}"#, #"{"a":"\ud800"}"#, #"{"a":"\udc00"}"#,
        "{\"a\":\"\u{01}\"}", "01", "1.", "-", "1e", "[1,]", #"{"a" 1}"#, #"{"a":1,}"#, "tru", #""\x""#,
        "", "   ", "{} {}", "[1] x", "{'a':1}", ".5", "+1", "NaN", "Infinity", "nul", #""\ud800\u0041""#, #""abc"#,
        String(repeating: "[", count: 40) + String(repeating: "]", count: 40),
    ])
    func refusesInvalidJSON(text: String) {
        #expect(throws: JSONError.self) { try parse(text) }
    }

    @Test func boundsNesting() throws {
        let ok = String(repeating: "[", count: JSONParser.maximumDepth) + String(repeating: "]", count: JSONParser.maximumDepth)
        _ = try parse(ok)
        let deep = String(repeating: "[", count: 100_000)
        #expect(throws: JSONError.self) { try parse(deep) }
    }

    @Test func rejectsInvalidUTF8InStrings() throws {
        #expect(throws: JSONError.self) { try JSONParser.parse([0x22, 0xC3, 0x28, 0x22]) }
        #expect(throws: JSONError.self) { try JSONParser.parse([0x22, 0xED, 0xA0, 0x80, 0x22]) }   // encoded surrogate
        #expect(try JSONParser.parse([0x22, 0xC3, 0xA9, 0x22]) == .string("é"))
    }

    @Test func errorsSayWhereAndWhat() {
        do {
            _ = try parse(#"{"to": "x", "to": "y"}"#)
            Issue.record("duplicate key accepted")
        } catch {
            #expect(error.message.contains("duplicate key"))
            #expect(error.offset > 10)
        }
    }

    @Test func integerReading() {
        #expect(JSONValue.number("42").int64Value == 42)
        #expect(JSONValue.number("-0").int64Value == 0)
        #expect(JSONValue.number("4.0").int64Value == 4)
        #expect(JSONValue.number("1.5e1").int64Value == 15)
        #expect(JSONValue.number("4.5").int64Value == nil)
        #expect(JSONValue.number("1e400").int64Value == nil)
        #expect(JSONValue.number("9223372036854775808").int64Value == nil)
        #expect(JSONValue.string("42").int64Value == nil)
        #expect(JSONValue.bool(true).int64Value == nil)
    }
}

@Suite struct JSONWriterTests {
    @Test func escapesControlCharactersAndRoundTrips() throws {
        let text = "a\"b\\c\n\u{01}é\u{7F}"
        #expect(JSONWriter.quoted(text) == #""a\"b\\c\n\u0001é\u007f""#)
        #expect(try JSONParser.parse(Array(JSONWriter.quoted(text).utf8)) == .string(text))
    }

    @Test func encodesNestedValues() {
        let value = JSONValue.object([("detail", .array([.object([("loc", .array([.string("body"), .string("to")]))])])), ("n", .number("3"))])
        #expect(String(decoding: JSONWriter.encode(value), as: UTF8.self) == #"{"detail": [{"loc": ["body", "to"]}], "n": 3}"#)
    }
}
