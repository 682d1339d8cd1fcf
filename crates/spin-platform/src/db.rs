//! The app's database: Spin's SQLite `default` database (the embedded
//! default, nothing to install), or PostgreSQL through `spin:postgres` when
//! the secret variable [`DATABASE_URL`] is set, so several replicas share one
//! database. The core's statements are written once in SQLite's dialect;
//! [`dol_core::storage::postgres`] translates them for PostgreSQL.

use anyhow::Context as _;
use dol_core::storage::SqlValue;
use dol_core::storage::postgres as dialect;
use spin_sdk::pg4::{self, DbValue, ParameterValue};
use spin_sdk::sqlite;

/// The Spin variable holding the PostgreSQL connection string
/// (`postgres://user:password@host:5432/dol`); empty = embedded SQLite.
pub const DATABASE_URL: &str = "database_url";

/// An open connection to the app's database.
pub enum Db {
    /// Spin's SQLite `default` database.
    Sqlite(sqlite::Connection),
    /// PostgreSQL at the `database_url`.
    Postgres(pg4::Connection),
}

impl Db {
    /// Opens PostgreSQL when `database_url` is set, Spin's SQLite `default`
    /// database otherwise. A refused connection names the settings an
    /// operator checks (the URL and the `database_host` allowed for it).
    pub fn open() -> anyhow::Result<Self> {
        let url = crate::var(DATABASE_URL);
        if url.trim().is_empty() {
            return Ok(Self::Sqlite(
                sqlite::Connection::open_default().context("open sqlite")?,
            ));
        }
        pg4::Connection::open(url.trim())
            .map(Self::Postgres)
            .map_err(|e| {
                anyhow::anyhow!(
                    "open PostgreSQL (variables {DATABASE_URL} and database_host): {}",
                    pg_error(&e)
                )
            })
    }

    /// The backend [`Db::open`] uses: `postgres` when `database_url` is
    /// set, `sqlite` otherwise (the name of the health check).
    pub fn backend() -> &'static str {
        if crate::var(DATABASE_URL).trim().is_empty() {
            "sqlite"
        } else {
            "postgres"
        }
    }

    /// Runs one statement (in SQLite's dialect) and returns its rows.
    pub fn execute(&self, sql: &str, params: &[SqlValue]) -> Result<Vec<Vec<SqlValue>>, String> {
        match self {
            Self::Sqlite(conn) => {
                let params: Vec<sqlite::Value> = params.iter().map(crate::to_spin).collect();
                let result = conn.execute(sql, &params).map_err(|e| e.to_string())?;
                Ok(result
                    .rows
                    .into_iter()
                    .map(|row| row.values.into_iter().map(crate::from_spin).collect())
                    .collect())
            }
            Self::Postgres(conn) => {
                let bound: Vec<ParameterValue> = params.iter().map(to_pg).collect();
                let mut rows = Vec::new();
                for statement in dialect::statements(sql, params) {
                    // `BEGIN` and the lock statement name no parameter.
                    let args: &[ParameterValue] = if statement.sql.contains('$') {
                        &bound
                    } else {
                        &[]
                    };
                    // Commands through `execute`; statements that return rows
                    // were wrapped so real Spin always has a row to answer with.
                    rows = if statement.returns_rows {
                        let set = conn.query(&statement.sql, args).map_err(|e| pg_error(&e))?;
                        dialect::rows_of(
                            set.rows
                                .iter()
                                .map(|row| row.iter().map(from_pg).collect())
                                .collect::<Result<_, _>>()?,
                        )
                    } else {
                        conn.execute(&statement.sql, args)
                            .map_err(|e| pg_error(&e))?;
                        Vec::new()
                    };
                }
                Ok(rows)
            }
        }
    }
}

/// A core value as a `spin:postgres` parameter.
fn to_pg(value: &SqlValue) -> ParameterValue {
    match value {
        SqlValue::Null => ParameterValue::DbNull,
        SqlValue::Integer(n) => ParameterValue::Int64(*n),
        SqlValue::Real(r) => ParameterValue::Floating64(*r),
        SqlValue::Text(t) => ParameterValue::Str(t.clone()),
        SqlValue::Blob(b) => ParameterValue::Binary(b.clone()),
    }
}

/// A `spin:postgres` value as a core value (the types DOL's schema uses;
/// anything else is an error naming it).
fn from_pg(value: &DbValue) -> Result<SqlValue, String> {
    Ok(match value {
        DbValue::DbNull => SqlValue::Null,
        DbValue::Boolean(b) => SqlValue::Integer(i64::from(*b)),
        DbValue::Int8(n) => SqlValue::Integer(i64::from(*n)),
        DbValue::Int16(n) => SqlValue::Integer(i64::from(*n)),
        DbValue::Int32(n) => SqlValue::Integer(i64::from(*n)),
        DbValue::Int64(n) => SqlValue::Integer(*n),
        DbValue::Floating32(r) => SqlValue::Real(f64::from(*r)),
        DbValue::Floating64(r) => SqlValue::Real(*r),
        DbValue::Str(t) => SqlValue::Text(t.clone()),
        DbValue::Binary(b) => SqlValue::Blob(b.clone()),
        DbValue::Decimal(text) => dialect::numeric(text),
        other => return Err(format!("unexpected PostgreSQL value {other:?}")),
    })
}

/// A `spin:postgres` error as text: PostgreSQL's own message and code when
/// the database answered. An error the database did not answer (the
/// connection failed or broke) also marks the instance's connection for
/// replacing ([`crate::connection`]): a reused instance would otherwise
/// keep failing on it for every later request.
fn pg_error(error: &pg4::PgError) -> String {
    if matches!(
        error,
        pg4::PgError::ConnectionFailed(_)
            | pg4::PgError::QueryFailed(pg4::QueryError::Text(_))
            | pg4::PgError::Other(_)
    ) {
        crate::replace_connection();
    }
    match error {
        pg4::PgError::QueryFailed(pg4::QueryError::DbError(db)) => {
            format!("{}: {}", db.code, db.message)
        }
        pg4::PgError::QueryFailed(pg4::QueryError::Text(text))
        | pg4::PgError::ConnectionFailed(text)
        | pg4::PgError::BadParameter(text)
        | pg4::PgError::ValueConversionFailed(text)
        | pg4::PgError::Other(text) => text.clone(),
    }
}
