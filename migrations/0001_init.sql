-- 0001_init: DOL's first tables.
--
-- Applied by dol-core's migration runner (crates/core/src/migrate.rs), one
-- statement at a time inside one transaction together with its row in
-- `_dol_migrations`. Times are Unix epoch milliseconds.

-- One row per scan run (cron trigger or `POST /admin/scans/<name>`).
CREATE TABLE scan_runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    outcome     TEXT    NOT NULL CHECK (outcome IN ('ok', 'error')),
    detail      TEXT    NOT NULL DEFAULT ''
);

-- "Last run of scan X" and "last run of any scan" are the common reads.
CREATE INDEX scan_runs_by_name ON scan_runs (name, started_at DESC);
CREATE INDEX scan_runs_by_start ON scan_runs (started_at DESC);
