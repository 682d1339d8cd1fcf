//! Health score (0–100), status and the emergency-mode decision.
//!
//! # One score
//!
//! [`system_score`] is DOL's health score: `/api/health`, the
//! `dol_health_score` gauge of `/metrics` and the `alerts` scan (the
//! `health_score` rule metric and automatic emergency mode) all compute it
//! from [`ScoreInputs`] read by [`super::system::read_score_inputs`], so at
//! the same moment they agree on the score, the status and whether DOL is
//! in an emergency. Its component checks are the storage round trips
//! (`database` 3, `key-value` 2), `generation` (2), `providers` (1),
//! `scans` (1) and, when video platforms had jobs in the last hour, `video`
//! (1) ([`super::usage::WEIGHTS`], [`crate::video::health`]); its telemetry is the last
//! 5 minutes of usage ([`super::usage::recent_usage`]).
//!
//! # Scoring rules
//!
//! The score is the sum of two parts, rounded to the nearest integer:
//!
//! * **Components, 60 points.** Each [`WeightedCheck`] earns its weight when
//!   it passed, half its weight when it passed but took longer than
//!   [`ScoreConfig::slow_check_ms`], nothing when it failed. The part is
//!   `60 × earned / total weight` (60 when there are no checks or all
//!   weights are zero).
//! * **Telemetry, 40 points**, each sub-score linear between a "full" and a
//!   "zero" bound ([`ScoreConfig`] holds them):
//!   error rate 15 points (full ≤ 1 %, zero ≥ 20 %),
//!   p95 latency 10 points (full ≤ 2 s, zero ≥ 10 s),
//!   average quality 10 points (full ≥ 4.0, zero ≤ 2.5),
//!   fallback rate 5 points (full ≤ 5 %, zero ≥ 50 %).
//!   A measure with no data (fewer than [`ScoreConfig::min_samples`]
//!   requests, or no quality scores) earns its full points: no traffic is
//!   no evidence of trouble.
//!
//! Status: score ≥ 80 is [`HealthStatus::Healthy`], ≥ 60
//! [`HealthStatus::Warning`], below that [`HealthStatus::Critical`].
//!
//! # Emergency mode
//!
//! [`decide_emergency`] enters emergency mode when the score falls below
//! [`EmergencyConfig::enter_below`] (60), and leaves it only after the score
//! has stayed at or above [`EmergencyConfig::exit_at_or_above`] (75) for
//! [`EmergencyConfig::hold_ms`] (10 minutes); a dip below the exit threshold
//! restarts the hold. An admin override ([`Override::ForceOn`] /
//! [`Override::ForceOff`]) decides regardless of the score until set back to
//! [`Override::Auto`].

use serde::{Deserialize, Serialize};

use crate::health::CheckResult;

use super::stats::Summary;
use super::usage::{
    Agg, Breaker, GENERATION_MIN_SAMPLES, SCAN_MAX_AGE_MS, generation_problem, providers_problem,
    scans_problem, weight_of,
};

/// A component check with its weight in the score.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightedCheck {
    /// The check result (name, ok, latency, last error).
    #[serde(flatten)]
    pub check: CheckResult,
    /// Relative importance; 0 leaves it out of the score.
    pub weight: u32,
}

impl WeightedCheck {
    /// A check with a weight.
    pub fn new(check: CheckResult, weight: u32) -> Self {
        Self { check, weight }
    }
}

/// Telemetry aggregates feeding the score; rates are fractions 0.0–1.0.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TelemetryInputs {
    /// Requests in the window the other figures come from.
    pub samples: u64,
    /// Failed / total.
    pub error_rate: f64,
    /// 95th percentile latency, ms.
    pub p95_latency_ms: Option<u64>,
    /// Mean quality (1–5).
    pub avg_quality: Option<f64>,
    /// Fallbacks / total.
    pub fallback_rate: f64,
}

impl From<&Summary> for TelemetryInputs {
    fn from(s: &Summary) -> Self {
        Self {
            samples: s.total,
            error_rate: s.error_rate,
            p95_latency_ms: s.p95_ms,
            avg_quality: s.avg_quality,
            fallback_rate: s.fallback_rate,
        }
    }
}

