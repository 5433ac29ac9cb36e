import Foundation

// A one-connection SMTP server that follows a fixed script, for replies no
// real server sends on demand (malformed lines, injected bytes after the
// STARTTLS 220, EHLO refusals). Written to a temp file and run with Debian's
// /usr/bin/python3 (plain Python, no packages). Kept as a Swift string for
// the same reason as SMTPServerScript.swift.
let scriptedServerScript = #"""
import json, socket, ssl, sys

steps = json.load(open(sys.argv[1]))
log = open(sys.argv[2], "w")
cert, key = (sys.argv[3], sys.argv[4]) if len(sys.argv) > 4 else (None, None)

srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(1)
print("PORT %d" % srv.getsockname()[1], flush=True)
srv.settimeout(10)
conn, _ = srv.accept()
conn.settimeout(10)
reader = conn.makefile("rb")
try:
    for step in steps:
        if "send" in step:
            conn.sendall(step["send"].encode())
        elif "expect" in step:
            line = reader.readline()
            log.write(line.decode(errors="replace"))
            log.flush()
            if not line.upper().startswith(step["expect"].upper().encode()):
                log.write("!! expected %s\n" % step["expect"])
                break
        elif "starttls" in step:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert, key)
            conn = ctx.wrap_socket(conn, server_side=True)
            reader = conn.makefile("rb")
        elif "close" in step:
            break
    else:
        # Script done: wait for the client to hang up, logging what it says.
        while True:
            line = reader.readline()
            if not line:
                break
            log.write(line.decode(errors="replace"))
            log.flush()
except (OSError, ssl.SSLError) as e:
    log.write("!! %s\n" % e)
conn.close()
"""#

/// Runs `scriptedServerScript` with the given steps.
final class ScriptedServer {
    enum Step {
        case send(String)
        case expect(String)
        case starttls
        case close

        var json: [String: Any] {
            switch self {
            case .send(let s): ["send": s]
            case .expect(let s): ["expect": s]
            case .starttls: ["starttls": true]
            case .close: ["close": true]
            }
        }
    }

    let port: Int
    private let dir: TempDir
    private let process: Process

    init(_ steps: [Step], certificate: TestCertificate? = nil) throws {
        dir = try TempDir()
        try scriptedServerScript.write(toFile: dir.file("server.py"), atomically: true, encoding: .utf8)
        try JSONSerialization.data(withJSONObject: steps.map(\.json)).write(to: URL(fileURLWithPath: dir.file("steps.json")))
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        var args = [dir.file("server.py"), dir.file("steps.json"), dir.file("client.log")]
        if let certificate { args += [certificate.certPath, certificate.keyPath] }
        process.arguments = args
        let stdout = Pipe()
        process.standardOutput = stdout
        process.standardError = FileHandle.nullDevice
        try process.run()
        let (announced, line) = readAnnouncedPort(stdout)
        guard let p = announced else {
            reap(process, grace: .zero)
            dir.remove()
            throw HarnessError("scripted server did not start: \(line)")
        }
        port = p
    }

    /// The lines the client sent, as the server saw them (CRLF kept).
    func clientLines() -> [String] {
        let text = (try? String(contentsOfFile: dir.file("client.log"), encoding: .utf8)) ?? ""
        // Split on LF bytes: "\r\n" is one Character, so splitting the String on "\n" would not.
        return text.utf8.split(separator: 10).map { String(decoding: $0, as: UTF8.self) + "\n" }
    }

    private var stopped = false

    func stop() {
        guard !stopped else { return }
        stopped = true
        reap(process)
        dir.remove()
    }

    deinit { stop() }
}
