import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Failures of the test harness itself (not of the code under test).
struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A fresh private directory, removed by `remove()`.
struct TempDir {
    let path: String

    init() throws {
        var template = Array((NSTemporaryDirectory() + "/mailgate-smtp-XXXXXX").utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw HarnessError("mkdtemp failed: \(String(cString: strerror(errno)))")
        }
        path = String(cString: made)
    }

    func file(_ name: String) -> String { path + "/" + name }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// Ends a child: waits `grace` for it to exit by itself, then SIGKILL.
///
/// Not SIGTERM: children started by Foundation's Process here inherit the
/// test thread's signal mask, in which SIGTERM is blocked, so terminate()
/// is silently ignored and waitUntilExit() would hang the whole test run.
/// Reads a helper server's first stdout line, "PORT <n>", and returns the
/// port (nil if the line is something else) and the line for error messages.
func readAnnouncedPort(_ stdout: Pipe) -> (port: Int?, line: String) {
    var output = Data()
    while !output.contains(UInt8(ascii: "\n")) {
        let chunk = stdout.fileHandleForReading.availableData
        if chunk.isEmpty { break }
        output += chunk
    }
    let line = String(decoding: output, as: UTF8.self)
    guard line.hasPrefix("PORT ") else { return (nil, line) }
    return (Int(line.dropFirst(5).prefix { $0.isNumber }), line)
}

func reap(_ process: Process, grace: Duration = .seconds(2)) {
    let end = ContinuousClock.now + grace
    while process.isRunning && ContinuousClock.now < end { usleep(10_000) }
    if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    process.waitUntilExit()
}

/// Runs a program to completion and fails when it exits non-zero.
func run(_ executable: String, _ arguments: [String]) throws {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: executable)
    p.arguments = arguments
    p.standardOutput = FileHandle.nullDevice
    p.standardError = FileHandle.nullDevice
    try p.run()
    p.waitUntilExit()
    guard p.terminationStatus == 0 else {
        throw HarnessError("\(executable) \(arguments.joined(separator: " ")) exited with \(p.terminationStatus)")
    }
}

/// A self-signed certificate for localhost and 127.0.0.1, made once per
/// test run with the openssl CLI.
struct TestCertificate: Sendable {
    let certPath: String
    let keyPath: String

    static let shared = make(commonName: "localhost", subjectAltName: "DNS:localhost,IP:127.0.0.1")
    /// Valid, but for another name: for host name verification.
    static let otherName = make(commonName: "other.example", subjectAltName: "DNS:other.example")

    private static func make(commonName: String, subjectAltName: String) -> Result<TestCertificate, HarnessError> {
        do {
            let dir = try TempDir()  // kept for the whole test run; it is tiny
            let cert = dir.file("cert.pem"), key = dir.file("key.pem")
            try run("/usr/bin/openssl", [
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                "-subj", "/CN=\(commonName)", "-addext", "subjectAltName=\(subjectAltName)",
                "-keyout", key, "-out", cert,
            ])
            return .success(TestCertificate(certPath: cert, keyPath: key))
        } catch let e as HarnessError {
            return .failure(e)
        } catch {
            return .failure(HarnessError("\(error)"))
        }
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (for servers that
/// cannot pick their own), or a socket we keep open.
enum Ports {
    /// Binds 127.0.0.1:0, optionally listens, and returns (fd, port).
    static func bound(listen backlog: Int32?) throws -> (Int32, Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw HarnessError("socket failed") }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) { ptr in
            ptr.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                bind(fd, sa, len) == 0 && getsockname(fd, sa, &len) == 0
            }
        }
        guard ok else {
            close(fd)
            throw HarnessError("bind failed: \(String(cString: strerror(errno)))")
        }
        if let backlog, Glibc.listen(fd, backlog) != 0 {
            close(fd)
            throw HarnessError("listen failed")
        }
        return (fd, Int(UInt16(bigEndian: addr.sin_port)))
    }

    /// A port with nothing listening on it.
    static func closed() throws -> Int {
        let (fd, port) = try bound(listen: nil)
        close(fd)
        return port
    }

    static func waitUntilListening(_ port: Int, timeout: Duration = .seconds(5)) throws {
        let end = ContinuousClock.now + timeout
        while ContinuousClock.now < end {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            addr.sin_port = UInt16(port).bigEndian
            let rc = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            close(fd)
            if rc == 0 { return }
            usleep(20_000)
        }
        throw HarnessError("nothing listening on port \(port)")
    }
}

/// A socket that accepts TCP connections (in the kernel backlog) but never
/// says anything: for greeting timeouts.
final class SilentListener {
    let port: Int
    private var fd: Int32

    init() throws {
        (fd, port) = try Ports.bound(listen: 8)
    }

    func stop() {
        if fd >= 0 { close(fd); fd = -1 }
    }

    deinit { stop() }
}

/// A message as the aiosmtpd test server stored it.
struct ReceivedMessage {
    let mailFrom: String
    let recipients: [String]
    let tls: Bool
    let authenticated: Bool
    let peerPort: Int
    let raw: [UInt8]
}

