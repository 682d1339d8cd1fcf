//! The gateway admin API (bearer `admin_token`).
//!
//! | route | what |
//! |---|---|
//! | `POST /admin/keys` | create a key: body `{"name", "limits"?}`; answers the key once |
//! | `GET /admin/keys` | list keys (never the secrets) |
//! | `GET /admin/keys/{id}` | one key with its usage counters |
//! | `DELETE /admin/keys/{id}` | revoke |
//! | `GET /admin/templates` | template names and latest versions |
//! | `PUT /admin/templates/{name}` | store a new version (body: the template) |
//! | `GET /admin/templates/{name}?version=N` | one version (default latest) |
//! | `GET /admin/models` | the catalog with observed stats and breaker states |
//! | `PUT /admin/models/{provider}/{model}` | create or replace a catalog entry |
//! | `DELETE /admin/models/{provider}/{model}` | remove a catalog entry |
//! | `GET /admin/requests/{id}` | one request's telemetry record |
//! | `GET /admin/experiments` | experiment definitions |
//! | `PUT /admin/experiments/{key}` | create or replace an experiment (validated definition) |
//! | `GET /admin/experiments/{key}` | the experiment's report (statistics and verdict) |
//! | `DELETE /admin/experiments/{key}` | delete an experiment (its events stay) |

mod catalog;
mod experiments;
mod keys;
mod templates;

use dol_core::gateway::store::{self, StoredKey, TemplateSummary};
use serde_json::{Value, json};
use spin_sdk::http::{Method, Response};

use crate::http::Incoming;
use dol_core::error::Code;
use dol_spin_platform::{self as platform, SpinSql};

/// Handles `/admin/...`.
pub fn handle(req: &Incoming) -> Response {
    let credentials = dol_core::console::AdminRequest {
        safe_method: dol_core::console::is_safe_method(&req.method.to_string()),
        authorization: req.header("authorization"),
        actor: req.header("x-dol-actor"),
        cookie: req.header("cookie"),
        csrf: req.header(dol_core::console::CSRF_HEADER),
    };
    let actor = match platform::check_admin("generate", credentials) {
        Ok(a) => a,
        Err(response) => return response,
    };
    match route(req, &actor) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("generate: admin {} {} failed: {e:#}", req.method, req.path);
            platform::error(Code::Internal, "internal error")
        }
    }
}

pub(super) fn bad(message: &str) -> Response {
    let err = dol_core::error::ApiError::new(dol_core::error::Code::InvalidRequest, message);
    platform::fail("generate", &err)
}

pub(super) fn not_found(message: &str) -> Response {
    platform::error(Code::NotFound, message)
}

pub(super) fn json_body(req: &Incoming) -> Result<Value, Response> {
    if !req
        .header("content-type")
        .unwrap_or("application/json")
        .to_ascii_lowercase()
        .starts_with("application/json")
    {
        return Err(platform::error(
            Code::UnsupportedMediaType,
            "send application/json",
        ));
    }
    if req.body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(&req.body).map_err(|e| bad(&format!("body is not valid JSON: {e}")))
}

fn route(req: &Incoming, actor: &str) -> anyhow::Result<Response> {
    let segments: Vec<&str> = req
        .path
        .trim_start_matches("/admin/")
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let db = platform::open_db()?;
    let sql = &mut SpinSql(&db);
    let now = platform::now_ms();
    Ok(match (segments.as_slice(), &req.method) {
        (["keys"], Method::Post) => keys::create_key(req, sql, now)?,
        (["keys"], Method::Get) => platform::json(
            200,
            &json!({"keys": store::list_keys(sql)?.iter().map(StoredKey::to_json).collect::<Vec<_>>()}),
        ),
        (["keys"], _) => platform::method_not_allowed("GET, POST"),
        (["keys", id], Method::Get) => keys::get_key(sql, id)?,
        (["keys", id], Method::Delete) => match store::revoke_key(sql, id, now)? {
            Some(k) => platform::json(200, &k.to_json()),
            None => not_found(&format!("no key {id}")),
        },
        (["keys", _], _) => platform::method_not_allowed("GET, DELETE"),
        (["templates"], Method::Get) => {
            let templates: Vec<Value> = store::list_templates(sql)?
                .iter()
                .map(TemplateSummary::to_json)
                .collect();
            platform::json(200, &json!({ "templates": templates }))
        }
        (["templates"], _) => platform::method_not_allowed("GET"),
        (["templates", name], Method::Put) => templates::put_template(req, sql, name, actor, now)?,
        (["templates", name], Method::Get) => templates::get_template(req, sql, name)?,
        (["templates", _], _) => platform::method_not_allowed("GET, PUT"),
        (["models"], Method::Get) => catalog::models(sql, now)?,
        (["models"], _) => platform::method_not_allowed("GET"),
        (["models", provider, model @ ..], Method::Put) if !model.is_empty() => {
            catalog::put_model(req, sql, provider, &model.join("/"), now)?
        }
        (["models", provider, model @ ..], Method::Delete) if !model.is_empty() => {
            if store::delete_model(sql, provider, &model.join("/"), now)? {
                platform::json(
                    200,
                    &json!({"deleted": format!("{provider}/{}", model.join("/"))}),
                )
            } else {
                not_found("no such catalog entry")
            }
        }
        (["experiments"], Method::Get) => experiments::list(&db)?,
        (["experiments"], _) => platform::method_not_allowed("GET"),
        (["experiments", key], Method::Put) => match json_body(req) {
            Ok(body) => experiments::put(&body, &db, key, actor, now)?,
            Err(r) => r,
        },
        (["experiments", key], Method::Get) => experiments::get(&db, key)?,
        (["experiments", key], Method::Delete) => experiments::delete(&db, key)?,
        (["experiments", _], _) => platform::method_not_allowed("GET, PUT, DELETE"),
        (["requests", id], Method::Get) => match store::request(sql, id)? {
            Some(r) => platform::json(200, &store::request_json(&r)),
            None => not_found(&format!("no request {id}")),
        },
        _ => not_found("no such admin route"),
    })
}
