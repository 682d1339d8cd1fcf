//! Storage backends behind Spin's key-value and SQLite interfaces.
//!
//! Both are SQLite files in the state directory, laid out as Spin lays them out
//! (`sqlite_key_value.db` with a `spin_key_value` table, `sqlite_db.db` for the
//! `default` database), so a `.spin/` folder moves between `dol up` and `spin up`.
//!
//! Connections a guest runs SQL on are sandboxed the way Spin sandboxes its
//! in-process connections (see [`sandbox`]): SQL cannot reach other files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use rusqlite::config::DbConfig;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::{Connection, OptionalExtension, params};

/// How long a writer waits for another writer before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A key-value store backed by one SQLite file, shared by every label mapped to it.
pub struct KeyValueBackend {
    connection: Mutex<Connection>,
}

/// Failure of a key-value backend operation.
#[derive(Debug, thiserror::Error)]
#[error("key-value storage: {0}")]
pub struct StorageError(#[from] rusqlite::Error);

impl KeyValueBackend {
    /// Opens (creating if needed) the store file at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let connection = open_connection(path)?;
        connection
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS spin_key_value (
                    store TEXT NOT NULL,
                    key   TEXT NOT NULL,
                    value BLOB NOT NULL,
                    PRIMARY KEY (store, key)
                )",
            )
            .with_context(|| format!("creating the key-value table in {}", path.display()))?;
        Ok(Self {
            connection: Mutex::new(connection),
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StorageError> {
        // A poisoned lock only means another request panicked mid-call; SQLite
        // itself kept the data consistent, so keep serving.
        let guard = self
            .connection
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok(f(&guard)?)
    }

    /// Value of `key` in `store`, if any.
    pub fn get(&self, store: &str, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.with(|c| {
            c.prepare_cached("SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                .query_row(params![store, key], |row| row.get(0))
                .optional()
        })
    }

    /// Sets `key` in `store` to `value`.
    pub fn set(&self, store: &str, key: &str, value: &[u8]) -> Result<(), StorageError> {
        self.with(|c| {
            c.prepare_cached(
                "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (store, key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![store, key, value])
            .map(drop)
        })
    }

    /// Removes `key` from `store` (no error when absent).
    pub fn delete(&self, store: &str, key: &str) -> Result<(), StorageError> {
        self.with(|c| {
            c.prepare_cached("DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                .execute(params![store, key])
                .map(drop)
        })
    }

    /// Whether `key` exists in `store`.
    pub fn exists(&self, store: &str, key: &str) -> Result<bool, StorageError> {
        Ok(self.get(store, key)?.is_some())
    }

    /// Every key in `store`.
    pub fn keys(&self, store: &str) -> Result<Vec<String>, StorageError> {
        self.with(|c| {
            let mut statement =
                c.prepare_cached("SELECT key FROM spin_key_value WHERE store = ?1")?;
            let keys = statement.query_map(params![store], |row| row.get(0))?;
            keys.collect()
        })
    }
}

/// Most idle connections kept per database.
const MAX_IDLE_CONNECTIONS: usize = 16;

/// Where a SQLite database label lives, with a pool of idle connections.
///
/// Each guest `open` gets a connection of its own (so a transaction a guest
/// begins spans only its own statements); when the guest drops it, it goes
/// back to the pool if no transaction is left open on it, keeping its
/// prepared-statement cache and parsed schema for the next request.
#[derive(Debug, Clone)]
pub struct DatabaseLocation {
    path: PathBuf,
    idle: Arc<Mutex<Vec<Connection>>>,
}

impl DatabaseLocation {
    /// A database file on disk.
    pub fn file(path: PathBuf) -> Self {
        Self {
            path,
            idle: Arc::default(),
        }
    }

    /// An idle connection, or a new one.
    pub fn connect(&self) -> Result<Connection> {
        let reused = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop();
        match reused {
            Some(connection) => Ok(connection),
            // Only sandboxed connections enter the pool, so a reused one is too.
            None => open_guest_connection(&self.path),
        }
    }

    /// Takes a connection back; one with an open transaction is closed
    /// instead (closing rolls the transaction back).
    pub fn release(&self, connection: Connection) {
        if !connection.is_autocommit() || carries_session_state(&connection) {
            return;
        }
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if idle.len() < MAX_IDLE_CONNECTIONS {
            idle.push(connection);
        }
    }
}

impl DatabaseLocation {
    /// Connections waiting in the pool (for tests and diagnostics).
    pub fn idle_count(&self) -> usize {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
    }
}

/// Whether a guest left state on the connection that must not reach the
/// next request: an attached (temporary or in-memory) database or a TEMP
/// table. Spin gives every `open` a fresh connection; a pooled one must look
/// the same, so such a connection is closed instead of pooled.
fn carries_session_state(connection: &Connection) -> bool {
    connection
        .prepare_cached("SELECT count(*) FROM pragma_database_list WHERE name <> 'main'")
        .and_then(|mut statement| statement.query_row([], |row| row.get::<_, i64>(0)))
        .map_or(true, |others| others > 0)
}

fn open_connection(path: &Path) -> Result<Connection> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating the state directory {}", parent.display()))?;
    }
    let connection = Connection::open(path)
        .with_context(|| format!("opening SQLite file {}", path.display()))?;
    connection
        .busy_timeout(BUSY_TIMEOUT)
        .context("setting the SQLite busy timeout")?;
    // WAL lets readers proceed while one writer commits; that is what keeps
    // concurrent requests from serialising on the file.
    connection
        .pragma_update(None, "journal_mode", "WAL")
        .with_context(|| format!("enabling WAL on {}", path.display()))?;
    // In WAL mode NORMAL syncs at checkpoints instead of on every commit: the
    // database stays consistent after a crash (a power loss may undo the last
    // commits), and each write transaction stops paying an fsync.
    connection
        .pragma_update(None, "synchronous", "NORMAL")
        .with_context(|| format!("setting synchronous=NORMAL on {}", path.display()))?;
    Ok(connection)
}

/// Opens a connection a guest will run SQL on: [`open_connection`], sandboxed.
fn open_guest_connection(path: &Path) -> Result<Connection> {
    let mut connection = open_connection(path)?;
    sandbox(&mut connection)
        .with_context(|| format!("sandboxing the SQLite connection to {}", path.display()))?;
    Ok(connection)
}

/// Confines guest SQL on `connection` to its own database, as Spin does.
///
/// Without this, `ATTACH '/any/path' AS x` or `VACUUM INTO '/any/path'` would
/// let a guest create or overwrite files anywhere the host may write. Spin
/// installs an authorizer that refuses to attach files (temporary `''` and
/// `':memory:'` databases stay allowed: plain `VACUUM` attaches `''`); this
/// installs the same rule, plus a backstop.
fn sandbox(connection: &mut Connection) -> rusqlite::Result<()> {
    connection.authorizer(Some(authorize))?;
    forbid_attach_create(connection)
}

/// The backstop behind [`authorize`]: even an `ATTACH` the authorizer somehow
/// let through cannot create a new file. (`VACUUM INTO` turns this flag back
/// on for itself, so the authorizer alone guards it.) Temporary and in-memory
/// databases are unaffected, so Spin's behaviour does not change.
fn forbid_attach_create(connection: &Connection) -> rusqlite::Result<()> {
    connection
        .set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_ATTACH_CREATE, false)
        .map(drop)
}

/// Spin's authorizer: every action is allowed except attaching a file.
///
/// The guest sees `not authorized` when preparing such an `ATTACH`, and
/// `authorization denied` when a `VACUUM INTO` tries to attach its target.
fn authorize(context: AuthContext<'_>) -> Authorization {
    match context.action {
        AuthAction::Attach { filename } if filename.is_empty() || filename == ":memory:" => {
            Authorization::Allow
        }
        AuthAction::Attach { .. } => Authorization::Deny,
        // SQLite reports the filename only when it is a plain string literal;
        // for anything else (`ATTACH 'a' || 'b'`, `ATTACH ?1`) rusqlite cannot
        // decode the action, and the file is unknown, so it is refused.
        AuthAction::Unknown {
            code: rusqlite::ffi::SQLITE_ATTACH,
            ..
        } => Authorization::Deny,
        _ => Authorization::Allow,
    }
}

/// Every store and database label the app may use, resolved to backends.
#[derive(Default, Clone)]
pub struct StorageCatalog {
    /// Key-value labels → their backend (labels sharing a file share a backend).
    pub key_value: BTreeMap<String, Arc<KeyValueBackend>>,
    /// SQLite labels → location.
    pub sqlite: BTreeMap<String, DatabaseLocation>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_round_trip_and_isolation_between_stores() {
        let dir = tempfile::tempdir().unwrap();
        let kv = KeyValueBackend::open(&dir.path().join("kv.db")).unwrap();
        kv.set("default", "a", b"1").unwrap();
        kv.set("other", "a", b"2").unwrap();
        kv.set("default", "a", b"3").unwrap();
        assert_eq!(kv.get("default", "a").unwrap(), Some(b"3".to_vec()));
        assert_eq!(kv.get("other", "a").unwrap(), Some(b"2".to_vec()));
        assert!(kv.exists("default", "a").unwrap());
        assert_eq!(kv.keys("default").unwrap(), vec!["a".to_string()]);
        kv.delete("default", "a").unwrap();
        kv.delete("default", "a").unwrap();
        assert_eq!(kv.get("default", "a").unwrap(), None);
        assert_eq!(kv.get("other", "a").unwrap(), Some(b"2".to_vec()));
    }

    #[test]
    fn key_value_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.db");
        KeyValueBackend::open(&path)
            .unwrap()
            .set("default", "k", b"v")
            .unwrap();
        let reopened = KeyValueBackend::open(&path).unwrap();
        assert_eq!(reopened.get("default", "k").unwrap(), Some(b"v".to_vec()));
    }

    /// A sandboxed connection to `guest.db` in a fresh directory, as a guest gets it.
    fn guest_connection() -> (tempfile::TempDir, DatabaseLocation, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let location = DatabaseLocation::file(dir.path().join("guest.db"));
        let connection = location.connect().unwrap();
        (dir, location, connection)
    }

    fn sql_quote(path: &Path) -> String {
        format!("'{}'", path.display().to_string().replace('\'', "''"))
    }

    #[test]
    fn attaching_a_file_is_refused_and_creates_nothing() {
        let (dir, _location, connection) = guest_connection();
        let target = dir.path().join("escape.db");
        let error = connection
            .execute_batch(&format!("ATTACH {} AS x", sql_quote(&target)))
            .unwrap_err();
        assert_eq!(error.to_string(), "not authorized");
        assert!(!target.exists());
    }

    #[test]
    fn attaching_an_existing_file_is_refused() {
        let (dir, _location, connection) = guest_connection();
        let existing = dir.path().join("other.db");
        Connection::open(&existing)
            .unwrap()
            .execute_batch("CREATE TABLE secret (v TEXT)")
            .unwrap();
        let error = connection
            .execute_batch(&format!("ATTACH {} AS x", sql_quote(&existing)))
            .unwrap_err();
        assert_eq!(error.to_string(), "not authorized");
    }

    #[test]
    fn attaching_a_computed_filename_is_refused() {
        let (dir, _location, connection) = guest_connection();
        let target = dir.path().join("escape.db");
        let (head, tail) = target.to_str().unwrap().split_at(3);
        let error = connection
            .execute_batch(&format!("ATTACH '{head}' || '{tail}' AS x"))
            .unwrap_err();
        assert_eq!(error.to_string(), "not authorized");
        let error = connection.prepare("ATTACH ?1 AS x").map(drop).unwrap_err();
        assert_eq!(error.to_string(), "not authorized");
        assert!(!target.exists());
    }

    #[test]
    fn vacuum_into_a_file_is_refused_and_creates_nothing() {
        let (dir, _location, connection) = guest_connection();
        connection
            .execute_batch("CREATE TABLE t (v); INSERT INTO t VALUES (1)")
            .unwrap();
        let target = dir.path().join("copy.db");
        let error = connection
            .execute_batch(&format!("VACUUM INTO {}", sql_quote(&target)))
            .unwrap_err();
        assert!(error.to_string().contains("authoriz"), "{error}");
        assert!(!target.exists());
        let (head, tail) = target.to_str().unwrap().split_at(3);
        let error = connection
            .execute_batch(&format!("VACUUM INTO '{head}' || '{tail}'"))
            .unwrap_err();
        assert!(error.to_string().contains("authoriz"), "{error}");
        assert!(!target.exists());
    }

    #[test]
    fn temporary_and_in_memory_attachments_and_vacuum_still_work() {
        let (_dir, _location, connection) = guest_connection();
        connection
            .execute_batch(
                "CREATE TABLE t (v); INSERT INTO t VALUES (1);
                 ATTACH '' AS t2; CREATE TABLE t2.u (v); INSERT INTO t2.u VALUES (2);
                 ATTACH ':memory:' AS m; CREATE TABLE m.w (v); INSERT INTO m.w VALUES (3);",
            )
            .unwrap();
        let sum: i64 = connection
            .query_row(
                "SELECT (SELECT v FROM t) + (SELECT v FROM t2.u) + (SELECT v FROM m.w)",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(sum, 6);
        connection.execute_batch("DETACH t2; DETACH m").unwrap();
        connection.execute_batch("VACUUM").unwrap();
    }

    #[test]
    fn pooled_connections_stay_sandboxed() {
        let (dir, location, connection) = guest_connection();
        location.release(connection);
        let reused = location.connect().unwrap();
        let target = dir.path().join("escape.db");
        assert!(
            reused
                .execute_batch(&format!("ATTACH {} AS x", sql_quote(&target)))
                .is_err()
        );
        assert!(!target.exists());
    }

    #[test]
    fn a_connection_left_with_temp_state_is_not_pooled() {
        let (_dir, location, connection) = guest_connection();
        connection
            .execute_batch("CREATE TEMP TABLE leftover(a)")
            .unwrap();
        location.release(connection);
        let (_dir2, location2, attached) = guest_connection();
        attached.execute_batch("ATTACH ':memory:' AS m").unwrap();
        location2.release(attached);
        // The next request gets a fresh connection without the TEMP table or
        // the attached database.
        let fresh = location.connect().unwrap();
        assert!(fresh.execute_batch("SELECT * FROM temp.leftover").is_err());
        let fresh2 = location2.connect().unwrap();
        assert!(
            fresh2
                .execute_batch("SELECT * FROM m.sqlite_master")
                .is_err()
        );
        // A clean connection is pooled.
        location.release(fresh);
        assert_eq!(location.idle_count(), 1);
    }

    #[test]
    fn the_backstop_alone_stops_attach_from_creating_files() {
        let dir = tempfile::tempdir().unwrap();
        let connection = Connection::open(dir.path().join("main.db")).unwrap();
        forbid_attach_create(&connection).unwrap();
        let target = dir.path().join("escape.db");
        assert!(
            connection
                .execute_batch(&format!("ATTACH {} AS x", sql_quote(&target)))
                .is_err()
        );
        assert!(!target.exists());
        connection.execute_batch("ATTACH '' AS t").unwrap();
    }
}
