import Foundation
import GRDB

// Named tokens (`mailgate token issue --name`, `token list`, `token revoke`).
extension SQLiteStore {
    private typealias TokenColumns = NamedTokenRecord.Columns

    public func addNamedToken(id: String, name: String, for username: String, createdAt: Date,
                              expiresAt: Date) throws(StoreError) -> NamedToken {
        try User.requireValid(username)
        guard NamedToken.isValidName(name) else { throw .invalidTokenName }
        let created = StoredDate.milliseconds(createdAt), expires = StoredDate.milliseconds(expiresAt)
        try perform("add named token for \(username)") { () throws in
            try pool.write { db in
                guard let userID = try Self.userID(of: username, db) else { throw StoreError.userNotFound(username) }
                try db.execute(literal: """
                    INSERT INTO \(NamedTokenRecord.self) (\(TokenColumns.id), \(TokenColumns.userID), \(TokenColumns.name),
                                                         \(TokenColumns.createdAt), \(TokenColumns.expiresAt))
                    VALUES (\(id), \(userID), \(name), \(created), \(expires))
                    """)
            }
        }
        return NamedToken(id: id, username: username, name: name, createdAt: StoredDate.date(created),
                          expiresAt: StoredDate.date(expires), lastUsedDay: nil, revokedAt: nil)
    }

    public func namedTokens(of username: String?) throws(StoreError) -> [NamedToken] {
        if let username, !User.isValidUsername(username) { return [] }
        return try perform("list named tokens") { () throws -> [NamedToken] in
            try pool.read { db in
                let filter: SQL = username.map { "WHERE u.username = \($0)" } ?? ""
                return try SQLRequest<NamedTokenRecord>(literal: """
                    \(sql: NamedTokenRecord.selection) \(filter) ORDER BY u.username, t.created_at_ms, t.id
                    """).fetchAll(db).map(\.token)
            }
        }
    }

    public func revokeNamedToken(id: String) throws(StoreError) {
        let now = StoredDate.milliseconds(Date())
        try perform("revoke named token \(id)") { () throws in
            try pool.write { db in
                try db.execute(literal: """
                    UPDATE \(NamedTokenRecord.self) SET \(TokenColumns.revokedAt) = \(now)
                    WHERE \(TokenColumns.id) = \(id) AND \(TokenColumns.revokedAt) IS NULL
                    """)
                guard db.changesCount == 0 else { return }
                let exists = try SQLRequest<Bool>(literal: """
                    SELECT 1 FROM \(NamedTokenRecord.self) WHERE \(TokenColumns.id) = \(id)
                    """).fetchOne(db) ?? false
                guard exists else { throw StoreError.tokenNotFound(id) }
            }
        }
    }

    /// Served from the per-thread cache of `CredentialsReader`.
    public func namedToken(id: String) throws(StoreError) -> NamedToken? {
        try perform("read named token \(id)") { () throws -> NamedToken? in
            try credentialsReader.namedToken(id: id)
        }
    }

    public func recordNamedTokenUse(id: String, day: Int64) throws(StoreError) {
        try perform("record use of named token \(id)") { () throws in
            try pool.write { db in
                try db.execute(literal: """
                    UPDATE \(NamedTokenRecord.self) SET \(TokenColumns.lastUsedDay) = \(day)
                    WHERE \(TokenColumns.id) = \(id)
                      AND (\(TokenColumns.lastUsedDay) IS NULL OR \(TokenColumns.lastUsedDay) < \(day))
                    """)
            }
        }
    }
}

// Key fingerprints (`Store.keyFingerprint`).
extension SQLiteStore {
    public func keyFingerprint(named name: String) throws(StoreError) -> [UInt8]? {
        try KeyFingerprints.requireValid(name: name)
        return try perform("read the fingerprint of key \(name)") { () throws -> [UInt8]? in
            try pool.read { db in
                try Data.fetchOne(db, sql: "SELECT fingerprint FROM mailgate_keys WHERE name = ?", arguments: [name])
                    .map(Array.init)
            }
        }
    }

    public func setKeyFingerprint(named name: String, _ fingerprint: [UInt8]) throws(StoreError) {
        try KeyFingerprints.requireValid(name: name, fingerprint: fingerprint)
        try perform("record the fingerprint of key \(name)") { () throws in
            try pool.write { db in
                try db.execute(sql: """
                    INSERT INTO mailgate_keys (name, fingerprint) VALUES (?, ?)
                    ON CONFLICT (name) DO UPDATE SET fingerprint = excluded.fingerprint
                    """, arguments: [name, Data(fingerprint)])
            }
        }
    }
}
