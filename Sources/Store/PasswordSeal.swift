import Foundation
import Crypto

/// SMTP passwords at rest: AES-256-GCM with the secret key, bound to the
/// owning username (associated data), so a ciphertext copied into another
/// user's row does not open. Whatever backend stores the bytes.
struct PasswordSeal: Sendable {
    let box: SecretBox

    func seal(_ password: String, for username: String) throws(StoreError) -> Data {
        do {
            return Data(try box.seal(Array(password.utf8), associatedData: Self.context(username)))
        } catch {
            throw .crypto(error.description)
        }
    }

    /// Throws `.corruptSecret(username)`: wrong key, or altered or moved bytes.
    func open(_ sealed: Data, for username: String) throws(StoreError) -> String {
        guard let plain = try? box.open(Array(sealed), associatedData: Self.context(username)),
              let password = String(validating: plain, as: UTF8.self) else {
            throw .corruptSecret(username)
        }
        return password
    }

    private static func context(_ username: String) -> [UInt8] {
        Array("mailgate/smtp-password/v1/".utf8) + Array(username.utf8)
    }
}
