import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Writes `request` to the connected socket `fd` while reading what comes
/// back, since a server may answer (a 413) before it has read everything;
/// once a write fails (the server stopped reading) it only reads. Returns
/// the bytes received when `isComplete` says so or the server closes (a
/// reset after some bytes counts as a close). `halfClose` shuts down the
/// write side once everything is sent. `timeout` seconds without an end
/// are a harness error naming `peer`, not a hang.
public func exchangeBytes(fd: Int32, _ request: [UInt8], halfClose: Bool = false, timeout: Double, peer: String,
                          isComplete: ([UInt8]) throws -> Bool = { _ in false }) throws -> [UInt8] {
    let deadline = Date().addingTimeInterval(timeout)
    var sent = 0
    var received: [UInt8] = []
    var writeClosed = false
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let remaining = deadline.timeIntervalSinceNow
        guard remaining > 0 else {
            throw HarnessError("no complete response from \(peer) within \(timeout) s (got \(received.count) bytes: \(String(decoding: received.prefix(300), as: UTF8.self)))")
        }
        if sent == request.count && halfClose && !writeClosed {
            shutdown(fd, Int32(SHUT_WR))
            writeClosed = true
        }
        var pfd = pollfd(fd: fd, events: Int16(POLLIN) | (sent < request.count ? Int16(POLLOUT) : 0), revents: 0)
        let ready = poll(&pfd, 1, Int32(min(remaining, 1) * 1000))
        if ready < 0 { if errno == EINTR { continue }; throw HarnessError("poll failed") }
        if ready == 0 { continue }
        if pfd.revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                received.append(contentsOf: buffer[0..<n])
                if try isComplete(received) { return received }
                continue
            }
            if n == 0 { return received }
            if errno == EINTR || errno == EAGAIN { continue }
            if errno == ECONNRESET && !received.isEmpty { return received }
            throw HarnessError("recv failed: \(String(cString: strerror(errno))) after \(received.count) bytes")
        }
        if pfd.revents & Int16(POLLOUT) != 0 && sent < request.count {
            let n = request.withUnsafeBytes {
                send(fd, $0.baseAddress! + sent, min($0.count - sent, 65536), Int32(MSG_NOSIGNAL))
            }
            if n > 0 { sent += n } else if errno != EINTR && errno != EAGAIN {
                sent = request.count  // the server stopped reading (e.g. after 413): read its answer
            }
        }
    }
}
