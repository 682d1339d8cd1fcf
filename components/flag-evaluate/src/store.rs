//! Flag storage: SQLite is the source of truth (`flag_sets`, one row per
//! version, and the append-only `audit_log`); key-value holds the current
//! version number (`dol:flags:version`) and the evaluated document of that
//! version (`dol:flags:snapshot`), and each instance keeps the compiled set
//! of the version it last saw. A steady-state evaluation therefore reads
//! key-value only (one get with a warm instance, two with a fresh one) and
//! runs no SQL query; any write bumps the version.

use std::cell::RefCell;
use std::rc::Rc;

use anyhow::{Context as _, bail};
use dol_core::flags::FlagSet;
use dol_core::flags::admin::{AdminError, AuditEntry, FlagState};
use dol_core::migrate::{self, SqlExecutor, SqlValue};
use serde_json::{Value, json};
use spin_sdk::key_value::Store;
use spin_sdk::sqlite::Connection;

use crate::platform::{SpinSql, now_ms};

/// Key-value key holding the current flag-set version (decimal text).
pub const VERSION_KEY: &str = "dol:flags:version";
/// Key-value key holding `{"version", "document"}`: the evaluated document.
pub const SNAPSHOT_KEY: &str = "dol:flags:snapshot";

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
    publish(&kv, version, &state);
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

/// Publishes a version to key-value: snapshot first, then the version, so a
/// reader that sees the new version finds its snapshot (or falls back to SQL).
fn publish(kv: &Store, version: i64, state: &FlagState) {
    let snapshot = json!({ "version": version, "document": state.effective_document() });
    let result = kv
        .set(SNAPSHOT_KEY, snapshot.to_string().as_bytes())
        .and_then(|()| kv.set(VERSION_KEY, version.to_string().as_bytes()));
    if let Err(err) = result {
        // Not fatal: readers fall back to SQLite while key-value is stale.
        eprintln!("flag-evaluate: publishing version {version} to key-value failed: {err}");
    }
}