/// Bounds of the scoring rules (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreConfig {
    /// A passing check slower than this earns half its weight.
    pub slow_check_ms: u64,
    /// Fewer requests than this and telemetry earns full points.
    pub min_samples: u64,
    /// Error rate earning full / zero points.
    pub error_rate_full: f64,
    /// See `error_rate_full`.
    pub error_rate_zero: f64,
    /// p95 latency earning full / zero points, ms.
    pub p95_full_ms: u64,
    /// See `p95_full_ms`.
    pub p95_zero_ms: u64,
    /// Quality earning full / zero points.
    pub quality_full: f64,
    /// See `quality_full`.
    pub quality_zero: f64,
    /// Fallback rate earning full / zero points.
    pub fallback_full: f64,
    /// See `fallback_full`.
    pub fallback_zero: f64,
    /// Scores at or above this are healthy.
    pub healthy_at: u8,
    /// Scores at or above this (and below `healthy_at`) are warnings.
    pub warning_at: u8,
}

impl Default for ScoreConfig {
    fn default() -> Self {
        Self {
            slow_check_ms: 1_000,
            min_samples: 10,
            error_rate_full: 0.01,
            error_rate_zero: 0.20,
            p95_full_ms: 2_000,
            p95_zero_ms: 10_000,
            quality_full: 4.0,
            quality_zero: 2.5,
            fallback_full: 0.05,
            fallback_zero: 0.50,
            healthy_at: 80,
            warning_at: 60,
        }
    }
}

/// Overall status derived from the score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HealthStatus {
    /// Score ≥ 80 by default.
    Healthy,
    /// Score ≥ 60 by default.
    Warning,
    /// Below the warning threshold.
    Critical,
}

/// The scored health: the `systemHealth` object of `/api/health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemHealth {
    /// Status from the score.
    pub status: HealthStatus,
    /// 0–100.
    pub score: u8,
    /// Human-readable reasons points were lost, most important first.
    pub issues: Vec<String>,
}

/// Points for `value` where `full` earns `points` and `zero` earns nothing,
/// linear in between; works whichever way round the bounds are.
fn linear(value: f64, full: f64, zero: f64, points: f64) -> f64 {
    if value.is_nan() || full == zero {
        return if value.is_nan() { 0.0 } else { points };
    }
    let t = (value - zero) / (full - zero);
    points * t.clamp(0.0, 1.0)
}

/// Status for a score under `cfg`'s thresholds.
pub fn status_for(score: u8, cfg: &ScoreConfig) -> HealthStatus {
    if score >= cfg.healthy_at {
        HealthStatus::Healthy
    } else if score >= cfg.warning_at {
        HealthStatus::Warning
    } else {
        HealthStatus::Critical
    }
}

