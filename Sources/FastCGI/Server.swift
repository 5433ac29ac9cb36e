import CFastCGI
import Synchronization
import Glibc
import Posix

/// The application: one plain request in, one plain response out. Called
/// concurrently from every worker thread, so it must be thread-safe.
public typealias CGIHandler = @Sendable (CGIRequest) -> CGIResponse

/// A libfcgi responder: `threads` workers share one listening socket; each
/// accepts its own connections (`Acceptor`) and hands them to libfcgi, which
/// parses the records into its own `FCGX_Request`.
///
/// Shutdown: libfcgi's own SIGTERM handler only sets a flag that a blocked
/// accept never sees, so `run()` blocks SIGTERM/SIGINT in every thread and
/// waits for them with `sigwait`. On a signal the workers stop accepting:
/// each is woken from accept(2) by a signal of its own (`Acceptor`), which
/// leaves the listening socket untouched, so a socket inherited from systemd
/// or spawn-fcgi keeps listening for the process that replaces this one.
/// A socket this process created is also shut down and its file removed.
/// Requests in flight finish, then `run()` returns.
public final class FastCGIServer: Sendable {
    public struct Configuration: Sendable {
        public var address: ListenAddress
        public var threads: Int
        public var maxBodyBytes: Int
        /// How long `run()` waits for requests in flight after a signal.
        public var shutdownGrace: Duration
        /// After answering, how long a worker goes on reading (and
        /// discarding) request input the application did not read.
        public var discardDeadline: Duration

        public init(address: ListenAddress, threads: Int = 16, maxBodyBytes: Int = 1 << 20,
                    shutdownGrace: Duration = .seconds(25), discardDeadline: Duration = .seconds(2)) {
            self.address = address
            self.threads = threads
            self.maxBodyBytes = maxBodyBytes
            self.shutdownGrace = shutdownGrace
            self.discardDeadline = discardDeadline
        }
    }

    public let configuration: Configuration
    private let handler: CGIHandler
    private let listener = Mutex<ListeningSocket?>(nil)
    private let stopping = Atomic<Bool>(false)
    private let runningWorkers = Atomic<Int>(0)
    /// The thread waiting in `run()`, for `stop()`.
    private let waiter = Mutex<(thread: pthread_t?, stopRequested: Bool, signalled: Bool)>((nil, false, false))

    public init(configuration: Configuration, handler: @escaping CGIHandler) {
        self.configuration = configuration
        self.handler = handler
    }

    /// Blocks SIGTERM and SIGINT in the calling thread, and so in every
    /// thread created after it: call it first thing in `main`, before any
    /// library starts a thread. A stop signal that arrives while the server
    /// is still starting then waits, pending, for `run()`'s `sigwait`,
    /// instead of killing the process by its default action.
    public static func holdStopSignals() throws(FastCGIError) {
        var signals = sigset_t()
        sigemptyset(&signals)
        sigaddset(&signals, SIGTERM)
        sigaddset(&signals, SIGINT)
        let result = pthread_sigmask(SIG_BLOCK, &signals, nil)
        guard result == 0 else { throw .systemCall(SystemCallError("pthread_sigmask", code: result)) }
    }

    /// Undoes `holdStopSignals` in the calling thread (plain CGI: one
    /// request, no `run()`; the web server's SIGTERM must end it).
    public static func releaseStopSignals() {
        var signals = sigset_t()
        sigemptyset(&signals)
        sigaddset(&signals, SIGTERM)
        sigaddset(&signals, SIGINT)
        pthread_sigmask(SIG_UNBLOCK, &signals, nil)
    }

    /// Opens the socket (before anything else, so start-up errors surface at once).
    public func bind() throws(FastCGIError) {
        let socket = try ListeningSocket.open(configuration.address)
        listener.withLock { $0 = socket }
    }

