//! Health of the video platforms (issue 15): each platform's success rate,
//! queue time, duration, cost and open jobs over the recent jobs, folded
//! from `video_jobs` rows ([`super::store::recent_jobs`]). DOL's one health
//! score takes them as its `video` check
//! ([`crate::observe::score::system_score`]: "video platforms: N of M
//! healthy"), `/metrics` as the `dol_video_*` series and the alert rules as
//! `video_failure_rate` and `video_platforms_unhealthy`.
//!
//! A platform's outcomes are counted per attempt, so a fallback counts
//! against the platform that failed even when the job then completed
//! elsewhere: every attempt that did not submit (`submit_failed`,
//! `platform_failed`, `throttled`, `timeout`, …) is a failure of its
//! platform; a completed job is a success of the platform that made it.
//! A platform is healthy when it had fewer than [`MIN_OUTCOMES`] outcomes
//! (no evidence of trouble) or a success rate of at least
//! [`HEALTHY_SUCCESS`]; the `video` check passes while at least 90 % of the
//! platforms with recent jobs are healthy.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::observe::prometheus::{PromError, Writer};

/// How far back the health looks: jobs ended this recently, and open jobs.
pub const WINDOW_MS: u64 = 3_600_000;
/// Success rate at or above which a platform is healthy.
pub const HEALTHY_SUCCESS: f64 = 0.9;
/// Outcomes a platform needs before its success rate can make it unhealthy.
pub const MIN_OUTCOMES: u64 = 3;
/// Share of platforms that must be healthy for the `video` check to pass.
pub const HEALTHY_SHARE: f64 = 0.9;

/// One `video_jobs` row, as far as health reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    /// The platform serving it now (or that ended it).
    pub platform: String,
    /// `queued`, `in_progress`, `completed`, `failed` or `cancelled`.
    pub status: String,
    /// The `attempts` JSON list (`platform`, `outcome` per entry).
    pub attempts: Vec<Value>,
    /// Unix ms it was created.
    pub created_at_ms: u64,
    /// Unix ms the platform started it.
    pub started_at_ms: Option<u64>,
    /// Unix ms it ended.
    pub completed_at_ms: Option<u64>,
    /// What it was charged (a known price only).
    pub cost_micros: Option<u64>,
    /// Seconds of video asked for.
    pub seconds: u64,
}

/// One platform's recent health.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlatformHealth {
    /// Platform name (`openai`, `runway`, `replicate`).
    pub platform: String,
    /// Healthy by the rule in the module docs.
    pub healthy: bool,
    /// Successes / outcomes; `None` without outcomes.
    pub success_rate: Option<f64>,
    /// Completed jobs made here.
    pub successes: u64,
    /// Attempts that failed here.
    pub failures: u64,
    /// Jobs queued or running here now.
    pub open: u64,
    /// Mean queue time (created → started) of the completed jobs, ms.
    pub avg_queue_ms: Option<f64>,
    /// Mean duration (created → completed) of the completed jobs, ms.
    pub avg_duration_ms: Option<f64>,
    /// Known cost of the completed jobs, micro-USD.
    pub cost_micros: u64,
    /// Seconds of video of the completed jobs with a known cost.
    pub priced_seconds: u64,
    /// `costMicros / pricedSeconds` in USD: what a second of video cost
    /// here (`None` without a priced completed job).
    pub cost_per_second_usd: Option<f64>,
    /// Jobs by their status (the platform serving or ending them).
    pub jobs: BTreeMap<String, u64>,
    /// Whether its last probe (the `probes` scan) answered; `None`: not probed.
    pub probe_up: Option<bool>,
}

impl PlatformHealth {
    fn new(platform: &str) -> Self {
        Self {
            platform: platform.to_owned(),
            healthy: true,
            success_rate: None,
            successes: 0,
            failures: 0,
            open: 0,
            avg_queue_ms: None,
            avg_duration_ms: None,
            cost_micros: 0,
            priced_seconds: 0,
            cost_per_second_usd: None,
            jobs: BTreeMap::new(),
            probe_up: None,
        }
    }

    /// Failures / outcomes (0 without outcomes).
    pub fn failure_rate(&self) -> f64 {
        self.success_rate.map_or(0.0, |s| 1.0 - s)
    }
}

/// Attempt outcomes that are not a failure of their platform.
const NOT_FAILURES: &[&str] = &["submitted", "not_configured"];

fn mean(sum: u64, n: u64) -> Option<f64> {
    (n > 0).then(|| sum as f64 / n as f64)
}

