/// A byte stream to a server: TCP, optionally upgraded to TLS, with a read
/// buffer and line framing. It knows nothing of SMTP: every failure is a
/// `StreamError`, and every operation takes the deadline it must finish by.
final class NetworkStream {
    private let socket: TCPSocket
    private var tls: TLSSession?
    private var buffer: [UInt8] = []
    private var readIndex = 0
    private var scratch = [UInt8](repeating: 0, count: 16 * 1024)

    private init(socket: TCPSocket) {
        self.socket = socket
    }

    deinit { close(graceful: false) }

    /// Connects to `host:port` (see `TCPSocket.connect`).
    static func connect(host: String, port: Int, deadline: ContinuousClock.Instant,
                        resolver: NameResolver) throws(StreamError) -> NetworkStream {
        NetworkStream(socket: try TCPSocket.connect(host: host, port: port, deadline: deadline, resolver: resolver))
    }

    /// Runs the TLS client handshake over the connection and verifies the
    /// certificate and host name when the context says so. Bytes already
    /// buffered stay buffered: callers that must not trust them (STARTTLS)
    /// call `discardBuffered()` first.
    func startTLS(context: TLSContext, host: String, deadline: ContinuousClock.Instant) throws(StreamError) {
        guard tls == nil else { throw .tls("TLS already active") }
        guard socket.isOpen else { throw .closedByPeer }
        let session = try TLSSession(context: context, socket: socket, host: host)
        tls = session  // owned from here, even when the handshake fails
        try session.handshake(on: socket, verify: context.verify, deadline: deadline)
    }

    // MARK: writing

    /// Writes all of `bytes` (one system call where the kernel takes it all).
    func write(_ bytes: [UInt8], deadline: ContinuousClock.Instant) throws(StreamError) {
        guard socket.isOpen else { throw .closedByPeer }
        // withUnsafeBytes rethrows untyped errors: carry ours out as a Result.
        let result = bytes.withUnsafeBytes { raw -> Result<Void, StreamError> in
            do throws(StreamError) {
                if let tls {
                    try tls.write(raw, on: socket, deadline: deadline)
                } else {
                    try socket.send(raw, deadline: deadline)
                }
                return .success(())
            } catch {
                return .failure(error)
            }
        }
        try result.get()
    }

    // MARK: reading

    /// Drops everything received but not consumed.
    func discardBuffered() {
        buffer.removeAll(keepingCapacity: true)
        readIndex = 0
    }

    /// One line without its line end (CRLF or a bare LF). A line that grows
    /// past `maxLength` bytes without an end is refused, so a hostile peer
    /// cannot make us buffer without bound.
    func readLine(maxLength: Int, deadline: ContinuousClock.Instant) throws(StreamError) -> ArraySlice<UInt8> {
        var searchFrom = readIndex
        while true {
            if let lf = buffer[searchFrom...].firstIndex(of: 10) {
                var end = lf
                if end > readIndex, buffer[end - 1] == 13 { end -= 1 }
                let line = buffer[readIndex..<end]
                readIndex = lf + 1
                return line
            }
            searchFrom = buffer.count
            if buffer.count - readIndex > maxLength + 2 { throw .lineTooLong(limit: maxLength) }
            // Compact only when nothing is buffered, or when at least half
            // the buffer is consumed, so lines are not copied repeatedly.
            if readIndex > 0 && (readIndex == buffer.count || readIndex > buffer.count / 2) {
                buffer.removeSubrange(0..<readIndex)
                searchFrom -= readIndex
                readIndex = 0
            }
            try fill(deadline: deadline)
        }
    }

    /// Whether the peer has been silent since the last line was read: true
    /// when nothing is buffered and nothing waits on the socket; false when
    /// it sent something (a session idle between transactions should not:
    /// usually a 421 before it hangs up). Never waits: one read attempt.
    /// Throws when the peer has closed the connection.
    ///
    /// Over TLS the read also takes in records that carry no data (a TLS
    /// 1.3 session ticket), which are not "something sent".
    func isQuiet() throws(StreamError) -> Bool {
        guard socket.isOpen else { throw .closedByPeer }
        if readIndex < buffer.count { return false }
        do throws(StreamError) {
            // A deadline already reached: the read is tried once, and
            // "would block" comes back as .timedOut instead of a wait.
            try fill(deadline: .now)
        } catch {
            if case .timedOut = error { return true }
            throw error
        }
        return false
    }

    /// Reads whatever is available (at least one byte) into the buffer.
    private func fill(deadline: ContinuousClock.Instant) throws(StreamError) {
        guard socket.isOpen else { throw .closedByPeer }
        let result = scratch.withUnsafeMutableBytes { raw -> Result<Int, StreamError> in
            do throws(StreamError) {
                if let tls { return .success(try tls.read(into: raw, on: socket, deadline: deadline)) }
                return .success(try socket.receive(into: raw, deadline: deadline))
            } catch {
                return .failure(error)
            }
        }
        let got = try result.get()
        buffer.append(contentsOf: scratch[0..<got])
    }

    // MARK: closing

    /// Closes the connection. `graceful` sends a TLS close_notify first
    /// (never waiting for the peer's), which the session skips after a
    /// fatal TLS error. Calling it again does nothing.
    func close(graceful: Bool) {
        if let tls {
            if graceful && socket.isOpen { tls.shutdown() }
            self.tls = nil
        }
        socket.close()
        buffer = []
        readIndex = 0
    }
}
