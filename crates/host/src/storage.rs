//! Storage backends behind Spin's key-value and SQLite interfaces.
//!
//! Both are SQLite files in the state directory, laid out as Spin lays them out
//! (`sqlite_key_value.db` with a `spin_key_value` table, `sqlite_db.db` for the
//! `default` database), so a `.spin/` folder moves between `dol up` and `spin up`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
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
            None => open_connection(&self.path),
        }
    }

    /// Takes a connection back; one with an open transaction is closed
    /// instead (closing rolls the transaction back).
    pub fn release(&self, connection: Connection) {
        if !connection.is_autocommit() {
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
}
