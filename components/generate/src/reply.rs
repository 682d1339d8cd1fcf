//! Error responses in OpenAI's shape, rendered from the one error model
//! (`dol_core::error::ApiError`; the core's [`PipelineError`] converts into
//! it, so status, code and headers are the core's decisions).

use dol_core::error::ApiError;
use dol_core::gateway::intake;
use dol_core::gateway::pipeline::{Caller, PipelineError};
use dol_core::orgs::Role;
use serde_json::Value;
use spin_sdk::http::Response;

use crate::request::Incoming;
use dol_spin_platform::{self as platform, SpinSql};

/// `err` in OpenAI's error shape, with its headers; a server error's
/// details go to the log, never into the body.
pub fn openai(err: &ApiError) -> Response {
    platform::log_internal("generate", err);
    let body = serde_json::to_value(err.to_openai()).unwrap_or(Value::Null);
    let headers: Vec<(&str, String)> = err
        .headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.clone()))
        .collect();
    platform::json_with(err.status(), &body, &headers)
}

/// A 500 whose cause (`context`: `err`) is logged, not sent.
pub fn internal(context: &str, err: &dyn std::fmt::Display) -> Response {
    openai(&ApiError::internal(format!("{context}: {err:#}")))
}

/// The response for a refused request.
pub fn error(e: &PipelineError) -> Response {
    openai(&ApiError::from(e))
}

/// A one-shot route's answer (embeddings, images): the body with its
/// `x-dol-*` headers, or the error; book-keeping warnings are logged.
pub fn answer(
    answer: Result<(Vec<(String, String)>, Value), PipelineError>,
    warnings: &[String],
) -> Response {
    for warning in warnings {
        eprintln!("generate: {warning}");
    }
    match answer {
        Ok((headers, body)) => {
            let headers: Vec<(&str, String)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.clone()))
                .collect();
            platform::json_with(200, &body, &headers)
        }
        Err(e) => error(&e),
    }
}

/// Authenticates the request's key (`Authorization: Bearer` or
/// `X-API-Key`) and checks it has `role`.
pub fn authenticate(
    req: &Incoming,
    db: &dol_spin_platform::Db,
    bootstrap: &str,
    role: Role,
) -> Result<Caller, Response> {
    intake::authenticate(
        &mut SpinSql(db),
        req.header("authorization"),
        req.header("x-api-key"),
        bootstrap,
        role,
    )
    .map_err(|e| error(&e))
}
