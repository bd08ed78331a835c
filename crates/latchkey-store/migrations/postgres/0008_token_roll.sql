-- Rolling a token and the reason a token was revoked (docs/API.md, "Rolling a token").
-- Keep in meaning with ../sqlite/0008_token_roll.sql.
ALTER TABLE tokens ADD COLUMN revoked_reason TEXT;
ALTER TABLE tokens ADD COLUMN rolled_from TEXT;
ALTER TABLE tokens ADD COLUMN rolled_to TEXT;
ALTER TABLE tokens ADD COLUMN revokes_at BIGINT;

-- Every revocation before this change was a plain one.
UPDATE tokens SET revoked_reason = 'revoked' WHERE revoked_at IS NOT NULL;

-- The maintenance round finds the rolled tokens whose grace window has ended.
CREATE INDEX tokens_by_revokes_at ON tokens (revokes_at);
