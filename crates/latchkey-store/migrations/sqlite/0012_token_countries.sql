-- The countries each token was used from (docs/API.md, "Where tokens may be used
-- from"): the first use from a country writes token.first_seen_country.
-- Keep in meaning with ../postgres/0012_token_countries.sql.
CREATE TABLE token_countries (
    token_id TEXT NOT NULL,
    country TEXT NOT NULL,
    first_seen BIGINT NOT NULL,
    PRIMARY KEY (token_id, country)
);
