//! The operator console's sessions and CSRF tokens (`/admin/dol`).
//!
//! A session is a signed cookie value, nothing stored server-side:
//! `v1.<role>.<issued>.<expires>.<nonce>.<tag>` where the times are Unix
//! seconds and `tag` is the HMAC-SHA256 of everything before it under a key
//! derived from the admin and viewer tokens. Changing either one therefore
//! ends every session (so emptying the viewer token revokes every viewer). The CSRF token is an HMAC of the cookie value under the
//! same key, so the server recomputes it instead of storing it, and it is
//! useless without the cookie (which page scripts cannot read: HttpOnly).
//! The clock and the nonce come in as arguments.

use crate::auth::constant_time_eq;
use crate::error::{ApiError, Code};
use crate::observe::slack::hmac_sha256_hex;

/// Name of the session cookie.
pub const COOKIE_NAME: &str = "dol_session";
/// Header a state-changing request with a session cookie must carry.
pub const CSRF_HEADER: &str = "x-dol-csrf";
/// How long a session lasts (12 hours).
pub const SESSION_TTL_SECS: i64 = 12 * 60 * 60;

/// What a session may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Signed in with the admin token: reads and changes.
    Admin,
    /// Signed in with the viewer token: reads only.
    Viewer,
}

impl Role {
    /// The role's name in the cookie and in the page.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Role::Admin),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }
}

/// A verified session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// What it may do.
    pub role: Role,
    /// When it was issued (Unix seconds).
    pub issued: i64,
    /// When it ends (Unix seconds).
    pub expires: i64,
    /// The cookie value it was read from (the CSRF token derives from it).
    pub value: String,
}

/// Why a session cookie was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The value is not of the `v1.role.issued.expires.nonce.tag` shape.
    #[error("the session cookie is malformed")]
    Malformed,
    /// The signature does not match (forged, or the admin token changed).
    #[error("the session cookie's signature does not match")]
    BadSignature,
    /// The session's time is over.
    #[error("the session has expired: sign in again")]
    Expired,
    /// No admin token is configured, so no session can be valid.
    #[error("no admin token is configured")]
    NoKey,
    /// The session was ended with `POST /admin/dol/logout`.
    #[error("the session was signed out: sign in again")]
    SignedOut,
}

/// Outcome of signing in with a presented token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignIn {
    /// The token grants this role.
    Granted(Role),
    /// The token is neither the admin nor the viewer token.
    Refused,
    /// No admin token is configured: the console is closed.
    Closed,
}

/// The signing key for sessions, derived from the admin token and the
/// viewer token (`extra_secret`): changing either one ends every session
/// signed before, so emptying or rotating the viewer token revokes the
/// viewers already signed in. Empty when no admin token is configured.
pub fn signing_key(admin_token: &str, extra_secret: &str) -> Vec<u8> {
    if admin_token.is_empty() {
        return Vec::new();
    }
    hmac_sha256_hex(
        admin_token.as_bytes(),
        &[b"dol-console-session-key|", extra_secret.as_bytes()],
    )
    .into_bytes()
}

/// Which role `presented` signs in as (constant-time comparisons; an empty
/// viewer token grants nothing).
pub fn sign_in(admin_token: &str, viewer_token: &str, presented: &str) -> SignIn {
    if admin_token.is_empty() {
        return SignIn::Closed;
    }
    let p = presented.trim().as_bytes();
    if constant_time_eq(p, admin_token.as_bytes()) {
        SignIn::Granted(Role::Admin)
    } else if !viewer_token.is_empty() && constant_time_eq(p, viewer_token.as_bytes()) {
        SignIn::Granted(Role::Viewer)
    } else {
        SignIn::Refused
    }
}

/// A new session cookie value for `role`, issued at `now_secs`. `nonce`
/// makes two sessions issued in the same second differ; only `[A-Za-z0-9_-]`
/// of it is kept.
pub fn create(key: &[u8], role: Role, now_secs: i64, nonce: &str) -> String {
    let nonce: String = nonce
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(32)
        .collect();
    let body = format!(
        "v1.{}.{now_secs}.{}.{nonce}",
        role.as_str(),
        now_secs.saturating_add(SESSION_TTL_SECS)
    );
    let tag = hmac_sha256_hex(key, &[b"session|", body.as_bytes()]);
    format!("{body}.{tag}")
}

