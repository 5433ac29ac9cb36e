import Base64
import Testing

private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

@Suite struct Base64Tests {
    static let rfc4648: [(String, String)] = [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"),
                                              ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE="), ("foobar", "Zm9vYmFy")]

    @Test func rfc4648VectorsPadded() {
        for (plain, encoded) in Self.rfc4648 {
            #expect(Base64.standard.encode(bytes(plain)) == encoded)
            #expect(Base64.standard.decode(encoded) == bytes(plain))
            #expect(Base64.standard.encodedLength(plain.utf8.count) == encoded.utf8.count)
        }
    }

    @Test func rfc4648VectorsUnpadded() {
        for (plain, padded) in Self.rfc4648 {
            let encoded = String(padded.prefix { $0 != "=" })
            #expect(Base64.url.encode(bytes(plain)) == encoded)
            #expect(Base64.url.decode(encoded) == bytes(plain))
            #expect(Base64.standardUnpadded.encode(bytes(plain)) == encoded)
            #expect(Base64.standardUnpadded.decode(encoded) == bytes(plain))
            #expect(Base64.url.encodedLength(plain.utf8.count) == encoded.utf8.count)
        }
    }

    @Test func alphabets() {
        #expect(Base64.url.encode([0xfb, 0xff]) == "-_8")
        #expect(Base64.url.decode("-_8") == [0xfb, 0xff])
        #expect(Base64.standard.encode([0xfb, 0xff]) == "+/8=")
        #expect(Base64.standardUnpadded.decode("+/8") == [0xfb, 0xff])
        #expect(Base64.url.decode("+/8") == nil)
        #expect(Base64.standard.decode("-_8=") == nil)
    }

    @Test func roundTripAllLengthsAndValues() {
        var generator = SystemRandomNumberGenerator()
        for length in 0..<70 {
            let data = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            for codec in [Base64.standard, .standardUnpadded, .url] {
                #expect(codec.decode(codec.encode(data)) == data)
            }
        }
        let all = (0...255).map { UInt8($0) }
        #expect(Base64.standard.decode(Base64.standard.encode(all)) == all)
    }

    /// Long inputs go four characters at a time: a bad character anywhere
    /// among them still makes the whole input invalid.
    @Test func aBadCharacterInsideALongInputIsRefused() {
        let data = (0..<3000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let encoded = Array(Base64.standard.encode(data).utf8)
        #expect(Base64.standard.decode(encoded) == data)
        for position in [0, 1, 2, 3, 1999, 2002, encoded.count - 5] {
            for bad in [UInt8(ascii: "!"), UInt8(ascii: "-"), 0x0A, 0xC3] {
                var broken = encoded
                broken[position] = bad
                #expect(Base64.standard.decode(broken) == nil, "\(bad) at \(position)")
            }
        }
    }

    /// Decoding into a caller's buffer accepts and refuses exactly what
    /// decoding into an array does, and refuses a buffer that is too small.
    @Test func decodingIntoABufferAgreesWithDecodingIntoAnArray() {
        var generator = SystemRandomNumberGenerator()
        var texts: [String] = ["", "Zg", "Zh", "Z", "Zg==", "Zm9v YmFy", "Zm\u{e9}", "====", "Zg==Zg=="]
        for length in 0..<40 {
            let data = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            for codec in [Base64.standard, .url] {
                var text = Array(codec.encode(data).utf8)
                texts.append(String(decoding: text, as: UTF8.self))
                if !text.isEmpty {  // one character changed: often still valid, often not
                    text[Int.random(in: 0..<text.count, using: &generator)] = UInt8.random(in: 32...126, using: &generator)
                    texts.append(String(decoding: text, as: UTF8.self))
                }
            }
        }
        for codec in [Base64.standard, .standardUnpadded, .url] {
            for text in texts {
                let expected = codec.decode(text)
                let bytes = Array(text.utf8)
                var buffer = [UInt8](repeating: 0xAA, count: 64)
                let written = bytes.withUnsafeBufferPointer { input in
                    buffer.withUnsafeMutableBytes { codec.decode(input, into: $0) }
                }
                #expect(written.map { Array(buffer[..<$0]) } == expected, "\(text)")
                if let expected, !expected.isEmpty {
                    var small = [UInt8](repeating: 0, count: expected.count - 1)
                    let refused = bytes.withUnsafeBufferPointer { input in
                        small.withUnsafeMutableBytes { codec.decode(input, into: $0) }
                    }
                    #expect(refused == nil, "\(text) into \(expected.count - 1) bytes")
                }
            }
        }
    }

    @Test func appendsToAnExistingBuffer() {
        var out = bytes("x=")
        Base64.standard.append(bytes("foob"), to: &out)
        #expect(out == bytes("x=Zm9vYg=="))
    }

    @Test(arguments: ["Zg==", "Zm8=", "+_8", "/_8", "Zm9v YmFy", "Zm9v\n", " Zm9v", "Z", "Zm9vY", "Zh", "Zm9", "Zm9vYmF=", "Zm\u{e9}"])
    func urlRejectsNonCanonical(_ text: String) {
        // "Zh" and "Zm9" carry non-zero unused bits (canonical: "Zg", "Zm8").
        #expect(Base64.url.decode(text) == nil)
    }

    @Test(arguments: ["Zg", "Zg=", "Zg===", "Zm8", "Zm8==", "Zh==", "Zm9=", "Zg==Zg==", "=Zg=", "Zm9v\r\n", "Z===", "===="])
    func paddedRejectsNonCanonical(_ text: String) {
        #expect(Base64.standard.decode(text) == nil)
    }
}
