//! Flag storage over SQL: the versioned `flag_sets` rows (the current state
//! is the highest version), the append-only `audit_log`, and the key-value
//! snapshot evaluators read.
//!
//! Every function takes the [`SqlExecutor`], the [`KeyValue`] store and the
//! time as arguments, so the flag-evaluate component (admin edits) and the
//! scans component (rollout decisions) write and publish flag versions the
//! same way, and tests run it against a real SQLite.
//!
//! # Publication: served in order, never older than what was acknowledged
//! SQLite is the source of truth; key-value holds the published version
//! ([`VERSION_KEY`]) and its evaluated document ([`SNAPSHOT_KEY`]), which is
//! what evaluators read on the hot path. Spin's key-value has no
//! compare-and-swap, so ordering comes from SQLite's write lock instead:
//! 1. a transaction that stores a new version also sets [`VERSION_KEY`] to
//!    [`UNPUBLISHED`] before it commits ([`store_version`]), while it holds
//!    the write lock;
//! 2. after the commit, [`publish_latest`] takes the write lock again
//!    (`BEGIN IMMEDIATE`), reads the *latest* version and writes its snapshot
//!    and number. Publications are therefore serialised and each publishes a
//!    version at least as new as every earlier one: an older snapshot can
//!    never overwrite a newer one, whatever order concurrent writers finish in.
//!
//! An evaluator that finds [`UNPUBLISHED`], no version, or a snapshot of
//! another version does not trust key-value: it calls [`publish_latest`]
//! itself. So a crash between a commit and its publication (or a key-value
//! write that failed) is repaired by the next evaluation, and [`reconcile`]
//! (run by the minute scan) repairs any other drift between the two stores.
//!
//! # One entry per flag
//! Beside the snapshot, the publication writes one entry per flag
//! ([`flag_key`]: `{"version", "document"}` with that flag alone, the set's
//! metadata and `$evaluators`), before the version number like the snapshot.
//! Evaluating one flag (an OFREP single evaluation, the gateway's entry-tier
//! flag: the hot path) then parses a fraction of the snapshot
//! ([`published_document_for`]); an entry of another version (a flag
//! deleted, a publication racing the read, a store written before entries
//! existed) sends the reader to the snapshot, so the answer never changes.

use serde_json::{Value, json};
use thiserror::Error;

use super::admin::{AdminError, AuditEntry, FlagState};
use crate::storage::{KeyValue, SqlExecutor, SqlValue, StatementError, in_transaction, run};

/// Key-value key holding the current flag-set version (decimal text).
pub const VERSION_KEY: &str = "dol:flags:version";
/// Key-value key holding `{"version", "document"}`: the evaluated document.
pub const SNAPSHOT_KEY: &str = "dol:flags:snapshot";
/// Prefix of the per-flag entries (see [`flag_key`]).
pub const FLAG_KEY_PREFIX: &str = "dol:flags:flag:";
/// The value of [`VERSION_KEY`] from the moment a transaction storing a new
/// version takes the write lock until that version (or a newer one) is
/// published: evaluators then read SQLite instead of key-value.
pub const UNPUBLISHED: &str = "unpublished";

/// Why reading or writing flag storage failed.
#[derive(Debug, Error)]
pub enum FlagStoreError {
    /// A SQL statement failed.
    #[error(transparent)]
    Sql(#[from] StatementError),
    /// A stored row could not be read back (wrong column types or JSON).
    #[error("corrupt flag storage: {0}")]
    Corrupt(String),
    /// The key-value store refused a read or write of the published version.
    #[error("flag key-value store: {0}")]
    KeyValue(String),
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
        "INSERT INTO audit_log (at, actor, action, flag_key, version, before, after, kind, target) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            // Rollout steps are flag-set writes too; their kind lets
            // `GET /admin/audit?kind=rollout` find them.
            SqlValue::Text(
                if entry.action.starts_with("rollout") {
                    "rollout"
                } else {
                    "flag"
                }
                .to_owned(),
            ),
            entry
                .flag_key
                .clone()
                .map_or(SqlValue::Null, SqlValue::Text),
        ],
    )?;
    Ok(())
}

/// Stores `state` as `version` (inside an open transaction) and marks the
/// published version [`UNPUBLISHED`] before the transaction commits, so no
/// evaluator keeps serving the older snapshot once this version is committed.
pub fn store_version(
    db: &mut impl SqlExecutor,
    kv: &mut impl KeyValue,
    version: i64,
    state: &FlagState,
    actor: &str,
    at_ms: i64,
) -> Result<(), FlagStoreError> {
    insert_version(db, version, state, actor, at_ms)?;
    kv.set(VERSION_KEY, UNPUBLISHED.as_bytes())
        .map_err(FlagStoreError::KeyValue)
}