/// Scores checks and telemetry by the rules in the module docs.
pub fn score(checks: &[WeightedCheck], t: &TelemetryInputs, cfg: &ScoreConfig) -> SystemHealth {
    let mut issues = Vec::new();
    let total: u64 = checks.iter().map(|c| u64::from(c.weight)).sum();
    let mut earned = 0.0;
    for c in checks {
        let w = f64::from(c.weight);
        if !c.check.ok {
            let why = c.check.error.as_deref().unwrap_or("failed");
            issues.push(format!("{} check failed: {why}", c.check.name));
        } else if c.check.latency_ms > cfg.slow_check_ms {
            earned += w / 2.0;
            issues.push(format!(
                "{} check slow: {} ms",
                c.check.name, c.check.latency_ms
            ));
        } else {
            earned += w;
        }
    }
    let components = if total == 0 {
        60.0
    } else {
        60.0 * earned / total as f64
    };

    let telemetry = if t.samples < cfg.min_samples {
        40.0
    } else {
        let err = linear(t.error_rate, cfg.error_rate_full, cfg.error_rate_zero, 15.0);
        if err < 15.0 {
            issues.push(format!("error rate {:.1} %", t.error_rate * 100.0));
        }
        let p95 = match t.p95_latency_ms {
            Some(ms) => {
                let p = linear(
                    ms as f64,
                    cfg.p95_full_ms as f64,
                    cfg.p95_zero_ms as f64,
                    10.0,
                );
                if p < 10.0 {
                    issues.push(format!("p95 latency {ms} ms"));
                }
                p
            }
            None => 10.0,
        };
        let quality = match t.avg_quality {
            Some(q) => {
                let p = linear(q, cfg.quality_full, cfg.quality_zero, 10.0);
                if p < 10.0 {
                    issues.push(format!("average quality {q:.2}"));
                }
                p
            }
            None => 10.0,
        };
        let fb = linear(t.fallback_rate, cfg.fallback_full, cfg.fallback_zero, 5.0);
        if fb < 5.0 {
            issues.push(format!("fallback rate {:.1} %", t.fallback_rate * 100.0));
        }
        err + p95 + quality + fb
    };

    // Clamped before the cast so the conversion cannot wrap.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let score = (components + telemetry).round().clamp(0.0, 100.0) as u8;
    SystemHealth {
        status: status_for(score, cfg),
        score,
        issues,
    }
}

/// Everything [`system_score`] reads, gathered by
/// [`super::system::read_score_inputs`].
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreInputs {
    /// Storage round trips (`database`, `key-value`), as measured.
    pub storage: Vec<CheckResult>,
    /// Usage of the last 5 minutes ([`super::usage::recent_usage`]).
    pub recent: Agg,
    /// How long reading the usage rows took, ms.
    pub usage_latency_ms: u64,
    /// Whether reading the usage rows failed (the generation check fails).
    pub usage_failed: bool,
    /// Circuit breakers of the gateway's routing state.
    pub breakers: Vec<Breaker>,
    /// How long reading the routing state took, ms.
    pub routing_latency_ms: u64,
    /// Latest start per scan, Unix ms.
    pub scans: Vec<(String, i64)>,
    /// How long reading the scans took, ms.
    pub scans_latency_ms: u64,
    /// Video platforms with recent jobs ([`crate::video::health`]); none
    /// leaves the `video` check out.
    pub video: Vec<crate::video::health::PlatformHealth>,
    /// How long reading the video jobs took, ms.
    pub video_latency_ms: u64,
    /// Now, Unix ms.
    pub now_ms: i64,
}

/// The scored system: the weighted checks and the score.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// Every scored check with its weight (`components` of `/api/health`).
    pub checks: Vec<WeightedCheck>,
    /// Score, status and issues.
    pub health: SystemHealth,
}

/// DOL's health score (see the module docs): the storage checks as given,
/// then `generation` ([`generation_problem`] over the recent usage, or
/// failed when it was unreadable), `providers` ([`providers_problem`]) and
/// `scans` ([`scans_problem`]), `video` when video platforms had recent
/// jobs ([`crate::video::health::problem`]), weighted by [`super::usage::WEIGHTS`], and
/// the recent usage as telemetry, by [`score`] with the default rules.
pub fn system_score(i: &ScoreInputs) -> Scored {
    let mut checks: Vec<CheckResult> = i.storage.clone();
    checks.push(if i.usage_failed {
        CheckResult::fail("generation", i.usage_latency_ms, "usage unreadable")
    } else {
        match generation_problem(&i.recent, GENERATION_MIN_SAMPLES) {
            Some(why) => CheckResult::fail("generation", i.usage_latency_ms, &why),
            None => CheckResult::pass("generation", i.usage_latency_ms),
        }
    });
    checks.push(match providers_problem(&i.breakers) {
        Some(why) => CheckResult::fail("providers", i.routing_latency_ms, &why),
        None => CheckResult::pass("providers", i.routing_latency_ms),
    });
    checks.push(match scans_problem(&i.scans, i.now_ms, SCAN_MAX_AGE_MS) {
        Some(why) => CheckResult::fail("scans", i.scans_latency_ms, &why),
        None => CheckResult::pass("scans", i.scans_latency_ms),
    });
    // Only a deployment whose video platforms had jobs is judged on them.
    if !i.video.is_empty() {
        checks.push(match crate::video::health::problem(&i.video) {
            Some(why) => CheckResult::fail("video", i.video_latency_ms, &why),
            None => CheckResult::pass("video", i.video_latency_ms),
        });
    }
    let weighted: Vec<WeightedCheck> = checks
        .into_iter()
        .map(|c| {
            let w = weight_of(&c.name);
            WeightedCheck::new(c, w)
        })
        .collect();
    let telemetry = TelemetryInputs::from(&i.recent.summary());
    let health = score(&weighted, &telemetry, &ScoreConfig::default());
    Scored {
        checks: weighted,
        health,
    }
}

