import Posix
import Synchronization

/// How many SMTP connections a pool (or all of a registry's pools) holds
/// right now: `open` is `idle` plus those in a send. A connection still
/// being opened is not counted yet. A snapshot, for metrics.
public struct SMTPConnectionCounts: Sendable, Equatable {
    public var open: Int
    public var idle: Int

    public init(open: Int = 0, idle: Int = 0) {
        self.open = open
        self.idle = idle
    }
}

/// A connection that is in the pool's idle list or in exactly one caller's
/// hands, never both. That hand-over discipline is what makes moving the
/// non-Sendable SMTPConnection between threads safe, so the box asserts it.
private struct Owned: @unchecked Sendable {
    let connection: SMTPConnection
}

/// Keeps idle SMTP sessions to one server for reuse by many threads.
public final class SMTPConnectionPool: Sendable {
    public let config: SMTPServerConfig
    private let maxIdle: Int
    private let idleTimeout: Duration
    private let maxMessagesPerConnection: Int
    private let noopAfterIdle: Duration

    private struct State {
        /// Most recently used last: reuse takes the warmest connection, and
        /// the coldest ones age out.
        var idle: [Owned] = []
        var isShutDown = false
    }

    private let state = PThreadMutex(State())
    /// Connections in a caller's hands (in a send), for `connectionCounts`:
    /// an atomic, so the send path takes no extra lock for it.
    private let busy = Atomic<Int>(0)

    public init(config: SMTPServerConfig, maxIdle: Int = 16, idleTimeout: Duration = .seconds(30),
                maxMessagesPerConnection: Int = 100, noopAfterIdle: Duration = .seconds(5)) {
        self.config = config
        self.maxIdle = max(0, maxIdle)
        self.idleTimeout = idleTimeout
        self.maxMessagesPerConnection = max(1, maxMessagesPerConnection)
        self.noopAfterIdle = noopAfterIdle
    }

    public var idleCount: Int { state.withLock { $0.idle.count } }

    /// Idle connections and those in a send, now.
    public var connectionCounts: SMTPConnectionCounts {
        let idle = idleCount
        return SMTPConnectionCounts(open: idle + busy.load(ordering: .relaxed), idle: idle)
    }

    /// Sends one message on a pooled or new connection. A reused connection
    /// that turns out to be stale is replaced once, but only while the
    /// message is certainly undelivered: nothing is ever sent twice.
    public func send(_ envelope: SMTPEnvelope, message: [UInt8], deadline: ContinuousClock.Instant) throws(SMTPError) -> SMTPReply {
        if let reused = checkOut() {
            do throws(SMTPError) {
                return try send(envelope, message: message, on: reused, reused: true, deadline: deadline)
            } catch {
                guard error.isSafeToRetry, error.looksLikeDeadConnection, ContinuousClock.now < deadline else { throw error }
                // Fall through to one fresh connection.
            }
        }
        let fresh = try SMTPConnection.open(config, deadline: deadline)
        return try send(envelope, message: message, on: fresh, reused: false, deadline: deadline)
    }

    private func send(_ envelope: SMTPEnvelope, message: [UInt8], on connection: SMTPConnection, reused: Bool,
                      deadline: ContinuousClock.Instant) throws(SMTPError) -> SMTPReply {
        busy.add(1, ordering: .relaxed)
        do throws(SMTPError) {
            if reused && connection.lastUsed.duration(to: .now) > noopAfterIdle {
                try connection.noop(deadline: deadline)
            }
            let reply = try connection.send(envelope, message: message, resetFirst: reused, deadline: deadline)
            busy.subtract(1, ordering: .relaxed)
            checkIn(connection)
            return reply
        } catch {
            busy.subtract(1, ordering: .relaxed)
            // Never hand a connection that saw an error to anyone else.
            connection.close()
            throw error
        }
    }

    /// Takes the most recently used idle connection that is still fresh.
    /// Expired ones are closed outside the lock.
    private func checkOut() -> SMTPConnection? {
        let now = ContinuousClock.now
        let (picked, expired): (Owned?, [Owned]) = state.withLock { s in
            var expired: [Owned] = []
            s.idle.removeAll { owned in
                let old = owned.connection.lastUsed.duration(to: now) > idleTimeout
                if old { expired.append(owned) }
                return old
            }
            return (s.idle.popLast(), expired)
        }
        for owned in expired { owned.connection.quit(waitFor: .zero) }
        return picked?.connection
    }

