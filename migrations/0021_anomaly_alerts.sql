-- 0021_anomaly_alerts: alerts raised by the anomaly detector (issue 16) go
-- through the same alert states as rule and external alerts, with
-- source 'anomaly' (dol_core::optimize::anomaly_alerts). SQLite cannot change
-- a CHECK constraint in place: the table is rebuilt and its rows copied,
-- then its index is made again.
CREATE TABLE alert_states_v21 (
    fingerprint     TEXT    PRIMARY KEY,
    name            TEXT    NOT NULL,
    source          TEXT    NOT NULL CHECK (source IN ('rule', 'alertmanager', 'webhook', 'anomaly')),
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
INSERT INTO alert_states_v21 (fingerprint, name, source, severity, status, labels, summary, value,
    active_since, fired_at, resolved_at, acknowledged_by, acknowledged_at, resolved_by, incidents,
    total_repair_ms, last_repair_ms, created_at, updated_at)
    SELECT fingerprint, name, source, severity, status, labels, summary, value, active_since,
    fired_at, resolved_at, acknowledged_by, acknowledged_at, resolved_by, incidents,
    total_repair_ms, last_repair_ms, created_at, updated_at FROM alert_states;
DROP TABLE alert_states;
ALTER TABLE alert_states_v21 RENAME TO alert_states;
CREATE INDEX alert_states_by_status ON alert_states (status, fired_at);
