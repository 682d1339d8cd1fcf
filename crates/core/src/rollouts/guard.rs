//! The guard loop's decision: given a plan, its state, the per-variant
//! telemetry and the time, what happens to the rollout now.
//!
//! Rules, in order (the first that applies wins):
//!
//! 1. A finished rollout (completed, rolled back, cancelled) or one paused by
//!    a breach or an admin does nothing until an admin acts.
//! 2. Paused by emergency mode or a kill switch: stays paused while that
//!    lasts, then resumes (the step's hold time starts again).
//! 3. An active rollout pauses while emergency mode is on or the flag is
//!    killed.
//! 4. A guard whose breach has lasted its `for` time breaches: the rollout
//!    rolls back to 0 % (or pauses, per the plan). A breach always wins
//!    over an advance.
//! 5. Otherwise it holds while a guard is breaching but not yet for long
//!    enough, while the step has fewer than `min_samples` requests of the
//!    variant, while a guard lacks samples to be judged, or while the
//!    step's hold time has not passed.
//! 6. Otherwise it advances exactly one step, or completes after the last.
//!
//! [`decide`] is a pure function of its arguments: the same telemetry and
//! time always give the same decision.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::plan::{Baseline, Guard, OnBreach, RolloutPlan};

/// Where a rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The guard loop moves it.
    Active,
    /// Held at its percentage; see [`PauseCause`].
    Paused,
    /// Back at 0 % after a breach; restarting needs an admin.
    RolledBack,
    /// At 100 %: the variant is now the flag's default.
    Completed,
    /// Stopped by an admin; the flag's targeting was restored.
    Cancelled,
}

impl Status {
    /// True for completed, rolled back and cancelled.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::RolledBack | Self::Completed | Self::Cancelled)
    }
}

/// Why a rollout is paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PauseCause {
    /// A guard breached and the plan says pause; an admin resumes.
    Breach,
    /// An admin paused it; an admin resumes.
    Admin,
    /// Emergency mode is on; resumes by itself when it ends.
    Emergency,
    /// The flag's kill switch is on; resumes by itself when it is off.
    Killed,
}

/// The stored state of a rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutState {
    /// Where it is.
    pub status: Status,
    /// When the rollout (re)started (Unix ms): its telemetry windows begin
    /// no earlier.
    #[serde(default)]
    pub started_ms: i64,
    /// Index of the current step in the plan.
    pub step: usize,
    /// When the current step started (Unix ms).
    pub step_started_ms: i64,
    /// Why it is paused, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<PauseCause>,
    /// Guard index → when its current breach was first seen (Unix ms).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub breaching_since: BTreeMap<usize, i64>,
    /// The last decision's reason.
    pub reason: String,
    /// When the state last changed (Unix ms).
    pub updated_ms: i64,
}

impl RolloutState {
    /// A rollout that starts now at its first step.
    pub fn start(now_ms: i64) -> Self {
        Self {
            status: Status::Active,
            started_ms: now_ms,
            step: 0,
            step_started_ms: now_ms,
            paused: None,
            breaching_since: BTreeMap::new(),
            reason: "started at the first step".to_owned(),
            updated_ms: now_ms,
        }
    }

    /// The percentage of targeting keys that get the variant.
    pub fn percent(&self, plan: &RolloutPlan) -> u8 {
        match self.status {
            Status::Active | Status::Paused => plan.percent_at(self.step),
            Status::Completed => 100,
            Status::RolledBack | Status::Cancelled => 0,
        }
    }
}

/// One metric reading over a window.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Reading {
    /// The value; `None` when the window has nothing to compute it from
    /// (no requests, or no scored answer for quality).
    pub value: Option<f64>,
    /// Requests in the window.
    pub samples: u64,
}

/// A guard's readings: the rolled-out variant and the control variant over
/// the guard's window.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct GuardReading {
    /// The rolled-out variant.
    pub variant: Reading,
    /// The control variant.
    pub control: Reading,
}

/// What the guard loop read for one rollout.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Telemetry {
    /// Requests of the variant since the current step started.
    pub step_samples: u64,
    /// One reading per plan guard, in plan order.
    pub guards: Vec<GuardReading>,
}

/// Outside conditions that pause rollouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Conditions {
    /// Emergency mode is active.
    pub emergency: bool,
    /// The flag's kill switch is on.
    pub killed: bool,
}

