//! Sign-in and sign-out: the token check, the session cookie and its CSRF
//! token come from `dol_core::console`; this module reads the variables, the
//! clock and randomness, and writes the cookie.

use dol_core::console::{self, Role, SignIn};
use dol_core::storage::KeyValue as _;
use spin_sdk::http::{Request, Response};

use dol_spin_platform as platform;

use crate::pages;

/// A signed-in operator, as a page needs it.
pub struct Current {
    /// What the session may do.
    pub role: Role,
    /// The CSRF token the page's scripts send with changes.
    pub csrf: String,
}

fn key() -> Vec<u8> {
    let admin = platform::variable("console", platform::ADMIN_TOKEN_VARIABLE);
    let viewer = platform::variable("console", platform::VIEWER_TOKEN_VARIABLE);
    console::signing_key(&admin, &viewer)
}

fn now_secs() -> i64 {
    platform::now_ms() / 1000
}

/// The request's valid session, if any.
pub fn current(req: &Request) -> Option<Current> {
    let value = console::cookie_value(platform::header(req, "cookie"))?;
    let key = key();
    let session = console::verify(&key, value, now_secs()).ok()?;
    if platform::session_signed_out("console", &session) {
        return None;
    }
    Some(Current {
        role: session.role,
        csrf: console::csrf_token(&key, &session.value),
    })
}

/// Whether the browser reached DOL over HTTPS (the cookie is then `Secure`).
fn secure(req: &Request) -> bool {
    let https = |v: Option<&str>| v.is_some_and(|v| v.to_ascii_lowercase().starts_with("https"));
    https(platform::header(req, "spin-full-url"))
        || https(platform::header(req, "x-forwarded-proto"))
}

/// Counts this sign-in attempt per client address; the refusal to send
/// when there were too many. Fails open when the store is unreachable:
/// the token check still stands.
fn too_many_attempts(req: &Request) -> Option<Response> {
    let key = console::sign_in_limit_key(platform::header(req, "spin-client-addr"));
    let db = platform::open_db()
        .map_err(|err| eprintln!("console: sign-in counter unavailable: {err:#}"))
        .ok()?;
    match console::sign_in_attempt(&mut platform::SpinSql(&db), &key, now_secs()) {
        Ok(dol_core::ratelimit::Decision::Allow(_)) => None,
        Ok(dol_core::ratelimit::Decision::Deny { retry_after_secs }) => {
            Some(pages::too_many(retry_after_secs))
        }
        Err(err) => {
            eprintln!("console: counting the sign-in attempt failed: {err}");
            None
        }
    }
}

/// The refusal of a sign-in or sign-out form posted from another site
/// (`dol_core::console::same_origin_form_post`).
fn cross_site(req: &Request) -> Option<Response> {
    let allowed = console::same_origin_form_post(
        platform::header(req, "sec-fetch-site"),
        platform::header(req, "origin"),
        platform::header(req, "spin-full-url"),
    );
    (!allowed).then(|| {
        pages::sign_in(
            403,
            Some("This form was sent from another site: open the console here and sign in."),
        )
    })
}

/// `POST /admin/dol/login` with the form field `token`.
pub fn login(req: &Request) -> Response {
    if let Some(refused) = cross_site(req).or_else(|| too_many_attempts(req)) {
        return refused;
    }
    let body = String::from_utf8_lossy(req.body());
    // An unreadable token is no token: the sign-in is refused like a wrong one.
    let presented = platform::query_param(&body, "token")
        .ok()
        .flatten()
        .unwrap_or_default();
    let admin = platform::variable("console", platform::ADMIN_TOKEN_VARIABLE);
    let viewer = platform::variable("console", platform::VIEWER_TOKEN_VARIABLE);
    match console::sign_in(&admin, &viewer, &presented) {
        SignIn::Granted(role) => {
            let nonce = dol_core::hex::encode(&wasi::random::random::get_random_bytes(12));
            let key = console::signing_key(&admin, &viewer);
            let value = console::create(&key, role, now_secs(), &nonce);
            Response::builder()
                .status(303)
                .header("location", "/admin/dol")
                .header("set-cookie", console::set_cookie(&value, secure(req)))
                .header("cache-control", "no-store")
                .body(Vec::new())
                .build()
        }
        SignIn::Refused => pages::sign_in(401, Some("That token is not valid. Try again.")),
        SignIn::Closed => pages::sign_in(
            403,
            Some("The console is closed: admin_token is not configured."),
        ),
    }
}

/// `POST /admin/dol/logout`: marks the session signed out (so a copy of
/// the cookie no longer works either), clears the cookie and shows the
/// sign-in form.
pub fn logout(req: &Request) -> Response {
    if let Some(refused) = cross_site(req) {
        return refused;
    }
    let value = console::cookie_value(platform::header(req, "cookie"));
    if let Some(session) = value.and_then(|v| console::verify(&key(), v, now_secs()).ok()) {
        let mark = session.expires.to_string();
        let stored = platform::SpinKv::open_default()
            .map_err(|e| format!("{e:#}"))
            .and_then(|mut kv| kv.set(&console::signed_out_key(&session), mark.as_bytes()));
        if let Err(err) = stored {
            // The cookie is still cleared; the log says the copy stays valid.
            eprintln!("console: storing the sign-out mark failed: {err}");
        }
    }
    Response::builder()
        .status(303)
        .header("location", "/admin/dol")
        .header("set-cookie", console::clear_cookie(secure(req)))
        .header("cache-control", "no-store")
        .body(Vec::new())
        .build()
}

/// Seconds between refreshes (`dol_core::console::refresh_secs`).
pub fn refresh_secs(req: &Request) -> u32 {
    // An unreadable value is ignored like an out-of-range one: the page
    // keeps its default refresh (see `console::refresh_secs`).
    let query = platform::query_param(req.query(), "refresh").ok().flatten();
    let variable = platform::variable("console", "console_refresh_secs");
    console::refresh_secs(query.as_deref(), &variable)
}
