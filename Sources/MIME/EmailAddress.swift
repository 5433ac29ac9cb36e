// Email address parsing for user-supplied recipients and configured senders.
//
// The parser is deliberately stricter than RFC 5322: it accepts exactly one
// mailbox in the shapes people actually type, and refuses anything that could
// smuggle a second recipient or a header line (CR/LF/NUL, commas, a second
// '@' or '<...>'). Everything accepted here can be written back into a header
// and into `MAIL FROM:<...>` / `RCPT TO:<...>` without further escaping.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

public enum AddressError: Error, Sendable, Equatable, CustomStringConvertible {
    case empty
    /// CR, LF, NUL, any other C0 control, DEL, a C1 control, or U+2028/U+2029.
    case containsControlCharacter
    case multipleAddresses
    /// The addr-spec is longer than 254 octets (RFC 5321 path limit minus brackets).
    case tooLong
    /// The local part is longer than 64 octets (RFC 5321 §4.5.3.1.1).
    case localPartTooLong
    /// The domain is longer than 253 octets.
    case domainTooLong
    case invalidSyntax(String)
    case invalidDisplayName(String)

    public var description: String {
        switch self {
        case .empty: return "the address is empty"
        case .containsControlCharacter:
            return "the address contains a control character (CR, LF, NUL or similar)"
        case .multipleAddresses: return "exactly one address is allowed"
        case .tooLong: return "the address is longer than 254 octets"
        case .localPartTooLong: return "the part before '@' is longer than 64 octets"
        case .domainTooLong: return "the domain is longer than 253 octets"
        case .invalidSyntax(let why): return "invalid address: \(why)"
        case .invalidDisplayName(let why): return "invalid display name: \(why)"
        }
    }
}

public struct EmailAddress: Sendable, Hashable, CustomStringConvertible {
    /// The local part in wire form: a dot-atom, or a quoted-string including
    /// its quotes and backslash escapes, exactly as it must appear in SMTP.
    public let localPart: String
    /// An ASCII domain name, or an address literal such as "[192.0.2.1]".
    public let domain: String

    public var description: String { localPart + "@" + domain }

    /// Validates the two halves separately; `localPart` in wire form (a
    /// quoted local part keeps its quotes).
    public init(localPart: String, domain: String) throws(AddressError) {
        try Self.refuseControlCharacters(localPart)
        try Self.refuseControlCharacters(domain)
        let local = Array(localPart.utf8)
        let dom = Array(domain.utf8)
        try Self.validate(local: local[...], domain: dom[...])
        self.localPart = localPart
        self.domain = domain
    }

    private init(validatedLocal: String, validatedDomain: String) {
        localPart = validatedLocal
        domain = validatedDomain
    }

    /// Parses ONE address: a bare addr-spec "user@example.com", or
    /// "Display Name <user@example.com>" / "\"Quoted, Name\" <user@example.com>".
    public static func parse(_ text: String) throws(AddressError) -> Mailbox {
        // Controls are checked on the raw string first, so no later step can
        // be tricked into treating a CR/LF-bearing value as a display name.
        try refuseControlCharacters(text)
        let bytes = Array(text.utf8)
        var lo = 0
        var hi = bytes.count
        while lo < hi, bytes[lo] == UInt8(ascii: " ") { lo += 1 }
        while hi > lo, bytes[hi - 1] == UInt8(ascii: " ") { hi -= 1 }
        if lo == hi { throw .empty }
        let input = bytes[lo..<hi]

        // One pass over the top level (outside quoted-strings) to find the
        // structure: where '<' and '>' are, and whether anything signals a
        // second address.
        var inQuotes = false
        var escaped = false
        var openAngle: Int?
        var closeAngle: Int?
        var strayClose = false
        var i = input.startIndex
        while i < input.endIndex {
            let c = input[i]
            if inQuotes {
                if escaped { escaped = false }
                else if c == UInt8(ascii: "\\") { escaped = true }
                else if c == UInt8(ascii: "\"") { inQuotes = false }
            } else {
                switch c {
                case UInt8(ascii: "\""):
                    inQuotes = true
                case UInt8(ascii: ","), UInt8(ascii: ";"):
                    throw .multipleAddresses
                case UInt8(ascii: "<"):
                    if openAngle != nil { throw .multipleAddresses }
                    openAngle = i
                case UInt8(ascii: ">"):
                    if closeAngle != nil { throw .multipleAddresses }
                    if openAngle == nil {
                        strayClose = true
                    } else {
                        closeAngle = i
                    }
                default:
                    break
                }
            }
            i += 1
        }
        if strayClose {
            // Before a '<' it is part of a display name; with no '<' at all
            // the whole input was meant as a bare address.
            throw openAngle == nil
                ? .invalidSyntax("'>' without a matching '<'")
                : .invalidDisplayName("'>' without a matching '<'")
        }
        if inQuotes {
            // With angle brackets anywhere, the stray quote is in what was
            // meant as a display name.
            let hasAngle = input.contains(UInt8(ascii: "<")) || input.contains(UInt8(ascii: ">"))
            throw hasAngle
                ? .invalidDisplayName("unbalanced '\"'")
                : .invalidSyntax("unterminated quoted string")
        }

        guard let open = openAngle else {
            // Bare addr-spec.
            let address = try parseAddrSpec(input)
            return Mailbox(displayName: nil, address: address)
        }
        guard let close = closeAngle else {
            throw .invalidSyntax("'<' without a matching '>'")
        }
        // Nothing but spaces may follow the '>'.
        if input[(close + 1)...].contains(where: { $0 != UInt8(ascii: " ") }) {
            if input[(close + 1)...].contains(UInt8(ascii: "@")) { throw .multipleAddresses }
            throw .invalidSyntax("unexpected text after '>'")
        }
        let address = try parseAddrSpec(input[(open + 1)..<close])
        let name = try parseDisplayName(input[input.startIndex..<open])
        return Mailbox(displayName: name, address: address)
    }

