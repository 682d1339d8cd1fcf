-- 0002_flags: feature flag sets (versioned) and the admin audit log.
--
-- Every admin write inserts a new `flag_sets` row holding the whole state:
-- the flagd document as imported and the kill switches (JSON object
-- `{flagKey: {"variant", "at", "actor"}}`). The current state is the row with
-- the highest version; older rows are history. The version number is also
-- published in key-value (`dol:flags:version`) so evaluations skip SQL.
-- Times are Unix epoch milliseconds.
CREATE TABLE flag_sets (
    version    INTEGER PRIMARY KEY,
    document   TEXT    NOT NULL,
    kills      TEXT    NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL,
    actor      TEXT    NOT NULL
);

-- Append-only: the component only ever INSERTs here (no admin route updates
-- or deletes rows). `before` / `after` are JSON (NULL when absent).
CREATE TABLE audit_log (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at       INTEGER NOT NULL,
    actor    TEXT    NOT NULL,
    action   TEXT    NOT NULL,
    flag_key TEXT,
    version  INTEGER NOT NULL,
    before   TEXT,
    after    TEXT
);

CREATE INDEX audit_log_by_flag ON audit_log (flag_key, id DESC);
