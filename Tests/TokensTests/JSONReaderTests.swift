import Testing
@testable import Tokens

@Suite struct JSONReaderTests {
    func parse(_ text: String) -> JSONValue? { JSONReader.parse(Array(text.utf8)) }

    @Test func acceptsValidJSON() {
        #expect(parse(#" {"a" : [1, -2.5e3, true, false, null, "x"], "b": {}} "#)
                == .object(["a": .array([.number("1"), .number("-2.5e3"), .bool(true), .bool(false), .null, .string("x")]),
                            "b": .object([:])]))
        #expect(parse(#""\"\\\/\b\f\n\r\t\u00e9\ud83d\udd11""#) == .string("\"\\/\u{8}\u{c}\n\r\té🔑"))
    }

    @Test(arguments: [
        "", "{", "{\"a\":1,}", "[1,]", "{'a':1}", "{\"a\" 1}", "01", "1.", ".5", "-", "1e", "+1", "NaN", "Infinity",
        "tru", "nul", "\"\\x\"", "\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"", "\"a\u{1}\"", "\"abc", "{\"a\":1,\"a\":2}",
        "1 2", String(repeating: "[", count: 40) + String(repeating: "]", count: 40),
    ])
    func rejectsInvalidJSON(_ text: String) {
        #expect(parse(text) == nil)
    }

    @Test func rejectsInvalidUTF8InStrings() {
        #expect(JSONReader.parse([0x22, 0xC3, 0x28, 0x22]) == nil)
        #expect(JSONReader.parse([0x22, 0xED, 0xA0, 0x80, 0x22]) == nil)   // encoded surrogate
        #expect(JSONReader.parse([0x22, 0xC3, 0xA9, 0x22]) == .string("é"))
    }

    @Test func integerReading() {
        #expect(JSONValue.number("42").int64Value == 42)
        #expect(JSONValue.number("-0").int64Value == 0)
        #expect(JSONValue.number("4.0").int64Value == 4)
        #expect(JSONValue.number("1.5e1").int64Value == 15)
        #expect(JSONValue.number("4.5").int64Value == nil)
        #expect(JSONValue.number("9223372036854775808").int64Value == nil)
        #expect(JSONValue.string("42").int64Value == nil)
        #expect(JSONValue.bool(true).int64Value == nil)
    }

    @Test func writerEscapes() {
        let text = "a\"b\\c\n\u{1}é"
        #expect(JSONWriter.quoted(text) == #""a\"b\\c\n\u0001é""#)
        #expect(parse(JSONWriter.quoted(text)) == .string(text))
    }
}
