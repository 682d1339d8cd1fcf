//! Alert rules, silences and the alert state machine.
//!
//! A rule compares one metric over a window with a threshold. Evaluation is
//! pure: [`evaluate`] takes the rules, the current metric values, the
//! previous states, the silences and `now` (Unix ms) and returns the new
//! states and the notifications to send.
//!
//! # State machine (per rule, keyed by fingerprint)
//!
//! * condition true: `inactive`/`resolved` → `pending` (→ `firing` at once
//!   when `for` is 0); `pending` → `firing` once it has been pending for at
//!   least `for`; `firing` stays `firing` (no new notification: dedup).
//! * condition false: `pending` → `inactive`; `firing` → `resolved`
//!   (MTTR recorded: resolved − fired); `resolved`/`inactive` stay.
//! * no value for the metric: the state is kept as it is (no data is not
//!   evidence of recovery).
//!
//! A firing alert can be acknowledged ([`acknowledge`]) or resolved by hand
//! ([`resolve`]); acknowledgement is cleared when the alert fires again.
//! Notifications go out on firing, resolved and acknowledged, unless a
//! [`Silence`] matching the alert's labels is active at that moment.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use thiserror::Error;

/// How a metric value is compared with the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Comparison {
    /// `>`
    #[serde(rename = ">")]
    Gt,
    /// `>=`
    #[serde(rename = ">=")]
    Ge,
    /// `<`
    #[serde(rename = "<")]
    Lt,
    /// `<=`
    #[serde(rename = "<=")]
    Le,
    /// `==`
    #[serde(rename = "==")]
    Eq,
    /// `!=`
    #[serde(rename = "!=")]
    Ne,
}

impl Comparison {
    /// Parses `>`, `>=`, `<`, `<=`, `==`, `!=` or `gt`, `ge`, `lt`, `le`, `eq`, `ne`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            ">" | "gt" => Self::Gt,
            ">=" | "ge" | "gte" => Self::Ge,
            "<" | "lt" => Self::Lt,
            "<=" | "le" | "lte" => Self::Le,
            "==" | "eq" => Self::Eq,
            "!=" | "ne" => Self::Ne,
            _ => return None,
        })
    }

    /// Whether `value` compared with `threshold` holds (NaN never holds).
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Self::Gt => value > threshold,
            Self::Ge => value >= threshold,
            Self::Lt => value < threshold,
            Self::Le => value <= threshold,
            Self::Eq => value == threshold,
            Self::Ne => !value.is_nan() && value != threshold,
        }
    }

    /// The operator symbol.
    pub fn symbol(self) -> &'static str {
        match self {
            Self::Gt => ">",
            Self::Ge => ">=",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Eq => "==",
            Self::Ne => "!=",
        }
    }
}

/// Alert severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Needs action now.
    Critical,
    /// Needs attention.
    Warning,
    /// For information.
    Info,
}

impl Severity {
    /// Parses `critical`, `warning` or `info` (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "critical" => Some(Self::Critical),
            "warning" => Some(Self::Warning),
            "info" => Some(Self::Info),
            _ => None,
        }
    }

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Critical => "critical",
            Self::Warning => "warning",
            Self::Info => "info",
        }
    }
}

/// One alert rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRule {
    /// Unique rule name, e.g. `HighErrorRate`.
    pub name: String,
    /// Metric name, e.g. `error_rate`.
    pub metric: String,
    /// Comparison with the threshold.
    pub comparison: Comparison,
    /// Threshold.
    pub threshold: f64,
    /// Window the metric is aggregated over, seconds.
    pub window_secs: u64,
    /// How long the condition must hold before firing, seconds.
    pub for_secs: u64,
    /// Severity.
    pub severity: Severity,
    /// Extra labels (routing, team, flag to kill, …).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Optional human description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl AlertRule {
    /// The labels identifying this rule's alert: the rule's labels plus
    /// `alertname` and `severity`.
    pub fn alert_labels(&self) -> BTreeMap<String, String> {
        let mut l = self.labels.clone();
        l.insert("alertname".into(), self.name.clone());
        l.insert("severity".into(), self.severity.as_str().into());
        l
    }
}

/// Why a rule file was refused; each error names the field.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RuleError {
    /// The text is not JSON.
    #[error("rules: not JSON: {0}")]
    Json(String),
    /// The top level is neither an array nor `{"rules": [...]}`.
    #[error("rules: expected an array of rules or {{\"rules\": [...]}}")]
    Shape,
    /// A required field is absent.
    #[error("rules[{index}].{field}: missing")]
    Missing {
        /// Position of the rule.
        index: usize,
        /// Field name.
        field: &'static str,
    },
    /// A field has a bad value.
    #[error("rules[{index}].{field}: {reason}")]
    Invalid {
        /// Position of the rule.
        index: usize,
        /// Field name (e.g. `labels.team`).
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// Two rules share a name.
    #[error("rules[{index}].name: duplicate rule name `{name}`")]
    Duplicate {
        /// Position of the second rule.
        index: usize,
        /// The repeated name.
        name: String,
    },
}

/// Parses a duration: integer seconds, or a string of number+unit parts
/// (`ms` is not accepted; `s`, `m`, `h`, `d`), e.g. `"90s"`, `"5m"`, `"1h30m"`.
pub fn parse_duration_secs(v: &Value) -> Option<u64> {
    if let Some(n) = v.as_u64() {
        return Some(n);
    }
    let s = v.as_str()?.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(n) = s.parse::<u64>() {
        return Some(n);
    }
    let mut total = 0u64;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            _ => return None,
        };
        let n: u64 = num.parse().ok()?;
        total = total.checked_add(n.checked_mul(unit)?)?;
        num.clear();
    }
    num.is_empty().then_some(total)
}

