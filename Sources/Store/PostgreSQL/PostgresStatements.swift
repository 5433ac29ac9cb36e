/// Every statement `PostgresStore` runs, each prepared once per connection.
/// Parameters are cast where they appear, so the server never guesses a type.
enum PostgresStatements {
    static let userColumns = """
        id, username, password_hash, is_disabled, token_version, created_at_ms,
        allowed_recipients, quota_per_minute, quota_per_hour, quota_per_day
        """
    static let integrationColumns = """
        user_id, host, port, security, username, password_sealed, from_address, from_name, updated_at_ms,
        password_seal_version, auth, oauth2_provider, oauth2_token_url, oauth2_authorization_url, oauth2_client_id,
        oauth2_client_secret_sealed, oauth2_refresh_token_sealed, oauth2_scope, oauth2_tenant
        """

    // MARK: Users

    static let addUser = PGStatement("user.add", """
        INSERT INTO users (username, password_hash, is_disabled, token_version, created_at_ms)
        VALUES ($1::text, $2::text, false,
                COALESCE((SELECT next_token_version FROM removed_usernames WHERE username = $1::text), 0), $3::bigint)
        ON CONFLICT (username) DO NOTHING
        RETURNING id, token_version
        """)
    static let user = PGStatement("user.get", "SELECT \(userColumns) FROM users WHERE username = $1::text")
    static let listUsers = PGStatement("user.list", "SELECT \(userColumns) FROM users ORDER BY username")
    static let setPasswordHash = PGStatement("user.password", """
        UPDATE users SET password_hash = $2::text, token_version = token_version + 1 WHERE username = $1::text
        """)
    static let setDisabled = PGStatement("user.disabled", """
        UPDATE users SET is_disabled = $2::boolean,
                         token_version = token_version + CASE WHEN $2::boolean THEN 1 ELSE 0 END
        WHERE username = $1::text
        """)
    static let setRecipientPolicy = PGStatement("user.recipients", """
        UPDATE users SET allowed_recipients = $2::text WHERE username = $1::text
        """)
    static let setSendQuota = PGStatement("user.quota", """
        UPDATE users SET quota_per_minute = $2::bigint, quota_per_hour = $3::bigint, quota_per_day = $4::bigint
        WHERE username = $1::text
        """)
    static let revokeTokens = PGStatement("user.revoke", """
        UPDATE users SET token_version = token_version + 1 WHERE username = $1::text RETURNING token_version
        """)
    /// One statement, so one atomic change: the user (and by cascade the
    /// integration and named tokens), the name's login attempts and
    /// idempotency records, and the token version to continue from.
    static let removeUser = PGStatement("user.remove", """
        WITH gone AS (DELETE FROM users WHERE username = $1::text RETURNING token_version),
             attempts AS (DELETE FROM login_attempts WHERE username = $1::text AND EXISTS (SELECT 1 FROM gone)),
             keys AS (DELETE FROM idempotency_keys WHERE username = $1::text AND EXISTS (SELECT 1 FROM gone)),
             remembered AS (
                 INSERT INTO removed_usernames (username, next_token_version)
                 SELECT $1::text, token_version + 1 FROM gone
                 ON CONFLICT (username) DO UPDATE SET next_token_version = excluded.next_token_version)
        SELECT count(*) FROM gone
        """)
    static let userExists = PGStatement("user.exists", "SELECT 1 FROM users WHERE username = $1::text")
    /// Locks the user's row for the transaction: integration writes of one
    /// user (any host) run one after another.
    static let lockUser = PGStatement("user.lock", "SELECT id FROM users WHERE username = $1::text FOR UPDATE")

    // MARK: Send counting

