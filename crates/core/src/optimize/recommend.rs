//! Recommendations (issue 16, part 3): concrete, quantified changes derived
//! from the telemetry, each with its evidence (sample sizes, the test used,
//! its interval or p-value), an estimated daily impact in USD, latency and
//! quality, and a confidence. Pure: [`derive`] turns [`Inputs`] (read by
//! [`super::recommend_store`]) into [`Recommendation`]s.
//!
//! | kind | finding | test | thresholds |
//! |---|---|---|---|
//! | `cheaper-tier` | a cheaper entry tier answers as well | Welch's t-test on quality (0–10), non-inferiority: the lower end of the 95 % interval of `cheaper − current` ≥ −[`NON_INFERIORITY_MARGIN`] | ≥ [`MIN_QUALITY_SAMPLES`] scored requests in each tier |
//! | `error-rate` | a model fails more often than the rest of the traffic | two-proportion z-test, p < [`ALPHA_STRICT`] | ≥ [`MIN_MODEL_SAMPLES`] requests, error rate ≥ [`MIN_ERROR_RATE`] |
//! | `slow-model` | a model's p95 latency is far above the rest's | two-proportion z-test on the share slower than the rest's p95, p < [`ALPHA_STRICT`] | ≥ [`MIN_MODEL_SAMPLES`] requests, p95 ≥ [`SLOW_FACTOR`] × the rest's |
//! | `low-quality-template` | a template's answers fall below the quality threshold too often | Wilson 95 % interval of the share below the threshold | ≥ [`MIN_QUALITY_SAMPLES`] scored answers, interval entirely above [`MAX_BELOW_SHARE`] |
//! | `cache-ttl` | requests repeat a prompt after its cache entry expired | Wilson 95 % interval of the share of such repeats (request bodies of orgs that log them) | ≥ [`MIN_REPEAT_SAMPLES`] logged requests, interval entirely above [`MIN_MISSED_SHARE`] |
//! | `unpriced-model` | a catalog model has no price | none (a fact) | any |
//!
//! Ids are deterministic (a hash of the kind and what the finding is about,
//! never of its figures), so a dismissed finding stays dismissed when it is
//! recomputed with new numbers.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::experiments::dist::{normal_cdf, t_cdf};
use crate::experiments::stats::{
    MeanSample, ProportionSample, two_proportion_z_test, welch_t_test,
};
use crate::observe::usage::Agg;

/// Quality points (0–10 scale) a cheaper tier may lose and still count as
/// "as good": the lower end of the difference's interval must stay above
/// minus this.
pub const NON_INFERIORITY_MARGIN: f64 = 0.5;
/// Fewest scored requests per group before quality is compared.
pub const MIN_QUALITY_SAMPLES: u64 = 20;
/// Fewest requests of a model before its error rate or latency is judged.
pub const MIN_MODEL_SAMPLES: u64 = 30;
/// Significance level of the error-rate and latency tests (strict: the
/// recommender looks every day, and a false alarm costs an operator's time).
pub const ALPHA_STRICT: f64 = 0.01;
/// Lowest error rate worth a recommendation.
pub const MIN_ERROR_RATE: f64 = 0.05;
/// How many times the rest's p95 a model's p95 must reach.
pub const SLOW_FACTOR: f64 = 2.0;
/// Share of a template's answers below the quality threshold that is
/// "too often".
pub const MAX_BELOW_SHARE: f64 = 0.2;
/// Fewest logged requests before the cache repeat rate is judged.
pub const MIN_REPEAT_SAMPLES: u64 = 100;
/// Share of requests repeating an expired entry's prompt worth a longer TTL.
pub const MIN_MISSED_SHARE: f64 = 0.05;
/// Longest TTL the recommender suggests (a day): an answer cached longer
/// risks going stale.
pub const MAX_SUGGESTED_TTL_SECS: u64 = 86_400;
/// Confidence level of the reported intervals (95 %).
pub const ALPHA: f64 = 0.05;

