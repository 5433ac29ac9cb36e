import Foundation
import Testing
@testable import Store
import Crypto

/// Issue 10, item 5: send counting for quotas, shared by every process.
@Suite struct SendQuotaTests {
    /// 2026-01-01T00:00:00Z, the start of a minute, an hour and a day.
    private let midnight = Date(timeIntervalSince1970: 1_767_225_600)

    @Test func windowsAreFixedAndStartOnTheirBoundaries() {
        #expect(QuotaWindow.minute.start(of: 1_767_225_659) == 1_767_225_600)
        #expect(QuotaWindow.minute.start(of: 1_767_225_660) == 1_767_225_660)
        #expect(QuotaWindow.hour.start(of: 1_767_229_199) == 1_767_225_600)
        #expect(QuotaWindow.day.start(of: 1_767_311_999) == 1_767_225_600)
    }

    @Test(arguments: Backend.allCases) func reservationsAreAllOrNothingAndTheTightestWindowDecides(_ backend: Backend) throws {
        let t = try TemporaryStore(backend)
        let limits: [QuotaWindow: Int] = [.minute: 3, .day: 5]
        let first = try t.store.reserveSends(2, for: "alice", limits: limits, at: midnight)
        #expect(first.granted)
        #expect(first.windows.map(\.window) == [.minute, .day], "shortest first")
        #expect(first.windows.map(\.remaining) == [1, 3])
        #expect(first.windows.first?.resetsIn == 60)
        // 2 more would pass the minute's 3: refused, and nothing counted.
        let over = try t.store.reserveSends(2, for: "alice", limits: limits, at: midnight.addingTimeInterval(10))
        #expect(!over.granted)
        #expect(over.windows.map(\.used) == [2, 2])
        #expect(over.windows.first?.resetsIn == 50)
        #expect(try t.store.reserveSends(1, for: "alice", limits: limits, at: midnight.addingTimeInterval(20)).granted)
        // Another user has their own counts.
        #expect(try t.store.reserveSends(3, for: "bob", limits: limits, at: midnight.addingTimeInterval(20)).granted)
        // The next minute starts from 0; the day goes on counting.
        let nextMinute = try t.store.reserveSends(2, for: "alice", limits: limits, at: midnight.addingTimeInterval(60))
        #expect(nextMinute.granted)
        #expect(nextMinute.windows.map(\.used) == [2, 5])
        #expect(!(try t.store.reserveSends(1, for: "alice", limits: limits, at: midnight.addingTimeInterval(61))).granted,
                "the day's 5 are used")
    }

    @Test(arguments: Backend.allCases) func releaseGivesBackOnlyToWindowsStillCurrent(_ backend: Backend) throws {
        let t = try TemporaryStore(backend)
        let limits: [QuotaWindow: Int] = [.minute: 2, .hour: 2]
        let sent = try t.store.reserveSends(2, for: "alice", limits: limits, at: midnight.addingTimeInterval(50))
        try t.store.releaseSends(sent, for: "alice")
        let again = try t.store.reserveSends(2, for: "alice", limits: limits, at: midnight.addingTimeInterval(55))
        #expect(again.granted, "a failed send does not count")
        // Released after the minute rolled over: the new minute is untouched,
        // the hour gets its 2 back.
        #expect(try t.store.reserveSends(1, for: "alice", limits: [.minute: 2], at: midnight.addingTimeInterval(60)).granted)
        try t.store.releaseSends(again, for: "alice")
        let later = try t.store.reserveSends(2, for: "alice", limits: limits, at: midnight.addingTimeInterval(61))
        #expect(!later.granted)
        #expect(later.windows.map(\.used) == [1, 0])
    }

    /// Two processes (two stores on one file) and 64 concurrent reservations:
    /// exactly the limit is granted, never more.
    @Test(arguments: Backend.allCases) func concurrentReservationsFromTwoProcessesNeverOvershoot(_ backend: Backend) async throws {
        let t = try TemporaryStore(backend)
        let other = try t.reopen()
        let stores: [any Store] = [t.store, other]
        let at = midnight
        let granted = try await withThrowingTaskGroup(of: Bool.self) { group in
            for i in 0..<64 {
                let store = stores[i % 2]
                group.addTask { try store.reserveSends(1, for: "alice", limits: [.hour: 10], at: at).granted }
            }
            var count = 0
            for try await ok in group where ok { count += 1 }
            return count
        }
        #expect(granted == 10)
    }

    @Test(arguments: Backend.allCases) func quotasAreStoredPerUserAndReadWithTheCredentials(_ backend: Backend) throws {
        let t = try TemporaryStore(backend)
        _ = try t.store.addUser("alice", passwordHash: "h")
        #expect(try t.store.sendQuota(for: "alice") == .serverDefaults)
        let quota = SendQuota(perWindow: [.minute: 5, .day: 0])
        try t.store.setSendQuota(quota, for: "alice")
        #expect(try t.reopen().sendQuota(for: "alice") == quota)
        #expect(quota.effective(defaults: [.minute: 1, .hour: 100, .day: 1000]) == [.minute: 5, .hour: 100],
                "the user's own values win; 0 is unlimited; unset windows take the default")
        #expect(throws: StoreError.userNotFound("nobody")) { try t.store.setSendQuota(quota, for: "nobody") }
        if backend == .sqlite { #expect(FileManager.default.fileExists(atPath: SQLiteStore.countersPath(for: t.path))) }
        #expect(SQLiteStore.countersPath(for: "/d/mailgate.sqlite") == "/d/mailgate-counters.map")
    }

    /// `sudo mailgate user limits ...` must not leave a counters file that
    /// the service's own user cannot open: root gives it the database's owner.
    @Test(.enabled(if: geteuid() == 0, "only root can create files for another user"))
    func countersCreatedByRootBelongToTheDatabasesOwner() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("mailgate-owner-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/mailgate.sqlite"
        #expect(FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600]))
        #expect(chown(path, 4321, 4322) == 0)
        _ = try SQLiteStore(path: path, secretBox: SecretBox(key: [UInt8](repeating: 5, count: 32)))
        var info = stat()
        #expect(stat(SQLiteStore.countersPath(for: path), &info) == 0)
        #expect(info.st_uid == 4321 && info.st_gid == 4322)
        #expect(info.st_mode & 0o777 == 0o600)
    }
}
