-- 0007_experiments: A/B experiments (definitions) and the client events
-- their reports are computed from. Times are Unix epoch milliseconds.

-- Client events from POST /v1/events. A unit of an experiment is a distinct
-- targeting_key with any event for the experiment's flag (clients send an
-- `exposure` event when they show a variant); conversions are distinct units
-- with an event of a given name; mean metrics average `value`.
CREATE TABLE events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    at            INTEGER NOT NULL,
    key_id        TEXT    NOT NULL,   -- the API key that sent it
    targeting_key TEXT    NOT NULL,
    flag_key      TEXT    NOT NULL,
    variant       TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    value         REAL
);
-- Units per variant (flag, since the start) and conversions / means per event name.
CREATE INDEX events_by_flag ON events (flag_key, at, variant, targeting_key);
CREATE INDEX events_by_flag_name ON events (flag_key, name, at, variant, targeting_key);

-- Experiment definitions (JSON, validated by dol_core::experiments::definition).
CREATE TABLE experiments (
    key        TEXT    PRIMARY KEY,
    definition TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    actor      TEXT    NOT NULL
);

-- Gateway metrics per variant since an experiment's start.
CREATE INDEX requests_by_variant_ts ON requests (variant, ts);
