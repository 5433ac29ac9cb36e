import Foundation
import GRDB
import MailgateTesting
import Synchronization
import Testing
@testable import Store
import Crypto

/// The WAL-index header fast path of `CredentialsReader`: a commit by
/// anyone (another connection with plain SQL, another process, the store
/// itself) is seen by the next lookup, and lookups with no commit between
/// them ask SQLite nothing.
@Suite struct WALIndexHeaderTests {
    // MARK: The header

    /// Two header copies as SQLite writes them: iVersion, isInit, mxFrame.
    private static func header(version: UInt32 = WALIndexHeader.version, isInit: UInt8 = 1,
                               mxFrame: UInt32 = 7) -> [UInt8] {
        var copy = [UInt8](repeating: 0, count: 48)
        withUnsafeBytes(of: version) { copy.replaceSubrange(0..<4, with: $0) }
        withUnsafeBytes(of: UInt32(3)) { copy.replaceSubrange(8..<12, with: $0) }   // iChange
        copy[12] = isInit
        withUnsafeBytes(of: UInt16(4096)) { copy.replaceSubrange(14..<16, with: $0) }
        withUnsafeBytes(of: mxFrame) { copy.replaceSubrange(16..<20, with: $0) }
        withUnsafeBytes(of: UInt32(0x5A17)) { copy.replaceSubrange(32..<36, with: $0) }   // aSalt[0]
        return copy + copy
    }

    /// The snapshot of `bytes` read as a wal-index (8-aligned storage).
    private static func snapshot(_ bytes: [UInt8]) -> WALIndexHeader.Snapshot? {
        var words = [UInt64](repeating: 0, count: 12)
        words.withUnsafeMutableBytes { $0.copyBytes(from: bytes) }
        return words.withUnsafeBytes { raw -> WALIndexHeader.Snapshot? in
            guard let base = raw.baseAddress else { return nil }
            return WALIndexHeader(base: base).snapshot()
        }
    }

    @Test func snapshotIsCopyOneOnlyWhenCurrentInitialisedAndBothCopiesAgree() throws {
        let current = try #require(Self.snapshot(Self.header()))
        #expect(Self.snapshot(Self.header()) == current)
        // A commit: mxFrame grows in both copies.
        let committed = try #require(Self.snapshot(Self.header(mxFrame: 8)))
        #expect(committed != current)
        // A writer between its copies: copy 2 already new, copy 1 not.
        #expect(Self.snapshot(Array(Self.header()[0..<48]) + Array(Self.header(mxFrame: 8)[48..<96])) == nil)
        // Not a wal-index this code knows, or not initialised yet.
        #expect(Self.snapshot(Self.header(version: 3_007_001)) == nil)
        #expect(Self.snapshot(Self.header(isInit: 0)) == nil)
        #expect(Self.snapshot([UInt8](repeating: 0, count: 96)) == nil)
    }

    // MARK: The reader

    private static let integrationName = "Example"

    /// A store with alice and her integration, whose reader on this thread
    /// has validated its cache under the current header (the first lookup
    /// finds the header, the second validates under it).
    private static func warmStore() throws -> (TemporaryStore, CredentialsReader) {
        let t = try TemporaryStore(.sqlite)
        _ = try t.store.addUser("alice", passwordHash: "h")
        try t.store.setIntegration(sampleIntegration(), for: "alice")
        let reader = try t.sqlite.credentialsReader
        for _ in 0..<3 { _ = try t.store.credentials(for: "alice") }
        return (t, reader)
    }

    private static func validations(_ reader: CredentialsReader) -> Int {
        reader.validations.load(ordering: .relaxed)
    }

    @Test func lookupsWithoutCommitsRunNoReadTransaction() throws {
        let (t, reader) = try Self.warmStore()
        let before = Self.validations(reader)
        for _ in 0..<100 {
            #expect(try t.store.credentials(for: "alice")?.integration?.fromName == Self.integrationName)
        }
        #expect(Self.validations(reader) == before)
    }

