import JSON
import Testing

/// Duplicate keys below and above the byte-comparison limit, strings with
/// and without escapes, and the errors (messages and offsets) of each path.
@Suite struct ParserPathTests {
    func parse(_ text: String) throws(JSONError) -> JSONValue { try JSONParser.parse(Array(text.utf8)) }

    /// `{"k0":0,"k1":1,...}` with `count` members, keys as given.
    func object(_ keys: [String]) -> String {
        "{" + keys.enumerated().map { "\"\($1)\":\($0)" }.joined(separator: ",") + "}"
    }

    func parseError(_ text: String) -> JSONError? {
        do { _ = try parse(text); return nil } catch { return error }
    }

    @Test(arguments: [1, 2, 7, 8, 9, 11, 12, 13, 15, 16, 17, 30, 100])
    func duplicatesFoundAtEveryPosition(count: Int) throws {
        let keys = (0..<count).map { "key\($0)" }
        let value = try parse(object(keys))
        guard case .object(let members) = value else { Issue.record("not an object"); return }
        #expect(members.map(\.0) == keys)
        // A repeat of the first and of the last key, appended at the end.
        for repeated in [keys[0], keys[count - 1]] {
            let text = object(keys + [repeated])
            let error = parseError(text)
            #expect(error?.message == "duplicate key \"\(repeated)\"", "\(count) \(repeated)")
            // Just after the duplicate key's closing quote.
            #expect(error?.offset == text.utf8.count - (":\(count)}".utf8.count), "\(count) \(repeated)")
        }
        // A duplicate in the middle, the first member repeated at each position.
        for position in 1...count {
            var spoiled = keys
            spoiled.insert(keys[0], at: position)
            #expect(parseError(object(spoiled))?.message == "duplicate key \"key0\"", "\(count) at \(position)")
        }
    }

    @Test(arguments: [3, 12, 40])
    func keysDifferingInTheLastByteOrOnlyInLengthAreDistinct(count: Int) throws {
        var keys = (0..<count).map { "same-prefix-\(String(repeating: "x", count: $0))" }
        keys += ["abcdefghijklmnopqrstuvwxyA", "abcdefghijklmnopqrstuvwxyB", "", "a", "ab"]
        let value = try parse(object(keys))
        guard case .object(let members) = value else { Issue.record("not an object"); return }
        #expect(members.count == keys.count)
        #expect(parseError(object(keys + ["abcdefghijklmnopqrstuvwxyB"]))?.message == "duplicate key \"abcdefghijklmnopqrstuvwxyB\"")
        #expect(parseError(object(keys + [""]))?.message == "duplicate key \"\"")
    }

    @Test(arguments: [0, 20])
    func canonicallyEquivalentKeysAreDistinctAboveAndBelowTheLimit(padding: Int) throws {
        let keys = (0..<padding).map { "p\($0)" } + ["\u{E9}", "e\u{301}", "\u{212B}", "\u{C5}", "A\u{30A}"]
        let value = try parse(object(keys))
        guard case .object(let members) = value else { Issue.record("not an object"); return }
        #expect(members.count == keys.count)
        #expect(value["\u{E9}"] == .number(String(padding)))
        #expect(value["e\u{301}"] == .number(String(padding + 1)))
        // The same bytes escaped are the same key.
        let escaped = object(keys).dropLast() + #","\u00e9":1}"#
        #expect(parseError(String(escaped))?.message == "duplicate key \"\u{E9}\"")
        let escapedDecomposed = object(keys).dropLast() + #","e\u0301":1}"#
        #expect(parseError(String(escapedDecomposed))?.message == "duplicate key \"e\u{301}\"")
    }

    @Test func manyDistinctKeysParseAndADuplicateAtTheEndIsRefused() throws {
        let keys = (0..<5_000).map { "member-\($0)" }
        let value = try parse(object(keys))
        guard case .object(let members) = value else { Issue.record("not an object"); return }
        #expect(members.count == 5_000)
        #expect(value["member-4999"] == .number("4999"))
        #expect(parseError(object(keys + ["member-2500"]))?.message == "duplicate key \"member-2500\"")
        #expect(parseError(object(keys + ["member-0"]))?.message == "duplicate key \"member-0\"")
        #expect(parseError(object(keys + ["member-4999"]))?.message == "duplicate key \"member-4999\"")
    }

