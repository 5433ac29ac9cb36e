// Message-ID generation (RFC 5322 §3.6.4).

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

public enum MessageID {
    /// "<32 hex digits of randomness>.<ms since epoch, hex>@domain", without
    /// angle brackets. 128 random bits make collisions negligible on their
    /// own; the timestamp helps when reading logs. A `domain` that is neither
    /// an ASCII host name nor an address literal (or is empty) is replaced by
    /// "localhost", so the result is always a valid msg-id and `render()`
    /// never refuses it.
    public static func generate(domain: String) -> String {
        var rng = SystemRandomNumberGenerator()
        let high: UInt64 = rng.next()
        let low: UInt64 = rng.next()
        let millis = UInt64(max(0, Date().timeIntervalSince1970 * 1000))

        var out: [UInt8] = []
        out.reserveCapacity(64 + domain.utf8.count)
        appendHex(high, width: 16, to: &out)
        appendHex(low, width: 16, to: &out)
        out.append(UInt8(ascii: "."))
        appendHex(millis, width: 0, to: &out)
        out.append(UInt8(ascii: "@"))
        if isUsableDomain(domain) {
            out.append(contentsOf: domain.utf8)
        } else {
            out.append(contentsOf: "localhost".utf8)
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static let digits: [UInt8] = Array("0123456789abcdef".utf8)

    private static func appendHex(_ value: UInt64, width: Int, to out: inout [UInt8]) {
        var shift = width > 0 ? (width - 1) * 4 : max(0, (63 - value.leadingZeroBitCount) / 4 * 4)
        while shift >= 0 {
            out.append(digits[Int(value >> UInt64(shift) & 0xF)])
            shift -= 4
        }
    }

    /// A host name (dot-atom of letters, digits, hyphens) or an address
    /// literal such as "[192.0.2.1]" (RFC 5322 no-fold-literal: dtext only),
    /// which is what `EmailAddress.domain` holds for literal addresses.
    static func isUsableDomain(_ domain: String) -> Bool {
        guard !domain.isEmpty, domain.utf8.count <= 253 else { return false }
        if domain.utf8.first == UInt8(ascii: "[") {
            let inner = domain.utf8.dropFirst()
            guard inner.last == UInt8(ascii: "]") else { return false }
            let dtext = inner.dropLast()
            return !dtext.isEmpty && dtext.allSatisfy { c in
                c >= 33 && c <= 126 && c != UInt8(ascii: "[") && c != UInt8(ascii: "]")
                    && c != UInt8(ascii: "\\")
            }
        }
        var labelLength = 0
        var previous: UInt8 = UInt8(ascii: ".")
        for c in domain.utf8 {
            switch c {
            case UInt8(ascii: "."):
                if labelLength == 0 || previous == UInt8(ascii: "-") { return false }
                labelLength = 0
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"):
                if labelLength == 0 && c == UInt8(ascii: "-") { return false }
                labelLength += 1
                if labelLength > 63 { return false }
            default:
                return false
            }
            previous = c
        }
        return labelLength > 0 && previous != UInt8(ascii: "-")
    }
}
