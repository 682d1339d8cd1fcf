//! Reading the gateway's minute aggregates (`usage_minute`, see
//! [`crate::gateway::telemetry`]): percentiles from the latency histogram
//! buckets, the `/api/metrics` overview, the generation health inputs,
//! uptime, circuit-breaker and scan-freshness summaries, and the Prometheus
//! exposition of `GET /metrics`.
//!
//! [`super::system`] reads the rows (over [`crate::storage::SqlExecutor`])
//! and hands them in; nothing in this module does I/O.
//!
//! # Definitions
//!
//! * **Error**: outcome `offline` or `stream_aborted` (the `errors` column).
//! * **Success rate**: `(requests − errors) / requests`.
//! * **Fallback rate**: requests served below their entry tier / requests.
//!   `usage_minute.fallbacks` sums the tiers each request descended, so a
//!   row counts `min(fallbacks, requests)` fallback requests: exact while
//!   the requests of a row (same minute, tier, provider, model, outcome,
//!   variant) that fell back descended one tier each or all fell back.
//! * **Quality**: the gateway's 0–10 score; the health score works on a 1–5
//!   scale, so it gets `quality / 2`.
//! * **Percentiles**: see [`bucket_percentile`].
//! * **Uptime**: see [`uptime_from_minutes`].

use std::collections::BTreeMap;

use serde::Serialize;

use crate::gateway::circuit::CircuitState;
use crate::gateway::engine::RoutingState;
use crate::gateway::telemetry::{LATENCY_BUCKETS, LatencyCounts, latency_percentile};

use super::prometheus::{HistogramSeries, PromError, Writer};
use super::score::{ActiveAlert, ApiHealth, EmergencyState, Override, ScoreInputs};
use super::stats::{Summary, Trend, TrendTolerance, trend};

/// Number of latency buckets in `usage_minute` (`l0..l72`, the last `+Inf`).
pub const USAGE_BUCKETS: usize = LATENCY_BUCKETS;

/// The versions of [`crate::migrate::MIGRATIONS`] missing from `applied`.
pub fn missing_migrations(applied: &[i64]) -> Vec<i64> {
    crate::migrate::MIGRATIONS
        .iter()
        .map(|m| m.version)
        .filter(|v| !applied.contains(v))
        .collect()
}

/// One `usage_minute` row (or a sum of rows).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UsageRow {
    /// Unix seconds, multiple of 60.
    pub minute: i64,
    /// Tier that answered.
    pub tier: String,
    /// Provider that answered.
    pub provider: String,
    /// Model that answered.
    pub model: String,
    /// Outcome (`success`, `offline`, …).
    pub outcome: String,
    /// Flag variant (`-` when none).
    pub variant: String,
    /// The counters.
    pub agg: Agg,
}

/// Additive counters of one or more usage rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Agg {
    /// Requests.
    pub requests: u64,
    /// Offline or aborted requests.
    pub errors: u64,
    /// Requests served below their entry tier (see the module docs).
    pub fallbacks: u64,
    /// Requests answered from the cache.
    pub cache_hits: u64,
    /// Latency sum, ms.
    pub latency_sum_ms: u64,
    /// Quality sum (0–10 scale).
    pub quality_sum: f64,
    /// Scored requests.
    pub quality_n: u64,
    /// Known cost, micro-dollars.
    pub cost_micros: u64,
    /// Requests whose cost is unknown.
    pub cost_unknown: u64,
    /// The same requests at the savings baseline, micro-dollars (each
    /// request's own cost where the baseline is unknown; see
    /// [`crate::optimize::savings`]).
    pub baseline_micros: u64,
    /// Latency histogram (not cumulative), bounds in [`LATENCY_BUCKETS_MS`].
    pub buckets: LatencyCounts,
}

impl Agg {
    /// Sums the counters of `rows`.
    pub fn of<'a>(rows: impl IntoIterator<Item = &'a UsageRow>) -> Self {
        let mut a = Self::default();
        for r in rows {
            a.add(&r.agg);
        }
        a
    }

    /// Adds another aggregate.
    pub fn add(&mut self, o: &Self) {
        self.requests = self.requests.saturating_add(o.requests);
        self.errors = self.errors.saturating_add(o.errors);
        self.fallbacks = self.fallbacks.saturating_add(o.fallbacks);
        self.cache_hits = self.cache_hits.saturating_add(o.cache_hits);
        self.latency_sum_ms = self.latency_sum_ms.saturating_add(o.latency_sum_ms);
        self.quality_sum += o.quality_sum;
        self.quality_n = self.quality_n.saturating_add(o.quality_n);
        self.cost_micros = self.cost_micros.saturating_add(o.cost_micros);
        self.cost_unknown = self.cost_unknown.saturating_add(o.cost_unknown);
        self.baseline_micros = self.baseline_micros.saturating_add(o.baseline_micros);
        for (a, b) in self.buckets.iter_mut().zip(o.buckets.iter()) {
            *a = a.saturating_add(*b);
        }
    }

    fn rate(&self, n: u64) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            n as f64 / self.requests as f64
        }
    }

    /// Errors per request (0 without requests).
    pub fn error_rate(&self) -> f64 {
        self.rate(self.errors)
    }

    /// Fallback requests per request (0 without requests).
    pub fn fallback_rate(&self) -> f64 {
        self.rate(self.fallbacks)
    }

    /// Cache hits per request (0 without requests).
    pub fn cache_hit_rate(&self) -> f64 {
        self.rate(self.cache_hits)
    }

    /// The `q` quantile of the latency histogram, ms (see [`bucket_percentile`]).
    pub fn percentile_ms(&self, q: f64) -> Option<u64> {
        bucket_percentile(&self.buckets, q)
    }

    /// Mean quality on the gateway's 0–10 scale.
    pub fn avg_quality(&self) -> Option<f64> {
        (self.quality_n > 0).then(|| self.quality_sum / self.quality_n as f64)
    }

    /// The figures as a [`Summary`] (for [`trend`] and the health score);
    /// its `avg_quality` is on the 1–5 scale (`quality / 2`).
    pub fn summary(&self) -> Summary {
        Summary {
            total: self.requests,
            success_rate: self.rate(self.requests.saturating_sub(self.errors)),
            error_rate: self.rate(self.errors),
            fallback_rate: self.rate(self.fallbacks),
            cache_hit_rate: self.rate(self.cache_hits),
            p50_ms: bucket_percentile(&self.buckets, 0.50),
            p95_ms: bucket_percentile(&self.buckets, 0.95),
            p99_ms: bucket_percentile(&self.buckets, 0.99),
            avg_quality: self.avg_quality().map(|q| q / 2.0),
            cost_usd: self.cost_micros as f64 / 1_000_000.0,
        }
    }

    /// The histogram as a Prometheus series in seconds.
    pub fn latency_series(&self) -> HistogramSeries {
        HistogramSeries::from_latency_buckets(self.buckets.as_slice(), self.latency_sum_ms)
    }
}

/// The `q` quantile (0.0–1.0) of a `usage_minute` histogram, in ms
/// (within 10 % of the exact nearest-rank value from 1 ms to 5 minutes; see
/// [`latency_percentile`]). `None` when the histogram is empty.
pub fn bucket_percentile(buckets: &[u64; USAGE_BUCKETS], q: f64) -> Option<u64> {
    latency_percentile(buckets, q)
}

/// A `/api/metrics` window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Window {
    /// The last hour.
    #[serde(rename = "1h")]
    Hour,
    /// The last 24 hours.
    #[serde(rename = "24h")]
    Day,
    /// The last 7 days.
    #[serde(rename = "7d")]
    Week,
    /// The last 30 days.
    #[serde(rename = "30d")]
    Month,
}

