//! The experiments admin API. Validation, statistics and the SQL live in
//! `dol_core::experiments`.

use dol_core::experiments::definition::{self, DefinitionError};
use dol_core::experiments::{report, store};
use serde_json::{Value, json};
use spin_sdk::http::Response;
use spin_sdk::sqlite::Connection;

use dol_core::error::Code;
use dol_spin_platform::{self as platform, SpinSql};

fn definition_error(e: &DefinitionError) -> Response {
    let err = dol_core::error::ApiError::invalid(e.field(), e.to_string());
    platform::fail("generate", &err)
}

/// `GET /admin/experiments`.
pub fn list(db: &Connection) -> anyhow::Result<Response> {
    let all = store::list(&mut SpinSql(db))?;
    let items: Vec<Value> = all.iter().map(store::StoredExperiment::to_json).collect();
    Ok(platform::json(200, &json!({ "experiments": items })))
}

/// `PUT /admin/experiments/{key}`: validate, then create or replace.
pub fn put(
    body: &Value,
    db: &Connection,
    key: &str,
    actor: &str,
    now: i64,
) -> anyhow::Result<Response> {
    if let Err(e) = definition::check_key(key) {
        return Ok(definition_error(&e));
    }
    let def = match definition::parse(body, now) {
        Ok(d) => d,
        Err(e) => return Ok(definition_error(&e)),
    };
    let created = store::put(&mut SpinSql(db), key, &def, actor, now)?;
    let stored = store::get(&mut SpinSql(db), key)?;
    let body = stored.map_or(Value::Null, |s| s.to_json());
    Ok(platform::json(if created { 201 } else { 200 }, &body))
}

/// `GET /admin/experiments/{key}`: the report.
pub fn get(db: &Connection, key: &str) -> anyhow::Result<Response> {
    if let Err(e) = definition::check_key(key) {
        return Ok(definition_error(&e));
    }
    let Some(exp) = store::get(&mut SpinSql(db), key)? else {
        return Ok(platform::error(
            Code::NotFound,
            &format!("no experiment {key}"),
        ));
    };
    let data = store::collect(&mut SpinSql(db), &exp.definition)?;
    let report = report::build(key, &exp.definition, &data);
    let mut body = serde_json::to_value(&report)?;
    body["definition"] = exp.definition.to_json();
    body["created_at"] = json!(exp.created_at);
    body["updated_at"] = json!(exp.updated_at);
    body["actor"] = json!(exp.actor);
    Ok(platform::json(200, &body))
}

/// `DELETE /admin/experiments/{key}` (its events stay).
pub fn delete(db: &Connection, key: &str) -> anyhow::Result<Response> {
    if let Err(e) = definition::check_key(key) {
        return Ok(definition_error(&e));
    }
    Ok(if store::delete(&mut SpinSql(db), key)? {
        platform::json(200, &json!({ "deleted": key }))
    } else {
        platform::error(Code::NotFound, &format!("no experiment {key}"))
    })
}