    // MARK: - Pieces

    static func refuseControlCharacters(_ text: String) throws(AddressError) {
        for scalar in text.unicodeScalars where isForbiddenScalar(scalar) {
            throw .containsControlCharacter
        }
    }

    /// C0, DEL, C1, and the Unicode line/paragraph separators: Python's
    /// `str.splitlines` (and so some mail tooling) treats the latter as line
    /// breaks, and no legitimate address or display name needs them.
    @inline(__always)
    static func isForbiddenScalar(_ s: Unicode.Scalar) -> Bool {
        let v = s.value
        return v < 0x20 || (v >= 0x7F && v <= 0x9F) || v == 0x2028 || v == 0x2029
    }

    private static func parseAddrSpec(_ spec: ArraySlice<UInt8>) throws(AddressError) -> EmailAddress {
        if spec.isEmpty { throw .invalidSyntax("empty address") }
        if spec.contains(UInt8(ascii: " ")) {
            // "a@x.com b@y.com": two '@' outside quotes means two addresses.
            if atSignCountOutsideQuotes(spec) > 1 { throw .multipleAddresses }
            // A quoted local part may contain spaces; anything else may not.
            if spec.first != UInt8(ascii: "\"") {
                throw .invalidSyntax("spaces are not allowed in an address")
            }
        }
        // Find the '@' that ends the local part.
        var at: Int?
        if spec.first == UInt8(ascii: "\"") {
            guard let endQuote = closingQuote(in: spec, openingAt: spec.startIndex) else {
                throw .invalidSyntax("unterminated quoted local part")
            }
            let next = endQuote + 1
            guard next < spec.endIndex, spec[next] == UInt8(ascii: "@") else {
                throw .invalidSyntax("a quoted local part must be followed by '@'")
            }
            at = next
        } else {
            at = spec.firstIndex(of: UInt8(ascii: "@"))
        }
        guard let atIndex = at else { throw .invalidSyntax("missing '@'") }
        let local = spec[spec.startIndex..<atIndex]
        let domain = spec[(atIndex + 1)...]
        if domain.contains(UInt8(ascii: "@")) { throw .multipleAddresses }
        try validate(local: local, domain: domain)
        return EmailAddress(
            validatedLocal: String(decoding: local, as: UTF8.self),
            validatedDomain: String(decoding: domain, as: UTF8.self))
    }

    private static func atSignCountOutsideQuotes(_ s: ArraySlice<UInt8>) -> Int {
        var count = 0
        var inQuotes = false
        var escaped = false
        for c in s {
            if inQuotes {
                if escaped { escaped = false }
                else if c == UInt8(ascii: "\\") { escaped = true }
                else if c == UInt8(ascii: "\"") { inQuotes = false }
            } else if c == UInt8(ascii: "\"") {
                inQuotes = true
            } else if c == UInt8(ascii: "@") {
                count += 1
            }
        }
        return count
    }

    /// Index of the quote closing the quoted-string opened at `start`.
    private static func closingQuote(in s: ArraySlice<UInt8>, openingAt start: Int) -> Int? {
        var i = start + 1
        while i < s.endIndex {
            switch s[i] {
            case UInt8(ascii: "\\"): i += 2
            case UInt8(ascii: "\""): return i
            default: i += 1
            }
        }
        return nil
    }

