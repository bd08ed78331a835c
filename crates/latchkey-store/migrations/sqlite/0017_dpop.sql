-- DPoP (docs/API.md, "DPoP"): a refresh family started with a proof is bound to the
-- proof key's RFC 7638 thumbprint, and every server replica refuses a proof whose
-- key and jti it has seen within the proof window.
-- Keep in meaning with ../postgres/0017_dpop.sql.
ALTER TABLE refresh_families ADD COLUMN dpop_jkt TEXT;

-- proof_key: hex SHA-256 of the thumbprint and the jti; expires_at: when the window would
-- refuse the proof anyway (milliseconds), after which the row may go.
CREATE TABLE dpop_proofs (
    proof_key TEXT PRIMARY KEY NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE INDEX dpop_proofs_by_expiry ON dpop_proofs (expires_at);
