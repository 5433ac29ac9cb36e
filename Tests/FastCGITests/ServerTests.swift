import FastCGI
import Foundation
import MailgateTesting
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `FastCGIServer` in this process over a real Unix socket, spoken to by
/// the test kit's FastCGI client: workers, whole answers, body limits,
/// stop() and inherited sockets.
@Suite struct InProcessServerTests {
    /// A private directory under /tmp (Unix socket paths are short).
    private static func socketPath() throws -> (TempDir, String) {
        let dir = try TempDir(prefix: "mailgate-fcgi", in: "/tmp")
        return (dir, dir.file("fcgi.sock"))
    }

    @Test func concurrentRequestsAreServedByAsManyWorkers() async throws {
        let (dir, path) = try Self.socketPath()
        defer { dir.remove() }
        let workers = 4
        // Each request waits in the handler until all have arrived: they
        // can only all arrive if as many workers serve them at once.
        let state = Locked<(arrived: Int, threads: Set<UInt>)>((0, []))
        let running = try InProcessServer.start(.init(address: .unix(path: path, mode: 0o600), threads: workers)) { request in
            state.withLock { $0.arrived += 1; $0.threads.insert(UInt(pthread_self())) }
            let deadline = ContinuousClock.now + .seconds(10)
            while state.withLock({ $0.arrived }) < workers && ContinuousClock.now < deadline { usleep(2_000) }
            return textResponse("answer to \(request.params["HTTP_X_REQUEST"] ?? "?")")
        }
        defer { try? running.stop() }

        let responses = try await withThrowingTaskGroup(of: (Int, FastCGIResponse).self) { group in
            for n in 0..<workers {
                group.addTask {
                    (n, try await blocking { try FastCGIClient.send(.unix(path), uri: "/", headers: [("HTTP_X_REQUEST", "\(n)")]) })
                }
            }
            return try await group.reduce(into: [Int: FastCGIResponse]()) { $0[$1.0] = $1.1 }
        }
        #expect(responses.count == workers)
        for (n, response) in responses {
            #expect(response.ended)
            let http = try response.http()
            #expect(http.status == 200)
            #expect(http.text == "answer to \(n)")
        }
        let (arrived, threads) = state.withLock { ($0.arrived, $0.threads) }
        #expect(arrived == workers)
        #expect(threads.count == workers, "each request had a worker thread of its own")
    }

