//! OFREP (OpenFeature Remote Evaluation Protocol) mapping: request bodies to
//! evaluation contexts, evaluations to response bodies and status codes.
//!
//! Pure: the component only reads the HTTP request, calls these functions and
//! writes the [`OfrepResponse`] back. Shapes follow the protocol's OpenAPI
//! definition (`service/openapi.yaml`):
//!
//! - success `200 {"key", "value", "reason", "variant", "metadata"}`; `value`
//!   (and `variant`) are left out when the flag defers to the caller's code
//!   default (disabled flag, no default variant), as the protocol's
//!   code-default decision describes;
//! - `400 {"key", "errorCode", "errorDetails"}` with PARSE_ERROR,
//!   TARGETING_KEY_MISSING, INVALID_CONTEXT or GENERAL;
//! - `404 {"key", "errorCode": "FLAG_NOT_FOUND", "errorDetails"}`;
//! - bulk `200 {"flags": [...], "metadata"}` with an `ETag`, `304` when
//!   `If-None-Match` names it, `400 {"errorCode", "errorDetails"}`;
//! - `401` / `403` (credentials missing / wrong) and `500` carry
//!   `{"errorDetails"}` only, with no internals.

use serde_json::{Map, Value, json};

use super::{ErrorCode, Evaluation, EvaluationContext, FlagSet, murmur3_x86_32};
use crate::auth::{self, TokenCheck};

/// What the component sends back.
#[derive(Debug, Clone, PartialEq)]
pub struct OfrepResponse {
    /// HTTP status code.
    pub status: u16,
    /// JSON body; `None` for `304 Not Modified`.
    pub body: Option<Value>,
    /// `ETag` header (bulk evaluation only).
    pub etag: Option<String>,
    /// `Retry-After` header in seconds (429 only).
    pub retry_after_secs: Option<u64>,
}

impl OfrepResponse {
    fn json(status: u16, body: Value) -> Self {
        OfrepResponse {
            status,
            body: Some(body),
            etag: None,
            retry_after_secs: None,
        }
    }
}

/// Why a request could not be evaluated at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestError {
    /// OpenFeature error code (always INVALID_CONTEXT today).
    pub code: ErrorCode,
    /// What is wrong with the request, for the caller.
    pub details: String,
}

fn invalid_context(details: impl Into<String>) -> RequestError {
    RequestError {
        code: ErrorCode::InvalidContext,
        details: details.into(),
    }
}

/// Parses an OFREP request body `{"context": {...}}` into an evaluation
/// context. An empty body, a missing `context` or `null` mean an empty
/// context. `targetingKey`, when present, must be a string.
pub fn parse_request(body: &[u8]) -> Result<EvaluationContext, RequestError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(EvaluationContext::new());
    }
    let doc: Value = serde_json::from_slice(body)
        .map_err(|e| invalid_context(format!("request body is not valid JSON: {e}")))?;
    let Value::Object(mut root) = doc else {
        return Err(invalid_context(
            "request body must be a JSON object {\"context\": {...}}",
        ));
    };
    context_from_value(root.remove("context"))
}

/// Parses a bare evaluation context, a JSON object with an optional string
/// `targetingKey` (the in-process `dol:platform/flag-evaluator` interface passes this).
pub fn parse_context(text: &str) -> Result<EvaluationContext, RequestError> {
    if text.trim().is_empty() {
        return Ok(EvaluationContext::new());
    }
    let value: Value = serde_json::from_str(text)
        .map_err(|e| invalid_context(format!("context is not valid JSON: {e}")))?;
    context_from_value(Some(value))
}

fn context_from_value(context: Option<Value>) -> Result<EvaluationContext, RequestError> {
    let attributes = match context {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(invalid_context("context must be a JSON object")),
    };
    match attributes.get("targetingKey") {
        None | Some(Value::String(_)) => {}
        Some(_) => return Err(invalid_context("context.targetingKey must be a string")),
    }
    Ok(EvaluationContext::from_map(attributes))
}

