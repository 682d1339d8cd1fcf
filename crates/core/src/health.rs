//! Health status of the application, and the scan-run record it reports.
//!
//! The components measure (storage round trips, clock) and hand the results
//! in; this module decides the status and the HTTP code and shapes the JSON.

use serde::{Deserialize, Serialize};

/// The key-value key holding the JSON [`ScanRun`] of the latest scan.
pub const LAST_RUN_KEY: &str = "dol:scans:last-run";

/// The result of one health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// Check name, e.g. `key-value` or `sqlite`.
    pub name: String,
    /// Whether the check passed.
    pub ok: bool,
    /// How long the check took, in milliseconds.
    pub latency_ms: u64,
    /// A short public reason when the check failed (no internals).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl CheckResult {
    /// A passed check.
    pub fn pass(name: &str, latency_ms: u64) -> Self {
        Self {
            name: name.to_owned(),
            ok: true,
            latency_ms,
            error: None,
        }
    }

    /// A failed check with a short public reason.
    pub fn fail(name: &str, latency_ms: u64, reason: &str) -> Self {
        Self {
            name: name.to_owned(),
            ok: false,
            latency_ms,
            error: Some(reason.to_owned()),
        }
    }
}

/// Overall status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Every check passed.
    Ok,
    /// At least one check failed.
    Degraded,
}

/// How a scan run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The scan finished.
    Ok,
    /// The scan failed.
    Error,
}

impl Outcome {
    /// The value stored in `scan_runs.outcome`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
        }
    }
}

/// One scan run, as stored in `scan_runs` and under [`LAST_RUN_KEY`]
/// (`dol_core::observe::scan_store` reads and writes it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanRun {
    /// Scan name, e.g. `heartbeat`.
    pub scan: String,
    /// The trigger's time in Unix seconds: the cron metadata's timestamp, or
    /// the clock when run over HTTP. Not stored in the table (0 when read back).
    #[serde(default)]
    pub timestamp: u64,
    /// Start, Unix epoch milliseconds.
    pub started_at: i64,
    /// End, Unix epoch milliseconds.
    pub finished_at: i64,
    /// `finished_at - started_at`, never negative.
    pub duration_ms: i64,
    /// How the run ended.
    pub outcome: Outcome,
    /// Short free text about the run.
    #[serde(default)]
    pub detail: String,
}

impl ScanRun {
    /// A run of `scan` between two clock readings (milliseconds).
    pub fn new(scan: &str, timestamp: u64, started_at: i64, finished_at: i64) -> Self {
        Self {
            scan: scan.to_owned(),
            timestamp,
            started_at,
            finished_at,
            duration_ms: finished_at.saturating_sub(started_at).max(0),
            outcome: Outcome::Ok,
            detail: String::new(),
        }
    }
}

/// The body of `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReport {
    /// `ok` when every check passed, else `degraded`.
    pub status: Status,
    /// The application version.
    pub version: String,
    /// Every check, in the order given.
    pub checks: Vec<CheckResult>,
    /// The latest scan run, if any was recorded.
    pub last_scan: Option<ScanRun>,
}

impl HealthReport {
    /// Builds the report from the check results and the last scan run.
    pub fn new(version: &str, checks: Vec<CheckResult>, last_scan: Option<ScanRun>) -> Self {
        let status = if checks.iter().all(|c| c.ok) {
            Status::Ok
        } else {
            Status::Degraded
        };
        Self {
            status,
            version: version.to_owned(),
            checks,
            last_scan,
        }
    }

    /// The HTTP status for this report: 200 when ok, 503 when degraded.
    pub fn http_status(&self) -> u16 {
        match self.status {
            Status::Ok => 200,
            Status::Degraded => 503,
        }
    }
}

/// Picks the more recent of two views of the last scan run (key-value and
/// table); the key-value copy wins a tie because it carries the timestamp.
pub fn latest_scan(kv: Option<ScanRun>, table: Option<ScanRun>) -> Option<ScanRun> {
    match (kv, table) {
        (Some(k), Some(t)) if t.started_at > k.started_at => Some(t),
        (Some(k), _) => Some(k),
        (None, t) => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(started: i64) -> ScanRun {
        ScanRun::new("heartbeat", 1_700_000_000, started, started + 5)
    }

    #[test]
    fn all_checks_pass_is_ok_200() {
        let r = HealthReport::new(
            "0.1.0",
            vec![
                CheckResult::pass("key-value", 1),
                CheckResult::pass("sqlite", 2),
            ],
            None,
        );
        assert_eq!(r.status, Status::Ok);
        assert_eq!(r.http_status(), 200);
        assert_eq!(
            serde_json::to_value(&r).expect("serialises"),
            json!({
                "status": "ok",
                "version": "0.1.0",
                "checks": [
                    {"name": "key-value", "ok": true, "latency_ms": 1},
                    {"name": "sqlite", "ok": true, "latency_ms": 2}
                ],
                "last_scan": null
            })
        );
    }

    #[test]
    fn a_failed_check_is_degraded_503_and_named() {
        let r = HealthReport::new(
            "0.1.0",
            vec![
                CheckResult::pass("key-value", 1),
                CheckResult::fail("sqlite", 3, "unavailable"),
            ],
            Some(run(10)),
        );
        assert_eq!(r.status, Status::Degraded);
        assert_eq!(r.http_status(), 503);
        let v = serde_json::to_value(&r).expect("serialises");
        assert_eq!(v["status"], "degraded");
        assert_eq!(
            v["checks"][1],
            json!({"name": "sqlite", "ok": false, "latency_ms": 3, "error": "unavailable"})
        );
        assert_eq!(v["last_scan"]["scan"], "heartbeat");
        assert_eq!(v["last_scan"]["duration_ms"], 5);
    }

    #[test]
    fn no_checks_is_ok() {
        assert_eq!(HealthReport::new("x", vec![], None).status, Status::Ok);
    }

    #[test]
    fn scan_run_round_trips_through_json() {
        let r = run(1_000);
        let json = serde_json::to_string(&r).expect("serialises");
        assert_eq!(serde_json::from_str::<ScanRun>(&json).expect("parses"), r);
    }

    #[test]
    fn negative_durations_clamp_to_zero() {
        assert_eq!(ScanRun::new("x", 0, 10, 5).duration_ms, 0);
    }

    #[test]
    fn latest_scan_prefers_newer_then_kv() {
        assert_eq!(latest_scan(None, None), None);
        assert_eq!(latest_scan(Some(run(5)), None), Some(run(5)));
        assert_eq!(latest_scan(None, Some(run(5))), Some(run(5)));
        assert_eq!(latest_scan(Some(run(5)), Some(run(9))), Some(run(9)));
        assert_eq!(latest_scan(Some(run(9)), Some(run(5))), Some(run(9)));
        assert_eq!(
            latest_scan(Some(run(5)), Some(run(5))).map(|r| r.timestamp),
            Some(1_700_000_000)
        );
    }
}
