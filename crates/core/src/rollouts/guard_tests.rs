//! The guard loop's state machine over a fake clock: one decision per
//! simulated minute, telemetry scripted per tick.

use super::guard::{
    Action, Conditions, GuardReading, PauseCause, Reading, RolloutState, Status, Telemetry, decide,
};
use super::plan::{Baseline, Guard, GuardMetric, OnBreach, RolloutPlan, Step};

const MIN: i64 = 60_000;

fn plan(on_breach: OnBreach) -> RolloutPlan {
    RolloutPlan {
        variant: "enhanced".to_owned(),
        control: "comprehensive".to_owned(),
        steps: [25u8, 50, 75, 100]
            .iter()
            .map(|p| Step {
                percent: *p,
                hold_secs: 600,
            })
            .collect(),
        min_samples: 50,
        guards: vec![
            Guard {
                metric: GuardMetric::Quality,
                vs: Baseline::Absolute,
                threshold: 7.0,
                window_secs: 1_800,
                for_secs: 300,
                min_samples: 20,
            },
            Guard {
                metric: GuardMetric::ErrorRate,
                vs: Baseline::Control,
                threshold: 0.05,
                window_secs: 900,
                for_secs: 0,
                min_samples: 20,
            },
        ],
        on_breach,
    }
}

fn reading(value: f64, samples: u64) -> Reading {
    Reading {
        value: Some(value),
        samples,
    }
}

/// Healthy telemetry: quality 8.5, error rate equal to control's.
fn healthy(step_samples: u64) -> Telemetry {
    Telemetry {
        step_samples,
        guards: vec![
            GuardReading {
                variant: reading(8.5, 200),
                control: reading(8.7, 600),
            },
            GuardReading {
                variant: reading(0.01, 200),
                control: reading(0.01, 600),
            },
        ],
    }
}

fn with_quality(q: f64) -> Telemetry {
    let mut t = healthy(200);
    t.guards[0].variant.value = Some(q);
    t
}

const CALM: Conditions = Conditions {
    emergency: false,
    killed: false,
};

#[test]
fn advances_step_by_step_then_completes() {
    let plan = plan(OnBreach::Rollback);
    let mut state = RolloutState::start(0);
    let mut percents = vec![state.percent(&plan)];
    let mut now = 0;
    for _ in 0..60 {
        now += MIN;
        let d = decide(&plan, &state, &healthy(500), CALM, now);
        if d.action == Action::Advance || d.action == Action::Complete {
            percents.push(d.next.percent(&plan));
        }
        state = d.next;
        if state.status == Status::Completed {
            break;
        }
    }
    assert_eq!(percents, vec![25, 50, 75, 100, 100]);
    assert_eq!(state.status, Status::Completed);
    assert!(
        state.reason.contains("is now the default variant"),
        "{}",
        state.reason
    );
    // Each step held its 10 minutes: 4 steps × 10 min.
    assert_eq!(now, 40 * MIN);
}

#[test]
fn holds_for_samples_then_for_time() {
    let plan = plan(OnBreach::Rollback);
    let state = RolloutState::start(0);
    let d = decide(&plan, &state, &healthy(10), CALM, 30 * MIN);
    assert_eq!(d.action, Action::Hold);
    assert!(d.reason.contains("10 of 50 requests"), "{}", d.reason);
    let d = decide(&plan, &state, &healthy(60), CALM, 5 * MIN);
    assert_eq!(d.action, Action::Hold);
    assert!(d.reason.contains("held 5m of 10m"), "{}", d.reason);
    let d = decide(&plan, &state, &healthy(60), CALM, 10 * MIN);
    assert_eq!(d.action, Action::Advance);
    assert_eq!(d.next.step, 1);
    assert_eq!(d.next.step_started_ms, 10 * MIN);
}

#[test]
fn a_guard_without_enough_samples_blocks_advance_but_not_forever_silently() {
    let plan = plan(OnBreach::Rollback);
    let state = RolloutState::start(0);
    let mut t = healthy(500);
    t.guards[1].control.samples = 3;
    let d = decide(&plan, &state, &t, CALM, 60 * MIN);
    assert_eq!(d.action, Action::Hold);
    assert!(
        d.reason.contains("3 of 20 requests of control"),
        "{}",
        d.reason
    );
}