    @Test func plainSQLFromAnotherConnectionIsSeenByTheNextLookup() throws {
        let (t, reader) = try Self.warmStore()
        #expect(try t.store.credentials(for: "alice")?.user.isDisabled == false)
        var validations = Self.validations(reader)

        // A separate GRDB connection, plain SQL: not the store's API.
        try t.execute("UPDATE users SET is_disabled = 1 WHERE username = 'alice'")
        #expect(try t.store.credentials(for: "alice")?.user.isDisabled == true)
        #expect(Self.validations(reader) == validations + 1)
        validations += 1

        try t.execute("UPDATE smtp_integrations SET from_name = 'Renamed'")
        #expect(try t.store.credentials(for: "alice")?.integration?.fromName == "Renamed")
        #expect(try t.store.credentials(for: "alice")?.integration?.fromName == "Renamed")
        #expect(Self.validations(reader) == validations + 1)

        try t.execute("DELETE FROM users WHERE username = 'alice'")
        #expect(try t.store.credentials(for: "alice") == nil)
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/sqlite3")))
    func aCommitByAnotherProcessIsSeenByTheNextLookup() throws {
        let (t, reader) = try Self.warmStore()
        let validations = Self.validations(reader)
        let shell = try runTool("/usr/bin/sqlite3", [t.path, "UPDATE users SET is_disabled = 1 WHERE username = 'alice';"],
                                in: t.directory)
        #expect(shell.ok, "sqlite3: \(shell.stderr)")
        #expect(try t.store.credentials(for: "alice")?.user.isDisabled == true)
        #expect(Self.validations(reader) == validations + 1)
    }

    @Test func aChangeThroughTheStoreIsSeenByTheNextLookup() throws {
        let (t, reader) = try Self.warmStore()
        let validations = Self.validations(reader)
        var changed = sampleIntegration()
        changed.host = "smtp2.example.org"
        try t.store.setIntegration(changed, for: "alice")
        #expect(try t.store.credentials(for: "alice")?.integration?.host == "smtp2.example.org")
        try t.store.setDisabled(true, for: "alice")
        #expect(try t.store.credentials(for: "alice")?.user.isDisabled == true)
        #expect(Self.validations(reader) == validations + 2)
    }

    @Test func namedTokensAreValidatedTheSameWay() throws {
        let (t, reader) = try Self.warmStore()
        let created = Date(timeIntervalSince1970: 1_750_000_000)
        _ = try t.store.addNamedToken(id: "id-cron", name: "cron", for: "alice", createdAt: created,
                                      expiresAt: created.addingTimeInterval(86_400))
        #expect(try t.store.namedToken(id: "id-cron")?.revokedAt == nil)
        #expect(try t.store.namedToken(id: "id-cron")?.revokedAt == nil)
        let validations = Self.validations(reader)
        #expect(try t.store.namedToken(id: "id-cron")?.revokedAt == nil)
        #expect(Self.validations(reader) == validations)

        try t.execute("UPDATE named_tokens SET revoked_at_ms = 1750000001000 WHERE id = 'id-cron'")
        #expect(try t.store.namedToken(id: "id-cron")?.revokedAt != nil)
        #expect(Self.validations(reader) == validations + 1)
    }

    /// Threads that each keep their connection (as FastCGI workers do) and
    /// run one step at a time when told.
    private final class Workers: Sendable {
        private let go: [DispatchSemaphore]
        private let done = DispatchSemaphore(value: 0)
        private let step = Mutex<(@Sendable () -> Void)?>(nil)

        init(_ count: Int) {
            go = (0..<count).map { _ in DispatchSemaphore(value: 0) }
            for semaphore in go {
                Thread { [self] in
                    while true {
                        semaphore.wait()
                        guard let work = step.withLock({ $0 }) else { break }
                        work()
                        done.signal()
                    }
                    done.signal()
                }.start()
            }
        }

        /// Runs `work` once on every thread and waits for all of them.
        func run(_ work: @escaping @Sendable () -> Void) {
            step.withLock { $0 = work }
            for semaphore in go { semaphore.signal() }
            for _ in go { done.wait() }
        }

        /// Ends the threads.
        func stop() {
            step.withLock { $0 = nil }
            for semaphore in go { semaphore.signal() }
            for _ in go { done.wait() }
        }
    }

    @Test func oneCommitCostsEachThreadExactlyOneValidation() throws {
        let t = try TemporaryStore(.sqlite)
        _ = try t.store.addUser("alice", passwordHash: "h")
        let reader = try t.sqlite.credentialsReader
        let store = t.store
        let threads = 4
        let workers = Workers(threads)
        defer { workers.stop() }
        final class Count: Sendable { let value = Atomic<Int>(0) }
        let disabledSeen = Count()
        let lookUp: @Sendable (Int) -> Void = { times in
            for _ in 0..<times {
                if (try? store.credentials(for: "alice"))?.user.isDisabled == true {
                    disabledSeen.value.add(1, ordering: .relaxed)
                }
            }
        }

        workers.run { lookUp(3) }   // each thread: find the header, validate under it
        let warm = Self.validations(reader)
        workers.run { lookUp(50) }
        #expect(Self.validations(reader) == warm)

        try t.execute("UPDATE users SET is_disabled = 1 WHERE username = 'alice'")
        workers.run { lookUp(10) }
        #expect(Self.validations(reader) == warm + threads)
        #expect(disabledSeen.value.load(ordering: .relaxed) == threads * 10)
    }

    @Test func aDatabaseWithoutAWALIndexIsValidatedOnEveryLookup() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("mailgate-wal-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/rollback.sqlite"
        // A rollback-journal database (a DatabaseQueue's default): no -shm
        // file, so no header to read.
        let writer = try DatabaseQueue(path: path)
        try SQLiteSchema.migrator.migrate(writer)
        try writer.write { db in
            try db.execute(sql: "INSERT INTO users (username, password_hash, created_at_ms) VALUES ('alice', 'h', 0)")
        }
        #expect(try writer.read { db in try String.fetchOne(db, sql: "PRAGMA journal_mode") } == "delete")
        #expect(!FileManager.default.fileExists(atPath: path + "-shm"))

        let reader = try CredentialsReader(path: path, seal: PasswordSeal(box: try SecretBox(key: [UInt8](repeating: 9, count: 32))))
        for _ in 0..<5 { #expect(try reader.credentials(for: "alice")?.user.isDisabled == false) }
        #expect(Self.validations(reader) == 5)
        try writer.write { db in try db.execute(sql: "UPDATE users SET is_disabled = 1 WHERE username = 'alice'") }
        #expect(try reader.credentials(for: "alice")?.user.isDisabled == true)
        #expect(Self.validations(reader) == 6)
        try writer.close()
    }
}