/// Uptime percentage from counts of passed and total health probes
/// (100 when nothing was probed yet).
pub fn uptime_percent(passed: u64, total: u64) -> f64 {
    if total == 0 {
        100.0
    } else {
        100.0 * passed.min(total) as f64 / total as f64
    }
}

/// Emergency-mode thresholds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmergencyConfig {
    /// Enter when the score is below this.
    pub enter_below: u8,
    /// Recovery counts only while the score is at or above this.
    pub exit_at_or_above: u8,
    /// How long recovery must last before leaving, ms.
    pub hold_ms: i64,
}

impl Default for EmergencyConfig {
    fn default() -> Self {
        Self {
            enter_below: 60,
            exit_at_or_above: 75,
            hold_ms: 10 * 60 * 1_000,
        }
    }
}

/// An admin's override of the automatic decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Override {
    /// Follow the score.
    #[default]
    Auto,
    /// Emergency mode on, whatever the score.
    ForceOn,
    /// Emergency mode off, whatever the score.
    ForceOff,
}

/// Emergency-mode state, stored between scans.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EmergencyState {
    /// Whether emergency mode is on.
    pub active: bool,
    /// When it last turned on, ms.
    pub since_ms: Option<i64>,
    /// While active: when the score last reached the exit threshold and
    /// has stayed there since, ms.
    pub recovering_since_ms: Option<i64>,
    /// The admin override.
    #[serde(default)]
    pub override_mode: Override,
}

/// Why [`decide_emergency`] decided as it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmergencyReason {
    /// The admin override decided.
    Forced,
    /// The score fell below the entry threshold.
    Entered,
    /// Active and not yet recovered long enough.
    StillLow,
    /// Active and recovering; the hold has not elapsed.
    Recovering,
    /// The hold elapsed; emergency mode ended.
    Recovered,
    /// Inactive and the score is fine.
    Normal,
}

/// The next emergency state for `score` at `now_ms` (rules in module docs).
pub fn decide_emergency(
    prev: &EmergencyState,
    score: u8,
    now_ms: i64,
    cfg: &EmergencyConfig,
) -> (EmergencyState, EmergencyReason) {
    let mut next = prev.clone();
    match prev.override_mode {
        Override::ForceOn | Override::ForceOff => {
            let on = prev.override_mode == Override::ForceOn;
            if on && !prev.active {
                next.since_ms = Some(now_ms);
            }
            next.active = on;
            next.recovering_since_ms = None;
            return (next, EmergencyReason::Forced);
        }
        Override::Auto => {}
    }
    if !prev.active {
        if score < cfg.enter_below {
            next.active = true;
            next.since_ms = Some(now_ms);
            next.recovering_since_ms = None;
            return (next, EmergencyReason::Entered);
        }
        return (next, EmergencyReason::Normal);
    }
    if score < cfg.exit_at_or_above {
        next.recovering_since_ms = None;
        return (next, EmergencyReason::StillLow);
    }
    let since = prev.recovering_since_ms.unwrap_or(now_ms);
    if now_ms.saturating_sub(since) >= cfg.hold_ms {
        next.active = false;
        next.recovering_since_ms = None;
        return (next, EmergencyReason::Recovered);
    }
    next.recovering_since_ms = Some(since);
    (next, EmergencyReason::Recovering)
}

