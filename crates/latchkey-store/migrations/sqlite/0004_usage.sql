-- Per-minute usage aggregates sent by gateways, and the addresses each token was seen
-- from. Keep in meaning with ../postgres/0004_usage.sql.
CREATE TABLE usage_minutes (
    token_id TEXT NOT NULL,
    minute BIGINT NOT NULL,
    route TEXT NOT NULL,
    method TEXT NOT NULL,
    status_class TEXT NOT NULL,
    client_ip TEXT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (token_id, minute, route, method, status_class, client_ip)
);

CREATE INDEX usage_minutes_by_minute ON usage_minutes (minute);

CREATE TABLE token_ips (
    token_id TEXT NOT NULL,
    ip TEXT NOT NULL,
    first_seen BIGINT NOT NULL,
    PRIMARY KEY (token_id, ip)
);