/// Applies `edit` to the latest state inside an already open transaction:
/// on success stores the new state as the next version with its audit
/// entries ([`store_version`]); on refusal stores nothing. An edit that
/// changes nothing stores no new version and returns the current one.
/// The caller calls [`publish_latest`] after committing.
pub fn write_in_tx(
    db: &mut impl SqlExecutor,
    kv: &mut impl KeyValue,
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
    store_version(db, kv, next_version, &next, actor, now_ms)?;
    for entry in &audit {
        insert_audit(db, entry, actor, next_version, now_ms)?;
    }
    Ok(Ok((next_version, next)))
}

/// [`write_in_tx`] in its own `BEGIN IMMEDIATE` transaction (seeding first so
/// a first write starts from the seed rather than from nothing), then
/// [`publish_latest`]. A refusal stores and publishes nothing.
///
/// The returned version is committed and, when this returns, served: either
/// published, or (if the publication failed) marked [`UNPUBLISHED`], which
/// sends evaluators to SQLite until a later publication succeeds.
pub fn write(
    db: &mut impl SqlExecutor,
    kv: &mut impl KeyValue,
    actor: &str,
    now_ms: i64,
    edit: impl FnOnce(&FlagState) -> EditResult,
) -> Result<WriteOutcome, FlagStoreError> {
    write_with(db, kv, actor, now_ms, |_, state| Ok(edit(state)))
}

/// [`write`] whose edit also gets the open transaction, for refusals that
/// depend on other rows read under the same write lock (a flag under a
/// rollout in progress, say), so no change can slip in between the check
/// and the write.
pub fn write_with<E: SqlExecutor, K: KeyValue>(
    db: &mut E,
    kv: &mut K,
    actor: &str,
    now_ms: i64,
    edit: impl FnOnce(&mut E, &FlagState) -> Result<EditResult, FlagStoreError>,
) -> Result<WriteOutcome, FlagStoreError> {
    load_latest(db, now_ms)?;
    let outcome = in_transaction(db, |db| {
        let Some((_, state)) = select_latest(db)? else {
            return Err(FlagStoreError::Corrupt(
                "flag_sets is empty after seeding".to_owned(),
            ));
        };
        // The edit runs first against the state read under the lock; its
        // verdict is then replayed by `write_in_tx` on that same state.
        let verdict = edit(db, &state)?;
        write_in_tx(db, kv, actor, now_ms, |_| verdict)
    })?;
    if outcome.is_ok() {
        // Already committed: a failed publication leaves the UNPUBLISHED
        // mark, under which evaluators read SQLite, so the write stands.
        let _ = publish_latest(db, kv, now_ms);
    }
    Ok(outcome)
}

/// Publishes the latest stored version to key-value under the write lock
/// (see the module documentation) and returns it. Seeds an empty table.
pub fn publish_latest(
    db: &mut impl SqlExecutor,
    kv: &mut impl KeyValue,
    now_ms: i64,
) -> Result<(i64, FlagState), FlagStoreError> {
    load_latest(db, now_ms)?;
    in_transaction(db, |db| {
        let Some((version, state)) = select_latest(db)? else {
            return Err(FlagStoreError::Corrupt(
                "flag_sets is empty after seeding".to_owned(),
            ));
        };
        let document = state.effective_document();
        let previous_flags = published_flag_names(kv)?;
        // Per-flag entries and snapshot first, then the number: a reader
        // that sees the number finds them.
        for (flag, entry) in flag_entries(version, &document) {
            kv.set(&flag_key(&flag), entry.to_string().as_bytes())
                .map_err(FlagStoreError::KeyValue)?;
        }
        let snapshot = json!({ "version": version, "document": document });
        kv.set(SNAPSHOT_KEY, snapshot.to_string().as_bytes())
            .map_err(FlagStoreError::KeyValue)?;
        for gone in previous_flags.iter().filter(|f| !has_flag(&document, f)) {
            kv.delete(&flag_key(gone))
                .map_err(FlagStoreError::KeyValue)?;
        }
        kv.set(VERSION_KEY, version.to_string().as_bytes())
            .map_err(FlagStoreError::KeyValue)?;
        Ok((version, state))
    })
}

/// What key-value says about the published flag set.
#[derive(Debug, Clone, PartialEq)]
pub enum Published {
    /// This version is published and its snapshot can be trusted.
    Version(i64),
    /// Nothing published yet, a version being written, or an unreadable
    /// entry: read SQLite and publish ([`publish_latest`]).
    Unknown,
}

/// Reads [`VERSION_KEY`].
pub fn published_version(kv: &mut impl KeyValue) -> Result<Published, FlagStoreError> {
    let raw = kv.get(VERSION_KEY).map_err(FlagStoreError::KeyValue)?;
    Ok(raw
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.trim().parse::<i64>().ok())
        .map_or(Published::Unknown, Published::Version))
}

/// The published snapshot's document if it is the snapshot of `version`.
pub fn published_document(
    kv: &mut impl KeyValue,
    version: i64,
) -> Result<Option<Value>, FlagStoreError> {
    let Some(bytes) = kv.get(SNAPSHOT_KEY).map_err(FlagStoreError::KeyValue)? else {
        return Ok(None);
    };
    Ok(versioned_document(&bytes, version))
}

