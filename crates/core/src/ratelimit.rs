//! Fixed-window rate limiting, pure: the caller stores the [`Window`] between
//! requests (e.g. in key-value) and passes the time in.
//!
//! A fixed window (rather than a sliding log) keeps the state to two integers.
//! [`hit`] keeps them in SQL (`rate_windows`) and counts with one atomic
//! upsert, so the limit is exact across replicas and concurrent requests.

use serde::{Deserialize, Serialize};

use crate::storage::{SqlExecutor, SqlValue};

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

/// Counts one request of `key` at `now_secs` against `limit` per
/// `window_secs` in table `rate_windows`, exactly: one atomic upsert that
/// counts the request only while the window has room (a new window starts
/// at 1), so concurrent requests on any number of replicas never admit
/// more than `limit`. A denied request is not counted. Same rules as
/// [`check`] (a `limit` or `window_secs` of 0 means no limit, nothing
/// stored). The error is the database's message.
pub fn hit(
    db: &mut impl SqlExecutor,
    key: &str,
    now_secs: u64,
    limit: u64,
    window_secs: u64,
) -> Result<Decision, String> {
    if limit == 0 || window_secs == 0 {
        return Ok(Decision::Allow(Window::default()));
    }
    let start_secs = now_secs - now_secs % window_secs;
    let int = |n: u64| SqlValue::Integer(i64::try_from(n).unwrap_or(i64::MAX));
    let rows = db.execute(
        "INSERT INTO rate_windows (key, window_start, count) VALUES (?1, ?2, 1) \
         ON CONFLICT (key) DO UPDATE SET \
         count = CASE WHEN rate_windows.window_start = excluded.window_start \
         THEN rate_windows.count + 1 ELSE 1 END, window_start = excluded.window_start \
         WHERE rate_windows.window_start <> excluded.window_start OR rate_windows.count < ?3 \
         RETURNING count",
        &[SqlValue::Text(key.to_owned()), int(start_secs), int(limit)],
    )?;
    match rows.first().and_then(|row| row.first()) {
        Some(SqlValue::Integer(count)) => Ok(Decision::Allow(Window {
            start_secs,
            count: u64::try_from(*count).unwrap_or(0),
        })),
        Some(other) => Err(format!("rate_windows.count: not an integer: {other:?}")),
        None => Ok(Decision::Deny {
            retry_after_secs: (start_secs + window_secs).saturating_sub(now_secs).max(1),
        }),
    }
}

#[cfg(test)]
#[path = "ratelimit_tests.rs"]
mod store_tests;

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
