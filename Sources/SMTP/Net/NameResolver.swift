import Dispatch
import Glibc
import Posix

/// One address of a host, copied out of getaddrinfo's list (which is freed
/// at once): what socket(2) and connect(2) need, as a plain Swift value
/// that can cross threads and outlive the lookup that made it.
struct SocketAddress: Sendable {
    let family: Int32
    let protocolNumber: Int32
    private let storage: sockaddr_storage
    private let length: socklen_t

    /// nil when the entry carries no address or one larger than
    /// `sockaddr_storage` (which getaddrinfo never returns).
    init?(_ entry: addrinfo) {
        let length = Int(entry.ai_addrlen)
        guard let address = entry.ai_addr, length > 0, length <= MemoryLayout<sockaddr_storage>.size else { return nil }
        var storage = sockaddr_storage()
        withUnsafeMutableBytes(of: &storage) { target in
            target.copyMemory(from: UnsafeRawBufferPointer(start: UnsafeRawPointer(address), count: length))
        }
        self.family = entry.ai_family
        self.protocolNumber = entry.ai_protocol
        self.storage = storage
        self.length = entry.ai_addrlen
    }

    /// Runs `body` with the address as connect(2) takes it.
    func withSocketAddress<T>(_ body: (UnsafePointer<sockaddr>, socklen_t) throws(SystemCallError) -> T) throws(SystemCallError) -> T {
        var copy = storage
        return try withUnsafePointer(to: &copy) { pointer throws(SystemCallError) -> T in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address throws(SystemCallError) -> T in
                try body(address, length)
            }
        }
    }

    /// The address as text ("127.0.0.1", "::1"), for messages and tests.
    var numericHost: String {
        var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        let rc = withUnsafePointer(to: storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                getnameinfo(address, length, &host, socklen_t(host.count), nil, 0, NI_NUMERICHOST)
            }
        }
        guard rc == 0 else { return "(unprintable address: \(String(cString: gai_strerror(rc))))" }
        return String(decoding: host.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// getaddrinfo for stream sockets, its list copied into Swift values and
/// freed before returning.
enum AddressInfo {
    enum Outcome {
        case addresses([SocketAddress])
        /// EAI_NONAME: with `AI_NUMERICHOST`, "not an IP literal".
        case noName
        case failed(StreamError)
    }

    static func lookup(_ host: String, port: Int, flags: Int32) -> Outcome {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV | flags
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &list)
        if rc == EAI_NONAME { return .noName }
        guard rc == 0, let first = list else {
            // EAI_SYSTEM: the reason is in errno, read before anything else can change it.
            let why = rc == EAI_SYSTEM ? SystemCallError.describe(errno)
                : rc == 0 ? "no addresses" : String(cString: gai_strerror(rc))
            return .failed(.resolve(why))
        }
        defer { freeaddrinfo(first) }
        var addresses: [SocketAddress] = []
        var next: UnsafeMutablePointer<addrinfo>? = first
        while let entry = next {
            if let address = SocketAddress(entry.pointee) { addresses.append(address) }
            next = entry.pointee.ai_next
        }
        return addresses.isEmpty ? .failed(.resolve("no addresses")) : .addresses(addresses)
    }

    /// The address of an IP literal ("192.0.2.1", "::1", "fe80::1%eth0"),
    /// found without any lookup (`AI_NUMERICHOST`); nil for a name.
    static func literal(_ host: String, port: Int) throws(StreamError) -> [SocketAddress]? {
        switch lookup(host, port: port, flags: AI_NUMERICHOST) {
        case .addresses(let addresses): return addresses
        case .noName: return nil
        case .failed(let error): throw error
        }
    }
}

/// A blocking lookup of a host name's addresses: getaddrinfo in production,
/// a stand-in in tests. It may block for as long as it likes:
/// `NameResolver` runs it on a thread of its own and stops waiting for it
/// at the caller's deadline.
protocol HostLookup: Sendable {
    func addresses(of host: String, port: Int) throws(StreamError) -> [SocketAddress]
}

/// getaddrinfo(3): /etc/hosts, DNS, whatever NSS is configured with.
struct SystemHostLookup: HostLookup {
    func addresses(of host: String, port: Int) throws(StreamError) -> [SocketAddress] {
        switch AddressInfo.lookup(host, port: port, flags: 0) {
        case .addresses(let addresses): return addresses
        case .noName: throw .resolve(String(cString: gai_strerror(EAI_NONAME)))
        case .failed(let error): throw error
        }
    }
}

