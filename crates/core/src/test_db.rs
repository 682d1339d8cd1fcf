//! The database behind every store test: a real in-memory SQLite (rusqlite)
//! by default, or — when `DOL_TEST_POSTGRES_URL` names a PostgreSQL server —
//! a fresh schema on that server, reached through the PostgreSQL dialect
//! ([`crate::storage::postgres`]). `scripts/test` runs the core's tests
//! once for each, so every store test holds on both backends.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::migrate;
use crate::storage::{SqlExecutor, SqlValue, postgres as dialect};

/// The variable naming the PostgreSQL server the store tests use instead of
/// SQLite (e.g. `postgres://postgres@127.0.0.1:5432/postgres`).
pub(crate) const POSTGRES_URL_VARIABLE: &str = "DOL_TEST_POSTGRES_URL";

/// [`SqlExecutor`] over one of the two backends, optionally failing the
/// statements that contain a given text (to test rollbacks).
pub(crate) struct TestDb {
    backend: Backend,
    pub(crate) fail_on: Option<&'static str>,
}

enum Backend {
    Sqlite(rusqlite::Connection),
    Postgres(Box<postgres::Client>),
}

impl TestDb {
    /// Whether the tests run on PostgreSQL.
    pub(crate) fn on_postgres() -> bool {
        std::env::var(POSTGRES_URL_VARIABLE).is_ok_and(|url| !url.is_empty())
    }

    /// A test database over an existing SQLite connection.
    pub(crate) fn sqlite(conn: rusqlite::Connection) -> Self {
        Self {
            backend: Backend::Sqlite(conn),
            fail_on: None,
        }
    }

