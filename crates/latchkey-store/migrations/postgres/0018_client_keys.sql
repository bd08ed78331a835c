-- Clients with a private key (docs/API.md, "Clients with a private key"): a
-- client_credentials token made with a public JWK instead of a secret keeps that key,
-- as compact JSON of its public members, as part of its immutable grant. A token with
-- a key has no secret; one with a secret has no key.
-- Keep in meaning with ../sqlite/0018_client_keys.sql.
ALTER TABLE tokens ADD COLUMN public_key TEXT;
