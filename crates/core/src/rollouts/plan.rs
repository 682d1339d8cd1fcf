//! Rollout plans: what an admin submits (`PUT /admin/flags/{key}/rollout`)
//! and its validation.
//!
//! ```json
//! {
//!   "variant": "enhanced",
//!   "control": "comprehensive",
//!   "steps": [{"percent": 5, "hold": "24h"}, {"percent": 25, "hold": "24h"}, {"percent": 100}],
//!   "min_samples": 100,
//!   "guards": [
//!     {"metric": "quality", "threshold": 7.0, "window": "30m", "for": "30m"},
//!     {"metric": "error_rate", "threshold": 0.10, "window": "15m", "for": "15m"},
//!     {"metric": "p95_latency_ms", "threshold": 90000, "window": "20m"},
//!     {"metric": "error_rate", "vs": "control", "threshold": 0.02, "window": "15m"}
//!   ],
//!   "on_breach": "rollback"
//! }
//! ```

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

use crate::observe::alerts::parse_duration_secs;

/// Most steps a plan may have.
pub const MAX_STEPS: usize = 20;
/// Most guards a plan may have.
pub const MAX_GUARDS: usize = 20;
/// Default minimum samples per step (and per guard window).
pub const DEFAULT_MIN_SAMPLES: u64 = 100;
/// Longest guard window: telemetry is kept 30 days by default, and a guard
/// over more than a week would react too slowly to protect anyone.
pub const MAX_WINDOW_SECS: u64 = 7 * 86_400;

/// A per-variant metric a guard watches (all read from the gateway's
/// per-minute telemetry for the variant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardMetric {
    /// Share of requests that ended in an error (offline answer or aborted
    /// stream), 0–1.
    ErrorRate,
    /// 95th-percentile latency in milliseconds (histogram upper bound).
    P95LatencyMs,
    /// Average answer quality score, 0–10.
    Quality,
    /// Average cost per request in US dollars (requests of unknown cost
    /// count as zero cost and are flagged in telemetry).
    CostPerRequest,
    /// Share of requests answered below their entry tier, 0–1.
    FallbackRate,
}

impl GuardMetric {
    /// Every metric, in documentation order.
    pub const ALL: [GuardMetric; 5] = [
        Self::ErrorRate,
        Self::P95LatencyMs,
        Self::Quality,
        Self::CostPerRequest,
        Self::FallbackRate,
    ];

    /// The name used in plans and reasons.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ErrorRate => "error_rate",
            Self::P95LatencyMs => "p95_latency_ms",
            Self::Quality => "quality",
            Self::CostPerRequest => "cost_per_request",
            Self::FallbackRate => "fallback_rate",
        }
    }

    /// Parses a metric name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// True when a higher value is better (only quality); a guard then
    /// breaches when the value falls *below* its bound.
    pub fn higher_is_better(self) -> bool {
        matches!(self, Self::Quality)
    }
}

/// What a guard's threshold is measured against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Baseline {
    /// The threshold is the bound itself (e.g. quality below 7.0).
    Absolute,
    /// The threshold is how much worse than the control variant over the
    /// same window the rolled-out variant may be (e.g. error rate more than
    /// 0.02 above control's).
    Control,
}

/// One guard: breach when `metric` of the rolled-out variant over the last
/// `window_secs` is worse than the bound, continuously for `for_secs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Guard {
    /// The metric watched.
    pub metric: GuardMetric,
    /// Absolute bound or allowed worsening against control.
    pub vs: Baseline,
    /// The bound (absolute) or the allowed difference (control).
    pub threshold: f64,
    /// Telemetry window the metric is computed over.
    pub window_secs: u64,
    /// How long the breach must last before it counts (0 = at once).
    pub for_secs: u64,
    /// Fewest requests of the variant (and of control, for a control
    /// guard) in the window before the guard is judged at all.
    pub min_samples: u64,
}

/// One step: serve the variant to `percent` % of targeting keys for at least
/// `hold_secs` before the next step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// Share of targeting keys that get the variant, 1–100.
    pub percent: u8,
    /// Minimum time at this step.
    pub hold_secs: u64,
}

/// What a breach does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnBreach {
    /// Back to 0 %: everyone gets control; restarting needs an admin.
    Rollback,
    /// Stay at the current percentage without advancing; resuming needs an
    /// admin.
    Pause,
}

/// A validated rollout plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutPlan {
    /// The variant being rolled out.
    pub variant: String,
    /// The variant everyone else gets (the flag's default variant unless
    /// named).
    pub control: String,
    /// The steps, strictly increasing, the last one at 100 %.
    pub steps: Vec<Step>,
    /// Fewest requests of the variant at a step before it may advance.
    pub min_samples: u64,
    /// The guards.
    pub guards: Vec<Guard>,
    /// What a breach does.
    pub on_breach: OnBreach,
}

