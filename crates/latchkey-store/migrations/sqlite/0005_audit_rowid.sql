-- An audit event's seq becomes the table's rowid. Declared BIGINT, it was a separate
-- unique index beside the rowid: one B-tree more to write for every event. Same
-- columns and indexes as 0001_initial.sql otherwise; PostgreSQL needs no change.
CREATE TABLE audit_events_by_seq (
    seq INTEGER PRIMARY KEY NOT NULL,
    at BIGINT NOT NULL,
    action TEXT NOT NULL,
    actor TEXT NOT NULL,
    actor_user TEXT,
    tenant_id TEXT,
    target TEXT,
    ip TEXT,
    user_agent TEXT,
    details TEXT NOT NULL,
    prev_hash BLOB NOT NULL,
    hash BLOB NOT NULL
);

INSERT INTO audit_events_by_seq
SELECT seq, at, action, actor, actor_user, tenant_id, target, ip, user_agent, details,
    prev_hash, hash
FROM audit_events;

DROP TABLE audit_events;
ALTER TABLE audit_events_by_seq RENAME TO audit_events;
CREATE INDEX audit_events_by_tenant ON audit_events (tenant_id, seq);
CREATE INDEX audit_events_by_target ON audit_events (target, seq);
