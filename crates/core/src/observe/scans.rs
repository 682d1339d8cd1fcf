//! The decisions of the scans component, pure: which scans a cron tick runs,
//! alert metrics from minute aggregates, the model-discovery diff, the daily
//! report, retention cut-offs and the messages the outbox delivers.
//!
//! # Schedules
//!
//! | scan | cron (seconds first) | what |
//! |---|---|---|
//! | `alerts` | `0 * * * * *` | alert rules, health score, automatic emergency mode, outbox delivery |
//! | `video-jobs` | `0 * * * * *` | polls due video jobs (back-off per job), timeouts, fallback, completion webhooks |
//! | `probes` | `0 */5 * * * *` | one cheap model-list call per enabled provider and per configured video platform ([`crate::video::discovery`]) |
//! | `discovery` | `0 0 */6 * * *` | provider model lists diffed against the catalog; video platforms' lists against `catalog/videos.json` |
//! | `report` | `0 0 3 * * *` | performance report of the last 24 h |
//! | `retention` | `0 0 3 * * *` | deletes telemetry older than `retention_days` |
//! | `recommendations` | `0 0 3 * * *` | recomputes the recommendations, stores them, queues each new one once ([`crate::optimize::recommend_store`]) |
//!
//! Spin's cron plugin tells a component only the tick's time, so every tick
//! runs the scans [`due_scans`] names for that time; the component claims
//! each (scan, tick) pair once, so the several triggers that fire together
//! at 03:00 do not run a scan twice.
//!
//! # Alert metrics
//!
//! [`metric_values`] computes, for every (metric, window) a rule uses, the
//! value over the `usage_minute` rows whose minute starts within the window
//! (`minute >= now - window`):
//!
//! | metric | value | no requests |
//! |---|---|---|
//! | `requests` | requests | 0 |
//! | `error_rate` | errors / requests (0–1; `offline` and `stream_aborted` count as errors) | 0 |
//! | `fallback_rate` | fallbacks / requests (0–1) | 0 |
//! | `p50_latency_ms`, `p95_latency_ms`, `p99_latency_ms` | upper bound of the histogram bucket holding the rank | no value |
//! | `avg_quality` | quality sum / scored requests (the gateway's 0–10 scale) | no value |
//!
//! and, independent of any window: `models_without_price` (catalog rows
//! with a NULL input or output price, plus the video models discovery
//! found), `providers_down` (providers whose
//! last probe failed), `health_score` (0–100), `video_failure_rate` (the
//! worst video platform's failed attempts / outcomes over the last hour,
//! 0–1; 0 without video jobs) and `video_platforms_unhealthy` (video
//! platforms below 90 % success over the last hour or down at their last
//! probe, [`crate::video::health`]).
//! A metric without a value leaves its alert where it is.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::alerts::{AlertRule, MetricValues, Notification, NotificationKind};
use super::slack::{AlertView, alert_message, mrkdwn};
use super::usage::{Agg, UsageRow, in_window};
use crate::gateway::providers::DiscoveredModel;
use crate::optimize::feedback::Correlation;
use crate::optimize::savings::{Savings, savings};
use crate::optimize::selection::Accuracy;

/// Name of the alert-evaluation scan.
pub const ALERTS: &str = "alerts";
/// Name of the provider-probe scan.
pub const PROBES: &str = "probes";
/// Name of the model-discovery scan.
pub const DISCOVERY: &str = "discovery";
/// Name of the daily performance report.
pub const REPORT: &str = "report";
/// Name of the retention clean-up.
pub const RETENTION: &str = "retention";
/// Name of the heartbeat scan (HTTP only; every scan run also beats).
pub const HEARTBEAT: &str = "heartbeat";
/// Name of the rollout guard loop (every minute, after the alerts, so it
/// sees this minute's emergency state).
pub const ROLLOUTS: &str = crate::rollouts::store::ROLLOUTS;

/// Name of the video-jobs scan (every minute: polls due video jobs, times
/// out late ones, falls back, delivers completion webhooks).
pub const VIDEO_JOBS: &str = "video-jobs";