/// The kinds of recommendation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Route a tier (or a template) to a cheaper tier of equal quality.
    CheaperTier,
    /// A model whose error rate makes it the wrong default.
    ErrorRate,
    /// A model whose p95 latency makes it the wrong default.
    SlowModel,
    /// A template whose answers fall below the quality threshold too often.
    LowQualityTemplate,
    /// Cache TTL too short for the repeat rate seen.
    CacheTtl,
    /// A catalog model without a price.
    UnpricedModel,
}

impl Kind {
    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CheaperTier => "cheaper-tier",
            Self::ErrorRate => "error-rate",
            Self::SlowModel => "slow-model",
            Self::LowQualityTemplate => "low-quality-template",
            Self::CacheTtl => "cache-ttl",
            Self::UnpricedModel => "unpriced-model",
        }
    }
}

/// What applying a recommendation does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Apply {
    /// A guarded rollout of the tier flag's `variant` against `control`,
    /// with this plan (guards set from the evidence).
    Rollout {
        /// The tier to roll out.
        variant: String,
        /// The tier it replaces.
        control: String,
        /// The rollout plan (`PUT /admin/flags/{key}/rollout`'s body).
        plan: Value,
    },
    /// Not applied automatically; what to do instead.
    Manual {
        /// Why, and what the operator can do.
        reason: String,
    },
}

/// Estimated effect per day if the recommendation is followed (positive
/// USD = saved; negative latency = faster; quality in points, 0–10).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Impact {
    /// US dollars saved per day (`None` when not computable).
    pub usd_per_day: Option<f64>,
    /// Change of latency, ms (mean or p95, as the evidence says).
    pub latency_ms: Option<f64>,
    /// Change of mean quality, points.
    pub quality: Option<f64>,
    /// Requests per day the finding concerns.
    pub requests_per_day: f64,
}

/// One recommendation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Recommendation {
    /// Deterministic id (`rec-` + 16 hex digits).
    pub id: String,
    /// The kind.
    pub kind: Kind,
    /// One line.
    pub title: String,
    /// What the finding is about (tier, template, provider/model).
    pub subject: Value,
    /// Sample sizes, the test, its statistic, interval and p-value.
    pub evidence: Value,
    /// Estimated daily impact.
    pub impact: Impact,
    /// Confidence that the finding holds, 0–1.
    pub confidence: f64,
    /// What applying it does.
    pub apply: Apply,
}

/// Telemetry of one entry tier within a scope (all traffic, or one
/// template), from the `requests` rows of the window (cache hits excluded).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TierStats {
    /// `None` = all traffic; `Some(name)` = the template's.
    pub template: Option<String>,
    /// The entry tier.
    pub tier: String,
    /// Requests.
    pub requests: u64,
    /// Known cost, micro-dollars.
    pub cost_micros: u64,
    /// Latency sum, ms.
    pub latency_sum_ms: u64,
    /// Quality scores (n, sum, sum of squares).
    pub quality: MeanSample,
    /// Scored answers below the quality threshold.
    pub below: u64,
}

impl TierStats {
    fn cost_per_request(&self) -> f64 {
        self.cost_micros as f64 / 1e6 / self.requests.max(1) as f64
    }

    fn mean_latency(&self) -> f64 {
        self.latency_sum_ms as f64 / self.requests.max(1) as f64
    }
}

/// One model's aggregate over the window (from `usage_minute`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelStats {
    /// Provider.
    pub provider: String,
    /// Model.
    pub model: String,
    /// Its counters.
    pub agg: Agg,
}

/// A catalog model without a price and its requests in the window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Unpriced {
    /// Provider.
    pub provider: String,
    /// Model.
    pub model: String,
    /// Requests it answered in the window (their cost is unknown).
    pub requests: u64,
}

/// One logged request, for the cache repeat count: who sent which prompt
/// (`key`: API key and masked prompt), when, whether the cache answered it,
/// and what it cost.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sent {
    /// API key id and prompt.
    pub key: String,
    /// Unix ms.
    pub ts_ms: i64,
    /// Answered from the cache.
    pub cached: bool,
    /// Its cost, micro-dollars.
    pub cost_micros: u64,
}

