import Foundation
import Glibc

// Login throttling, as the store keeps it: every password check is first
// counted (a pending mark) and only then run, in one write transaction per
// count, so concurrent guesses cannot all pass a "fewer than N failures"
// check before any of them is recorded. See `Store.beginLoginAttempt`.

/// Who is attempting a login, as the throttle keys it: the client's
/// address as bytes (never its text, which has many spellings), one tag byte
/// then the address:
///
/// - IPv4 `a.b.c.d`: `04 a b c d`;
/// - IPv6: `06` + its first 8 bytes (its /64, the block one host or customer
///   usually holds whole, as the shipped nginx `/token` limit keys it: keyed
///   by single addresses, one /64 could rotate through 2^64 keys); an
///   IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is the IPv4 client;
/// - no usable address (none given, a Unix socket's `unix:`, anything that
///   is not a numeric address): `00`, one key shared by all such clients.
public struct LoginClient: Sendable, Hashable, CustomStringConvertible {
    public let bytes: [UInt8]

    public static let unknown = LoginClient(bytes: [0])

    private init(bytes: [UInt8]) { self.bytes = bytes }

    /// The key of a CGI `REMOTE_ADDR` (nginx's `$remote_addr`: the client
    /// address, or the one `real_ip_header` gave). An IPv6 zone (`%eth0`) is
    /// ignored.
    public init(remoteAddress: String?) {
        guard let remoteAddress else { self = .unknown; return }
        var text = Array(remoteAddress.utf8)
        if let percent = text.firstIndex(of: UInt8(ascii: "%")) { text.removeSubrange(percent...) }
        // The longest numeric form is 45 characters (IPv6 with an IPv4 tail).
        guard (1...45).contains(text.count), !text.contains(0) else { self = .unknown; return }
        text.append(0)
        if let v4 = Self.parse(text, family: AF_INET, size: 4) {
            self.init(bytes: [4] + v4)
        } else if let v6 = Self.parse(text, family: AF_INET6, size: 16) {
            if v6[0..<10].allSatisfy({ $0 == 0 }) && v6[10] == 0xFF && v6[11] == 0xFF {
                self.init(bytes: [4] + v6[12..<16])
            } else {
                self.init(bytes: [6] + v6[0..<8])
            }
        } else {
            self = .unknown
        }
    }

    /// `inet_pton` on a NUL-terminated text: nil unless it is a numeric
    /// address of `family` (it returns 1 then, 0 for anything else).
    private static func parse(_ text: [UInt8], family: Int32, size: Int) -> [UInt8]? {
        var address = [UInt8](repeating: 0, count: size)
        let result = text.withUnsafeBufferPointer { source in
            address.withUnsafeMutableBytes { target in
                source.baseAddress.map { inet_pton(family, UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self),
                                                   target.baseAddress) } ?? 0
            }
        }
        return result == 1 ? address : nil
    }

    /// Hex, for logs and test messages.
    public var description: String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// How many failed logins (counting those still being checked) a username
/// may collect within `window` before further attempts are refused unchecked.
public struct LoginThrottlePolicy: Sendable, Equatable {
    /// Seconds a failure counts for.
    public var window: Int64
    /// Failures per (username, client) within the window.
    public var perClient: Int
    /// Failures per username within the window, from all clients together:
    /// the ceiling for a guesser with many addresses.
    public var perUsername: Int

    public init(window: Int64 = 15 * 60, perClient: Int = 5, perUsername: Int = 50) {
        self.window = window
        self.perClient = perClient
        self.perUsername = perUsername
    }
}

/// The answer to `Store.beginLoginAttempt`.
public enum LoginAttempt: Sendable, Equatable {
    /// Check the password, then report how it went with
    /// `Store.finishLoginAttempt`. Until then the attempt counts as a failure.
    case allowed(PendingLogin)
    /// Too many recent failures: refuse without checking the password. The
    /// limit frees up at `retryAt`.
    case locked(retryAt: Date, scope: LoginLockScope)
}

/// Which limit refused an attempt.
public enum LoginLockScope: Sendable, Equatable {
    /// `LoginThrottlePolicy.perClient`: this client, this username.
    case client
    /// `LoginThrottlePolicy.perUsername`: this username, from every client.
    case username
}

/// An attempt let through and not yet finished: it is stored as a pending
/// mark that counts as a failure until `finishLoginAttempt`, or until it
/// leaves the window (a process that dies mid-check locks no one for longer).
public struct PendingLogin: Sendable, Equatable {
    public let username: String
    public let client: LoginClient
    /// The store's mark; nil when nothing was stored (a name that can never
    /// log in: such names get no rows).
    let markID: Int64?

    init(username: String, client: LoginClient, markID: Int64?) {
        self.username = username
        self.client = client
        self.markID = markID
    }

    /// By bytes: the username is the client's (String == normalises Unicode).
    public static func == (lhs: PendingLogin, rhs: PendingLogin) -> Bool {
        lhs.markID == rhs.markID && lhs.client == rhs.client && lhs.username.utf8.elementsEqual(rhs.username.utf8)
    }
}

/// How a checked login ended.
public enum LoginOutcome: Sendable, Equatable {
    /// Wrong password, unknown or disabled user: the mark stays, as a failure.
    case failed
    /// The mark is removed, and so are this client's earlier failures for
    /// this username (other clients' failures stay).
    case succeeded
    /// The password was never checked (no KDF slot, database trouble): the
    /// mark is removed and nothing is counted.
    case abandoned
}

/// The times one login attempt is counted against, in stored milliseconds,
/// the same on both backends: an attempt at `t` counts while
/// `now < t + window`; attempts are kept for a day (or the window, if
/// longer), then pruned.
struct LoginAttemptWindow {
    static let retentionMilliseconds: Int64 = 86_400_000

    /// The attempt's time.
    let at: Int64
    /// The window's length (at most 366 days).
    let window: Int64
    /// Attempts after this count.
    let start: Int64
    /// Attempts older than `at - retention` are pruned.
    let retention: Int64

    init(now: Date, policy: LoginThrottlePolicy) {
        at = StoredDate.milliseconds(now)
        window = min(max(0, policy.window), 366 * 86_400) * 1000
        start = at - window
        retention = max(Self.retentionMilliseconds, window)
    }
}
