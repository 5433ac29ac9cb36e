/// Case-insensitive matching of protocol tokens (`Bearer`, media types) on
/// UTF-8 bytes: ASCII letters only, linear, no Unicode case folding or
/// normalisation (see `utf8Equals` in the JSON module for why).
enum ASCIIBytes {
    static func lowered(_ byte: UInt8) -> UInt8 {
        (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) ? byte | 0x20 : byte
    }

    /// `text` begins with `prefix`, ASCII letters compared in either case.
    static func hasPrefix(_ text: some Collection<UInt8>, ignoringCase prefix: String) -> Bool {
        text.count >= prefix.utf8.count && zip(text, prefix.utf8).allSatisfy { lowered($0) == lowered($1) }
    }

    /// `text` is `other`, ASCII letters compared in either case.
    static func equals(_ text: some Collection<UInt8>, ignoringCase other: String) -> Bool {
        text.count == other.utf8.count && hasPrefix(text, ignoringCase: other)
    }
}
