-- 0019_scan_leases: one lease per scan (issue 14), so with several replicas
-- on one database a cron tick runs each scan once, a replica that dies
-- mid-scan blocks nothing past the lease's expiry, and `POST
-- /admin/scans/{name}` cannot run a scan while another run of it holds the
-- lease. Written only by `dol_core::observe::scan_lease`.
--
-- holder: the run holding the lease (NULL once released); expires_at: when
-- the lease lapses (Unix ms; a released lease has the release time); tick:
-- the last cron tick claimed (Unix seconds, only ever raised).
CREATE TABLE scan_leases (
    name        TEXT    PRIMARY KEY,
    holder      TEXT,
    expires_at  INTEGER NOT NULL,
    tick        INTEGER NOT NULL,
    acquired_at INTEGER NOT NULL
);

-- The ticks claimed before this migration (kept in `control`) carry over,
-- so an upgrade in the middle of a tick does not run a scan twice.
INSERT INTO scan_leases (name, holder, expires_at, tick, acquired_at)
SELECT substr(key, 12), NULL, 0, CAST(value AS INTEGER), updated_at
FROM control WHERE key LIKE 'scan_claim:%';

DELETE FROM control WHERE key LIKE 'scan_claim:%';

-- Fixed-window rate limits counted exactly across replicas (issue 14): one
-- row per limited client (`dol_core::ratelimit::hit`, one atomic upsert per
-- request), replacing the key-value read-modify-write counters of the OFREP
-- limit and the console's sign-in attempts. window_start: Unix seconds.
CREATE TABLE rate_windows (
    key          TEXT    PRIMARY KEY,
    window_start INTEGER NOT NULL,
    count        INTEGER NOT NULL
);