/// Verifies a cookie value at `now_secs`.
pub fn verify(key: &[u8], value: &str, now_secs: i64) -> Result<Session, SessionError> {
    if key.is_empty() {
        return Err(SessionError::NoKey);
    }
    let (body, tag) = value.rsplit_once('.').ok_or(SessionError::Malformed)?;
    let parts: Vec<&str> = body.split('.').collect();
    let [version, role, issued, expires, _nonce] = parts.as_slice() else {
        return Err(SessionError::Malformed);
    };
    let expected = hmac_sha256_hex(key, &[b"session|", body.as_bytes()]);
    // The signature is checked before anything in the body is trusted.
    if !constant_time_eq(expected.as_bytes(), tag.as_bytes()) {
        return Err(SessionError::BadSignature);
    }
    let (Some(role), Ok(issued), Ok(expires)) = (
        Role::parse(role),
        issued.parse::<i64>(),
        expires.parse::<i64>(),
    ) else {
        return Err(SessionError::Malformed);
    };
    if *version != "v1" {
        return Err(SessionError::Malformed);
    }
    if now_secs >= expires || now_secs < issued.saturating_sub(300) {
        return Err(SessionError::Expired);
    }
    Ok(Session {
        role,
        issued,
        expires,
        value: value.to_owned(),
    })
}

/// Prefix of the key-value keys that mark signed-out sessions.
pub const SIGNED_OUT_PREFIX: &str = "dol:console:signed-out:";

/// The key-value key that marks `session` as signed out (from its
/// signature, so it names one session and reveals nothing).
pub fn signed_out_key(session: &Session) -> String {
    let tag = session.value.rsplit('.').next().unwrap_or_default();
    format!("{SIGNED_OUT_PREFIX}{}", tag.get(..32).unwrap_or(tag))
}

/// The CSRF token that belongs to a session cookie value.
pub fn csrf_token(key: &[u8], cookie_value: &str) -> String {
    hmac_sha256_hex(key, &[b"csrf|", cookie_value.as_bytes()])
}

/// Whether `presented` is the CSRF token of `session`.
pub fn csrf_ok(key: &[u8], session: &Session, presented: Option<&str>) -> bool {
    let expected = csrf_token(key, &session.value);
    presented.is_some_and(|p| constant_time_eq(p.trim().as_bytes(), expected.as_bytes()))
}

/// The session cookie's value in a `Cookie` request header, if present.
pub fn cookie_value(cookie_header: Option<&str>) -> Option<&str> {
    cookie_header?.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        (name.trim() == COOKIE_NAME).then_some(value.trim())
    })
}

/// The `Set-Cookie` value that stores `value` (HttpOnly, SameSite=Strict,
/// `Secure` when the page was served over HTTPS).
pub fn set_cookie(value: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{COOKIE_NAME}={value}; Path=/; Max-Age={SESSION_TTL_SECS}; HttpOnly; SameSite=Strict{secure}"
    )
}

/// The `Set-Cookie` value that ends the session in the browser.
pub fn clear_cookie(secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE_NAME}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{secure}")
}

/// Whether a form POST to the console's own routes (sign-in, sign-out)
/// came from a console page. A browser sends `Sec-Fetch-Site` (and
/// `Origin`) with every POST; one from another site is refused, so a page
/// elsewhere cannot sign a visitor's browser into a session of its choosing
/// or out of theirs (login CSRF, which `SameSite` cookies do not stop). A
/// client that sends neither header (curl, a script) carries no ambient
/// cookie to abuse and is let through. `own_url` is the URL the request
/// was sent to (Spin's `spin-full-url`: the `host` header is not passed to
/// components).
pub fn same_origin_form_post(
    sec_fetch_site: Option<&str>,
    origin: Option<&str>,
    own_url: Option<&str>,
) -> bool {
    if let Some(site) = sec_fetch_site {
        // `none`: the user started it (typed URL, bookmark).
        return matches!(site.trim(), "same-origin" | "none");
    }
    let Some(origin) = origin else {
        return true;
    };
    let origin = url_authority(origin);
    own_url.is_some_and(|own| !origin.is_empty() && origin.eq_ignore_ascii_case(url_authority(own)))
}

