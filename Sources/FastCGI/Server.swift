import CFastCGI
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The application: one plain request in, one plain response out. Called
/// concurrently from every worker thread, so it must be thread-safe.
public typealias CGIHandler = @Sendable (CGIRequest) -> CGIResponse

/// A libfcgi responder: `threads` workers, each with its own `FCGX_Request`
/// blocked in `FCGX_Accept_r` on one shared listening socket.
///
/// Shutdown: libfcgi's own SIGTERM handler only sets a flag that a blocked
/// accept never sees, so `run()` blocks SIGTERM/SIGINT in every thread and
/// waits for them with `sigwait`. On a signal it shuts the listening socket
/// down (which wakes every blocked accept), lets requests in flight finish
/// and returns.
public final class FastCGIServer: Sendable {
    public struct Configuration: Sendable {
        public var address: ListenAddress
        public var threads: Int
        public var maxBodyBytes: Int
        /// How long `run()` waits for requests in flight after a signal.
        public var shutdownGrace: Duration

        public init(address: ListenAddress, threads: Int = 16, maxBodyBytes: Int = 1 << 20, shutdownGrace: Duration = .seconds(25)) {
            self.address = address
            self.threads = threads
            self.maxBodyBytes = maxBodyBytes
            self.shutdownGrace = shutdownGrace
        }
    }

    public let configuration: Configuration
    private let handler: CGIHandler
    private let state = Mutex(State())

    private struct State {
        var listenFD: Int32 = -1
        var stopping = false
        var runningWorkers = 0
    }

    public init(configuration: Configuration, handler: @escaping CGIHandler) {
        self.configuration = configuration
        self.handler = handler
    }

    /// Opens the socket (before anything else, so start-up errors surface at once).
    public func bind() throws(FastCGIError) {
        let fd = try Listener.open(configuration.address)
        state.withLock { $0.listenFD = fd }
    }

    /// Serves until SIGTERM or SIGINT; returns after requests in flight have
    /// finished (or the grace period ran out). `onReady` runs once workers wait.
    public func run(onReady: () -> Void = {}) throws(FastCGIError) {
        if state.withLock({ $0.listenFD }) < 0 { try bind() }
        let listenFD = state.withLock { $0.listenFD }

        // Block the signals before FCGX_Init and before any thread exists, so
        // every thread inherits the mask and only sigwait below sees them.
        var signals = sigset_t()
        sigemptyset(&signals)
        sigaddset(&signals, SIGTERM)
        sigaddset(&signals, SIGINT)
        var previous = sigset_t()
        let maskResult = pthread_sigmask(SIG_BLOCK, &signals, &previous)
        guard maskResult == 0 else { throw .systemCall("pthread_sigmask", maskResult) }
        defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
        // A peer that hangs up mid-response must not kill the process.
        signal(SIGPIPE, SIG_IGN)

        let initResult = FCGX_Init()
        guard initResult == 0 else { throw .libfcgi("FCGX_Init", initResult) }

        // libfcgi's close lingers (shutdown, poll up to 2 s for the peer's
        // EOF) so a TCP RST cannot destroy an unread response. A Unix socket
        // delivers queued data before any reset, so there the worker closes
        // at once and is free for the next request (~7% CPU in make bench).
        let isUnix = Listener.isUnixSocket(listenFD)
        var threads: [pthread_t] = []
        for index in 0..<max(1, configuration.threads) {
            let worker = Worker(server: self, listenFD: listenFD, index: index, closeWithoutLingering: isUnix)
            state.withLock { $0.runningWorkers += 1 }
            let box = Unmanaged.passRetained(worker).toOpaque()
            var thread = pthread_t()
            let created = pthread_create(&thread, nil, { raw in
                guard let raw else { return nil }
                Unmanaged<Worker>.fromOpaque(raw).takeRetainedValue().run()
                return nil
            }, box)
            guard created == 0 else {
                Unmanaged<Worker>.fromOpaque(box).release()
                state.withLock { $0.runningWorkers -= 1 }
                stopAccepting()
                throw .systemCall("pthread_create", created)
            }
            threads.append(thread)
        }
        onReady()

        var received: Int32 = 0
        while true {
            let waited = sigwait(&signals, &received)
            if waited == 0 { break }
            if waited != EINTR { break }
        }
        stopAccepting()

        // Requests in flight finish on their own threads; wait for them, but
        // not forever: a stuck SMTP exchange must not block the exit.
        let deadline = ContinuousClock.now.advanced(by: configuration.shutdownGrace)
        while state.withLock({ $0.runningWorkers }) > 0, ContinuousClock.now < deadline {
            usleep(20_000)
        }
        if state.withLock({ $0.runningWorkers }) == 0 {
            for thread in threads { pthread_join(thread, nil) }
        }
    }

