//! Per-request telemetry: the record each generation writes, and the minute
//! aggregate it is folded into so the write path stays one insert and one
//! upsert. Health, alerts and rollouts read the aggregates (per tier,
//! provider, model, outcome and flag variant).

use serde::{Deserialize, Serialize};

use super::engine::Generation;
use super::tiers::Tier;
use crate::optimize::selection::Difficulty;

/// How many latency bounds there are (the histogram has one more bucket,
/// `+Inf`).
pub const LATENCY_BOUND_COUNT: usize = 72;

/// Upper bounds (ms, inclusive) of the latency histogram buckets; the last
/// bucket is `+Inf`. Every millisecond up to 10 ms, then each bound 18 %
/// above the one before, up to 301 267 ms (just over 5 minutes): a bucket's
/// midpoint is then within 10 % of every latency it holds, so a percentile
/// read from the histogram ([`latency_percentile`]) is within 10 % of the
/// exact one from 1 ms to 5 minutes.
pub const LATENCY_BUCKETS_MS: [u64; LATENCY_BOUND_COUNT] = latency_bounds();

const fn latency_bounds() -> [u64; LATENCY_BOUND_COUNT] {
    let mut bounds = [0u64; LATENCY_BOUND_COUNT];
    let mut i = 1;
    while i < LATENCY_BOUND_COUNT {
        let previous = bounds[i - 1];
        bounds[i] = if previous < 10 {
            previous + 1
        } else {
            // ceil(previous × 1.18), in integers.
            (previous * 118).div_ceil(100)
        };
        i += 1;
    }
    bounds
}

/// Number of histogram buckets, `+Inf` included.
pub const LATENCY_BUCKETS: usize = LATENCY_BOUND_COUNT + 1;

/// Counts per latency bucket (the last `+Inf`). A newtype because arrays
/// this long have no `Default` or serde impls of their own; it derefs to
/// the array. Serialized as a list of counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LatencyCounts(pub [u64; LATENCY_BUCKETS]);

impl Default for LatencyCounts {
    fn default() -> Self {
        Self([0; LATENCY_BUCKETS])
    }
}

impl std::ops::Deref for LatencyCounts {
    type Target = [u64; LATENCY_BUCKETS];

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for LatencyCounts {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Serialize for LatencyCounts {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter())
    }
}

impl<'de> Deserialize<'de> for LatencyCounts {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let counts = Vec::<u64>::deserialize(deserializer)?;
        if counts.len() > LATENCY_BUCKETS {
            return Err(serde::de::Error::invalid_length(
                counts.len(),
                &"at most one count per latency bucket",
            ));
        }
        let mut out = Self::default();
        out.0[..counts.len()].copy_from_slice(&counts);
        Ok(out)
    }
}

/// Index of the latency bucket for `ms` (`LATENCY_BUCKETS_MS.len()` = `+Inf`).
pub fn latency_bucket(ms: u64) -> usize {
    LATENCY_BUCKETS_MS.partition_point(|&le| le < ms)
}

/// `usage_minute`'s histogram columns, by bucket index (the last `+Inf`).
const LATENCY_COLUMNS: [&str; LATENCY_BUCKETS] = [
    "l0", "l1", "l2", "l3", "l4", "l5", "l6", "l7", "l8", "l9", "l10", "l11", "l12", "l13", "l14",
    "l15", "l16", "l17", "l18", "l19", "l20", "l21", "l22", "l23", "l24", "l25", "l26", "l27",
    "l28", "l29", "l30", "l31", "l32", "l33", "l34", "l35", "l36", "l37", "l38", "l39", "l40",
    "l41", "l42", "l43", "l44", "l45", "l46", "l47", "l48", "l49", "l50", "l51", "l52", "l53",
    "l54", "l55", "l56", "l57", "l58", "l59", "l60", "l61", "l62", "l63", "l64", "l65", "l66",
    "l67", "l68", "l69", "l70", "l71", "l72",
];

