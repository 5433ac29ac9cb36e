import Foundation

// Copying between stores (`mailgate store copy`): the durable records out,
// as stored, and into an empty store. See `StoreRecords`.
extension PostgresStore {
    private typealias SQL = PostgresStatements

    public func exportRecords() throws(StoreError) -> StoreRecords {
        let operation = "export the store's records"
        return try perform(operation) { connection throws -> StoreRecords in
            try connection.transaction(operation) { () throws -> StoreRecords in
                // One snapshot for every table, while other hosts write.
                try connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY", operation)
                var records = StoreRecords()
                let users = try connection.run(SQL.listUsers, [], operation)
                for row in 0..<users.rowCount {
                    records.users.append(try UserRecord(users, row: row, from: 0).withoutID)
                }
                let integrations = try connection.run(SQL.exportIntegrations, [], operation)
                for row in 0..<integrations.rowCount {
                    records.integrations.append(.init(owner: try integrations.requiredText(row, 0),
                                                      record: try SMTPIntegrationRecord(integrations, row: row, from: 1)))
                }
                let tokens = try connection.run(SQL.allNamedTokens, [], operation)
                for row in 0..<tokens.rowCount {
                    records.namedTokens.append(StoreRecords.NamedTokenRow(
                        id: try tokens.requiredText(row, 0), owner: try tokens.requiredText(row, 1),
                        name: try tokens.requiredText(row, 2), createdAtMilliseconds: try tokens.requiredInt(row, 3),
                        expiresAtMilliseconds: try tokens.requiredInt(row, 4), lastUsedDay: try tokens.int(row, 5),
                        revokedAtMilliseconds: try tokens.int(row, 6)))
                }
                let removed = try connection.run(SQL.exportRemovedUsernames, [], operation)
                for row in 0..<removed.rowCount {
                    records.removedUsernames.append(.init(username: try removed.requiredText(row, 0),
                                                          nextTokenVersion: try removed.requiredInt(row, 1)))
                }
                let keys = try connection.run(SQL.exportKeyFingerprints, [], operation)
                for row in 0..<keys.rowCount {
                    records.keyFingerprints.append(.init(name: try keys.requiredText(row, 0),
                                                         fingerprint: try keys.requiredBytes(row, 1)))
                }
                return records
            }
        }
    }

    public func importRecords(_ records: StoreRecords) throws(StoreError) {
        try records.requireConsistent()
        for key in records.keyFingerprints { try KeyFingerprints.requireValid(name: key.name, fingerprint: key.fingerprint) }
        let operation = "import records"
        try perform(operation) { connection throws in
            try connection.transaction(operation) { () throws in
                // EXCLUSIVE: reads go on, but no other host or command adds
                // a user (or copies) between the emptiness check and the
                // commit; a second copy waits, then finds the store full.
                try connection.execute("LOCK TABLE users, removed_usernames IN EXCLUSIVE MODE", operation)
                guard try !connection.run(SQL.isOccupied, [], operation).requiredBool(0, 0) else {
                    throw StoreError.targetNotEmpty
                }
                for key in records.keyFingerprints {
                    let existing = try connection.run(SQL.keyFingerprint, [.text(key.name)], operation).bytes(0, 0)
                    try ImportedKeys.requireMatching(existing, key)
                    _ = try connection.run(SQL.setKeyFingerprint, [.text(key.name), .bytes(key.fingerprint)], operation)
                }
                var ids: [String: Int64] = [:]
                for user in records.users {
                    let quota = user.sendQuota.perWindow
                    let result = try connection.run(SQL.importUser, [
                        .text(user.username), .text(user.passwordHash), .bool(user.isDisabled), .int(user.tokenVersion),
                        .int(user.createdAtMilliseconds), .optionalText(user.allowedRecipients),
                        .optionalInt(quota[.minute]), .optionalInt(quota[.hour]), .optionalInt(quota[.day]),
                    ], operation)
                    ids[user.username] = try result.requiredInt(0, 0)
                }
                for integration in records.integrations {
                    guard let userID = ids[integration.owner] else { throw StoreError.userNotFound(integration.owner) }
                    var row = integration.record
                    row.userID = userID
                    _ = try connection.run(SQL.upsertIntegration, row.postgresParameters, operation)
                }
                for token in records.namedTokens {
                    guard let userID = ids[token.owner] else { throw StoreError.userNotFound(token.owner) }
                    _ = try connection.run(SQL.importNamedToken, [
                        .text(token.id), .int(userID), .text(token.name), .int(token.createdAtMilliseconds),
                        .int(token.expiresAtMilliseconds), token.lastUsedDay.map { .int($0) } ?? .null,
                        token.revokedAtMilliseconds.map { .int($0) } ?? .null,
                    ], operation)
                }
                for removed in records.removedUsernames {
                    _ = try connection.run(SQL.importRemovedUsername, [.text(removed.username),
                                                                       .int(removed.nextTokenVersion)], operation)
                }
            }
        }
    }
}
