import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

// Loopback sockets for tests: free ports, listening sockets, connections.

/// Binds a TCP socket to 127.0.0.1:0 (close-on-exec), listens when
/// `backlog` is given, and returns it with the port the kernel chose.
public func boundLoopbackSocket(listen backlog: Int32?) throws -> (fd: Int32, port: Int) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw HarnessError("socket failed: \(String(cString: strerror(errno)))") }
    var addr = loopbackAddress(port: 0)
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let ok = withUnsafeMutablePointer(to: &addr) { ptr in
        ptr.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
            bind(fd, sa, len) == 0 && getsockname(fd, sa, &len) == 0
        }
    }
    guard ok else {
        let code = errno
        close(fd)
        throw HarnessError("bind failed: \(String(cString: strerror(code)))")
    }
    if let backlog, Glibc.listen(fd, backlog) != 0 {
        close(fd)
        throw HarnessError("listen failed")
    }
    return (fd, Int(UInt16(bigEndian: addr.sin_port)))
}

/// A listening Unix socket held by the test, as systemd holds one across
/// restarts of the service it activates (never fd 3, so it can be handed
/// to a child as fd 3: see `Child.spawn(listeningSocket:)`).
public struct InheritableSocket: Sendable {
    public let path: String
    public let fd: Int32

    public init(path: String, mode: mode_t) throws {
        self.path = path
        unlink(path)
        var fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw HarnessError("socket: \(String(cString: strerror(errno)))") }
        if fd == 3 {
            // posix_spawn's dup2(3, 3) would leave close-on-exec set.
            let moved = fcntl(fd, F_DUPFD_CLOEXEC, 4)
            Glibc.close(fd)
            guard moved >= 0 else { throw HarnessError("fcntl(F_DUPFD_CLOEXEC) failed") }
            fd = moved
        }
        guard var address = unixAddress(path) else { Glibc.close(fd); throw HarnessError("socket path too long") }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard bound == 0, chmod(path, mode) == 0, listen(fd, 1024) == 0 else {
            let reason = String(cString: strerror(errno))
            Glibc.close(fd)
            throw HarnessError("cannot listen on \(path): \(reason)")
        }
        self.fd = fd
    }

    public func close() {
        Glibc.close(fd)
        unlink(path)
    }
}

/// Ports handed out by `freePort()` in this process: never twice.
private let handedOutPorts = Mutex<Set<Int>>([])

/// Retries `start` with a new port when the chosen one was taken meanwhile
/// (another test's server, or an outgoing connection's ephemeral port).
public func withFreshPort<T>(_ start: (Int) throws -> T) throws -> T {
    var attempt = 0
    while true {
        attempt += 1
        do {
            return try start(try freePort())
        } catch let error as HarnessError where attempt < 5 && error.description.lowercased().contains("in use") {
            continue
        }
    }
}

/// A port on 127.0.0.1 that was free a moment ago (nothing listens on it),
/// not handed out before in this process.
public func freePort() throws -> Int {
    for _ in 0..<20 {
        let (fd, port) = try boundLoopbackSocket(listen: nil)
        close(fd)
        if handedOutPorts.withLock({ $0.insert(port).inserted }) { return port }
    }
    throw HarnessError("no fresh free port")
}

/// A TCP connection to 127.0.0.1:port (close-on-exec).
public func connectLoopback(port: Int) throws -> Int32 {
    try connectedSocket(AF_INET, loopbackAddress(port: port), peer: "port \(port)")
}

/// A connection to the Unix socket at `path` (close-on-exec).
public func connectUnix(_ path: String) throws -> Int32 {
    guard let address = unixAddress(path) else { throw HarnessError("socket path too long: \(path)") }
    return try connectedSocket(AF_UNIX, address, peer: path)
}

/// socket(2) and connect(2) with any concrete address type (sockaddr_in/_un),
/// within `timeout` seconds. A blocking connect can wait for ever: on a Unix
/// socket whose backlog is full (a server that stopped accepting) it waits
/// until one is accepted. So the connect is non-blocking, retried while the
/// backlog is full (EAGAIN) and polled while in progress; the socket is made
/// blocking again for the caller.
private func connectedSocket<Address>(_ family: Int32, _ address: Address, peer: String,
                                      timeout: Double = 20) throws -> Int32 {
    let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
    guard fd >= 0 else { throw HarnessError("socket failed: \(String(cString: strerror(errno)))") }
    func fail(_ what: String) -> HarnessError {
        close(fd)
        return HarnessError("connect to \(peer) failed: \(what)")
    }
    let deadline = Date().addingTimeInterval(timeout)
    var address = address
    while true {
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<Address>.size))
            }
        }
        if rc == 0 { break }
        let code = errno
        if code == EINTR { continue }
        if code == EAGAIN {  // a Unix socket's backlog is full: try again
            guard Date() < deadline else { throw fail("backlog full for \(timeout) s") }
            usleep(10_000)
            continue
        }
        guard code == EINPROGRESS else { throw fail(String(cString: strerror(code))) }
        var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        var ready: Int32 = 0
        repeat {
            let remaining = deadline.timeIntervalSinceNow
            guard remaining > 0 else { throw fail("no answer within \(timeout) s") }
            ready = poll(&pfd, 1, Int32(min(remaining, 1) * 1000) + 1)
        } while ready == 0 || (ready < 0 && errno == EINTR)
        guard ready > 0 else { throw fail("poll: \(String(cString: strerror(errno)))") }
        var soError: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &length) == 0 else {
            throw fail("getsockopt: \(String(cString: strerror(errno)))")
        }
        guard soError == 0 else { throw fail(String(cString: strerror(soError))) }
        break
    }
    let flags = fcntl(fd, F_GETFL)
    guard flags >= 0, fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) == 0 else {
        throw fail("fcntl: \(String(cString: strerror(errno)))")
    }
    return fd
}

/// True when something accepts TCP connections on 127.0.0.1:port.
public func tcpAccepts(_ port: Int) -> Bool {
    guard let fd = try? connectLoopback(port: port) else { return false }
    close(fd)
    return true
}

/// True when something accepts connections on the Unix socket at `path`.
public func unixAccepts(_ path: String) -> Bool {
    guard let fd = try? connectUnix(path) else { return false }
    close(fd)
    return true
}

private func loopbackAddress(port: Int) -> sockaddr_in {
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = UInt16(port).bigEndian
    return addr
}

private func unixAddress(_ path: String) -> sockaddr_un? {
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { return nil }
    withUnsafeMutableBytes(of: &addr.sun_path) { buffer in
        buffer.copyBytes(from: bytes)
        buffer[bytes.count] = 0
    }
    return addr
}
