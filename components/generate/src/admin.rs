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

use dol_core::gateway::catalog;
use dol_core::gateway::keys::{self, KeyLimits};
use dol_core::gateway::templates::{self, TemplateSpec};
use serde_json::{Value, json};
use spin_sdk::http::{Method, Response};

use crate::http::Incoming;
use dol_spin_platform as platform;

use crate::{experiments, store};

/// Handles `/admin/...`.
pub fn handle(req: &Incoming) -> Response {
    let actor = match platform::check_admin(
        "generate",
        req.header("authorization"),
        req.header("x-dol-actor"),
    ) {
        Ok(a) => a,
        Err(response) => return response,
    };
    match route(req, &actor) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("generate: admin {} {} failed: {e:#}", req.method, req.path);
            platform::error(500, "internal", "internal error")
        }
    }
}

fn bad(message: &str) -> Response {
    platform::error(400, "bad-request", message)
}

fn not_found(message: &str) -> Response {
    platform::error(404, "not-found", message)
}

fn json_body(req: &Incoming) -> Result<Value, Response> {
    if !req
        .header("content-type")
        .unwrap_or("application/json")
        .to_ascii_lowercase()
        .starts_with("application/json")
    {
        return Err(platform::error(
            415,
            "unsupported-media-type",
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
    let db = store::db()?;
    let now = platform::now_ms();
    Ok(match (segments.as_slice(), &req.method) {
        (["keys"], Method::Post) => create_key(req, &db, now)?,
        (["keys"], Method::Get) => platform::json(
            200,
            &json!({"keys": store::list_keys(&db)?.iter().map(store::KeyRow::to_json).collect::<Vec<_>>()}),
        ),
        (["keys"], _) => platform::method_not_allowed("GET, POST"),
        (["keys", id], Method::Get) => {
            match store::list_keys(&db)?.into_iter().find(|k| k.id == *id) {
                Some(k) => {
                    let mut v = k.to_json();
                    v["usage"] = serde_json::to_value(store::usage(&db, id)?)?;
                    platform::json(200, &v)
                }
                None => not_found(&format!("no key {id}")),
            }
        }
        (["keys", id], Method::Delete) => match store::revoke_key(&db, id, now)? {
            Some(k) => platform::json(200, &k.to_json()),
            None => not_found(&format!("no key {id}")),
        },
        (["keys", _], _) => platform::method_not_allowed("GET, DELETE"),
        (["templates"], Method::Get) => {
            platform::json(200, &json!({"templates": store::list_templates(&db)?}))
        }
        (["templates"], _) => platform::method_not_allowed("GET"),
        (["templates", name], Method::Put) => put_template(req, &db, name, actor, now)?,
        (["templates", name], Method::Get) => {
            let version = match platform::query_param(&req.query, "version") {
                None => None,
                Some(v) => match v.parse::<i64>() {
                    Ok(v) if v > 0 => Some(v),
                    _ => return Ok(bad("version must be a positive integer")),
                },
            };
            match store::get_template(&db, name, version)? {
                Some((version, spec)) => platform::json(
                    200,
                    &json!({"name": name, "version": version, "template": spec}),
                ),
                None => not_found(&format!("no template {name} (or no such version)")),
            }
        }
        (["templates", _], _) => platform::method_not_allowed("GET, PUT"),
        (["models"], Method::Get) => models(&db, now)?,
        (["models"], _) => platform::method_not_allowed("GET"),
        (["models", provider, model @ ..], Method::Put) if !model.is_empty() => {
            put_model(req, &db, provider, &model.join("/"), now)?
        }
        (["models", provider, model @ ..], Method::Delete) if !model.is_empty() => {
            if store::delete_model(&db, provider, &model.join("/"), now)? {
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
        (["requests", id], Method::Get) => match store::request(&db, id)? {
            Some(v) => platform::json(200, &v),
            None => not_found(&format!("no request {id}")),
        },
        _ => not_found("no such admin route"),
    })
}

fn create_key(
    req: &Incoming,
    db: &spin_sdk::sqlite::Connection,
    now: i64,
) -> anyhow::Result<Response> {
    let body = match json_body(req) {
        Ok(b) => b,
        Err(r) => return Ok(r),
    };
    let Some(obj) = body.as_object() else {
        return Ok(bad("body must be a JSON object"));
    };
    if let Some(unknown) = obj
        .keys()
        .find(|k| !matches!(k.as_str(), "name" | "limits"))
    {
        return Ok(bad(&format!(
            "unknown field {unknown:?} (known: name, limits)"
        )));
    }
    let name = match obj.get("name") {
        Some(Value::String(n)) if !n.trim().is_empty() && n.len() <= 128 => n.trim().to_owned(),
        None => "unnamed".to_owned(),
        _ => {
            return Ok(bad(
                "name must be a non-empty string of at most 128 characters",
            ));
        }
    };
    let limits: KeyLimits = match obj.get("limits") {
        None | Some(Value::Null) => KeyLimits::default(),
        Some(v) => match serde_json::from_value::<KeyLimits>(v.clone()) {
            Ok(l) => l,
            Err(e) => {
                return Ok(bad(&format!(
                    "limits: {e} (fields: requests_per_minute, tokens_per_minute, monthly_budget_micros; non-negative integers)"
                )));
            }
        },
    };
    let mut random = [0u8; 16];
    random.copy_from_slice(&wasi::random::random::get_random_bytes(16));
    let key = keys::format_key(random);
    let id = format!("key_{}", &keys::hash_key(&key)[..12]);
    let row = store::create_key(db, &id, &name, &key, &limits, now)?;
    let mut v = row.to_json();
    v["key"] = Value::String(key);
    v["note"] = Value::String("Store the key now: it is shown only once.".to_owned());
    Ok(platform::json(201, &v))
}

fn put_template(
    req: &Incoming,
    db: &spin_sdk::sqlite::Connection,
    name: &str,
    actor: &str,
    now: i64,
) -> anyhow::Result<Response> {
    if !templates::valid_name(name) {
        return Ok(bad(&templates::TemplateError::Name.to_string()));
    }
    let body = match json_body(req) {
        Ok(b) => b,
        Err(r) => return Ok(r),
    };
    let spec: TemplateSpec = match serde_json::from_value(body) {
        Ok(s) => s,
        Err(e) => return Ok(bad(&format!("template: {e}"))),
    };
    if let Err(e) = templates::validate(&spec) {
        return Ok(bad(&e.to_string()));
    }
    let version = store::put_template(db, name, &spec, actor, now)?;
    Ok(platform::json(
        201,
        &json!({"name": name, "version": version, "template": spec}),
    ))
}

fn models(db: &spin_sdk::sqlite::Connection, now: i64) -> anyhow::Result<Response> {
    let entries = store::catalog(db, now)?;
    let state = store::routing_state(&store::kv()?);
    let now_ms = u64::try_from(now).unwrap_or(0);
    let list: Vec<Value> = entries
        .iter()
        .map(|e| {
            let mut v = catalog::entry_json(e);
            if let Some(s) = state.entries.get(&e.key()) {
                v["observed"] = json!({
                    "samples": s.stats.samples,
                    "latency_mean_ms": s.stats.latency_mean_ms,
                    "latency_p95_ms": s.stats.p95_ms(),
                    "success_rate": s.stats.success_rate,
                    "quality": s.stats.quality,
                });
                v["circuit"] =
                    serde_json::to_value(s.breaker.state_at(now_ms)).unwrap_or(Value::Null);
            }
            v
        })
        .collect();
    Ok(platform::json(200, &json!({"models": list})))
}

fn put_model(
    req: &Incoming,
    db: &spin_sdk::sqlite::Connection,
    provider: &str,
    model: &str,
    now: i64,
) -> anyhow::Result<Response> {
    let mut body = match json_body(req) {
        Ok(b) => b,
        Err(r) => return Ok(r),
    };
    let Some(obj) = body.as_object_mut() else {
        return Ok(bad("body must be a JSON object"));
    };
    obj.insert("provider".to_owned(), Value::String(provider.to_owned()));
    obj.insert("model".to_owned(), Value::String(model.to_owned()));
    let entry = match catalog::parse_entry(0, &body) {
        Ok(e) => e,
        Err(e) => return Ok(bad(&e.to_string())),
    };
    store::put_model(db, &entry, now)?;
    Ok(platform::json(200, &catalog::entry_json(&entry)))
}
