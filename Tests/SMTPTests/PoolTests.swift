import Foundation
import Synchronization
import Testing
@testable import SMTP

@Suite("SMTPConnectionPool and SMTPPoolRegistry", .timeLimit(.minutes(1)))
struct PoolTests {
    private var envelope: SMTPEnvelope {
        get throws { try SMTPEnvelope(sender: "a@example.com", recipients: ["b@example.com"]) }
    }

    private func plainConfig(_ port: Int) -> SMTPServerConfig {
        SMTPServerConfig(host: "127.0.0.1", port: port, security: .none, commandTimeout: .seconds(3))
    }

    private func received(_ server: AiosmtpdServer, count: Int) throws -> [ReceivedMessage] {
        _ = eventually { (try? server.messages().count) == count }
        return try server.messages()
    }

    @Test func reusesOneConnectionForSeveralMessages() throws {
        var options = AiosmtpdServer.Options()
        options.pipelining = true
        let server = try AiosmtpdServer(options)
        defer { server.stop() }
        let pool = SMTPConnectionPool(config: plainConfig(server.port))
        defer { pool.shutdown() }
        #expect(pool.idleCount == 0)
        _ = try pool.send(envelope, message: sampleMessage, deadline: soon())
        #expect(pool.idleCount == 1)
        _ = try pool.send(envelope, message: sampleMessage, deadline: soon())
        #expect(pool.idleCount == 1)
        let messages = try received(server, count: 2)
        #expect(messages.count == 2)
        #expect(Set(messages.map(\.peerPort)).count == 1)  // one TCP connection
    }

    @Test func noopCheckOfALiveIdleConnectionKeepsIt() throws {
        let server = try AiosmtpdServer()  // no PIPELINING: separate RSET path too
        defer { server.stop() }
        let pool = SMTPConnectionPool(config: plainConfig(server.port), noopAfterIdle: .zero)
        defer { pool.shutdown() }
        _ = try pool.send(envelope, message: sampleMessage, deadline: soon())
        _ = try pool.send(envelope, message: sampleMessage, deadline: soon())
        let messages = try received(server, count: 2)
        #expect(Set(messages.map(\.peerPort)).count == 1)
    }

    /// The server drops idle sessions after 0.3 s; the pool's idle timeout
    /// is longer, so the stale connection is reused, fails, and the message
    /// goes out once on a fresh one.
    @Test(arguments: [Duration.seconds(60), .zero])  // pipelined RSET path, then NOOP path
    func retriesOnceWhenTheServerDroppedTheIdleConnection(noopAfterIdle: Duration) throws {
        var options = AiosmtpdServer.Options()
        options.pipelining = true
        options.idleTimeout = 0.3
        let server = try AiosmtpdServer(options)
        defer { server.stop() }
        let pool = SMTPConnectionPool(config: plainConfig(server.port), noopAfterIdle: noopAfterIdle)
        defer { pool.shutdown() }
        _ = try pool.send(envelope, message: sampleMessage, deadline: soon())
        #expect(pool.idleCount == 1)
        usleep(700_000)
        let reply = try pool.send(envelope, message: sampleMessage, deadline: soon())
        #expect(reply.code == 250)
        let messages = try received(server, count: 2)
        #expect(messages.count == 2)
        #expect(Set(messages.map(\.peerPort)).count == 2)
        #expect(pool.idleCount == 1)
    }

    @Test func neverResendsAfterTheBodyWasSent() throws {
        var options = AiosmtpdServer.Options()
        options.hangUpOnMessage = 2  // stores message 2, then hangs up without the 250
        let server = try AiosmtpdServer(options)
        defer { server.stop() }
        let pool = SMTPConnectionPool(config: plainConfig(server.port))
        defer { pool.shutdown() }
        _ = try pool.send(envelope, message: sampleMessage, deadline: soon())
        let error = #expect(throws: SMTPError.self) { try pool.send(envelope, message: sampleMessage, deadline: soon()) }
        #expect(error?.stage == .message)
        #expect(error?.isSafeToRetry == false)
        #expect(pool.idleCount == 0)
        usleep(200_000)
        #expect(try server.messages().count == 2)  // not 3: no second attempt
    }

