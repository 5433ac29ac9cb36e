// Crypto module: the cryptographic primitives Mailgate relies on (HMAC,
// randomness, PBKDF2, AES-GCM through OpenSSL), HS256 tokens, password
// hashing and key files.
import COpenSSL

/// A failure of a cryptographic operation. The description names the
/// OpenSSL call that failed and OpenSSL's own reason; it never contains key
/// material, passwords or plaintext.
public enum CryptoError: Error, Sendable, Equatable, CustomStringConvertible {
    /// An OpenSSL call reported failure. `reason` is the text of the
    /// OpenSSL error queue (`OpenSSLErrorQueue.drain`), or "unknown error".
    case openSSL(call: String, reason: String)
    /// A caller passed a value the operation cannot use (negative length,
    /// zero iterations, ...). The string says which parameter and why.
    case invalidArgument(String)
    /// A key had the wrong length.
    case invalidKeyLength(expected: Int, actual: Int)
    /// Sealed data is shorter than nonce + tag, so it cannot be ours.
    case sealedDataTooShort(Int)
    /// AES-GCM tag verification failed: wrong key, wrong associated data,
    /// or the data was modified.
    case authenticationFailed

    public var description: String {
        switch self {
        case .openSSL(let call, let reason):
            return "OpenSSL \(call) failed: \(reason)"
        case .invalidArgument(let what):
            return "invalid argument: \(what)"
        case .invalidKeyLength(let expected, let actual):
            return "invalid key length: expected \(expected) bytes, got \(actual)"
        case .sealedDataTooShort(let count):
            return "sealed data too short (\(count) bytes)"
        case .authenticationFailed:
            return "authentication failed: sealed data was modified or the key is wrong"
        }
    }

    /// Builds an `.openSSL` error for `call`, draining the thread's OpenSSL
    /// error queue so the next call starts clean.
    static func openSSL(_ call: String) -> CryptoError {
        .openSSL(call: call, reason: OpenSSLErrorQueue.drain())
    }
}

/// Thin, checked wrappers over OpenSSL's libcrypto.
public enum Crypto {
    public static let sha256Length = 32

    /// HMAC-SHA256 via OpenSSL's one-shot `HMAC(EVP_sha256(), ...)`.
    ///
    /// Throws rather than returning an empty array on failure: an empty
    /// "MAC" compared against an empty received value would compare equal,
    /// and failing closed must not depend on every caller remembering that.
    public static func hmacSHA256(key: [UInt8], message: [UInt8]) throws(CryptoError) -> [UInt8] {
        guard key.count <= Int(Int32.max) else {
            throw .invalidArgument("HMAC key longer than Int32.max bytes")
        }
        guard let md = EVP_sha256() else { throw .openSSL("EVP_sha256") }
        ERR_clear_error()
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var outLength: UInt32 = 0
        let ok = withNonNullPointer(key) { keyPtr, keyCount in
            withNonNullPointer(message) { msgPtr, msgCount in
                out.withUnsafeMutableBufferPointer { outBuf in
                    HMAC(md, keyPtr, Int32(keyCount), msgPtr, msgCount, outBuf.baseAddress, &outLength) != nil
                }
            }
        }
        guard ok else { throw .openSSL("HMAC") }
        guard outLength == UInt32(sha256Length) else {
            throw .openSSL(call: "HMAC", reason: "unexpected output length \(outLength)")
        }
        return Array(out.prefix(Int(outLength)))
    }

    /// SHA-256 of `message` via OpenSSL's one-shot `EVP_Digest`.
    public static func sha256(_ message: [UInt8]) throws(CryptoError) -> [UInt8] {
        guard let md = EVP_sha256() else { throw .openSSL("EVP_sha256") }
        ERR_clear_error()
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var outLength: UInt32 = 0
        let ok = withNonNullPointer(message) { msgPtr, msgCount in
            out.withUnsafeMutableBufferPointer { outBuf in
                EVP_Digest(msgPtr, msgCount, outBuf.baseAddress, &outLength, md, nil) == 1
            }
        }
        guard ok else { throw .openSSL("EVP_Digest") }
        guard outLength == UInt32(sha256Length) else {
            throw .openSSL(call: "EVP_Digest", reason: "unexpected output length \(outLength)")
        }
        return Array(out.prefix(Int(outLength)))
    }

    /// `count` bytes from OpenSSL's CSPRNG (`RAND_bytes`).
    public static func randomBytes(_ count: Int) throws(CryptoError) -> [UInt8] {
        guard count >= 0, count <= Int(Int32.max) else {
            throw .invalidArgument("random byte count \(count) out of range")
        }
        if count == 0 { return [] }
        ERR_clear_error()
        var out = [UInt8](repeating: 0, count: count)
        let rc = out.withUnsafeMutableBufferPointer { RAND_bytes($0.baseAddress, Int32(count)) }
        guard rc == 1 else { throw .openSSL("RAND_bytes") }
        return out
    }

    /// Compares in time that depends only on the length, never on where the
    /// first difference is (`CRYPTO_memcmp`). Different lengths are unequal;
    /// lengths are not secret for any value Mailgate compares.
    public static func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        if a.isEmpty { return true }
        return a.withUnsafeBytes { pa in
            b.withUnsafeBytes { pb in
                CRYPTO_memcmp(pa.baseAddress, pb.baseAddress, pa.count) == 0
            }
        }
    }

    /// PBKDF2-HMAC-SHA256 (`PKCS5_PBKDF2_HMAC`).
    public static func pbkdf2SHA256(password: [UInt8], salt: [UInt8], iterations: Int, keyLength: Int) throws(CryptoError) -> [UInt8] {
        guard iterations >= 1, iterations <= Int(Int32.max) else {
            throw .invalidArgument("PBKDF2 iteration count \(iterations) out of range")
        }
        guard keyLength >= 1, keyLength <= 1024 else {
            throw .invalidArgument("PBKDF2 key length \(keyLength) out of range 1...1024")
        }
        guard password.count <= Int(Int32.max), salt.count <= Int(Int32.max) else {
            throw .invalidArgument("PBKDF2 password or salt too long")
        }
        guard let md = EVP_sha256() else { throw .openSSL("EVP_sha256") }
        ERR_clear_error()
        var out = [UInt8](repeating: 0, count: keyLength)
        let rc = withNonNullPointer(password) { passPtr, passCount in
            withNonNullPointer(salt) { saltPtr, saltCount in
                out.withUnsafeMutableBufferPointer { outBuf in
                    UnsafeRawPointer(passPtr).withMemoryRebound(to: CChar.self, capacity: max(passCount, 1)) { passChars in
                        PKCS5_PBKDF2_HMAC(passChars, Int32(passCount), saltPtr, Int32(saltCount),
                                          Int32(iterations), md, Int32(keyLength), outBuf.baseAddress)
                    }
                }
            }
        }
        guard rc == 1 else { throw .openSSL("PKCS5_PBKDF2_HMAC") }
        return out
    }
}

/// Calls `body` with a non-null pointer to the bytes of `bytes` and their
/// count. An empty array's buffer may have a nil base address, which some
/// OpenSSL entry points treat as an error even with length 0.
@inline(__always)
func withNonNullPointer<R>(_ bytes: [UInt8], _ body: (UnsafePointer<UInt8>, Int) -> R) -> R {
    bytes.withUnsafeBufferPointer { buf in
        if let base = buf.baseAddress { return body(base, buf.count) }
        let dummy: UInt8 = 0
        return withUnsafePointer(to: dummy) { body($0, 0) }
    }
}
