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
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A key-value store behind one or more labels: a SQLite file (Spin's
/// default) or a Redis server (`type = "redis"` in the runtime config).
pub enum KeyValueBackend {
    /// Spin's SQLite layout, shared by every label mapped to the same file.
    Sqlite(SqliteKeyValue),
    /// A Redis server; keys are stored unprefixed, as Spin stores them.
    Redis(RedisKeyValue),
}

impl KeyValueBackend {
    /// Opens (creating if needed) the SQLite store file at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        SqliteKeyValue::open(path).map(Self::Sqlite)
    }

    /// Connects to the Redis store at `url`. `dol up` checks it at start-up and
    /// refuses to start without it; Spin connects on a guest's first `open`.
    pub fn redis(url: &str) -> Result<Self> {
        RedisKeyValue::connect(url).map(Self::Redis)
    }

    /// Value of `key` in `store`, if any.
    pub fn get(&self, store: &str, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        match self {
            Self::Sqlite(kv) => kv.get(store, key),
            Self::Redis(kv) => kv.get(key),
        }
    }

    /// Sets `key` in `store` to `value`.
    pub fn set(&self, store: &str, key: &str, value: &[u8]) -> Result<(), StorageError> {
        match self {
            Self::Sqlite(kv) => kv.set(store, key, value),
            Self::Redis(kv) => kv.set(key, value),
        }
    }

    /// Removes `key` from `store` (no error when absent).
    pub fn delete(&self, store: &str, key: &str) -> Result<(), StorageError> {
        match self {
            Self::Sqlite(kv) => kv.delete(store, key),
            Self::Redis(kv) => kv.delete(&[key.to_owned()]),
        }
    }

    /// Whether `key` exists in `store`.
    pub fn exists(&self, store: &str, key: &str) -> Result<bool, StorageError> {
        match self {
            Self::Sqlite(kv) => kv.exists(store, key),
            Self::Redis(kv) => kv.exists(key),
        }
    }

    /// Every key in `store`.
    pub fn keys(&self, store: &str) -> Result<Vec<String>, StorageError> {
        match self {
            Self::Sqlite(kv) => kv.keys(store),
            Self::Redis(kv) => kv.keys(),
        }
    }

    /// Values of `keys` (see each backend for which keys come back), failing
    /// once the result would pass `limit` bytes.
    pub fn get_many(
        &self,
        store: &str,
        keys: &[String],
        limit: usize,
    ) -> Result<Vec<KeyValuePair>, StorageError> {
        match self {
            Self::Sqlite(kv) => kv.get_many(store, keys, limit),
            Self::Redis(kv) => kv.get_many(keys, limit),
        }
    }

    /// Sets every pair at once.
    pub fn set_many(&self, store: &str, pairs: &[(String, Vec<u8>)]) -> Result<(), StorageError> {
        match self {
            Self::Sqlite(kv) => kv.set_many(store, pairs),
            Self::Redis(kv) => kv.set_many(pairs),
        }
    }

    /// Removes every key at once.
    pub fn delete_many(&self, store: &str, keys: &[String]) -> Result<(), StorageError> {
        match self {
            Self::Sqlite(kv) => kv.delete_many(store, keys),
            Self::Redis(kv) => kv.delete(keys),
        }
    }

    /// Adds `delta` to the counter at `key` and returns the new value.
    pub fn increment(&self, store: &str, key: &str, delta: i64) -> Result<i64, StorageError> {
        match self {
            Self::Sqlite(kv) => kv.increment(store, key, delta),
            Self::Redis(kv) => kv.increment(key, delta),
        }
    }

    /// Sets `key` to `new` only if its value is still `expected` (`None`:
    /// still absent). Returns whether it swapped.
    pub fn compare_and_swap(
        &self,
        store: &str,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, StorageError> {
        match self {
            Self::Sqlite(kv) => kv.compare_and_swap(store, key, expected, new),
            Self::Redis(kv) => kv.compare_and_swap(key, expected, new),
        }
    }
}

/// Swaps a Redis value only if it still holds the expected bytes, atomically
/// on the server.
const REDIS_CAS_SCRIPT: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
     redis.call('SET', KEYS[1], ARGV[2]) return 1 else return 0 end";

/// A Redis key-value store, as Spin's `key-value-redis` keeps it: values are
/// the bytes as given, counters Redis integers (`INCRBY`), `get-many` answers
/// every key asked for. Calls block the calling thread like the SQLite store's,
/// each on a connection of its own from a small pool, so concurrent requests
/// do not wait for each other.
///
/// When Redis goes away, the call that finds out fails (the guest gets the
/// interface's `other` error, as on Spin) and the pooled connections are
/// dropped; the next call reconnects, at most once per [`REDIS_RETRY`] while
/// Redis stays down (calls in between fail at once), so the store works again
/// as soon as Redis is back. Every command is bounded by [`BUSY_TIMEOUT`], so a
/// Redis that stops answering fails calls instead of hanging them.
pub struct RedisKeyValue {
    client: redis::Client,
    idle: Mutex<Vec<redis::Connection>>,
    /// When and why the last reconnect failed, while Redis is down.
    down: Mutex<Option<(std::time::Instant, String)>>,
}

/// How long a failed reconnect is remembered before the next attempt.
const REDIS_RETRY: Duration = Duration::from_millis(500);

/// Idle Redis connections kept (more are opened under load, then closed).
const REDIS_MAX_IDLE: usize = 16;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means another call panicked; the data is a cache.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl RedisKeyValue {
    fn connect(url: &str) -> Result<Self> {
        let client = redis::Client::open(url).context("not a Redis URL")?;
        let connection = Self::open_connection(&client).context("Redis is unreachable")?;
        Ok(Self {
            client,
            idle: Mutex::new(vec![connection]),
            down: Mutex::new(None),
        })
    }

    fn open_connection(client: &redis::Client) -> redis::RedisResult<redis::Connection> {
        let connection = client.get_connection_with_timeout(BUSY_TIMEOUT)?;
        connection.set_read_timeout(Some(BUSY_TIMEOUT))?;
        connection.set_write_timeout(Some(BUSY_TIMEOUT))?;
        Ok(connection)
    }

    /// An idle connection, or a new one unless Redis was found down moments ago.
    fn take(&self) -> Result<redis::Connection, StorageError> {
        if let Some(connection) = lock(&self.idle).pop() {
            return Ok(connection);
        }
        if let Some((at, error)) = &*lock(&self.down)
            && at.elapsed() < REDIS_RETRY
        {
            return Err(StorageError::RedisDown(error.clone()));
        }
        match Self::open_connection(&self.client) {
            Ok(connection) => {
                *lock(&self.down) = None;
                Ok(connection)
            }
            Err(error) => {
                tracing::warn!("Redis key-value store unreachable: {error}");
                *lock(&self.down) = Some((std::time::Instant::now(), error.to_string()));
                Err(error.into())
            }
        }
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, StorageError> {
        let mut connection = self.take()?;
        let result = f(&mut connection);
        match &result {
            Err(error)
                if error.is_io_error() || error.is_connection_dropped() || error.is_timeout() =>
            {
                // The others most likely lost Redis too: the next call reconnects.
                tracing::warn!("Redis key-value store connection lost: {error}");
                lock(&self.idle).clear();
            }
            _ => {
                let mut idle = lock(&self.idle);
                if idle.len() < REDIS_MAX_IDLE {
                    idle.push(connection);
                }
            }
        }
        Ok(result?)
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.with(|c| redis::cmd("GET").arg(key).query(c))
    }

    fn set(&self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        self.with(|c| redis::cmd("SET").arg(key).arg(value).query(c))
    }

    fn delete(&self, keys: &[String]) -> Result<(), StorageError> {
        if keys.is_empty() {
            return Ok(());
        }
        self.with(|c| redis::cmd("DEL").arg(keys).query::<i64>(c).map(drop))
    }

    fn exists(&self, key: &str) -> Result<bool, StorageError> {
        self.with(|c| redis::cmd("EXISTS").arg(key).query(c))
    }

    fn keys(&self) -> Result<Vec<String>, StorageError> {
        self.with(|c| redis::cmd("KEYS").arg("*").query(c))
    }

    fn get_many(&self, keys: &[String], limit: usize) -> Result<Vec<KeyValuePair>, StorageError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let values: Vec<Option<Vec<u8>>> = self.with(|c| redis::cmd("MGET").arg(keys).query(c))?;
        let mut total = std::mem::size_of::<Vec<String>>();
        let mut pairs = Vec::with_capacity(keys.len());
        for (key, value) in keys.iter().zip(values) {
            total += std::mem::size_of::<KeyValuePair>()
                + key.len()
                + value.as_ref().map_or(0, Vec::len);
            if total > limit {
                return Err(StorageError::ResultTooLarge(limit));
            }
            pairs.push((key.clone(), value));
        }
        Ok(pairs)
    }

    fn set_many(&self, pairs: &[(String, Vec<u8>)]) -> Result<(), StorageError> {
        if pairs.is_empty() {
            return Ok(());
        }
        self.with(|c| {
            let mut cmd = redis::cmd("MSET");
            for (key, value) in pairs {
                cmd.arg(key).arg(value);
            }
            cmd.query(c)
        })
    }

    fn increment(&self, key: &str, delta: i64) -> Result<i64, StorageError> {
        self.with(|c| redis::cmd("INCRBY").arg(key).arg(delta).query(c))
    }

    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, StorageError> {
        self.with(|c| match expected {
            Some(old) => redis::cmd("EVAL")
                .arg(REDIS_CAS_SCRIPT)
                .arg(1)
                .arg(key)
                .arg(old)
                .arg(new)
                .query::<i64>(c)
                .map(|swapped| swapped == 1),
            None => redis::cmd("SET")
                .arg(key)
                .arg(new)
                .arg("NX")
                .query::<Option<String>>(c)
                .map(|reply| reply.is_some()),
        })
    }
}

/// A key-value store backed by one SQLite file, shared by every label mapped to it.
pub struct SqliteKeyValue {
    /// Concurrent requests' calls each take a connection, so reads run side
    /// by side under WAL instead of queueing behind one mutex (and behind a
    /// write's commit).
    pool: ConnectionPool,
}

/// A key and its value, as `wasi:keyvalue/batch.get-many` returns them.
pub type KeyValuePair = (String, Option<Vec<u8>>);

/// Failure of a key-value backend operation.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// SQLite failed.
    #[error("key-value storage: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Redis failed.
    #[error("key-value storage: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis was unreachable moments ago; the call was not tried.
    #[error("key-value storage: Redis is unreachable: {0}")]
    RedisDown(String),
    /// A result would be larger than the caller's limit (Spin's wording, which
    /// guests match on).
    #[error("query result exceeds limit of {0} bytes")]
    ResultTooLarge(usize),
    /// No connection to the store's file could be opened.
    #[error("key-value storage: opening a connection: {0}")]
    Open(String),
    /// A value `increment` cannot read as a counter.
    #[error("value of key {0:?} is not a 64-bit counter (8 little-endian bytes)")]
    NotACounter(String),
}