    /// Serves until SIGTERM or SIGINT; returns after requests in flight have
    /// finished (or the grace period ran out). `onReady` runs once workers wait.
    public func run(onReady: () -> Void = {}) throws(FastCGIError) {
        if listener.withLock({ $0 == nil }) { try bind() }
        guard let socket = listener.withLock({ $0 }) else { throw .notListening(-1) }

        // Block the signals before FCGX_Init and before any thread exists, so
        // every thread inherits the mask and only sigwait below sees them.
        // The wake signal is blocked too: a worker unblocks it only while it
        // waits in accept(2), so it never interrupts a request being served.
        var signals = sigset_t()
        sigemptyset(&signals)
        sigaddset(&signals, SIGTERM)
        sigaddset(&signals, SIGINT)
        var blocked = signals
        sigaddset(&blocked, Acceptor.wakeSignal)
        var previous = sigset_t()
        let maskResult = pthread_sigmask(SIG_BLOCK, &blocked, &previous)
        guard maskResult == 0 else { throw .systemCall(SystemCallError("pthread_sigmask", code: maskResult)) }
        defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
        // From here on `stop()` may end the wait with a SIGTERM to this thread.
        let stopRequested = waiter.withLock { waiter in
            waiter.thread = pthread_self()
            return waiter.stopRequested
        }
        defer { endStopWindow() }  // before the mask is restored
        // A peer that hangs up mid-response must not kill the process.
        signal(SIGPIPE, SIG_IGN)
        try Acceptor.installWakeHandler()

        let initResult = FCGX_Init()
        guard initResult == 0 else { throw .libfcgi("FCGX_Init", initResult) }

        var threads: [pthread_t] = []
        for _ in 0..<max(1, configuration.threads) {
            let worker = Worker(server: self, acceptor: Acceptor(socket: socket))
            runningWorkers.add(1, ordering: .sequentiallyConsistent)
            let box = Unmanaged.passRetained(worker).toOpaque()
            var thread = pthread_t()
            let created = pthread_create(&thread, nil, { raw in
                guard let raw else { return nil }
                Unmanaged<Worker>.fromOpaque(raw).takeRetainedValue().run()
                return nil
            }, box)
            guard created == 0 else {
                Unmanaged<Worker>.fromOpaque(box).release()
                runningWorkers.subtract(1, ordering: .sequentiallyConsistent)
                stopAccepting()
                wake(threads, until: .now.advanced(by: configuration.shutdownGrace))
                throw .systemCall(SystemCallError("pthread_create", code: created))
            }
            threads.append(thread)
        }
        onReady()

        var received: Int32 = 0
        while !stopRequested {
            let waited = sigwait(&signals, &received)
            if waited == 0 { break }
            if waited != EINTR { break }
        }
        stopAccepting()
        // Requests in flight finish on their own threads; wait for them, but
        // not forever: a stuck SMTP exchange must not block the exit.
        if wake(threads, until: .now.advanced(by: configuration.shutdownGrace)) {
            for thread in threads { pthread_join(thread, nil) }
        }
    }

    /// Ends `run()` as SIGTERM would, from any thread (in-process tests):
    /// the signal goes to the thread waiting in `run()` alone, where it is
    /// blocked, never to the process. Called before `run()` waits, `run()`
    /// stops as soon as its workers are started. Safe to call twice.
    public func stop() {
        waiter.withLock { waiter in
            waiter.stopRequested = true
            guard let thread = waiter.thread, !waiter.signalled else { return }
            waiter.signalled = true
            pthread_kill(thread, SIGTERM)
        }
    }

    /// After `run()`'s wait: no more signals from `stop()`, and one it sent
    /// that the wait did not take (another signal came first) is taken now,
    /// so that restoring the signal mask cannot deliver it.
    private func endStopWindow() {
        let signalled = waiter.withLock { waiter in
            waiter.thread = nil
            return waiter.signalled
        }
        guard signalled else { return }
        var term = sigset_t()
        sigemptyset(&term)
        sigaddset(&term, SIGTERM)
        var now = timespec()
        while sigtimedwait(&term, nil, &now) == SIGTERM {}
    }

    /// Stops accepting. A socket this process created is shut down (which
    /// refuses new connections at once) and its file removed; an inherited
    /// one is left listening for whoever takes over. Safe to call twice.
    public func stopAccepting() {
        guard !stopping.exchange(true, ordering: .sequentiallyConsistent) else { return }
        listener.withLock { $0?.stopListening() }
    }

