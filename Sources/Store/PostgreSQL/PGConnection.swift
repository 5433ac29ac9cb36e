import CPostgreSQL
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A statement the store runs, prepared once per connection under `name`.
/// Parameters carry their types as casts (`$1::text`): they are sent
/// untyped, and some contexts (a select list, `unnest`) cannot infer one.
struct PGStatement: Sendable {
    let name: String
    let sql: String

    init(_ name: String, _ sql: String) {
        self.name = name
        self.sql = sql
    }
}

/// One parameter value. Text, numbers and booleans go in text format;
/// bytes in binary format (no escaping, no hex round trip).
enum PGValue: Sendable {
    case null
    case text(String)
    case int(Int64)
    case bool(Bool)
    case bytes([UInt8])
    /// A `bigint[]`, as its text form `{1,2,3}`.
    case intArray([Int64])

    static func int(_ value: Int) -> PGValue { .int(Int64(value)) }
    static func optionalInt(_ value: Int?) -> PGValue { value.map { .int(Int64($0)) } ?? .null }
    static func optionalText(_ value: String?) -> PGValue { value.map { .text($0) } ?? .null }
    static func optionalBytes(_ value: Data?) -> PGValue { value.map { .bytes(Array($0)) } ?? .null }
}

/// What libpq's connection parameters are, once checked: the URI (or
/// keyword/value string) the user gave, and the bounds the store adds.
struct PGConnectionSettings: Sendable {
    /// A libpq connection URI or keyword/value string; holds the password
    /// if the user put one there, so it is only ever shown `redacted`.
    let conninfo: String
    /// Seconds a connection attempt may take (libpq `connect_timeout`),
    /// unless the URI sets its own.
    let connectTimeout: Int
    /// Milliseconds a statement may run on the server (`statement_timeout`).
    let statementTimeoutMilliseconds: Int
    /// How long a call waits for the server's answer before it gives the
    /// connection up as lost: the statement timeout and a margin, so a
    /// server that stopped answering (host gone, no RST) cannot hang a
    /// request.
    var answerDeadline: TimeInterval { Double(statementTimeoutMilliseconds) / 1000 + 2 }

    /// The URI for messages: password removed.
    var redacted: String { PGConnectionSettings.redact(conninfo) }

    /// Checks `conninfo` with libpq's own parser, without connecting. The
    /// parser's message is not passed on: it can quote the string, and so
    /// the password.
    init(conninfo: String, connectTimeout: Int, statementTimeout: TimeInterval) throws(StoreError) {
        var message: UnsafeMutablePointer<CChar>?
        guard let options = PQconninfoParse(conninfo, &message) else {
            if let message { PQfreemem(message) }
            throw .database("not a usable PostgreSQL connection URI: \(Self.redact(conninfo))")
        }
        PQconninfoFree(options)
        self.conninfo = conninfo
        self.connectTimeout = max(1, connectTimeout)
        statementTimeoutMilliseconds = max(1, Int((statementTimeout * 1000).rounded()))
    }

    /// `conninfo` with any password replaced by `<redacted>`: the user
    /// info of a URI (`postgresql://user:secret@host`), a `password=`
    /// query parameter, and a `password=` keyword of the keyword/value form.
    static func redact(_ conninfo: String) -> String {
        var text = conninfo
        for scheme in ["postgresql://", "postgres://"] where text.lowercased().hasPrefix(scheme) {
            let rest = text.dropFirst(scheme.count)
            let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" } ?? rest.endIndex
            let authority = rest[..<authorityEnd]
            if let at = authority.lastIndex(of: "@"), let colon = authority[..<at].firstIndex(of: ":") {
                text = String(text.prefix(scheme.count)) + rest[...colon] + "<redacted>" + rest[at...]
            }
        }
        // password=VALUE in a query (up to & or the end) or keyword form (up
        // to a space, or a quoted value).
        var out = ""
        var remaining = Substring(text)
        while let range = remaining.range(of: "password", options: .caseInsensitive) {
            out += remaining[..<range.upperBound]
            remaining = remaining[range.upperBound...]
            let afterSpaces = remaining.drop { $0 == " " }
            guard afterSpaces.first == "=" else { continue }
            out += remaining[..<afterSpaces.startIndex] + "="
            var value = afterSpaces.dropFirst().drop { $0 == " " }
            if value.first == "'" {
                value = value.dropFirst()
                var escaped = false
                while let c = value.first {
                    value = value.dropFirst()
                    if escaped { escaped = false } else if c == "\\" { escaped = true } else if c == "'" { break }
                }
            } else {
                value = value.drop { $0 != " " && $0 != "&" }
            }
            out += "<redacted>"
            remaining = value
        }
        return out + remaining
    }
}

