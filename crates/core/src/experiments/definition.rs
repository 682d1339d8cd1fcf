//! Experiment definitions: what an admin `PUT`s, validated field by field so
//! every error names the offending field.
//!
//! ```json
//! {
//!   "flag": "checkout_button",
//!   "control": "control",
//!   "variants": [{"name": "control", "weight": 90}, {"name": "treatment", "weight": 10}],
//!   "start_ms": 1767225600000,
//!   "primary": {"kind": "conversion", "event": "purchase"},
//!   "guardrails": [{"kind": "mean", "event": "page_load_ms", "direction": "lower"}],
//!   "criteria": {"alpha": 0.05, "min_relative_lift": 0.15, "min_units_per_variant": 100},
//!   "description": "Green checkout button"
//! }
//! ```

use serde::Serialize;
use serde_json::{Map, Value};
use thiserror::Error;

/// Longest experiment key, flag key, variant, event name or metric name.
pub const MAX_NAME_LEN: usize = 128;
/// Most variants an experiment may have.
pub const MAX_VARIANTS: usize = 16;
/// Most guardrail metrics an experiment may have.
pub const MAX_GUARDRAILS: usize = 16;
/// Longest description.
pub const MAX_DESCRIPTION_LEN: usize = 1_000;

/// Default significance level.
pub const DEFAULT_ALPHA: f64 = 0.05;
/// Default minimum units per variant before a ship verdict.
pub const DEFAULT_MIN_UNITS: u64 = 100;

/// A definition (or an experiment key) is invalid; nothing was stored.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DefinitionError {
    /// The named field is missing, of the wrong type or out of range.
    #[error("{field}: {problem}")]
    Field {
        /// The field's JSON path, e.g. `variants[1].weight`.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
}

impl DefinitionError {
    fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::Field {
            field: field.into(),
            problem: problem.into(),
        }
    }

    /// The field the error is about.
    pub fn field(&self) -> &str {
        match self {
            Self::Field { field, .. } => field,
        }
    }
}

/// Which way is better for a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Larger values are better (conversion, quality, success).
    Higher,
    /// Smaller values are better (latency, cost).
    Lower,
}

impl Direction {
    /// `+1` for higher-is-better, `−1` for lower-is-better: multiplying a
    /// difference or lift by it gives "improvement".
    pub fn sign(self) -> f64 {
        match self {
            Self::Higher => 1.0,
            Self::Lower => -1.0,
        }
    }
}

/// What a metric measures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum MetricKind {
    /// Share of units (distinct targeting keys) that sent event `event`.
    Conversion {
        /// The event name.
        event: String,
    },
    /// Mean of the `value` of events named `event` (per event, value set).
    Mean {
        /// The event name.
        event: String,
    },
    /// Gateway: mean of the non-null quality scores of requests.
    Quality,
    /// Gateway: mean request latency in milliseconds.
    LatencyMs,
    /// Gateway: mean cost per request in micro-dollars (unknown cost excluded).
    Cost,
    /// Gateway: share of requests that were not errors (`offline` and
    /// `stream_aborted` outcomes are errors).
    Success,
    /// Gateway: mean user feedback (`POST /v1/feedback`, normalized to
    /// 0–1) on the variant's requests.
    Feedback,
}

impl MetricKind {
    /// The kind's name as written in definitions.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Conversion { .. } => "conversion",
            Self::Mean { .. } => "mean",
            Self::Quality => "quality",
            Self::LatencyMs => "latency_ms",
            Self::Cost => "cost",
            Self::Success => "success",
            Self::Feedback => "feedback",
        }
    }

    /// Whether the metric is a rate (two-proportion z-test) rather than a
    /// mean (Welch's t-test).
    pub fn is_rate(&self) -> bool {
        matches!(self, Self::Conversion { .. } | Self::Success)
    }

    /// Whether the metric comes from the gateway's `requests` telemetry
    /// (rather than from `/v1/events`).
    pub fn is_gateway(&self) -> bool {
        !matches!(self, Self::Conversion { .. } | Self::Mean { .. })
    }

    /// The better direction when a definition does not say.
    pub fn default_direction(&self) -> Direction {
        match self {
            Self::LatencyMs | Self::Cost => Direction::Lower,
            _ => Direction::Higher,
        }
    }
}

