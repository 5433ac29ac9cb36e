import Foundation
import Synchronization

/// Tells a `PostgresStore` when its credentials cache may be stale.
///
/// A thread of its own keeps one connection that LISTENs to the channel
/// the `v2 change notifications` triggers notify on at every commit that
/// touches users or integrations, whichever host or command made it. Each
/// notification moves `generation` on; a cache entry is good only for the
/// generation it was read in. While the listener is not connected (not yet,
/// or the server went away) `generation()` is nil and nothing may be served
/// from a cache: notifications could be missed then. Reconnecting moves the
/// generation on too, for the same reason.
///
/// So a change made anywhere is seen by every host as soon as its
/// notification arrives (milliseconds), and a request costs no round trip
/// for its credentials in between: the same trade as SQLite's
/// `data_version` check, across hosts.
final class ChangeListener: Sendable {
    private let state = Atomic<UInt64>(0)  // generation << 1 | listening bit
    private let stopped = Atomic<Bool>(false)

    /// How long one wait for notifications lasts before `stopped` is looked at again.
    static let wakeInterval: Duration = .milliseconds(500)
    /// The pause before reconnecting after a failure.
    static let retryInterval: Duration = .seconds(1)

    init(settings: PGConnectionSettings) {
        let thread = Thread { [self] in self.run(settings) }
        thread.name = "mailgate-pg-listener"
        thread.start()
    }

    /// The current generation, or nil while notifications could be missed.
    func generation() -> UInt64? {
        let value = state.load(ordering: .acquiring)
        return value & 1 == 1 ? value >> 1 : nil
    }

    /// Ends the listening thread (within `wakeInterval`).
    func stop() {
        stopped.store(true, ordering: .releasing)
    }

    private func advance(listening: Bool) {
        var current = state.load(ordering: .relaxed)
        while true {
            let next = ((current >> 1) &+ 1) << 1 | (listening ? 1 : 0)
            let (exchanged, original) = state.compareExchange(expected: current, desired: next,
                                                              ordering: .acquiringAndReleasing)
            if exchanged { return }
            current = original
        }
    }

    private func run(_ settings: PGConnectionSettings) {
        let operation = "listen for changes"
        while !stopped.load(ordering: .acquiring) {
            let connection = PGConnection(settings: settings)
            do {
                try connection.execute("LISTEN \(PostgresSchema.changeChannel)", operation)
                // Anything may have changed while nobody listened.
                advance(listening: true)
                while !stopped.load(ordering: .acquiring) {
                    if try connection.awaitNotifications(timeout: Self.wakeInterval, operation) > 0 {
                        advance(listening: true)
                    }
                }
            } catch {
                advance(listening: false)
            }
            connection.drop()
            if !stopped.load(ordering: .acquiring) { Thread.sleep(forTimeInterval: Double(Self.retryInterval.components.seconds)) }
        }
        advance(listening: false)
    }
}
