//! API keys and their limits: key format and hashing, and the admission
//! decision (requests/min, tokens/min, monthly budget) over stored counters.
//!
//! Keys look like `dol_sk_<32 hex>`; only the SHA-256 of the key is stored,
//! with a short display prefix. Admission reserves the request's estimated
//! tokens and cost *before* the call (the caller holds a write transaction),
//! and [`settle`] later swaps the reservation for the actual figures, so
//! concurrent requests cannot together spend past the budget.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Prefix of every DOL API key.
pub const KEY_PREFIX: &str = "dol_sk_";

/// Builds a key from 16 random bytes supplied by the caller.
pub fn format_key(random: [u8; 16]) -> String {
    let mut key = String::from(KEY_PREFIX);
    crate::hex::encode_into(&mut key, &random);
    key
}

/// Whether `key` has the shape of a DOL key (prefix + 32 lowercase hex digits).
pub fn is_well_formed(key: &str) -> bool {
    key.strip_prefix(KEY_PREFIX).is_some_and(|hex| {
        hex.len() == 32
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The stored form of a key: lowercase hex SHA-256.
pub fn hash_key(key: &str) -> String {
    crate::hex::encode(&Sha256::digest(key.as_bytes()))
}

/// The part of a key safe to show and log (`dol_sk_1a2b…`).
pub fn display_prefix(key: &str) -> String {
    let shown: String = key.chars().take(KEY_PREFIX.len() + 4).collect();
    format!("{shown}…")
}

/// Per-key limits; `None` means unlimited. An unknown field is refused, so
/// a misspelt limit cannot leave a key unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyLimits {
    /// Requests per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u64>,
    /// Tokens (prompt + completion) per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u64>,
    /// Spend per calendar month (UTC), micro-dollars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_budget_micros: Option<u64>,
}

impl KeyLimits {
    /// The `limits` member of an admin request (a key's or an org's): the
    /// three optional limits, non-negative integers of at most `i64::MAX`,
    /// which is what storage holds (a larger one was accepted, echoed back
    /// and then stored as `i64::MAX`).
    pub fn from_request(value: &serde_json::Value) -> Result<KeyLimits, crate::error::ApiError> {
        let limits = serde_json::from_value::<KeyLimits>(value.clone()).map_err(|e| {
            crate::error::ApiError::invalid(
                "limits",
                format!(
                    "limits: {e} (fields: requests_per_minute, tokens_per_minute, monthly_budget_micros; non-negative integers)"
                ),
            )
        })?;
        let max = i64::MAX.unsigned_abs();
        for (name, limit) in [
            ("requests_per_minute", limits.requests_per_minute),
            ("tokens_per_minute", limits.tokens_per_minute),
            ("monthly_budget_micros", limits.monthly_budget_micros),
        ] {
            if limit.is_some_and(|n| n > max) {
                return Err(crate::error::ApiError::invalid(
                    format!("limits.{name}"),
                    format!("limits.{name} must be at most {max}"),
                ));
            }
        }
        Ok(limits)
    }

    /// Whether no limit is set: admission can refuse nothing, so it need
    /// reserve nothing ([`counted_at_settlement`] counts the request when
    /// it is settled instead).
    pub fn is_unlimited(&self) -> bool {
        *self == KeyLimits::default()
    }
}

#[cfg(test)]
impl KeyLimits {
    /// Limits of just a monthly budget of `micros`.
    pub(crate) fn budget(micros: u64) -> KeyLimits {
        KeyLimits {
            monthly_budget_micros: Some(micros),
            ..KeyLimits::default()
        }
    }
}

/// Counters stored for a key.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Start of the current minute window (Unix seconds, multiple of 60).
    pub window_start: u64,
    /// Requests admitted in the window.
    pub window_requests: u64,
    /// Tokens reserved or used in the window.
    pub window_tokens: u64,
    /// The month the spend counters are for (`YYYY-MM`).
    pub month: String,
    /// Settled spend this month, micro-dollars.
    pub spent_micros: u64,
    /// Outstanding reservations, micro-dollars.
    pub reserved_micros: u64,
}

/// What one request is expected to consume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Reservation {
    /// Estimated tokens (prompt + output limit).
    pub tokens: u64,
    /// Estimated cost, micro-dollars (0 when unknown: the budget then counts settled spend).
    pub cost_micros: u64,
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    /// requests per minute.
    Requests,
    /// tokens per minute.
    Tokens,
    /// monthly budget.
    Budget,
}

