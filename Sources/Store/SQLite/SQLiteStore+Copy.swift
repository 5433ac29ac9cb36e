import Foundation
import GRDB

// Copying between stores (`mailgate store copy`): the durable records out,
// as stored, and into an empty store. See `StoreRecords`.
extension SQLiteStore {
    public func exportRecords() throws(StoreError) -> StoreRecords {
        // One read transaction: a snapshot even while the server writes.
        try perform("export the store's records") { () throws -> StoreRecords in
            try pool.read { db in
                var records = StoreRecords()
                records.users = try UserRecord.fetchAll(db, sql: "SELECT * FROM users ORDER BY username")
                    .map(\.withoutID)
                // `i.*` comes first, so its `username` (the SMTP login) is
                // the one decoded by name; the owner is a column of its own.
                for row in try Row.fetchAll(db, sql: """
                    SELECT i.*, u.username AS owner FROM smtp_integrations i JOIN users u ON u.id = i.user_id
                    ORDER BY u.username
                    """) {
                    records.integrations.append(.init(owner: try row.decode(forColumn: "owner"),
                                                      record: try SMTPIntegrationRecord(row: row)))
                }
                for row in try Row.fetchAll(db, sql: NamedTokenRecord.selection + " ORDER BY u.username, t.created_at_ms, t.id") {
                    records.namedTokens.append(StoreRecords.NamedTokenRow(
                        id: try row.decode(atIndex: 0), owner: try row.decode(atIndex: 1), name: try row.decode(atIndex: 2),
                        createdAtMilliseconds: try row.decode(atIndex: 3), expiresAtMilliseconds: try row.decode(atIndex: 4),
                        lastUsedDay: try row.decode(atIndex: 5), revokedAtMilliseconds: try row.decode(atIndex: 6)))
                }
                for row in try Row.fetchAll(db, sql: "SELECT username, next_token_version FROM removed_usernames ORDER BY username") {
                    records.removedUsernames.append(.init(username: try row.decode(atIndex: 0),
                                                          nextTokenVersion: try row.decode(atIndex: 1)))
                }
                for row in try Row.fetchAll(db, sql: "SELECT name, fingerprint FROM mailgate_keys ORDER BY name") {
                    let fingerprint: Data = try row.decode(atIndex: 1)
                    records.keyFingerprints.append(.init(name: try row.decode(atIndex: 0), fingerprint: Array(fingerprint)))
                }
                return records
            }
        }
    }

    public func importRecords(_ records: StoreRecords) throws(StoreError) {
        try records.requireConsistent()
        try perform("import records") { () throws in
            // BEGIN IMMEDIATE: the write lock is held from the emptiness
            // check on, so no other process adds a user in between.
            try pool.writeWithoutTransaction { db in
                try db.inTransaction(.immediate) {
                    let occupied = try Bool.fetchOne(db, sql: """
                        SELECT EXISTS (SELECT 1 FROM users) OR EXISTS (SELECT 1 FROM removed_usernames)
                        """) ?? true
                    guard !occupied else { throw StoreError.targetNotEmpty }
                    for key in records.keyFingerprints {
                        let existing = try Data.fetchOne(db, sql: "SELECT fingerprint FROM mailgate_keys WHERE name = ?",
                                                         arguments: [key.name])
                        try ImportedKeys.requireMatching(existing.map(Array.init), key)
                        try KeyFingerprints.requireValid(name: key.name, fingerprint: key.fingerprint)
                        try db.execute(sql: """
                            INSERT INTO mailgate_keys (name, fingerprint) VALUES (?, ?)
                            ON CONFLICT (name) DO UPDATE SET fingerprint = excluded.fingerprint
                            """, arguments: [key.name, Data(key.fingerprint)])
                    }
                    var ids: [String: Int64] = [:]
                    for user in records.users {
                        try db.execute(sql: """
                            INSERT INTO users (username, password_hash, is_disabled, token_version, created_at_ms,
                                               allowed_recipients, quota_per_minute, quota_per_hour, quota_per_day)
                            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                            """, arguments: [
                                user.username, user.passwordHash, user.isDisabled, user.tokenVersion,
                                user.createdAtMilliseconds, user.allowedRecipients, user.sendQuota.perWindow[.minute],
                                user.sendQuota.perWindow[.hour], user.sendQuota.perWindow[.day],
                            ])
                        ids[user.username] = db.lastInsertedRowID
                    }
                    for integration in records.integrations {
                        guard let userID = ids[integration.owner] else { throw StoreError.userNotFound(integration.owner) }
                        var row = integration.record
                        row.userID = userID
                        let columns = row.columnValues
                        let names = columns.map { SQL($0.column) }.joined(separator: ", ")
                        let values = columns.map { SQL("\($0.value)") }.joined(separator: ", ")
                        try db.execute(literal: "INSERT INTO \(SMTPIntegrationRecord.self) (\(names)) VALUES (\(values))")
                    }
                    for token in records.namedTokens {
                        guard let userID = ids[token.owner] else { throw StoreError.userNotFound(token.owner) }
                        try db.execute(sql: """
                            INSERT INTO named_tokens (id, user_id, name, created_at_ms, expires_at_ms, last_used_day,
                                                      revoked_at_ms)
                            VALUES (?, ?, ?, ?, ?, ?, ?)
                            """, arguments: [token.id, userID, token.name, token.createdAtMilliseconds,
                                             token.expiresAtMilliseconds, token.lastUsedDay, token.revokedAtMilliseconds])
                    }
                    for removed in records.removedUsernames {
                        try db.execute(sql: "INSERT INTO removed_usernames (username, next_token_version) VALUES (?, ?)",
                                       arguments: [removed.username, removed.nextTokenVersion])
                    }
                    return .commit
                }
            }
        }
    }
}