impl SqliteKeyValue {
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
        let pool = ConnectionPool::new(path.to_path_buf(), open_connection);
        pool.put_back(connection);
        Ok(Self { pool })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StorageError> {
        self.with_connection(|c| Ok(f(c)?))
    }

    /// Runs `f` on an idle connection (a new one when none is idle) and
    /// puts it back, unless a transaction was left open on it.
    fn with_connection<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let connection = self
            .pool
            .take()
            .map_err(|e| StorageError::Open(format!("{e:#}")))?;
        let result = f(&connection);
        self.pool.put_back(connection);
        result
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

    /// The values of those `keys` that exist in `store`, as Spin's batch
    /// `get-many` returns them; fails once the result would pass `limit` bytes
    /// (values are read one at a time, so the host holds at most one more).
    pub fn get_many(
        &self,
        store: &str,
        keys: &[String],
        limit: usize,
    ) -> Result<Vec<KeyValuePair>, StorageError> {
        let mut total = std::mem::size_of::<Vec<String>>();
        let mut found = Vec::new();
        for key in keys {
            if let Some(value) = self.get(store, key)? {
                total += std::mem::size_of::<(String, Option<Vec<u8>>)>() + key.len() + value.len();
                if total > limit {
                    return Err(StorageError::ResultTooLarge(limit));
                }
                found.push((key.clone(), Some(value)));
            }
        }
        Ok(found)
    }

