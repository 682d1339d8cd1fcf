//! Savings: what a request would have cost on a baseline, and the saved
//! share of an aggregate.
//!
//! The baseline is one catalog model, configurable with the
//! `gateway_savings_baseline` variable (`provider/model`). Unset, it is the
//! comprehensive tier's reference model: its **cheapest priced** entry, so the
//! claimed saving is the least one could honestly claim against "always send
//! it to a comprehensive model". Each answered request is priced at the
//! baseline for its own prompt and completion tokens; a cache hit cost
//! nothing and is still priced at the baseline (the cache saved that).
//!
//! Aggregates sum `baseline_micros` as the baseline where it is known and the
//! request's own cost where it is not, so an unpriced baseline never shows up
//! as a saving.

use serde::Serialize;

use crate::gateway::cost::request_cost;
use crate::gateway::routing::CatalogEntry;
use crate::gateway::tiers::Tier;

/// The baseline model for savings: the entry named `configured`
/// (`provider/model`) when there is one, else the cheapest priced
/// comprehensive chat entry (not an embedding model) of a provider in `enabled` (all providers when
/// `enabled` is empty), priced for 1 000 input and 1 000 output tokens, ties
/// by key. `None` when neither exists.
pub fn baseline_entry<'a>(
    catalog: &'a [CatalogEntry],
    configured: &str,
    enabled: &[&str],
) -> Option<&'a CatalogEntry> {
    let configured = configured.trim();
    if !configured.is_empty() {
        return catalog.iter().find(|e| e.key() == configured);
    }
    catalog
        .iter()
        .filter(|e| e.tier == Tier::Comprehensive)
        .filter(|e| enabled.is_empty() || enabled.contains(&e.provider.as_str()))
        // Embedding and image models sit in tiers too, but never answer a chat.
        .filter(|e| crate::gateway::catalog::is_chat(e))
        .filter_map(|e| {
            request_cost(1_000, 1_000, e.input_price, e.output_price)
                .micros()
                .map(|c| (c, e.key(), e))
        })
        .min_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)))
        .map(|(_, _, e)| e)
}

/// The baseline cost of `prompt` and `completion` tokens, micro-dollars;
/// `None` without a baseline or when its price is unknown.
pub fn baseline_cost(baseline: Option<&CatalogEntry>, prompt: u64, completion: u64) -> Option<u64> {
    let e = baseline?;
    request_cost(prompt, completion, e.input_price, e.output_price).micros()
}

/// What a request adds to an aggregate's baseline: its baseline cost if
/// known, else its own known cost (saving nothing), else 0.
pub fn baseline_contribution(baseline_micros: Option<u64>, cost_micros: Option<u64>) -> u64 {
    baseline_micros.or(cost_micros).unwrap_or(0)
}

/// Cost against baseline for one group of requests, in USD.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Savings {
    /// Known cost, USD.
    pub cost_usd: f64,
    /// Baseline cost of the same tokens, USD.
    pub baseline_cost_usd: f64,
    /// `baseline − cost`, USD (negative when DOL spent more than the baseline).
    pub saved_usd: f64,
    /// `saved / baseline × 100`; `None` when the baseline cost is 0.
    pub saved_pct: Option<f64>,
}

/// Savings of `cost_micros` against `baseline_micros`.
pub fn savings(cost_micros: u64, baseline_micros: u64) -> Savings {
    // Differences in micro-dollars first (exact integers), then USD.
    let saved = i128::from(baseline_micros) - i128::from(cost_micros);
    Savings {
        cost_usd: micros_usd(cost_micros),
        baseline_cost_usd: micros_usd(baseline_micros),
        saved_usd: saved as f64 / 1_000_000.0,
        saved_pct: (baseline_micros > 0).then(|| saved as f64 / baseline_micros as f64 * 100.0),
    }
}