    /// Stops accepting: wakes every worker blocked in accept. Safe to call twice.
    public func stopAccepting() {
        let fd: Int32 = state.withLock { state in
            if state.stopping { return -1 }
            state.stopping = true
            return state.listenFD
        }
        guard fd >= 0 else { return }
        // shutdown() makes blocked accept() calls return at once on Linux;
        // close() alone would not.
        _ = Glibc.shutdown(fd, Int32(SHUT_RDWR))
        if case .unix(let path, _) = configuration.address { unlink(path) }
    }

    var isStopping: Bool { state.withLock { $0.stopping } }

    fileprivate func workerFinished() { state.withLock { $0.runningWorkers -= 1 } }

    fileprivate func handle(_ request: CGIRequest) -> CGIResponse { handler(request) }
}

/// One worker thread: its `FCGX_Request` lives at a fixed address for the
/// thread's life (libfcgi's streams point back into it), and its output
/// buffer is reused across requests.
private final class Worker {
    let server: FastCGIServer
    let listenFD: Int32
    let index: Int
    let closeWithoutLingering: Bool

    init(server: FastCGIServer, listenFD: Int32, index: Int, closeWithoutLingering: Bool) {
        self.server = server
        self.listenFD = listenFD
        self.index = index
        self.closeWithoutLingering = closeWithoutLingering
    }

    func run() {
        defer { server.workerFinished() }
        let request = UnsafeMutablePointer<FCGX_Request>.allocate(capacity: 1)
        defer { request.deallocate() }
        guard FCGX_InitRequest(request, listenFD, 0) == 0 else { return }
        var output: [UInt8] = []
        output.reserveCapacity(4096)
        var failures = 0
        while !server.isStopping {
            let accepted = FCGX_Accept_r(request)
            if accepted < 0 {
                if server.isStopping { break }
                // A transient accept failure (e.g. EMFILE): back off, don't spin.
                failures += 1
                usleep(UInt32(min(failures, 50)) * 10_000)
                continue
            }
            failures = 0
            let cgiRequest = readRequest(request)
            let response = server.handle(cgiRequest)
            output.removeAll(keepingCapacity: true)
            response.serialize(into: &output)
            output.withUnsafeBufferPointer { bytes in
                bytes.withMemoryRebound(to: CChar.self) { chars in
                    // A failed write means nginx gave up on the request; the
                    // outcome is already logged, nothing else to do.
                    _ = FCGX_PutStr(chars.baseAddress, Int32(chars.count), request.pointee.out)
                }
            }
            if closeWithoutLingering { request.pointee.detached = 1 }
            FCGX_Finish_r(request)
        }
        FCGX_Free(request, 0)
    }

    private func readRequest(_ request: UnsafeMutablePointer<FCGX_Request>) -> CGIRequest {
        // FCGX_GetParam strings die at the next accept: copy every one now.
        var params: [String: String] = [:]
        if var entry = request.pointee.envp {
            while let pointer = entry.pointee {
                Self.addParam(pointer, to: &params)
                entry += 1
            }
        }
        let body: CGIRequestBody
        switch BodyPolicy.decide(contentLength: params["CONTENT_LENGTH"], limit: server.configuration.maxBodyBytes) {
        case .refuse(let refusal):
            body = refusal
        case .read(let length):
            body = Self.readBody(length: length, from: request.pointee.in)
        }
        return CGIRequest(params: params, body: body)
    }

    private static func addParam(_ pointer: UnsafeMutablePointer<CChar>, to params: inout [String: String]) {
        guard let equals = strchr(pointer, Int32(UInt8(ascii: "="))) else { return }
        let nameLength = pointer.distance(to: equals)
        let name = UnsafeRawBufferPointer(start: pointer, count: nameLength)
        let value = equals + 1
        params[String(decoding: name, as: UTF8.self)] = String(decoding: UnsafeRawBufferPointer(start: value, count: strlen(value)), as: UTF8.self)
    }

    private static func readBody(length: Int, from stream: UnsafeMutablePointer<FCGX_Stream>?) -> CGIRequestBody {
        guard length > 0 else { return .complete([]) }
        var body = [UInt8](repeating: 0, count: length)
        var received = 0
        body.withUnsafeMutableBufferPointer { buffer in
            while received < length, let base = buffer.baseAddress {
                let chunk = (base + received).withMemoryRebound(to: CChar.self, capacity: length - received) {
                    FCGX_GetStr($0, Int32(length - received), stream)
                }
                if chunk <= 0 { break }
                received += Int(chunk)
            }
        }
        return received == length ? .complete(body) : .incomplete(declared: length, received: received)
    }
}