impl Window {
    /// Parses `1h`, `24h`, `7d` or `30d`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "1h" => Some(Self::Hour),
            "24h" => Some(Self::Day),
            "7d" => Some(Self::Week),
            "30d" => Some(Self::Month),
            _ => None,
        }
    }

    /// Width of one point of the window's time series, in seconds: a
    /// minute for 1 h (60 points), an hour for 24 h (24), 6 hours for 7 d
    /// (28), a day for 30 d (30).
    pub fn step_seconds(self) -> i64 {
        match self {
            Self::Hour => 60,
            Self::Day => 3_600,
            Self::Week => 6 * 3_600,
            Self::Month => 86_400,
        }
    }

    /// The first second (a minute) of the window ending at `now_s`. The
    /// 1 h and 24 h windows are the last 60 and 1,440 minutes, the current
    /// one included ([`window_start`]). The 7 d and 30 d windows start on
    /// the hour, so that every point of their series is made of whole hours
    /// read from the hour rollups (migration 9) instead of thousands of
    /// minute rows at each point's edges: they span the whole hours before
    /// the current one plus the current hour so far (up to an hour less than
    /// their nominal length).
    pub fn start(self, now_s: i64) -> i64 {
        match self {
            Self::Hour | Self::Day => window_start(now_s, self.seconds()),
            Self::Week | Self::Month => {
                now_s.div_euclid(HOUR_SECS) * HOUR_SECS - self.seconds() + HOUR_SECS
            }
        }
    }

    /// Length in seconds.
    pub fn seconds(self) -> i64 {
        match self {
            Self::Hour => 3_600,
            Self::Day => 86_400,
            Self::Week => 7 * 86_400,
            Self::Month => 30 * 86_400,
        }
    }
}

/// The minute (Unix seconds) a window of `seconds` ending at `now_s`
/// starts at: minutes `>= start` belong to it (the current, partial minute
/// included).
pub fn window_start(now_s: i64, seconds: i64) -> i64 {
    let current = now_s.div_euclid(60) * 60;
    current - seconds + 60
}

/// Width of a `usage_hour` row (migration 9), seconds.
pub const HOUR_SECS: i64 = 3_600;

/// A minute is folded into `usage_hour` once it ended this long ago,
/// seconds (15 minutes): a request is recorded under the minute it started
/// in, when it ends, so a slow request still lands in a minute not folded
/// yet.
pub const FOLD_LAG_SECS: i64 = 900;

/// The watermark a fold at `now_s` moves up to: minutes before it may be
/// folded into `usage_hour`.
pub fn fold_until(now_s: i64) -> i64 {
    (now_s - FOLD_LAG_SECS).div_euclid(60) * 60
}

/// Which rows to read for a span of usage: hour rows where they hold
/// exactly what the minute rows would, minute rows for the rest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadPlan {
    /// Half-open `[from, to)` ranges of `usage_minute.minute`.
    pub minutes: Vec<(i64, i64)>,
    /// Half-open `[from, to)` ranges of `usage_hour.hour`.
    pub hours: Vec<(i64, i64)>,
}

/// Appends `[from, to)` to `ranges`, joining it to the last range when they
/// touch; empty ranges are left out.
fn push_range(ranges: &mut Vec<(i64, i64)>, from: i64, to: i64) {
    if from >= to {
        return;
    }
    match ranges.last_mut() {
        Some(last) if last.1 == from => last.1 = to,
        _ => ranges.push((from, to)),
    }
}

/// Plans reading the intervals between consecutive `boundaries` (minutes,
/// increasing) when every minute before `folded_until` is in `usage_hour`
/// (see [`fold_until`]): the whole hours inside an interval that are all
/// below the watermark come from hour rows, the partial hours at its edges
/// and everything from the watermark on from minute rows. An hour row read
/// this way lies inside one interval, so a reader that places each row by
/// its start (as [`overview`] does) places it where its minutes would go.
pub fn plan_read(boundaries: &[i64], folded_until: i64) -> ReadPlan {
    let mut plan = ReadPlan::default();
    for pair in boundaries.windows(2) {
        let [a, b] = [pair[0], pair[1]];
        let first_hour = a.div_euclid(HOUR_SECS) * HOUR_SECS
            + if a.rem_euclid(HOUR_SECS) == 0 {
                0
            } else {
                HOUR_SECS
            };
        let end_hour = b.min(folded_until).div_euclid(HOUR_SECS) * HOUR_SECS;
        if first_hour < end_hour {
            push_range(&mut plan.minutes, a, first_hour);
            push_range(&mut plan.hours, first_hour, end_hour);
            push_range(&mut plan.minutes, end_hour, b);
        } else {
            push_range(&mut plan.minutes, a, b);
        }
    }
    plan
}

/// The intervals [`overview`] places rows in, as boundaries for
/// [`plan_read`]: the window before, then each point of the series (the
/// last ends after the current minute).
pub fn overview_boundaries(window: Window, now_s: i64) -> Vec<i64> {
    let from = window.start(now_s);
    let step = window.step_seconds();
    let points = window.seconds() / step;
    std::iter::once(from - window.seconds())
        .chain((0..=points).map(|i| from + i * step))
        .collect()
}

/// Figures of one group in the overview.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Figures {
    /// Requests.
    pub requests: u64,
    /// Successful requests (not offline, not aborted).
    pub successes: u64,
    /// Errors (offline, aborted).
    pub errors: u64,
    /// Fallbacks.
    pub fallbacks: u64,
    /// Cache hits.
    pub cache_hits: u64,
    /// Successes / requests.
    pub success_rate: f64,
    /// Errors / requests.
    pub error_rate: f64,
    /// Fallbacks / requests.
    pub fallback_rate: f64,
    /// Cache hits / requests.
    pub cache_hit_rate: f64,
    /// Median latency (from the histogram, within 10 %), ms.
    pub p50_ms: Option<u64>,
    /// 95th percentile, ms.
    pub p95_ms: Option<u64>,
    /// 99th percentile, ms.
    pub p99_ms: Option<u64>,
    /// Mean latency, ms.
    pub avg_latency_ms: Option<f64>,
    /// Mean quality, 0–10.
    pub avg_quality: Option<f64>,
    /// Known cost, USD.
    pub cost_usd: f64,
    /// Requests with an unknown cost.
    pub unknown_cost_requests: u64,
    /// What the same requests would have cost on the savings baseline, USD.
    pub baseline_cost_usd: f64,
    /// `baselineCostUsd − costUsd`.
    pub saved_usd: f64,
    /// `savedUsd / baselineCostUsd × 100` (`null` without a baseline cost).
    pub saved_pct: Option<f64>,
}

impl From<&Agg> for Figures {
    fn from(a: &Agg) -> Self {
        let s = a.summary();
        let saved = crate::optimize::savings::savings(a.cost_micros, a.baseline_micros);
        Self {
            requests: a.requests,
            successes: a.requests.saturating_sub(a.errors),
            errors: a.errors,
            fallbacks: a.fallbacks,
            cache_hits: a.cache_hits,
            success_rate: s.success_rate,
            error_rate: s.error_rate,
            fallback_rate: s.fallback_rate,
            cache_hit_rate: s.cache_hit_rate,
            p50_ms: s.p50_ms,
            p95_ms: s.p95_ms,
            p99_ms: s.p99_ms,
            avg_latency_ms: (a.requests > 0).then(|| a.latency_sum_ms as f64 / a.requests as f64),
            avg_quality: a.avg_quality(),
            cost_usd: s.cost_usd,
            unknown_cost_requests: a.cost_unknown,
            baseline_cost_usd: saved.baseline_cost_usd,
            saved_usd: saved.saved_usd,
            saved_pct: saved.saved_pct,
        }
    }
}

