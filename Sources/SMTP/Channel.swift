import COpenSSL
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Milliseconds from now until `deadline`, rounded up so a poll never spins
/// with 0 while time remains; nil once the deadline has passed.
func millisecondsUntil(_ deadline: ContinuousClock.Instant) -> Int32? {
    let remaining = ContinuousClock.now.duration(to: deadline)
    guard remaining > .zero else { return nil }
    let (seconds, attoseconds) = remaining.components
    let ms = seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
    return Int32(clamping: max(ms, 1))
}

func errnoText(_ code: Int32) -> String {
    // glibc >= 2.32 keeps strerror's result per thread for unknown codes and
    // static for known ones, so this is thread-safe here.
    String(cString: strerror(code))
}

/// The OpenSSL errors queued on this thread, most specific reason first,
/// and the queue emptied (it is per thread and threads are reused).
func takeOpenSSLErrors() -> String {
    var reasons: [String] = []
    while true {
        let e = ERR_get_error()
        if e == 0 { break }
        if let reason = ERR_reason_error_string(e) {
            reasons.append(String(cString: reason))
        } else {
            var buf = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(e, &buf, buf.count)
            reasons.append(String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
    }
    return reasons.isEmpty ? "unknown error" : reasons.joined(separator: "; ")
}

/// A connected TCP socket, optionally wrapped in TLS, with a read buffer.
///
/// The socket is always non-blocking: every wait goes through poll() with
/// the time left until the operation's deadline, which is how connect, read,
/// write and the TLS handshake all get timeouts without threads or signals.
final class Channel {
    private var fd: Int32
    private var ssl: OpaquePointer?
    /// Set after a fatal TLS error: OpenSSL forbids SSL_shutdown then.
    private var tlsFailed = false
    private var buffer: [UInt8] = []
    private var readIndex = 0
    private var scratch = [UInt8](repeating: 0, count: 16 * 1024)
    let server: String

    private init(fd: Int32, server: String) {
        self.fd = fd
        self.server = server
    }

    deinit { close(graceful: false) }

    var isTLS: Bool { ssl != nil }

    private func fail(_ kind: SMTPError.Kind, _ stage: SMTPStage) -> SMTPError {
        SMTPError(kind, stage: stage, server: server)
    }

    // MARK: connect

    /// Resolves `host` and connects to the first address that answers.
    static func connect(host: String, port: Int, server: String, deadline: ContinuousClock.Instant) throws(SMTPError) -> Channel {
        guard (1...65535).contains(port) else {
            throw SMTPError(.connectFailed("invalid port \(port)"), stage: .connect, server: server)
        }
        let name = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(name, String(port), &hints, &list)
        guard rc == 0, let first = list else {
            let why = rc == EAI_SYSTEM ? errnoText(errno) : String(cString: gai_strerror(rc))
            throw SMTPError(.resolveFailed(why), stage: .connect, server: server)
        }
        defer { freeaddrinfo(list) }

        var lastError: SMTPError?
        var allRefused = true
        var next: UnsafeMutablePointer<addrinfo>? = first
        while let ai = next {
            next = ai.pointee.ai_next
            do throws(SMTPError) {
                return try connectOne(ai.pointee, server: server, deadline: deadline)
            } catch {
                if case .timeout = error.kind { throw error }  // no time left for other addresses
                if case .connectionRefused = error.kind {} else { allRefused = false }
                lastError = error
            }
        }
        if allRefused { throw SMTPError(.connectionRefused, stage: .connect, server: server) }
        throw lastError ?? SMTPError(.resolveFailed("no addresses"), stage: .connect, server: server)
    }

    private static func connectOne(_ ai: addrinfo, server: String, deadline: ContinuousClock.Instant) throws(SMTPError) -> Channel {
        let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue)
        let fd = socket(ai.ai_family, type, ai.ai_protocol)
        guard fd >= 0 else {
            throw SMTPError(.connectFailed("socket() failed: \(errnoText(errno))"), stage: .connect, server: server)
        }
        // From here the Channel owns fd and closes it on every error path.
        let channel = Channel(fd: fd, server: server)
        var one: Int32 = 1
        // Commands are written in whole groups; Nagle would only add delay
        // (~40 ms per message with delayed ACKs).
        guard setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size)) == 0 else {
            throw SMTPError(.connectFailed("setsockopt(TCP_NODELAY) failed: \(errnoText(errno))"), stage: .connect, server: server)
        }
        if Glibc.connect(fd, ai.ai_addr, ai.ai_addrlen) != 0 {
            let e = errno
            // EINTR on a non-blocking connect: it carries on in the background,
            // exactly like EINPROGRESS.
            guard e == EINPROGRESS || e == EINTR else {
                throw SMTPError(e == ECONNREFUSED ? .connectionRefused : .connectFailed("connect failed: \(errnoText(e))"),
                                stage: .connect, server: server)
            }
            try channel.waitFor(Int16(POLLOUT), stage: .connect, deadline: deadline)
            var soError: Int32 = 0
            var len = socklen_t(MemoryLayout<Int32>.size)
            guard getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &len) == 0 else {
                throw SMTPError(.connectFailed("getsockopt(SO_ERROR) failed: \(errnoText(errno))"), stage: .connect, server: server)
            }
            if soError != 0 {
                throw SMTPError(soError == ECONNREFUSED ? .connectionRefused : .connectFailed("connect failed: \(errnoText(soError))"),
                                stage: .connect, server: server)
            }
        }
        return channel
    }

    // MARK: waiting

    /// Waits until `fd` is ready for `events` or the deadline passes.
    /// POLLERR/POLLHUP also return: the next read or write reports the error.
    private func waitFor(_ events: Int16, stage: SMTPStage, deadline: ContinuousClock.Instant) throws(SMTPError) {
        while true {
            guard let ms = millisecondsUntil(deadline) else { throw fail(.timeout, stage) }
            var p = pollfd(fd: fd, events: events, revents: 0)
            let rc = poll(&p, 1, ms)
            if rc > 0 { return }
            if rc == 0 { continue }  // loop re-checks the deadline
            let e = errno
            if e == EINTR { continue }
            throw fail(.connectFailed("poll failed: \(errnoText(e))"), stage)
        }
    }

    // MARK: writing

    /// Writes all of `bytes` (one syscall where the kernel takes it all).
    func write(_ bytes: [UInt8], stage: SMTPStage, deadline: ContinuousClock.Instant) throws(SMTPError) {
        guard fd >= 0 else { throw fail(.connectionClosed, stage) }
        if ssl != nil {
            try tlsWrite(bytes, stage: stage, deadline: deadline)
            return
        }
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { raw in
                // MSG_NOSIGNAL: a peer that closed must give EPIPE, not kill
                // the whole server with SIGPIPE.
                send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
            }
            if n >= 0 {
                offset += n
                continue
            }
            let e = errno
            switch e {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: try waitFor(Int16(POLLOUT), stage: stage, deadline: deadline)
            case EPIPE, ECONNRESET: throw fail(.connectionClosed, stage)
            default: throw fail(.connectFailed("write failed: \(errnoText(e))"), stage)
            }
        }
    }

    private func tlsWrite(_ bytes: [UInt8], stage: SMTPStage, deadline: ContinuousClock.Instant) throws(SMTPError) {
        guard let ssl else { throw fail(.connectionClosed, stage) }
        var offset = 0
        while offset < bytes.count {
            ERR_clear_error()
            var written = 0
            let rc = bytes.withUnsafeBytes { raw in
                SSL_write_ex(ssl, raw.baseAddress! + offset, raw.count - offset, &written)
            }
            let savedErrno = errno
            if rc == 1 {
                offset += written
                continue
            }
            try handleTLSError(rc, savedErrno: savedErrno, operation: "TLS write", stage: stage, deadline: deadline)
        }
    }

    /// Turns a failed SSL_* call into a wait (WANT_READ/WANT_WRITE, then the
    /// caller retries) or a thrown error.
    private func handleTLSError(_ rc: Int32, savedErrno: Int32, operation: String, stage: SMTPStage,
                                deadline: ContinuousClock.Instant) throws(SMTPError) {
        guard let ssl else { throw fail(.connectionClosed, stage) }
        let code = SSL_get_error(ssl, rc)
        switch code {
        case SSL_ERROR_WANT_READ:
            try waitFor(Int16(POLLIN), stage: stage, deadline: deadline)
        case SSL_ERROR_WANT_WRITE:
            try waitFor(Int16(POLLOUT), stage: stage, deadline: deadline)
        case SSL_ERROR_ZERO_RETURN:
            throw fail(.connectionClosed, stage)
        case SSL_ERROR_SYSCALL:
            tlsFailed = true
            _ = takeOpenSSLErrors()
            if savedErrno == 0 || savedErrno == ECONNRESET || savedErrno == EPIPE {
                throw fail(.connectionClosed, stage)
            }
            throw fail(.connectFailed("\(operation) failed: \(errnoText(savedErrno))"), stage)
        default:
            tlsFailed = true
            let reason = ERR_GET_REASON(ERR_peek_error())
            let text = takeOpenSSLErrors()
            // OpenSSL 3 reports a TCP close without close_notify this way.
            if reason == SSL_R_UNEXPECTED_EOF_WHILE_READING { throw fail(.connectionClosed, stage) }
            throw fail(.tls("\(operation) failed: \(text)"), stage)
        }
    }

    // MARK: reading

    /// Bytes received but not yet consumed.
    var bufferedByteCount: Int { buffer.count - readIndex }

    /// Drops everything received but not consumed. Used right after the
    /// STARTTLS 220: anything a man in the middle appended there must not be
    /// read as if it had come over TLS.
    func discardBuffered() {
        buffer.removeAll(keepingCapacity: true)
        readIndex = 0
    }

    /// One line without its line end (CRLF or a bare LF).
    func readLine(stage: SMTPStage, deadline: ContinuousClock.Instant) throws(SMTPError) -> ArraySlice<UInt8> {
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
            if buffer.count - readIndex > SMTPReplyParser.maxLineLength + 2 {
                throw fail(.protocolViolation("reply line longer than \(SMTPReplyParser.maxLineLength) bytes"), stage)
            }
            // Compact only when nothing is buffered, or when at least half
            // the buffer is consumed, so lines are not copied repeatedly.
            if readIndex > 0 && (readIndex == buffer.count || readIndex > buffer.count / 2) {
                buffer.removeSubrange(0..<readIndex)
                searchFrom -= readIndex
                readIndex = 0
            }
            try fill(stage: stage, deadline: deadline)
        }
    }

    /// One complete reply.
    func readReply(stage: SMTPStage, deadline: ContinuousClock.Instant) throws(SMTPError) -> SMTPReply {
        var parser = SMTPReplyParser()
        while true {
            let line = try readLine(stage: stage, deadline: deadline)
            do throws(SMTPReplyParser.ParseError) {
                if let reply = try parser.consume(line: line) { return reply }
            } catch {
                throw fail(.protocolViolation(error.message), stage)
            }
        }
    }

    /// Reads whatever is available (at least one byte) into the buffer.
    private func fill(stage: SMTPStage, deadline: ContinuousClock.Instant) throws(SMTPError) {
        guard fd >= 0 else { throw fail(.connectionClosed, stage) }
        let capacity = scratch.count
        while true {
            if let ssl {
                ERR_clear_error()
                var got = 0
                let rc = scratch.withUnsafeMutableBytes { SSL_read_ex(ssl, $0.baseAddress!, capacity, &got) }
                let savedErrno = errno
                if rc == 1 {
                    buffer.append(contentsOf: scratch[0..<got])
                    return
                }
                try handleTLSError(rc, savedErrno: savedErrno, operation: "TLS read", stage: stage, deadline: deadline)
            } else {
                let n = scratch.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, capacity, 0) }
                if n > 0 {
                    buffer.append(contentsOf: scratch[0..<n])
                    return
                }
                if n == 0 { throw fail(.connectionClosed, stage) }
                let e = errno
                switch e {
                case EINTR: continue
                case EAGAIN, EWOULDBLOCK: try waitFor(Int16(POLLIN), stage: stage, deadline: deadline)
                case ECONNRESET: throw fail(.connectionClosed, stage)
                default: throw fail(.connectFailed("read failed: \(errnoText(e))"), stage)
                }
            }
        }
    }

    // MARK: TLS

    /// Runs the TLS client handshake over the connected socket and verifies
    /// the certificate and host name when the context says so.
    func startTLS(context: TLSContext, host: String, deadline: ContinuousClock.Instant) throws(SMTPError) {
        let stage = SMTPStage.tls
        guard ssl == nil, fd >= 0 else { throw fail(.protocolViolation("TLS already active"), stage) }
        ERR_clear_error()
        guard let newSSL = SSL_new(context.ctx) else {
            throw fail(.tls("TLS setup failed: SSL_new: \(takeOpenSSLErrors())"), stage)
        }
        ssl = newSSL  // owned from here; close() frees it
        guard let bio = BIO_new(socketBIOMethod.method) else {
            throw fail(.tls("TLS setup failed: BIO_new: \(takeOpenSSLErrors())"), stage)
        }
        BIO_set_data(bio, UnsafeMutableRawPointer(bitPattern: Int(fd) + 1))
        BIO_set_init(bio, 1)
        SSL_set_bio(newSSL, bio, bio)  // the SSL owns the BIO now

        // Our write buffers are Swift arrays, which may move between retries.
        _ = mailgate_SSL_set_mode(newSSL, Int(SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER))

        let name = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        let isIPLiteral = Self.isIPLiteral(name)
        if !isIPLiteral {
            // SNI is for DNS names only (RFC 6066 forbids IP literals).
            guard mailgate_SSL_set_tlsext_host_name(newSSL, name) == 1 else {
                throw fail(.tls("TLS setup failed: cannot set SNI name: \(takeOpenSSLErrors())"), stage)
            }
        }
        if context.verify {
            if isIPLiteral {
                guard let param = SSL_get0_param(newSSL), X509_VERIFY_PARAM_set1_ip_asc(param, name) == 1 else {
                    throw fail(.tls("TLS setup failed: cannot set expected IP address: \(takeOpenSSLErrors())"), stage)
                }
            } else {
                guard SSL_set1_host(newSSL, name) == 1 else {
                    throw fail(.tls("TLS setup failed: cannot set expected host name: \(takeOpenSSLErrors())"), stage)
                }
            }
        }

        while true {
            ERR_clear_error()
            let rc = SSL_connect(newSSL)
            let savedErrno = errno
            if rc == 1 { return }
            let code = SSL_get_error(newSSL, rc)
            if code == SSL_ERROR_WANT_READ {
                try waitFor(Int16(POLLIN), stage: stage, deadline: deadline)
                continue
            }
            if code == SSL_ERROR_WANT_WRITE {
                try waitFor(Int16(POLLOUT), stage: stage, deadline: deadline)
                continue
            }
            tlsFailed = true
            let verifyResult = SSL_get_verify_result(newSSL)
            if context.verify && verifyResult != Int(X509_V_OK) {
                _ = takeOpenSSLErrors()
                let why = String(cString: X509_verify_cert_error_string(verifyResult))
                throw fail(.tls("TLS handshake failed: certificate verify failed (\(why))"), stage)
            }
            if code == SSL_ERROR_SYSCALL {
                _ = takeOpenSSLErrors()
                let why = savedErrno == 0 ? "connection closed by server" : errnoText(savedErrno)
                throw fail(.tls("TLS handshake failed: \(why)"), stage)
            }
            throw fail(.tls("TLS handshake failed: \(takeOpenSSLErrors())"), stage)
        }
    }

    static func isIPLiteral(_ host: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
    }

    // MARK: closing

    /// Closes the socket. `graceful` sends a TLS close_notify first (never
    /// waiting for the peer's), which is only allowed after no fatal error.
    func close(graceful: Bool) {
        if let ssl {
            if graceful && !tlsFailed && fd >= 0 {
                ERR_clear_error()
                _ = SSL_shutdown(ssl)
                ERR_clear_error()
            }
            SSL_free(ssl)
            self.ssl = nil
        }
        if fd >= 0 {
            // close() is not retried on EINTR: on Linux the descriptor is
            // released either way, and retrying could close someone else's.
            _ = Glibc.close(fd)
            fd = -1
        }
        buffer = []
        readIndex = 0
    }
}

