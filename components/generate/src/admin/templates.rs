//! `PUT /admin/templates/{name}` (a new version of a prompt template) and
//! `GET /admin/templates/{name}?version=N` (one version, default latest).

use dol_core::gateway::store::{self, TemplateVersion};
use dol_core::gateway::templates::{self, TemplateSpec};
use serde_json::json;
use spin_sdk::http::Response;

use super::{bad, json_body, not_found};
use crate::http::Incoming;
use dol_spin_platform::{self as platform, SpinSql};

/// Stores a new template version.
pub fn put_template(
    req: &Incoming,
    sql: &mut SpinSql<'_>,
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
    let version = store::put_template(sql, name, &spec, actor, now)?;
    Ok(platform::json(
        201,
        &json!({"name": name, "version": version, "template": spec}),
    ))
}

/// One version of a template (default the latest).
pub fn get_template(req: &Incoming, sql: &mut SpinSql<'_>, name: &str) -> anyhow::Result<Response> {
    let version = match platform::query_param(&req.query, "version") {
        None => None,
        Some(v) => match v.parse::<i64>() {
            Ok(v) if v > 0 => Some(v),
            _ => return Ok(bad("version must be a positive integer")),
        },
    };
    Ok(match store::get_template(sql, name, version)? {
        Some(TemplateVersion { version, spec }) => platform::json(
            200,
            &json!({"name": name, "version": version, "template": spec}),
        ),
        None => not_found(&format!("no template {name} (or no such version)")),
    })
}
