import COpenSSL
import Glibc
import Posix

/// OpenSSL's own socket BIO writes with write(2), which raises SIGPIPE when
/// the server has gone; in a server process that must not be fatal and we
/// cannot own the process-wide signal disposition. This BIO does the same
/// job with send(MSG_NOSIGNAL). The descriptor is stored as BIO data (+1, so
/// that descriptor 0 is not a null pointer). On failure errno is left set
/// for OpenSSL's SSL_ERROR_SYSCALL path.
struct SocketBIO: @unchecked Sendable {  // immutable after creation; OpenSSL reads it concurrently
    let method: OpaquePointer?

    static let shared: SocketBIO = {
        guard let m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "mailgate socket") else {
            return SocketBIO(method: nil)  // BIO_new(nil) then fails and is reported
        }
        _ = BIO_meth_set_write(m) { bio, data, len in
            guard let bio, let data, len >= 0 else { return -1 }
            return transfer(bio, retryFlag: BIO_FLAGS_WRITE) { () throws(SystemCallError) -> NonBlockingResult<Int> in
                try nonBlockingSystemCall("send") { send(descriptor(bio), data, Int(len), Int32(MSG_NOSIGNAL)) }
            }
        }
        _ = BIO_meth_set_read(m) { bio, data, len in
            guard let bio, let data, len >= 0 else { return -1 }
            return transfer(bio, retryFlag: BIO_FLAGS_READ) { () throws(SystemCallError) -> NonBlockingResult<Int> in
                try nonBlockingSystemCall("recv") { recv(descriptor(bio), data, Int(len), 0) }
            }
        }
        _ = BIO_meth_set_ctrl(m) { _, cmd, _, _ in
            // Writes go straight to the socket, so a flush has nothing to do;
            // every other control is unsupported.
            cmd == BIO_CTRL_FLUSH ? 1 : 0
        }
        return SocketBIO(method: m)
    }()

    /// A BIO reading and writing `fd`, not owning it.
    func make(fd: Int32) -> OpaquePointer? {
        guard let bio = BIO_new(method) else { return nil }
        BIO_set_data(bio, UnsafeMutableRawPointer(bitPattern: Int(fd) + 1))
        BIO_set_init(bio, 1)
        return bio
    }

    private static func descriptor(_ bio: OpaquePointer) -> Int32 {
        Int32(Int(bitPattern: BIO_get_data(bio)) - 1)
    }

    /// Runs one send or recv and reports it the way OpenSSL expects: the
    /// byte count, or -1 with the retry flags set when the socket would block.
    private static func transfer(_ bio: OpaquePointer, retryFlag: Int32,
                                 _ call: () throws(SystemCallError) -> NonBlockingResult<Int>) -> Int32 {
        BIO_clear_flags(bio, BIO_FLAGS_READ | BIO_FLAGS_WRITE | BIO_FLAGS_IO_SPECIAL | BIO_FLAGS_SHOULD_RETRY)
        do throws(SystemCallError) {
            switch try call() {
            case .done(let n):
                return Int32(clamping: n)
            case .wouldBlock:
                BIO_set_flags(bio, retryFlag | BIO_FLAGS_SHOULD_RETRY)
                return -1
            }
        } catch {
            errno = error.code
            return -1
        }
    }
}