    @Test func duplicateInANestedObjectAboveTheLimit() {
        let inner = object((0..<20).map { "i\($0)" } + ["i19"])
        let text = #"{"a":1,"b":"# + inner + "}"
        #expect(parseError(text)?.message == "duplicate key \"i19\"")
        #expect(throws: Never.self) { try parse(#"{"a":"# + object((0..<20).map { "k\($0)" }) + #","b":"# + object((0..<20).map { "k\($0)" }) + "}") }
    }

    @Test func stringsWithAndWithoutEscapes() throws {
        let cases: [(String, String)] = [
            (#""""#, ""),
            (#""plain""#, "plain"),
            (#""caf\#u{E9} \#u{1F600}""#, "caf\u{E9} \u{1F600}"),
            (#""\n""#, "\n"),
            (#""a\"b""#, "a\"b"),
            (#""ab\\""#, "ab\\"),
            (#""\u00e9x""#, "\u{E9}x"),
            (#""pre \t mid \/ post""#, "pre \t mid / post"),
            (#""\ud83d\ude00 tail""#, "\u{1F600} tail"),
            (#""\u0000""#, "\u{0}"),
            (#""\#u{E9}\u00e9\#u{E9}""#, "\u{E9}\u{E9}\u{E9}"),
        ]
        for (json, expected) in cases {
            let value = try parse(json)
            guard case .string(let text) = value else { Issue.record("not a string: \(json)"); continue }
            #expect(Array(text.utf8) == Array(expected.utf8), "\(json)")
        }
        let long = String(repeating: "0123456789", count: 10_000)
        #expect(try parse("\"\(long)\"") == .string(long))
        #expect(try parse("\"\(long)\\n\(long)\"") == .string(long + "\n" + long))
    }

    @Test func asciiAndNonASCIIStringsByteForByte() throws {
        // All-ASCII strings and strings with a byte above 0x7F anywhere.
        let cases: [[UInt8]] = [
            [0x7F], [0x20, 0x7E, 0x7F], Array("plain ascii".utf8),
            [0xC3, 0xA9] + Array("tail".utf8), Array("head".utf8) + [0xC3, 0xA9],
            Array("mid".utf8) + [0xF0, 0x9F, 0x98, 0x80] + Array("dle".utf8),
            [0xEF, 0xBF, 0xBF], [0xF4, 0x8F, 0xBF, 0xBF],
        ]
        for content in cases {
            let value = try JSONParser.parse([0x22] + content + [0x22])
            guard case .string(let text) = value else { Issue.record("not a string: \(content)"); continue }
            #expect(Array(text.utf8) == content)
        }
        for bad: [UInt8] in [[0x61, 0x80], [0x80, 0x61], [0xF4, 0x90, 0x80, 0x80], [0xF8, 0x88, 0x80, 0x80, 0x80]] {
            do {
                _ = try JSONParser.parse([0x22] + bad + [0x22])
                Issue.record("accepted \(bad)")
            } catch {
                #expect(error.message == "string is not valid UTF-8" && error.offset == bad.count + 2, "\(bad)")
            }
        }
    }

    @Test func invalidUTF8InStringsIsRefusedWithItsOffset() {
        // The error is reported just after the closing quote, escapes or not.
        let cases: [([UInt8], Int)] = [
            ([0x22, 0xC3, 0x28, 0x22], 4),
            ([0x22, 0xED, 0xA0, 0x80, 0x22], 5),                      // encoded surrogate
            ([0x22, 0xFF, 0x22], 3),
            ([0x22, 0x61, 0xC3, 0x22], 4),                             // truncated at the end
            ([0x22, 0xC0, 0x80, 0x22], 4),                             // overlong NUL
            ([0x22, 0x5C, 0x6E, 0xC3, 0x28, 0x22], 6),                 // after an escape
            ([0x22, 0xC3, 0x5C, 0x6E, 0x22], 5),                       // cut by an escape
            ([0x22, 0xC3, 0x5C, 0x75, 0x30, 0x30, 0x41, 0x39, 0x22], 9), // lead byte, then \u00A9
            ([0x5B, 0x22, 0x61, 0x22, 0x2C, 0x22, 0xFE, 0x22, 0x5D], 8),
            ([0x7B, 0x22, 0xC3, 0x22, 0x3A, 0x31, 0x7D], 4),           // in a key
        ]
        for (bytes, offset) in cases {
            do {
                _ = try JSONParser.parse(bytes)
                Issue.record("accepted \(bytes)")
            } catch {
                #expect(error.message == "string is not valid UTF-8", "\(bytes)")
                #expect(error.offset == offset, "\(bytes)")
            }
        }
    }

    @Test func controlCharactersAndUnterminatedStrings() {
        let cases: [([UInt8], String, Int)] = [
            ([0x22, 0x01, 0x22], "control character in string", 1),
            ([0x22, 0x61, 0x0A, 0x22], "control character in string", 2),
            ([0x22, 0x61, 0x1F, 0x22], "control character in string", 2),
            ([0x22, 0x5C, 0x6E, 0x09, 0x22], "control character in string", 3),
            ([0x22, 0x61, 0x62], "unterminated string", 3),
            ([0x22, 0x5C, 0x6E, 0x61], "unterminated string", 4),
            ([0x22, 0x5C], "unterminated escape", 2),
            ([0x22, 0x61, 0x5C, 0x78, 0x22], "invalid escape", 4),
            ([0x22, 0x5C, 0x75, 0x64, 0x38, 0x30, 0x30, 0x22], "unpaired surrogate", 7),
            ([0x22, 0x5C, 0x75, 0x31, 0x32, 0x22], "invalid unicode escape", 3),
            ([0x22, 0xC3, 0xA9, 0x7F, 0x22], "", 0),                   // DEL is not a control here
        ]
        for (bytes, message, offset) in cases {
            do {
                _ = try JSONParser.parse(bytes)
                #expect(message.isEmpty, "accepted \(bytes)")
            } catch {
                #expect(error.message == message, "\(bytes)")
                #expect(error.offset == offset, "\(bytes)")
            }
        }
    }

    @Test func whitespaceIsTheFourJSONBytesOnly() throws {
        #expect(try parse(" \t\r\n{ \t\r\n\"a\" \t\r\n: \t\r\n[ 1 , 2 ] \t\r\n} \t\r\n") == .object([("a", .array([.number("1"), .number("2")]))]))
        for other in [0x0B, 0x0C, 0xA0] as [UInt8] {
            #expect(throws: JSONError.self) { try JSONParser.parse([other, 0x31]) }
            #expect(throws: JSONError.self) { try JSONParser.parse([0x5B, 0x31, other, 0x5D]) }
        }
    }
}

/// `utf8Equals` (inlinable, specialised in the caller's module) answers by
/// bytes for String against String and against Substring alike.
@Suite struct UTF8EqualsTests {
    @Test func answersByBytesForStringsAndSubstrings() {
        let samples = ["", "a", "b", "ab", "abc", "abd", "\u{E9}", "e\u{301}", "\u{212B}", "\u{C5}", "A\u{30A}",
                       "a-fifteen-bytes", "a-sixteen-bytes!", "a-sixteen-bytes?", String(repeating: "x", count: 100),
                       String(repeating: "x", count: 99) + "y", String(repeating: "\u{301}\u{316}", count: 50)]
        for left in samples {
            for right in samples {
                let strings = left.utf8Equals(right)
                let substring = left.utf8Equals(right[...])
                #expect(strings == substring, "\(Array(left.utf8)) \(Array(right.utf8))")
                #expect(strings == (Array(left.utf8) == Array(right.utf8)))
            }
        }
        // A bridged or non-contiguous view is not involved on Linux, but a
        // string built by appending is still compared by its bytes.
        var built = "ab"
        built += "c"
        #expect(built.utf8Equals("abc") && !built.utf8Equals("abC"))
    }
}
