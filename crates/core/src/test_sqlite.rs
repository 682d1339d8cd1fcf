//! A real in-memory SQLite (rusqlite) behind [`SqlExecutor`], with the real
//! migrations applied, for the store tests of every module.

use crate::migrate;
use crate::storage::{SqlExecutor, SqlValue};

/// [`SqlExecutor`] over rusqlite, optionally failing statements that
/// contain a given text (to test rollbacks).
pub(crate) struct Sqlite {
    pub(crate) conn: rusqlite::Connection,
    pub(crate) fail_on: Option<&'static str>,
}

fn to_sql(v: &SqlValue) -> rusqlite::types::Value {
    use rusqlite::types::Value as V;
    match v {
        SqlValue::Null => V::Null,
        SqlValue::Integer(i) => V::Integer(*i),
        SqlValue::Real(r) => V::Real(*r),
        SqlValue::Text(t) => V::Text(t.clone()),
        SqlValue::Blob(b) => V::Blob(b.clone()),
    }
}

fn from_sql(v: rusqlite::types::ValueRef<'_>) -> SqlValue {
    use rusqlite::types::ValueRef as V;
    match v {
        V::Null => SqlValue::Null,
        V::Integer(i) => SqlValue::Integer(i),
        V::Real(r) => SqlValue::Real(r),
        V::Text(t) => SqlValue::Text(String::from_utf8_lossy(t).into_owned()),
        V::Blob(b) => SqlValue::Blob(b.to_vec()),
    }
}

impl SqlExecutor for Sqlite {
    fn execute(&mut self, sql: &str, params: &[SqlValue]) -> Result<Vec<Vec<SqlValue>>, String> {
        if self.fail_on.is_some_and(|f| sql.contains(f)) {
            return Err(format!("injected failure: {sql}"));
        }
        let mut stmt = self.conn.prepare(sql).map_err(|e| e.to_string())?;
        let columns = stmt.column_count();
        let params: Vec<rusqlite::types::Value> = params.iter().map(to_sql).collect();
        let mut rows = stmt
            .query(rusqlite::params_from_iter(params))
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(|e| e.to_string())? {
            let mut values = Vec::with_capacity(columns);
            for i in 0..columns {
                values.push(from_sql(row.get_ref(i).map_err(|e| e.to_string())?));
            }
            out.push(values);
        }
        Ok(out)
    }
}

/// A fresh in-memory database with every migration applied.
pub(crate) fn db() -> Sqlite {
    let mut db = Sqlite {
        conn: rusqlite::Connection::open_in_memory().unwrap(),
        fail_on: None,
    };
    migrate::apply(&mut db, 1).unwrap();
    db
}

/// Rows in `table`.
pub(crate) fn count(db: &mut Sqlite, table: &str) -> i64 {
    db.conn
        .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}