/// A breached guard, as reported in reasons, audit entries and messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Breach {
    /// Index of the guard in the plan.
    pub guard: usize,
    /// The metric name.
    pub metric: String,
    /// The variant's value over the window.
    pub observed: f64,
    /// The bound it crossed (for a control guard: control's value ± the
    /// allowed difference).
    pub threshold: f64,
    /// Control's value, for a control guard.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control: Option<f64>,
    /// The window, seconds.
    pub window_secs: u64,
    /// Requests of the variant in the window.
    pub samples: u64,
}

/// What the decision does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Nothing to do (finished, or paused until an admin acts).
    None,
    /// Stay at the current step.
    Hold,
    /// Move to the next step.
    Advance,
    /// The last step held: the variant becomes the default.
    Complete,
    /// A breach: back to 0 %.
    RollBack,
    /// Pause (breach with `on_breach: pause`, emergency, kill switch).
    Pause,
    /// Resume after emergency mode or a kill switch ended.
    Resume,
}

impl Action {
    /// True when the flag's served percentage may change or the operators
    /// should hear about it (everything but none and hold).
    pub fn is_notable(self) -> bool {
        !matches!(self, Self::None | Self::Hold)
    }
}

/// A decision: the action, the state after it, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// What happens.
    pub action: Action,
    /// The state after the decision.
    pub next: RolloutState,
    /// Plain-language reason (names the metric, value and bound on breach).
    pub reason: String,
    /// The breach, when one decided it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breach: Option<Breach>,
}

/// Formats a duration for reasons: `90s`, `5m`, `24h`, `1h30m`.
pub fn human_secs(secs: u64) -> String {
    if secs == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3_600,
        secs % 3_600 / 60,
        secs % 60,
    );
    for (n, unit) in [(d, "d"), (h, "h"), (m, "m"), (s, "s")] {
        if n > 0 {
            let _ = write!(out, "{n}{unit}");
        }
    }
    out
}