/// Why a plan was refused; `field` is a dotted path into the plan JSON.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{field}: {message}")]
pub struct PlanError {
    /// Where, e.g. `steps[2].percent`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> PlanError {
    PlanError {
        field: field.into(),
        message: message.into(),
    }
}

fn duration(obj: &Map<String, Value>, name: &str, at: &str) -> Result<Option<u64>, PlanError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => parse_duration_secs(v).map(Some).ok_or_else(|| {
            err(
                format!("{at}{name}"),
                "expected seconds or a duration like \"90s\", \"30m\", \"24h\", \"2d\"",
            )
        }),
    }
}

fn check_known(obj: &Map<String, Value>, known: &[&str], at: &str) -> Result<(), PlanError> {
    match obj.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(err(
            format!("{at}{k}"),
            format!("unknown field; expected one of {}", known.join(", ")),
        )),
        None => Ok(()),
    }
}

fn count(obj: &Map<String, Value>, name: &str, at: &str) -> Result<Option<u64>, PlanError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| err(format!("{at}{name}"), "expected a non-negative integer")),
    }
}

impl RolloutPlan {
    /// Validates a plan for a flag with `variants` and `default_variant`.
    pub fn parse(
        body: &Value,
        variants: &[String],
        default_variant: Option<&str>,
    ) -> Result<RolloutPlan, PlanError> {
        let obj = body
            .as_object()
            .ok_or_else(|| err("$", "expected a JSON object"))?;
        check_known(
            obj,
            &[
                "variant",
                "control",
                "steps",
                "min_samples",
                "guards",
                "on_breach",
            ],
            "",
        )?;
        let variant = obj
            .get("variant")
            .and_then(Value::as_str)
            .ok_or_else(|| err("variant", "required: the variant to roll out"))?
            .to_owned();
        if !variants.contains(&variant) {
            return Err(err(
                "variant",
                format!(
                    "the flag has no variant `{variant}`; variants: {}",
                    variants.join(", ")
                ),
            ));
        }
        let control = match obj.get("control") {
            None | Some(Value::Null) => default_variant
                .ok_or_else(|| {
                    err(
                        "control",
                        "required: the flag has no default variant to use as control",
                    )
                })?
                .to_owned(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(err("control", "expected a variant name")),
        };
        if !variants.contains(&control) {
            return Err(err(
                "control",
                format!("the flag has no variant `{control}`"),
            ));
        }
        if control == variant {
            return Err(err(
                "control",
                "the control variant must differ from the rolled-out variant",
            ));
        }
        let min_samples = count(obj, "min_samples", "")?.unwrap_or(DEFAULT_MIN_SAMPLES);
        let steps = parse_steps(obj.get("steps"))?;
        let guards = parse_guards(obj.get("guards"), min_samples)?;
        let on_breach = match obj.get("on_breach").map(|v| v.as_str()) {
            None | Some(Some("rollback")) => OnBreach::Rollback,
            Some(Some("pause")) => OnBreach::Pause,
            Some(_) => return Err(err("on_breach", "expected \"rollback\" or \"pause\"")),
        };
        Ok(RolloutPlan {
            variant,
            control,
            steps,
            min_samples,
            guards,
            on_breach,
        })
    }

    /// The percentage of step `index` (0 before the first step).
    pub fn percent_at(&self, index: usize) -> u8 {
        self.steps.get(index).map_or(0, |s| s.percent)
    }
}

fn parse_steps(value: Option<&Value>) -> Result<Vec<Step>, PlanError> {
    let list = value
        .and_then(Value::as_array)
        .ok_or_else(|| err("steps", "required: a list of {\"percent\", \"hold\"}"))?;
    if list.is_empty() || list.len() > MAX_STEPS {
        return Err(err("steps", format!("expected 1 to {MAX_STEPS} steps")));
    }
    let mut steps = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let at = format!("steps[{i}].");
        let obj = item
            .as_object()
            .ok_or_else(|| err(format!("steps[{i}]"), "expected an object"))?;
        check_known(obj, &["percent", "hold"], &at)?;
        let percent = obj
            .get("percent")
            .and_then(Value::as_u64)
            .filter(|p| (1..=100).contains(p))
            .and_then(|p| u8::try_from(p).ok())
            .ok_or_else(|| err(format!("{at}percent"), "expected an integer from 1 to 100"))?;
        if let Some(prev) = steps.last().map(|s: &Step| s.percent)
            && percent <= prev
        {
            return Err(err(
                format!("{at}percent"),
                format!("steps must increase: {percent} follows {prev}"),
            ));
        }
        let hold_secs = duration(obj, "hold", &at)?.unwrap_or(0);
        steps.push(Step { percent, hold_secs });
    }
    if steps.last().map(|s| s.percent) != Some(100) {
        return Err(err(
            format!("steps[{}].percent", steps.len() - 1),
            "the last step must be 100 (completing a rollout makes the variant the default)",
        ));
    }
    Ok(steps)
}