    static func validate(local: ArraySlice<UInt8>, domain: ArraySlice<UInt8>) throws(AddressError) {
        if local.isEmpty { throw .invalidSyntax("empty local part") }
        if domain.isEmpty { throw .invalidSyntax("empty domain") }
        if local.count > 64 { throw .localPartTooLong }
        if domain.count > 253 { throw .domainTooLong }
        if local.count + 1 + domain.count > 254 { throw .tooLong }
        if local.first == UInt8(ascii: "\"") {
            try validateQuotedLocal(local)
        } else {
            try validateDotAtom(local)
        }
        if domain.first == UInt8(ascii: "[") {
            try validateAddressLiteral(domain)
        } else {
            try validateDomainName(domain)
        }
    }

    /// RFC 5322 atext (ASCII only: UTF-8 local parts need SMTPUTF8, which
    /// the SMTP client does not negotiate).
    @inline(__always)
    static func isAtext(_ c: UInt8) -> Bool {
        switch c {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"),
             UInt8(ascii: "&"), UInt8(ascii: "'"), UInt8(ascii: "*"), UInt8(ascii: "+"),
             UInt8(ascii: "-"), UInt8(ascii: "/"), UInt8(ascii: "="), UInt8(ascii: "?"),
             UInt8(ascii: "^"), UInt8(ascii: "_"), UInt8(ascii: "`"), UInt8(ascii: "{"),
             UInt8(ascii: "|"), UInt8(ascii: "}"), UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }

    private static func validateDotAtom(_ local: ArraySlice<UInt8>) throws(AddressError) {
        var previousDot = true  // a leading dot is refused like a double dot
        for c in local {
            if c == UInt8(ascii: ".") {
                if previousDot { throw .invalidSyntax("misplaced '.' in the local part") }
                previousDot = true
            } else if isAtext(c) {
                previousDot = false
            } else if c >= 0x80 {
                throw .invalidSyntax("non-ASCII local parts are not supported")
            } else {
                throw .invalidSyntax("character '\(Character(Unicode.Scalar(c)))' is not allowed in the local part")
            }
        }
        if previousDot { throw .invalidSyntax("misplaced '.' in the local part") }
    }

    private static func validateQuotedLocal(_ local: ArraySlice<UInt8>) throws(AddressError) {
        guard local.count >= 2, local.last == UInt8(ascii: "\""),
              closingQuote(in: local, openingAt: local.startIndex) == local.endIndex - 1
        else { throw .invalidSyntax("malformed quoted local part") }
        if local.count == 2 { throw .invalidSyntax("empty local part") }
        for c in local[(local.startIndex + 1)..<(local.endIndex - 1)] {
            // Printable ASCII and space only (controls were refused earlier).
            if c < 0x20 || c >= 0x7F {
                throw .invalidSyntax("non-ASCII local parts are not supported")
            }
            // Valid in RFC 5322, but an SMTP path ends at '>' (RFC 5321
            // §4.1.2) and servers refuse it: refused here, before any connection.
            if c == UInt8(ascii: "<") || c == UInt8(ascii: ">") {
                throw .invalidSyntax("'<' and '>' are not allowed in a quoted local part")
            }
        }
    }

    private static func validateDomainName(_ domain: ArraySlice<UInt8>) throws(AddressError) {
        var labelStart = domain.startIndex
        var allDigitsInLastLabel = true
        var i = domain.startIndex
        while i <= domain.endIndex {
            if i == domain.endIndex || domain[i] == UInt8(ascii: ".") {
                let label = domain[labelStart..<i]
                if label.isEmpty { throw .invalidSyntax("empty label in the domain") }
                if label.count > 63 { throw .invalidSyntax("a domain label is longer than 63 octets") }
                if label.first == UInt8(ascii: "-") || label.last == UInt8(ascii: "-") {
                    throw .invalidSyntax("a domain label starts or ends with '-'")
                }
                allDigitsInLastLabel = true
                for c in label {
                    switch c {
                    case UInt8(ascii: "0")...UInt8(ascii: "9"):
                        break
                    case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                         UInt8(ascii: "-"):
                        allDigitsInLastLabel = false
                    default:
                        if c >= 0x80 {
                            throw .invalidSyntax("non-ASCII domains must be given in punycode (xn--)")
                        }
                        throw .invalidSyntax("character '\(Character(Unicode.Scalar(c)))' is not allowed in the domain")
                    }
                }
                labelStart = i + 1
            }
            i += 1
        }
        // "1.2.3.4" without brackets would be looked up in DNS as a name;
        // no top-level domain is all digits, so ask for a literal instead.
        if allDigitsInLastLabel {
            throw .invalidSyntax("write an IP address as an address literal, e.g. [192.0.2.1]")
        }
    }

    private static func validateAddressLiteral(_ domain: ArraySlice<UInt8>) throws(AddressError) {
        guard domain.count >= 3, domain.last == UInt8(ascii: "]") else {
            throw .invalidSyntax("malformed address literal")
        }
        let inner = domain[(domain.startIndex + 1)..<(domain.endIndex - 1)]
        let ipv6Tag = Array("IPv6:".utf8)
        if inner.count > ipv6Tag.count,
           inner.prefix(ipv6Tag.count).elementsEqual(ipv6Tag, by: { asciiLower($0) == asciiLower($1) }) {
            let text = String(decoding: inner.dropFirst(ipv6Tag.count), as: UTF8.self)
            guard isValidIPv6(text) else { throw .invalidSyntax("malformed IPv6 address literal") }
            return
        }
        guard isValidIPv4(inner) else { throw .invalidSyntax("malformed IPv4 address literal") }
    }

    @inline(__always)
    static func asciiLower(_ c: UInt8) -> UInt8 {
        (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z")) ? c | 0x20 : c
    }

    /// Strict dotted quad: four decimal octets 0-255, no leading zeros (which
    /// some resolvers read as octal).
    static func isValidIPv4(_ s: ArraySlice<UInt8>) -> Bool {
        var parts = 0
        var value = 0
        var digits = 0
        var leadingZero = false
        for c in s {
            if c == UInt8(ascii: ".") {
                if digits == 0 { return false }
                parts += 1
                value = 0; digits = 0; leadingZero = false
            } else if c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") {
                if leadingZero { return false }
                if digits == 0 && c == UInt8(ascii: "0") { leadingZero = true }
                value = value * 10 + Int(c - UInt8(ascii: "0"))
                digits += 1
                if value > 255 || digits > 3 { return false }
            } else {
                return false
            }
        }
        return digits > 0 && parts == 3
    }

    static func isValidIPv6(_ text: String) -> Bool {
        // Only hex digits, ':' and '.' (for an embedded IPv4 tail); then let
        // the C library's parser decide, rather than re-implementing "::".
        guard !text.isEmpty, text.utf8.count <= 45, text.utf8.allSatisfy({ c in
            c == UInt8(ascii: ":") || c == UInt8(ascii: ".") || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9"))
                || (asciiLower(c) >= UInt8(ascii: "a") && asciiLower(c) <= UInt8(ascii: "f"))
        }) else { return false }
        var storage = in6_addr()
        return inet_pton(AF_INET6, text, &storage) == 1
    }

    private static func parseDisplayName(_ raw: ArraySlice<UInt8>) throws(AddressError) -> String? {
        var lo = raw.startIndex
        var hi = raw.endIndex
        while lo < hi, raw[lo] == UInt8(ascii: " ") { lo += 1 }
        while hi > lo, raw[hi - 1] == UInt8(ascii: " ") { hi -= 1 }
        let name = raw[lo..<hi]
        if name.isEmpty { return nil }

        if name.first == UInt8(ascii: "\"") {
            // One quoted-string covering the whole name.
            guard let end = closingQuote(in: name, openingAt: name.startIndex) else {
                throw .invalidDisplayName("unbalanced '\"'")
            }
            if end != name.endIndex - 1 {
                throw .invalidDisplayName("text after the closing '\"'")
            }
            var unescaped: [UInt8] = []
            unescaped.reserveCapacity(name.count)
            var i = name.startIndex + 1
            while i < end {
                if name[i] == UInt8(ascii: "\\") { i += 1 }
                unescaped.append(name[i])
                i += 1
            }
            if unescaped.allSatisfy({ $0 == UInt8(ascii: " ") }) { return nil }
            return String(decoding: unescaped, as: UTF8.self)
        }

        for c in name {
            switch c {
            case UInt8(ascii: "\""):
                throw .invalidDisplayName("unbalanced '\"'")
            case UInt8(ascii: "@"):
                // "a@x.com <b@y.com>": two addresses, or a spoofing attempt.
                throw .multipleAddresses
            case UInt8(ascii: ":"):
                throw .invalidDisplayName("group syntax is not supported")
            case UInt8(ascii: "\\"):
                throw .invalidDisplayName("a backslash is only allowed inside quotes")
            default:
                break
            }
        }
        return String(decoding: name, as: UTF8.self)
    }
}

public struct Mailbox: Sendable, Hashable {
    public var displayName: String?
    public var address: EmailAddress

    public init(displayName: String?, address: EmailAddress) {
        self.displayName = displayName
        self.address = address
    }
}
