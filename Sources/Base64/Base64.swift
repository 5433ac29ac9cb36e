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

    /// Writes straight into `out`'s storage: an element-wise `append` costs a
    /// uniqueness check per character, which made base64 a fifth of the CPU
    /// of a send with a 100 KiB attachment. Growing by `append(contentsOf:)`
    /// keeps the array's geometric growth (an exact `reserveCapacity` per
    /// call would reallocate on every 76-column line).
    private func append(contiguous bytes: UnsafeBufferPointer<UInt8>, to out: inout [UInt8]) {
        let length = encodedLength(bytes.count)
        guard length > 0 else { return }
        let start = out.count
        out.append(contentsOf: repeatElement(0, count: length))
        let padded = self.padded
        alphabet.withUnsafeBufferPointer { table in
            out.withUnsafeMutableBufferPointer { buffer in
                var o = start, i = 0
                let whole = bytes.count - bytes.count % 3
                while i < whole {
                    let n = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
                    buffer[o] = table[Int(n >> 18 & 63)]
                    buffer[o + 1] = table[Int(n >> 12 & 63)]
                    buffer[o + 2] = table[Int(n >> 6 & 63)]
                    buffer[o + 3] = table[Int(n & 63)]
                    i += 3
                    o += 4
                }
                let left = bytes.count - whole
                guard left > 0 else { return }
                let n = UInt32(bytes[i]) << 16 | (left == 2 ? UInt32(bytes[i + 1]) << 8 : 0)
                buffer[o] = table[Int(n >> 18 & 63)]
                buffer[o + 1] = table[Int(n >> 12 & 63)]
                if left == 2 {
                    buffer[o + 2] = table[Int(n >> 6 & 63)]
                    if padded { buffer[o + 3] = UInt8(ascii: "=") }
                } else if padded {
                    buffer[o + 2] = UInt8(ascii: "=")
                    buffer[o + 3] = UInt8(ascii: "=")
                }
            }
        }
    }

    /// The bytes `text` spells, or nil unless it is this codec's one
    /// canonical spelling of them.
    public func decode<Text: Collection<UInt8>>(_ text: Text) -> [UInt8]? {
        if let decoded = text.withContiguousStorageIfAvailable({ decode(bytes: $0) }) { return decoded }
        return Array(text).withUnsafeBufferPointer { decode(bytes: $0) }
    }

    /// Decodes `text` into `buffer` without allocating (a token's MAC, on
    /// every request), as strictly as `decode(_:)`: the number of bytes
    /// written, or nil unless `text` is this codec's one canonical spelling
    /// of bytes that fit in `buffer`.
    public func decode(_ text: UnsafeBufferPointer<UInt8>, into buffer: UnsafeMutableRawBufferPointer) -> Int? {
        guard let (count, length) = spelling(text), length <= buffer.count else { return nil }
        let bytes = buffer.bindMemory(to: UInt8.self)
        return decode(text, count: count, into: bytes) == length ? length : nil
    }

    /// Tokens are decoded on every request: one pass over contiguous bytes.
    private func decode(bytes text: UnsafeBufferPointer<UInt8>) -> [UInt8]? {
        guard let (count, length) = spelling(text) else { return nil }
        var decoded = 0
        // Written through the buffer, not appended byte by byte (see
        // `append(contiguous:to:)`).
        let out = [UInt8](unsafeUninitializedCapacity: length) { buffer, initialized in
            decoded = decode(text, count: count, into: buffer) ?? 0
            initialized = decoded
        }
        guard decoded == length, out.count == length else { return nil }
        return out
    }

    /// The characters of `text` that carry data (without its padding) and
    /// the number of bytes they make, or nil when its length or padding
    /// cannot be a canonical spelling.
    private func spelling(_ text: UnsafeBufferPointer<UInt8>) -> (count: Int, length: Int)? {
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
        // Every 4 characters make 3 bytes; 2 or 3 left over make 1 or 2.
        return (count, count / 4 * 3 + max(0, count % 4 - 1))
    }

    /// Decodes the first `count` characters of `text` into `buffer` (which
    /// holds the bytes they make): the number written, or nil on a
    /// character outside the alphabet or unused low bits that are not zero.
    private func decode(_ text: UnsafeBufferPointer<UInt8>, count: Int, into buffer: UnsafeMutableBufferPointer<UInt8>) -> Int? {
        reverse.withUnsafeBufferPointer { table -> Int? in
            var o = 0
            // Whole quads first, 3 bytes from 4 lookups: any invalid
            // character (0xFF) sets bit 7 of the OR of the four.
            var index = 0
            for _ in 0..<(count / 4) {
                let a = table[Int(text[index])], b = table[Int(text[index + 1])]
                let c = table[Int(text[index + 2])], d = table[Int(text[index + 3])]
                if (a | b | c | d) & 0x80 != 0 { return nil }
                let n = UInt32(a) << 18 | UInt32(b) << 12 | UInt32(c) << 6 | UInt32(d)
                buffer[o] = UInt8(truncatingIfNeeded: n >> 16)
                buffer[o + 1] = UInt8(truncatingIfNeeded: n >> 8)
                buffer[o + 2] = UInt8(truncatingIfNeeded: n)
                o += 3
                index += 4
            }
            // The last 2 or 3 characters, bit by bit.
            var accumulator: UInt32 = 0
            var bits = 0
            for index in index..<count {
                let value = table[Int(text[index])]
                if value == 0xFF { return nil }
                accumulator = accumulator << 6 | UInt32(value)
                bits += 6
                if bits >= 8 {
                    bits -= 8
                    buffer[o] = UInt8(truncatingIfNeeded: accumulator >> UInt32(bits))
                    o += 1
                    accumulator &= (1 << UInt32(bits)) - 1
                }
            }
            // Leftover bits (2 or 4) must be zero, or two spellings would
            // decode to the same bytes.
            return accumulator == 0 ? o : nil
        }
    }

    public func decode(_ text: some StringProtocol) -> [UInt8]? { decode(text.utf8) }
}
