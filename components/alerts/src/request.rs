//! Reading requests: secrets from Spin variables, content types, the clock.

use spin_sdk::http::Request;

use crate::error::Rejection;
use dol_spin_platform as platform;

/// The value of a secret Spin variable; an empty or unreadable one closes the
/// route ([`Rejection::NotConfigured`], 503), it never opens it.
pub fn secret(name: &'static str) -> Result<String, Rejection> {
    match platform::variables::get(name) {
        Ok(value) if !value.is_empty() => Ok(value),
        Ok(_) => Err(Rejection::NotConfigured(name)),
        Err(err) => {
            // The error names the variable, never its value.
            eprintln!("alerts: reading variable {name} failed: {err}");
            Err(Rejection::NotConfigured(name))
        }
    }
}

/// Refuses a body whose `Content-Type` is not `expected`.
pub fn require_content_type(req: &Request, expected: &'static str) -> Result<(), Rejection> {
    if dol_core::observe::inbound::has_media_type(platform::header(req, "content-type"), expected) {
        Ok(())
    } else {
        Err(Rejection::ContentType(expected))
    }
}

/// The body as text.
pub fn body_text(req: &Request) -> Result<&str, Rejection> {
    std::str::from_utf8(req.body()).map_err(|_| Rejection::NotUtf8)
}

/// Now, Unix seconds.
pub fn now_secs() -> i64 {
    platform::now_ms() / 1_000
}
