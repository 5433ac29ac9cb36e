import JSON
import OAuth

/// A decoded form body: the values of the fields the caller asked for,
/// looked up by their exact UTF-8 bytes.
struct FormFields {
    private var fields: [(name: String, value: String)] = []

    /// The value of the field named exactly `name` (same bytes), if it was sent and kept.
    subscript(name: String) -> String? { fields.first { $0.name.utf8Equals(name) }?.value }

    fileprivate mutating func append(_ name: String, _ value: String) { fields.append((name, value)) }
}

/// `application/x-www-form-urlencoded` bodies, as OAuth2's password grant sends them.
///
/// Names are compared and hashed by their bytes (`UTF8Key`), never as
/// `String`s: canonical-equivalence hashing is quadratic on a long run of
/// combining marks, and this body comes before any authentication.
enum FormDecoding {
    enum Failure: Error, Equatable {
        case invalidEncoding
        /// A name sent twice; an excerpt of it (at most 64 scalars).
        case duplicateField(String)
    }

    /// Decodes every pair (percent-encoding and UTF-8 must be valid) and
    /// refuses any name given twice, compared by bytes. Only the values of
    /// `names` are kept: other fields (OAuth2's `client_id`, `scope`, junk)
    /// are checked, then dropped, whatever their size.
    static func decode(_ body: [UInt8], keeping names: [String]) throws(Failure) -> FormFields {
        let longestName = names.map(\.utf8.count).max() ?? 0
        var fields = FormFields()
        var seen = Set<UTF8Key>()
        for pair in body.split(separator: UInt8(ascii: "&"), omittingEmptySubsequences: true) {
            let parts = pair.split(separator: UInt8(ascii: "="), maxSplits: 1, omittingEmptySubsequences: false)
            let name = try percentDecode(parts[0])
            let value = parts.count > 1 ? try percentDecode(parts[1]) : ""
            guard seen.insert(UTF8Key(name)).inserted else { throw .duplicateField(name.excerpt()) }
            if name.utf8.count <= longestName, names.contains(where: { $0.utf8Equals(name) }) {
                fields.append(name, value)
            }
        }
        return fields
    }

    private static func percentDecode(_ bytes: ArraySlice<UInt8>) throws(Failure) -> String {
        guard let text = FormEncoding.decodeComponent(bytes) else { throw .invalidEncoding }
        return text
    }
}
