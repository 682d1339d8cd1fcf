//! One function per probe route; each maps Spin's answer to a [`Reply`].

use serde_json::{Map, Value, json};
use spin_sdk::http::{IncomingRequest, Method, Request, Response, SendError};
use spin_sdk::key_value::Store;

use crate::reply::{Reply, fail, ok, spin_error, variant_name};

/// The smallest possible answer: the benchmark's per-request baseline.
pub fn hello() -> Reply {
    ok(json!("hello"))
}

/// `{method, path, headers}`; repeated headers are joined with `, `.
pub fn headers(req: &IncomingRequest, method: &Method, path: &str) -> Reply {
    let mut map = Map::new();
    for (name, value) in req.headers().entries() {
        let value = String::from_utf8_lossy(&value).into_owned();
        let joined = match map.remove(&name) {
            Some(Value::String(prev)) => format!("{prev}, {value}"),
            _ => value,
        };
        map.insert(name, Value::String(joined));
    }
    ok(json!({ "method": method.to_string(), "path": path, "headers": map }))
}

/// Reads a key; 404 `not-found` when missing.
pub fn kv_get(store: &str, key: &str) -> Reply {
    match Store::open(store).and_then(|s| s.get(key)) {
        Ok(Some(value)) => ok(json!({ "key": key, "value": String::from_utf8_lossy(&value) })),
        Ok(None) => fail(404, "not-found"),
        Err(err) => spin_error(&err),
    }
}

/// Writes a key.
pub fn kv_set(store: &str, key: &str, value: &[u8]) -> Reply {
    match Store::open(store).and_then(|s| s.set(key, value)) {
        Ok(()) => ok(json!({ "key": key, "stored": value.len() })),
        Err(err) => spin_error(&err),
    }
}

/// Deletes a key (deleting a missing key succeeds, as on Spin).
pub fn kv_delete(store: &str, key: &str) -> Reply {
    match Store::open(store).and_then(|s| s.delete(key)) {
        Ok(()) => ok(json!({ "key": key, "deleted": true })),
        Err(err) => spin_error(&err),
    }
}

/// Defines a SQLite route over one spin-sdk SQLite module.
macro_rules! sqlite_route {
    ($(#[$doc:meta])* $name:ident, $module:ident) => {
        $(#[$doc])*
        pub fn $name(db: &str, sql: &str) -> Reply {
            use spin_sdk::$module::{Connection, Value as V};
            let result = Connection::open(db).and_then(|c| c.execute(sql, &[]));
            match result {
                Ok(result) => {
                    let rows: Vec<Value> = result
                        .rows
                        .iter()
                        .map(|row| {
                            row.values
                                .iter()
                                .map(|v| match v {
                                    V::Null => Value::Null,
                                    V::Integer(i) => json!(i),
                                    V::Real(r) => json!(r),
                                    V::Text(t) => json!(t),
                                    V::Blob(b) => json!({ "blob": b }),
                                })
                                .collect()
                        })
                        .collect();
                    ok(json!({ "columns": result.columns, "rows": rows }))
                }
                Err(err) => spin_error(&err),
            }
        }
    };
}

sqlite_route!(
    /// One statement via `fermyon:spin/sqlite@2.0.0`.
    sqlite_v2,
    sqlite
);
sqlite_route!(
    /// One statement via `spin:sqlite/sqlite@3.0.0`.
    sqlite_v3,
    sqlite3
);

/// What a freshly opened `spin:sqlite/sqlite@3.0.0` connection reports as
/// `last-insert-rowid` and `changes` before any statement and after a
/// `SELECT` (0 and 0 both times on Spin).
pub fn sqlite3_fresh(db: &str) -> Reply {
    let read = || -> Result<Value, spin_sdk::sqlite3::Error> {
        let c = spin_sdk::sqlite3::Connection::open(db)?;
        let before = json!({ "last_insert_rowid": c.last_insert_rowid(), "changes": c.changes() });
        c.execute("SELECT 1", &[])?;
        let after = json!({ "last_insert_rowid": c.last_insert_rowid(), "changes": c.changes() });
        Ok(json!({ "before": before, "after_select": after }))
    };
    match read() {
        Ok(body) => ok(body),
        Err(err) => spin_error(&err),
    }
}

/// A component variable.
pub fn variable(name: &str) -> Reply {
    match spin_sdk::variables::get(name) {
        Ok(value) => ok(json!({ "name": name, "value": value })),
        Err(err) => spin_error(&err),
    }
}

/// A process environment variable; 404 `not-found` when unset.
pub fn env(name: &str) -> Reply {
    match std::env::var(name) {
        Ok(value) => ok(json!({ "name": name, "value": value })),
        Err(_) => fail(404, "not-found"),
    }
}

/// `GET url` through the host; `{status, body}` with the body as text.
pub async fn outbound(url: &str) -> Reply {
    match spin_sdk::http::send::<_, Response>(Request::get(url).build()).await {
        Ok(resp) => ok(json!({
            "status": resp.status(),
            "body": String::from_utf8_lossy(resp.body()),
        })),
        Err(SendError::Http(code)) => (
            500,
            json!({ "error": variant_name(&code), "detail": code.to_string() }),
        ),
        Err(err) => {
            let name = match err {
                SendError::RequestConversion(_) => "request-conversion",
                SendError::ResponseConversion(_) => "response-conversion",
                _ => "io",
            };
            (500, json!({ "error": name, "detail": err.to_string() }))
        }
    }
}

/// A write transaction that computes in the guest for `ms` milliseconds
/// between its `BEGIN IMMEDIATE` and its `COMMIT`, inserting one row into
/// `slow_tx` (created if missing): what a long request holding SQLite's
/// write lock looks like to the host.
pub fn sqlite3_slow_transaction(db: &str, ms: u64) -> Reply {
    use spin_sdk::sqlite3::{Connection, Value as V};
    let run = || -> Result<(), spin_sdk::sqlite3::Error> {
        let c = Connection::open(db)?;
        c.execute("CREATE TABLE IF NOT EXISTS slow_tx (at INTEGER)", &[])?;
        c.execute("BEGIN IMMEDIATE", &[])?;
        let until = std::time::Instant::now() + std::time::Duration::from_millis(ms);
        let mut n: u64 = 0;
        while std::time::Instant::now() < until {
            n = std::hint::black_box(n.wrapping_add(1));
        }
        c.execute("INSERT INTO slow_tx VALUES (?)", &[V::Integer(1)])?;
        c.execute("COMMIT", &[])?;
        Ok(())
    };
    match run() {
        Ok(()) => ok(json!({ "committed": true })),
        Err(err) => spin_error(&err),
    }
}

/// Runaway CPU: never returns; the host must interrupt it.
pub fn spin_forever() -> Reply {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

/// Runaway memory: allocates and touches 1 MiB blocks until allocation
/// fails, which aborts (traps) the instance.
pub fn allocate_forever() -> Reply {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        blocks.push(std::hint::black_box(vec![1_u8; 1 << 20]));
        std::hint::black_box(&blocks);
    }
}