/// The body of `GET /api/metrics`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Overview {
    /// The window asked for.
    pub window: Window,
    /// First minute of the window, Unix seconds.
    pub from: i64,
    /// End of the window, Unix seconds.
    pub to: i64,
    /// Totals over the window.
    pub totals: Figures,
    /// Per provider.
    pub by_provider: BTreeMap<String, Figures>,
    /// Per `provider/model`.
    pub by_model: BTreeMap<String, Figures>,
    /// Per tier.
    pub by_tier: BTreeMap<String, Figures>,
    /// Per flag variant.
    pub by_variant: BTreeMap<String, Figures>,
    /// Per outcome (request counts).
    pub by_outcome: BTreeMap<String, u64>,
    /// Totals over the window before.
    pub previous: Figures,
    /// This window against the previous one (see [`trend`]).
    pub trend: Trend,
    /// The window as consecutive points of [`Window::step_seconds`], oldest
    /// first, each with its figures (empty points included, so a chart's
    /// x axis is the whole window).
    pub series: Vec<Point>,
    /// The same points per provider, model, tier and variant, so a chart
    /// can overlay one line per group (e.g. the p95 of each model).
    pub series_by: SeriesBy,
}

/// [`Overview::series_by`]: per dimension, each group's [`GroupSeries`].
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SeriesBy {
    /// Per provider.
    pub provider: BTreeMap<String, GroupSeries>,
    /// Per `provider/model`.
    pub model: BTreeMap<String, GroupSeries>,
    /// Per tier.
    pub tier: BTreeMap<String, GroupSeries>,
    /// Per flag variant.
    pub variant: BTreeMap<String, GroupSeries>,
}

/// One group's figures at each point of [`Overview::series`] (the same
/// length and order: index `i` is the point at `series[i].at`); arrays
/// rather than objects per point keep a 30-day, many-model body small.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupSeries {
    /// Requests.
    pub requests: Vec<u64>,
    /// Median latency (within 10 %), ms; `null` at points without requests.
    pub p50_ms: Vec<Option<u64>>,
    /// 95th percentile, ms.
    pub p95_ms: Vec<Option<u64>>,
    /// 99th percentile, ms.
    pub p99_ms: Vec<Option<u64>>,
    /// Mean quality, 0–10 (`null` where nothing was scored).
    pub avg_quality: Vec<Option<f64>>,
    /// Known cost, USD.
    pub cost_usd: Vec<f64>,
}

impl GroupSeries {
    /// The series of per-point aggregates `aggs`.
    fn of(aggs: &[Agg]) -> Self {
        let mut g = Self::default();
        for a in aggs {
            g.requests.push(a.requests);
            g.p50_ms.push(a.percentile_ms(0.50));
            g.p95_ms.push(a.percentile_ms(0.95));
            g.p99_ms.push(a.percentile_ms(0.99));
            g.avg_quality.push(a.avg_quality());
            g.cost_usd.push(a.cost_micros as f64 / 1_000_000.0);
        }
        g
    }
}

/// One point of [`Overview::series`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Point {
    /// Start of the point's interval, Unix seconds.
    pub at: i64,
    /// Requests.
    pub requests: u64,
    /// Errors (offline, aborted).
    pub errors: u64,
    /// Median latency (from the histogram, within 10 %), ms.
    pub p50_ms: Option<u64>,
    /// 95th percentile latency, ms.
    pub p95_ms: Option<u64>,
    /// 99th percentile latency, ms.
    pub p99_ms: Option<u64>,
    /// Mean quality, 0–10.
    pub avg_quality: Option<f64>,
    /// Known cost, USD.
    pub cost_usd: f64,
}

/// Per-point aggregates of each group of one dimension.
type GroupAggs = BTreeMap<String, Vec<Agg>>;

/// Adds `agg` at point `i` of `key`'s series (of `n` points) in `groups`.
fn add_at(groups: &mut GroupAggs, key: &str, n: usize, i: usize, agg: &Agg) {
    // Look up by &str first: the key is cloned once per group, not per row.
    let series = match groups.get_mut(key) {
        Some(series) => series,
        None => groups
            .entry(key.to_owned())
            .or_insert_with(|| vec![Agg::default(); n]),
    };
    if let Some(a) = series.get_mut(i) {
        a.add(agg);
    }
}

/// The window's time series: one [`Point`] per step from `from`, overall
/// and per group.
fn series(rows: &[UsageRow], window: Window, from: i64, now_s: i64) -> (Vec<Point>, SeriesBy) {
    let step = window.step_seconds();
    let n = usize::try_from(window.seconds() / step).unwrap_or(0);
    let mut aggs = vec![Agg::default(); n];
    let [mut provider, mut model, mut tier, mut variant] = [(); 4].map(|()| GroupAggs::new());
    for r in rows
        .iter()
        .filter(|r| r.minute >= from && r.minute <= now_s)
    {
        let i = usize::try_from((r.minute - from) / step).unwrap_or(usize::MAX);
        if i >= n {
            continue;
        }
        if let Some(a) = aggs.get_mut(i) {
            a.add(&r.agg);
        }
        add_at(&mut provider, &r.provider, n, i, &r.agg);
        add_at(
            &mut model,
            &format!("{}/{}", r.provider, r.model),
            n,
            i,
            &r.agg,
        );
        add_at(&mut tier, &r.tier, n, i, &r.agg);
        add_at(&mut variant, &r.variant, n, i, &r.agg);
    }
    let points = aggs
        .iter()
        .zip(0_i64..)
        .map(|(a, i)| {
            let s = a.summary();
            Point {
                at: from + i * step,
                requests: a.requests,
                errors: a.errors,
                p50_ms: s.p50_ms,
                p95_ms: s.p95_ms,
                p99_ms: s.p99_ms,
                avg_quality: a.avg_quality(),
                cost_usd: s.cost_usd,
            }
        })
        .collect();
    let by = |g: GroupAggs| {
        g.into_iter()
            .map(|(k, v)| (k, GroupSeries::of(&v)))
            .collect()
    };
    let series_by = SeriesBy {
        provider: by(provider),
        model: by(model),
        tier: by(tier),
        variant: by(variant),
    };
    (points, series_by)
}

/// Builds the overview from rows of the window and the window before it
/// (`rows` may hold both: minutes `< from` count as previous, older ones are
/// ignored).
pub fn overview(rows: &[UsageRow], window: Window, now_s: i64) -> Overview {
    let from = window.start(now_s);
    let prev_from = from - window.seconds();
    let mut totals = Agg::default();
    let mut previous = Agg::default();
    let mut by_provider: BTreeMap<String, Agg> = BTreeMap::new();
    let mut by_model: BTreeMap<String, Agg> = BTreeMap::new();
    let mut by_tier: BTreeMap<String, Agg> = BTreeMap::new();
    let mut by_variant: BTreeMap<String, Agg> = BTreeMap::new();
    let mut by_outcome: BTreeMap<String, u64> = BTreeMap::new();
    for r in rows {
        if r.minute >= from && r.minute <= now_s {
            totals.add(&r.agg);
            by_provider
                .entry(r.provider.clone())
                .or_default()
                .add(&r.agg);
            by_model
                .entry(format!("{}/{}", r.provider, r.model))
                .or_default()
                .add(&r.agg);
            by_tier.entry(r.tier.clone()).or_default().add(&r.agg);
            by_variant.entry(r.variant.clone()).or_default().add(&r.agg);
            let n = by_outcome.entry(r.outcome.clone()).or_default();
            *n = n.saturating_add(r.agg.requests);
        } else if r.minute >= prev_from && r.minute < from {
            previous.add(&r.agg);
        }
    }
    let figures = |m: BTreeMap<String, Agg>| m.iter().map(|(k, v)| (k.clone(), v.into())).collect();
    let (series, series_by) = series(rows, window, from, now_s);
    Overview {
        window,
        from,
        to: now_s,
        trend: trend(
            &previous.summary(),
            &totals.summary(),
            &TrendTolerance::default(),
        ),
        totals: (&totals).into(),
        previous: (&previous).into(),
        by_provider: figures(by_provider),
        by_model: figures(by_model),
        by_tier: figures(by_tier),
        by_variant: figures(by_variant),
        by_outcome,
        series,
        series_by,
    }
}