/// The key-value key of `flag`'s own entry.
pub fn flag_key(flag: &str) -> String {
    format!("{FLAG_KEY_PREFIX}{flag}")
}

/// `flag`'s own published document (the flag alone, with the set's metadata
/// and `$evaluators`) if its entry is of `version`; `None` sends the caller
/// to [`published_document`].
pub fn published_flag_document(
    kv: &mut impl KeyValue,
    version: i64,
    flag: &str,
) -> Result<Option<Value>, FlagStoreError> {
    let Some(bytes) = kv.get(&flag_key(flag)).map_err(FlagStoreError::KeyValue)? else {
        return Ok(None);
    };
    Ok(versioned_document(&bytes, version))
}

/// What to compile for `version`: for one flag (`only`) its own entry, else
/// (no entry of that version, or the whole set asked for) the snapshot.
/// `None` when key-value holds neither for `version`.
pub fn published_document_for(
    kv: &mut impl KeyValue,
    version: i64,
    only: Option<&str>,
) -> Result<Option<Value>, FlagStoreError> {
    if let Some(flag) = only
        && let Some(alone) = published_flag_document(kv, version, flag)?
    {
        return Ok(Some(alone));
    }
    published_document(kv, version)
}

/// The `document` of a `{"version", "document"}` entry if it is of `version`.
fn versioned_document(bytes: &[u8], version: i64) -> Option<Value> {
    let mut entry = serde_json::from_slice::<Value>(bytes).ok()?;
    if entry.get("version").and_then(Value::as_i64) != Some(version) {
        return None;
    }
    entry.get_mut("document").map(Value::take)
}

/// One `(flag, {"version", "document"})` per flag of `document`.
fn flag_entries(version: i64, document: &Value) -> Vec<(String, Value)> {
    let Some(flags) = document.get("flags").and_then(Value::as_object) else {
        return Vec::new();
    };
    flags
        .iter()
        .map(|(flag, definition)| {
            let mut alone = serde_json::Map::new();
            for shared in ["metadata", "$evaluators"] {
                if let Some(v) = document.get(shared) {
                    alone.insert(shared.to_owned(), v.clone());
                }
            }
            alone.insert("flags".to_owned(), json!({ flag: definition }));
            let entry = json!({ "version": version, "document": alone });
            (flag.clone(), entry)
        })
        .collect()
}

fn has_flag(document: &Value, flag: &str) -> bool {
    document
        .get("flags")
        .and_then(Value::as_object)
        .is_some_and(|flags| flags.contains_key(flag))
}

/// The flags of the snapshot key-value holds now (whose entries a new
/// publication deletes when their flag is gone).
fn published_flag_names(kv: &mut impl KeyValue) -> Result<Vec<String>, FlagStoreError> {
    let Some(bytes) = kv.get(SNAPSHOT_KEY).map_err(FlagStoreError::KeyValue)? else {
        return Ok(Vec::new());
    };
    let snapshot: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok(snapshot
        .pointer("/document/flags")
        .and_then(Value::as_object)
        .map(|flags| flags.keys().cloned().collect())
        .unwrap_or_default())
}

/// Compares key-value with SQLite and republishes when they differ (a
/// crash between commit and publication, a lost key-value write, a store
/// wiped by hand). Returns the version published when it repaired
/// something, `None` when key-value was already current.
pub fn reconcile(
    db: &mut impl SqlExecutor,
    kv: &mut impl KeyValue,
    now_ms: i64,
) -> Result<Option<i64>, FlagStoreError> {
    let (latest, _) = load_latest(db, now_ms)?;
    if let Published::Version(version) = published_version(kv)?
        && version == latest
        && let Some(document) = published_document(kv, version)?
        && flags_published(kv, version, &document)?
    {
        return Ok(None);
    }
    let (published, _) = publish_latest(db, kv, now_ms)?;
    Ok(Some(published))
}

/// Whether every flag of `document` has its own entry of `version` (a store
/// published before those entries existed lacks them until reconciled).
fn flags_published(
    kv: &mut impl KeyValue,
    version: i64,
    document: &Value,
) -> Result<bool, FlagStoreError> {
    let Some(flags) = document.get("flags").and_then(Value::as_object) else {
        return Ok(true);
    };
    for flag in flags.keys() {
        if published_flag_document(kv, version, flag)?.is_none() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Audit entries, newest first, optionally for one flag.
pub fn audit(
    db: &mut impl SqlExecutor,
    flag: Option<&str>,
    limit: i64,
) -> Result<Vec<Value>, FlagStoreError> {
    let filter = crate::audit::Filter {
        flag: flag.map(str::to_owned),
        limit,
        ..crate::audit::Filter::default()
    };
    audit_matching(db, &filter)
}

/// Audit entries matching `filter`, newest first (see [`crate::audit::query`]).
pub fn audit_matching(
    db: &mut impl SqlExecutor,
    filter: &crate::audit::Filter,
) -> Result<Vec<Value>, FlagStoreError> {
    crate::audit::query(db, filter).map_err(|e| FlagStoreError::Corrupt(e.to_string()))
}
