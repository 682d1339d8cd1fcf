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
//! | `GET /admin/audit?flag=&limit=` | audit log, newest first |
//! | `/admin/rollouts`, `/admin/flags/{key}/rollout…` | guarded rollouts (see [`crate::rollouts`]) |

use dol_core::flags::admin::{self as core, AdminError, FlagState};
use dol_core::rollouts::store::refuse_edits_under_rollout as guarded;
use serde_json::{Value, json};
use spin_sdk::http::{Method, Request, Response};

use dol_spin_platform as platform;

use crate::store;

/// Handles `/admin/flags...` and `/admin/audit`.
pub fn handle(req: &Request) -> Response {
    let actor = match platform::check_admin(
        "flag-evaluate",
        platform::header(req, "authorization"),
        platform::header(req, "x-dol-actor"),
    ) {
        Ok(actor) => actor,
        Err(response) => return response,
    };
    match route(req, &actor) {
        Ok(response) => response,
        Err(err) => {
            eprintln!(
                "flag-evaluate: admin {} {} failed: {err:#}",
                req.method(),
                req.path()
            );
            platform::error(500, "internal", "internal error")
        }
    }
}

fn refused(err: &AdminError) -> Response {
    platform::json(err.status(), &err.body())
}

fn route(req: &Request, actor: &str) -> anyhow::Result<Response> {
    let path = req.path();
    let method = req.method();
    if path == "/admin/rollouts" {
        return crate::rollouts::list(req);
    }
    if path == "/admin/audit" {
        if *method != Method::Get {
            return Ok(platform::method_not_allowed("GET"));
        }
        return audit(req);
    }
    let Some(rest) = path.strip_prefix("/admin/flags") else {
        return Ok(platform::error(404, "not-found", "no such route"));
    };
    let rest = rest.trim_start_matches('/');
    if rest.is_empty() {
        return match method {
            Method::Get => {
                let (version, state) = store::read_state()?;
                Ok(with_version(200, &state.document, version))
            }
            Method::Put => {
                let doc = match core::parse_body(req.body()) {
                    Ok(doc) => doc,
                    Err(err) => return Ok(refused(&err)),
                };
                let outcome = store::write(actor, |db, s| guarded(db, s, s.import(doc)))?;
                written(outcome, |s| s.document.clone())
            }
            _ => Ok(platform::method_not_allowed("GET, PUT")),
        };
    }
    let (raw_key, action) = match rest.split_once('/') {
        Some((key, action)) => (key, Some(action)),
        None => (rest, None),
    };
    let Some(key) = platform::percent_decode(raw_key) else {
        return Ok(refused(&AdminError::Json(
            "the flag key in the path is not valid percent-encoded UTF-8".to_owned(),
        )));
    };
    let view = |s: &FlagState| s.flag_view(&key).unwrap_or(Value::Null);
    match (action, method) {
        (None, Method::Get) => {
            let (version, state) = store::read_state()?;
            Ok(match state.flag_view(&key) {
                Ok(v) => with_version(200, &v, version),
                Err(err) => refused(&err),
            })
        }
        (None, Method::Put) => {
            let def = match core::parse_body(req.body()) {
                Ok(def) => def,
                Err(err) => return Ok(refused(&err)),
            };
            let outcome = store::write(actor, |db, s| {
                guarded(db, s, s.put_flag(&key, def).map(|(n, e)| (n, vec![e])))
            })?;
            written(outcome, view)
        }
        (None, Method::Delete) => {
            let outcome = store::write(actor, |db, s| {
                guarded(db, s, s.delete_flag(&key).map(|(n, e)| (n, vec![e])))
            })?;
            written(outcome, |_| json!({ "key": key, "deleted": true }))
        }
        (None, _) => Ok(platform::method_not_allowed("GET, PUT, DELETE")),
        (Some("kill"), Method::Post) => {
            let variant = match core::parse_kill_body(req.body()) {
                Ok(v) => v,
                Err(err) => return Ok(refused(&err)),
            };
            let at = platform::now_ms();
            let outcome = store::write(actor, |_, s| {
                Ok(s.kill(&key, variant, at, actor).map(|(n, e)| (n, vec![e])))
            })?;
            written(outcome, view)
        }
        (Some("kill"), Method::Delete) => {
            let outcome =
                store::write(actor, |_, s| Ok(s.unkill(&key).map(|(n, e)| (n, vec![e]))))?;
            written(outcome, view)
        }
        (Some("kill"), _) => Ok(platform::method_not_allowed("POST, DELETE")),
        (Some("rollout"), _) => crate::rollouts::handle(req, &key, None, actor),
        (Some(rest), _) if rest.starts_with("rollout/") => {
            crate::rollouts::handle(req, &key, rest.strip_prefix("rollout/"), actor)
        }
        (Some(_), _) => Ok(platform::error(
            404,
            "not-found",
            "no such route: /admin/flags/{key}[/kill|/rollout]",
        )),
    }
}

fn with_version(status: u16, body: &Value, version: i64) -> Response {
    platform::json_with(
        status,
        body,
        &[("x-dol-flags-version", version.to_string())],
    )
}

fn written(
    outcome: store::WriteOutcome,
    body: impl FnOnce(&FlagState) -> Value,
) -> anyhow::Result<Response> {
    Ok(match outcome {
        Ok((version, state)) => with_version(200, &body(&state), version),
        Err(err) => refused(&err),
    })
}

fn audit(req: &Request) -> anyhow::Result<Response> {
    let query = req.query();
    let limit = match platform::query_param(query, "limit") {
        None => 100,
        Some(s) => match s.parse::<i64>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => {
                return Ok(platform::error(
                    400,
                    "invalid-query",
                    "limit must be an integer from 1 to 1000",
                ));
            }
        },
    };
    let flag = platform::query_param(query, "flag");
    let entries = store::audit(flag.as_deref(), limit)?;
    Ok(platform::json(200, &json!({ "entries": entries })))
}
