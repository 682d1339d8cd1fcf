//! The daily scans at 03:00: `report` (the last 24 hours' performance,
//! stored in the run's summary and sent through the outbox) and
//! `retention` (deletes telemetry older than `retention_days`, default 30,
//! or the default org's `telemetry` retention; then request bodies, events
//! and audit rows by their own retention, `dol_core::privacy`).
//! Both are `dol_core` calls.

use dol_core::observe::scan_store;
use dol_core::privacy::{self, DEFAULT_ORG};
use serde_json::Value;
use spin_sdk::sqlite::Connection;

use crate::config::var;
use dol_spin_platform::SpinSql;

/// Runs the report at `now_ms`; returns it as the summary.
pub fn report(db: &Connection, now_ms: i64) -> anyhow::Result<Value> {
    let run = scan_store::report(&mut SpinSql(db), now_ms)?;
    Ok(serde_json::to_value(run)?)
}

/// Runs the retention clean-up at `now_ms`; returns what it deleted.
pub fn retention(db: &Connection, now_ms: i64) -> anyhow::Result<Value> {
    let sql = &mut SpinSql(db);
    let days = privacy::telemetry_days(sql, DEFAULT_ORG, &var("retention_days"))?;
    let kept = scan_store::retention(sql, &days, now_ms)?;
    let classes = privacy::apply_retention(sql, DEFAULT_ORG, now_ms)?;
    let mut summary = serde_json::to_value(kept)?;
    summary["classes"] = serde_json::to_value(classes)?;
    Ok(summary)
}