/// Micro-dollars as USD.
pub fn micros_usd(micros: u64) -> f64 {
    micros as f64 / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    fn entry(provider: &str, model: &str, tier: Tier, price: Option<(u64, u64)>) -> CatalogEntry {
        CatalogEntry {
            provider: provider.into(),
            model: model.into(),
            input_price: price.map(|p| p.0),
            output_price: price.map(|p| p.1),
            context_window: 128_000,
            capabilities: BTreeSet::new(),
            tier,
            image_prices: Default::default(),
        }
    }

    fn catalog() -> Vec<CatalogEntry> {
        vec![
            entry(
                "openai",
                "gpt-4o",
                Tier::Comprehensive,
                Some((2_500_000, 10_000_000)),
            ),
            entry(
                "anthropic",
                "opus",
                Tier::Comprehensive,
                Some((15_000_000, 75_000_000)),
            ),
            entry("x", "unpriced", Tier::Comprehensive, None),
            CatalogEntry {
                capabilities: BTreeSet::from(["embeddings".to_owned()]),
                ..entry("openai", "embed", Tier::Comprehensive, Some((130_000, 0)))
            },
            entry(
                "openai",
                "gpt-4o-mini",
                Tier::Enhanced,
                Some((150_000, 600_000)),
            ),
        ]
    }

    #[test]
    fn the_default_baseline_is_the_cheapest_priced_comprehensive_model() {
        let c = catalog();
        assert_eq!(baseline_entry(&c, "", &[]).unwrap().key(), "openai/gpt-4o");
        assert_eq!(
            baseline_entry(&c, " anthropic/opus ", &[]).unwrap().key(),
            "anthropic/opus"
        );
        assert!(baseline_entry(&c, "nope/nope", &[]).is_none());
        assert!(
            baseline_entry(&c[2..4], "", &[]).is_none(),
            "no priced comprehensive model"
        );
        // Only the enabled providers' models are the default baseline.
        assert_eq!(
            baseline_entry(&c, "", &["anthropic"]).unwrap().key(),
            "anthropic/opus"
        );
        assert!(baseline_entry(&c, "", &["gemini"]).is_none());
    }

    #[test]
    fn baseline_cost_prices_the_same_tokens() {
        let c = catalog();
        let b = baseline_entry(&c, "", &[]);
        // 1000 in at $2.50/1M = 2500 µ$, 500 out at $10/1M = 5000 µ$.
        assert_eq!(baseline_cost(b, 1_000, 500), Some(7_500));
        assert_eq!(baseline_cost(None, 1_000, 500), None);
        assert_eq!(baseline_cost(c.get(2), 1_000, 500), None);
        assert_eq!(baseline_contribution(None, Some(40)), 40);
        assert_eq!(baseline_contribution(Some(90), Some(40)), 90);
        assert_eq!(baseline_contribution(None, None), 0);
    }

    #[test]
    fn savings_by_hand() {
        let s = savings(250_000, 1_000_000);
        assert_eq!(s.cost_usd, 0.25);
        assert_eq!(s.baseline_cost_usd, 1.0);
        assert_eq!(s.saved_usd, 0.75);
        assert_eq!(s.saved_pct, Some(75.0));
        let worse = savings(1_500_000, 1_000_000);
        assert_eq!(worse.saved_usd, -0.5);
        assert_eq!(worse.saved_pct, Some(-50.0));
        assert_eq!(savings(0, 0).saved_pct, None);
        assert_eq!(savings(u64::MAX, 0).saved_usd, -(u64::MAX as f64) / 1e6);
        assert_eq!(
            serde_json::to_value(savings(1, 4)).unwrap(),
            serde_json::json!({"costUsd": 1e-6, "baselineCostUsd": 4e-6, "savedUsd": 3e-6, "savedPct": 75.0})
        );
    }

    proptest! {
        #[test]
        fn saved_plus_cost_is_the_baseline(cost in 0u64..1u64 << 50, baseline in 0u64..1u64 << 50) {
            let s = savings(cost, baseline);
            prop_assert!((s.saved_usd + s.cost_usd - s.baseline_cost_usd).abs() < 1e-6);
            if let Some(pct) = s.saved_pct {
                prop_assert!(pct <= 100.0);
                prop_assert_eq!(pct >= 0.0, cost <= baseline);
            }
        }

        #[test]
        fn savings_of_parts_add_up(parts in proptest::collection::vec((0u64..1 << 30, 0u64..1 << 30), 1..20)) {
            let cost: u64 = parts.iter().map(|p| p.0).sum();
            let baseline: u64 = parts.iter().map(|p| p.1).sum();
            let total = savings(cost, baseline).saved_usd;
            let sum: f64 = parts.iter().map(|p| savings(p.0, p.1).saved_usd).sum();
            prop_assert!((total - sum).abs() < 1e-6);
        }

        #[test]
        fn the_baseline_cost_grows_with_tokens(a in 0u64..1 << 24, b in 0u64..1 << 24, extra in 1u64..1 << 20) {
            let c = catalog();
            let base = baseline_entry(&c, "", &[]);
            prop_assert!(baseline_cost(base, a, b) <= baseline_cost(base, a + extra, b));
            prop_assert!(baseline_cost(base, a, b) <= baseline_cost(base, a, b + extra));
        }
    }
}
