import Glibc
import Posix

/// Why a key file could not be created or loaded. Messages carry the path
/// and the system's reason, never key bytes.
public enum KeyFileError: Error, Sendable, Equatable, CustomStringConvertible {
    case missing(String)
    case unreadable(String, String)
    case insecurePermissions(String, UInt32)
    case tooShort(String, Int)
    case exists(String)
    case writeFailed(String, String)

    public var description: String {
        switch self {
        case .missing(let path):
            return "key file \(path) does not exist"
        case .unreadable(let path, let reason):
            return "cannot read key file \(path): \(reason)"
        case .insecurePermissions(let path, let mode):
            return "key file \(path) has mode \(String(mode, radix: 8)); it must not be accessible to group or others (chmod 600)"
        case .tooShort(let path, let length):
            return "key file \(path) holds \(length) bytes, fewer than required"
        case .exists(let path):
            return "key file \(path) already exists; refusing to overwrite it"
        case .writeFailed(let path, let reason):
            return "cannot write key file \(path): \(reason)"
        }
    }
}

/// Raw random key bytes in a file only the owner can read.
public enum KeyFile {
    /// Larger files are refused: a key file is tens of bytes, and reading
    /// something huge by mistake should fail fast.
    public static let maximumLength = 4096

    /// Creates `path` with `byteCount` random bytes, mode 0600. Never
    /// overwrites (O_EXCL), never follows a symlink at `path`.
    public static func create(at path: String, byteCount: Int = 32) throws(KeyFileError) {
        guard byteCount >= 1, byteCount <= maximumLength else {
            throw .writeFailed(path, "key length \(byteCount) outside 1...\(maximumLength)")
        }
        let bytes: [UInt8]
        do {
            bytes = try Crypto.randomBytes(byteCount)
        } catch {
            throw .writeFailed(path, error.description)
        }
        let fd: Int32
        do {
            fd = try systemCall("open") { open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0o600) }
        } catch {
            if error.code == EEXIST { throw .exists(path) }
            throw .writeFailed(path, error.description)
        }
        do throws(SystemCallError) {
            // The umask can only narrow 0600; fchmod makes the mode exact anyway.
            _ = try systemCall("fchmod") { fchmod(fd, 0o600) }
            var written = 0
            while written < bytes.count {
                let n = try systemCall("write") {
                    bytes.withUnsafeBytes { buf in write(fd, buf.baseAddress.map { $0 + written }, buf.count - written) }
                }
                // A regular file never accepts 0 bytes of a non-empty write; do not spin.
                guard n > 0 else { throw SystemCallError("write (no progress)", code: EIO) }
                written += n
            }
            _ = try systemCall("fsync") { fsync(fd) }
        } catch {
            closeDescriptor(fd)
            unlink(path)  // ours (O_EXCL): do not leave a half-written key behind
            throw .writeFailed(path, error.description)
        }
        // Not retried (see closeDescriptor); an error here may mean the
        // data never reached the disk, so the key is not kept.
        guard close(fd) == 0 else {
            let reason = SystemCallError("close", code: errno).description
            unlink(path)
            throw .writeFailed(path, reason)
        }
    }

    /// Reads the key at `path`. Refuses files whose mode grants any access
    /// to group or others, and keys shorter than `minimumLength`.
    public static func load(at path: String, minimumLength: Int = 32) throws(KeyFileError) -> [UInt8] {
        let fd: Int32
        do {
            fd = try systemCall("open") { open(path, O_RDONLY | O_CLOEXEC) }
        } catch {
            if error.code == ENOENT { throw .missing(path) }
            throw .unreadable(path, error.description)
        }
        defer { closeDescriptor(fd) }
        var buffer = [UInt8](repeating: 0, count: maximumLength + 1)
        var total = 0
        do {
            // fstat on the opened descriptor: checks the file we actually read.
            var info = stat()
            _ = try systemCall("fstat") { fstat(fd, &info) }
            guard (info.st_mode & S_IFMT) == S_IFREG else { throw KeyFileError.unreadable(path, "not a regular file") }
            let mode = UInt32(info.st_mode) & 0o7777
            guard mode & 0o077 == 0 else { throw KeyFileError.insecurePermissions(path, mode) }
            guard info.st_size <= maximumLength else {
                throw KeyFileError.unreadable(path, "file is \(info.st_size) bytes, more than \(maximumLength)")
            }
            while total < buffer.count {
                let n = try systemCall("read") {
                    buffer.withUnsafeMutableBytes { buf in read(fd, buf.baseAddress.map { $0 + total }, buf.count - total) }
                }
                if n == 0 { break }
                total += n
            }
        } catch let error as KeyFileError {
            throw error
        } catch let error as SystemCallError {
            throw .unreadable(path, error.description)
        } catch {
            throw .unreadable(path, "\(error)")
        }
        guard total <= maximumLength else {
            throw .unreadable(path, "file grew beyond \(maximumLength) bytes while reading")
        }
        guard total >= minimumLength else { throw .tooShort(path, total) }
        return Array(buffer.prefix(total))
    }
}
