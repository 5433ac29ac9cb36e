import Foundation
import Testing
@testable import MIME

private let label63 = String(repeating: "a", count: 63)
/// 63 + 1 + 63 + 1 + 61 = 189 octets.
private let domain189 = "\(label63).\(String(repeating: "b", count: 63)).\(String(repeating: "c", count: 61))"
private let local64 = String(repeating: "l", count: 64)

struct ValidAddress: Sendable, CustomTestStringConvertible {
    var input: String
    var name: String?
    var local: String
    var domain: String
    var testDescription: String { input }
}

@Suite struct AddressParsingTests {
    static let valid: [ValidAddress] = [
        .init(input: "user@example.com", name: nil, local: "user", domain: "example.com"),
        .init(input: "  user@example.com  ", name: nil, local: "user", domain: "example.com"),
        .init(input: "<user@example.com>", name: nil, local: "user", domain: "example.com"),
        .init(input: "Jane Doe <jane@example.com>", name: "Jane Doe", local: "jane", domain: "example.com"),
        .init(input: "\"Doe, Jane\" <jane@example.com>", name: "Doe, Jane", local: "jane", domain: "example.com"),
        .init(input: "\"Say \\\"hi\\\"\" <q@example.com>", name: "Say \"hi\"", local: "q", domain: "example.com"),
        .init(input: "\"A <b>\" <a@example.com>", name: "A <b>", local: "a", domain: "example.com"),
        .init(input: "Zoë Ünïcode <z@example.com>", name: "Zoë Ünïcode", local: "z", domain: "example.com"),
        .init(input: "user+tag@example.com", name: nil, local: "user+tag", domain: "example.com"),
        .init(input: "first.last@sub.example.co.uk", name: nil, local: "first.last", domain: "sub.example.co.uk"),
        .init(input: "o'brien!#$%&*/=?^_`{|}~-@example.com", name: nil,
              local: "o'brien!#$%&*/=?^_`{|}~-", domain: "example.com"),
        .init(input: "user@[192.0.2.1]", name: nil, local: "user", domain: "[192.0.2.1]"),
        .init(input: "user@[IPv6:2001:db8::1]", name: nil, local: "user", domain: "[IPv6:2001:db8::1]"),
        .init(input: "\"john doe\"@example.com", name: nil, local: "\"john doe\"", domain: "example.com"),
        .init(input: "Name <\"a,b\"@example.com>", name: "Name", local: "\"a,b\"", domain: "example.com"),
        .init(input: "user@localhost", name: nil, local: "user", domain: "localhost"),
        .init(input: "user@xn--bcher-kva.example", name: nil, local: "user", domain: "xn--bcher-kva.example"),
        .init(input: "\(local64)@\(domain189)", name: nil, local: local64, domain: domain189),  // 254 octets
    ]

    @Test(arguments: valid)
    func accepts(_ case_: ValidAddress) throws {
        let parsed = try EmailAddress.parse(case_.input)
        #expect(parsed.displayName == case_.name)
        #expect(parsed.address.localPart == case_.local)
        #expect(parsed.address.domain == case_.domain)
        #expect(parsed.address.description == "\(case_.local)@\(case_.domain)")
    }

    static let invalid: [(String, AddressError)] = [
        ("", .empty),
        ("   ", .empty),
        ("a@x.com, b@y.com", .multipleAddresses),
        ("a@x.com b@y.com", .multipleAddresses),
        ("a@x.com;b@y.com", .multipleAddresses),
        ("A <a@x.com>, B <b@y.com>", .multipleAddresses),
        ("A <a@x.com> <b@y.com>", .multipleAddresses),
        ("A <a@x.com> b@y.com", .multipleAddresses),
        ("a@b@example.com", .multipleAddresses),
        ("a@x.com <b@y.com>", .multipleAddresses),
        ("Name <a@x.com>\r\nBcc: evil@z.com", .containsControlCharacter),
        ("a@x.com\nBcc: evil@z.com", .containsControlCharacter),
        ("a@x.com\r", .containsControlCharacter),
        ("a@x.com\u{0}", .containsControlCharacter),
        ("a\u{0}b@x.com", .containsControlCharacter),
        ("Na\u{7F}me <a@x.com>", .containsControlCharacter),
        ("a\tb@x.com", .containsControlCharacter),
        ("Name\u{85} <a@x.com>", .containsControlCharacter),
        ("Name\u{2028} <a@x.com>", .containsControlCharacter),
        ("\(local64)@\(domain189)x", .tooLong),  // 255 octets
        ("\(local64)x@example.com", .localPartTooLong),
        ("user@\(String(repeating: "\(label63).", count: 4))com", .domainTooLong),
        ("userexample.com", .invalidSyntax("missing '@'")),
        ("user@", .invalidSyntax("empty domain")),
        ("@example.com", .invalidSyntax("empty local part")),
        ("\"\"@example.com", .invalidSyntax("empty local part")),
        ("Name <>", .invalidSyntax("empty address")),
        ("Name <a@x.com", .invalidSyntax("'<' without a matching '>'")),
        ("Name <a@x.com> trailing", .invalidSyntax("unexpected text after '>'")),
        ("Name \"<a@x.com>", .invalidDisplayName("unbalanced '\"'")),
        ("Na\"me <a@x.com>", .invalidDisplayName("unbalanced '\"'")),
        ("\"Name <a@x.com>", .invalidDisplayName("unbalanced '\"'")),
        ("\"Name\" extra <a@x.com>", .invalidDisplayName("text after the closing '\"'")),
        ("Name > <a@x.com>", .invalidDisplayName("'>' without a matching '<'")),
        ("Group: <a@x.com>", .invalidDisplayName("group syntax is not supported")),
        ("a@x.com>", .invalidSyntax("'>' without a matching '<'")),
    ]

