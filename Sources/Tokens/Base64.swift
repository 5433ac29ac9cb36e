/// Base64url without padding (RFC 4648 §5, as JWS uses it, RFC 7515 §2).
///
/// Decoding is strict on purpose: a token has exactly one valid spelling, so
/// signature checks and any logging/caching keyed on the text cannot be
/// confused by padded, whitespace-laden or alternate-alphabet variants.
public enum Base64URL {
    public static func encode(_ bytes: [UInt8]) -> String {
        Base64Codec.url.encode(bytes)
    }

    /// Returns nil unless `text` is canonical unpadded base64url: only
    /// `A-Z a-z 0-9 - _`, no `=`, no whitespace, `count % 4 != 1`, and the
    /// unused low bits of the last character are zero.
    public static func decode(_ text: some StringProtocol) -> [UInt8]? {
        Base64Codec.url.decode(text.utf8)
    }
}

/// One strict, unpadded base64 codec for both alphabets: base64url for
/// tokens and standard base64 (`+` `/`) for PHC strings.
struct Base64Codec: Sendable {
    let alphabet: [UInt8]
    let reverse: [UInt8]  // 0xFF = not in the alphabet

    static let url = Base64Codec(char62: UInt8(ascii: "-"), char63: UInt8(ascii: "_"))
    static let standard = Base64Codec(char62: UInt8(ascii: "+"), char63: UInt8(ascii: "/"))

    init(char62: UInt8, char63: UInt8) {
        var alphabet: [UInt8] = []
        alphabet.append(contentsOf: UInt8(ascii: "A")...UInt8(ascii: "Z"))
        alphabet.append(contentsOf: UInt8(ascii: "a")...UInt8(ascii: "z"))
        alphabet.append(contentsOf: UInt8(ascii: "0")...UInt8(ascii: "9"))
        alphabet.append(char62)
        alphabet.append(char63)
        var reverse = [UInt8](repeating: 0xFF, count: 256)
        for (index, char) in alphabet.enumerated() { reverse[Int(char)] = UInt8(index) }
        self.alphabet = alphabet
        self.reverse = reverse
    }

    func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count * 4 + 2) / 3)
        var index = 0
        while index + 3 <= bytes.count {
            let n = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8 | UInt32(bytes[index + 2])
            out.append(alphabet[Int((n >> 18) & 63)])
            out.append(alphabet[Int((n >> 12) & 63)])
            out.append(alphabet[Int((n >> 6) & 63)])
            out.append(alphabet[Int(n & 63)])
            index += 3
        }
        switch bytes.count - index {
        case 1:
            let n = UInt32(bytes[index]) << 16
            out.append(alphabet[Int((n >> 18) & 63)])
            out.append(alphabet[Int((n >> 12) & 63)])
        case 2:
            let n = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8
            out.append(alphabet[Int((n >> 18) & 63)])
            out.append(alphabet[Int((n >> 12) & 63)])
            out.append(alphabet[Int((n >> 6) & 63)])
        default:
            break
        }
        return String(decoding: out, as: UTF8.self)
    }

    func decode<C: Collection>(_ text: C) -> [UInt8]? where C.Element == UInt8 {
        let count = text.count
        if count % 4 == 1 { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(count * 3 / 4)
        var accumulator: UInt32 = 0
        var bits = 0
        for char in text {
            let value = reverse[Int(char)]
            if value == 0xFF { return nil }
            accumulator = accumulator << 6 | UInt32(value)
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(truncatingIfNeeded: accumulator >> UInt32(bits)))
                accumulator &= (1 << UInt32(bits)) - 1
            }
        }
        // Leftover bits (2 or 4) must be zero, or two spellings would decode
        // to the same bytes.
        if accumulator != 0 { return nil }
        return out
    }
}
