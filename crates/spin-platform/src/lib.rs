//! Guest-side glue shared by DOL's components: the core's storage seam
//! ([`SqlExecutor`] over a Spin SQLite connection, [`KeyValue`] over a Spin
//! key-value store), the wall clock, JSON responses and small HTTP helpers.
//! Only the components use it; the core stays free of spin-sdk.

mod db;
pub mod net;
pub mod service;
pub mod variables;

use dol_core::console::{self, AdminRequest};
use dol_core::error::{ApiError, Code};
use dol_core::storage::{AtomicKeyValue, KeyValue, SqlExecutor, SqlValue};
use spin_sdk::http::Response;
use spin_sdk::sqlite::Value;

pub use db::{DATABASE_URL, Db};

/// [`SqlExecutor`] over the app's database ([`Db`]: Spin's SQLite, or
/// PostgreSQL when `database_url` is set).
pub struct SpinSql<'a>(pub &'a Db);

impl SqlExecutor for SpinSql<'_> {
    fn execute(&mut self, sql: &str, params: &[SqlValue]) -> Result<Vec<Vec<SqlValue>>, String> {
        self.0.execute(sql, params)
    }
}

/// [`KeyValue`] over a Spin key-value store (`fermyon:spin/key-value@2.0.0`).
pub struct SpinKv(std::rc::Rc<spin_sdk::key_value::Store>);

impl SpinKv {
    /// The app's `default` store: opened on the instance's first use and
    /// shared by every later caller, as the database [`connection`] is, so
    /// a request that reads key-value in several places (the gateway and
    /// the flag evaluator composed into it) makes no `open` and drop host
    /// calls of its own. A store handle stays valid for the instance's life
    /// (the host keeps the backend's connections and reconnects them), and
    /// each of its calls completes before another request's task can run.
    pub fn open_default() -> anyhow::Result<Self> {
        use anyhow::Context as _;
        thread_local! {
            static DEFAULT_STORE: InstanceSlot<spin_sdk::key_value::Store> =
                const { std::cell::RefCell::new(None) };
        }
        instance_shared(&DEFAULT_STORE, || {
            spin_sdk::key_value::Store::open_default().context("open key-value store")
        })
        .map(Self)
    }
}

impl KeyValue for SpinKv {
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.0.get(key).map_err(|e| e.to_string())
    }

    fn set(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
        self.0.set(key, value).map_err(|e| e.to_string())
    }

    fn delete(&mut self, key: &str) -> Result<(), String> {
        self.0.delete(key).map_err(|e| e.to_string())
    }
}

/// [`AtomicKeyValue`] over a store opened through `wasi:keyvalue` (Spin
/// serves it for the same stores as its own key-value interface, so this
/// sees the same keys as [`SpinKv`]), for the atomic counter and
/// compare-and-swap that Spin's own interface lacks.
pub struct WasiKv(spin_sdk::wit::wasi::keyvalue::store::Bucket);

impl WasiKv {
    /// The app's `default` store.
    pub fn open_default() -> anyhow::Result<Self> {
        use anyhow::Context as _;
        Ok(Self(
            spin_sdk::wit::wasi::keyvalue::store::open("default")
                .map_err(|e| anyhow::anyhow!("{e:?}"))
                .context("open key-value store (wasi:keyvalue)")?,
        ))
    }
}

/// A `wasi:keyvalue` error as text.
fn wasi_kv_error(e: spin_sdk::wit::wasi::keyvalue::store::Error) -> String {
    use spin_sdk::wit::wasi::keyvalue::store::Error;
    match e {
        Error::NoSuchStore => "no such store".to_owned(),
        Error::AccessDenied => "access denied".to_owned(),
        Error::Other(message) => message,
    }
}

impl KeyValue for WasiKv {
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.0.get(key).map_err(wasi_kv_error)
    }

    fn set(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
        self.0.set(key, value).map_err(wasi_kv_error)
    }

    fn delete(&mut self, key: &str) -> Result<(), String> {
        self.0.delete(key).map_err(wasi_kv_error)
    }
}

impl AtomicKeyValue for WasiKv {
    fn increment(&mut self, key: &str, delta: i64) -> Result<i64, String> {
        spin_sdk::wit::wasi::keyvalue::atomics::increment(&self.0, key, delta)
            .map_err(wasi_kv_error)
    }

