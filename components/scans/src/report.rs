//! The daily scans at 03:00: `report` (the last 24 hours' performance,
//! stored in the run's summary and sent through the outbox) and
//! `retention` (deletes rows older than `retention_days`, default 30).

use dol_core::observe::scans::{
    REPORT, ScanMessage, daily_report, enqueue_message, parse_retention_days, report_text,
    retention_cutoff_ms,
};
use dol_core::observe::store;
use dol_core::storage::SqlValue;
use serde_json::{Value, json};
use spin_sdk::sqlite::Connection;

use crate::alerts::usage_since;
use crate::config::var;
use dol_spin_platform::{SpinSql, exec};

/// Runs the report at `now_ms`; returns it as the summary.
pub fn report(db: &Connection, now_ms: i64) -> anyhow::Result<Value> {
    let now_secs = now_ms / 1_000;
    let rows = usage_since(db, now_secs.saturating_sub(86_400))?;
    let report = daily_report(&rows, now_secs);
    let message = ScanMessage {
        scan: REPORT.to_owned(),
        title: "DOL daily performance report".to_owned(),
        text: report_text(&report),
        data: serde_json::to_value(&report)?,
    };
    let key = format!("report:{now_secs}");
    let queued = enqueue_message(&mut SpinSql(db), &message, &key, now_ms)?;
    Ok(json!({ "report": report, "queued": queued }))
}

fn delete(db: &Connection, sql: &str, before: i64) -> anyhow::Result<usize> {
    Ok(exec(&mut SpinSql(db), sql, &[SqlValue::Integer(before)])?.len())
}

/// Runs the retention clean-up at `now_ms`; returns what it deleted.
pub fn retention(db: &Connection, now_ms: i64) -> anyhow::Result<Value> {
    let days = parse_retention_days(&var("retention_days"));
    let cutoff = retention_cutoff_ms(now_ms, days);
    let requests = delete(db, "DELETE FROM requests WHERE ts < ? RETURNING 1", cutoff)?;
    let usage = delete(
        db,
        "DELETE FROM usage_minute WHERE minute < ? RETURNING 1",
        cutoff / 1_000,
    )?;
    let runs = delete(
        db,
        "DELETE FROM scan_runs WHERE started_at < ? RETURNING 1",
        cutoff,
    )?;
    let outbox = store::purge_delivered(&mut SpinSql(db), cutoff)?;
    Ok(json!({
        "retention_days": days,
        "cutoff_ms": cutoff,
        "deleted": { "requests": requests, "usage_minute": usage, "scan_runs": runs, "outbox": outbox },
    }))
}