fn parse_guards(value: Option<&Value>, min_samples: u64) -> Result<Vec<Guard>, PlanError> {
    let list = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(v) => v
            .as_array()
            .ok_or_else(|| err("guards", "expected a list"))?,
    };
    if list.len() > MAX_GUARDS {
        return Err(err("guards", format!("at most {MAX_GUARDS} guards")));
    }
    let mut guards = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let at = format!("guards[{i}].");
        let obj = item
            .as_object()
            .ok_or_else(|| err(format!("guards[{i}]"), "expected an object"))?;
        check_known(
            obj,
            &["metric", "vs", "threshold", "window", "for", "min_samples"],
            &at,
        )?;
        let name = obj.get("metric").and_then(Value::as_str).unwrap_or("");
        let metric = GuardMetric::parse(name).ok_or_else(|| {
            let all: Vec<_> = GuardMetric::ALL.iter().map(|m| m.as_str()).collect();
            err(
                format!("{at}metric"),
                format!("expected one of {}", all.join(", ")),
            )
        })?;
        let vs = match obj.get("vs").map(|v| v.as_str()) {
            None | Some(Some("absolute")) => Baseline::Absolute,
            Some(Some("control")) => Baseline::Control,
            Some(_) => {
                return Err(err(
                    format!("{at}vs"),
                    "expected \"absolute\" or \"control\"",
                ));
            }
        };
        let threshold = obj
            .get("threshold")
            .and_then(Value::as_f64)
            .filter(|t| t.is_finite() && *t >= 0.0)
            .ok_or_else(|| err(format!("{at}threshold"), "expected a non-negative number"))?;
        let rate = matches!(metric, GuardMetric::ErrorRate | GuardMetric::FallbackRate);
        if rate && threshold > 1.0 {
            return Err(err(
                format!("{at}threshold"),
                "rates are fractions from 0 to 1 (0.10 = 10 %)",
            ));
        }
        if metric == GuardMetric::Quality && threshold > 10.0 {
            return Err(err(
                format!("{at}threshold"),
                "quality scores run from 0 to 10",
            ));
        }
        let window_secs = duration(obj, "window", &at)?
            .ok_or_else(|| err(format!("{at}window"), "required, e.g. \"15m\""))?;
        if !(60..=MAX_WINDOW_SECS).contains(&window_secs) {
            return Err(err(
                format!("{at}window"),
                "expected from 1 minute (telemetry is per minute) to 7 days",
            ));
        }
        let for_secs = duration(obj, "for", &at)?.unwrap_or(0);
        if for_secs > MAX_WINDOW_SECS {
            return Err(err(format!("{at}for"), "at most 7 days"));
        }
        let min_samples = count(obj, "min_samples", &at)?.unwrap_or(min_samples);
        guards.push(Guard {
            metric,
            vs,
            threshold,
            window_secs,
            for_secs,
            min_samples,
        });
    }
    Ok(guards)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn variants() -> Vec<String> {
        ["comprehensive", "enhanced", "basic"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    }

    fn parse(v: Value) -> Result<RolloutPlan, PlanError> {
        RolloutPlan::parse(&v, &variants(), Some("comprehensive"))
    }

    #[test]
    fn full_plan_parses_with_defaults() {
        let plan = parse(json!({
            "variant": "enhanced",
            "steps": [{"percent": 5, "hold": "24h"}, {"percent": 50, "hold": 60}, {"percent": 100}],
            "guards": [
                {"metric": "quality", "threshold": 7.0, "window": "30m", "for": "30m"},
                {"metric": "error_rate", "vs": "control", "threshold": 0.02, "window": "15m", "min_samples": 20}
            ]
        }))
        .unwrap();
        assert_eq!(plan.control, "comprehensive");
        assert_eq!(plan.min_samples, DEFAULT_MIN_SAMPLES);
        assert_eq!(plan.on_breach, OnBreach::Rollback);
        assert_eq!(
            plan.steps[0],
            Step {
                percent: 5,
                hold_secs: 86_400
            }
        );
        assert_eq!(plan.steps[2].hold_secs, 0);
        assert_eq!(plan.guards[0].for_secs, 1_800);
        assert_eq!(plan.guards[0].min_samples, DEFAULT_MIN_SAMPLES);
        assert_eq!(plan.guards[1].vs, Baseline::Control);
        assert_eq!(plan.guards[1].min_samples, 20);
        assert_eq!(plan.percent_at(1), 50);
        assert_eq!(plan.percent_at(7), 0);
    }

    #[test]
    fn each_bad_field_is_named() {
        let base = json!({"variant": "enhanced", "steps": [{"percent": 100}]});
        let cases: Vec<(Value, &str)> = vec![
            (json!([]), "$"),
            (json!({"steps": [{"percent": 100}]}), "variant"),
            (
                json!({"variant": "nope", "steps": [{"percent": 100}]}),
                "variant",
            ),
            (
                json!({"variant": "enhanced", "control": "enhanced", "steps": [{"percent": 100}]}),
                "control",
            ),
            (
                json!({"variant": "enhanced", "control": "x", "steps": [{"percent": 100}]}),
                "control",
            ),
            (json!({"variant": "enhanced"}), "steps"),
            (json!({"variant": "enhanced", "steps": []}), "steps"),
            (
                json!({"variant": "enhanced", "steps": [{"percent": 0}, {"percent": 100}]}),
                "steps[0].percent",
            ),
            (
                json!({"variant": "enhanced", "steps": [{"percent": 50}, {"percent": 50}, {"percent": 100}]}),
                "steps[1].percent",
            ),
            (
                json!({"variant": "enhanced", "steps": [{"percent": 50}]}),
                "steps[0].percent",
            ),
            (
                json!({"variant": "enhanced", "steps": [{"percent": 100, "hold": "1w"}]}),
                "steps[0].hold",
            ),
            (
                json!({"variant": "enhanced", "steps": [{"percent": 100, "wait": 1}]}),
                "steps[0].wait",
            ),
            (
                json!({"variant": "enhanced", "steps": [{"percent": 100}], "extra": 1}),
                "extra",
            ),
            (
                json!({"variant": "enhanced", "steps": [{"percent": 100}], "on_breach": "explode"}),
                "on_breach",
            ),
            (
                json!({"variant": "enhanced", "steps": [{"percent": 100}], "min_samples": -1}),
                "min_samples",
            ),
            (
                json!({"variant": "enhanced", "steps": [{"percent": 100}], "guards": {}}),
                "guards",
            ),
            (
                json!({"variant": "enhanced", "steps": [{"percent": 100}], "guards": [{"metric": "cpu", "threshold": 1, "window": "5m"}]}),
                "guards[0].metric",
            ),
            (
                json!({"variant": "enhanced", "steps": [{"percent": 100}], "guards": [{"metric": "quality", "window": "5m"}]}),
                "guards[0].threshold",
            ),
            (
                json!({"variant": "enhanced", "steps": [{"percent": 100}], "guards": [{"metric": "quality", "threshold": 11, "window": "5m"}]}),
                "guards[0].threshold",
            ),
            (
                json!({"variant": "enhanced", "steps": [{"percent": 100}], "guards": [{"metric": "error_rate", "threshold": 10, "window": "5m"}]}),
                "guards[0].threshold",
            ),
            (
                json!({"variant": "enhanced", "steps": [{"percent": 100}], "guards": [{"metric": "quality", "threshold": 7}]}),
                "guards[0].window",
            ),
            (
                json!({"variant": "enhanced", "steps": [{"percent": 100}], "guards": [{"metric": "quality", "threshold": 7, "window": "30s"}]}),
                "guards[0].window",
            ),
            (
                json!({"variant": "enhanced", "steps": [{"percent": 100}], "guards": [{"metric": "quality", "threshold": 7, "window": "5m", "vs": "yesterday"}]}),
                "guards[0].vs",
            ),
            (
                json!({"variant": "enhanced", "steps": [{"percent": 100}], "guards": [{"metric": "quality", "threshold": 7, "window": "5m", "for": "9d"}]}),
                "guards[0].for",
            ),
        ];
        assert!(parse(base).is_ok());
        for (body, field) in cases {
            let e = parse(body.clone()).expect_err(&body.to_string());
            assert_eq!(e.field, field, "{body}: {e}");
        }
    }

    #[test]
    fn control_is_required_without_a_default_variant() {
        let e = RolloutPlan::parse(
            &json!({"variant": "enhanced", "steps": [{"percent": 100}]}),
            &variants(),
            None,
        )
        .unwrap_err();
        assert_eq!(e.field, "control");
    }
}
