//! The daily scans at 03:00: `report` (the last 24 hours' performance,
//! stored in the run's summary and sent through the outbox) and
//! `retention` (deletes telemetry older than `retention_days`, default 30,
//! or the default org's `telemetry` retention; then request bodies, events
//! and audit rows by their own retention, `dol_core::privacy`; and the
//! console's expired key-value entries). Both are `dol_core` calls.

use anyhow::Context as _;
use dol_core::console;
use dol_core::observe::scan_store;
use dol_core::privacy::{self, DEFAULT_ORG};
use dol_spin_platform::Db;
use serde_json::Value;
use spin_sdk::key_value::Store;

use crate::config::var;
use dol_spin_platform::SpinSql;

/// Runs the report at `now_ms`; returns it as the summary.
pub fn report(db: &Db, now_ms: i64) -> anyhow::Result<Value> {
    let run = scan_store::report(&mut SpinSql(db), now_ms)?;
    Ok(serde_json::to_value(run)?)
}

/// Runs the retention clean-up at `now_ms`; returns what it deleted.
pub fn retention(db: &Db, now_ms: i64) -> anyhow::Result<Value> {
    let sql = &mut SpinSql(db);
    let days = privacy::telemetry_days(sql, DEFAULT_ORG, &var("retention_days"))?;
    let kept = scan_store::retention(sql, &days, now_ms)?;
    let mut by_org = privacy::apply_retention_to_every_org(sql, now_ms)?;
    let mut summary = serde_json::to_value(kept)?;
    summary["classes"] = serde_json::to_value(by_org.remove(DEFAULT_ORG).unwrap_or_default())?;
    summary["orgs"] = serde_json::to_value(by_org)?;
    summary["deleted"]["console_keys"] = expire_console_keys(now_ms / 1_000)?.into();
    Ok(summary)
}

/// Deletes the console's sign-in counters and sign-out marks that no
/// longer decide anything (`dol_core::console::kv_entry_stale`); returns
/// how many.
fn expire_console_keys(now_secs: i64) -> anyhow::Result<u64> {
    let kv = Store::open_default().context("open key-value")?;
    let mut deleted = 0;
    // Listing every key once a day is cheap next to the alerts scan's
    // listing every minute.
    for key in kv.get_keys().context("list key-value keys")? {
        if !key.starts_with(console::KV_PREFIX) {
            continue;
        }
        let Some(value) = kv.get(&key).context("read a console key")? else {
            continue;
        };
        if console::kv_entry_stale(&key, &value, now_secs) {
            kv.delete(&key).context("delete a console key")?;
            deleted += 1;
        }
    }
    Ok(deleted)
}
