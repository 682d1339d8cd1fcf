//! A per-candidate circuit breaker.
//!
//! Closed → open after `failure_threshold` consecutive failures → half-open
//! once `cooldown_ms` has passed (one probe allowed) → closed when the probe
//! succeeds, open again (cool-down restarts) when it fails. The caller passes
//! the current time in milliseconds; the breaker never reads a clock, and it
//! serializes so the component can keep it in key-value storage.

use serde::{Deserialize, Serialize};

/// Breaker tuning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CircuitConfig {
    /// Consecutive failures that open the breaker (at least 1).
    pub failure_threshold: u32,
    /// How long the breaker stays open before a probe is allowed.
    pub cooldown_ms: u64,
}

impl Default for CircuitConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            cooldown_ms: 30_000,
        }
    }
}

/// Breaker state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum CircuitState {
    /// Traffic flows; counts consecutive failures.
    Closed {
        /// Failures since the last success.
        consecutive_failures: u32,
    },
    /// Traffic blocked since `opened_at_ms`.
    Open {
        /// When it opened.
        opened_at_ms: u64,
    },
    /// Cool-down over: one probe may go through.
    HalfOpen {
        /// Whether the probe has been handed out and not yet reported.
        probe_in_flight: bool,
    },
}

/// A circuit breaker for one provider/model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CircuitBreaker {
    /// Tuning.
    pub config: CircuitConfig,
    /// Current state (as last stored; see [`CircuitBreaker::state_at`]).
    pub state: CircuitState,
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        Self::new(CircuitConfig::default())
    }
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(config: CircuitConfig) -> Self {
        Self {
            config,
            state: CircuitState::Closed {
                consecutive_failures: 0,
            },
        }
    }

    /// The state at `now_ms`: an open breaker whose cool-down has passed reads as half-open.
    pub fn state_at(&self, now_ms: u64) -> CircuitState {
        match self.state {
            CircuitState::Open { opened_at_ms }
                if now_ms.saturating_sub(opened_at_ms) >= self.config.cooldown_ms =>
            {
                CircuitState::HalfOpen {
                    probe_in_flight: false,
                }
            }
            s => s,
        }
    }

    /// Whether a request may go through at `now_ms` (without claiming the probe).
    pub fn allows(&self, now_ms: u64) -> bool {
        match self.state_at(now_ms) {
            CircuitState::Closed { .. } => true,
            CircuitState::Open { .. } => false,
            CircuitState::HalfOpen { probe_in_flight } => !probe_in_flight,
        }
    }

    /// Whether the breaker is open (blocking) at `now_ms`.
    pub fn is_open(&self, now_ms: u64) -> bool {
        !self.allows(now_ms)
    }

    /// Claims permission for one request at `now_ms`; in half-open this hands
    /// out the single probe. Returns false when the request must not be sent.
    pub fn try_acquire(&mut self, now_ms: u64) -> bool {
        match self.state_at(now_ms) {
            CircuitState::Closed { .. } => true,
            CircuitState::Open { .. } => false,
            CircuitState::HalfOpen {
                probe_in_flight: true,
            } => false,
            CircuitState::HalfOpen {
                probe_in_flight: false,
            } => {
                self.state = CircuitState::HalfOpen {
                    probe_in_flight: true,
                };
                true
            }
        }
    }

    /// Records a successful request: the breaker closes and the count resets.
    pub fn record_success(&mut self) {
        self.state = CircuitState::Closed {
            consecutive_failures: 0,
        };
    }

    /// Records a failed request at `now_ms`.
    pub fn record_failure(&mut self, now_ms: u64) {
        self.state = match self.state_at(now_ms) {
            CircuitState::Closed {
                consecutive_failures,
            } => {
                let failures = consecutive_failures.saturating_add(1);
                if failures >= self.config.failure_threshold.max(1) {
                    CircuitState::Open {
                        opened_at_ms: now_ms,
                    }
                } else {
                    CircuitState::Closed {
                        consecutive_failures: failures,
                    }
                }
            }
            // A failed probe (or a late failure report while open) restarts the cool-down.
            CircuitState::HalfOpen { .. } | CircuitState::Open { .. } => CircuitState::Open {
                opened_at_ms: now_ms,
            },
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> CircuitBreaker {
        CircuitBreaker::new(CircuitConfig {
            failure_threshold: 3,
            cooldown_ms: 1_000,
        })
    }

    #[test]
    fn opens_after_threshold_consecutive_failures() {
        let mut b = breaker();
        b.record_failure(0);
        b.record_failure(1);
        assert!(b.allows(2));
        b.record_failure(2);
        assert_eq!(b.state, CircuitState::Open { opened_at_ms: 2 });
        assert!(!b.allows(500));
        assert!(!b.clone().try_acquire(500));
    }

    #[test]
    fn success_resets_the_count() {
        let mut b = breaker();
        b.record_failure(0);
        b.record_failure(0);
        b.record_success();
        b.record_failure(0);
        b.record_failure(0);
        assert!(b.allows(0));
    }

    #[test]
    fn half_open_after_cooldown_allows_one_probe() {
        let mut b = breaker();
        for t in 0..3 {
            b.record_failure(t);
        }
        assert!(!b.allows(1_001));
        assert_eq!(
            b.state_at(1_002),
            CircuitState::HalfOpen {
                probe_in_flight: false
            }
        );
        assert!(b.try_acquire(1_002));
        assert!(!b.try_acquire(1_003), "only one probe at a time");
        assert!(!b.allows(1_003));
    }

    #[test]
    fn successful_probe_closes() {
        let mut b = breaker();
        for t in 0..3 {
            b.record_failure(t);
        }
        assert!(b.try_acquire(5_000));
        b.record_success();
        assert_eq!(
            b.state,
            CircuitState::Closed {
                consecutive_failures: 0
            }
        );
        assert!(b.allows(5_000));
    }

    #[test]
    fn failed_probe_reopens_and_restarts_cooldown() {
        let mut b = breaker();
        for t in 0..3 {
            b.record_failure(t);
        }
        assert!(b.try_acquire(5_000));
        b.record_failure(5_100);
        assert_eq!(
            b.state,
            CircuitState::Open {
                opened_at_ms: 5_100
            }
        );
        assert!(!b.allows(6_000));
        assert!(b.allows(6_100));
    }

    #[test]
    fn threshold_zero_behaves_as_one() {
        let mut b = CircuitBreaker::new(CircuitConfig {
            failure_threshold: 0,
            cooldown_ms: 10,
        });
        b.record_failure(0);
        assert!(b.is_open(5));
    }

    #[test]
    fn round_trips_through_json() {
        let mut b = breaker();
        b.record_failure(0);
        let json = serde_json::to_string(&b).unwrap();
        assert_eq!(serde_json::from_str::<CircuitBreaker>(&json).unwrap(), b);
    }
}
