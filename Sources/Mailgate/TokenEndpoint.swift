import FastCGI
import Foundation
import JSON
import Store
import Crypto

extension Application {
    /// `POST /token`: OAuth2 password grant. Unknown users cost the same KDF
    /// work as known ones, and a username with too many recent failures is
    /// refused with 429 before any KDF work is spent on it.
    func issueToken(_ context: RequestContext) throws(APIError) -> CGIResponse {
        let body = try context.completeBody()

        // Client-sent strings are matched by bytes only (JSON's `utf8Equals`):
        // String comparison and hashing are quadratic on hostile input.
        let contentType = context.request.header("Content-Type") ?? ""
        guard ASCIIBytes.hasPrefix(contentType.utf8, ignoringCase: "application/x-www-form-urlencoded") else {
            throw .validation([
                ("missing", ["body", "username"], "Field required"),
                ("missing", ["body", "password"], "Field required"),
            ])
        }
        let fields: FormFields
        do {
            fields = try FormDecoding.decode(body, keeping: ["username", "password", "grant_type"])
        } catch .duplicateField(let name) {
            throw .validation([("duplicate", ["body", name], "Field given more than once")])
        } catch {
            throw .validation([("value_error", ["body"], "Form body is not valid UTF-8 form encoding")])
        }
        var problems: [(type: String, location: [String], message: String)] = []
        if fields["username"] == nil { problems.append(("missing", ["body", "username"], "Field required")) }
        if fields["password"] == nil { problems.append(("missing", ["body", "password"], "Field required")) }
        if let grant = fields["grant_type"], !grant.utf8Equals("password") {
            problems.append(("string_pattern_mismatch", ["body", "grant_type"], "String should match pattern '^password$'"))
        }
        guard problems.isEmpty, let username = fields["username"], let password = fields["password"] else {
            throw .validation(problems)
        }

        let currentTime = now()
        // Only plausible usernames get a throttle row, so junk names cannot
        // grow the table; they are still answered after the same KDF work.
        let trackable = (1...64).contains(username.utf8.count)
        if trackable {
            try checkLoginThrottle(username, now: currentTime)
        }

        let user: User?
        do {
            user = trackable ? try store.user(named: username) : nil
        } catch {
            throw internalError("user lookup failed", error)
        }
        guard let user else {
            guard kdfGate.run({ hasher.burnEquivalentWork(password) }) != nil else { throw kdfBusy }
            if trackable { recordFailure(username, now: currentTime) }
            throw .wrongLogin
        }
        guard let passwordMatches = kdfGate.run({ hasher.verify(password, against: user.passwordHash) }) else {
            throw kdfBusy
        }
        guard passwordMatches, !user.isDisabled else {
            recordFailure(username, now: currentTime)
            context.log.user = username
            throw .wrongLogin
        }
        do {
            try store.clearFailedLogins(username)
        } catch {
            logger.warning("could not clear failed logins for \(username): \(error)")
        }
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

    private func checkLoginThrottle(_ username: String, now currentTime: Int64) throws(APIError) {
        let windowStart = Date(timeIntervalSince1970: TimeInterval(currentTime - configuration.loginFailureWindow))
        let failures: Int
        let oldest: Date?
        do {
            failures = try store.failedLoginCount(username, since: windowStart)
            oldest = failures >= configuration.loginFailureLimit ? try store.oldestFailedLogin(username, since: windowStart) : nil
        } catch {
            throw internalError("login throttle lookup failed", error)
        }
        guard failures >= configuration.loginFailureLimit else { return }
        // Retry once the oldest failure in the window has aged out of it.
        let freedAt = Int64((oldest?.timeIntervalSince1970 ?? Double(currentTime))) + configuration.loginFailureWindow
        let retryAfter = max(1, freedAt - currentTime)
        throw APIError(429, .loginLocked, "Too many failed login attempts for this user; try again later",
                       headers: [("Retry-After", String(retryAfter))])
    }

    private func recordFailure(_ username: String, now currentTime: Int64) {
        do {
            try store.recordFailedLogin(username, at: Date(timeIntervalSince1970: TimeInterval(currentTime)))
        } catch {
            logger.error("could not record failed login: \(error)")
        }
    }

    func internalError(_ what: String, _ error: any Error) -> APIError {
        logger.error("\(what): \(error)")
        return APIError(500, .internalError, "Internal server error")
    }
}