    fn compare_and_swap(
        &mut self,
        key: &str,
        expected: Option<&[u8]>,
        value: &[u8],
    ) -> Result<bool, String> {
        use spin_sdk::wit::wasi::keyvalue::atomics::{Cas, CasError, swap};
        // The handle remembers the value it saw; `swap` fails if the key
        // changed since, so comparing that value first makes this a CAS
        // against `expected`.
        let cas = Cas::new(&self.0, key).map_err(wasi_kv_error)?;
        if cas.current().map_err(wasi_kv_error)?.as_deref() != expected {
            return Ok(false);
        }
        match swap(cas, value) {
            Ok(()) => Ok(true),
            Err(CasError::CasFailed(_)) => Ok(false),
            Err(CasError::StoreError(e)) => Err(wasi_kv_error(e)),
        }
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

/// A Spin SQLite value as a core value (taken, not copied: a result's
/// strings move into the core's rows).
pub fn from_spin(value: Value) -> SqlValue {
    match value {
        Value::Null => SqlValue::Null,
        Value::Integer(i) => SqlValue::Integer(i),
        Value::Real(r) => SqlValue::Real(r),
        Value::Text(t) => SqlValue::Text(t),
        Value::Blob(b) => SqlValue::Blob(b),
    }
}

/// The instance's one connection to the app's database (see [`Db::open`]),
/// opened on first use and shared by every later caller: every request a
/// reused WASI 0.3 instance serves (up to 128 on Spin and `dol up`, some of
/// them side by side), or the one request or cron tick of a WASI 0.2 one.
/// Cheaper than an open per call or per request, and what real Spin needs —
/// it limits how many PostgreSQL connections an instance may hold at once,
/// and a handler that opened a second one while holding the first would
/// wait forever. Sharing it between interleaved requests is safe because a
/// transaction never spans an `.await` (`in_transaction` takes a plain
/// closure).
pub fn connection() -> anyhow::Result<std::rc::Rc<Db>> {
    instance_shared(&SHARED_CONNECTION, Db::open)
}

thread_local! {
    /// The instance's connection ([`connection`]), once opened.
    static SHARED_CONNECTION: InstanceSlot<Db> = const { std::cell::RefCell::new(None) };
}

/// Where an instance keeps a handle it opens once and shares
/// ([`instance_shared`]); `None` until the first use.
type InstanceSlot<T> = std::cell::RefCell<Option<std::rc::Rc<T>>>;

/// The handle kept in `slot`, opened with `open` on the instance's first
/// use (a component instance runs on one thread, so a thread-local slot
/// lives as long as the instance). A failed open keeps nothing: the next
/// caller tries again.
fn instance_shared<T>(
    slot: &'static std::thread::LocalKey<InstanceSlot<T>>,
    open: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<std::rc::Rc<T>> {
    if let Some(handle) = slot.with_borrow(Clone::clone) {
        return Ok(handle);
    }
    let handle = std::rc::Rc::new(open()?);
    slot.set(Some(handle.clone()));
    Ok(handle)
}

/// Forgets the instance's connection, so the next [`connection`] opens a
/// new one: called when the database stopped answering on it (PostgreSQL
/// restarted, a failover, an idle connection killed). Callers holding it
/// finish with it; nothing else is lost, as no transaction outlives a
/// statement's caller.
pub(crate) fn replace_connection() {
    SHARED_CONNECTION.set(None);
}

/// The instance's connection ([`connection`]), migrated on the first use
/// per instance.
pub fn open_db() -> anyhow::Result<std::rc::Rc<Db>> {
    use anyhow::Context as _;
    thread_local! {
        static MIGRATED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    let db = connection()?;
    if !MIGRATED.get() {
        dol_core::migrate::apply(&mut SpinSql(&db), now_ms()).context("migrate")?;
        MIGRATED.set(true);
    }
    Ok(db)
}

/// Runs one statement, naming it in the error.
pub fn exec<E: SqlExecutor + ?Sized>(
    db: &mut E,
    sql: &str,
    params: &[SqlValue],
) -> anyhow::Result<Vec<Vec<SqlValue>>> {
    db.execute(sql, params)
        .map_err(|e| anyhow::anyhow!("{sql}: {e}"))
}

/// Runs `body` inside `BEGIN IMMEDIATE` … `COMMIT`, rolling back on error
/// (`dol_core::storage::in_transaction` with anyhow errors).
pub fn in_transaction<E: SqlExecutor, T>(
    db: &mut E,
    body: impl FnOnce(&mut E) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    dol_core::storage::in_transaction(db, body)
}

/// Wall-clock time in Unix epoch milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A JSON response (with DOL's security headers, like every JSON answer).
pub fn json(status: u16, body: &serde_json::Value) -> Response {
    json_with(status, body, &[])
}

/// A JSON error response `{"error": {"code", "message"}}` for `code` (its
/// status follows from the code: one vocabulary, `dol_core::error::Code`).
pub fn error(code: Code, message: &str) -> Response {
    fail("", &ApiError::new(code, message))
}

/// The response for `err` in DOL's JSON shape (`ApiError::to_dol`), with its
/// headers. A server error's details go to the log under `component`'s
/// name, never into the body.
pub fn fail(component: &str, err: &ApiError) -> Response {
    log_internal(component, err);
    let headers: Vec<(&str, String)> = err
        .headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.clone()))
        .collect();
    json_with(err.status(), &err.to_dol(), &headers)
}

/// The response for `err` in OpenAI's error shape (`ApiError::to_openai`),
/// with its headers; a server error's details go to the log only.
pub fn fail_openai(component: &str, err: &ApiError) -> Response {
    log_internal(component, err);
    let body = serde_json::to_value(err.to_openai()).unwrap_or(serde_json::Value::Null);
    let headers: Vec<(&str, String)> = err
        .headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.clone()))
        .collect();
    json_with(err.status(), &body, &headers)
}

