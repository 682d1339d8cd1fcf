//! Running a scan: open storage, run it, record the run (name, start,
//! duration, outcome, summary JSON) in `scan_runs` and under
//! the last-run key in key-value (what `GET /health` reports), through
//! `dol_core::observe::scan_store`.

use anyhow::Context as _;
use dol_core::health::{Outcome, ScanRun};
use dol_core::observe::scan_lease::{self, Acquired, Lease, Trigger};
use dol_core::observe::scan_store;
use dol_core::observe::scans::{
    ALERTS, DISCOVERY, HEARTBEAT, PROBES, RECOMMENDATIONS, REPORT, RETENTION, ROLLOUTS, SELECTION,
    VIDEO_JOBS,
};
use dol_spin_platform::Db;
use serde_json::{Value, json};

use dol_spin_platform::{SpinKv, SpinSql, now_ms, open_db};

/// Runs scan `name` for a trigger at `now` (Unix ms; the cron tick's time,
/// or the wall clock over HTTP — to the millisecond, so a decision never
/// sees "now" before a change made a moment earlier). Decisions use `now`.
/// The run is recorded whether the scan succeeded or not; the error is
/// returned after recording.
pub fn run(name: &str, now: i64) -> anyhow::Result<(ScanRun, Value)> {
    let started = now_ms();
    let db = open_db().context("opening the default database")?;
    let timestamp = u64::try_from(now.div_euclid(1_000)).unwrap_or(0);
    let result = match name {
        ALERTS => crate::alerts::run(&db, now),
        ROLLOUTS => crate::rollouts::run(&db, now),
        VIDEO_JOBS => crate::videos::run(&db),
        PROBES => crate::probes::run(now),
        DISCOVERY => crate::discovery::run(&db, now),
        REPORT => crate::report::report(&db, now),
        RETENTION => crate::report::retention(&db, now),
        RECOMMENDATIONS => crate::recommendations::scan(&db, now),
        SELECTION => crate::selection::run(&db, now),
        HEARTBEAT => Ok(json!({})),
        other => Err(anyhow::anyhow!("no scan {other}")),
    };
    let mut run = ScanRun::new(name, timestamp, started, now_ms());
    let summary = match &result {
        Ok(v) => v.clone(),
        Err(err) => {
            run.outcome = Outcome::Error;
            json!({ "error": format!("{err:#}") })
        }
    };
    run.detail = summary.to_string();
    record(&db, &run)?;
    result.map(|v| (run, v))
}

fn record(db: &Db, run: &ScanRun) -> anyhow::Result<()> {
    let mut kv = SpinKv::open_default();
    scan_store::record_run(
        &mut SpinSql(db),
        kv.as_mut().map_err(|e| format!("{e:#}")),
        run,
    )
    .context("recording the scan run")
}

/// Tries to take scan `name`'s lease for `trigger` at the wall clock
/// (`dol_core::observe::scan_lease`): a cron tick runs once across every
/// replica, a manual run only while no other run holds the lease. The
/// holder id is random, so no two runs share one.
pub fn acquire(name: &str, trigger: Trigger) -> anyhow::Result<Acquired> {
    let db = open_db().context("opening the default database")?;
    let holder = format!("{:016x}", wasi::random::random::get_random_u64());
    Ok(scan_lease::acquire(
        &mut SpinSql(&db),
        name,
        &holder,
        trigger,
        now_ms(),
    )?)
}

/// Waits until the book-keeping that trails the answers given before now
/// is written (`dol_core::gateway::bookings::SETTLED_AFTER_MS`: the
/// gateway writes the rows of requests without limits in batches up to
/// 20 ms after their answers), so a scan judges every request answered
/// before its tick. Once per cron event or manual run, before the first
/// scan reads.
pub fn await_trailing_bookings() {
    std::thread::sleep(std::time::Duration::from_millis(
        dol_core::gateway::bookings::SETTLED_AFTER_MS,
    ));
}

/// Runs scan `name` under `lease` (see [`run`]), then releases the lease
/// whatever the outcome (a failed release only leaves it to lapse).
pub fn run_leased(lease: &Lease, now: i64) -> anyhow::Result<(ScanRun, Value)> {
    let result = run(&lease.scan, now);
    let released = open_db()
        .context("opening the default database")
        .and_then(|db| Ok(scan_lease::release(&mut SpinSql(&db), lease, now_ms())?));
    if let Err(err) = released {
        eprintln!(
            "scans: releasing the {} lease failed (it lapses at {}): {err:#}",
            lease.scan, lease.expires_at
        );
    }
    result
}