/// Name of the daily recommendations scan.
pub const RECOMMENDATIONS: &str = crate::optimize::recommend_store::RECOMMENDATIONS;

/// Name of the selection-table scan (every minute: learns the auto entry
/// tier's quality table from the last day's requests).
pub const SELECTION: &str = crate::optimize::auto_entry::SELECTION;

/// Every scan runnable over `POST /admin/scans/{name}`.
pub const ALL_SCANS: [&str; 10] = [
    ALERTS,
    ROLLOUTS,
    VIDEO_JOBS,
    SELECTION,
    PROBES,
    DISCOVERY,
    REPORT,
    RETENTION,
    RECOMMENDATIONS,
    HEARTBEAT,
];

/// The alert rules shipped with DOL (`alerts/rules.json`).
pub const DEFAULT_RULES: &str = include_str!("../../../../alerts/rules.json");

/// Outbox kind of a scan message (report, discovery); the payload is a
/// [`ScanMessage`].
pub const KIND_SCAN: &str = "scan";

/// Default retention, days.
pub const DEFAULT_RETENTION_DAYS: u32 = 30;

/// Metric names [`metric_values`] and the scan fill in.
pub const METRICS: [&str; 12] = [
    "requests",
    "error_rate",
    "fallback_rate",
    "p50_latency_ms",
    "p95_latency_ms",
    "p99_latency_ms",
    "avg_quality",
    "models_without_price",
    "providers_down",
    "health_score",
    "video_failure_rate",
    "video_platforms_unhealthy",
];

/// The scans a cron tick at `timestamp` (Unix seconds, UTC) runs, in order.
pub fn due_scans(timestamp: u64) -> Vec<&'static str> {
    let mut out = vec![ALERTS, ROLLOUTS, VIDEO_JOBS, SELECTION];
    if timestamp.is_multiple_of(300) {
        out.push(PROBES);
    }
    if timestamp.is_multiple_of(21_600) {
        out.push(DISCOVERY);
    }
    if timestamp % 86_400 == 3 * 3_600 {
        out.push(REPORT);
        out.push(RETENTION);
        out.push(RECOMMENDATIONS);
    }
    out
}

/// The values of every windowed metric the rules use, over `rows` (read
/// with [`super::system::usage_since`]) at `now_secs` (see the module
/// docs). Window-free metrics are added by the
/// caller with window 0.
pub fn metric_values(rules: &[AlertRule], rows: &[UsageRow], now_secs: i64) -> MetricValues {
    let mut out = MetricValues::new();
    let pairs: BTreeSet<(&str, u64)> = rules
        .iter()
        .map(|r| (r.metric.as_str(), r.window_secs))
        .collect();
    for (metric, window) in pairs {
        let a = in_window(rows, now_secs, window);
        let value = match metric {
            "requests" => Some(a.requests as f64),
            "error_rate" => Some(a.error_rate()),
            "fallback_rate" => Some(a.fallback_rate()),
            "p50_latency_ms" => a.percentile_ms(0.50).map(|v| v as f64),
            "p95_latency_ms" => a.percentile_ms(0.95).map(|v| v as f64),
            "p99_latency_ms" => a.percentile_ms(0.99).map(|v| v as f64),
            "avg_quality" => a.avg_quality(),
            _ => None,
        };
        if let Some(v) = value {
            out.insert(metric, window, v);
        }
    }
    out
}

/// Rule metrics that nothing computes (a typo in the rules file).
pub fn unknown_metrics(rules: &[AlertRule]) -> Vec<String> {
    rules
        .iter()
        .filter(|r| !METRICS.contains(&r.metric.as_str()))
        .map(|r| format!("{}: {}", r.name, r.metric))
        .collect()
}

// ---------------------------------------------------------------------------
// Probes

/// Key-value key of the last probe of every enabled provider (a JSON array
/// of [`ProbeResult`]), for health and routing.
pub const PROBES_KEY: &str = "dol:scans:probes";

