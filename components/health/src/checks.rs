//! The storage round trips. Each returns the check result and, when it
//! worked, the last scan run that storage knows about.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::Context as _;
use dol_core::health::{CheckResult, LAST_RUN_KEY, LAST_SCAN_RUN_SQL, ScanRun};
use dol_core::migrate;
use spin_sdk::key_value::Store;
use spin_sdk::sqlite::Connection;

use dol_spin_platform::{SpinSql, now_ms};

/// Key written, read back and deleted by the key-value check.
const PROBE_KEY: &str = "dol:health:probe";

/// Set once this instance has seen the migrations applied. Only an
/// optimisation: `_dol_migrations` is the truth and `apply` is idempotent.
static MIGRATED: AtomicBool = AtomicBool::new(false);

/// Default key-value store: set, get, delete, then read the last scan run.
pub fn key_value() -> (CheckResult, Option<ScanRun>) {
    timed("key-value", || {
        let store = Store::open_default().context("open")?;
        let value = now_ms().to_string().into_bytes();
        store.set(PROBE_KEY, &value).context("set")?;
        let read = store.get(PROBE_KEY).context("get")?;
        anyhow::ensure!(
            read.as_deref() == Some(value.as_slice()),
            "read back a different value"
        );
        store.delete(PROBE_KEY).context("delete")?;
        // An unreadable last-run record is not a storage failure.
        Ok(store.get_json::<ScanRun>(LAST_RUN_KEY).ok().flatten())
    })
}

/// Default SQLite database: migrations (first use), then the last scan run.
pub fn sqlite() -> (CheckResult, Option<ScanRun>) {
    timed("sqlite", || {
        let db = Connection::open_default().context("open")?;
        if !MIGRATED.load(Ordering::Relaxed) {
            migrate::apply(&mut SpinSql(&db), now_ms()).context("migrate")?;
            MIGRATED.store(true, Ordering::Relaxed);
        }
        let result = db.execute(LAST_SCAN_RUN_SQL, &[]).context("select")?;
        let last = result.rows.first().map(|row| {
            let values: Vec<_> = row
                .values
                .iter()
                .map(dol_spin_platform::from_spin)
                .collect();
            ScanRun::from_row(&values)
        });
        Ok(last.flatten())
    })
}

/// `_dol_migrations` holds every version of `dol_core::migrate::MIGRATIONS`.
pub fn migrations() -> CheckResult {
    let start = Instant::now();
    let outcome = (|| -> anyhow::Result<Vec<i64>> {
        let db = Connection::open_default().context("open")?;
        let result = db
            .execute(dol_core::observe::usage::APPLIED_MIGRATIONS_SQL, &[])
            .context("select")?;
        Ok(result
            .rows
            .iter()
            .filter_map(|r| r.values.first())
            .filter_map(|v| dol_spin_platform::from_spin(v).as_i64())
            .collect())
    })();
    let latency_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    match outcome {
        Ok(applied) => {
            let missing = dol_core::observe::usage::missing_migrations(&applied);
            if missing.is_empty() {
                CheckResult::pass("migrations", latency_ms)
            } else {
                let list: Vec<String> = missing.iter().map(i64::to_string).collect();
                CheckResult::fail(
                    "migrations",
                    latency_ms,
                    &format!("missing versions {}", list.join(", ")),
                )
            }
        }
        Err(err) => {
            eprintln!("health: migrations check failed: {err:#}");
            CheckResult::fail("migrations", latency_ms, "unavailable")
        }
    }
}

/// Runs a check, times it, and logs (but does not publish) its error.
fn timed(
    name: &str,
    check: impl FnOnce() -> anyhow::Result<Option<ScanRun>>,
) -> (CheckResult, Option<ScanRun>) {
    let start = Instant::now();
    let outcome = check();
    let latency_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    match outcome {
        Ok(scan) => (CheckResult::pass(name, latency_ms), scan),
        Err(err) => {
            eprintln!("health: {name} check failed: {err:#}");
            (CheckResult::fail(name, latency_ms, "unavailable"), None)
        }
    }
}
