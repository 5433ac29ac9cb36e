import Foundation
import GRDB

/// The SQLite database: how a connection is configured, and the schema as
/// named migrations. Migrations are append-only: existing files have these
/// applied, by these names, so never edit or rename one; add a new one.
enum SQLiteSchema {
    /// The configuration of the writing pool (server and CLI alike).
    /// `busyTimeout`: how long a write waits for another connection's
    /// write transaction before failing with SQLITE_BUSY.
    static func configuration(busyTimeout: TimeInterval) -> Configuration {
        var configuration = Configuration()
        configuration.foreignKeysEnabled = true
        // The CLI and the server write the same file; wait for each other
        // rather than failing with SQLITE_BUSY.
        configuration.busyMode = .timeout(busyTimeout)
        configuration.label = "mailgate.store"
        return configuration
    }

    /// The configuration of the per-request read connections.
    static func readerConfiguration() -> Configuration {
        var configuration = Configuration()
        configuration.readonly = true
        configuration.busyMode = .timeout(5)
        configuration.label = "mailgate.credentials"
        return configuration
    }

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1 users") { db in
            try db.execute(sql: """
                CREATE TABLE users (
                    id INTEGER PRIMARY KEY,
                    username TEXT NOT NULL UNIQUE CHECK (length(username) BETWEEN 1 AND 64),
                    password_hash TEXT NOT NULL,
                    is_disabled INTEGER NOT NULL DEFAULT 0 CHECK (is_disabled IN (0, 1)),
                    token_version INTEGER NOT NULL DEFAULT 0 CHECK (token_version >= 0),
                    created_at_ms INTEGER NOT NULL
                ) STRICT;
                -- Token versions of removed users, so a user re-created under
                -- the same name does not accept the old user's tokens.
                CREATE TABLE removed_usernames (
                    username TEXT PRIMARY KEY,
                    next_token_version INTEGER NOT NULL
                ) STRICT;
                """)
        }
        migrator.registerMigration("v1 smtp_integrations") { db in
            try db.execute(sql: """
                CREATE TABLE smtp_integrations (
                    user_id INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
                    host TEXT NOT NULL CHECK (length(host) > 0),
                    port INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
                    security TEXT NOT NULL CHECK (security IN ('starttls', 'tls', 'none')),
                    username TEXT,
                    password_sealed BLOB,
                    from_address TEXT NOT NULL CHECK (length(from_address) > 0),
                    from_name TEXT,
                    updated_at_ms INTEGER NOT NULL
                ) STRICT;
                """)
        }
        migrator.registerMigration("v1 login_failures") { db in
            // Keyed by the username text, not a user id: attempts on unknown
            // names are throttled too.
            try db.execute(sql: """
                CREATE TABLE login_failures (
                    id INTEGER PRIMARY KEY,
                    username TEXT NOT NULL,
                    failed_at_ms INTEGER NOT NULL
                ) STRICT;
                CREATE INDEX login_failures_by_username ON login_failures(username, failed_at_ms);
                CREATE INDEX login_failures_by_time ON login_failures(failed_at_ms);
                """)
        }
        migrator.registerMigration("v2 login_attempts") { db in
            // Replaces login_failures (username only, written after the
            // password check, so concurrent guesses all passed the count
            // before any was recorded). A row is an attempt that counts as
            // a failure: pending while its password is being checked (a
            // crash leaves it counting until it leaves the window), then a
            // failure, or deleted on success. `client` is the throttle's
            // client key (`LoginClient.bytes`: a tag byte, then the address,
            // IPv6 by its /64; X'00' for an unknown address). Failures
            // already recorded are kept, from the unknown client: they
            // still count towards the per-username ceiling.
            try db.execute(sql: """
                CREATE TABLE login_attempts (
                    id INTEGER PRIMARY KEY,
                    username TEXT NOT NULL CHECK (length(username) BETWEEN 1 AND 64),
                    client BLOB NOT NULL CHECK (length(client) BETWEEN 1 AND 17),
                    attempted_at_ms INTEGER NOT NULL,
                    is_pending INTEGER NOT NULL CHECK (is_pending IN (0, 1))
                ) STRICT;
                CREATE INDEX login_attempts_by_client ON login_attempts(username, client, attempted_at_ms);
                CREATE INDEX login_attempts_by_username ON login_attempts(username, attempted_at_ms);
                CREATE INDEX login_attempts_by_time ON login_attempts(attempted_at_ms);
                INSERT INTO login_attempts (username, client, attempted_at_ms, is_pending)
                    SELECT username, X'00', failed_at_ms, 0 FROM login_failures
                    WHERE length(username) BETWEEN 1 AND 64;
                DROP TABLE login_failures;
                """)
        }
        migrator.registerMigration("v2 users.allowed_recipients") { db in
            // NULL: any recipient; else one pattern per line (RecipientPolicy).
            try db.execute(sql: "ALTER TABLE users ADD COLUMN allowed_recipients TEXT")
        }
        migrator.registerMigration("v2 named_tokens") { db in
            // Names are labels, not keys: a token can be renewed under the
            // same name before the old one is revoked.
            try db.execute(sql: """
                CREATE TABLE named_tokens (
                    id TEXT PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 64),
                    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                    name TEXT NOT NULL CHECK (length(CAST(name AS BLOB)) BETWEEN 1 AND 64),
                    created_at_ms INTEGER NOT NULL,
                    expires_at_ms INTEGER NOT NULL,
                    last_used_day INTEGER,
                    revoked_at_ms INTEGER
                ) STRICT;
                CREATE INDEX named_tokens_by_user ON named_tokens(user_id, created_at_ms);
                """)
        }
        migrator.registerMigration("v2 smtp_integrations.password_seal_version") { db in
            // Existing rows were sealed as version 1 (bound to the username
            // only); SQLiteStore re-seals them as version 2 when it opens
            // the file, since that needs the key, which SQL does not have.
            try db.execute(sql: """
                ALTER TABLE smtp_integrations ADD COLUMN password_seal_version INTEGER NOT NULL DEFAULT 1
                """)
        }
        migrator.registerMigration("v2 users.send quotas") { db in
            // NULL: the server's default; 0: unlimited.
            try db.execute(sql: """
                ALTER TABLE users ADD COLUMN quota_per_minute INTEGER CHECK (quota_per_minute >= 0);
                ALTER TABLE users ADD COLUMN quota_per_hour INTEGER CHECK (quota_per_hour >= 0);
                ALTER TABLE users ADD COLUMN quota_per_day INTEGER CHECK (quota_per_day >= 0);
                """)
        }
        migrator.registerMigration("v3 idempotency_keys") { db in
            // Keyed by the username text and the key's bytes (compared as
            // bytes: BLOB, and TEXT under SQLite's BINARY collation). A row
            // is in flight while `status` is NULL, then holds the stored
            // answer (`headers`: IdempotencyKeyRecord's encoding). `claim`
            // names the claim that wrote the row, so a completion or
            // release applies only to its own claim. Rows expire at
            // `expires_at_ms` (the first claim plus the TTL), and claims
            // delete expired rows in batches by the expiry index.
            try db.execute(sql: """
                CREATE TABLE idempotency_keys (
                    username TEXT NOT NULL CHECK (length(username) BETWEEN 1 AND 64),
                    key BLOB NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
                    fingerprint BLOB NOT NULL CHECK (length(fingerprint) BETWEEN 1 AND 64),
                    claim BLOB NOT NULL CHECK (length(claim) = 16),
                    claimed_at_ms INTEGER NOT NULL,
                    expires_at_ms INTEGER NOT NULL,
                    status INTEGER CHECK (status BETWEEN 100 AND 599),
                    headers BLOB,
                    body BLOB,
                    CHECK ((status IS NULL) = (headers IS NULL) AND (status IS NULL) = (body IS NULL)),
                    PRIMARY KEY (username, key)
                ) STRICT;
                CREATE INDEX idempotency_keys_by_expiry ON idempotency_keys(expires_at_ms);
                """)
        }
        migrator.registerMigration("v4 smtp_integrations.oauth2") { db in
            // `auth` says how the integration logs in; existing rows log in
            // with their password when they have a username, else not at
            // all (what the client did with them before). The OAuth2
            // columns are NULL except for 'oauth2' rows, which need a
            // provider, token URL and client id (SMTPIntegrationRecord
            // refuses a row without); the secrets are PasswordSeal's
            // OAuth2 seal, bound to their column, like the password.
            try db.execute(sql: """
                ALTER TABLE smtp_integrations ADD COLUMN auth TEXT NOT NULL DEFAULT 'password'
                    CHECK (auth IN ('none', 'password', 'oauth2'));
                UPDATE smtp_integrations SET auth = 'none' WHERE username IS NULL;
                ALTER TABLE smtp_integrations ADD COLUMN oauth2_provider TEXT
                    CHECK (oauth2_provider IN ('google', 'microsoft', 'custom'));
                ALTER TABLE smtp_integrations ADD COLUMN oauth2_token_url TEXT;
                ALTER TABLE smtp_integrations ADD COLUMN oauth2_authorization_url TEXT;
                ALTER TABLE smtp_integrations ADD COLUMN oauth2_client_id TEXT;
                ALTER TABLE smtp_integrations ADD COLUMN oauth2_client_secret_sealed BLOB;
                ALTER TABLE smtp_integrations ADD COLUMN oauth2_refresh_token_sealed BLOB;
                ALTER TABLE smtp_integrations ADD COLUMN oauth2_scope TEXT;
                ALTER TABLE smtp_integrations ADD COLUMN oauth2_tenant TEXT;
                """)
        }
        migrator.registerMigration("v5 mailgate_keys") { db in
            // Fingerprints of the key files the database was initialised
            // with (never the keys), so `serve` can refuse other keys.
            try db.execute(sql: """
                CREATE TABLE mailgate_keys (
                    name TEXT PRIMARY KEY CHECK (length(CAST(name AS BLOB)) BETWEEN 1 AND 64),
                    fingerprint BLOB NOT NULL CHECK (length(fingerprint) BETWEEN 1 AND 64)
                ) STRICT;
                """)
        }
        return migrator
    }
}

/// Dates are stored as integer Unix milliseconds; reading back what was
/// written gives an equal Date.
enum StoredDate {
    static func milliseconds(_ date: Date) -> Int64 {
        let value = (date.timeIntervalSince1970 * 1000).rounded()
        // Clamp absurd dates instead of trapping on conversion.
        guard value.isFinite else { return 0 }
        return Int64(max(-9e15, min(9e15, value)))
    }

    static func date(_ milliseconds: Int64) -> Date {
        Date(timeIntervalSince1970: Double(milliseconds) / 1000)
    }
}
