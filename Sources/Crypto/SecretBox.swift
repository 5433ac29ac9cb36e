import COpenSSL

/// AES-256-GCM sealing for secrets that must be usable again (SMTP
/// passwords at rest). Format: 12-byte random nonce || ciphertext || 16-byte tag.
///
/// `associatedData` binds a sealed value to its context (e.g. the owning
/// username) so a value copied into another row fails to open. Random
/// 96-bit nonces are safe far beyond the number of secrets Mailgate seals.
public struct SecretBox: Sendable {
    public static let keyLength = 32
    public static let nonceLength = 12
    public static let tagLength = 16

    private let key: [UInt8]

    public init(key: [UInt8]) throws(CryptoError) {
        guard key.count == Self.keyLength else {
            throw .invalidKeyLength(expected: Self.keyLength, actual: key.count)
        }
        self.key = key
    }

    public func seal(_ plaintext: [UInt8], associatedData: [UInt8] = []) throws(CryptoError) -> [UInt8] {
        guard plaintext.count <= Int(Int32.max) - 64, associatedData.count <= Int(Int32.max) else {
            throw .invalidArgument("plaintext or associated data too long")
        }
        let nonce = try Crypto.randomBytes(Self.nonceLength)
        let context = try CipherContext(key: key, nonce: nonce, encrypt: true)
        try context.addAssociatedData(associatedData)
        var ciphertext = try context.update(plaintext)
        ciphertext += try context.finish()
        let tag = try context.tag()
        return nonce + ciphertext + tag
    }

    /// Throws `.authenticationFailed` if the tag does not verify (modified
    /// data, wrong key or wrong associated data); nothing is returned then.
    public func open(_ sealed: [UInt8], associatedData: [UInt8] = []) throws(CryptoError) -> [UInt8] {
        guard sealed.count >= Self.nonceLength + Self.tagLength else {
            throw .sealedDataTooShort(sealed.count)
        }
        guard sealed.count <= Int(Int32.max), associatedData.count <= Int(Int32.max) else {
            throw .invalidArgument("sealed data or associated data too long")
        }
        let nonce = Array(sealed[..<Self.nonceLength])
        let ciphertext = Array(sealed[Self.nonceLength..<(sealed.count - Self.tagLength)])
        let tag = Array(sealed[(sealed.count - Self.tagLength)...])
        let context = try CipherContext(key: key, nonce: nonce, encrypt: false)
        try context.addAssociatedData(associatedData)
        var plaintext = try context.update(ciphertext)
        try context.setExpectedTag(tag)
        plaintext += try context.finish()
        return plaintext
    }
}

/// One EVP_CIPHER_CTX for one AES-256-GCM operation, freed on deinit.
private final class CipherContext {
    private let ctx: OpaquePointer
    private let encrypt: Bool

    /// Owns `ctx` from here on, so every later failure path still frees it.
    private init(ctx: OpaquePointer, encrypt: Bool) {
        self.ctx = ctx
        self.encrypt = encrypt
    }

    convenience init(key: [UInt8], nonce: [UInt8], encrypt: Bool) throws(CryptoError) {
        ERR_clear_error()
        guard let ctx = EVP_CIPHER_CTX_new() else { throw .openSSL("EVP_CIPHER_CTX_new") }
        self.init(ctx: ctx, encrypt: encrypt)
        guard let cipher = EVP_aes_256_gcm() else { throw .openSSL("EVP_aes_256_gcm") }
        let initName = encrypt ? "EVP_EncryptInit_ex" : "EVP_DecryptInit_ex"
        // Two-step init: choose the cipher, set the nonce length, then key + nonce.
        let rc1 = encrypt ? EVP_EncryptInit_ex(ctx, cipher, nil, nil, nil)
                          : EVP_DecryptInit_ex(ctx, cipher, nil, nil, nil)
        guard rc1 == 1 else { throw .openSSL(initName) }
        guard EVP_CIPHER_CTX_ctrl(ctx, mailgate_EVP_CTRL_GCM_SET_IVLEN(), Int32(nonce.count), nil) == 1 else {
            throw .openSSL("EVP_CIPHER_CTX_ctrl(EVP_CTRL_GCM_SET_IVLEN)")
        }
        let rc2 = key.withUnsafeBufferPointer { k in
            nonce.withUnsafeBufferPointer { n in
                encrypt ? EVP_EncryptInit_ex(ctx, nil, nil, k.baseAddress, n.baseAddress)
                        : EVP_DecryptInit_ex(ctx, nil, nil, k.baseAddress, n.baseAddress)
            }
        }
        guard rc2 == 1 else { throw .openSSL(initName + " (key, nonce)") }
    }

