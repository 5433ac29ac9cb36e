import Foundation

public struct User: Sendable, Equatable {
    public let id: Int64
    public let username: String
    public let passwordHash: String
    public let isDisabled: Bool
    /// Tokens carry the version they were issued under; a token whose `ver`
    /// differs from this is revoked.
    public let tokenVersion: Int64
    /// Stored with millisecond resolution.
    public let createdAt: Date

    public init(id: Int64, username: String, passwordHash: String, isDisabled: Bool, tokenVersion: Int64, createdAt: Date) {
        self.id = id
        self.username = username
        self.passwordHash = passwordHash
        self.isDisabled = isDisabled
        self.tokenVersion = tokenVersion
        self.createdAt = createdAt
    }

    /// 1–64 characters of `A-Z a-z 0-9 . _ @ + -`.
    public static func isValidUsername(_ name: String) -> Bool {
        let utf8 = name.utf8
        guard (1...64).contains(utf8.count) else { return false }
        return utf8.allSatisfy { c in
            switch c {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "@"), UInt8(ascii: "+"), UInt8(ascii: "-"):
                return true
            default:
                return false
            }
        }
    }

    /// Throws `.invalidUsername` unless `isValidUsername(name)`.
    static func requireValid(_ name: String) throws(StoreError) {
        guard isValidUsername(name) else { throw .invalidUsername }
    }
}

// A user may end up in a log line or an error report; the password hash
// must not, whichever way the value is turned into text.
extension User: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var description: String {
        "User(id: \(id), username: \(username), passwordHash: <redacted>, isDisabled: \(isDisabled), "
            + "tokenVersion: \(tokenVersion), createdAt: \(createdAt))"
    }

    public var debugDescription: String { description }

    public var customMirror: Mirror {
        Mirror(self, children: [
            "id": id, "username": username, "passwordHash": "<redacted>", "isDisabled": isDisabled,
            "tokenVersion": tokenVersion, "createdAt": createdAt,
        ], displayStyle: .struct)
    }
}
