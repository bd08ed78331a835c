-- The revocation feed. Keep in meaning with ../sqlite/0003_revocation_feed.sql.
-- Compaction deletes entries whose expires_at has passed.
CREATE INDEX revocations_by_expiry ON revocations (expires_at);

-- Every replica LISTENs on this channel, so a revocation committed through one replica
-- wakes the feeds of all of them at once. NOTIFY is delivered at commit, in commit order.
CREATE FUNCTION latchkey_notify_revocation() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('latchkey_revocations', NEW.seq::text);
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER revocations_notify AFTER INSERT ON revocations
    FOR EACH ROW EXECUTE FUNCTION latchkey_notify_revocation();
