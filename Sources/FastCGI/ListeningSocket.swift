import Glibc
import Posix

/// The socket the web server connects to, and whether this process owns it.
///
/// A socket Mailgate created (`--socket`, `--listen`) is its own to shut
/// down and remove when it stops. An inherited one (systemd, spawn-fcgi,
/// mod_fcgid) belongs to the parent and outlives this process: the next
/// process serves it with no gap, so it is never shut down or closed here.
struct ListeningSocket: Sendable {
    let fd: Int32
    let isTCP: Bool
    /// Set for a socket this process created; `nil` for an inherited one.
    let ownership: Ownership?

    struct Ownership: Sendable {
        /// The socket file and its identity, for `--socket`: removed on stop
        /// only while it is still ours.
        var unixPath: String?
        var device: UInt64 = 0
        var inode: UInt64 = 0
    }

    static func open(_ address: ListenAddress) throws(FastCGIError) -> ListeningSocket {
        switch address {
        case .unix(let path, let mode): return try openUnix(path: path, mode: mode)
        case .tcp(let host, let port): return try openTCP(host: host, port: port)
        case .inherited(let fd):
            var accepting: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            guard getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &length) == 0, accepting != 0 else {
                throw .notListening(fd)
            }
            return ListeningSocket(fd: fd, isTCP: family(of: fd) != AF_UNIX, ownership: nil)
        }
    }

    /// For an owned socket: refuse new connections at once and remove the
    /// file (if it is still the one this process bound). Inherited: nothing.
    func stopListening() {
        guard let ownership else { return }
        // shutdown() also makes every blocked accept() return on Linux.
        _ = Glibc.shutdown(fd, Int32(SHUT_RDWR))
        if let path = ownership.unixPath, let identity = Self.fileIdentity(path),
           identity == (ownership.device, ownership.inode) {
            unlink(path)
        }
    }

    private static func family(of fd: Int32) -> Int32 {
        var address = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return result == 0 ? Int32(address.ss_family) : -1
    }

    private static func fileIdentity(_ path: String) -> (UInt64, UInt64)? {
        var info = stat()
        guard lstat(path, &info) == 0 else { return nil }
        return (UInt64(info.st_dev), UInt64(info.st_ino))
    }

    // MARK: - Unix sockets

    /// The socket is bound under a private temporary name, given its final
    /// mode and made to listen, and only then renamed onto `path`: a client
    /// never finds the path with another mode, not yet listening, or
    /// missing, and a stale file left by a crash is replaced atomically.
    /// (The kernel keeps the bound name: `ss -x` shows the temporary one.)
    private static func openUnix(path: String, mode: UInt32) throws(FastCGIError) -> ListeningSocket {
        let address = try unixAddress(path)
        try refuseLiveSocket(path: path, address: address)
        let temporaryPath = path + ".~" + String(getpid(), radix: 16)
        var temporary = try unixAddress(temporaryPath)
        unlink(temporaryPath)  // left by an earlier start that died here; usually absent

        let fd = try call("socket(AF_UNIX)") { socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        do throws(FastCGIError) {
            // Private while it has its temporary name (bind applies the umask).
            let oldMask = umask(0o177)
            defer { umask(oldMask) }
            _ = try call("bind(\(temporaryPath))") { bindSocket(fd, to: &temporary) }
        } catch {
            closeDescriptor(fd)
            throw error
        }
        do throws(FastCGIError) {
            _ = try call("chmod(\(temporaryPath))") { chmod(temporaryPath, mode_t(mode)) }
            _ = try call("listen(\(temporaryPath))") { listen(fd, 1024) }
            _ = try call("rename(\(temporaryPath), \(path))") { rename(temporaryPath, path) }
        } catch {
            unlink(temporaryPath)
            closeDescriptor(fd)
            throw error
        }
        guard let identity = fileIdentity(path) else {
            let error = SystemCallError("lstat(\(path))", code: errno)
            closeDescriptor(fd)
            throw .systemCall(error)
        }
        return ListeningSocket(fd: fd, isTCP: false,
                               ownership: Ownership(unixPath: path, device: identity.0, inode: identity.1))
    }

    private static func unixAddress(_ path: String) throws(FastCGIError) -> sockaddr_un {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let pathBytes = Array(path.utf8)
        guard pathBytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw .invalidAddress(path, "socket path too long")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: pathBytes)
            raw[pathBytes.count] = 0
        }
        return address
    }

    /// A socket file left by a crashed process may be replaced; one a live
    /// process still accepts on may not (two servers on one path lose
    /// requests), nor anything that is not a socket.
    private static func refuseLiveSocket(path: String, address: sockaddr_un) throws(FastCGIError) {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        guard (info.st_mode & S_IFMT) == S_IFSOCK else { throw .notASocket(path) }
        let probe = try call("socket(AF_UNIX)") { socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        defer { closeDescriptor(probe) }
        var copy = address
        let connected = withUnsafePointer(to: &copy) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(probe, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        if connected == 0 { throw .socketInUse(path) }
    }

    // MARK: - TCP

    private static func openTCP(host: String, port: Int) throws(FastCGIError) -> ListeningSocket {
        let isV6 = host.contains(":")
        let fd = try call("socket(AF_INET)") {
            socket(isV6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
        do throws(FastCGIError) {
            var one: Int32 = 1
            _ = try call("setsockopt(SO_REUSEADDR)") {
                setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            }
            if isV6 {
                var address = sockaddr_in6()
                address.sin6_family = sa_family_t(AF_INET6)
                address.sin6_port = in_port_t(UInt16(port).bigEndian)
                guard inet_pton(AF_INET6, host, &address.sin6_addr) == 1 else { throw .invalidAddress(host, "not an IPv6 address") }
                _ = try call("bind(\(host):\(port))") { bindSocket(fd, to: &address) }
            } else {
                var address = sockaddr_in()
                address.sin_family = sa_family_t(AF_INET)
                address.sin_port = in_port_t(UInt16(port).bigEndian)
                guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else { throw .invalidAddress(host, "not an IPv4 address") }
                _ = try call("bind(\(host):\(port))") { bindSocket(fd, to: &address) }
            }
            _ = try call("listen(\(host):\(port))") { listen(fd, 1024) }
        } catch {
            closeDescriptor(fd)
            throw error
        }
        return ListeningSocket(fd: fd, isTCP: true, ownership: Ownership())
    }

    /// `systemCall`, its failure as a `FastCGIError`.
    private static func call(_ name: @autoclosure () -> String, _ body: () -> Int32) throws(FastCGIError) -> Int32 {
        do {
            return try systemCall(name(), body)
        } catch {
            throw .systemCall(error)
        }
    }

    /// bind(2) with any concrete socket address type (sockaddr_un/_in/_in6).
    private static func bindSocket<Address>(_ fd: Int32, to address: inout Address) -> Int32 {
        withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<Address>.size))
            }
        }
    }
}

