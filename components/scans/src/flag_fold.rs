//! Part of the `alerts` scan: folds the per-minute flag evaluation counts
//! the flag-evaluate component keeps in key-value into the SQLite totals
//! `/metrics` exports, then deletes the folded keys (see
//! `dol_core::observe::flag_counts`).

use anyhow::Context as _;
use dol_core::observe::flag_counts;
use dol_spin_platform::{Db, SpinSql, WasiKv};
use serde_json::{Value, json};
use spin_sdk::key_value::Store;

/// Folds the closed minutes at `now_ms`; returns a summary.
pub fn run(db: &Db, now_ms: i64) -> anyhow::Result<Value> {
    // Listing every key is fine once a minute here, never on a hot path.
    let keys = Store::open_default()
        .context("open key-value")?
        .get_keys()
        .context("list key-value keys")?;
    let mut kv = WasiKv::open_default()?;
    let out = flag_counts::fold_closed(&mut SpinSql(db), &mut kv, keys, now_ms / 1000, now_ms)?;
    for warning in &out.warnings {
        eprintln!("scans: flag counts: {warning}");
    }
    Ok(json!({
        "folded_minutes": out.folded.len(),
        "skipped_minutes": out.skipped.len(),
        "unreadable_lists": out.unreadable,
        "evaluations": out.evaluations,
    }))
}
