//! Counts evaluations for `dol_flag_evaluations_total`: one key-value key
//! per minute, read, incremented and written back once per request (design,
//! accuracy and folding into SQLite: `dol_core::observe::flag_counts`).
//! Counting never fails a request: a storage error is logged and the
//! evaluations of that request go uncounted.

use anyhow::Context as _;
use dol_core::observe::flag_counts::{Counts, minute_key, minute_of};
use serde_json::Value;
use spin_sdk::key_value::Store;

use dol_spin_platform as platform;

/// Counts the evaluations of an OFREP answer body (single or bulk).
pub fn record_ofrep(body: &Value) {
    let mut c = Counts::default();
    c.add_ofrep_body(body);
    record(&c);
}

/// Counts one in-process evaluation.
pub fn record_one(flag: &str, variant: Option<&str>, reason: &str, error_code: Option<&str>) {
    let mut c = Counts::default();
    c.add_evaluation(flag, variant, reason, error_code);
    record(&c);
}

fn record(c: &Counts) {
    if c.is_empty() {
        return;
    }
    if let Err(err) = add(c) {
        eprintln!("flag-evaluate: counting evaluations failed: {err:#}");
    }
}

fn add(c: &Counts) -> anyhow::Result<()> {
    let kv = Store::open_default().context("open key-value")?;
    let key = minute_key(minute_of(platform::now_ms() / 1000));
    // No compare-and-set in Spin key-value: a concurrent writer of the same
    // minute can overwrite this increment (an undercount, never a double count).
    let mut total = kv
        .get(&key)
        .context("read evaluation counts")?
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|t| Counts::decode(&t))
        .unwrap_or_default();
    total.merge(c);
    kv.set(&key, total.encode().as_bytes())
        .context("write evaluation counts")
}

/// `GET /admin/flags/{key}/evaluations`: the flag's evaluations per variant
/// now, the folded totals plus the minutes still in key-value
/// (`dol_core::observe::flag_counts::live_counts`; reads only).
pub fn live(flag: &str) -> Result<spin_sdk::http::Response, dol_core::error::ApiError> {
    let db = platform::open_db().map_err(platform::internal)?;
    let kv = Store::open_default().map_err(platform::internal)?;
    let counts = dol_core::observe::flag_counts::live_counts(
        &mut platform::SpinSql(&db),
        |key| kv.get(key).map_err(|e| e.to_string()),
        flag,
        platform::now_ms() / 1000,
    )
    .map_err(platform::internal)?;
    Ok(platform::json(200, &serde_json::json!(counts)))
}