/// The admission decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Admit; store these counters.
    Admit(Usage),
    /// Refuse with 429.
    Refuse {
        /// The limit hit.
        limit: LimitKind,
        /// Seconds until it may succeed (`Retry-After`).
        retry_after_secs: u64,
        /// A message for the client.
        message: String,
    },
}

/// `YYYY-MM` of a Unix time (UTC).
pub fn month_of(unix_secs: u64) -> String {
    let (y, m, _) = civil_from_days((unix_secs / 86_400) as i64);
    format!("{y:04}-{m:02}")
}

/// Seconds from `unix_secs` to the start of the next UTC month.
pub fn secs_to_next_month(unix_secs: u64) -> u64 {
    let (y, m, _) = civil_from_days((unix_secs / 86_400) as i64);
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    let start = days_from_civil(ny, nm, 1).max(0) as u64 * 86_400;
    start.saturating_sub(unix_secs).max(1)
}

// Howard Hinnant's civil-calendar algorithms: exact for the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Decides whether to admit a request at `now_secs` with `want` reserved,
/// given the stored counters and the key's limits. Counters of an old minute
/// or month are reset first.
pub fn admit(stored: &Usage, limits: &KeyLimits, want: Reservation, now_secs: u64) -> Admission {
    admit_scoped(stored, limits, want, now_secs, "this key")
}

/// [`admit`] for the counters of `scope` (named in refusals: `this key`,
/// or an organization), so one rule decides for keys and orgs alike.
pub fn admit_scoped(
    stored: &Usage,
    limits: &KeyLimits,
    want: Reservation,
    now_secs: u64,
    scope: &str,
) -> Admission {
    let mut u = stored.clone();
    let window = now_secs - now_secs % 60;
    if u.window_start != window {
        u.window_start = window;
        u.window_requests = 0;
        u.window_tokens = 0;
    }
    let month = month_of(now_secs);
    if u.month != month {
        u.month = month;
        u.spent_micros = 0;
        u.reserved_micros = 0;
    }
    let to_next_minute = (window + 60).saturating_sub(now_secs).max(1);
    if let Some(max) = limits.requests_per_minute
        && u.window_requests >= max
    {
        return Admission::Refuse {
            limit: LimitKind::Requests,
            retry_after_secs: to_next_minute,
            message: format!("Rate limit reached: {max} requests per minute for {scope}."),
        };
    }
    if let Some(max) = limits.tokens_per_minute
        && u.window_tokens > 0
        && u.window_tokens.saturating_add(want.tokens) > max
    {
        return Admission::Refuse {
            limit: LimitKind::Tokens,
            retry_after_secs: to_next_minute,
            message: format!(
                "Rate limit reached: {max} tokens per minute for {scope} ({} used, {} requested).",
                u.window_tokens, want.tokens
            ),
        };
    }
    if let Some(max) = limits.monthly_budget_micros {
        let committed = u.spent_micros.saturating_add(u.reserved_micros);
        if committed >= max || committed.saturating_add(want.cost_micros) > max {
            return Admission::Refuse {
                limit: LimitKind::Budget,
                retry_after_secs: secs_to_next_month(now_secs),
                message: format!(
                    "Monthly budget of ${:.6} reached for {scope} (${:.6} spent or reserved).",
                    max as f64 / 1e6,
                    committed as f64 / 1e6
                ),
            };
        }
    }
    u.window_requests += 1;
    u.window_tokens = u.window_tokens.saturating_add(want.tokens);
    u.reserved_micros = u.reserved_micros.saturating_add(want.cost_micros);
    Admission::Admit(u)
}

