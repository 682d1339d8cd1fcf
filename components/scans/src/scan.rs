//! Running a scan: open storage, run it, record the run (name, start,
//! duration, outcome, summary JSON) in `scan_runs` and under
//! [`LAST_RUN_KEY`] in key-value (what `GET /health` reports).

use anyhow::Context as _;
use dol_core::health::{INSERT_SCAN_RUN_SQL, LAST_RUN_KEY, Outcome, ScanRun};
use dol_core::observe::scans::{ALERTS, DISCOVERY, HEARTBEAT, PROBES, REPORT, RETENTION, ROLLOUTS};
use dol_core::storage::SqlValue;
use serde_json::{Value, json};
use spin_sdk::key_value::Store;
use spin_sdk::sqlite::Connection;

use dol_spin_platform::{SpinSql, exec, now_ms, open_db, to_spin};

/// Runs scan `name` for a trigger at `now` (Unix ms; the cron tick's time,
/// or the wall clock over HTTP — to the millisecond, so a decision never
/// sees "now" before a change made a moment earlier). Decisions use `now`.
/// The run is recorded whether the scan succeeded or not; the error is
/// returned after recording.
pub fn run(name: &str, now: i64) -> anyhow::Result<(ScanRun, Value)> {
    let started = now_ms();
    let db = open_db().context("opening the default database")?;
    let timestamp = u64::try_from(now.div_euclid(1_000)).unwrap_or(0);
    let result = match name {
        ALERTS => crate::alerts::run(&db, now),
        ROLLOUTS => crate::rollouts::run(&db, now),
        PROBES => crate::probes::run(now),
        DISCOVERY => crate::discovery::run(&db, now),
        REPORT => crate::report::report(&db, now),
        RETENTION => crate::report::retention(&db, now),
        HEARTBEAT => Ok(json!({})),
        other => Err(anyhow::anyhow!("no scan {other}")),
    };
    let mut run = ScanRun::new(name, timestamp, started, now_ms());
    let summary = match &result {
        Ok(v) => v.clone(),
        Err(err) => {
            run.outcome = Outcome::Error;
            json!({ "error": format!("{err:#}") })
        }
    };
    run.detail = summary.to_string();
    record(&db, &run)?;
    result.map(|v| (run, v))
}

fn record(db: &Connection, run: &ScanRun) -> anyhow::Result<()> {
    let params: Vec<_> = run.to_params().iter().map(to_spin).collect();
    db.execute(INSERT_SCAN_RUN_SQL, &params)
        .context("recording the scan run")?;
    Store::open_default()
        .context("opening the default key-value store")?
        .set_json(LAST_RUN_KEY, run)
        .context("writing the last-run key")?;
    Ok(())
}

/// Claims scan `name` for the cron tick at `timestamp`: true for the first
/// caller only, so triggers firing together run each scan once.
pub fn claim(name: &str, timestamp: u64) -> anyhow::Result<bool> {
    let db = open_db().context("opening the default database")?;
    let ts = i64::try_from(timestamp).unwrap_or(i64::MAX);
    let rows = exec(
        &mut SpinSql(&db),
        "INSERT INTO control (key, value, updated_by, updated_at) VALUES (?, ?, 'scans', ?) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at \
         WHERE CAST(control.value AS INTEGER) < CAST(excluded.value AS INTEGER) RETURNING key",
        &[
            SqlValue::Text(format!("scan_claim:{name}")),
            SqlValue::Text(ts.to_string()),
            SqlValue::Integer(now_ms()),
        ],
    )?;
    Ok(!rows.is_empty())
}