    deinit { EVP_CIPHER_CTX_free(ctx) }

    private var updateName: String { encrypt ? "EVP_EncryptUpdate" : "EVP_DecryptUpdate" }

    func addAssociatedData(_ aad: [UInt8]) throws(CryptoError) {
        if aad.isEmpty { return }
        var outLength: Int32 = 0
        let rc = aad.withUnsafeBufferPointer { a in
            encrypt ? EVP_EncryptUpdate(ctx, nil, &outLength, a.baseAddress, Int32(a.count))
                    : EVP_DecryptUpdate(ctx, nil, &outLength, a.baseAddress, Int32(a.count))
        }
        guard rc == 1 else { throw .openSSL(updateName + " (associated data)") }
    }

    func update(_ input: [UInt8]) throws(CryptoError) -> [UInt8] {
        if input.isEmpty { return [] }
        // GCM is a stream mode: output length equals input length.
        var output = [UInt8](repeating: 0, count: input.count)
        var outLength: Int32 = 0
        let rc = input.withUnsafeBufferPointer { i in
            output.withUnsafeMutableBufferPointer { o in
                encrypt ? EVP_EncryptUpdate(ctx, o.baseAddress, &outLength, i.baseAddress, Int32(i.count))
                        : EVP_DecryptUpdate(ctx, o.baseAddress, &outLength, i.baseAddress, Int32(i.count))
            }
        }
        guard rc == 1 else { throw .openSSL(updateName) }
        guard outLength >= 0, Int(outLength) <= output.count else {
            throw .openSSL(call: updateName, reason: "unexpected output length \(outLength)")
        }
        return Array(output.prefix(Int(outLength)))
    }

    func setExpectedTag(_ tag: [UInt8]) throws(CryptoError) {
        var tag = tag
        let rc = tag.withUnsafeMutableBytes { t in
            EVP_CIPHER_CTX_ctrl(ctx, mailgate_EVP_CTRL_GCM_SET_TAG(), Int32(t.count), t.baseAddress)
        }
        guard rc == 1 else { throw .openSSL("EVP_CIPHER_CTX_ctrl(EVP_CTRL_GCM_SET_TAG)") }
    }

    func finish() throws(CryptoError) -> [UInt8] {
        // GCM never emits bytes at finalisation, but the API may write up to a block.
        var output = [UInt8](repeating: 0, count: 32)
        var outLength: Int32 = 0
        let rc = output.withUnsafeMutableBufferPointer { o in
            encrypt ? EVP_EncryptFinal_ex(ctx, o.baseAddress, &outLength)
                    : EVP_DecryptFinal_ex(ctx, o.baseAddress, &outLength)
        }
        guard rc == 1 else {
            if encrypt { throw .openSSL("EVP_EncryptFinal_ex") }
            // For decryption a non-1 result is how OpenSSL reports a tag
            // mismatch; it queues no error, so clear anything stale.
            ERR_clear_error()
            throw .authenticationFailed
        }
        return Array(output.prefix(Int(max(0, min(outLength, 32)))))
    }

    func tag() throws(CryptoError) -> [UInt8] {
        var tag = [UInt8](repeating: 0, count: SecretBox.tagLength)
        let rc = tag.withUnsafeMutableBytes { t in
            EVP_CIPHER_CTX_ctrl(ctx, mailgate_EVP_CTRL_GCM_GET_TAG(), Int32(t.count), t.baseAddress)
        }
        guard rc == 1 else { throw .openSSL("EVP_CIPHER_CTX_ctrl(EVP_CTRL_GCM_GET_TAG)") }
        return tag
    }
}
