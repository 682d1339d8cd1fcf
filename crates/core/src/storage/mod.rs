//! The storage seam: the two traits through which the core reaches storage,
//! each implemented once for Spin (`dol-spin-platform`) and once for tests.
//!
//! - [`SqlExecutor`] runs one SQL statement (Spin's SQLite in the components,
//!   a real in-memory SQLite in the core's tests); [`run`] names the statement
//!   in its error and [`in_transaction`] wraps a body in `BEGIN IMMEDIATE`
//!   ([`in_row_locked_transaction`] in [`BEGIN_ROW_LOCKED`] for the hot
//!   path's transactions, which lock the rows they change themselves).
//! - [`KeyValue`] is a key-value store with Spin's `key-value` semantics (get,
//!   set, delete; no compare-and-swap), which is all real Spin guarantees.
//!
//! Nothing here performs I/O itself.

pub mod postgres;

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

impl From<i64> for SqlValue {
    fn from(n: i64) -> Self {
        Self::Integer(n)
    }
}

impl From<f64> for SqlValue {
    fn from(r: f64) -> Self {
        Self::Real(r)
    }
}

impl From<&str> for SqlValue {
    fn from(s: &str) -> Self {
        Self::Text(s.to_owned())
    }
}

impl From<String> for SqlValue {
    fn from(s: String) -> Self {
        Self::Text(s)
    }
}

