//! The experiment report: per-variant estimates, comparisons with the
//! control, the sample-ratio-mismatch check and a verdict, computed from
//! per-variant sufficient statistics ([`ExperimentData`]).
//!
//! Verdict rules, per treatment variant (against the control):
//! - `stop` when the primary metric is significantly worse, or any
//!   guardrail is significantly worse (harm does not wait for the minimum
//!   sample size), or the experiment has a sample-ratio mismatch;
//! - `ship` when none of those holds, both the control and the treatment
//!   have at least `min_units_per_variant` units, and the primary metric is
//!   significantly better (p < alpha) with an observed relative improvement
//!   of at least `min_relative_lift` (a reduction, for lower-is-better
//!   metrics);
//! - otherwise `keep_running`, with a reason for each missing piece.
//!
//! The experiment's verdict is `stop` if any treatment's is (or on SRM),
//! else `ship` for the treatment with the largest primary improvement among
//! those that ship, else `keep_running`. Every comparison is tested at
//! `alpha` without a multiple-comparison correction, so with several
//! treatments or guardrails the family-wise error rate is higher than alpha.

use std::collections::BTreeMap;

use serde::Serialize;

use super::definition::{Definition, Direction, Metric};
use super::stats::{
    self, Comparison, MeanSample, ProportionSample, Srm, two_proportion_z_test, welch_t_test,
};

/// The sufficient statistics of one metric for one variant.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum MetricData {
    /// A rate: trials and successes.
    Proportion(ProportionSample),
    /// A mean: count, sum, sum of squares.
    Mean(MeanSample),
}

/// What storage collected for one variant.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VariantData {
    /// Units (distinct targeting keys with an event for the flag, or
    /// gateway requests when every metric is a gateway metric).
    pub units: u64,
    /// Metric name → its statistics. A missing metric counts as no data.
    pub metrics: BTreeMap<String, MetricData>,
    /// User feedback on the variant's requests (normalized 0–1), whatever
    /// the metrics: every report shows it ([`Report::feedback`]).
    pub feedback: Option<MeanSample>,
}

/// Per-variant data, keyed by variant name. Variants not present have no data.
pub type ExperimentData = BTreeMap<String, VariantData>;

/// The decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// The treatment met the success criteria: roll it out.
    Ship,
    /// Not enough evidence yet either way.
    KeepRunning,
    /// Harm or a broken experiment: stop and investigate.
    Stop,
}

/// A decision with its reasons.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// What to do.
    pub decision: Decision,
    /// The treatment to ship (for `ship`), or the one concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Why, in plain words.
    pub reasons: Vec<String>,
}

/// One variant's line in a metric's table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VariantResult {
    /// The variant.
    pub variant: String,
    /// Observations behind the estimate (units for conversion, events for a
    /// mean, requests for gateway metrics).
    pub n: u64,
    /// Successes (rates only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub successes: Option<u64>,
    /// The rate or mean (`None` without data).
    pub value: Option<f64>,
    /// Its interval at `1 − alpha` (Wilson for rates, t for means).
    pub ci: Option<(f64, f64)>,
    /// Comparison with the control (treatments only, when computable).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comparison: Option<ComparisonResult>,
}

/// A treatment's comparison with the control on one metric.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComparisonResult {
    /// `z_test` or `welch_t_test`.
    pub test: &'static str,
    /// The numbers.
    #[serde(flatten)]
    pub stats: Comparison,
    /// `p_value < alpha`.
    pub significant: bool,
    /// `better`, `worse` (significant, in the metric's direction) or `inconclusive`.
    pub outcome: &'static str,
}

/// One metric's results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricReport {
    /// The metric.
    #[serde(flatten)]
    pub metric: Metric,
    /// `primary` or `guardrail`.
    pub role: &'static str,
    /// Control first, then the treatments in definition order.
    pub variants: Vec<VariantResult>,
    /// Why a comparison could not be made (e.g. too few observations).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Units per variant and the sample-ratio-mismatch check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnitsReport {
    /// `events` (distinct targeting keys) or `requests`.
    pub source: &'static str,
    /// Observed units per variant, in definition order.
    pub observed: Vec<(String, u64)>,
    /// The chi-square goodness-of-fit check (`None` if it could not run).
    pub srm: Option<Srm>,
    /// The threshold below which `srm.p_value` is a mismatch.
    pub srm_threshold: f64,
}

