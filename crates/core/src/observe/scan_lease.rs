//! One expiring lease per scan (table `scan_leases`, migration 19), so
//! replicas sharing one database run each scan once at a time:
//!
//! - a cron tick runs a scan once across every replica: [`acquire`] with
//!   [`Trigger::Tick`] succeeds for the first caller of a tick only (the
//!   tick is kept and only ever raised) and only while no run holds the
//!   lease;
//! - a replica that dies mid-scan blocks nothing for long: its lease lapses
//!   after [`lease_ttl_ms`] and the next tick (or a manual run) takes it
//!   over; the dead run's late [`release`] then changes nothing;
//! - a manual run (`POST /admin/scans/{name}`, [`Trigger::Manual`]) is
//!   refused while another run of the scan — cron or manual, any replica —
//!   holds the lease ([`Acquired::Held`], the 409 the component answers).
//!
//! Each attempt is one atomic upsert (no read-modify-write), so two
//! connections racing for the same tick cannot both win on either backend.
//! The clock is the caller's (`now_ms`, Unix milliseconds).

use serde::Serialize;
use serde_json::{Value, json};

use super::scans::{DISCOVERY, RECOMMENDATIONS, REPORT, RETENTION};
use super::store::StoreError;
use super::system::sql;
use crate::error::{ApiError, Code};
use crate::storage::{Row, SqlExecutor, SqlValue};

/// What asks for the lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The cron tick at this Unix second: runs once per tick.
    Tick(u64),
    /// A run by hand (over HTTP): runs whenever the lease is free.
    Manual,
}

/// A lease held by this run; hand it to [`release`] when the run ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    /// The scan.
    pub scan: String,
    /// This run's holder id.
    pub holder: String,
    /// When the lease lapses if not released (Unix ms).
    pub expires_at: i64,
}

/// The outcome of [`acquire`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquired {
    /// The lease is this run's: run the scan.
    Granted(Lease),
    /// Another run holds the lease until `expires_at`: do not run.
    Held(Lease),
    /// This tick (or a later one) was claimed already and its run is over:
    /// do not run (cron only).
    TickDone,
}

/// How long a run of `name` holds its lease unless released: shorter than
/// the scan's cron period (so a dead replica's lease has lapsed by the next
/// tick) and longer than a run takes (so a live run is never taken over).
/// The minute scans get 50 s; the six-hourly and daily ones, whose runs
/// call providers, 10 minutes.
pub fn lease_ttl_ms(name: &str) -> i64 {
    match name {
        DISCOVERY | REPORT | RETENTION | RECOMMENDATIONS => 600_000,
        _ => 50_000,
    }
}

/// Tries to take the lease of scan `name` for the run `holder` (an id no
/// other run uses) at `now_ms`; see the module documentation.
pub fn acquire(
    db: &mut impl SqlExecutor,
    name: &str,
    holder: &str,
    trigger: Trigger,
    now_ms: i64,
) -> Result<Acquired, StoreError> {
    let expires_at = now_ms.saturating_add(lease_ttl_ms(name));
    let (tick, tick_rule) = match trigger {
        Trigger::Tick(t) => (
            i64::try_from(t).unwrap_or(i64::MAX),
            " AND scan_leases.tick < excluded.tick",
        ),
        Trigger::Manual => (0, ""),
    };
    // A lease released or lapsed at `now` is free; the tick is only raised.
    let taken = sql(
        db,
        "take the scan lease",
        &format!(
            "INSERT INTO scan_leases (name, holder, expires_at, tick, acquired_at) \
             VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
             expires_at = excluded.expires_at, tick = MAX(scan_leases.tick, excluded.tick), \
             acquired_at = excluded.acquired_at \
             WHERE scan_leases.expires_at <= ?5{tick_rule} RETURNING name"
        ),
        &[
            SqlValue::Text(name.to_owned()),
            SqlValue::Text(holder.to_owned()),
            SqlValue::Integer(expires_at),
            SqlValue::Integer(tick),
            SqlValue::Integer(now_ms),
        ],
    )?;
    if !taken.is_empty() {
        return Ok(Acquired::Granted(Lease {
            scan: name.to_owned(),
            holder: holder.to_owned(),
            expires_at,
        }));
    }
    match current(db, name)? {
        Some(lease) if lease.expires_at > now_ms => Ok(Acquired::Held(lease)),
        // Free but not taken: the tick was claimed already (for a manual
        // run this is a release between the two statements — the caller
        // may simply try again; report it as held until now).
        _ if matches!(trigger, Trigger::Tick(_)) => Ok(Acquired::TickDone),
        lease => Ok(Acquired::Held(lease.unwrap_or(Lease {
            scan: name.to_owned(),
            holder: String::new(),
            expires_at: now_ms,
        }))),
    }
}

/// The lease of `name` as stored (holder empty once released), if it was
/// ever taken.
pub fn current(db: &mut impl SqlExecutor, name: &str) -> Result<Option<Lease>, StoreError> {
    let rows = sql(
        db,
        "read the scan lease",
        "SELECT holder, expires_at FROM scan_leases WHERE name = ?",
        &[SqlValue::Text(name.to_owned())],
    )?;
    let Some(values) = rows.first() else {
        return Ok(None);
    };
    let r = Row::new("scan_leases", values);
    Ok(Some(Lease {
        scan: name.to_owned(),
        holder: r.opt_text(0, "holder")?.unwrap_or_default().to_owned(),
        expires_at: r.int(1, "expires_at")?,
    }))
}

/// Ends `lease` at `now_ms`, if its run still holds it (a lease that lapsed
/// and was taken over is left to its new holder): true when released.
pub fn release(db: &mut impl SqlExecutor, lease: &Lease, now_ms: i64) -> Result<bool, StoreError> {
    let rows = sql(
        db,
        "release the scan lease",
        "UPDATE scan_leases SET holder = NULL, expires_at = ? \
         WHERE name = ? AND holder = ? RETURNING name",
        &[
            SqlValue::Integer(now_ms),
            SqlValue::Text(lease.scan.clone()),
            SqlValue::Text(lease.holder.clone()),
        ],
    )?;
    Ok(!rows.is_empty())
}

/// The 409 for a run of `scan` refused by [`acquire`] with `refused` at
/// `now_ms` (a [`Acquired::Held`] lease, or for a tick already done the
/// lease as lapsing now): DOL's error shape (code `conflict`, a message naming the scan
/// and the expiry) plus `lease` (`scan`, `expiresAt` in Unix ms), with a
/// `Retry-After` of the seconds until the lease lapses. Returns the error
/// (status, headers) and the body to send.
pub fn refusal(scan: &str, refused: &Acquired, now_ms: i64) -> (ApiError, Value) {
    let held = match refused {
        Acquired::Granted(lease) | Acquired::Held(lease) => lease.clone(),
        Acquired::TickDone => Lease {
            scan: scan.to_owned(),
            holder: String::new(),
            expires_at: now_ms,
        },
    };
    let wait_secs = (held.expires_at.saturating_sub(now_ms).max(0) + 999) / 1_000;
    let err = ApiError::new(
        Code::Conflict,
        format!(
            "scan `{}` is running (another run holds its lease until {} ms, in {wait_secs} s); \
             try again after it ends",
            held.scan, held.expires_at
        ),
    )
    .with_header("Retry-After", wait_secs.to_string());
    let mut body = err.to_dol();
    body["lease"] = json!({ "scan": held.scan, "expiresAt": held.expires_at });
    (err, body)
}

#[cfg(test)]
#[path = "scan_lease_tests.rs"]
mod tests;
