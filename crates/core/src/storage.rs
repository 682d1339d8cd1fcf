//! The storage seam: the two traits through which the core reaches storage,
//! each implemented once for Spin (`dol-spin-platform`) and once for tests.
//!
//! - [`SqlExecutor`] runs one SQL statement (Spin's SQLite in the components,
//!   a real in-memory SQLite in the core's tests); [`run`] names the statement
//!   in its error and [`in_transaction`] wraps a body in `BEGIN IMMEDIATE`.
//! - [`KeyValue`] is a key-value store with Spin's `key-value` semantics (get,
//!   set, delete; no compare-and-swap), which is all real Spin guarantees.
//!
//! Nothing here performs I/O itself.

use std::collections::BTreeMap;

/// A value bound to or read from a SQL statement (SQLite's storage classes).
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    /// SQL `NULL`.
    Null,
    /// A 64-bit signed integer.
    Integer(i64),
    /// A 64-bit float.
    Real(f64),
    /// UTF-8 text.
    Text(String),
    /// Raw bytes.
    Blob(Vec<u8>),
}

impl SqlValue {
    /// The integer inside, if this is an [`SqlValue::Integer`].
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Self::Integer(i) => Some(*i),
            _ => None,
        }
    }

    /// The text inside, if this is an [`SqlValue::Text`].
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Text(s) => Some(s),
            _ => None,
        }
    }
}

/// Runs one SQL statement with positional (`?`) parameters.
///
/// Implemented over Spin's SQLite connection in the components. Errors are
/// plain strings: the runner only wraps and reports them.
pub trait SqlExecutor {
    /// Executes exactly one statement and returns its result rows (empty for
    /// statements that return none).
    fn execute(&mut self, sql: &str, params: &[SqlValue]) -> Result<Vec<Vec<SqlValue>>, String>;
}

/// A SQL statement that failed, with the database's message (internals:
/// log it, do not send it to clients).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{sql}: {message}")]
pub struct StatementError {
    /// The statement.
    pub sql: String,
    /// The database's message.
    pub message: String,
}

/// Runs one statement, naming it in the error.
pub fn run<E: SqlExecutor + ?Sized>(
    db: &mut E,
    sql: &str,
    params: &[SqlValue],
) -> Result<Vec<Vec<SqlValue>>, StatementError> {
    db.execute(sql, params).map_err(|message| StatementError {
        sql: sql.to_owned(),
        message,
    })
}

/// Runs `body` inside `BEGIN IMMEDIATE` … `COMMIT` (the write lock is taken
/// first, so concurrent read-modify-write sequences serialise) and rolls
/// back on any error: the body's own (so a refusal half-way writes nothing)
/// or a failed `COMMIT`.
pub fn in_transaction<E: SqlExecutor, T, Er: From<StatementError>>(
    db: &mut E,
    body: impl FnOnce(&mut E) -> Result<T, Er>,
) -> Result<T, Er> {
    run(db, "BEGIN IMMEDIATE", &[])?;
    let result = body(db).and_then(|value| {
        run(db, "COMMIT", &[])?;
        Ok(value)
    });
    if result.is_err() {
        // The original error matters more than a failed rollback, and SQLite
        // ends the transaction by itself when the connection is reused.
        let _ = db.execute("ROLLBACK", &[]);
    }
    result
}

/// A key-value store as Spin's `key-value` interface serves it: get, set and
/// delete of byte values, with no atomic compare-and-swap. Errors are plain
/// strings; callers wrap them in their own typed errors.
pub trait KeyValue {
    /// The value of `key`, if any.
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, String>;
    /// Sets `key` to `value`.
    fn set(&mut self, key: &str, value: &[u8]) -> Result<(), String>;
    /// Removes `key` (no error when absent).
    fn delete(&mut self, key: &str) -> Result<(), String>;
}

/// A [`KeyValue`] in memory, for tests and for callers that need a scratch
/// store. `fail_writes` makes every `set` fail (a store that went away).
#[derive(Debug, Default, Clone)]
pub struct MemoryKeyValue {
    /// The stored entries.
    pub entries: BTreeMap<String, Vec<u8>>,
    /// When true, `set` and `delete` fail with "store unavailable".
    pub fail_writes: bool,
}

impl KeyValue for MemoryKeyValue {
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, String> {
        Ok(self.entries.get(key).cloned())
    }

    fn set(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
        if self.fail_writes {
            return Err("store unavailable".to_owned());
        }
        self.entries.insert(key.to_owned(), value.to_vec());
        Ok(())
    }

    fn delete(&mut self, key: &str) -> Result<(), String> {
        if self.fail_writes {
            return Err("store unavailable".to_owned());
        }
        self.entries.remove(key);
        Ok(())
    }
}