/// A result of a statement, read by row and column (binary format: the
/// store asks for every result in binary, so integers are big-endian, text
/// is UTF-8 bytes, bytea its bytes, booleans one byte).
final class PGResult {
    fileprivate let result: OpaquePointer

    fileprivate init(_ result: OpaquePointer) { self.result = result }
    deinit { PQclear(result) }

    var rowCount: Int { Int(PQntuples(result)) }

    /// Rows an INSERT, UPDATE or DELETE touched.
    var affectedRows: Int { Int(String(cString: PQcmdTuples(result))) ?? 0 }

    func isNull(_ row: Int, _ column: Int) -> Bool { PQgetisnull(result, Int32(row), Int32(column)) != 0 }

    func bytes(_ row: Int, _ column: Int) -> [UInt8]? {
        guard row < rowCount, column < Int(PQnfields(result)), !isNull(row, column) else { return nil }
        let length = Int(PQgetlength(result, Int32(row), Int32(column)))
        guard let value = PQgetvalue(result, Int32(row), Int32(column)) else { return nil }
        return value.withMemoryRebound(to: UInt8.self, capacity: length) { Array(UnsafeBufferPointer(start: $0, count: length)) }
    }

    func text(_ row: Int, _ column: Int) throws(StoreError) -> String? {
        guard let bytes = bytes(row, column) else { return nil }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw .database("column \(column) of a result is not UTF-8 text")
        }
        return text
    }

    /// A smallint, integer or bigint column.
    func int(_ row: Int, _ column: Int) throws(StoreError) -> Int64? {
        guard let bytes = bytes(row, column) else { return nil }
        switch bytes.count {
        case 2: return Int64(Int16(bitPattern: UInt16(bytes[0]) << 8 | UInt16(bytes[1])))
        case 4: return Int64(Int32(bitPattern: bytes.reduce(UInt32(0)) { $0 << 8 | UInt32($1) }))
        case 8: return Int64(bitPattern: bytes.reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
        default: throw .database("column \(column) of a result is not an integer (\(bytes.count) bytes)")
        }
    }

    func bool(_ row: Int, _ column: Int) throws(StoreError) -> Bool? {
        guard let bytes = bytes(row, column) else { return nil }
        guard bytes.count == 1 else { throw .database("column \(column) of a result is not a boolean") }
        return bytes[0] != 0
    }

    // Non-optional forms for NOT NULL columns.
    func requiredText(_ row: Int, _ column: Int) throws(StoreError) -> String {
        guard let value = try text(row, column) else { throw .database("column \(column) of a result is NULL") }
        return value
    }

    func requiredInt(_ row: Int, _ column: Int) throws(StoreError) -> Int64 {
        guard let value = try int(row, column) else { throw .database("column \(column) of a result is NULL") }
        return value
    }

    func requiredBool(_ row: Int, _ column: Int) throws(StoreError) -> Bool {
        guard let value = try bool(row, column) else { throw .database("column \(column) of a result is NULL") }
        return value
    }

    func requiredBytes(_ row: Int, _ column: Int) throws(StoreError) -> [UInt8] {
        guard let value = bytes(row, column) else { throw .database("column \(column) of a result is NULL") }
        return value
    }
}

/// A statement the server refused (not a lost connection): its SQLSTATE,
/// so callers can tell a unique violation (23505) from the rest.
struct PGStatementError: Error {
    let sqlState: String
    let error: StoreError
}

