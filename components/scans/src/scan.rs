//! The scans themselves. For now only `heartbeat`: proves the schedule fires
//! and storage works, and leaves a record `GET /health` reports.

use anyhow::Context as _;
use dol_core::health::{INSERT_SCAN_RUN_SQL, LAST_RUN_KEY, ScanRun};
use dol_core::migrate;
use spin_sdk::key_value::Store;
use spin_sdk::sqlite::Connection;

use crate::platform::{SpinSql, now_ms, to_spin};

/// Name of the heartbeat scan (also its HTTP path segment).
pub const HEARTBEAT: &str = "heartbeat";

/// Runs the heartbeat scan for a trigger at `timestamp` (Unix seconds):
/// applies migrations, records the run in `scan_runs` and under
/// [`LAST_RUN_KEY`] in the default key-value store.
pub fn heartbeat(timestamp: u64) -> anyhow::Result<ScanRun> {
    let started = now_ms();
    let db = Connection::open_default().context("opening the default database")?;
    migrate::apply(&mut SpinSql(&db), started).context("applying migrations")?;
    let run = ScanRun::new(HEARTBEAT, timestamp, started, now_ms());
    let params: Vec<_> = run.to_params().iter().map(to_spin).collect();
    db.execute(INSERT_SCAN_RUN_SQL, &params)
        .context("recording the scan run")?;
    Store::open_default()
        .context("opening the default key-value store")?
        .set_json(LAST_RUN_KEY, &run)
        .context("writing the last-run key")?;
    Ok(run)
}
