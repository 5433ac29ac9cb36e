import Foundation
import Posix
#if canImport(Glibc)
import Glibc
#endif

/// Send counts per user and quota window, shared by every worker and every
/// process on the data directory, in a file beside the database that each
/// process maps into memory (`MAP_SHARED`), as nginx keeps its `limit_req`
/// zones. A reservation is a few hundred nanoseconds under one process-shared
/// mutex: read the windows, grant all or nothing, write. So concurrent sends
/// cannot overshoot a limit, and a send with a quota costs about what one
/// without does (a SQLite transaction per send, tried first, cost 40 µs of
/// CPU alone and, with 16 workers contending, a third of make bench).
///
/// The table: `slotCount` slots keyed by (username bytes, window length),
/// open addressing with linear probing. A slot whose window has ended is
/// reused by the next key that needs one; a slot is never emptied, so a
/// probe runs until it finds its key or a slot never used. The counts
/// survive restarts (the file stays), not a lost file: that resets them.
final class SendCounter: @unchecked Sendable {  // the mapping is only touched under `mutex`
    static let magic: UInt64 = 0x3154_4E55_4F43_474D  // "MGCOUNT1" little-endian
    static let headerSize = 4096
    static let slotSize = 128
    static let slotCount = 32_768
    static let fileSize = headerSize + slotSize * slotCount
    /// Byte offsets in the header and in a slot.
    private enum Offset {
        static let magic = 0, slotCount = 8, slotSize = 12, mutex = 64
        static let windowStart = 0, count = 8, windowSeconds = 12, nameLength = 16, name = 17
    }
    static let maximumNameLength = 64

    private let base: UnsafeMutableRawPointer
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>