    var isStopping: Bool { stopping.load(ordering: .sequentiallyConsistent) }

    /// Signals every worker until all have returned or `deadline` passed.
    /// A worker between its stop check and accept(2) misses one signal, so
    /// it is sent again; workers busy with a request keep it pending (blocked)
    /// until they next wait. Returns whether every worker finished.
    @discardableResult
    private func wake(_ threads: [pthread_t], until deadline: ContinuousClock.Instant) -> Bool {
        while runningWorkers.load(ordering: .sequentiallyConsistent) > 0 {
            guard ContinuousClock.now < deadline else { return false }
            for thread in threads { pthread_kill(thread, Acceptor.wakeSignal) }
            usleep(10_000)
        }
        return true
    }

    fileprivate func workerFinished() { runningWorkers.subtract(1, ordering: .sequentiallyConsistent) }

    fileprivate func handle(_ request: CGIRequest) -> CGIResponse { handler(request) }
}

/// One worker thread: its `FCGX_Request` lives at a fixed address for the
/// thread's life (libfcgi's streams point back into it), and its output
/// buffer is reused across requests.
private final class Worker {
    let server: FastCGIServer
    let acceptor: Acceptor

    init(server: FastCGIServer, acceptor: Acceptor) {
        self.server = server
        self.acceptor = acceptor
    }

    func run() {
        defer { server.workerFinished() }
        let request = UnsafeMutablePointer<FCGX_Request>.allocate(capacity: 1)
        defer { request.deallocate() }
        // No listening socket for libfcgi (-1): it must never block in an
        // accept of its own, which nothing could wake. Given a connection it
        // parses it; on a broken one its retry fails at once (EBADF).
        guard FCGX_InitRequest(request, -1, 0) == 0 else { return }
        defer { FCGX_Free(request, 1) }
        var output: [UInt8] = []
        output.reserveCapacity(4096)
        while let connection = acceptor.accept(while: { !server.isStopping }) {
            request.pointee.ipcFd = connection
            serve(connection: request, output: &output)
        }
    }

    /// Serves the requests of one connection: one, unless the web server
    /// keeps connections open (`fastcgi_keep_conn on`).
    private func serve(connection request: UnsafeMutablePointer<FCGX_Request>, output: inout [UInt8]) {
        repeat {
            // FCGX_Accept_r first finishes the previous request, which closes
            // the connection unless it is marked kept: mark it, so the
            // connection just handed over survives; libfcgi then reads the
            // request's own keep-alive flag from its FCGI_BEGIN_REQUEST.
            request.pointee.keepConnection = 1
            guard FCGX_Accept_r(request) == 0 else { return }  // libfcgi closed it
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
            if case .complete = cgiRequest.body {
                finish(request, bodyReadWhole: true)
            } else {
                finish(request, bodyReadWhole: false)
            }
        } while request.pointee.ipcFd >= 0 && !server.isStopping
    }

    /// Delivers the answer whole, then closes (or keeps) the connection.
    ///
    /// Closing a socket whose input is not all read makes the kernel reset
    /// the connection, and the web server may then lose the answer (a 502,
    /// or a cut-off body). So the answer goes out first (closing the writers
    /// sends FCGI_END_REQUEST). Where the body was read whole, the request's
    /// end record follows right behind it and the connection closes at once.
    /// Otherwise (a body refused unread, or cut short) `InputDrain` ends it.
    private func finish(_ request: UnsafeMutablePointer<FCGX_Request>, bodyReadWhole: Bool) {
        FCGX_FClose(request.pointee.err)
        FCGX_FClose(request.pointee.out)
        if !(bodyReadWhole && InputDrain.reachEnd(of: request)) {
            InputDrain.discardUntilPeerCloses(request, within: server.configuration.discardDeadline)
        }
        // Nothing is left unread, or the lingering is done: libfcgi's own
        // lingering close (shut down, poll up to 2 s) has nothing to add.
        request.pointee.detached = 1
        FCGX_Finish_r(request)
    }

