import JSON
import Testing

/// U+0301 U+0316 repeated (`pairs` times): canonical reordering of this run
/// is quadratic, so String `==` and hashing on it are too.
func hostileMarks(pairs: Int) -> String { String(repeating: "\u{301}\u{316}", count: pairs) }

/// Keys and strings are compared by their UTF-8 bytes (RFC 8259 §8.3), not
/// by Unicode canonical equivalence as Swift's String `==` does.
@Suite struct ByteKeyTests {
    let precomposed = "\u{E9}"    // é, C3 A9
    let decomposed = "e\u{301}"   // e + combining acute, 65 CC 81

    func parse(_ text: String) throws(JSONError) -> JSONValue { try JSONParser.parse(Array(text.utf8)) }

    @Test func canonicallyEquivalentKeysAreDifferentKeys() throws {
        #expect(precomposed == decomposed, "Swift's String == says they are equal")
        let value = try parse(#"{"\#(precomposed)": 1, "\#(decomposed)": 2}"#)
        guard case .object(let members) = value else { Issue.record("not an object"); return }
        #expect(members.count == 2)
        #expect(Array(members[0].0.utf8) == [0xC3, 0xA9])
        #expect(Array(members[1].0.utf8) == [0x65, 0xCC, 0x81])
        #expect(value[precomposed] == .number("1"))
        #expect(value[decomposed] == .number("2"))
        #expect(value["e"] == nil)
    }

    @Test func exactDuplicatesAreStillRefusedHoweverSpelled() {
        for text in [#"{"\#(precomposed)": 1, "\#(precomposed)": 2}"#,
                     #"{"\#(precomposed)": 1, "\u00e9": 2}"#,          // escaped: the same bytes
                     #"{"\#(decomposed)": 1, "e\u0301": 2}"#,
                     #"{"a": 1, "b": {"x": 1, "x": 2}}"#] {
            #expect(throws: JSONError.self, "\(text)") { try parse(text) }
        }
        // The same key in two different objects is not a duplicate.
        #expect(throws: Never.self) { try parse(#"{"a": {"x": 1}, "b": {"x": 2}}"#) }
    }

    @Test func stringsAndKeysCompareByBytes() {
        #expect(JSONValue.string(precomposed) != .string(decomposed))
        #expect(JSONValue.string(precomposed) == .string("\u{E9}"))
        #expect(JSONValue.object([(precomposed, .null)]) != .object([(decomposed, .null)]))
        #expect(JSONValue.object([(decomposed, .null)]) == .object([("e\u{301}", .null)]))
        #expect(JSONValue.number("1") != .number("1.0"))
    }

    @Test func byteHelpers() {
        #expect(!precomposed.utf8Equals(decomposed))
        #expect(decomposed.utf8Equals("e\u{301}"))
        #expect("abc".utf8Equals("abc"[...]))
        #expect(!"abc".utf8Equals("abcd"))
        #expect(!"".utf8Equals("a") && "".utf8Equals(""))
        #expect(UTF8Key(precomposed) != UTF8Key(decomposed))
        #expect(Set([UTF8Key(precomposed), UTF8Key(decomposed), UTF8Key("\u{E9}")]).count == 2)
        #expect("short".excerpt() == "short")
        let long = hostileMarks(pairs: 1000)
        #expect(long.excerpt(scalars: 10).unicodeScalars.count == 10 + 3)
        #expect(long.excerpt(scalars: 10).hasSuffix("..."))
    }

    @Test func duplicateErrorQuotesAnExcerptOfAHugeKey() {
        let key = hostileMarks(pairs: 100_000)
        do {
            _ = try parse(#"{"\#(key)": 1, "\#(key)": 2}"#)
            Issue.record("duplicate accepted")
        } catch {
            #expect(error.message.hasPrefix("duplicate key"))
            #expect(error.message.utf8.count < 400, "\(error.message.utf8.count) bytes")
        }
    }

    /// 512 KiB objects whose keys are runs of combining marks parse about as
    /// fast as the same objects with plain ASCII keys (before: seconds; a
    /// 1 MiB key took minutes). The end-to-end tests go up to 1 MiB and hold
    /// the ratio below 3; here, with small absolute times on a loaded
    /// machine, below 8: non-ASCII text misses UTF-8 validation's ASCII fast
    /// path (a constant factor), while the quadratic cost this guards
    /// against is far above it at this size and grows with it.
    @Test(arguments: ["one key", "duplicate", "64 keys"])
    func hostileKeysCostAboutWhatPlainKeysCost(shape: String) throws {
        let pairs = (512 << 10) / 4
        func key(_ plain: Bool, pairs: Int) -> String {
            plain ? String(repeating: "aaaa", count: pairs) : hostileMarks(pairs: pairs)
        }
        func document(plain: Bool) -> [UInt8] {
            let text = switch shape {
            case "one key": #"{"\#(key(plain, pairs: pairs))": 1}"#
            case "duplicate": #"{"\#(key(plain, pairs: pairs / 2))": 1, "\#(key(plain, pairs: pairs / 2))": 2}"#
            default: "{" + (0..<64).map { #""\#(key(plain, pairs: pairs / 64))\#($0)": 0"# }.joined(separator: ", ") + "}"
            }
            return Array(text.utf8)
        }
        let documents = [true: document(plain: true), false: document(plain: false)]
        #expect(documents[true]!.count == documents[false]!.count)
        var best: [Bool: Duration] = [:]
        for _ in 0..<5 {
            for plain in [true, false] {
                let started = ContinuousClock.now
                let result = Result { () throws(JSONError) -> JSONValue in try JSONParser.parse(documents[plain]!) }
                let elapsed = ContinuousClock.now - started
                if shape == "duplicate" {
                    #expect(throws: JSONError.self) { try result.get() }
                } else {
                    #expect(throws: Never.self) { try result.get() }
                }
                best[plain] = min(best[plain] ?? elapsed, elapsed)
            }
        }
        let ratio = best[false]! / best[true]!
        #expect(ratio < 8, "\(shape): hostile \(best[false]!) against plain \(best[true]!)")
    }
}
