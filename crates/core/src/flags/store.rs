//! Flag storage over SQL: the versioned `flag_sets` rows (the current state
//! is the highest version), the append-only `audit_log`, and the key-value
//! snapshot format evaluators read.
//!
//! Every function takes the [`SqlExecutor`] and the time as arguments, so the
//! flag-evaluate component (admin edits) and the scans component (rollout
//! decisions) write flag versions the same way, and tests run it against a
//! real SQLite.

use serde_json::{Value, json};
use thiserror::Error;

use super::admin::{AdminError, AuditEntry, FlagState};
use crate::migrate::{SqlExecutor, SqlValue, StatementError, in_transaction, run};

/// Key-value key holding the current flag-set version (decimal text).
pub const VERSION_KEY: &str = "dol:flags:version";
/// Key-value key holding `{"version", "document"}`: the evaluated document.
pub const SNAPSHOT_KEY: &str = "dol:flags:snapshot";

/// Why reading or writing flag storage failed.
#[derive(Debug, Error)]
pub enum FlagStoreError {
    /// A SQL statement failed.
    #[error(transparent)]
    Sql(#[from] StatementError),
    /// A stored row could not be read back (wrong column types or JSON).
    #[error("corrupt flag storage: {0}")]
    Corrupt(String),
}

/// The outcome of an admin write: stored as `version` (with the state), or
/// refused with nothing stored.
pub type WriteOutcome = Result<(i64, FlagState), AdminError>;

/// An edit: the new state and its audit entries, or a refusal.
pub type EditResult = Result<(FlagState, Vec<AuditEntry>), AdminError>;

/// Runs one statement, naming it in the error.
pub fn exec(
    db: &mut impl SqlExecutor,
    sql: &str,
    params: &[SqlValue],
) -> Result<Vec<Vec<SqlValue>>, FlagStoreError> {
    Ok(run(db, sql, params)?)
}

/// The latest stored version and state, if any.
pub fn select_latest(
    db: &mut impl SqlExecutor,
) -> Result<Option<(i64, FlagState)>, FlagStoreError> {
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
        return Err(FlagStoreError::Corrupt(
            "flag_sets row has unexpected column types".to_owned(),
        ));
    };
    let state = FlagState::from_stored(doc, kills)
        .map_err(|e| FlagStoreError::Corrupt(format!("flag_sets version {version}: {e:?}")))?;
    Ok(Some((version, state)))
}

/// The latest stored state, seeding the table from `flags/seed.json` when it
/// is empty (in its own transaction, so racing first requests seed once).
pub fn load_latest(
    db: &mut impl SqlExecutor,
    now_ms: i64,
) -> Result<(i64, FlagState), FlagStoreError> {
    if let Some(found) = select_latest(db)? {
        return Ok(found);
    }
    in_transaction(db, |db| {
        if let Some(found) = select_latest(db)? {
            return Ok(found);
        }
        let seed =
            FlagState::seed().map_err(|e| FlagStoreError::Corrupt(format!("seed: {e:?}")))?;
        insert_version(db, 1, &seed, "dol", now_ms)?;
        let entry = AuditEntry {
            action: "seed",
            flag_key: None,
            before: None,
            after: Some(seed.document.clone()),
        };
        insert_audit(db, &entry, "dol", 1, now_ms)?;
        Ok((1, seed))
    })
}

/// Inserts one version row.
pub fn insert_version(
    db: &mut impl SqlExecutor,
    version: i64,
    state: &FlagState,
    actor: &str,
    at_ms: i64,
) -> Result<(), FlagStoreError> {
    exec(
        db,
        "INSERT INTO flag_sets (version, document, kills, created_at, actor) VALUES (?, ?, ?, ?, ?)",
        &[
            SqlValue::Integer(version),
            SqlValue::Text(state.document.to_string()),
            SqlValue::Text(state.kills_json()),
            SqlValue::Integer(at_ms),
            SqlValue::Text(actor.to_owned()),
        ],
    )?;
    Ok(())
}

fn opt_json(v: Option<&Value>) -> SqlValue {
    v.map_or(SqlValue::Null, |v| SqlValue::Text(v.to_string()))
}

/// Appends one audit entry for `version`.
pub fn insert_audit(
    db: &mut impl SqlExecutor,
    entry: &AuditEntry,
    actor: &str,
    version: i64,
    at_ms: i64,
) -> Result<(), FlagStoreError> {
    exec(
        db,
        "INSERT INTO audit_log (at, actor, action, flag_key, version, before, after) VALUES (?, ?, ?, ?, ?, ?, ?)",
        &[
            SqlValue::Integer(at_ms),
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

/// Applies `edit` to the latest state inside an already open transaction:
/// on success stores the new state as the next version with its audit
/// entries; on refusal stores nothing. An edit that changes nothing stores
/// no new version and returns the current one.
pub fn write_in_tx(
    db: &mut impl SqlExecutor,
    actor: &str,
    now_ms: i64,
    edit: impl FnOnce(&FlagState) -> EditResult,
) -> Result<WriteOutcome, FlagStoreError> {
    let Some((version, state)) = select_latest(db)? else {
        return Err(FlagStoreError::Corrupt(
            "flag_sets is empty after seeding".to_owned(),
        ));
    };
    let (next, audit) = match edit(&state) {
        Ok(done) => done,
        Err(refused) => return Ok(Err(refused)),
    };
    if next == state {
        return Ok(Ok((version, state)));
    }
    let next_version = version + 1;
    insert_version(db, next_version, &next, actor, now_ms)?;
    for entry in &audit {
        insert_audit(db, entry, actor, next_version, now_ms)?;
    }
    Ok(Ok((next_version, next)))
}

/// [`write_in_tx`] in its own `BEGIN IMMEDIATE` transaction, seeding first
/// so a first write starts from the seed rather than from nothing.
pub fn write(
    db: &mut impl SqlExecutor,
    actor: &str,
    now_ms: i64,
    edit: impl FnOnce(&FlagState) -> EditResult,
) -> Result<WriteOutcome, FlagStoreError> {
    load_latest(db, now_ms)?;
    in_transaction(db, |db| write_in_tx(db, actor, now_ms, edit))
}

/// Audit entries, newest first, optionally for one flag.
pub fn audit(
    db: &mut impl SqlExecutor,
    flag: Option<&str>,
    limit: i64,
) -> Result<Vec<Value>, FlagStoreError> {
    let columns = "SELECT id, at, actor, action, flag_key, version, before, after FROM audit_log";
    let rows = match flag {
        Some(key) => exec(
            db,
            &format!("{columns} WHERE flag_key = ? ORDER BY id DESC LIMIT ?"),
            &[SqlValue::Text(key.to_owned()), SqlValue::Integer(limit)],
        )?,
        None => exec(
            db,
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

/// The key-value snapshot of a version: what evaluators compile.
pub fn snapshot_json(version: i64, state: &FlagState) -> Value {
    json!({ "version": version, "document": state.effective_document() })
}