/// How often requests repeated a prompt after its cache entry expired.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RepeatStats {
    /// Logged requests.
    pub requests: u64,
    /// Misses that repeat an earlier prompt of the same key more than the
    /// TTL but at most [`MAX_SUGGESTED_TTL_SECS`] later.
    pub missed: u64,
    /// Their cost, micro-dollars.
    pub missed_cost_micros: u64,
    /// The smallest whole hour that would have caught 90 % of them.
    pub suggested_ttl_secs: u64,
}

/// Counts the repeats of `sent` (any order) that a TTL longer than
/// `ttl_secs` would have answered from the cache.
pub fn repeat_stats(mut sent: Vec<Sent>, ttl_secs: u64) -> RepeatStats {
    sent.sort_by(|a, b| a.key.cmp(&b.key).then(a.ts_ms.cmp(&b.ts_ms)));
    let ttl_ms = i64::try_from(ttl_secs.saturating_mul(1_000)).unwrap_or(i64::MAX);
    let max_ms = i64::try_from(MAX_SUGGESTED_TTL_SECS * 1_000).unwrap_or(i64::MAX);
    let mut out = RepeatStats {
        requests: sent.len() as u64,
        ..RepeatStats::default()
    };
    let mut gaps = Vec::new();
    for pair in sent.windows(2) {
        let (before, now) = (&pair[0], &pair[1]);
        let gap = now.ts_ms - before.ts_ms;
        if before.key == now.key && !now.cached && gap > ttl_ms && gap <= max_ms {
            out.missed += 1;
            out.missed_cost_micros += now.cost_micros;
            gaps.push(gap);
        }
    }
    gaps.sort_unstable();
    if let Some(p90) = gaps.get((gaps.len() * 9).div_ceil(10).saturating_sub(1)) {
        let hours = u64::try_from(*p90).unwrap_or(0).div_ceil(3_600_000);
        out.suggested_ttl_secs = (hours * 3_600).min(MAX_SUGGESTED_TTL_SECS);
    }
    out
}

/// Everything [`derive`] reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inputs {
    /// Length of the window the figures cover, seconds.
    pub window_secs: u64,
    /// The gateway's quality threshold (0–10).
    pub quality_threshold: f64,
    /// Per (scope, entry tier).
    pub tiers: Vec<TierStats>,
    /// Per model.
    pub models: Vec<ModelStats>,
    /// Catalog models without a price.
    pub unpriced: Vec<Unpriced>,
    /// The cache's TTL (`gateway_cache_ttl_secs`).
    pub cache_ttl_secs: u64,
    /// Repeats of the logged requests.
    pub repeats: RepeatStats,
}

impl Inputs {
    fn per_day(&self, n: u64) -> f64 {
        n as f64 * 86_400.0 / self.window_secs.max(1) as f64
    }
}

/// The deterministic id of a finding: its kind and subject, never its
/// figures.
pub fn recommendation_id(kind: Kind, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    h.update(kind.as_str().as_bytes());
    for p in parts {
        h.update([0u8]);
        h.update(p.as_bytes());
    }
    let digest = h.finalize();
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("rec-{hex}")
}

/// Every recommendation the inputs support, most valuable first (USD per
/// day, then confidence), ties by id.
pub fn derive(inputs: &Inputs) -> Vec<Recommendation> {
    let mut out = cheaper_tiers(inputs);
    out.extend(model_defaults(inputs));
    out.extend(low_quality_templates(inputs));
    out.extend(unpriced_models(inputs));
    out.extend(cache_ttl(inputs));
    out.sort_by(|a, b| {
        let usd = |r: &Recommendation| r.impact.usd_per_day.unwrap_or(0.0);
        usd(b)
            .total_cmp(&usd(a))
            .then(b.confidence.total_cmp(&a.confidence))
            .then(a.id.cmp(&b.id))
    });
    out
}

