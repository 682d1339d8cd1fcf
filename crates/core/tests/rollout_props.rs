//! Property tests for `dol_core::rollouts`: the guard loop never skips a
//! step, never advances with too few samples, lets a breach win over an
//! advance, is deterministic; raising a rollout's percentage never moves a
//! targeting key that had the variant back out.

// A panic is how a test fails; the workspace denies these outside tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use dol_core::flags::{EvaluationContext, FlagSet};
use dol_core::rollouts::guard::{
    Action, Conditions, GuardReading, Reading, RolloutState, Status, Telemetry, decide,
};
use dol_core::rollouts::plan::{Baseline, Guard, GuardMetric, OnBreach, RolloutPlan, Step};
use dol_core::rollouts::targeting::flag_at;
use proptest::prelude::*;
use serde_json::json;

fn arb_plan() -> impl Strategy<Value = RolloutPlan> {
    let steps = proptest::collection::btree_set(1u8..100, 0..5).prop_flat_map(|set| {
        let mut percents: Vec<u8> = set.into_iter().collect();
        percents.push(100);
        let n = percents.len();
        proptest::collection::vec(0u64..3_600, n).prop_map(move |holds| {
            percents
                .iter()
                .zip(holds)
                .map(|(p, h)| Step {
                    percent: *p,
                    hold_secs: h,
                })
                .collect::<Vec<_>>()
        })
    });
    let guard = (
        0usize..GuardMetric::ALL.len(),
        any::<bool>(),
        0.0f64..10.0,
        60u64..7_200,
        0u64..1_800,
        0u64..200,
    )
        .prop_map(
            |(m, control, threshold, window_secs, for_secs, min_samples)| Guard {
                metric: GuardMetric::ALL[m],
                vs: if control {
                    Baseline::Control
                } else {
                    Baseline::Absolute
                },
                threshold,
                window_secs,
                for_secs,
                min_samples,
            },
        );
    (
        steps,
        0u64..500,
        proptest::collection::vec(guard, 0..4),
        any::<bool>(),
    )
        .prop_map(|(steps, min_samples, guards, pause)| RolloutPlan {
            variant: "new".to_owned(),
            control: "old".to_owned(),
            steps,
            min_samples,
            guards,
            on_breach: if pause {
                OnBreach::Pause
            } else {
                OnBreach::Rollback
            },
        })
}

fn arb_reading() -> impl Strategy<Value = Reading> {
    (proptest::option::weighted(0.9, 0.0f64..20.0), 0u64..1_000)
        .prop_map(|(value, samples)| Reading { value, samples })
}

fn arb_telemetry(guards: usize) -> impl Strategy<Value = Telemetry> {
    (
        0u64..1_000,
        proptest::collection::vec(
            (arb_reading(), arb_reading())
                .prop_map(|(variant, control)| GuardReading { variant, control }),
            guards,
        ),
    )
        .prop_map(|(step_samples, guards)| Telemetry {
            step_samples,
            guards,
        })
}

fn arb_case() -> impl Strategy<Value = (RolloutPlan, RolloutState, Telemetry, Conditions, i64)> {
    arb_plan().prop_flat_map(|plan| {
        let steps = plan.steps.len();
        let guards = plan.guards.len();
        (
            Just(plan),
            (
                0..steps,
                0i64..7_200_000,
                0usize..5,
                proptest::collection::btree_map(0..4usize, 0i64..7_200_000, 0..3),
            ),
            arb_telemetry(guards),
            (proptest::bool::weighted(0.1), proptest::bool::weighted(0.1)),
            7_200_000i64..14_400_000,
        )
            .prop_map(
                |(plan, (step, started, status, since), telemetry, (emergency, killed), now)| {
                    let mut state = RolloutState::start(started);
                    state.step = step;
                    state.status = [
                        Status::Active,
                        Status::Active,
                        Status::Paused,
                        Status::RolledBack,
                        Status::Completed,
                    ][status];
                    state.breaching_since = since
                        .into_iter()
                        .filter(|(i, _)| *i < plan.guards.len())
                        .collect();
                    (
                        plan,
                        state,
                        telemetry,
                        Conditions { emergency, killed },
                        now,
                    )
                },
            )
    })
}