/// A server error (500 `internal`) from any failure, its chain kept for the log.
pub fn internal(err: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!("{err:#}"))
}

/// Logs the details of a server error (the client never sees them).
pub fn log_internal(component: &str, err: &ApiError) {
    if let Some(detail) = &err.internal {
        eprintln!("{component}: {}: {detail}", err.code.as_str());
    }
}

/// A JSON response with extra headers, and the security headers
/// (`dol_core::hygiene::SECURITY_HEADERS`) every JSON answer carries.
pub fn json_with(status: u16, body: &serde_json::Value, headers: &[(&str, String)]) -> Response {
    let mut builder = Response::builder();
    builder
        .status(status)
        .header("content-type", "application/json");
    for (name, value) in dol_core::hygiene::SECURITY_HEADERS {
        builder.header(name, value);
    }
    for (name, value) in headers {
        builder.header(*name, value.as_str());
    }
    // `to_vec` writes straight into the buffer; `Value`'s `Display` goes
    // through the formatter byte run by byte run (measurably slower on every
    // answer). A `Value` always serializes: the fallback never runs.
    let text = serde_json::to_vec(body).unwrap_or_else(|_| body.to_string().into_bytes());
    builder.body(text).build()
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
            // Exactly two digits: `u8::from_str_radix` would also take `%+1`.
            let (high, low) = (*bytes.get(i + 1)?, *bytes.get(i + 2)?);
            out.push(dol_core::hex::byte(high, low)?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The value of query parameter `name` (percent-decoded, `+` as space);
/// `None` when it is absent. A value that is not valid percent-encoding
/// (or not UTF-8 once decoded) is a 400 naming the parameter, never read
/// as absent: the client would get an answer to another question.
pub fn query_param(query: &str, name: &str) -> Result<Option<String>, ApiError> {
    let Some(raw) = query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    }) else {
        return Ok(None);
    };
    percent_decode(&raw.replace('+', " "))
        .map(Some)
        .ok_or_else(|| {
            ApiError::invalid(
                name,
                format!("query parameter `{name}` is not valid percent-encoding"),
            )
        })
}

/// An optional setting's Spin variable (read once per instance:
/// [`variables`]); unset or undeclared reads as empty
/// (every setting DOL reads treats empty as "not configured" or "the
/// default"), silently, since most apps leave most settings out. For a
/// credential whose absence an operator must see, use [`variable`].
pub fn var(name: &str) -> String {
    variables::get(name).unwrap_or_default()
}

/// The BYOK master keys from the secret variables `credentials_master_key`
/// and `credentials_previous_keys` (or why there are none).
pub fn key_ring() -> Result<dol_core::orgs::crypto::KeyRing, dol_core::orgs::crypto::CryptoError> {
    dol_core::orgs::crypto::KeyRing::from_lookup(var)
}

/// An admin request's JSON body: `Content-Type` must be JSON (415
/// otherwise; absent counts as JSON), an empty body reads as `{}`, and
/// anything unparsable is a 400 naming the parser's complaint.
pub fn json_body(content_type: Option<&str>, body: &[u8]) -> Result<serde_json::Value, ApiError> {
    let is_json = content_type
        .unwrap_or("application/json")
        .to_ascii_lowercase()
        .starts_with("application/json");
    if !is_json {
        return Err(ApiError::new(
            Code::UnsupportedMediaType,
            "send application/json",
        ));
    }
    if body.is_empty() {
        return Ok(serde_json::json!({}));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::new(Code::InvalidRequest, format!("body is not valid JSON: {e}")))
}

