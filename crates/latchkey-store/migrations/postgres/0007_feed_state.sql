-- The revocation feed also carries state: a role's permissions now (`role`) and a
-- member's roles now (`member`), so verifiers narrow a token's scope to what it grants
-- now. Keep in meaning with ../sqlite/0007_feed_state.sql.
ALTER TABLE revocations ADD COLUMN state TEXT;

-- State entries compact to the latest per key: appending one deletes the older ones.
CREATE INDEX revocations_by_key ON revocations (kind, subject);

-- seq 0 until the server has appended the state of every existing role and membership
-- (once, at its first start on this schema).
INSERT INTO chain_heads (name, seq, hash) VALUES ('feed_state', 0, ''::bytea);