    /// Locks (creating if needed) the user's row of each window, in window
    /// order (two reservations never wait on each other crosswise), moved
    /// to the window holding now (a count of an ended window starts again
    /// at 0, as SendCounter's slots do), and answers each window's count.
    static let lockSendCounts = PGStatement("quota.lock", """
        INSERT INTO send_counts AS s (username, window_seconds, window_start, count)
        SELECT $1::text, w.seconds, w.start, 0 FROM unnest($2::bigint[], $3::bigint[]) AS w(seconds, start)
        ORDER BY w.seconds
        ON CONFLICT (username, window_seconds) DO UPDATE SET
            count = CASE WHEN s.window_start = excluded.window_start THEN s.count ELSE 0 END,
            window_start = excluded.window_start
        RETURNING s.window_seconds, s.count
        """)
    static let addSends = PGStatement("quota.add", """
        UPDATE send_counts SET count = count + $3::bigint
        WHERE username = $1::text AND window_seconds = ANY($2::bigint[])
        """)
    /// Gives back to the windows that still start where the reservation's did.
    static let releaseSends = PGStatement("quota.release", """
        UPDATE send_counts AS s SET count = GREATEST(0, s.count - $4::bigint)
        FROM unnest($2::bigint[], $3::bigint[]) AS w(seconds, start)
        WHERE s.username = $1::text AND s.window_seconds = w.seconds AND s.window_start = w.start
        """)

    // MARK: Integrations and credentials

    static let integration = PGStatement("integration.get", """
        SELECT \(integrationColumns) FROM smtp_integrations WHERE user_id = $1::bigint
        """)
    static let upsertIntegration = PGStatement("integration.set", """
        INSERT INTO smtp_integrations (\(integrationColumns))
        VALUES ($1::bigint, $2::text, $3::integer, $4::text, $5::text, $6::bytea, $7::text, $8::text, $9::bigint,
                $10::integer, $11::text, $12::text, $13::text, $14::text, $15::text, $16::bytea, $17::bytea,
                $18::text, $19::text)
        ON CONFLICT (user_id) DO UPDATE SET
            host = excluded.host, port = excluded.port, security = excluded.security, username = excluded.username,
            password_sealed = excluded.password_sealed, from_address = excluded.from_address,
            from_name = excluded.from_name, updated_at_ms = excluded.updated_at_ms,
            password_seal_version = excluded.password_seal_version, auth = excluded.auth,
            oauth2_provider = excluded.oauth2_provider, oauth2_token_url = excluded.oauth2_token_url,
            oauth2_authorization_url = excluded.oauth2_authorization_url, oauth2_client_id = excluded.oauth2_client_id,
            oauth2_client_secret_sealed = excluded.oauth2_client_secret_sealed,
            oauth2_refresh_token_sealed = excluded.oauth2_refresh_token_sealed,
            oauth2_scope = excluded.oauth2_scope, oauth2_tenant = excluded.oauth2_tenant
        """)
    static let storeRefreshToken = PGStatement("integration.refresh", """
        UPDATE smtp_integrations SET oauth2_refresh_token_sealed = $2::bytea, updated_at_ms = $3::bigint
        WHERE user_id = $1::bigint
        """)
    static let removeIntegration = PGStatement("integration.remove", """
        DELETE FROM smtp_integrations i USING users u WHERE i.user_id = u.id AND u.username = $1::text
        """)
    /// The user and their integration in one statement: one snapshot, one
    /// round trip. Columns 0-9 the user, 10-28 the integration (NULLs
    /// when there is none).
    static let credentials = PGStatement("credentials", """
        SELECT u.id, u.username, u.password_hash, u.is_disabled, u.token_version, u.created_at_ms,
               u.allowed_recipients, u.quota_per_minute, u.quota_per_hour, u.quota_per_day,
               i.user_id, i.host, i.port, i.security, i.username, i.password_sealed, i.from_address, i.from_name,
               i.updated_at_ms, i.password_seal_version, i.auth, i.oauth2_provider, i.oauth2_token_url,
               i.oauth2_authorization_url, i.oauth2_client_id, i.oauth2_client_secret_sealed,
               i.oauth2_refresh_token_sealed, i.oauth2_scope, i.oauth2_tenant
        FROM users u LEFT JOIN smtp_integrations i ON i.user_id = u.id
        WHERE u.username = $1::text
        """)
    static let checkReadable = PGStatement("health", "SELECT count(*) FROM (SELECT 1 FROM users LIMIT 1) AS u")

    // MARK: Named tokens