fn parse_rule(index: usize, v: &Value) -> Result<AlertRule, RuleError> {
    let obj = v.as_object().ok_or(RuleError::Invalid {
        index,
        field: "(rule)".into(),
        reason: "expected an object".into(),
    })?;
    let invalid = |field: &str, reason: &str| RuleError::Invalid {
        index,
        field: field.to_owned(),
        reason: reason.to_owned(),
    };
    for key in obj.keys() {
        if !matches!(
            key.as_str(),
            "name"
                | "metric"
                | "comparison"
                | "threshold"
                | "window"
                | "for"
                | "severity"
                | "labels"
                | "description"
        ) {
            return Err(invalid(key, "unknown field"));
        }
    }
    let get = |field: &'static str| obj.get(field).ok_or(RuleError::Missing { index, field });
    let string = |field: &'static str| -> Result<String, RuleError> {
        get(field)?
            .as_str()
            .filter(|s| !s.trim().is_empty())
            .map(str::to_owned)
            .ok_or_else(|| invalid(field, "expected a non-empty string"))
    };
    let name = string("name")?;
    let metric = string("metric")?;
    let comparison = get("comparison")?
        .as_str()
        .and_then(Comparison::parse)
        .ok_or_else(|| invalid("comparison", "expected one of >, >=, <, <=, ==, !="))?;
    let threshold = get("threshold")?
        .as_f64()
        .filter(|t| t.is_finite())
        .ok_or_else(|| invalid("threshold", "expected a number"))?;
    let window_secs = parse_duration_secs(get("window")?)
        .filter(|w| *w > 0)
        .ok_or_else(|| invalid("window", "expected a positive duration like \"5m\""))?;
    let for_secs = match obj.get("for") {
        None => 0,
        Some(v) => parse_duration_secs(v)
            .ok_or_else(|| invalid("for", "expected a duration like \"5m\""))?,
    };
    let severity = get("severity")?
        .as_str()
        .and_then(Severity::parse)
        .ok_or_else(|| invalid("severity", "expected critical, warning or info"))?;
    let mut labels = BTreeMap::new();
    if let Some(l) = obj.get("labels") {
        let l = l
            .as_object()
            .ok_or_else(|| invalid("labels", "expected an object of strings"))?;
        for (k, v) in l {
            let field = format!("labels.{k}");
            if !super::prometheus::valid_label_name(k) {
                return Err(invalid(&field, "invalid label name"));
            }
            let v = v
                .as_str()
                .ok_or_else(|| invalid(&field, "expected a string"))?;
            labels.insert(k.clone(), v.to_owned());
        }
    }
    let description = match obj.get("description") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_str()
                .ok_or_else(|| invalid("description", "expected a string"))?
                .to_owned(),
        ),
    };
    Ok(AlertRule {
        name,
        metric,
        comparison,
        threshold,
        window_secs,
        for_secs,
        severity,
        labels,
        description,
    })
}

/// Parses rules from JSON: an array of rule objects or `{"rules": [...]}`.
/// Fields: `name`, `metric`, `comparison`, `threshold`, `window` (duration),
/// `for` (duration, default 0), `severity`, `labels` (object of strings,
/// optional), `description` (optional). Unknown fields are errors.
pub fn parse_rules(json: &str) -> Result<Vec<AlertRule>, RuleError> {
    let v: Value = serde_json::from_str(json).map_err(|e| RuleError::Json(e.to_string()))?;
    let arr = match &v {
        Value::Array(a) => a,
        Value::Object(o) => o
            .get("rules")
            .and_then(Value::as_array)
            .ok_or(RuleError::Shape)?,
        _ => return Err(RuleError::Shape),
    };
    let mut rules: Vec<AlertRule> = Vec::with_capacity(arr.len());
    for (index, r) in arr.iter().enumerate() {
        let rule = parse_rule(index, r)?;
        if rules.iter().any(|x| x.name == rule.name) {
            return Err(RuleError::Duplicate {
                index,
                name: rule.name,
            });
        }
        rules.push(rule);
    }
    Ok(rules)
}

/// A fingerprint of a label set: the first 16 hex digits of SHA-256 over
/// `name=value` pairs in name order, each followed by a 0xff byte. Equal
/// label sets give equal fingerprints (the deduplication key).
pub fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    for (k, v) in labels {
        h.update(k.as_bytes());
        h.update(b"=");
        h.update(v.as_bytes());
        h.update([0xff]);
    }
    crate::hex::encode(&h.finalize()[..8])
}

/// Current values of metrics, by metric name and window (seconds).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricValues {
    values: BTreeMap<String, BTreeMap<u64, f64>>,
}

impl MetricValues {
    /// No values.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `metric` over `window_secs`; window 0 means "any window".
    pub fn insert(&mut self, metric: &str, window_secs: u64, value: f64) {
        self.values
            .entry(metric.to_owned())
            .or_default()
            .insert(window_secs, value);
    }

    /// The value for `metric` over exactly `window_secs`, else its
    /// window-0 value.
    pub fn get(&self, metric: &str, window_secs: u64) -> Option<f64> {
        let m = self.values.get(metric)?;
        m.get(&window_secs).or_else(|| m.get(&0)).copied()
    }
}

/// Where an alert is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    /// Condition false.
    Inactive,
    /// Condition true, `for` not yet elapsed.
    Pending,
    /// Firing.
    Firing,
    /// Was firing; now resolved.
    Resolved,
}

/// Where an alert comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertSource {
    /// A DOL rule.
    #[default]
    Rule,
    /// Prometheus Alertmanager.
    Alertmanager,
    /// DOL's generic HMAC-signed inbound webhook.
    Webhook,
    /// DOL's anomaly detector (`crate::optimize::anomaly_alerts`).
    Anomaly,
}

impl AlertSource {
    /// The lowercase name (`rule`, `alertmanager`, `webhook`, `anomaly`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rule => "rule",
            Self::Alertmanager => "alertmanager",
            Self::Webhook => "webhook",
            Self::Anomaly => "anomaly",
        }
    }

    /// Parses a name written by [`Self::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "rule" => Some(Self::Rule),
            "alertmanager" => Some(Self::Alertmanager),
            "webhook" => Some(Self::Webhook),
            "anomaly" => Some(Self::Anomaly),
            _ => None,
        }
    }
}

