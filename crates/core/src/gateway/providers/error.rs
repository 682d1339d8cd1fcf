//! Classifying provider failures: HTTP status, error body and headers become
//! an [`ErrorClass`] for routing and a [`FailureKind`] for the retry policy.
//!
//! The rules are the same for every provider, because the three APIs agree on
//! the statuses: 429 is a rate limit (with `Retry-After` / `retry-after-ms`, or
//! Gemini's `RetryInfo`), 529 or an `overloaded_error` is an overload, 5xx a
//! server failure, 401/403 an auth problem, 404 an unknown model or route, a
//! 4xx that talks about the context length a context-length failure, and any
//! other 4xx a bad request. An error that arrives without an HTTP status (in a
//! 200 body or inside a stream) gets the status its type implies, e.g.
//! Anthropic's `overloaded_error` → 529, Gemini's `RESOURCE_EXHAUSTED` → 429.
//!
//! Messages are short, single-line and scrubbed of anything that looks like
//! an API key, so they are safe to log and to show.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::super::retry::{FailureKind, parse_retry_after, parse_retry_after_ms};
use super::super::tiers::AttemptOutcome;
use super::{ProviderKind, REDACTED, header_value};

/// Longest [`ProviderFailure::message`], in characters.
pub const MAX_MESSAGE_CHARS: usize = 200;

/// What kind of failure a provider reported, for routing and reporting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Too many requests (429): retry later or elsewhere.
    RateLimited,
    /// The provider is overloaded (Anthropic's 529 / `overloaded_error`).
    Overloaded,
    /// A server-side failure (5xx), or a stream that broke off.
    Server,
    /// The prompt (plus the requested output) does not fit the model's context window.
    ContextLength,
    /// The key is missing, wrong or lacks permission (401/403).
    Auth,
    /// The request was rejected as invalid (other 4xx).
    BadRequest,
    /// The model or route does not exist (404).
    NotFound,
    /// The provider answered, but not in a shape DOL understands.
    Malformed,
}

impl ErrorClass {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RateLimited => "rate_limited",
            Self::Overloaded => "overloaded",
            Self::Server => "server",
            Self::ContextLength => "context_length",
            Self::Auth => "auth",
            Self::BadRequest => "bad_request",
            Self::NotFound => "not_found",
            Self::Malformed => "malformed",
        }
    }
}

/// A failed provider call, classified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{} provider failure: {message}", class.as_str())]
pub struct ProviderFailure {
    /// What went wrong.
    pub class: ErrorClass,
    /// The failure for the retry policy; `None` when retrying cannot help at
    /// all (an answer DOL cannot parse).
    pub failure: Option<FailureKind>,
    /// A short description, safe to log: never contains the API key.
    pub message: String,
}

impl ProviderFailure {
    /// A well-formed-looking answer DOL could not interpret.
    pub fn malformed(message: &str) -> Self {
        Self {
            class: ErrorClass::Malformed,
            failure: None,
            message: clean_message(message),
        }
    }

    /// A stream that ended before its terminal event: a broken connection,
    /// never a success.
    pub fn stream_ended_early() -> Self {
        Self {
            class: ErrorClass::Server,
            failure: Some(FailureKind::Connect),
            message: "stream ended early".to_owned(),
        }
    }

    /// Replaces every occurrence of `secret` (the configured key) in the
    /// message. The message is already scrubbed of key-like words; this also
    /// catches keys that do not look like one, for callers holding the config.
    pub fn redact_secret(&mut self, secret: &str) {
        if !secret.is_empty() && self.message.contains(secret) {
            self.message = self.message.replace(secret, REDACTED);
        }
    }

    /// Whether retrying the same candidate can help.
    pub fn is_retryable(&self) -> bool {
        self.failure.is_some_and(FailureKind::is_retryable)
    }

