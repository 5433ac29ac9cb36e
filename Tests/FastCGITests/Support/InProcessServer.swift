import FastCGI
import Foundation
import MailgateTesting
import Synchronization

/// A `FastCGIServer` serving in this process: `run()` on a thread of its
/// own, stopped with `stop()` (a SIGTERM to that thread alone).
///
/// Not `kill(getpid(), SIGTERM)`: only run()'s thread and its workers block
/// SIGTERM, so the process-directed signal goes to some test-runner thread.
/// Before the first FCGX_Init its default action ends the test process;
/// after it libfcgi's own handler takes it (checked: run() did not return
/// within 2 s), and sigwait never sees it.
final class InProcessServer: Sendable {
    let server: FastCGIServer
    private let ready = Atomic<Bool>(false)
    private let outcome = Mutex<Result<Void, FastCGIError>?>(nil)

    private init(server: FastCGIServer) {
        self.server = server
    }

    /// Binds (errors surface here), starts `run()` and returns once its
    /// workers wait for connections.
    static func start(_ configuration: FastCGIServer.Configuration,
                      handler: @escaping CGIHandler) throws -> InProcessServer {
        let server = FastCGIServer(configuration: configuration, handler: handler)
        try server.bind()
        return try start(server)
    }

    /// Starts `run()` of a server made (and perhaps stopped) by the caller.
    static func start(_ server: FastCGIServer) throws -> InProcessServer {
        let running = InProcessServer(server: server)
        try startThread {
            let result: Result<Void, FastCGIError>
            do throws(FastCGIError) {
                try running.server.run(onReady: { running.ready.store(true, ordering: .sequentiallyConsistent) })
                result = .success(())
            } catch {
                result = .failure(error)
            }
            running.outcome.withLock { $0 = result }
        }
        try waitUntil("the FastCGI server's workers", timeout: 10) { running.isReady || running.hasReturned }
        if case .failure(let error)? = running.result { throw HarnessError("run() failed: \(error)") }
        return running
    }

    var isReady: Bool { ready.load(ordering: .sequentiallyConsistent) }
    var hasReturned: Bool { result != nil }
    /// What `run()` returned, once it has.
    var result: Result<Void, FastCGIError>? { outcome.withLock { $0 } }

    /// Waits up to `timeout` seconds for `run()` to return; fails if it threw.
    func waitForReturn(timeout: Double = 15) throws {
        try waitUntil("run() to return", timeout: timeout) { hasReturned }
        if case .failure(let error)? = result { throw HarnessError("run() threw \(error)") }
    }

    /// `stop()`, then waits for `run()` to return.
    func stop(timeout: Double = 15) throws {
        server.stop()
        try waitForReturn(timeout: timeout)
    }
}

/// A response for the tests' handlers.
func textResponse(_ text: String, status: Int = 200) -> CGIResponse {
    CGIResponse(status: status, headers: [("Content-Type", "text/plain")], body: Array(text.utf8))
}
