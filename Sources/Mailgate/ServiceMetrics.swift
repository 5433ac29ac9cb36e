import CoreMetrics
import OAuth
import Posix
import Prometheus
import SMTP

/// The process's metrics, served by `GET /metrics` in the Prometheus text
/// format: swift-metrics instruments made from a swift-prometheus factory
/// over this object's own registry. `serve` makes one and also bootstraps
/// `MetricsSystem` with its factory (once per process); every other
/// `Application` (the tests') gets a fresh one, so counts never leak
/// between them.
///
/// Label values come from fixed sets only (route paths from the route
/// table, statuses the application answers, `ErrorCode`s), never from the
/// client. Counters with labels are made on first use and kept: after
/// that a request costs one uncontended lock, a dictionary lookup or two
/// and atomic adds, with no allocation.
public final class ServiceMetrics: Sendable {
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// Metric names (the README lists them).
    enum Name {
        static let requests = "mailgate_http_requests_total"
        static let sends = "mailgate_sends_total"
        static let smtpDuration = "mailgate_smtp_send_duration_seconds"
        static let connectionsOpen = "mailgate_smtp_connections_open"
        static let connectionsIdle = "mailgate_smtp_connections_idle"
        static let quotaRefusals = "mailgate_quota_refusals_total"
        static let idempotentReplays = "mailgate_idempotent_replays_total"
        static let tokenRefreshes = "mailgate_oauth_token_refreshes_total"
    }

    /// The route label of a request that matched no route (404, or outside
    /// `--base-path`).
    static let otherRoute = "other"

    /// 5 ms (a pooled connection on loopback) to 20 s (`--smtp-timeout`'s default).
    static let smtpDurationBuckets: [Duration] = [
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
        .seconds(20),
    ]

    public let registry: PrometheusCollectorRegistry
    /// Makes every metric here; `serve` bootstraps `MetricsSystem` with it.
    public let factory: PrometheusMetricsFactory

    let smtpDuration: CoreMetrics.Timer
    let quotaRefusals: CoreMetrics.Counter
    let idempotentReplays: CoreMetrics.Counter
    private let connectionsOpen: CoreMetrics.Gauge
    private let connectionsIdle: CoreMetrics.Gauge
    /// OAuth2 refreshes by outcome, and the access token cache's counts
    /// they were last brought up to (the cache counts; a scrape adds what
    /// is new since the previous one).
    private let tokenRefreshes: [(outcome: String, counter: CoreMetrics.Counter, count: @Sendable (RefreshCounts) -> Int)]
    private let tokenRefreshesSeen = PThreadMutex(RefreshCounts())

    /// The route label of each route table index, then `otherRoute`.
    private let routeLabels: [String]

    private struct Made {
        /// By `routeSlot * 1000 + status`.
        var requests: [Int: CoreMetrics.Counter] = [:]
        var sends: [SendOutcome: CoreMetrics.Counter] = [:]
    }

    private let made: PThreadMutex<Made>

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets[Name.smtpDuration] = Self.smtpDurationBuckets
        self.factory = factory
        smtpDuration = CoreMetrics.Timer(label: Name.smtpDuration, factory: factory)
        quotaRefusals = CoreMetrics.Counter(label: Name.quotaRefusals, factory: factory)
        idempotentReplays = CoreMetrics.Counter(label: Name.idempotentReplays, factory: factory)
        connectionsOpen = CoreMetrics.Gauge(label: Name.connectionsOpen, factory: factory)
        connectionsIdle = CoreMetrics.Gauge(label: Name.connectionsIdle, factory: factory)
        routeLabels = Application.routes.map(\.path) + [Self.otherRoute]
        let outcomes: [(String, @Sendable (RefreshCounts) -> Int)] = [
            ("succeeded", { $0.succeeded }), ("reauthorize", { $0.reauthorize }), ("rejected", { $0.rejected }),
            ("unavailable", { $0.unavailable }), ("timed_out", { $0.timedOut }), ("bad_response", { $0.badResponse }),
            ("other", { $0.other }),
        ]
        tokenRefreshes = outcomes.map { outcome, count in
            (outcome, CoreMetrics.Counter(label: Name.tokenRefreshes, dimensions: [("outcome", outcome)], factory: factory), count)
        }
        // "sent" is there from the start: a scrape before the first send
        // already shows the series at 0.
        var made = Made()
        made.sends[.sent] = CoreMetrics.Counter(label: Name.sends, dimensions: [("code", "sent")], factory: factory)
        self.made = PThreadMutex(made)
    }

    /// How a request of the send route ended, for `mailgate_sends_total`.
    enum SendOutcome: Hashable {
        case sent
        case failed(ErrorCode)

        var label: String {
            switch self {
            case .sent: "sent"
            case .failed(let code): code.rawValue
            }
        }
    }

    /// Counts one answered request: `route` is its index in
    /// `Application.routes` (nil: no route's path matched), `send` its
    /// outcome when it was a send.
    func record(route: Int?, status: Int, send: SendOutcome?) {
        let slot = min(route ?? routeLabels.count - 1, routeLabels.count - 1)
        let key = slot &* 1000 &+ status
        let (requests, sends) = made.withLock { made -> (CoreMetrics.Counter, CoreMetrics.Counter?) in
            let requests: CoreMetrics.Counter
            if let existing = made.requests[key] {
                requests = existing
            } else {
                requests = CoreMetrics.Counter(label: Name.requests,
                                               dimensions: [("route", routeLabels[slot]), ("status", String(status))],
                                               factory: factory)
                made.requests[key] = requests
            }
            guard let send else { return (requests, nil) }
            if let existing = made.sends[send] { return (requests, existing) }
            let sends = CoreMetrics.Counter(label: Name.sends, dimensions: [("code", send.label)], factory: factory)
            made.sends[send] = sends
            return (requests, sends)
        }
        requests.increment()
        sends?.increment()
    }

    /// One `transport.send`, successful or not.
    func recordSMTPSend(since started: ContinuousClock.Instant) {
        let elapsed = started.duration(to: .now).components
        smtpDuration.recordNanoseconds(elapsed.seconds &* 1_000_000_000 &+ elapsed.attoseconds / 1_000_000_000)
    }

    /// The exposition: the connection gauges set from `connections` (left
    /// at 0 when the transport keeps none), then every metric of the registry.
    func exposition(connections: SMTPConnectionCounts?, tokenRefreshes counts: RefreshCounts = RefreshCounts()) -> [UInt8] {
        if let connections {
            connectionsOpen.record(connections.open)
            connectionsIdle.record(connections.idle)
        }
        tokenRefreshesSeen.withLock { seen in
            for refresh in tokenRefreshes {
                let new = refresh.count(counts) - refresh.count(seen)
                if new > 0 { refresh.counter.increment(by: new) }
            }
            seen = counts
        }
        var buffer: [UInt8] = []
        buffer.reserveCapacity(4096)
        registry.emit(into: &buffer)
        return buffer
    }
}