    /// Maps the file at `path`, creating and initialising it (mode 0600) if
    /// it does not exist; several processes may do this at once. Created by
    /// root (a `mailgate` command run with sudo), it gets the owner of
    /// `databasePath`, as SQLite does with its -wal and -shm files, so the
    /// service's own user can still open it.
    init(path: String, ownerOf databasePath: String) throws(StoreError) {
        let fd = try Self.openOrCreate(path, ownerOf: databasePath)
        defer { closeDescriptor(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw Self.failure("fstat \(path)", errno) }
        guard Int(info.st_size) == Self.fileSize else {
            throw .database("send counter file \(path) has \(info.st_size) bytes, not \(Self.fileSize); remove it (counts restart at 0)")
        }
        guard let mapped = mmap(nil, Self.fileSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), mapped != MAP_FAILED else {
            throw Self.failure("mmap \(path)", errno)
        }
        guard mapped.load(fromByteOffset: Offset.magic, as: UInt64.self) == Self.magic,
              mapped.load(fromByteOffset: Offset.slotCount, as: UInt32.self) == UInt32(Self.slotCount),
              mapped.load(fromByteOffset: Offset.slotSize, as: UInt32.self) == UInt32(Self.slotSize) else {
            munmap(mapped, Self.fileSize)
            throw .database("send counter file \(path) is not one of ours (or of another version); remove it (counts restart at 0)")
        }
        base = mapped
        mutex = (mapped + Offset.mutex).assumingMemoryBound(to: pthread_mutex_t.self)
    }

    deinit {
        munmap(base, Self.fileSize)
    }

    func reserve(_ recipients: Int, for username: String, limits: [QuotaWindow: Int],
                 second: Int64) throws(StoreError) -> QuotaReservation {
        let name = try Self.key(username)
        let windows = limits.keys.sorted()
        return try locked { () throws(StoreError) -> QuotaReservation in
            var counted: [(window: QuotaWindow, limit: Int, start: Int64, slot: UnsafeMutableRawPointer, count: Int)] = []
            for window in windows {
                let start = window.start(of: second)
                let slot = try slot(for: name, window: window, second: second)
                let current = slot.load(fromByteOffset: Offset.windowSeconds, as: UInt32.self) == UInt32(window.rawValue)
                    && slot.load(fromByteOffset: Offset.windowStart, as: Int64.self) == start
                let count = current ? Int(slot.load(fromByteOffset: Offset.count, as: UInt32.self)) : 0
                counted.append((window, limits[window] ?? 0, start, slot, count))
            }
            let granted = counted.allSatisfy { $0.count + recipients <= $0.limit }
            if granted {
                for entry in counted {
                    Self.write(entry.slot, name: name, window: entry.window, start: entry.start,
                               count: entry.count + recipients)
                }
            }
            return QuotaReservation(
                granted: granted, recipients: recipients,
                windows: counted.map {
                    QuotaWindowState(window: $0.window, limit: $0.limit, used: $0.count + (granted ? recipients : 0),
                                     resetsIn: $0.start + $0.window.seconds - second)
                },
                second: second)
        }
    }

    func release(_ reservation: QuotaReservation, for username: String) throws(StoreError) {
        guard reservation.granted else { return }
        let name = try Self.key(username)
        try locked { () throws(StoreError) in
            for state in reservation.windows {
                let start = state.window.start(of: reservation.second)
                let slot = try slot(for: name, window: state.window, second: reservation.second)
                guard slot.load(fromByteOffset: Offset.windowSeconds, as: UInt32.self) == UInt32(state.window.rawValue),
                      slot.load(fromByteOffset: Offset.windowStart, as: Int64.self) == start else { continue }
                let count = Int(slot.load(fromByteOffset: Offset.count, as: UInt32.self))
                slot.storeBytes(of: UInt32(max(0, count - reservation.recipients)), toByteOffset: Offset.count, as: UInt32.self)
            }
        }
    }

    // MARK: The table

    /// The slot holding (name, window), or the first reusable one on its
    /// probe path (never used, or its window ended before `second`).
    private func slot(for name: [UInt8], window: QuotaWindow, second: Int64) throws(StoreError) -> UnsafeMutableRawPointer {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325  // FNV-1a over the name, then the window
        for byte in name + withUnsafeBytes(of: UInt32(window.rawValue).littleEndian, Array.init) {
            hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
        }
        var reusable: UnsafeMutableRawPointer?
        var index = Int(hash % UInt64(Self.slotCount))
        for _ in 0..<Self.slotCount {
            let slot = base + Self.headerSize + index * Self.slotSize
            let seconds = slot.load(fromByteOffset: Offset.windowSeconds, as: UInt32.self)
            if seconds == 0 { return reusable ?? slot }  // never used: the key is not further on
            if seconds == UInt32(window.rawValue) && Self.name(of: slot).elementsEqual(name) { return slot }
            let ended = slot.load(fromByteOffset: Offset.windowStart, as: Int64.self) + Int64(seconds) <= second
            if ended && reusable == nil { reusable = slot }
            index = (index + 1) % Self.slotCount
        }
        guard let reusable else {
            throw .database("send counter table full: \(Self.slotCount) user and window pairs in their current window")
        }
        return reusable
    }

    private static func name(of slot: UnsafeMutableRawPointer) -> UnsafeRawBufferPointer {
        let length = min(Int(slot.load(fromByteOffset: Offset.nameLength, as: UInt8.self)), maximumNameLength)
        return UnsafeRawBufferPointer(start: slot + Offset.name, count: length)
    }

    private static func write(_ slot: UnsafeMutableRawPointer, name: [UInt8], window: QuotaWindow, start: Int64, count: Int) {
        slot.storeBytes(of: start, toByteOffset: Offset.windowStart, as: Int64.self)
        slot.storeBytes(of: UInt32(clamping: count), toByteOffset: Offset.count, as: UInt32.self)
        slot.storeBytes(of: UInt8(name.count), toByteOffset: Offset.nameLength, as: UInt8.self)
        name.withUnsafeBytes { bytes in
            if let source = bytes.baseAddress { (slot + Offset.name).copyMemory(from: source, byteCount: bytes.count) }
        }
        slot.storeBytes(of: UInt32(window.rawValue), toByteOffset: Offset.windowSeconds, as: UInt32.self)
    }

    /// The username's bytes; names are 1-64 bytes (`User.isValidUsername`).
    private static func key(_ username: String) throws(StoreError) -> [UInt8] {
        guard User.isValidUsername(username) else { throw .invalidUsername }
        return Array(username.utf8)
    }

    /// Runs `body` holding the process-shared mutex. A holder that died
    /// (EOWNERDEAD) left at worst one slot half-written: the table is
    /// marked consistent and used on.
    private func locked<T>(_ body: () throws(StoreError) -> T) throws(StoreError) -> T {
        var result = pthread_mutex_lock(mutex)
        if result == EOWNERDEAD { result = pthread_mutex_consistent(mutex) }
        guard result == 0 else { throw Self.failure("pthread_mutex_lock (send counters)", result) }
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    // MARK: The file

    /// Opens the file, or creates it under a temporary name, initialises
    /// header and mutex there and links it into place, so no process ever
    /// maps a half-made table; the loser of a race opens the winner's.
    private static func openOrCreate(_ path: String, ownerOf databasePath: String) throws(StoreError) -> Int32 {
        let existing = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW)
        if existing >= 0 { return existing }
        guard errno == ENOENT else { throw failure("open \(path)", errno) }

        let temporary = "\(path).\(getpid()).\(UInt32.random(in: 0 ... .max)).new"
        let fd = open(temporary, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw failure("create \(temporary)", errno) }
        defer { unlink(temporary) }
        do throws(StoreError) {
            guard fchmod(fd, 0o600) == 0 else { throw failure("fchmod \(temporary)", errno) }
            var database = stat()
            if geteuid() == 0, stat(databasePath, &database) == 0, database.st_uid != 0 || database.st_gid != 0 {
                guard fchown(fd, database.st_uid, database.st_gid) == 0 else { throw failure("fchown \(temporary)", errno) }
            }
            guard ftruncate(fd, off_t(fileSize)) == 0 else { throw failure("ftruncate \(temporary)", errno) }
            guard let mapped = mmap(nil, headerSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), mapped != MAP_FAILED else {
                throw failure("mmap \(temporary)", errno)
            }
            defer { munmap(mapped, headerSize) }
            try initialiseMutex((mapped + Offset.mutex).assumingMemoryBound(to: pthread_mutex_t.self))
            mapped.storeBytes(of: UInt32(slotCount), toByteOffset: Offset.slotCount, as: UInt32.self)
            mapped.storeBytes(of: UInt32(slotSize), toByteOffset: Offset.slotSize, as: UInt32.self)
            mapped.storeBytes(of: magic, toByteOffset: Offset.magic, as: UInt64.self)
            if link(temporary, path) != 0 {
                let code = errno
                closeDescriptor(fd)
                guard code == EEXIST else { throw failure("link \(temporary) to \(path)", code) }
                let theirs = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW)
                guard theirs >= 0 else { throw failure("open \(path)", errno) }
                return theirs
            }
        } catch {
            closeDescriptor(fd)
            throw error
        }
        return fd
    }

    private static func initialiseMutex(_ mutex: UnsafeMutablePointer<pthread_mutex_t>) throws(StoreError) {
        var attributes = pthread_mutexattr_t()
        var result = pthread_mutexattr_init(&attributes)
        guard result == 0 else { throw failure("pthread_mutexattr_init", result) }
        defer { pthread_mutexattr_destroy(&attributes) }
        result = pthread_mutexattr_setpshared(&attributes, Int32(PTHREAD_PROCESS_SHARED))
        guard result == 0 else { throw failure("pthread_mutexattr_setpshared", result) }
        result = pthread_mutexattr_setrobust(&attributes, Int32(PTHREAD_MUTEX_ROBUST))
        guard result == 0 else { throw failure("pthread_mutexattr_setrobust", result) }
        result = pthread_mutex_init(mutex, &attributes)
        guard result == 0 else { throw failure("pthread_mutex_init", result) }
    }

    private static func failure(_ call: String, _ code: Int32) -> StoreError {
        .database(SystemCallError(call, code: code).description)
    }
}
