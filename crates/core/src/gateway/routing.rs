//! The provider/model catalog, observed statistics and the routing policy.
//!
//! [`route`] filters a tier's catalog entries (capabilities, context window,
//! open circuit breakers, the request's `max_cost` / `max_latency_ms` hints)
//! and ranks the rest by a weighted score:
//!
//! `score = w_price·price + w_latency·latency + w_success·success + w_quality·quality`
//!
//! with each term in `[0, 1]`:
//! - `price = cheapest_estimated_cost / estimated_cost` over the candidates
//!   with a known price (1 for the cheapest, 1 when all are free); an unknown
//!   price scores [`RoutingWeights::unknown_price_score`];
//! - `latency = fastest_p95 / p95` over candidates with observations; without
//!   observations, [`RoutingWeights::prior_latency_score`];
//! - `success` = the EWMA success rate, or [`RoutingWeights::prior_success`];
//! - `quality` = [`ObservedStats::routing_quality`] / 10 — the EWMA of the
//!   automatic score, blended half and half with the EWMA of user feedback
//!   once a model has [`FEEDBACK_MIN_SAMPLES`] feedbacks — or
//!   [`RoutingWeights::prior_quality`].
//!
//! Ties are broken by `(provider, model)` ascending, so the order is a pure
//! function of the inputs.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::circuit::CircuitBreaker;
use super::cost::{MicrosPerMillion, request_cost};
use super::tiers::Tier;

/// One provider/model in the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogEntry {
    /// Provider name (e.g. `openai`, `anthropic`, `offline`).
    pub provider: String,
    /// Model id at the provider.
    pub model: String,
    /// Micro-dollars per 1M input tokens; `None` = unknown (never treated as free).
    pub input_price: Option<MicrosPerMillion>,
    /// Micro-dollars per 1M output tokens; `None` = unknown.
    pub output_price: Option<MicrosPerMillion>,
    /// Context window in tokens.
    pub context_window: u64,
    /// Capabilities, e.g. `json`, `streaming`, `vision`, `tools`.
    pub capabilities: BTreeSet<String>,
    /// The tier the model serves.
    pub tier: Tier,
    /// Micro-dollars per generated image by price key (`{size}/{quality}`,
    /// `{size}` or `*`; see `gateway::images::image_price`); empty for text
    /// models. A request matching no key has an unknown cost.
    #[serde(default)]
    pub image_prices: BTreeMap<String, u64>,
}

impl CatalogEntry {
    /// The stable key `provider/model`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.provider, self.model)
    }
}

/// Observed behaviour of a catalog entry, updated after every attempt.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ObservedStats {
    /// Observations so far.
    pub samples: u64,
    /// EWMA of latency, ms.
    pub latency_mean_ms: f64,
    /// EWMA of squared deviation of latency, ms².
    pub latency_var_ms2: f64,
    /// EWMA of success (1) / failure (0).
    pub success_rate: f64,
    /// EWMA of quality 0–10 (`None` until a scored answer).
    pub quality: Option<f64>,
    /// User feedback folded in (`POST /v1/feedback`).
    #[serde(default)]
    pub feedback_n: u64,
    /// EWMA of user feedback mapped to 0–10 (`None` until some arrives).
    #[serde(default)]
    pub feedback_quality: Option<f64>,
}

/// Feedback answers a model needs before they move its routing quality
/// (fewer are a handful of opinions, not evidence).
pub const FEEDBACK_MIN_SAMPLES: u64 = 5;
/// Share of user feedback in the routing quality once it has
/// [`FEEDBACK_MIN_SAMPLES`]: `(1 − w) · automatic + w · feedback`. Half:
/// users see what the automatic score cannot (facts, usefulness), the
/// automatic score sees every answer.
pub const FEEDBACK_WEIGHT: f64 = 0.5;

impl Default for ObservedStats {
    fn default() -> Self {
        Self {
            samples: 0,
            latency_mean_ms: 0.0,
            latency_var_ms2: 0.0,
            success_rate: 1.0,
            quality: None,
            feedback_n: 0,
            feedback_quality: None,
        }
    }
}