/// The full report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The experiment's key.
    pub key: String,
    /// The flag.
    pub flag: String,
    /// The control variant.
    pub control: String,
    /// Data counted from this time (Unix ms).
    pub start_ms: i64,
    /// Significance level used.
    pub alpha: f64,
    /// Units and SRM.
    pub units: UnitsReport,
    /// The primary metric first, then the guardrails.
    pub metrics: Vec<MetricReport>,
    /// The decision.
    pub verdict: Verdict,
    /// Per-treatment decisions.
    pub treatments: Vec<Verdict>,
    /// Mean user feedback per variant (`POST /v1/feedback`, normalized
    /// 0–1) with its t interval at `1 − alpha` and, for treatments, Welch's
    /// t-test against the control. Shown for information: it decides the
    /// verdict only when declared as a metric (kind `feedback`).
    pub feedback: Vec<VariantResult>,
}

fn comparison(
    metric: &Metric,
    control: Option<&MetricData>,
    treatment: Option<&MetricData>,
    alpha: f64,
) -> Result<ComparisonResult, String> {
    let empty_p = MetricData::Proportion(ProportionSample { n: 0, successes: 0 });
    let empty_m = MetricData::Mean(MeanSample {
        n: 0,
        sum: 0.0,
        sum_sq: 0.0,
    });
    let empty = if metric.kind.is_rate() {
        empty_p
    } else {
        empty_m
    };
    let c = control.copied().unwrap_or(empty);
    let t = treatment.copied().unwrap_or(empty);
    let (test, stats) = match (c, t) {
        (MetricData::Proportion(c), MetricData::Proportion(t)) => {
            ("z_test", two_proportion_z_test(c, t, alpha))
        }
        (MetricData::Mean(c), MetricData::Mean(t)) => ("welch_t_test", welch_t_test(c, t, alpha)),
        _ => return Err("control and treatment data are of different types".to_owned()),
    };
    let stats = stats.map_err(|e| e.to_string())?;
    let significant = stats.p_value < alpha;
    let improvement = stats.difference * metric.direction.sign();
    let outcome = if !significant {
        "inconclusive"
    } else if improvement > 0.0 {
        "better"
    } else if improvement < 0.0 {
        "worse"
    } else {
        "inconclusive"
    };
    Ok(ComparisonResult {
        test,
        stats,
        significant,
        outcome,
    })
}

fn variant_line(variant: &str, data: Option<&MetricData>, alpha: f64) -> VariantResult {
    match data {
        Some(MetricData::Proportion(p)) => VariantResult {
            variant: variant.to_owned(),
            n: p.n,
            successes: Some(p.successes),
            value: (p.n > 0).then(|| p.rate()),
            ci: (p.n > 0).then(|| p.wilson_interval(alpha)),
            comparison: None,
        },
        Some(MetricData::Mean(m)) => VariantResult {
            variant: variant.to_owned(),
            n: m.n,
            successes: None,
            value: (m.n > 0).then(|| m.mean()),
            ci: (m.n > 0).then(|| m.t_interval(alpha)),
            comparison: None,
        },
        None => VariantResult {
            variant: variant.to_owned(),
            n: 0,
            successes: None,
            value: None,
            ci: None,
            comparison: None,
        },
    }
}

/// A p-value for reasons: four decimals, or scientific notation when that
/// would print as 0.0000.
fn fmt_p(p: f64) -> String {
    if p < 1e-4 {
        format!("{p:.1e}")
    } else {
        format!("{p:.4}")
    }
}

fn pct(x: f64) -> String {
    format!("{:.1} %", x * 100.0)
}

