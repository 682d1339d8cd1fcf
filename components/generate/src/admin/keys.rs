//! `POST /admin/keys`: validates the body, makes a random key and stores
//! only its hash; the key is answered once.

use dol_core::gateway::keys::{self, KeyLimits};
use dol_core::gateway::store;
use serde_json::Value;
use spin_sdk::http::Response;

use super::{bad, json_body, not_found};
use crate::http::Incoming;
use dol_spin_platform::{self as platform, SpinSql};

/// Creates a key.
pub fn create_key(req: &Incoming, sql: &mut SpinSql<'_>, now: i64) -> anyhow::Result<Response> {
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
    let row = store::create_key(sql, &id, &name, &key, &limits, now)?;
    let mut v = row.to_json();
    v["key"] = Value::String(key);
    v["note"] = Value::String("Store the key now: it is shown only once.".to_owned());
    Ok(platform::json(201, &v))
}

/// `GET /admin/keys/{id}`: the key with its usage counters.
pub fn get_key(sql: &mut SpinSql<'_>, id: &str) -> anyhow::Result<Response> {
    Ok(match store::get_key(sql, id)? {
        Some(k) => {
            let mut v = k.to_json();
            v["usage"] = serde_json::to_value(store::usage(sql, id)?)?;
            platform::json(200, &v)
        }
        None => not_found(&format!("no key {id}")),
    })
}
