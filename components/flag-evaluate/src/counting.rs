//! Counts evaluations for `dol_flag_evaluations_total`: atomic key-value
//! counters per minute for a single evaluation, the minute's list for a
//! bulk one (design, accuracy and folding into SQLite:
//! `dol_core::observe::flag_counts`). Counting never fails a request: a
//! storage error is logged and the evaluations of that request go
//! uncounted.

use dol_core::observe::flag_counts::{self, Counts};
use serde_json::Value;

use dol_spin_platform::{self as platform, WasiKv};

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
    let counted = WasiKv::open_default().and_then(|mut kv| {
        flag_counts::record(&mut kv, c, platform::now_ms() / 1000).map_err(anyhow::Error::from)
    });
    if let Err(err) = counted {
        eprintln!("flag-evaluate: counting evaluations failed: {err:#}");
    }
}

/// `GET /admin/flags/{key}/evaluations`: the flag's evaluations per variant
/// now, the folded totals plus the minutes still in key-value
/// (`dol_core::observe::flag_counts::live_counts`).
pub fn live(flag: &str) -> Result<spin_sdk::http::Response, dol_core::error::ApiError> {
    let db = platform::open_db().map_err(platform::internal)?;
    let mut kv = WasiKv::open_default().map_err(platform::internal)?;
    let counts = flag_counts::live_counts(
        &mut platform::SpinSql(&db),
        &mut kv,
        flag,
        platform::now_ms() / 1000,
    )
    .map_err(platform::internal)?;
    Ok(platform::json(200, &serde_json::json!(counts)))
}
