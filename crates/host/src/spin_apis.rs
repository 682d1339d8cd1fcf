//! Spin's key-value, SQLite (2.0.0 and 3.0.0) and variables interfaces, and the
//! WASI drafts Spin serves on top of them: `wasi:keyvalue` (store, atomics,
//! batch) on the same stores and `wasi:config` on the component's variables.
//!
//! Every call is checked against the calling component's grants first: a label
//! the component does not list gets Spin's `access-denied`, exactly as on Spin.

use std::sync::Arc;

use anyhow::Result;
use rusqlite::types::Value as SqlValue;
use wasmtime::component::Resource;

use crate::bindings::{
    cron_types, key_value, sqlite_v2, sqlite_v3, variables, wasi_config, wasi_kv, wasi_kv_atomics,
    wasi_kv_batch,
};
use crate::instance::InstanceState;
use crate::storage::KeyValueBackend;

/// An open key-value store handed to a guest.
pub struct KeyValueStore {
    label: String,
    backend: Arc<KeyValueBackend>,
}

/// A statement's column names and rows.
type QueryRows = (Vec<String>, Vec<Vec<SqlValue>>);

/// An open SQLite connection handed to a guest (2.0.0 or 3.0.0 interface);
/// returned to its database's pool when the guest drops it or the instance ends.
pub struct SqliteConnection {
    connection: Option<rusqlite::Connection>,
    location: crate::storage::DatabaseLocation,
    /// What the guest's statements may have left on the connection (it is
    /// then inspected, or closed, instead of simply pooled again).
    prepared_session_state: std::cell::Cell<crate::storage::SessionState>,
    /// The connection's `total_changes` when this guest opened it (a pooled
    /// connection counts its previous users' changes too).
    changes_at_open: u64,
    /// Whether a transaction is open on it, counted in the instance's
    /// [`InstanceState::sqlite_transactions`].
    in_transaction: std::cell::Cell<bool>,
    transactions: Arc<std::sync::atomic::AtomicU32>,
}

impl SqliteConnection {
    fn get(&self) -> Result<&rusqlite::Connection> {
        self.connection
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("SQLite connection already released"))
    }

    /// Runs one guest statement ([`execute`]), noting whether it may have
    /// left session state on the connection.
    fn run(
        &self,
        statement: &str,
        parameters: Vec<SqlValue>,
    ) -> Result<Result<QueryRows, SqliteFailure>> {
        let connection = self.get()?;
        let (result, left) =
            crate::storage::watching_session_state(|| execute(connection, statement, parameters));
        self.prepared_session_state
            .set(self.prepared_session_state.get().max(left));
        self.note_transaction(!connection.is_autocommit());
        Ok(result)
    }
}

impl SqliteConnection {
    /// Keeps the instance's count of open transactions in step with this
    /// connection's.
    fn note_transaction(&self, open: bool) {
        use std::sync::atomic::Ordering::Relaxed;
        if self.in_transaction.replace(open) != open {
            if open {
                self.transactions.fetch_add(1, Relaxed);
            } else {
                self.transactions.fetch_sub(1, Relaxed);
            }
        }
    }
}

impl Drop for SqliteConnection {
    fn drop(&mut self) {
        // Dropping the connection ends its transaction (rolled back).
        self.note_transaction(false);
        if let Some(connection) = self.connection.take() {
            self.location
                .release(connection, self.prepared_session_state.get());
        }
    }
}

impl key_value::Host for InstanceState {}

impl key_value::HostStore for InstanceState {
    fn open(&mut self, label: String) -> Result<Result<Resource<KeyValueStore>, key_value::Error>> {
        if !self.grants.key_value_stores.contains(&label) {
            return Ok(Err(key_value::Error::AccessDenied));
        }
        let Some(backend) = self.storage.key_value.get(&label).cloned() else {
            return Ok(Err(key_value::Error::NoSuchStore));
        };
        Ok(Ok(self.table.push(KeyValueStore { label, backend })?))
    }