/// The stored state of one alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertState {
    /// Deduplication key (see [`fingerprint`]); also the alert id.
    pub fingerprint: String,
    /// Rule or external alert name.
    pub name: String,
    /// Where it comes from.
    #[serde(default)]
    pub source: AlertSource,
    /// Severity.
    pub severity: Severity,
    /// Identifying labels.
    pub labels: BTreeMap<String, String>,
    /// Current status.
    pub status: AlertStatus,
    /// Latest metric value seen.
    pub value: Option<f64>,
    /// When the condition started holding (pending or firing), ms.
    pub active_since_ms: Option<i64>,
    /// When it last fired, ms.
    pub fired_at_ms: Option<i64>,
    /// When it last resolved, ms.
    pub resolved_at_ms: Option<i64>,
    /// Who acknowledged the current firing, if anyone.
    pub acknowledged_by: Option<String>,
    /// When, ms.
    pub acknowledged_at_ms: Option<i64>,
    /// Who resolved it by hand, if so.
    #[serde(default)]
    pub resolved_by: Option<String>,
    /// Completed incidents (fired then resolved).
    #[serde(default)]
    pub incidents: u64,
    /// Sum of fired→resolved durations over those incidents, ms.
    #[serde(default)]
    pub total_repair_ms: u64,
    /// Duration of the last incident, ms.
    #[serde(default)]
    pub last_repair_ms: Option<u64>,
}

impl AlertState {
    /// A fresh inactive state for a rule.
    pub fn for_rule(rule: &AlertRule) -> Self {
        let labels = rule.alert_labels();
        Self {
            fingerprint: fingerprint(&labels),
            name: rule.name.clone(),
            source: AlertSource::Rule,
            severity: rule.severity,
            labels,
            status: AlertStatus::Inactive,
            value: None,
            active_since_ms: None,
            fired_at_ms: None,
            resolved_at_ms: None,
            acknowledged_by: None,
            acknowledged_at_ms: None,
            resolved_by: None,
            incidents: 0,
            total_repair_ms: 0,
            last_repair_ms: None,
        }
    }

    /// Mean time to resolve over this alert's incidents, ms.
    pub fn mttr_ms(&self) -> Option<u64> {
        (self.incidents > 0).then(|| self.total_repair_ms / self.incidents)
    }

    fn fire(&mut self, now_ms: i64) {
        self.status = AlertStatus::Firing;
        self.fired_at_ms = Some(now_ms);
        self.acknowledged_by = None;
        self.acknowledged_at_ms = None;
        self.resolved_by = None;
    }

    fn resolve_at(&mut self, now_ms: i64) {
        self.status = AlertStatus::Resolved;
        self.resolved_at_ms = Some(now_ms);
        self.active_since_ms = None;
        if let Some(f) = self.fired_at_ms {
            let d = u64::try_from(now_ms.saturating_sub(f)).unwrap_or(0);
            self.incidents = self.incidents.saturating_add(1);
            self.total_repair_ms = self.total_repair_ms.saturating_add(d);
            self.last_repair_ms = Some(d);
        }
    }
}

/// Mean time to resolve across alerts, ms (`None` without incidents).
pub fn mttr_ms(states: &[AlertState]) -> Option<u64> {
    let n: u64 = states.iter().map(|s| s.incidents).sum();
    let t: u64 = states.iter().map(|s| s.total_repair_ms).sum();
    (n > 0).then(|| t / n)
}

/// How a silence matcher compares a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchOp {
    /// Label equals the value (a missing label equals "").
    Equal,
    /// Label differs from the value.
    NotEqual,
}

/// One silence matcher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Matcher {
    /// Label name.
    pub name: String,
    /// Value compared.
    pub value: String,
    /// Comparison.
    pub op: MatchOp,
}

impl Matcher {
    /// An equality matcher.
    pub fn eq(name: &str, value: &str) -> Self {
        Self {
            name: name.to_owned(),
            value: value.to_owned(),
            op: MatchOp::Equal,
        }
    }

    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.name).map_or("", String::as_str);
        match self.op {
            MatchOp::Equal => v == self.value,
            MatchOp::NotEqual => v != self.value,
        }
    }
}

/// A time-bounded silence: matching alerts change state but send nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    /// Silence id.
    pub id: String,
    /// All must match (an empty list matches nothing).
    pub matchers: Vec<Matcher>,
    /// Start, ms (inclusive).
    pub starts_at_ms: i64,
    /// End, ms (exclusive).
    pub ends_at_ms: i64,
    /// Who created it.
    #[serde(default)]
    pub created_by: String,
    /// Why.
    #[serde(default)]
    pub comment: String,
}

impl Silence {
    /// Whether this silence mutes `labels` at `now_ms`.
    pub fn mutes(&self, labels: &BTreeMap<String, String>, now_ms: i64) -> bool {
        now_ms >= self.starts_at_ms
            && now_ms < self.ends_at_ms
            && !self.matchers.is_empty()
            && self.matchers.iter().all(|m| m.matches(labels))
    }
}

/// Whether any silence mutes `labels` at `now_ms`.
pub fn is_silenced(silences: &[Silence], labels: &BTreeMap<String, String>, now_ms: i64) -> bool {
    silences.iter().any(|s| s.mutes(labels, now_ms))
}

/// What a notification announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotificationKind {
    /// The alert started firing.
    Firing,
    /// The alert resolved.
    Resolved,
    /// Someone acknowledged it.
    Acknowledged,
}

/// A message to send (via the outbox).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// What happened.
    pub kind: NotificationKind,
    /// Alert id / dedup key.
    pub fingerprint: String,
    /// Alert name.
    pub name: String,
    /// Severity.
    pub severity: Severity,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Metric value at the time, if any.
    pub value: Option<f64>,
    /// One-line text.
    pub summary: String,
    /// When, ms.
    pub at_ms: i64,
    /// Who acted (acknowledge or manual resolve).
    pub by: Option<String>,
}