/// One metric of an experiment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metric {
    /// Unique name within the experiment (default: the kind, plus `:event`
    /// for event metrics).
    pub name: String,
    /// What it measures.
    #[serde(flatten)]
    pub kind: MetricKind,
    /// Which way is better.
    pub direction: Direction,
}

/// One variant of the experiment's flag and its expected share of units.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Variant {
    /// The flag variant's name.
    pub name: String,
    /// Expected allocation weight (any positive scale, e.g. 90 and 10).
    pub weight: f64,
}

/// When a treatment counts as a success.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Criteria {
    /// Significance level of every test (two-sided), and `1 − alpha` the
    /// confidence of every interval.
    pub alpha: f64,
    /// Smallest relative improvement of the primary metric that ships
    /// (0.15 = 15 %; a reduction for lower-is-better metrics).
    pub min_relative_lift: f64,
    /// Units each compared variant needs before a ship verdict.
    pub min_units_per_variant: u64,
}

/// A validated experiment definition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Definition {
    /// The flag whose variants are compared.
    pub flag: String,
    /// Variants in definition order (at least 2).
    pub variants: Vec<Variant>,
    /// The control variant (one of `variants`).
    pub control: String,
    /// Only data at or after this time (Unix ms) counts.
    pub start_ms: i64,
    /// The metric the verdict is about.
    pub primary: Metric,
    /// Metrics that must not get significantly worse.
    pub guardrails: Vec<Metric>,
    /// Success criteria.
    pub criteria: Criteria,
    /// Free text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl Definition {
    /// Every metric: the primary first, then the guardrails.
    pub fn metrics(&self) -> impl Iterator<Item = &Metric> {
        std::iter::once(&self.primary).chain(&self.guardrails)
    }

    /// Whether units are counted from events (some metric is an event
    /// metric) rather than from gateway requests (all metrics are gateway
    /// metrics).
    pub fn units_from_events(&self) -> bool {
        self.metrics().any(|m| !m.kind.is_gateway())
    }

    /// The variants' names in definition order.
    pub fn variant_names(&self) -> Vec<&str> {
        self.variants.iter().map(|v| v.name.as_str()).collect()
    }

    /// The definition as stored JSON (the same shape [`parse`] accepts).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// Whether `s` is a valid experiment key: 1–128 characters of ASCII
/// letters, digits, `_`, `-` and `.` (it appears in URLs).
pub fn valid_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Checks an experiment key, naming the field `key`.
pub fn check_key(key: &str) -> Result<(), DefinitionError> {
    if valid_key(key) {
        Ok(())
    } else {
        Err(DefinitionError::new(
            "key",
            "must be 1-128 characters of letters, digits, '_', '-' or '.'",
        ))
    }
}

fn name_field(
    obj: &Map<String, Value>,
    field: &str,
    path: &str,
) -> Result<String, DefinitionError> {
    match obj.get(field) {
        None | Some(Value::Null) => Err(DefinitionError::new(path, "is required")),
        Some(Value::String(s)) if s.trim().is_empty() => {
            Err(DefinitionError::new(path, "must not be empty"))
        }
        Some(Value::String(s)) if s.len() > MAX_NAME_LEN => Err(DefinitionError::new(
            path,
            format!("must be at most {MAX_NAME_LEN} bytes"),
        )),
        Some(Value::String(s)) if s.chars().any(char::is_control) => Err(DefinitionError::new(
            path,
            "must not contain control characters",
        )),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(DefinitionError::new(path, "must be a string")),
    }
}

fn object<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>, DefinitionError> {
    v.as_object()
        .ok_or_else(|| DefinitionError::new(path, "must be a JSON object"))
}

