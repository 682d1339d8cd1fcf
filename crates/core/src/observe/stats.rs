//! Rolling-window telemetry aggregates.
//!
//! The write path records each generation into a [`WindowStats`] slot (one
//! per minute, say) with integer counters and a fixed-bucket
//! [`LatencyHistogram`]; reads merge the slots of a window and turn them into
//! a [`Summary`]. Every field merges by addition (or `max`), so merging is
//! associative and commutative and slots can be combined in any order.
//!
//! Quality is kept in thousandths and cost in micro-dollars so sums stay exact
//! integers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Upper bounds (inclusive, milliseconds) of the latency buckets. A final
/// overflow bucket holds everything above the last bound.
///
/// These are the gateway's stored `usage_minute` buckets (`l0..l72`): one
/// bucket definition, so a histogram built here and the one `/metrics`
/// exports from storage have the same `le` bounds.
pub const LATENCY_BOUNDS_MS: [u64; crate::gateway::telemetry::LATENCY_BUCKETS_MS.len()] =
    crate::gateway::telemetry::LATENCY_BUCKETS_MS;

/// Number of buckets, the overflow bucket included.
pub const BUCKETS: usize = LATENCY_BOUNDS_MS.len() + 1;

/// Why a compact histogram string was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HistogramParseError {
    /// The string does not start with the `h1:` version prefix.
    #[error("histogram: unknown format (expected prefix `h2:`)")]
    Version,
    /// The string does not have the `counts|sum|max` shape.
    #[error("histogram: expected `h2:<counts>|<sum>|<max>`")]
    Shape,
    /// A number did not parse.
    #[error("histogram: `{0}` is not a non-negative integer")]
    Number(String),
    /// More bucket counts than [`BUCKETS`].
    #[error("histogram: more than {BUCKETS} bucket counts")]
    TooManyBuckets,
    /// The counts, sum and maximum contradict each other.
    #[error("histogram: inconsistent counts, sum and maximum")]
    Inconsistent,
}

/// A fixed-bucket latency histogram (bounds in [`LATENCY_BOUNDS_MS`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencyHistogram {
    /// Per-bucket counts (not cumulative); index `BUCKETS - 1` is overflow.
    pub counts: crate::gateway::telemetry::LatencyCounts,
    /// Sum of all recorded latencies, milliseconds.
    pub sum_ms: u64,
    /// Largest recorded latency, milliseconds (0 when empty).
    pub max_ms: u64,
}

impl LatencyHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self::default()
    }

    /// The bucket index for a latency.
    pub fn bucket_of(latency_ms: u64) -> usize {
        LATENCY_BOUNDS_MS
            .iter()
            .position(|&b| latency_ms <= b)
            .unwrap_or(BUCKETS - 1)
    }

    /// Records one latency.
    pub fn record(&mut self, latency_ms: u64) {
        let i = Self::bucket_of(latency_ms);
        if let Some(c) = self.counts.get_mut(i) {
            *c = c.saturating_add(1);
        }
        self.sum_ms = self.sum_ms.saturating_add(latency_ms);
        self.max_ms = self.max_ms.max(latency_ms);
    }

    /// Adds another histogram into this one.
    pub fn merge(&mut self, other: &Self) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a = a.saturating_add(*b);
        }
        self.sum_ms = self.sum_ms.saturating_add(other.sum_ms);
        self.max_ms = self.max_ms.max(other.max_ms);
    }

    /// Total number of recorded latencies.
    pub fn count(&self) -> u64 {
        self.counts.iter().fold(0u64, |a, c| a.saturating_add(*c))
    }

    /// The `q` quantile (0.0–1.0), as the gateway reads it
    /// ([`crate::gateway::telemetry::latency_percentile`]: within 10 % from
    /// 1 ms to 5 minutes), capped at the observed maximum (so the overflow
    /// bucket reports the maximum). `None` when empty. Non-decreasing in `q`.
    pub fn percentile(&self, q: f64) -> Option<u64> {
        let estimate = crate::gateway::telemetry::latency_percentile(self.counts.as_slice(), q)?;
        // The overflow bucket only knows "at least the last bound": the
        // maximum is the better answer there.
        let overflow = self.counts.last().is_some_and(|c| *c > 0)
            && estimate == LATENCY_BOUNDS_MS.last().copied().unwrap_or(0)
            && self.max_ms > estimate;
        Some(if overflow {
            self.max_ms
        } else {
            estimate.min(self.max_ms)
        })
    }

    /// Compact text form (`h2`: the log-spaced buckets): `h2:` then the bucket counts separated by commas
    /// (trailing zero buckets left out), `|` the sum, `|` the maximum.
    /// An empty histogram is `h2:|0|0`.
    pub fn to_compact(&self) -> String {
        let used = self
            .counts
            .iter()
            .rposition(|&c| c != 0)
            .map_or(0, |i| i + 1);
        let counts: Vec<String> = self.counts.iter().take(used).map(u64::to_string).collect();
        format!("h2:{}|{}|{}", counts.join(","), self.sum_ms, self.max_ms)
    }

    /// Parses [`to_compact`](Self::to_compact) output.
    pub fn from_compact(s: &str) -> Result<Self, HistogramParseError> {
        let rest = s.strip_prefix("h2:").ok_or(HistogramParseError::Version)?;
        let mut parts = rest.split('|');
        let (Some(counts), Some(sum), Some(max), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(HistogramParseError::Shape);
        };
        let num = |t: &str| {
            t.parse::<u64>()
                .map_err(|_| HistogramParseError::Number(t.to_owned()))
        };
        let mut h = Self::new();
        if !counts.is_empty() {
            for (i, t) in counts.split(',').enumerate() {
                let slot = h
                    .counts
                    .get_mut(i)
                    .ok_or(HistogramParseError::TooManyBuckets)?;
                *slot = num(t)?;
            }
        }
        h.sum_ms = num(sum)?;
        h.max_ms = num(max)?;
        // An empty histogram with a sum or maximum cannot come from `record`.
        if h.count() == 0 && (h.sum_ms != 0 || h.max_ms != 0) {
            return Err(HistogramParseError::Inconsistent);
        }
        Ok(h)
    }

    /// Cumulative `(upper bound ms, count)` pairs, ending with `None` for
    /// the `+Inf` bucket, for Prometheus exposition.
    pub fn cumulative(&self) -> Vec<(Option<u64>, u64)> {
        let mut acc = 0u64;
        self.counts
            .iter()
            .enumerate()
            .map(|(i, c)| {
                acc = acc.saturating_add(*c);
                (LATENCY_BOUNDS_MS.get(i).copied(), acc)
            })
            .collect()
    }
}

