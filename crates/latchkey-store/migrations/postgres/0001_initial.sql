-- latchkey schema, PostgreSQL dialect. Keep in meaning with ../sqlite/0001_initial.sql.
-- Times are unix milliseconds; flags are BIGINT 0/1 (the portable driver reads no
-- SQLite booleans). Token roles and permissions are immutable, so they are
-- kept as space-separated text on the token row.

CREATE TABLE tenants (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE permissions (
    name TEXT PRIMARY KEY NOT NULL,
    description TEXT NOT NULL,
    builtin BIGINT NOT NULL CHECK (builtin IN (0, 1))
);

INSERT INTO permissions (name, description, builtin) VALUES
    ('latchkey:admin', 'Full control of latchkey, every tenant', 1),
    ('latchkey:manage', 'Administration of the holder''s own tenant', 1),
    ('latchkey:introspect', 'Token introspection and the revocation feed', 1);

CREATE TABLE roles (
    name TEXT PRIMARY KEY NOT NULL,
    description TEXT NOT NULL
);

CREATE TABLE role_permissions (
    role TEXT NOT NULL REFERENCES roles (name) ON DELETE CASCADE,
    permission TEXT NOT NULL REFERENCES permissions (name),
    PRIMARY KEY (role, permission)
);

CREATE TABLE memberships (
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);

CREATE INDEX memberships_by_user ON memberships (user_id);

CREATE TABLE membership_roles (
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    role TEXT NOT NULL REFERENCES roles (name),
    PRIMARY KEY (tenant_id, user_id, role),
    FOREIGN KEY (tenant_id, user_id) REFERENCES memberships (tenant_id, user_id) ON DELETE CASCADE
);

CREATE TABLE tokens (
    id TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    user_id TEXT,
    name TEXT NOT NULL,
    roles TEXT NOT NULL,
    permissions TEXT NOT NULL,
    created_by TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT,
    last_used_at BIGINT,
    last_used_ip TEXT,
    ip_allowlist TEXT NOT NULL,
    access_token_ttl_seconds BIGINT NOT NULL,
    refresh_tokens BIGINT NOT NULL CHECK (refresh_tokens IN (0, 1)),
    secret_salt BYTEA,
    secret_hash BYTEA,
    secret_hint TEXT
);

CREATE INDEX tokens_by_owner ON tokens (tenant_id, user_id, created_at, id);
CREATE INDEX tokens_by_user ON tokens (user_id);

-- The deny list: one row per revocation, in commit order (see chain_heads).
CREATE TABLE revocations (
    seq BIGINT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    tenant_id TEXT,
    revoked_at BIGINT NOT NULL,
    expires_at BIGINT
);

CREATE TABLE audit_events (
    seq BIGINT PRIMARY KEY NOT NULL,
    at BIGINT NOT NULL,
    action TEXT NOT NULL,
    actor TEXT NOT NULL,
    actor_user TEXT,
    tenant_id TEXT,
    target TEXT,
    ip TEXT,
    user_agent TEXT,
    details TEXT NOT NULL,
    prev_hash BYTEA NOT NULL,
    hash BYTEA NOT NULL
);

CREATE INDEX audit_events_by_tenant ON audit_events (tenant_id, seq);
CREATE INDEX audit_events_by_target ON audit_events (target, seq);

-- The head of each ordered log. A writer takes the row's lock by updating it, so
-- sequence numbers are handed out in commit order and without gaps.
CREATE TABLE chain_heads (
    name TEXT PRIMARY KEY NOT NULL,
    seq BIGINT NOT NULL,
    hash BYTEA NOT NULL
);

INSERT INTO chain_heads (name, seq, hash) VALUES
    ('audit', 0, decode(repeat('00', 32), 'hex')),
    ('revocations', 0, ''::bytea);
