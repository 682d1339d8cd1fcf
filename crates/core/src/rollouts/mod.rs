//! Guarded rollouts: a flag's variant served to a growing share of
//! targeting keys, step by step, advanced by the guard loop while the
//! variant's own telemetry stays healthy, and rolled back by itself when
//! error rate, latency, answer quality, cost or fallback rate regress.
//!
//! - [`plan`]: the plan an admin submits, validated.
//! - [`guard`]: the pure decision (advance / hold / roll back / pause /
//!   complete) from plan, state, telemetry and time.
//! - [`targeting`]: the rollout as a flagd `fractional` rule in the flag.
//! - [`store`]: the `rollouts` table and the transactions that change a
//!   rollout together with its flag version, audit entry and notification.
//! - [`readings`]: the guard loop's telemetry from the gateway's `requests`
//!   rows, per variant.

pub mod guard;
pub mod plan;
pub mod store;
pub mod targeting;

#[cfg(test)]
mod guard_tests;
#[cfg(test)]
mod store_tests;

use std::collections::BTreeMap;

use crate::gateway::telemetry::LATENCY_BUCKETS_MS;
use crate::observe::usage::{Agg, bucket_percentile};
use crate::storage::SqlValue;
use guard::{GuardReading, Reading, RolloutState, Telemetry};
use plan::{GuardMetric, RolloutPlan};

/// The value of `metric` over an aggregate; `None` when there is nothing to
/// compute it from.
pub fn metric_value(metric: GuardMetric, agg: &Agg) -> Option<f64> {
    if agg.requests == 0 {
        return None;
    }
    let n = agg.requests as f64;
    match metric {
        GuardMetric::ErrorRate => Some(agg.errors as f64 / n),
        GuardMetric::FallbackRate => Some(agg.fallbacks as f64 / n),
        GuardMetric::P95LatencyMs => bucket_percentile(&agg.buckets, 0.95).map(|ms| ms as f64),
        GuardMetric::Quality => agg.avg_quality(),
        GuardMetric::CostPerRequest => Some(agg.cost_micros as f64 / 1_000_000.0 / n),
    }
}

/// The per-variant aggregate of the `requests` rows with `ts >= ?` (Unix
/// ms) and `variant IN (?, ?)`, one row per variant, read by
/// [`agg_from_row`]. The gateway's per-request rows give rollouts exact
/// boundaries (a step or a rollout starts mid-minute, and an earlier
/// rollout's traffic in the same minute must not count).
pub fn variant_aggregate_sql() -> String {
    let mut buckets = String::new();
    let mut lower: Option<u64> = None;
    for le in LATENCY_BUCKETS_MS {
        let cond = match lower {
            None => format!("latency_ms <= {le}"),
            Some(lo) => format!("latency_ms > {lo} AND latency_ms <= {le}"),
        };
        buckets.push_str(&format!(", SUM(CASE WHEN {cond} THEN 1 ELSE 0 END)"));
        lower = Some(le);
    }
    let last = LATENCY_BUCKETS_MS.last().copied().unwrap_or(0);
    buckets.push_str(&format!(
        ", SUM(CASE WHEN latency_ms > {last} THEN 1 ELSE 0 END)"
    ));
    format!(
        "SELECT variant, COUNT(*), \
         SUM(CASE WHEN outcome IN ('offline', 'stream_aborted') THEN 1 ELSE 0 END), \
         SUM(CASE WHEN fallbacks > 0 THEN 1 ELSE 0 END), SUM(cached), SUM(latency_ms), \
         SUM(COALESCE(quality, 0)), COUNT(quality), SUM(COALESCE(cost_micros, 0)), SUM(cost_unknown)\
         {buckets}, SUM(COALESCE(baseline_cost_micros, cost_micros, 0)) FROM requests WHERE ts >= ? AND variant IN (?, ?) GROUP BY variant"
    )
}

/// One row of [`variant_aggregate_sql`]: the variant and its aggregate.
pub fn agg_from_row(row: &[SqlValue]) -> Option<(String, Agg)> {
    let variant = row.first()?.as_str()?.to_owned();
    let int = |i: usize| match row.get(i) {
        Some(SqlValue::Integer(n)) => u64::try_from(*n).unwrap_or(0),
        _ => 0,
    };
    let real = |i: usize| match row.get(i) {
        Some(SqlValue::Integer(n)) => *n as f64,
        Some(SqlValue::Real(r)) => *r,
        _ => 0.0,
    };
    let mut buckets = crate::gateway::telemetry::LatencyCounts::default();
    for (i, b) in buckets.iter_mut().enumerate() {
        *b = int(10 + i);
    }
    Some((
        variant,
        Agg {
            requests: int(1),
            errors: int(2),
            fallbacks: int(3),
            cache_hits: int(4),
            latency_sum_ms: int(5),
            quality_sum: real(6),
            quality_n: int(7),
            cost_micros: int(8),
            cost_unknown: int(9),
            baseline_micros: int(10 + crate::gateway::telemetry::LATENCY_BUCKETS),
            buckets,
        },
    ))
}

/// What the guard loop reads for a rollout at `now_ms`. `aggregate(from_ms)`
/// returns the per-variant aggregates of the gateway's requests since
/// `from_ms`. Windows never reach before the rollout (re)started: its
/// telemetry is its own. Step samples count the variant's requests since
/// the current step started.
pub fn readings<E>(
    plan: &RolloutPlan,
    state: &RolloutState,
    now_ms: i64,
    mut aggregate: impl FnMut(i64) -> Result<BTreeMap<String, Agg>, E>,
) -> Result<Telemetry, E> {
    let reading = |aggs: &BTreeMap<String, Agg>, variant: &str, metric: GuardMetric| {
        let agg = aggs.get(variant).cloned().unwrap_or_default();
        Reading {
            value: metric_value(metric, &agg),
            samples: agg.requests,
        }
    };
    // Guards often share a window (and the step may start where a window
    // does): query each start time once.
    let mut seen: BTreeMap<i64, BTreeMap<String, Agg>> = BTreeMap::new();
    let mut since = |from: i64| -> Result<BTreeMap<String, Agg>, E> {
        if let Some(aggs) = seen.get(&from) {
            return Ok(aggs.clone());
        }
        let aggs = aggregate(from)?;
        seen.insert(from, aggs.clone());
        Ok(aggs)
    };
    let mut guards = Vec::with_capacity(plan.guards.len());
    for g in &plan.guards {
        let window_ms = i64::try_from(g.window_secs.saturating_mul(1_000)).unwrap_or(i64::MAX);
        let from = now_ms.saturating_sub(window_ms).max(state.started_ms);
        let aggs = since(from)?;
        guards.push(GuardReading {
            variant: reading(&aggs, &plan.variant, g.metric),
            control: reading(&aggs, &plan.control, g.metric),
        });
    }
    let step = since(state.step_started_ms.max(state.started_ms))?;
    Ok(Telemetry {
        step_samples: step.get(&plan.variant).map_or(0, |a| a.requests),
        guards,
    })
}