/// Name resolution bounded by the caller's deadline.
///
/// getaddrinfo cannot be interrupted or given a time limit, so each lookup
/// runs on a detached thread of its own, and the caller waits for its
/// result only until the deadline. A caller that gives up leaves the thread
/// to finish on its own: the thread owns everything the lookup touches
/// (getaddrinfo's list is copied into Swift values and freed on that
/// thread), so nothing is freed under it and nothing leaks.
///
/// Callers asking for the same host and port while a lookup runs wait for
/// that one (a dead DNS server costs one thread per name, not one per
/// request), and at most `maxLookups` run at once: beyond that a lookup is
/// refused at once rather than piling up threads that may each block for
/// the resolver's own timeouts (resolv.conf: 5 s per try and server).
///
/// IP literals are never looked up (see `AddressInfo.literal`).
final class NameResolver: Sendable {
    /// The process's resolver, on getaddrinfo.
    static let system = NameResolver(lookup: SystemHostLookup())

    private struct Key: Hashable {
        let host: String
        let port: Int
    }

    let lookup: any HostLookup
    let maxLookups: Int
    private let running = PThreadMutex<[Key: PendingLookup]>([:])

    init(lookup: any HostLookup, maxLookups: Int = 32) {
        self.lookup = lookup
        self.maxLookups = max(1, maxLookups)
    }

    /// Lookups whose threads have not finished yet (including abandoned ones).
    var lookupsInProgress: Int { running.withLock { $0.count } }

    /// The addresses of `host` (a name, an IP literal, or a bracketed IPv6
    /// literal), or `.resolveTimedOut` once `deadline` passes.
    func resolve(host: String, port: Int, deadline: ContinuousClock.Instant) throws(StreamError) -> [SocketAddress] {
        let name = TCPSocket.unbracketed(host)
        if let addresses = try AddressInfo.literal(name, port: port) { return addresses }
        let started = ContinuousClock.now
        guard started < deadline else { throw .resolveTimedOut(host: name, after: .zero) }
        let pending = try join(Key(host: name, port: port))
        guard let result = pending.wait(until: deadline) else {
            throw .resolveTimedOut(host: name, after: started.duration(to: deadline))
        }
        return try result.get()
    }

    /// The lookup running for `key`, or a new one on a new thread.
    private func join(_ key: Key) throws(StreamError) -> PendingLookup {
        let (pending, isNew): (PendingLookup, Bool) = try running.withLock { running throws(StreamError) in
            if let pending = running[key] { return (pending, false) }
            guard running.count < maxLookups else {
                throw .resolve("too many name lookups in progress (\(maxLookups)); try again shortly")
            }
            let pending = PendingLookup()
            running[key] = pending
            return (pending, true)
        }
        guard isNew else { return pending }
        do throws(SystemCallError) {
            try startDetachedThread { [self] in
                let result: Result<[SocketAddress], StreamError>
                do throws(StreamError) {
                    result = .success(try lookup.addresses(of: key.host, port: key.port))
                } catch {
                    result = .failure(error)
                }
                running.withLock { running in
                    if running[key] === pending { running[key] = nil }
                }
                pending.finish(result)
            }
        } catch {
            running.withLock { running in
                if running[key] === pending { running[key] = nil }
            }
            let failure = StreamError.resolve("could not start a name lookup: \(error)")
            pending.finish(.failure(failure))  // callers that joined meanwhile get the same answer
            throw failure
        }
        return pending
    }
}

/// One lookup's result, published once by its thread; any number of
/// callers wait for it, each with its own deadline.
private final class PendingLookup: Sendable {
    private struct State {
        var result: Result<[SocketAddress], StreamError>?
        var waiters: [DispatchSemaphore] = []
    }

    private let state = PThreadMutex(State())

    /// The result, or nil when `deadline` passed first.
    func wait(until deadline: ContinuousClock.Instant) -> Result<[SocketAddress], StreamError>? {
        let wakeUp = DispatchSemaphore(value: 0)
        if let result = state.withLock({ state -> Result<[SocketAddress], StreamError>? in
            if state.result == nil { state.waiters.append(wakeUp) }
            return state.result
        }) {
            return result
        }
        while true {
            let left = deadline - .now
            guard left > .zero else { break }
            // At most an hour per turn (no overflow on far deadlines), rounded
            // up to whole nanoseconds so a wait never ends early and spins.
            let (seconds, attoseconds) = min(left, .seconds(3600)).components
            let nanoseconds = Int(seconds) * 1_000_000_000 + Int((attoseconds + 999_999_999) / 1_000_000_000)
            if wakeUp.wait(timeout: .now() + .nanoseconds(nanoseconds)) == .success { break }
        }
        return state.withLock { state in
            // A result that came just after the deadline is still taken.
            if state.result == nil { state.waiters.removeAll { $0 === wakeUp } }
            return state.result
        }
    }

    func finish(_ result: Result<[SocketAddress], StreamError>) {
        let waiters = state.withLock { state in
            state.result = result
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.signal() }
    }
}
