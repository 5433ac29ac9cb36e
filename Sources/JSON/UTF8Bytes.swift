// Names and values that come from a request are compared by their UTF-8
// bytes, never with `String`'s `==`, `hashValue`, `Set` or `Dictionary`.
//
// Swift's `String` equality and hashing apply Unicode canonical equivalence,
// and normalising a long run of combining marks with alternating combining
// classes (U+0301 U+0316 U+0301 ...) takes time quadratic in its length:
// a 1 MiB JSON key used to pin a worker for minutes. Byte comparison is
// linear, and it is also what RFC 8259 §8.3 asks of JSON member names
// (code unit by code unit): "é" (U+00E9) and "e" + U+0301 are different
// names, as they are to every other JSON reader.

extension StringProtocol {
    /// Whether `self` and `other` are the same UTF-8 bytes. Linear, with no
    /// Unicode normalisation, unlike `==`; different lengths answer at once.
    /// Inlinable, so callers in other modules get it specialised for their
    /// types (through the protocol's witness table it cost twice as much).
    @inlinable
    public func utf8Equals(_ other: some StringProtocol) -> Bool {
        let mine = utf8, theirs = other.utf8
        guard mine.count == theirs.count else { return false }
        let contiguous = mine.withContiguousStorageIfAvailable { left in
            theirs.withContiguousStorageIfAvailable { right in left.elementsEqual(right) }
        }
        if let contiguous, let equal = contiguous { return equal }
        return mine.elementsEqual(theirs)
    }
}

/// A string as a `Set` or `Dictionary` key that hashes and compares by its
/// UTF-8 bytes (see `utf8Equals`): linear, whatever the string holds.
public struct UTF8Key: Hashable, Sendable, CustomStringConvertible {
    public let string: String

    public init(_ string: String) { self.string = string }

    public var description: String { string }

    public static func == (lhs: UTF8Key, rhs: UTF8Key) -> Bool { lhs.string.utf8Equals(rhs.string) }

    public func hash(into hasher: inout Hasher) {
        let bytes = string.utf8
        hasher.combine(bytes.count)
        let hashed: Void? = bytes.withContiguousStorageIfAvailable { buffer in
            hasher.combine(bytes: UnsafeRawBufferPointer(buffer))
        }
        if hashed == nil {
            for byte in bytes { hasher.combine(byte) }
        }
    }
}

extension String {
    /// At most `limit` Unicode scalars of `self` (plus "..." when cut), for
    /// error messages that quote what a client sent: a long run of
    /// combining marks is one `Character`, so `prefix(_:)` would not bound it.
    public func excerpt(scalars limit: Int = 64) -> String {
        var kept = String.UnicodeScalarView()
        var iterator = unicodeScalars.makeIterator()
        for _ in 0..<max(0, limit) {
            guard let scalar = iterator.next() else { return self }
            kept.append(scalar)
        }
        return iterator.next() == nil ? self : String(kept) + "..."
    }
}