/// One finished generation request, as the gateway reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// End-to-end latency, milliseconds.
    pub latency_ms: u64,
    /// Whether the request succeeded (a fallback that succeeded counts).
    pub ok: bool,
    /// Whether a fallback provider or tier served it.
    pub fallback: bool,
    /// Whether it was answered from cache.
    pub cache_hit: bool,
    /// Quality score (1–5) if one was measured.
    pub quality: Option<f64>,
    /// Cost in micro-dollars (1e-6 USD).
    pub cost_micros: u64,
}

/// Mergeable counters for one slot or window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowStats {
    /// Requests recorded.
    pub total: u64,
    /// Requests that succeeded.
    pub successes: u64,
    /// Requests served by a fallback.
    pub fallbacks: u64,
    /// Requests answered from cache.
    pub cache_hits: u64,
    /// Sum of quality scores, in thousandths.
    pub quality_milli_sum: u64,
    /// Number of requests with a quality score.
    pub quality_count: u64,
    /// Sum of costs, micro-dollars.
    pub cost_micros: u64,
    /// Latency distribution.
    pub latency: LatencyHistogram,
}

impl WindowStats {
    /// Empty stats.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one request.
    pub fn record(&mut self, s: &Sample) {
        self.total = self.total.saturating_add(1);
        self.successes = self.successes.saturating_add(u64::from(s.ok));
        self.fallbacks = self.fallbacks.saturating_add(u64::from(s.fallback));
        self.cache_hits = self.cache_hits.saturating_add(u64::from(s.cache_hit));
        if let Some(q) = s.quality.filter(|q| q.is_finite() && *q >= 0.0) {
            // Rounded to thousandths so sums stay integers and merge exactly.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let milli = (q * 1000.0).round() as u64;
            self.quality_milli_sum = self.quality_milli_sum.saturating_add(milli);
            self.quality_count = self.quality_count.saturating_add(1);
        }
        self.cost_micros = self.cost_micros.saturating_add(s.cost_micros);
        self.latency.record(s.latency_ms);
    }

    /// Adds another slot into this one.
    pub fn merge(&mut self, o: &Self) {
        self.total = self.total.saturating_add(o.total);
        self.successes = self.successes.saturating_add(o.successes);
        self.fallbacks = self.fallbacks.saturating_add(o.fallbacks);
        self.cache_hits = self.cache_hits.saturating_add(o.cache_hits);
        self.quality_milli_sum = self.quality_milli_sum.saturating_add(o.quality_milli_sum);
        self.quality_count = self.quality_count.saturating_add(o.quality_count);
        self.cost_micros = self.cost_micros.saturating_add(o.cost_micros);
        self.latency.merge(&o.latency);
    }

