//! The gateway admin API's decisions: validating keys, templates and
//! catalog entries sent by an operator, and shaping what it reads back.
//! Every refusal is an [`ApiError`] naming the problem (a 400); the
//! component only routes, reads the body and writes the store.

use serde_json::{Value, json};

use super::catalog;
use super::engine::RoutingState;
use super::keys::{self, KeyLimits};
use super::routing::CatalogEntry;
use super::store::{GatewayStoreError, StoredKey};
use super::templates::{self, TemplateError, TemplateSpec};
use crate::error::ApiError;
use crate::orgs::{self, Role};

/// Longest key name, in bytes.
pub const MAX_KEY_NAME_LEN: usize = 128;

/// A key to create, from `POST /admin/keys`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewKey {
    /// Its display name (`unnamed` when none is sent).
    pub name: String,
    /// Its limits (none when none are sent).
    pub limits: KeyLimits,
    /// The org that owns it (none when none is sent; the component checks it exists).
    pub org: Option<String>,
    /// Its roles; `None` = the default roles ([`orgs::DEFAULT_ROLES`]).
    pub roles: Option<Vec<Role>>,
}

impl NewKey {
    /// A key of no org with the default roles.
    pub fn new(name: &str, limits: KeyLimits) -> Self {
        Self {
            name: name.to_owned(),
            limits,
            org: None,
            roles: None,
        }
    }
}

/// Parses a `POST /admin/keys` body: `{"name"?, "limits"?, "org"?,
/// "roles"?}` and nothing else.
pub fn parse_new_key(body: &Value) -> Result<NewKey, ApiError> {
    let Some(obj) = body.as_object() else {
        return Err(ApiError::invalid("body", "body must be a JSON object"));
    };
    if let Some(unknown) = obj
        .keys()
        .find(|k| !matches!(k.as_str(), "name" | "limits" | "org" | "roles"))
    {
        return Err(ApiError::invalid(
            unknown.clone(),
            format!("unknown field {unknown:?} (known: name, limits, org, roles)"),
        ));
    }
    let name = match obj.get("name") {
        Some(Value::String(n)) if !n.trim().is_empty() && n.len() <= MAX_KEY_NAME_LEN => {
            n.trim().to_owned()
        }
        None => "unnamed".to_owned(),
        _ => {
            return Err(ApiError::invalid(
                "name",
                format!("name must be a non-empty string of at most {MAX_KEY_NAME_LEN} characters"),
            ));
        }
    };
    let limits = match obj.get("limits") {
        None | Some(Value::Null) => KeyLimits::default(),
        Some(v) => KeyLimits::from_request(v)?,
    };
    let org = match obj.get("org") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) if orgs::valid_id(id) => Some(id.clone()),
        Some(_) => return Err(ApiError::invalid("org", "org must be an org id")),
    };
    let roles = match obj.get("roles") {
        None | Some(Value::Null) => None,
        Some(v) => Some(orgs::parse_roles(v)?),
    };
    Ok(NewKey {
        name,
        limits,
        org,
        roles,
    })
}

/// A fresh key from 16 random bytes, and its id (derived from its hash, so
/// the id never reveals the key).
pub fn mint_key(random: [u8; 16]) -> (String, String) {
    let key = keys::format_key(random);
    let id = format!("key_{}", &keys::hash_key(&key)[..12]);
    (id, key)
}

/// The `201` body of a created key: the stored row plus the key, shown once.
pub fn created_key_json(row: &StoredKey, key: &str) -> Value {
    let mut v = row.to_json();
    v["key"] = Value::String(key.to_owned());
    v["note"] = Value::String("Store the key now: it is shown only once.".to_owned());
    v
}

/// Parses a `PUT /admin/templates/{name}` body into a valid template.
pub fn parse_template(name: &str, body: Value) -> Result<TemplateSpec, ApiError> {
    if !templates::valid_name(name) {
        return Err(ApiError::invalid("name", TemplateError::Name.to_string()));
    }
    let spec: TemplateSpec = serde_json::from_value(body)
        .map_err(|e| ApiError::invalid("template", format!("template: {e}")))?;
    templates::validate(&spec).map_err(|e| ApiError::invalid("template", e.to_string()))?;
    Ok(spec)
}

/// The `version` query parameter of `GET /admin/templates/{name}`: absent
/// = the latest, else a positive integer.
pub fn parse_version(raw: Option<&str>) -> Result<Option<i64>, ApiError> {
    match raw {
        None => Ok(None),
        Some(v) => match v.parse::<i64>() {
            Ok(v) if v > 0 => Ok(Some(v)),
            _ => Err(ApiError::invalid(
                "version",
                "version must be a positive integer",
            )),
        },
    }
}

/// Parses a `PUT /admin/models/{provider}/{model}` body (the path names the
/// entry; the body holds its prices and capabilities).
pub fn parse_model(provider: &str, model: &str, mut body: Value) -> Result<CatalogEntry, ApiError> {
    let Some(obj) = body.as_object_mut() else {
        return Err(ApiError::invalid("body", "body must be a JSON object"));
    };
    obj.insert("provider".to_owned(), Value::String(provider.to_owned()));
    obj.insert("model".to_owned(), Value::String(model.to_owned()));
    catalog::parse_entry(0, &body).map_err(|e| ApiError::invalid("body", e.to_string()))
}