    fn get(
        &mut self,
        store: Resource<KeyValueStore>,
        key: String,
    ) -> Result<Result<Option<Vec<u8>>, key_value::Error>> {
        let store = self.table.get(&store)?;
        Ok(store.backend.get(&store.label, &key).map_err(kv_error))
    }

    fn set(
        &mut self,
        store: Resource<KeyValueStore>,
        key: String,
        value: Vec<u8>,
    ) -> Result<Result<(), key_value::Error>> {
        let store = self.table.get(&store)?;
        Ok(store
            .backend
            .set(&store.label, &key, &value)
            .map_err(kv_error))
    }

    fn delete(
        &mut self,
        store: Resource<KeyValueStore>,
        key: String,
    ) -> Result<Result<(), key_value::Error>> {
        let store = self.table.get(&store)?;
        Ok(store.backend.delete(&store.label, &key).map_err(kv_error))
    }

    fn exists(
        &mut self,
        store: Resource<KeyValueStore>,
        key: String,
    ) -> Result<Result<bool, key_value::Error>> {
        let store = self.table.get(&store)?;
        Ok(store.backend.exists(&store.label, &key).map_err(kv_error))
    }

    fn get_keys(
        &mut self,
        store: Resource<KeyValueStore>,
    ) -> Result<Result<Vec<String>, key_value::Error>> {
        let store = self.table.get(&store)?;
        Ok(store.backend.keys(&store.label).map_err(kv_error))
    }

    fn drop(&mut self, store: Resource<KeyValueStore>) -> Result<()> {
        self.table.delete(store)?;
        Ok(())
    }
}

fn kv_error(error: crate::storage::StorageError) -> key_value::Error {
    tracing::warn!("{error}");
    key_value::Error::Other(error.to_string())
}

/// Why a SQLite `open` or `execute` failed, before it is mapped onto whichever
/// interface version the guest called.
enum SqliteFailure {
    NoSuchDatabase,
    AccessDenied,
    Io(String),
}

impl InstanceState {
    fn open_sqlite(
        &mut self,
        database: &str,
    ) -> Result<Result<Resource<SqliteConnection>, SqliteFailure>> {
        if !self.grants.sqlite_databases.contains(database) {
            return Ok(Err(SqliteFailure::AccessDenied));
        }
        let Some(location) = self.storage.sqlite.get(database) else {
            return Ok(Err(SqliteFailure::NoSuchDatabase));
        };
        match location.connect() {
            Ok(connection) => Ok(Ok(self.table.push(SqliteConnection {
                changes_at_open: connection.total_changes(),
                connection: Some(connection),
                location: location.clone(),
                prepared_session_state: std::cell::Cell::default(),
                in_transaction: std::cell::Cell::new(false),
                transactions: self.sqlite_transactions.clone(),
            })?)),
            Err(error) => Ok(Err(SqliteFailure::Io(format!("{error:#}")))),
        }
    }
}

fn owned(value: rusqlite::types::ValueRef<'_>) -> SqlValue {
    use rusqlite::types::ValueRef;
    match value {
        ValueRef::Null => SqlValue::Null,
        ValueRef::Integer(i) => SqlValue::Integer(i),
        ValueRef::Real(r) => SqlValue::Real(r),
        ValueRef::Text(t) => SqlValue::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => SqlValue::Blob(b.to_vec()),
    }
}

/// Most bytes of query results the host buffers for one statement: Spin's
/// `MAX_HOST_BUFFERED_BYTES`. A larger result is refused with an `io` error
/// instead of exhausting host memory or trapping the guest.
const MAX_RESULT_BYTES: usize = 128 << 20;

/// What Spin counts for a value besides its text or blob bytes: the size of
/// its value type on a 64-bit host. A constant rather than a `size_of`, so the
/// limit does not move with a type's layout.
const VALUE_OVERHEAD_BYTES: usize = 32;

