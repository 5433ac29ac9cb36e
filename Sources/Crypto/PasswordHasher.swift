import Base64
/// Password hashing with PBKDF2-HMAC-SHA256, stored as a PHC string:
/// `$pbkdf2-sha256$i=600000$<salt>$<hash>` where salt and hash use the PHC
/// "B64" encoding (standard base64 alphabet, no padding).
public struct PasswordHasher: Sendable {
    /// OWASP's 2023 recommendation for PBKDF2-HMAC-SHA256.
    public static let defaultIterations = 600_000
    /// Stored strings asking for more than this are refused rather than
    /// letting a tampered row pin a CPU for minutes per login.
    public static let maximumIterations = 10_000_000
    public static let saltLength = 16
    public static let hashLength = 32

    private static let algorithmID = "pbkdf2-sha256"

    public let iterations: Int

    /// `iterations` is used for new hashes and for `burnEquivalentWork`;
    /// values outside 1...maximumIterations make `hash` throw.
    public init(iterations: Int = defaultIterations) {
        self.iterations = iterations
    }

    public func hash(_ password: String) throws(CryptoError) -> String {
        guard iterations >= 1, iterations <= Self.maximumIterations else {
            throw .invalidArgument("PBKDF2 iteration count \(iterations) outside 1...\(Self.maximumIterations)")
        }
        let salt = try Crypto.randomBytes(Self.saltLength)
        let derived = try Crypto.pbkdf2SHA256(password: Array(password.utf8), salt: salt,
                                              iterations: iterations, keyLength: Self.hashLength)
        return "$\(Self.algorithmID)$i=\(iterations)$\(Base64.standardUnpadded.encode(salt))$\(Base64.standardUnpadded.encode(derived))"
    }

    /// True iff `phc` is a well-formed hash of `password`. Uses the
    /// iteration count stored in `phc`, so hashes survive a change of the
    /// configured count. Any malformed string (or KDF failure) is false.
    public func verify(_ password: String, against phc: String) -> Bool {
        guard let parsed = Self.parse(phc) else { return false }
        guard let derived = try? Crypto.pbkdf2SHA256(password: Array(password.utf8), salt: parsed.salt,
                                                     iterations: parsed.iterations, keyLength: parsed.hash.count) else {
            return false
        }
        return Crypto.constantTimeEquals(derived, parsed.hash)
    }

    /// True if `phc` was made with fewer iterations than configured (or is
    /// unreadable), so a caller that just verified the password can store a
    /// fresh hash.
    public func needsRehash(_ phc: String) -> Bool {
        guard let parsed = Self.parse(phc) else { return true }
        return parsed.iterations < iterations || parsed.hash.count != Self.hashLength
    }

    /// Spends the same KDF work as `verify` against a hash made with the
    /// configured count, for logins naming an unknown user, so response time
    /// does not reveal whether the user exists. Returns the iteration count
    /// spent, so tests can check the work without timing it.
    @discardableResult
    public func burnEquivalentWork(_ password: String) -> Int {
        let iterations = min(max(self.iterations, 1), Self.maximumIterations)
        let derived = try? Crypto.pbkdf2SHA256(password: Array(password.utf8), salt: Self.burnSalt,
                                               iterations: iterations, keyLength: Self.hashLength)
        // Mirror verify's compare too; the result is meaningless.
        _ = Crypto.constantTimeEquals(derived ?? [], Self.burnSalt + Self.burnSalt)
        return iterations
    }

    private static let burnSalt = [UInt8](repeating: 0x5A, count: saltLength)

    struct Parsed {
        var iterations: Int
        var salt: [UInt8]
        var hash: [UInt8]
    }

    static func parse(_ phc: String) -> Parsed? {
        let fields = phc.utf8.split(separator: UInt8(ascii: "$"), omittingEmptySubsequences: false)
        guard fields.count == 5, fields[0].isEmpty,
              String(decoding: fields[1], as: UTF8.self) == algorithmID else { return nil }
        let param = fields[2]
        guard param.starts(with: Array("i=".utf8)) else { return nil }
        let digits = param.dropFirst(2)
        // Decimal without sign or leading zeros, so each count has one spelling.
        guard !digits.isEmpty, digits.count <= 9,
              digits.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }),
              digits.first != UInt8(ascii: "0"),
              let iterations = Int(String(decoding: digits, as: UTF8.self)),
              iterations <= maximumIterations else { return nil }
        guard let salt = Base64.standardUnpadded.decode(fields[3]), salt.count >= 8, salt.count <= 64,
              let hash = Base64.standardUnpadded.decode(fields[4]), hash.count >= 16, hash.count <= 64 else { return nil }
        return Parsed(iterations: iterations, salt: salt, hash: hash)
    }
}
