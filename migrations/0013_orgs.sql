-- 0013_orgs: organizations (issue 17). An org owns API keys, limits and a
-- monthly budget, an allow-list of models and optionally its own provider
-- credentials, encrypted (AES-256-GCM) under a master key that is never
-- stored here. An org's usage counters are the `key_usage` row `org:<id>`,
-- changed in the same BEGIN IMMEDIATE transaction as its key's row.

CREATE TABLE orgs (
    id                    TEXT    PRIMARY KEY,
    name                  TEXT    NOT NULL,
    requests_per_minute   INTEGER,
    tokens_per_minute     INTEGER,
    monthly_budget_micros INTEGER,
    allowed_models        TEXT    NOT NULL DEFAULT '[]',  -- JSON: ["provider/model", "provider/*"]; [] = all
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL
);

-- NULL org = a key of no org (as before); NULL roles = the default roles
-- (generate, events), so keys created before this migration keep working.
ALTER TABLE api_keys ADD COLUMN org_id TEXT;
ALTER TABLE api_keys ADD COLUMN roles TEXT;
CREATE INDEX api_keys_by_org ON api_keys (org_id);

-- One provider credential per org and provider: `ciphertext` is
-- NONCE_HEX:CIPHERTEXT_HEX under master key `key_id`, the org id as
-- associated data. Only the last four characters are kept in clear.
CREATE TABLE org_credentials (
    org_id     TEXT    NOT NULL,
    provider   TEXT    NOT NULL,
    key_id     TEXT    NOT NULL,
    ciphertext TEXT    NOT NULL,
    last4      TEXT    NOT NULL,
    set_at     INTEGER NOT NULL,
    PRIMARY KEY (org_id, provider)
);