/// The stored column of bucket `index` in `usage_minute` (`l0` … `l72`;
/// an index past `+Inf` is `+Inf`'s). A fixed list, so a column name spliced
/// into SQL can only ever be one of these.
pub fn latency_column(index: usize) -> &'static str {
    LATENCY_COLUMNS
        .get(index)
        .or(LATENCY_COLUMNS.last())
        .copied()
        .unwrap_or("l72")
}

/// The `q` quantile (0.0–1.0) of a latency histogram (`counts` in bucket
/// order, the last `+Inf`), in ms: the bucket holding the nearest-rank
/// sample (`ceil(q·n)`-th smallest), read as the geometric middle of the
/// integers it holds — within 10 % of that sample from 1 ms to 5 minutes. The `+Inf`
/// bucket reads as the last bound ("at least"). `None` when empty.
/// Non-decreasing in `q`.
pub fn latency_percentile(counts: &[u64], q: f64) -> Option<u64> {
    let n = counts.iter().fold(0u64, |a, c| a.saturating_add(*c));
    if n == 0 {
        return None;
    }
    let q = if q.is_nan() { 0.0 } else { q.clamp(0.0, 1.0) };
    // Rank 1 at q = 0 keeps the minimum meaningful; precision loss in the
    // cast only matters beyond 2^53 samples.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
    let mut seen = 0u64;
    let index = counts
        .iter()
        .position(|c| {
            seen = seen.saturating_add(*c);
            seen >= rank
        })
        .unwrap_or(counts.len().saturating_sub(1));
    let Some(&high) = LATENCY_BUCKETS_MS.get(index) else {
        return LATENCY_BUCKETS_MS.last().copied();
    };
    let low = index
        .checked_sub(1)
        .and_then(|i| LATENCY_BUCKETS_MS.get(i))
        .map_or(0, |bound| bound + 1);
    // The geometric middle of the integers low..=high, rounded: within
    // √1.18 − 1 ≈ 8.6 % of any of them (plus at most half a millisecond,
    // which the single-millisecond buckets below 10 ms make exact).
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let middle = ((low as f64) * (high as f64)).sqrt().round() as u64;
    Some(middle.clamp(low, high))
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
    /// The same tokens at the savings baseline's price, micro-dollars
    /// (`None` = no priced baseline; see [`crate::optimize::savings`]).
    #[serde(default)]
    pub baseline_cost_micros: Option<u64>,
    /// How hard the prompt looked ([`crate::optimize::selection::difficulty`]),
    /// for chat-family requests that let DOL choose the model; what the
    /// selection table is learned from.
    #[serde(default)]
    pub difficulty: Option<Difficulty>,
    /// The end user the client named (OpenAI `user`), if any. Written with
    /// the row in the settlement's transaction (erasure by subject finds the
    /// request by it); listings do not read it back, the request's detail
    /// shows it (`privacy::request_extras`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
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
            baseline_cost_micros: None,
            difficulty: None,
            subject: None,
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
        is_error_outcome(&self.outcome)
    }

    /// The minute (Unix seconds, multiple of 60) the record belongs to.
    pub fn minute(&self) -> u64 {
        let s = self.ts_ms / 1_000;
        s - s % 60
    }
}