fn no_unknown(
    obj: &Map<String, Value>,
    known: &[&str],
    prefix: &str,
) -> Result<(), DefinitionError> {
    match obj.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(DefinitionError::new(
            format!("{prefix}{k}"),
            format!("unknown field (known: {})", known.join(", ")),
        )),
        None => Ok(()),
    }
}

fn parse_metric(v: &Value, path: &str) -> Result<Metric, DefinitionError> {
    let obj = object(v, path)?;
    no_unknown(
        obj,
        &["name", "kind", "event", "direction"],
        &format!("{path}."),
    )?;
    let kind_name = name_field(obj, "kind", &format!("{path}.kind"))?;
    let event = || name_field(obj, "event", &format!("{path}.event"));
    let kind = match kind_name.as_str() {
        "conversion" => MetricKind::Conversion { event: event()? },
        "mean" => MetricKind::Mean { event: event()? },
        "quality" => MetricKind::Quality,
        "latency_ms" => MetricKind::LatencyMs,
        "cost" => MetricKind::Cost,
        "success" => MetricKind::Success,
        "feedback" => MetricKind::Feedback,
        _ => {
            return Err(DefinitionError::new(
                format!("{path}.kind"),
                "must be one of conversion, mean, quality, latency_ms, cost, success, feedback",
            ));
        }
    };
    if kind.is_gateway() && obj.get("event").is_some_and(|e| !e.is_null()) {
        return Err(DefinitionError::new(
            format!("{path}.event"),
            format!("only conversion and mean metrics take an event, not {kind_name}"),
        ));
    }
    let direction = match obj.get("direction") {
        None | Some(Value::Null) => kind.default_direction(),
        Some(Value::String(s)) if s == "higher" => Direction::Higher,
        Some(Value::String(s)) if s == "lower" => Direction::Lower,
        Some(_) => {
            return Err(DefinitionError::new(
                format!("{path}.direction"),
                "must be \"higher\" or \"lower\"",
            ));
        }
    };
    let name = match obj.get("name") {
        None | Some(Value::Null) => match &kind {
            MetricKind::Conversion { event } | MetricKind::Mean { event } => {
                format!("{kind_name}:{event}")
            }
            _ => kind_name,
        },
        Some(_) => name_field(obj, "name", &format!("{path}.name"))?,
    };
    Ok(Metric {
        name,
        kind,
        direction,
    })
}

fn parse_variants(v: Option<&Value>) -> Result<Vec<Variant>, DefinitionError> {
    let Some(Value::Array(items)) = v else {
        return Err(DefinitionError::new(
            "variants",
            "is required: an array of {\"name\", \"weight\"}",
        ));
    };
    if items.len() < 2 || items.len() > MAX_VARIANTS {
        return Err(DefinitionError::new(
            "variants",
            format!("must list 2 to {MAX_VARIANTS} variants"),
        ));
    }
    let mut out: Vec<Variant> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = format!("variants[{i}]");
        let obj = object(item, &path)?;
        no_unknown(obj, &["name", "weight"], &format!("{path}."))?;
        let name = name_field(obj, "name", &format!("{path}.name"))?;
        if out.iter().any(|o| o.name == name) {
            return Err(DefinitionError::new(
                format!("{path}.name"),
                format!("variant {name:?} is listed twice"),
            ));
        }
        let weight = match obj.get("weight").and_then(Value::as_f64) {
            Some(w) if w.is_finite() && w > 0.0 => w,
            _ => {
                return Err(DefinitionError::new(
                    format!("{path}.weight"),
                    "must be a positive number (e.g. 90 and 10, or 0.5 and 0.5)",
                ));
            }
        };
        out.push(Variant { name, weight });
    }
    Ok(out)
}

