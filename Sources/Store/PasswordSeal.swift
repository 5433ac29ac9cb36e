import Foundation
import Crypto

/// SMTP passwords at rest: AES-256-GCM with the secret key. The associated
/// data binds the ciphertext to where the password may be used: the owning
/// username and the integration's host, port, security and login. Someone
/// who can write the database but not read the key can neither move a
/// ciphertext into another user's row nor point a row at their own server
/// to be sent the password: either way it no longer opens. Whatever
/// backend stores the bytes.
struct PasswordSeal: Sendable {
    /// What a sealed password is bound to.
    struct Binding: Sendable {
        var username: String
        var host: String
        var port: Int
        var security: SMTPIntegration.Security
        var login: String?

        init(username: String, host: String, port: Int, security: SMTPIntegration.Security, login: String?) {
            self.username = username
            self.host = host
            self.port = port
            self.security = security
            self.login = login
        }

        init(username: String, integration: SMTPIntegration) {
            self.init(username: username, host: integration.host, port: integration.port,
                      security: integration.security, login: integration.username)
        }
    }

    /// The version written today (`password_seal_version`): 2 binds the
    /// whole `Binding`. Version 1 (the username alone) is only ever opened
    /// to re-seal it as version 2, never to use it: a row set back to 1
    /// must not escape the binding.
    static let currentVersion = 2

    let box: SecretBox

    func seal(_ password: String, for binding: Binding) throws(StoreError) -> Data {
        try seal(password, associatedData: Self.context(binding))
    }

    /// Throws `.corruptSecret(username)`: wrong key, altered bytes, or a row
    /// whose user, host, port, security or login changed since sealing.
    func open(_ sealed: Data, for binding: Binding) throws(StoreError) -> String {
        try open(sealed, associatedData: Self.context(binding), username: binding.username)
    }

    /// Version 1: bound to the username only (read to re-seal it).
    func openVersion1(_ sealed: Data, for username: String) throws(StoreError) -> String {
        try open(sealed, associatedData: Self.version1Context(username), username: username)
    }

    /// Version 1 as databases from before the binding hold it (tests of the upgrade).
    func sealVersion1(_ password: String, for username: String) throws(StoreError) -> Data {
        try seal(password, associatedData: Self.version1Context(username))
    }

    private static func version1Context(_ username: String) -> [UInt8] {
        Array("mailgate/smtp-password/v1/".utf8) + Array(username.utf8)
    }

    private func seal(_ password: String, associatedData: [UInt8]) throws(StoreError) -> Data {
        do {
            return Data(try box.seal(Array(password.utf8), associatedData: associatedData))
        } catch {
            throw .crypto(error.description)
        }
    }

    private func open(_ sealed: Data, associatedData: [UInt8], username: String) throws(StoreError) -> String {
        guard let plain = try? box.open(Array(sealed), associatedData: associatedData),
              let password = String(validating: plain, as: UTF8.self) else {
            throw .corruptSecret(username)
        }
        return password
    }

    /// Each field with a 4-byte length before it, so no two bindings give
    /// the same bytes ("a" + "bc" is not "ab" + "c"); no login is distinct
    /// from an empty one.
    private static func context(_ binding: Binding) -> [UInt8] {
        var bytes = Array("mailgate/smtp-password/v2".utf8)
        func field(_ value: some Collection<UInt8>) {
            let count = UInt32(truncatingIfNeeded: value.count)
            bytes += [UInt8(count >> 24), UInt8(count >> 16 & 0xFF), UInt8(count >> 8 & 0xFF), UInt8(count & 0xFF)]
            bytes += value
        }
        field(binding.username.utf8)
        field(binding.host.utf8)
        field(String(binding.port).utf8)
        field(binding.security.rawValue.utf8)
        if let login = binding.login {
            bytes.append(1)
            field(login.utf8)
        } else {
            bytes.append(0)
        }
        return bytes
    }
}
