import GRDB
import GRDBSQLite
import Synchronization

/// The WAL-index header at the start of a WAL database's `-shm` file,
/// read straight from shared memory: a check for "has anyone committed?"
/// that costs a dozen loads instead of a read transaction.
///
/// Format (https://www.sqlite.org/walformat.html, "The WAL-Index Header";
/// `WalIndexHdr` in SQLite's src/wal.c): the file starts with two copies
/// of a 48-byte header, native byte order,
///
///     u32 iVersion (3007000)   u32 unused     u32 iChange
///     u8 isInit  u8 bigEndCksum  u16 szPage   u32 mxFrame   u32 nPage
///     u32 aFrameCksum[2]       u32 aSalt[2]   u32 aCksum[2]
///
/// followed by the 40-byte checkpoint information. Every commit, by any
/// connection in any process (the sqlite3 shell as well as Mailgate),
/// rewrites the header (`walIndexWriteHdr`): copy 2 first, a memory
/// barrier, then copy 1. A commit appends frames, so `mxFrame` grows
/// within one WAL; when the WAL is restarted after a checkpoint the salts
/// change; the checksum covers all of it. So a header that reads the same
/// twice means no commit was published in between.
///
/// Where the bytes come from: not a mapping of our own. Opening the -shm
/// file and closing that descriptor later would drop every POSIX advisory
/// lock this process holds on the file, SQLite's included (locks belong to
/// the process and inode, not the descriptor: sqlite.org/howtocorrupt.html,
/// 2.2), and a file mapped on its own could be a stale one after SQLite
/// deleted and recreated it. Instead this asks the connection's VFS for
/// its mapping of wal-index region 0 (`xShmMap`, documented in
/// `sqlite3_io_methods`; with bExtend 0 it maps nothing new and only
/// returns the existing mapping). SQLite keeps that one MAP_SHARED mapping
/// per process and file, used by all its connections, for as long as any
/// of them is open; and while a connection of ours is open in WAL mode it
/// holds a shared lock on the database, so no other connection can delete,
/// truncate or reinitialise the -shm file under it. The header is
/// therefore valid for as long as the connection it was taken from: the
/// owner keeps the two together.
struct WALIndexHeader {
    /// WALINDEX_MAX_VERSION in src/wal.c, the only version there is.
    static let version: UInt32 = 3_007_000
    /// The size of a wal-index region (WALINDEX_PGSZ); xShmMap wants the
    /// same size SQLite itself uses.
    static let regionSize: Int32 = 32_768
    /// 48 bytes, as 64-bit words (the header is 8-aligned: it starts the
    /// page-aligned mapping, and the second copy starts at byte 48).
    static let words = 6

    /// One copy of the header, as read. Equal snapshots: no commit between.
    struct Snapshot: Equatable, Sendable {
        var words: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64)

        static func == (a: Snapshot, b: Snapshot) -> Bool {
            a.words.0 == b.words.0 && a.words.1 == b.words.1 && a.words.2 == b.words.2
                && a.words.3 == b.words.3 && a.words.4 == b.words.4 && a.words.5 == b.words.5
        }
    }

    /// The first byte of the wal-index (both header copies follow).
    private let base: UnsafeRawPointer

    /// A header at `base`, which must hold at least 96 readable, 8-aligned
    /// bytes for as long as this value is used (tests pass their own).
    init(base: UnsafeRawPointer) {
        self.base = base
    }

    /// The header of `db`'s database, nil when there is none to read: the
    /// connection is not in WAL mode, or uses exclusive locking (the
    /// wal-index is then private heap memory), or its VFS has no shared
    /// memory, or the region is not there. Call it on a connection that
    /// has already read (so its WAL and shared memory are open); the
    /// header is valid for as long as that connection stays open. A nil is
    /// the documented fallback, not an error: the caller then validates
    /// with a read transaction every time, as before.
    static func mapped(by db: Database) -> WALIndexHeader? {
        guard let connection = db.sqliteConnection else { return nil }
        // Errors here only mean "no fast path"; the request's own read
        // reports any real problem with the database.
        guard let journalMode = try? String.fetchOne(db, sql: "PRAGMA journal_mode"), journalMode.lowercased() == "wal",
              let lockingMode = try? String.fetchOne(db, sql: "PRAGMA locking_mode"), lockingMode.lowercased() == "normal"
        else { return nil }
        var file: UnsafeMutablePointer<sqlite3_file>?
        let found = withUnsafeMutablePointer(to: &file) { pointer in
            sqlite3_file_control(connection, "main", SQLITE_FCNTL_FILE_POINTER, pointer)
        }
        guard found == SQLITE_OK, let file, let methods = file.pointee.pMethods,
              methods.pointee.iVersion >= 2, let shmMap = methods.pointee.xShmMap else { return nil }
        var region: UnsafeMutableRawPointer?
        // bExtend 0: never grows or creates the file; a region not there
        // comes back as SQLITE_OK with a null pointer.
        guard shmMap(file, 0, regionSize, 0, &region) == SQLITE_OK, let region else { return nil }
        return WALIndexHeader(base: UnsafeRawPointer(region))
    }

    /// Header copy 1, or nil if it cannot be trusted as a picture of the
    /// database: a version other than 3007000 (not a wal-index this code
    /// knows), not initialised (SQLite will run recovery), or copy 2
    /// differs (a writer is between its two copies, or a reader caught a
    /// torn write; SQLite's own readers retry then, and nil sends the
    /// caller to the read transaction, which does).
    func snapshot() -> Snapshot? {
        // Acquiring loads, copy 1 then copy 2: the reverse of the writer's
        // order (copy 2, barrier, copy 1), as `walIndexTryHdr` reads them.
        let words = base.assumingMemoryBound(to: Atomic<UInt64>.self)
        let first = Snapshot(words: (words[0].load(ordering: .acquiring), words[1].load(ordering: .acquiring),
                                     words[2].load(ordering: .acquiring), words[3].load(ordering: .acquiring),
                                     words[4].load(ordering: .acquiring), words[5].load(ordering: .acquiring)))
        let second = Snapshot(words: (words[6].load(ordering: .acquiring), words[7].load(ordering: .acquiring),
                                      words[8].load(ordering: .acquiring), words[9].load(ordering: .acquiring),
                                      words[10].load(ordering: .acquiring), words[11].load(ordering: .acquiring)))
        guard first == second, Self.isCurrentAndInitialised(first) else { return nil }
        return first
    }

    /// iVersion is bytes 0-3 and isInit byte 12, in native byte order.
    private static func isCurrentAndInitialised(_ header: Snapshot) -> Bool {
        #if _endian(little)
        let version = UInt32(truncatingIfNeeded: header.words.0)
        let isInit = UInt8(truncatingIfNeeded: header.words.1 >> 32)
        #else
        let version = UInt32(truncatingIfNeeded: header.words.0 >> 32)
        let isInit = UInt8(truncatingIfNeeded: header.words.1 >> 24)
        #endif
        return version == Self.version && isInit != 0
    }
}
