//! The experiments admin API, beside the flags whose variants experiments
//! compare. Validation, statistics and the SQL live in
//! `dol_core::experiments`.
//!
//! | route | what |
//! |---|---|
//! | `GET /admin/experiments` | experiment definitions |
//! | `PUT /admin/experiments/{key}` | create or replace an experiment (validated definition) |
//! | `GET /admin/experiments/{key}` | the experiment's report (statistics and verdict) |
//! | `DELETE /admin/experiments/{key}` | delete an experiment (its events stay) |

use dol_core::audit::Record;
use dol_core::error::{ApiError, Code};
use dol_core::experiments::{definition, report, store};
use serde_json::{Value, json};
use spin_sdk::http::{Method, Request, Response};

use dol_spin_platform::{self as platform, SpinSql};

/// Routes `/admin/experiments[/{key}]` for an authenticated admin.
pub fn route(req: &Request, actor: &str) -> Result<Response, ApiError> {
    let rest = req.path().trim_start_matches("/admin/experiments");
    let key = rest.trim_matches('/');
    let db = platform::open_db().map_err(platform::internal)?;
    let sql = &mut SpinSql(&db);
    if key.is_empty() {
        return match req.method() {
            Method::Get => {
                let all = store::list(sql)?;
                let items: Vec<Value> = all.iter().map(store::StoredExperiment::to_json).collect();
                Ok(platform::json(200, &json!({ "experiments": items })))
            }
            _ => Err(ApiError::method_not_allowed("GET")),
        };
    }
    definition::check_key(key)?;
    match req.method() {
        Method::Put => {
            let body = platform::json_body(platform::header(req, "content-type"), req.body())?;
            let now = platform::now_ms();
            let def = definition::parse(&body, now)?;
            let before = store::get(sql, key)?.map(|s| s.to_json());
            let created = store::put(sql, key, &def, actor, now)?;
            let stored = store::get(sql, key)?;
            let body = stored.map_or(Value::Null, |s| s.to_json());
            let mut record = Record::new("experiment", "put", key).after(body.clone());
            record.before = before;
            platform::audit("flag-evaluate", sql, actor, record);
            Ok(platform::json(if created { 201 } else { 200 }, &body))
        }
        Method::Get => report_of(sql, key),
        Method::Delete => {
            let before = store::get(sql, key)?.map(|s| s.to_json());
            if store::delete(sql, key)? {
                let mut record = Record::new("experiment", "delete", key);
                record.before = before;
                platform::audit("flag-evaluate", sql, actor, record);
                Ok(platform::json(200, &json!({ "deleted": key })))
            } else {
                Err(not_found(key))
            }
        }
        _ => Err(ApiError::method_not_allowed("GET, PUT, DELETE")),
    }
}

fn not_found(key: &str) -> ApiError {
    ApiError::new(Code::NotFound, format!("no experiment {key}"))
}

/// `GET /admin/experiments/{key}`: the report, with the definition.
fn report_of(sql: &mut SpinSql<'_>, key: &str) -> Result<Response, ApiError> {
    let exp = store::get(sql, key)?.ok_or_else(|| not_found(key))?;
    let data = store::collect(sql, &exp.definition)?;
    let report = report::build(key, &exp.definition, &data);
    let mut body = serde_json::to_value(&report).map_err(platform::internal)?;
    body["definition"] = exp.definition.to_json();
    body["created_at"] = json!(exp.created_at);
    body["updated_at"] = json!(exp.updated_at);
    body["actor"] = json!(exp.actor);
    Ok(platform::json(200, &body))
}