/// One provider's last probe (its model list, the cheapest call it has).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeResult {
    /// Provider name.
    pub provider: String,
    /// Whether it answered 2xx with a model list.
    pub up: bool,
    /// HTTP status, when it answered.
    pub status: Option<u16>,
    /// Round trip, ms.
    pub latency_ms: u64,
    /// Why it is down (no secrets).
    pub error: Option<String>,
    /// When, Unix ms.
    pub at_ms: i64,
}

// ---------------------------------------------------------------------------
// Discovery

/// A `models` catalog row as discovery compares it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogModel {
    /// Provider name.
    pub provider: String,
    /// Model id.
    pub model: String,
    /// Context window, tokens.
    pub context_window: u64,
    /// Capabilities.
    pub capabilities: BTreeSet<String>,
    /// Input price (micro-dollars per 1M tokens), NULL = unknown.
    pub input_price: Option<u64>,
    /// Output price, NULL = unknown.
    pub output_price: Option<u64>,
    /// `seed`, `admin` or `discovered`.
    pub source: String,
}

impl CatalogModel {
    /// Whether a price is missing.
    pub fn unpriced(&self) -> bool {
        self.input_price.is_none() || self.output_price.is_none()
    }
}

/// A model whose reported capabilities or limits differ from the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelChange {
    /// Model id.
    pub model: String,
    /// What changed, e.g. `context_window 8192 -> 128000`.
    pub changes: Vec<String>,
}

/// What one provider's model list says compared with the catalog.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ModelDiff {
    /// Provider name.
    pub provider: String,
    /// Listed by the provider, not in the catalog.
    pub added: Vec<DiscoveredModel>,
    /// In the catalog (for this provider), no longer listed.
    pub removed: Vec<String>,
    /// Listed and catalogued, with different capabilities or context window.
    pub changed: Vec<ModelChange>,
}

