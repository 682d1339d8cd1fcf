//! The flags admin API over HTTP. Validation, kill switches and audit diffs
//! are `dol_core::flags::admin`; this module authenticates, routes and
//! stores.
//!
//! | route | what |
//! |---|---|
//! | `GET /admin/flags` | export the whole flagd document |
//! | `PUT /admin/flags` | import (replace) the whole document |
//! | `GET /admin/flags/{key}` | one flag: `{"key", "flag", "killed"}` |
//! | `PUT /admin/flags/{key}` | create or replace one flag |
//! | `DELETE /admin/flags/{key}` | delete one flag |
//! | `POST /admin/flags/{key}/kill` | kill switch on (body `{"variant"}` optional) |
//! | `DELETE /admin/flags/{key}/kill` | kill switch off |
//! | `GET /admin/flags/{key}/evaluations` | live evaluation counts per variant |
//! | `GET /admin/audit?flag=&limit=` | audit log, newest first |
//! | `/admin/rollouts`, `/admin/flags/{key}/rollout…` | guarded rollouts (see [`crate::rollouts`]) |
//! | `/admin/experiments[/{key}]` | experiments (see [`crate::experiments`]) |

use dol_core::error::{ApiError, Code};
use dol_core::flags::admin::{self as core, FlagState};
use dol_core::rollouts::store::refuse_edits_under_rollout as guarded;
use serde_json::{Value, json};
use spin_sdk::http::{Method, Request, Response};

use dol_spin_platform as platform;

use crate::store;

/// Handles `/admin/flags...`, `/admin/rollouts`, `/admin/experiments...` and `/admin/audit`.
pub fn handle(req: &Request) -> Response {
    platform::admin_actor("flag-evaluate", platform::admin_request(req))
        .and_then(|actor| route(req, &actor))
        .unwrap_or_else(|err| platform::fail("flag-evaluate", &err))
}

fn route(req: &Request, actor: &str) -> Result<Response, ApiError> {
    let (path, method) = (req.path(), req.method());
    if path == "/admin/rollouts" {
        return crate::rollouts::list(req);
    }
    if path == "/admin/experiments" || path.starts_with("/admin/experiments/") {
        return crate::experiments::route(req, actor);
    }
    if path == "/admin/audit" {
        return match method {
            Method::Get => audit(req),
            _ => Err(ApiError::method_not_allowed("GET")),
        };
    }
    let Some(rest) = path.strip_prefix("/admin/flags") else {
        return Err(ApiError::new(Code::NotFound, "no such route"));
    };
    let rest = rest.trim_start_matches('/');
    if rest.is_empty() {
        return match method {
            Method::Get => {
                let (version, state) = store::read_state()?;
                Ok(with_version(&state.document, version))
            }
            Method::Put => {
                let doc = core::parse_body(req.body())?;
                let outcome = store::write(actor, |db, s| guarded(db, s, s.import(doc)))?;
                written(outcome, |s| s.document.clone())
            }
            _ => Err(ApiError::method_not_allowed("GET, PUT")),
        };
    }
    let (raw_key, action) = match rest.split_once('/') {
        Some((key, action)) => (key, Some(action)),
        None => (rest, None),
    };
    let key = platform::percent_decode(raw_key).ok_or_else(|| {
        ApiError::new(
            Code::InvalidJson,
            "the flag key in the path is not valid percent-encoded UTF-8",
        )
    })?;
    let view = |s: &FlagState| s.flag_view(&key).unwrap_or(Value::Null);
    let one = |(state, entry)| (state, vec![entry]);
    match (action, method) {
        (None, Method::Get) => {
            let (version, state) = store::read_state()?;
            Ok(with_version(&state.flag_view(&key)?, version))
        }
        (None, Method::Put) => {
            let def = core::parse_body(req.body())?;
            let outcome = store::write(actor, |db, s| {
                guarded(db, s, s.put_flag(&key, def).map(one))
            })?;
            written(outcome, view)
        }
        (None, Method::Delete) => {
            let outcome =
                store::write(actor, |db, s| guarded(db, s, s.delete_flag(&key).map(one)))?;
            written(outcome, |_| json!({ "key": key, "deleted": true }))
        }
        (None, _) => Err(ApiError::method_not_allowed("GET, PUT, DELETE")),
        (Some("kill"), Method::Post) => {
            let variant = core::parse_kill_body(req.body())?;
            let at = platform::now_ms();
            let outcome =
                store::write(actor, |_, s| Ok(s.kill(&key, variant, at, actor).map(one)))?;
            written(outcome, view)
        }
        (Some("kill"), Method::Delete) => {
            let outcome = store::write(actor, |_, s| Ok(s.unkill(&key).map(one)))?;
            written(outcome, view)
        }
        (Some("kill"), _) => Err(ApiError::method_not_allowed("POST, DELETE")),
        (Some("evaluations"), Method::Get) => crate::counting::live(&key),
        (Some("evaluations"), _) => Err(ApiError::method_not_allowed("GET")),
        (Some("rollout"), _) => crate::rollouts::handle(req, &key, None, actor),
        (Some(rest), _) if rest.starts_with("rollout/") => {
            crate::rollouts::handle(req, &key, rest.strip_prefix("rollout/"), actor)
        }
        (Some(_), _) => Err(ApiError::new(
            Code::NotFound,
            "no such route: /admin/flags/{key}[/kill|/rollout|/evaluations]",
        )),
    }
}

fn with_version(body: &Value, version: i64) -> Response {
    platform::json_with(200, body, &[("x-dol-flags-version", version.to_string())])
}

fn written(
    outcome: store::WriteOutcome,
    body: impl FnOnce(&FlagState) -> Value,
) -> Result<Response, ApiError> {
    let (version, state) = outcome?;
    Ok(with_version(&body(&state), version))
}

fn audit(req: &Request) -> Result<Response, ApiError> {
    let query = req.query();
    let filter = dol_core::audit::Filter::parse(|name| platform::query_param(query, name))?;
    let entries = store::audit(&filter)?;
    Ok(platform::json(200, &json!({ "entries": entries })))
}