fn open_db() -> anyhow::Result<Connection> {
    thread_local! {
        static MIGRATED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    let db = Connection::open_default().context("open sqlite")?;
    if !MIGRATED.get() {
        migrate::apply(&mut SpinSql(&db), now_ms()).context("migrate")?;
        MIGRATED.set(true);
    }
    Ok(db)
}

fn exec(
    db: &mut impl SqlExecutor,
    sql: &str,
    params: &[SqlValue],
) -> anyhow::Result<Vec<Vec<SqlValue>>> {
    db.execute(sql, params)
        .map_err(|e| anyhow::anyhow!("{sql}: {e}"))
}

/// The latest stored state, seeding the table from `flags/seed.json` when
/// it is empty (in its own transaction, so racing first requests seed once).
fn load_latest(db: &mut impl SqlExecutor) -> anyhow::Result<(i64, FlagState)> {
    if let Some(found) = select_latest(db)? {
        return Ok(found);
    }
    exec(db, "BEGIN IMMEDIATE", &[])?;
    let result = seed_if_empty(db);
    finish(db, result)
}

fn seed_if_empty(db: &mut impl SqlExecutor) -> anyhow::Result<(i64, FlagState)> {
    if let Some(found) = select_latest(db)? {
        return Ok(found);
    }
    let seed = FlagState::seed().map_err(|e| anyhow::anyhow!("seed: {e:?}"))?;
    insert_version(db, 1, &seed, "dol", now_ms())?;
    let entry = AuditEntry {
        action: "seed",
        flag_key: None,
        before: None,
        after: Some(seed.document.clone()),
    };
    insert_audit(db, &entry, "dol", 1, now_ms())?;
    Ok((1, seed))
}

/// Commits on success, rolls back on error.
fn finish<T>(db: &mut impl SqlExecutor, result: anyhow::Result<T>) -> anyhow::Result<T> {
    match result {
        Ok(v) => {
            exec(db, "COMMIT", &[])?;
            Ok(v)
        }
        Err(e) => {
            if let Err(rollback) = exec(db, "ROLLBACK", &[]) {
                eprintln!("flag-evaluate: rollback failed: {rollback:#}");
            }
            Err(e)
        }
    }
}

fn select_latest(db: &mut impl SqlExecutor) -> anyhow::Result<Option<(i64, FlagState)>> {
    let rows = exec(
        db,
        "SELECT version, document, kills FROM flag_sets ORDER BY version DESC LIMIT 1",
        &[],
    )?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let (Some(version), Some(doc), Some(kills)) = (
        row.first().and_then(SqlValue::as_i64),
        row.get(1).and_then(SqlValue::as_str),
        row.get(2).and_then(SqlValue::as_str),
    ) else {
        bail!("flag_sets row has unexpected column types");
    };
    let state = FlagState::from_stored(doc, kills).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok(Some((version, state)))
}

fn insert_version(
    db: &mut impl SqlExecutor,
    version: i64,
    state: &FlagState,
    actor: &str,
    at: i64,
) -> anyhow::Result<()> {
    exec(
        db,
        "INSERT INTO flag_sets (version, document, kills, created_at, actor) VALUES (?, ?, ?, ?, ?)",
        &[
            SqlValue::Integer(version),
            SqlValue::Text(state.document.to_string()),
            SqlValue::Text(state.kills_json()),
            SqlValue::Integer(at),
            SqlValue::Text(actor.to_owned()),
        ],
    )?;
    Ok(())
}

fn opt_json(v: Option<&Value>) -> SqlValue {
    v.map_or(SqlValue::Null, |v| SqlValue::Text(v.to_string()))
}

fn insert_audit(
    db: &mut impl SqlExecutor,
    entry: &AuditEntry,
    actor: &str,
    version: i64,
    at: i64,
) -> anyhow::Result<()> {
    exec(
        db,
        "INSERT INTO audit_log (at, actor, action, flag_key, version, before, after) VALUES (?, ?, ?, ?, ?, ?, ?)",
        &[
            SqlValue::Integer(at),
            SqlValue::Text(actor.to_owned()),
            SqlValue::Text(entry.action.to_owned()),
            entry
                .flag_key
                .clone()
                .map_or(SqlValue::Null, SqlValue::Text),
            SqlValue::Integer(version),
            opt_json(entry.before.as_ref()),
            opt_json(entry.after.as_ref()),
        ],
    )?;
    Ok(())
}

/// The current stored state (admin reads go to SQLite, the source of truth).
pub fn read_state() -> anyhow::Result<(i64, FlagState)> {
    let db = open_db()?;
    load_latest(&mut SpinSql(&db))
}

/// The outcome of an admin write: stored as `version`, or refused.
pub type WriteOutcome = Result<(i64, FlagState), AdminError>;

/// Applies `edit` to the current state inside one `BEGIN IMMEDIATE`
/// transaction: on success stores the new state as the next version with
/// its audit entries and publishes it; on refusal stores nothing. An edit
/// that changes nothing (e.g. re-importing the same document) stores no new
/// version.
pub fn write(
    actor: &str,
    edit: impl FnOnce(&FlagState) -> Result<(FlagState, Vec<AuditEntry>), AdminError>,
) -> anyhow::Result<WriteOutcome> {
    let db = open_db()?;
    let mut sql = SpinSql(&db);
    // Make sure a first write starts from the seed, not from nothing.
    load_latest(&mut sql)?;
    exec(&mut sql, "BEGIN IMMEDIATE", &[])?;
    let result = write_in_tx(&mut sql, actor, edit);
    let outcome = finish(&mut sql, result)?;
    if let Ok((version, state)) = &outcome {
        let kv = Store::open_default().context("open key-value")?;
        publish(&kv, *version, state);
    }
    Ok(outcome)
}

fn write_in_tx(
    db: &mut impl SqlExecutor,
    actor: &str,
    edit: impl FnOnce(&FlagState) -> Result<(FlagState, Vec<AuditEntry>), AdminError>,
) -> anyhow::Result<WriteOutcome> {
    let Some((version, state)) = select_latest(db)? else {
        bail!("flag_sets is empty after seeding");
    };
    let (next, audit) = match edit(&state) {
        Ok(done) => done,
        Err(refused) => return Ok(Err(refused)),
    };
    if next == state {
        return Ok(Ok((version, state)));
    }
    let at = now_ms();
    let next_version = version + 1;
    insert_version(db, next_version, &next, actor, at)?;
    for entry in &audit {
        insert_audit(db, entry, actor, next_version, at)?;
    }
    Ok(Ok((next_version, next)))
}

/// Audit entries, newest first, optionally for one flag.
pub fn audit(flag: Option<&str>, limit: i64) -> anyhow::Result<Vec<Value>> {
    let db = open_db()?;
    let mut sql = SpinSql(&db);
    load_latest(&mut sql)?;
    let columns = "SELECT id, at, actor, action, flag_key, version, before, after FROM audit_log";
    let rows = match flag {
        Some(key) => exec(
            &mut sql,
            &format!("{columns} WHERE flag_key = ? ORDER BY id DESC LIMIT ?"),
            &[SqlValue::Text(key.to_owned()), SqlValue::Integer(limit)],
        )?,
        None => exec(
            &mut sql,
            &format!("{columns} ORDER BY id DESC LIMIT ?"),
            &[SqlValue::Integer(limit)],
        )?,
    };
    Ok(rows.iter().map(|row| audit_json(row)).collect())
}

fn audit_json(row: &[SqlValue]) -> Value {
    let int = |i: usize| row.get(i).and_then(SqlValue::as_i64);
    let text = |i: usize| row.get(i).and_then(SqlValue::as_str);
    let parsed = |i: usize| {
        text(i)
            .and_then(|t| serde_json::from_str::<Value>(t).ok())
            .unwrap_or(Value::Null)
    };
    json!({
        "id": int(0),
        "at": int(1),
        "actor": text(2),
        "action": text(3),
        "flag_key": text(4),
        "version": int(5),
        "before": parsed(6),
        "after": parsed(7),
    })
}