/// Which OFREP evaluation a path asks for: `Ok(None)` bulk
/// (`/ofrep/v1/evaluate/flags`), `Ok(Some(key))` one flag (the key
/// percent-decoded), `Err` the 404 for any other path.
pub fn route(
    path: &str,
    percent_decode: impl Fn(&str) -> Option<String>,
) -> Result<Option<String>, OfrepResponse> {
    let not_found = || {
        OfrepResponse::json(
            404,
            json!({ "errorDetails": "no such OFREP route: use POST /ofrep/v1/evaluate/flags[/{key}]" }),
        )
    };
    match path.strip_prefix("/ofrep/v1/evaluate/flags") {
        Some("" | "/") => Ok(None),
        Some(rest) => match rest.strip_prefix('/').and_then(percent_decode) {
            Some(key) if !key.is_empty() && !key.contains('/') => Ok(Some(key)),
            _ => Err(not_found()),
        },
        None => Err(not_found()),
    }
}

/// `405` for anything but POST.
pub fn method_not_allowed() -> OfrepResponse {
    OfrepResponse::json(405, json!({ "errorDetails": "use POST" }))
}

/// The per-minute limit from the `ofrep_rate_limit_per_minute` variable:
/// blank or 0 = no limit; anything else that is not a whole number is
/// reported (for the log) and means no limit either, since the limit
/// protects capacity and is not an access control.
pub fn rate_limit_per_minute(raw: &str) -> Result<u64, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(0);
    }
    raw.parse::<u64>().map_err(|_| {
        format!("ofrep_rate_limit_per_minute is not a whole number: {raw:?}; not limiting")
    })
}

/// Who a request is counted against for rate limiting: its credential
/// (hashed, never stored in clear) when OFREP has a token, else its IP
/// address (`Spin-Client-Addr`, `ip:port`).
pub fn rate_limit_client(
    token_configured: bool,
    client_addr: Option<&str>,
    authorization: Option<&str>,
    x_api_key: Option<&str>,
) -> String {
    if !token_configured {
        return client_addr
            .and_then(|addr| addr.rsplit_once(':').map(|(ip, _)| ip))
            .unwrap_or("unknown")
            .to_owned();
    }
    authorization
        .or(x_api_key)
        .map(|credential| format!("{:08x}", super::murmur3_x86_32(credential.as_bytes(), 0)))
        .unwrap_or_default()
}

/// `429 Too Many Requests` with `Retry-After`, for a client over its rate limit.
pub fn rate_limited(retry_after_secs: u64) -> OfrepResponse {
    OfrepResponse {
        retry_after_secs: Some(retry_after_secs),
        ..OfrepResponse::json(
            429,
            json!({ "errorDetails": format!("rate limit reached; retry after {retry_after_secs} s") }),
        )
    }
}

/// The single-flag response for a request that could not be parsed.
pub fn request_error(key: &str, err: &RequestError) -> OfrepResponse {
    OfrepResponse::json(
        400,
        json!({ "key": key, "errorCode": err.code.as_str(), "errorDetails": err.details }),
    )
}

/// The bulk response for a request that could not be parsed.
pub fn bulk_request_error(err: &RequestError) -> OfrepResponse {
    OfrepResponse::json(
        400,
        json!({ "errorCode": err.code.as_str(), "errorDetails": err.details }),
    )
}

/// `500` with a fixed message: storage or other internal failures are logged
/// by the component, never shown to the caller.
pub fn internal_error() -> OfrepResponse {
    OfrepResponse::json(500, json!({ "errorDetails": "internal error" }))
}

/// Checks OFREP client credentials against the configured token (empty =
/// open). Credentials come as `Authorization: Bearer <token>` or as the
/// protocol's `X-API-Key: <token>`. Missing credentials give `401`, wrong
/// ones `403`; `None` means the request may proceed.
pub fn check_auth(
    configured: &str,
    authorization: Option<&str>,
    api_key: Option<&str>,
) -> Option<OfrepResponse> {
    let presented = auth::bearer(authorization).or(api_key);
    match auth::check_token(configured, presented) {
        TokenCheck::Open | TokenCheck::Valid => None,
        TokenCheck::Missing => Some(OfrepResponse::json(
            401,
            json!({ "errorDetails": "credentials required: send Authorization: Bearer <token> or X-API-Key" }),
        )),
        TokenCheck::Wrong => Some(OfrepResponse::json(
            403,
            json!({ "errorDetails": "the presented token is not valid for this API" }),
        )),
    }
}

