import Foundation
import MailgateTesting

/// Runs Tests/MailgateTesting/Python/scripted_smtp_server.py with the given steps.
final class ScriptedServer {
    enum Step {
        case send(String)
        case expect(String)
        case starttls
        /// Closes the connection and serves the client's next one.
        case accept
        /// `accept`, but the log says "## hung up" once this connection is
        /// closed (before the next one is accepted).
        case hangUp
        case close

        var json: [String: Any] {
            switch self {
            case .send(let s): ["send": s]
            case .expect(let s): ["expect": s]
            case .starttls: ["starttls": true]
            case .accept: ["accept": true]
            case .hangUp: ["hang_up": true]
            case .close: ["close": true]
            }
        }
    }

    let port: Int
    private let dir: TempDir
    private let process: Process

    init(_ steps: [Step], certificate: TestCertificate? = nil) throws {
        dir = try TempDir(prefix: "mailgate-smtp")
        try JSONSerialization.data(withJSONObject: steps.map(\.json)).write(to: URL(fileURLWithPath: dir.file("steps.json")))
        process = Process()
        process.executableURL = URL(fileURLWithPath: PythonHelper.interpreter)
        var args = [PythonHelper.path("scripted_smtp_server.py"), dir.file("steps.json"), dir.file("client.log")]
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

    /// The lines the client sent, once the server has exited. After its
    /// script the server logs whatever else arrives until the client hangs
    /// up, so this includes anything the client sent that the script did
    /// not expect (and shows that nothing else was sent). Call it after the
    /// client closed its connection.
    func clientLinesAfterHangUp() -> [String] {
        reap(process, grace: .seconds(10))
        return clientLines()
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
