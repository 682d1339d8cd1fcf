//! Per-request telemetry: the record each generation writes, and the minute
//! aggregate it is folded into so the write path stays one insert and one
//! upsert. Health, alerts and rollouts read the aggregates (per tier,
//! provider, model, outcome and flag variant).

use serde::{Deserialize, Serialize};

use super::engine::Generation;
use super::tiers::Tier;

/// Upper bounds (ms) of the latency histogram buckets; the last bucket is `+Inf`.
pub const LATENCY_BUCKETS_MS: [u64; 11] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 120_000,
];

/// Index of the latency bucket for `ms` (`LATENCY_BUCKETS_MS.len()` = `+Inf`).
pub fn latency_bucket(ms: u64) -> usize {
    LATENCY_BUCKETS_MS
        .iter()
        .position(|&le| ms <= le)
        .unwrap_or(LATENCY_BUCKETS_MS.len())
}

/// Everything recorded about one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Request id (`chatcmpl-…`).
    pub id: String,
    /// Unix ms at the start.
    pub ts_ms: u64,
    /// API key id (`-` when keys are not required).
    pub key_id: String,
    /// `chat` or `generate:<template>@<version>`.
    pub route: String,
    /// Tier that answered.
    pub tier: Tier,
    /// Tier the request entered at.
    pub entry_tier: Tier,
    /// Provider that answered.
    pub provider: String,
    /// Model that answered.
    pub model: String,
    /// Provider attempts.
    pub attempts: u32,
    /// Total latency, ms.
    pub latency_ms: u64,
    /// Time to first streamed token, ms.
    pub ttft_ms: Option<u64>,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Cost, micro-dollars; `None` = unknown.
    pub cost_micros: Option<u64>,
    /// Quality 0–10.
    pub quality: Option<f64>,
    /// `success`, `low_quality`, `offline`, `stream_aborted`, `client_gone`, `cache_hit`.
    pub outcome: String,
    /// Tiers descended below the entry tier.
    pub fallbacks: u32,
    /// Served from the cache.
    pub cached: bool,
    /// Streamed.
    pub stream: bool,
    /// The flag variant that chose the entry tier (`-` when none).
    pub variant: String,
    /// Attempts and quality dimensions as JSON, for drill-down.
    pub detail: serde_json::Value,
}

impl RequestRecord {
    /// The record of a finished generation.
    #[allow(
        clippy::too_many_arguments,
        reason = "a record of many independent facts"
    )]
    pub fn from_generation(
        g: &Generation,
        id: &str,
        ts_ms: u64,
        key_id: &str,
        route: &str,
        entry_tier: Tier,
        latency_ms: u64,
        stream: bool,
        variant: &str,
    ) -> Self {
        Self {
            id: id.to_owned(),
            ts_ms,
            key_id: key_id.to_owned(),
            route: route.to_owned(),
            tier: g.info.tier,
            entry_tier,
            provider: g.info.provider.clone(),
            model: g.info.model.clone(),
            attempts: g.info.attempts,
            latency_ms,
            ttft_ms: g.ttft_ms,
            prompt_tokens: g.usage.prompt_tokens,
            completion_tokens: g.usage.completion_tokens,
            cost_micros: g.info.cost_micros.filter(|_| !g.info.cost_unknown),
            quality: g.info.quality,
            outcome: g.outcome.as_str().to_owned(),
            fallbacks: g.fallbacks,
            cached: false,
            stream,
            variant: variant.to_owned(),
            detail: serde_json::json!({
                "attempts": g.attempts,
                "quality": g.quality,
            }),
        }
    }

    /// Whether the request counts as an error for error-rate purposes: no
    /// provider answer (offline fallback, or `failed`: an embeddings request
    /// whose pinned model failed everywhere) or a broken stream.
    pub fn is_error(&self) -> bool {
        matches!(
            self.outcome.as_str(),
            "offline" | "failed" | "stream_aborted"
        )
    }

    /// The minute (Unix seconds, multiple of 60) the record belongs to.
    pub fn minute(&self) -> u64 {
        let s = self.ts_ms / 1_000;
        s - s % 60
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_are_inclusive_upper_bounds() {
        assert_eq!(latency_bucket(0), 0);
        assert_eq!(latency_bucket(50), 0);
        assert_eq!(latency_bucket(51), 1);
        assert_eq!(latency_bucket(120_000), 10);
        assert_eq!(latency_bucket(120_001), 11);
    }
}