/// The JSON of one evaluation: a success object, or an error object with
/// the status code it gets when evaluated on its own.
fn evaluation_json(key: &str, eval: &Evaluation) -> (u16, Value) {
    if let Some(err) = &eval.error {
        let (status, details) = match err.code {
            ErrorCode::FlagNotFound => (404, format!("flag `{key}` does not exist")),
            ErrorCode::ParseError => (400, format!("flag `{key}`: {}", err.message)),
            ErrorCode::TargetingKeyMissing | ErrorCode::InvalidContext => {
                (400, err.message.clone())
            }
            // A runtime failure of the flag's own rule (or a type check the
            // protocol does not have): reported as GENERAL, like flagd.
            ErrorCode::General | ErrorCode::TypeMismatch => {
                (400, format!("flag `{key}`: {}", err.message))
            }
        };
        let code = match err.code {
            ErrorCode::TypeMismatch => ErrorCode::General,
            other => other,
        };
        return (
            status,
            json!({ "key": key, "errorCode": code.as_str(), "errorDetails": details }),
        );
    }
    let mut body = Map::new();
    body.insert("key".to_owned(), Value::String(key.to_owned()));
    if let Some(value) = &eval.value {
        body.insert("value".to_owned(), value.clone());
    }
    body.insert(
        "reason".to_owned(),
        Value::String(eval.reason.as_str().to_owned()),
    );
    if let Some(variant) = &eval.variant {
        body.insert("variant".to_owned(), Value::String(variant.clone()));
    }
    body.insert("metadata".to_owned(), Value::Object(eval.metadata.clone()));
    (200, Value::Object(body))
}

/// `POST /ofrep/v1/evaluate/flags/{key}`.
pub fn evaluate_single(
    set: &FlagSet,
    key: &str,
    ctx: &EvaluationContext,
    now_unix_secs: u64,
) -> OfrepResponse {
    let eval = set.evaluate(key, ctx, now_unix_secs);
    let (status, body) = evaluation_json(key, &eval);
    OfrepResponse::json(status, body)
}

/// `POST /ofrep/v1/evaluate/flags`: every enabled flag. The `ETag` is the
/// flag-set version plus a hash of the response body, so it changes exactly
/// when the answer does; an `If-None-Match` naming it (or `*`) gives `304`.
pub fn evaluate_bulk(
    set: &FlagSet,
    version: i64,
    ctx: &EvaluationContext,
    now_unix_secs: u64,
    if_none_match: Option<&str>,
) -> OfrepResponse {
    let flags: Vec<Value> = set
        .evaluate_all(ctx, now_unix_secs)
        .iter()
        .map(|(key, eval)| evaluation_json(key, eval).1)
        .collect();
    let body = json!({ "flags": flags, "metadata": set.metadata() });
    let hash = murmur3_x86_32(body.to_string().as_bytes(), 0);
    let etag = format!("\"{version}-{hash:08x}\"");
    if if_none_match.is_some_and(|h| etag_matches(h, &etag)) {
        return OfrepResponse {
            status: 304,
            body: None,
            etag: Some(etag),
            retry_after_secs: None,
        };
    }
    OfrepResponse {
        status: 200,
        body: Some(body),
        etag: Some(etag),
        retry_after_secs: None,
    }
}

