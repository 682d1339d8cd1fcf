-- 0004_alerts: alert states, silences, the notification outbox and control
-- values (issue 5). Read and written through `dol_core::observe::store`.
--
-- Version 3 is reserved for another change; the runner applies every missing
-- version, so the gap is harmless. Times are Unix epoch milliseconds.

-- One row per alert (a DOL rule's alert, or an external alert from
-- Alertmanager or the generic webhook), keyed by its fingerprint, which is
-- also the alert id shown in Slack. Status follows the state machine in
-- `dol_core::observe::alerts`. `incidents`, `total_repair_ms` and
-- `last_repair_ms` are the MTTR inputs (completed fired → resolved periods).
CREATE TABLE alert_states (
    fingerprint     TEXT    PRIMARY KEY,
    name            TEXT    NOT NULL,
    source          TEXT    NOT NULL CHECK (source IN ('rule', 'alertmanager', 'webhook')),
    severity        TEXT    NOT NULL CHECK (severity IN ('critical', 'warning', 'info')),
    status          TEXT    NOT NULL CHECK (status IN ('inactive', 'pending', 'firing', 'resolved')),
    labels          TEXT    NOT NULL DEFAULT '{}',
    summary         TEXT    NOT NULL DEFAULT '',
    value           REAL,
    active_since    INTEGER,
    fired_at        INTEGER,
    resolved_at     INTEGER,
    acknowledged_by TEXT,
    acknowledged_at INTEGER,
    resolved_by     TEXT,
    incidents       INTEGER NOT NULL DEFAULT 0,
    total_repair_ms INTEGER NOT NULL DEFAULT 0,
    last_repair_ms  INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);

-- "Active alerts" (status = 'firing') is the common read.
CREATE INDEX alert_states_by_status ON alert_states (status, fired_at);

-- Silences: matching alerts change state but notify nobody. `matchers` is a
-- JSON array of {"name", "value", "op": "equal" | "not_equal"}.
CREATE TABLE silences (
    id         TEXT    PRIMARY KEY,
    matchers   TEXT    NOT NULL,
    starts_at  INTEGER NOT NULL,
    ends_at    INTEGER NOT NULL,
    created_by TEXT    NOT NULL DEFAULT '',
    comment    TEXT    NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    CHECK (ends_at > starts_at)
);

CREATE INDEX silences_by_end ON silences (ends_at);

-- Messages to deliver (Slack, webhooks), so nothing is lost while a receiver
-- is down: written in the same transaction as the change they announce,
-- retried with backoff until `delivered_at` is set. `dedup_key` (optional,
-- unique) makes enqueueing the same notification twice a no-op.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    kind            TEXT    NOT NULL,
    target          TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    dedup_key       TEXT    UNIQUE,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    delivered_at    INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL
);

-- Delivery scans read undelivered messages that are due.
CREATE INDEX outbox_due ON outbox (delivered_at, next_attempt_at);

-- Small operator switches, e.g. `emergency_mode` forced on/off. `value` is
-- JSON; who set it and when are kept for display and audit.
CREATE TABLE control (
    key        TEXT    PRIMARY KEY,
    value      TEXT    NOT NULL,
    updated_by TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
);