/// Bytes [`MAX_RESULT_BYTES`] charges for `value`, as Spin counts them.
fn counted_bytes(value: &SqlValue) -> usize {
    VALUE_OVERHEAD_BYTES
        + match value {
            SqlValue::Null | SqlValue::Integer(_) | SqlValue::Real(_) => 0,
            SqlValue::Text(text) => text.len(),
            SqlValue::Blob(blob) => blob.len(),
        }
}

/// Runs one statement with positional parameters and collects every row, up
/// to [`MAX_RESULT_BYTES`].
fn execute(
    connection: &rusqlite::Connection,
    statement: &str,
    parameters: Vec<SqlValue>,
) -> Result<QueryRows, SqliteFailure> {
    execute_within(connection, statement, parameters, MAX_RESULT_BYTES)
}

/// [`execute`] with the result limit as a parameter (tests use a small one).
fn execute_within(
    connection: &rusqlite::Connection,
    statement: &str,
    parameters: Vec<SqlValue>,
    max_result_bytes: usize,
) -> Result<QueryRows, SqliteFailure> {
    let io = |e: rusqlite::Error| SqliteFailure::Io(e.to_string());
    let mut prepared = connection.prepare_cached(statement).map_err(io)?;
    let columns: Vec<String> = prepared.column_names().map(String::from).collect();
    let mut rows = prepared
        .query(rusqlite::params_from_iter(parameters))
        .map_err(io)?;
    let mut collected = Vec::new();
    let mut total_bytes = 0usize;
    while let Some(row) = rows.next().map_err(io)? {
        let mut values = Vec::with_capacity(columns.len());
        for index in 0..columns.len() {
            let value = owned(row.get_ref(index).map_err(io)?);
            total_bytes = total_bytes.saturating_add(counted_bytes(&value));
            values.push(value);
        }
        collected.push(values);
        // Checked per row, as Spin does; stopping here (dropping `rows` resets
        // the statement) keeps what the host holds near the limit.
        if total_bytes > max_result_bytes {
            return Err(SqliteFailure::Io(format!(
                "query result exceeds limit of {max_result_bytes} bytes"
            )));
        }
    }
    Ok((columns, collected))
}

macro_rules! sqlite_value_conversions {
    ($module:ident) => {
        impl From<$module::Value> for SqlValue {
            fn from(value: $module::Value) -> Self {
                match value {
                    $module::Value::Integer(i) => SqlValue::Integer(i),
                    $module::Value::Real(r) => SqlValue::Real(r),
                    $module::Value::Text(t) => SqlValue::Text(t),
                    $module::Value::Blob(b) => SqlValue::Blob(b),
                    $module::Value::Null => SqlValue::Null,
                }
            }
        }

        impl From<SqlValue> for $module::Value {
            fn from(value: SqlValue) -> Self {
                match value {
                    SqlValue::Integer(i) => $module::Value::Integer(i),
                    SqlValue::Real(r) => $module::Value::Real(r),
                    SqlValue::Text(t) => $module::Value::Text(t),
                    SqlValue::Blob(b) => $module::Value::Blob(b),
                    SqlValue::Null => $module::Value::Null,
                }
            }
        }

        impl From<SqliteFailure> for $module::Error {
            fn from(failure: SqliteFailure) -> Self {
                match failure {
                    SqliteFailure::NoSuchDatabase => $module::Error::NoSuchDatabase,
                    SqliteFailure::AccessDenied => $module::Error::AccessDenied,
                    SqliteFailure::Io(message) => $module::Error::Io(message),
                }
            }
        }

        impl $module::Host for InstanceState {}
    };
}

sqlite_value_conversions!(sqlite_v2);
sqlite_value_conversions!(sqlite_v3);

fn query_result_v2(columns: Vec<String>, rows: Vec<Vec<SqlValue>>) -> sqlite_v2::QueryResult {
    sqlite_v2::QueryResult {
        columns,
        rows: rows
            .into_iter()
            .map(|values| sqlite_v2::RowResult {
                values: values.into_iter().map(Into::into).collect(),
            })
            .collect(),
    }
}