impl ModelDiff {
    /// Whether nothing differs.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// Diffs `provider`'s listed models against the catalog. Capabilities are
/// compared only when the provider reports some, the context window only
/// when reported (an unknown is not a change).
pub fn diff_models(
    provider: &str,
    catalog: &[CatalogModel],
    listed: &[DiscoveredModel],
) -> ModelDiff {
    let ours: BTreeMap<&str, &CatalogModel> = catalog
        .iter()
        .filter(|m| m.provider == provider)
        .map(|m| (m.model.as_str(), m))
        .collect();
    let theirs: BTreeSet<&str> = listed.iter().map(|m| m.id.as_str()).collect();
    let mut diff = ModelDiff {
        provider: provider.to_owned(),
        ..ModelDiff::default()
    };
    for m in listed {
        match ours.get(m.id.as_str()) {
            None => {
                if !diff.added.iter().any(|a| a.id == m.id) {
                    diff.added.push(m.clone());
                }
            }
            Some(c) => {
                let mut changes = Vec::new();
                if let Some(cw) = m.context_window
                    && cw != c.context_window
                {
                    changes.push(format!("context_window {} -> {cw}", c.context_window));
                }
                if !m.capabilities.is_empty() && m.capabilities != c.capabilities {
                    let fmt =
                        |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(",");
                    changes.push(format!(
                        "capabilities [{}] -> [{}]",
                        fmt(&c.capabilities),
                        fmt(&m.capabilities)
                    ));
                }
                if !changes.is_empty() {
                    diff.changed.push(ModelChange {
                        model: m.id.clone(),
                        changes,
                    });
                }
            }
        }
    }
    diff.removed = ours
        .keys()
        .filter(|k| !theirs.contains(*k))
        .map(|k| (*k).to_owned())
        .collect();
    diff
}

/// Context window recorded for a discovered model that reports none.
pub const UNKNOWN_CONTEXT_WINDOW: u64 = 4_096;

/// The catalog row for a newly discovered model: tier `basic`, no price
/// (cost unknown until an admin sets one), source `discovered`.
pub fn discovered_entry(provider: &str, m: &DiscoveredModel) -> CatalogModel {
    CatalogModel {
        provider: provider.to_owned(),
        model: m.id.clone(),
        context_window: m.context_window.unwrap_or(UNKNOWN_CONTEXT_WINDOW),
        capabilities: m.capabilities.clone(),
        input_price: None,
        output_price: None,
        source: "discovered".to_owned(),
    }
}

/// One line per difference: `new provider/model (no price yet)`,
/// `removed provider/model`, `changed provider/model: what; what`.
pub fn discovery_text(diffs: &[ModelDiff]) -> String {
    let mut lines = Vec::new();
    for d in diffs {
        for m in &d.added {
            lines.push(format!("new {}/{} (no price yet)", d.provider, m.id));
        }
        for m in &d.removed {
            lines.push(format!("removed {}/{m}", d.provider));
        }
        for c in &d.changed {
            lines.push(format!(
                "changed {}/{}: {}",
                d.provider,
                c.model,
                c.changes.join("; ")
            ));
        }
    }
    lines.join("\n")
}

/// The message of a discovery run at `now_ms` and its deduplication key, or
/// `None` when no model is new or changed: removed models stay in the
/// catalog (an admin decides), so they alone would repeat every run.
pub fn discovery_message(
    diffs: &[ModelDiff],
    now_ms: i64,
) -> Result<Option<(ScanMessage, String)>, serde_json::Error> {
    let changed: Vec<&ModelDiff> = diffs
        .iter()
        .filter(|d| !d.added.is_empty() || !d.changed.is_empty())
        .collect();
    if changed.is_empty() {
        return Ok(None);
    }
    let message = ScanMessage {
        scan: DISCOVERY.to_owned(),
        title: "DOL model discovery".to_owned(),
        text: discovery_text(diffs),
        data: serde_json::to_value(&changed)?,
    };
    let key = format!(
        "discovery:{now_ms}:{}",
        super::alerts::fingerprint(&BTreeMap::from([("text".to_owned(), message.text.clone())]))
    );
    Ok(Some((message, key)))
}

// ---------------------------------------------------------------------------
// Report and retention

/// Milliseconds per day.
pub const DAY_MS: i64 = 86_400_000;

/// Rows older than this (Unix ms) are deleted: `now - days`; 0 days keeps
/// nothing older than now.
pub fn retention_cutoff_ms(now_ms: i64, days: u32) -> i64 {
    now_ms.saturating_sub(i64::from(days).saturating_mul(DAY_MS))
}

/// Parses the `retention_days` variable: a positive whole number of days;
/// empty or invalid gives [`DEFAULT_RETENTION_DAYS`].
pub fn parse_retention_days(s: &str) -> u32 {
    s.trim()
        .parse::<u32>()
        .ok()
        .filter(|d| *d > 0)
        .unwrap_or(DEFAULT_RETENTION_DAYS)
}

/// One line of the report: a provider/model's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportLine {
    /// `provider/model`.
    pub key: String,
    /// Requests.
    pub requests: u64,
    /// Error rate (0–1).
    pub error_rate: f64,
    /// p95 latency, ms.
    pub p95_ms: Option<u64>,
    /// Average quality.
    pub avg_quality: Option<f64>,
    /// Cost, USD.
    pub cost_usd: f64,
    /// The same requests on the savings baseline, USD.
    pub baseline_cost_usd: f64,
    /// Baseline − cost, USD.
    pub saved_usd: f64,
}