/// Whether an `If-None-Match` header value (a comma-separated list of
/// entity tags, weak or strong, or `*`) names `etag`.
pub fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    if_none_match.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == etag
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn set() -> FlagSet {
        FlagSet::parse(
            r#"{
              "metadata": {"flagSetId": "t"},
              "flags": {
                "on": {"state": "ENABLED", "variants": {"a": true, "b": false}, "defaultVariant": "a"},
                "off": {"state": "DISABLED", "variants": {"a": true}, "defaultVariant": "a"},
                "nodefault": {"state": "ENABLED", "variants": {"a": 1}},
                "broken": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a",
                           "targeting": {"no_such_op": [1]}},
                "badvariant": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a",
                           "targeting": {"if": [true, "zzz", "a"]}},
                "email": {"state": "ENABLED", "variants": {"yes": "y", "no": "n"}, "defaultVariant": "no",
                           "targeting": {"if": [{"ends_with": [{"var": "email"}, "@x.io"]}, "yes", null]}}
              }
            }"#,
        )
        .unwrap()
    }

    #[test]
    fn parses_requests() {
        assert_eq!(parse_request(b"").unwrap(), EvaluationContext::new());
        assert_eq!(parse_request(b"{}").unwrap(), EvaluationContext::new());
        let ctx = parse_request(br#"{"context": {"targetingKey": "u1", "plan": "pro"}}"#).unwrap();
        assert_eq!(ctx.targeting_key.as_deref(), Some("u1"));
        assert_eq!(ctx.attributes["plan"], "pro");
        for bad in [
            &b"{"[..],
            b"[]",
            br#"{"context": 3}"#,
            br#"{"context": {"targetingKey": 7}}"#,
        ] {
            let err = parse_request(bad).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidContext);
        }
        let r = request_error("k", &parse_request(b"{").unwrap_err());
        assert_eq!(r.status, 400);
        assert_eq!(r.body.unwrap()["errorCode"], "INVALID_CONTEXT");
    }

    #[test]
    fn maps_evaluations_to_status_codes() {
        let set = set();
        let ctx = EvaluationContext::new().with("email", "me@x.io");
        let r = evaluate_single(&set, "email", &ctx, 0);
        assert_eq!(r.status, 200);
        let body = r.body.unwrap();
        assert_eq!(body["value"], "y");
        assert_eq!(body["variant"], "yes");
        assert_eq!(body["reason"], "TARGETING_MATCH");
        assert_eq!(body["key"], "email");
        assert_eq!(body["metadata"]["flagSetId"], "t");

        let r = evaluate_single(&set, "missing", &ctx, 0);
        assert_eq!(r.status, 404);
        assert_eq!(r.body.unwrap()["errorCode"], "FLAG_NOT_FOUND");

        let r = evaluate_single(&set, "broken", &ctx, 0);
        assert_eq!(r.status, 400);
        assert_eq!(r.body.unwrap()["errorCode"], "PARSE_ERROR");

        let r = evaluate_single(&set, "badvariant", &ctx, 0);
        assert_eq!(r.status, 400);
        assert_eq!(r.body.unwrap()["errorCode"], "GENERAL");

        let r = evaluate_single(&set, "off", &ctx, 0);
        assert_eq!(r.status, 200);
        let body = r.body.unwrap();
        assert_eq!(body["reason"], "DISABLED");
        assert!(body.get("value").is_none(), "{body}");

        let r = evaluate_single(&set, "nodefault", &ctx, 0);
        let body = r.body.unwrap();
        assert_eq!(body["reason"], "DEFAULT");
        assert!(body.get("value").is_none() && body.get("variant").is_none());
    }

    #[test]
    fn bulk_has_stable_etags() {
        let set = set();
        let ctx = EvaluationContext::new().with_targeting_key("u");
        let r = evaluate_bulk(&set, 3, &ctx, 0, None);
        assert_eq!(r.status, 200);
        let etag = r.etag.clone().unwrap();
        assert!(etag.starts_with("\"3-"), "{etag}");
        let body = r.body.unwrap();
        let keys: Vec<&str> = body["flags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["key"].as_str().unwrap())
            .collect();
        // Disabled flags are left out, errors are included per flag.
        assert_eq!(keys, ["badvariant", "broken", "email", "nodefault", "on"]);
        assert_eq!(body["flags"][1]["errorCode"], "PARSE_ERROR");

        let again = evaluate_bulk(&set, 3, &ctx, 0, Some(&etag));
        assert_eq!(again.status, 304);
        assert_eq!(again.body, None);
        assert_eq!(again.etag.as_deref(), Some(etag.as_str()));
        let weak = format!("\"x\", W/{etag}");
        assert_eq!(evaluate_bulk(&set, 3, &ctx, 0, Some(&weak)).status, 304);
        assert_eq!(evaluate_bulk(&set, 4, &ctx, 0, Some(&etag)).status, 200);
        let other = EvaluationContext::new().with("email", "a@x.io");
        assert_eq!(evaluate_bulk(&set, 3, &other, 0, Some(&etag)).status, 200);
        assert_eq!(evaluate_bulk(&set, 3, &other, 0, Some("*")).status, 304);
    }

    #[test]
    fn auth_statuses() {
        assert_eq!(check_auth("", None, None), None);
        assert_eq!(check_auth("s3cret", Some("Bearer s3cret"), None), None);
        assert_eq!(check_auth("s3cret", None, Some("s3cret")), None);
        assert_eq!(check_auth("s3cret", None, None).unwrap().status, 401);
        assert_eq!(
            check_auth("s3cret", Some("Bearer nope"), None)
                .unwrap()
                .status,
            403
        );
        assert_eq!(internal_error().status, 500);
        assert_eq!(
            internal_error().body.unwrap(),
            json!({"errorDetails": "internal error"})
        );
    }

    #[test]
    fn bare_contexts_parse_like_ofrep_bodies() {
        let ctx = parse_context(r#"{"targetingKey": "u1", "plan": "pro"}"#).unwrap();
        assert_eq!(ctx.targeting_key.as_deref(), Some("u1"));
        assert_eq!(parse_context("").unwrap().targeting_key, None);
        assert_eq!(
            parse_context("[1]").unwrap_err().code,
            ErrorCode::InvalidContext
        );
        assert_eq!(
            parse_context("{").unwrap_err().code,
            ErrorCode::InvalidContext
        );
        assert_eq!(
            parse_context(r#"{"targetingKey": 7}"#).unwrap_err().details,
            "context.targetingKey must be a string"
        );
    }

    #[test]
    fn routes_name_the_flag_or_the_bulk_evaluation() {
        let decode = |s: &str| Some(s.replace("%2D", "-"));
        assert_eq!(route("/ofrep/v1/evaluate/flags", decode), Ok(None));
        assert_eq!(route("/ofrep/v1/evaluate/flags/", decode), Ok(None));
        assert_eq!(
            route("/ofrep/v1/evaluate/flags/new%2Dui", decode),
            Ok(Some("new-ui".to_owned()))
        );
        for bad in [
            "/ofrep/v1/evaluate/flagsX",
            "/ofrep/v1/evaluate/flags/a/b",
            "/ofrep/v2/x",
        ] {
            assert_eq!(route(bad, decode).unwrap_err().status, 404, "{bad}");
        }
        assert_eq!(
            route("/ofrep/v1/evaluate/flags/x", |_| None)
                .unwrap_err()
                .status,
            404
        );
    }

    #[test]
    fn the_rate_limit_variable_is_a_whole_number_or_off() {
        assert_eq!(rate_limit_per_minute(""), Ok(0));
        assert_eq!(rate_limit_per_minute(" 120 "), Ok(120));
        assert!(
            rate_limit_per_minute("lots")
                .unwrap_err()
                .contains("\"lots\"")
        );
        assert!(rate_limit_per_minute("-1").is_err());
    }

    #[test]
    fn clients_are_told_apart_by_credential_or_address() {
        assert_eq!(
            rate_limit_client(false, Some("10.0.0.7:5123"), Some("Bearer t"), None),
            "10.0.0.7"
        );
        assert_eq!(rate_limit_client(false, None, None, None), "unknown");
        let by_bearer = rate_limit_client(true, Some("10.0.0.7:1"), Some("Bearer t"), None);
        let by_key = rate_limit_client(true, Some("10.0.0.8:1"), None, Some("Bearer t"));
        // The same credential is the same client wherever it comes from, and
        // the credential is never the id itself.
        assert_eq!(by_bearer, by_key);
        assert!(!by_bearer.contains('t'));
        assert_ne!(
            by_bearer,
            rate_limit_client(true, None, Some("Bearer u"), None)
        );
    }
}
