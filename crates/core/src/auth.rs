//! Bearer-token checks shared by the OFREP and admin APIs.

use crate::flags::murmur3_x86_32;

/// Outcome of comparing presented credentials with the configured token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenCheck {
    /// No token is configured and the API is open (OFREP only: the admin
    /// API treats an empty token as closed).
    Open,
    /// The presented token is the configured one.
    Valid,
    /// No credentials were presented.
    Missing,
    /// Credentials were presented but do not match.
    Wrong,
}

/// The token of an `Authorization: Bearer <token>` header value (scheme
/// case-insensitive), or `None`.
pub fn bearer(authorization: Option<&str>) -> Option<&str> {
    let value = authorization?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Compares `presented` with `configured` (empty `configured` = open).
pub fn check_token(configured: &str, presented: Option<&str>) -> TokenCheck {
    if configured.is_empty() {
        return TokenCheck::Open;
    }
    match presented {
        None => TokenCheck::Missing,
        Some(p) if constant_time_eq(p.as_bytes(), configured.as_bytes()) => TokenCheck::Valid,
        Some(_) => TokenCheck::Wrong,
    }
}

/// Byte equality whose running time depends only on the lengths, not on
/// where the inputs first differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let len = a.len().max(b.len());
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..len {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    diff == 0
}

/// A stable, non-secret label for a token (for audit logs): `token:` plus
/// eight hex digits of a hash. Reveals nothing usable about the token.
pub fn token_label(token: &str) -> String {
    format!("token:{:08x}", murmur3_x86_32(token.as_bytes(), 0x0d01))
}

/// The actor recorded in the audit log: a sanitised `X-DOL-Actor` header
/// (printable ASCII, at most 64 characters) when given, else the token label.
pub fn actor(header: Option<&str>, token: &str) -> String {
    let label = token_label(token);
    match header.map(str::trim).filter(|h| !h.is_empty()) {
        Some(h) => {
            let clean: String = h
                .chars()
                .filter(|c| c.is_ascii_graphic() || *c == ' ')
                .take(64)
                .collect();
            format!("{clean} ({label})")
        }
        None => label,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn parses_bearer_headers() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(None), None);
    }

    #[test]
    fn checks_tokens() {
        assert_eq!(check_token("", None), TokenCheck::Open);
        assert_eq!(check_token("t", None), TokenCheck::Missing);
        assert_eq!(check_token("t", Some("t")), TokenCheck::Valid);
        assert_eq!(check_token("t", Some("tt")), TokenCheck::Wrong);
        assert_eq!(check_token("tt", Some("t")), TokenCheck::Wrong);
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"a\0", b"a"));
    }

    #[test]
    fn labels_actors() {
        let label = token_label("secret");
        assert!(label.starts_with("token:") && label.len() == 14, "{label}");
        assert!(!label.contains("secret"));
        assert_eq!(actor(None, "secret"), label);
        assert_eq!(
            actor(Some(" alice\n "), "secret"),
            format!("alice ({label})")
        );
    }
}
