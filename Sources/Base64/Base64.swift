/// Base64 (RFC 4648) in the three spellings Mailgate needs, one codec:
///
/// - `standard`: `+` `/` with `=` padding: MIME bodies and headers, SMTP AUTH.
/// - `standardUnpadded`: PHC password-hash strings.
/// - `url`: `-` `_` without padding: JWS tokens (RFC 7515 §2).
///
/// Decoding is strict on purpose: every input has exactly one valid
/// spelling (no whitespace, no other alphabet, padding only where the codec
/// pads and only as much as needed, unused low bits zero), so checks and
/// anything keyed on the text cannot be confused by variants.
public struct Base64: Sendable {
    public static let standard = Base64(char62: UInt8(ascii: "+"), char63: UInt8(ascii: "/"), padded: true)
    public static let standardUnpadded = Base64(char62: UInt8(ascii: "+"), char63: UInt8(ascii: "/"), padded: false)
    public static let url = Base64(char62: UInt8(ascii: "-"), char63: UInt8(ascii: "_"), padded: false)

    private let alphabet: [UInt8]
    private let reverse: [UInt8]  // 0xFF: not in the alphabet
    public let padded: Bool

    private init(char62: UInt8, char63: UInt8, padded: Bool) {
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
        self.padded = padded
    }

    /// How many characters `count` bytes encode to.
    public func encodedLength(_ count: Int) -> Int {
        padded ? (count + 2) / 3 * 4 : (count * 4 + 2) / 3
    }

    public func encode<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> String {
        var out: [UInt8] = []
        append(bytes, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Appends the encoding of `bytes` to `out` (no line breaks).
    public func append<Bytes: Collection<UInt8>>(_ bytes: Bytes, to out: inout [UInt8]) {
        if bytes.withContiguousStorageIfAvailable({ append(contiguous: $0, to: &out) }) != nil { return }
        Array(bytes).withUnsafeBufferPointer { append(contiguous: $0, to: &out) }
    }

    private func append(contiguous bytes: UnsafeBufferPointer<UInt8>, to out: inout [UInt8]) {
        out.reserveCapacity(out.count + encodedLength(bytes.count))
        alphabet.withUnsafeBufferPointer { table in
            var iterator = bytes.makeIterator()
            while let first = iterator.next() {
                let second = iterator.next(), third = second == nil ? nil : iterator.next()
                let n = UInt32(first) << 16 | UInt32(second ?? 0) << 8 | UInt32(third ?? 0)
                out.append(table[Int(n >> 18 & 63)])
                out.append(table[Int(n >> 12 & 63)])
                if second != nil { out.append(table[Int(n >> 6 & 63)]) } else if padded { out.append(UInt8(ascii: "=")) }
                if third != nil { out.append(table[Int(n & 63)]) } else if padded { out.append(UInt8(ascii: "=")) }
            }
        }
    }

    /// The bytes `text` spells, or nil unless it is this codec's one
    /// canonical spelling of them.
    public func decode<Text: Collection<UInt8>>(_ text: Text) -> [UInt8]? {
        if let decoded = text.withContiguousStorageIfAvailable({ decode(bytes: $0) }) { return decoded }
        return Array(text).withUnsafeBufferPointer { decode(bytes: $0) }
    }

    /// Tokens are decoded on every request: one pass over contiguous bytes.
    private func decode(bytes text: UnsafeBufferPointer<UInt8>) -> [UInt8]? {
        var count = text.count
        if padded {
            guard count % 4 == 0 else { return nil }
            var padding = 0
            while padding < 2, count > 0, text[count - 1] == UInt8(ascii: "=") {
                count -= 1
                padding += 1
            }
            if padding != (4 - count % 4) % 4 { return nil }
        }
        if count % 4 == 1 { return nil }
        var out = [UInt8]()
        out.reserveCapacity(count * 3 / 4)
        var accumulator: UInt32 = 0
        var bits = 0
        let valid = reverse.withUnsafeBufferPointer { table -> Bool in
            for index in 0..<count {
                let value = table[Int(text[index])]
                if value == 0xFF { return false }
                accumulator = accumulator << 6 | UInt32(value)
                bits += 6
                if bits >= 8 {
                    bits -= 8
                    out.append(UInt8(truncatingIfNeeded: accumulator >> UInt32(bits)))
                    accumulator &= (1 << UInt32(bits)) - 1
                }
            }
            return true
        }
        // Leftover bits (2 or 4) must be zero, or two spellings would decode
        // to the same bytes.
        guard valid, accumulator == 0 else { return nil }
        return out
    }

    public func decode(_ text: some StringProtocol) -> [UInt8]? { decode(text.utf8) }
}