/// One worker's accept(2) on the shared listening socket.
///
/// Workers keep `wakeSignal` blocked and unblock it only while they wait in
/// accept, so the signal interrupts that wait (EINTR: the handler is
/// installed without SA_RESTART) and never a request being served. This is
/// how a stopping server wakes its workers without touching the socket.
struct Acceptor {
    static let wakeSignal = SIGUSR2
    let socket: ListeningSocket

    /// Installs a handler that does nothing: the signal only interrupts accept.
    static func installWakeHandler() throws(FastCGIError) {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in }
        sigemptyset(&action.sa_mask)
        action.sa_flags = 0
        guard sigaction(wakeSignal, &action, nil) == 0 else {
            throw .systemCall(SystemCallError("sigaction(SIGUSR2)", code: errno))
        }
    }

    /// The next connection, or nil once `keepGoing` says stop. Checked with
    /// the wake signal unblocked: a signal sent after the stop flag was set
    /// is either delivered before the check (which then sees the flag) or
    /// interrupts accept. One that lands between the check and the accept
    /// is lost, which is why the server repeats it until workers return.
    func accept(while keepGoing: () -> Bool) -> Int32? {
        var wake = sigset_t()
        sigemptyset(&wake)
        sigaddset(&wake, Self.wakeSignal)
        var failures: UInt32 = 0
        while true {
            pthread_sigmask(SIG_UNBLOCK, &wake, nil)
            guard keepGoing() else {
                pthread_sigmask(SIG_BLOCK, &wake, nil)
                return nil
            }
            // Not `systemCall`: EINTR here is the wake-up, not noise to retry.
            // (Mailgate never execs, so plain accept: no CLOEXEC needed.)
            let connection = Glibc.accept(socket.fd, nil, nil)
            let code = errno
            pthread_sigmask(SIG_BLOCK, &wake, nil)
            if connection >= 0 {
                if socket.isTCP {
                    // Each answer is one write; don't let Nagle hold its tail.
                    var one: Int32 = 1
                    _ = setsockopt(connection, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                }
                return connection
            }
            switch code {
            case EINTR, ECONNABORTED, EPROTO:
                continue  // woken (the loop checks why), or a peer gave up while queued
            default:
                if !keepGoing() { return nil }
                // EMFILE, ENOBUFS and the like: back off, don't spin.
                failures = min(failures + 1, 50)
                usleep(failures * 10_000)
            }
        }
    }
}