impl Notification {
    /// Outbox idempotency key: fingerprint, kind and time, so a retried
    /// scan does not queue the same message twice.
    pub fn dedup_key(&self) -> String {
        let kind = match self.kind {
            NotificationKind::Firing => "firing",
            NotificationKind::Resolved => "resolved",
            NotificationKind::Acknowledged => "acknowledged",
        };
        format!("{}:{kind}:{}", self.fingerprint, self.at_ms)
    }
}

fn notification(
    s: &AlertState,
    kind: NotificationKind,
    summary: String,
    now_ms: i64,
    by: Option<String>,
) -> Notification {
    Notification {
        kind,
        fingerprint: s.fingerprint.clone(),
        name: s.name.clone(),
        severity: s.severity,
        labels: s.labels.clone(),
        value: s.value,
        summary,
        at_ms: now_ms,
        by,
    }
}

fn rule_summary(rule: &AlertRule, value: Option<f64>) -> String {
    let v = value.map_or_else(|| "n/a".to_owned(), |v| format!("{v}"));
    let base = format!(
        "{} {} {} {} over {}s (value {v})",
        rule.name,
        rule.metric,
        rule.comparison.symbol(),
        rule.threshold,
        rule.window_secs
    );
    match &rule.description {
        Some(d) => format!("{base}: {d}"),
        None => base,
    }
}

/// Evaluates every rule at `now_ms`. States of rules no longer present are
/// dropped; external (Alertmanager, webhook) states pass through unchanged. Returns
/// the new states (rules first, in rule order) and the notifications.
pub fn evaluate(
    rules: &[AlertRule],
    values: &MetricValues,
    previous: &[AlertState],
    silences: &[Silence],
    now_ms: i64,
) -> (Vec<AlertState>, Vec<Notification>) {
    let mut states = Vec::with_capacity(rules.len());
    let mut out = Vec::new();
    for rule in rules {
        let fresh = AlertState::for_rule(rule);
        let mut s = previous
            .iter()
            .find(|p| p.fingerprint == fresh.fingerprint)
            .cloned()
            .unwrap_or(fresh);
        // A rule edited in place keeps its history but takes the new severity.
        s.severity = rule.severity;
        let Some(value) = values.get(&rule.metric, rule.window_secs) else {
            states.push(s);
            continue;
        };
        s.value = Some(value);
        let holds = rule.comparison.holds(value, rule.threshold);
        let for_ms = i64::try_from(rule.for_secs.saturating_mul(1_000)).unwrap_or(i64::MAX);
        let mut fired = false;
        match (s.status, holds) {
            (AlertStatus::Inactive | AlertStatus::Resolved, true) => {
                s.status = AlertStatus::Pending;
                s.active_since_ms = Some(now_ms);
                if for_ms == 0 {
                    s.fire(now_ms);
                    fired = true;
                }
            }
            (AlertStatus::Pending, true) => {
                let since = s.active_since_ms.unwrap_or(now_ms);
                if now_ms.saturating_sub(since) >= for_ms {
                    s.fire(now_ms);
                    fired = true;
                }
            }
            (AlertStatus::Pending, false) => {
                s.status = AlertStatus::Inactive;
                s.active_since_ms = None;
            }
            (AlertStatus::Firing, false) => {
                s.resolve_at(now_ms);
                if !is_silenced(silences, &s.labels, now_ms) {
                    out.push(notification(
                        &s,
                        NotificationKind::Resolved,
                        rule_summary(rule, Some(value)),
                        now_ms,
                        None,
                    ));
                }
            }
            (AlertStatus::Firing, true)
            | (AlertStatus::Inactive | AlertStatus::Resolved, false) => {}
        }
        if fired && !is_silenced(silences, &s.labels, now_ms) {
            out.push(notification(
                &s,
                NotificationKind::Firing,
                rule_summary(rule, Some(value)),
                now_ms,
                None,
            ));
        }
        states.push(s);
    }
    states.extend(
        previous
            .iter()
            .filter(|p| p.source != AlertSource::Rule)
            .cloned(),
    );
    (states, out)
}

/// Why an admin action on an alert was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ActionError {
    /// No alert has this id.
    #[error("no alert `{0}`")]
    NotFound(String),
    /// The alert is not firing.
    #[error("alert `{0}` is not firing")]
    NotFiring(String),
    /// Already acknowledged.
    #[error("alert `{0}` is already acknowledged by {1}")]
    AlreadyAcknowledged(String, String),
}

fn find<'a>(states: &'a mut [AlertState], id: &str) -> Result<&'a mut AlertState, ActionError> {
    states
        .iter_mut()
        .find(|s| s.fingerprint == id)
        .ok_or_else(|| ActionError::NotFound(id.to_owned()))
}

/// Acknowledges a firing alert by id; returns the notification to send
/// (`None` when silenced).
pub fn acknowledge(
    states: &mut [AlertState],
    id: &str,
    by: &str,
    silences: &[Silence],
    now_ms: i64,
) -> Result<Option<Notification>, ActionError> {
    let s = find(states, id)?;
    if s.status != AlertStatus::Firing {
        return Err(ActionError::NotFiring(id.to_owned()));
    }
    if let Some(who) = &s.acknowledged_by {
        return Err(ActionError::AlreadyAcknowledged(id.to_owned(), who.clone()));
    }
    s.acknowledged_by = Some(by.to_owned());
    s.acknowledged_at_ms = Some(now_ms);
    let n = notification(
        s,
        NotificationKind::Acknowledged,
        format!("{} acknowledged by {by}", s.name),
        now_ms,
        Some(by.to_owned()),
    );
    Ok((!is_silenced(silences, &s.labels, now_ms)).then_some(n))
}

