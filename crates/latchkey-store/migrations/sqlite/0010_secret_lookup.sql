-- The lookup value of a token's secret, HMAC(pepper, "lookup" ‖ secret), by which a
-- secret reported leaked is found (docs/SECRET_SCANNING.md). Tokens made before this
-- migration have none and cannot be found by a report.
-- Keep in meaning with ../postgres/0010_secret_lookup.sql.
ALTER TABLE tokens ADD COLUMN secret_lookup BLOB;

CREATE INDEX tokens_by_secret_lookup ON tokens (secret_lookup);