    /// The derived figures.
    pub fn summary(&self) -> Summary {
        let rate = |n: u64| {
            if self.total == 0 {
                0.0
            } else {
                n as f64 / self.total as f64
            }
        };
        Summary {
            total: self.total,
            success_rate: rate(self.successes),
            error_rate: rate(self.total.saturating_sub(self.successes)),
            fallback_rate: rate(self.fallbacks),
            cache_hit_rate: rate(self.cache_hits),
            p50_ms: self.latency.percentile(0.50),
            p95_ms: self.latency.percentile(0.95),
            p99_ms: self.latency.percentile(0.99),
            avg_quality: (self.quality_count > 0)
                .then(|| self.quality_milli_sum as f64 / 1000.0 / self.quality_count as f64),
            cost_usd: self.cost_micros as f64 / 1_000_000.0,
        }
    }
}

/// The start of the slot holding `ts_ms` for slots `slot_ms` wide.
pub fn slot_start(ts_ms: i64, slot_ms: i64) -> i64 {
    if slot_ms <= 0 {
        return ts_ms;
    }
    ts_ms.div_euclid(slot_ms) * slot_ms
}

/// Merges the slots whose start lies in `(now_ms - window_ms, now_ms]`.
pub fn rollup<'a>(
    slots: impl IntoIterator<Item = (i64, &'a WindowStats)>,
    now_ms: i64,
    window_ms: i64,
) -> WindowStats {
    let from = now_ms.saturating_sub(window_ms);
    let mut out = WindowStats::new();
    for (start, s) in slots {
        if start > from && start <= now_ms {
            out.merge(s);
        }
    }
    out
}

/// Stats broken down by a key such as `provider`, `provider/model` or `tier`.
pub type Breakdown = BTreeMap<String, WindowStats>;

/// Merges `other` into `into`, key by key (keys missing on one side are
/// taken as empty), so per-provider/model/tier slots roll up like totals.
pub fn merge_breakdown(into: &mut Breakdown, other: &Breakdown) {
    for (k, v) in other {
        into.entry(k.clone()).or_default().merge(v);
    }
}

/// Figures derived from a [`WindowStats`]; rates are fractions 0.0–1.0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Requests in the window.
    pub total: u64,
    /// Successes / total (0 when empty).
    pub success_rate: f64,
    /// Failures / total (0 when empty).
    pub error_rate: f64,
    /// Fallbacks / total.
    pub fallback_rate: f64,
    /// Cache hits / total.
    pub cache_hit_rate: f64,
    /// Median latency (from the histogram, within 10 %), ms.
    pub p50_ms: Option<u64>,
    /// 95th percentile latency, ms.
    pub p95_ms: Option<u64>,
    /// 99th percentile latency, ms.
    pub p99_ms: Option<u64>,
    /// Mean quality, if any request had one.
    pub avg_quality: Option<f64>,
    /// Cost sum, USD.
    pub cost_usd: f64,
}

/// Direction of change between two windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Trend {
    /// Better on some measure, worse on none.
    Improving,
    /// No change beyond the tolerance, or too few samples.
    Stable,
    /// Worse on at least one measure.
    Degrading,
}

/// What counts as a change when comparing windows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrendTolerance {
    /// Each window needs at least this many requests, else the trend is
    /// [`Trend::Stable`].
    pub min_samples: u64,
    /// Error-rate change that counts, as a fraction (0.02 = 2 points).
    pub error_rate: f64,
    /// Relative p95 change that counts (0.10 = 10 %) …
    pub p95_relative: f64,
    /// … and it must also be at least this many milliseconds.
    pub p95_min_ms: u64,
    /// Average-quality change that counts (on the 1–5 scale).
    pub quality: f64,
}

impl Default for TrendTolerance {
    fn default() -> Self {
        Self {
            min_samples: 20,
            error_rate: 0.02,
            p95_relative: 0.10,
            p95_min_ms: 50,
            quality: 0.10,
        }
    }
}