impl ObservedStats {
    /// Folds in one attempt with smoothing factor `alpha ∈ (0, 1]` (clamped).
    /// The first observation seeds the averages directly.
    pub fn observe(&mut self, alpha: f64, latency_ms: u64, success: bool, quality: Option<f64>) {
        let a = if alpha.is_nan() {
            1.0
        } else {
            alpha.clamp(0.01, 1.0)
        };
        let x = latency_ms as f64;
        let s = if success { 1.0 } else { 0.0 };
        if self.samples == 0 {
            self.latency_mean_ms = x;
            self.latency_var_ms2 = 0.0;
            self.success_rate = s;
        } else {
            // Incremental EWMA variance (West's form) keeps mean and spread in step.
            let diff = x - self.latency_mean_ms;
            let incr = a * diff;
            self.latency_mean_ms += incr;
            self.latency_var_ms2 = (1.0 - a) * (self.latency_var_ms2 + diff * incr);
            self.success_rate += a * (s - self.success_rate);
        }
        if let Some(q) = quality.filter(|q| q.is_finite()) {
            let q = q.clamp(0.0, 10.0);
            self.quality = Some(match self.quality {
                None => q,
                Some(old) => old + a * (q - old),
            });
        }
        self.samples = self.samples.saturating_add(1);
    }

    /// Folds in one user feedback, mapped to 0–10 (the normalized 0–1
    /// score × 10), with smoothing factor `alpha` (as [`Self::observe`]; the
    /// first one seeds the average). Non-finite scores are ignored.
    pub fn observe_feedback(&mut self, alpha: f64, quality: f64) {
        if !quality.is_finite() {
            return;
        }
        let a = if alpha.is_nan() {
            1.0
        } else {
            alpha.clamp(0.01, 1.0)
        };
        let q = quality.clamp(0.0, 10.0);
        self.feedback_quality = Some(match self.feedback_quality {
            None => q,
            Some(old) => old + a * (q - old),
        });
        self.feedback_n = self.feedback_n.saturating_add(1);
    }

    /// The quality routing uses, 0–10: the automatic score's EWMA blended
    /// with the feedback EWMA at [`FEEDBACK_WEIGHT`] once
    /// [`FEEDBACK_MIN_SAMPLES`] feedbacks arrived (the feedback alone while
    /// nothing was scored); the automatic EWMA before that.
    pub fn routing_quality(&self) -> Option<f64> {
        let feedback = self
            .feedback_quality
            .filter(|_| self.feedback_n >= FEEDBACK_MIN_SAMPLES);
        match (self.quality, feedback) {
            (Some(auto), Some(fb)) => Some((1.0 - FEEDBACK_WEIGHT) * auto + FEEDBACK_WEIGHT * fb),
            (None, Some(fb)) => Some(fb),
            (auto, None) => auto,
        }
    }

    /// p95 latency estimate, `mean + 1.645 σ` (normal approximation); `None` without samples.
    pub fn p95_ms(&self) -> Option<f64> {
        (self.samples > 0)
            .then(|| self.latency_mean_ms + 1.645 * self.latency_var_ms2.max(0.0).sqrt())
    }
}

/// Weights and priors of the routing score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RoutingWeights {
    /// Weight of the price term.
    pub price: f64,
    /// Weight of the latency term.
    pub latency: f64,
    /// Weight of the success-rate term.
    pub success: f64,
    /// Weight of the quality term.
    pub quality: f64,
    /// Price term of a model without a known price.
    pub unknown_price_score: f64,
    /// Latency term of a model never observed.
    pub prior_latency_score: f64,
    /// Success rate assumed for a model never observed.
    pub prior_success: f64,
    /// Quality term (0–1) assumed for a model never scored.
    pub prior_quality: f64,
}

impl Default for RoutingWeights {
    fn default() -> Self {
        Self {
            price: 0.35,
            latency: 0.2,
            success: 0.25,
            quality: 0.2,
            unknown_price_score: 0.5,
            prior_latency_score: 0.5,
            prior_success: 0.9,
            prior_quality: 0.7,
        }
    }
}