    /// Runs one statement, panicking on error (test set-up).
    pub(crate) fn run(&mut self, sql: &str, params: &[SqlValue]) -> Vec<Vec<SqlValue>> {
        self.execute(sql, params)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Stores a value of the wrong type with `sql` (a corruption test).
    /// SQLite stores it and this returns true; PostgreSQL's column types
    /// refuse it, which is asserted, and this returns false: the reader's
    /// check for that corruption cannot be reached there.
    pub(crate) fn corrupt(&mut self, sql: &str) -> bool {
        match self.backend {
            Backend::Sqlite(_) => {
                self.run(sql, &[]);
                true
            }
            Backend::Postgres(_) => {
                assert!(
                    self.execute(sql, &[]).is_err(),
                    "PostgreSQL stored a value of the wrong type: {sql}"
                );
                false
            }
        }
    }

    /// The integer in the first column of the first row of `sql`.
    pub(crate) fn int(&mut self, sql: &str, params: &[SqlValue]) -> i64 {
        match self.run(sql, params).first().and_then(|row| row.first()) {
            Some(SqlValue::Integer(n)) => *n,
            other => panic!("{sql}: expected an integer, got {other:?}"),
        }
    }
}

fn to_sqlite(v: &SqlValue) -> rusqlite::types::Value {
    use rusqlite::types::Value as V;
    match v {
        SqlValue::Null => V::Null,
        SqlValue::Integer(i) => V::Integer(*i),
        SqlValue::Real(r) => V::Real(*r),
        SqlValue::Text(t) => V::Text(t.clone()),
        SqlValue::Blob(b) => V::Blob(b.clone()),
    }
}

fn from_sqlite(v: rusqlite::types::ValueRef<'_>) -> SqlValue {
    use rusqlite::types::ValueRef as V;
    match v {
        V::Null => SqlValue::Null,
        V::Integer(i) => SqlValue::Integer(i),
        V::Real(r) => SqlValue::Real(r),
        V::Text(t) => SqlValue::Text(String::from_utf8_lossy(t).into_owned()),
        V::Blob(b) => SqlValue::Blob(b.to_vec()),
    }
}

fn sqlite_execute(
    conn: &rusqlite::Connection,
    sql: &str,
    params: &[SqlValue],
) -> Result<Vec<Vec<SqlValue>>, String> {
    let mut stmt = conn.prepare(sql).map_err(|e| e.to_string())?;
    let columns = stmt.column_count();
    let params: Vec<rusqlite::types::Value> = params.iter().map(to_sqlite).collect();
    let mut rows = stmt
        .query(rusqlite::params_from_iter(params))
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(|e| e.to_string())? {
        let mut values = Vec::with_capacity(columns);
        for i in 0..columns {
            values.push(from_sqlite(row.get_ref(i).map_err(|e| e.to_string())?));
        }
        out.push(values);
    }
    Ok(out)
}

fn postgres_execute(
    client: &mut postgres::Client,
    sql: &str,
    params: &[SqlValue],
) -> Result<Vec<Vec<SqlValue>>, String> {
    use postgres::types::ToSql;
    let bound: Vec<Box<dyn ToSql + Sync>> = params
        .iter()
        .map(|p| -> Box<dyn ToSql + Sync> {
            match p {
                SqlValue::Null => Box::new(AnyNull),
                SqlValue::Integer(i) => Box::new(*i),
                SqlValue::Real(r) => Box::new(*r),
                SqlValue::Text(t) => Box::new(t.clone()),
                SqlValue::Blob(b) => Box::new(b.clone()),
            }
        })
        .collect();
    let mut out = Vec::new();
    for statement in dialect::statements(sql, params) {
        // Only the parameters the statement names are bound (`BEGIN` and
        // the lock take none).
        let refs: Vec<&(dyn ToSql + Sync)> = if statement.sql.contains('$') {
            bound.iter().map(|b| b.as_ref()).collect()
        } else {
            Vec::new()
        };
        let error = |e: postgres::Error| match e.as_db_error() {
            Some(db) => format!("{}: {}", db.code().code(), db.message()),
            None => e.to_string(),
        };
        // As the components do over spin:postgres: commands through
        // `execute`, wrapped row statements through `query`.
        out = if statement.returns_rows {
            let rows = client.query(statement.sql.as_str(), &refs).map_err(error)?;
            dialect::rows_of(rows.iter().map(postgres_row).collect::<Result<_, _>>()?)
        } else {
            client
                .execute(statement.sql.as_str(), &refs)
                .map_err(error)?;
            Vec::new()
        };
    }
    Ok(out)
}

/// `NULL` bound to a parameter of any type (as Spin's `db-null` is).
#[derive(Debug)]
struct AnyNull;

impl postgres::types::ToSql for AnyNull {
    fn to_sql(
        &self,
        _: &postgres::types::Type,
        _: &mut bytes::BytesMut,
    ) -> Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        Ok(postgres::types::IsNull::Yes)
    }