/// Sets the admin override; the next [`decide_emergency`] applies it.
/// Setting [`Override::Auto`] keeps the current activity, so the score and
/// hysteresis take over from there.
pub fn set_override(prev: &EmergencyState, mode: Override, now_ms: i64) -> EmergencyState {
    let mut next = prev.clone();
    next.override_mode = mode;
    match mode {
        Override::ForceOn => {
            if !prev.active {
                next.since_ms = Some(now_ms);
            }
            next.active = true;
            next.recovering_since_ms = None;
        }
        Override::ForceOff => {
            next.active = false;
            next.recovering_since_ms = None;
        }
        Override::Auto => {}
    }
    next
}

/// One active alert as `/api/health` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActiveAlert {
    /// Alert id (fingerprint).
    pub id: String,
    /// Alert name (a DOL rule or an Alertmanager `alertname`).
    pub name: String,
    /// `critical`, `warning` or `info`.
    pub severity: String,
    /// `rule` or `alertmanager`.
    pub source: String,
    /// When it fired, Unix ms.
    pub since_ms: Option<i64>,
    /// Who acknowledged it, if anyone.
    pub acknowledged_by: Option<String>,
}

/// The body of `GET /api/health`:
/// `{systemHealth: {status, score, issues}, uptime, components, activeAlerts, emergency}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiHealth {
    /// Score, status and issues.
    pub system_health: SystemHealth,
    /// Uptime percentage over the probe history (see [`uptime_percent`]).
    pub uptime: f64,
    /// The weighted component checks that were scored.
    pub components: Vec<WeightedCheck>,
    /// Firing alerts, most severe first.
    pub active_alerts: Vec<ActiveAlert>,
    /// Emergency-mode state.
    pub emergency: EmergencyState,
}

impl ApiHealth {
    /// The HTTP status: 200 unless the status is critical (503), so load
    /// balancers stop sending traffic only when it is really bad.
    pub fn http_status(&self) -> u16 {
        match self.system_health.status {
            HealthStatus::Healthy | HealthStatus::Warning => 200,
            HealthStatus::Critical => 503,
        }
    }
}