/// What the request needs.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RouteRequest {
    /// The tier being routed.
    pub tier: Option<Tier>,
    /// Estimated prompt tokens.
    pub input_tokens: u64,
    /// Expected output tokens (the request's limit, or a default).
    pub output_tokens: u64,
    /// Capabilities the model must have.
    pub capabilities: BTreeSet<String>,
    /// `max_cost` hint in micro-dollars.
    pub max_cost_micros: Option<u64>,
    /// `max_latency_ms` hint.
    pub max_latency_ms: Option<u64>,
}

impl RouteRequest {
    /// The routing needs of a chat request for `tier`: prompt tokens estimated
    /// with [`super::text::approx_tokens`], output from the request's limit or
    /// `default_output_tokens`, capabilities `json` / `streaming` / `vision` /
    /// `tools` as the request uses them, and its `dol` hints.
    pub fn from_chat(request: &super::openai::ChatRequest, tier: Tier) -> Self {
        let input_tokens = request
            .messages
            .iter()
            .map(|m| super::text::approx_tokens(&m.text_content()) + 3)
            .sum();
        let mut capabilities = BTreeSet::new();
        if request.wants_json() {
            capabilities.insert("json".to_owned());
        }
        if request.stream {
            capabilities.insert("streaming".to_owned());
        }
        if request.messages.iter().any(|m| {
            m.content
                .as_ref()
                .is_some_and(super::openai::Content::has_image)
        }) {
            capabilities.insert("vision".to_owned());
        }
        if request.passthrough.contains_key("tools") {
            capabilities.insert("tools".to_owned());
        }
        Self {
            tier: Some(tier),
            input_tokens,
            output_tokens: request.output_cap(),
            capabilities,
            max_cost_micros: request.dol.max_cost_micros(),
            max_latency_ms: request.dol.max_latency_ms,
        }
    }
}

/// A candidate with the inputs the policy needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate<'a> {
    /// The catalog entry.
    pub entry: &'a CatalogEntry,
    /// Its observed stats (`None` if never used).
    pub stats: Option<&'a ObservedStats>,
    /// Its circuit breaker (`None` = closed).
    pub breaker: Option<&'a CircuitBreaker>,
}

/// Why a candidate was not routed to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum SkipReason {
    /// Serves another tier.
    OtherTier,
    /// Lacks a required capability.
    MissingCapability {
        /// The first missing one.
        capability: String,
    },
    /// Prompt plus output do not fit the context window.
    ContextWindow,
    /// Its circuit breaker is open.
    CircuitOpen,
    /// Estimated cost above `max_cost`.
    OverBudget {
        /// Estimated micro-dollars.
        estimated_micros: u64,
    },
    /// `max_cost` was given and the price is unknown, so it cannot be honoured.
    UnknownPrice,
    /// Observed p95 latency above `max_latency_ms`.
    TooSlow {
        /// Estimated p95, ms.
        p95_ms: u64,
    },
}

/// A ranked candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredCandidate {
    /// `provider/model`.
    pub key: String,
    /// Index into the candidate slice given to [`route`].
    pub index: usize,
    /// Total score.
    pub score: f64,
    /// Estimated cost in micro-dollars (`None` = unknown).
    pub estimated_cost_micros: Option<u64>,
}

/// The routing result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteDecision {
    /// Eligible candidates, best first.
    pub ranked: Vec<ScoredCandidate>,
    /// Excluded candidates with the reason, in input order.
    pub skipped: Vec<(String, SkipReason)>,
}