/// Sums the rows whose minute starts within `window_secs` before `now_secs`
/// (`now_secs - window_secs <= minute <= now_secs`): the window of an alert
/// rule's metric.
pub fn in_window(rows: &[UsageRow], now_secs: i64, window_secs: u64) -> Agg {
    let from = now_secs.saturating_sub(i64::try_from(window_secs).unwrap_or(i64::MAX));
    Agg::of(
        rows.iter()
            .filter(|r| r.minute >= from && r.minute <= now_secs),
    )
}

/// Sums the rows with `minute >= from_s`.
pub fn total_since(rows: &[UsageRow], from_s: i64) -> Agg {
    let mut a = Agg::default();
    for r in rows.iter().filter(|r| r.minute >= from_s) {
        a.add(&r.agg);
    }
    a
}

/// Uptime %: of the minutes (in `rows`, from `from_s` on) that saw
/// generation traffic, the share in which at least one request succeeded
/// (was not offline or aborted). 100 when no minute saw traffic: no traffic
/// is no evidence of downtime.
pub fn uptime_from_minutes(rows: &[UsageRow], from_s: i64) -> f64 {
    let mut minutes: BTreeMap<i64, (u64, u64)> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.minute >= from_s) {
        let e = minutes.entry(r.minute).or_default();
        e.0 = e.0.saturating_add(r.agg.requests);
        e.1 =
            e.1.saturating_add(r.agg.requests.saturating_sub(r.agg.errors));
    }
    let busy = minutes.values().filter(|(n, _)| *n > 0).count() as u64;
    let up = minutes.values().filter(|(n, ok)| *n > 0 && *ok > 0).count() as u64;
    super::score::uptime_percent(up, busy)
}

/// Circuit breaker state of one `provider/model`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Breaker {
    /// Provider.
    pub provider: String,
    /// Model.
    pub model: String,
    /// `closed`, `open` or `half_open`.
    pub state: &'static str,
}

impl Breaker {
    /// Gauge value: 0 closed, 1 half-open, 2 open.
    pub fn gauge(&self) -> f64 {
        match self.state {
            "open" => 2.0,
            "half_open" => 1.0,
            _ => 0.0,
        }
    }
}

/// The breakers of a [`RoutingState`] at `now_ms` (an open breaker whose
/// cool-down passed reads half-open).
pub fn breakers(state: &RoutingState, now_ms: u64) -> Vec<Breaker> {
    state
        .entries
        .iter()
        .map(|(key, e)| {
            let (provider, model) = key.split_once('/').unwrap_or((key.as_str(), ""));
            let state = match e.breaker.state_at(now_ms) {
                CircuitState::Closed { .. } => "closed",
                CircuitState::Open { .. } => "open",
                CircuitState::HalfOpen { .. } => "half_open",
            };
            Breaker {
                provider: provider.to_owned(),
                model: model.to_owned(),
                state,
            }
        })
        .collect()
}

/// Generation check over recent usage: fails with a reason when the error
/// rate exceeds 10 %, p95 exceeds 10 s or mean quality (0–10) is below 5,
/// given at least `min_samples` requests; passes otherwise.
pub fn generation_problem(recent: &Agg, min_samples: u64) -> Option<String> {
    if recent.requests < min_samples {
        return None;
    }
    let s = recent.summary();
    let mut why = Vec::new();
    if s.error_rate > 0.10 {
        why.push(format!(
            "error rate {:.1} % over 5 min ({} of {} requests offline or aborted)",
            s.error_rate * 100.0,
            recent.errors,
            recent.requests
        ));
    }
    if let Some(p95) = s.p95_ms.filter(|p| *p > 10_000) {
        why.push(format!("p95 latency {p95} ms over 5 min"));
    }
    if let Some(q) = recent.avg_quality().filter(|q| *q < 5.0) {
        why.push(format!("average quality {q:.1}/10 over 5 min"));
    }
    (!why.is_empty()).then(|| why.join("; "))
}

/// Providers check: fails naming the open breakers when every known
/// breaker is open (nothing can answer but the offline tier); passes
/// otherwise, including when no breaker is known yet.
pub fn providers_problem(breakers: &[Breaker]) -> Option<String> {
    let open: Vec<String> = breakers
        .iter()
        .filter(|b| b.state == "open")
        .map(|b| format!("{}/{}", b.provider, b.model))
        .collect();
    (!breakers.is_empty() && open.len() == breakers.len())
        .then(|| format!("every circuit breaker is open: {}", open.join(", ")))
}

/// Scans check: fails naming the scan when the newest run of any scan is
/// older than `max_age_ms`. Never having run is not a failure (SpinKube
/// runs no cron triggers).
pub fn scans_problem(latest: &[(String, i64)], now_ms: i64, max_age_ms: i64) -> Option<String> {
    let newest = latest.iter().map(|(_, t)| *t).max()?;
    let age = now_ms.saturating_sub(newest);
    (age > max_age_ms).then(|| format!("no scan has run for {} s", age / 1000))
}

/// Everything `/metrics` shows besides the usage totals.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsInput {
    /// Usage totals per tier/provider/model/outcome (see
    /// [`super::system::usage_totals`]).
    pub usage: Vec<UsageRow>,
    /// Requests per route.
    pub routes: Vec<(String, u64)>,
    /// Quality histograms: provider, model, cumulative counts for le 1..10, sum, count.
    pub quality: Vec<(String, String, [u64; 10], f64, u64)>,
    /// Circuit breakers.
    pub breakers: Vec<Breaker>,
    /// Alerts: id, name, severity, source, status.
    pub alerts: Vec<(String, String, String, String, String)>,
    /// Scans: name and age in seconds of the latest run.
    pub scans: Vec<(String, f64)>,
    /// Health score 0–100.
    pub health_score: u8,
    /// Emergency mode on.
    pub emergency: bool,
    /// Flag evaluation totals: flag, variant, reason, count (see
    /// [`super::flag_counts`]).
    pub flag_evaluations: Vec<(String, String, String, u64)>,
    /// Video platforms with recent jobs ([`crate::video::health`]).
    pub video: Vec<crate::video::health::PlatformHealth>,
    /// The org these figures are of (`/metrics?org=ID`): every usage
    /// series and the score and emergency gauges carry `org="ID"`.
    pub org: Option<String>,
}