/// Spin variable holding the admin token (empty = admin routes closed).
pub const ADMIN_TOKEN_VARIABLE: &str = "admin_token";

/// Spin variable holding the console's read-only viewer token (empty = no viewer sign-in).
pub const VIEWER_TOKEN_VARIABLE: &str = "viewer_token";

/// A credential's Spin variable (admin or viewer token); empty, and logged
/// under `component`'s name, when it cannot be read, e.g. when the
/// component does not declare it.
pub fn variable(component: &str, name: &str) -> String {
    variables::get(name).unwrap_or_else(|err| {
        eprintln!("{component}: reading variable {name} failed: {err}");
        String::new()
    })
}

/// The credentials an admin request presents (headers of `req`).
pub fn admin_request(req: &spin_sdk::http::Request) -> AdminRequest<'_> {
    AdminRequest {
        safe_method: console::is_safe_method(&req.method().to_string()),
        authorization: header(req, "authorization"),
        actor: header(req, "x-dol-actor"),
        cookie: header(req, "cookie"),
        csrf: header(req, console::CSRF_HEADER),
    }
}

/// Checks an admin request: the bearer admin token, or a console session
/// cookie (`dol_core::console::authorize_admin`). Returns the acting
/// admin's name (from `X-DOL-Actor`, else a token or session label), or
/// the 401/403 response to send.
pub fn check_admin(component: &str, req: AdminRequest<'_>) -> Result<String, Response> {
    admin_actor(component, req).map_err(|err| fail(component, &err))
}

/// [`check_admin`] as an [`ApiError`]: `admin-closed` (403) without an
/// admin token, `unauthorized` (401, `WWW-Authenticate: Bearer`) without
/// credentials or with wrong ones, `forbidden` (403) for a viewer session's
/// change or a session's change without its CSRF token.
pub fn admin_actor(component: &str, req: AdminRequest<'_>) -> Result<String, ApiError> {
    let token = variable(component, ADMIN_TOKEN_VARIABLE);
    let viewer = variable(component, VIEWER_TOKEN_VARIABLE);
    let secrets = console::AdminSecrets {
        admin_token: &token,
        viewer_token: &viewer,
    };
    let signed_out = |session: &console::Session| session_signed_out(component, session);
    console::authorize_admin(secrets, req, now_ms() / 1000, &signed_out)
}

/// Whether a console session was signed out (its mark in the `default`
/// key-value store, [`console::signed_out_key`]). Fails closed: when the
/// store cannot be read, the session counts as signed out.
pub fn session_signed_out(component: &str, session: &console::Session) -> bool {
    let key = console::signed_out_key(session);
    match SpinKv::open_default()
        .map_err(|e| format!("{e:#}"))
        .and_then(|mut kv| kv.get(&key))
    {
        Ok(mark) => mark.is_some(),
        Err(err) => {
            eprintln!("{component}: reading the console sign-out mark failed: {err}");
            true
        }
    }
}

/// A 405 naming the allowed methods.
pub fn method_not_allowed(allow: &str) -> Response {
    fail("", &ApiError::method_not_allowed(allow))
}

/// Appends an admin action to the one audit log (`dol_core::audit`). The
/// action has already happened, so a failed write is logged loudly rather
/// than turned into an error the client would read as "nothing changed".
pub fn audit(
    component: &str,
    sql: &mut impl SqlExecutor,
    actor: &str,
    record: dol_core::audit::Record,
) {
    if let Err(err) = dol_core::audit::append(sql, actor, now_ms(), record) {
        eprintln!("{component}: AUDIT WRITE FAILED: {err}");
    }
}

/// The JSON body of a successful (2xx) response, for the audit log's
/// before/after states; `None` for errors and non-JSON bodies.
pub fn response_json(response: &Response) -> Option<serde_json::Value> {
    (200..300)
        .contains(response.status())
        .then(|| serde_json::from_slice(response.body()).ok())
        .flatten()
}

/// The 413 (naming the limit) for a body over `limit` bytes; `Ok` otherwise.
/// Every route that reads a body checks it before parsing.
pub fn check_body(req: &spin_sdk::http::Request, limit: usize) -> Result<(), Response> {
    dol_core::hygiene::check_body(req.body().len(), limit).map_err(|err| fail("", &err))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_escapes_decode_with_exactly_two_hex_digits() {
        assert_eq!(percent_decode("a%2Fb%c3%A9").as_deref(), Some("a/bé"));
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
        for bad in ["%", "%4", "%zz", "%+1", "%-1", "%c3"] {
            assert_eq!(percent_decode(bad), None, "{bad:?}");
        }
    }
}
