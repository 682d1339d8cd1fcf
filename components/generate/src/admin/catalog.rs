//! `GET /admin/models` (the catalog with observed stats and breaker
//! states) and `PUT /admin/models/{provider}/{model}`. Shaping and
//! validation are `dol_core::gateway::admin`.

use dol_core::error::ApiError;
use dol_core::gateway::{admin, store};
use spin_sdk::http::Response;

use super::json_body;
use crate::request::Incoming;
use dol_spin_platform::{self as platform, SpinKv, SpinSql};

/// The catalog with what routing observed.
pub fn models(sql: &mut SpinSql<'_>, now: i64) -> Result<Response, ApiError> {
    let entries = store::catalog(sql, now)?;
    let state = store::routing_state(&mut SpinKv::open_default().map_err(platform::internal)?);
    let now_ms = u64::try_from(now).unwrap_or(0);
    Ok(platform::json(
        200,
        &admin::models_json(&entries, &state, now_ms),
    ))
}

/// Creates or replaces a catalog entry.
pub fn put_model(
    req: &Incoming,
    sql: &mut SpinSql<'_>,
    provider: &str,
    model: &str,
    actor: &str,
    now: i64,
) -> Result<Response, ApiError> {
    let entry = admin::parse_model(provider, model, json_body(req)?)?;
    let before = self::entry(sql, provider, model, now)?;
    // `entry` seeded the catalog; the change and its audit entry commit together.
    dol_core::audit::audited(sql, actor, now, |tx| {
        store::put_model_in(tx, &entry, now)?;
        let mut record =
            dol_core::audit::Record::new("model", "put", format!("{provider}/{model}"))
                .after(dol_core::gateway::catalog::entry_json(&entry));
        record.before = before;
        Ok(((), record))
    })?;
    Ok(platform::json(
        200,
        &dol_core::gateway::catalog::entry_json(&entry),
    ))
}

/// The catalog entry `provider/model` as JSON, if there is one (the audit
/// log's before state).
pub fn entry(
    sql: &mut SpinSql<'_>,
    provider: &str,
    model: &str,
    now: i64,
) -> Result<Option<serde_json::Value>, ApiError> {
    Ok(store::catalog(sql, now)?
        .iter()
        .find(|e| e.provider == provider && e.model == model)
        .map(dol_core::gateway::catalog::entry_json))
}