impl<T: Into<SqlValue>> From<Option<T>> for SqlValue {
    fn from(value: Option<T>) -> Self {
        value.map_or(Self::Null, Into::into)
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
    transaction(db, "BEGIN IMMEDIATE", body)
}

/// Runs `body` between `begin` and `COMMIT`, rolling back on any error.
fn transaction<E: SqlExecutor, T, Er: From<StatementError>>(
    db: &mut E,
    begin: &str,
    body: impl FnOnce(&mut E) -> Result<T, Er>,
) -> Result<T, Er> {
    run(db, begin, &[])?;
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

/// How a transaction that locks the rows it read-modify-writes begins (see
/// [`in_row_locked_transaction`]). On SQLite it is `BEGIN IMMEDIATE` (the
/// comment is only a comment: one file has one writer anyway); on
/// PostgreSQL it takes the write lock *shared* ([`postgres::statements`]),
/// so such transactions run side by side and wait only for each other's
/// rows, and for the exclusive transactions (`BEGIN IMMEDIATE`: migrations,
/// the usage fold, admin changes), which wait for all of them.
pub const BEGIN_ROW_LOCKED: &str = "BEGIN IMMEDIATE /* row-locked */";

/// [`in_transaction`] for a body whose every read-modify-write locks its row
/// before reading it (an upsert with `RETURNING` that reads the row it
/// locked) and whose other writes are single atomic statements (inserts,
/// additive upserts): it begins with [`BEGIN_ROW_LOCKED`], so on PostgreSQL
/// two such transactions serialise only when they touch the same row. A
/// body that reads a row and writes it back without locking it first must
/// use [`in_transaction`].
pub fn in_row_locked_transaction<E: SqlExecutor, T, Er: From<StatementError>>(
    db: &mut E,
    body: impl FnOnce(&mut E) -> Result<T, Er>,
) -> Result<T, Er> {
    transaction(db, BEGIN_ROW_LOCKED, body)
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

/// A [`KeyValue`] with the atomic operations of `wasi:keyvalue/atomics`
/// (which Spin serves for the same stores): an exact counter and
/// compare-and-swap. A counter's stored bytes differ by backend (Spin's
/// SQLite store keeps 8 little-endian bytes, its Redis store a decimal
/// string), so a counter is read only through [`increment`](Self::increment)
/// (with a delta of 0), never with `get`.
pub trait AtomicKeyValue: KeyValue {
    /// Adds `delta` to the counter at `key` (an absent key counts from 0)
    /// and returns its new value, atomically: concurrent increments all count.
    fn increment(&mut self, key: &str, delta: i64) -> Result<i64, String>;
    /// Sets `key` to `value` only if it still holds `expected` (`None`: the
    /// key must still be absent); `Ok(false)` when it changed in between.
    fn compare_and_swap(
        &mut self,
        key: &str,
        expected: Option<&[u8]>,
        value: &[u8],
    ) -> Result<bool, String>;
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

impl AtomicKeyValue for MemoryKeyValue {
    fn increment(&mut self, key: &str, delta: i64) -> Result<i64, String> {
        if self.fail_writes {
            return Err("store unavailable".to_owned());
        }
        // Spin's SQLite layout: 8 little-endian bytes.
        let current = match self.entries.get(key) {
            None => 0,
            Some(bytes) => i64::from_le_bytes(
                <[u8; 8]>::try_from(bytes.as_slice())
                    .map_err(|_| format!("{key} does not hold a counter"))?,
            ),
        };
        let new = current.wrapping_add(delta);
        self.entries
            .insert(key.to_owned(), new.to_le_bytes().to_vec());
        Ok(new)
    }

    fn compare_and_swap(
        &mut self,
        key: &str,
        expected: Option<&[u8]>,
        value: &[u8],
    ) -> Result<bool, String> {
        if self.fail_writes {
            return Err("store unavailable".to_owned());
        }
        if self.entries.get(key).map(Vec::as_slice) != expected {
            return Ok(false);
        }
        self.entries.insert(key.to_owned(), value.to_vec());
        Ok(true)
    }
}

/// A column of a result row that is missing or does not hold the type the
/// reader expects (a schema change, or a row written by something else).
/// Internals: log it, do not send it to clients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{table}.{column}: expected {expected}")]
pub struct ColumnError {
    /// The table (or result) the row came from.
    pub table: &'static str,
    /// The column, by name.
    pub column: &'static str,
    /// What the reader expected, e.g. `integer` or `text or NULL`.
    pub expected: &'static str,
}

/// Checked, typed access to one result row: every getter takes the
/// column's position and its name, and a missing column or a value of the
/// wrong type is a [`ColumnError`] naming the column (never a panic).
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    table: &'static str,
    values: &'a [SqlValue],
}

impl<'a> Row<'a> {
    /// The row `values` read from `table`.
    pub fn new(table: &'static str, values: &'a [SqlValue]) -> Self {
        Self { table, values }
    }

    /// The error for `column` not holding `expected` (also for the caller's
    /// own checks, such as an enum stored as text).
    pub fn error(&self, column: &'static str, expected: &'static str) -> ColumnError {
        ColumnError {
            table: self.table,
            column,
            expected,
        }
    }

    fn value(
        &self,
        idx: usize,
        column: &'static str,
        expected: &'static str,
    ) -> Result<&'a SqlValue, ColumnError> {
        self.values
            .get(idx)
            .ok_or_else(|| self.error(column, expected))
    }

    /// An integer.
    pub fn int(&self, idx: usize, column: &'static str) -> Result<i64, ColumnError> {
        const EXPECTED: &str = "integer";
        match self.value(idx, column, EXPECTED)? {
            SqlValue::Integer(n) => Ok(*n),
            _ => Err(self.error(column, EXPECTED)),
        }
    }

    /// An integer or `NULL`.
    pub fn opt_int(&self, idx: usize, column: &'static str) -> Result<Option<i64>, ColumnError> {
        const EXPECTED: &str = "integer or NULL";
        match self.value(idx, column, EXPECTED)? {
            SqlValue::Null => Ok(None),
            SqlValue::Integer(n) => Ok(Some(*n)),
            _ => Err(self.error(column, EXPECTED)),
        }
    }

    /// A non-negative integer (a count, a price, a Unix time).
    pub fn uint(&self, idx: usize, column: &'static str) -> Result<u64, ColumnError> {
        const EXPECTED: &str = "non-negative integer";
        match self.value(idx, column, EXPECTED)? {
            SqlValue::Integer(n) => u64::try_from(*n).map_err(|_| self.error(column, EXPECTED)),
            _ => Err(self.error(column, EXPECTED)),
        }
    }

    /// A non-negative integer or `NULL`.
    pub fn opt_uint(&self, idx: usize, column: &'static str) -> Result<Option<u64>, ColumnError> {
        const EXPECTED: &str = "non-negative integer or NULL";
        match self.value(idx, column, EXPECTED)? {
            SqlValue::Null => Ok(None),
            SqlValue::Integer(n) => u64::try_from(*n)
                .map(Some)
                .map_err(|_| self.error(column, EXPECTED)),
            _ => Err(self.error(column, EXPECTED)),
        }
    }

    /// A number (SQLite hands back a `REAL` column's whole values, and
    /// integer aggregates, as integers).
    pub fn real(&self, idx: usize, column: &'static str) -> Result<f64, ColumnError> {
        const EXPECTED: &str = "real";
        match self.value(idx, column, EXPECTED)? {
            SqlValue::Real(r) => Ok(*r),
            SqlValue::Integer(n) => Ok(*n as f64),
            _ => Err(self.error(column, EXPECTED)),
        }
    }

    /// A number or `NULL`.
    pub fn opt_real(&self, idx: usize, column: &'static str) -> Result<Option<f64>, ColumnError> {
        const EXPECTED: &str = "real or NULL";
        match self.value(idx, column, EXPECTED)? {
            SqlValue::Null => Ok(None),
            SqlValue::Real(r) => Ok(Some(*r)),
            SqlValue::Integer(n) => Ok(Some(*n as f64)),
            _ => Err(self.error(column, EXPECTED)),
        }
    }

    /// Text.
    pub fn text(&self, idx: usize, column: &'static str) -> Result<&'a str, ColumnError> {
        const EXPECTED: &str = "text";
        match self.value(idx, column, EXPECTED)? {
            SqlValue::Text(t) => Ok(t),
            _ => Err(self.error(column, EXPECTED)),
        }
    }

    /// Text or `NULL`.
    pub fn opt_text(
        &self,
        idx: usize,
        column: &'static str,
    ) -> Result<Option<&'a str>, ColumnError> {
        const EXPECTED: &str = "text or NULL";
        match self.value(idx, column, EXPECTED)? {
            SqlValue::Null => Ok(None),
            SqlValue::Text(t) => Ok(Some(t)),
            _ => Err(self.error(column, EXPECTED)),
        }
    }

    /// A boolean stored as an integer (0 is false, anything else true).
    pub fn bool(&self, idx: usize, column: &'static str) -> Result<bool, ColumnError> {
        const EXPECTED: &str = "integer 0 or 1";
        match self.value(idx, column, EXPECTED)? {
            SqlValue::Integer(n) => Ok(*n != 0),
            _ => Err(self.error(column, EXPECTED)),
        }
    }

    /// A JSON document stored as text, decoded into `T`.
    pub fn json<T: serde::de::DeserializeOwned>(
        &self,
        idx: usize,
        column: &'static str,
    ) -> Result<T, ColumnError> {
        const EXPECTED: &str = "JSON text of the expected shape";
        let text = match self.value(idx, column, EXPECTED)? {
            SqlValue::Text(t) => t,
            _ => return Err(self.error(column, EXPECTED)),
        };
        serde_json::from_str(text).map_err(|_| self.error(column, EXPECTED))
    }
}

#[cfg(test)]
mod row_tests {
    use super::{ColumnError, Row, SqlValue};

    #[test]
    fn getters_check_the_type_and_name_the_column() {
        let values = [
            SqlValue::Integer(7),
            SqlValue::Null,
            SqlValue::Text("x".into()),
            SqlValue::Real(1.5),
            SqlValue::Integer(-1),
        ];
        let row = Row::new("t", &values);
        assert_eq!(row.int(0, "a"), Ok(7));
        assert_eq!(row.uint(0, "a"), Ok(7));
        assert_eq!(row.real(0, "a"), Ok(7.0));
        assert_eq!(row.bool(0, "a"), Ok(true));
        assert_eq!(row.opt_int(1, "b"), Ok(None));
        assert_eq!(row.opt_text(1, "b"), Ok(None));
        assert_eq!(row.opt_real(1, "b"), Ok(None));
        assert_eq!(row.text(2, "c"), Ok("x"));
        assert_eq!(row.opt_real(3, "d"), Ok(Some(1.5)));
        fn wrong<T>(column: &'static str, expected: &'static str) -> Result<T, ColumnError> {
            Err(ColumnError {
                table: "t",
                column,
                expected,
            })
        }
        assert_eq!(row.int(2, "c"), wrong("c", "integer"));
        assert_eq!(row.uint(4, "e"), wrong("e", "non-negative integer"));
        assert_eq!(row.real(2, "c"), wrong("c", "real"));
        assert_eq!(row.text(1, "b"), wrong("b", "text"));
        // A column the statement no longer selects is an error, not a panic.
        assert_eq!(row.int(9, "gone"), wrong("gone", "integer"));
        assert_eq!(
            row.json::<Vec<String>>(2, "c"),
            wrong("c", "JSON text of the expected shape")
        );
        assert_eq!(
            ColumnError {
                table: "models",
                column: "input_price",
                expected: "integer or NULL"
            }
            .to_string(),
            "models.input_price: expected integer or NULL"
        );
    }
}