    /// The outcome to report to the tier pipeline for this failure.
    pub fn attempt_outcome(&self) -> AttemptOutcome {
        match self.failure {
            Some(failure) => AttemptOutcome::Failed { failure },
            None => AttemptOutcome::Fatal,
        }
    }
}

/// Classifies a failed response from its status, headers and body.
///
/// 429 → [`ErrorClass::RateLimited`]; 529, an `overloaded_error` or a 503
/// saying "overloaded" → [`ErrorClass::Overloaded`] (with
/// [`FailureKind::Overloaded`]); other 5xx → [`ErrorClass::Server`]; 401/403 →
/// [`ErrorClass::Auth`]; 404 → [`ErrorClass::NotFound`]; a 4xx about the
/// context length → [`ErrorClass::ContextLength`]; other 4xx →
/// [`ErrorClass::BadRequest`]. All of these carry
/// [`FailureKind::Status`] (except overload) with the wait from
/// `retry-after-ms`, `Retry-After` (seconds or an HTTP date, resolved against
/// `now_unix_s`) or Gemini's `RetryInfo`. A status outside 400–599 without an
/// error object in the body is [`ErrorClass::Malformed`] with no failure kind.
pub fn classify_error(
    kind: ProviderKind,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
    now_unix_s: u64,
) -> ProviderFailure {
    let hint = match serde_json::from_slice::<Value>(body) {
        Ok(v) => ErrorHint::from_body(kind, &v),
        // A plain-text body (some proxies) is the best description there is.
        Err(_) => ErrorHint::from_text(body),
    };
    classify(status, hint.as_ref(), headers, now_unix_s)
}

/// The failure an error object embedded in a (2xx) JSON body or stream event
/// describes, or `None` when `v` carries no error.
pub(super) fn embedded_error(
    kind: ProviderKind,
    v: &Value,
    headers: &[(String, String)],
    now_unix_s: u64,
) -> Option<ProviderFailure> {
    let is_error = v.get("error").is_some_and(|e| !e.is_null())
        || v.get("type").and_then(Value::as_str) == Some("error");
    if !is_error {
        return None;
    }
    let hint = ErrorHint::from_body(kind, v).unwrap_or_default();
    Some(classify(0, Some(&hint), headers, now_unix_s))
}

/// What an error body says, across the providers' shapes:
/// OpenAI `{"error": {"message", "type", "code"}}`, Anthropic
/// `{"type": "error", "error": {"type", "message"}}`, Gemini
/// `{"error": {"code", "message", "status", "details"}}`, and the
/// `{"error": "text"}` / `{"detail": "text"}` / `{"message": "text"}` of
/// smaller OpenAI-compatible servers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ErrorHint {
    /// Error type or status names (`rate_limit_error`, `RESOURCE_EXHAUSTED`, a string `code`).
    names: Vec<String>,
    /// An HTTP status carried in the body (Gemini's numeric `code`).
    status: Option<u16>,
    /// The provider's message.
    message: Option<String>,
    /// Gemini's `RetryInfo.retryDelay`, in milliseconds.
    retry_delay_ms: Option<u64>,
}

impl ErrorHint {
    fn from_body(kind: ProviderKind, v: &Value) -> Option<Self> {
        let mut hint = Self::default();
        match v.get("error") {
            Some(Value::Object(e)) => {
                for key in ["type", "status", "code"] {
                    if let Some(s) = e.get(key).and_then(Value::as_str) {
                        hint.names.push(s.to_owned());
                    }
                }
                hint.status = e
                    .get("code")
                    .and_then(Value::as_u64)
                    .and_then(|c| u16::try_from(c).ok());
                hint.message = e.get("message").and_then(Value::as_str).map(str::to_owned);
                if kind == ProviderKind::Gemini {
                    hint.retry_delay_ms = e
                        .get("details")
                        .and_then(Value::as_array)
                        .and_then(|d| d.iter().find_map(|x| x.get("retryDelay")))
                        .and_then(Value::as_str)
                        .and_then(parse_duration_ms);
                }
            }
            Some(Value::String(s)) => hint.message = Some(s.clone()),
            _ => {
                hint.message = ["detail", "message"]
                    .iter()
                    .find_map(|k| v.get(*k).and_then(Value::as_str))
                    .map(str::to_owned);
            }
        }
        (hint != Self::default()).then_some(hint)
    }