impl From<&super::alerts::AlertState> for ActiveAlert {
    fn from(s: &super::alerts::AlertState) -> Self {
        Self {
            id: s.fingerprint.clone(),
            name: s.name.clone(),
            severity: s.severity.as_str().to_owned(),
            source: s.source.as_str().to_owned(),
            since_ms: s.fired_at_ms,
            acknowledged_by: s.acknowledged_by.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(name: &str, w: u32) -> WeightedCheck {
        WeightedCheck::new(CheckResult::pass(name, 5), w)
    }

    fn busy() -> TelemetryInputs {
        TelemetryInputs {
            samples: 100,
            error_rate: 0.0,
            p95_latency_ms: Some(500),
            avg_quality: Some(4.5),
            fallback_rate: 0.0,
        }
    }

    fn cfg() -> ScoreConfig {
        ScoreConfig::default()
    }

    #[test]
    fn perfect_is_100_healthy() {
        let h = score(&[ok("db", 3), ok("api", 1)], &busy(), &cfg());
        assert_eq!((h.score, h.status), (100, HealthStatus::Healthy));
        assert!(h.issues.is_empty());
    }

    #[test]
    fn no_checks_and_no_traffic_is_100() {
        let h = score(&[], &TelemetryInputs::default(), &cfg());
        assert_eq!(h.score, 100);
    }

    #[test]
    fn failed_check_loses_its_weight_share() {
        let checks = [
            ok("db", 3),
            WeightedCheck::new(CheckResult::fail("api", 9, "timeout"), 1),
        ];
        let h = score(&checks, &busy(), &cfg());
        // 60 × 3/4 + 40 = 85.
        assert_eq!(h.score, 85);
        assert_eq!(h.issues, vec!["api check failed: timeout".to_owned()]);
    }

    #[test]
    fn slow_check_earns_half() {
        let slow = WeightedCheck::new(CheckResult::pass("db", 5_000), 1);
        let h = score(&[slow, ok("api", 1)], &busy(), &cfg());
        // 60 × 1.5/2 + 40 = 85.
        assert_eq!(h.score, 85);
        assert!(h.issues[0].contains("slow"));
    }

    #[test]
    fn zero_weights_count_as_no_checks() {
        let c = WeightedCheck::new(CheckResult::fail("x", 1, "down"), 0);
        assert_eq!(score(&[c], &busy(), &cfg()).score, 100);
    }

    #[test]
    fn error_rate_rule() {
        let mut t = busy();
        t.error_rate = 0.20;
        assert_eq!(score(&[], &t, &cfg()).score, 85);
        t.error_rate = 0.105;
        // Halfway between 1 % and 20 % loses 7.5 points → 92.5 → 93.
        assert_eq!(score(&[], &t, &cfg()).score, 93);
        t.error_rate = 0.01;
        assert_eq!(score(&[], &t, &cfg()).score, 100);
    }

    #[test]
    fn p95_rule() {
        let mut t = busy();
        t.p95_latency_ms = Some(10_000);
        assert_eq!(score(&[], &t, &cfg()).score, 90);
        t.p95_latency_ms = Some(6_000);
        assert_eq!(score(&[], &t, &cfg()).score, 95);
        t.p95_latency_ms = None;
        assert_eq!(score(&[], &t, &cfg()).score, 100);
    }

    #[test]
    fn quality_rule() {
        let mut t = busy();
        t.avg_quality = Some(2.0);
        assert_eq!(score(&[], &t, &cfg()).score, 90);
        t.avg_quality = Some(3.25);
        assert_eq!(score(&[], &t, &cfg()).score, 95);
        t.avg_quality = None;
        assert_eq!(score(&[], &t, &cfg()).score, 100);
    }

    #[test]
    fn fallback_rule() {
        let mut t = busy();
        t.fallback_rate = 0.9;
        let h = score(&[], &t, &cfg());
        assert_eq!(h.score, 95);
        assert!(h.issues[0].starts_with("fallback rate"));
    }

    #[test]
    fn too_few_samples_earn_full_telemetry_points() {
        let t = TelemetryInputs {
            samples: 3,
            error_rate: 1.0,
            ..busy()
        };
        assert_eq!(score(&[], &t, &cfg()).score, 100);
    }

    #[test]
    fn status_thresholds() {
        let c = cfg();
        assert_eq!(status_for(100, &c), HealthStatus::Healthy);
        assert_eq!(status_for(80, &c), HealthStatus::Healthy);
        assert_eq!(status_for(79, &c), HealthStatus::Warning);
        assert_eq!(status_for(60, &c), HealthStatus::Warning);
        assert_eq!(status_for(59, &c), HealthStatus::Critical);
        assert_eq!(
            serde_json::to_string(&HealthStatus::Critical).unwrap(),
            "\"CRITICAL\""
        );
    }

    #[test]
    fn everything_down_is_critical() {
        let checks = [WeightedCheck::new(CheckResult::fail("db", 1, "down"), 1)];
        let t = TelemetryInputs {
            samples: 100,
            error_rate: 1.0,
            p95_latency_ms: Some(60_000),
            avg_quality: Some(1.0),
            fallback_rate: 1.0,
        };
        let h = score(&checks, &t, &cfg());
        assert_eq!((h.score, h.status), (0, HealthStatus::Critical));
        assert_eq!(h.issues.len(), 5);
    }

    #[test]
    fn uptime() {
        assert_eq!(uptime_percent(0, 0), 100.0);
        assert_eq!(uptime_percent(3, 4), 75.0);
    }

    const MIN: i64 = 60_000;

    #[test]
    fn emergency_enters_below_60_only() {
        let c = EmergencyConfig::default();
        let s = EmergencyState::default();
        let (n, r) = decide_emergency(&s, 60, 0, &c);
        assert_eq!((n.active, r), (false, EmergencyReason::Normal));
        let (n, r) = decide_emergency(&s, 59, 5, &c);
        assert_eq!(
            (n.active, n.since_ms, r),
            (true, Some(5), EmergencyReason::Entered)
        );
    }

    #[test]
    fn emergency_leaves_only_after_hold_above_exit() {
        let c = EmergencyConfig::default();
        let (s, _) = decide_emergency(&EmergencyState::default(), 40, 0, &c);
        // 70 is above entry but below exit: still on (hysteresis).
        let (s, r) = decide_emergency(&s, 70, MIN, &c);
        assert_eq!((s.active, r), (true, EmergencyReason::StillLow));
        let (s, r) = decide_emergency(&s, 80, 2 * MIN, &c);
        assert_eq!((s.active, r), (true, EmergencyReason::Recovering));
        assert_eq!(s.recovering_since_ms, Some(2 * MIN));
        let (s, r) = decide_emergency(&s, 90, 11 * MIN, &c);
        assert_eq!((s.active, r), (true, EmergencyReason::Recovering));
        let (s, r) = decide_emergency(&s, 90, 12 * MIN, &c);
        assert_eq!((s.active, r), (false, EmergencyReason::Recovered));
        assert_eq!(s.recovering_since_ms, None);
    }

    #[test]
    fn a_dip_restarts_the_hold() {
        let c = EmergencyConfig::default();
        let (s, _) = decide_emergency(&EmergencyState::default(), 40, 0, &c);
        let (s, _) = decide_emergency(&s, 80, MIN, &c);
        let (s, _) = decide_emergency(&s, 74, 5 * MIN, &c);
        assert_eq!(s.recovering_since_ms, None);
        let (s, _) = decide_emergency(&s, 80, 6 * MIN, &c);
        let (s, r) = decide_emergency(&s, 80, 12 * MIN, &c);
        assert_eq!((s.active, r), (true, EmergencyReason::Recovering));
        let (s, r) = decide_emergency(&s, 80, 16 * MIN, &c);
        assert_eq!((s.active, r), (false, EmergencyReason::Recovered));
    }

    #[test]
    fn admin_override_wins_until_auto() {
        let c = EmergencyConfig::default();
        let s = set_override(&EmergencyState::default(), Override::ForceOn, 7);
        assert!(s.active);
        assert_eq!(s.since_ms, Some(7));
        let (s, r) = decide_emergency(&s, 100, 30 * MIN, &c);
        assert_eq!((s.active, r), (true, EmergencyReason::Forced));
        let s = set_override(&s, Override::ForceOff, 31 * MIN);
        let (s, r) = decide_emergency(&s, 0, 32 * MIN, &c);
        assert_eq!((s.active, r), (false, EmergencyReason::Forced));
        let s = set_override(&s, Override::Auto, 33 * MIN);
        let (s, r) = decide_emergency(&s, 0, 34 * MIN, &c);
        assert_eq!((s.active, r), (true, EmergencyReason::Entered));
    }

    #[test]
    fn weighted_check_json_is_flat() {
        let v = serde_json::to_value(ok("db", 2)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"name": "db", "ok": true, "latency_ms": 5, "weight": 2})
        );
    }
    #[test]
    fn api_health_json_shape() {
        let h = ApiHealth {
            system_health: score(&[ok("db", 1)], &busy(), &cfg()),
            uptime: 99.5,
            components: vec![ok("db", 1)],
            active_alerts: vec![],
            emergency: EmergencyState::default(),
        };
        assert_eq!(h.http_status(), 200);
        let v = serde_json::to_value(&h).unwrap();
        assert_eq!(v["systemHealth"]["status"], "HEALTHY");
        assert_eq!(v["systemHealth"]["score"], 100);
        assert_eq!(v["uptime"], 99.5);
        assert_eq!(v["activeAlerts"], serde_json::json!([]));
        assert_eq!(v["emergency"]["active"], false);
        let crit = ApiHealth {
            system_health: SystemHealth {
                status: HealthStatus::Critical,
                score: 10,
                issues: vec![],
            },
            ..h
        };
        assert_eq!(crit.http_status(), 503);
    }
}