/// The aiosmtpd server from SMTPServerScript.swift, as a subprocess.
final class AiosmtpdServer {
    struct Options {
        var tls: TestCertificate?
        var implicitTLS = false
        var user: String?
        var password: String?
        var excludeMechanisms: [String] = []
        var idleTimeout: Double?
        var pipelining = false
        var rejectRecipientsContaining: String?
        /// Store the n-th message, then hang up instead of answering.
        var hangUpOnMessage: Int?
    }

    let port: Int
    private let dir: TempDir
    private let process: Process
    private let stdinPipe: Pipe

    init(_ options: Options = Options()) throws {
        dir = try TempDir()
        let script = dir.file("smtp_server.py")
        try smtpServerScript.write(toFile: script, atomically: true, encoding: .utf8)
        let messages = dir.file("messages")
        try FileManager.default.createDirectory(atPath: messages, withIntermediateDirectories: true)
        var args = [script, "--dir", messages]
        if let tls = options.tls { args += ["--cert", tls.certPath, "--key", tls.keyPath] }
        if options.implicitTLS { args.append("--implicit-tls") }
        if let user = options.user { args += ["--user", user, "--password", options.password ?? ""] }
        for m in options.excludeMechanisms { args += ["--exclude-mechanism", m] }
        if let t = options.idleTimeout { args += ["--idle-timeout", String(t)] }
        if options.pipelining { args.append("--pipelining") }
        if let r = options.rejectRecipientsContaining { args += ["--reject-rcpt", r] }
        if let n = options.hangUpOnMessage { args += ["--hang-up-on-message", String(n)] }

        process = Process()
        // Debian's interpreter: the python3 on PATH cannot see python3-aiosmtpd.
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = args
        stdinPipe = Pipe()  // the server exits when this closes
        let stdout = Pipe()
        process.standardInput = stdinPipe
        process.standardOutput = stdout
        guard FileManager.default.createFile(atPath: dir.file("stderr.log"), contents: nil),
              let log = FileHandle(forWritingAtPath: dir.file("stderr.log")) else {
            throw HarnessError("cannot create the server's log file")
        }
        process.standardError = log
        try process.run()

        let (announced, line) = readAnnouncedPort(stdout)
        guard let p = announced else {
            let log = (try? String(contentsOfFile: dir.file("stderr.log"), encoding: .utf8)) ?? ""
            reap(process, grace: .zero)
            dir.remove()
            throw HarnessError("aiosmtpd test server did not start: \(line) \(log)")
        }
        port = p
    }

    private var stopped = false

    func stop() {
        guard !stopped else { return }
        stopped = true
        try? stdinPipe.fileHandleForWriting.close()  // asks the server to exit
        reap(process)
        dir.remove()
    }

    deinit { stop() }

    /// Messages received so far, in order.
    func messages() throws -> [ReceivedMessage] {
        var result: [ReceivedMessage] = []
        var n = 1
        while FileManager.default.fileExists(atPath: dir.file("messages/\(n).json")) {
            let json = try Data(contentsOf: URL(fileURLWithPath: dir.file("messages/\(n).json")))
            guard let o = try JSONSerialization.jsonObject(with: json) as? [String: Any] else {
                throw HarnessError("bad envelope file \(n)")
            }
            let raw = try Data(contentsOf: URL(fileURLWithPath: dir.file("messages/\(n).eml")))
            result.append(ReceivedMessage(
                mailFrom: o["mail_from"] as? String ?? "",
                recipients: o["rcpt_tos"] as? [String] ?? [],
                tls: o["tls"] as? Bool ?? false,
                authenticated: o["authenticated"] as? Bool ?? false,
                peerPort: o["peer_port"] as? Int ?? -1,
                raw: Array(raw)))
            n += 1
        }
        return result
    }
}

/// Postfix's smtp-sink: fast, PIPELINING, no AUTH (-a), and switches to
/// reject or drop chosen commands. Dumps each message into a directory.
final class SMTPSink {
    let port: Int
    private let dir: TempDir
    private let process: Process

    init(_ extraArguments: [String] = []) throws {
        dir = try TempDir()
        // smtp-sink drops to "nobody" (required when run as root), which must
        // be able to write the dumps.
        guard chmod(dir.path, 0o777) == 0 else { throw HarnessError("chmod failed") }
        port = try Ports.closed()
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/smtp-sink")
        var args = ["-a", "-d", dir.path + "/%H%M%S."]
        if getuid() == 0 { args += ["-u", "nobody"] }
        process.arguments = args + extraArguments + ["127.0.0.1:\(port)", "32"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        do {
            try Ports.waitUntilListening(port)
        } catch {
            stop()
            throw error
        }
    }

    /// How many messages smtp-sink has dumped.
    func messageCount() -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: dir.path).count) ?? 0
    }

    private var stopped = false

    func stop() {
        guard !stopped else { return }
        stopped = true
        reap(process, grace: .zero)
        dir.remove()
    }

    deinit { stop() }
}
