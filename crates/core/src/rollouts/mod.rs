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
//! - [`readings`]: the guard loop's telemetry from `usage_minute` rows.

pub mod guard;
pub mod plan;
pub mod store;
pub mod targeting;

#[cfg(test)]
mod guard_tests;
#[cfg(test)]
mod store_tests;

use crate::observe::usage::{Agg, UsageRow, bucket_percentile, total_since};
use guard::{GuardReading, Reading, Telemetry};
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

fn of_variant(rows: &[UsageRow], variant: &str, from_s: i64) -> Agg {
    let picked: Vec<UsageRow> = rows
        .iter()
        .filter(|r| r.variant == variant)
        .cloned()
        .collect();
    total_since(&picked, from_s)
}

/// Start (Unix seconds) of the minute holding `s`.
fn minute_floor(s: i64) -> i64 {
    s.div_euclid(60) * 60
}

/// What the guard loop reads for `plan` at `now_ms` from usage rows (which
/// must reach back at least to the longest guard window and the step start):
/// requests of the variant since the minute the step started, and per
/// guard the variant's and control's value over the guard's window.
pub fn readings(
    plan: &RolloutPlan,
    rows: &[UsageRow],
    step_started_ms: i64,
    now_ms: i64,
) -> Telemetry {
    let now_s = now_ms.div_euclid(1_000);
    let step_from = minute_floor(step_started_ms.div_euclid(1_000));
    let guards = plan
        .guards
        .iter()
        .map(|g| {
            let from = minute_floor(now_s - i64::try_from(g.window_secs).unwrap_or(i64::MAX));
            let v = of_variant(rows, &plan.variant, from);
            let c = of_variant(rows, &plan.control, from);
            GuardReading {
                variant: Reading {
                    value: metric_value(g.metric, &v),
                    samples: v.requests,
                },
                control: Reading {
                    value: metric_value(g.metric, &c),
                    samples: c.requests,
                },
            }
        })
        .collect();
    Telemetry {
        step_samples: of_variant(rows, &plan.variant, step_from).requests,
        guards,
    }
}

/// How far back (Unix seconds) [`readings`] needs rows at `now_ms`.
pub fn rows_needed_from(plan: &RolloutPlan, step_started_ms: i64, now_ms: i64) -> i64 {
    let longest = plan.guards.iter().map(|g| g.window_secs).max().unwrap_or(0);
    let window_from = now_ms.div_euclid(1_000) - i64::try_from(longest).unwrap_or(i64::MAX);
    minute_floor(window_from.min(step_started_ms.div_euclid(1_000)))
}