/// The authority (`host[:port]`) of an absolute URL or origin; the scheme
/// is left out because a TLS-terminating proxy changes it.
fn url_authority(url: &str) -> &str {
    let rest = url.trim().split_once("://").map_or("", |(_, rest)| rest);
    rest.split(['/', '?', '#']).next().unwrap_or_default()
}

/// Sign-in attempts allowed per client address in [`SIGN_IN_WINDOW_SECS`].
pub const SIGN_IN_ATTEMPTS: u64 = 10;
/// The window sign-in attempts are counted in (5 minutes).
pub const SIGN_IN_WINDOW_SECS: u64 = 300;

/// Prefix of the keys counting sign-in attempts (rows of `rate_windows`;
/// key-value entries under it are from before migration 19).
pub const SIGN_IN_KEY_PREFIX: &str = "dol:console:sign-in:";

/// The key-value key counting a client's sign-in attempts: its address
/// without the port (`spin-client-addr` is `ip:port` or `[ipv6]:port`).
pub fn sign_in_limit_key(client_addr: Option<&str>) -> String {
    let addr = client_addr.unwrap_or("unknown").trim();
    let ip = match addr.rsplit_once(':') {
        Some((ip, port)) if port.chars().all(|c| c.is_ascii_digit()) && !ip.is_empty() => ip,
        _ => addr,
    };
    format!(
        "{SIGN_IN_KEY_PREFIX}{}",
        ip.trim_start_matches('[').trim_end_matches(']')
    )
}

/// Counts one sign-in attempt of the client `key` ([`sign_in_limit_key`])
/// at `now_secs`, exactly across replicas ([`crate::ratelimit::hit`] in
/// `rate_windows`): [`SIGN_IN_ATTEMPTS`] per [`SIGN_IN_WINDOW_SECS`]. The
/// error is the database's message.
pub fn sign_in_attempt(
    db: &mut impl crate::storage::SqlExecutor,
    key: &str,
    now_secs: i64,
) -> Result<crate::ratelimit::Decision, String> {
    let now = u64::try_from(now_secs).unwrap_or(0);
    crate::ratelimit::hit(db, key, now, SIGN_IN_ATTEMPTS, SIGN_IN_WINDOW_SECS)
}

/// Prefix of every key-value key the console writes (sign-in counters and
/// sign-out marks).
pub const KV_PREFIX: &str = "dol:console:";

/// Whether a console key-value entry no longer matters at `now_secs`, so
/// the daily `retention` scan may delete it: a sign-in counter whose window
/// has passed, a sign-out mark whose session has expired anyway. Anything
/// unreadable under the prefix is stale too (nothing reads it as valid);
/// keys outside it are never stale here.
pub fn kv_entry_stale(key: &str, value: &[u8], now_secs: i64) -> bool {
    let text = std::str::from_utf8(value).unwrap_or_default();
    if key.starts_with(SIGNED_OUT_PREFIX) {
        // The mark holds the session's expiry; an expired cookie is refused
        // without it.
        return text
            .trim()
            .parse::<i64>()
            .map_or(true, |expires| expires <= now_secs);
    }
    if key.starts_with(SIGN_IN_KEY_PREFIX) {
        let start = text
            .split_once(':')
            .and_then(|(start, _)| start.parse::<i64>().ok());
        return start.is_none_or(|start| start + SIGN_IN_WINDOW_SECS.cast_signed() <= now_secs);
    }
    false
}

/// Seconds between page refreshes when nothing valid is configured.
pub const DEFAULT_REFRESH_SECS: u32 = 30;