    fn accepts(_: &postgres::types::Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

fn postgres_row(row: &postgres::Row) -> Result<Vec<SqlValue>, String> {
    use postgres::types::Type;
    (0..row.len())
        .map(|i| {
            let ty = row.columns()[i].type_().clone();
            let value = match ty {
                Type::INT2 => row
                    .get::<_, Option<i16>>(i)
                    .map(|n| SqlValue::Integer(n.into())),
                Type::INT4 => row
                    .get::<_, Option<i32>>(i)
                    .map(|n| SqlValue::Integer(n.into())),
                Type::INT8 => row.get::<_, Option<i64>>(i).map(SqlValue::Integer),
                Type::FLOAT4 => row
                    .get::<_, Option<f32>>(i)
                    .map(|r| SqlValue::Real(r.into())),
                Type::FLOAT8 => row.get::<_, Option<f64>>(i).map(SqlValue::Real),
                Type::BOOL => row
                    .get::<_, Option<bool>>(i)
                    .map(|b| SqlValue::Integer(b.into())),
                Type::BYTEA => row.get::<_, Option<Vec<u8>>>(i).map(SqlValue::Blob),
                Type::NUMERIC => row
                    .get::<_, Option<rust_decimal::Decimal>>(i)
                    .map(|d| dialect::numeric(&d.to_string())),
                Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR => {
                    row.get::<_, Option<String>>(i).map(SqlValue::Text)
                }
                other => return Err(format!("column {i}: unexpected type {other}")),
            };
            Ok(value.unwrap_or(SqlValue::Null))
        })
        .collect()
}

impl SqlExecutor for TestDb {
    fn execute(&mut self, sql: &str, params: &[SqlValue]) -> Result<Vec<Vec<SqlValue>>, String> {
        if self.fail_on.is_some_and(|f| sql.contains(f)) {
            return Err(format!("injected failure: {sql}"));
        }
        match &mut self.backend {
            Backend::Sqlite(conn) => sqlite_execute(conn, sql, params),
            Backend::Postgres(client) => postgres_execute(client, sql, params),
        }
    }
}

/// A connection to the test server's schema `schema`, creating the schema
/// when `create` is set.
fn postgres_client(schema: &str, create: bool) -> postgres::Client {
    let url = std::env::var(POSTGRES_URL_VARIABLE).unwrap_or_default();
    let mut client = postgres::Client::connect(&url, postgres::NoTls)
        .unwrap_or_else(|e| panic!("{POSTGRES_URL_VARIABLE}={url}: {e}"));
    if create {
        client
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .unwrap();
    }
    client
        .batch_execute(&format!("SET search_path TO {schema}"))
        .unwrap();
    client
}

/// A schema name no other test of this run (or an earlier run) uses.
fn fresh_schema() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "dol_test_{}_{}_{}",
        std::process::id(),
        nanos,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh, empty database (no migration applied).
pub(crate) fn empty() -> TestDb {
    if TestDb::on_postgres() {
        TestDb {
            backend: Backend::Postgres(Box::new(postgres_client(&fresh_schema(), true))),
            fail_on: None,
        }
    } else {
        TestDb::sqlite(rusqlite::Connection::open_in_memory().unwrap())
    }
}

/// A fresh database with every migration applied.
pub(crate) fn db() -> TestDb {
    let mut db = empty();
    migrate::apply(&mut db, 1).unwrap();
    db
}

/// One fresh database that several connections share (concurrency tests):
/// call the returned opener once per connection. `name` keeps files of
/// concurrent tests apart on SQLite.
pub(crate) fn shared(name: &str) -> impl Fn() -> TestDb + Send + Sync + 'static {
    enum Target {
        File(std::path::PathBuf),
        Schema(String),
    }
    let target = if TestDb::on_postgres() {
        let schema = fresh_schema();
        drop(postgres_client(&schema, true));
        Target::Schema(schema)
    } else {
        let path = std::env::temp_dir().join(format!("dol-{name}-{}.sqlite", std::process::id()));
        let _ = std::fs::remove_file(&path);
        // WAL is a property of the file, so it is switched on once, here:
        // connections switching a fresh file together get SQLITE_BUSY
        // without their busy handler being asked (the host's `enable_wal`).
        rusqlite::Connection::open(&path)
            .and_then(|conn| conn.pragma_update(None, "journal_mode", "WAL"))
            .unwrap();
        Target::File(path)
    };
    move || match &target {
        Target::Schema(schema) => TestDb {
            backend: Backend::Postgres(Box::new(postgres_client(schema, false))),
            fail_on: None,
        },
        Target::File(path) => {
            let mut conn = rusqlite::Connection::open(path).unwrap();
            // Retry a busy lock at once (SQLite's own handler sleeps up to
            // 100 ms between tries), so writers follow each other closely.
            fn retry(attempt: i32) -> bool {
                std::thread::yield_now();
                attempt < 10_000_000
            }
            conn.busy_handler(Some(retry)).unwrap();
            TestDb::sqlite(conn)
        }
    }
}

/// Rows in `table`.
pub(crate) fn count(db: &mut TestDb, table: &str) -> i64 {
    db.int(&format!("SELECT COUNT(*) FROM {table}"), &[])
}
