-- Tenant policies (docs/API.md, "Tenant policies"). The policy is kept as the JSON of
-- its rules, so that a rule added later needs no migration.
-- Keep in meaning with ../postgres/0009_tenant_policy.sql.
CREATE TABLE tenant_policies (
    tenant_id TEXT PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    policy TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