    fn from_text(body: &[u8]) -> Option<Self> {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        // HTML error pages say nothing the status does not.
        if text.is_empty() || text.starts_with('<') {
            return None;
        }
        Some(Self {
            message: Some(text.to_owned()),
            ..Self::default()
        })
    }

    fn has_name(&self, name: &str) -> bool {
        self.names.iter().any(|n| n.eq_ignore_ascii_case(name))
    }

    /// The HTTP status the error's type implies, for errors without one.
    fn implied_status(&self) -> Option<u16> {
        if let Some(s) = self.status.filter(|s| (400..=599).contains(s)) {
            return Some(s);
        }
        self.names.iter().find_map(|n| {
            Some(match n.as_str() {
                "invalid_request_error"
                | "INVALID_ARGUMENT"
                | "FAILED_PRECONDITION"
                | "OUT_OF_RANGE"
                | "context_length_exceeded" => 400,
                "authentication_error" | "invalid_api_key" | "UNAUTHENTICATED" => 401,
                "permission_error" | "PERMISSION_DENIED" => 403,
                "not_found_error" | "model_not_found" | "NOT_FOUND" => 404,
                "request_too_large" => 413,
                "rate_limit_error"
                | "rate_limit_exceeded"
                | "insufficient_quota"
                | "RESOURCE_EXHAUSTED" => 429,
                "api_error" | "server_error" | "INTERNAL" => 500,
                "UNAVAILABLE" => 503,
                "DEADLINE_EXCEEDED" => 504,
                "overloaded_error" => 529,
                _ => return None,
            })
        })
    }

    fn mentions_context_length(&self) -> bool {
        if self.has_name("context_length_exceeded") {
            return true;
        }
        let Some(m) = &self.message else {
            return false;
        };
        let m = m.to_ascii_lowercase();
        // OpenAI/vLLM: "maximum context length"; Anthropic: "prompt is too long",
        // "input length and `max_tokens` exceed context limit"; Gemini: "The input
        // token count (…) exceeds the maximum number of tokens allowed (…)".
        [
            "context length",
            "context_length",
            "context window",
            "context limit",
            "prompt is too long",
            "maximum number of tokens",
            "too many tokens",
        ]
        .iter()
        .any(|p| m.contains(p))
            || (m.contains("token count") && m.contains("exceeds"))
    }
}

/// `"37s"` / `"1.5s"` (a protobuf Duration in JSON) → milliseconds.
fn parse_duration_ms(s: &str) -> Option<u64> {
    let secs: f64 = s.trim().strip_suffix('s')?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| (secs * 1000.0).ceil() as u64)
}

/// The provider's requested wait: `retry-after-ms` (more precise) before
/// `Retry-After`, then a delay from the body.
fn retry_after(
    headers: &[(String, String)],
    hint: Option<&ErrorHint>,
    now_unix_s: u64,
) -> Option<u64> {
    header_value(headers, "retry-after-ms")
        .and_then(parse_retry_after_ms)
        .or_else(|| {
            header_value(headers, "retry-after").and_then(|v| parse_retry_after(v, now_unix_s))
        })
        .or_else(|| hint.and_then(|h| h.retry_delay_ms))
}

