//! Retry timing: which failures to retry, and how long to wait.
//!
//! Exponential backoff with "equal jitter": attempt `n` (1-based, the attempt
//! that just failed) waits `d = min(max_delay, base × 2^(n−1))`, then
//! `d/2 + jitter × d/2` where `jitter ∈ [0, 1)` is supplied by the caller (no
//! randomness here). A `Retry-After` from the provider raises the wait to at
//! least that value. A retry whose wait would cross the overall deadline is not
//! made. Only 429, 5xx, connect errors and provider "overloaded" errors are
//! retried; other 4xx never are. Defaults follow the issue: 3 attempts,
//! 2000 ms base delay, 120000 ms deadline.

use serde::{Deserialize, Serialize};

/// Retry tuning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Attempts per candidate, including the first (`DCI_LLM_RETRY_ATTEMPTS`).
    pub max_attempts: u32,
    /// First backoff delay (`DCI_LLM_RETRY_DELAY_MS`).
    pub base_delay_ms: u64,
    /// Cap on one backoff delay (Retry-After may exceed it, within the deadline).
    pub max_delay_ms: u64,
    /// Overall deadline of a request (`DCI_TIMEOUT_MS`).
    pub deadline_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_delay_ms: 2_000,
            max_delay_ms: 30_000,
            deadline_ms: 120_000,
        }
    }
}

/// How a provider attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FailureKind {
    /// An HTTP error status, with the provider's Retry-After if any.
    Status {
        /// HTTP status.
        status: u16,
        /// Provider's Retry-After, in milliseconds.
        retry_after_ms: Option<u64>,
    },
    /// The connection could not be made or broke before a response.
    Connect,
    /// The attempt ran out of its per-attempt time.
    Timeout,
    /// The provider said it is overloaded (e.g. Anthropic's 529 / `overloaded_error`).
    Overloaded {
        /// Provider's Retry-After, in milliseconds.
        retry_after_ms: Option<u64>,
    },
}

impl FailureKind {
    /// Whether retrying the same candidate can help: 429, 5xx, connect errors
    /// and overload. Other 4xx (bad request, auth, context length) and
    /// per-attempt timeouts are not retried on the same candidate.
    pub fn is_retryable(self) -> bool {
        match self {
            Self::Status { status, .. } => status == 429 || (500..=599).contains(&status),
            Self::Connect | Self::Overloaded { .. } => true,
            Self::Timeout => false,
        }
    }

    /// The provider's Retry-After, if any.
    pub fn retry_after_ms(self) -> Option<u64> {
        match self {
            Self::Status { retry_after_ms, .. } | Self::Overloaded { retry_after_ms } => {
                retry_after_ms
            }
            Self::Connect | Self::Timeout => None,
        }
    }
}

/// Why a failure is not retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoRetry {
    /// The failure class is not retryable.
    NotRetryable,
    /// All attempts for this candidate are used.
    AttemptsExhausted,
    /// Waiting would cross the overall deadline.
    Deadline,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum RetryDecision {
    /// Try the same candidate again after waiting.
    RetryAfter {
        /// Wait before the next attempt.
        delay_ms: u64,
    },
    /// Do not retry this candidate.
    GiveUp {
        /// Why.
        reason: NoRetry,
    },
}

/// Maps a caller-supplied random `u64` to a jitter in `[0, 1)`.
pub fn jitter_from_u64(x: u64) -> f64 {
    // The top 53 bits fill an f64 mantissa exactly, giving a uniform value below 1.
    (x >> 11) as f64 / (1u64 << 53) as f64
}

