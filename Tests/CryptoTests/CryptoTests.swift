import Testing
@testable import Crypto

@Suite struct HMACTests {
    // RFC 4231 §4: HMAC-SHA256 test cases (case 5 is a truncated MAC; skipped).
    static let cases: [(name: String, key: [UInt8], data: [UInt8], mac: String)] = [
        ("1", [UInt8](repeating: 0x0b, count: 20), bytes("Hi There"),
         "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
        ("2", bytes("Jefe"), bytes("what do ya want for nothing?"),
         "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
        ("3", [UInt8](repeating: 0xaa, count: 20), [UInt8](repeating: 0xdd, count: 50),
         "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
        ("4", Array(1...25), [UInt8](repeating: 0xcd, count: 50),
         "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
        ("6", [UInt8](repeating: 0xaa, count: 131), bytes("Test Using Larger Than Block-Size Key - Hash Key First"),
         "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
        ("7", [UInt8](repeating: 0xaa, count: 131),
         bytes("This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm."),
         "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
    ]

    @Test(arguments: 0..<cases.count)
    func rfc4231(_ index: Int) throws {
        let c = Self.cases[index]
        #expect(hex(try Crypto.hmacSHA256(key: c.key, message: c.data)) == c.mac, "RFC 4231 case \(c.name)")
    }

    /// The prepared key (each MAC on a copy of the keyed context) gives the
    /// same MACs, and the same one again on reuse: the copy leaves the
    /// keyed state untouched.
    @Test(arguments: 0..<cases.count)
    func preparedKeyRFC4231(_ index: Int) throws {
        let c = Self.cases[index]
        let key = try HMACSHA256Key(c.key)
        #expect(hex(try key.mac(c.data)) == c.mac, "RFC 4231 case \(c.name)")
        #expect(hex(try key.mac(c.data)) == c.mac, "RFC 4231 case \(c.name), second use")
        #expect(hex(try key.mac([])) == hex(try Crypto.hmacSHA256(key: c.key, message: [])))
    }

    @Test func emptyKeyAndMessage() throws {
        // Python: hmac.new(b"", b"", sha256).hexdigest()
        #expect(hex(try Crypto.hmacSHA256(key: [], message: []))
                == "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad")
    }

    /// FIPS 180-2 examples (the idempotency fingerprint of a request body).
    @Test func sha256KnownVectors() throws {
        #expect(hex(try Crypto.sha256([])) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(hex(try Crypto.sha256(Array("abc".utf8))) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(hex(try Crypto.sha256(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)))
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    }
}

@Suite struct PBKDF2Tests {
    @Test func knownVectors() throws {
        let password = bytes("password"), salt = bytes("salt")
        #expect(hex(try Crypto.pbkdf2SHA256(password: password, salt: salt, iterations: 1, keyLength: 32))
                == "120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b")
        #expect(hex(try Crypto.pbkdf2SHA256(password: password, salt: salt, iterations: 2, keyLength: 32))
                == "ae4d0c95af6b46d32d0adff928f06dd02a303f8ef3c251dfd6e2d85a95474c43")
        #expect(hex(try Crypto.pbkdf2SHA256(password: password, salt: salt, iterations: 4096, keyLength: 32))
                == "c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a")
        #expect(hex(try Crypto.pbkdf2SHA256(password: bytes("passwordPASSWORDpassword"),
                                            salt: bytes("saltSALTsaltSALTsaltSALTsaltSALTsalt"),
                                            iterations: 4096, keyLength: 40))
                == "348c89dbcbd32b2f32d814b8116e84cf2b17347ebc1800181c4e2a1fb8dd53e1c635518c7dac47e9")
        // Embedded NULs must not truncate the password or salt.
        #expect(hex(try Crypto.pbkdf2SHA256(password: bytes("pass\0word"), salt: bytes("sa\0lt"),
                                            iterations: 4096, keyLength: 16))
                == "89b69d0516f829893c696226650a8687")
    }

    @Test func refusesNonsenseParameters() {
        #expect(throws: CryptoError.self) { try Crypto.pbkdf2SHA256(password: [1], salt: [2], iterations: 0, keyLength: 32) }
        #expect(throws: CryptoError.self) { try Crypto.pbkdf2SHA256(password: [1], salt: [2], iterations: 1, keyLength: 0) }
    }
}

@Suite struct RandomAndCompareTests {
    @Test func randomBytes() throws {
        let a = try Crypto.randomBytes(32), b = try Crypto.randomBytes(32)
        #expect(a.count == 32 && b.count == 32)
        #expect(a != b)
        #expect(try Crypto.randomBytes(0).isEmpty)
        #expect(throws: CryptoError.self) { try Crypto.randomBytes(-1) }
    }

    @Test func constantTimeEquals() {
        #expect(Crypto.constantTimeEquals([1, 2, 3], [1, 2, 3]))
        #expect(!Crypto.constantTimeEquals([1, 2, 3], [1, 2, 4]))
        #expect(!Crypto.constantTimeEquals([1, 2, 3], [1, 2]))
        #expect(!Crypto.constantTimeEquals([], [0]))
        #expect(Crypto.constantTimeEquals([], []))
    }

    @Test func errorDescriptionsNameTheCall() {
        let error = CryptoError.openSSL(call: "RAND_bytes", reason: "x")
        #expect(error.description.contains("RAND_bytes"))
    }
}
