//! Anomalies as alerts (issue 16, part 4): the `alerts` scan runs the
//! [`super::anomaly`] detector on the per-minute series of every
//! provider/model — request volume, error rate, p95 latency, cost per request
//! and quality — and a series outside its band for the configured time
//! becomes an alert of source `anomaly` in the existing alert pipeline (same
//! states, incidents, outbox notifications and silences as rule alerts), with
//! the expected band in its message.
//!
//! * **Which minutes.** Every metric but volume is judged up to the current
//!   minute (a rate over a partial minute is still a rate); volume only up to
//!   the last complete minute (a partial minute's count would read as a drop).
//!   Minutes without traffic are no data for the rates and 0 requests for
//!   volume (from the series' first minute with traffic on).
//! * **What is read.** Not a week of minutes: the recent two windows and,
//!   for each seasonal lag (a day, two days, a week), the minutes around the
//!   same time then that the seasonal prediction and its residuals use
//!   ([`ranges`]).
//! * **Lifecycle.** An anomalous series fires once (deduplicated by its
//!   fingerprint over `alertname=Anomaly`, `severity`, `provider`, `model`,
//!   `metric`); it resolves at the first scan where it is no longer anomalous
//!   (back inside its band, or no data left to judge).
//! * **Floors.** Each metric has a least band half-width in its own unit
//!   ([`Metric::min_absolute`]), so a flat series (MAD 0) does not alert on
//!   a one-request wobble.

use std::collections::BTreeMap;

use serde::Serialize;

use super::anomaly::{self, AnomalyConfig, DAY_MINUTES, Direction, Judged, WEEK_MINUTES};
use crate::observe::alerts::{self, AlertSource, ExternalAlert, Severity, parse_duration_secs};
use crate::observe::store::{self, AlertQuery, ExternalOutcome, StoreError};
use crate::observe::usage::{Agg, UsageRow};
use crate::storage::SqlExecutor;

/// The alert name of every anomaly alert (a silence on `alertname=Anomaly`
/// mutes them all; add `metric`, `provider` or `model` to narrow it).
pub const ALERT_NAME: &str = "Anomaly";
/// The default "for": consecutive minutes outside the band before an alert.
pub const DEFAULT_FOR_MINUTES: usize = 3;
/// The longest "for" accepted (a day).
pub const MAX_FOR_MINUTES: usize = DAY_MINUTES;

/// A watched per-minute metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Requests per minute (both directions).
    Requests,
    /// Errors per request (only up).
    ErrorRate,
    /// p95 latency, ms (only up).
    P95LatencyMs,
    /// Known cost per priced request, micro-dollars (only up).
    CostPerRequest,
    /// Mean automatic quality score, 0–10 (only down).
    Quality,
}

impl Metric {
    /// Every metric.
    pub const ALL: [Metric; 5] = [
        Self::Requests,
        Self::ErrorRate,
        Self::P95LatencyMs,
        Self::CostPerRequest,
        Self::Quality,
    ];

    /// The label value (`requests`, `error_rate`, `p95_latency_ms`,
    /// `cost_per_request_micros`, `quality`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requests => "requests",
            Self::ErrorRate => "error_rate",
            Self::P95LatencyMs => "p95_latency_ms",
            Self::CostPerRequest => "cost_per_request_micros",
            Self::Quality => "quality",
        }
    }

    /// Which side of the band is a problem.
    pub fn direction(self) -> Direction {
        match self {
            Self::Requests => Direction::Both,
            Self::ErrorRate | Self::P95LatencyMs | Self::CostPerRequest => Direction::Above,
            Self::Quality => Direction::Below,
        }
    }

    /// Least band half-width in the metric's unit: 5 requests/min, 5
    /// error-rate points, 100 ms, 1 micro-dollar, 0.5 quality points.
    pub fn min_absolute(self) -> f64 {
        match self {
            Self::Requests => 5.0,
            Self::ErrorRate => 0.05,
            Self::P95LatencyMs => 100.0,
            Self::CostPerRequest => 1.0,
            Self::Quality => 0.5,
        }
    }

    /// The minute's value from its counters (`None`: no data that minute).
    pub fn value(self, a: &Agg) -> Option<f64> {
        match self {
            Self::Requests => Some(a.requests as f64),
            _ if a.requests == 0 => None,
            Self::ErrorRate => Some(a.error_rate()),
            Self::P95LatencyMs => a.percentile_ms(0.95).map(|v| v as f64),
            Self::CostPerRequest => {
                let priced = a.requests.saturating_sub(a.cost_unknown);
                (priced > 0).then(|| a.cost_micros as f64 / priced as f64)
            }
            Self::Quality => a.avg_quality(),
        }
    }

    /// The detector's tuning for this metric with `for_minutes`.
    pub fn config(self, for_minutes: usize) -> AnomalyConfig {
        AnomalyConfig {
            min_minutes: for_minutes.max(1),
            min_absolute: self.min_absolute(),
            direction: self.direction(),
            ..AnomalyConfig::default()
        }
    }
}