/// Resolves a firing (or pending) alert by hand; MTTR is recorded for a
/// firing one. If the condition still holds, the next evaluation starts
/// a new pending period.
pub fn resolve(
    states: &mut [AlertState],
    id: &str,
    by: &str,
    silences: &[Silence],
    now_ms: i64,
) -> Result<Option<Notification>, ActionError> {
    let s = find(states, id)?;
    match s.status {
        AlertStatus::Firing => s.resolve_at(now_ms),
        AlertStatus::Pending => {
            s.status = AlertStatus::Inactive;
            s.active_since_ms = None;
            return Ok(None);
        }
        AlertStatus::Inactive | AlertStatus::Resolved => {
            return Err(ActionError::NotFiring(id.to_owned()));
        }
    }
    s.resolved_by = Some(by.to_owned());
    let n = notification(
        s,
        NotificationKind::Resolved,
        format!("{} resolved by {by}", s.name),
        now_ms,
        Some(by.to_owned()),
    );
    Ok((!is_silenced(silences, &s.labels, now_ms)).then_some(n))
}

/// An alert reported by an outside system (e.g. Alertmanager).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExternalAlert {
    /// The sender's fingerprint, or one computed from the labels.
    pub fingerprint: String,
    /// Alert name (`alertname` label).
    pub name: String,
    /// Severity (from the `severity` label; warning when absent).
    pub severity: Severity,
    /// All labels.
    pub labels: BTreeMap<String, String>,
    /// Summary text (annotation `summary` or `description`).
    pub summary: String,
    /// True when firing, false when resolved.
    pub firing: bool,
    /// Start, ms, when known.
    pub starts_at_ms: Option<i64>,
    /// End, ms, when resolved and known.
    pub ends_at_ms: Option<i64>,
}

/// Applies external alerts to the states, deduplicated by fingerprint:
/// an unknown or non-firing fingerprint that fires becomes `firing` (one
/// notification); a repeat of a firing alert changes nothing; a resolve of
/// a firing alert resolves it (MTTR recorded, one notification); a resolve
/// of anything else is ignored.
pub fn apply_external(
    states: &mut Vec<AlertState>,
    incoming: &[ExternalAlert],
    silences: &[Silence],
    now_ms: i64,
) -> Vec<Notification> {
    apply_external_from(
        states,
        incoming,
        AlertSource::Alertmanager,
        silences,
        now_ms,
    )
}

/// How far back an external alert's own start or end time is believed: the
/// longest incident window (30 days).
const PLAUSIBLE_PAST_MS: i64 = 30 * 86_400_000;

/// [`apply_external`] for alerts from `source` (new states record it).
pub fn apply_external_from(
    states: &mut Vec<AlertState>,
    incoming: &[ExternalAlert],
    source: AlertSource,
    silences: &[Silence],
    now_ms: i64,
) -> Vec<Notification> {
    let mut out = Vec::new();
    for a in incoming {
        let idx = states.iter().position(|s| s.fingerprint == a.fingerprint);
        // The sender's clock is not ours: a time in the future, or older
        // than the longest incident window, would skew MTTA and MTTR for
        // good (an incident "fired" in 9999 stays in every window); such a
        // time is taken as now.
        let plausible =
            |t: Option<i64>| t.filter(|t| *t <= now_ms && *t >= now_ms - PLAUSIBLE_PAST_MS);
        let at = if a.firing {
            plausible(a.starts_at_ms)
        } else {
            plausible(a.ends_at_ms)
        }
        .unwrap_or(now_ms);
        match (idx, a.firing) {
            (Some(i), true) => {
                let Some(s) = states.get_mut(i) else { continue };
                if s.status == AlertStatus::Firing {
                    continue;
                }
                s.active_since_ms = Some(at);
                s.fire(at);
                s.severity = a.severity;
                if !is_silenced(silences, &s.labels, now_ms) {
                    out.push(notification(
                        s,
                        NotificationKind::Firing,
                        a.summary.clone(),
                        now_ms,
                        None,
                    ));
                }
            }
            (None, true) => {
                let mut s = AlertState {
                    fingerprint: a.fingerprint.clone(),
                    name: a.name.clone(),
                    source,
                    severity: a.severity,
                    labels: a.labels.clone(),
                    status: AlertStatus::Inactive,
                    value: None,
                    active_since_ms: Some(at),
                    fired_at_ms: None,
                    resolved_at_ms: None,
                    acknowledged_by: None,
                    acknowledged_at_ms: None,
                    resolved_by: None,
                    incidents: 0,
                    total_repair_ms: 0,
                    last_repair_ms: None,
                };
                s.fire(at);
                if !is_silenced(silences, &s.labels, now_ms) {
                    out.push(notification(
                        &s,
                        NotificationKind::Firing,
                        a.summary.clone(),
                        now_ms,
                        None,
                    ));
                }
                states.push(s);
            }
            (Some(i), false) => {
                let Some(s) = states.get_mut(i) else { continue };
                if s.status != AlertStatus::Firing {
                    continue;
                }
                s.resolve_at(at);
                if !is_silenced(silences, &s.labels, now_ms) {
                    out.push(notification(
                        s,
                        NotificationKind::Resolved,
                        a.summary.clone(),
                        now_ms,
                        None,
                    ));
                }
            }
            (None, false) => {}
        }
    }
    out
}

