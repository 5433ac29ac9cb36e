import FastCGI
import Foundation
import JSON
import Store
import Crypto

extension Application {
    /// `POST /token`: OAuth2 password grant. Unknown users cost the same KDF
    /// work as known ones, and a username with too many recent failures from
    /// this client (or from all clients together) is refused with 429
    /// before any KDF work is spent on it.
    func issueToken(_ context: RequestContext) throws(APIError) -> CGIResponse {
        let body = try context.completeBody()

        // Client-sent strings are matched by bytes only (JSON's `utf8Equals`):
        // String comparison and hashing are quadratic on hostile input.
        let contentType = context.request.header("Content-Type") ?? ""
        guard ASCIIBytes.hasPrefix(contentType.utf8, ignoringCase: "application/x-www-form-urlencoded") else {
            throw .validation([
                .init("missing", ["body", "username"], "Field required"),
                .init("missing", ["body", "password"], "Field required"),
            ])
        }
        let fields: FormFields
        do {
            fields = try FormDecoding.decode(body, keeping: ["username", "password", "grant_type"])
        } catch .duplicateField(let name) {
            throw .validation([.init("duplicate", ["body", .string(name)], "Field given more than once")])
        } catch {
            throw .validation([.init("value_error", ["body"], "Form body is not valid UTF-8 form encoding")])
        }
        var problems: [ValidationProblem] = []
        if fields["username"] == nil { problems.append(.init("missing", ["body", "username"], "Field required")) }
        if fields["password"] == nil { problems.append(.init("missing", ["body", "password"], "Field required")) }
        if let grant = fields["grant_type"], !grant.utf8Equals("password") {
            problems.append(.init("string_pattern_mismatch", ["body", "grant_type"], "String should match pattern '^password$'"))
        }
        guard problems.isEmpty, let username = fields["username"], let password = fields["password"] else {
            throw .validation(problems)
        }

        let currentTime = now()
        // Only plausible usernames are throttled, and only those get rows, so
        // junk names cannot grow the table; they are still answered after
        // the same KDF work. The attempt is counted (as a failure until the
        // password proves right) before the KDF runs: see `beginLoginAttempt`.
        let trackable = (1...64).contains(username.utf8.count)
        let attempt: PendingLogin? = if trackable { try beginLoginAttempt(username, context, now: currentTime) } else { nil }
        var outcome = LoginOutcome.abandoned
        defer { if let attempt { finishLoginAttempt(attempt, outcome) } }

        let user: User?
        do {
            user = trackable ? try store.user(named: username) : nil
        } catch {
            throw internalError("user lookup failed", error)
        }
        guard let user else {
            guard kdfGate.run({ hasher.burnEquivalentWork(password) }) != nil else { throw kdfBusy }
            outcome = .failed
            throw .wrongLogin
        }
        guard let passwordMatches = kdfGate.run({ hasher.verify(password, against: user.passwordHash) }) else {
            throw kdfBusy
        }
        guard passwordMatches, !user.isDisabled else {
            outcome = .failed
            context.log.user = username
            throw .wrongLogin
        }
        outcome = .succeeded
        context.log.user = username
        let claims = TokenClaims(subject: username, issuedAt: currentTime,
                                 expiresAt: currentTime + configuration.tokenLifetime,
                                 notBefore: nil, version: user.tokenVersion)
        let token: String
        do {
            token = try signer.sign(claims)
        } catch {
            throw internalError("token signing failed", error)
        }
        return .json(200, .object([
            ("access_token", .string(token)),
            ("token_type", .string("bearer")),
            ("expires_in", .number(String(configuration.tokenLifetime))),
        ]), headers: [("Cache-Control", "no-store"), ("Pragma", "no-cache")])
    }

    /// Every password-hash slot stayed busy for `kdfWait`: many logins at once.
    private var kdfBusy: APIError {
        APIError(503, .loginBusy, "Too many logins at once; try again shortly", headers: [("Retry-After", "1")])
    }

    /// Counts this attempt for (username, client address) and the username
    /// in one store transaction, or refuses it with 429 when either has had
    /// too many failures within the window. The client is `REMOTE_ADDR`
    /// (behind nginx, the real client address), IPv6 by its /64.
    private func beginLoginAttempt(_ username: String, _ context: RequestContext,
                                   now currentTime: Int64) throws(APIError) -> PendingLogin {
        let client = LoginClient(remoteAddress: context.request[param: "REMOTE_ADDR"])
        let attempt: LoginAttempt
        do {
            attempt = try store.beginLoginAttempt(username, from: client, at: Date(timeIntervalSince1970: TimeInterval(currentTime)),
                                                  policy: configuration.loginThrottle)
        } catch {
            throw internalError("login throttle failed", error)
        }
        switch attempt {
        case .allowed(let pending):
            return pending
        case .locked(let retryAt, _):
            // Retry once enough failures have aged out of the window.
            let freedAt = Int64(retryAt.timeIntervalSince1970.rounded(.up))
            let retryAfter = max(1, freedAt - currentTime)
            throw APIError(429, .loginLocked, "Too many failed login attempts for this user; try again later",
                           headers: [("Retry-After", String(retryAfter))])
        }
    }

    /// A failure that cannot be stored leaves the attempt pending, which
    /// counts as a failure until the window passes: nothing to undo here.
    private func finishLoginAttempt(_ attempt: PendingLogin, _ outcome: LoginOutcome) {
        do {
            try store.finishLoginAttempt(attempt, outcome)
        } catch {
            logger.error("could not finish login attempt for \(attempt.username): \(error)")
        }
    }

    /// Retry-After of a 503 `store_unavailable`, seconds.
    static let storeRetryAfter = 5

    /// A failure on our side: 500, details in the log only. A store that
    /// cannot be reached (PostgreSQL down or restarting) is 503 instead:
    /// nothing was done, and a retry after a moment will likely work.
    func internalError(_ what: String, _ error: any Error) -> APIError {
        logger.error("\(what): \(error)")
        if let error = error as? StoreError, case .unavailable = error {
            return APIError(503, .storeUnavailable, "Store unavailable; try again shortly",
                            headers: [("Retry-After", String(Self.storeRetryAfter))])
        }
        return APIError(500, .internalError, "Internal server error")
    }
}
