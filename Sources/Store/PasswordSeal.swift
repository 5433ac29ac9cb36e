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

    /// The sealed OAuth2 secrets of an integration, each named by its column.
    enum OAuth2Secret: String, Sendable {
        case clientSecret = "oauth2_client_secret_sealed"
        case refreshToken = "oauth2_refresh_token_sealed"
    }

    /// What a sealed OAuth2 secret is bound to: everything `Binding` holds
    /// (the access tokens it yields go to that server, as that login), and
    /// the token endpoint and client id (the secret itself goes there).
    /// Pointing a row's token URL at another server, or its SMTP host at
    /// one, makes its secrets unreadable rather than sending them there.
    struct OAuth2Binding: Sendable {
        var smtp: Binding
        var tokenURL: String
        var clientID: String
    }

    /// Seals an OAuth2 secret for the column `secret` names: the column is
    /// part of the associated data, so a ciphertext moved to the other
    /// column (or another row, or from the password column, whose prefix
    /// differs) no longer opens.
    func seal(_ value: String, as secret: OAuth2Secret, for binding: OAuth2Binding) throws(StoreError) -> Data {
        try seal(value, associatedData: Self.context(secret, binding))
    }

    /// Throws `.corruptOAuth2Secret(username)`: wrong key, altered bytes,
    /// or a row whose binding changed since sealing.
    func open(_ sealed: Data, as secret: OAuth2Secret, for binding: OAuth2Binding) throws(StoreError) -> String {
        do {
            return try open(sealed, associatedData: Self.context(secret, binding), username: binding.smtp.username)
        } catch {
            throw .corruptOAuth2Secret(binding.smtp.username)
        }
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
        append(binding, to: &bytes)
        return bytes
    }

    /// The OAuth2 secrets' context: its own prefix, the column, the SMTP
    /// binding, the token URL and the client id, each length-prefixed.
    private static func context(_ secret: OAuth2Secret, _ binding: OAuth2Binding) -> [UInt8] {
        var bytes = Array("mailgate/oauth2-secret/v1".utf8)
        field(secret.rawValue.utf8, to: &bytes)
        append(binding.smtp, to: &bytes)
        field(binding.tokenURL.utf8, to: &bytes)
        field(binding.clientID.utf8, to: &bytes)
        return bytes
    }

    private static func field(_ value: some Collection<UInt8>, to bytes: inout [UInt8]) {
        let count = UInt32(truncatingIfNeeded: value.count)
        bytes += [UInt8(count >> 24), UInt8(count >> 16 & 0xFF), UInt8(count >> 8 & 0xFF), UInt8(count & 0xFF)]
        bytes += value
    }

    private static func append(_ binding: Binding, to bytes: inout [UInt8]) {
        func field(_ value: some Collection<UInt8>) { Self.field(value, to: &bytes) }
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
    }
}