/// The daily performance report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Window start, Unix seconds.
    pub from: i64,
    /// Window end, Unix seconds.
    pub to: i64,
    /// Requests.
    pub requests: u64,
    /// Error rate (0–1).
    pub error_rate: f64,
    /// Fallback rate (0–1).
    pub fallback_rate: f64,
    /// Cache-hit rate (0–1).
    pub cache_hit_rate: f64,
    /// Latency percentiles, ms.
    pub p50_ms: Option<u64>,
    /// p95, ms.
    pub p95_ms: Option<u64>,
    /// p99, ms.
    pub p99_ms: Option<u64>,
    /// Average quality.
    pub avg_quality: Option<f64>,
    /// Cost, USD.
    pub cost_usd: f64,
    /// Cost against the savings baseline ([`crate::optimize::savings`]).
    pub savings: Savings,
    /// Per provider/model, most requests first.
    pub by_model: Vec<ReportLine>,
    /// How the automatic quality score agrees with user feedback over the
    /// window (Pearson r with its 95 % interval; `None` with fewer than 4
    /// scored requests with feedback).
    pub feedback_agreement: Option<Correlation>,
    /// Model selection accuracy over the window (see
    /// [`crate::optimize::selection::observed_accuracy`]).
    pub selection_accuracy: Accuracy,
}

fn usd(micros: u64) -> f64 {
    micros as f64 / 1_000_000.0
}

/// The report over the 24 hours before `now_secs`.
pub fn daily_report(rows: &[UsageRow], now_secs: i64) -> Report {
    let from = now_secs.saturating_sub(86_400);
    let rows: Vec<&UsageRow> = rows
        .iter()
        .filter(|r| r.minute >= from && r.minute < now_secs)
        .collect();
    let all = Agg::of(rows.iter().copied());
    let mut groups: BTreeMap<String, Vec<&UsageRow>> = BTreeMap::new();
    for r in &rows {
        groups
            .entry(format!("{}/{}", r.provider, r.model))
            .or_default()
            .push(r);
    }
    let mut by_model: Vec<ReportLine> = groups
        .into_iter()
        .map(|(key, rs)| {
            let a = Agg::of(rs);
            ReportLine {
                key,
                requests: a.requests,
                error_rate: a.error_rate(),
                p95_ms: a.percentile_ms(0.95),
                avg_quality: a.avg_quality(),
                cost_usd: usd(a.cost_micros),
                baseline_cost_usd: usd(a.baseline_micros),
                saved_usd: savings(a.cost_micros, a.baseline_micros).saved_usd,
            }
        })
        .collect();
    by_model.sort_by(|a, b| b.requests.cmp(&a.requests).then(a.key.cmp(&b.key)));
    Report {
        from,
        to: now_secs,
        requests: all.requests,
        error_rate: all.error_rate(),
        fallback_rate: all.fallback_rate(),
        cache_hit_rate: all.cache_hit_rate(),
        p50_ms: all.percentile_ms(0.50),
        p95_ms: all.percentile_ms(0.95),
        p99_ms: all.percentile_ms(0.99),
        avg_quality: all.avg_quality(),
        cost_usd: usd(all.cost_micros),
        savings: savings(all.cost_micros, all.baseline_micros),
        by_model,
        feedback_agreement: None,
        selection_accuracy: Accuracy::default(),
    }
}

fn ms(v: Option<u64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v} ms"))
}

/// The report as one line of text per figure.
pub fn report_text(r: &Report) -> String {
    let mut s = format!(
        "Requests {}, errors {:.1} %, fallbacks {:.1} %, cache hits {:.1} %, p50 {}, p95 {}, p99 {}, quality {}, cost ${:.4}",
        r.requests,
        r.error_rate * 100.0,
        r.fallback_rate * 100.0,
        r.cache_hit_rate * 100.0,
        ms(r.p50_ms),
        ms(r.p95_ms),
        ms(r.p99_ms),
        r.avg_quality
            .map_or_else(|| "n/a".to_owned(), |q| format!("{q:.2}")),
        r.cost_usd
    );
    s.push_str(&format!(
        "\nSaved ${:.4} against the baseline (${:.4}{})",
        r.savings.saved_usd,
        r.savings.baseline_cost_usd,
        r.savings
            .saved_pct
            .map_or_else(String::new, |p| format!(", {p:.1} %"))
    ));
    if let Some(c) = &r.feedback_agreement {
        s.push_str(&format!(
            "\nQuality score vs feedback: r = {:.2} (95 % CI {:.2} to {:.2}, n = {})",
            c.r, c.ci_low, c.ci_high, c.n
        ));
    }
    if let Some(rate) = r.selection_accuracy.rate() {
        s.push_str(&format!(
            "\nModel selection accuracy {:.1} % ({} of {} requests where it is knowable)",
            rate * 100.0,
            r.selection_accuracy.correct,
            r.selection_accuracy.judged
        ));
    }
    for l in r.by_model.iter().take(10) {
        s.push_str(&format!(
            "\n• {}: {} requests, errors {:.1} %, p95 {}, ${:.4} (saved ${:.4})",
            l.key,
            l.requests,
            l.error_rate * 100.0,
            ms(l.p95_ms),
            l.cost_usd,
            l.saved_usd
        ));
    }
    s
}