    @Test(arguments: invalid)
    func refuses(_ input: String, _ expected: AddressError) {
        #expect(throws: expected) { try EmailAddress.parse(input) }
    }

    /// Syntax errors whose exact wording does not matter.
    @Test(arguments: [
        "user@-bad.com", "user@bad-.com", "user@ex_ample.com", "user@exa..mple.com",
        "user@.example.com", "user@example.com.", "user@\(String(repeating: "a", count: 64)).com",
        "user@exämple.com", "user@1.2.3.4", "user@[256.1.1.1]", "user@[1.2.3]", "user@[01.2.3.4]",
        "user@[IPv6:2001:db8::g]", "user@[example.com]", ".user@x.com", "us..er@x.com",
        "user.@x.com", "us(er@x.com", "us\\er@x.com", "üser@example.com", "\"unterminated@x.com",
        "\"quoted\"x@example.com", "a b@x.com",
    ])
    func refusesBadSyntax(_ input: String) {
        #expect {
            try EmailAddress.parse(input)
        } throws: { error in
            guard let error = error as? AddressError, case .invalidSyntax = error else { return false }
            return true
        }
    }

    @Test func validatingInitializer() throws {
        let address = try EmailAddress(localPart: "user", domain: "example.com")
        #expect(address.description == "user@example.com")
        #expect(throws: AddressError.containsControlCharacter) {
            try EmailAddress(localPart: "user\r\nBcc: x", domain: "example.com")
        }
        #expect {
            try EmailAddress(localPart: "a@b", domain: "example.com")
        } throws: { error in
            guard let error = error as? AddressError, case .invalidSyntax = error else { return false }
            return true
        }
        #expect(throws: AddressError.localPartTooLong) {
            try EmailAddress(localPart: local64 + "x", domain: "example.com")
        }
    }

    @Test func errorsDescribeThemselves() {
        let errors: [AddressError] = [
            .empty, .containsControlCharacter, .multipleAddresses, .tooLong, .localPartTooLong,
            .domainTooLong, .invalidSyntax("x"), .invalidDisplayName("y"),
        ]
        let descriptions = Set(errors.map(\.description))
        #expect(descriptions.count == errors.count)
        #expect(!descriptions.contains(""))
    }
}

@Suite struct AddressFuzzTests {
    /// Random strings over an alphabet rich in structural characters: the
    /// parser must never trap, and anything it accepts must re-parse to the
    /// same address and render without line breaks in its header.
    @Test func randomInputsAreHandledSafely() throws {
        let alphabet: [Character] = Array("ab.@<>\",;: \\[]()-+1é\r\n\t\u{0}xyz")
        // Seeded: the same 50,000 inputs every run, so a failure reproduces
        // and "some are accepted" cannot depend on luck.
        var rng = SplitMix64(seed: 0x6d61_696c_6761_7465)
        var accepted = 0
        for _ in 0..<50_000 {
            let length = Int.random(in: 0...24, using: &rng)
            let text = String((0..<length).map { _ in alphabet.randomElement(using: &rng) ?? "a" })
            guard let box = try? EmailAddress.parse(text) else { continue }
            accepted += 1
            let forbidden: Set<Character> = ["\r", "\n", "\r\n", "\u{0}", "\t"]
            #expect(!text.contains(where: forbidden.contains))
            let again = try EmailAddress.parse(box.address.description)
            #expect(again.address == box.address, "\(text)")
            let msg = MailMessage(from: box, to: box, subject: "s", body: "b", date: Date(),
                                  messageID: "x@example.com")
            let rendered = Rendered(try msg.render())
            #expect(!rendered.bareBreak)
            let to = rendered.field("To") ?? ""
            #expect(to.hasSuffix(" " + box.address.description) || to.hasSuffix("<\(box.address.description)>"))
        }
        #expect(accepted > 0)
        print("AddressFuzzTests: \(accepted) of 50000 random inputs accepted")
    }
}

/// A small deterministic generator (SplitMix64) for reproducible fuzzing.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
