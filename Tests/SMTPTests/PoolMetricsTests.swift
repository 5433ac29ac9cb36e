import Foundation
import Testing
@testable import SMTP

/// Issue 11: what `mailgate_smtp_connections_open` / `_idle` read: a pool's
/// idle connections plus those in a send, summed over a registry's pools.
@Suite("SMTP pool connection counts (metrics)", .timeLimit(.minutes(1)))
struct PoolMetricsTests {
    private var envelope: SMTPEnvelope {
        get throws { try SMTPEnvelope(sender: "a@example.com", recipients: ["b@example.com"]) }
    }

    @Test func idleConnectionsAreCountedPerPoolAndSummedOverTheRegistry() throws {
        let sink = try SMTPSink()
        defer { sink.stop() }
        let config = SMTPServerConfig(host: "127.0.0.1", port: sink.port, security: .none, commandTimeout: .seconds(3))
        let registry = SMTPPoolRegistry()
        defer { registry.shutdown() }
        #expect(registry.connectionCounts() == SMTPConnectionCounts(open: 0, idle: 0))
        _ = try registry.pool(for: "a", config: config).send(envelope, message: sampleMessage, deadline: soon())
        _ = try registry.pool(for: "a", config: config).send(envelope, message: sampleMessage, deadline: soon())
        #expect(registry.pool(for: "a", config: config).connectionCounts == SMTPConnectionCounts(open: 1, idle: 1))
        _ = try registry.pool(for: "b", config: config).send(envelope, message: sampleMessage, deadline: soon())
        #expect(registry.connectionCounts() == SMTPConnectionCounts(open: 2, idle: 2))
        registry.shutdown()
        #expect(registry.connectionCounts() == SMTPConnectionCounts(open: 0, idle: 0))
    }

    /// A connection waiting for the server's answer is open, not idle; once
    /// the send failed (the server never answers MAIL) it is gone.
    @Test func aConnectionInASendIsOpenButNotIdle() throws {
        let server = try ScriptedServer([
            .send("220 scripted ESMTP\r\n"),
            .expect("EHLO localhost"),
            .send("250 scripted\r\n"),
            .expect("MAIL FROM:<a@example.com>"),
            // No answer: the client waits out its command timeout.
        ])
        defer { server.stop() }
        let pool = SMTPConnectionPool(config: SMTPServerConfig(host: "localhost", port: server.port, security: .none,
                                                               commandTimeout: .seconds(2)))
        defer { pool.shutdown() }
        let envelope = try envelope
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            _ = try? pool.send(envelope, message: sampleMessage, deadline: soon())
            done.signal()
        }
        #expect(eventually { pool.connectionCounts == SMTPConnectionCounts(open: 1, idle: 0) },
                "in the send: \(pool.connectionCounts)")
        #expect(done.wait(timeout: .now()) == .timedOut, "still waiting for the MAIL reply")
        done.wait()
        #expect(pool.connectionCounts == SMTPConnectionCounts(open: 0, idle: 0))
    }
}
