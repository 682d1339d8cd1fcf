//! Flag storage: SQLite is the source of truth (`flag_sets`, one row per
//! version, and the append-only `audit_log`); key-value holds the published
//! version, its evaluated document and one entry per flag
//! (`dol_core::flags::store` says how publication stays in order), and each
//! instance keeps the compiled set of the version it last saw (a fresh
//! instance evaluating one flag reads and compiles that flag's entry only;
//! a reused instance asked for a second flag compiles the whole set).
//! A steady-state evaluation therefore reads key-value only (one get with a
//! warm instance, two with a fresh one) and runs no SQL query; any write
//! bumps the version.

use std::cell::RefCell;
use std::rc::Rc;

use dol_core::error::ApiError;
use dol_core::flags::FlagSet;
use dol_core::flags::admin::FlagState;
use dol_core::flags::store::{self as flag_store, Published};
use serde_json::Value;

use dol_spin_platform::{SpinKv, SpinSql, now_ms, open_db};

/// A compiled set with its version and, when only one flag was compiled, that flag.
type Compiled = (i64, Option<String>, Rc<FlagSet>);

thread_local! {
    /// The compiled set of the version this instance last saw.
    static CACHE: RefCell<Option<Compiled>> = const { RefCell::new(None) };
}

/// Counts one OFREP request of `client` in the current minute (row
/// `dol:ofrep:rate:<client>` of `rate_windows`) and says whether it is
/// within `limit`: one atomic upsert (`dol_core::ratelimit::hit`), exact
/// across concurrent requests and replicas.
pub fn check_rate(
    client: &str,
    now_secs: u64,
    limit: u64,
) -> anyhow::Result<dol_core::ratelimit::Decision> {
    let db = open_db()?;
    let key = format!("dol:ofrep:rate:{client}");
    dol_core::ratelimit::hit(&mut SpinSql(&db), &key, now_secs, limit, 60)
        .map_err(|e| anyhow::anyhow!("count the OFREP request: {e}"))
}

/// The current compiled flag set and its version.
///
/// Trusts key-value only when it names a published version whose snapshot
/// is there; otherwise (nothing published, a write in flight or a crash
/// before its publication) reads SQLite and publishes the latest version
/// (`dol_core::flags::store::publish_latest`), so an acknowledged flag change
/// is never served older.
pub fn current() -> anyhow::Result<(i64, Rc<FlagSet>)> {
    current_with(None)
}

/// Like [`current`] for evaluating the one flag `key`: a fresh instance
/// compiles only that flag from the published document instead of the
/// whole set; a reused one asked for another flag of the same version
/// compiles the whole set, once. The answer is the same; the set returned
/// may know no other flag.
pub fn current_for(key: &str) -> anyhow::Result<(i64, Rc<FlagSet>)> {
    current_with(Some(key))
}

fn current_with(only: Option<&str>) -> anyhow::Result<(i64, Rc<FlagSet>)> {
    let mut kv = SpinKv::open_default()?;
    if let Published::Version(version) = flag_store::published_version(&mut kv)? {
        if let Some(hit) = cached(version, only) {
            return Ok(hit);
        }
        // A reused instance that already compiled another single flag of
        // this version is evaluating several: compile the whole set once.
        let only = if cached_version() == Some(version) {
            None
        } else {
            only
        };
        if let Some(document) = flag_store::published_document_for(&mut kv, version, only)? {
            let compiled = match only {
                None => FlagSet::from_value(&document),
                Some(key) => FlagSet::from_value_for(&document, key),
            };
            if let Ok(set) = compiled {
                return Ok(remember(version, only, set));
            }
        }
    }
    let db = open_db()?;
    let mut sql = SpinSql(&db);
    let (version, state) = match flag_store::publish_latest(&mut sql, &mut kv, now_ms()) {
        Ok(published) => published,
        Err(err) => {
            // Key-value refused the publication: serve SQLite's latest, which
            // is what the publication would have said.
            eprintln!("flag-evaluate: publishing the flag set failed: {err}");
            flag_store::load_latest(&mut sql, now_ms())?
        }
    };
    let set = state.compile().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok(remember(version, None, set))
}

/// The compiled set of `version` this instance holds: the whole set, or the
/// flag `only` compiled alone.
fn cached(version: i64, only: Option<&str>) -> Option<(i64, Rc<FlagSet>)> {
    CACHE.with_borrow(|c| {
        c.as_ref()
            .filter(|(v, k, _)| *v == version && (k.is_none() || k.as_deref() == only))
            .map(|(v, _, set)| (*v, Rc::clone(set)))
    })
}

/// The version of the set this instance holds, if any.
fn cached_version() -> Option<i64> {
    CACHE.with_borrow(|c| c.as_ref().map(|(v, _, _)| *v))
}

fn remember(version: i64, only: Option<&str>, set: FlagSet) -> (i64, Rc<FlagSet>) {
    let set = Rc::new(set);
    CACHE.with_borrow_mut(|c| *c = Some((version, only.map(str::to_owned), Rc::clone(&set))));
    (version, set)
}

/// The current stored state (admin reads go to SQLite, the source of truth).
pub fn read_state() -> Result<(i64, FlagState), ApiError> {
    let db = open_db().map_err(dol_spin_platform::internal)?;
    Ok(flag_store::load_latest(&mut SpinSql(&db), now_ms())?)
}

pub use flag_store::WriteOutcome;

/// Applies `edit` to the current state inside one `BEGIN IMMEDIATE`
/// transaction and publishes the new version (`dol_core::flags::store::
/// write_with`). The edit also sees the open transaction, so checks against
/// other rows (rollouts in progress) happen under the same write lock.
/// Refusals store nothing; an edit that changes nothing stores no version.
pub fn write(
    actor: &str,
    edit: impl FnOnce(
        &mut SpinSql<'_>,
        &FlagState,
    ) -> Result<flag_store::EditResult, flag_store::FlagStoreError>,
) -> Result<WriteOutcome, ApiError> {
    let db = open_db().map_err(dol_spin_platform::internal)?;
    let mut kv = SpinKv::open_default().map_err(dol_spin_platform::internal)?;
    Ok(flag_store::write_with(
        &mut SpinSql(&db),
        &mut kv,
        actor,
        now_ms(),
        edit,
    )?)
}

/// Audit entries matching `filter`, newest first (every admin action, not
/// only flags: `GET /admin/audit`).
pub fn audit(filter: &dol_core::audit::Filter) -> Result<Vec<Value>, ApiError> {
    let db = open_db().map_err(dol_spin_platform::internal)?;
    let mut sql = SpinSql(&db);
    flag_store::load_latest(&mut sql, now_ms())?;
    Ok(flag_store::audit_matching(&mut sql, filter)?)
}