/// Non-inferiority confidence: P(true difference > −margin) under the t
/// approximation; 1 or 0 when the samples have no spread at all.
fn non_inferiority_confidence(diff: f64, se: f64, df: f64) -> f64 {
    if se > 0.0 && df.is_finite() && df > 0.0 {
        t_cdf((diff + NON_INFERIORITY_MARGIN) / se, df)
    } else if diff >= -NON_INFERIORITY_MARGIN {
        1.0
    } else {
        0.0
    }
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

/// Route a tier to the cheapest cheaper tier whose quality is not worse by
/// more than the margin (see the module docs).
fn cheaper_tiers(inputs: &Inputs) -> Vec<Recommendation> {
    let mut out = Vec::new();
    for from in &inputs.tiers {
        if from.quality.n < MIN_QUALITY_SAMPLES {
            continue;
        }
        let mut best: Option<(&TierStats, crate::experiments::stats::Comparison, f64)> = None;
        for to in inputs.tiers.iter().filter(|t| {
            t.template == from.template
                && t.tier != from.tier
                && t.quality.n >= MIN_QUALITY_SAMPLES
                && t.cost_per_request() < from.cost_per_request()
        }) {
            let Ok(cmp) = welch_t_test(from.quality, to.quality, ALPHA) else {
                continue;
            };
            if cmp.difference_ci.0 < -NON_INFERIORITY_MARGIN {
                continue;
            }
            let se = (from.quality.variance() / from.quality.n as f64
                + to.quality.variance() / to.quality.n as f64)
                .sqrt();
            let confidence = non_inferiority_confidence(cmp.difference, se, cmp.df.unwrap_or(0.0));
            if best
                .as_ref()
                .is_none_or(|(b, _, _)| to.cost_per_request() < b.cost_per_request())
            {
                best = Some((to, cmp, confidence));
            }
        }
        let Some((to, cmp, confidence)) = best else {
            continue;
        };
        let scope = from.template.as_deref().unwrap_or("");
        let per_day = inputs.per_day(from.requests);
        let saved = (from.cost_per_request() - to.cost_per_request()) * per_day;
        let where_ = match &from.template {
            None => format!("tier `{}`", from.tier),
            Some(t) => format!("template `{t}` (tier `{}`)", from.tier),
        };
        let apply = match &from.template {
            None => Apply::Rollout {
                variant: to.tier.clone(),
                control: from.tier.clone(),
                plan: rollout_plan(from, to, &cmp),
            },
            Some(t) => Apply::Manual {
                reason: format!(
                    "the entry tier is chosen per request, not per template: send `\"dol\": {{\"tier\": \"{}\"}}` with template `{t}`'s requests, or roll the tier flag out for every request",
                    to.tier
                ),
            },
        };
        out.push(Recommendation {
            id: recommendation_id(Kind::CheaperTier, &[scope, &from.tier, &to.tier]),
            kind: Kind::CheaperTier,
            title: format!(
                "Route {where_} to tier `{}`: ${:.2}/day cheaper at the same quality",
                to.tier, saved
            ),
            subject: json!({"template": from.template, "tier": from.tier, "to": to.tier}),
            evidence: json!({
                "test": "welch-t (non-inferiority)",
                "margin": NON_INFERIORITY_MARGIN,
                "samples": {"current": from.quality.n, "cheaper": to.quality.n},
                "quality": {"current": round(cmp.control, 3), "cheaper": round(cmp.treatment, 3)},
                "difference": round(cmp.difference, 3),
                "interval": [round(cmp.difference_ci.0, 3), round(cmp.difference_ci.1, 3)],
                "pValue": round(cmp.p_value, 6),
                "df": cmp.df.map(|d| round(d, 2)),
                "costPerRequestUsd": {"current": from.cost_per_request(), "cheaper": to.cost_per_request()},
                "requests": {"current": from.requests, "cheaper": to.requests},
            }),
            impact: Impact {
                usd_per_day: Some(round(saved, 4)),
                latency_ms: Some(round(to.mean_latency() - from.mean_latency(), 1)),
                quality: Some(round(cmp.difference, 3)),
                requests_per_day: round(per_day, 1),
            },
            confidence: round(confidence, 4),
            apply,
        });
    }
    out
}

/// The guarded rollout of `to` replacing `from`: quality may not fall below
/// the current tier's observed mean minus the larger of the margin and the
/// interval's half-width; the error rate may not rise more than 2 points
/// over control's. A breach rolls back.
pub fn rollout_plan(
    from: &TierStats,
    to: &TierStats,
    cmp: &crate::experiments::stats::Comparison,
) -> Value {
    let half = (cmp.difference_ci.1 - cmp.difference_ci.0) / 2.0;
    let floor = (cmp.control - half.max(NON_INFERIORITY_MARGIN)).clamp(0.0, 10.0);
    // Enough samples to judge a guard, but reachable within the first step
    // of traffic the evidence came from.
    let min = (from.quality.n.min(to.quality.n) / 4).clamp(5, 100);
    json!({
        "variant": to.tier,
        "control": from.tier,
        "steps": [{"percent": 25, "hold": "1h"}, {"percent": 50, "hold": "1h"}, {"percent": 100}],
        "min_samples": min,
        "guards": [
            {"metric": "quality", "threshold": round(floor, 3), "window": "1h", "min_samples": min},
            {"metric": "error_rate", "vs": "control", "threshold": 0.02, "window": "1h", "min_samples": min}
        ],
        "on_breach": "rollback"
    })
}

fn manual_model(provider: &str, model: &str) -> Apply {
    Apply::Manual {
        reason: format!(
            "a catalog change has no guarded rollout: move `{provider}/{model}` to another tier or remove it with PUT/DELETE /admin/models/{provider}/{model}"
        ),
    }
}

/// Models whose error rate or p95 latency makes them the wrong default.
fn model_defaults(inputs: &Inputs) -> Vec<Recommendation> {
    let mut out = Vec::new();
    for m in &inputs.models {
        let mut rest = Agg::default();
        for o in inputs
            .models
            .iter()
            .filter(|o| (&o.provider, &o.model) != (&m.provider, &m.model))
        {
            rest.add(&o.agg);
        }
        if m.agg.requests < MIN_MODEL_SAMPLES || rest.requests < MIN_MODEL_SAMPLES {
            continue;
        }
        let name = format!("{}/{}", m.provider, m.model);
        let per_day = inputs.per_day(m.agg.requests);
        // Error rate.
        let (mine, others) = (
            ProportionSample {
                n: m.agg.requests,
                successes: m.agg.errors,
            },
            ProportionSample {
                n: rest.requests,
                successes: rest.errors,
            },
        );
        if let Ok(cmp) = two_proportion_z_test(others, mine, ALPHA)
            && cmp.difference > 0.0
            && cmp.p_value < ALPHA_STRICT
            && mine.rate() >= MIN_ERROR_RATE
        {
            out.push(Recommendation {
                id: recommendation_id(Kind::ErrorRate, &[&m.provider, &m.model]),
                kind: Kind::ErrorRate,
                title: format!(
                    "`{name}` fails {:.0} % of requests (rest: {:.1} %): it is the wrong default",
                    mine.rate() * 100.0,
                    others.rate() * 100.0
                ),
                subject: json!({"provider": m.provider, "model": m.model}),
                evidence: json!({
                    "test": "two-proportion z",
                    "samples": {"model": mine.n, "rest": others.n},
                    "errorRate": {"model": round(mine.rate(), 4), "rest": round(others.rate(), 4)},
                    "difference": round(cmp.difference, 4),
                    "interval": [round(cmp.difference_ci.0, 4), round(cmp.difference_ci.1, 4)],
                    "z": round(cmp.statistic, 3),
                    "pValue": cmp.p_value,
                }),
                impact: Impact {
                    usd_per_day: None,
                    latency_ms: None,
                    quality: None,
                    requests_per_day: round(per_day * cmp.difference, 1),
                },
                confidence: round(1.0 - cmp.p_value, 6),
                apply: manual_model(&m.provider, &m.model),
            });
        }
        // p95 latency: the share of the model's requests slower than the
        // rest's p95 against the rest's own share (≤ 5 % by definition).
        let (Some(p95), Some(rest_p95)) = (m.agg.percentile_ms(0.95), rest.percentile_ms(0.95))
        else {
            continue;
        };
        if (p95 as f64) < SLOW_FACTOR * rest_p95 as f64 {
            continue;
        }
        let slower = |a: &Agg| slower_than(a, rest_p95);
        let (mine, others) = (
            ProportionSample {
                n: m.agg.requests,
                successes: slower(&m.agg),
            },
            ProportionSample {
                n: rest.requests,
                successes: slower(&rest),
            },
        );
        if let Ok(cmp) = two_proportion_z_test(others, mine, ALPHA)
            && cmp.difference > 0.0
            && cmp.p_value < ALPHA_STRICT
        {
            out.push(Recommendation {
                id: recommendation_id(Kind::SlowModel, &[&m.provider, &m.model]),
                kind: Kind::SlowModel,
                title: format!("`{name}` has a p95 of {p95} ms (rest: {rest_p95} ms): it is the wrong default"),
                subject: json!({"provider": m.provider, "model": m.model}),
                evidence: json!({
                    "test": "two-proportion z (share slower than the rest's p95)",
                    "samples": {"model": mine.n, "rest": others.n},
                    "p95Ms": {"model": p95, "rest": rest_p95},
                    "slowerShare": {"model": round(mine.rate(), 4), "rest": round(others.rate(), 4)},
                    "interval": [round(cmp.difference_ci.0, 4), round(cmp.difference_ci.1, 4)],
                    "z": round(cmp.statistic, 3),
                    "pValue": cmp.p_value,
                }),
                impact: Impact {
                    usd_per_day: None,
                    latency_ms: Some(rest_p95 as f64 - p95 as f64),
                    quality: None,
                    requests_per_day: round(per_day, 1),
                },
                confidence: round(1.0 - cmp.p_value, 6),
                apply: manual_model(&m.provider, &m.model),
            });
        }
    }
    out
}

/// Requests of `a` in latency buckets whose lower bound is at or above
/// `bound_ms` (the histogram cannot split a bucket).
fn slower_than(a: &Agg, bound_ms: u64) -> u64 {
    let bounds = crate::gateway::telemetry::LATENCY_BUCKETS_MS;
    a.buckets
        .iter()
        .enumerate()
        .filter(|(i, _)| *i > 0 && bounds.get(i - 1).is_some_and(|lo| *lo >= bound_ms))
        .map(|(_, n)| *n)
        .sum()
}

/// Templates whose scored answers fall below the threshold too often.
fn low_quality_templates(inputs: &Inputs) -> Vec<Recommendation> {
    let mut per: std::collections::BTreeMap<&str, (u64, u64, MeanSample, u64)> = Default::default();
    for t in &inputs.tiers {
        let Some(name) = t.template.as_deref() else {
            continue;
        };
        let e = per
            .entry(name)
            .or_insert((0, 0, MeanSample::from_values(&[]), 0));
        e.0 += t.quality.n;
        e.1 += t.below;
        e.2.n += t.quality.n;
        e.2.sum += t.quality.sum;
        e.2.sum_sq += t.quality.sum_sq;
        e.3 += t.requests;
    }
    let mut out = Vec::new();
    for (name, (n, below, quality, requests)) in per {
        if n < MIN_QUALITY_SAMPLES {
            continue;
        }
        let share = ProportionSample {
            n,
            successes: below,
        };
        let (lo, hi) = share.wilson_interval(ALPHA);
        if lo <= MAX_BELOW_SHARE {
            continue;
        }
        let z = (share.rate() - MAX_BELOW_SHARE)
            / (MAX_BELOW_SHARE * (1.0 - MAX_BELOW_SHARE) / n as f64).sqrt();
        out.push(Recommendation {
            id: recommendation_id(Kind::LowQualityTemplate, &[name]),
            kind: Kind::LowQualityTemplate,
            title: format!(
                "Template `{name}`: {:.0} % of answers score below {}",
                share.rate() * 100.0,
                inputs.quality_threshold
            ),
            subject: json!({"template": name}),
            evidence: json!({
                "test": "wilson interval (share below the quality threshold)",
                "samples": n,
                "below": below,
                "share": round(share.rate(), 4),
                "interval": [round(lo, 4), round(hi, 4)],
                "limit": MAX_BELOW_SHARE,
                "qualityThreshold": inputs.quality_threshold,
                "meanQuality": round(quality.mean(), 3),
            }),
            impact: Impact {
                usd_per_day: None,
                latency_ms: None,
                quality: Some(round(inputs.quality_threshold - quality.mean(), 3)),
                requests_per_day: round(inputs.per_day(requests), 1),
            },
            confidence: round(normal_cdf(z), 6),
            apply: Apply::Manual {
                reason: format!(
                    "a prompt needs a person: rewrite template `{name}` (PUT /admin/templates/{name}) or send its requests to a higher tier"
                ),
            },
        });
    }
    out
}

/// Catalog models without a price.
fn unpriced_models(inputs: &Inputs) -> Vec<Recommendation> {
    inputs
        .unpriced
        .iter()
        .map(|u| Recommendation {
            id: recommendation_id(Kind::UnpricedModel, &[&u.provider, &u.model]),
            kind: Kind::UnpricedModel,
            title: format!(
                "`{}/{}` has no price: its {} requests cost an unknown amount",
                u.provider, u.model, u.requests
            ),
            subject: json!({"provider": u.provider, "model": u.model}),
            evidence: json!({"test": "none (catalog fact)", "samples": u.requests}),
            impact: Impact {
                usd_per_day: None,
                latency_ms: None,
                quality: None,
                requests_per_day: round(inputs.per_day(u.requests), 1),
            },
            confidence: 1.0,
            apply: Apply::Manual {
                reason: format!(
                    "DOL cannot know a price: set it with PUT /admin/models/{}/{} (input_usd_per_1m, output_usd_per_1m)",
                    u.provider, u.model
                ),
            },
        })
        .collect()
}

/// The cache TTL, when requests repeat a prompt after its entry expired too
/// often.
fn cache_ttl(inputs: &Inputs) -> Option<Recommendation> {
    let r = &inputs.repeats;
    if r.requests < MIN_REPEAT_SAMPLES || r.suggested_ttl_secs <= inputs.cache_ttl_secs {
        return None;
    }
    let share = ProportionSample {
        n: r.requests,
        successes: r.missed,
    };
    let (lo, hi) = share.wilson_interval(ALPHA);
    if lo <= MIN_MISSED_SHARE {
        return None;
    }
    let z = (share.rate() - MIN_MISSED_SHARE)
        / (MIN_MISSED_SHARE * (1.0 - MIN_MISSED_SHARE) / r.requests as f64).sqrt();
    let (from, to) = (inputs.cache_ttl_secs, r.suggested_ttl_secs);
    Some(Recommendation {
        id: recommendation_id(Kind::CacheTtl, &[]),
        kind: Kind::CacheTtl,
        title: format!(
            "Raise the cache TTL from {from} s to {to} s: {:.0} % of requests repeat a prompt after its entry expired",
            share.rate() * 100.0
        ),
        subject: json!({"variable": "gateway_cache_ttl_secs", "from": from, "to": to}),
        evidence: json!({
            "test": "wilson interval (share of requests repeating an expired prompt)",
            "samples": r.requests,
            "missed": r.missed,
            "share": round(share.rate(), 4),
            "interval": [round(lo, 4), round(hi, 4)],
            "limit": MIN_MISSED_SHARE,
        }),
        impact: Impact {
            usd_per_day: Some(round(
                r.missed_cost_micros as f64 / 1e6 * inputs.per_day(1),
                4,
            )),
            latency_ms: None,
            quality: None,
            requests_per_day: round(inputs.per_day(r.missed), 1),
        },
        confidence: round(normal_cdf(z), 6),
        apply: Apply::Manual {
            reason: format!(
                "the TTL is the Spin variable gateway_cache_ttl_secs, read at deploy time: set it to {to} and redeploy"
            ),
        },
    })
}
