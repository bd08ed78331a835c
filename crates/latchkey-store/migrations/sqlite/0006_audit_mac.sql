-- Each audit event carries an HMAC-SHA256 of its chain hash under a key derived from
-- the master key, which lives outside the database. Events written before this
-- migration have none (NULL). `macs_from` is the first seq written with a MAC: from
-- there on a missing MAC is tampering, not age.
ALTER TABLE audit_events ADD COLUMN mac BLOB;
ALTER TABLE chain_heads ADD COLUMN macs_from BIGINT;
UPDATE chain_heads SET macs_from = seq + 1 WHERE name = 'audit';
