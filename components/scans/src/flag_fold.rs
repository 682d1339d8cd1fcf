//! Part of the `alerts` scan: folds the per-minute flag evaluation counts
//! the flag-evaluate component keeps in key-value into the SQLite totals
//! `/metrics` exports, then deletes the folded keys (see
//! `dol_core::observe::flag_counts`).

use anyhow::Context as _;
use dol_core::observe::flag_counts::{self, key_minute, minute_key};
use dol_spin_platform::Db;
use serde_json::{Value, json};
use spin_sdk::key_value::Store;

use dol_spin_platform::SpinSql;

/// Folds the closed minutes at `now_ms`; returns a summary.
pub fn run(db: &Db, now_ms: i64) -> anyhow::Result<Value> {
    let kv = Store::open_default().context("open key-value")?;
    let now_s = now_ms / 1000;
    let mut listed = Vec::new();
    // Listing every key is fine once a minute here, never on a hot path.
    for key in kv.get_keys().context("list key-value keys")? {
        let Some(minute) = key_minute(&key) else {
            continue;
        };
        if flag_counts::is_closed(minute, now_s)
            && let Some(bytes) = kv.get(&key).context("read evaluation counts")?
        {
            listed.push((minute, String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
    let out = flag_counts::fold(&mut SpinSql(db), &listed, now_s, now_ms)?;
    for minute in out.folded.iter().chain(&out.skipped) {
        // A key left behind is skipped next time (its minute is recorded).
        if let Err(err) = kv.delete(&minute_key(*minute)) {
            eprintln!("scans: deleting flag counts of minute {minute} failed: {err}");
        }
    }
    Ok(json!({
        "folded_minutes": out.folded.len(),
        "skipped_minutes": out.skipped.len(),
        "evaluations": out.evaluations,
    }))
}
