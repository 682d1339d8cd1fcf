//! The kill switch, through the flags admin API of the `flag-evaluate`
//! component (`POST /admin/flags/{key}/kill`), reached with Spin service
//! chaining so the call stays in-process and portable to real Spin.

use spin_sdk::http::{Method, Request, Response};

use crate::error::Rejection;
use crate::request;

/// The flags admin API, by service chaining (must be in the component's
/// `allowed_outbound_hosts`).
const FLAGS_ADMIN: &str = "http://flag-evaluate.spin.internal/admin/flags";
/// Spin variable with the flags admin token.
const ADMIN_TOKEN: &str = "admin_token";

/// Percent-encodes a path segment (everything but RFC 3986 unreserved).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Turns on the kill switch of `flag` (everyone gets its default variant),
/// recorded in the flags audit log as done by `actor`.
pub async fn kill(flag: &str, actor: &str) -> Result<(), Rejection> {
    let token = request::secret(ADMIN_TOKEN)?;
    let url = format!("{FLAGS_ADMIN}/{}/kill", encode_segment(flag));
    let req = Request::builder()
        .method(Method::Post)
        .uri(url)
        .header("authorization", format!("Bearer {token}"))
        .header("x-dol-actor", actor)
        .body(Vec::new())
        .build();
    let response: Response = spin_sdk::http::send(req)
        .await
        .map_err(|e| Rejection::FlagService(format!("request failed: {e}")))?;
    match *response.status() {
        200..=299 => Ok(()),
        400 => Err(Rejection::InvalidFlag(flag.to_owned())),
        404 => Err(Rejection::FlagNotFound(flag.to_owned())),
        401 | 403 => Err(Rejection::FlagService(
            "the admin token was refused (is admin_token the same for both components?)".to_owned(),
        )),
        status => Err(Rejection::FlagService(format!("HTTP {status}"))),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn segments_are_encoded() {
        assert_eq!(super::encode_segment("beta_features"), "beta_features");
        assert_eq!(super::encode_segment("a/b c"), "a%2Fb%20c");
    }
}
