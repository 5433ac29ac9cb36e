import Testing
import Crypto

func unhex(_ text: String) -> [UInt8] {
    var out: [UInt8] = []
    var index = text.startIndex
    while index < text.endIndex {
        let next = text.index(index, offsetBy: 2)
        out.append(UInt8(text[index..<next], radix: 16) ?? 0)
        index = next
    }
    return out
}

@Suite struct SecretBoxTests {
    let key = [UInt8](repeating: 7, count: 32)

    @Test func roundTrip() throws {
        let box = try SecretBox(key: key)
        for plaintext in [bytes(""), bytes("hunter2"), [UInt8](repeating: 0xAB, count: 1000)] {
            let sealed = try box.seal(plaintext)
            #expect(sealed.count == 12 + plaintext.count + 16)
            #expect(try box.open(sealed) == plaintext)
        }
        // Random nonce: sealing twice gives different bytes.
        #expect(try box.seal(bytes("pw")) != box.seal(bytes("pw")))
    }

    @Test func nistVectors() throws {
        // GCM spec (McGrew & Viega) test cases 13 and 14: AES-256, zero key, zero IV.
        let box = try SecretBox(key: [UInt8](repeating: 0, count: 32))
        let nonce = [UInt8](repeating: 0, count: 12)
        #expect(try box.open(nonce + unhex("530f8afbc74536b9a963b4f1c4cb738b")) == [])
        #expect(try box.open(nonce + unhex("cea7403d4d606b6e074ec5d3baf39d18") + unhex("d0d1c8a799996bf0265b98b5d48ab919"))
                == [UInt8](repeating: 0, count: 16))
    }

    @Test func tamperDetected() throws {
        let box = try SecretBox(key: key)
        let sealed = try box.seal(bytes("smtp password"))
        for position in [0, 5, 12, 20, sealed.count - 1] {   // nonce, ciphertext, tag
            var modified = sealed
            modified[position] ^= 0x01
            #expect(throws: CryptoError.authenticationFailed) { try box.open(modified) }
        }
        #expect(throws: CryptoError.authenticationFailed) { try box.open(Array(sealed.dropLast())) }
        #expect(throws: CryptoError.sealedDataTooShort(27)) { try box.open([UInt8](repeating: 0, count: 27)) }
    }

    @Test func wrongKeyAndWrongContext() throws {
        let sealed = try SecretBox(key: key).seal(bytes("pw"), associatedData: bytes("alice"))
        #expect(throws: CryptoError.authenticationFailed) {
            try SecretBox(key: [UInt8](repeating: 8, count: 32)).open(sealed, associatedData: bytes("alice"))
        }
        #expect(throws: CryptoError.authenticationFailed) { try SecretBox(key: key).open(sealed, associatedData: bytes("bob")) }
        #expect(throws: CryptoError.authenticationFailed) { try SecretBox(key: key).open(sealed) }
        #expect(try SecretBox(key: key).open(sealed, associatedData: bytes("alice")) == bytes("pw"))
    }

    @Test func keyLength() {
        #expect(throws: CryptoError.invalidKeyLength(expected: 32, actual: 16)) { try SecretBox(key: [UInt8](repeating: 1, count: 16)) }
        #expect(throws: CryptoError.self) { try SecretBox(key: [UInt8](repeating: 1, count: 33)) }
    }
}