/// Whether a request `outcome` counts as an error (offline, failed, or a
/// stream aborted midway).
pub fn is_error_outcome(outcome: &str) -> bool {
    matches!(outcome, "offline" | "failed" | "stream_aborted")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_are_inclusive_upper_bounds() {
        assert_eq!(latency_bucket(0), 0);
        assert_eq!(latency_bucket(1), 1);
        assert_eq!(latency_bucket(10), 10);
        assert_eq!(latency_bucket(11), 11);
        assert_eq!(latency_bucket(12), 11);
        assert_eq!(latency_bucket(13), 12);
        assert_eq!(latency_bucket(301_267), LATENCY_BOUND_COUNT - 1);
        assert_eq!(latency_bucket(301_268), LATENCY_BOUND_COUNT);
        assert_eq!(latency_bucket(u64::MAX), LATENCY_BOUND_COUNT);
        assert_eq!(latency_column(latency_bucket(u64::MAX)), "l72");
        for i in 0..LATENCY_BUCKETS {
            assert_eq!(latency_column(i), format!("l{i}"));
        }
    }

    fn histogram(samples: &[u64]) -> Vec<u64> {
        let mut counts = vec![0u64; LATENCY_BUCKETS];
        for &ms in samples {
            counts[latency_bucket(ms)] += 1;
        }
        counts
    }

    /// The exact nearest-rank percentile of `samples`.
    fn exact(samples: &[u64], q: f64) -> u64 {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }

    #[test]
    fn bounds_are_increasing_and_reach_five_minutes() {
        assert!(LATENCY_BUCKETS_MS.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(LATENCY_BUCKETS_MS[0], 0);
        assert!(LATENCY_BUCKETS_MS[LATENCY_BOUND_COUNT - 2] < 300_000);
        assert!(LATENCY_BUCKETS_MS[LATENCY_BOUND_COUNT - 1] >= 300_000);
    }

    #[test]
    fn every_latency_from_1_ms_to_5_minutes_reads_back_within_10_percent() {
        for ms in 1..=300_000u64 {
            let read = latency_percentile(&histogram(&[ms]), 0.5).unwrap();
            let error = (read as f64 - ms as f64).abs() / ms as f64;
            assert!(
                error <= 0.10,
                "{ms} ms read as {read} ms ({:.1} %)",
                error * 100.0
            );
        }
    }

    #[test]
    fn percentiles_of_known_samples_are_within_10_percent_of_the_exact_ones() {
        // 2 ms requests (the case that used to read as 50 ms), a spread of
        // fast and slow ones, and a long tail up to 4 minutes.
        let mut samples = vec![2u64; 40];
        samples.extend((1..=200).map(|i| i * 7));
        samples.extend([45_000, 90_000, 180_000, 240_000]);
        let counts = histogram(&samples);
        for q in [0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0] {
            let exact = exact(&samples, q) as f64;
            let read = latency_percentile(&counts, q).unwrap() as f64;
            assert!(
                (read - exact).abs() <= 0.10 * exact,
                "q={q}: read {read} ms, exact {exact} ms"
            );
        }
        let two_ms = histogram(&[2; 10]);
        assert_eq!(latency_percentile(&two_ms, 0.5), Some(2));
    }

    #[test]
    fn edge_cases_of_the_percentile() {
        assert_eq!(latency_percentile(&histogram(&[]), 0.5), None);
        assert_eq!(latency_percentile(&histogram(&[0]), 0.5), Some(0));
        // Beyond the last bound the histogram only knows "at least".
        assert_eq!(
            latency_percentile(&histogram(&[900_000]), 0.5),
            Some(LATENCY_BUCKETS_MS[LATENCY_BOUND_COUNT - 1])
        );
        let counts = histogram(&[1, 5, 50, 500, 5_000]);
        let mut previous = 0;
        for i in 0..=100 {
            let p = latency_percentile(&counts, f64::from(i) / 100.0).unwrap();
            assert!(p >= previous, "non-decreasing in q");
            previous = p;
        }
        assert_eq!(latency_percentile(&counts, f64::NAN), Some(1));
    }

    #[test]
    fn the_migration_moves_each_old_bucket_to_the_one_holding_its_bound() {
        // The buckets before migration 8: upper bounds in ms, then +Inf.
        const OLD_BOUNDS_MS: [u64; 11] = [
            50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 120_000,
        ];
        let sql = include_str!("../../../../migrations/0008_latency_buckets.sql");
        for (j, bound) in OLD_BOUNDS_MS.iter().enumerate() {
            let target = latency_column(latency_bucket(*bound));
            let line = sql
                .lines()
                .find(|l| l.contains(&format!(" b{j},")) || l.contains(&format!(" b{j} +")))
                .unwrap_or_else(|| panic!("b{j} is not moved"));
            assert!(
                line.trim_start()
                    .starts_with(&format!("{target} = {target} +")),
                "b{j} (<= {bound} ms) should go to {target}: {line}"
            );
        }
        // +Inf (over 120 s) reads as "at least 120 s", as before.
        assert!(sql.contains(" + b10 + b11,"));
        for i in 0..LATENCY_BUCKETS {
            assert!(sql.contains(&format!("ADD COLUMN l{i} INTEGER NOT NULL DEFAULT 0;")));
        }
    }
}
