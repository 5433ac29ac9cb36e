import Foundation

/// The windows sends are counted in: fixed windows of wall-clock time
/// (a minute starts at :00), the same in every process.
public enum QuotaWindow: Int, Sendable, CaseIterable, Comparable, CustomStringConvertible {
    case minute = 60
    case hour = 3600
    case day = 86_400

    public var seconds: Int64 { Int64(rawValue) }
    public var description: String {
        switch self {
        case .minute: return "minute"
        case .hour: return "hour"
        case .day: return "day"
        }
    }

    /// The start of the window holding `second` (Unix seconds).
    public func start(of second: Int64) -> Int64 { second - ((second % seconds) + seconds) % seconds }

    public static func < (a: QuotaWindow, b: QuotaWindow) -> Bool { a.rawValue < b.rawValue }
}

/// A user's own send quotas, in recipients per window: nil uses the
/// server's default (`serve --quota-per-minute` ...), 0 is unlimited.
public struct SendQuota: Sendable, Equatable {
    public var perWindow: [QuotaWindow: Int]

    public init(perWindow: [QuotaWindow: Int] = [:]) { self.perWindow = perWindow }

    public static let serverDefaults = SendQuota()

    /// The limits that apply: the user's where set, else `defaults`; only
    /// windows with a limit above 0.
    public func effective(defaults: [QuotaWindow: Int]) -> [QuotaWindow: Int] {
        var limits: [QuotaWindow: Int] = [:]
        for window in QuotaWindow.allCases {
            if let limit = perWindow[window] ?? defaults[window], limit > 0 { limits[window] = limit }
        }
        return limits
    }
}

/// One window's count as a reservation saw it, for the RateLimit headers.
public struct QuotaWindowState: Sendable, Equatable {
    public let window: QuotaWindow
    public let limit: Int
    /// Recipients counted in the current window, this reservation included
    /// when it was granted.
    public let used: Int
    /// Seconds until the window ends.
    public let resetsIn: Int64

    public init(window: QuotaWindow, limit: Int, used: Int, resetsIn: Int64) {
        self.window = window
        self.limit = limit
        self.used = used
        self.resetsIn = resetsIn
    }

    public var remaining: Int { max(0, limit - used) }
}

/// What `Store.reserveSends` decided: all of the recipients counted, or
/// none (`granted` false: some window would go over its limit).
public struct QuotaReservation: Sendable, Equatable {
    public let granted: Bool
    public let recipients: Int
    /// Every limited window, shortest first.
    public let windows: [QuotaWindowState]
    /// The second the reservation was made at: `releaseSends` gives it back
    /// only to windows that have not rolled over since.
    public let second: Int64

    public init(granted: Bool, recipients: Int, windows: [QuotaWindowState], second: Int64) {
        self.granted = granted
        self.recipients = recipients
        self.windows = windows
        self.second = second
    }

    /// The windows as they are once this reservation is given back.
    public var released: QuotaReservation {
        guard granted else { return self }
        return QuotaReservation(
            granted: false, recipients: recipients,
            windows: windows.map {
                QuotaWindowState(window: $0.window, limit: $0.limit, used: max(0, $0.used - recipients), resetsIn: $0.resetsIn)
            },
            second: second)
    }
}