    private func checkIn(_ connection: SMTPConnection) {
        if connection.isBroken || connection.messagesSent >= maxMessagesPerConnection {
            connection.quit()
            return
        }
        let owned = Owned(connection: connection)
        let accepted = state.withLock { s in
            guard !s.isShutDown, s.idle.count < maxIdle else { return false }
            s.idle.append(owned)
            return true
        }
        if !accepted { connection.quit() }
    }

    /// Closes idle connections that have been idle longer than idleTimeout
    /// (sending QUIT without waiting for the reply). Returns how many.
    @discardableResult
    public func closeExpired() -> Int {
        let now = ContinuousClock.now
        let expired: [Owned] = state.withLock { s in
            var expired: [Owned] = []
            s.idle.removeAll { owned in
                let old = owned.connection.lastUsed.duration(to: now) > idleTimeout
                if old { expired.append(owned) }
                return old
            }
            return expired
        }
        for owned in expired { owned.connection.quit(waitFor: .zero) }
        return expired.count
    }

    /// QUITs every idle connection. Sends after this still work, on fresh
    /// connections that are closed after use instead of pooled.
    public func shutdown() {
        let idle: [Owned] = state.withLock { s in
            s.isShutDown = true
            defer { s.idle.removeAll() }
            return s.idle
        }
        for owned in idle { owned.connection.quit() }
    }
}

/// One pool per owner (e.g. per user's SMTP integration). When an owner's
/// configuration changes, its old pool is shut down and replaced, so stale
/// credentials or hosts are never reused.
public final class SMTPPoolRegistry: Sendable {
    private let maxIdlePerPool: Int
    private let idleTimeout: Duration
    private let maxMessagesPerConnection: Int

    private struct State {
        var pools: [String: SMTPConnectionPool] = [:]
        var lastSweep = ContinuousClock.now
    }

    private let state = PThreadMutex(State())

    public init(maxIdlePerPool: Int = 16, idleTimeout: Duration = .seconds(30), maxMessagesPerConnection: Int = 100) {
        self.maxIdlePerPool = maxIdlePerPool
        self.idleTimeout = idleTimeout
        self.maxMessagesPerConnection = maxMessagesPerConnection
    }

    /// The pool for `owner`, made (or remade, when `config` differs from
    /// the one the existing pool was made for) as needed.
    public func pool(for owner: String, config: SMTPServerConfig) -> SMTPConnectionPool {
        let now = ContinuousClock.now
        let (pool, replaced, toSweep): (SMTPConnectionPool, SMTPConnectionPool?, [SMTPConnectionPool]) = state.withLock { s in
            var toSweep: [SMTPConnectionPool] = []
            // Idle connections of owners who stopped sending would otherwise
            // stay open until the server drops them; sweep all pools now and
            // then, from whichever request comes along.
            if s.lastSweep.duration(to: now) > idleTimeout {
                s.lastSweep = now
                toSweep = Array(s.pools.values)
            }
            if let existing = s.pools[owner], existing.config == config {
                return (existing, nil, toSweep)
            }
            let made = SMTPConnectionPool(config: config, maxIdle: maxIdlePerPool, idleTimeout: idleTimeout,
                                          maxMessagesPerConnection: maxMessagesPerConnection)
            let old = s.pools.updateValue(made, forKey: owner)
            return (made, old, toSweep)
        }
        replaced?.shutdown()
        for p in toSweep { p.closeExpired() }
        return pool
    }

    /// Connections of every pool, now: the pools' own counts, summed (each
    /// takes its pool's lock once; nothing is asked of the connections).
    public func connectionCounts() -> SMTPConnectionCounts {
        let pools: [SMTPConnectionPool] = state.withLock { Array($0.pools.values) }
        var total = SMTPConnectionCounts()
        for pool in pools {
            let counts = pool.connectionCounts
            total.open += counts.open
            total.idle += counts.idle
        }
        return total
    }

    /// Shuts down every pool and forgets them.
    public func shutdown() {
        let pools: [SMTPConnectionPool] = state.withLock { s in
            defer { s.pools.removeAll() }
            return Array(s.pools.values)
        }
        for p in pools { p.shutdown() }
    }
}
