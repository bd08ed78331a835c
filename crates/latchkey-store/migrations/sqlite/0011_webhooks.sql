-- Signed webhooks and their outbox (docs/API.md, "Webhooks").
-- Keep in meaning with ../postgres/0011_webhooks.sql.

-- An endpoint. tenant_id NULL: an admin's webhook that receives every tenant's events.
-- The signing secret is sealed under the master key (AES-256-GCM, the webhook id as
-- associated data); the database never holds it readable. lease_until is how long one
-- replica holds the endpoint to send its next delivery: deliveries go out in order.
CREATE TABLE webhooks (
    id TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT REFERENCES tenants (id) ON DELETE CASCADE,
    url TEXT NOT NULL,
    secret_sealed BLOB NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    disabled_at BIGINT,
    disabled_reason TEXT,
    failed_in_a_row BIGINT NOT NULL DEFAULT 0,
    lease_until BIGINT NOT NULL DEFAULT 0,
    -- After a rotation the old secret signs too, beside the new one, until this time.
    previous_secret_sealed BLOB,
    previous_secret_until BIGINT
);

-- The events an endpoint subscribes to.
CREATE TABLE webhook_events (
    webhook_id TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event TEXT NOT NULL,
    PRIMARY KEY (webhook_id, event)
);
CREATE INDEX webhook_events_by_event ON webhook_events (event);

-- The outbox: one row per endpoint and event, written in the event's transaction. seq
-- is the audit event's seq, so an endpoint's deliveries follow commit order. status:
-- pending, delivered or failed (retried for 24 h without success).
CREATE TABLE webhook_deliveries (
    webhook_id TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    event TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    finished_at BIGINT,
    PRIMARY KEY (webhook_id, seq)
);
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (webhook_id, status, seq);

-- Every attempt at a delivery: when, how long, the HTTP status or why there was none.
CREATE TABLE webhook_attempts (
    webhook_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    attempt BIGINT NOT NULL,
    at BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    status_code BIGINT,
    error TEXT,
    PRIMARY KEY (webhook_id, seq, attempt),
    FOREIGN KEY (webhook_id, seq) REFERENCES webhook_deliveries (webhook_id, seq) ON DELETE CASCADE
);

-- The token.expiring events sent: one per token and window (7 days, 1 day before
-- expires_at), so each is written once across restarts and replicas.
CREATE TABLE token_expiry_notices (
    token_id TEXT NOT NULL,
    days BIGINT NOT NULL,
    PRIMARY KEY (token_id, days)
);
CREATE INDEX tokens_by_expires_at ON tokens (expires_at);