fn fmt_value(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

/// How a guard stands on its readings.
enum Judgement {
    /// Not enough samples (or no value) to judge.
    Unjudged(String),
    /// Within bounds.
    Ok,
    /// Worse than the bound.
    Breaching(Breach),
}

/// The bound `guard`'s variant value is held to: the threshold itself, or
/// control's value `control` worsened by it (lower for quality, higher for
/// the rest).
fn bound(guard: &Guard, control: Option<f64>) -> f64 {
    match (guard.vs, control) {
        (Baseline::Control, Some(c)) if guard.metric.higher_is_better() => c - guard.threshold,
        (Baseline::Control, Some(c)) => c + guard.threshold,
        _ => guard.threshold,
    }
}

/// One guard of a rollout as it stands on the latest readings, for the
/// console (`GET /admin/flags/{key}/rollout`'s `guards`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuardStatus {
    /// The metric watched.
    pub metric: String,
    /// `absolute` or `control`.
    pub vs: Baseline,
    /// The threshold as planned (for `control`: the allowed worsening).
    pub threshold: f64,
    /// The window, seconds.
    pub window_secs: u64,
    /// How long a breach must last, seconds.
    pub for_secs: u64,
    /// Fewest requests before the guard is judged.
    pub min_samples: u64,
    /// The rolled-out variant's reading.
    pub variant: Reading,
    /// Control's reading.
    pub control: Reading,
    /// The bound the variant's value is held to now (`null` for a control
    /// guard while control has no value).
    pub bound: Option<f64>,
    /// `ok`, `breaching` or `unjudged`.
    pub state: &'static str,
    /// Why it is unjudged, or since when it has been breaching.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Each guard of `plan` on `telemetry` (as [`decide`] judges it), with the
/// breach clocks of `state`.
pub fn guard_status(
    plan: &RolloutPlan,
    state: &RolloutState,
    telemetry: &Telemetry,
) -> Vec<GuardStatus> {
    plan.guards
        .iter()
        .enumerate()
        .map(|(i, guard)| {
            let reading = telemetry.guards.get(i).copied().unwrap_or_default();
            let control = reading.control.value;
            let (state_word, note) = match judge(i, guard, &reading) {
                Judgement::Unjudged(why) => ("unjudged", Some(why)),
                Judgement::Ok => ("ok", None),
                Judgement::Breaching(_) => (
                    "breaching",
                    state
                        .breaching_since
                        .get(&i)
                        .map(|since| format!("breaching since {since} (Unix ms)")),
                ),
            };
            GuardStatus {
                metric: guard.metric.as_str().to_owned(),
                vs: guard.vs,
                threshold: guard.threshold,
                window_secs: guard.window_secs,
                for_secs: guard.for_secs,
                min_samples: guard.min_samples,
                variant: reading.variant,
                control: reading.control,
                bound: (guard.vs == Baseline::Absolute || control.is_some())
                    .then(|| bound(guard, control)),
                state: state_word,
                note,
            }
        })
        .collect()
}

fn judge(index: usize, guard: &Guard, reading: &GuardReading) -> Judgement {
    let name = guard.metric.as_str();
    if reading.variant.samples < guard.min_samples {
        return Judgement::Unjudged(format!(
            "guard {name} has {} of {} requests of the variant in its {} window",
            reading.variant.samples,
            guard.min_samples,
            human_secs(guard.window_secs)
        ));
    }
    let Some(observed) = reading.variant.value else {
        return Judgement::Unjudged(format!("guard {name} has no value for the variant yet"));
    };
    let better_high = guard.metric.higher_is_better();
    let (bound, control) = match guard.vs {
        Baseline::Absolute => (guard.threshold, None),
        Baseline::Control => {
            if reading.control.samples < guard.min_samples {
                return Judgement::Unjudged(format!(
                    "guard {name} has {} of {} requests of control in its {} window",
                    reading.control.samples,
                    guard.min_samples,
                    human_secs(guard.window_secs)
                ));
            }
            let Some(c) = reading.control.value else {
                return Judgement::Unjudged(format!("guard {name} has no value for control yet"));
            };
            (bound(guard, Some(c)), Some(c))
        }
    };
    let worse = if better_high {
        observed < bound
    } else {
        observed > bound
    };
    if worse {
        Judgement::Breaching(Breach {
            guard: index,
            metric: name.to_owned(),
            observed,
            threshold: bound,
            control,
            window_secs: guard.window_secs,
            samples: reading.variant.samples,
        })
    } else {
        Judgement::Ok
    }
}

/// The sentence for a breach: `quality 5.80 < 7.00 over the last 30m (120
/// requests of enhanced)`.
pub fn breach_text(plan: &RolloutPlan, b: &Breach) -> String {
    let higher_better =
        crate::rollouts::plan::GuardMetric::parse(&b.metric).is_some_and(|m| m.higher_is_better());
    let op = if higher_better { "<" } else { ">" };
    let vs = match b.control {
        Some(c) => format!(
            " (control {} {} {})",
            plan.control,
            fmt_value(c),
            if higher_better {
                "minus the allowed difference"
            } else {
                "plus the allowed difference"
            }
        ),
        None => String::new(),
    };
    format!(
        "{} {} {op} {}{vs} over the last {} ({} requests of {})",
        b.metric,
        fmt_value(b.observed),
        fmt_value(b.threshold),
        human_secs(b.window_secs),
        b.samples,
        plan.variant
    )
}

fn with(state: &RolloutState, now_ms: i64, f: impl FnOnce(&mut RolloutState)) -> RolloutState {
    let mut next = state.clone();
    f(&mut next);
    next.updated_ms = now_ms;
    next
}

fn decision(
    action: Action,
    mut next: RolloutState,
    reason: String,
    breach: Option<Breach>,
) -> Decision {
    next.reason.clone_from(&reason);
    Decision {
        action,
        next,
        reason,
        breach,
    }
}

/// Decides what happens to a rollout at `now_ms`. See the module docs for
/// the rules.
pub fn decide(
    plan: &RolloutPlan,
    state: &RolloutState,
    telemetry: &Telemetry,
    conditions: Conditions,
    now_ms: i64,
) -> Decision {
    let unchanged = |reason: &str| Decision {
        action: Action::None,
        next: state.clone(),
        reason: reason.to_owned(),
        breach: None,
    };
    if state.status.is_finished() {
        return unchanged(&state.reason);
    }
    let blocking = if conditions.emergency {
        Some((PauseCause::Emergency, "emergency mode is active"))
    } else if conditions.killed {
        Some((PauseCause::Killed, "the flag's kill switch is on"))
    } else {
        None
    };
    if state.status == Status::Paused {
        return match (state.paused, blocking) {
            (Some(PauseCause::Emergency | PauseCause::Killed), None) => {
                let next = with(state, now_ms, |s| {
                    s.status = Status::Active;
                    s.paused = None;
                    s.step_started_ms = now_ms;
                    s.breaching_since.clear();
                });
                decision(
                    Action::Resume,
                    next,
                    format!(
                        "resumed at {} %: the pause cause ended (the step's hold starts again)",
                        plan.percent_at(state.step)
                    ),
                    None,
                )
            }
            _ => unchanged(&state.reason),
        };
    }
    if let Some((cause, why)) = blocking {
        let next = with(state, now_ms, |s| {
            s.status = Status::Paused;
            s.paused = Some(cause);
            s.breaching_since.clear();
        });
        return decision(
            Action::Pause,
            next,
            format!("paused at {} %: {why}", plan.percent_at(state.step)),
            None,
        );
    }

    // Judge every guard; remember when each breach started.
    let mut breaching_since = state.breaching_since.clone();
    let mut breached: Option<Breach> = None;
    let mut pending: Option<String> = None;
    let mut unjudged: Option<String> = None;
    for (index, guard) in plan.guards.iter().enumerate() {
        let reading = telemetry.guards.get(index).copied().unwrap_or_default();
        match judge(index, guard, &reading) {
            Judgement::Unjudged(why) => {
                // Missing data neither confirms nor ends a breach.
                unjudged.get_or_insert(why);
            }
            Judgement::Ok => {
                breaching_since.remove(&index);
            }
            Judgement::Breaching(b) => {
                let since = *breaching_since.entry(index).or_insert(now_ms);
                let lasted_ms = now_ms.saturating_sub(since);
                let needed_ms =
                    i64::try_from(guard.for_secs.saturating_mul(1_000)).unwrap_or(i64::MAX);
                if lasted_ms >= needed_ms {
                    breached.get_or_insert(b);
                } else if pending.is_none() {
                    pending = Some(format!(
                        "{} for {} of {}",
                        breach_text(plan, &b),
                        human_secs(u64::try_from(lasted_ms / 1_000).unwrap_or(0)),
                        human_secs(guard.for_secs)
                    ));
                }
            }
        }
    }
    let percent = plan.percent_at(state.step);
    if let Some(b) = breached {
        let text = breach_text(plan, &b);
        return match plan.on_breach {
            OnBreach::Rollback => {
                let next = with(state, now_ms, |s| {
                    s.status = Status::RolledBack;
                    s.breaching_since.clear();
                });
                decision(
                    Action::RollBack,
                    next,
                    format!("rolled back from {percent} % to 0 %: {text}"),
                    Some(b),
                )
            }
            OnBreach::Pause => {
                let next = with(state, now_ms, |s| {
                    s.status = Status::Paused;
                    s.paused = Some(PauseCause::Breach);
                    s.breaching_since.clear();
                });
                decision(
                    Action::Pause,
                    next,
                    format!("paused at {percent} %: {text}"),
                    Some(b),
                )
            }
        };
    }
    let hold = |reason: String| {
        let next = with(state, now_ms, |s| {
            s.breaching_since = breaching_since.clone()
        });
        decision(Action::Hold, next, reason, None)
    };
    if let Some(p) = pending {
        return hold(format!("holding at {percent} %: {p}"));
    }
    if telemetry.step_samples < plan.min_samples {
        return hold(format!(
            "holding at {percent} %: {} of {} requests of {} at this step",
            telemetry.step_samples, plan.min_samples, plan.variant
        ));
    }
    if let Some(why) = unjudged {
        return hold(format!("holding at {percent} %: {why}"));
    }
    let held_ms = now_ms.saturating_sub(state.step_started_ms);
    let hold_secs = plan.steps.get(state.step).map_or(0, |s| s.hold_secs);
    let needed_ms = i64::try_from(hold_secs.saturating_mul(1_000)).unwrap_or(i64::MAX);
    if held_ms < needed_ms {
        return hold(format!(
            "holding at {percent} %: held {} of {}",
            human_secs(u64::try_from(held_ms / 1_000).unwrap_or(0)),
            human_secs(hold_secs)
        ));
    }
    let last = plan.steps.len().saturating_sub(1);
    if state.step >= last {
        let next = with(state, now_ms, |s| {
            s.status = Status::Completed;
            s.breaching_since.clear();
        });
        return decision(
            Action::Complete,
            next,
            format!(
                "{} is now the default variant ({} requests at 100 %, guards healthy)",
                plan.variant, telemetry.step_samples
            ),
            None,
        );
    }
    let to = plan.percent_at(state.step + 1);
    let next = with(state, now_ms, |s| {
        s.step += 1;
        s.step_started_ms = now_ms;
        s.breaching_since.clear();
    });
    decision(
        Action::Advance,
        next,
        format!(
            "advanced from {percent} % to {to} %: {} requests at this step, held {}, guards healthy",
            telemetry.step_samples,
            human_secs(u64::try_from(held_ms / 1_000).unwrap_or(0))
        ),
        None,
    )
}