/// Builds the report for experiment `key` from collected `data`.
pub fn build(key: &str, def: &Definition, data: &ExperimentData) -> Report {
    let alpha = def.criteria.alpha;
    let names = def.variant_names();
    let treatments: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| *n != def.control)
        .collect();

    let observed: Vec<(String, u64)> = names
        .iter()
        .map(|n| ((*n).to_owned(), data.get(*n).map_or(0, |d| d.units)))
        .collect();
    let counts: Vec<u64> = observed.iter().map(|(_, c)| *c).collect();
    let weights: Vec<f64> = def.variants.iter().map(|v| v.weight).collect();
    let srm = stats::srm_check(&counts, &weights).ok();
    let units = UnitsReport {
        source: if def.units_from_events() {
            "events"
        } else {
            "requests"
        },
        observed,
        srm,
        srm_threshold: stats::SRM_P_THRESHOLD,
    };

    let mut metrics = Vec::new();
    for (i, metric) in def.metrics().enumerate() {
        let get = |v: &str| data.get(v).and_then(|d| d.metrics.get(&metric.name));
        let control_data = get(&def.control);
        let mut lines = vec![variant_line(&def.control, control_data, alpha)];
        let mut notes = Vec::new();
        for t in &treatments {
            let mut line = variant_line(t, get(t), alpha);
            match comparison(metric, control_data, get(t), alpha) {
                Ok(c) => line.comparison = Some(c),
                Err(e) => notes.push(format!("{t} vs {}: {e}", def.control)),
            }
            lines.push(line);
        }
        metrics.push(MetricReport {
            metric: metric.clone(),
            role: if i == 0 { "primary" } else { "guardrail" },
            variants: lines,
            notes,
        });
    }

    let srm_mismatch = units.srm.as_ref().is_some_and(|s| s.mismatch);
    let per_treatment: Vec<Verdict> = treatments
        .iter()
        .map(|t| treatment_verdict(def, t, &metrics, &units, srm_mismatch))
        .collect();
    let verdict = overall(&per_treatment, &metrics, srm_mismatch, &units);
    let feedback_metric = Metric {
        name: "feedback".to_owned(),
        kind: super::definition::MetricKind::Feedback,
        direction: Direction::Higher,
    };
    let feedback_of = |v: &str| {
        data.get(v)
            .and_then(|d| d.feedback)
            .filter(|m| m.n > 0)
            .map(MetricData::Mean)
    };
    let control_feedback = feedback_of(&def.control);
    let feedback = names
        .iter()
        .map(|v| {
            let data = feedback_of(v);
            let mut line = variant_line(v, data.as_ref(), alpha);
            if *v != def.control {
                line.comparison = comparison(
                    &feedback_metric,
                    control_feedback.as_ref(),
                    data.as_ref(),
                    alpha,
                )
                .ok();
            }
            line
        })
        .collect();
    Report {
        key: key.to_owned(),
        flag: def.flag.clone(),
        control: def.control.clone(),
        start_ms: def.start_ms,
        alpha,
        units,
        metrics,
        verdict,
        treatments: per_treatment,
        feedback,
    }
}

fn comparison_of<'a>(m: &'a MetricReport, variant: &str) -> Option<&'a ComparisonResult> {
    m.variants
        .iter()
        .find(|l| l.variant == variant)
        .and_then(|l| l.comparison.as_ref())
}

fn srm_reason(units: &UnitsReport) -> String {
    let p = units.srm.as_ref().map_or(f64::NAN, |s| s.p_value);
    let observed: Vec<String> = units
        .observed
        .iter()
        .map(|(v, n)| format!("{v} {n}"))
        .collect();
    format!(
        "sample ratio mismatch: units {} do not match the configured allocation (chi-square p = {p:.2e} < {})",
        observed.join(", "),
        stats::SRM_P_THRESHOLD
    )
}

