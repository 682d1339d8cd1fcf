//! The `alerts` scan (every minute): rule metrics from `usage_minute`, the
//! health score and automatic emergency mode, the alert state machine,
//! folding flag evaluation counts, and delivery of due outbox messages.

use anyhow::Context as _;
use dol_core::health::CheckResult;
use dol_core::observe::admin;
use dol_core::observe::alerts::{self, AlertRule, AlertSource, AlertStatus};
use dol_core::observe::scans;
use dol_core::observe::score::{
    self, EmergencyConfig, EmergencyState, ScoreConfig, TelemetryInputs, WeightedCheck,
};
use dol_core::observe::store::{self, AlertQuery, EMERGENCY_AUTO_KEY};
use dol_core::observe::usage::{self, USAGE_SINCE_SQL, UsageRow};
use dol_core::storage::SqlValue;
use serde_json::{Value, json};
use spin_sdk::sqlite::Connection;

use crate::config::var;
use dol_spin_platform::{SpinSql, exec, in_transaction, now_ms};

/// Window of the telemetry part of the health score, seconds.
const SCORE_WINDOW_SECS: u64 = 300;

/// The rules in force: those stored through `PUT /admin/alerts/rules`,
/// else the `alert_rules` variable when set, else `alerts/rules.json` (see
/// `dol_core::observe::admin`).
pub fn rules(db: &Connection) -> anyhow::Result<Vec<AlertRule>> {
    admin::load_rules(&mut SpinSql(db), &var("alert_rules"))
        .map(|set| set.rules)
        .map_err(|e| anyhow::anyhow!("alert rules: {e}"))
}

/// `usage_minute` rows from `from_secs` on.
pub fn usage_since(db: &Connection, from_secs: i64) -> anyhow::Result<Vec<UsageRow>> {
    Ok(exec(
        &mut SpinSql(db),
        USAGE_SINCE_SQL,
        &[SqlValue::Integer(from_secs)],
    )?
    .iter()
    .filter_map(|r| UsageRow::from_row(r))
    .collect())
}

fn count(db: &Connection, sql: &str) -> anyhow::Result<i64> {
    Ok(exec(&mut SpinSql(db), sql, &[])?
        .first()
        .and_then(|r| r.first())
        .and_then(SqlValue::as_i64)
        .unwrap_or(0))
}

/// Runs the scan at `now_ms`; returns its summary.
pub fn run(db: &Connection, now_ms_: i64) -> anyhow::Result<Value> {
    let rules = rules(db)?;
    let unknown = scans::unknown_metrics(&rules);
    if !unknown.is_empty() {
        eprintln!(
            "scans: alert rules with unknown metrics: {}",
            unknown.join("; ")
        );
    }
    let now_secs = now_ms_ / 1_000;
    let longest = rules
        .iter()
        .map(|r| r.window_secs)
        .chain([SCORE_WINDOW_SECS])
        .max()
        .unwrap_or(SCORE_WINDOW_SECS);
    let db_started = now_ms();
    let rows = usage_since(
        db,
        now_secs.saturating_sub(i64::try_from(longest).unwrap_or(0)),
    )?;
    let db_ms = u64::try_from(now_ms().saturating_sub(db_started)).unwrap_or(0);
    let mut values = scans::metric_values(&rules, &rows, now_secs);

    // Window-free metrics.
    let unpriced = count(
        db,
        "SELECT COUNT(*) FROM models WHERE input_price IS NULL OR output_price IS NULL",
    )?;
    values.insert("models_without_price", 0, unpriced as f64);
    let probes = crate::probes::last();
    let down = probes.iter().filter(|p| !p.up).count();
    values.insert("providers_down", 0, down as f64);

    // Health score: storage plus the providers' last probes, and telemetry.
    let mut checks = vec![WeightedCheck::new(CheckResult::pass("sqlite", db_ms), 3)];
    for p in &probes {
        let name = format!("provider:{}", p.provider);
        let check = if p.up {
            CheckResult::pass(&name, p.latency_ms)
        } else {
            CheckResult::fail(&name, p.latency_ms, p.error.as_deref().unwrap_or("down"))
        };
        checks.push(WeightedCheck::new(check, 1));
    }
    // The same summary /api/health scores (quality on the 1–5 scale).
    let telemetry =
        TelemetryInputs::from(&usage::in_window(&rows, now_secs, SCORE_WINDOW_SECS).summary());
    let health = score::score(&checks, &telemetry, &ScoreConfig::default());
    values.insert("health_score", 0, f64::from(health.score));

    let mut sql = SpinSql(db);
    // Automatic emergency mode (an admin override under EMERGENCY_KEY wins).
    let prev: EmergencyState = store::get_control(&mut sql, EMERGENCY_AUTO_KEY)?
        .and_then(|c| serde_json::from_value(c.value).ok())
        .unwrap_or_default();
    let (emergency, reason) =
        score::decide_emergency(&prev, health.score, now_ms_, &EmergencyConfig::default());
    if emergency != prev || store::get_control(&mut sql, EMERGENCY_AUTO_KEY)?.is_none() {
        let value = serde_json::to_value(&emergency).context("emergency state")?;
        store::set_control(&mut sql, EMERGENCY_AUTO_KEY, &value, "scans", now_ms_)?;
    }

    // Alert states and notifications, in one transaction.
    let (firing, queued) = in_transaction(&mut sql, |tx| {
        let previous: Vec<_> = store::list_alerts(
            tx,
            &AlertQuery {
                source: Some(AlertSource::Rule),
                ..AlertQuery::default()
            },
        )?
        .into_iter()
        .map(|r| r.state)
        .collect();
        let silences = store::active_silences(tx, now_ms_)?;
        let (states, notes) = alerts::evaluate(&rules, &values, &previous, &silences, now_ms_);
        for s in states.iter().filter(|s| s.source == AlertSource::Rule) {
            let summary = rules
                .iter()
                .find(|r| r.name == s.name)
                .and_then(|r| r.description.clone());
            store::upsert_alert(tx, s, summary.as_deref(), now_ms_)?;
        }
        let mut queued = 0;
        for n in &notes {
            if store::enqueue_notification(tx, n, now_ms_)?.is_some() {
                queued += 1;
            }
        }
        let firing: Vec<String> = states
            .iter()
            .filter(|s| s.status == AlertStatus::Firing)
            .map(|s| s.name.clone())
            .collect();
        Ok((firing, queued))
    })?;

    // Flag evaluation counts for /metrics; a failure here must not stop
    // alerting, so it is reported in the summary instead.
    let flag_evaluations = crate::flag_fold::run(db, now_ms_).unwrap_or_else(|err| {
        eprintln!("scans: folding flag evaluation counts failed: {err:#}");
        json!({ "error": "folding failed (see the log)" })
    });
    let delivery = crate::deliver::due(db, now_ms_)?;
    Ok(json!({
        "rules": rules.len(),
        "health": health,
        "emergency": { "active": emergency.active, "reason": reason },
        "firing": firing,
        "queued": queued,
        "delivery": delivery,
        "flag_evaluations": flag_evaluations,
    }))
}