// ---------------------------------------------------------------------------
// Messages

/// A non-alert message the outbox delivers (report, discovery).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanMessage {
    /// Which scan sent it.
    pub scan: String,
    /// Heading.
    pub title: String,
    /// Body text (Slack mrkdwn is escaped when sent).
    pub text: String,
    /// Machine-readable details for the generic webhook.
    pub data: Value,
}

/// Queues a scan message (kind [`KIND_SCAN`]) for the configured channels,
/// deduplicated by `dedup_key`; `None` when it was queued already.
pub fn enqueue_message(
    db: &mut impl crate::storage::SqlExecutor,
    message: &ScanMessage,
    dedup_key: &str,
    now_ms: i64,
) -> Result<Option<i64>, super::store::StoreError> {
    let payload =
        serde_json::to_value(message).map_err(|e| super::store::StoreError::Json(e.to_string()))?;
    super::store::enqueue(
        db,
        &super::store::NewMessage {
            kind: KIND_SCAN,
            target: super::store::TARGET_DEFAULT,
            payload: &payload,
            dedup_key: Some(dedup_key),
        },
        now_ms,
    )
}

/// The Slack message (Block Kit) for a scan message.
pub fn scan_slack_message(m: &ScanMessage) -> Value {
    json!({
        "text": format!("{}: {}", m.title, m.text),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": m.title}},
            {"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn(&m.text)}},
        ],
    })
}

/// The Slack view of an alert notification: Acknowledge and Resolve
/// buttons, and Kill-switch when the alert has a `kill_flag` label.
pub fn notification_view(n: &Notification) -> AlertView {
    let status = match n.kind {
        NotificationKind::Firing => "firing",
        NotificationKind::Resolved => "resolved",
        NotificationKind::Acknowledged => "acknowledged",
    };
    AlertView {
        id: n.fingerprint.clone(),
        name: n.name.clone(),
        severity: n.severity.as_str().to_owned(),
        status: status.to_owned(),
        summary: n.summary.clone(),
        kill_flag: n.labels.get("kill_flag").cloned(),
        labels: n
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

/// The Slack message for an alert notification.
pub fn notification_slack_message(n: &Notification) -> Value {
    alert_message(&notification_view(n))
}

/// The header naming a generic webhook delivery ([`delivery_id`]), as the
/// IETF `Idempotency-Key` draft names it.
pub const DELIVERY_ID_HEADER: &str = "Idempotency-Key";

/// The id of outbox message `message_id`'s delivery: the same on every
/// attempt and from every replica. Delivery is at least once (a replica that
/// dies between sending and marking the message delivered leaves it to be
/// sent again), so a receiver that must act once dedupes on this id.
pub fn delivery_id(message_id: i64) -> String {
    format!("dol-outbox-{message_id}")
}

/// The generic webhook body for outbox message `message_id` of `kind`: its
/// [`delivery_id`] is in the body too, so the signature covers it.
pub fn webhook_body(kind: &str, message_id: i64, payload: &Value) -> Value {
    json!({ "type": kind, "delivery": delivery_id(message_id), "payload": payload })
}

#[cfg(test)]
#[path = "scans_tests.rs"]
mod tests;