/// The core rule table; `status` 0 (or any non-error status) means "no HTTP
/// status": then the hint decides, and an error object of unknown type counts
/// as a server failure.
fn classify(
    status: u16,
    hint: Option<&ErrorHint>,
    headers: &[(String, String)],
    now_unix_s: u64,
) -> ProviderFailure {
    let http_error = (400..=599).contains(&status);
    let effective = if http_error {
        status
    } else if let Some(h) = hint {
        h.implied_status().unwrap_or(500)
    } else {
        return ProviderFailure::malformed(&format!("unexpected HTTP status {status}"));
    };
    let retry_after_ms = retry_after(headers, hint, now_unix_s);
    let message = describe(http_error.then_some(status), hint);
    let overloaded = effective == 529
        || hint.is_some_and(|h| {
            h.has_name("overloaded_error")
                || (effective == 503
                    && h.message
                        .as_deref()
                        .is_some_and(|m| m.to_ascii_lowercase().contains("overloaded")))
        });
    if overloaded {
        return ProviderFailure {
            class: ErrorClass::Overloaded,
            failure: Some(FailureKind::Overloaded { retry_after_ms }),
            message,
        };
    }
    let class = match effective {
        429 => ErrorClass::RateLimited,
        401 | 403 => ErrorClass::Auth,
        404 => ErrorClass::NotFound,
        500..=599 => ErrorClass::Server,
        _ if hint.is_some_and(ErrorHint::mentions_context_length) => ErrorClass::ContextLength,
        _ => ErrorClass::BadRequest,
    };
    ProviderFailure {
        class,
        failure: Some(FailureKind::Status {
            status: effective,
            retry_after_ms,
        }),
        message,
    }
}

/// `HTTP 429 rate_limit_error: Rate limit reached …`, cleaned.
fn describe(status: Option<u16>, hint: Option<&ErrorHint>) -> String {
    let mut s = match status {
        Some(code) => format!("HTTP {code}"),
        None => "provider error".to_owned(),
    };
    if let Some(h) = hint {
        if let Some(name) = h.names.first() {
            s.push(' ');
            s.push_str(name);
        }
        if let Some(m) = h.message.as_deref().filter(|m| !m.trim().is_empty()) {
            s.push_str(": ");
            s.push_str(m);
        }
    }
    clean_message(&s)
}

/// One line, secrets scrubbed, at most [`MAX_MESSAGE_CHARS`] characters.
pub(super) fn clean_message(raw: &str) -> String {
    // Scrub before truncating, so a cut can never leave part of a key behind.
    let scrubbed = raw
        .split_whitespace()
        .map(scrub_word)
        .collect::<Vec<_>>()
        .join(" ");
    if scrubbed.chars().count() <= MAX_MESSAGE_CHARS {
        return scrubbed;
    }
    let mut out: String = scrubbed.chars().take(MAX_MESSAGE_CHARS - 1).collect();
    out.push('…');
    out
}

/// The word with a key-like core replaced by [`REDACTED`].
fn scrub_word(word: &str) -> String {
    let core = word.trim_matches(|c: char| !(c.is_ascii_alphanumeric() || "-_*.".contains(c)));
    let core = core.trim_end_matches('.');
    if looks_like_secret(core) {
        word.replacen(core, REDACTED, 1)
    } else {
        word.to_owned()
    }
}