/// Why the `anomaly_for` setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingError {
    /// Not a duration of whole minutes between 1 minute and a day.
    #[error("anomaly_for: {0:?} is not a duration of 1m to 24h in whole minutes (e.g. \"3m\")")]
    For(String),
}

/// Parses the `anomaly_for` setting (`"3m"`, `"180s"`, `"1h"`; empty = the
/// default, [`DEFAULT_FOR_MINUTES`]) into minutes.
pub fn parse_for(text: &str) -> Result<usize, SettingError> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(DEFAULT_FOR_MINUTES);
    }
    parse_duration_secs(&serde_json::Value::String(t.to_owned()))
        .filter(|s| *s > 0 && s % 60 == 0)
        .and_then(|s| usize::try_from(s / 60).ok())
        .filter(|m| *m <= MAX_FOR_MINUTES)
        .ok_or_else(|| SettingError::For(t.to_owned()))
}

/// The `anomaly_for` setting in force: its minutes, or the default with the
/// reason when it is refused (anomaly alerting must not stop over a typo; the
/// caller logs the reason and reports it in the scan's summary).
pub fn for_minutes_in_force(text: &str) -> (usize, Option<SettingError>) {
    match parse_for(text) {
        Ok(minutes) => (minutes, None),
        Err(e) => (DEFAULT_FOR_MINUTES, Some(e)),
    }
}

/// The minute ranges `[from, to)` (Unix seconds) the scan at `now_secs`
/// reads with `for_minutes`: the recent windows, and around each seasonal lag
/// what its prediction and residuals look at.
pub fn ranges(now_secs: i64, for_minutes: usize) -> Vec<(i64, i64)> {
    let c = AnomalyConfig::default();
    let now_minute = now_secs.div_euclid(60);
    let back = i64::try_from(2 * c.window + for_minutes + c.seasonal_halfwidth).unwrap_or(0);
    let ahead = i64::try_from(c.seasonal_halfwidth + 1).unwrap_or(0);
    let mut out = vec![((now_minute - back) * 60, (now_minute + 1) * 60)];
    for lag in [DAY_MINUTES, 2 * DAY_MINUTES, WEEK_MINUTES] {
        let then = now_minute - i64::try_from(lag).unwrap_or(0);
        out.push(((then - back) * 60, (then + ahead) * 60));
    }
    out
}

/// One provider/model series judged anomalous at its last minute.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// Provider.
    pub provider: String,
    /// Model.
    pub model: String,
    /// Metric.
    pub metric: Metric,
    /// The judged minute (Unix seconds).
    pub minute: i64,
    /// Its judgement (value, expected value, band).
    pub judged: Judged,
}

impl Finding {
    /// The alert's labels.
    pub fn labels(&self) -> BTreeMap<String, String> {
        labels(&self.provider, &self.model, self.metric.as_str())
    }

    /// The alert message, band included: e.g. `p95_latency_ms of
    /// openai/gpt-4o is 812 (expected 95, band 0–195) for 3 min`.
    pub fn summary(&self, for_minutes: usize) -> String {
        let j = &self.judged;
        // One precision for all four figures, from the largest, so a band
        // reads "0–120" or "0.0000–0.0500", never "0.0000–120".
        let places = decimals(j.value.abs().max(j.expected.abs()).max(j.high.abs()));
        let f = |v: f64| format!("{v:.places$}");
        format!(
            "{} of {}/{} is {} (expected {}, band {}–{}) for {} min{}",
            self.metric.as_str(),
            self.provider,
            self.model,
            f(j.value),
            f(j.expected),
            f(j.low.max(0.0)),
            f(j.high),
            for_minutes.max(1),
            if j.seasonal {
                ", seasonal baseline"
            } else {
                ""
            }
        )
    }
}