fn query_result_v3(columns: Vec<String>, rows: Vec<Vec<SqlValue>>) -> sqlite_v3::QueryResult {
    sqlite_v3::QueryResult {
        columns,
        rows: rows
            .into_iter()
            .map(|values| sqlite_v3::RowResult {
                values: values.into_iter().map(Into::into).collect(),
            })
            .collect(),
    }
}

impl sqlite_v2::HostConnection for InstanceState {
    fn open(
        &mut self,
        database: String,
    ) -> Result<Result<Resource<SqliteConnection>, sqlite_v2::Error>> {
        Ok(self.open_sqlite(&database)?.map_err(Into::into))
    }

    fn execute(
        &mut self,
        connection: Resource<SqliteConnection>,
        statement: String,
        parameters: Vec<sqlite_v2::Value>,
    ) -> Result<Result<sqlite_v2::QueryResult, sqlite_v2::Error>> {
        let parameters = parameters.into_iter().map(Into::into).collect();
        Ok(self
            .table
            .get(&connection)?
            .run(&statement, parameters)?
            .map(|(columns, rows)| query_result_v2(columns, rows))
            .map_err(Into::into))
    }

    fn drop(&mut self, connection: Resource<SqliteConnection>) -> Result<()> {
        self.table.delete(connection)?;
        Ok(())
    }
}

impl sqlite_v3::HostConnection for InstanceState {
    fn open(
        &mut self,
        database: String,
    ) -> Result<Result<Resource<SqliteConnection>, sqlite_v3::Error>> {
        Ok(self.open_sqlite(&database)?.map_err(Into::into))
    }

    fn execute(
        &mut self,
        connection: Resource<SqliteConnection>,
        statement: String,
        parameters: Vec<sqlite_v3::Value>,
    ) -> Result<Result<sqlite_v3::QueryResult, sqlite_v3::Error>> {
        let parameters = parameters.into_iter().map(Into::into).collect();
        Ok(self
            .table
            .get(&connection)?
            .run(&statement, parameters)?
            .map(|(columns, rows)| query_result_v3(columns, rows))
            .map_err(Into::into))
    }

    fn last_insert_rowid(&mut self, connection: Resource<SqliteConnection>) -> Result<i64> {
        // Reset to 0 when the connection was handed out (`DatabaseLocation::connect`).
        Ok(self.table.get(&connection)?.get()?.last_insert_rowid())
    }

    fn changes(&mut self, connection: Resource<SqliteConnection>) -> Result<u64> {
        // `changes` counts the connection's last INSERT, UPDATE or DELETE:
        // the guest's own once its statements changed any row, else 0 (a
        // pooled connection would report its previous user's).
        let sqlite = self.table.get(&connection)?;
        let conn = sqlite.get()?;
        Ok(if conn.total_changes() != sqlite.changes_at_open {
            conn.changes()
        } else {
            0
        })
    }

    fn drop(&mut self, connection: Resource<SqliteConnection>) -> Result<()> {
        self.table.delete(connection)?;
        Ok(())
    }
}

impl variables::Host for InstanceState {
    fn get(&mut self, name: String) -> Result<Result<String, variables::Error>> {
        if !is_valid_variable_name(&name) {
            return Ok(Err(variables::Error::InvalidName(format!(
                "invalid variable name {name:?}: use lowercase letters, digits and underscores, starting with a letter"
            ))));
        }
        Ok(match self.grants.variables.get(&name) {
            Some(value) => Ok(value.clone()),
            None => Err(variables::Error::Undefined(format!(
                "no variable for {:?}.{name:?}",
                self.grants.id
            ))),
        })
    }
}

/// Spin's rule for variable names as guests ask for them.
fn is_valid_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl cron_types::Host for InstanceState {}

/// Spin's limit on what one key-value or SQLite call may return (128 MiB).
const MAX_KV_RESULT_BYTES: usize = 128 << 20;

