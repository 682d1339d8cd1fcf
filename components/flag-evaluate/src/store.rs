//! Flag storage: SQLite is the source of truth (`flag_sets`, one row per
//! version, and the append-only `audit_log`); key-value holds the current
//! version number (`dol:flags:version`) and the evaluated document of that
//! version (`dol:flags:snapshot`), and each instance keeps the compiled set
//! of the version it last saw. A steady-state evaluation therefore reads
//! key-value only (one get with a warm instance, two with a fresh one) and
//! runs no SQL query; any write bumps the version.

use std::cell::RefCell;
use std::rc::Rc;

use anyhow::Context as _;
use dol_core::flags::FlagSet;
use dol_core::flags::admin::FlagState;
use dol_core::flags::store as flag_store;
use dol_core::migrate::SqlExecutor;
use serde_json::Value;
use spin_sdk::key_value::Store;

use crate::platform::{SpinSql, now_ms, open_db, publish_flags};

use flag_store::{SNAPSHOT_KEY, VERSION_KEY};

thread_local! {
    /// The compiled set of the version this instance last saw.
    static CACHE: RefCell<Option<(i64, Rc<FlagSet>)>> = const { RefCell::new(None) };
}

/// Counts one OFREP request of `client` in the current minute (key-value
/// `dol:ofrep:rate:<client>`) and says whether it is within `limit`.
/// Key-value has no compare-and-set, so concurrent requests may each see the
/// same count: the limit is approximate under bursts, exact for one client
/// sending serially.
pub fn check_rate(
    client: &str,
    now_secs: u64,
    limit: u64,
) -> anyhow::Result<dol_core::ratelimit::Decision> {
    let kv = Store::open_default().context("open key-value")?;
    let key = format!("dol:ofrep:rate:{client}");
    let stored = kv
        .get(&key)
        .context("get rate window")?
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    let decision = dol_core::ratelimit::check(stored, now_secs, limit, 60);
    if let dol_core::ratelimit::Decision::Allow(window) = decision {
        kv.set(&key, &serde_json::to_vec(&window)?)
            .context("store rate window")?;
    }
    Ok(decision)
}

/// The current compiled flag set and its version.
pub fn current() -> anyhow::Result<(i64, Rc<FlagSet>)> {
    let kv = Store::open_default().context("open key-value")?;
    let version = kv
        .get(VERSION_KEY)
        .context("get version")?
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.trim().parse::<i64>().ok());
    if let Some(version) = version {
        if let Some(hit) = CACHE.with_borrow(|c| c.as_ref().filter(|(v, _)| *v == version).cloned())
        {
            return Ok(hit);
        }
        if let Some(set) = from_snapshot(&kv, version) {
            return Ok(remember(version, set));
        }
    }
    // Cold start, a new version not yet published, or an unreadable
    // snapshot: read SQLite and publish.
    let db = open_db()?;
    let (version, state) = load_latest(&mut SpinSql(&db))?;
    let set = state.compile().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    publish_flags(version, &state);
    Ok(remember(version, set))
}

fn remember(version: i64, set: FlagSet) -> (i64, Rc<FlagSet>) {
    let set = Rc::new(set);
    CACHE.with_borrow_mut(|c| *c = Some((version, Rc::clone(&set))));
    (version, set)
}

fn from_snapshot(kv: &Store, version: i64) -> Option<FlagSet> {
    let bytes = kv.get(SNAPSHOT_KEY).ok()??;
    let snapshot: Value = serde_json::from_slice(&bytes).ok()?;
    if snapshot.get("version")?.as_i64()? != version {
        return None;
    }
    FlagSet::from_value(snapshot.get("document")?).ok()
}

fn load_latest(db: &mut impl SqlExecutor) -> anyhow::Result<(i64, FlagState)> {
    Ok(flag_store::load_latest(db, now_ms())?)
}

/// The current stored state (admin reads go to SQLite, the source of truth).
pub fn read_state() -> anyhow::Result<(i64, FlagState)> {
    let db = open_db()?;
    load_latest(&mut SpinSql(&db))
}

pub use flag_store::WriteOutcome;

/// Applies `edit` to the current state inside one `BEGIN IMMEDIATE`
/// transaction (`dol_core::flags::store::write`) and publishes a new version
/// to key-value. Refusals store nothing; an edit that changes nothing stores
/// no new version.
pub fn write(
    actor: &str,
    edit: impl FnOnce(&FlagState) -> flag_store::EditResult,
) -> anyhow::Result<WriteOutcome> {
    let db = open_db()?;
    let outcome = flag_store::write(&mut SpinSql(&db), actor, now_ms(), edit)?;
    if let Ok((version, state)) = &outcome {
        publish_flags(*version, state);
    }
    Ok(outcome)
}

/// Audit entries, newest first, optionally for one flag.
pub fn audit(flag: Option<&str>, limit: i64) -> anyhow::Result<Vec<Value>> {
    let db = open_db()?;
    let mut sql = SpinSql(&db);
    load_latest(&mut sql)?;
    Ok(flag_store::audit(&mut sql, flag, limit)?)
}
