import Foundation
import Synchronization
import Testing
@testable import SMTP

/// A lookup that blocks until released (at most 30 s), then fails; counts its calls.
final class BlockingLookup: HostLookup {
    private let calls = Atomic<Int>(0)
    private let released = Atomic<Bool>(false)

    var callCount: Int { calls.load(ordering: .sequentiallyConsistent) }
    func release() { released.store(true, ordering: .sequentiallyConsistent) }

    func addresses(of host: String, port: Int) throws(StreamError) -> [SocketAddress] {
        calls.add(1, ordering: .sequentiallyConsistent)
        let end = ContinuousClock.now + .seconds(30)
        while !released.load(ordering: .sequentiallyConsistent) && ContinuousClock.now < end {
            usleep(5_000)
        }
        throw .resolve("released by the test")
    }
}

/// A lookup that answers at once with 127.0.0.1, or fails as told; records
/// the names it was asked for.
final class RecordingLookup: HostLookup {
    private let asked = Mutex<[String]>([])
    private let failure: StreamError?

    init(failing failure: StreamError? = nil) { self.failure = failure }

    var names: [String] { asked.withLock { $0 } }

    func addresses(of host: String, port: Int) throws(StreamError) -> [SocketAddress] {
        asked.withLock { $0.append(host) }
        if let failure { throw failure }
        return try AddressInfo.literal("127.0.0.1", port: port) ?? []
    }
}

/// N of "name resolution of mail.example.test timed out after N s", or nil
/// when the description is not that.
private func waited(_ error: SMTPError?) -> Double? {
    let prefix = "name resolution of mail.example.test timed out after ", suffix = " s"
    guard let text = error?.description, text.hasPrefix(prefix), text.hasSuffix(suffix) else { return nil }
    return Double(text.dropFirst(prefix.count).dropLast(suffix.count))
}

