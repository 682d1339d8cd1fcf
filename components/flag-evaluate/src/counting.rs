//! Counts evaluations for `dol_flag_evaluations_total`: atomic key-value
//! counters per minute for a single evaluation, the minute's list for a
//! bulk one (design, accuracy and folding into SQLite:
//! `dol_core::observe::flag_counts`). OFREP answers are gathered per
//! instance and written together [`flag_counts::FLUSH_AFTER_MS`] after
//! the first of them ([`flag_counts::Pending`]); the in-process evaluations are gathered
//! the same way and written when the consumer calls `flush-counts`.
//! Counting never fails a request: a storage error is logged and those
//! evaluations go uncounted.

use std::cell::RefCell;

use dol_core::observe::flag_counts::{self, Counts, FLUSH_AFTER_MS, Pending};
use serde_json::Value;

use dol_spin_platform::{self as platform, WasiKv};

thread_local! {
    /// The evaluations of this instance (OFREP answers, in-process ones)
    /// not yet counted in key-value.
    static PENDING: RefCell<Pending> = RefCell::new(Pending::default());
}

/// Counts the evaluations of an OFREP answer body (single or bulk), with
/// the other answers of the next [`FLUSH_AFTER_MS`].
pub fn record_ofrep(body: &Value) {
    let mut c = Counts::default();
    c.add_ofrep_body(body);
    let now_s = platform::now_ms() / 1000;
    if PENDING.with_borrow_mut(|pending| pending.add(&c, now_s)) {
        dol_spin_platform::service::run_after(FLUSH_AFTER_MS, flush);
    }
}

/// Writes the gathered counts (OFREP answers and in-process evaluations).
pub fn flush() {
    let batch = PENDING.with_borrow_mut(Pending::take);
    // An in-process evaluation that failed before it was counted still
    // asks for a flush: nothing to open storage for.
    if batch.is_empty() {
        return;
    }
    let written =
        WasiKv::open_default().and_then(|mut kv| batch.flush(&mut kv).map_err(anyhow::Error::from));
    if let Err(err) = written {
        eprintln!("flag-evaluate: counting evaluations failed: {err:#}");
    }
}

/// Counts one in-process evaluation; written by the consumer's next
/// `flush-counts` ([`flush`]).
pub fn add_one(flag: &str, variant: Option<&str>, reason: &str, error_code: Option<&str>) {
    let mut c = Counts::default();
    c.add_evaluation(flag, variant, reason, error_code);
    let now_s = platform::now_ms() / 1000;
    PENDING.with_borrow_mut(|pending| pending.add(&c, now_s));
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