/// Decimal places for figures up to `largest`: none from 100, two from 1,
/// else four.
fn decimals(largest: f64) -> usize {
    if largest >= 100.0 {
        0
    } else if largest >= 1.0 {
        2
    } else {
        4
    }
}

/// The labels of the anomaly alert of one series.
pub fn labels(provider: &str, model: &str, metric: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("alertname".to_owned(), ALERT_NAME.to_owned()),
        ("severity".to_owned(), Severity::Warning.as_str().to_owned()),
        ("provider".to_owned(), provider.to_owned()),
        ("model".to_owned(), model.to_owned()),
        ("metric".to_owned(), metric.to_owned()),
    ])
}

/// Judges every provider/model series in `rows` at `now_secs` and returns
/// those anomalous at their last judged minute (see the module docs).
pub fn findings(rows: &[UsageRow], now_secs: i64, for_minutes: usize) -> Vec<Finding> {
    let now_minute = now_secs.div_euclid(60);
    let start = ranges(now_secs, for_minutes)
        .iter()
        .map(|r| r.0.div_euclid(60))
        .min()
        .unwrap_or(now_minute);
    let mut by_series: BTreeMap<(&str, &str), BTreeMap<i64, Agg>> = BTreeMap::new();
    for r in rows {
        let m = r.minute.div_euclid(60);
        if (start..=now_minute).contains(&m) {
            by_series
                .entry((r.provider.as_str(), r.model.as_str()))
                .or_default()
                .entry(m)
                .or_default()
                .add(&r.agg);
        }
    }
    let read = ranges(now_secs, for_minutes);
    let in_read = |m: i64| read.iter().any(|r| (r.0..r.1).contains(&(m * 60)));
    let mut out = Vec::new();
    for ((provider, model), minutes) in &by_series {
        let first = minutes.keys().next().copied().unwrap_or(now_minute);
        for metric in Metric::ALL {
            // Volume stops at the last complete minute.
            let last = if metric == Metric::Requests {
                now_minute - 1
            } else {
                now_minute
            };
            if last < start {
                continue;
            }
            let mut series: Vec<Option<f64>> = (start..=last)
                .map(|m| match minutes.get(&m) {
                    Some(a) => metric.value(a),
                    None if metric == Metric::Requests && m >= first && in_read(m) => Some(0.0),
                    None => None,
                })
                .collect();
            // The run is counted back from the newest observed minute (at the
            // cron tick, second 0, the current minute has no data yet).
            while series.last().is_some_and(Option::is_none) {
                series.pop();
            }
            let Some(judged) = anomaly::judge_last(&series, &metric.config(for_minutes)) else {
                continue;
            };
            let minute = (start + i64::try_from(judged.index).unwrap_or(0)) * 60;
            // Only the newest minute or the one before decides: an older
            // breach is no news.
            if judged.anomalous && minute >= (now_minute - 1) * 60 {
                out.push(Finding {
                    provider: (*provider).to_owned(),
                    model: (*model).to_owned(),
                    metric,
                    minute,
                    judged,
                });
            }
        }
    }
    out
}

/// The external-alert form of this scan's findings plus a resolve for each
/// anomaly alert in `firing` (labels of alerts now firing) not found again.
pub fn alerts_for(
    found: &[Finding],
    firing: &[BTreeMap<String, String>],
    for_minutes: usize,
    now_ms: i64,
) -> Vec<ExternalAlert> {
    let mut out: Vec<ExternalAlert> = found
        .iter()
        .map(|f| {
            let labels = f.labels();
            ExternalAlert {
                fingerprint: alerts::fingerprint(&labels),
                name: ALERT_NAME.to_owned(),
                severity: Severity::Warning,
                labels,
                summary: f.summary(for_minutes),
                firing: true,
                starts_at_ms: Some(now_ms),
                ends_at_ms: None,
            }
        })
        .collect();
    for labels in firing {
        let fingerprint = alerts::fingerprint(labels);
        if out.iter().any(|a| a.fingerprint == fingerprint) {
            continue;
        }
        let get = |k: &str| labels.get(k).map_or("?", String::as_str);
        out.push(ExternalAlert {
            fingerprint,
            name: ALERT_NAME.to_owned(),
            severity: Severity::Warning,
            labels: labels.clone(),
            summary: format!(
                "{} of {}/{} is back inside its band",
                get("metric"),
                get("provider"),
                get("model")
            ),
            firing: false,
            starts_at_ms: None,
            ends_at_ms: Some(now_ms),
        });
    }
    out
}

