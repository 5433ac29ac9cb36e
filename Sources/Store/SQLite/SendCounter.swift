import Foundation
import GRDB
import Posix

/// Send counts per user and quota window, in their own SQLite file beside
/// the main one, shared by every worker and every process on the data
/// directory. Each reservation is one `BEGIN IMMEDIATE` transaction (read
/// the windows, grant all or nothing, write), so concurrent sends cannot
/// overshoot a limit.
///
/// Each thread has its own connection (its GRDB queue is never contended:
/// one shared queue's `sync` slow path took 13% of Mailgate's CPU in make
/// bench), and one mutex lines up the process's transactions, so only other
/// processes ever meet SQLite's write lock (16 workers contending for it
/// slept in SQLite's busy handler: make bench halved, p99 100 ms).
final class SendCounter: Sendable {
    private let connections: PerThread<ConnectionBox>
    private let oneWriterAtATime = PThreadMutex(())

    /// A thread's connection (used by that thread alone).
    private final class ConnectionBox: @unchecked Sendable {
        let queue: DatabaseQueue
        init(queue: DatabaseQueue) { self.queue = queue }
    }

    /// Creates (mode 0600) and migrates the file if needed.
    init(path: String) throws(StoreError) {
        try SQLiteStore.createPrivateFileIfMissing(path)
        do {
            // WAL once for the file (it is persistent); the queue is closed
            // at the end of this scope.
            let setup = try DatabaseQueue(path: path, configuration: Self.configuration())
            try setup.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA journal_mode = WAL") }
            try SQLiteSchema.countersMigrator.migrate(setup)
        } catch {
            throw SQLiteStore.wrap(error, "open send counters \(path)")
        }
        connections = try PerThread {
            ConnectionBox(queue: try DatabaseQueue(path: path, configuration: SendCounter.configuration()))
        }
    }

    /// Counts lost to a power cut at worst (synchronous NORMAL) are a few
    /// sends of the last moment, not a corrupt file.
    private static func configuration() -> Configuration {
        var configuration = Configuration()
        configuration.busyMode = .timeout(5)
        configuration.label = "mailgate.counters"
        configuration.prepareDatabase { db in try db.execute(sql: "PRAGMA synchronous = OFF") }
        return configuration
    }

    private static let selectCount = "SELECT window_start, count FROM send_counts WHERE username = ? AND window_seconds = ?"
    private static let upsertCount = """
        INSERT INTO send_counts (username, window_seconds, window_start, count) VALUES (?, ?, ?, ?)
        ON CONFLICT (username, window_seconds) DO UPDATE SET window_start = excluded.window_start, count = excluded.count
        """
    private static let giveBack = """
        UPDATE send_counts SET count = max(0, count - ?)
        WHERE username = ? AND window_seconds = ? AND window_start = ?
        """

    func reserve(_ recipients: Int, for username: String, limits: [QuotaWindow: Int],
                 second: Int64) throws -> QuotaReservation {
        let windows = limits.keys.sorted()
        let queue = try connections.value().queue
        return try oneWriterAtATime.withLock { _ in try reserve(recipients, windows: windows, limits: limits,
                                                                 username: username, second: second, on: queue) }
    }

    private func reserve(_ recipients: Int, windows: [QuotaWindow], limits: [QuotaWindow: Int], username: String,
                         second: Int64, on queue: DatabaseQueue) throws -> QuotaReservation {
        try queue.inDatabase { db in
            var reservation = QuotaReservation(granted: false, recipients: recipients, windows: [], second: second)
            try db.inTransaction(.immediate) {
                var counted: [(window: QuotaWindow, limit: Int, start: Int64, count: Int)] = []
                for window in windows {
                    let start = window.start(of: second)
                    let row = try Row.fetchOne(db.cachedStatement(sql: Self.selectCount),
                                               arguments: [username, window.rawValue])
                    let storedStart: Int64? = row?[0]
                    let count: Int = storedStart == start ? (row?[1] ?? 0) : 0
                    counted.append((window, limits[window] ?? 0, start, count))
                }
                let granted = counted.allSatisfy { $0.count + recipients <= $0.limit }
                if granted {
                    for entry in counted {
                        try db.cachedStatement(sql: Self.upsertCount)
                            .execute(arguments: [username, entry.window.rawValue, entry.start, entry.count + recipients])
                    }
                }
                reservation = QuotaReservation(
                    granted: granted, recipients: recipients,
                    windows: counted.map {
                        QuotaWindowState(window: $0.window, limit: $0.limit, used: $0.count + (granted ? recipients : 0),
                                         resetsIn: $0.start + $0.window.seconds - second)
                    },
                    second: second)
                return granted ? .commit : .rollback
            }
            return reservation
        }
    }

    func release(_ reservation: QuotaReservation, for username: String) throws {
        guard reservation.granted else { return }
        let queue = try connections.value().queue
        try oneWriterAtATime.withLock { _ in try queue.inDatabase { db in
            try db.inTransaction(.immediate) {
                for state in reservation.windows {
                    try db.cachedStatement(sql: Self.giveBack).execute(arguments: [
                        reservation.recipients, username, state.window.rawValue, state.window.start(of: reservation.second),
                    ])
                }
                return .commit
            }
        } }
    }
}