    @Test func answersAndBodiesArriveWhole() async throws {
        let (dir, path) = try Self.socketPath()
        defer { dir.remove() }
        // An answer of many FCGI_STDOUT records: the request body, echoed
        // three times, after a line with its length.
        let running = try InProcessServer.start(.init(address: .unix(path: path, mode: 0o600), threads: 2)) { request in
            guard case .complete(let body) = request.body else { return textResponse("body not read", status: 400) }
            return CGIResponse(status: 200, headers: [("Content-Type", "application/octet-stream")],
                               body: Array("\(body.count)\n".utf8) + body + body + body)
        }
        defer { try? running.stop() }

        let body = (0..<(900 * 1024)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 8) }
        let response = try await blocking { try FastCGIClient.send(.unix(path), body: body) }
        #expect(response.ended)
        #expect(response.protocolStatus == 0)  // FCGI_REQUEST_COMPLETE
        #expect(response.appStatus == 0)
        #expect(response.stdoutRecords > 1)
        let http = try response.http()
        #expect(http.status == 200)
        let expected = Array("\(body.count)\n".utf8) + body + body + body
        #expect(http.header("Content-Length") == String(expected.count))
        #expect(http.body.count == expected.count)
        #expect(http.body == expected)
    }

    @Test func oversizedBodyGetsTheHandlersAnswerWithoutBeingRead() async throws {
        let (dir, path) = try Self.socketPath()
        defer { dir.remove() }
        let seen = Locked<[CGIRequestBody]>([])
        let running = try InProcessServer.start(.init(address: .unix(path: path, mode: 0o600), threads: 2,
                                                      maxBodyBytes: 1024)) { request in
            seen.withLock { $0.append(request.body) }
            if case .tooLarge(let declared, let limit) = request.body {
                return textResponse("too large: \(declared) > \(limit)", status: 413)
            }
            return textResponse("read")
        }
        defer { try? running.stop() }

        // 10 MiB declared and not one byte of it sent: a server that
        // buffered (or waited for) the body before answering would time out.
        let declared = 10 << 20
        let records = FastCGIClient.requestRecords(
            params: FastCGIClient.params(uri: "/upload", extra: [("CONTENT_LENGTH", String(declared))]), stdin: nil)
        let refused = try await blocking { try FastCGIClient.exchange(.unix(path), records: records, timeout: 10) }
        #expect(refused.ended)
        let http = try refused.http()
        #expect(http.status == 413)
        #expect(http.text == "too large: \(declared) > 1024")
        #expect(seen.value == [.tooLarge(declared: declared, limit: 1024)])

        // The same limit, with the body sent in full while the answer comes
        // back: still the handler's answer, and the worker serves on.
        let big = [UInt8](repeating: 0x61, count: 256 * 1024)
        let sentWhole = try await blocking { try FastCGIClient.send(.unix(path), uri: "/upload", body: big, timeout: 10) }
        #expect(try sentWhole.http().status == 413)
        let small = try await blocking { try FastCGIClient.send(.unix(path), body: Array("ok".utf8)) }
        #expect(try small.http().text == "read")
    }

    /// Apache mod_proxy_fcgi passes a chunked request body it has not read
    /// whole with no CONTENT_LENGTH: the body is the FCGI_STDIN stream up to
    /// its end record, read whole within the limit and refused (413) past it;
    /// and with no body at all, nothing waits.
    @Test func bodyWithoutContentLengthIsReadToTheEndOfInput() async throws {
        let (dir, path) = try Self.socketPath()
        defer { dir.remove() }
        let seen = Locked<[CGIRequestBody]>([])
        let running = try InProcessServer.start(.init(address: .unix(path: path, mode: 0o600), threads: 2,
                                                      maxBodyBytes: 100_000)) { request in
            seen.withLock { $0.append(request.body) }
            switch request.body {
            case .complete(let body): return textResponse("read \(body.count) bytes, sum \(body.reduce(0) { $0 + Int($1) })")
            case .tooLarge(_, let limit): return textResponse("too large: over \(limit)", status: 413)
            default: return textResponse("\(request.body)", status: 400)
            }
        }
        defer { try? running.stop() }

        func send(_ body: [UInt8], chunk: Int) async throws -> HTTPResponse {
            let records = FastCGIClient.requestRecords(
                params: FastCGIClient.params(uri: "/chunked", extra: [("HTTP_TRANSFER_ENCODING", "chunked")]),
                stdin: body, chunk: chunk)
            return try await blocking { try FastCGIClient.exchange(.unix(path), records: records, timeout: 10).http() }
        }
        // Within the limit, in many small FCGI_STDIN records: read whole.
        let body = (0..<90_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let whole = try await send(body, chunk: 1000)
        #expect(whole.status == 200)
        #expect(whole.text == "read 90000 bytes, sum \(body.reduce(0) { $0 + Int($1) })")
        // Over it: the handler's 413 arrives, and the worker serves on.
        let over = try await send([UInt8](repeating: 0x61, count: 300_000), chunk: 65535)
        #expect(over.status == 413)
        #expect(over.text == "too large: over 100000")
        let none = try await send([], chunk: 65535)
        #expect(none.text == "read 0 bytes, sum 0")
        let recorded = seen.value
        #expect(recorded.count == 3)
        if recorded.count == 3 {
            let readWhole = recorded[0] == .complete(body)  // not printed on failure: 90,000 bytes
            #expect(readWhole, "the handler saw the whole body")
            if case .tooLarge(let read, let limit) = recorded[1] {
                #expect(limit == 100_000 && read > limit && read <= limit + 65536, "stopped reading soon after the limit: \(read)")
            } else {
                Issue.record("expected tooLarge, got \(recorded[1])")
            }
            #expect(recorded[2] == .complete([]))
        }
    }

    @Test func stopLetsRequestsInFlightFinishThenRunReturnsAndTheSocketFileIsGone() async throws {
        let (dir, path) = try Self.socketPath()
        defer { dir.remove() }
        let entered = Locked(false)
        let release = Locked(false)
        // Generous bounds (a loaded CI machine can stall this test for tens of
        // seconds): the grace and the handler's guard must not end the wait
        // that the test is about.
        let running = try InProcessServer.start(.init(address: .unix(path: path, mode: 0o600), threads: 2,
                                                      shutdownGrace: .seconds(300))) { _ in
            entered.value = true
            let deadline = ContinuousClock.now + .seconds(300)
            while !release.value && ContinuousClock.now < deadline { usleep(2_000) }
            return textResponse("finished after stop")
        }
        defer { release.value = true; try? running.stop() }

        // The client runs on a thread of its own from here, not in a Task
        // that waits its turn on Swift's cooperative pool (2 threads, which
        // the other suites' synchronous tests can hold for seconds). Its
        // timeout is a bound on a loaded machine, not an expected duration.
        let inFlight = Locked<Result<FastCGIResponse, HarnessError>?>(nil)
        try startThread {
            do {
                inFlight.value = .success(try FastCGIClient.send(.unix(path), body: Array("x".utf8), timeout: 120))
            } catch {
                inFlight.value = .failure(error as? HarnessError ?? HarnessError("\(error)"))
            }
        }
        try await blocking { try waitUntil("the request to reach the handler", timeout: 60) { entered.value } }

        running.server.stop()
        // New connections are refused at once and the file goes...
        try await blocking { try waitUntil("the socket file to go") { access(path, F_OK) != 0 } }
        #expect(!unixAccepts(path))
        // ...but run() waits for the request in flight.
        try await Task.sleep(for: .milliseconds(300))
        #expect(!running.hasReturned)

        release.value = true
        let response = try await blocking {
            try waitUntil("the answer to the request in flight", timeout: 120) { inFlight.value != nil }
            guard let outcome = inFlight.value else { throw HarnessError("no outcome for the request in flight") }
            return try outcome.get()
        }
        #expect(response.ended)
        let http = try response.http()
        #expect(http.status == 200)
        #expect(http.text == "finished after stop")
        try await blocking { try running.waitForReturn() }
        #expect(access(path, F_OK) != 0)
    }

    @Test func stopBeforeRunMakesRunReturnOnceStarted() async throws {
        let (dir, path) = try Self.socketPath()
        defer { dir.remove() }
        let server = FastCGIServer(configuration: .init(address: .unix(path: path, mode: 0o600), threads: 2)) { _ in
            textResponse("never")
        }
        try server.bind()
        server.stop()
        let running = try await blocking { try InProcessServer.start(server) }
        try await blocking { try running.waitForReturn() }
        #expect(access(path, F_OK) != 0)
    }

    @Test func anInheritedSocketKeepsListeningAfterStop() async throws {
        let (dir, path) = try Self.socketPath()
        defer { dir.remove() }
        let socket = try InheritableSocket(path: path, mode: 0o600)
        defer { socket.close() }

        for generation in 1...2 {
            let running = try await blocking {
                try InProcessServer.start(.init(address: .inherited(fd: socket.fd), threads: 2)) { _ in
                    textResponse("generation \(generation)")
                }
            }
            let response = try await blocking { try FastCGIClient.send(.unix(path), method: "GET") }
            #expect(try response.http().text == "generation \(generation)")
            try await blocking { try running.stop() }
    
            // Still listening, file and all, for the server that takes over.
            #expect(access(path, F_OK) == 0)
            var accepting: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            #expect(getsockopt(socket.fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &length) == 0)
            #expect(accepting != 0)
            #expect(unixAccepts(path))
        }
    }
}