/// True when guard `i` is judged breaching with its `for` time elapsed.
fn breach_due(plan: &RolloutPlan, state: &RolloutState, t: &Telemetry, now: i64) -> bool {
    plan.guards.iter().enumerate().any(|(i, g)| {
        let r = t.guards[i];
        if r.variant.samples < g.min_samples {
            return false;
        }
        let Some(v) = r.variant.value else {
            return false;
        };
        let bound = match g.vs {
            Baseline::Absolute => g.threshold,
            Baseline::Control => {
                if r.control.samples < g.min_samples {
                    return false;
                }
                let Some(c) = r.control.value else {
                    return false;
                };
                if g.metric.higher_is_better() {
                    c - g.threshold
                } else {
                    c + g.threshold
                }
            }
        };
        let worse = if g.metric.higher_is_better() {
            v < bound
        } else {
            v > bound
        };
        let since = state.breaching_since.get(&i).copied().unwrap_or(now);
        worse && now - since >= i64::try_from(g.for_secs * 1_000).unwrap()
    })
}

proptest! {
    #[test]
    fn decisions_keep_the_invariants((plan, state, t, cond, now) in arb_case()) {
        let d = decide(&plan, &state, &t, cond, now);
        // Deterministic.
        prop_assert_eq!(&d, &decide(&plan, &state, &t, cond, now));
        // Never skips a step, never moves backwards through the steps.
        prop_assert!(d.next.step == state.step || d.next.step == state.step + 1);
        if d.next.step == state.step + 1 {
            prop_assert_eq!(d.action, Action::Advance);
        }
        if matches!(d.action, Action::Advance | Action::Complete) {
            // Never with too few samples: the step and every guard's window.
            prop_assert!(t.step_samples >= plan.min_samples);
            for (g, r) in plan.guards.iter().zip(&t.guards) {
                prop_assert!(r.variant.samples >= g.min_samples);
                prop_assert!(r.variant.value.is_some());
            }
            prop_assert!(!cond.emergency && !cond.killed);
            prop_assert_eq!(state.status, Status::Active);
            // A breach always wins over an advance.
            prop_assert!(!breach_due(&plan, &state, &t, now));
        }
        if d.action == Action::Complete {
            prop_assert_eq!(state.step, plan.steps.len() - 1);
            prop_assert_eq!(d.next.percent(&plan), 100);
        }
        // A due breach on an active rollout with nothing blocking acts.
        if state.status == Status::Active && !cond.emergency && !cond.killed
            && breach_due(&plan, &state, &t, now)
        {
            prop_assert!(matches!(d.action, Action::RollBack | Action::Pause), "{:?}", d);
            prop_assert!(d.breach.is_some());
        }
        // Finished rollouts never change.
        if state.status.is_finished() {
            prop_assert_eq!(d.action, Action::None);
            prop_assert_eq!(&d.next, &state);
        }
        if d.action == Action::RollBack {
            prop_assert_eq!(d.next.percent(&plan), 0);
        }
    }

    #[test]
    fn raising_the_percentage_never_moves_a_key_back_out(
        low in 1u8..100,
        extra in 1u8..100,
        keys in proptest::collection::vec("[a-z0-9-]{1,12}", 1..40),
    ) {
        let high = low.saturating_add(extra).min(100);
        let plan = RolloutPlan {
            variant: "new".to_owned(),
            control: "old".to_owned(),
            steps: vec![Step { percent: 100, hold_secs: 0 }],
            min_samples: 0,
            guards: vec![],
            on_breach: OnBreach::Rollback,
        };
        let flag = json!({"state": "ENABLED", "variants": {"old": 1, "new": 2}, "defaultVariant": "old"});
        let set_at = |p: u8| {
            FlagSet::from_value(&json!({"flags": {"f": flag_at(&flag, None, &plan, p, false)}})).unwrap()
        };
        let (a, b) = (set_at(low), set_at(high));
        for key in keys {
            let ctx = EvaluationContext::new().with_targeting_key(key.clone());
            let before = a.evaluate("f", &ctx, 0).variant;
            let after = b.evaluate("f", &ctx, 0).variant;
            if before.as_deref() == Some("new") {
                prop_assert_eq!(after.as_deref(), Some("new"), "{} at {} then {}", key, low, high);
            }
        }
    }
}