/// Issue 10 item 3: the whole connect step, name resolution included, obeys
/// the request's deadline; IP literals are never looked up.
@Suite("Name resolution within the deadline", .timeLimit(.minutes(1)))
struct NameResolutionTests {
    @Test func resolutionThatOutlivesTheDeadlineTimesOutAtTheDeadline() throws {
        let lookup = BlockingLookup()
        let resolver = NameResolver(lookup: lookup)
        let config = SMTPServerConfig(host: "mail.example.test", port: 25, security: .none)
        let start = ContinuousClock.now
        let error = #expect(throws: SMTPError.self) {
            try SMTPConnection.open(config, deadline: .now + .milliseconds(300), resolver: resolver)
        }
        let elapsed = start.duration(to: .now)
        #expect(error?.stage == .connect)
        guard case .resolveTimedOut(let host, _)? = error?.kind else {
            Issue.record("expected resolveTimedOut, got \(String(describing: error))")
            return
        }
        #expect(host == "mail.example.test")
        // The time it was given: the 300 ms less what passed before the wait began.
        #expect(waited(error) == 0.3 || waited(error) == 0.2, "\(String(describing: error))")
        #expect(error?.isSafeToRetry == true)
        #expect(elapsed >= .milliseconds(290) && elapsed < .milliseconds(300) + .seconds(2),
                "the 300 ms deadline ended the wait, not the lookup: \(elapsed)")
        #expect(lookup.callCount == 1)

        // The abandoned lookup finishes on its own thread and is forgotten.
        #expect(resolver.lookupsInProgress == 1)
        lookup.release()
        #expect(eventually(.seconds(5)) { resolver.lookupsInProgress == 0 })
    }

    @Test func theConnectTimeoutBoundsResolutionToo() throws {
        let lookup = BlockingLookup()
        defer { lookup.release() }
        let resolver = NameResolver(lookup: lookup)
        let config = SMTPServerConfig(host: "mail.example.test", port: 587, security: .starttls,
                                      connectTimeout: .milliseconds(200))
        let start = ContinuousClock.now
        let error = #expect(throws: SMTPError.self) { try SMTPConnection.open(config, deadline: soon(), resolver: resolver) }
        let elapsed = start.duration(to: .now)
        #expect(waited(error) == 0.2 || waited(error) == 0.1, "\(String(describing: error))")
        #expect(elapsed < .milliseconds(200) + .seconds(2), "\(elapsed)")
    }

    @Test(arguments: ["127.0.0.1", "::1", "[::1]"])
    func ipLiteralsNeverCallTheLookup(host: String) throws {
        let lookup = RecordingLookup()
        let resolver = NameResolver(lookup: lookup)
        let port = try Ports.closed()
        let error = #expect(throws: SMTPError.self) {
            try SMTPConnection.open(SMTPServerConfig(host: host, port: port, security: .none), deadline: soon(),
                                    resolver: resolver)
        }
        #expect(lookup.names.isEmpty, "no lookup for an IP literal")
        #expect(resolver.lookupsInProgress == 0)
        switch error?.kind {
        case .resolveFailed?, .resolveTimedOut?: Issue.record("a literal must not be resolved: \(String(describing: error))")
        default: break
        }
        if host == "127.0.0.1" {
            if case .connectionRefused? = error?.kind {} else { Issue.record("expected refused, got \(String(describing: error))") }
        }
    }

    @Test func literalsNeedNoTimeEvenAtAnExpiredDeadline() throws {
        let lookup = RecordingLookup()
        let addresses = try NameResolver(lookup: lookup).resolve(host: "192.0.2.7", port: 25, deadline: .now - .seconds(1))
        #expect(addresses.map(\.numericHost) == ["192.0.2.7"])
        #expect(lookup.names.isEmpty)
    }

    @Test func namesAreLookedUpAndTheirAddressesConnectedTo() throws {
        let lookup = RecordingLookup()
        let resolver = NameResolver(lookup: lookup)
        let port = try Ports.closed()
        let error = #expect(throws: SMTPError.self) {
            try SMTPConnection.open(SMTPServerConfig(host: "smtp.example.test", port: port, security: .none),
                                    deadline: soon(), resolver: resolver)
        }
        #expect(lookup.names == ["smtp.example.test"])
        // 127.0.0.1, from the lookup, refused the connection.
        if case .connectionRefused? = error?.kind {} else { Issue.record("expected refused, got \(String(describing: error))") }
        #expect(error?.description == "connection to smtp.example.test:\(port) refused")
        #expect(eventually { resolver.lookupsInProgress == 0 })
    }

    @Test func lookupFailuresAreReportedAsSuch() throws {
        let resolver = NameResolver(lookup: RecordingLookup(failing: .resolve("Name or service not known")))
        let error = #expect(throws: SMTPError.self) {
            try SMTPConnection.open(SMTPServerConfig(host: "nowhere.example.test", port: 25, security: .none),
                                    deadline: soon(), resolver: resolver)
        }
        #expect(error?.stage == .connect)
        #expect(error?.description == "could not resolve nowhere.example.test:25: Name or service not known")
    }

    @Test func callersAskingForTheSameNameShareOneLookup() throws {
        let lookup = BlockingLookup()
        let resolver = NameResolver(lookup: lookup)
        let outcomes = Mutex<[StreamError]>([])
        DispatchQueue.concurrentPerform(iterations: 4) { _ in
            do throws(StreamError) {
                _ = try resolver.resolve(host: "shared.example.test", port: 25, deadline: .now + .milliseconds(300))
            } catch {
                outcomes.withLock { $0.append(error) }
            }
        }
        #expect(lookup.callCount == 1, "one thread for the name, not one per caller")
        let errors = outcomes.withLock { $0 }
        #expect(errors.count == 4)
        #expect(errors.allSatisfy { if case .resolveTimedOut = $0 { true } else { false } }, "\(errors)")
        lookup.release()
        #expect(eventually(.seconds(5)) { resolver.lookupsInProgress == 0 })
    }

    @Test func lookupsBeyondTheCapAreRefusedAtOnce() throws {
        let lookup = BlockingLookup()
        defer { lookup.release() }
        let resolver = NameResolver(lookup: lookup, maxLookups: 1)
        #expect(throws: StreamError.self) {
            try resolver.resolve(host: "stuck.example.test", port: 25, deadline: .now + .milliseconds(100))
        }
        #expect(resolver.lookupsInProgress == 1)
        let start = ContinuousClock.now
        let error = #expect(throws: StreamError.self) {
            try resolver.resolve(host: "other.example.test", port: 25, deadline: soon())
        }
        #expect(start.duration(to: .now) < .seconds(2), "refused without waiting")
        guard case .resolve(let why)? = error else {
            Issue.record("expected a resolve failure, got \(String(describing: error))")
            return
        }
        #expect(why.contains("too many name lookups in progress"))
        #expect(lookup.callCount == 1)
    }

    @Test func systemLookupResolvesLocalhost() throws {
        let addresses = try NameResolver.system.resolve(host: "localhost", port: 25, deadline: soon())
        #expect(addresses.contains { ["127.0.0.1", "::1"].contains($0.numericHost) }, "\(addresses.map(\.numericHost))")
    }
}