/// Compares `current` with `previous`: a measure degrades when error rate
/// rises, p95 rises or average quality falls by more than the tolerance (p95
/// must pass both the relative and the absolute bound); it improves on the
/// opposite change. Any degradation makes the trend [`Trend::Degrading`];
/// otherwise any improvement makes it [`Trend::Improving`]; otherwise, or
/// with fewer than `min_samples` in either window, [`Trend::Stable`].
pub fn trend(previous: &Summary, current: &Summary, tol: &TrendTolerance) -> Trend {
    if previous.total < tol.min_samples || current.total < tol.min_samples {
        return Trend::Stable;
    }
    let mut worse = false;
    let mut better = false;
    let d_err = current.error_rate - previous.error_rate;
    worse |= d_err > tol.error_rate;
    better |= d_err < -tol.error_rate;
    if let (Some(a), Some(b)) = (previous.p95_ms, current.p95_ms) {
        let diff = b.abs_diff(a);
        let rel = diff as f64 / a.max(1) as f64;
        if diff >= tol.p95_min_ms && rel > tol.p95_relative {
            worse |= b > a;
            better |= b < a;
        }
    }
    if let (Some(a), Some(b)) = (previous.avg_quality, current.avg_quality) {
        worse |= b - a < -tol.quality;
        better |= b - a > tol.quality;
    }
    if worse {
        Trend::Degrading
    } else if better {
        Trend::Improving
    } else {
        Trend::Stable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(latency_ms: u64, ok: bool) -> Sample {
        Sample {
            latency_ms,
            ok,
            fallback: false,
            cache_hit: false,
            quality: None,
            cost_micros: 0,
        }
    }

    #[test]
    fn buckets_are_inclusive_upper_bounds() {
        assert_eq!(LatencyHistogram::bucket_of(0), 0);
        assert_eq!(LatencyHistogram::bucket_of(1), 1);
        assert_eq!(LatencyHistogram::bucket_of(11), 11);
        assert_eq!(LatencyHistogram::bucket_of(12), 11);
        assert_eq!(LatencyHistogram::bucket_of(301_268), BUCKETS - 1);
        // The same buckets as the stored usage_minute histogram.
        for ms in [0, 50, 51, 999, 1_000, 119_999, 120_000, 120_001, u64::MAX] {
            assert_eq!(
                LatencyHistogram::bucket_of(ms),
                crate::gateway::telemetry::latency_bucket(ms)
            );
        }
    }

    #[test]
    fn percentiles_are_within_10_percent_and_capped_at_max() {
        let mut h = LatencyHistogram::new();
        assert_eq!(h.percentile(0.5), None);
        for ms in [3, 8, 20, 40, 90, 200, 400, 900, 2_000, 4_000] {
            h.record(ms);
        }
        let near = |q: f64, exact: f64| {
            let read = h.percentile(q).unwrap() as f64;
            assert!(
                (read - exact).abs() <= 0.1 * exact,
                "q={q}: {read} vs {exact}"
            );
        };
        near(0.5, 90.0);
        near(0.95, 4_000.0);
        near(0.0, 3.0);
        // Past the last bound, the observed maximum is the answer.
        h.record(900_000);
        assert_eq!(h.percentile(1.0), Some(900_000));
        // Never above the maximum seen.
        let mut one = LatencyHistogram::new();
        one.record(19);
        assert!(one.percentile(0.5).unwrap() <= 19);
    }

    #[test]
    fn compact_form_round_trips_and_rejects_garbage() {
        let mut h = LatencyHistogram::new();
        assert_eq!(h.to_compact(), "h2:|0|0");
        assert_eq!(LatencyHistogram::from_compact("h2:|0|0"), Ok(h.clone()));
        h.record(7);
        h.record(7);
        h.record(12);
        assert_eq!(h.to_compact(), "h2:0,0,0,0,0,0,0,2,0,0,0,1|26|12");
        assert_eq!(LatencyHistogram::from_compact(&h.to_compact()), Ok(h));
        assert_eq!(
            LatencyHistogram::from_compact("h1:|0|0"),
            Err(HistogramParseError::Version)
        );
        assert_eq!(
            LatencyHistogram::from_compact("h2:1|2"),
            Err(HistogramParseError::Shape)
        );
        assert_eq!(
            LatencyHistogram::from_compact("h2:x|0|0"),
            Err(HistogramParseError::Number("x".into()))
        );
        assert_eq!(
            LatencyHistogram::from_compact(&format!("h2:{}|0|0", vec!["0"; BUCKETS + 1].join(","))),
            Err(HistogramParseError::TooManyBuckets)
        );
        assert_eq!(
            LatencyHistogram::from_compact("h2:|5|0"),
            Err(HistogramParseError::Inconsistent)
        );
    }

    #[test]
    fn summary_rates_quality_and_cost() {
        let mut w = WindowStats::new();
        assert_eq!(w.summary().success_rate, 0.0);
        w.record(&Sample {
            quality: Some(4.0),
            cost_micros: 1_500,
            cache_hit: true,
            ..sample(10, true)
        });
        w.record(&Sample {
            quality: Some(3.0),
            fallback: true,
            cost_micros: 500,
            ..sample(20, true)
        });
        w.record(&sample(30, false));
        w.record(&Sample {
            quality: Some(f64::NAN),
            ..sample(40, true)
        });
        let s = w.summary();
        assert_eq!(s.total, 4);
        assert_eq!(s.success_rate, 0.75);
        assert_eq!(s.error_rate, 0.25);
        assert_eq!(s.fallback_rate, 0.25);
        assert_eq!(s.cache_hit_rate, 0.25);
        assert_eq!(s.avg_quality, Some(3.5));
        assert!((s.cost_usd - 0.002).abs() < 1e-12);
        // 10, 20, 30, 40 ms: the median is 20 ms, read within 10 %.
        assert!(
            s.p50_ms.is_some_and(|p| (18..=22).contains(&p)),
            "{:?}",
            s.p50_ms
        );
    }

    #[test]
    fn rollup_takes_only_slots_in_window() {
        let mut a = WindowStats::new();
        a.record(&sample(1, true));
        let mut b = WindowStats::new();
        b.record(&sample(1, false));
        let slots = [(0, &a), (60_000, &b), (120_000, &a)];
        let w = rollup(slots, 120_000, 60_000);
        assert_eq!(w.total, 1);
        let w = rollup(slots, 120_000, 120_000);
        assert_eq!((w.total, w.successes), (2, 1));
        assert_eq!(slot_start(125_000, 60_000), 120_000);
        assert_eq!(slot_start(-1, 60_000), -60_000);
        assert_eq!(slot_start(7, 0), 7);
    }

    fn summ(total: u64, err: f64, p95: u64, q: f64) -> Summary {
        Summary {
            total,
            success_rate: 1.0 - err,
            error_rate: err,
            fallback_rate: 0.0,
            cache_hit_rate: 0.0,
            p50_ms: Some(p95 / 2),
            p95_ms: Some(p95),
            p99_ms: Some(p95),
            avg_quality: Some(q),
            cost_usd: 0.0,
        }
    }

    #[test]
    fn trend_rules() {
        let t = TrendTolerance::default();
        let base = summ(100, 0.05, 1_000, 4.0);
        assert_eq!(trend(&base, &base, &t), Trend::Stable);
        // Small moves inside the tolerance are stable.
        assert_eq!(
            trend(&base, &summ(100, 0.06, 1_090, 3.95), &t),
            Trend::Stable
        );
        assert_eq!(
            trend(&base, &summ(100, 0.08, 1_000, 4.0), &t),
            Trend::Degrading
        );
        assert_eq!(
            trend(&base, &summ(100, 0.05, 1_200, 4.0), &t),
            Trend::Degrading
        );
        assert_eq!(
            trend(&base, &summ(100, 0.05, 1_000, 3.8), &t),
            Trend::Degrading
        );
        assert_eq!(
            trend(&base, &summ(100, 0.01, 1_000, 4.0), &t),
            Trend::Improving
        );
        assert_eq!(
            trend(&base, &summ(100, 0.05, 800, 4.0), &t),
            Trend::Improving
        );
        assert_eq!(
            trend(&base, &summ(100, 0.05, 1_000, 4.3), &t),
            Trend::Improving
        );
        // Worse on one measure wins over better on another.
        assert_eq!(
            trend(&base, &summ(100, 0.01, 1_500, 4.0), &t),
            Trend::Degrading
        );
        // p95 needs the absolute bound too.
        let fast = summ(100, 0.05, 10, 4.0);
        assert_eq!(trend(&fast, &summ(100, 0.05, 30, 4.0), &t), Trend::Stable);
        // Too few samples.
        assert_eq!(
            trend(&summ(5, 0.0, 1, 4.0), &summ(5, 1.0, 9_000, 1.0), &t),
            Trend::Stable
        );
    }

    #[test]
    fn breakdowns_merge_per_key() {
        let mut a = WindowStats::new();
        a.record(&sample(10, true));
        let mut x = Breakdown::new();
        x.insert("openai".into(), a.clone());
        let mut y = Breakdown::new();
        y.insert("openai".into(), a.clone());
        y.insert("anthropic".into(), a);
        merge_breakdown(&mut x, &y);
        assert_eq!(x["openai"].total, 2);
        assert_eq!(x["anthropic"].total, 1);
    }

    #[test]
    fn trend_serialises_upper_case() {
        assert_eq!(
            serde_json::to_string(&Trend::Improving).unwrap(),
            "\"IMPROVING\""
        );
    }
}
