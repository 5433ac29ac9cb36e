import Base64
import Crypto
import Glibc
import JSON
import Posix

/// One run of the authorisation-code flow with PKCE (RFC 7636) and a
/// loopback redirect (RFC 8252 §7.3), for a command-line program:
///
/// 1. `init` listens on 127.0.0.1 on a port the kernel picks, makes a
///    `code_verifier` (32 random bytes, base64url: 43 characters), its S256
///    `code_challenge` and a random `state`, and builds `authorizationURL`
///    with `redirect_uri=http://127.0.0.1:PORT/`.
/// 2. The user opens the URL; the provider sends the browser back to the
///    loopback address. `waitForRedirect(timeout:)` serves HTTP GETs until
///    one to `/` carries `state` with `code` or `error` (other paths, such as
///    a browser's /favicon.ico, get a 404 and the wait goes on), answers it
///    with a small page, and returns the code.
/// 3. `TokenClient.exchange` (or `exchange(with:endpoint:deadline:)` here)
///    trades the code, the verifier and the same redirect URI for tokens.
///
/// A `state` that is not this session's ends the wait with `.stateMismatch`
/// and its code is never returned: another page (or local process) could
/// otherwise plant a code for an account of its choosing (RFC 6749 §10.12).
/// The listener accepts several connections at once, so a browser's idle
/// pre-connection cannot hold up the real request, and each connection's
/// request head is capped (8 KiB) and bounded in time.
public final class AuthorizationSession: Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public let authorizationURL: String
    public let redirectURI: String
    /// The PKCE verifier: secret until the exchange (never in a description).
    public let codeVerifier: String
    private let state: String
    private let listener: Int32

    static let maximumRequestHead = 8 * 1024
    static let maximumConnections = 16
    static let connectionTimeout: Duration = .seconds(10)

    public init(authorizationEndpoint: EndpointURL, clientID: String, scope: String,
                extraParameters: [QueryParameter] = []) throws(OAuthError) {
        guard !clientID.isEmpty else { throw .invalidConfiguration("the client id is empty") }
        try OAuthScope.validate(scope)
        let verifier: String, challenge: String, state: String
        do {
            verifier = Base64.url.encode(try Crypto.randomBytes(32))
            challenge = Base64.url.encode(try Crypto.sha256(Array(verifier.utf8)))
            state = Base64.url.encode(try Crypto.randomBytes(16))
        } catch {
            throw .internalFailure("random bytes or SHA-256 failed: \(error)")
        }
        let (listener, port) = try Self.listen()
        let redirectURI = "http://127.0.0.1:\(port)/"
        var parameters = [QueryParameter("response_type", "code"),
                          QueryParameter("client_id", clientID),
                          QueryParameter("redirect_uri", redirectURI),
                          QueryParameter("scope", scope),
                          QueryParameter("state", state),
                          QueryParameter("code_challenge", challenge),
                          QueryParameter("code_challenge_method", "S256")]
        parameters += extraParameters
        let query = String(decoding: FormEncoding.encode(parameters.map { ($0.name, $0.value) }), as: UTF8.self)
        self.authorizationURL = authorizationEndpoint.text + (authorizationEndpoint.hasQuery ? "&" : "?") + query
        self.redirectURI = redirectURI
        self.codeVerifier = verifier
        self.state = state
        self.listener = listener
    }

    deinit { closeDescriptor(listener) }

    public var description: String {
        "AuthorizationSession(redirectURI: \(redirectURI), codeVerifier: <redacted>)"
    }
    public var debugDescription: String { description }
    public var customMirror: Mirror {
        Mirror(self, children: ["redirectURI": redirectURI, "codeVerifier": "<redacted>"])
    }

    /// Trades `code` for tokens with this session's verifier and redirect URI.
    public func exchange(code: String, with client: TokenClient = TokenClient(), endpoint: TokenEndpoint,
                         deadline: ContinuousClock.Instant) throws(OAuthError) -> TokenResponse {
        try client.exchange(endpoint, code: code, codeVerifier: codeVerifier, redirectURI: redirectURI, deadline: deadline)
    }

    /// Serves the loopback address until the redirect arrives; returns its
    /// `code`. Throws `.stateMismatch`, `.authorizationDenied`, `.noRedirect`
    /// (nothing usable within `timeout`) or `.internalFailure`.
    public func waitForRedirect(timeout: Duration) throws(OAuthError) -> String {
        let deadline = ContinuousClock.now + timeout
        var connections: [PendingRequest] = []
        defer { for connection in connections { closeDescriptor(connection.fd) } }
        while true {
            let now = ContinuousClock.now
            guard now < deadline else { throw .noRedirect }
            // Drop connections that have said nothing useful in time.
            connections.removeAll { connection in
                guard now >= connection.deadline else { return false }
                closeDescriptor(connection.fd)
                return true
            }
            var entries = [pollfd(fd: listener, events: Int16(POLLIN), revents: 0)]
            entries += connections.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
            let wakeAt = connections.map(\.deadline).reduce(deadline) { min($0, $1) }
            let milliseconds = Int32(clamping: max(1, Int(((wakeAt - now) / .milliseconds(1)).rounded(.up))))
            let ready = poll(&entries, nfds_t(entries.count), milliseconds)
            if ready < 0 {
                if errno == EINTR { continue }
                throw .internalFailure("\(SystemCallError("poll on the loopback listener", code: errno))")
            }
            guard ready > 0 else { continue }
            if entries[0].revents & Int16(POLLIN) != 0 { try accept(into: &connections) }
            var index = connections.count - 1
            while index >= 0 {
                // entries[index + 1] belongs to connections[index] (accepts only appended).
                if index + 1 < entries.count, entries[index + 1].revents != 0 {
                    if let code = try read(&connections[index]) { return code }
                    if connections[index].finished {
                        closeDescriptor(connections[index].fd)
                        connections.remove(at: index)
                    }
                }
                index -= 1
            }
        }
    }

    // MARK: - Listener

    private static func listen() throws(OAuthError) -> (fd: Int32, port: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw .internalFailure("\(SystemCallError("socket for the loopback listener", code: errno))") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = in_addr_t(0x7f00_0001).bigEndian
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let failure: String? = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
                if bind(fd, raw, length) != 0 { return "bind 127.0.0.1:0" }
                if Glibc.listen(fd, 16) != 0 { return "listen" }
                if getsockname(fd, raw, &length) != 0 { return "getsockname" }
                return nil
            }
        }
        if let failure {
            let code = errno
            closeDescriptor(fd)
            throw .internalFailure("\(SystemCallError(failure, code: code))")
        }
        return (fd, Int(UInt16(bigEndian: address.sin_port)))
    }

    private func accept(into connections: inout [PendingRequest]) throws(OAuthError) {
        while true {
            // Glibc's module does not export accept4: accept, then the flags.
            let fd = Glibc.accept(listener, nil, nil)
            if fd >= 0 {
                let flags = fcntl(fd, F_GETFL)
                guard flags >= 0, fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0, fcntl(fd, F_SETFD, FD_CLOEXEC) == 0 else {
                    closeDescriptor(fd)
                    continue
                }
            }
            if fd < 0 {
                switch errno {
                case EINTR: continue
                case EAGAIN, EWOULDBLOCK, ECONNABORTED: return
                case EMFILE, ENFILE, ENOBUFS, ENOMEM: return  // try again on the next turn
                default: throw .internalFailure("\(SystemCallError("accept on the loopback listener", code: errno))")
                }
            }
            guard connections.count < Self.maximumConnections else {
                closeDescriptor(fd)
                continue
            }
            connections.append(PendingRequest(fd: fd, deadline: .now + Self.connectionTimeout))
        }
    }

    /// Reads what is there; on a complete request head, answers it. Returns
    /// the code when this was the redirect.
    private func read(_ connection: inout PendingRequest) throws(OAuthError) -> String? {
        var chunk = [UInt8](repeating: 0, count: 4096)
        let count = chunk.withUnsafeMutableBytes { recv(connection.fd, $0.baseAddress, $0.count, 0) }
        if count < 0 {
            if errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK { return nil }
            connection.finished = true
            return nil
        }
        if count == 0 {
            connection.finished = true
            return nil
        }
        connection.buffer.append(contentsOf: chunk[0..<count])
        guard let headEnd = Self.endOfHead(connection.buffer) else {
            if connection.buffer.count > Self.maximumRequestHead {
                respond(connection.fd, status: "431 Request Header Fields Too Large", page: "The request is too large.")
                connection.finished = true
            }
            return nil
        }
        connection.finished = true
        return try handle(Array(connection.buffer[..<headEnd]), fd: connection.fd)
    }

    private static func endOfHead(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 4 else { return nil }
        let limit = min(bytes.count, maximumRequestHead + 4)
        for index in 3..<limit where bytes[index] == 0x0a && bytes[index - 1] == 0x0d
            && bytes[index - 2] == 0x0a && bytes[index - 3] == 0x0d {
            return index + 1
        }
        return nil
    }

    // MARK: - The redirect

    private func handle(_ head: [UInt8], fd: Int32) throws(OAuthError) -> String? {
        let requestLine = head.prefix { $0 != 0x0d && $0 != 0x0a }
        let parts = requestLine.split(separator: 0x20, omittingEmptySubsequences: false)
        guard parts.count == 3, parts[2].starts(with: Array("HTTP/1.".utf8)) else {
            respond(fd, status: "400 Bad Request", page: "Not an HTTP/1 request.")
            return nil
        }
        guard parts[0].elementsEqual("GET".utf8) else {
            respond(fd, status: "405 Method Not Allowed", page: "Only GET is served here.")
            return nil
        }
        let target = parts[1]
        let path = target.prefix { $0 != UInt8(ascii: "?") }
        guard path.elementsEqual("/".utf8) else {
            respond(fd, status: "404 Not Found", page: "Nothing here.")
            return nil
        }
        let query = target.dropFirst(path.count + 1)
        guard let redirect = Redirect(query: query) else {
            respond(fd, status: "400 Bad Request", page: "This is not an authorisation redirect.")
            return nil
        }
        guard let givenState = redirect.state,
              Crypto.constantTimeEquals(Array(givenState.utf8), Array(state.utf8)) else {
            respond(fd, status: "400 Bad Request",
                    page: "The authorisation answer does not belong to this session (wrong state). Nothing was stored; run the command again.")
            throw .stateMismatch
        }
        if let error = redirect.error {
            respond(fd, status: "200 OK", page: "The authorisation was refused (\(OAuthError.sanitisedCode(error))). You can close this window.")
            throw .authorizationDenied(code: OAuthError.sanitisedCode(error))
        }
        guard let code = redirect.code, !code.isEmpty, code.utf8.count <= 4096,
              code.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f }) else {
            respond(fd, status: "400 Bad Request", page: "The authorisation answer has no usable code. Run the command again.")
            throw .badResponse("the authorisation redirect carried no usable code")
        }
        respond(fd, status: "200 OK", page: "Mailgate received the authorisation. You can close this window.")
        return code
    }

    /// A small HTML page; best effort (the outcome does not depend on the
    /// browser reading it), bounded to 2 s of waiting for the socket.
    private func respond(_ fd: Int32, status: String, page: String) {
        let body = "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Mailgate</title></head><body><p>\(page)</p></body></html>\n"
        let response = Array(("HTTP/1.1 \(status)\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: \(body.utf8.count)\r\n"
            + "Cache-Control: no-store\r\nConnection: close\r\n\r\n" + body).utf8)
        let deadline = ContinuousClock.now + .seconds(2)
        var sent = 0
        while sent < response.count {
            let count = response[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if count > 0 {
                sent += count
            } else if count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                guard (try? waitUntilReady(fd, for: Int16(POLLOUT), until: deadline)) != nil else { return }
            } else {
                return
            }
        }
    }
}

/// A connection to the loopback listener whose request head is still coming.
private struct PendingRequest {
    let fd: Int32
    let deadline: ContinuousClock.Instant
    var buffer: [UInt8] = []
    var finished = false
}

/// The parameters of a redirect to `/`: nil when the query is malformed, a
/// parameter is repeated, or none of code, state and error is there.
private struct Redirect {
    var code: String?
    var state: String?
    var error: String?

    init?(query: ArraySlice<UInt8>) {
        for pair in query.split(separator: UInt8(ascii: "&")) {
            let name = pair.prefix { $0 != UInt8(ascii: "=") }
            let rawValue = pair.dropFirst(name.count + 1)
            guard let value = FormEncoding.decodeComponent(rawValue) else { return nil }
            if name.elementsEqual("code".utf8) {
                guard code == nil else { return nil }
                code = value
            } else if name.elementsEqual("state".utf8) {
                guard state == nil else { return nil }
                state = value
            } else if name.elementsEqual("error".utf8) {
                guard error == nil else { return nil }
                error = value
            }
        }
        guard code != nil || state != nil || error != nil else { return nil }
    }
}
