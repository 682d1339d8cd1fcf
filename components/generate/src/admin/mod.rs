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
//! | `GET /admin/orgs`, `PUT`/`GET /admin/orgs/{id}` | organizations (limits, budget, allow-list, usage, credentials' last four) |
//! | `PUT`/`DELETE /admin/orgs/{id}/credentials/{provider}` | an org's provider credential, stored encrypted |
//! | `POST /admin/credentials/rotate` | re-encrypt every credential under the current master key |
//! | `GET /admin/requests/{id}` | one request's telemetry record, its subject and masked bodies when stored |
//! | `GET`/`PUT /admin/settings`, `/admin/orgs/{id}/settings` | trust settings of keys of no org / of an org: request log opt-in, masking patterns, retention |
//! | `DELETE /admin/subjects/{targetingKey}` | delete one end user's events, requests, feedback and bodies (keys of no org; an org's: `/admin/orgs/{id}/subjects/…`) |
//!
//! Every change is appended to the audit log (`dol_core::audit`).
//!
//! Experiments (`/admin/experiments`) are the flag-evaluate component's,
//! beside the flags they split traffic with.

mod catalog;
mod keys;
mod orgs;
mod privacy;
mod templates;

use dol_core::gateway::store::{self, StoredKey, TemplateSummary};
use serde_json::{Value, json};
use spin_sdk::http::{Method, Response};

use crate::request::Incoming;
use dol_core::audit;
use dol_core::console::{self, AdminRequest};
use dol_core::error::{ApiError, Code};
use dol_core::privacy::DEFAULT_ORG;
use dol_spin_platform::{self as platform, SpinSql};

/// The credentials the request presents (bearer token or console session).
fn admin_request(req: &Incoming) -> AdminRequest<'_> {
    AdminRequest {
        safe_method: console::is_safe_method(&req.method.to_string()),
        authorization: req.header("authorization"),
        actor: req.header("x-dol-actor"),
        cookie: req.header("cookie"),
        csrf: req.header(console::CSRF_HEADER),
    }
}

/// Handles `/admin/...`. A route that reads one request or erases
/// requests first waits for the bookings that trail answers given before
/// it (`crate::books`), once the caller is known to be an admin.
pub async fn handle(req: &Incoming) -> Response {
    let actor = match platform::admin_actor("generate", admin_request(req)) {
        Ok(actor) => actor,
        Err(err) => return platform::fail("generate", &err),
    };
    let segments = segments(req);
    match (segments.as_slice(), &req.method) {
        (["requests", id], Method::Get) => {
            // Found or not, the route then answers from what is stored.
            let _ = crate::books::find_answered(|| {
                let db = platform::open_db().map_err(|_| ())?;
                store::request(&mut SpinSql(&db), id).map_err(|_| ())
            })
            .await;
        }
        (["subjects", _] | ["orgs", _, "subjects", _] | ["orgs", _], Method::Delete) => {
            crate::books::settled().await;
        }
        _ => {}
    }
    route(req, &actor).unwrap_or_else(|err| platform::fail("generate", &err))
}

/// The path's segments after `/admin/`.
fn segments(req: &Incoming) -> Vec<&str> {
    req.path
        .trim_start_matches("/admin/")
        .split('/')
        .filter(|s| !s.is_empty())
        .collect()
}

fn not_found(message: String) -> ApiError {
    ApiError::new(Code::NotFound, message)
}

pub(super) fn json_body(req: &Incoming) -> Result<Value, ApiError> {
    platform::json_body(req.header("content-type"), &req.body)
}

fn route(req: &Incoming, actor: &str) -> Result<Response, ApiError> {
    let segments = segments(req);
    let db = platform::open_db().map_err(platform::internal)?;
    let sql = &mut SpinSql(&db);
    let now = platform::now_ms();
    Ok(match (segments.as_slice(), &req.method) {
        (["keys"], Method::Post) => keys::create_key(req, sql, actor, now)?,
        (["keys"], Method::Get) => platform::json(
            200,
            &json!({"keys": store::list_keys(sql)?.iter().map(StoredKey::to_json).collect::<Vec<_>>()}),
        ),
        (["keys"], _) => platform::method_not_allowed("GET, POST"),
        (["keys", id], Method::Get) => keys::get_key(sql, id)?,
        (["keys", id], Method::Delete) => keys::revoke_key(sql, id, actor, now)?,
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
            catalog::put_model(req, sql, provider, &model.join("/"), actor, now)?
        }
        (["models", provider, model @ ..], Method::Delete) if !model.is_empty() => {
            // `entry` seeded the catalog; the deletion and its audit entry commit together.
            let before = catalog::entry(sql, provider, &model.join("/"), now)?;
            let target = format!("{provider}/{}", model.join("/"));
            audit::audited(sql, actor, now, |tx| {
                if !store::delete_model_in(tx, provider, &model.join("/"), now)? {
                    return Err(not_found("no such catalog entry".to_owned()));
                }
                let mut record = audit::Record::new("model", "delete", target.clone());
                record.before = before;
                Ok(((), record))
            })?;
            platform::json(200, &json!({ "deleted": target }))
        }
        (["requests", id], Method::Get) => match store::request(sql, id)? {
            Some(r) => privacy::request(sql, &r)?,
            None => return Err(not_found(format!("no request {id}"))),
        },
        (["orgs", rest @ ..], _) => orgs::route(req, sql, rest, actor, now)?,
        (["credentials", "rotate"], _) => orgs::rotate(req, sql, actor, now)?,
        (["requests", _], _) => platform::method_not_allowed("GET"),
        (["settings"], Method::Get) => privacy::get_settings(sql, DEFAULT_ORG)?,
        (["settings"], Method::Put) => privacy::put_settings(req, sql, DEFAULT_ORG, actor, now)?,
        (["settings"], _) => platform::method_not_allowed("GET, PUT"),
        (["subjects", subject], Method::Delete) => {
            privacy::delete_subject(sql, DEFAULT_ORG, subject, actor, now)?
        }
        (["subjects", _], _) => platform::method_not_allowed("DELETE"),
        _ => return Err(not_found("no such admin route".to_owned())),
    })
}
