//! `PUT /admin/templates/{name}` (a new version of a prompt template) and
//! `GET /admin/templates/{name}?version=N` (one version, default latest).
//! Validation is `dol_core::gateway::admin`.

use dol_core::error::{ApiError, Code};
use dol_core::gateway::admin;
use dol_core::gateway::store::{self, TemplateVersion};
use serde_json::json;
use spin_sdk::http::Response;

use super::json_body;
use crate::request::Incoming;
use dol_spin_platform::{self as platform, SpinSql};

/// Stores a new template version.
pub fn put_template(
    req: &Incoming,
    sql: &mut SpinSql<'_>,
    name: &str,
    actor: &str,
    now: i64,
) -> Result<Response, ApiError> {
    let spec = admin::parse_template(name, json_body(req)?)?;
    let version = dol_core::audit::audited(sql, actor, now, |tx| {
        let before = store::get_template(tx, name, None)?;
        let version = store::put_template_in(tx, name, &spec, actor, now)?;
        let mut record = dol_core::audit::Record::new("template", "put", name)
            .after(json!({"version": version, "template": spec}));
        record.before = before.map(|b| json!({"version": b.version, "template": b.spec}));
        Ok((version, record))
    })?;
    Ok(platform::json(
        201,
        &json!({"name": name, "version": version, "template": spec}),
    ))
}

/// One version of a template (default the latest).
pub fn get_template(
    req: &Incoming,
    sql: &mut SpinSql<'_>,
    name: &str,
) -> Result<Response, ApiError> {
    let version = admin::parse_version(platform::query_param(&req.query, "version")?.as_deref())?;
    let TemplateVersion { version, spec } =
        store::get_template(sql, name, version)?.ok_or_else(|| {
            ApiError::new(
                Code::TemplateNotFound,
                format!("no template {name} (or no such version)"),
            )
        })?;
    Ok(platform::json(
        200,
        &json!({"name": name, "version": version, "template": spec}),
    ))
}