/// What the anomaly pass of the `alerts` scan did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AnomalyRun {
    /// Series anomalous now.
    pub findings: Vec<Finding>,
    /// The alert changes (fired, resolved, unchanged fingerprints, queued).
    pub alerts: ExternalOutcome,
}

/// The anomaly pass of the `alerts` scan at `now_ms`: reads the minutes
/// [`ranges`] names, judges every series, and fires or resolves the
/// anomaly alerts through [`store::apply_external_alerts`] (silences
/// respected, notifications queued in the outbox, incidents recorded).
pub fn run(
    db: &mut impl SqlExecutor,
    for_minutes: usize,
    now_ms: i64,
) -> Result<AnomalyRun, StoreError> {
    let now_secs = now_ms.div_euclid(1_000);
    let rows = crate::observe::system::usage_in_ranges(db, &ranges(now_secs, for_minutes))?;
    let found = findings(&rows, now_secs, for_minutes);
    let firing: Vec<BTreeMap<String, String>> = firing_alerts(db)?
        .into_iter()
        .map(|r| r.state.labels)
        .collect();
    let incoming = alerts_for(&found, &firing, for_minutes, now_ms);
    let outcome = if incoming.is_empty() {
        ExternalOutcome::default()
    } else {
        store::apply_external_alerts(db, AlertSource::Anomaly, &incoming, now_ms)?
    };
    Ok(AnomalyRun {
        findings: found,
        alerts: outcome,
    })
}

/// The firing alerts of source `anomaly`.
fn firing_alerts(db: &mut impl SqlExecutor) -> Result<Vec<store::AlertRecord>, StoreError> {
    store::list_alerts(
        db,
        &AlertQuery {
            status: Some(alerts::AlertStatus::Firing),
            source: Some(AlertSource::Anomaly),
            limit: None,
        },
    )
}

/// One firing anomaly alert as `/api/health` lists it (`anomalies`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AnomalyView {
    /// Alert id (fingerprint): acknowledge or resolve it under `/admin/alerts`.
    pub id: String,
    /// Provider.
    pub provider: String,
    /// Model.
    pub model: String,
    /// Metric (see [`Metric::as_str`]).
    pub metric: String,
    /// The message: value, expected value and band.
    pub summary: String,
    /// When it fired, Unix ms.
    pub since_ms: Option<i64>,
    /// Who acknowledged it, if anyone.
    pub acknowledged_by: Option<String>,
    /// Whether a silence mutes it now.
    pub silenced: bool,
}

/// The firing anomaly alerts at `now_ms`, oldest first.
pub fn active(db: &mut impl SqlExecutor, now_ms: i64) -> Result<Vec<AnomalyView>, StoreError> {
    let silences = store::active_silences(db, now_ms)?;
    let mut out: Vec<AnomalyView> = firing_alerts(db)?
        .into_iter()
        .map(|r| {
            let label = |k: &str| r.state.labels.get(k).cloned().unwrap_or_default();
            AnomalyView {
                id: r.state.fingerprint.clone(),
                provider: label("provider"),
                model: label("model"),
                metric: label("metric"),
                silenced: alerts::is_silenced(&silences, &r.state.labels, now_ms),
                summary: r.summary,
                since_ms: r.state.fired_at_ms,
                acknowledged_by: r.state.acknowledged_by,
            }
        })
        .collect();
    out.sort_by_key(|a| (a.since_ms, a.id.clone()));
    Ok(out)
}

#[cfg(test)]
#[path = "anomaly_alerts_tests.rs"]
mod tests;