/// Renders the Prometheus text exposition of `GET /metrics`.
pub fn render_metrics(m: &MetricsInput) -> Result<String, PromError> {
    let mut w = Writer::new();
    // An org's exposition labels its series with the org, so series of
    // several orgs' scrapes never collide in one Prometheus.
    let org_label: Vec<(&str, String)> = m.org.iter().map(|o| ("org", o.clone())).collect();
    let labels = |r: &UsageRow| {
        let mut l = org_label.clone();
        l.extend([
            ("tier", r.tier.clone()),
            ("provider", r.provider.clone()),
            ("model", r.model.clone()),
            ("outcome", r.outcome.clone()),
        ]);
        l
    };
    let owned: Vec<Vec<(&str, String)>> = m.usage.iter().map(labels).collect();
    let refs: Vec<Vec<(&str, &str)>> = owned
        .iter()
        .map(|l| l.iter().map(|(k, v)| (*k, v.as_str())).collect())
        .collect();
    let counter = |f: &dyn Fn(&Agg) -> f64| -> Vec<(&[(&str, &str)], f64)> {
        refs.iter()
            .zip(m.usage.iter())
            .map(|(l, r)| (l.as_slice(), f(&r.agg)))
            .collect()
    };
    w.counter(
        "dol_generation_requests_total",
        "Generation requests by tier, provider, model and outcome.",
        &counter(&|a| a.requests as f64),
    )?;
    w.counter(
        "dol_generation_errors_total",
        "Generation requests answered offline or aborted.",
        &counter(&|a| a.errors as f64),
    )?;
    w.counter(
        "dol_generation_fallbacks_total",
        "Generation requests served below their entry tier.",
        &counter(&|a| a.fallbacks as f64),
    )?;
    w.counter(
        "dol_cache_hits_total",
        "Generation requests answered from the cache.",
        &counter(&|a| a.cache_hits as f64),
    )?;
    w.counter(
        "dol_cost_usd_total",
        "Known generation cost, USD.",
        &counter(&|a| a.cost_micros as f64 / 1_000_000.0),
    )?;
    w.counter(
        "dol_baseline_cost_usd_total",
        "What the same generation requests would have cost on the savings baseline, USD \
         (saved = baseline - cost).",
        &counter(&|a| a.baseline_micros as f64 / 1_000_000.0),
    )?;
    w.counter(
        "dol_cost_unknown_requests_total",
        "Generation requests whose cost is unknown.",
        &counter(&|a| a.cost_unknown as f64),
    )?;
    let series: Vec<HistogramSeries> = m.usage.iter().map(|r| r.agg.latency_series()).collect();
    let hist: Vec<(&[(&str, &str)], &HistogramSeries)> = refs
        .iter()
        .zip(series.iter())
        .map(|(l, s)| (l.as_slice(), s))
        .collect();
    w.histogram(
        "dol_generation_latency_seconds",
        "Generation latency by tier, provider, model and outcome.",
        &hist,
    )?;
    let route_labels: Vec<[(&str, &str); 1]> = m
        .routes
        .iter()
        .map(|(r, _)| [("route", r.as_str())])
        .collect();
    let route_samples: Vec<(&[(&str, &str)], f64)> = route_labels
        .iter()
        .zip(m.routes.iter())
        .map(|(l, (_, n))| (l.as_slice(), *n as f64))
        .collect();
    w.counter(
        "dol_route_requests_total",
        "Generation requests by route (chat, generate:<template>@<version>).",
        &route_samples,
    )?;
    let q_labels: Vec<[(&str, &str); 2]> = m
        .quality
        .iter()
        .map(|(p, mo, ..)| [("provider", p.as_str()), ("model", mo.as_str())])
        .collect();
    let q_series: Vec<HistogramSeries> = m
        .quality
        .iter()
        .map(|(_, _, cum, sum, count)| HistogramSeries {
            buckets: cum
                .iter()
                .enumerate()
                .map(|(i, c)| ((i + 1) as f64, (*c).min(*count)))
                .collect(),
            sum: *sum,
            count: *count,
        })
        .collect();
    let q_hist: Vec<(&[(&str, &str)], &HistogramSeries)> = q_labels
        .iter()
        .zip(q_series.iter())
        .map(|(l, s)| (l.as_slice(), s))
        .collect();
    w.histogram(
        "dol_generation_quality",
        "Quality scores (0-10) of scored answers.",
        &q_hist,
    )?;
    let b_labels: Vec<[(&str, &str); 2]> = m
        .breakers
        .iter()
        .map(|b| {
            [
                ("provider", b.provider.as_str()),
                ("model", b.model.as_str()),
            ]
        })
        .collect();
    let b_samples: Vec<(&[(&str, &str)], f64)> = b_labels
        .iter()
        .zip(m.breakers.iter())
        .map(|(l, b)| (l.as_slice(), b.gauge()))
        .collect();
    w.gauge(
        "dol_circuit_breaker_state",
        "Circuit breaker per provider/model: 0 closed, 1 half-open, 2 open.",
        &b_samples,
    )?;
    let a_labels: Vec<[(&str, &str); 4]> = m
        .alerts
        .iter()
        .map(|(id, name, sev, src, _)| {
            [
                ("id", id.as_str()),
                ("alertname", name.as_str()),
                ("severity", sev.as_str()),
                ("source", src.as_str()),
            ]
        })
        .collect();
    let a_samples: Vec<(&[(&str, &str)], f64)> = a_labels
        .iter()
        .zip(m.alerts.iter())
        .map(|(l, (.., status))| {
            let v = match status.as_str() {
                "pending" => 1.0,
                "firing" => 2.0,
                "resolved" => 3.0,
                _ => 0.0,
            };
            (l.as_slice(), v)
        })
        .collect();
    w.gauge(
        "dol_alert_state",
        "Alert state: 0 inactive, 1 pending, 2 firing, 3 resolved.",
        &a_samples,
    )?;
    let s_labels: Vec<[(&str, &str); 1]> = m
        .scans
        .iter()
        .map(|(n, _)| [("scan", n.as_str())])
        .collect();
    let s_samples: Vec<(&[(&str, &str)], f64)> = s_labels
        .iter()
        .zip(m.scans.iter())
        .map(|(l, (_, age))| (l.as_slice(), *age))
        .collect();
    w.gauge(
        "dol_scan_age_seconds",
        "Seconds since the latest run of each scan.",
        &s_samples,
    )?;
    let f_labels: Vec<[(&str, &str); 3]> = m
        .flag_evaluations
        .iter()
        .map(|(f, v, r, _)| {
            [
                ("flag", f.as_str()),
                ("variant", v.as_str()),
                ("reason", r.as_str()),
            ]
        })
        .collect();
    let f_samples: Vec<(&[(&str, &str)], f64)> = f_labels
        .iter()
        .zip(m.flag_evaluations.iter())
        .map(|(l, (.., n))| (l.as_slice(), *n as f64))
        .collect();
    w.counter(
        "dol_flag_evaluations_total",
        "Flag evaluations (OFREP and in-process) by flag, variant and reason; lags 1-3 minutes.",
        &f_samples,
    )?;
    let org: Vec<(&str, &str)> = org_label.iter().map(|(k, v)| (*k, v.as_str())).collect();
    w.gauge(
        "dol_health_score",
        "Health score 0-100 (see the README).",
        &[(org.as_slice(), f64::from(m.health_score))],
    )?;
    w.gauge(
        "dol_emergency_mode",
        "1 when emergency mode is in force.",
        &[(org.as_slice(), if m.emergency { 1.0 } else { 0.0 })],
    )?;
    crate::video::health::write_metrics(&mut w, &m.video)?;
    Ok(w.finish())
}

/// Component weights in the health score (see
/// [`super::score::system_score`]).
pub const WEIGHTS: [(&str, u32); 6] = [
    ("database", 3),
    ("key-value", 2),
    ("generation", 2),
    ("providers", 1),
    ("scans", 1),
    ("video", 1),
];

/// A scored check's weight from [`WEIGHTS`] (1 when not listed).
pub fn weight_of(name: &str) -> u32 {
    WEIGHTS
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(1, |(_, w)| *w)
}

/// Seconds since the latest run of one scan.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScanFreshness {
    /// Scan name.
    pub name: String,
    /// Latest start, Unix ms.
    pub last_run_ms: i64,
    /// Seconds since then.
    pub age_seconds: f64,
}

/// Freshness of each scan at `now_ms`.
pub fn scan_freshness(latest: &[(String, i64)], now_ms: i64) -> Vec<ScanFreshness> {
    latest
        .iter()
        .map(|(name, t)| ScanFreshness {
            name: name.clone(),
            last_run_ms: *t,
            age_seconds: now_ms.saturating_sub(*t).max(0) as f64 / 1000.0,
        })
        .collect()
}

/// Emergency mode as `/api/health` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EmergencyView {
    /// Whether emergency mode is in force.
    pub active: bool,
    /// `override` when an admin forced it on or off, else `automatic`.
    pub mode: &'static str,
    /// Who set the override.
    pub set_by: Option<String>,
}