/// One libpq connection, used by one thread at a time (`PostgresStore`
/// keeps one per worker thread), made on first use and made again on the
/// first call after it broke: a PostgreSQL restart needs no Mailgate
/// restart. Every wait is bounded: `connect_timeout` for connecting, and
/// `answerDeadline` (poll on the socket) for each answer, beyond the
/// server's own `statement_timeout`.
final class PGConnection: @unchecked Sendable {  // used only by the thread that owns it (PerThread)
    let settings: PGConnectionSettings
    private var connection: OpaquePointer?
    /// Statements prepared on `connection` (forgotten with it).
    private var prepared: Set<String> = []

    init(settings: PGConnectionSettings) {
        self.settings = settings
    }

    deinit {
        if let connection { PQfinish(connection) }
    }

    // MARK: Running statements

    /// Runs `statement` with `parameters`; `operation` names it in errors
    /// (never the values: they can be secrets). Throws `.unavailable` when
    /// the server cannot be reached or the connection was lost, else
    /// `PGStatementError` for a statement the server refused.
    func run(_ statement: PGStatement, _ parameters: [PGValue] = [], _ operation: String) throws -> PGResult {
        let connection = try connected(operation)
        if !prepared.contains(statement.name) {
            guard PQsendPrepare(connection, statement.name, statement.sql, 0, nil) != 0 else {
                throw lost(operation, "PQsendPrepare")
            }
            _ = try answer(operation)
            prepared.insert(statement.name)
        }
        try send(statement.name, parameters, on: connection, operation)
        return try answer(operation)
    }