    private func readRequest(_ request: UnsafeMutablePointer<FCGX_Request>) -> CGIRequest {
        // FCGX_GetParam strings die at the next accept: copy every one now.
        // nginx sends about 25 parameters: room for them up front saves
        // the table's regrowth (3% of a send's instructions).
        var params: [String: String] = Dictionary(minimumCapacity: 40)
        if var entry = request.pointee.envp {
            while let pointer = entry.pointee {
                Self.addParam(pointer, to: &params)
                entry += 1
            }
        }
        let body: CGIRequestBody
        let limit = server.configuration.maxBodyBytes
        if (params["CONTENT_LENGTH"] ?? "").isEmpty {
            // No length: Apache mod_proxy_fcgi passes a chunked body it has
            // not read whole this way. FastCGI ends the input with an empty
            // FCGI_STDIN record (nginx sends it at once when there is no body).
            body = Self.readBodyToEnd(limit: limit, from: request.pointee.in)
        } else {
            switch BodyPolicy.decide(contentLength: params["CONTENT_LENGTH"], limit: limit) {
            case .refuse(let refusal):
                body = refusal
            case .read(let length):
                body = Self.readBody(length: length, from: request.pointee.in)
            }
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
                // libfcgi counts in Int32: ask for at most 1 MiB at a time.
                let wanted = min(length - received, 1 << 20)
                let chunk = (base + received).withMemoryRebound(to: CChar.self, capacity: wanted) {
                    FCGX_GetStr($0, Int32(wanted), stream)
                }
                if chunk <= 0 { break }
                received += Int(chunk)
            }
        }
        return received == length ? .complete(body) : .incomplete(declared: length, received: received)
    }

    /// The FCGI_STDIN stream up to its end record, refused as too large once
    /// it passes `limit` (what is left is then discarded by `finish`).
    private static func readBodyToEnd(limit: Int, from stream: UnsafeMutablePointer<FCGX_Stream>?) -> CGIRequestBody {
        guard let stream else { return .complete([]) }
        var body: [UInt8] = []
        withUnsafeTemporaryAllocation(of: CChar.self, capacity: 64 * 1024) { scratch in
            guard let base = scratch.baseAddress else { return }
            while body.count <= limit {
                let count = Int(FCGX_GetStr(base, Int32(scratch.count), stream))
                if count > 0 { body.append(contentsOf: UnsafeRawBufferPointer(start: base, count: count)) }
                if count < scratch.count { return }  // the end record, or the stream broke off
            }
        }
        if body.count > limit { return .tooLarge(declared: body.count, limit: limit) }
        return FCGX_GetError(stream) == 0 ? .complete(body) : .incomplete(declared: nil, received: body.count)
    }
}

/// Reading what is left of a request's input (FCGI_STDIN) after the answer.
enum InputDrain {
    /// With the body read whole, reads the end-of-input record, which the
    /// web server sends right behind the body (usually it is in libfcgi's
    /// buffer already). True when the input ended exactly there.
    static func reachEnd(of request: UnsafeMutablePointer<FCGX_Request>) -> Bool {
        guard let input = request.pointee.in else { return true }
        return FCGX_GetChar(input) == EOF && FCGX_GetError(input) == 0
    }

    /// The lingering close, for input left unread: shut down our side (the
    /// web server sees the answer end and closes), then read and discard
    /// until it has closed or `deadline` passed, so the close that follows
    /// resets nothing. Discarded bytes go through one fixed scratch buffer.
    /// The connection is not kept, whatever the web server asked.
    static func discardUntilPeerCloses(_ request: UnsafeMutablePointer<FCGX_Request>, within deadline: Duration) {
        request.pointee.keepConnection = 0
        let fd = request.pointee.ipcFd
        let until = ContinuousClock.now.advanced(by: deadline)
        // Any failure ends the wait: the close that follows is all that is left.
        try? withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 64 * 1024) { scratch throws(SystemCallError) in
            _ = try systemCall("shutdown") { shutdown(fd, Int32(SHUT_WR)) }
            while try waitUntilReady(fd, for: Int16(POLLIN), until: until) != nil {
                let count = try systemCall("read") { read(fd, scratch.baseAddress, scratch.count) }
                if count == 0 { return }  // the peer closed: done
            }
        }
    }
}
