//! The `alerts` scan (every minute): the storage round trips, then
//! `dol_core::observe::scan_store::run_alerts` (the health score — the
//! same one `/api/health` shows — rule metrics, automatic emergency mode,
//! the alert state machine), then the anomaly pass
//! (`dol_core::optimize::anomaly_alerts`: detector → alerts of source
//! `anomaly`), then folding flag evaluation counts and the usage minutes into
//! hour rollups, and delivering due outbox messages.

use dol_core::observe::admin;
use dol_core::observe::alerts::AlertRule;
use dol_core::observe::scan_store;
use dol_core::observe::system::{self, SCANS_PROBE_KEY};
use dol_core::optimize::anomaly_alerts;
use dol_spin_platform::Db;
use serde_json::{Value, json};

use crate::config::var;
use dol_spin_platform::{SpinKv, SpinSql};

/// The rules in force: those stored through `PUT /admin/alerts/rules`,
/// else the `alert_rules` variable when set, else `alerts/rules.json` (see
/// `dol_core::observe::admin`).
pub fn rules(db: &Db) -> anyhow::Result<Vec<AlertRule>> {
    admin::load_rules(&mut SpinSql(db), &var("alert_rules"))
        .map(|set| set.rules)
        .map_err(|e| anyhow::anyhow!("alert rules: {e}"))
}

/// Runs the scan at `now_ms`; returns its summary.
pub fn run(db: &Db, now_ms: i64) -> anyhow::Result<Value> {
    let rules = rules(db)?;
    let mut clock = dol_spin_platform::now_ms;
    let mut kv = SpinKv::open_default();
    let key_value = system::key_value_check(
        kv.as_mut().map_err(|e| format!("open: {e:#}")),
        SCANS_PROBE_KEY,
        &mut clock,
    );
    let sqlite = system::sqlite_check(Ok(&mut SpinSql(db)), &mut clock);
    for check in [&key_value, &sqlite] {
        if let Some(err) = &check.error {
            eprintln!("scans: {} check: {err}", check.result.name);
        }
    }
    let run = scan_store::run_alerts(
        &mut SpinSql(db),
        kv.as_mut().ok(),
        &rules,
        &sqlite.result,
        &key_value.result,
        &mut clock,
        now_ms,
    )?;
    if !run.unknown_metrics.is_empty() {
        eprintln!(
            "scans: alert rules with unknown metrics: {}",
            run.unknown_metrics.join("; ")
        );
    }
    for warning in &run.warnings {
        eprintln!("scans: health score input left out: {warning}");
    }
    let anomalies = anomalies(db, now_ms);
    // Flag evaluation counts for /metrics; a failure here must not stop
    // alerting, so it is reported in the summary instead.
    let flag_evaluations = crate::flag_fold::run(db, now_ms).unwrap_or_else(|err| {
        eprintln!("scans: folding flag evaluation counts failed: {err:#}");
        json!({ "error": "folding failed (see the log)" })
    });
    // Hour rollups for the long /api/metrics windows; a failure leaves the
    // watermark where it was (those windows read minutes meanwhile).
    let usage_fold = scan_store::fold_usage(&mut SpinSql(db), now_ms)
        .map(|fold| json!(fold))
        .unwrap_or_else(|err| {
            eprintln!("scans: folding usage into hours failed: {err}");
            json!({ "error": "folding failed (see the log)" })
        });
    let delivery = crate::deliver::due(db, now_ms)?;
    Ok(json!({
        "rules": run.rules,
        "health": run.health,
        "emergency": run.emergency,
        "firing": run.firing,
        "queued": run.queued,
        "anomalies": anomalies,
        "delivery": delivery,
        "flag_evaluations": flag_evaluations,
        "usage_fold": usage_fold,
    }))
}

/// The anomaly pass with the `anomaly_for` setting (a bad one is reported
/// and the default used: anomaly alerting must not stop over a typo); a
/// failure is reported in the summary, not raised, so rule alerts and
/// deliveries still run.
fn anomalies(db: &Db, now_ms: i64) -> Value {
    let (for_minutes, refused) = anomaly_alerts::for_minutes_in_force(&var("anomaly_for"));
    let setting_error = refused.map(|err| {
        eprintln!("scans: {err}; using {for_minutes}m");
        err.to_string()
    });
    match anomaly_alerts::run(&mut SpinSql(db), for_minutes, now_ms) {
        Ok(run) => json!({
            "for_minutes": for_minutes,
            "setting_error": setting_error,
            "findings": run.findings.len(),
            "fired": run.alerts.fired,
            "resolved": run.alerts.resolved,
            "queued": run.alerts.queued,
        }),
        Err(err) => {
            eprintln!("scans: anomaly pass failed: {err}");
            json!({ "error": "anomaly pass failed (see the log)" })
        }
    }
}
