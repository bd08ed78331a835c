-- The revocation feed. Keep in meaning with ../postgres/0003_revocation_feed.sql.
-- Compaction deletes entries whose expires_at has passed.
CREATE INDEX revocations_by_expiry ON revocations (expires_at);
-- SQLite has one server process: its feed is woken in process, nothing to notify.
