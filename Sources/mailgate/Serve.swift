import ArgumentParser
import CoreMetrics
import FastCGI
import Foundation
import Logging
import Mailgate
import SMTP
import Store
import Crypto

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the FastCGI responder.",
        discussion: """
            Listens on --socket (a Unix socket, mode 0660 by default) or --listen (loopback TCP). \
            With neither, it serves the socket it inherited: fd 3 under systemd socket activation, \
            fd 0 under spawn-fcgi or Apache mod_fcgid; and when fd 0 is not a socket it answers \
            one request as plain CGI (Apache mod_cgi). SIGTERM or SIGINT: stop accepting, finish \
            requests in flight, QUIT pooled SMTP connections, exit 0.
            """)

    @OptionGroup var data: DataDirectoryOptions
    @OptionGroup var passwordHash: PasswordHashOptions
    @Option(help: "Unix socket path to listen on (a stale socket file is replaced).") var socket: String?
    @Option(name: .customLong("socket-mode"), help: "Octal mode of the socket file.")
    var socketMode: FileModeArgument = FileModeArgument(mode: 0o660)
    @Option(help: "Loopback TCP address, e.g. 127.0.0.1:9000.") var listen: String?
    @Option(help: "Worker threads (each serves one request at a time).") var threads: Int = 16
    @Option(name: .customLong("base-path"), help: "URL prefix before the routes, e.g. /api.") var basePath: String = ""
    @Option(name: .customLong("max-body"),
            help: "Largest request body in bytes; larger gets 413 unread. The default fits a message of --max-message-bytes with its attachments in base64 (4/3).")
    var maxBody: Int = 36 << 20
    @Option(name: .customLong("max-message-bytes"), help: "Largest message once encoded (headers, text, attachments); larger gets 413.")
    var maxMessageBytes: Int = 25 << 20
    @Option(name: .customLong("max-recipients"), help: "Addresses in to, cc and bcc together, at most; more gets 422.")
    var maxRecipients: Int = 50
    @Option(name: .customLong("idempotency-ttl"), help: "How long an Idempotency-Key and its answer are kept.")
    var idempotencyTTL: DurationArgument = DurationArgument(seconds: 24 * 3600)
    @Option(name: .customLong("token-ttl"), help: "Lifetime of tokens from POST /token.")
    var tokenTTL: DurationArgument = DurationArgument(seconds: 30 * 60)
    @Option(name: .customLong("smtp-timeout"), help: "Deadline for a whole SMTP exchange (keep below nginx's fastcgi_read_timeout).")
    var smtpTimeout: DurationArgument = DurationArgument(seconds: 20)
    @Option(name: .customLong("smtp-connect-timeout"), help: "Bound on resolving the SMTP server's name and connecting to it (and, separately, on the TLS handshake).")
    var smtpConnectTimeout: DurationArgument = DurationArgument(seconds: 10)
    @Option(name: .customLong("ca-file"), help: "Extra CA certificates (PEM) trusted for SMTP servers.") var caFile: String?
    @Option(name: .customLong("helo-name"), help: "Name sent in EHLO (default: this host's name).") var heloName: String?
    @Option(name: .customLong("pool-size"), help: "Idle SMTP connections kept per integration.") var poolSize: Int = 16
    @Option(name: .customLong("pool-idle-timeout"), help: "Close pooled SMTP connections idle this long.")
    var poolIdleTimeout: DurationArgument = DurationArgument(seconds: 30)
    @Option(name: .customLong("max-messages-per-connection"), help: "QUIT and reconnect after this many messages.")
    var maxMessagesPerConnection: Int = 100
    @Option(name: .customLong("max-in-flight-per-user"),
            help: "Sends one user may have in flight at once in this process; more get 429 (default: a quarter of --threads, at least 1).")
    var maxInFlightPerUser: Int?
    @Option(name: .customLong("kdf-concurrency"),
            help: "Password checks (PBKDF2) at once on /token; a login that waits 2 s for one gets 503 (default: the number of cores).")
    var kdfConcurrency: Int?
    @Option(name: .customLong("quota-per-minute"),
            help: "Recipients per minute for users without a quota of their own (`mailgate user limits`); 0: unlimited.")
    var quotaPerMinute: Int = 0
    @Option(name: .customLong("quota-per-hour"), help: "The same per hour.") var quotaPerHour: Int = 0
    @Option(name: .customLong("quota-per-day"), help: "The same per day.") var quotaPerDay: Int = 0
    @Option(name: .customLong("log-format"),
            help: "logfmt (ts=... level=... pid=... msg=... then named fields) or json (one object per line).")
    var logFormat: String = "logfmt"
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: String = "info"

    func validate() throws {
        if socket != nil && listen != nil { throw ValidationError("give --socket or --listen, not both") }
        guard (1...1024).contains(threads) else { throw ValidationError("--threads must be 1-1024") }
        // The body is held in memory whole; 1 GiB is far above any mail.
        guard (1...(1 << 30)).contains(maxBody) else { throw ValidationError("--max-body must be 1 to 1073741824 bytes") }
        guard (1...(1 << 30)).contains(maxMessageBytes) else { throw ValidationError("--max-message-bytes must be 1 to 1073741824 bytes") }
        guard (1...1000).contains(maxRecipients) else { throw ValidationError("--max-recipients must be 1 to 1000") }
        if let maxInFlightPerUser, maxInFlightPerUser < 1 { throw ValidationError("--max-in-flight-per-user must be at least 1") }
        if let kdfConcurrency, kdfConcurrency < 1 { throw ValidationError("--kdf-concurrency must be at least 1") }
        for (name, value) in [("minute", quotaPerMinute), ("hour", quotaPerHour), ("day", quotaPerDay)] where value < 0 {
            throw ValidationError("--quota-per-\(name) must be 0 (unlimited) or more, not \(value)")
        }
        guard poolSize >= 0 else { throw ValidationError("--pool-size must be 0 or more") }
        guard maxMessagesPerConnection >= 1 else { throw ValidationError("--max-messages-per-connection must be at least 1") }
        guard LogFormat(rawValue: logFormat) != nil else { throw ValidationError("--log-format must be logfmt or json") }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level \(logLevel)") }
        if !basePath.isEmpty && (!basePath.hasPrefix("/") || basePath.hasSuffix("/")) {
            throw ValidationError("--base-path must start with / and not end with / (e.g. /api)")
        }
    }

    func run() throws {
        // Before any thread exists: a SIGTERM during start-up (systemd stopping
        // a unit it just started) waits for the server instead of killing it.
        try FastCGIServer.holdStopSignals()
        // Without TZ, every log timestamp (localtime_r) stats /etc/localtime.
        setenv("TZ", ":/etc/localtime", 0)
        tzset()
        let level = Logger.Level(rawValue: logLevel) ?? .info
        // Every line carries pid=: several processes can share one log
        // (Apache mod_fcgid runs a few and sends their stderr to its ErrorLog).
        let lineWriter = LineWriter(format: LogFormat(rawValue: logFormat) ?? .logfmt)
        LoggingSystem.bootstrap { _ in
            var handler = LineLogHandler(writer: lineWriter)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "mailgate")

        // Refuse to start on unsafe keys before anything listens.
        let signer = try data.tokenSigner()
        // A request waits at most 5 s for another writer, then answers 500.
        let store = try data.openStore(busyTimeout: 5, serving: true)
        try data.checkKeys(of: store)

        var configuration = AppConfiguration()
        configuration.basePath = basePath
        configuration.tokenLifetime = tokenTTL.seconds
        configuration.smtpDeadline = smtpTimeout.duration
        configuration.smtpConnectTimeout = min(smtpConnectTimeout.duration, smtpTimeout.duration)
        configuration.smtpCommandTimeout = smtpTimeout.duration
        configuration.smtpCAFile = caFile
        configuration.heloName = heloName ?? ProcessInfo.processInfo.hostName
        configuration.maxInFlightPerUser = maxInFlightPerUser ?? max(1, threads / 4)
        configuration.kdfConcurrency = kdfConcurrency ?? max(1, ProcessInfo.processInfo.activeProcessorCount)
        configuration.defaultQuota = [.minute: quotaPerMinute, .hour: quotaPerHour, .day: quotaPerDay]
        configuration.requestLog = lineWriter
        configuration.maxMessageBytes = maxMessageBytes
        configuration.maxRecipients = maxRecipients
        configuration.idempotencyTTL = TimeInterval(idempotencyTTL.seconds)

        let pools = SMTPPoolRegistry(maxIdlePerPool: poolSize, idleTimeout: poolIdleTimeout.duration,
                                     maxMessagesPerConnection: maxMessagesPerConnection)
        // GET /metrics: this process's registry. MetricsSystem may be
        // bootstrapped once per process, and only here: anything else that
        // reports through swift-metrics lands in the same registry.
        let metrics = ServiceMetrics()
        MetricsSystem.bootstrap(metrics.factory)
        let application = Application(configuration: configuration, store: store, signer: signer,
                                      hasher: passwordHash.hasher, transport: pools, logger: logger, metrics: metrics)

        let address: ListenAddress
        if let socket {
            address = .unix(path: socket, mode: socketMode.mode)
        } else if let listen {
            address = try ListenAddress.parseTCP(listen)
        } else if let fd = Self.systemdSocket() {
            address = .inherited(fd: fd)
        } else if CGIOnce.isCGI {
            FastCGIServer.releaseStopSignals()
            CGIOnce.serve(maxBodyBytes: maxBody) { application.handle($0) }
            return
        } else {
            address = .inherited(fd: 0)
        }

        let server = FastCGIServer(
            configuration: .init(address: address, threads: threads, maxBodyBytes: maxBody),
            handler: { application.handle($0) })
        try server.bind()
        try server.run {
            logger.info("mailgate listening on \(address) with \(threads) threads; data in \(data.path)")
        }
        logger.info("signal received: stopped accepting, requests in flight finished; closing SMTP connections")
        pools.shutdown()
        logger.info("mailgate stopped")
    }

    /// systemd socket activation hands the socket over as fd 3.
    static func systemdSocket() -> Int32? {
        let environment = ProcessInfo.processInfo.environment
        guard environment["LISTEN_FDS"] == "1", environment["LISTEN_PID"] == String(getpid()) else { return nil }
        return 3
    }
}