#[test]
fn quality_breach_rolls_back_after_its_for_duration() {
    let plan = plan(OnBreach::Rollback);
    let mut state = RolloutState::start(0);
    // Minute 1..4: breaching but not for 5 minutes yet → hold.
    for minute in 1..=5 {
        let d = decide(&plan, &state, &with_quality(5.8), CALM, minute * MIN);
        assert_eq!(d.action, Action::Hold, "minute {minute}: {}", d.reason);
        assert!(d.reason.contains("quality 5.80 < 7.00"), "{}", d.reason);
        state = d.next;
    }
    assert_eq!(state.breaching_since.get(&0), Some(&MIN));
    let d = decide(&plan, &state, &with_quality(5.8), CALM, 6 * MIN);
    assert_eq!(d.action, Action::RollBack);
    assert_eq!(d.next.status, Status::RolledBack);
    assert_eq!(d.next.percent(&plan), 0);
    let b = d.breach.expect("breach");
    assert_eq!(b.metric, "quality");
    assert!((b.observed - 5.8).abs() < 1e-9);
    assert!((b.threshold - 7.0).abs() < 1e-9);
    assert!(
        d.reason
            .starts_with("rolled back from 25 % to 0 %: quality 5.80 < 7.00 over the last 30m"),
        "{}",
        d.reason
    );
    // Finished: later ticks do nothing, even with healthy telemetry.
    let after = decide(&plan, &d.next, &healthy(900), CALM, 60 * MIN);
    assert_eq!(after.action, Action::None);
    assert_eq!(after.next, d.next);
}

#[test]
fn a_recovered_guard_resets_its_breach_clock() {
    let plan = plan(OnBreach::Rollback);
    let mut state = RolloutState::start(0);
    for minute in 1..=3 {
        state = decide(&plan, &state, &with_quality(6.0), CALM, minute * MIN).next;
    }
    state = decide(&plan, &state, &with_quality(8.0), CALM, 4 * MIN).next;
    assert!(state.breaching_since.is_empty());
    for minute in 5..=9 {
        let d = decide(&plan, &state, &with_quality(6.0), CALM, minute * MIN);
        assert_eq!(d.action, Action::Hold, "minute {minute}");
        state = d.next;
    }
}

#[test]
fn error_rate_against_control_breaches_at_once() {
    let plan = plan(OnBreach::Rollback);
    let state = RolloutState::start(0);
    let mut t = healthy(500);
    t.guards[1].variant.value = Some(0.20);
    t.guards[1].control.value = Some(0.02);
    let d = decide(&plan, &state, &t, CALM, MIN);
    assert_eq!(d.action, Action::RollBack);
    let b = d.breach.expect("breach");
    assert_eq!(b.metric, "error_rate");
    assert_eq!(b.control, Some(0.02));
    assert!((b.threshold - 0.07).abs() < 1e-9);
    // Within the allowed difference: fine.
    t.guards[1].variant.value = Some(0.06);
    let d = decide(&plan, &state, &t, CALM, MIN);
    assert_ne!(d.action, Action::RollBack);
}

#[test]
fn latency_guard_breaches_on_p95_above_threshold() {
    let mut plan = plan(OnBreach::Rollback);
    plan.guards = vec![Guard {
        metric: GuardMetric::P95LatencyMs,
        vs: Baseline::Absolute,
        threshold: 90_000.0,
        window_secs: 1_200,
        for_secs: 0,
        min_samples: 10,
    }];
    let state = RolloutState::start(0);
    let t = Telemetry {
        step_samples: 500,
        guards: vec![GuardReading {
            variant: reading(120_000.0, 40),
            control: reading(2_500.0, 400),
        }],
    };
    let d = decide(&plan, &state, &t, CALM, 20 * MIN);
    assert_eq!(d.action, Action::RollBack);
    assert!(
        d.reason.contains("p95_latency_ms 120000 > 90000"),
        "{}",
        d.reason
    );
}

#[test]
fn pause_on_breach_needs_an_admin() {
    let plan = plan(OnBreach::Pause);
    let mut state = RolloutState::start(0);
    state.step = 2;
    let mut t = healthy(500);
    t.guards[1].variant.value = Some(0.5);
    let d = decide(&plan, &state, &t, CALM, MIN);
    assert_eq!(d.action, Action::Pause);
    assert_eq!(d.next.paused, Some(PauseCause::Breach));
    assert_eq!(d.next.percent(&plan), 75);
    let later = decide(&plan, &d.next, &healthy(900), CALM, 90 * MIN);
    assert_eq!(later.action, Action::None);
}

#[test]
fn emergency_pauses_and_its_end_resumes_with_a_fresh_hold() {
    let plan = plan(OnBreach::Rollback);
    let state = RolloutState::start(0);
    let emergency = Conditions {
        emergency: true,
        killed: false,
    };
    // Even a breach does not act during an emergency: generation is on the
    // safe tier anyway, and the variant's telemetry stops meaning much.
    let d = decide(&plan, &state, &with_quality(2.0), emergency, 20 * MIN);
    assert_eq!(d.action, Action::Pause);
    assert_eq!(d.next.paused, Some(PauseCause::Emergency));
    assert_eq!(d.next.percent(&plan), 25);
    let still = decide(&plan, &d.next, &healthy(900), emergency, 21 * MIN);
    assert_eq!(still.action, Action::None);
    let resumed = decide(&plan, &d.next, &healthy(900), CALM, 30 * MIN);
    assert_eq!(resumed.action, Action::Resume);
    assert_eq!(resumed.next.status, Status::Active);
    assert_eq!(resumed.next.step_started_ms, 30 * MIN);
    let next = decide(&plan, &resumed.next, &healthy(900), CALM, 31 * MIN);
    assert_eq!(next.action, Action::Hold, "hold restarts: {}", next.reason);
}

