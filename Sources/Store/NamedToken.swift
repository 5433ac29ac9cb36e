import Foundation

/// A token issued with a name (`mailgate token issue --name`): recorded by
/// its id (the token's `jti`), so it can be listed and revoked on its own
/// while the user's other tokens keep working. Tokens from `/token` are
/// short-lived and have no record.
public struct NamedToken: Sendable, Equatable {
    public let id: String
    public let username: String
    public let name: String
    /// Stored with millisecond resolution.
    public let createdAt: Date
    public let expiresAt: Date
    /// The last UTC day a request carried it, in days since 1970-01-01
    /// (day precision: at most one write per token per day); nil: never.
    public let lastUsedDay: Int64?
    /// nil while the token may be used.
    public let revokedAt: Date?

    public init(id: String, username: String, name: String, createdAt: Date, expiresAt: Date,
                lastUsedDay: Int64?, revokedAt: Date?) {
        self.id = id
        self.username = username
        self.name = name
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.lastUsedDay = lastUsedDay
        self.revokedAt = revokedAt
    }

    public var isRevoked: Bool { revokedAt != nil }

    /// 1-64 bytes of UTF-8 without control characters: a label for people
    /// ("contact form", "nightly backup report").
    public static func isValidName(_ name: String) -> Bool {
        (1...64).contains(name.utf8.count) && !name.unicodeScalars.contains { $0.properties.generalCategory == .control }
    }

    /// The UTC day of `date`, in days since 1970-01-01.
    public static func day(of date: Date) -> Int64 {
        Int64((date.timeIntervalSince1970 / 86_400).rounded(.down))
    }
}