impl RetryPolicy {
    /// The backoff before attempt `failed_attempt + 1`, without Retry-After or deadline.
    /// `jitter` is clamped into `[0, 1]`; NaN counts as 0.
    pub fn backoff_ms(&self, failed_attempt: u32, jitter: f64) -> u64 {
        let exp = failed_attempt.saturating_sub(1).min(63);
        let full = self
            .base_delay_ms
            .saturating_mul(1u64 << exp)
            .min(self.max_delay_ms);
        let j = if jitter.is_nan() {
            0.0
        } else {
            jitter.clamp(0.0, 1.0)
        };
        let half = full / 2;
        // Float only for the jitter share; it is at most `full - half`, so no overflow.
        half + ((full - half) as f64 * j).floor() as u64
    }

    /// Decides whether to retry after attempt number `failed_attempt` (1-based)
    /// failed with `failure`, `elapsed_ms` into the request.
    pub fn decide(
        &self,
        failed_attempt: u32,
        failure: FailureKind,
        elapsed_ms: u64,
        jitter: f64,
    ) -> RetryDecision {
        if !failure.is_retryable() {
            return RetryDecision::GiveUp {
                reason: NoRetry::NotRetryable,
            };
        }
        if failed_attempt >= self.max_attempts {
            return RetryDecision::GiveUp {
                reason: NoRetry::AttemptsExhausted,
            };
        }
        let backoff = self.backoff_ms(failed_attempt, jitter);
        let delay = failure
            .retry_after_ms()
            .map_or(backoff, |ra| ra.max(backoff));
        // The retry needs time to run too: waiting until the deadline itself is useless.
        if elapsed_ms.saturating_add(delay) >= self.deadline_ms {
            return RetryDecision::GiveUp {
                reason: NoRetry::Deadline,
            };
        }
        RetryDecision::RetryAfter { delay_ms: delay }
    }

    /// Milliseconds left before the deadline.
    pub fn remaining_ms(&self, elapsed_ms: u64) -> u64 {
        self.deadline_ms.saturating_sub(elapsed_ms)
    }
}

/// Parses a `Retry-After` header: delay-seconds or an IMF-fixdate
/// (`Sun, 06 Nov 1994 08:49:37 GMT`), against `now_unix_s`. Returns milliseconds.
pub fn parse_retry_after(value: &str, now_unix_s: u64) -> Option<u64> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(secs.saturating_mul(1000));
    }
    // Some providers send fractional seconds.
    if let Ok(secs) = v.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Some((secs * 1000.0).ceil() as u64);
        }
        return None;
    }
    let at = parse_imf_fixdate(v)?;
    Some(at.saturating_sub(now_unix_s).saturating_mul(1000))
}

