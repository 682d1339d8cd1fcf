//! Standard Webhooks signatures (the scheme Replicate signs its callbacks
//! with and DOL signs its completion webhooks with): headers `webhook-id`,
//! `webhook-timestamp` (Unix seconds) and `webhook-signature` (space-separated
//! `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`); a `whsec_` secret
//! is base64 after the prefix, any other secret is used as its bytes.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::auth::constant_time_eq;
use crate::error::{ApiError, Code};
use crate::gateway::embeddings::base64;

/// How far a timestamp may be from now, seconds (replays are refused).
pub const TOLERANCE_SECS: u64 = 300;

/// Why a signed request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// No secret is configured: callbacks are never accepted unsigned.
    #[error("no webhook secret configured")]
    NoSecret,
    /// A header is missing.
    #[error("missing header {0}")]
    Missing(&'static str),
    /// The timestamp is not a number.
    #[error("webhook-timestamp is not a Unix time in seconds")]
    BadTimestamp,
    /// The timestamp is too far from now.
    #[error("webhook-timestamp is more than {TOLERANCE_SECS} s from now")]
    Stale,
    /// No signature matches.
    #[error("no webhook-signature matches")]
    Mismatch,
}

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> Self {
        let code = match e {
            WebhookError::NoSecret => Code::NotConfigured,
            WebhookError::Missing("webhook-timestamp") => Code::MissingTimestamp,
            WebhookError::Missing(_) => Code::MissingSignature,
            WebhookError::BadTimestamp => Code::BadTimestamp,
            WebhookError::Stale => Code::StaleTimestamp,
            WebhookError::Mismatch => Code::BadSignature,
        };
        ApiError::new(code, e.to_string())
    }
}

fn b64_value(c: u8) -> Option<u32> {
    match c {
        b'A'..=b'Z' => Some(u32::from(c - b'A')),
        b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
        b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
        b'+' | b'-' => Some(62),
        b'/' | b'_' => Some(63),
        _ => None,
    }
}

/// Decodes standard or URL-safe base64 (padding optional); `None` if malformed.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        acc = (acc << 6) | b64_value(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}

/// The HMAC key of `secret`.
pub fn key_of(secret: &str) -> Vec<u8> {
    match secret.strip_prefix("whsec_").and_then(base64_decode) {
        Some(key) => key,
        None => secret.as_bytes().to_vec(),
    }
}

/// The `webhook-signature` value for a message.
pub fn sign(secret: &str, id: &str, timestamp: u64, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&key_of(secret)) else {
        return String::new();
    };
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", base64(&mac.finalize().into_bytes()))
}

/// The signed headers as presented.
#[derive(Debug, Clone, Copy, Default)]
pub struct Signed<'a> {
    /// `webhook-id`.
    pub id: Option<&'a str>,
    /// `webhook-timestamp`.
    pub timestamp: Option<&'a str>,
    /// `webhook-signature`.
    pub signature: Option<&'a str>,
}

/// Verifies a delivery at `now_secs`.
pub fn verify(secret: &str, h: Signed<'_>, body: &[u8], now_secs: u64) -> Result<(), WebhookError> {
    if secret.is_empty() {
        return Err(WebhookError::NoSecret);
    }
    let id = h.id.ok_or(WebhookError::Missing("webhook-id"))?;
    let ts = h
        .timestamp
        .ok_or(WebhookError::Missing("webhook-timestamp"))?;
    let sigs = h
        .signature
        .ok_or(WebhookError::Missing("webhook-signature"))?;
    let ts: u64 = ts.trim().parse().map_err(|_| WebhookError::BadTimestamp)?;
    if ts.abs_diff(now_secs) > TOLERANCE_SECS {
        return Err(WebhookError::Stale);
    }
    let expected = sign(secret, id, ts, body);
    if sigs
        .split_whitespace()
        .any(|s| constant_time_eq(s.as_bytes(), expected.as_bytes()))
    {
        Ok(())
    } else {
        Err(WebhookError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The Standard Webhooks specification's example: secret, id, timestamp, body and signature.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: u64 = 1_614_265_330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn the_specifications_example_verifies() {
        assert_eq!(sign(SECRET, ID, TS, BODY), SIG);
        let h = Signed {
            id: Some(ID),
            timestamp: Some("1614265330"),
            signature: Some(SIG),
        };
        assert_eq!(verify(SECRET, h, BODY, TS + 10), Ok(()));
        let several = format!("v1,bogus {SIG}");
        let h2 = Signed {
            signature: Some(&several),
            ..h
        };
        assert_eq!(verify(SECRET, h2, BODY, TS), Ok(()));
    }

    #[test]
    fn each_refusal_has_its_cause() {
        let ok = Signed {
            id: Some(ID),
            timestamp: Some("1614265330"),
            signature: Some(SIG),
        };
        assert_eq!(verify("", ok, BODY, TS), Err(WebhookError::NoSecret));
        assert_eq!(
            verify(SECRET, Signed { id: None, ..ok }, BODY, TS),
            Err(WebhookError::Missing("webhook-id"))
        );
        assert_eq!(
            verify(
                SECRET,
                Signed {
                    signature: None,
                    ..ok
                },
                BODY,
                TS
            ),
            Err(WebhookError::Missing("webhook-signature"))
        );
        assert_eq!(
            verify(
                SECRET,
                Signed {
                    timestamp: Some("soon"),
                    ..ok
                },
                BODY,
                TS
            ),
            Err(WebhookError::BadTimestamp)
        );
        assert_eq!(verify(SECRET, ok, BODY, TS + 301), Err(WebhookError::Stale));
        assert_eq!(verify(SECRET, ok, b"{}", TS), Err(WebhookError::Mismatch));
        assert_eq!(ApiError::from(WebhookError::Mismatch).status(), 401);
    }

    #[test]
    fn base64_decodes_what_base64_encodes() {
        for bytes in [&b""[..], b"f", b"fo", b"foo", b"\xff\x00\x10"] {
            assert_eq!(base64_decode(&base64(bytes)).unwrap(), bytes);
        }
        assert_eq!(base64_decode("*"), None);
    }
}
