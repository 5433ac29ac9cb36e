import Foundation
import MailgateTesting
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Issue 10, fairness: one user's dead SMTP server cannot take the workers
/// every other user needs.
@Suite("Fairness between users")
struct FairnessTests {
    /// Through the auxiliary instance (8 workers, --smtp-timeout 3s, so at
    /// most 2 sends per user in flight): a user whose SMTP server accepts
    /// connections and never says a word floods it with 40 concurrent sends;
    /// all but the 2 that hold a slot are refused at once with 429, and
    /// another user's sends go on answering 200 in normal time. Without the
    /// cap, every worker would wait the 3 s deadline on the dead server.
    @Test func aDeadServerOfOneUserDoesNotStopTheOthers() async throws {
        let env = try await E2E.get()
        let aux = try await env.aux()
        let blackhole = try SilentServer()
        defer { blackhole.close() }
        let flooder = try await env.makeUser("flood", smtp: SMTPTarget(port: blackhole.port))
        let floodToken = try await env.token(flooder.name)
        let other = try await env.makeMailUser("bystander")
        let otherToken = try await env.token(other.name)

        let flood = Task.detached {
            try await withThrowingTaskGroup(of: (Int, Duration).self) { group in
                for index in 0..<40 {
                    group.addTask {
                        let started = ContinuousClock.now
                        let response = try await env.send(token: floodToken, to: "rcpt@example.org",
                                                          subject: "flood \(index)", message: "m", port: aux.port)
                        return (response.status, ContinuousClock.now - started)
                    }
                }
                var results: [(Int, Duration)] = []
                for try await result in group { results.append(result) }
                return results
            }
        }
        // Let the flood take its slots, then send as the other user meanwhile.
        try await Task.sleep(for: .milliseconds(300))
        var bystander: [(Int, Duration)] = []
        for index in 0..<5 {
            let started = ContinuousClock.now
            let response = try await env.send(token: otherToken, to: "rcpt@example.org",
                                              subject: uniqueMarker("bystander-\(index)"), message: "m", port: aux.port)
            bystander.append((response.status, ContinuousClock.now - started))
        }
        let floodResults = try await flood.value

        #expect(bystander.allSatisfy { $0.0 == 200 }, "bystander statuses: \(bystander.map(\.0))")
        // Under 2.5 s: a worker held by the dead server would cost its 3 s deadline.
        #expect(bystander.allSatisfy { $0.1 < .milliseconds(2500) },
                "bystander waited on the dead server: \(bystander.map(\.1))")
        let refused = floodResults.filter { $0.0 == 429 }
        #expect(refused.count >= 38, "flood statuses: \(floodResults.map(\.0).sorted())")
        #expect(floodResults.filter { $0.0 != 429 }.allSatisfy { $0.0 == 504 }, "the 2 in flight hit the deadline")
        #expect(refused.allSatisfy { $0.1 < .seconds(2) }, "429 comes at once, not after the deadline")
    }
}

/// A TCP port that completes connections (in the kernel's backlog) and never
/// says a word: an SMTP server that is up but dead.
final class SilentServer: Sendable {
    let fd: Int32
    let port: Int

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw HarnessError("socket failed") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, length) }
        }
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard bound == 0, named == 0, listen(fd, 256) == 0 else {
            Glibc.close(fd)
            throw HarnessError("cannot listen for the silent server")
        }
        self.fd = fd
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    func close() { Glibc.close(fd) }
}
