import Foundation
import MailgateTesting
#if canImport(Glibc)
import Glibc
#endif

/// nginx/local/capture_smtp.py: an aiosmtpd server that spools every
/// message it accepts (NNNNNN.eml raw bytes + NNNNNN.json envelope).
final class CaptureServer: Sendable {
    struct Options: Sendable {
        var starttls = false
        var implicitTLS = false
        var certificate: Certificate? = nil
        var authUser: String? = nil
        var authPassword: String? = nil
        /// The SIZE limit announced and enforced (default 64 MiB).
        var sizeLimit: Int? = nil
    }

    let child: Child
    let port: Int
    let spool: String

    private init(child: Child, port: Int, spool: String) {
        self.child = child
        self.port = port
        self.spool = spool
    }

    static func start(in dir: String, name: String, options: Options) throws -> CaptureServer {
        try withFreshPort { port in try start(in: dir, name: name, options: options, port: port) }
    }

    private static func start(in dir: String, name: String, options: Options, port: Int) throws -> CaptureServer {
        let spool = "\(dir)/\(name)-spool"
        try FileManager.default.createDirectory(atPath: spool, withIntermediateDirectories: true)
        var arguments = [E2E.repoRoot + "/nginx/local/capture_smtp.py", "--host", "127.0.0.1", "--port", String(port),
                         "--spool", spool]
        if let certificate = options.certificate { arguments += ["--tls-cert", certificate.cert, "--tls-key", certificate.key] }
        if options.starttls { arguments.append("--starttls") }
        if let limit = options.sizeLimit { arguments += ["--size-limit", String(limit)] }
        if options.implicitTLS { arguments.append("--implicit-tls") }
        if let user = options.authUser {
            let passwordFile = "\(dir)/\(name)-smtp-password"
            guard FileManager.default.createFile(atPath: passwordFile, contents: Data((options.authPassword ?? "").utf8),
                                                 attributes: [.posixPermissions: 0o600]) else {
                throw HarnessError("cannot write \(passwordFile)")
            }
            arguments += ["--auth-user", user, "--auth-password-file", passwordFile]
        }
        let child = try Child.spawn(E2E.python, arguments, stdout: "\(dir)/\(name).out", stderr: "\(dir)/\(name).err",
                                    name: name)
        do {
            // Generous: on a loaded 2-core machine, with a whole test run
            // starting at once, the import of aiosmtpd alone can take 15 s.
            try waitUntil("\(name) READY", timeout: 60, child: child) { child.stdoutText.contains("READY") }
        } catch {
            child.stop()
            throw error
        }
        return CaptureServer(child: child, port: port, spool: spool)
    }

    /// Starts a capture server on its own thread (for use from async tests).
    static func startAsync(name: String, options: Options) async throws -> CaptureServer {
        let env = try await E2E.get()
        let unique = "\(name)-\(Counter.shared.next())"
        return try await blocking { try CaptureServer.start(in: env.dir, name: unique, options: options) }
    }

    /// Every spooled message, in arrival order.
    func allMessages() -> [CapturedMessage] {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: spool)) ?? [])
            .filter { $0.hasSuffix(".eml") }.sorted()
        return names.compactMap { name in
            let base = spool + "/" + String(name.dropLast(4))
            guard let raw = FileManager.default.contents(atPath: base + ".eml") else { return nil }
            let envelope = FileManager.default.contents(atPath: base + ".json")
                .flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] }
            return CapturedMessage(path: base + ".eml", raw: [UInt8](raw), envelope: Envelope(envelope ?? [:]))
        }
    }

    func messages(containing marker: String) -> [CapturedMessage] {
        let needle = Array(marker.utf8)
        return allMessages().filter { $0.raw.firstRange(of: needle) != nil }
    }

    /// Polls the spool until a message containing `marker` arrives.
    func waitForMessage(containing marker: String, timeout: Double = 10) async throws -> CapturedMessage {
        try await blocking {
            let deadline = Date().addingTimeInterval(timeout)
            while true {
                if let found = self.messages(containing: marker).first { return found }
                if Date() >= deadline { throw HarnessError("no message containing \(marker) in \(self.spool) after \(timeout) s") }
                usleep(20_000)
            }
        }
    }

    /// Waits for the message whose Message-ID the 200 response reported.
    func waitForMessage(sentWith response: HTTPResponse, timeout: Double = 10) async throws -> CapturedMessage {
        guard let id = response.json?["message_id"] as? String else {
            throw HarnessError("response has no message_id: \(response)")
        }
        return try await waitForMessage(containing: id, timeout: timeout)
    }

    /// How many spooled messages carry each subject in `subjects`, once
    /// every one has arrived (or `timeout` passed): one read of the spool.
    func deliveries(ofSubjects subjects: Set<String>, timeout: Double = 20) async throws -> [String: Int] {
        try await blocking {
            let deadline = Date().addingTimeInterval(timeout)
            while true {
                var counts: [String: Int] = [:]
                for message in self.allMessages() {
                    if let subject = message.rawSubject, subjects.contains(subject) { counts[subject, default: 0] += 1 }
                }
                if counts.count == subjects.count || Date() >= deadline { return counts }
                usleep(50_000)
            }
        }
    }

    func stop() { child.stop() }
}