/// The body of `GET /api/health`: the scored [`ApiHealth`] plus details.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthBody {
    /// `systemHealth`, `uptime`, `components`, `activeAlerts`, `emergency`.
    #[serde(flatten)]
    pub health: ApiHealth,
    /// Emergency mode, override vs automatic.
    pub emergency_mode: EmergencyView,
    /// Generation figures over the last 5 minutes.
    pub generation: Figures,
    /// Circuit breakers per provider/model.
    pub providers: Vec<Breaker>,
    /// Freshness of each scan.
    pub scans: Vec<ScanFreshness>,
    /// Video platforms with jobs in the last hour: success rate, queue
    /// time, duration, cost, open jobs, healthy or not.
    pub video_platforms: Vec<crate::video::health::PlatformHealth>,
    /// Firing anomaly alerts (series outside their expected band), with the
    /// band in `summary`. Listed beside the score, not part of it: the
    /// error rate and latency behind an anomaly already weigh in the score,
    /// and an unusual value is not by itself a failure.
    pub anomalies: Vec<crate::optimize::anomaly_alerts::AnomalyView>,
    /// The org whose requests the score's telemetry, `generation` and
    /// uptime are of (`/api/health?org=ID`); absent for the deployment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
}

impl HealthBody {
    /// See [`ApiHealth::http_status`].
    pub fn http_status(&self) -> u16 {
        self.health.http_status()
    }
}

/// Inputs of [`assemble_health`] (read by [`super::system::read_api_health`]).
#[derive(Debug, Clone, PartialEq)]
pub struct HealthInputs {
    /// What the score is computed from.
    pub score: ScoreInputs,
    /// Usage rows of the last 24 h (for uptime).
    pub rows: Vec<UsageRow>,
    /// Active alerts.
    pub alerts: Vec<ActiveAlert>,
    /// Emergency state (override mode included).
    pub emergency: EmergencyState,
    /// Who set the override.
    pub override_by: Option<String>,
    /// Firing anomaly alerts.
    pub anomalies: Vec<crate::optimize::anomaly_alerts::AnomalyView>,
}

/// Minimum requests in 5 minutes before the generation check can fail.
pub const GENERATION_MIN_SAMPLES: u64 = 5;

/// A scan older than this fails the scans check, ms (15 minutes).
pub const SCAN_MAX_AGE_MS: i64 = 15 * 60 * 1000;

/// The window of the score's telemetry and of the generation check, s.
pub const RECENT_SECS: i64 = 300;

/// The usage of the last [`RECENT_SECS`] at `now_ms` (the current, partial
/// minute included; see [`window_start`]): what the health score reads.
pub fn recent_usage(rows: &[UsageRow], now_ms: i64) -> Agg {
    total_since(rows, window_start(now_ms.div_euclid(1000), RECENT_SECS))
}

