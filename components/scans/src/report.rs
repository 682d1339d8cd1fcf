//! The daily scans at 03:00: `report` (the last 24 hours' performance,
//! stored in the run's summary and sent through the outbox) and
//! `retention` (deletes rows older than `retention_days`, default 30).
//! Both are `dol_core::observe::scan_store` calls.

use dol_core::observe::scan_store;
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
    let kept = scan_store::retention(&mut SpinSql(db), &var("retention_days"), now_ms)?;
    Ok(serde_json::to_value(kept)?)
}
