import Glibc
import Posix

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
    case systemCall(SystemCallError)
    case socketInUse(String)
    case notASocket(String)
    case notListening(Int32)
    case libfcgi(String, Int32)

    public var description: String {
        switch self {
        case .invalidAddress(let text, let why): "invalid listen address '\(text)': \(why)"
        case .systemCall(let error): error.description
        case .socketInUse(let path): "\(path) is in use by a running process"
        case .notASocket(let path): "\(path) exists and is not a socket; refusing to replace it"
        case .notListening(let fd): "fd \(fd) is not a listening socket (start with --socket or --listen, or under spawn-fcgi)"
        case .libfcgi(let call, let code): "\(call) failed with \(code)"
        }
    }
}