    /// Sets every pair in one transaction.
    pub fn set_many(&self, store: &str, pairs: &[(String, Vec<u8>)]) -> Result<(), StorageError> {
        self.with(|c| {
            let tx =
                rusqlite::Transaction::new_unchecked(c, rusqlite::TransactionBehavior::Immediate)?;
            for (key, value) in pairs {
                tx.prepare_cached(
                    "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
                     ON CONFLICT (store, key) DO UPDATE SET value = excluded.value",
                )?
                .execute(params![store, key, value])?;
            }
            tx.commit()
        })
    }

    /// Removes every key in one transaction.
    pub fn delete_many(&self, store: &str, keys: &[String]) -> Result<(), StorageError> {
        self.with(|c| {
            let tx =
                rusqlite::Transaction::new_unchecked(c, rusqlite::TransactionBehavior::Immediate)?;
            for key in keys {
                tx.prepare_cached("DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                    .execute(params![store, key])?;
            }
            tx.commit()
        })
    }

    /// Adds `delta` to the counter at `key` (absent counts as 0) and returns
    /// the new value. The counter is stored as Spin stores it, 8 little-endian
    /// bytes; the read and the write share one immediate transaction, so
    /// concurrent increments (from other processes too) are never lost.
    pub fn increment(&self, store: &str, key: &str, delta: i64) -> Result<i64, StorageError> {
        self.with_connection(|connection| Self::increment_on(connection, store, key, delta))
    }

    fn increment_on(
        connection: &Connection,
        store: &str,
        key: &str,
        delta: i64,
    ) -> Result<i64, StorageError> {
        let tx = rusqlite::Transaction::new_unchecked(
            connection,
            rusqlite::TransactionBehavior::Immediate,
        )?;
        let current: Option<Vec<u8>> = tx
            .prepare_cached("SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2")?
            .query_row(params![store, key], |row| row.get(0))
            .optional()?;
        let current = match current {
            None => 0,
            Some(bytes) => {
                let bytes: [u8; 8] = bytes
                    .try_into()
                    .map_err(|_| StorageError::NotACounter(key.to_owned()))?;
                i64::from_le_bytes(bytes)
            }
        };
        let new = current.wrapping_add(delta);
        tx.prepare_cached(
            "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
             ON CONFLICT (store, key) DO UPDATE SET value = excluded.value",
        )?
        .execute(params![store, key, new.to_le_bytes().as_slice()])?;
        tx.commit()?;
        Ok(new)
    }

    /// Compare-and-swap: sets `key` to `new` only if its value is still
    /// `expected` (`None`: the key must still be absent). Returns whether it swapped.
    pub fn compare_and_swap(
        &self,
        store: &str,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, StorageError> {
        self.with(|c| {
            let changed = match expected {
                Some(old) => c
                    .prepare_cached(
                        "UPDATE spin_key_value SET value = ?4
                         WHERE store = ?1 AND key = ?2 AND value = ?3",
                    )?
                    .execute(params![store, key, old, new])?,
                None => c
                    .prepare_cached(
                        "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
                         ON CONFLICT (store, key) DO NOTHING",
                    )?
                    .execute(params![store, key, new])?,
            };
            Ok(changed == 1)
        })
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
    // Only sandboxed connections enter the pool, so a reused one is too.
    pool: ConnectionPool,
}

impl DatabaseLocation {
    /// A database file on disk.
    pub fn file(path: PathBuf) -> Self {
        Self {
            pool: ConnectionPool::new(path, open_guest_connection),
        }
    }

    /// An idle connection, or a new one.
    pub fn connect(&self) -> Result<Connection> {
        let connection = self.pool.take()?;
        // Spin opens a fresh connection per `open`, whose last inserted rowid
        // is 0; a pooled one would report its previous user's.
        forget_last_insert_rowid(&connection);
        Ok(connection)
    }

    /// Takes a connection back; one with an open transaction or a guest's
    /// session state is closed instead (closing rolls the transaction back).
    /// `left` is what the statements run on it could have left
    /// ([`watching_session_state`]): nothing, state the pool inspects for (a
    /// query of its own, paid only then), or settings it cannot inspect.
    pub fn release(&self, connection: Connection, left: SessionState) {
        let reusable = match left {
            SessionState::Clean => true,
            SessionState::Inspect => !carries_session_state(&connection),
            SessionState::Discard => false,
        };
        if reusable {
            self.pool.put_back(connection);
        }
    }

    /// Connections waiting in the pool (for tests).
    #[cfg(test)]
    pub fn idle_count(&self) -> usize {
        self.pool.idle().len()
    }
}

/// Sets what `connection` reports as its last inserted rowid to 0, as on a
/// fresh connection (rusqlite has no safe call for it).
#[allow(unsafe_code)]
fn forget_last_insert_rowid(connection: &Connection) {
    // SAFETY: `handle` is the open connection's own pointer, used on this
    // thread while `connection` is borrowed and nothing else uses it;
    // `sqlite3_set_last_insert_rowid` only stores an integer in it.
    unsafe { rusqlite::ffi::sqlite3_set_last_insert_rowid(connection.handle(), 0) };
}

/// Idle SQLite connections to one file, opened with `open` when none is
/// idle. The file's WAL is checkpointed in the background while the pool
/// (any clone of it) lives ([`spawn_checkpointer`]); when the last clone
/// goes, its idle connections and then the checkpointer's are closed before
/// the drop returns, so a stopped host has let go of its files.
#[derive(Debug, Clone)]
struct ConnectionPool {
    path: PathBuf,
    open: fn(&Path) -> Result<Connection>,
    idle: Arc<Mutex<Vec<Connection>>>,
    // Declared after `idle`: fields drop in order, so the checkpointer's
    // connection is the file's last (SQLite then folds the WAL back).
    _checkpointer: Arc<Checkpointer>,
}

impl ConnectionPool {
    fn new(path: PathBuf, open: fn(&Path) -> Result<Connection>) -> Self {
        let checkpointer = Arc::new(spawn_checkpointer(path.clone()));
        Self {
            path,
            open,
            idle: Arc::default(),
            _checkpointer: checkpointer,
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        // A poisoned lock only means another request panicked mid-call; SQLite
        // itself kept the data consistent, so keep serving.
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// An idle connection, or a new one.
    fn take(&self) -> Result<Connection> {
        let reused = self.idle().pop();
        match reused {
            Some(connection) => Ok(connection),
            None => (self.open)(&self.path),
        }
    }

    /// Keeps `connection` for the next caller, unless a transaction is open
    /// on it or [`MAX_IDLE_CONNECTIONS`] are already idle.
    fn put_back(&self, connection: Connection) {
        if !connection.is_autocommit() {
            return;
        }
        let mut idle = self.idle();
        if idle.len() < MAX_IDLE_CONNECTIONS {
            idle.push(connection);
        }
    }
}

/// What a guest's statements may have left on a pooled connection, worst
/// last: Spin gives every `open` a fresh connection, so a pooled one must
/// look fresh to the next guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum SessionState {
    /// Nothing: tables, rows, transactions (what requests run).
    #[default]
    Clean,
    /// Maybe an attached database or a TEMP object: the pool checks for
    /// them ([`carries_session_state`]) and closes the connection if so.
    Inspect,
    /// A PRAGMA that sets something ran: it may have changed a connection
    /// setting (`foreign_keys`, `query_only`, `locking_mode`,
    /// `busy_timeout`, …), which no query can enumerate, so the connection
    /// is closed. (Reading a PRAGMA, or asking one about the schema, is clean.)
    Discard,
}

thread_local! {
    /// Raised by [`authorize`] as SQLite prepares statements that can leave
    /// state on their connection for the next request ([`session_state_of`]).
    static SESSION_STATE_PREPARED: std::cell::Cell<SessionState> =
        const { std::cell::Cell::new(SessionState::Clean) };
}

/// Runs `f` — preparing and stepping guest SQL on a sandboxed connection, on
/// this thread — and says what SQLite prepared in it (including a
/// re-prepare while stepping) could leave behind on the connection.
pub fn watching_session_state<T>(f: impl FnOnce() -> T) -> (T, SessionState) {
    SESSION_STATE_PREPARED.set(SessionState::Clean);
    let out = f();
    (out, SESSION_STATE_PREPARED.replace(SessionState::Clean))
}

/// What an action can leave on the connection itself rather than in the
/// database file: attaching or detaching a database or any TEMP object
/// (inspectable), a PRAGMA (connection settings: not inspectable).
/// Anything SQLite reports that rusqlite cannot decode is inspected too.
fn session_state_of(context: &AuthContext<'_>) -> SessionState {
    match context.action {
        // Reading a setting, or a schema question, changes nothing.
        AuthAction::Pragma {
            pragma_value: None, ..
        } => SessionState::Clean,
        AuthAction::Pragma { pragma_name, .. }
            if READ_ONLY_PRAGMAS_WITH_ARGUMENT
                .iter()
                .any(|p| p.eq_ignore_ascii_case(pragma_name)) =>
        {
            SessionState::Clean
        }
        AuthAction::Pragma { .. } => SessionState::Discard,
        AuthAction::Attach { .. }
        | AuthAction::Detach { .. }
        | AuthAction::CreateTempIndex { .. }
        | AuthAction::CreateTempTable { .. }
        | AuthAction::CreateTempTrigger { .. }
        | AuthAction::CreateTempView { .. }
        | AuthAction::Unknown { .. } => SessionState::Inspect,
        _ if context.database_name == Some("temp") => SessionState::Inspect,
        _ => SessionState::Clean,
    }
}

/// PRAGMAs whose argument names what to read rather than a value to set
/// (`PRAGMA table_info(t)`): they leave the connection as it was.
const READ_ONLY_PRAGMAS_WITH_ARGUMENT: [&str; 9] = [
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
    "foreign_key_check",
    "integrity_check",
];

/// PRAGMAs whose setting is process-wide in SQLite: one guest setting
/// `hard_heap_limit` low made every other SQLite connection of the host
/// (other apps' databases, the key-value store) fail with out-of-memory
/// until a restart, and the directory ones move every connection's files.
const PROCESS_WIDE_PRAGMAS: [&str; 4] = [
    "hard_heap_limit",
    "soft_heap_limit",
    "temp_store_directory",
    "data_store_directory",
];

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

/// SQLite's busy handler: retries a locked database every
/// [`LOCK_RETRY`] until [`BUSY_TIMEOUT`] has passed since the first try
/// (`tries` counts from 0 for each statement that finds the lock taken).
fn wait_for_lock(tries: i32) -> bool {
    lock_wait(tries, BUSY_TIMEOUT)
}

/// [`wait_for_lock`] with the time limit as a parameter (tests use a short one).
fn lock_wait(tries: i32, limit: Duration) -> bool {
    thread_local! {
        static SINCE: std::cell::Cell<Option<std::time::Instant>> = const { std::cell::Cell::new(None) };
    }
    let now = std::time::Instant::now();
    let since = if tries == 0 {
        SINCE.set(Some(now));
        now
    } else {
        SINCE.get().unwrap_or(now)
    };
    if now.duration_since(since) >= limit {
        return false;
    }
    std::thread::sleep(LOCK_RETRY);
    true
}

/// How long a statement that found the database locked waits before trying again.
const LOCK_RETRY: Duration = Duration::from_micros(50);

/// WAL pages past which a committing connection checkpoints by itself
/// (SQLite's default is 1,000, which put a checkpoint — copying the WAL back
/// and syncing the file — into one request's commit every few hundred).
const WAL_AUTOCHECKPOINT_PAGES: i64 = 10_000;

/// How often the background checkpointer checkpoints a database's WAL.
///
/// A checkpoint syncs the WAL and then the database file, and a commit that
/// lands while the file system writes that back waits for it: the more a
/// checkpoint has to write, the longer the commits behind it stall. Measured
/// at concurrency 1 on the gateway (bench/RESULTS.md, stop 27): every 1 s made
/// p99 13 ms, every 100 ms 1.9–2.1 ms, every 20 ms 1.4 ms; every 10 ms began
/// to cost the median.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(20);

/// The background checkpointer of one SQLite file. Dropping it stops the
/// thread and waits for it (at most the checkpoint in progress), so its
/// connection is closed once its pool is gone: a host that has shut down
/// holds no handle on its files (tests copy a stopped host's state).
#[derive(Debug)]
struct Checkpointer {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        // Closing the channel wakes the thread at once.
        drop(self.stop.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::warn!("the checkpointer thread panicked");
        }
    }
}

/// Checkpoints the WAL of the SQLite file at `path` from a thread of its
/// own every [`CHECKPOINT_EVERY`] (passively: it never waits for or blocks a
/// writer) until the returned [`Checkpointer`] is dropped, so no request's
/// commit pays for the checkpoint. The file is opened once it exists: a
/// database no component uses is never created.
fn spawn_checkpointer(path: PathBuf) -> Checkpointer {
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("dol-checkpoint".into())
        .spawn(move || {
            let mut connection: Option<Connection> = None;
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(CHECKPOINT_EVERY)
            {
                if connection.is_none() && path.exists() {
                    connection = open_connection(&path)
                        .map_err(|e| tracing::warn!("checkpointer: {e:#}"))
                        .ok();
                }
                if let Some(c) = &connection
                    && let Err(e) = c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                {
                    tracing::warn!("checkpointing {}: {e}", path.display());
                }
            }
        });
    match spawned {
        Ok(thread) => Checkpointer {
            stop: Some(stop),
            thread: Some(thread),
        },
        Err(e) => {
            // The commits' own checkpoints (past WAL_AUTOCHECKPOINT_PAGES) still bound the WAL.
            tracing::warn!("starting the checkpointer: {e}");
            Checkpointer {
                stop: None,
                thread: None,
            }
        }
    }
}

/// Prepared statements each SQLite connection keeps.
const STATEMENT_CACHE_CAPACITY: usize = 512;

fn open_connection(path: &Path) -> Result<Connection> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating the state directory {}", parent.display()))?;
    }
    let mut connection = Connection::open(path)
        .with_context(|| format!("opening SQLite file {}", path.display()))?;
    // SQLite's own busy handler sleeps 1, 2, 5, 10 … ms between tries; a
    // write transaction here lasts about 100 µs, so a request that found the
    // write lock taken slept ten times longer than it had to wait — on a
    // runtime worker thread, with two of them on two cores.
    connection
        .busy_handler(Some(wait_for_lock))
        .context("setting the SQLite busy handler")?;
    // A pooled connection serves every request of the app: one request runs
    // about twenty distinct statements and the app a few hundred, so
    // rusqlite's default of 16 cached statements evicted and re-parsed most
    // of them on every request.
    connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
    // The background checkpointer ([`spawn_checkpointer`]) copies the WAL
    // back; a commit does it itself only past this many pages, as a backstop.
    connection
        .pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)
        .with_context(|| format!("setting wal_autocheckpoint on {}", path.display()))?;
    // WAL lets readers proceed while one writer commits; that is what keeps
    // concurrent requests from serialising on the file.
    enable_wal(&connection).with_context(|| format!("enabling WAL on {}", path.display()))?;
    // In WAL mode NORMAL syncs at checkpoints instead of on every commit: the
    // database stays consistent after a crash (a power loss may undo the last
    // commits), and each write transaction stops paying an fsync.
    connection
        .pragma_update(None, "synchronous", "NORMAL")
        .with_context(|| format!("setting synchronous=NORMAL on {}", path.display()))?;
    Ok(connection)
}

