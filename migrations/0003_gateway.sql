-- 0003_gateway: the generation gateway's keys, usage counters, model catalog,
-- prompt templates and telemetry. Times are Unix epoch milliseconds unless a
-- column says seconds; money is integer micro-dollars (NULL = unknown).

-- API keys: only the SHA-256 of a key is stored, with a display prefix.
-- Limits are NULL when unlimited.
CREATE TABLE api_keys (
    id                    TEXT    PRIMARY KEY,
    name                  TEXT    NOT NULL,
    key_hash              TEXT    NOT NULL UNIQUE,
    prefix                TEXT    NOT NULL,
    requests_per_minute   INTEGER,
    tokens_per_minute     INTEGER,
    monthly_budget_micros INTEGER,
    created_at            INTEGER NOT NULL,
    revoked_at            INTEGER
);

-- Per-key counters, changed only inside BEGIN IMMEDIATE transactions so that
-- concurrent requests reserve against the same numbers.
CREATE TABLE key_usage (
    key_id          TEXT    PRIMARY KEY,  -- api_keys.id, or `bootstrap`
    window_start    INTEGER NOT NULL DEFAULT 0,   -- Unix seconds
    window_requests INTEGER NOT NULL DEFAULT 0,
    window_tokens   INTEGER NOT NULL DEFAULT 0,
    month           TEXT    NOT NULL DEFAULT '',  -- YYYY-MM (UTC)
    spent_micros    INTEGER NOT NULL DEFAULT 0,
    reserved_micros INTEGER NOT NULL DEFAULT 0
);

-- The model catalog: seeded from catalog/models.json, changed by the admin
-- API and model discovery. Prices are micro-dollars per 1M tokens.
CREATE TABLE models (
    provider       TEXT    NOT NULL,
    model          TEXT    NOT NULL,
    tier           TEXT    NOT NULL,
    input_price    INTEGER,
    output_price   INTEGER,
    context_window INTEGER NOT NULL,
    capabilities   TEXT    NOT NULL DEFAULT '[]',
    source         TEXT    NOT NULL DEFAULT 'seed',
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (provider, model)
);

-- Prompt templates: every change is a new version; old versions stay usable.
CREATE TABLE prompt_templates (
    name       TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    spec       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    actor      TEXT    NOT NULL,
    PRIMARY KEY (name, version)
);

-- One row per request (kept for the retention period).
CREATE TABLE requests (
    id                TEXT    PRIMARY KEY,
    ts                INTEGER NOT NULL,
    key_id            TEXT    NOT NULL,
    route             TEXT    NOT NULL,
    tier              TEXT    NOT NULL,
    entry_tier        TEXT    NOT NULL,
    provider          TEXT    NOT NULL,
    model             TEXT    NOT NULL,
    attempts          INTEGER NOT NULL,
    latency_ms        INTEGER NOT NULL,
    ttft_ms           INTEGER,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cost_micros       INTEGER,
    cost_unknown      INTEGER NOT NULL,
    quality           REAL,
    outcome           TEXT    NOT NULL,
    fallbacks         INTEGER NOT NULL,
    cached            INTEGER NOT NULL,
    stream            INTEGER NOT NULL,
    variant           TEXT    NOT NULL,
    detail            TEXT    NOT NULL
);
CREATE INDEX requests_by_ts ON requests (ts);

-- Minute aggregates: what health, alerts and rollouts read. One upsert per
-- request; latency in a fixed histogram (upper bounds in ms: 50, 100, 250,
-- 500, 1000, 2500, 5000, 10000, 30000, 60000, 120000, +Inf → b0..b11).
CREATE TABLE usage_minute (
    minute            INTEGER NOT NULL,  -- Unix seconds, multiple of 60
    tier              TEXT    NOT NULL,
    provider          TEXT    NOT NULL,
    model             TEXT    NOT NULL,
    outcome           TEXT    NOT NULL,
    variant           TEXT    NOT NULL,
    requests          INTEGER NOT NULL DEFAULT 0,
    errors            INTEGER NOT NULL DEFAULT 0,
    fallbacks         INTEGER NOT NULL DEFAULT 0,  -- requests answered below their entry tier
    cache_hits        INTEGER NOT NULL DEFAULT 0,
    latency_sum_ms    INTEGER NOT NULL DEFAULT 0,
    quality_sum       REAL    NOT NULL DEFAULT 0,
    quality_n         INTEGER NOT NULL DEFAULT 0,
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cost_micros       INTEGER NOT NULL DEFAULT 0,
    cost_unknown      INTEGER NOT NULL DEFAULT 0,
    b0 INTEGER NOT NULL DEFAULT 0, b1 INTEGER NOT NULL DEFAULT 0, b2 INTEGER NOT NULL DEFAULT 0,
    b3 INTEGER NOT NULL DEFAULT 0, b4 INTEGER NOT NULL DEFAULT 0, b5 INTEGER NOT NULL DEFAULT 0,
    b6 INTEGER NOT NULL DEFAULT 0, b7 INTEGER NOT NULL DEFAULT 0, b8 INTEGER NOT NULL DEFAULT 0,
    b9 INTEGER NOT NULL DEFAULT 0, b10 INTEGER NOT NULL DEFAULT 0, b11 INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (minute, tier, provider, model, outcome, variant)
);
