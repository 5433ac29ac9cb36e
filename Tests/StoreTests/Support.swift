import Foundation
import GRDB
import MailgateTesting
import Testing
@testable import Store
import Crypto

/// The store backends; behavioural tests run on each, so a feature cannot
/// exist on one only.
enum Backend: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite
    case postgresql

    var testDescription: String { rawValue }
}

/// A fresh store: a database file in its own directory (SQLite), or a
/// database of its own on the test cluster (PostgreSQL); the directory is
/// removed at the end (databases go with the cluster).
final class TemporaryStore {
    let backend: Backend
    let directory: String
    /// The SQLite file (SQLite only).
    let path: String
    /// The database's URI (PostgreSQL only).
    let uri: String
    let box: SecretBox
    let store: any Store

    init(_ backend: Backend = .sqlite, key: [UInt8] = [UInt8](repeating: 9, count: 32)) throws {
        self.backend = backend
        directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("mailgate-store-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        path = directory + "/mailgate.sqlite"
        box = try SecretBox(key: key)
        switch backend {
        case .sqlite:
            uri = ""
            store = try SQLiteStore(path: path, secretBox: box)
        case .postgresql:
            uri = try PostgresCluster.shared().newDatabase()
            store = try PostgresStore(uri: uri, secretBox: box)
        }
    }

    /// The store as a SQLiteStore, for tests of SQLite's internals.
    var sqlite: SQLiteStore {
        get throws { try #require(store as? SQLiteStore) }
    }

    /// A second, independent Store on the same database, as the CLI (or
    /// another host) would open.
    func reopen(key: [UInt8]? = nil) throws -> any Store {
        let box = try key.map { try SecretBox(key: $0) } ?? box
        switch backend {
        case .sqlite: return try SQLiteStore(path: path, secretBox: box)
        case .postgresql: return try PostgresStore(uri: uri, secretBox: box)
        }
    }

    /// Every byte the database holds, as far as a scan for secrets needs:
    /// SQLite's file, WAL and shared memory; PostgreSQL's dump of the
    /// database (bytea in hex: scan for `hex(_:)` forms too).
    func rawBytes() throws -> [UInt8] {
        switch backend {
        case .sqlite:
            return ["", "-wal", "-shm"].flatMap { suffix in
                (FileManager.default.contents(atPath: path + suffix)).map(Array.init) ?? []
            }
        case .postgresql:
            let cluster = try PostgresCluster.shared()
            let dump = try runTool(try PostgresCluster.binaryDirectory() + "/pg_dump", [
                "-h", cluster.socketDirectory, "-p", String(cluster.port), "-U", PostgresCluster.user,
                "--no-owner", try databaseName(),
            ], in: directory, timeout: 60)
            guard dump.ok else { throw HarnessError("pg_dump: \(dump.status): \(dump.stderr)") }
            return dump.stdout
        }
    }

    /// Runs `sql` on the database as another writer would (no key
    /// involved): the statements are the same on both backends.
    func execute(_ sql: String) throws {
        switch backend {
        case .sqlite:
            let queue = try DatabaseQueue(path: path)
            try queue.write { db in try db.execute(sql: sql) }
            try queue.close()
        case .postgresql:
            try PGConnection(settings: PGConnectionSettings(conninfo: uri, connectTimeout: 5, statementTimeout: 30))
                .execute(sql, "test statement")
        }
    }

    /// The integer the query `sql` answers.
    func integer(_ sql: String) throws -> Int {
        switch backend {
        case .sqlite:
            let queue = try DatabaseQueue(path: path)
            defer { try? queue.close() }
            return try queue.read { db in try Int.fetchOne(db, sql: sql) ?? 0 }
        case .postgresql:
            let connection = PGConnection(settings: try PGConnectionSettings(conninfo: uri, connectTimeout: 5,
                                                                              statementTimeout: 30))
            return Int(try connection.run(PGStatement("test", sql), [], "test query").int(0, 0) ?? 0)
        }
    }

    private func databaseName() throws -> String {
        try #require(uri.split(separator: "/").last.map(String.init))
    }

    deinit { try? FileManager.default.removeItem(atPath: directory) }
}

func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
    guard !needle.isEmpty, haystack.count >= needle.count else { return false }
    for start in 0...(haystack.count - needle.count) where haystack[start] == needle[0] {
        if haystack[start..<start + needle.count].elementsEqual(needle) { return true }
    }
    return false
}

/// Lower-case hex, as PostgreSQL prints bytea.
func hex(_ bytes: [UInt8]) -> [UInt8] {
    let digits = Array("0123456789abcdef".utf8)
    return bytes.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 0x0F)]] }
}

/// Whether the raw bytes hold `secret` in any form a backend could store
/// it in clear: as text, as hex (bytea), or base64.
func holdsInClear(_ raw: [UInt8], _ secret: String) -> Bool {
    let bytes = Array(secret.utf8)
    return contains(raw, bytes) || contains(raw, hex(bytes)) || contains(raw, Array(Data(bytes).base64EncodedString().utf8))
}

func sampleIntegration(password: String? = "s3cret-SMTP-passw0rd-Zq7") -> SMTPIntegration {
    SMTPIntegration(host: "smtp.example.org", port: 587, security: .starttls, username: "mailer@example.org",
                    password: password, fromAddress: "noreply@example.org", fromName: "Example",
                    updatedAt: Date(timeIntervalSince1970: 1_750_000_000.123))
}