    @Test func permanentRejectionIsNotRetriedAndDropsTheConnection() throws {
        var options = AiosmtpdServer.Options()
        options.pipelining = true
        options.rejectRecipientsContaining = "nobody"
        let server = try AiosmtpdServer(options)
        defer { server.stop() }
        let pool = SMTPConnectionPool(config: plainConfig(server.port))
        defer { pool.shutdown() }
        _ = try pool.send(envelope, message: sampleMessage, deadline: soon())
        #expect(pool.idleCount == 1)
        let error = #expect(throws: SMTPError.self) {
            try pool.send(SMTPEnvelope(sender: "a@example.com", recipients: ["nobody@example.com"]), message: sampleMessage, deadline: soon())
        }
        #expect(error?.stage == .rcpt)
        if case .reply(let r)? = error?.kind { #expect(r.code == 550) } else { Issue.record("expected 550") }
        #expect(pool.idleCount == 0)
    }

    @Test func connectionsAreRetiredAfterMaxMessages() throws {
        let sink = try SMTPSink()
        defer { sink.stop() }
        let pool = SMTPConnectionPool(config: plainConfig(sink.port), maxMessagesPerConnection: 2)
        defer { pool.shutdown() }
        _ = try pool.send(envelope, message: sampleMessage, deadline: soon())
        #expect(pool.idleCount == 1)
        _ = try pool.send(envelope, message: sampleMessage, deadline: soon())
        #expect(pool.idleCount == 0)  // second message was its last: QUIT
    }

    @Test func expiredIdleConnectionsAreClosed() throws {
        let sink = try SMTPSink()
        defer { sink.stop() }
        let pool = SMTPConnectionPool(config: plainConfig(sink.port), idleTimeout: .milliseconds(100))
        defer { pool.shutdown() }
        _ = try pool.send(envelope, message: sampleMessage, deadline: soon())
        #expect(pool.idleCount == 1)
        #expect(pool.closeExpired() == 0)
        usleep(200_000)
        #expect(pool.closeExpired() == 1)
        #expect(pool.idleCount == 0)
    }

    @Test func shutdownClosesIdleConnectionsAndLaterSendsStillWork() throws {
        let sink = try SMTPSink()
        defer { sink.stop() }
        let pool = SMTPConnectionPool(config: plainConfig(sink.port))
        _ = try pool.send(envelope, message: sampleMessage, deadline: soon())
        #expect(pool.idleCount == 1)
        pool.shutdown()
        #expect(pool.idleCount == 0)
        _ = try pool.send(envelope, message: sampleMessage, deadline: soon())
        #expect(pool.idleCount == 0)  // not pooled after shutdown
        #expect(eventually { sink.messageCount() == 2 })
    }

    @Test func connectFailuresPropagate() throws {
        let pool = SMTPConnectionPool(config: plainConfig(try Ports.closed()))
        let error = #expect(throws: SMTPError.self) { try pool.send(envelope, message: sampleMessage, deadline: soon()) }
        if case .connectionRefused? = error?.kind {} else { Issue.record("expected connectionRefused, got \(String(describing: error))") }
    }

    @Test func concurrentSendersShareThePool() throws {
        let sink = try SMTPSink()
        defer { sink.stop() }
        let pool = SMTPConnectionPool(config: plainConfig(sink.port), maxIdle: 3)
        defer { pool.shutdown() }
        let failures = Mutex<[String]>([])
        let envelope = try self.envelope
        DispatchQueue.concurrentPerform(iterations: 6) { _ in
            for _ in 0..<4 {
                do throws(SMTPError) {
                    _ = try pool.send(envelope, message: sampleMessage, deadline: soon())
                } catch {
                    failures.withLock { $0.append(error.description) }
                }
            }
        }
        #expect(failures.withLock { $0 } == [])
        #expect(pool.idleCount <= 3 && pool.idleCount >= 1)
        #expect(eventually { sink.messageCount() == 24 })
    }

    @Test func registryReplacesThePoolWhenTheConfigChanges() throws {
        let sink = try SMTPSink()
        defer { sink.stop() }
        let registry = SMTPPoolRegistry()
        defer { registry.shutdown() }
        let config = plainConfig(sink.port)
        let pool = registry.pool(for: "user-1", config: config)
        #expect(registry.pool(for: "user-1", config: config) === pool)
        #expect(registry.pool(for: "user-2", config: config) !== pool)
        _ = try pool.send(envelope, message: sampleMessage, deadline: soon())
        #expect(pool.idleCount == 1)

        var changed = config
        changed.login = .password(username: "u", password: "new")
        let replacement = registry.pool(for: "user-1", config: changed)
        #expect(replacement !== pool)
        #expect(replacement.config == changed)
        #expect(pool.idleCount == 0)  // the old pool was shut down
        #expect(registry.pool(for: "user-1", config: changed) === replacement)
    }
}