/// `GET /admin/models`: each catalog entry with what routing observed of it
/// (latency, success, quality, user feedback and the quality routing uses,
/// circuit-breaker state at `now_ms`).
pub fn models_json(entries: &[CatalogEntry], state: &RoutingState, now_ms: u64) -> Value {
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
                    "feedback_samples": s.stats.feedback_n,
                    "feedback_quality": s.stats.feedback_quality,
                    "routing_quality": s.stats.routing_quality(),
                });
                v["circuit"] =
                    serde_json::to_value(s.breaker.state_at(now_ms)).unwrap_or(Value::Null);
            }
            v
        })
        .collect();
    json!({ "models": list })
}

impl From<GatewayStoreError> for ApiError {
    fn from(err: GatewayStoreError) -> Self {
        ApiError::internal(err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Code;

    fn field(err: &ApiError) -> (Code, Option<&str>) {
        (err.code, err.field.as_deref())
    }

    #[test]
    fn a_new_key_takes_a_name_and_limits_only() {
        let k = parse_new_key(&json!({"name": "  ci  ", "limits": {"requests_per_minute": 5}}))
            .unwrap();
        assert_eq!(k.name, "ci");
        assert_eq!(k.limits.requests_per_minute, Some(5));
        assert_eq!(parse_new_key(&json!({})).unwrap().name, "unnamed");
        let largest = parse_new_key(&json!({"limits": {"tokens_per_minute": i64::MAX}})).unwrap();
        assert_eq!(
            largest.limits.tokens_per_minute,
            Some(i64::MAX.unsigned_abs())
        );
        let cases = [
            (json!([]), "body"),
            (json!({"nme": "x"}), "nme"),
            (json!({"name": ""}), "name"),
            (json!({"name": 7}), "name"),
            (json!({"name": "x".repeat(129)}), "name"),
            (json!({"limits": {"requests_per_minute": -1}}), "limits"),
            (json!({"limits": {"rpm": 1}}), "limits"),
            // Above what storage holds: it was echoed back, then stored as i64::MAX.
            (
                json!({"limits": {"monthly_budget_micros": 18_446_744_073_709_551_615_u64}}),
                "limits.monthly_budget_micros",
            ),
            (
                json!({"limits": {"requests_per_minute": 9_223_372_036_854_775_808_u64}}),
                "limits.requests_per_minute",
            ),
        ];
        for (body, expected) in cases {
            let err = parse_new_key(&body).unwrap_err();
            assert_eq!(
                field(&err),
                (Code::InvalidRequest, Some(expected)),
                "{body}"
            );
        }
    }

    #[test]
    fn a_minted_key_has_an_id_that_does_not_reveal_it() {
        let (id, key) = mint_key([7; 16]);
        assert!(key.starts_with(keys::KEY_PREFIX));
        assert!(id.starts_with("key_") && id.len() == 16);
        assert!(!key.contains(&id[4..]));
        assert_ne!(mint_key([8; 16]).0, id);
    }

    #[test]
    fn templates_are_named_and_validated() {
        let body = json!({"messages": [{"role": "user", "content": "Hi {{name}}"}], "variables": {"name": {}}});
        assert!(parse_template("greet", body.clone()).is_ok());
        assert_eq!(
            field(&parse_template("Bad Name", body).unwrap_err()),
            (Code::InvalidRequest, Some("name"))
        );
        assert_eq!(
            field(&parse_template("greet", json!({"messages": 3})).unwrap_err()),
            (Code::InvalidRequest, Some("template"))
        );
        assert_eq!(
            field(&parse_template("greet", json!({"messages": []})).unwrap_err()),
            (Code::InvalidRequest, Some("template"))
        );
    }

    #[test]
    fn versions_are_positive_integers() {
        assert_eq!(parse_version(None).unwrap(), None);
        assert_eq!(parse_version(Some("3")).unwrap(), Some(3));
        for bad in ["0", "-2", "x", ""] {
            assert_eq!(
                field(&parse_version(Some(bad)).unwrap_err()),
                (Code::InvalidRequest, Some("version")),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_model_is_named_by_its_path() {
        let e = parse_model(
            "openai",
            "gpt-x",
            json!({"tier": "enhanced", "input_usd_per_1m": 1.0, "output_usd_per_1m": 2.0, "context_window": 8192}),
        );
        let e = e.unwrap();
        assert_eq!((e.provider.as_str(), e.model.as_str()), ("openai", "gpt-x"));
        assert_eq!(
            field(&parse_model("openai", "m", json!("x")).unwrap_err()),
            (Code::InvalidRequest, Some("body"))
        );
    }

    #[test]
    fn unobserved_models_have_no_observations() {
        let entries = catalog::parse(catalog::SEED).unwrap();
        let v = models_json(&entries, &RoutingState::default(), 0);
        let models = v["models"].as_array().unwrap();
        assert_eq!(models.len(), entries.len());
        assert!(models.iter().all(|m| m.get("observed").is_none()));
    }
}