fn eligibility(
    c: &Candidate<'_>,
    req: &RouteRequest,
    now_ms: u64,
) -> Result<Option<u64>, SkipReason> {
    let e = c.entry;
    if req.tier.is_some_and(|t| t != e.tier) {
        return Err(SkipReason::OtherTier);
    }
    if let Some(missing) = req
        .capabilities
        .iter()
        .find(|cap| !e.capabilities.contains(*cap))
    {
        return Err(SkipReason::MissingCapability {
            capability: missing.clone(),
        });
    }
    if req.input_tokens.saturating_add(req.output_tokens) > e.context_window {
        return Err(SkipReason::ContextWindow);
    }
    if c.breaker.is_some_and(|b| b.is_open(now_ms)) {
        return Err(SkipReason::CircuitOpen);
    }
    let estimated = request_cost(
        req.input_tokens,
        req.output_tokens,
        e.input_price,
        e.output_price,
    )
    .micros();
    if let Some(max) = req.max_cost_micros {
        match estimated {
            None => return Err(SkipReason::UnknownPrice),
            Some(est) if est > max => {
                return Err(SkipReason::OverBudget {
                    estimated_micros: est,
                });
            }
            Some(_) => {}
        }
    }
    if let (Some(max), Some(p95)) = (req.max_latency_ms, c.stats.and_then(ObservedStats::p95_ms))
        && p95 > max as f64
    {
        return Err(SkipReason::TooSlow {
            p95_ms: p95.ceil() as u64,
        });
    }
    Ok(estimated)
}

