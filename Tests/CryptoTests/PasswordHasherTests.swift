import Testing
@testable import Crypto

@Suite struct PasswordHasherTests {
    let fast = PasswordHasher(iterations: 1_000)

    @Test func phcRoundTrip() throws {
        let phc = try fast.hash("correct horse battery staple")
        let fields = phc.split(separator: "$", omittingEmptySubsequences: false)
        #expect(fields.count == 5)
        #expect(fields[1] == "pbkdf2-sha256")
        #expect(fields[2] == "i=1000")
        #expect(fields[3].count == 22)   // 16 bytes, unpadded base64
        #expect(fields[4].count == 43)   // 32 bytes
        #expect(!fields[3].contains("=") && !fields[4].contains("="))
        #expect(fast.verify("correct horse battery staple", against: phc))
        #expect(!fast.verify("correct horse battery stapl", against: phc))
        #expect(!fast.verify("", against: phc))
        // Fresh salt each time.
        #expect(try fast.hash("x") != fast.hash("x"))
    }

    @Test func knownHashFromIndependentImplementation() {
        // Python: hashlib.pbkdf2_hmac("sha256", b"password", b"saltSALTsalt", 4096, 32), PHC B64
        let phc = "$pbkdf2-sha256$i=4096$c2FsdFNBTFRzYWx0$FGTak4TShqm8mxjCYxES4aFKR2adPe4aaT4lxkUDh4Q"
        #expect(fast.verify("password", against: phc))   // stored count wins over the configured one
        #expect(!fast.verify("Password", against: phc))
    }

    @Test func tamperedOrMalformedStringsFail() throws {
        let phc = try fast.hash("pw")
        var fields = phc.split(separator: "$", omittingEmptySubsequences: false).map(String.init)
        let good = fields
        fields[2] = "i=1001"
        #expect(!fast.verify("pw", against: fields.joined(separator: "$")))
        fields = good
        fields[4] = String(fields[4].reversed())
        #expect(!fast.verify("pw", against: fields.joined(separator: "$")))
        for bad in ["", "$", "$pbkdf2-sha256$i=1000$$", "$pbkdf2-sha512" + phc.dropFirst(14),
                    phc + "$", phc.replacingOccurrences("i=1000", "i=01000"),
                    phc.replacingOccurrences("i=1000", "i=0"), phc.replacingOccurrences("i=1000", "i=-1"),
                    phc.replacingOccurrences("i=1000", "i=999999999"),   // above the cap
                    phc + "=", "$pbkdf2-sha256$i=1000$" + good[3] + "$" + good[4] + "A"] {
            #expect(!fast.verify("pw", against: bad), "accepted \(bad)")
        }
    }

    @Test func needsRehash() throws {
        let phc = try fast.hash("pw")
        #expect(!fast.needsRehash(phc))
        #expect(PasswordHasher(iterations: 2_000).needsRehash(phc))
        #expect(fast.needsRehash("garbage"))
    }

    @Test func refusesBadIterationCounts() {
        #expect(throws: CryptoError.self) { try PasswordHasher(iterations: 0).hash("pw") }
        #expect(throws: CryptoError.self) { try PasswordHasher(iterations: 20_000_000).hash("pw") }
    }

    /// The one test at the real default: format, a verify, and that the
    /// work spent for an unknown user is the same KDF count a real user's
    /// verify costs (compared as work, not as time: no timed test).
    @Test func defaultIterations() throws {
        let hasher = PasswordHasher()
        #expect(PasswordHasher.defaultIterations == 600_000)
        let phc = try hasher.hash("pw")
        #expect(phc.hasPrefix("$pbkdf2-sha256$i=600000$"))
        #expect(hasher.verify("pw", against: phc))
        #expect(hasher.burnEquivalentWork("someone else's pw") == PasswordHasher.parse(phc)?.iterations)
        #expect(PasswordHasher(iterations: 1000).burnEquivalentWork("x") == 1000)
    }
}

extension String {
    func replacingOccurrences(_ target: String, _ replacement: String) -> String {
        split(separator: target, omittingEmptySubsequences: false).joined(separator: replacement)
    }
}