/// A compare-and-swap handle (`wasi:keyvalue/atomics.cas`): the key and the
/// value `current` last read, which `swap` requires to be unchanged.
pub struct KeyValueCas {
    label: String,
    key: String,
    backend: Arc<KeyValueBackend>,
    seen: Option<Vec<u8>>,
}

fn wasi_kv_error(error: crate::storage::StorageError) -> wasi_kv::Error {
    tracing::warn!("{error}");
    wasi_kv::Error::Other(error.to_string())
}

impl wasi_kv::Host for InstanceState {
    fn open(
        &mut self,
        identifier: String,
    ) -> Result<Result<Resource<KeyValueStore>, wasi_kv::Error>> {
        if !self.grants.key_value_stores.contains(&identifier) {
            return Ok(Err(wasi_kv::Error::AccessDenied));
        }
        let Some(backend) = self.storage.key_value.get(&identifier).cloned() else {
            return Ok(Err(wasi_kv::Error::NoSuchStore));
        };
        Ok(Ok(self.table.push(KeyValueStore {
            label: identifier,
            backend,
        })?))
    }
}

impl wasi_kv::HostBucket for InstanceState {
    fn get(
        &mut self,
        bucket: Resource<KeyValueStore>,
        key: String,
    ) -> Result<Result<Option<Vec<u8>>, wasi_kv::Error>> {
        let store = self.table.get(&bucket)?;
        Ok(store.backend.get(&store.label, &key).map_err(wasi_kv_error))
    }

    fn set(
        &mut self,
        bucket: Resource<KeyValueStore>,
        key: String,
        value: Vec<u8>,
    ) -> Result<Result<(), wasi_kv::Error>> {
        let store = self.table.get(&bucket)?;
        Ok(store
            .backend
            .set(&store.label, &key, &value)
            .map_err(wasi_kv_error))
    }

    fn delete(
        &mut self,
        bucket: Resource<KeyValueStore>,
        key: String,
    ) -> Result<Result<(), wasi_kv::Error>> {
        let store = self.table.get(&bucket)?;
        Ok(store
            .backend
            .delete(&store.label, &key)
            .map_err(wasi_kv_error))
    }

    fn exists(
        &mut self,
        bucket: Resource<KeyValueStore>,
        key: String,
    ) -> Result<Result<bool, wasi_kv::Error>> {
        let store = self.table.get(&bucket)?;
        Ok(store
            .backend
            .exists(&store.label, &key)
            .map_err(wasi_kv_error))
    }

    fn list_keys(
        &mut self,
        bucket: Resource<KeyValueStore>,
        cursor: Option<String>,
    ) -> Result<Result<wasi_kv::KeyResponse, wasi_kv::Error>> {
        // Spin returns every key at once and refuses cursors.
        if cursor.is_some() {
            return Ok(Err(wasi_kv::Error::Other(
                "list_keys: cursor not supported".to_owned(),
            )));
        }
        let store = self.table.get(&bucket)?;
        Ok(store
            .backend
            .keys(&store.label)
            .map(|keys| wasi_kv::KeyResponse { keys, cursor: None })
            .map_err(wasi_kv_error))
    }