/// Switches the file of `connection` to WAL (a no-op once it is).
///
/// The switch needs the file's exclusive lock, and SQLite answers a
/// connection that finds it taken by another one switching at the same time
/// with `SQLITE_BUSY` at once, without calling the busy handler (each holds
/// the shared lock the other must see gone). Connections opened together on
/// a fresh file — the first requests of a new app — would fail their
/// request; this waits for the lock as [`wait_for_lock`] does instead.
fn enable_wal(connection: &Connection) -> rusqlite::Result<()> {
    let mut tries = 0;
    loop {
        match connection.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(error, _))
                if error.code == rusqlite::ErrorCode::DatabaseBusy && wait_for_lock(tries) =>
            {
                tries = tries.saturating_add(1);
            }
            result => return result,
        }
    }
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

/// Spin's authorizer: every action is allowed except attaching a file, and
/// (stricter than Spin) the PRAGMAs that would change SQLite for the whole
/// host process ([`PROCESS_WIDE_PRAGMAS`]).
///
/// The guest sees `not authorized` when preparing such an `ATTACH` or
/// PRAGMA, and `authorization denied` when a `VACUUM INTO` tries to attach
/// its target.
fn authorize(context: AuthContext<'_>) -> Authorization {
    let left = session_state_of(&context);
    if left > SessionState::Clean {
        SESSION_STATE_PREPARED.set(SESSION_STATE_PREPARED.get().max(left));
    }
    match context.action {
        AuthAction::Pragma { pragma_name, .. }
            if PROCESS_WIDE_PRAGMAS
                .iter()
                .any(|p| p.eq_ignore_ascii_case(pragma_name)) =>
        {
            Authorization::Deny
        }
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
    /// Outbound PostgreSQL connections, pooled per address for the whole app.
    pub postgres: Arc<crate::pg_pool::PgPools>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend() -> (tempfile::TempDir, KeyValueBackend) {
        let dir = tempfile::tempdir().unwrap();
        let kv = KeyValueBackend::open(&dir.path().join("kv.db")).unwrap();
        (dir, kv)
    }

    /// A throw-away `redis-server` on loopback, killed on drop; `None` (said
    /// loudly) where it is not installed, except in CI, where that fails.
    struct TestRedis {
        child: std::process::Child,
        url: String,
    }

    impl TestRedis {
        fn start() -> Option<Self> {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            Self::start_on(port)
        }

        /// Stops the server (as a crash would: SIGKILL).
        fn kill(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }

        /// A server on the port of the one that was killed.
        fn restart(&mut self) {
            let port = self.url.rsplit(':').next().unwrap().parse().unwrap();
            let fresh = Self::start_on(port).unwrap();
            *self = fresh;
        }

        fn start_on(port: u16) -> Option<Self> {
            let child = match std::process::Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(std::process::Stdio::null())
                .spawn()
            {
                Ok(child) => child,
                Err(error) => {
                    assert!(
                        std::env::var("CI").as_deref() != Ok("true"),
                        "redis-server is needed in CI: {error}"
                    );
                    eprintln!("SKIPPING the Redis key-value test: redis-server: {error}");
                    return None;
                }
            };
            let started = std::time::Instant::now();
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "redis-server did not start"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            Some(Self {
                child,
                url: format!("redis://127.0.0.1:{port}"),
            })
        }
    }

    impl Drop for TestRedis {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    #[test]
    fn a_redis_that_goes_away_is_an_error_and_works_again_when_back() {
        let Some(mut redis) = TestRedis::start() else {
            return;
        };
        let kv = KeyValueBackend::redis(&redis.url).unwrap();
        kv.set("default", "a", b"1").unwrap();
        redis.kill();
        // An error value for the guest, never a panic; and again while down.
        for _ in 0..3 {
            let error = kv.get("default", "a").unwrap_err();
            assert!(
                matches!(error, StorageError::Redis(_) | StorageError::RedisDown(_)),
                "{error}"
            );
        }
        redis.restart();
        let started = std::time::Instant::now();
        // Within the retry pause the store answers at once with the last error.
        while kv.set("default", "a", b"2").is_err() {
            assert!(started.elapsed() < Duration::from_secs(5), "no reconnect");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(kv.get("default", "a").unwrap(), Some(b"2".to_vec()));
    }

    #[test]
    fn concurrent_redis_calls_each_get_a_connection_and_count_exactly() {
        let Some(redis) = TestRedis::start() else {
            return;
        };
        let kv = Arc::new(KeyValueBackend::redis(&redis.url).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let kv = kv.clone();
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        kv.increment("default", "hits", 1).unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(kv.increment("default", "hits", 0).unwrap(), 400);
        let KeyValueBackend::Redis(store) = &*kv else {
            unreachable!()
        };
        let idle = lock(&store.idle).len();
        assert!(
            (1..=REDIS_MAX_IDLE).contains(&idle),
            "{idle} idle connections"
        );
    }

    #[test]
    fn an_unreachable_redis_fails_the_start() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let Err(error) = KeyValueBackend::redis(&format!("redis://127.0.0.1:{port}")) else {
            panic!("connected to nothing");
        };
        assert!(
            format!("{error:#}").contains("Redis is unreachable"),
            "{error:#}"
        );
        let Err(error) = KeyValueBackend::redis("http://not-redis") else {
            panic!("accepted an http URL");
        };
        assert!(
            format!("{error:#}").contains("not a Redis URL"),
            "{error:#}"
        );
    }

    #[test]
    fn redis_store_behaves_as_spins() {
        let Some(redis) = TestRedis::start() else {
            return;
        };
        let kv = KeyValueBackend::redis(&redis.url).unwrap();
        assert_eq!(kv.get("default", "a").unwrap(), None);
        kv.set("default", "a", b"1").unwrap();
        assert!(kv.exists("default", "a").unwrap());
        assert_eq!(kv.get("default", "a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(kv.keys("default").unwrap(), ["a"]);
        kv.delete("default", "a").unwrap();
        assert!(!kv.exists("default", "a").unwrap());

        assert_eq!(kv.increment("default", "n", 10).unwrap(), 10);
        assert_eq!(kv.increment("default", "n", -3).unwrap(), 7);

        assert!(kv.compare_and_swap("default", "k", None, b"first").unwrap());
        assert!(!kv.compare_and_swap("default", "k", None, b"again").unwrap());
        assert!(
            kv.compare_and_swap("default", "k", Some(b"first"), b"second")
                .unwrap()
        );
        assert!(
            !kv.compare_and_swap("default", "k", Some(b"first"), b"third")
                .unwrap()
        );
        assert_eq!(kv.get("default", "k").unwrap(), Some(b"second".to_vec()));

        let pairs = vec![
            ("x".to_owned(), vec![1u8; 100]),
            ("y".to_owned(), vec![2u8; 100]),
        ];
        kv.set_many("default", &pairs).unwrap();
        let keys = ["x".to_owned(), "missing".to_owned()];
        // Redis answers every key asked for, as on Spin.
        assert_eq!(
            kv.get_many("default", &keys, 1 << 20).unwrap(),
            [
                ("x".to_owned(), Some(vec![1u8; 100])),
                ("missing".to_owned(), None)
            ]
        );
        let error = kv.get_many("default", &keys, 120).unwrap_err();
        assert_eq!(error.to_string(), "query result exceeds limit of 120 bytes");
        kv.delete_many("default", &["x".to_owned(), "y".to_owned()])
            .unwrap();
        assert_eq!(kv.get("default", "y").unwrap(), None);
    }

    #[test]
    fn increment_counts_from_zero_in_spins_layout() {
        let (_dir, kv) = backend();
        assert_eq!(kv.increment("default", "n", 10).unwrap(), 10);
        assert_eq!(kv.increment("default", "n", 5).unwrap(), 15);
        assert_eq!(kv.increment("default", "n", -20).unwrap(), -5);
        // Stored as Spin stores it: 8 little-endian bytes.
        assert_eq!(
            kv.get("default", "n").unwrap(),
            Some((-5i64).to_le_bytes().to_vec())
        );
        // Stores are separate.
        assert_eq!(kv.increment("other", "n", 1).unwrap(), 1);
        kv.set("default", "text", b"abc").unwrap();
        let error = kv.increment("default", "text", 1).unwrap_err();
        assert!(matches!(error, StorageError::NotACounter(_)), "{error}");
        assert_eq!(kv.get("default", "text").unwrap(), Some(b"abc".to_vec()));
    }

    #[test]
    fn concurrent_increments_are_never_lost() {
        let (dir, kv) = backend();
        // A second backend on the same file stands for another process.
        let other = Arc::new(KeyValueBackend::open(&dir.path().join("kv.db")).unwrap());
        let kv = Arc::new(kv);
        let threads: Vec<_> = [kv.clone(), other]
            .into_iter()
            .map(|kv| {
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        kv.increment("s", "n", 1).unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(kv.increment("s", "n", 0).unwrap(), 200);
    }

    #[test]
    fn concurrent_calls_on_one_backend_each_take_a_pooled_connection() {
        let (_dir, kv) = backend();
        let kv = Arc::new(kv);
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let kv = kv.clone();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        let key = format!("k{t}");
                        kv.set("s", &key, format!("{i}").as_bytes()).unwrap();
                        assert_eq!(
                            kv.get("s", &key).unwrap(),
                            Some(format!("{i}").into_bytes())
                        );
                        kv.increment("s", "total", 1).unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(kv.increment("s", "total", 0).unwrap(), 400);
        assert_eq!(kv.keys("s").unwrap().len(), 9);
    }

    #[test]
    fn compare_and_swap_only_swaps_an_unchanged_value() {
        let (_dir, kv) = backend();
        // Absent: swaps only while still absent.
        assert!(kv.compare_and_swap("s", "k", None, b"first").unwrap());
        assert!(!kv.compare_and_swap("s", "k", None, b"again").unwrap());
        assert_eq!(kv.get("s", "k").unwrap(), Some(b"first".to_vec()));
        // Present: swaps only from the value read.
        assert!(
            kv.compare_and_swap("s", "k", Some(b"first"), b"second")
                .unwrap()
        );
        assert!(
            !kv.compare_and_swap("s", "k", Some(b"first"), b"third")
                .unwrap()
        );
        assert_eq!(kv.get("s", "k").unwrap(), Some(b"second".to_vec()));
        // Another store's key of the same name is untouched.
        assert_eq!(kv.get("t", "k").unwrap(), None);
    }

    #[test]
    fn batch_operations_and_the_result_limit() {
        let (_dir, kv) = backend();
        let pairs = vec![
            ("a".to_owned(), vec![1u8; 100]),
            ("b".to_owned(), vec![2u8; 100]),
        ];
        kv.set_many("s", &pairs).unwrap();
        let keys = ["a".to_owned(), "b".to_owned(), "missing".to_owned()];
        // Only existing keys come back, as on Spin.
        let found = kv.get_many("s", &keys, 1 << 20).unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(found[0], ("a".to_owned(), Some(vec![1u8; 100])));
        let error = kv.get_many("s", &keys, 150).unwrap_err();
        assert_eq!(error.to_string(), "query result exceeds limit of 150 bytes");
        kv.delete_many("s", &keys).unwrap();
        assert!(kv.keys("s").unwrap().is_empty());
    }

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

    #[test]
    fn a_writer_waits_for_the_write_lock_instead_of_failing() {
        let (_dir, location, holder) = guest_connection();
        holder
            .execute_batch("CREATE TABLE t (v INTEGER); BEGIN IMMEDIATE; INSERT INTO t VALUES (1)")
            .unwrap();
        let waiter = location.connect().unwrap();
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let writer = std::thread::spawn(move || {
            started_tx.send(()).unwrap();
            // Finds the lock taken, so SQLite calls `wait_for_lock` until it is free.
            waiter.execute_batch("BEGIN IMMEDIATE; INSERT INTO t VALUES (2); COMMIT")
        });
        started_rx.recv().unwrap();
        std::thread::sleep(Duration::from_millis(30));
        holder.execute_batch("COMMIT").unwrap();
        writer.join().unwrap().unwrap();
        let total: i64 = holder
            .query_row("SELECT sum(v) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(total, 3);
    }

    /// Connections opened together on a fresh file (the first requests of a
    /// new app) all open: switching the file to WAL needs its exclusive
    /// lock, and SQLite answers a connection that finds it taken with
    /// `SQLITE_BUSY` at once, without asking the busy handler.
    #[test]
    fn connections_opened_together_on_a_fresh_file_all_open() {
        const CONNECTIONS: usize = 8;
        let dir = tempfile::tempdir().unwrap();
        for file in 0..25 {
            let path = dir.path().join(format!("fresh-{file}.db"));
            let barrier = std::sync::Barrier::new(CONNECTIONS);
            let opened: Vec<Result<Connection>> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..CONNECTIONS)
                    .map(|_| {
                        scope.spawn(|| {
                            barrier.wait();
                            open_guest_connection(&path)
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            for connection in opened {
                let connection = connection.unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
                let mode: String = connection
                    .query_row("PRAGMA journal_mode", [], |row| row.get(0))
                    .unwrap();
                assert_eq!(mode, "wal");
            }
        }
    }

    #[test]
    fn the_lock_wait_gives_up_once_its_limit_has_passed() {
        let limit = Duration::from_millis(5);
        // The first try starts the clock; tries within the limit wait again.
        assert!(lock_wait(0, limit));
        assert!(lock_wait(1, limit));
        std::thread::sleep(limit);
        assert!(
            !lock_wait(2, limit),
            "past the limit SQLite gets SQLITE_BUSY"
        );
        // The next statement's first try starts a new clock.
        assert!(lock_wait(0, limit));
    }

    #[test]
    fn the_wal_is_checkpointed_in_the_background_not_by_a_commit() {
        let (dir, _location, connection) = guest_connection();
        connection.execute_batch("CREATE TABLE t (v BLOB)").unwrap();
        // About 400 KiB of pages: far below the commits' own threshold
        // (WAL_AUTOCHECKPOINT_PAGES), so only the checkpointer copies them
        // into the database file.
        for _ in 0..100 {
            connection
                .execute("INSERT INTO t VALUES (zeroblob(4000))", [])
                .unwrap();
        }
        let file = dir.path().join("guest.db");
        let size = || std::fs::metadata(&file).map_or(0, |m| m.len());
        assert!(size() < 100_000, "the rows are still in the WAL");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while size() < 400_000 {
            assert!(
                std::time::Instant::now() < deadline,
                "the checkpointer did not copy the WAL back within 10 s"
            );
            std::thread::sleep(CHECKPOINT_EVERY);
        }
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
        location.release(connection, SessionState::Clean);
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
        let (created, flagged) =
            watching_session_state(|| connection.execute_batch("CREATE TEMP TABLE leftover(a)"));
        created.unwrap();
        assert_eq!(
            flagged,
            SessionState::Inspect,
            "a TEMP table is session state"
        );
        location.release(connection, flagged);
        let (_dir2, location2, attached) = guest_connection();
        let (done, flagged) =
            watching_session_state(|| attached.execute_batch("ATTACH ':memory:' AS m"));
        done.unwrap();
        assert_eq!(
            flagged,
            SessionState::Inspect,
            "an attached database is session state"
        );
        location2.release(attached, flagged);
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
        // A clean connection is pooled, also when it must be inspected.
        location.release(fresh, SessionState::Inspect);
        assert_eq!(location.idle_count(), 1);
    }

    #[test]
    fn a_dropped_pool_has_let_go_of_its_files() {
        let (dir, location, connection) = guest_connection();
        connection
            .execute_batch("CREATE TABLE t(a); INSERT INTO t VALUES (1)")
            .unwrap();
        location.release(connection, SessionState::Clean);
        let wal = dir.path().join("guest.db-wal");
        assert!(
            wal.exists(),
            "WAL mode keeps a -wal file while connections are open"
        );
        // Give the checkpointer time to open its own connection, so the drop
        // below has to close that one too (the assertion holds either way).
        std::thread::sleep(CHECKPOINT_EVERY * 3);
        drop(location);
        // The last connection closed folds the WAL back and removes it, before
        // the drop returned: a copy of the directory now is the whole state.
        assert!(!wal.exists(), "a connection to the file is still open");
        assert!(!dir.path().join("guest.db-shm").exists());
    }

    #[test]
    fn only_statements_that_can_leave_session_state_are_flagged() {
        let (_dir, location, connection) = guest_connection();
        let left = |sql: &str| watching_session_state(|| connection.execute_batch(sql)).1;
        let flagged = |sql: &str| left(sql) == SessionState::Inspect;
        // What requests run: tables, rows, transactions — nothing to inspect.
        assert_eq!(
            left("CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT)"),
            SessionState::Clean
        );
        assert_eq!(
            left("BEGIN IMMEDIATE; INSERT INTO t(b) VALUES ('x'); COMMIT"),
            SessionState::Clean
        );
        assert_eq!(
            left("SELECT count(*) FROM t WHERE b = 'x'"),
            SessionState::Clean
        );
        assert_eq!(left("CREATE INDEX t_b ON t(b)"), SessionState::Clean);
        // What can stay on the connection for the next request.
        assert_eq!(left("PRAGMA foreign_keys = ON"), SessionState::Discard);
        assert_eq!(left("PRAGMA main.cache_size = 10"), SessionState::Discard);
        // Reading a setting or the schema leaves the connection poolable.
        assert_eq!(left("PRAGMA foreign_keys"), SessionState::Clean);
        assert_eq!(left("PRAGMA user_version"), SessionState::Clean);
        assert_eq!(left("PRAGMA table_info(t)"), SessionState::Clean);
        assert_eq!(
            left("SELECT name FROM pragma_table_info('t')"),
            SessionState::Clean
        );
        assert!(flagged("CREATE TEMP VIEW v AS SELECT b FROM t"));
        assert!(flagged("SELECT * FROM temp.v"));
        assert!(flagged("ATTACH ':memory:' AS m"));
        assert!(flagged("DETACH m"));
        // A connection whose statements were all unflagged goes back to the
        // pool without being inspected; a flagged one is inspected, and one
        // with TEMP state left on it is closed.
        drop(connection);
        let plain = location.connect().unwrap();
        let (_, flagged) = watching_session_state(|| plain.execute_batch("SELECT 1"));
        assert_eq!(flagged, SessionState::Clean);
        location.release(plain, flagged);
        assert_eq!(location.idle_count(), 1);
        let pooled = location.connect().unwrap();
        let (_, flagged) =
            watching_session_state(|| pooled.execute_batch("CREATE TEMP TABLE x(a)"));
        location.release(pooled, flagged);
        assert_eq!(location.idle_count(), 0);
    }

    #[test]
    fn a_connection_whose_settings_a_guest_changed_is_not_pooled() {
        // Each PRAGMA once reached the next request (and other components
        // on the same label) through the pool: foreign keys off, writes
        // refused, the file locked. Spin's fresh connections carry none.
        for pragma in [
            "PRAGMA foreign_keys = OFF",
            "PRAGMA query_only = 1",
            "PRAGMA locking_mode = EXCLUSIVE",
            "PRAGMA case_sensitive_like = 1",
        ] {
            let (_dir, location, connection) = guest_connection();
            let (done, left) = watching_session_state(|| connection.execute_batch(pragma));
            done.unwrap();
            assert_eq!(left, SessionState::Discard, "{pragma}");
            // Later clean statements do not lower what the connection carries.
            let left = left.max(watching_session_state(|| connection.execute_batch("SELECT 1")).1);
            location.release(connection, left);
            assert_eq!(location.idle_count(), 0, "{pragma}: pooled");
            let next = location.connect().unwrap();
            let fresh: i64 = next
                .query_row("PRAGMA foreign_keys", [], |row| row.get(0))
                .unwrap();
            assert_eq!(fresh, open_guest_connection_foreign_keys(), "{pragma}");
            next.execute_batch("CREATE TABLE w(a); INSERT INTO w VALUES (1)")
                .unwrap_or_else(|e| panic!("{pragma}: the next connection cannot write: {e}"));
        }
    }

    /// `foreign_keys` as a fresh guest connection has it.
    fn open_guest_connection_foreign_keys() -> i64 {
        let (_dir, _location, connection) = guest_connection();
        connection
            .query_row("PRAGMA foreign_keys", [], |row| row.get(0))
            .unwrap()
    }

    #[test]
    fn a_pooled_connection_reports_no_rowid_of_its_previous_user() {
        let (_dir, location, connection) = guest_connection();
        connection
            .execute_batch("CREATE TABLE t(a); INSERT INTO t VALUES (1), (2)")
            .unwrap();
        assert_eq!(connection.last_insert_rowid(), 2);
        location.release(connection, SessionState::Clean);
        let reused = location.connect().unwrap();
        assert_eq!(location.idle_count(), 0, "the pooled connection was reused");
        assert_eq!(reused.last_insert_rowid(), 0);
        reused.execute_batch("INSERT INTO t VALUES (3)").unwrap();
        assert_eq!(reused.last_insert_rowid(), 3);
    }

    #[test]
    fn process_wide_pragmas_are_refused_and_the_host_keeps_its_memory() {
        let (_dir, _location, connection) = guest_connection();
        for pragma in [
            "PRAGMA hard_heap_limit = 3000000",
            "PRAGMA soft_heap_limit = 1000",
            "PRAGMA HARD_HEAP_LIMIT = 3000000",
            "PRAGMA temp_store_directory = '/tmp'",
            "PRAGMA data_store_directory = '/tmp'",
            "PRAGMA main.hard_heap_limit",
        ] {
            let error = connection.execute_batch(pragma).unwrap_err().to_string();
            assert!(error.contains("not authorized"), "{pragma}: {error}");
        }
        // Another SQLite connection of the process still has no heap limit.
        let other = Connection::open_in_memory().unwrap();
        let limit: i64 = other
            .query_row("PRAGMA hard_heap_limit", [], |row| row.get(0))
            .unwrap();
        assert_eq!(limit, 0);
        // Ordinary per-connection PRAGMAs still run (on a connection that is
        // then not pooled).
        connection
            .execute_batch("PRAGMA foreign_keys = OFF")
            .unwrap();
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
