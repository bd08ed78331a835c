-- The authorization server: signing keys and refresh-token families.
-- Keep in meaning with ../postgres/0002_oauth.sql.

-- The key that signed a long-lived JWT stays published while the token lives.
ALTER TABLE tokens ADD COLUMN signing_kid TEXT;

-- Private keys are sealed with AES-256-GCM under the master key (nonce ‖ ciphertext).
-- `seq` orders keys by creation: the newest is "next", then "current", then "previous".
CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY NOT NULL,
    seq BIGINT NOT NULL UNIQUE,
    alg TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    private_sealed BLOB NOT NULL,
    public_jwk TEXT NOT NULL
);

INSERT INTO chain_heads (name, seq, hash) VALUES ('signing_keys', 0, zeroblob(0));

-- One family per client-credentials grant; every refresh rotates to a new member.
CREATE TABLE refresh_families (
    id TEXT PRIMARY KEY NOT NULL,
    token_id TEXT NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT,
    scope TEXT NOT NULL,
    audience TEXT NOT NULL
);

CREATE INDEX refresh_families_by_token ON refresh_families (token_id, created_at);

CREATE TABLE refresh_tokens (
    id TEXT PRIMARY KEY NOT NULL,
    family_id TEXT NOT NULL REFERENCES refresh_families (id) ON DELETE CASCADE,
    secret_salt BLOB NOT NULL,
    secret_hash BLOB NOT NULL,
    jti TEXT NOT NULL,
    access_expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    used_at BIGINT
);

CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family_id);
CREATE INDEX revocations_by_subject ON revocations (subject);