#[test]
fn kill_switch_pauses_too() {
    let plan = plan(OnBreach::Rollback);
    let state = RolloutState::start(0);
    let killed = Conditions {
        emergency: false,
        killed: true,
    };
    let d = decide(&plan, &state, &healthy(900), killed, 20 * MIN);
    assert_eq!(d.action, Action::Pause);
    assert_eq!(d.next.paused, Some(PauseCause::Killed));
    assert!(d.reason.contains("kill switch"), "{}", d.reason);
}

#[test]
fn missing_values_do_not_breach() {
    let plan = plan(OnBreach::Rollback);
    let state = RolloutState::start(0);
    let mut t = healthy(500);
    // Streaming answers are not scored: no quality value at all.
    t.guards[0].variant.value = None;
    let d = decide(&plan, &state, &t, CALM, 30 * MIN);
    assert_eq!(d.action, Action::Hold);
    assert!(d.reason.contains("no value"), "{}", d.reason);
}

#[test]
fn human_durations() {
    use super::guard::human_secs;
    assert_eq!(human_secs(0), "0s");
    assert_eq!(human_secs(90), "1m30s");
    assert_eq!(human_secs(86_400), "1d");
    assert_eq!(human_secs(5_400), "1h30m");
}

#[test]
fn readings_query_each_window_start_once() {
    use std::collections::BTreeMap;

    use crate::observe::usage::Agg;
    let mut plan = plan(OnBreach::Rollback);
    // Both guards over the same 30 minutes; the step started with the rollout.
    plan.guards[1].window_secs = 1_800;
    let state = RolloutState::start(0);
    let mut calls = Vec::new();
    let t = super::readings(&plan, &state, 60 * MIN, |from| {
        calls.push(from);
        let agg = Agg {
            requests: 7,
            ..Agg::default()
        };
        Ok::<_, ()>(BTreeMap::from([("enhanced".to_owned(), agg)]))
    })
    .unwrap();
    assert_eq!(calls, vec![30 * MIN, 0]);
    assert_eq!(t.step_samples, 7);
    assert_eq!(t.guards[1].variant.samples, 7);
    assert_eq!(t.guards[1].control.samples, 0);
}

#[test]
fn guard_status_shows_each_reading_against_its_bound() {
    use super::guard::guard_status;
    let p = plan(OnBreach::Rollback);
    let mut state = RolloutState::start(0);
    // Quality 6 < 7 breaching (since a minute), error rate 0.01 within
    // control's 0.01 + 0.05.
    state.breaching_since.insert(0, MIN);
    let g = guard_status(&p, &state, &with_quality(6.0));
    assert_eq!(g.len(), 2);
    assert_eq!(
        (g[0].metric.as_str(), g[0].state, g[0].bound),
        ("quality", "breaching", Some(7.0))
    );
    assert_eq!(g[0].variant, reading(6.0, 200));
    assert!(
        g[0].note.as_deref().is_some_and(|n| n.contains("60000")),
        "{:?}",
        g[0].note
    );
    assert_eq!((g[1].state, g[1].note.as_deref()), ("ok", None));
    assert!(
        g[1].bound.is_some_and(|b| (b - 0.06).abs() < 1e-12),
        "{:?}",
        g[1].bound
    );
    assert_eq!(g[1].control, reading(0.01, 600));
    // Too few samples, and control without a value: unjudged, saying why;
    // no bound against a control that has none.
    let mut thin = healthy(0);
    thin.guards[0].variant.samples = 3;
    thin.guards[1].control.value = None;
    let g = guard_status(&p, &RolloutState::start(0), &thin);
    assert_eq!((g[0].state, g[0].bound), ("unjudged", Some(7.0)));
    assert!(
        g[0].note.as_deref().is_some_and(|n| n.contains("3 of 20")),
        "{:?}",
        g[0].note
    );
    assert_eq!((g[1].state, g[1].bound), ("unjudged", None));
    // No readings at all (a guard loop that has not read yet): unjudged.
    let none = guard_status(&p, &RolloutState::start(0), &Telemetry::default());
    assert!(none.iter().all(|s| s.state == "unjudged"));
}