/// Known key prefixes, or a long random-looking token (model ids are lowercase).
fn looks_like_secret(w: &str) -> bool {
    const PREFIXES: &[&str] = &["sk-", "sk_", "AIza", "xai-", "gsk_"];
    if w.len() >= 8 && PREFIXES.iter().any(|p| w.starts_with(p)) {
        return true;
    }
    w.len() >= 32
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_*.".contains(c))
        && w.chars().any(|c| c.is_ascii_digit())
        && w.chars().any(|c| c.is_ascii_uppercase())
        && w.chars().any(|c| c.is_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::providers::test_support::headers;

    const ALL: [ProviderKind; 3] = [
        ProviderKind::OpenAiCompatible,
        ProviderKind::Anthropic,
        ProviderKind::Gemini,
    ];

    fn status_failure(status: u16, retry_after_ms: Option<u64>) -> Option<FailureKind> {
        Some(FailureKind::Status {
            status,
            retry_after_ms,
        })
    }

    #[test]
    fn openai_error_classes() {
        let k = ProviderKind::OpenAiCompatible;
        let cases: &[(u16, &str, ErrorClass)] = &[
            (
                429,
                r#"{"error":{"message":"Rate limit reached for gpt-4o","type":"requests","code":"rate_limit_exceeded"}}"#,
                ErrorClass::RateLimited,
            ),
            (
                500,
                r#"{"error":{"message":"The server had an error","type":"server_error","code":null}}"#,
                ErrorClass::Server,
            ),
            (503, "", ErrorClass::Server),
            (
                400,
                r#"{"error":{"message":"This model's maximum context length is 128000 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#,
                ErrorClass::ContextLength,
            ),
            (
                401,
                r#"{"error":{"message":"Incorrect API key provided: sk-proj-********abcd.","type":"invalid_request_error","code":"invalid_api_key"}}"#,
                ErrorClass::Auth,
            ),
            (
                403,
                r#"{"error":{"message":"Country not supported","type":"permission_error"}}"#,
                ErrorClass::Auth,
            ),
            (
                404,
                r#"{"error":{"message":"The model `gpt-9` does not exist","type":"invalid_request_error","code":"model_not_found"}}"#,
                ErrorClass::NotFound,
            ),
            (
                400,
                r#"{"error":{"message":"temperature: bad","type":"invalid_request_error"}}"#,
                ErrorClass::BadRequest,
            ),
            (422, r#"{"detail":"Unprocessable"}"#, ErrorClass::BadRequest),
        ];
        for (status, body, class) in cases {
            let f = classify_error(k, *status, &[], body.as_bytes(), 0);
            assert_eq!(f.class, *class, "{status} {body}");
            assert_eq!(f.failure, status_failure(*status, None), "{status}");
            assert!(
                f.message.starts_with(&format!("HTTP {status}")),
                "{}",
                f.message
            );
        }
        // vLLM phrases it without a code.
        let f = classify_error(
            k,
            400,
            &[],
            br#"{"object":"error","message":"This model's maximum context length is 4096 tokens. However, you requested 5000 tokens","type":"BadRequestError","code":400}"#,
            0,
        );
        assert_eq!(f.class, ErrorClass::ContextLength);
    }

    #[test]
    fn anthropic_error_classes() {
        let k = ProviderKind::Anthropic;
        let body = |t: &str, m: &str| {
            format!(
                r#"{{"type":"error","error":{{"type":"{t}","message":"{m}"}},"request_id":"req_1"}}"#
            )
        };
        let f = classify_error(
            k,
            529,
            &[],
            body("overloaded_error", "Overloaded").as_bytes(),
            0,
        );
        assert_eq!(f.class, ErrorClass::Overloaded);
        assert_eq!(
            f.failure,
            Some(FailureKind::Overloaded {
                retry_after_ms: None
            })
        );
        assert_eq!(f.message, "HTTP 529 overloaded_error: Overloaded");
        assert!(f.is_retryable());
        let h = headers(&[("Retry-After", "12")]);
        let f = classify_error(
            k,
            429,
            &h,
            body("rate_limit_error", "slow down").as_bytes(),
            0,
        );
        assert_eq!(f.class, ErrorClass::RateLimited);
        assert_eq!(f.failure, status_failure(429, Some(12_000)));
        let f = classify_error(
            k,
            400,
            &[],
            body(
                "invalid_request_error",
                "prompt is too long: 210000 tokens > 200000 maximum",
            )
            .as_bytes(),
            0,
        );
        assert_eq!(f.class, ErrorClass::ContextLength);
        assert!(!f.is_retryable());
        let f = classify_error(
            k,
            400,
            &[],
            body(
                "invalid_request_error",
                "input length and `max_tokens` exceed context limit: 198000 + 8192 > 200000",
            )
            .as_bytes(),
            0,
        );
        assert_eq!(f.class, ErrorClass::ContextLength);
        for (status, t, class) in [
            (401, "authentication_error", ErrorClass::Auth),
            (403, "permission_error", ErrorClass::Auth),
            (404, "not_found_error", ErrorClass::NotFound),
            (413, "request_too_large", ErrorClass::BadRequest),
            (400, "invalid_request_error", ErrorClass::BadRequest),
            (500, "api_error", ErrorClass::Server),
        ] {
            let f = classify_error(k, status, &[], body(t, "x").as_bytes(), 0);
            assert_eq!(f.class, class, "{t}");
            assert_eq!(f.failure, status_failure(status, None));
        }
    }

    #[test]
    fn gemini_error_classes() {
        let k = ProviderKind::Gemini;
        let body = |code: u16, status: &str, m: &str| {
            format!(r#"{{"error":{{"code":{code},"message":"{m}","status":"{status}"}}}}"#)
        };
        let quota = r#"{"error":{"code":429,"message":"You exceeded your current quota","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[]},{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"37s"}]}}"#;
        let f = classify_error(k, 429, &[], quota.as_bytes(), 0);
        assert_eq!(f.class, ErrorClass::RateLimited);
        assert_eq!(f.failure, status_failure(429, Some(37_000)));
        assert!(
            f.message
                .starts_with("HTTP 429 RESOURCE_EXHAUSTED: You exceeded")
        );
        let f = classify_error(
            k,
            400,
            &[],
            body(
                400,
                "INVALID_ARGUMENT",
                "The input token count (1502043) exceeds the maximum number of tokens allowed (1048576).",
            )
            .as_bytes(),
            0,
        );
        assert_eq!(f.class, ErrorClass::ContextLength);
        let f = classify_error(
            k,
            503,
            &[],
            body(
                503,
                "UNAVAILABLE",
                "The model is overloaded. Please try again later.",
            )
            .as_bytes(),
            0,
        );
        assert_eq!(f.class, ErrorClass::Overloaded);
        for (status, s, class) in [
            (400, "INVALID_ARGUMENT", ErrorClass::BadRequest),
            (401, "UNAUTHENTICATED", ErrorClass::Auth),
            (403, "PERMISSION_DENIED", ErrorClass::Auth),
            (404, "NOT_FOUND", ErrorClass::NotFound),
            (500, "INTERNAL", ErrorClass::Server),
            (504, "DEADLINE_EXCEEDED", ErrorClass::Server),
        ] {
            let f = classify_error(k, status, &[], body(status, s, "m").as_bytes(), 0);
            assert_eq!(f.class, class, "{s}");
            assert_eq!(f.failure, status_failure(status, None));
        }
    }

    #[test]
    fn retry_after_sources() {
        let k = ProviderKind::OpenAiCompatible;
        let h = headers(&[("retry-after-ms", "1500"), ("retry-after", "9")]);
        assert_eq!(
            classify_error(k, 429, &h, b"", 0).failure,
            status_failure(429, Some(1_500))
        );
        let h = headers(&[("Retry-After", "Sun, 06 Nov 1994 08:49:37 GMT")]);
        assert_eq!(
            classify_error(k, 503, &h, b"", 784_111_770).failure,
            status_failure(503, Some(7_000))
        );
        let h = headers(&[("retry-after", "soon")]);
        assert_eq!(
            classify_error(k, 429, &h, b"", 0).failure,
            status_failure(429, None)
        );
        assert_eq!(parse_duration_ms("1.5s"), Some(1_500));
        assert_eq!(parse_duration_ms("7"), None);
    }

    #[test]
    fn non_error_statuses_and_odd_bodies() {
        for k in ALL {
            let f = classify_error(k, 302, &[], b"", 0);
            assert_eq!(f.class, ErrorClass::Malformed);
            assert_eq!(f.failure, None);
            assert_eq!(f.attempt_outcome(), AttemptOutcome::Fatal);
            let f = classify_error(k, 502, &[], b"<html><body>Bad Gateway</body></html>", 0);
            assert_eq!(f.class, ErrorClass::Server);
            assert_eq!(f.message, "HTTP 502");
            assert_eq!(
                f.attempt_outcome(),
                AttemptOutcome::Failed {
                    failure: FailureKind::Status {
                        status: 502,
                        retry_after_ms: None
                    }
                }
            );
            let f = classify_error(k, 418, &[], b"I'm a teapot\n\nreally", 0);
            assert_eq!(f.class, ErrorClass::BadRequest);
            assert_eq!(f.message, "HTTP 418: I'm a teapot really");
            let f = classify_error(k, 400, &[], br#"{"error":"plain string"}"#, 0);
            assert_eq!(f.message, "HTTP 400: plain string");
        }
    }

    #[test]
    fn embedded_errors_get_implied_statuses() {
        let v: Value = serde_json::from_str(
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        )
        .unwrap();
        let f = embedded_error(ProviderKind::Anthropic, &v, &[], 0).unwrap();
        assert_eq!(f.class, ErrorClass::Overloaded);
        assert_eq!(f.message, "provider error overloaded_error: Overloaded");
        let v: Value = serde_json::from_str(r#"{"error":{"message":"boom"}}"#).unwrap();
        let f = embedded_error(ProviderKind::OpenAiCompatible, &v, &[], 0).unwrap();
        assert_eq!(f.class, ErrorClass::Server);
        assert_eq!(f.failure, status_failure(500, None));
        let v: Value = serde_json::from_str(r#"{"error":null,"choices":[]}"#).unwrap();
        assert_eq!(
            embedded_error(ProviderKind::OpenAiCompatible, &v, &[], 0),
            None
        );
    }

    #[test]
    fn messages_never_carry_keys_and_stay_short() {
        let key = "sk-proj-Abc123def456GHI789jkl012MNO345pqr678";
        let body = format!(
            r#"{{"error":{{"message":"Incorrect API key provided: {key}. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","code":"invalid_api_key"}}}}"#
        );
        let f = classify_error(ProviderKind::OpenAiCompatible, 401, &[], body.as_bytes(), 0);
        assert!(!f.message.contains("Abc123"), "{}", f.message);
        assert!(f.message.contains("provided: [redacted]."), "{}", f.message);
        let google = "AIzaSyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUvW";
        let f = classify_error(
            ProviderKind::Gemini,
            400,
            &[],
            format!(r#"{{"error":{{"code":400,"message":"API key not valid: '{google}'","status":"INVALID_ARGUMENT"}}}}"#).as_bytes(),
            0,
        );
        assert!(!f.message.contains("AIza"), "{}", f.message);
        let random = "Zx9Qw8Er7Ty6Ui5Op4As3Df2Gh1Jk0LzXcVbNm";
        assert!(clean_message(&format!("key {random}")).ends_with(REDACTED));
        // Model ids survive.
        assert_eq!(
            clean_message("model gemini-2.0-flash-thinking-exp-01-21 not found"),
            "model gemini-2.0-flash-thinking-exp-01-21 not found"
        );
        let long = "word ".repeat(200);
        let m = clean_message(&long);
        assert_eq!(m.chars().count(), MAX_MESSAGE_CHARS);
        assert!(m.ends_with('…'));
        assert!(!clean_message("a\nb\r\nc").contains('\n'));
        let f = ProviderFailure::stream_ended_early();
        assert_eq!(f.to_string(), "server provider failure: stream ended early");
        // A key that does not look like one is only caught with the config's help.
        let mut f = classify_error(
            ProviderKind::OpenAiCompatible,
            401,
            &[],
            br#"{"error":{"message":"bad key changeme-local"}}"#,
            0,
        );
        assert!(f.message.contains("changeme-local"));
        f.redact_secret("changeme-local");
        f.redact_secret("");
        assert_eq!(f.message, "HTTP 401: bad key [redacted]");
    }
}
