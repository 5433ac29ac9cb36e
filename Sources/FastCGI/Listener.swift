#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where the responder accepts FastCGI connections from the web server.
public enum ListenAddress: Sendable, Equatable, CustomStringConvertible {
    /// A Unix socket file, created with `mode` (stale files are replaced).
    case unix(path: String, mode: UInt32)
    /// Loopback TCP only: the FastCGI socket must not be reachable from outside.
    case tcp(host: String, port: Int)
    /// A listening socket handed over by spawn-fcgi or Apache mod_fcgid
    /// (fd 0) or by systemd socket activation (fd 3).
    case inherited(fd: Int32)

    public var description: String {
        switch self {
        case .unix(let path, let mode): "unix:\(path) (mode \(String(mode, radix: 8)))"
        case .tcp(let host, let port): "tcp:\(host):\(port)"
        case .inherited(let fd): "inherited fd \(fd)"
        }
    }

    /// Parses `--listen HOST:PORT` (IPv6 as `[::1]:PORT`), refusing anything
    /// that is not a loopback address.
    public static func parseTCP(_ text: String) throws(FastCGIError) -> ListenAddress {
        var host: Substring
        var portText: Substring
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { throw .invalidAddress(text, "expected [HOST]:PORT") }
            portText = rest.dropFirst()
        } else {
            guard let colon = text.lastIndex(of: ":") else { throw .invalidAddress(text, "expected HOST:PORT") }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        guard let port = Int(portText), (1...65535).contains(port) else {
            throw .invalidAddress(text, "port must be 1-65535")
        }
        if host == "localhost" { host = "127.0.0.1" }
        let isLoopback = host == "::1" || (host.hasPrefix("127.") && host.split(separator: ".").count == 4)
        guard isLoopback else {
            throw .invalidAddress(text, "only loopback addresses (127.0.0.0/8, ::1) are allowed; use a Unix socket otherwise")
        }
        return .tcp(host: String(host), port: port)
    }
}

public enum FastCGIError: Error, Sendable, CustomStringConvertible {
    case invalidAddress(String, String)
    case systemCall(String, Int32)
    case socketInUse(String)
    case notASocket(String)
    case notListening(Int32)
    case libfcgi(String, Int32)

    public var description: String {
        switch self {
        case .invalidAddress(let text, let why): "invalid listen address '\(text)': \(why)"
        case .systemCall(let call, let code): "\(call) failed: \(String(cString: strerror(code)))"
        case .socketInUse(let path): "\(path) is in use by a running process"
        case .notASocket(let path): "\(path) exists and is not a socket; refusing to replace it"
        case .notListening(let fd): "fd \(fd) is not a listening socket (start with --socket or --listen, or under spawn-fcgi)"
        case .libfcgi(let call, let code): "\(call) failed with \(code)"
        }
    }
}

/// Creating and closing the listening socket; the accept loop itself is libfcgi's.
enum Listener {
    static func isUnixSocket(_ fd: Int32) -> Bool {
        var address = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return result == 0 && Int32(address.ss_family) == AF_UNIX
    }

    static func open(_ address: ListenAddress) throws(FastCGIError) -> Int32 {
        switch address {
        case .unix(let path, let mode): return try openUnix(path: path, mode: mode)
        case .tcp(let host, let port): return try openTCP(host: host, port: port)
        case .inherited(let fd):
            var type: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            var accepting: Int32 = 0
            var acceptLength = socklen_t(MemoryLayout<Int32>.size)
            guard getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length) == 0,
                  getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &acceptLength) == 0, accepting != 0
            else { throw .notListening(fd) }
            return fd
        }
    }

    private static func openUnix(path: String, mode: UInt32) throws(FastCGIError) -> Int32 {
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
        try replaceStaleSocket(path: path, address: address)

        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .systemCall("socket(AF_UNIX)", errno) }
        // bind() creates the file with the umask applied: create it private,
        // then widen to the requested mode, so it is never briefly too open.
        let oldMask = umask(0o177)
        let bound = bindSocket(fd, to: &address)
        let bindErrno = errno
        umask(oldMask)
        guard bound == 0 else { close(fd); throw .systemCall("bind(\(path))", bindErrno) }
        guard chmod(path, mode_t(mode)) == 0 else { let e = errno; close(fd); throw .systemCall("chmod(\(path))", e) }
        guard listen(fd, 1024) == 0 else { let e = errno; close(fd); throw .systemCall("listen(\(path))", e) }
        return fd
    }

    /// A socket file left by a crashed process is removed; one a live
    /// process still accepts on is not (two servers on one path lose requests).
    private static func replaceStaleSocket(path: String, address: sockaddr_un) throws(FastCGIError) {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        guard (info.st_mode & S_IFMT) == S_IFSOCK else { throw .notASocket(path) }
        let probe = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard probe >= 0 else { throw .systemCall("socket(AF_UNIX)", errno) }
        defer { close(probe) }
        var copy = address
        let connected = withUnsafePointer(to: &copy) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(probe, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        if connected == 0 { throw .socketInUse(path) }
        guard unlink(path) == 0 else { throw .systemCall("unlink(\(path))", errno) }
    }

    private static func openTCP(host: String, port: Int) throws(FastCGIError) -> Int32 {
        let isV6 = host.contains(":")
        let fd = socket(isV6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .systemCall("socket(AF_INET)", errno) }
        var one: Int32 = 1
        guard setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size)) == 0 else {
            let e = errno; close(fd); throw .systemCall("setsockopt(SO_REUSEADDR)", e)
        }
        let result: Int32
        if isV6 {
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            address.sin6_port = in_port_t(UInt16(port).bigEndian)
            guard inet_pton(AF_INET6, host, &address.sin6_addr) == 1 else { close(fd); throw .invalidAddress(host, "not an IPv6 address") }
            result = bindSocket(fd, to: &address)
        } else {
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else { close(fd); throw .invalidAddress(host, "not an IPv4 address") }
            result = bindSocket(fd, to: &address)
        }
        guard result == 0 else { let e = errno; close(fd); throw .systemCall("bind(\(host):\(port))", e) }
        guard listen(fd, 1024) == 0 else { let e = errno; close(fd); throw .systemCall("listen(\(host):\(port))", e) }
        return fd
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