/// The body of `/api/health`: the score ([`super::score::system_score`]),
/// uptime by [`uptime_from_minutes`] over 24 h, the active alerts, the
/// emergency mode, the last 5 minutes' figures, the breakers and the scans.
pub fn assemble_health(i: HealthInputs) -> HealthBody {
    let now_ms = i.score.now_ms;
    let now_s = now_ms.div_euclid(1000);
    let scored = super::score::system_score(&i.score);
    let mode = match i.emergency.override_mode {
        Override::Auto => "automatic",
        Override::ForceOn | Override::ForceOff => "override",
    };
    HealthBody {
        emergency_mode: EmergencyView {
            active: i.emergency.active,
            mode,
            set_by: i.override_by.clone(),
        },
        health: ApiHealth {
            system_health: scored.health,
            uptime: uptime_from_minutes(&i.rows, window_start(now_s, 86_400)),
            components: scored.checks,
            active_alerts: i.alerts,
            emergency: i.emergency,
        },
        generation: (&i.score.recent).into(),
        scans: scan_freshness(&i.score.scans, now_ms),
        video_platforms: i.score.video,
        providers: i.score.breakers,
        anomalies: i.anomalies,
        org: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::CheckResult;

    fn hist(pairs: &[(usize, u64)]) -> LatencyCounts {
        let mut b = LatencyCounts::default();
        for (i, n) in pairs {
            b[*i] = *n;
        }
        b
    }

    /// A row of `requests` requests that each took `latency_ms`.
    fn row(minute: i64, provider: &str, outcome: &str, requests: u64, latency_ms: u64) -> UsageRow {
        let errors = u64::from(outcome == "offline") * requests;
        UsageRow {
            minute,
            tier: "standard".into(),
            provider: provider.into(),
            model: "m".into(),
            outcome: outcome.into(),
            variant: "-".into(),
            agg: Agg {
                requests,
                errors,
                cache_hits: u64::from(outcome == "cache_hit") * requests,
                latency_sum_ms: requests * 100,
                quality_sum: 8.0 * requests as f64,
                quality_n: requests,
                cost_micros: 10 * requests,
                baseline_micros: 40 * requests,
                buckets: hist(&[(
                    crate::gateway::telemetry::latency_bucket(latency_ms),
                    requests,
                )]),
                ..Agg::default()
            },
        }
    }

    #[test]
    fn percentiles_from_buckets_known_answers() {
        use crate::gateway::telemetry::latency_bucket;
        // 100 requests: 50 of 2 ms, 40 of 250 ms, 9 of 1 s, 1 of 10 minutes.
        let b = hist(&[
            (latency_bucket(2), 50),
            (latency_bucket(250), 40),
            (latency_bucket(1_000), 9),
            (latency_bucket(600_000), 1),
        ]);
        let within = |q: f64, exact: f64| {
            let read = bucket_percentile(&b, q).unwrap() as f64;
            assert!(
                (read - exact).abs() <= 0.1 * exact,
                "q={q}: {read} vs {exact}"
            );
        };
        within(0.0, 2.0);
        within(0.50, 2.0);
        within(0.51, 250.0);
        within(0.90, 250.0);
        within(0.95, 1_000.0);
        within(0.99, 1_000.0);
        // Beyond 5 minutes the histogram knows only "at least".
        assert_eq!(bucket_percentile(&b, 1.0), Some(301_267));
        assert_eq!(bucket_percentile(&hist(&[]), 0.5), None);
        // One sample: every quantile is its bucket.
        let one = hist(&[(latency_bucket(5_000), 1)]);
        assert_eq!(bucket_percentile(&one, 0.01), bucket_percentile(&one, 0.99));
    }

    #[test]
    fn read_plans_use_whole_folded_hours_inside_each_interval() {
        let h = HOUR_SECS;
        // One interval from 00:30 to 05:30, folded up to 04:10: hours 01–04
        // from hour rows, the edges and everything from 04:00 on from minutes.
        let p = plan_read(&[h / 2, 5 * h + h / 2], 4 * h + 600);
        assert_eq!(p.hours, vec![(h, 4 * h)]);
        assert_eq!(p.minutes, vec![(h / 2, h), (4 * h, 5 * h + h / 2)]);
        // Nothing folded: minutes only; an interval without a whole hour too.
        let none = plan_read(&[h / 2, 5 * h], 0);
        assert_eq!((none.hours.len(), none.minutes), (0, vec![(h / 2, 5 * h)]));
        let short = plan_read(&[60, h + 60], 10 * h);
        assert_eq!((short.hours.len(), short.minutes), (0, vec![(60, h + 60)]));
        // Aligned intervals join into one range each.
        let aligned = plan_read(&[0, h, 2 * h, 3 * h], 10 * h);
        assert_eq!(
            (aligned.hours, aligned.minutes.len()),
            (vec![(0, 3 * h)], 0)
        );
        // Every minute of the span is read exactly once.
        let b = overview_boundaries(Window::Month, 1_800_000_005);
        assert_eq!(b.len(), 32);
        let p = plan_read(&b, fold_until(1_800_000_005));
        let mut covered: Vec<(i64, i64)> = p.minutes.iter().chain(&p.hours).copied().collect();
        covered.sort_unstable();
        assert_eq!(covered.first().map(|r| r.0), b.first().copied());
        assert_eq!(covered.last().map(|r| r.1), b.last().copied());
        assert!(covered.windows(2).all(|w| w[0].1 == w[1].0));
        assert!(p.minutes.len() <= 32, "{}", p.minutes.len());
    }

    #[test]
    fn windows_parse_and_bad_ones_do_not() {
        assert_eq!(Window::parse("1h").map(Window::seconds), Some(3_600));
        assert_eq!(Window::parse("24h").map(Window::seconds), Some(86_400));
        assert_eq!(Window::parse("7d").map(Window::seconds), Some(604_800));
        assert_eq!(Window::parse("30d").map(Window::seconds), Some(2_592_000));
        assert_eq!(Window::parse("2h"), None);
        assert_eq!(window_start(7_230, 3_600), 3_660);
        // Long windows start on the hour; short ones on the minute.
        let now = 30 * 86_400 + 5 * 3_600 + 17 * 60 + 9;
        assert_eq!(Window::Month.start(now), 6 * 3_600);
        assert_eq!(Window::Week.start(now), 23 * 86_400 + 6 * 3_600);
        assert_eq!(Window::Day.start(now), window_start(now, 86_400));
        assert_eq!(Window::Hour.start(now), now - 9 - 3_600 + 60);
    }

    #[test]
    fn overview_series_covers_the_window_point_by_point() {
        let now = 100_000 * 60 + 30;
        let cur = 100_000 * 60;
        let rows = vec![
            row(cur, "openai", "success", 3, 1),
            row(cur, "offline", "offline", 2, 0),
            row(cur - 59 * 60, "openai", "success", 4, 1),
            row(cur - 60 * 60, "openai", "success", 99, 1),
        ];
        let o = overview(&rows, Window::Hour, now);
        assert_eq!(o.series.len(), 60);
        assert_eq!(o.series[0].at, o.from);
        assert_eq!(o.series[0].requests, 4, "the oldest minute of the window");
        assert_eq!(o.series[59].at, cur);
        assert_eq!((o.series[59].requests, o.series[59].errors), (5, 2));
        assert!(
            o.series[1..59]
                .iter()
                .all(|p| p.requests == 0 && p.p95_ms.is_none())
        );
        let total: u64 = o.series.iter().map(|p| p.requests).sum();
        assert_eq!(total, o.totals.requests);
        let day = overview(&rows, Window::Day, now);
        assert_eq!(day.series.len(), 24);
        assert_eq!(day.series.iter().map(|p| p.requests).sum::<u64>(), 108);
        assert_eq!(overview(&rows, Window::Week, now).series.len(), 28);
        let month = overview(&rows, Window::Month, now);
        assert_eq!(month.series.len(), 30);
        assert_eq!(month.series.iter().map(|p| p.requests).sum::<u64>(), 108);
    }

    /// The exact nearest-rank `q` quantile of `samples` (sorted).
    fn exact(samples: &[u64], q: f64) -> f64 {
        let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
        samples[rank - 1] as f64
    }

    #[test]
    fn overview_series_by_model_overlays_each_models_percentiles() {
        use crate::gateway::telemetry::latency_bucket;
        let now = 100_000 * 60 + 30;
        let cur = 100_000 * 60;
        // Two models in the same minute, known latencies from 1 ms to 5 min;
        // a third model only 30 minutes earlier.
        let fast: Vec<u64> = (1..=200).map(|i| i * 3).collect();
        let slow: Vec<u64> = (1..=100).map(|i| 3_000 * i).collect();
        let mut rows = Vec::new();
        for (provider, samples) in [("openai", &fast), ("anthropic", &slow)] {
            let mut r = row(cur, provider, "success", 0, 1);
            r.agg = Agg::default();
            for &ms in samples.iter() {
                let mut one = Agg {
                    requests: 1,
                    quality_sum: 6.0,
                    quality_n: 1,
                    cost_micros: 1_000,
                    ..Agg::default()
                };
                one.buckets[latency_bucket(ms)] = 1;
                r.agg.add(&one);
            }
            rows.push(r);
        }
        rows.push(row(cur - 30 * 60, "mistral", "success", 7, 2));
        let o = overview(&rows, Window::Hour, now);
        let models = &o.series_by.model;
        assert_eq!(
            models.keys().collect::<Vec<_>>(),
            ["anthropic/m", "mistral/m", "openai/m"]
        );
        for (key, samples) in [("openai/m", &fast), ("anthropic/m", &slow)] {
            let g = &models[key];
            assert_eq!(g.requests.len(), o.series.len());
            assert_eq!(g.requests[59], samples.len() as u64);
            for (q, read) in [(0.5, &g.p50_ms), (0.95, &g.p95_ms), (0.99, &g.p99_ms)] {
                let (read, want) = (read[59].unwrap() as f64, exact(samples, q));
                assert!(
                    (read - want).abs() <= 0.1 * want,
                    "{key} q={q}: {read} vs {want}"
                );
            }
            assert_eq!(g.avg_quality[59], Some(6.0));
            assert!((g.cost_usd[59] - samples.len() as f64 / 1_000.0).abs() < 1e-9);
            // Points without the model's requests are empty, not zero.
            assert_eq!(
                (g.requests[0], g.p95_ms[0], g.avg_quality[0]),
                (0, None, None)
            );
        }
        assert_eq!(models["mistral/m"].requests[29], 7);
        assert_eq!(o.series_by.provider.len(), 3);
        assert_eq!(o.series_by.tier["standard"].requests[59], 300);
        assert_eq!(o.series_by.variant["-"].requests.iter().sum::<u64>(), 307);
        // The overall points carry every percentile too.
        let p = &o.series[59];
        assert!(p.p50_ms.is_some() && p.p99_ms >= p.p95_ms && p.p95_ms >= p.p50_ms);
        assert_eq!(p.avg_quality, Some(6.0));
        // No traffic: no groups, every point empty.
        let empty = overview(&[], Window::Month, now);
        assert!(empty.series_by.model.is_empty() && empty.series.len() == 30);
    }

    #[test]
    fn overview_counts_rates_and_trend() {
        let now = 100_000 * 60 + 30;
        let cur = 100_000 * 60;
        let prev = cur - 3_600;
        let rows = vec![
            row(cur, "openai", "success", 30, 100),
            row(cur - 60, "openai", "cache_hit", 10, 40),
            row(cur, "offline", "offline", 10, 40),
            row(prev, "openai", "success", 50, 100),
            row(prev - 3_600, "openai", "offline", 99, 40),
        ];
        let o = overview(&rows, Window::Hour, now);
        assert_eq!(o.totals.requests, 50);
        assert_eq!(o.totals.errors, 10);
        assert_eq!(o.totals.cache_hits, 10);
        assert!((o.totals.success_rate - 0.8).abs() < 1e-9);
        assert!((o.totals.cache_hit_rate - 0.2).abs() < 1e-9);
        assert_eq!(o.by_provider["openai"].requests, 40);
        assert_eq!(o.by_model["offline/m"].errors, 10);
        assert_eq!(o.by_outcome["offline"], 10);
        assert_eq!(o.previous.requests, 50);
        assert!(
            o.totals.p50_ms.is_some_and(|p| (90..=110).contains(&p)),
            "{:?}",
            o.totals.p50_ms
        );
        assert!((o.totals.cost_usd - 0.0005).abs() < 1e-12);
        // Error rate 0 % → 20 %: degrading.
        assert_eq!(o.trend, Trend::Degrading);
        let swapped = overview(&rows[3..4], Window::Hour, now);
        assert_eq!(swapped.totals.requests, 0);
        assert_eq!(swapped.previous.requests, 50);
        assert_eq!(swapped.trend, Trend::Stable);
    }

    #[test]
    fn uptime_counts_busy_minutes_with_a_success() {
        let rows = vec![
            row(60, "openai", "success", 3, 40),
            row(60, "offline", "offline", 3, 40),
            row(120, "offline", "offline", 2, 40),
            row(180, "openai", "success", 1, 40),
            row(240, "openai", "success", 1, 40),
        ];
        assert!((uptime_from_minutes(&rows, 0) - 75.0).abs() < 1e-9);
        assert!((uptime_from_minutes(&rows, 1_000) - 100.0).abs() < 1e-9);
    }

    #[test]
    fn check_rules_name_the_problem() {
        let bad = total_since(&[row(0, "offline", "offline", 20, 40)], 0);
        let why = generation_problem(&bad, 5).unwrap();
        assert!(why.contains("error rate 100.0 %"), "{why}");
        assert_eq!(generation_problem(&bad, 50), None);
        let b = |s| Breaker {
            provider: "p".into(),
            model: "m".into(),
            state: s,
        };
        assert!(providers_problem(&[b("open")]).unwrap().contains("p/m"));
        assert_eq!(providers_problem(&[b("open"), b("closed")]), None);
        assert_eq!(providers_problem(&[]), None);
        assert_eq!(scans_problem(&[], 10, 5), None);
        let s = [("heartbeat".to_owned(), 0)];
        assert!(scans_problem(&s, 20_000, 5_000).unwrap().contains("20 s"));
        assert_eq!(scans_problem(&s, 1_000, 5_000), None);
        // Derived from the list so adding a migration does not break this test.
        let all: Vec<i64> = crate::migrate::MIGRATIONS
            .iter()
            .map(|m| m.version)
            .collect();
        assert_eq!(missing_migrations(&all), Vec::<i64>::new());
        let expected: Vec<i64> = all
            .iter()
            .copied()
            .filter(|v| ![1, 3].contains(v))
            .collect();
        assert_eq!(missing_migrations(&[1, 3]), expected);
    }

    #[test]
    fn metrics_text_has_cumulative_histograms() {
        let m = MetricsInput {
            video: vec![],
            usage: vec![row(0, "openai", "success", 4, 200)],
            routes: vec![("chat".into(), 4)],
            quality: vec![(
                "openai".into(),
                "m".into(),
                [0, 0, 0, 0, 0, 0, 1, 4, 4, 4],
                30.0,
                4,
            )],
            breakers: vec![Breaker {
                provider: "openai".into(),
                model: "m".into(),
                state: "open",
            }],
            alerts: vec![(
                "fp".into(),
                "HighErrorRate".into(),
                "critical".into(),
                "alertmanager".into(),
                "firing".into(),
            )],
            scans: vec![("heartbeat".into(), 12.5)],
            health_score: 65,
            emergency: false,
            flag_evaluations: vec![("beta".into(), "-".into(), "DISABLED".into(), 3)],
            org: None,
        };
        let text = render_metrics(&m).unwrap();
        let l = "tier=\"standard\",provider=\"openai\",model=\"m\",outcome=\"success\"";
        for line in [
            format!("dol_generation_requests_total{{{l}}} 4"),
            format!("dol_generation_latency_seconds_bucket{{{l},le=\"0.173\"}} 0"),
            format!("dol_generation_latency_seconds_bucket{{{l},le=\"0.205\"}} 4"),
            format!("dol_generation_latency_seconds_bucket{{{l},le=\"+Inf\"}} 4"),
            format!("dol_generation_latency_seconds_sum{{{l}}} 0.4"),
            format!("dol_generation_latency_seconds_count{{{l}}} 4"),
            format!("dol_cost_usd_total{{{l}}} 4e-5"),
            "dol_route_requests_total{route=\"chat\"} 4".to_owned(),
            "dol_generation_quality_bucket{provider=\"openai\",model=\"m\",le=\"8\"} 4".to_owned(),
            "dol_circuit_breaker_state{provider=\"openai\",model=\"m\"} 2".to_owned(),
            "dol_alert_state{id=\"fp\",alertname=\"HighErrorRate\",severity=\"critical\",source=\"alertmanager\"} 2".to_owned(),
            "dol_scan_age_seconds{scan=\"heartbeat\"} 12.5".to_owned(),
            "dol_health_score 65".to_owned(),
            "dol_emergency_mode 0".to_owned(),
            "dol_flag_evaluations_total{flag=\"beta\",variant=\"-\",reason=\"DISABLED\"} 3"
                .to_owned(),
        ] {
            assert!(text.lines().any(|x| x == line), "missing {line}\n{text}");
        }
    }

    #[test]
    fn org_metrics_label_every_series_with_the_org() {
        let m = MetricsInput {
            video: Vec::new(),
            usage: vec![row(0, "openai", "success", 4, 200)],
            routes: Vec::new(),
            quality: Vec::new(),
            breakers: Vec::new(),
            alerts: Vec::new(),
            scans: Vec::new(),
            health_score: 90,
            emergency: false,
            flag_evaluations: Vec::new(),
            org: Some("acme".into()),
        };
        let text = render_metrics(&m).unwrap();
        let l =
            "org=\"acme\",tier=\"standard\",provider=\"openai\",model=\"m\",outcome=\"success\"";
        for line in [
            format!("dol_generation_requests_total{{{l}}} 4"),
            format!("dol_generation_latency_seconds_count{{{l}}} 4"),
            format!("dol_cost_usd_total{{{l}}} 4e-5"),
            "dol_health_score{org=\"acme\"} 90".to_owned(),
            "dol_emergency_mode{org=\"acme\"} 0".to_owned(),
        ] {
            assert!(text.lines().any(|x| x == line), "missing {line}\n{text}");
        }
        // Every sample line of the org's exposition names the org.
        for sample in text.lines().filter(|x| !x.starts_with('#')) {
            assert!(sample.contains("org=\"acme\""), "{sample}");
        }
    }

    #[test]
    fn assembled_health_degrades_on_offline_traffic() {
        let now_ms = 100_000 * 60_000 + 5_000;
        let minute = 100_000 * 60;
        let inputs = |rows: Vec<UsageRow>, breakers: Vec<Breaker>| HealthInputs {
            anomalies: Vec::new(),
            score: ScoreInputs {
                storage: vec![
                    CheckResult::pass("database", 3),
                    CheckResult::pass("key-value", 1),
                ],
                recent: recent_usage(&rows, now_ms),
                usage_latency_ms: 1,
                usage_failed: false,
                breakers,
                routing_latency_ms: 1,
                scans: vec![],
                scans_latency_ms: 1,
                video: vec![],
                video_latency_ms: 0,
                now_ms,
            },
            rows,
            alerts: vec![],
            emergency: EmergencyState::default(),
            override_by: None,
        };
        let good = assemble_health(inputs(
            vec![row(minute, "openai", "success", 20, 100)],
            vec![],
        ));
        assert_eq!(good.health.system_health.score, 100);
        assert_eq!(good.emergency_mode.mode, "automatic");
        let open = Breaker {
            provider: "openai".into(),
            model: "gpt-4o".into(),
            state: "open",
        };
        let bad = assemble_health(inputs(
            vec![row(minute, "offline", "offline", 20, 40)],
            vec![open],
        ));
        // Components: 60 × 6/9 = 40; telemetry: 40 − 15 (error rate) = 25.
        assert_eq!(bad.health.system_health.score, 65);
        assert_eq!(
            bad.health.system_health.status,
            super::super::score::HealthStatus::Warning
        );
        let issues = bad.health.system_health.issues.join("\n");
        assert!(
            issues.contains("generation check failed: error rate 100.0 %"),
            "{issues}"
        );
        assert!(issues.contains("gpt-4o"), "{issues}");
        assert!((bad.health.uptime - 0.0).abs() < 1e-9);
    }
}