    fn drop(&mut self, bucket: Resource<KeyValueStore>) -> Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl wasi_kv_batch::Host for InstanceState {
    fn get_many(
        &mut self,
        bucket: Resource<KeyValueStore>,
        keys: Vec<String>,
    ) -> Result<Result<Vec<(String, Option<Vec<u8>>)>, wasi_kv::Error>> {
        let store = self.table.get(&bucket)?;
        Ok(store
            .backend
            .get_many(&store.label, &keys, MAX_KV_RESULT_BYTES)
            .map_err(wasi_kv_error))
    }

    fn set_many(
        &mut self,
        bucket: Resource<KeyValueStore>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> Result<Result<(), wasi_kv::Error>> {
        let store = self.table.get(&bucket)?;
        Ok(store
            .backend
            .set_many(&store.label, &key_values)
            .map_err(wasi_kv_error))
    }

    fn delete_many(
        &mut self,
        bucket: Resource<KeyValueStore>,
        keys: Vec<String>,
    ) -> Result<Result<(), wasi_kv::Error>> {
        let store = self.table.get(&bucket)?;
        Ok(store
            .backend
            .delete_many(&store.label, &keys)
            .map_err(wasi_kv_error))
    }
}

impl wasi_kv_atomics::Host for InstanceState {
    fn increment(
        &mut self,
        bucket: Resource<KeyValueStore>,
        key: String,
        delta: i64,
    ) -> Result<Result<i64, wasi_kv::Error>> {
        let store = self.table.get(&bucket)?;
        Ok(store
            .backend
            .increment(&store.label, &key, delta)
            .map_err(wasi_kv_error))
    }

    fn swap(
        &mut self,
        cas: Resource<KeyValueCas>,
        value: Vec<u8>,
    ) -> Result<Result<(), wasi_kv_atomics::CasError>> {
        let handle = self.table.get(&cas)?;
        let swapped = handle.backend.compare_and_swap(
            &handle.label,
            &handle.key,
            handle.seen.as_deref(),
            &value,
        );
        match swapped {
            Ok(true) => {
                self.table.delete(cas)?;
                Ok(Ok(()))
            }
            // The guest gets its handle back to read the current value and retry.
            Ok(false) => Ok(Err(wasi_kv_atomics::CasError::CasFailed(cas))),
            Err(error) => {
                self.table.delete(cas)?;
                Ok(Err(wasi_kv_atomics::CasError::StoreError(wasi_kv_error(
                    error,
                ))))
            }
        }
    }
}

impl wasi_kv_atomics::HostCas for InstanceState {
    fn new(
        &mut self,
        bucket: Resource<KeyValueStore>,
        key: String,
    ) -> Result<Result<Resource<KeyValueCas>, wasi_kv::Error>> {
        let store = self.table.get(&bucket)?;
        let handle = KeyValueCas {
            label: store.label.clone(),
            backend: store.backend.clone(),
            key,
            seen: None,
        };
        Ok(Ok(self.table.push(handle)?))
    }

    fn current(
        &mut self,
        cas: Resource<KeyValueCas>,
    ) -> Result<Result<Option<Vec<u8>>, wasi_kv::Error>> {
        let handle = self.table.get_mut(&cas)?;
        match handle.backend.get(&handle.label, &handle.key) {
            Ok(value) => {
                handle.seen.clone_from(&value);
                Ok(Ok(value))
            }
            Err(error) => Ok(Err(wasi_kv_error(error))),
        }
    }

    fn drop(&mut self, cas: Resource<KeyValueCas>) -> Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}

impl wasi_config::Host for InstanceState {
    fn get(&mut self, key: String) -> Result<Result<Option<String>, wasi_config::Error>> {
        // As Spin: an invalid or undefined name is simply absent.
        if !is_valid_variable_name(&key) {
            return Ok(Ok(None));
        }
        Ok(Ok(self.grants.variables.get(&key).cloned()))
    }

    fn get_all(&mut self) -> Result<Result<Vec<(String, String)>, wasi_config::Error>> {
        Ok(Ok(self
            .grants
            .variables
            .iter()
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variable_names_follow_spin_rules() {
        assert!(is_valid_variable_name("api_key2"));
        assert!(!is_valid_variable_name("API_KEY"));
        assert!(!is_valid_variable_name("2key"));
        assert!(!is_valid_variable_name(""));
        assert!(!is_valid_variable_name("a-b"));
    }

    #[test]
    fn execute_round_trips_every_value_type() {
        let connection = rusqlite::Connection::open_in_memory().unwrap();
        let (_, rows) = execute(
            &connection,
            "SELECT ?1, ?2, ?3, ?4, ?5",
            vec![
                SqlValue::Integer(7),
                SqlValue::Real(1.5),
                SqlValue::Text("t".into()),
                SqlValue::Blob(vec![1, 2]),
                SqlValue::Null,
            ],
        )
        .ok()
        .unwrap();
        assert_eq!(
            rows,
            vec![vec![
                SqlValue::Integer(7),
                SqlValue::Real(1.5),
                SqlValue::Text("t".into()),
                SqlValue::Blob(vec![1, 2]),
                SqlValue::Null
            ]]
        );
    }

    #[test]
    fn execute_reports_sql_errors_as_io() {
        let connection = rusqlite::Connection::open_in_memory().unwrap();
        let failure = execute(&connection, "SELEC nonsense", vec![])
            .err()
            .unwrap();
        assert!(matches!(failure, SqliteFailure::Io(message) if message.contains("syntax")));
    }

    #[test]
    fn results_up_to_the_limit_are_returned() {
        let connection = rusqlite::Connection::open_in_memory().unwrap();
        // Two rows of (32 + 8) + 32 bytes: 144 in all.
        let (_, rows) = execute_within(
            &connection,
            "SELECT zeroblob(8), NULL UNION ALL SELECT 'abcdefgh', 1",
            vec![],
            144,
        )
        .ok()
        .unwrap();
        assert_eq!(rows.len(), 2);
    }

    #[test]
    fn results_over_the_limit_are_a_clean_io_error() {
        let connection = rusqlite::Connection::open_in_memory().unwrap();
        let failure = execute_within(
            &connection,
            "SELECT zeroblob(8), NULL UNION ALL SELECT 'abcdefgh', 1",
            vec![],
            143,
        )
        .err()
        .unwrap();
        assert!(
            matches!(&failure, SqliteFailure::Io(message) if message == "query result exceeds limit of 143 bytes")
        );
        // The connection is still usable afterwards.
        let (_, rows) = execute(&connection, "SELECT 1", vec![]).ok().unwrap();
        assert_eq!(rows, vec![vec![SqlValue::Integer(1)]]);
    }

    #[test]
    fn the_limit_is_spins_and_stops_reading_rows() {
        assert_eq!(MAX_RESULT_BYTES, 134_217_728);
        let connection = rusqlite::Connection::open_in_memory().unwrap();
        // An endless result: only a bounded error may come back.
        let failure = execute_within(
            &connection,
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT randomblob(1024) FROM n",
            vec![],
            1 << 20,
        )
        .err()
        .unwrap();
        assert!(
            matches!(&failure, SqliteFailure::Io(message) if message == "query result exceeds limit of 1048576 bytes")
        );
    }

    #[test]
    fn guest_sql_cannot_reach_other_files() {
        let dir = tempfile::tempdir().unwrap();
        let location = crate::storage::DatabaseLocation::file(dir.path().join("guest.db"));
        let connection = location.connect().unwrap();
        let target = dir.path().join("escape.db");
        let target_sql = target.to_str().unwrap().replace('\'', "''");
        let io_message = |sql: &str| match execute(&connection, sql, vec![]) {
            Err(SqliteFailure::Io(message)) => message,
            Err(_) => panic!("{sql}: not an io error"),
            Ok(_) => panic!("{sql}: succeeded"),
        };
        assert_eq!(
            io_message(&format!("ATTACH '{target_sql}' AS x")),
            "not authorized"
        );
        let (head, tail) = target_sql.split_at(3);
        assert_eq!(
            io_message(&format!("ATTACH '{head}' || '{tail}' AS x")),
            "not authorized"
        );
        let vacuum_into = io_message(&format!("VACUUM INTO '{target_sql}'"));
        assert!(vacuum_into.contains("authoriz"), "{vacuum_into}");
        assert!(!target.exists());
        for allowed in [
            "ATTACH '' AS t",
            "ATTACH ':memory:' AS m",
            "DETACH t",
            "DETACH m",
            "VACUUM",
        ] {
            assert!(execute(&connection, allowed, vec![]).is_ok(), "{allowed}");
        }
    }
}
