import Glibc
import Posix

/// A connected, non-blocking TCP socket. Every wait goes through poll() with
/// the time left until the caller's deadline, which is how connect, read,
/// write and the TLS handshake all get time limits without threads or
/// signals (name resolution, which cannot be polled, waits for a thread of
/// its own: `NameResolver`). Every system call goes through Posix (EINTR
/// retried there).
final class TCPSocket {
    private(set) var fd: Int32

    private init(fd: Int32) { self.fd = fd }

    deinit { close() }

    var isOpen: Bool { fd >= 0 }

    // MARK: connecting

    /// Resolves `host` (a name, an IP literal, or a bracketed IPv6 literal)
    /// and connects to the first address that answers, all before
    /// `deadline`: name resolution included (`NameResolver`), which is
    /// skipped for IP literals.
    static func connect(host: String, port: Int, deadline: ContinuousClock.Instant,
                        resolver: NameResolver) throws(StreamError) -> TCPSocket {
        guard (1...65535).contains(port) else { throw .invalidPort(port) }
        let addresses = try resolver.resolve(host: host, port: port, deadline: deadline)

        var lastError: StreamError?
        var allRefused = true
        for address in addresses {
            do throws(StreamError) {
                return try connect(to: address, deadline: deadline)
            } catch {
                if error == .timedOut { throw error }  // no time left for other addresses
                if error != .refused { allRefused = false }
                lastError = error
            }
        }
        if allRefused, !addresses.isEmpty { throw .refused }
        throw lastError ?? .resolve("no addresses")
    }

    private static func connect(to address: SocketAddress, deadline: ContinuousClock.Instant) throws(StreamError) -> TCPSocket {
        let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue)
        let fd: Int32
        do throws(SystemCallError) {
            fd = try systemCall("socket") { Glibc.socket(address.family, type, address.protocolNumber) }
        } catch {
            throw .connect(error)
        }
        // From here the socket object owns fd and closes it on every error path.
        let socket = TCPSocket(fd: fd)
        let inProgress: Bool
        do throws(SystemCallError) {
            var one: Int32 = 1
            // Commands are written in whole groups; Nagle would only add
            // delay (~40 ms per message with delayed ACKs).
            _ = try systemCall("setsockopt(TCP_NODELAY)") {
                setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            }
            inProgress = try startConnecting(fd, address)
        } catch {
            throw error.code == ECONNREFUSED ? .refused : .connect(error)
        }
        guard inProgress else { return socket }
        let ready: Bool
        do throws(SystemCallError) {
            ready = try socket.poll(Int16(POLLOUT), until: deadline)
        } catch {
            throw .connect(error)
        }
        guard ready else { throw .timedOut }
        do throws(SystemCallError) {
            var soError: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            _ = try systemCall("getsockopt(SO_ERROR)") { getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &length) }
            if soError != 0 { throw SystemCallError("connect", code: soError) }
        } catch {
            throw error.code == ECONNREFUSED ? .refused : .connect(error)
        }
        return socket
    }

    /// Starts a non-blocking connect: true while it carries on in the
    /// background (EINPROGRESS), false when it is already established.
    private static func startConnecting(_ fd: Int32, _ address: SocketAddress) throws(SystemCallError) -> Bool {
        do throws(SystemCallError) {
            let result = try address.withSocketAddress { pointer, length throws(SystemCallError) in
                try nonBlockingSystemCall("connect") { Glibc.connect(fd, pointer, length) }
            }
            switch result {
            case .done: return false
            case .wouldBlock: return true
            }
        } catch where error.code == EALREADY {
            // After an EINTR (retried by Posix) the first attempt is still in
            // progress: the same as EINPROGRESS.
            return true
        } catch where error.code == EISCONN {
            return false  // the interrupted attempt completed meanwhile
        }
    }

    /// `host` without the brackets of an IPv6 literal ("[::1]" -> "::1").
    static func unbracketed(_ host: String) -> String {
        host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
    }

    // MARK: waiting

    /// Waits until the socket is ready for `events`: false when the deadline
    /// passed first. POLLERR/POLLHUP also return true: the next read or write
    /// reports the error.
    private func poll(_ events: Int16, until deadline: ContinuousClock.Instant) throws(SystemCallError) -> Bool {
        try waitUntilReady(fd, for: events, until: deadline) != nil
    }

    /// Waits for readability (`POLLIN`) or writability (`POLLOUT`); a poll
    /// failure counts as a failure of the read or write that waited.
    func wait(for events: Int16, until deadline: ContinuousClock.Instant) throws(StreamError) {
        let ready: Bool
        do throws(SystemCallError) {
            ready = try poll(events, until: deadline)
        } catch {
            throw events == Int16(POLLOUT) ? .write(error.description) : .read(error.description)
        }
        guard ready else { throw .timedOut }
    }

    // MARK: I/O

    /// Sends all of `bytes` (one system call when the kernel takes it all).
    func send(_ bytes: UnsafeRawBufferPointer, deadline: ContinuousClock.Instant) throws(StreamError) {
        guard fd >= 0, let base = bytes.baseAddress else {
            if fd < 0 { throw .closedByPeer }
            return
        }
        var offset = 0
        while offset < bytes.count {
            let result: NonBlockingResult<Int>
            do throws(SystemCallError) {
                // MSG_NOSIGNAL: a peer that closed must give EPIPE, not kill
                // the whole server with SIGPIPE.
                result = try nonBlockingSystemCall("send") {
                    Glibc.send(fd, base + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
                }
            } catch {
                throw error.code == EPIPE || error.code == ECONNRESET ? .closedByPeer : .write(error.description)
            }
            switch result {
            case .done(let n): offset += n
            case .wouldBlock: try wait(for: Int16(POLLOUT), until: deadline)
            }
        }
    }

    /// Receives at least one byte into `buffer`, waiting until the deadline.
    func receive(into buffer: UnsafeMutableRawBufferPointer, deadline: ContinuousClock.Instant) throws(StreamError) -> Int {
        guard fd >= 0, let base = buffer.baseAddress else { throw .closedByPeer }
        while true {
            let result: NonBlockingResult<Int>
            do throws(SystemCallError) {
                result = try nonBlockingSystemCall("recv") { recv(fd, base, buffer.count, 0) }
            } catch {
                throw error.code == ECONNRESET ? .closedByPeer : .read(error.description)
            }
            switch result {
            case .done(0): throw .closedByPeer
            case .done(let n): return n
            case .wouldBlock: try wait(for: Int16(POLLIN), until: deadline)
            }
        }
    }

    /// Closes the descriptor (never retried: see `closeDescriptor`).
    func close() {
        guard fd >= 0 else { return }
        closeDescriptor(fd)
        fd = -1
    }
}