    static let tokenSelection = """
        SELECT t.id, u.username, t.name, t.created_at_ms, t.expires_at_ms, t.last_used_day, t.revoked_at_ms
        FROM named_tokens t JOIN users u ON u.id = t.user_id
        """
    static let addNamedToken = PGStatement("token.add", """
        INSERT INTO named_tokens (id, user_id, name, created_at_ms, expires_at_ms)
        SELECT $1::text, id, $2::text, $3::bigint, $4::bigint FROM users WHERE username = $5::text
        """)
    static let allNamedTokens = PGStatement("token.all", tokenSelection + " ORDER BY u.username, t.created_at_ms, t.id")
    static let namedTokensOfUser = PGStatement("token.of", tokenSelection + """
         WHERE u.username = $1::text ORDER BY u.username, t.created_at_ms, t.id
        """)
    static let namedToken = PGStatement("token.get", tokenSelection + " WHERE t.id = $1::text")
    static let revokeNamedToken = PGStatement("token.revoke", """
        UPDATE named_tokens SET revoked_at_ms = $2::bigint WHERE id = $1::text AND revoked_at_ms IS NULL
        """)
    static let namedTokenExists = PGStatement("token.exists", "SELECT 1 FROM named_tokens WHERE id = $1::text")
    static let recordNamedTokenUse = PGStatement("token.use", """
        UPDATE named_tokens SET last_used_day = $2::bigint
        WHERE id = $1::text AND (last_used_day IS NULL OR last_used_day < $2::bigint)
        """)

    // MARK: Login throttling

    /// Serialises the attempts on one username (from every host) for the
    /// transaction: the count and the pending mark are then one step. The
    /// two-key form: its key space is apart from the migration lock's.
    static let lockUsername = PGStatement("login.lock", """
        SELECT pg_advisory_xact_lock(1819240295, hashtext($1::text))
        """)
    static let countAttempts = PGStatement("login.count", """
        SELECT count(*) FILTER (WHERE client = $2::bytea), count(*) FROM login_attempts
        WHERE username = $1::text AND attempted_at_ms > $3::bigint
        """)
    static let clientPivot = PGStatement("login.pivot.client", """
        SELECT attempted_at_ms FROM login_attempts
        WHERE username = $1::text AND client = $2::bytea AND attempted_at_ms > $3::bigint
        ORDER BY attempted_at_ms LIMIT 1 OFFSET $4::bigint
        """)
    static let usernamePivot = PGStatement("login.pivot.username", """
        SELECT attempted_at_ms FROM login_attempts
        WHERE username = $1::text AND attempted_at_ms > $2::bigint
        ORDER BY attempted_at_ms LIMIT 1 OFFSET $3::bigint
        """)
    static let pruneAttempts = PGStatement("login.prune", "DELETE FROM login_attempts WHERE attempted_at_ms < $1::bigint")
    static let markAttempt = PGStatement("login.mark", """
        INSERT INTO login_attempts (username, client, attempted_at_ms, is_pending)
        VALUES ($1::text, $2::bytea, $3::bigint, true) RETURNING id
        """)
    static let attemptFailed = PGStatement("login.failed", "UPDATE login_attempts SET is_pending = false WHERE id = $1::bigint")
    static let attemptSucceeded = PGStatement("login.succeeded", """
        DELETE FROM login_attempts
        WHERE id = $1::bigint OR (username = $2::text AND client = $3::bytea AND NOT is_pending)
        """)
    static let attemptAbandoned = PGStatement("login.abandoned", "DELETE FROM login_attempts WHERE id = $1::bigint")
    static let failureCount = PGStatement("login.failures", """
        SELECT count(*) FROM login_attempts WHERE username = $1::text AND attempted_at_ms >= $2::bigint
        """)
    static let failureCountFromClient = PGStatement("login.failures.client", """
        SELECT count(*) FROM login_attempts
        WHERE username = $1::text AND client = $3::bytea AND attempted_at_ms >= $2::bigint
        """)

    // MARK: Idempotency keys

