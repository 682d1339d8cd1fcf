//! `bench/savings`: a fixed, seeded workload of prompts of mixed difficulty
//! served by three policies against **simulated** model profiles (known true
//! quality, price and latency per difficulty — no real provider is called):
//!
//! * **DOL**: `optimize::selection::difficulty` classifies the prompt,
//!   `select_tier` picks the entry tier from what it has learned so far, the
//!   gateway's own `routing::route` ranks that tier's models, the answer's
//!   automatic score (true quality plus scorer noise) feeds both back
//!   (`ObservedStats::observe`, `QualityTable::observe`); costs come from
//!   `cost::request_cost`, the saving from `optimize::savings`.
//! * **always-comprehensive**: DOL's default before issue 16 — entry at the
//!   comprehensive tier, ranked by the same `routing::route`.
//! * **always-cheapest**: the cheapest model for everything.
//!
//! One attempt per request (no retries or tier fallback): the bench measures
//! the choice. `cargo bench -p dol-core --bench savings` (or `bench/savings`).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use dol_core::gateway::cost::{request_cost, usd_per_million};
use dol_core::gateway::pipeline::ROUTING_ALPHA;
use dol_core::gateway::routing::{
    Candidate, CatalogEntry, ObservedStats, RouteRequest, RoutingWeights, route,
};
use dol_core::gateway::text::approx_tokens;
use dol_core::gateway::tiers::Tier;
use dol_core::optimize::anomaly::synthetic::Rng;
use dol_core::optimize::savings::savings;
use dol_core::optimize::selection::{
    Accuracy, Difficulty, QualityTable, SelectionConfig, cheapest_meeting, difficulty, select_tier,
};

const SEED: u64 = 16;
const PROMPTS: usize = 3_000;
const THRESHOLD: f64 = 7.0;

/// A simulated model: catalog entry, true mean quality and mean latency per
/// difficulty (easy, medium, hard). The prices are list prices of real models
/// of each class (USD per 1M input/output tokens: a nano, a mini, a
/// 4o-class and an opus-class model); qualities and latencies are made up. The prices are list prices of real models
/// of each class (USD per 1M input/output tokens: a nano, a mini, a
/// 4o-class and an opus-class model); qualities and latencies are made up.
struct Profile {
    entry: CatalogEntry,
    quality: [f64; 3],
    latency_ms: [f64; 3],
}

fn profile(
    provider: &str,
    model: &str,
    tier: Tier,
    usd: (f64, f64),
    quality: [f64; 3],
    latency_ms: [f64; 3],
) -> Profile {
    Profile {
        entry: CatalogEntry {
            provider: provider.into(),
            model: model.into(),
            input_price: usd_per_million(usd.0),
            output_price: usd_per_million(usd.1),
            context_window: 128_000,
            capabilities: BTreeSet::new(),
            tier,
            image_prices: Default::default(),
        },
        quality,
        latency_ms,
    }
}

fn profiles() -> Vec<Profile> {
    vec![
        profile(
            "sim",
            "small",
            Tier::Basic,
            (0.10, 0.40),
            [8.9, 6.2, 4.0],
            [300.0, 900.0, 1_800.0],
        ),
        profile(
            "sim",
            "mid",
            Tier::Enhanced,
            (0.40, 1.60),
            [9.0, 8.7, 6.0],
            [500.0, 1_500.0, 3_000.0],
        ),
        profile(
            "sim",
            "large",
            Tier::Comprehensive,
            (2.50, 10.00),
            [9.1, 8.9, 8.7],
            [800.0, 2_500.0, 6_000.0],
        ),
        profile(
            "sim",
            "large-b",
            Tier::Comprehensive,
            (15.0, 75.0),
            [9.2, 9.0, 8.8],
            [1_200.0, 3_500.0, 9_000.0],
        ),
    ]
}

const EASY: [&str; 6] = [
    "What is the capital of {}?",
    "Translate 'good morning' into {}.",
    "How many days are in {}?",
    "Who wrote {}?",
    "Spell {} backwards.",
    "Is {} a noun or a verb?",
];
const MEDIUM: [&str; 6] = [
    "Summarize the following notes about {} in three bullet points: the team met, agreed on scope, and set a date.",
    "Explain how {} works to a new engineer.",
    "Write a function that parses {} dates in Python.",
    "Compare {} with its closest alternative in a short table.",
    "Rewrite this paragraph about {} in a friendlier tone.",
    "Draft a short email announcing {} to customers.",
];
const HARD: [&str; 6] = [
    "Prove that the scheduling algorithm for {} is optimal, step by step.",
    "Design a distributed architecture for {} and discuss every trade-off.",
    "Derive the time complexity of the {} solver and its edge cases.",
    "Design a lock-free queue for {} and prove its concurrency guarantees.",
    "Optimize the {} pipeline: derive the bottleneck formally, then propose changes.",
    "Step by step, prove the invariants of the {} state machine under concurrency.",
];
const TOPICS: [&str; 8] = [
    "Norway",
    "Kubernetes",
    "invoices",
    "Rust",
    "the ledger",
    "Spanish",
    "February",
    "Dune",
];

struct Prompt {
    text: String,
    truth: Difficulty,
    output_tokens: u64,
}

