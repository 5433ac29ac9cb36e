import Crypto
import COpenSSL
import Glibc
import Posix

/// An OpenSSL client session over a connected socket: handshake with
/// certificate and host-name verification, then encrypted reads and writes.
/// Waiting is the socket's; failures are `StreamError`s.
final class TLSSession {
    private let ssl: OpaquePointer
    /// Set after a fatal TLS error: OpenSSL forbids SSL_shutdown then.
    private var failed = false

    /// Sets up a session on `socket` for `host` (a DNS name or IP literal,
    /// brackets allowed); the handshake is `handshake(...)`.
    init(context: TLSContext, socket: TCPSocket, host: String) throws(StreamError) {
        OpenSSLErrorQueue.clear()
        guard let ssl = SSL_new(context.ctx) else {
            throw .tls("TLS setup failed: SSL_new: \(OpenSSLErrorQueue.drain())")
        }
        self.ssl = ssl  // owned from here; deinit frees it
        guard let bio = SocketBIO.shared.make(fd: socket.fd) else {
            throw .tls("TLS setup failed: BIO_new: \(OpenSSLErrorQueue.drain())")
        }
        SSL_set_bio(ssl, bio, bio)  // the SSL owns the BIO now

        // Our write buffers are Swift arrays, which may move between retries.
        _ = mailgate_SSL_set_mode(ssl, Int(SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER))
        // Read whole socket buffers, not a 5-byte record header and then
        // its body: one recv per reply instead of two (2.5 fewer system
        // calls per send, measured with Benchmarks/profile.sh strace).
        // Safe because every wait on the socket follows an SSL_read that
        // found OpenSSL's own buffer empty (WANT_READ).
        SSL_set_read_ahead(ssl, 1)

        let name = TCPSocket.unbracketed(host)
        let isIPLiteral = Self.isIPLiteral(name)
        if !isIPLiteral {
            // SNI is for DNS names only (RFC 6066 forbids IP literals).
            guard mailgate_SSL_set_tlsext_host_name(ssl, name) == 1 else {
                throw .tls("TLS setup failed: cannot set SNI name: \(OpenSSLErrorQueue.drain())")
            }
        }
        if context.verify {
            if isIPLiteral {
                guard let param = SSL_get0_param(ssl), X509_VERIFY_PARAM_set1_ip_asc(param, name) == 1 else {
                    throw .tls("TLS setup failed: cannot set expected IP address: \(OpenSSLErrorQueue.drain())")
                }
            } else {
                guard SSL_set1_host(ssl, name) == 1 else {
                    throw .tls("TLS setup failed: cannot set expected host name: \(OpenSSLErrorQueue.drain())")
                }
            }
        }
    }

    deinit { SSL_free(ssl) }

    static func isIPLiteral(_ host: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
    }

    /// The client handshake; verification (when the context asks for it)
    /// happens inside it.
    func handshake(on socket: TCPSocket, verify: Bool, deadline: ContinuousClock.Instant) throws(StreamError) {
        while true {
            OpenSSLErrorQueue.clear()
            let rc = SSL_connect(ssl)
            let savedErrno = errno
            if rc == 1 { return }
            let code = SSL_get_error(ssl, rc)
            if code == SSL_ERROR_WANT_READ {
                try socket.wait(for: Int16(POLLIN), until: deadline)
                continue
            }
            if code == SSL_ERROR_WANT_WRITE {
                try socket.wait(for: Int16(POLLOUT), until: deadline)
                continue
            }
            failed = true
            let verifyResult = SSL_get_verify_result(ssl)
            if verify && verifyResult != Int(X509_V_OK) {
                OpenSSLErrorQueue.drain()
                let why = String(cString: X509_verify_cert_error_string(verifyResult))
                throw .certificate("certificate verify failed (\(why))")
            }
            if code == SSL_ERROR_SYSCALL {
                OpenSSLErrorQueue.drain()
                throw .tlsHandshake(savedErrno == 0 ? "connection closed by server" : SystemCallError.describe(savedErrno))
            }
            throw .tlsHandshake(OpenSSLErrorQueue.drain())
        }
    }

    /// Writes all of `bytes`.
    func write(_ bytes: UnsafeRawBufferPointer, on socket: TCPSocket, deadline: ContinuousClock.Instant) throws(StreamError) {
        guard let base = bytes.baseAddress else { return }
        var offset = 0
        while offset < bytes.count {
            OpenSSLErrorQueue.clear()
            var written = 0
            let rc = SSL_write_ex(ssl, base + offset, bytes.count - offset, &written)
            let savedErrno = errno
            if rc == 1 {
                offset += written
                continue
            }
            try handleFailure(rc, savedErrno: savedErrno, writing: true, socket: socket, deadline: deadline)
        }
    }

    /// Reads at least one byte into `buffer` (possibly one already decrypted
    /// inside OpenSSL, without touching the socket).
    func read(into buffer: UnsafeMutableRawBufferPointer, on socket: TCPSocket, deadline: ContinuousClock.Instant) throws(StreamError) -> Int {
        guard let base = buffer.baseAddress else { throw .closedByPeer }
        while true {
            OpenSSLErrorQueue.clear()
            var got = 0
            let rc = SSL_read_ex(ssl, base, buffer.count, &got)
            let savedErrno = errno
            if rc == 1 { return got }
            try handleFailure(rc, savedErrno: savedErrno, writing: false, socket: socket, deadline: deadline)
        }
    }

    /// Turns a failed SSL_read/SSL_write into a wait (WANT_READ/WANT_WRITE,
    /// then the caller retries) or a thrown error.
    private func handleFailure(_ rc: Int32, savedErrno: Int32, writing: Bool, socket: TCPSocket,
                               deadline: ContinuousClock.Instant) throws(StreamError) {
        let operation = writing ? "TLS write" : "TLS read"
        switch SSL_get_error(ssl, rc) {
        case SSL_ERROR_WANT_READ:
            try socket.wait(for: Int16(POLLIN), until: deadline)
        case SSL_ERROR_WANT_WRITE:
            try socket.wait(for: Int16(POLLOUT), until: deadline)
        case SSL_ERROR_ZERO_RETURN:
            throw .closedByPeer
        case SSL_ERROR_SYSCALL:
            failed = true
            OpenSSLErrorQueue.drain()
            if savedErrno == 0 || savedErrno == ECONNRESET || savedErrno == EPIPE { throw .closedByPeer }
            let why = "\(operation) failed: \(SystemCallError.describe(savedErrno))"
            throw writing ? .write(why) : .read(why)
        default:
            failed = true
            let reason = OpenSSLErrorQueue.peekReason()
            let text = OpenSSLErrorQueue.drain()
            // OpenSSL 3 reports a TCP close without close_notify this way.
            if reason == SSL_R_UNEXPECTED_EOF_WHILE_READING { throw .closedByPeer }
            throw .tls("\(operation) failed: \(text)")
        }
    }

    /// Sends close_notify (never waiting for the peer's) unless a fatal
    /// error forbids it.
    func shutdown() {
        guard !failed else { return }
        OpenSSLErrorQueue.clear()
        _ = SSL_shutdown(ssl)
        OpenSSLErrorQueue.clear()
    }
}
