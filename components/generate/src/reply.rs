//! OpenAI-shaped error responses, and the rendering of the core's
//! [`PipelineError`] (the decisions of status, code and headers are the core's).

use dol_core::gateway::intake;
use dol_core::gateway::openai::{ErrorBody, ErrorType};
use dol_core::gateway::pipeline::{Caller, ErrorReply, PipelineError};
use serde_json::Value;
use spin_sdk::http::Response;

use crate::http::Incoming;
use dol_spin_platform::{self as platform, SpinSql};

/// An OpenAI-shaped error response.
pub fn openai_error(
    kind: ErrorType,
    message: &str,
    code: Option<&str>,
    extra: &[(&str, String)],
) -> Response {
    let body = ErrorBody::new(message, kind, None, code.map(str::to_owned));
    let value = serde_json::to_value(&body).unwrap_or(Value::Null);
    platform::json_with(body.status(), &value, extra)
}

/// OpenAI's generic 500, with no internals.
pub fn server_error() -> Response {
    openai_error(
        ErrorType::Server,
        "The server had an error while processing your request.",
        None,
        &[],
    )
}

/// Logs `err` under `context` and answers [`server_error`].
pub fn internal(context: &str, err: &dyn std::fmt::Display) -> Response {
    eprintln!("generate: {context}: {err:#}");
    server_error()
}

/// The response for a refused request; storage failures are logged (their
/// text never reaches the client).
pub fn error(e: &PipelineError) -> Response {
    if let PipelineError::Storage { .. } = e {
        eprintln!("generate: {e}");
    }
    let ErrorReply {
        status,
        body,
        headers,
    } = e.reply();
    let headers: Vec<(&str, String)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    let value = serde_json::to_value(&body).unwrap_or(Value::Null);
    platform::json_with(status, &value, &headers)
}

/// Authenticates the request's key (`Authorization: Bearer` or `X-API-Key`).
pub fn authenticate(
    req: &Incoming,
    db: &spin_sdk::sqlite::Connection,
    bootstrap: &str,
) -> Result<Caller, Response> {
    intake::authenticate(
        &mut SpinSql(db),
        req.header("authorization"),
        req.header("x-api-key"),
        bootstrap,
    )
    .map_err(|e| error(&e))
}