fn workload() -> Vec<Prompt> {
    let mut rng = Rng::new(SEED);
    (0..PROMPTS)
        .map(|_| {
            let r = rng.unit();
            let (truth, bank, out) = if r < 0.5 {
                (Difficulty::Easy, &EASY, 40.0)
            } else if r < 0.8 {
                (Difficulty::Medium, &MEDIUM, 250.0)
            } else {
                (Difficulty::Hard, &HARD, 700.0)
            };
            let template = bank[(rng.unit() * bank.len() as f64) as usize];
            let topic = TOPICS[(rng.unit() * TOPICS.len() as f64) as usize];
            Prompt {
                text: template.replace("{}", topic),
                truth,
                output_tokens: (out * rng.range(0.6, 1.4)) as u64,
            }
        })
        .collect()
}

#[derive(Default)]
struct Totals {
    cost_micros: u64,
    quality_sum: f64,
    below: u64,
    n: u64,
    accuracy: Accuracy,
    per_model: BTreeMap<String, u64>,
}

enum Policy {
    Dol,
    AlwaysComprehensive,
    AlwaysCheapest,
}

fn run(policy: &Policy, prompts: &[Prompt], models: &[Profile]) -> Totals {
    let mut rng = Rng::new(SEED ^ 0xD01);
    let mut stats: BTreeMap<String, ObservedStats> = BTreeMap::new();
    let mut table = QualityTable::default();
    let config = SelectionConfig {
        threshold: THRESHOLD,
        ..SelectionConfig::default()
    };
    let weights = RoutingWeights::default();
    let mut t = Totals::default();
    for (i, p) in prompts.iter().enumerate() {
        let input_tokens = approx_tokens(&p.text) + 3;
        let guess = difficulty(&p.text);
        let tier = match policy {
            Policy::Dol => select_tier(
                &table,
                guess,
                &[Tier::Basic, Tier::Enhanced, Tier::Comprehensive],
                &config,
            )
            .map_or(Tier::Comprehensive, |s| s.0),
            Policy::AlwaysComprehensive => Tier::Comprehensive,
            Policy::AlwaysCheapest => Tier::Basic,
        };
        let candidates: Vec<Candidate<'_>> = models
            .iter()
            .map(|m| Candidate {
                entry: &m.entry,
                stats: stats.get(&m.entry.key()),
                breaker: None,
            })
            .collect();
        let request = RouteRequest {
            tier: Some(tier),
            input_tokens,
            output_tokens: p.output_tokens,
            ..RouteRequest::default()
        };
        let decision = route(&candidates, &request, &weights, i as u64 * 1_000);
        let chosen = &models[decision.ranked[0].index];
        let d = p.truth as usize;
        let truth = (chosen.quality[d] + 0.6 * rng.normal()).clamp(0.0, 10.0);
        let score = (truth + 0.5 * rng.normal()).clamp(0.0, 10.0);
        let latency = (chosen.latency_ms[d] * rng.range(0.7, 1.5)) as u64;
        stats.entry(chosen.entry.key()).or_default().observe(
            ROUTING_ALPHA,
            latency,
            true,
            Some(score),
        );
        table.observe(tier, guess, score);
        let cost = request_cost(
            input_tokens,
            p.output_tokens,
            chosen.entry.input_price,
            chosen.entry.output_price,
        );
        t.cost_micros += cost.micros().unwrap_or(0);
        t.quality_sum += truth;
        t.below += u64::from(truth < THRESHOLD);
        t.n += 1;
        *t.per_model.entry(chosen.entry.model.clone()).or_default() += 1;
        let known: Vec<(String, f64, f64)> = models
            .iter()
            .map(|m| {
                let c = request_cost(
                    input_tokens,
                    p.output_tokens,
                    m.entry.input_price,
                    m.entry.output_price,
                );
                (
                    m.entry.key(),
                    c.micros().unwrap_or(u64::MAX) as f64,
                    m.quality[d],
                )
            })
            .collect();
        t.accuracy
            .count(&chosen.entry.key(), cheapest_meeting(&known, THRESHOLD));
    }
    t
}

fn main() {
    // `cargo bench` passes `--bench`; a filter that excludes "savings" skips the run.
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"savings".contains(a.as_str()))
    {
        return;
    }
    let models = profiles();
    let prompts = workload();
    let classified = prompts
        .iter()
        .filter(|p| difficulty(&p.text) == p.truth)
        .count();
    println!(
        "bench/savings: {} prompts (seed {SEED}), simulated profiles, threshold {THRESHOLD}; difficulty classified right for {:.1} %",
        prompts.len(),
        100.0 * classified as f64 / prompts.len() as f64
    );
    let comprehensive = run(&Policy::AlwaysComprehensive, &prompts, &models);
    println!(
        "{:<22} {:>10} {:>9} {:>12} {:>12} {:>10}  models",
        "policy", "cost USD", "vs comp.", "mean quality", "below 7.0", "accuracy"
    );
    for (name, policy) in [
        ("DOL", Policy::Dol),
        ("always-comprehensive", Policy::AlwaysComprehensive),
        ("always-cheapest", Policy::AlwaysCheapest),
    ] {
        let t = run(&policy, &prompts, &models);
        let s = savings(t.cost_micros, comprehensive.cost_micros);
        let mean = t.quality_sum / t.n as f64;
        let comp_mean = comprehensive.quality_sum / comprehensive.n as f64;
        println!(
            "{:<22} {:>10.4} {:>8.1}% {:>6.3} ({:>5.1}%) {:>11.1}% {:>9.1}%  {:?}",
            name,
            s.cost_usd,
            -s.saved_pct.unwrap_or(0.0),
            mean,
            100.0 * mean / comp_mean,
            100.0 * t.below as f64 / t.n as f64,
            100.0 * t.accuracy.rate().unwrap_or(0.0),
            t.per_model
        );
    }
}