struct Envelope: Sendable {
    var mailFrom: String?
    var rcptTos: [String]
    var tls: Bool
    var auth: Bool
    var login: String?

    init(_ json: [String: Any]) {
        mailFrom = json["mail_from"] as? String
        rcptTos = json["rcpt_tos"] as? [String] ?? []
        tls = json["tls"] as? Bool ?? false
        auth = json["auth"] as? Bool ?? false
        login = json["login"] as? String
    }
}

struct CapturedMessage: Sendable {
    var path: String
    var raw: [UInt8]
    var envelope: Envelope

    /// Lines split on CRLF (the wire form).
    var rawLines: [ArraySlice<UInt8>] {
        var lines: [ArraySlice<UInt8>] = []
        var start = raw.startIndex
        var i = raw.startIndex
        while i < raw.endIndex {
            if raw[i] == 13, i + 1 < raw.endIndex, raw[i + 1] == 10 {
                lines.append(raw[start..<i])
                i += 2
                start = i
            } else {
                i += 1
            }
        }
        if start < raw.endIndex { lines.append(raw[start...]) }
        return lines
    }

    /// The Subject header's raw value (unfolded ASCII subjects only).
    var rawSubject: String? {
        let key = Array("\r\nSubject: ".utf8)
        guard let found = raw.firstRange(of: key) else { return nil }
        let rest = raw[found.upperBound...]
        let end = rest.firstIndex(of: 13) ?? rest.endIndex
        return String(decoding: rest[..<end], as: UTF8.self)
    }

    /// A CR not followed by LF, or an LF not preceded by CR.
    var hasBareCROrLF: Bool {
        for (i, byte) in raw.enumerated() {
            if byte == 13 && (i + 1 == raw.count || raw[i + 1] != 10) { return true }
            if byte == 10 && (i == 0 || raw[i - 1] != 13) { return true }
        }
        return false
    }

    var maxLineLength: Int { rawLines.map(\.count).max() ?? 0 }
}

/// Postfix's smtp-sink with `-a` (no AUTH) plus failure options.
final class SinkServer: Sendable {
    let child: Child
    let port: Int

    private init(child: Child, port: Int) {
        self.child = child
        self.port = port
    }

    static func start(_ options: [String]) async throws -> SinkServer {
        let env = try await E2E.get()
        return try await blocking { try withFreshPort { port in
            let name = "smtp-sink-\(Counter.shared.next())"
            // As root smtp-sink insists on -u to drop privileges to.
            let user = getuid() == 0 ? ["-u", "root"] : []
            let child = try Child.spawn("/usr/sbin/smtp-sink", user + ["-a"] + options + ["127.0.0.1:\(port)", "16"],
                                        stdout: "\(env.dir)/\(name).out", stderr: "\(env.dir)/\(name).err", name: name)
            do {
                try waitUntil("\(name) on \(port)", child: child) { tcpAccepts(port) }
            } catch {
                child.stop()
                throw error
            }
            return SinkServer(child: child, port: port)
        } }
    }

    func stop() { child.stop() }
}

/// What Python's `email` package (policy=default) makes of a received message.
struct ParsedEmail: Decodable, Sendable {
    var subject: String?
    var to: String?
    var from: String?
    var headers: [[String]]
    var body: String?
    var contentType: String
    var charset: String?
    var transferEncoding: String?
    /// The tree of content types, e.g. "multipart/alternative(text/plain,text/html)".
    var structure: String
    /// Every leaf part, in order.
    var parts: [Part]
    /// Defects found anywhere in the message.
    var defects: [String]

    struct Part: Decodable, Sendable {
        var contentType: String
        var charset: String?
        var disposition: String?
        var filename: String?
        var contentID: String?
        var transferEncoding: String?
        /// The part's decoded content, base64 (JSON cannot carry bytes).
        var bytes: String

        var content: [UInt8] { Data(base64Encoded: bytes).map { [UInt8]($0) } ?? [] }
        var text: String { String(decoding: content, as: UTF8.self).replacingOccurrences(of: "\r\n", with: "\n") }
    }

    /// The decoded body with line ends as "\n".
    var text: String? { body.map { $0.replacingOccurrences(of: "\r\n", with: "\n") } }

    func header(_ name: String) -> String? {
        headers.first { $0.first?.lowercased() == name.lowercased() }?.last
    }

    func headerCount(_ name: String) -> Int {
        headers.filter { $0.first?.lowercased() == name.lowercased() }.count
    }
}


func parseEmail(_ message: CapturedMessage) async throws -> ParsedEmail {
    let env = try await E2E.get()
    let result = try await blocking { try runTool(E2E.python, [PythonHelper.path("parse_email.py"), message.path], in: env.dir) }
    guard result.ok else { throw HarnessError("python email parse failed: \(result.stderr)") }
    return try JSONDecoder().decode(ParsedEmail.self, from: Data(result.stdout))
}

/// Runs a Python script file with Debian's interpreter (PyJWT etc.); returns stdout.
func python(_ script: String, _ arguments: [String] = []) async throws -> String {
    let env = try await E2E.get()
    let result = try await blocking { try runTool(E2E.python, [script] + arguments, in: env.dir) }
    guard result.ok else { throw HarnessError("python failed (\(result.status)): \(result.stderr)") }
    return result.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
}
