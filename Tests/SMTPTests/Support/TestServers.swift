import Foundation
import MailgateTesting
import Testing
#if canImport(Glibc)
import Glibc
#endif

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

/// Ends a child: waits `grace` for it to exit by itself, then SIGKILL.
///
/// Not SIGTERM: children started by Foundation's Process here inherit the
/// test thread's signal mask, in which SIGTERM is blocked, so terminate()
/// is silently ignored and waitUntilExit() would hang the whole test run.
func reap(_ process: Process, grace: Duration = .seconds(2)) {
    let end = ContinuousClock.now + grace
    while process.isRunning && ContinuousClock.now < end { usleep(10_000) }
    if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    process.waitUntilExit()
}

/// Self-signed certificates for localhost and 127.0.0.1, made once per
/// test run with the openssl CLI (`makeCertificate` of the test kit).
typealias TestCertificate = Certificate

extension Certificate {
    var certPath: String { cert }
    var keyPath: String { key }

    static let shared = make(name: "localhost", commonName: "localhost", subjectAltName: "DNS:localhost,IP:127.0.0.1")
    /// Valid, but for another name: for host name verification.
    static let otherName = make(name: "other", commonName: "other.example", subjectAltName: "DNS:other.example")

    private static func make(name: String, commonName: String, subjectAltName: String) -> Result<Certificate, HarnessError> {
        do {
            let dir = try TempDir(prefix: "mailgate-smtp")  // kept for the whole test run; it is tiny
            return .success(try makeCertificate(in: dir.path, name: name, subject: "/CN=\(commonName)", san: subjectAltName))
        } catch let e as HarnessError {
            return .failure(e)
        } catch {
            return .failure(HarnessError("\(error)"))
        }
    }
}

enum Ports {
    /// A TCP port on 127.0.0.1 with nothing listening on it.
    static func closed() throws -> Int { try freePort() }
}

/// A socket that accepts TCP connections (in the kernel backlog) but never
/// says anything: for greeting timeouts.
final class SilentListener {
    let port: Int
    private var fd: Int32

    init() throws {
        (fd, port) = try boundLoopbackSocket(listen: 8)
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
    /// Sent with BDAT (RFC 3030), not DATA.
    let bdat: Bool
}

/// Tests/MailgateTesting/Python/smtp_server.py (aiosmtpd), as a subprocess.
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
        /// Announce CHUNKING and take BDAT (RFC 3030).
        var chunking = false
    }

    let port: Int
    private let dir: TempDir
    private let process: Process
    private let stdinPipe: Pipe

    init(_ options: Options = Options()) throws {
        dir = try TempDir(prefix: "mailgate-smtp")
        let script = PythonHelper.path("smtp_server.py")
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
        if options.chunking { args.append("--chunking") }

        process = Process()
        // Debian's interpreter: the python3 on PATH cannot see python3-aiosmtpd.
        process.executableURL = URL(fileURLWithPath: PythonHelper.interpreter)
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
                raw: Array(raw),
                bdat: o["bdat"] as? Bool ?? false))
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
        dir = try TempDir(prefix: "mailgate-smtp")
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
            try waitUntil("smtp-sink on port \(port)", timeout: 5) { tcpAccepts(port) }
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
