//! `GET`/`PUT /admin/settings`, `DELETE /admin/subjects/{targetingKey}` and
//! the request log's part of `GET /admin/requests/{id}`. The rules are
//! `dol_core::privacy`; every change is audited.

use dol_core::audit::Record;
use dol_core::error::ApiError;
use dol_core::gateway::store;
use dol_core::gateway::telemetry::RequestRecord;
use dol_core::privacy::{self, DEFAULT_ORG};
use serde_json::json;
use spin_sdk::http::Response;

use super::json_body;
use crate::request::Incoming;
use dol_spin_platform::{self as platform, SpinSql};

/// One request's telemetry with its subject and, when stored, masked bodies.
pub fn request(sql: &mut SpinSql<'_>, r: &RequestRecord) -> Result<Response, ApiError> {
    let mut body = store::request_json(r);
    let extras = privacy::request_extras(sql, &r.id)?;
    body["subject"] = extras["subject"].clone();
    body["bodies"] = extras["bodies"].clone();
    Ok(platform::json(200, &body))
}

/// An org's settings (`DEFAULT_ORG`: keys of no org).
pub fn get_settings(sql: &mut SpinSql<'_>, org_id: &str) -> Result<Response, ApiError> {
    let settings = privacy::load_settings(sql, org_id)?;
    Ok(platform::json(200, &settings.to_json()))
}

/// Replaces an org's settings (`DEFAULT_ORG`: keys of no org).
pub fn put_settings(
    req: &Incoming,
    sql: &mut SpinSql<'_>,
    org_id: &str,
    actor: &str,
    now: i64,
) -> Result<Response, ApiError> {
    let settings = privacy::parse_settings(&json_body(req)?)?;
    let target = if org_id == DEFAULT_ORG {
        "default"
    } else {
        org_id
    };
    dol_core::audit::audited(sql, actor, now, |tx| {
        // Under the write lock: settings never outlive a deletion racing them.
        if org_id != DEFAULT_ORG {
            dol_core::orgs::store::require_org_in(tx, org_id)?;
        }
        let before = privacy::save_settings_in(tx, org_id, &settings, actor, now)?;
        let mut record = Record::new("settings", "put", target)
            .before(before.to_json())
            .after(settings.to_json());
        record.org_id = org_id.to_owned();
        Ok(((), record))
    })?;
    Ok(platform::json(200, &settings.to_json()))
}

/// Deletes one end user's rows in org `org_id` (`DEFAULT_ORG`: keys of no
/// org); the deletion itself is audited (with the counts, not the data).
pub fn delete_subject(
    sql: &mut SpinSql<'_>,
    org_id: &str,
    raw: &str,
    actor: &str,
    now: i64,
) -> Result<Response, ApiError> {
    let subject = platform::percent_decode(raw).ok_or_else(|| {
        ApiError::invalid(
            "targetingKey",
            "the targeting key is not valid percent-encoding",
        )
    })?;
    let subject = privacy::parse_subject(&subject)?;
    let body = dol_core::audit::audited(sql, actor, now, |tx| {
        let deleted = privacy::delete_subject_in(tx, org_id, subject)?;
        let body = json!({"subject": subject, "org": org_id, "deleted": deleted});
        let mut record = Record::new("subject", "delete", subject).after(body.clone());
        record.org_id = org_id.to_owned();
        Ok((body, record))
    })?;
    Ok(platform::json(200, &body))
}
