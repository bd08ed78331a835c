-- Trust relationships and the assertion replay guard (docs/API.md, "Trusts" and
-- "The JWT-bearer grant"). Keep in meaning with ../sqlite/0014_trusts.sql.

-- A trust: tokens signed by `issuer` for `audience` whose subject matches `subject`
-- (exact, or a prefix when it ends in `*`) and whose claims equal `claims` (a JSON
-- object of strings) are exchanged for access tokens with this grant. Immutable but
-- for `name`; revoking it puts its id on the revocation feed as a `token` entry, since
-- the access tokens it issues carry it as their `client_id`.
CREATE TABLE trusts (
    id TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    issuer TEXT NOT NULL,
    audience TEXT NOT NULL,
    subject TEXT NOT NULL,
    claims TEXT NOT NULL,
    roles TEXT NOT NULL,
    permissions TEXT NOT NULL,
    access_token_ttl_seconds BIGINT NOT NULL,
    replay_protection BIGINT NOT NULL,
    created_by TEXT,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX trusts_by_tenant ON trusts (tenant_id, created_at);
CREATE INDEX trusts_by_issuer ON trusts (issuer);

-- Every assertion `jti` accepted (JWT-bearer assertions and private_key_jwt client
-- assertions), until the assertion expires: the primary key makes a second use fail
-- on every replica at once. The maintenance round deletes expired rows.
CREATE TABLE assertion_jtis (
    issuer TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (issuer, jti)
);
CREATE INDEX assertion_jtis_by_expiry ON assertion_jtis (expires_at);
