import Foundation
import Testing
@testable import Store
import Crypto

/// A fresh database file in its own directory, removed at the end.
final class TemporaryStore {
    let directory: String
    let path: String
    let box: SecretBox
    let store: SQLiteStore

    init(key: [UInt8] = [UInt8](repeating: 9, count: 32)) throws {
        directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("mailgate-store-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        path = directory + "/mailgate.sqlite"
        box = try SecretBox(key: key)
        store = try SQLiteStore(path: path, secretBox: box)
    }

    /// A second, independent Store on the same file, as the CLI would open.
    func reopen(key: [UInt8]? = nil) throws -> SQLiteStore {
        try SQLiteStore(path: path, secretBox: key.map { try SecretBox(key: $0) } ?? box)
    }

    /// Every byte SQLite has written: the database, its WAL and shared memory.
    func rawBytes() -> [UInt8] {
        ["", "-wal", "-shm"].flatMap { suffix in
            (FileManager.default.contents(atPath: path + suffix)).map(Array.init) ?? []
        }
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

func sampleIntegration(password: String? = "s3cret-SMTP-passw0rd-Zq7") -> SMTPIntegration {
    SMTPIntegration(host: "smtp.example.org", port: 587, security: .starttls, username: "mailer@example.org",
                    password: password, fromAddress: "noreply@example.org", fromName: "Example",
                    updatedAt: Date(timeIntervalSince1970: 1_750_000_000.123))
}