fn parse_criteria(v: Option<&Value>) -> Result<Criteria, DefinitionError> {
    let mut c = Criteria {
        alpha: DEFAULT_ALPHA,
        min_relative_lift: 0.0,
        min_units_per_variant: DEFAULT_MIN_UNITS,
    };
    let obj = match v {
        None | Some(Value::Null) => return Ok(c),
        Some(v) => object(v, "criteria")?,
    };
    no_unknown(
        obj,
        &["alpha", "min_relative_lift", "min_units_per_variant"],
        "criteria.",
    )?;
    if let Some(a) = obj.get("alpha").filter(|a| !a.is_null()) {
        c.alpha = match a.as_f64() {
            Some(a) if a > 0.0 && a <= 0.5 => a,
            _ => {
                return Err(DefinitionError::new(
                    "criteria.alpha",
                    "must be a number in (0, 0.5], e.g. 0.05 for 95 % significance",
                ));
            }
        };
    }
    if let Some(l) = obj.get("min_relative_lift").filter(|l| !l.is_null()) {
        c.min_relative_lift = match l.as_f64() {
            Some(l) if (0.0..=100.0).contains(&l) => l,
            _ => {
                return Err(DefinitionError::new(
                    "criteria.min_relative_lift",
                    "must be a number from 0 to 100 (a fraction: 0.15 = 15 %)",
                ));
            }
        };
    }
    if let Some(u) = obj.get("min_units_per_variant").filter(|u| !u.is_null()) {
        c.min_units_per_variant = match u.as_u64() {
            Some(u) if u >= 2 => u,
            _ => {
                return Err(DefinitionError::new(
                    "criteria.min_units_per_variant",
                    "must be an integer of at least 2",
                ));
            }
        };
    }
    Ok(c)
}

/// Parses and validates a definition. `now_ms` is the default `start_ms`.
pub fn parse(doc: &Value, now_ms: i64) -> Result<Definition, DefinitionError> {
    let obj = object(doc, "body")?;
    no_unknown(
        obj,
        &[
            "flag",
            "variants",
            "control",
            "start_ms",
            "primary",
            "guardrails",
            "criteria",
            "description",
        ],
        "",
    )?;
    let flag = name_field(obj, "flag", "flag")?;
    let variants = parse_variants(obj.get("variants"))?;
    let control = name_field(obj, "control", "control")?;
    if !variants.iter().any(|v| v.name == control) {
        return Err(DefinitionError::new(
            "control",
            format!("{control:?} is not one of the variants"),
        ));
    }
    let start_ms = match obj.get("start_ms") {
        None | Some(Value::Null) => now_ms,
        Some(v) => match v.as_i64() {
            Some(s) if s >= 0 => s,
            _ => {
                return Err(DefinitionError::new(
                    "start_ms",
                    "must be a non-negative integer (Unix epoch milliseconds)",
                ));
            }
        },
    };
    let primary = match obj.get("primary") {
        None | Some(Value::Null) => return Err(DefinitionError::new("primary", "is required")),
        Some(v) => parse_metric(v, "primary")?,
    };
    let guardrails = match obj.get("guardrails") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) if items.len() <= MAX_GUARDRAILS => items
            .iter()
            .enumerate()
            .map(|(i, v)| parse_metric(v, &format!("guardrails[{i}]")))
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => {
            return Err(DefinitionError::new(
                "guardrails",
                format!("must be an array of at most {MAX_GUARDRAILS} metrics"),
            ));
        }
    };
    let mut names = vec![primary.name.as_str()];
    for (i, g) in guardrails.iter().enumerate() {
        if names.contains(&g.name.as_str()) {
            return Err(DefinitionError::new(
                format!("guardrails[{i}].name"),
                format!(
                    "metric name {:?} is used twice (set \"name\" to tell them apart)",
                    g.name
                ),
            ));
        }
        names.push(&g.name);
    }
    let criteria = parse_criteria(obj.get("criteria"))?;
    let description = match obj.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.len() <= MAX_DESCRIPTION_LEN => Some(s.clone()),
        Some(_) => {
            return Err(DefinitionError::new(
                "description",
                format!("must be a string of at most {MAX_DESCRIPTION_LEN} bytes"),
            ));
        }
    };
    Ok(Definition {
        flag,
        variants,
        control,
        start_ms,
        primary,
        guardrails,
        criteria,
        description,
    })
}