/// Parses OpenAI's `retry-after-ms` header (milliseconds, possibly fractional).
pub fn parse_retry_after_ms(value: &str) -> Option<u64> {
    let ms: f64 = value.trim().parse().ok()?;
    (ms.is_finite() && ms >= 0.0).then(|| ms.ceil() as u64)
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` → Unix seconds.
fn parse_imf_fixdate(s: &str) -> Option<u64> {
    let rest = s.split_once(", ")?.1;
    let parts: Vec<&str> = rest.split(' ').collect();
    let [day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let day: u64 = day.parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| m == month)? as u64
        + 1;
    let year: u64 = year.parse().ok()?;
    let hms: Vec<u64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<Vec<_>>>()?;
    let [h, m, sec] = hms.as_slice() else {
        return None;
    };
    if !(1..=31).contains(&day) || year < 1970 || *h > 23 || *m > 59 || *sec > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + sec)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (year ≥ 1970).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    // Shift the year to start in March so the leap day is the year's last day.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(s: u16) -> FailureKind {
        FailureKind::Status {
            status: s,
            retry_after_ms: None,
        }
    }

    #[test]
    fn defaults_follow_the_issue() {
        let p = RetryPolicy::default();
        assert_eq!(
            (p.max_attempts, p.base_delay_ms, p.deadline_ms),
            (3, 2_000, 120_000)
        );
    }

    #[test]
    fn retryable_classes() {
        assert!(status(429).is_retryable());
        assert!(status(500).is_retryable());
        assert!(status(503).is_retryable());
        assert!(FailureKind::Connect.is_retryable());
        assert!(
            FailureKind::Overloaded {
                retry_after_ms: None
            }
            .is_retryable()
        );
        for s in [400, 401, 403, 404, 409, 413, 422] {
            assert!(!status(s).is_retryable(), "{s}");
        }
        assert!(!FailureKind::Timeout.is_retryable());
    }

    #[test]
    fn never_retries_other_4xx() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.decide(1, status(400), 0, 0.5),
            RetryDecision::GiveUp {
                reason: NoRetry::NotRetryable
            }
        );
    }

    #[test]
    fn exponential_backoff_with_jitter() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff_ms(1, 0.0), 1_000);
        assert_eq!(p.backoff_ms(1, 1.0), 2_000);
        assert_eq!(p.backoff_ms(2, 0.0), 2_000);
        assert_eq!(p.backoff_ms(2, 0.5), 3_000);
        assert_eq!(p.backoff_ms(3, 1.0), 8_000);
        // Capped at max_delay.
        assert_eq!(p.backoff_ms(20, 1.0), 30_000);
        assert_eq!(p.backoff_ms(1, f64::NAN), 1_000);
    }

    #[test]
    fn stops_after_max_attempts() {
        let p = RetryPolicy::default();
        assert!(matches!(
            p.decide(2, status(503), 0, 0.0),
            RetryDecision::RetryAfter { .. }
        ));
        assert_eq!(
            p.decide(3, status(503), 0, 0.0),
            RetryDecision::GiveUp {
                reason: NoRetry::AttemptsExhausted
            }
        );
    }

    #[test]
    fn honours_retry_after() {
        let p = RetryPolicy::default();
        let f = FailureKind::Status {
            status: 429,
            retry_after_ms: Some(10_000),
        };
        assert_eq!(
            p.decide(1, f, 0, 0.0),
            RetryDecision::RetryAfter { delay_ms: 10_000 }
        );
        // A Retry-After shorter than the backoff does not shorten it.
        let f = FailureKind::Status {
            status: 429,
            retry_after_ms: Some(10),
        };
        assert_eq!(
            p.decide(1, f, 0, 0.0),
            RetryDecision::RetryAfter { delay_ms: 1_000 }
        );
    }

    #[test]
    fn never_crosses_the_deadline() {
        let p = RetryPolicy::default();
        let f = FailureKind::Status {
            status: 429,
            retry_after_ms: Some(60_000),
        };
        assert_eq!(
            p.decide(1, f, 70_000, 0.0),
            RetryDecision::GiveUp {
                reason: NoRetry::Deadline
            }
        );
        assert_eq!(
            p.decide(1, status(500), 119_500, 0.0),
            RetryDecision::GiveUp {
                reason: NoRetry::Deadline
            }
        );
        assert_eq!(p.remaining_ms(130_000), 0);
    }

    #[test]
    fn jitter_from_u64_is_in_unit_interval() {
        assert_eq!(jitter_from_u64(0), 0.0);
        assert!(jitter_from_u64(u64::MAX) < 1.0);
        assert!(jitter_from_u64(u64::MAX) > 0.999);
    }

    #[test]
    fn parses_retry_after_forms() {
        assert_eq!(parse_retry_after("7", 0), Some(7_000));
        assert_eq!(parse_retry_after(" 1.5 ", 0), Some(1_500));
        assert_eq!(parse_retry_after("-3", 0), None);
        assert_eq!(parse_retry_after("soon", 0), None);
        // 784111777 is Sun, 06 Nov 1994 08:49:37 GMT.
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784_111_770),
            Some(7_000)
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784_111_800),
            Some(0)
        );
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT", 0),
            Some(0)
        );
        assert_eq!(
            parse_retry_after("Thu, 29 Feb 2024 12:00:00 GMT", 1_709_208_000 - 2),
            Some(2_000)
        );
        assert_eq!(parse_retry_after_ms("250.4"), Some(251));
        assert_eq!(parse_retry_after_ms("x"), None);
    }
}
