/// Which recipients a user's sends may reach: any (no patterns), or only
/// addresses that match one of the patterns. What a contact form's backend
/// needs: a leaked token of it can only ever write to the site owner.
///
/// A pattern is `LOCAL@DOMAIN` where LOCAL is `*` (any) or a dot-atom
/// matched exactly (local parts are case-sensitive), and DOMAIN is a domain
/// name, or `*.` and a domain name for any name under it (not the name
/// itself). Domains compare lower-cased, as ASCII bytes; an address literal
/// such as `user@[192.0.2.1]` matches no pattern.
public struct RecipientPolicy: Sendable, Equatable, CustomStringConvertible {
    public struct Pattern: Sendable, Equatable, CustomStringConvertible {
        /// nil: any local part.
        public let localPart: String?
        /// Lower-case ASCII.
        public let domain: String
        /// True: names under `domain`, not `domain` itself.
        public let subdomainsOnly: Bool

        public var description: String {
            (localPart ?? "*") + "@" + (subdomainsOnly ? "*." : "") + domain
        }

        /// Parses one pattern; the error says what is wrong with it.
        public init(parsing text: String) throws(StoreError) {
            let bytes = Array(text.utf8)
            guard let at = bytes.lastIndex(of: UInt8(ascii: "@")) else {
                throw .invalidRecipientPattern("\(text): no @ (use user@example.com, *@example.com or *@*.example.com)")
            }
            let local = bytes[..<at], domainBytes = bytes[(at + 1)...]
            if local.elementsEqual([UInt8(ascii: "*")]) {
                localPart = nil
            } else {
                guard Self.isDotAtom(local) else {
                    throw .invalidRecipientPattern("\(text): the part before @ must be * or a plain local part (letters, digits, ! # $ % & ' * + - / = ? ^ _ ` { | } ~ and inner dots, at most 64)")
                }
                localPart = String(decoding: local, as: UTF8.self)
            }
            var name = domainBytes[...]
            subdomainsOnly = name.starts(with: [UInt8(ascii: "*"), UInt8(ascii: ".")])
            if subdomainsOnly { name = name.dropFirst(2) }
            let lowered = name.map(ASCII.lowercased)
            guard Self.isDomainName(lowered[...]) else {
                throw .invalidRecipientPattern("\(text): the part after @ must be a domain name, or *. and a domain name")
            }
            domain = String(decoding: lowered, as: UTF8.self)
        }

        /// Whether `localPart@domain` (a validated address, local part in
        /// wire form) matches.
        public func matches(localPart recipientLocal: String, domain recipientDomain: String) -> Bool {
            if let localPart, !localPart.utf8.elementsEqual(recipientLocal.utf8) { return false }
            let wanted = domain.utf8, given = recipientDomain.utf8
            if subdomainsOnly {
                // "<one or more labels>.<domain>"
                guard given.count > wanted.count + 1 else { return false }
                let suffix = given.suffix(wanted.count + 1)
                return suffix.first == UInt8(ascii: ".")
                    && zip(suffix.dropFirst(), wanted).allSatisfy { ASCII.lowercased($0) == $1 }
            }
            return given.count == wanted.count && zip(given, wanted).allSatisfy { ASCII.lowercased($0) == $1 }
        }

        /// RFC 5322 dot-atom, at most 64 octets.
        private static func isDotAtom(_ bytes: ArraySlice<UInt8>) -> Bool {
            guard (1...64).contains(bytes.count), bytes.first != UInt8(ascii: "."), bytes.last != UInt8(ascii: ".") else {
                return false
            }
            var previousWasDot = false
            for byte in bytes {
                if byte == UInt8(ascii: ".") {
                    if previousWasDot { return false }
                    previousWasDot = true
                    continue
                }
                previousWasDot = false
                guard ASCII.isAtext(byte) else { return false }
            }
            return true
        }

        /// Lower-case LDH labels of 1-63 octets, at most 253 in all.
        private static func isDomainName(_ bytes: ArraySlice<UInt8>) -> Bool {
            guard (1...253).contains(bytes.count) else { return false }
            return bytes.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false).allSatisfy { label in
                guard (1...63).contains(label.count), label.first != UInt8(ascii: "-"), label.last != UInt8(ascii: "-") else {
                    return false
                }
                return label.allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == UInt8(ascii: "-") }
            }
        }
    }

    /// Empty: any recipient.
    public let patterns: [Pattern]

    public static let any = RecipientPolicy(patterns: [])

    public init(patterns: [Pattern]) { self.patterns = patterns }

    /// Parses every pattern; the error names the first bad one.
    public init(parsing texts: [String]) throws(StoreError) {
        var patterns: [Pattern] = []
        for text in texts {
            let pattern = try Pattern(parsing: text)
            if !patterns.contains(pattern) { patterns.append(pattern) }
        }
        self.patterns = patterns
    }

    public var allowsAny: Bool { patterns.isEmpty }

    public func permits(localPart: String, domain: String) -> Bool {
        allowsAny || patterns.contains { $0.matches(localPart: localPart, domain: domain) }
    }

    public var description: String { allowsAny ? "any" : patterns.map(\.description).joined(separator: " ") }

    /// The stored form: nil for any, else one pattern per line.
    var storedText: String? { allowsAny ? nil : patterns.map(\.description).joined(separator: "\n") }

    /// Reads the stored form back; a row that does not parse is an error,
    /// never "any": a damaged policy must not open the user to everyone.
    init(storedText: String?, of username: String) throws(StoreError) {
        guard let storedText else {
            self = .any
            return
        }
        let parsed: RecipientPolicy
        do {
            parsed = try RecipientPolicy(parsing: storedText.split(separator: "\n", omittingEmptySubsequences: false).map(String.init))
        } catch {
            throw .database("the stored recipient policy of \(username) is unreadable")
        }
        guard !parsed.allowsAny else { throw .database("the stored recipient policy of \(username) is empty") }
        self = parsed
    }
}

/// ASCII byte classes for the policy's parser.
private enum ASCII {
    static func lowercased(_ byte: UInt8) -> UInt8 {
        (0x41...0x5A).contains(byte) ? byte | 0x20 : byte
    }

    private static let atextSymbols = Array("!#$%&'*+-/=?^_`{|}~".utf8)

    /// RFC 5322 atext.
    static func isAtext(_ byte: UInt8) -> Bool {
        switch byte {
        case 0x41...0x5A, 0x61...0x7A, 0x30...0x39: return true
        default: return atextSymbols.contains(byte)
        }
    }
}