    /// Waits up to `timeout` for notifications on the channels this
    /// connection LISTENs to; returns how many arrived (0 on timeout).
    /// Throws `.unavailable` when the connection is lost.
    func awaitNotifications(timeout: Duration, _ operation: String) throws(StoreError) -> Int {
        guard let connection, PQstatus(connection) == CONNECTION_OK else {
            throw .unavailable("\(operation): not connected")
        }
        var count = drainNotifications(connection)
        if count > 0 { return count }
        let milliseconds = Int32(clamping: timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        var descriptor = pollfd(fd: PQsocket(connection), events: Int16(POLLIN), revents: 0)
        let ready = poll(&descriptor, 1, milliseconds)
        if ready < 0 && errno != EINTR { throw lost(operation, "poll") }
        if ready > 0 {
            guard PQconsumeInput(connection) != 0, PQstatus(connection) == CONNECTION_OK else { throw lost(operation, "PQconsumeInput") }
            count = drainNotifications(connection)
        }
        return count
    }

    private func drainNotifications(_ connection: OpaquePointer) -> Int {
        var count = 0
        while let notification = PQnotifies(connection) {
            PQfreemem(notification)
            count += 1
        }
        return count
    }

    /// Runs SQL without parameters (transaction control, migrations),
    /// unprepared; may hold several statements.
    func execute(_ sql: String, _ operation: String) throws {
        let connection = try connected(operation)
        guard PQsendQuery(connection, sql) != 0 else { throw lost(operation, "PQsendQuery") }
        _ = try answer(operation)
    }

    /// Runs `body` in a transaction: committed if it returns, rolled back
    /// if it throws. A serialization failure or deadlock (which PostgreSQL
    /// resolves by failing one party) runs it again, a few times.
    func transaction<T>(_ operation: String, _ body: () throws -> T) throws -> T {
        var attempt = 0
        while true {
            attempt += 1
            try execute("BEGIN", operation)
            do {
                let value = try body()
                try execute("COMMIT", operation)
                return value
            } catch {
                rollback()
                if let refused = error as? PGStatementError, ["40001", "40P01"].contains(refused.sqlState), attempt < 5 {
                    continue
                }
                throw error
            }
        }
    }

    /// Ends a failed transaction; a connection that cannot even do that is
    /// dropped, so the next call starts on a fresh one.
    private func rollback() {
        guard let connection, PQstatus(connection) == CONNECTION_OK else { return }
        do {
            try execute("ROLLBACK", "rollback")
        } catch {
            drop()
        }
    }

    // MARK: The connection

    /// The live connection, made (again) if there is none or it broke.
    /// Between calls the server has nothing to say to an idle connection
    /// (the store does not LISTEN); a socket readable then is one the
    /// server is closing (a restart or shutdown sends FATAL, then FIN,
    /// which libpq may not have read yet). It is replaced before use, so
    /// a restart costs no request an error. One poll(2), no round trip.
    private func connected(_ operation: String) throws(StoreError) -> OpaquePointer {
        if let connection {
            if PQstatus(connection) == CONNECTION_OK {
                var descriptor = pollfd(fd: PQsocket(connection), events: Int16(POLLIN), revents: 0)
                if poll(&descriptor, 1, 0) == 0 { return connection }
            }
            drop()
        }
        return try connect(operation)
    }

    private func connect(_ operation: String) throws(StoreError) -> OpaquePointer {
        // Defaults first, the user's string last: with expand_dbname, later
        // keywords win, so the URI may set its own connect_timeout etc.
        let keywords = ["connect_timeout", "tcp_user_timeout", "application_name", "dbname"]
        let values = [String(settings.connectTimeout), String(settings.statementTimeoutMilliseconds + 5000),
                      "mailgate", settings.conninfo]
        let made: OpaquePointer? = Self.withCStrings(keywords) { keywordPointers in
            Self.withCStrings(values) { valuePointers in
                PQconnectdbParams(keywordPointers, valuePointers, 1)
            }
        }
        guard let made else { throw .unavailable("\(operation): cannot allocate a PostgreSQL connection") }
        guard PQstatus(made) == CONNECTION_OK else {
            let message = Self.message(PQerrorMessage(made))
            PQfinish(made)
            throw .unavailable("\(operation): cannot connect to \(settings.redacted): \(message)")
        }
        // Notices (e.g. "relation already exists, skipping") would go to
        // stderr by default: the store has nothing to say about them.
        PQsetNoticeProcessor(made, { _, _ in }, nil)
        connection = made
        prepared = []
        do {
            // Set here, not through the URI's `options`, which the user's
            // string may set (and which would then replace these).
            try execute("SET statement_timeout = \(settings.statementTimeoutMilliseconds); "
                            + "SET idle_in_transaction_session_timeout = \(settings.statementTimeoutMilliseconds * 4)",
                        "\(operation): configure the connection")
        } catch let error as StoreError {
            drop()
            throw error
        } catch let error as PGStatementError {
            drop()
            throw error.error
        } catch {
            drop()
            throw .database("\(operation): \(type(of: error))")
        }
        return made
    }

    /// Closes the connection; the next call makes a new one.
    func drop() {
        if let connection { PQfinish(connection) }
        connection = nil
        prepared = []
    }

    // MARK: Protocol steps

    private func send(_ name: String, _ parameters: [PGValue], on connection: OpaquePointer,
                      _ operation: String) throws(StoreError) {
        // All values in one buffer; text ones NUL-terminated (libpq reads
        // text parameters up to the NUL), binary ones by length.
        var buffer: [UInt8] = []
        var offsets: [Int?] = []
        var lengths: [Int32] = []
        var formats: [Int32] = []
        for parameter in parameters {
            var text: String?
            switch parameter {
            case .null:
                offsets.append(nil); lengths.append(0); formats.append(0)
                continue
            case .text(let value):
                // A NUL would silently end the value early.
                guard !value.utf8.contains(0) else { throw .database("\(operation): a text value holds a NUL byte") }
                text = value
            case .int(let value): text = String(value)
            case .bool(let value): text = value ? "t" : "f"
            case .intArray(let values): text = "{" + values.map(String.init).joined(separator: ",") + "}"
            case .bytes(let value):
                offsets.append(buffer.count); lengths.append(Int32(value.count)); formats.append(1)
                buffer += value
                continue
            }
            guard let text else { continue }
            let bytes = Array(text.utf8)
            offsets.append(buffer.count); lengths.append(Int32(bytes.count)); formats.append(0)
            buffer += bytes
            buffer.append(0)
        }
        buffer.append(0)  // never an empty buffer, so there is always a base address
        let sent: Int32 = buffer.withUnsafeBufferPointer { storage in
            let base = UnsafeRawPointer(storage.baseAddress!)
            let values: [UnsafePointer<CChar>?] = offsets.map { offset in
                offset.map { (base + $0).assumingMemoryBound(to: CChar.self) }
            }
            return PQsendQueryPrepared(connection, name, Int32(parameters.count), values, lengths, formats, 1)
        }
        guard sent != 0 else { throw lost(operation, "PQsendQueryPrepared") }
    }

    /// Waits (bounded) for the answer to what was sent and returns its last
    /// result. The socket is polled, not read blocking: a server that
    /// stops answering costs `answerDeadline`, then the connection is
    /// dropped as lost.
    private func answer(_ operation: String) throws -> PGResult {
        guard let connection else { throw StoreError.unavailable("\(operation): not connected") }
        let deadline = Date().addingTimeInterval(settings.answerDeadline)
        var last: PGResult?
        var failure: PGResult?
        while true {
            while PQisBusy(connection) != 0 {
                let remaining = deadline.timeIntervalSinceNow
                guard remaining > 0 else {
                    drop()
                    throw StoreError.unavailable(
                        "\(operation): no answer from \(settings.redacted) within \(Int(settings.answerDeadline)) s")
                }
                var descriptor = pollfd(fd: PQsocket(connection), events: Int16(POLLIN), revents: 0)
                let ready = poll(&descriptor, 1, Int32(min(remaining * 1000 + 1, 60_000)))
                if ready < 0 && errno != EINTR { throw lost(operation, "poll") }
                if ready > 0 && PQconsumeInput(connection) == 0 { throw lost(operation, "PQconsumeInput") }
            }
            guard let next = PQgetResult(connection) else { break }
            let result = PGResult(next)
            switch PQresultStatus(next) {
            case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY:
                last = result
            default:
                if failure == nil { failure = result }
            }
        }
        if let failure { throw refused(failure, operation) }
        if PQstatus(connection) != CONNECTION_OK { throw lost(operation, "the connection") }
        guard let last else { throw StoreError.database("\(operation): no result") }
        return last
    }

    /// The error for a failed result: `.unavailable` when the connection
    /// is gone or the server is shutting down or starting (SQLSTATE class
    /// 08, 57P01-57P03, 53300 too many connections, 57014 cancelled by the
    /// statement timeout), else a `PGStatementError`. Only the SQLSTATE and
    /// the primary message: the detail can quote row values.
    private func refused(_ result: PGResult, _ operation: String) -> any Error {
        let state = PQresultErrorField(result.result, mailgate_PG_DIAG_SQLSTATE()).map { String(cString: $0) } ?? ""
        let primary = PQresultErrorField(result.result, mailgate_PG_DIAG_MESSAGE_PRIMARY()).map { String(cString: $0) }
        let message = primary ?? Self.message(PQresultErrorMessage(result.result))
        let gone = connection.map { PQstatus($0) != CONNECTION_OK } ?? true
        if gone || state.hasPrefix("08") || ["57P01", "57P02", "57P03", "53300", "57014"].contains(state) {
            if gone || state != "57014" { drop() }
            return StoreError.unavailable("\(operation): \(settings.redacted): \(state.isEmpty ? "" : "SQLSTATE \(state): ")\(message)")
        }
        return PGStatementError(sqlState: state, error: .database("\(operation): SQLSTATE \(state): \(message)"))
    }

    /// A libpq call failed on the connection itself: it is dropped.
    private func lost(_ operation: String, _ call: String) -> StoreError {
        let message = connection.map { Self.message(PQerrorMessage($0)) } ?? "no connection"
        drop()
        return .unavailable("\(operation): \(call) on \(settings.redacted): \(message)")
    }

    private static func message(_ text: UnsafeMutablePointer<CChar>?) -> String {
        guard let text else { return "no message" }
        return String(cString: text).trimmingCharacters(in: .whitespacesAndNewlines)
            .split(whereSeparator: \.isNewline).joined(separator: " ")
    }

    private static func withCStrings<T>(_ strings: [String], _ body: ([UnsafePointer<CChar>?]) -> T) -> T {
        let copies = strings.map { strdup($0) }
        defer { copies.forEach { free($0) } }
        return body(copies.map { UnsafePointer($0) } + [nil])
    }
}