/// Firing alerts, most severe first, then oldest first.
pub fn active_alerts(states: &[AlertState]) -> Vec<&AlertState> {
    let mut v: Vec<&AlertState> = states
        .iter()
        .filter(|s| s.status == AlertStatus::Firing)
        .collect();
    v.sort_by_key(|s| (s.severity, s.fired_at_ms));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn rule(for_secs: u64) -> AlertRule {
        AlertRule {
            name: "HighErrorRate".into(),
            metric: "error_rate".into(),
            comparison: Comparison::Gt,
            threshold: 0.10,
            window_secs: 300,
            for_secs,
            severity: Severity::Critical,
            labels: BTreeMap::from([("team".into(), "core".into())]),
            description: None,
        }
    }

    fn vals(v: f64) -> MetricValues {
        let mut m = MetricValues::new();
        m.insert("error_rate", 300, v);
        m
    }

    /// Runs one evaluation step with a fake clock.
    fn step(
        r: &AlertRule,
        prev: &[AlertState],
        v: Option<f64>,
        now: i64,
        sil: &[Silence],
    ) -> (Vec<AlertState>, Vec<Notification>) {
        let values = v.map(vals).unwrap_or_default();
        evaluate(std::slice::from_ref(r), &values, prev, sil, now)
    }

    #[test]
    fn inactive_stays_inactive_below_threshold() {
        let (s, n) = step(&rule(300), &[], Some(0.05), 0, &[]);
        assert_eq!(s[0].status, AlertStatus::Inactive);
        assert!(n.is_empty());
    }

    #[test]
    fn inactive_to_pending_to_firing_after_for() {
        let r = rule(300);
        let (s, n) = step(&r, &[], Some(0.2), 0, &[]);
        assert_eq!(
            (s[0].status, s[0].active_since_ms),
            (AlertStatus::Pending, Some(0))
        );
        assert!(n.is_empty());
        let (s, n) = step(&r, &s, Some(0.2), 4 * MIN, &[]);
        assert_eq!(s[0].status, AlertStatus::Pending);
        assert!(n.is_empty());
        let (s, n) = step(&r, &s, Some(0.2), 5 * MIN, &[]);
        assert_eq!(
            (s[0].status, s[0].fired_at_ms),
            (AlertStatus::Firing, Some(5 * MIN))
        );
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].kind, NotificationKind::Firing);
        assert_eq!(n[0].fingerprint, s[0].fingerprint);
        assert!(n[0].summary.contains("error_rate > 0.1"));
        // Still firing: deduplicated, no second message.
        let (s, n) = step(&r, &s, Some(0.3), 6 * MIN, &[]);
        assert_eq!(s[0].status, AlertStatus::Firing);
        assert!(n.is_empty());
    }

    #[test]
    fn for_zero_fires_immediately() {
        let (s, n) = step(&rule(0), &[], Some(0.2), 0, &[]);
        assert_eq!(s[0].status, AlertStatus::Firing);
        assert_eq!(n.len(), 1);
    }

    #[test]
    fn pending_back_to_inactive() {
        let r = rule(300);
        let (s, _) = step(&r, &[], Some(0.2), 0, &[]);
        let (s, n) = step(&r, &s, Some(0.0), MIN, &[]);
        assert_eq!(
            (s[0].status, s[0].active_since_ms),
            (AlertStatus::Inactive, None)
        );
        assert!(n.is_empty());
        // The `for` clock restarts.
        let (s, _) = step(&r, &s, Some(0.2), 2 * MIN, &[]);
        let (s, _) = step(&r, &s, Some(0.2), 6 * MIN, &[]);
        assert_eq!(s[0].status, AlertStatus::Pending);
    }

    #[test]
    fn firing_to_resolved_records_mttr_then_refires() {
        let r = rule(0);
        let (s, _) = step(&r, &[], Some(0.2), 0, &[]);
        let (s, n) = step(&r, &s, Some(0.01), 7 * MIN, &[]);
        assert_eq!(s[0].status, AlertStatus::Resolved);
        assert_eq!(n[0].kind, NotificationKind::Resolved);
        assert_eq!(
            (s[0].incidents, s[0].last_repair_ms, s[0].mttr_ms()),
            (1, Some(7 * 60_000), Some(7 * 60_000))
        );
        let (s, n) = step(&r, &s, Some(0.01), 8 * MIN, &[]);
        assert_eq!(s[0].status, AlertStatus::Resolved);
        assert!(n.is_empty());
        let (s, n) = step(&r, &s, Some(0.5), 10 * MIN, &[]);
        assert_eq!(s[0].status, AlertStatus::Firing);
        assert_eq!(n.len(), 1);
        let (s, _) = step(&r, &s, Some(0.0), 13 * MIN, &[]);
        assert_eq!(s[0].incidents, 2);
        assert_eq!(mttr_ms(&s), Some(5 * 60_000));
    }

    #[test]
    fn missing_value_keeps_state() {
        let r = rule(0);
        let (s, _) = step(&r, &[], Some(0.2), 0, &[]);
        let (s2, n) = step(&r, &s, None, MIN, &[]);
        assert_eq!(s2, s);
        assert!(n.is_empty());
    }

    #[test]
    fn acknowledge_rules() {
        let r = rule(0);
        let (mut s, _) = step(&r, &[], Some(0.2), 0, &[]);
        let id = s[0].fingerprint.clone();
        assert_eq!(
            acknowledge(&mut s, "nope", "ana", &[], MIN),
            Err(ActionError::NotFound("nope".into()))
        );
        let n = acknowledge(&mut s, &id, "ana", &[], MIN).unwrap().unwrap();
        assert_eq!(
            (n.kind, n.by.as_deref()),
            (NotificationKind::Acknowledged, Some("ana"))
        );
        assert_eq!(
            (s[0].acknowledged_by.as_deref(), s[0].acknowledged_at_ms),
            (Some("ana"), Some(MIN))
        );
        assert_eq!(
            acknowledge(&mut s, &id, "bo", &[], MIN),
            Err(ActionError::AlreadyAcknowledged(id.clone(), "ana".into()))
        );
        // Resolving and re-firing clears the acknowledgement.
        let (s, _) = step(&r, &s, Some(0.0), 2 * MIN, &[]);
        let (mut s, _) = step(&r, &s, Some(0.3), 3 * MIN, &[]);
        assert_eq!(s[0].acknowledged_by, None);
        let (mut q, _) = step(&r, &s, Some(0.0), 4 * MIN, &[]);
        assert_eq!(
            acknowledge(&mut q, &id, "ana", &[], 5 * MIN),
            Err(ActionError::NotFiring(id.clone()))
        );
        assert!(acknowledge(&mut s, &id, "ana", &[], 4 * MIN).is_ok());
    }

    #[test]
    fn manual_resolve() {
        let r = rule(0);
        let (mut s, _) = step(&r, &[], Some(0.2), 0, &[]);
        let id = s[0].fingerprint.clone();
        let n = resolve(&mut s, &id, "ana", &[], 3 * MIN).unwrap().unwrap();
        assert_eq!(n.kind, NotificationKind::Resolved);
        assert_eq!(
            (
                s[0].status,
                s[0].resolved_by.as_deref(),
                s[0].last_repair_ms
            ),
            (AlertStatus::Resolved, Some("ana"), Some(180_000))
        );
        assert_eq!(
            resolve(&mut s, &id, "ana", &[], 3 * MIN),
            Err(ActionError::NotFiring(id.clone()))
        );
        // Condition still true: pending again (with `for`), then fires anew.
        let r5 = rule(300);
        let (s, _) = step(&r5, &s, Some(0.2), 4 * MIN, &[]);
        assert_eq!(s[0].status, AlertStatus::Pending);
        let mut s = s;
        assert_eq!(resolve(&mut s, &id, "ana", &[], 5 * MIN), Ok(None));
        assert_eq!(s[0].status, AlertStatus::Inactive);
    }

    #[test]
    fn silences_mute_notifications_not_transitions() {
        let r = rule(0);
        let sil = Silence {
            id: "s1".into(),
            matchers: vec![Matcher::eq("team", "core")],
            starts_at_ms: 0,
            ends_at_ms: 10 * MIN,
            created_by: "ana".into(),
            comment: "deploy".into(),
        };
        let (s, n) = step(&r, &[], Some(0.2), MIN, std::slice::from_ref(&sil));
        assert_eq!(s[0].status, AlertStatus::Firing);
        assert!(n.is_empty());
        // After the silence ends, the resolve is sent.
        let (_, n) = step(&r, &s, Some(0.0), 10 * MIN, std::slice::from_ref(&sil));
        assert_eq!(n.len(), 1);
        let other = Silence {
            matchers: vec![Matcher::eq("team", "billing")],
            ..sil.clone()
        };
        let (_, n) = step(&r, &[], Some(0.2), MIN, &[other]);
        assert_eq!(n.len(), 1);
        let ne = Silence {
            matchers: vec![Matcher {
                name: "team".into(),
                value: "billing".into(),
                op: MatchOp::NotEqual,
            }],
            ..sil.clone()
        };
        let (_, n) = step(&r, &[], Some(0.2), MIN, &[ne]);
        assert!(n.is_empty());
        let empty = Silence {
            matchers: vec![],
            ..sil
        };
        assert!(!empty.mutes(&r.alert_labels(), MIN));
    }

    #[test]
    fn fingerprint_is_stable_and_label_sensitive() {
        let a = rule(0).alert_labels();
        assert_eq!(fingerprint(&a), fingerprint(&a.clone()));
        assert_eq!(fingerprint(&a).len(), 16);
        let mut b = a.clone();
        b.insert("team".into(), "other".into());
        assert_ne!(fingerprint(&a), fingerprint(&b));
        // Pair boundaries matter: {a="b=c"} differs from {a="b", ...}.
        let x = BTreeMap::from([("a".to_owned(), "bc".to_owned())]);
        let y = BTreeMap::from([("ab".to_owned(), "c".to_owned())]);
        assert_ne!(fingerprint(&x), fingerprint(&y));
    }

    #[test]
    fn removed_rules_drop_their_state_and_external_pass_through() {
        let (mut s, _) = step(&rule(0), &[], Some(0.2), 0, &[]);
        let ext = ExternalAlert {
            fingerprint: "abc".into(),
            name: "NodeDown".into(),
            severity: Severity::Warning,
            labels: BTreeMap::from([("alertname".into(), "NodeDown".into())]),
            summary: "node down".into(),
            firing: true,
            starts_at_ms: Some(5),
            ends_at_ms: None,
        };
        apply_external(&mut s, std::slice::from_ref(&ext), &[], 10);
        let (s, n) = evaluate(&[], &MetricValues::new(), &s, &[], MIN);
        assert!(n.is_empty());
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].name, "NodeDown");
    }

    #[test]
    fn webhook_alerts_record_their_source_and_survive_evaluation() {
        let ext = ExternalAlert {
            fingerprint: "wh1".into(),
            name: "DiskFull".into(),
            severity: Severity::Info,
            labels: BTreeMap::new(),
            summary: "disk".into(),
            firing: true,
            starts_at_ms: None,
            ends_at_ms: None,
        };
        let mut s = Vec::new();
        let n = apply_external_from(&mut s, &[ext], AlertSource::Webhook, &[], 10);
        assert_eq!(n.len(), 1);
        assert_eq!(
            (s[0].source, s[0].fired_at_ms),
            (AlertSource::Webhook, Some(10))
        );
        let (s, _) = evaluate(&[rule(0)], &MetricValues::new(), &s, &[], MIN);
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].fingerprint, "wh1");
        for src in [
            AlertSource::Rule,
            AlertSource::Alertmanager,
            AlertSource::Webhook,
        ] {
            assert_eq!(AlertSource::parse(src.as_str()), Some(src));
        }
        assert_eq!(AlertSource::parse("other"), None);
    }

    #[test]
    fn external_alerts_dedup_by_fingerprint() {
        let mut states = Vec::new();
        let mut a = ExternalAlert {
            fingerprint: "fp".into(),
            name: "X".into(),
            severity: Severity::Critical,
            labels: BTreeMap::new(),
            summary: "x".into(),
            firing: true,
            starts_at_ms: Some(1_000),
            ends_at_ms: None,
        };
        let n = apply_external(&mut states, &[a.clone(), a.clone()], &[], 2_000);
        assert_eq!(n.len(), 1);
        assert_eq!(states.len(), 1);
        assert_eq!(states[0].fired_at_ms, Some(1_000));
        assert!(apply_external(&mut states, std::slice::from_ref(&a), &[], 3_000).is_empty());
        a.firing = false;
        a.ends_at_ms = Some(61_000);
        let n = apply_external(&mut states, std::slice::from_ref(&a), &[], 62_000);
        assert_eq!((n.len(), n[0].kind), (1, NotificationKind::Resolved));
        assert_eq!(states[0].last_repair_ms, Some(60_000));
        assert!(apply_external(&mut states, &[a], &[], 63_000).is_empty());
        assert_eq!(active_alerts(&states).len(), 0);
    }

    #[test]
    fn active_alerts_order() {
        let mk = |name: &str, sev, fired| {
            let mut s = AlertState::for_rule(&AlertRule {
                name: name.into(),
                severity: sev,
                ..rule(0)
            });
            s.status = AlertStatus::Firing;
            s.fired_at_ms = Some(fired);
            s
        };
        let v = [
            mk("a", Severity::Info, 1),
            mk("b", Severity::Critical, 5),
            mk("c", Severity::Critical, 2),
        ];
        let names: Vec<&str> = active_alerts(&v).iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["c", "b", "a"]);
    }

    #[test]
    fn comparisons() {
        assert!(Comparison::Gt.holds(2.0, 1.0));
        assert!(!Comparison::Gt.holds(1.0, 1.0));
        assert!(Comparison::Ge.holds(1.0, 1.0));
        assert!(Comparison::Lt.holds(3.4, 3.5));
        assert!(Comparison::Le.holds(3.5, 3.5));
        assert!(Comparison::Eq.holds(0.0, 0.0));
        assert!(Comparison::Ne.holds(1.0, 0.0));
        for c in [
            Comparison::Gt,
            Comparison::Ge,
            Comparison::Lt,
            Comparison::Le,
            Comparison::Eq,
            Comparison::Ne,
        ] {
            assert!(!c.holds(f64::NAN, 1.0));
            assert_eq!(Comparison::parse(c.symbol()), Some(c));
        }
    }

    #[test]
    fn durations() {
        let d = |v: Value| parse_duration_secs(&v);
        assert_eq!(d(serde_json::json!(30)), Some(30));
        assert_eq!(d(serde_json::json!("30")), Some(30));
        assert_eq!(d(serde_json::json!("5m")), Some(300));
        assert_eq!(d(serde_json::json!("1h30m")), Some(5_400));
        assert_eq!(d(serde_json::json!("1d")), Some(86_400));
        assert_eq!(d(serde_json::json!("5")), Some(5));
        assert_eq!(d(serde_json::json!("5x")), None);
        assert_eq!(d(serde_json::json!("m")), None);
        assert_eq!(d(serde_json::json!("5m3")), None);
        assert_eq!(d(serde_json::json!("")), None);
        assert_eq!(d(serde_json::json!(-1)), None);
    }

    #[test]
    fn parse_rules_ok() {
        let rules = parse_rules(
            r#"{"rules": [
            {"name": "HighErrorRate", "metric": "error_rate", "comparison": ">", "threshold": 0.1,
             "window": "5m", "for": "5m", "severity": "critical", "labels": {"team": "core"}},
            {"name": "LowQuality", "metric": "avg_quality", "comparison": "<", "threshold": 3.5,
             "window": 1800, "severity": "warning", "description": "quality dropped"}
        ]}"#,
        )
        .unwrap();
        assert_eq!(rules[0], rule(300));
        assert_eq!(rules[1].comparison, Comparison::Lt);
        assert_eq!((rules[1].window_secs, rules[1].for_secs), (1800, 0));
        assert_eq!(rules[1].description.as_deref(), Some("quality dropped"));
        assert_eq!(parse_rules("[]").unwrap(), vec![]);
    }

    #[test]
    fn parse_rules_errors_name_the_field() {
        let base = serde_json::json!({"name": "A", "metric": "m", "comparison": ">", "threshold": 1,
                                      "window": "1m", "severity": "info"});
        let with = |k: &str, v: Value| {
            let mut r = base.clone();
            r[k] = v;
            parse_rules(&serde_json::json!([r]).to_string())
                .unwrap_err()
                .to_string()
        };
        let without = |k: &str| {
            let mut r = base.clone();
            r.as_object_mut().unwrap().remove(k);
            parse_rules(&serde_json::json!([r]).to_string()).unwrap_err()
        };
        for f in [
            "name",
            "metric",
            "comparison",
            "threshold",
            "window",
            "severity",
        ] {
            assert_eq!(without(f), RuleError::Missing { index: 0, field: f }, "{f}");
        }
        assert!(with("comparison", "~".into()).starts_with("rules[0].comparison:"));
        assert!(with("threshold", "x".into()).starts_with("rules[0].threshold:"));
        assert!(with("window", "0s".into()).starts_with("rules[0].window:"));
        assert!(with("for", "soon".into()).starts_with("rules[0].for:"));
        assert!(with("severity", "page".into()).starts_with("rules[0].severity:"));
        assert!(
            with("labels", serde_json::json!({"team": 1})).starts_with("rules[0].labels.team:")
        );
        assert!(
            with("labels", serde_json::json!({"bad-name": "x"}))
                .starts_with("rules[0].labels.bad-name:")
        );
        assert!(with("extra", 1.into()).starts_with("rules[0].extra: unknown field"));
        assert!(with("name", "".into()).starts_with("rules[0].name:"));
        let dup = serde_json::json!([base.clone(), base]).to_string();
        assert_eq!(
            parse_rules(&dup),
            Err(RuleError::Duplicate {
                index: 1,
                name: "A".into()
            })
        );
        assert!(matches!(parse_rules("{"), Err(RuleError::Json(_))));
        assert_eq!(parse_rules("{}"), Err(RuleError::Shape));
        assert_eq!(parse_rules("3"), Err(RuleError::Shape));
    }

    #[test]
    fn metric_values_window_fallback() {
        let mut m = MetricValues::new();
        m.insert("p95", 0, 10.0);
        m.insert("p95", 300, 20.0);
        assert_eq!(m.get("p95", 300), Some(20.0));
        assert_eq!(m.get("p95", 60), Some(10.0));
        assert_eq!(m.get("nope", 60), None);
    }

    #[test]
    fn notification_dedup_key() {
        let (_, n) = step(&rule(0), &[], Some(0.2), 42, &[]);
        assert!(n[0].dedup_key().ends_with(":firing:42"));
    }
}
