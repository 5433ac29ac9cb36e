import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A Python helper server that prints "PORT <n>" and "CONTROL <n>" on
/// stdout once it listens and exits when its stdin closes (the OAuth2
/// provider and the XOAUTH2 SMTP server). Stdout goes to a file (polled, so
/// nothing can block on a pipe); stdin is a pipe this object holds open.
public final class PythonControlledServer: @unchecked Sendable {  // all state set in init, `stopped` under `lock`
    public let port: Int
    public let controlPort: Int
    public let directory: TempDir
    private let process: Process
    private let stdinPipe: Pipe
    private let lock = NSLock()
    private var stopped = false

    public init(script: String, arguments: (TempDir) throws -> [String], prefix: String) throws {
        directory = try TempDir(prefix: prefix)
        process = Process()
        process.executableURL = URL(fileURLWithPath: PythonHelper.interpreter)
        process.arguments = [PythonHelper.path(script)] + (try arguments(directory))
        stdinPipe = Pipe()
        process.standardInput = stdinPipe
        let stdoutPath = directory.file("stdout.log"), stderrPath = directory.file("stderr.log")
        guard FileManager.default.createFile(atPath: stdoutPath, contents: nil),
              FileManager.default.createFile(atPath: stderrPath, contents: nil),
              let out = FileHandle(forWritingAtPath: stdoutPath),
              let err = FileHandle(forWritingAtPath: stderrPath) else {
            throw HarnessError("cannot create the log files of \(script)")
        }
        process.standardOutput = out
        process.standardError = err
        try process.run()
        var ports: [String: Int] = [:]
        let deadline = Date().addingTimeInterval(15)
        while ports["CONTROL"] == nil {
            let text = (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? ""
            for line in text.split(separator: "\n") {
                let words = line.split(separator: " ")
                if words.count == 2, let value = Int(words[1]) { ports[String(words[0])] = value }
            }
            if ports["CONTROL"] != nil { break }
            if !process.isRunning || Date() > deadline {
                let log = (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? ""
                if process.isRunning { kill(process.processIdentifier, SIGKILL) }
                process.waitUntilExit()
                directory.remove()
                throw HarnessError("\(script) did not start: \(text) \(log.suffix(2000))")
            }
            usleep(20_000)
        }
        guard let port = ports["PORT"], let controlPort = ports["CONTROL"] else {
            throw HarnessError("\(script) announced no PORT")
        }
        self.port = port
        self.controlPort = controlPort
    }

    /// What the server wrote to stderr (tracebacks).
    public var stderrText: String {
        (try? String(contentsOfFile: directory.file("stderr.log"), encoding: .utf8)) ?? ""
    }

    /// A control call; the answer's JSON object.
    public func control(_ method: String, _ pathAndQuery: String) throws -> [String: Any] {
        let response = try HTTP.exchange(port: controlPort, HTTP.request(method, pathAndQuery), timeout: 10)
        guard response.status == 200, let json = response.json else {
            throw HarnessError("control \(method) \(pathAndQuery): \(response)")
        }
        return json
    }

    /// Closes stdin (the server exits), then SIGKILL after 2 s if it lingers.
    public func stop() {
        let first = lock.withLock { () -> Bool in
            defer { stopped = true }
            return !stopped
        }
        guard first else { return }
        try? stdinPipe.fileHandleForWriting.close()
        let end = Date().addingTimeInterval(2)
        while process.isRunning && Date() < end { usleep(10_000) }
        // SIGKILL, not SIGTERM: a Process child inherits the test thread's
        // signal mask, in which SIGTERM may be blocked.
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        directory.remove()
    }

    deinit { stop() }
}

/// Tests/MailgateTesting/Python/oauth_provider.py: an auto-approving
/// OAuth2 authorisation server over HTTPS on loopback (see the script).
public final class TestOAuthProvider: Sendable {
    public let server: PythonControlledServer
    public let clientID: String
    public let clientSecret: String?
    /// The HMAC key its access tokens are signed with (give it to `TestOAuthSMTPServer`).
    public let tokenSecret: String

    public var port: Int { server.port }
    public var tokenURL: String { "https://127.0.0.1:\(server.port)/token" }
    public var authorizationURL: String { "https://127.0.0.1:\(server.port)/authorize" }

    public init(certificate: Certificate, clientID: String = "mailgate-test-client",
                clientSecret: String? = "test-client-secret-\(UUID().uuidString)",
                tokenSecret: String = UUID().uuidString, lifetime: Int = 3600, rotation: Bool = false) throws {
        self.clientID = clientID
        self.clientSecret = clientSecret
        self.tokenSecret = tokenSecret
        server = try PythonControlledServer(script: "oauth_provider.py", arguments: { dir in
            // The secret in a file, not on the command line (ps would show it).
            let secretFile = dir.file("token-secret")
            guard FileManager.default.createFile(atPath: secretFile, contents: Data(tokenSecret.utf8),
                                                 attributes: [.posixPermissions: 0o600]) else {
                throw HarnessError("cannot write the token secret")
            }
            var arguments = ["--cert", certificate.cert, "--key", certificate.key, "--client-id", clientID,
                             "--token-secret-file", secretFile, "--lifetime", String(lifetime)]
            if let clientSecret { arguments += ["--client-secret", clientSecret] }
            if rotation { arguments.append("--rotation") }
            return arguments
        }, prefix: "mailgate-oauth")
    }

    /// Sets knobs: mode (normal, invalid_grant, error_500, slow, redirect,
    /// oversized), slow (seconds), retry_after, rotation (0/1), lifetime
    /// (seconds), wrong_state (0/1), deny (0/1).
    public func set(_ knobs: [String: String]) throws {
        let query = knobs.sorted { $0.key < $1.key }
            .map { "\($0.key)=\($0.value.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")" }
            .joined(separator: "&")
        _ = try server.control("POST", "/set?" + query)
    }

    /// refresh, code, authorize, token_requests.
    public func counters() throws -> [String: Int] {
        try server.control("GET", "/counters").compactMapValues { $0 as? Int }
    }

    /// A refresh token for the client, as if a browser flow had run.
    public func seedRefreshToken() throws -> String {
        guard let token = try server.control("POST", "/seed")["refresh_token"] as? String else {
            throw HarnessError("no refresh_token from /seed")
        }
        return token
    }

    /// An access token valid for `lifetime` seconds (negative: already expired).
    public func mintAccessToken(lifetime: Int) throws -> String {
        guard let token = try server.control("POST", "/mint?lifetime=\(lifetime)")["access_token"] as? String else {
            throw HarnessError("no access_token from /mint")
        }
        return token
    }

    /// Revokes every refresh token issued so far.
    public func revokeAll() throws { _ = try server.control("POST", "/revoke-all") }

    public func stop() { server.stop() }
}

/// Tests/MailgateTesting/Python/oauth_smtp_server.py: SMTP with STARTTLS,
/// AUTH XOAUTH2 and OAUTHBEARER for `TestOAuthProvider`'s tokens; messages
/// stored as smtp_server.py stores them (`messagesDirectory`/<n>.json, .eml).
public final class TestOAuthSMTPServer: Sendable {
    public let server: PythonControlledServer
    public var port: Int { server.port }
    public var messagesDirectory: String { server.directory.file("messages") }

    public init(certificate: Certificate, tokenSecret: String, mailboxes: [String], onlyOAuthBearer: Bool = false) throws {
        server = try PythonControlledServer(script: "oauth_smtp_server.py", arguments: { dir in
            let secretFile = dir.file("token-secret")
            guard FileManager.default.createFile(atPath: secretFile, contents: Data(tokenSecret.utf8),
                                                 attributes: [.posixPermissions: 0o600]) else {
                throw HarnessError("cannot write the token secret")
            }
            try FileManager.default.createDirectory(atPath: dir.file("messages"), withIntermediateDirectories: true)
            var arguments = ["--dir", dir.file("messages"), "--cert", certificate.cert, "--key", certificate.key,
                             "--token-secret-file", secretFile]
            for mailbox in mailboxes { arguments += ["--mailbox", mailbox] }
            if onlyOAuthBearer { arguments.append("--only-oauthbearer") }
            return arguments
        }, prefix: "mailgate-oauth-smtp")
    }

    /// Refuse the next `count` otherwise valid tokens.
    public func refuseNext(_ count: Int) throws { _ = try server.control("POST", "/refuse?count=\(count)") }

    /// auth_ok, auth_failed, messages.
    public func counters() throws -> [String: Int] {
        try server.control("GET", "/counters").compactMapValues { $0 as? Int }
    }

    public func stop() { server.stop() }
}