// MARK: - socket BIO

/// OpenSSL's own socket BIO writes with write(2), which raises SIGPIPE when
/// the server has gone; in a server process that must not be fatal and we
/// cannot own the process-wide signal disposition. This BIO does the same
/// job with send(MSG_NOSIGNAL). The descriptor is stored as BIO data (+1, so
/// that descriptor 0 is not a null pointer).
struct BIOMethodBox: @unchecked Sendable {  // immutable after creation; OpenSSL reads it concurrently
    let method: OpaquePointer?
}

let socketBIOMethod: BIOMethodBox = {
    guard let m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "mailgate socket") else {
        return BIOMethodBox(method: nil)  // BIO_new(nil) then fails and is reported
    }
    _ = BIO_meth_set_write(m) { bio, data, len in
        guard let bio, let data, len >= 0 else { return -1 }
        let fd = Int32(Int(bitPattern: BIO_get_data(bio)) - 1)
        BIO_clear_flags(bio, BIO_FLAGS_READ | BIO_FLAGS_WRITE | BIO_FLAGS_IO_SPECIAL | BIO_FLAGS_SHOULD_RETRY)
        while true {
            let n = send(fd, data, Int(len), Int32(MSG_NOSIGNAL))
            if n >= 0 { return Int32(n) }
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EWOULDBLOCK {
                BIO_set_flags(bio, BIO_FLAGS_WRITE | BIO_FLAGS_SHOULD_RETRY)
            }
            return -1
        }
    }
    _ = BIO_meth_set_read(m) { bio, data, len in
        guard let bio, let data, len >= 0 else { return -1 }
        let fd = Int32(Int(bitPattern: BIO_get_data(bio)) - 1)
        BIO_clear_flags(bio, BIO_FLAGS_READ | BIO_FLAGS_WRITE | BIO_FLAGS_IO_SPECIAL | BIO_FLAGS_SHOULD_RETRY)
        while true {
            let n = recv(fd, data, Int(len), 0)
            if n >= 0 { return Int32(n) }
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EWOULDBLOCK {
                BIO_set_flags(bio, BIO_FLAGS_READ | BIO_FLAGS_SHOULD_RETRY)
            }
            return -1
        }
    }
    _ = BIO_meth_set_ctrl(m) { _, cmd, _, _ in
        // Writes go straight to the socket, so a flush has nothing to do;
        // every other control is unsupported.
        cmd == BIO_CTRL_FLUSH ? 1 : 0
    }
    return BIOMethodBox(method: m)
}()
