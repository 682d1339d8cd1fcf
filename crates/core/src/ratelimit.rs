//! Fixed-window rate limiting, pure: the caller stores the [`Window`] between
//! requests (e.g. in key-value) and passes the time in.
//!
//! A fixed window (rather than a sliding log) keeps the state to two integers,
//! so one key-value read and one write per request are enough.

use serde::{Deserialize, Serialize};

/// Requests counted in the window that started at `start_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Window {
    /// Unix seconds at which the window began (a multiple of its length).
    pub start_secs: u64,
    /// Requests admitted in it so far.
    pub count: u64,
}

/// What to do with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Serve it, and store this window.
    Allow(Window),
    /// Refuse it with `429` and `Retry-After: retry_after_secs`.
    Deny {
        /// Seconds until the next window opens (at least 1).
        retry_after_secs: u64,
    },
}

/// Admits at most `limit` requests per `window_secs`, given the stored window.
/// A `limit` of 0 or a `window_secs` of 0 means no limit.
pub fn check(stored: Option<Window>, now_secs: u64, limit: u64, window_secs: u64) -> Decision {
    if limit == 0 || window_secs == 0 {
        return Decision::Allow(stored.unwrap_or_default());
    }
    let start_secs = now_secs - now_secs % window_secs;
    let count = match stored {
        Some(window) if window.start_secs == start_secs => window.count,
        // A window from the past (or, after a clock step back, the future) is over.
        _ => 0,
    };
    if count >= limit {
        let retry_after_secs = (start_secs + window_secs).saturating_sub(now_secs).max(1);
        return Decision::Deny { retry_after_secs };
    }
    Decision::Allow(Window {
        start_secs,
        count: count + 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_limit_then_denies_until_the_next_window() {
        let mut stored = None;
        for _ in 0..3 {
            match check(stored, 125, 3, 60) {
                Decision::Allow(window) => stored = Some(window),
                Decision::Deny { .. } => panic!("denied too early"),
            }
        }
        assert_eq!(
            stored,
            Some(Window {
                start_secs: 120,
                count: 3
            })
        );
        assert_eq!(
            check(stored, 130, 3, 60),
            Decision::Deny {
                retry_after_secs: 50
            }
        );
        assert_eq!(
            check(stored, 179, 3, 60),
            Decision::Deny {
                retry_after_secs: 1
            }
        );
        assert_eq!(
            check(stored, 180, 3, 60),
            Decision::Allow(Window {
                start_secs: 180,
                count: 1
            })
        );
    }

    #[test]
    fn zero_means_unlimited() {
        let full = Some(Window {
            start_secs: 0,
            count: u64::MAX,
        });
        assert!(matches!(check(full, 5, 0, 60), Decision::Allow(_)));
        assert!(matches!(check(full, 5, 10, 0), Decision::Allow(_)));
    }

    #[test]
    fn stale_windows_restart_the_count() {
        let old = Some(Window {
            start_secs: 0,
            count: 99,
        });
        assert_eq!(
            check(old, 600, 5, 60),
            Decision::Allow(Window {
                start_secs: 600,
                count: 1
            })
        );
        let future = Some(Window {
            start_secs: 6000,
            count: 99,
        });
        assert_eq!(
            check(future, 600, 5, 60),
            Decision::Allow(Window {
                start_secs: 600,
                count: 1
            })
        );
    }
}
