import Testing
import Tokens

@Suite struct Base64URLTests {
    @Test func rfc4648Vectors() {
        let vectors: [(String, String)] = [("", ""), ("f", "Zg"), ("fo", "Zm8"), ("foo", "Zm9v"),
                                           ("foob", "Zm9vYg"), ("fooba", "Zm9vYmE"), ("foobar", "Zm9vYmFy")]
        for (plain, encoded) in vectors {
            #expect(Base64URL.encode(bytes(plain)) == encoded)
            #expect(Base64URL.decode(encoded) == bytes(plain))
        }
    }

    @Test func urlAlphabet() {
        #expect(Base64URL.encode([0xfb, 0xff]) == "-_8")
        #expect(Base64URL.decode("-_8") == [0xfb, 0xff])
    }

    @Test func roundTripAllLengths() throws {
        for length in 0..<70 {
            let data = try Crypto.randomBytes(length)
            #expect(Base64URL.decode(Base64URL.encode(data)) == data)
        }
    }

    @Test(arguments: ["Zg==", "Zm8=", "+_8", "/_8", "Zm9v YmFy", "Zm9v\n", " Zm9v", "Z", "Zm9vY", "Zh", "Zm9", "Zm9vYmF=", "Zm\u{e9}"])
    func rejectsNonCanonical(_ text: String) {
        // "Zh" and "Zm9" carry non-zero unused bits (canonical: "Zg", "Zm8").
        #expect(Base64URL.decode(text) == nil)
    }
}