    /// A bounded batch of expired records, by the expiry index; rows another
    /// claim is deleting are skipped rather than waited for.
    static let deleteExpiredKeys = PGStatement("idempotency.expire", """
        DELETE FROM idempotency_keys WHERE ctid = ANY(ARRAY(
            SELECT ctid FROM idempotency_keys WHERE expires_at_ms <= $1::bigint
            ORDER BY expires_at_ms LIMIT $2::bigint FOR UPDATE SKIP LOCKED))
        """)
    static let insertClaim = PGStatement("idempotency.insert", """
        INSERT INTO idempotency_keys (username, key, fingerprint, claim, claimed_at_ms, expires_at_ms)
        VALUES ($1::text, $2::bytea, $3::bytea, $4::bytea, $5::bigint, $6::bigint)
        ON CONFLICT (username, key) DO NOTHING
        """)
    /// The record, locked for the transaction: a concurrent claim of the
    /// same key waits here and then reads what this one decided.
    static let lockKey = PGStatement("idempotency.lock", """
        SELECT fingerprint, claimed_at_ms, expires_at_ms, status, headers, body FROM idempotency_keys
        WHERE username = $1::text AND key = $2::bytea FOR UPDATE
        """)
    static let reclaimKey = PGStatement("idempotency.reclaim", """
        UPDATE idempotency_keys SET fingerprint = $3::bytea, claim = $4::bytea, claimed_at_ms = $5::bigint,
            expires_at_ms = $6::bigint, status = NULL, headers = NULL, body = NULL
        WHERE username = $1::text AND key = $2::bytea
        """)
    static let abandonKey = PGStatement("idempotency.abandon", """
        UPDATE idempotency_keys SET status = $3::integer, headers = $4::bytea, body = $5::bytea
        WHERE username = $1::text AND key = $2::bytea AND status IS NULL
        """)
    static let completeKey = PGStatement("idempotency.complete", """
        UPDATE idempotency_keys SET status = $4::integer, headers = $5::bytea, body = $6::bytea
        WHERE username = $1::text AND key = $2::bytea AND claim = $3::bytea AND status IS NULL
        """)
    static let releaseKey = PGStatement("idempotency.release", """
        DELETE FROM idempotency_keys
        WHERE username = $1::text AND key = $2::bytea AND claim = $3::bytea AND status IS NULL
        """)

    // MARK: Copying between stores (StoreRecords)

    /// Ordered by bytes (the "C" collation), as SQLite's export is. Column
    /// 0 the owner, 1-19 `integrationColumns`.
    static let exportIntegrations = PGStatement("copy.integrations", """
        SELECT u.username, i.user_id, i.host, i.port, i.security, i.username, i.password_sealed, i.from_address,
               i.from_name, i.updated_at_ms, i.password_seal_version, i.auth, i.oauth2_provider, i.oauth2_token_url,
               i.oauth2_authorization_url, i.oauth2_client_id, i.oauth2_client_secret_sealed,
               i.oauth2_refresh_token_sealed, i.oauth2_scope, i.oauth2_tenant
        FROM smtp_integrations i JOIN users u ON u.id = i.user_id ORDER BY u.username
        """)
    static let exportRemovedUsernames = PGStatement("copy.removed", """
        SELECT username, next_token_version FROM removed_usernames ORDER BY username
        """)
    static let exportKeyFingerprints = PGStatement("copy.keys", "SELECT name, fingerprint FROM mailgate_keys ORDER BY name")
    /// Whether the store holds anything `importRecords` would merge with.
    static let isOccupied = PGStatement("copy.occupied", """
        SELECT EXISTS (SELECT 1 FROM users) OR EXISTS (SELECT 1 FROM removed_usernames)
        """)
    static let importUser = PGStatement("copy.user", """
        INSERT INTO users (username, password_hash, is_disabled, token_version, created_at_ms, allowed_recipients,
                           quota_per_minute, quota_per_hour, quota_per_day)
        VALUES ($1::text, $2::text, $3::boolean, $4::bigint, $5::bigint, $6::text, $7::bigint, $8::bigint, $9::bigint)
        RETURNING id
        """)
    static let importNamedToken = PGStatement("copy.token", """
        INSERT INTO named_tokens (id, user_id, name, created_at_ms, expires_at_ms, last_used_day, revoked_at_ms)
        VALUES ($1::text, $2::bigint, $3::text, $4::bigint, $5::bigint, $6::bigint, $7::bigint)
        """)
    static let importRemovedUsername = PGStatement("copy.removed.add", """
        INSERT INTO removed_usernames (username, next_token_version) VALUES ($1::text, $2::bigint)
        """)

    // MARK: Key fingerprints

    static let keyFingerprint = PGStatement("keys.get", "SELECT fingerprint FROM mailgate_keys WHERE name = $1::text")
    static let setKeyFingerprint = PGStatement("keys.set", """
        INSERT INTO mailgate_keys (name, fingerprint) VALUES ($1::text, $2::bytea)
        ON CONFLICT (name) DO UPDATE SET fingerprint = excluded.fingerprint
        """)
}