/// Replaces a reservation made at `reserved_at_secs` by the actual tokens and
/// cost at `now_secs` (an unknown cost settles as 0 spent and is flagged by the caller).
pub fn settle(
    stored: &Usage,
    reserved: Reservation,
    reserved_at_secs: u64,
    actual_tokens: u64,
    actual_cost_micros: u64,
    now_secs: u64,
) -> Usage {
    let mut u = stored.clone();
    let month = month_of(now_secs);
    if u.month == month_of(reserved_at_secs) {
        u.reserved_micros = u.reserved_micros.saturating_sub(reserved.cost_micros);
    }
    if u.month != month {
        u.month = month;
        u.spent_micros = 0;
        u.reserved_micros = 0;
    }
    u.spent_micros = u.spent_micros.saturating_add(actual_cost_micros);
    if u.window_start == reserved_at_secs - reserved_at_secs % 60 {
        // Same minute: correct the tokens reserved to what was used.
        u.window_tokens = u
            .window_tokens
            .saturating_sub(reserved.tokens)
            .saturating_add(actual_tokens);
    }
    u
}

/// Counts a request that admission reserved nothing for (a key, and org,
/// with no limits: [`KeyLimits::is_unlimited`]) when it is settled at
/// `now_secs`: admitted with an empty reservation and settled at once, by
/// the same rules as a reserved one, so its counters end where a reserved
/// request's do (one more request in the minute, `tokens` in the minute,
/// `cost_micros` spent) and no other request's reservation is touched.
pub fn counted_at_settlement(
    stored: &Usage,
    tokens: u64,
    cost_micros: u64,
    now_secs: u64,
) -> Usage {
    let nothing = Reservation::default();
    let admitted = match admit(stored, &KeyLimits::default(), nothing, now_secs) {
        Admission::Admit(next) => next,
        // Without limits admission cannot refuse; should it ever, the
        // request is still counted against the stored counters.
        Admission::Refuse { .. } => stored.clone(),
    };
    settle(&admitted, nothing, now_secs, tokens, cost_micros, now_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOV_26_2026: u64 = 1_795_651_200; // 2026-11-26T00:00:00Z

    #[test]
    fn keys_are_well_formed_and_hashed() {
        let k = format_key([0xab; 16]);
        assert!(k.starts_with("dol_sk_abab"));
        assert!(is_well_formed(&k));
        assert!(!is_well_formed("dol_sk_xyz"));
        assert!(!is_well_formed("sk-abc"));
        assert_eq!(hash_key(&k).len(), 64);
        assert_ne!(hash_key(&k), hash_key(&format_key([0xac; 16])));
        assert_eq!(display_prefix(&k), "dol_sk_abab…");
    }

    #[test]
    fn months_follow_the_calendar() {
        assert_eq!(month_of(NOV_26_2026), "2026-11");
        assert_eq!(month_of(0), "1970-01");
        assert_eq!(month_of(951_782_400), "2000-02"); // 2000-02-29
        // From Nov 26 00:00 to Dec 1 00:00: 5 days.
        assert_eq!(secs_to_next_month(NOV_26_2026), 5 * 86_400);
        assert_eq!(
            month_of(NOV_26_2026 + secs_to_next_month(NOV_26_2026)),
            "2026-12"
        );
    }

    #[test]
    fn requests_per_minute_refuse_until_the_next_minute() {
        let limits = KeyLimits {
            requests_per_minute: Some(2),
            ..KeyLimits::default()
        };
        let mut u = Usage::default();
        for _ in 0..2 {
            match admit(&u, &limits, Reservation::default(), NOV_26_2026 + 10) {
                Admission::Admit(next) => u = next,
                other => panic!("{other:?}"),
            }
        }
        match admit(&u, &limits, Reservation::default(), NOV_26_2026 + 10) {
            Admission::Refuse {
                limit,
                retry_after_secs,
                ..
            } => {
                assert_eq!(limit, LimitKind::Requests);
                assert_eq!(retry_after_secs, 50);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            admit(&u, &limits, Reservation::default(), NOV_26_2026 + 60),
            Admission::Admit(_)
        ));
    }

    #[test]
    fn tokens_per_minute_admit_one_large_request_then_refuse() {
        let limits = KeyLimits {
            tokens_per_minute: Some(1_000),
            ..KeyLimits::default()
        };
        let want = Reservation {
            tokens: 1_500,
            cost_micros: 0,
        };
        // A single request larger than the limit is admitted into an empty window.
        let Admission::Admit(u) = admit(&Usage::default(), &limits, want, NOV_26_2026) else {
            panic!("first request refused")
        };
        assert!(matches!(
            admit(
                &u,
                &limits,
                Reservation {
                    tokens: 1,
                    cost_micros: 0
                },
                NOV_26_2026 + 1
            ),
            Admission::Refuse {
                limit: LimitKind::Tokens,
                ..
            }
        ));
    }

    #[test]
    fn reservations_stop_concurrent_overspend() {
        let limits = KeyLimits {
            monthly_budget_micros: Some(1_000),
            ..KeyLimits::default()
        };
        let want = Reservation {
            tokens: 10,
            cost_micros: 400,
        };
        // Two in-flight requests reserve 800; the third would cross 1000.
        let Admission::Admit(u) = admit(&Usage::default(), &limits, want, NOV_26_2026) else {
            panic!()
        };
        let Admission::Admit(u) = admit(&u, &limits, want, NOV_26_2026) else {
            panic!()
        };
        assert!(matches!(
            admit(&u, &limits, want, NOV_26_2026),
            Admission::Refuse {
                limit: LimitKind::Budget,
                ..
            }
        ));
        // Settling one at its real (lower) cost frees room.
        let u = settle(&u, want, NOV_26_2026, 8, 100, NOV_26_2026 + 1);
        assert_eq!(u.spent_micros, 100);
        assert_eq!(u.reserved_micros, 400);
        assert!(matches!(
            admit(&u, &limits, want, NOV_26_2026 + 2),
            Admission::Admit(_)
        ));
    }

    #[test]
    fn a_new_month_resets_spend() {
        let limits = KeyLimits {
            monthly_budget_micros: Some(100),
            ..KeyLimits::default()
        };
        let spent = Usage {
            month: "2026-10".to_owned(),
            spent_micros: 100,
            ..Usage::default()
        };
        assert!(matches!(
            admit(
                &spent,
                &limits,
                Reservation {
                    tokens: 1,
                    cost_micros: 10
                },
                NOV_26_2026
            ),
            Admission::Admit(_)
        ));
    }

    #[test]
    fn only_a_limit_makes_limits_limited() {
        assert!(KeyLimits::default().is_unlimited());
        for limits in [
            KeyLimits {
                requests_per_minute: Some(0),
                ..KeyLimits::default()
            },
            KeyLimits {
                tokens_per_minute: Some(u64::MAX),
                ..KeyLimits::default()
            },
            KeyLimits {
                monthly_budget_micros: Some(1),
                ..KeyLimits::default()
            },
        ] {
            assert!(!limits.is_unlimited(), "{limits:?}");
        }
    }

    #[test]
    fn a_request_counted_at_settlement_ends_where_a_reserved_one_does() {
        // Another request's reservation is outstanding in this minute.
        let now = NOV_26_2026 + 30;
        let stored = Usage {
            window_start: NOV_26_2026,
            window_requests: 3,
            window_tokens: 500,
            month: "2026-11".to_owned(),
            spent_micros: 1_000,
            reserved_micros: 400,
        };
        let counted = counted_at_settlement(&stored, 120, 70, now);
        // Reserved and settled in the same second: the same counters.
        let want = Reservation {
            tokens: 900,
            cost_micros: 300,
        };
        let Admission::Admit(reserved) = admit(&stored, &KeyLimits::default(), want, now) else {
            panic!("no limits refuse nothing");
        };
        assert_eq!(counted, settle(&reserved, want, now, 120, 70, now));
        assert_eq!(
            counted,
            Usage {
                window_requests: 4,
                window_tokens: 620,
                spent_micros: 1_070,
                // The other request's reservation is left alone.
                reserved_micros: 400,
                ..stored.clone()
            }
        );
        // A new minute and a new month start their counters afresh; the
        // old month's reservations lapse as they do for a reserved request.
        let next_month = NOV_26_2026 + secs_to_next_month(NOV_26_2026) + 5;
        assert_eq!(
            counted_at_settlement(&stored, 120, 70, next_month),
            Usage {
                window_start: next_month - next_month % 60,
                window_requests: 1,
                window_tokens: 120,
                month: "2026-12".to_owned(),
                spent_micros: 70,
                reserved_micros: 0,
            }
        );
    }
}
