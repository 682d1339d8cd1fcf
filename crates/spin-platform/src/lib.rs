//! Guest-side glue shared by DOL's components: [`SqlExecutor`] over a Spin
//! SQLite connection, the wall clock, JSON responses and small HTTP helpers.
//! Only the components use it; the core stays free of spin-sdk.

use dol_core::migrate::{SqlExecutor, SqlValue};
use spin_sdk::http::Response;
use spin_sdk::sqlite::{Connection, Value};

/// [`SqlExecutor`] over a Spin SQLite (`fermyon:spin/sqlite@2.0.0`) connection.
pub struct SpinSql<'a>(pub &'a Connection);

impl SqlExecutor for SpinSql<'_> {
    fn execute(&mut self, sql: &str, params: &[SqlValue]) -> Result<Vec<Vec<SqlValue>>, String> {
        let params: Vec<Value> = params.iter().map(to_spin).collect();
        let result = self.0.execute(sql, &params).map_err(|e| e.to_string())?;
        Ok(result
            .rows
            .iter()
            .map(|row| row.values.iter().map(from_spin).collect())
            .collect())
    }
}

/// A core value as a Spin SQLite value.
pub fn to_spin(value: &SqlValue) -> Value {
    match value {
        SqlValue::Null => Value::Null,
        SqlValue::Integer(i) => Value::Integer(*i),
        SqlValue::Real(r) => Value::Real(*r),
        SqlValue::Text(t) => Value::Text(t.clone()),
        SqlValue::Blob(b) => Value::Blob(b.clone()),
    }
}

/// A Spin SQLite value as a core value.
pub fn from_spin(value: &Value) -> SqlValue {
    match value {
        Value::Null => SqlValue::Null,
        Value::Integer(i) => SqlValue::Integer(*i),
        Value::Real(r) => SqlValue::Real(*r),
        Value::Text(t) => SqlValue::Text(t.clone()),
        Value::Blob(b) => SqlValue::Blob(b.clone()),
    }
}

/// Wall-clock time in Unix epoch milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A JSON response.
pub fn json(status: u16, body: &serde_json::Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(body.to_string())
        .build()
}

/// A JSON error response `{"error": {"code", "message"}}`.
pub fn error(status: u16, code: &str, message: &str) -> Response {
    json(
        status,
        &serde_json::json!({ "error": { "code": code, "message": message } }),
    )
}

/// A JSON response with extra headers.
pub fn json_with(status: u16, body: &serde_json::Value, headers: &[(&str, String)]) -> Response {
    let mut builder = Response::builder();
    builder
        .status(status)
        .header("content-type", "application/json");
    for (name, value) in headers {
        builder.header(*name, value.as_str());
    }
    builder.body(body.to_string()).build()
}

/// A header's value as text, if present and valid UTF-8.
pub fn header<'a>(req: &'a spin_sdk::http::Request, name: &str) -> Option<&'a str> {
    req.header(name).and_then(|v| v.as_str())
}

/// Decodes `%XX` escapes (and nothing else); `None` when the result is not
/// UTF-8 or an escape is malformed.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The value of query parameter `name` (percent-decoded, `+` as space).
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(&v.replace('+', " ")))?
    })
}