/// Folds recent job rows into one health per platform, by name.
pub fn fold(rows: &[JobRow]) -> Vec<PlatformHealth> {
    let mut out: BTreeMap<String, PlatformHealth> = BTreeMap::new();
    // (queue sum, queue n, duration sum, duration n) per platform.
    let mut times: BTreeMap<String, (u64, u64, u64, u64)> = BTreeMap::new();
    for r in rows {
        for a in &r.attempts {
            let (Some(p), Some(outcome)) = (a["platform"].as_str(), a["outcome"].as_str()) else {
                continue;
            };
            if p.is_empty() || NOT_FAILURES.contains(&outcome) {
                continue;
            }
            out.entry(p.to_owned())
                .or_insert_with(|| PlatformHealth::new(p))
                .failures += 1;
        }
        if r.platform.is_empty() {
            continue;
        }
        let h = out
            .entry(r.platform.clone())
            .or_insert_with(|| PlatformHealth::new(&r.platform));
        *h.jobs.entry(r.status.clone()).or_insert(0) += 1;
        match r.status.as_str() {
            "queued" | "in_progress" => h.open += 1,
            "completed" => {
                h.successes += 1;
                if let Some(cost) = r.cost_micros {
                    h.cost_micros += cost;
                    h.priced_seconds += r.seconds;
                }
                let t = times.entry(r.platform.clone()).or_default();
                if let Some(s) = r.started_at_ms {
                    t.0 += s.saturating_sub(r.created_at_ms);
                    t.1 += 1;
                }
                if let Some(c) = r.completed_at_ms {
                    t.2 += c.saturating_sub(r.created_at_ms);
                    t.3 += 1;
                }
            }
            _ => {}
        }
    }
    for h in out.values_mut() {
        let outcomes = h.successes + h.failures;
        h.success_rate = mean(h.successes, outcomes);
        h.healthy = outcomes < MIN_OUTCOMES || h.success_rate.unwrap_or(1.0) >= HEALTHY_SUCCESS;
        if let Some(t) = times.get(&h.platform) {
            h.avg_queue_ms = mean(t.0, t.1);
            h.avg_duration_ms = mean(t.2, t.3);
        }
        h.cost_per_second_usd = mean(h.cost_micros, h.priced_seconds).map(|m| m / 1_000_000.0);
    }
    out.into_values().collect()
}

/// Folds the platforms' last probes ([`crate::video::discovery`]) into
/// their health: a platform down at its last probe is unhealthy whatever
/// its jobs say, one probed but without recent jobs is listed too (so
/// "N of M healthy" counts every configured platform once probed).
pub fn with_probes(
    mut platforms: Vec<PlatformHealth>,
    probes: &[crate::observe::scans::ProbeResult],
) -> Vec<PlatformHealth> {
    for probe in probes {
        let at = match platforms.iter().position(|p| p.platform == probe.provider) {
            Some(i) => i,
            None => {
                platforms.push(PlatformHealth::new(&probe.provider));
                platforms.len() - 1
            }
        };
        let h = &mut platforms[at];
        h.probe_up = Some(probe.up);
        h.healthy &= probe.up;
    }
    platforms.sort_by(|a, b| a.platform.cmp(&b.platform));
    platforms
}

/// The `video` check's problem, if any: fewer than [`HEALTHY_SHARE`] of the
/// platforms healthy ("video platforms: N of M healthy", naming the sick
/// ones with their success rate). `None` passes; no platforms pass.
pub fn problem(platforms: &[PlatformHealth]) -> Option<String> {
    let total = platforms.len();
    let healthy = platforms.iter().filter(|p| p.healthy).count();
    if total == 0 || healthy as f64 >= HEALTHY_SHARE * total as f64 {
        return None;
    }
    let sick: Vec<String> = platforms
        .iter()
        .filter(|p| !p.healthy)
        .map(|p| match (p.probe_up, p.success_rate) {
            (Some(false), _) => format!("{} down at its last probe", p.platform),
            (_, rate) => format!(
                "{} {:.0} % success",
                p.platform,
                rate.unwrap_or(0.0) * 100.0
            ),
        })
        .collect();
    Some(format!(
        "video platforms: {healthy} of {total} healthy ({})",
        sick.join(", ")
    ))
}

