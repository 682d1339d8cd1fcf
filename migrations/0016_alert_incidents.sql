-- 0016_alert_incidents: one row per incident (an alert's fired → resolved
-- period), so the console and GET /admin/alerts can show the mean time to
-- acknowledge and to resolve over the last 7 and 30 days (issue 12).
-- alert_states keeps only each alert's latest period and lifetime sums.
--
-- Written by `dol_core::observe::store::upsert_alert`, the one writer of
-- alert states, in the same call: an alert that fires adds its incident,
-- an acknowledgement and the resolution fill it in (each only once).
-- Times are Unix epoch milliseconds.
CREATE TABLE alert_incidents (
    fingerprint     TEXT    NOT NULL,
    fired_at        INTEGER NOT NULL,
    name            TEXT    NOT NULL,
    severity        TEXT    NOT NULL,
    source          TEXT    NOT NULL,
    acknowledged_at INTEGER,
    acknowledged_by TEXT,
    resolved_at     INTEGER,
    PRIMARY KEY (fingerprint, fired_at)
);

-- The windowed reads select by the time an incident started.
CREATE INDEX alert_incidents_by_fired_at ON alert_incidents (fired_at);

-- Alerts that fired before this migration: their latest period is known.
INSERT INTO alert_incidents (fingerprint, fired_at, name, severity, source, acknowledged_at,
                             acknowledged_by, resolved_at)
SELECT fingerprint, fired_at, name, severity, source, acknowledged_at, acknowledged_by,
       CASE WHEN status = 'resolved' AND resolved_at >= fired_at THEN resolved_at END
FROM alert_states WHERE fired_at IS NOT NULL;
