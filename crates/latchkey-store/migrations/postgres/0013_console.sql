-- Console sessions and the secrets they show once (docs/CONSOLE.md).
-- Keep in meaning with ../sqlite/0013_console.sql.

-- A session of the console. It starts as a single-use code (code_hash, the SHA-256 of
-- the code in the URL a host app sends its user to; valid until code_expires_at), and
-- becomes a session when the code is opened: cookie_hash is then the SHA-256 of the
-- cookie's secret. Neither the code nor the cookie is stored readable. user_id NULL and
-- admin_token_id set: an operator signed in with an admin key (/console/login).
CREATE TABLE console_sessions (
    id TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id TEXT,
    admin_token_id TEXT,
    code_hash BYTEA UNIQUE,
    cookie_hash BYTEA UNIQUE,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    code_expires_at BIGINT NOT NULL,
    opened_at BIGINT,
    expires_at BIGINT NOT NULL,
    ended_at BIGINT
);
CREATE INDEX console_sessions_by_member ON console_sessions (tenant_id, user_id);

-- A secret made in the console, held until the page that shows it once is read:
-- sealed under the master key (AES-256-GCM, bound to the session and this row), and
-- deleted by that read.
CREATE TABLE console_reveals (
    id TEXT PRIMARY KEY NOT NULL,
    session_id TEXT NOT NULL REFERENCES console_sessions (id) ON DELETE CASCADE,
    sealed BYTEA NOT NULL,
    expires_at BIGINT NOT NULL
);
