//! `GET /admin/models` (the catalog with observed stats and breaker
//! states) and `PUT /admin/models/{provider}/{model}`.

use dol_core::gateway::catalog;
use dol_core::gateway::store;
use serde_json::{Value, json};
use spin_sdk::http::Response;

use super::{bad, json_body};
use crate::http::Incoming;
use dol_spin_platform::{self as platform, SpinKv, SpinSql};

/// The catalog with what routing observed.
pub fn models(sql: &mut SpinSql<'_>, now: i64) -> anyhow::Result<Response> {
    let entries = store::catalog(sql, now)?;
    let state = store::routing_state(&mut SpinKv::open_default()?);
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

/// Creates or replaces a catalog entry.
pub fn put_model(
    req: &Incoming,
    sql: &mut SpinSql<'_>,
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
    store::put_model(sql, &entry, now)?;
    Ok(platform::json(200, &catalog::entry_json(&entry)))
}