/// Seconds between page refreshes: the page's `?refresh=N`, else the
/// `console_refresh_secs` variable, else [`DEFAULT_REFRESH_SECS`]; a value
/// counts only when it is a whole number from 5 to 3600.
pub fn refresh_secs(query: Option<&str>, variable: &str) -> u32 {
    let valid = |s: &str| {
        s.trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (5..=3600).contains(n))
    };
    query
        .and_then(valid)
        .or_else(|| valid(variable))
        .unwrap_or(DEFAULT_REFRESH_SECS)
}

/// Text made safe inside HTML (element content and quoted attributes).
pub fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Whether `method` only reads (a viewer may send it, and it needs no CSRF
/// token).
pub fn is_safe_method(method: &str) -> bool {
    matches!(
        method.to_ascii_uppercase().as_str(),
        "GET" | "HEAD" | "OPTIONS"
    )
}

/// What an admin API request presents, for [`authorize_admin`].
#[derive(Debug, Clone, Copy, Default)]
pub struct AdminRequest<'a> {
    /// Whether the method only reads ([`is_safe_method`]): a viewer may
    /// send it, and it needs no CSRF token.
    pub safe_method: bool,
    /// The `Authorization` header.
    pub authorization: Option<&'a str>,
    /// The `X-DOL-Actor` header.
    pub actor: Option<&'a str>,
    /// The `Cookie` header.
    pub cookie: Option<&'a str>,
    /// The [`CSRF_HEADER`] header.
    pub csrf: Option<&'a str>,
}

/// The configured secrets [`authorize_admin`] checks against.
#[derive(Debug, Clone, Copy, Default)]
pub struct AdminSecrets<'a> {
    /// The `admin_token` variable (empty = admin routes closed).
    pub admin_token: &'a str,
    /// The `viewer_token` variable, part of the sessions' signing key.
    pub viewer_token: &'a str,
}