fn treatment_verdict(
    def: &Definition,
    t: &str,
    metrics: &[MetricReport],
    units: &UnitsReport,
    srm: bool,
) -> Verdict {
    let alpha = def.criteria.alpha;
    let mut stop = Vec::new();
    let mut missing = Vec::new();
    if srm {
        stop.push(srm_reason(units));
    }
    let primary = &metrics[0];
    let mut primary_ok = false;
    match comparison_of(primary, t) {
        Some(c) if c.outcome == "worse" => stop.push(format!(
            "primary {} is significantly worse (p = {} < {alpha})",
            primary.metric.name,
            fmt_p(c.stats.p_value)
        )),
        Some(c) if c.outcome == "better" => {
            let improvement = c
                .stats
                .relative_lift
                .map(|l| l * primary.metric.direction.sign());
            match improvement {
                Some(l) if l >= def.criteria.min_relative_lift => primary_ok = true,
                Some(l) => missing.push(format!(
                    "primary {} is significantly better but the relative {} of {} is below the minimum {}",
                    primary.metric.name,
                    if primary.metric.direction == Direction::Higher { "lift" } else { "reduction" },
                    pct(l),
                    pct(def.criteria.min_relative_lift)
                )),
                None => missing.push(format!(
                    "primary {}: the control's value is 0, so the relative lift is undefined",
                    primary.metric.name
                )),
            }
        }
        Some(c) => missing.push(format!(
            "primary {} is not significant yet (p = {} ≥ {alpha})",
            primary.metric.name,
            fmt_p(c.stats.p_value)
        )),
        None => missing.push(format!(
            "primary {} cannot be compared yet (too few observations)",
            primary.metric.name
        )),
    }
    for g in &metrics[1..] {
        if let Some(c) = comparison_of(g, t)
            && c.outcome == "worse"
        {
            stop.push(format!(
                "guardrail {} is significantly worse (p = {} < {alpha})",
                g.metric.name,
                fmt_p(c.stats.p_value)
            ));
        }
    }
    let min = def.criteria.min_units_per_variant;
    for v in [def.control.as_str(), t] {
        let n = units
            .observed
            .iter()
            .find(|(name, _)| name == v)
            .map_or(0, |(_, n)| *n);
        if n < min {
            missing.push(format!("{v} has {n} of the {min} units needed"));
        }
    }
    let (decision, reasons) = if !stop.is_empty() {
        (Decision::Stop, stop)
    } else if primary_ok && missing.is_empty() {
        let c = comparison_of(primary, t);
        let lift = c
            .and_then(|c| c.stats.relative_lift)
            .map_or(String::new(), pct);
        let p = c.map_or(f64::NAN, |c| c.stats.p_value);
        (
            Decision::Ship,
            vec![format!(
                "primary {} improved by {lift} relative (p = {} < {alpha}); no guardrail is significantly worse; no sample ratio mismatch",
                primary.metric.name,
                fmt_p(p)
            )],
        )
    } else {
        (Decision::KeepRunning, missing)
    };
    Verdict {
        decision,
        variant: Some(t.to_owned()),
        reasons: reasons.into_iter().map(|r| format!("{t}: {r}")).collect(),
    }
}

fn overall(per: &[Verdict], metrics: &[MetricReport], srm: bool, units: &UnitsReport) -> Verdict {
    if srm {
        return Verdict {
            decision: Decision::Stop,
            variant: None,
            reasons: vec![srm_reason(units)],
        };
    }
    let stops: Vec<&Verdict> = per
        .iter()
        .filter(|v| v.decision == Decision::Stop)
        .collect();
    if !stops.is_empty() {
        return Verdict {
            decision: Decision::Stop,
            variant: (stops.len() == 1)
                .then(|| stops[0].variant.clone())
                .flatten(),
            reasons: stops.iter().flat_map(|v| v.reasons.clone()).collect(),
        };
    }
    let improvement = |v: &Verdict| -> f64 {
        let variant = v.variant.as_deref().unwrap_or("");
        comparison_of(&metrics[0], variant)
            .and_then(|c| c.stats.relative_lift)
            .map_or(f64::NEG_INFINITY, |l| {
                l * metrics[0].metric.direction.sign()
            })
    };
    let best = per
        .iter()
        .filter(|v| v.decision == Decision::Ship)
        .max_by(|a, b| improvement(a).total_cmp(&improvement(b)));
    if let Some(best) = best {
        return best.clone();
    }
    Verdict {
        decision: Decision::KeepRunning,
        variant: None,
        reasons: per.iter().flat_map(|v| v.reasons.clone()).collect(),
    }
}