/// Ranks `candidates` for `req` at `now_ms`. Deterministic: the same inputs give the same order.
pub fn route(
    candidates: &[Candidate<'_>],
    req: &RouteRequest,
    weights: &RoutingWeights,
    now_ms: u64,
) -> RouteDecision {
    let mut skipped = Vec::new();
    let mut eligible: Vec<(usize, Option<u64>)> = Vec::new();
    for (i, c) in candidates.iter().enumerate() {
        match eligibility(c, req, now_ms) {
            Ok(est) => eligible.push((i, est)),
            Err(reason) => skipped.push((c.entry.key(), reason)),
        }
    }
    let cheapest = eligible.iter().filter_map(|(_, est)| *est).min();
    let fastest = eligible
        .iter()
        .filter_map(|(i, _)| candidates[*i].stats.and_then(ObservedStats::p95_ms))
        .fold(None, |acc: Option<f64>, p| {
            Some(acc.map_or(p, |a| a.min(p)))
        });
    let mut ranked: Vec<ScoredCandidate> = eligible
        .into_iter()
        .map(|(i, est)| {
            let c = &candidates[i];
            let price = match (est, cheapest) {
                (Some(0), _) => 1.0,
                (Some(e), Some(min)) => min as f64 / e as f64,
                _ => weights.unknown_price_score,
            };
            let stats = c.stats.filter(|s| s.samples > 0);
            let latency = match (stats.and_then(ObservedStats::p95_ms), fastest) {
                (Some(p), Some(f)) if p > 0.0 => (f / p).clamp(0.0, 1.0),
                (Some(_), _) => 1.0,
                (None, _) => weights.prior_latency_score,
            };
            let success = stats.map_or(weights.prior_success, |s| s.success_rate);
            let quality = stats
                .and_then(ObservedStats::routing_quality)
                .map_or(weights.prior_quality, |q| q / 10.0);
            let score = weights.price * price
                + weights.latency * latency
                + weights.success * success.clamp(0.0, 1.0)
                + weights.quality * quality.clamp(0.0, 1.0);
            ScoredCandidate {
                key: c.entry.key(),
                index: i,
                // NaN weights would break the order; they count as the lowest score.
                score: if score.is_nan() {
                    f64::NEG_INFINITY
                } else {
                    score
                },
                estimated_cost_micros: est,
            }
        })
        .collect();
    ranked.sort_by(|a, b| {
        let ea = candidates[a.index].entry;
        let eb = candidates[b.index].entry;
        b.score
            .total_cmp(&a.score)
            .then_with(|| ea.provider.cmp(&eb.provider))
            .then_with(|| ea.model.cmp(&eb.model))
            .then_with(|| a.index.cmp(&b.index))
    });
    RouteDecision { ranked, skipped }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::circuit::CircuitConfig;

    fn entry(provider: &str, model: &str, price: Option<u64>, tier: Tier) -> CatalogEntry {
        CatalogEntry {
            provider: provider.into(),
            model: model.into(),
            input_price: price,
            output_price: price,
            context_window: 128_000,
            capabilities: ["json".to_owned(), "streaming".to_owned()]
                .into_iter()
                .collect(),
            tier,
            image_prices: BTreeMap::new(),
        }
    }

    fn req() -> RouteRequest {
        RouteRequest {
            tier: Some(Tier::Comprehensive),
            input_tokens: 1_000,
            output_tokens: 1_000,
            ..RouteRequest::default()
        }
    }

    fn cand(e: &CatalogEntry) -> Candidate<'_> {
        Candidate {
            entry: e,
            stats: None,
            breaker: None,
        }
    }

    fn keys(d: &RouteDecision) -> Vec<&str> {
        d.ranked.iter().map(|c| c.key.as_str()).collect()
    }

    #[test]
    fn cheaper_wins_when_all_else_equal() {
        let a = entry("a", "m", Some(10_000_000), Tier::Comprehensive);
        let b = entry("b", "m", Some(1_000_000), Tier::Comprehensive);
        let d = route(&[cand(&a), cand(&b)], &req(), &RoutingWeights::default(), 0);
        assert_eq!(keys(&d), vec!["b/m", "a/m"]);
        assert_eq!(d.ranked[0].estimated_cost_micros, Some(2_000));
    }

    #[test]
    fn ties_break_by_provider_then_model() {
        let a = entry("z", "m", Some(1), Tier::Comprehensive);
        let b = entry("a", "y", Some(1), Tier::Comprehensive);
        let c = entry("a", "x", Some(1), Tier::Comprehensive);
        let d = route(
            &[cand(&a), cand(&b), cand(&c)],
            &req(),
            &RoutingWeights::default(),
            0,
        );
        assert_eq!(keys(&d), vec!["a/x", "a/y", "z/m"]);
    }

    #[test]
    fn unknown_price_is_not_free() {
        let known = entry("a", "m", Some(5_000_000), Tier::Comprehensive);
        let unknown = entry("b", "m", None, Tier::Comprehensive);
        let d = route(
            &[cand(&known), cand(&unknown)],
            &req(),
            &RoutingWeights::default(),
            0,
        );
        assert_eq!(keys(&d), vec!["a/m", "b/m"]);
        assert_eq!(d.ranked[1].estimated_cost_micros, None);
        // With a cost hint, an unknown price cannot be honoured.
        let mut r = req();
        r.max_cost_micros = Some(1_000_000);
        let d = route(
            &[cand(&known), cand(&unknown)],
            &r,
            &RoutingWeights::default(),
            0,
        );
        assert_eq!(keys(&d), vec!["a/m"]);
        assert_eq!(
            d.skipped,
            vec![("b/m".to_owned(), SkipReason::UnknownPrice)]
        );
    }

    #[test]
    fn max_cost_hint_excludes_expensive() {
        let a = entry("a", "m", Some(10_000_000), Tier::Comprehensive);
        let mut r = req();
        r.max_cost_micros = Some(19_999);
        let d = route(&[cand(&a)], &r, &RoutingWeights::default(), 0);
        assert!(d.ranked.is_empty());
        assert_eq!(
            d.skipped[0].1,
            SkipReason::OverBudget {
                estimated_micros: 20_000
            }
        );
    }

    #[test]
    fn max_latency_hint_excludes_slow() {
        let a = entry("a", "m", Some(1), Tier::Comprehensive);
        let b = entry("b", "m", Some(1), Tier::Comprehensive);
        let mut slow = ObservedStats::default();
        slow.observe(0.2, 5_000, true, None);
        let mut r = req();
        r.max_latency_ms = Some(2_000);
        let cands = [
            Candidate {
                entry: &a,
                stats: Some(&slow),
                breaker: None,
            },
            cand(&b),
        ];
        let d = route(&cands, &r, &RoutingWeights::default(), 0);
        assert_eq!(keys(&d), vec!["b/m"]);
        assert_eq!(d.skipped[0].1, SkipReason::TooSlow { p95_ms: 5_000 });
    }

    #[test]
    fn open_breaker_is_skipped_until_cooldown() {
        let a = entry("a", "m", Some(1), Tier::Comprehensive);
        let mut br = CircuitBreaker::new(CircuitConfig {
            failure_threshold: 1,
            cooldown_ms: 100,
        });
        br.record_failure(0);
        let cands = [Candidate {
            entry: &a,
            stats: None,
            breaker: Some(&br),
        }];
        let d = route(&cands, &req(), &RoutingWeights::default(), 50);
        assert_eq!(d.skipped[0].1, SkipReason::CircuitOpen);
        let d = route(&cands, &req(), &RoutingWeights::default(), 150);
        assert_eq!(d.ranked.len(), 1);
    }

    #[test]
    fn filters_tier_capability_and_context() {
        let other = entry("a", "m", Some(1), Tier::Basic);
        let mut small = entry("b", "m", Some(1), Tier::Comprehensive);
        small.context_window = 1_500;
        let plain = entry("c", "m", Some(1), Tier::Comprehensive);
        let mut r = req();
        r.capabilities.insert("vision".to_owned());
        let d = route(
            &[cand(&other), cand(&small), cand(&plain)],
            &r,
            &RoutingWeights::default(),
            0,
        );
        assert!(d.ranked.is_empty());
        assert_eq!(d.skipped[0].1, SkipReason::OtherTier);
        assert_eq!(
            d.skipped[1].1,
            SkipReason::MissingCapability {
                capability: "vision".into()
            }
        );
        r.capabilities.clear();
        let d = route(&[cand(&small)], &r, &RoutingWeights::default(), 0);
        assert_eq!(d.skipped[0].1, SkipReason::ContextWindow);
    }

    #[test]
    fn observed_success_and_quality_matter() {
        let a = entry("a", "m", Some(1_000_000), Tier::Comprehensive);
        let b = entry("b", "m", Some(1_000_000), Tier::Comprehensive);
        let mut flaky = ObservedStats::default();
        let mut solid = ObservedStats::default();
        for i in 0..10 {
            flaky.observe(0.2, 500, i % 2 == 0, Some(5.0));
            solid.observe(0.2, 500, true, Some(9.0));
        }
        let cands = [
            Candidate {
                entry: &a,
                stats: Some(&flaky),
                breaker: None,
            },
            Candidate {
                entry: &b,
                stats: Some(&solid),
                breaker: None,
            },
        ];
        let d = route(&cands, &req(), &RoutingWeights::default(), 0);
        assert_eq!(keys(&d), vec!["b/m", "a/m"]);
    }

    #[test]
    fn feedback_moves_the_routing_quality_after_enough_answers() {
        let mut s = ObservedStats::default();
        s.observe(0.2, 500, true, Some(9.0));
        assert_eq!(s.routing_quality(), Some(9.0));
        // Four thumbs down (0 on 0–10): too few to count.
        for _ in 0..4 {
            s.observe_feedback(0.2, 0.0);
        }
        assert_eq!((s.feedback_n, s.routing_quality()), (4, Some(9.0)));
        s.observe_feedback(0.2, f64::NAN);
        assert_eq!(s.feedback_n, 4);
        // The fifth: (1 − 0.5) · 9 + 0.5 · 0 = 4.5.
        s.observe_feedback(0.2, 0.0);
        assert_eq!(s.routing_quality(), Some(4.5));
        // EWMA: a thumbs up (10) after them moves the feedback to 2.
        s.observe_feedback(0.2, 10.0);
        assert_eq!(s.feedback_quality, Some(2.0));
        assert_eq!(s.routing_quality(), Some(5.5));
        // Feedback alone when nothing was scored.
        let mut only = ObservedStats::default();
        for _ in 0..5 {
            only.observe_feedback(0.2, 8.0);
        }
        assert_eq!(only.routing_quality(), Some(8.0));
        // Stored states from before feedback read without it.
        let old: ObservedStats = serde_json::from_str(
            r#"{"samples":1,"latency_mean_ms":5.0,"latency_var_ms2":0.0,"success_rate":1.0,"quality":7.0}"#,
        )
        .unwrap();
        assert_eq!((old.feedback_n, old.routing_quality()), (0, Some(7.0)));
    }

    #[test]
    fn bad_feedback_reorders_models_the_automatic_score_ties() {
        let a = entry("a", "m", Some(1_000_000), Tier::Comprehensive);
        let b = entry("b", "m", Some(1_000_000), Tier::Comprehensive);
        let mut liked = ObservedStats::default();
        let mut disliked = ObservedStats::default();
        for _ in 0..10 {
            liked.observe(0.2, 500, true, Some(8.0));
            disliked.observe(0.2, 500, true, Some(8.0));
        }
        let cands = |x: &ObservedStats, y: &ObservedStats| {
            route(
                &[
                    Candidate {
                        entry: &a,
                        stats: Some(x),
                        breaker: None,
                    },
                    Candidate {
                        entry: &b,
                        stats: Some(y),
                        breaker: None,
                    },
                ],
                &req(),
                &RoutingWeights::default(),
                0,
            )
        };
        // A tie: broken by name, `a` first.
        assert_eq!(keys(&cands(&disliked, &liked)), vec!["a/m", "b/m"]);
        for _ in 0..5 {
            disliked.observe_feedback(0.2, 0.0);
            liked.observe_feedback(0.2, 10.0);
        }
        assert_eq!(keys(&cands(&disliked, &liked)), vec!["b/m", "a/m"]);
    }

    #[test]
    fn route_request_from_chat() {
        let chat = crate::gateway::openai::ChatRequest::from_value(&serde_json::json!({
            "model": "auto",
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "what is this"},
                {"type": "image_url", "image_url": {"url": "https://x/y.png"}}
            ]}],
            "stream": true,
            "max_tokens": 64,
            "response_format": {"type": "json_object"},
            "dol": {"max_cost": 0.5, "max_latency_ms": 900}
        }))
        .unwrap();
        let r = RouteRequest::from_chat(&chat, Tier::Enhanced);
        assert_eq!(r.tier, Some(Tier::Enhanced));
        assert_eq!(r.output_tokens, 64);
        assert_eq!(r.input_tokens, 3 + 3);
        let caps: Vec<&str> = r.capabilities.iter().map(String::as_str).collect();
        assert_eq!(caps, vec!["json", "streaming", "vision"]);
        assert_eq!(r.max_cost_micros, Some(500_000));
        assert_eq!(r.max_latency_ms, Some(900));
    }

    #[test]
    fn an_empty_tool_list_routes_like_no_tools() {
        let chat = |extra: serde_json::Value| {
            let mut body = serde_json::json!({
                "model": "auto",
                "messages": [{"role": "user", "content": "hi"}],
            });
            if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
                b.extend(e.clone());
            }
            let c = crate::gateway::openai::ChatRequest::from_value(&body).unwrap();
            RouteRequest::from_chat(&c, Tier::Enhanced)
        };
        let none = chat(serde_json::json!({}));
        assert_eq!(chat(serde_json::json!({"tools": []})), none);
        assert_eq!(chat(serde_json::json!({"tools": null})), none);
        let tool = serde_json::json!({"type": "function", "function": {"name": "f"}});
        assert!(
            chat(serde_json::json!({"tools": [tool]}))
                .capabilities
                .contains("tools")
        );
    }

    #[test]
    fn ewma_stats_track_latency_and_rates() {
        let mut s = ObservedStats::default();
        assert_eq!(s.p95_ms(), None);
        s.observe(0.5, 100, true, Some(8.0));
        assert_eq!(s.p95_ms(), Some(100.0));
        s.observe(0.5, 300, false, Some(4.0));
        assert_eq!(s.latency_mean_ms, 200.0);
        assert_eq!(s.success_rate, 0.5);
        assert_eq!(s.quality, Some(6.0));
        assert!(s.p95_ms().unwrap() > 200.0);
    }
}