/// Decides an admin API request: the bearer admin token as before, or a
/// console session cookie (not signed out per `signed_out`; a viewer only
/// reads; a state-changing request with a session must carry its CSRF
/// token). Returns the actor for the audit log, or the error to send.
pub fn authorize_admin(
    secrets: AdminSecrets<'_>,
    req: AdminRequest<'_>,
    now_secs: i64,
    signed_out: &dyn Fn(&Session) -> bool,
) -> Result<String, ApiError> {
    use crate::auth::{self, TokenCheck};
    if secrets.admin_token.is_empty() {
        return Err(ApiError::new(
            Code::AdminClosed,
            "admin routes are closed: admin_token is not configured (set SPIN_VARIABLE_ADMIN_TOKEN)",
        ));
    }
    let unauthorized = |message: &str| {
        ApiError::new(Code::Unauthorized, message).with_header("www-authenticate", "Bearer")
    };
    let bearer = auth::bearer(req.authorization);
    // A bearer token wins over a cookie: API clients keep their old behaviour.
    if bearer.is_none()
        && let Some(value) = cookie_value(req.cookie)
    {
        let key = signing_key(secrets.admin_token, secrets.viewer_token);
        let session = verify(&key, value, now_secs).map_err(|e| unauthorized(&format!("{e}")))?;
        if signed_out(&session) {
            return Err(unauthorized(&SessionError::SignedOut.to_string()));
        }
        if !req.safe_method {
            if session.role != Role::Admin {
                return Err(ApiError::new(
                    Code::Forbidden,
                    "a viewer session may only read (GET)",
                ));
            }
            if !csrf_ok(&key, &session, req.csrf) {
                return Err(ApiError::new(
                    Code::Forbidden,
                    "missing or wrong CSRF token: send the x-dol-csrf header of the console page",
                ));
            }
        }
        let who = format!("console:{}", session.role.as_str());
        return Ok(auth::actor(req.actor.or(Some(&who)), secrets.admin_token));
    }
    match auth::check_token(secrets.admin_token, bearer) {
        TokenCheck::Valid => Ok(auth::actor(req.actor, secrets.admin_token)),
        TokenCheck::Missing | TokenCheck::Open => Err(unauthorized(
            "missing credentials: send Authorization: Bearer <admin_token>",
        )),
        TokenCheck::Wrong => Err(unauthorized("the bearer token is not the admin token")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn key() -> Vec<u8> {
        signing_key("admin-secret", "viewer-secret")
    }

    fn admin_req<'a>(
        method: &'a str,
        cookie: Option<&'a str>,
        csrf: Option<&'a str>,
    ) -> AdminRequest<'a> {
        AdminRequest {
            safe_method: is_safe_method(method),
            cookie,
            csrf,
            ..AdminRequest::default()
        }
    }

    fn open(_: &Session) -> bool {
        false
    }

    const SECRETS: AdminSecrets<'static> = AdminSecrets {
        admin_token: "admin-secret",
        viewer_token: "viewer-secret",
    };

    #[test]
    fn admin_api_accepts_the_bearer_token_as_before() {
        let req = AdminRequest {
            authorization: Some("Bearer admin-secret"),
            ..AdminRequest::default()
        };
        assert!(authorize_admin(SECRETS, req, NOW, &open).is_ok());
        let wrong = AdminRequest {
            authorization: Some("Bearer nope"),
            ..req
        };
        let err = authorize_admin(SECRETS, wrong, NOW, &open).unwrap_err();
        assert_eq!(err.code, Code::Unauthorized);
        let none = admin_req("GET", None, None);
        assert_eq!(
            authorize_admin(SECRETS, none, NOW, &open).unwrap_err().code,
            Code::Unauthorized
        );
        let closed = AdminSecrets {
            admin_token: "",
            viewer_token: "",
        };
        assert_eq!(
            authorize_admin(closed, req, NOW, &open).unwrap_err().code,
            Code::AdminClosed
        );
    }

    #[test]
    fn admin_api_accepts_sessions_with_csrf_for_changes() {
        let value = create(&key(), Role::Admin, NOW, "n");
        let cookie = format!("{COOKIE_NAME}={value}");
        let csrf = csrf_token(&key(), &value);
        let get = admin_req("GET", Some(&cookie), None);
        let actor = authorize_admin(SECRETS, get, NOW, &open).unwrap();
        assert!(actor.starts_with("console:admin"), "{actor}");
        let post = admin_req("POST", Some(&cookie), Some(&csrf));
        assert!(authorize_admin(SECRETS, post, NOW, &open).is_ok());
        let forged = admin_req("POST", Some(&cookie), None);
        assert_eq!(
            authorize_admin(SECRETS, forged, NOW, &open)
                .unwrap_err()
                .code,
            Code::Forbidden
        );
        let wrong = admin_req("DELETE", Some(&cookie), Some("abc"));
        assert_eq!(
            authorize_admin(SECRETS, wrong, NOW, &open)
                .unwrap_err()
                .code,
            Code::Forbidden
        );
        let late = admin_req("GET", Some(&cookie), None);
        let err = authorize_admin(SECRETS, late, NOW + SESSION_TTL_SECS, &open).unwrap_err();
        assert_eq!(err.code, Code::Unauthorized);
    }

    #[test]
    fn a_viewer_session_ends_when_the_viewer_token_is_emptied_or_rotated() {
        let value = create(&key(), Role::Viewer, NOW, "n");
        let cookie = format!("{COOKIE_NAME}={value}");
        for viewer_token in ["", "rotated"] {
            let now = AdminSecrets {
                viewer_token,
                ..SECRETS
            };
            let get = admin_req("GET", Some(&cookie), None);
            assert_eq!(
                authorize_admin(now, get, NOW, &open).unwrap_err().code,
                Code::Unauthorized,
                "viewer token now {viewer_token:?}"
            );
        }
    }

    #[test]
    fn viewer_sessions_only_read() {
        let value = create(&key(), Role::Viewer, NOW, "n");
        let cookie = format!("{COOKIE_NAME}={value}");
        let csrf = csrf_token(&key(), &value);
        assert!(
            authorize_admin(SECRETS, admin_req("GET", Some(&cookie), None), NOW, &open).is_ok()
        );
        let post = admin_req("POST", Some(&cookie), Some(&csrf));
        assert_eq!(
            authorize_admin(SECRETS, post, NOW, &open).unwrap_err().code,
            Code::Forbidden
        );
    }

    #[test]
    fn signed_out_sessions_are_unauthorized() {
        let value = create(&key(), Role::Admin, NOW, "n");
        let cookie = format!("{COOKIE_NAME}={value}");
        let session = verify(&key(), &value, NOW).unwrap();
        let marked = signed_out_key(&session);
        assert!(
            marked.starts_with(SIGNED_OUT_PREFIX) && marked.len() == SIGNED_OUT_PREFIX.len() + 32
        );
        let other = verify(&key(), &create(&key(), Role::Admin, NOW, "m"), NOW).unwrap();
        assert_ne!(marked, signed_out_key(&other), "one key per session");
        let is_marked = |s: &Session| signed_out_key(s) == marked;
        let err = authorize_admin(
            SECRETS,
            admin_req("GET", Some(&cookie), None),
            NOW,
            &is_marked,
        )
        .unwrap_err();
        assert_eq!(err.code, Code::Unauthorized);
        assert!(err.message.contains("signed out"), "{}", err.message);
        let bearer = AdminRequest {
            authorization: Some("Bearer admin-secret"),
            ..admin_req("GET", Some(&cookie), None)
        };
        assert!(
            authorize_admin(SECRETS, bearer, NOW, &is_marked).is_ok(),
            "the bearer token is not a session"
        );
    }

    #[test]
    fn forged_session_cookies_are_unauthorized() {
        let cookie = format!("{COOKIE_NAME}=v1.admin.1.99999999999.n.deadbeef");
        let err = authorize_admin(SECRETS, admin_req("GET", Some(&cookie), None), NOW, &open)
            .unwrap_err();
        assert_eq!(err.code, Code::Unauthorized);
    }

    #[test]
    fn signs_in_by_token() {
        assert_eq!(
            sign_in("a", "v", "a"),
            SignIn::Granted(Role::Admin),
            "admin token"
        );
        assert_eq!(sign_in("a", "v", " v "), SignIn::Granted(Role::Viewer));
        assert_eq!(sign_in("a", "v", "x"), SignIn::Refused);
        assert_eq!(sign_in("a", "", ""), SignIn::Refused, "empty viewer token");
        assert_eq!(sign_in("", "v", "v"), SignIn::Closed);
    }

    #[test]
    fn round_trips_a_session() {
        let value = create(&key(), Role::Viewer, NOW, "n1");
        let s = verify(&key(), &value, NOW + 10).unwrap();
        assert_eq!(s.role, Role::Viewer);
        assert_eq!((s.issued, s.expires), (NOW, NOW + SESSION_TTL_SECS));
        assert!(!value.contains("admin-secret"));
    }

    #[test]
    fn refuses_expired_sessions() {
        let value = create(&key(), Role::Admin, NOW, "n");
        assert!(verify(&key(), &value, NOW + SESSION_TTL_SECS - 1).is_ok());
        assert_eq!(
            verify(&key(), &value, NOW + SESSION_TTL_SECS),
            Err(SessionError::Expired)
        );
        assert_eq!(
            verify(&key(), &value, NOW - 3600),
            Err(SessionError::Expired),
            "issued in the future"
        );
    }

    #[test]
    fn refuses_forged_sessions() {
        let value = create(&key(), Role::Viewer, NOW, "n");
        let forged = value.replacen("viewer", "admin", 1);
        assert_eq!(
            verify(&key(), &forged, NOW),
            Err(SessionError::BadSignature)
        );
        let other = signing_key("another-admin-token", "viewer-secret");
        assert_eq!(verify(&other, &value, NOW), Err(SessionError::BadSignature));
        // Emptying or rotating the viewer token ends the sessions signed
        // before it, viewers' included.
        for viewer in ["", "rotated-viewer-secret"] {
            let now_key = signing_key("admin-secret", viewer);
            assert_eq!(
                verify(&now_key, &value, NOW),
                Err(SessionError::BadSignature),
                "viewer token {viewer:?}"
            );
        }
        let extended = value.replacen(
            &(NOW + SESSION_TTL_SECS).to_string(),
            &(NOW * 2).to_string(),
            1,
        );
        assert_eq!(
            verify(&key(), &extended, NOW),
            Err(SessionError::BadSignature)
        );
    }

    #[test]
    fn refuses_malformed_sessions() {
        for bad in ["", "abc", "v1.admin.1.2.n", "a.b.c.d.e.f.g"] {
            assert!(verify(&key(), bad, NOW).is_err(), "{bad}");
        }
        assert_eq!(verify(&key(), "x", NOW), Err(SessionError::Malformed));
        assert_eq!(
            verify(&[], &create(&key(), Role::Admin, NOW, "n"), NOW),
            Err(SessionError::NoKey)
        );
        assert!(signing_key("", "x").is_empty());
    }

    #[test]
    fn nonce_is_sanitised_and_distinguishes_sessions() {
        let a = create(&key(), Role::Admin, NOW, "a.b;c");
        assert_eq!(a.split('.').count(), 6, "{a}");
        assert_ne!(a, create(&key(), Role::Admin, NOW, "d"));
    }

    #[test]
    fn checks_csrf_tokens() {
        let value = create(&key(), Role::Admin, NOW, "n");
        let s = verify(&key(), &value, NOW).unwrap();
        let token = csrf_token(&key(), &value);
        assert!(csrf_ok(&key(), &s, Some(&token)));
        assert!(!csrf_ok(&key(), &s, None));
        assert!(!csrf_ok(&key(), &s, Some("")));
        let other = create(&key(), Role::Admin, NOW, "m");
        assert!(
            !csrf_ok(&key(), &s, Some(&csrf_token(&key(), &other))),
            "another session's token"
        );
    }

    #[test]
    fn reads_and_writes_cookies() {
        assert_eq!(
            cookie_value(Some("a=1; dol_session=xyz ; b=2")),
            Some("xyz")
        );
        assert_eq!(cookie_value(Some("dol_sessionx=1")), None);
        assert_eq!(cookie_value(None), None);
        let set = set_cookie("v", true);
        for attr in [
            "HttpOnly",
            "SameSite=Strict",
            "Secure",
            "Path=/",
            "Max-Age=",
        ] {
            assert!(set.contains(attr), "{set} lacks {attr}");
        }
        assert!(!set_cookie("v", false).contains("Secure"));
        assert!(clear_cookie(false).contains("Max-Age=0"));
    }

    #[test]
    fn picks_the_refresh_interval() {
        assert_eq!(refresh_secs(None, ""), 30);
        assert_eq!(refresh_secs(Some("10"), "60"), 10, "the page's choice wins");
        assert_eq!(refresh_secs(None, "60"), 60);
        assert_eq!(refresh_secs(Some("4"), "60"), 60, "too short");
        assert_eq!(refresh_secs(Some("3601"), ""), 30, "too long");
        assert_eq!(refresh_secs(Some("ten"), "x"), 30);
        assert_eq!(refresh_secs(Some(" 5 "), ""), 5);
    }

    #[test]
    fn escapes_html() {
        assert_eq!(
            escape_html(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn refuses_cross_site_form_posts() {
        let own = Some("http://127.0.0.1:3000/admin/dol/login");
        // Browsers: Sec-Fetch-Site decides.
        assert!(same_origin_form_post(Some("same-origin"), None, own));
        assert!(same_origin_form_post(Some("none"), None, own));
        assert!(!same_origin_form_post(Some("cross-site"), None, own));
        assert!(!same_origin_form_post(Some("same-site"), None, own));
        assert!(!same_origin_form_post(
            Some("cross-site"),
            Some("http://127.0.0.1:3000"),
            own
        ));
        // Older browsers: Origin against the URL the form was sent to.
        assert!(same_origin_form_post(
            None,
            Some("http://127.0.0.1:3000"),
            own
        ));
        assert!(same_origin_form_post(
            None,
            Some("HTTPS://DOL.example"),
            Some("http://dol.example/admin/dol/login?x=1")
        ));
        assert!(!same_origin_form_post(
            None,
            Some("http://evil.example"),
            own
        ));
        assert!(!same_origin_form_post(
            None,
            Some("http://127.0.0.1:3001"),
            own
        ));
        assert!(!same_origin_form_post(None, Some("null"), own));
        assert!(!same_origin_form_post(
            None,
            Some("http://127.0.0.1:3000"),
            None
        ));
        // Neither header: not a browser, nothing ambient to abuse.
        assert!(same_origin_form_post(None, None, own));
        assert!(same_origin_form_post(None, None, None));
    }

    #[test]
    fn stale_console_entries_are_those_that_no_longer_decide_anything() {
        let now = 1_000_000;
        let out = |tag: &str| format!("{SIGNED_OUT_PREFIX}{tag}");
        assert!(kv_entry_stale(&out("a"), b"999999", now), "session expired");
        assert!(kv_entry_stale(&out("a"), b"1000000", now), "expires now");
        assert!(!kv_entry_stale(&out("a"), b"1000001", now), "still valid");
        assert!(kv_entry_stale(&out("a"), b"junk", now));
        let counter = sign_in_limit_key(Some("10.0.0.1:80"));
        assert!(!kv_entry_stale(&counter, b"999800:4", now), "window open");
        assert!(kv_entry_stale(&counter, b"999700:4", now), "window over");
        assert!(kv_entry_stale(&counter, b"nonsense", now));
        assert!(
            !kv_entry_stale("dol:cache:x", b"1", now),
            "not the console's"
        );
        assert!(!kv_entry_stale("dol:console:other", b"1", now));
        assert!(KV_PREFIX.len() < SIGNED_OUT_PREFIX.len());
        assert!(
            SIGN_IN_KEY_PREFIX.starts_with(KV_PREFIX) && SIGNED_OUT_PREFIX.starts_with(KV_PREFIX)
        );
    }

    #[test]
    fn limits_sign_in_attempts_per_address() {
        use crate::ratelimit::Decision;
        assert_eq!(
            sign_in_limit_key(Some("10.0.0.1:5123")),
            "dol:console:sign-in:10.0.0.1"
        );
        assert_eq!(
            sign_in_limit_key(Some("[::1]:80")),
            "dol:console:sign-in:::1"
        );
        assert_eq!(sign_in_limit_key(None), "dol:console:sign-in:unknown");
        let mut db = crate::test_db::db();
        let key = sign_in_limit_key(Some("10.0.0.1:5123"));
        for i in 0..SIGN_IN_ATTEMPTS {
            if let Decision::Deny { .. } = sign_in_attempt(&mut db, &key, NOW).unwrap() {
                panic!("attempt {i} refused");
            }
        }
        let Decision::Deny { retry_after_secs } = sign_in_attempt(&mut db, &key, NOW).unwrap()
        else {
            panic!("attempt {} allowed", SIGN_IN_ATTEMPTS + 1);
        };
        assert!((1..=SIGN_IN_WINDOW_SECS).contains(&retry_after_secs));
        let other = sign_in_limit_key(Some("10.0.0.2:5123"));
        assert!(matches!(
            sign_in_attempt(&mut db, &other, NOW).unwrap(),
            Decision::Allow(_)
        ));
        let later = NOW + i64::try_from(SIGN_IN_WINDOW_SECS).unwrap();
        assert!(matches!(
            sign_in_attempt(&mut db, &key, later).unwrap(),
            Decision::Allow(_)
        ));
    }

    #[test]
    fn classifies_methods() {
        assert!(is_safe_method("GET") && is_safe_method("head"));
        assert!(!is_safe_method("POST") && !is_safe_method("DELETE") && !is_safe_method("PUT"));
    }
}
