-- 0015_trust: the request log (masked bodies), per-org trust settings,
-- subjects on request rows, and the audit log for every admin action.
--
-- Org ids: '' is the default org (no org). Settings are keyed by org_id so
-- organizations can own them; until then everything uses the '' row.

-- Per-org settings. `store_bodies` 1 = keep masked prompts and answers
-- (opt-in, default off); `mask_patterns` JSON [{"name","pattern"}]; retention
-- JSON {"request_bodies","telemetry","events","audit"}: days, null = default.
CREATE TABLE org_settings (
    org_id        TEXT    PRIMARY KEY,
    store_bodies  INTEGER NOT NULL DEFAULT 0,
    mask_patterns TEXT    NOT NULL DEFAULT '[]',
    retention     TEXT    NOT NULL DEFAULT '{}',
    updated_at    INTEGER NOT NULL,
    actor         TEXT    NOT NULL
);

-- The end user a request served (OpenAI's `user`, the flag targeting key);
-- NULL when the client named none. Subject deletion removes by it.
ALTER TABLE requests ADD COLUMN subject TEXT;
CREATE INDEX requests_by_subject ON requests (subject);

-- Stored request bodies, masked before they are written (never the raw text).
-- `masked` is JSON {kind: count} of what masking replaced.
CREATE TABLE request_bodies (
    request_id TEXT    PRIMARY KEY,
    org_id     TEXT    NOT NULL DEFAULT '',
    subject    TEXT,
    ts         INTEGER NOT NULL,
    prompt     TEXT    NOT NULL,
    answer     TEXT    NOT NULL,
    masked     TEXT    NOT NULL DEFAULT '{}'
);
CREATE INDEX request_bodies_by_ts ON request_bodies (ts);
CREATE INDEX request_bodies_by_subject ON request_bodies (subject);

CREATE INDEX events_by_subject ON events (targeting_key);

-- The audit log (0002) now records every admin action: `kind` says what was
-- changed (flag, rollout, key, model, template, experiment, alert_rule,
-- silence, alert, emergency, scan, settings, subject), `target` which one.
-- Flag rows keep `flag_key` and their flag-set `version`; others store 0.
ALTER TABLE audit_log ADD COLUMN kind TEXT NOT NULL DEFAULT 'flag';
ALTER TABLE audit_log ADD COLUMN target TEXT;
ALTER TABLE audit_log ADD COLUMN org_id TEXT NOT NULL DEFAULT '';
CREATE INDEX audit_log_by_kind ON audit_log (kind, id DESC);
CREATE INDEX audit_log_by_at ON audit_log (at);