/// Writes the `dol_video_*` series of `/metrics` (gauges over the last
/// hour's jobs and the open ones, per platform).
pub fn write_metrics(w: &mut Writer, platforms: &[PlatformHealth]) -> Result<(), PromError> {
    let by_platform: Vec<[(&str, &str); 1]> = platforms
        .iter()
        .map(|p| [("platform", p.platform.as_str())])
        .collect();
    let per = |f: &dyn Fn(&PlatformHealth) -> Option<f64>| -> Vec<(&[(&str, &str)], f64)> {
        by_platform
            .iter()
            .zip(platforms)
            .filter_map(|(l, p)| f(p).map(|v| (l.as_slice(), v)))
            .collect()
    };
    let status_labels: Vec<[(&str, &str); 2]> = platforms
        .iter()
        .flat_map(|p| {
            p.jobs
                .keys()
                .map(|s| [("platform", p.platform.as_str()), ("status", s.as_str())])
        })
        .collect();
    let counts = platforms.iter().flat_map(|p| p.jobs.values());
    let jobs: Vec<(&[(&str, &str)], f64)> = status_labels
        .iter()
        .zip(counts)
        .map(|(l, n)| (l.as_slice(), *n as f64))
        .collect();
    w.gauge(
        "dol_video_jobs",
        "Video jobs by platform and status: open ones and those ended in the last hour.",
        &jobs,
    )?;
    w.gauge(
        "dol_video_platform_healthy",
        "1 when the video platform is healthy (success rate >= 90 % over the last hour).",
        &per(&|p| Some(if p.healthy { 1.0 } else { 0.0 })),
    )?;
    w.gauge(
        "dol_video_platform_success_ratio",
        "Video platform successes / outcomes over the last hour (a fallback fails its platform).",
        &per(&|p| p.success_rate),
    )?;
    w.gauge(
        "dol_video_platform_failures",
        "Failed attempts per video platform over the last hour.",
        &per(&|p| Some(p.failures as f64)),
    )?;
    w.gauge(
        "dol_video_queue_seconds",
        "Mean queue time (created to started) of video jobs completed in the last hour.",
        &per(&|p| p.avg_queue_ms.map(|ms| ms / 1000.0)),
    )?;
    w.gauge(
        "dol_video_duration_seconds",
        "Mean duration (created to completed) of video jobs completed in the last hour.",
        &per(&|p| p.avg_duration_ms.map(|ms| ms / 1000.0)),
    )?;
    w.gauge(
        "dol_video_cost_usd",
        "Known cost of video jobs completed in the last hour, USD.",
        &per(&|p| Some(p.cost_micros as f64 / 1_000_000.0)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(platform: &str, status: &str, attempts: Value) -> JobRow {
        JobRow {
            platform: platform.to_owned(),
            status: status.to_owned(),
            attempts: attempts.as_array().cloned().unwrap_or_default(),
            created_at_ms: 1_000,
            started_at_ms: Some(3_000),
            completed_at_ms: (status != "queued").then_some(11_000),
            cost_micros: Some(400_000),
            seconds: 4,
        }
    }

    fn submitted(p: &str) -> Value {
        json!({"platform": p, "outcome": "submitted"})
    }

    #[test]
    fn a_fallback_counts_against_the_platform_that_failed() {
        let rows = vec![
            row(
                "runway",
                "completed",
                json!([submitted("openai"), {"platform": "openai", "outcome": "platform_failed"}, submitted("runway")]),
            ),
            row("runway", "completed", json!([submitted("runway")])),
            row("runway", "queued", json!([submitted("runway")])),
        ];
        let h = fold(&rows);
        assert_eq!(h.len(), 2);
        let (openai, runway) = (&h[0], &h[1]);
        assert_eq!(
            (openai.platform.as_str(), openai.failures, openai.successes),
            ("openai", 1, 0)
        );
        assert_eq!(openai.success_rate, Some(0.0));
        assert!(openai.healthy, "one failure is not yet evidence");
        assert_eq!((runway.successes, runway.failures, runway.open), (2, 0, 1));
        assert_eq!(runway.success_rate, Some(1.0));
        assert_eq!(runway.avg_queue_ms, Some(2_000.0));
        assert_eq!(runway.avg_duration_ms, Some(10_000.0));
        assert_eq!(runway.cost_micros, 800_000);
        assert_eq!(runway.priced_seconds, 8);
        assert_eq!(runway.cost_per_second_usd, Some(0.1));
        assert_eq!(
            (openai.priced_seconds, openai.cost_per_second_usd),
            (0, None)
        );
        // A job of unknown price adds neither cost nor seconds.
        let mut unpriced = row("runway", "completed", json!([submitted("runway")]));
        unpriced.cost_micros = None;
        let again = fold(&[rows[1].clone(), unpriced]);
        assert_eq!(
            (again[0].priced_seconds, again[0].cost_per_second_usd),
            (4, Some(0.1))
        );
        assert_eq!(runway.jobs["completed"], 2);
        assert_eq!(runway.jobs["queued"], 1);
    }

    #[test]
    fn a_platform_down_at_its_last_probe_is_unhealthy() {
        let probe = |p: &str, up: bool| crate::observe::scans::ProbeResult {
            provider: p.to_owned(),
            up,
            status: Some(if up { 200 } else { 503 }),
            latency_ms: 1,
            error: (!up).then(|| "HTTP 503".to_owned()),
            at_ms: 0,
        };
        let jobs = fold(&[row("runway", "completed", json!([submitted("runway")]))]);
        let h = with_probes(jobs, &[probe("runway", false), probe("openai", true)]);
        let names: Vec<(&str, bool)> = h.iter().map(|p| (p.platform.as_str(), p.healthy)).collect();
        assert_eq!(names, [("openai", true), ("runway", false)]);
        assert_eq!(h[1].probe_up, Some(false));
        assert_eq!(
            problem(&h).as_deref(),
            Some("video platforms: 1 of 2 healthy (runway down at its last probe)")
        );
        assert_eq!(
            problem(&with_probes(Vec::new(), &[probe("openai", true)])),
            None
        );
    }

    #[test]
    fn below_ninety_percent_success_is_unhealthy_and_fails_the_check() {
        let fail = |p: &str| {
            row(
                p,
                "failed",
                json!([submitted(p), {"platform": p, "outcome": "timeout"}]),
            )
        };
        let mut rows: Vec<JobRow> = (0..9)
            .map(|_| row("openai", "completed", json!([submitted("openai")])))
            .collect();
        rows.push(fail("openai"));
        let h = fold(&rows);
        assert!(h[0].healthy, "9 of 10 = 90 % {h:?}");
        rows.push(fail("openai"));
        let h = fold(&rows);
        assert!(!h[0].healthy, "9 of 11 = 81.8 %");
        assert!((h[0].failure_rate() - 2.0 / 11.0).abs() < 1e-9);
        let why = problem(&h).unwrap();
        assert_eq!(why, "video platforms: 0 of 1 healthy (openai 82 % success)");
        assert_eq!(problem(&[]), None);
    }

    #[test]
    fn ninety_percent_success_is_healthy_and_not_configured_is_no_failure() {
        let mut rows: Vec<JobRow> = (0..9)
            .map(|_| row("replicate", "completed", json!([submitted("replicate")])))
            .collect();
        rows.push(row(
            "replicate",
            "failed",
            json!([{"platform": "replicate", "outcome": "submit_failed"}, {"platform": "luma", "outcome": "not_configured"}]),
        ));
        let h = fold(&rows);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h[0].healthy);
        assert_eq!(h[0].success_rate, Some(0.9));
        assert_eq!(problem(&h), None);
    }

    #[test]
    fn metrics_name_each_platform_and_status() {
        let h = fold(&[
            row("openai", "completed", json!([submitted("openai")])),
            row("openai", "queued", json!([submitted("openai")])),
        ]);
        let mut w = Writer::new();
        write_metrics(&mut w, &h).unwrap();
        let text = w.finish();
        assert!(
            text.contains("dol_video_jobs{platform=\"openai\",status=\"completed\"} 1"),
            "{text}"
        );
        assert!(text.contains("dol_video_jobs{platform=\"openai\",status=\"queued\"} 1"));
        assert!(text.contains("dol_video_platform_healthy{platform=\"openai\"} 1"));
        assert!(text.contains("dol_video_cost_usd{platform=\"openai\"} 0.4"));
        assert!(text.contains("dol_video_duration_seconds{platform=\"openai\"} 10"));
    }

    #[test]
    fn a_cancelled_job_is_neither_success_nor_failure() {
        let h = fold(&[row("openai", "cancelled", json!([submitted("openai")]))]);
        assert_eq!((h[0].successes, h[0].failures, h[0].open), (0, 0, 0));
        assert_eq!(h[0].success_rate, None);
        assert_eq!(h[0].failure_rate(), 0.0);
        assert_eq!(h[0].jobs["cancelled"], 1);
    }
}
