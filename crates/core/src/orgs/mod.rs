//! Organizations (issue 17): an org owns API keys, limits and a monthly
//! budget (admitted at key *and* org level in one transaction:
//! [`crate::gateway::store::admit_with_org`]), an allow-list of
//! models/providers, and optionally its own provider credentials, stored
//! encrypted ([`crypto`]) and used only for its own requests. Keys carry
//! roles ([`Role`]) checked on each route.
//!
//! This module holds the decisions (validation, roles, the allow-list,
//! which credentials a request uses); [`store`] holds the SQL
//! (`migrations/0013_orgs.sql`).

pub mod crypto;
pub mod store;
#[cfg(test)]
pub(crate) mod store_tests;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{ApiError, Code};
use crate::gateway::catalog::ProviderSettings;
use crate::gateway::keys::KeyLimits;
use crate::gateway::routing::CatalogEntry;

/// What a key may do; checked on each route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// The generation routes: chat, generate, messages, responses, embeddings, models.
    Generate,
    /// `POST /v1/events`.
    Events,
    /// `GET /api/metrics?org=…` of the key's own org.
    ReadMetrics,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 3] = [Role::Generate, Role::Events, Role::ReadMetrics];

    /// The role as written in bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Generate => "generate",
            Role::Events => "events",
            Role::ReadMetrics => "read-metrics",
        }
    }
}

/// The roles of a key created without `roles` (and of every key created
/// before roles existed): what such a key could do before.
pub const DEFAULT_ROLES: [Role; 2] = [Role::Generate, Role::Events];

/// Parses a `roles` field: a non-empty array of known role names.
pub fn parse_roles(v: &Value) -> Result<Vec<Role>, ApiError> {
    let known = || {
        Role::ALL
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let roles: Vec<Role> = serde_json::from_value(v.clone()).map_err(|_| {
        ApiError::invalid(
            "roles",
            format!("roles must be an array of role names ({})", known()),
        )
    })?;
    if roles.is_empty() {
        return Err(ApiError::invalid(
            "roles",
            format!("roles must not be empty (known: {})", known()),
        ));
    }
    let mut roles = roles;
    roles.sort();
    roles.dedup();
    Ok(roles)
}

/// The 403 for a key without `role`.
pub fn missing_role(role: Role) -> ApiError {
    ApiError::new(
        Code::Forbidden,
        format!("This API key does not have the `{}` role.", role.as_str()),
    )
}

/// Providers an org may hold a credential for.
pub const CREDENTIAL_PROVIDERS: [&str; 4] = ["openai", "anthropic", "gemini", "local"];

/// Longest org name, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// An organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Org {
    /// Its id (lowercase letters, digits and `-`; chosen by the operator).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Org-wide limits (each key also keeps its own).
    pub limits: KeyLimits,
    /// Allowed `provider/model` patterns (`provider/*` for a whole
    /// provider); empty = every model.
    pub allowed_models: Vec<String>,
    /// Created, Unix ms.
    pub created_at: i64,
    /// Last changed, Unix ms.
    pub updated_at: i64,
}

impl Org {
    /// The org as admin JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "limits": self.limits,
            "allowed_models": self.allowed_models,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        })
    }

    /// Whether the allow-list admits `entry`.
    pub fn allows(&self, entry: &CatalogEntry) -> bool {
        self.allows_model(&entry.provider, &entry.model)
    }

    /// Whether the allow-list admits `model` of `provider` (a chat or
    /// embedding provider, or a video platform).
    pub fn allows_model(&self, provider: &str, model: &str) -> bool {
        self.allowed_models.is_empty()
            || self
                .allowed_models
                .iter()
                .any(|p| match p.strip_suffix("/*") {
                    Some(allowed) => allowed == provider,
                    None => p.split_once('/') == Some((provider, model)),
                })
    }

    /// The catalog this org may route to; a request naming a model outside
    /// it (but in the catalog) is a 403 naming the model, so it never
    /// reaches a provider the org did not allow.
    pub fn routable(
        &self,
        catalog: Vec<CatalogEntry>,
        model: &str,
    ) -> Result<Vec<CatalogEntry>, ApiError> {
        let (allowed, refused): (Vec<_>, Vec<_>) =
            catalog.into_iter().partition(|e| self.allows(e));
        let named = |e: &CatalogEntry| e.model == model || e.key() == model;
        if !allowed.iter().any(named) && refused.iter().any(named) {
            return Err(ApiError::new(
                Code::Forbidden,
                format!(
                    "Model `{model}` is not allowed for organization `{}`.",
                    self.id
                ),
            )
            .with_field("model"));
        }
        Ok(allowed)
    }
}

/// A `PUT /admin/orgs/{id}` body, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgSpec {
    /// Display name (the id when none is sent).
    pub name: String,
    /// Org-wide limits.
    pub limits: KeyLimits,
    /// Allowed `provider/model` patterns.
    pub allowed_models: Vec<String>,
}

/// Whether `id` is a valid org id: 1–64 of `a-z`, `0-9`, `-`, starting with a letter or digit.
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && !id.starts_with('-')
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A 400 naming `id` unless `id` is a valid org id ([`valid_id`]).
pub fn check_id(id: &str) -> Result<(), ApiError> {
    if valid_id(id) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "id",
            "org id must be 1-64 lowercase letters, digits or -, not starting with -",
        ))
    }
}

/// Parses a `PUT /admin/orgs/{id}` body: `{"name"?, "limits"?, "allowed_models"?}`.
pub fn parse_org(id: &str, body: &Value) -> Result<OrgSpec, ApiError> {
    check_id(id)?;
    let Some(obj) = body.as_object() else {
        return Err(ApiError::invalid("body", "body must be a JSON object"));
    };
    if let Some(unknown) = obj
        .keys()
        .find(|k| !matches!(k.as_str(), "name" | "limits" | "allowed_models"))
    {
        return Err(ApiError::invalid(
            unknown.clone(),
            format!("unknown field {unknown:?} (known: name, limits, allowed_models)"),
        ));
    }
    let name = match obj.get("name") {
        None | Some(Value::Null) => id.to_owned(),
        Some(Value::String(n))
            if !n.trim().is_empty()
                && n.len() <= MAX_NAME_LEN
                && !n.chars().any(char::is_control) =>
        {
            n.trim().to_owned()
        }
        _ => {
            return Err(ApiError::invalid(
                "name",
                format!(
                    "name must be a non-empty string of at most {MAX_NAME_LEN} characters without control characters"
                ),
            ));
        }
    };
    let limits = match obj.get("limits") {
        None | Some(Value::Null) => KeyLimits::default(),
        Some(v) => KeyLimits::from_request(v)?,
    };
    let allowed_models = match obj.get("allowed_models") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => parse_patterns(v)?,
    };
    Ok(OrgSpec {
        name,
        limits,
        allowed_models,
    })
}

fn parse_patterns(v: &Value) -> Result<Vec<String>, ApiError> {
    let bad = || {
        ApiError::invalid(
            "allowed_models",
            "allowed_models must be an array of `provider/model` or `provider/*` strings (no spaces; `*` only as the whole model)",
        )
    };
    let list: Vec<String> = serde_json::from_value(v.clone()).map_err(|_| bad())?;
    for p in &list {
        // A pattern that can never match would silently leave the org only
        // the offline tier: refuse it instead.
        let clean = |part: &str| {
            !part.is_empty() && !part.chars().any(|c| c.is_whitespace() || c.is_control())
        };
        match p.split_once('/') {
            Some((provider, model))
                if clean(provider)
                    && clean(model)
                    && !provider.contains('*')
                    && (model == "*" || !model.contains('*')) => {}
            _ => return Err(bad()),
        }
    }
    Ok(list)
}

/// Parses a `PUT /admin/orgs/{id}/credentials/{provider}` body
/// (`{"api_key": "…"}`); returns the secret.
pub fn parse_credential(provider: &str, body: &Value) -> Result<String, ApiError> {
    if !CREDENTIAL_PROVIDERS.contains(&provider) {
        return Err(ApiError::invalid(
            "provider",
            format!(
                "provider `{provider}` takes no credential (known: {})",
                CREDENTIAL_PROVIDERS.join(", ")
            ),
        ));
    }
    let obj = body
        .as_object()
        .ok_or_else(|| ApiError::invalid("body", "body must be a JSON object"))?;
    if let Some(unknown) = obj.keys().find(|k| k.as_str() != "api_key") {
        return Err(ApiError::invalid(
            unknown.clone(),
            format!("unknown field {unknown:?} (known: api_key)"),
        ));
    }
    match obj.get("api_key").and_then(Value::as_str).map(str::trim) {
        // It travels in an HTTP header: visible ASCII only, as providers' keys are.
        Some(k) if !k.is_empty() && k.len() <= 4096 && k.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(k.to_owned())
        }
        _ => Err(ApiError::invalid(
            "api_key",
            "api_key must be a non-empty string of at most 4096 visible ASCII characters (no spaces or control characters)",
        )),
    }
}

/// The deployment's provider settings with the org's own credentials in
/// place of the deployment-wide keys (`creds`: provider, secret).
pub fn with_credentials(base: &ProviderSettings, creds: &[(String, String)]) -> ProviderSettings {
    let mut s = base.clone();
    for (provider, secret) in creds {
        let slot = match provider.as_str() {
            "openai" => &mut s.openai_api_key,
            "anthropic" => &mut s.anthropic_api_key,
            "gemini" => &mut s.gemini_api_key,
            "local" => &mut s.local_api_key,
            _ => continue,
        };
        slot.clone_from(secret);
        s.org_credentials.insert(provider.clone());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::tiers::Tier;

    fn entry(provider: &str, model: &str) -> CatalogEntry {
        CatalogEntry {
            provider: provider.into(),
            model: model.into(),
            tier: Tier::Enhanced,
            input_price: Some(1),
            output_price: Some(1),
            context_window: 1000,
            capabilities: Default::default(),
            image_prices: Default::default(),
        }
    }

    fn org(allowed: &[&str]) -> Org {
        Org {
            id: "acme".into(),
            name: "Acme".into(),
            limits: KeyLimits::default(),
            allowed_models: allowed.iter().map(|s| (*s).to_owned()).collect(),
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn the_allow_list_filters_and_refuses_named_models() {
        let catalog = vec![entry("openai", "gpt-x"), entry("anthropic", "claude-y")];
        let o = org(&["openai/*"]);
        assert_eq!(o.routable(catalog.clone(), "auto").unwrap().len(), 1);
        assert_eq!(o.routable(catalog.clone(), "gpt-x").unwrap().len(), 1);
        let err = o.routable(catalog.clone(), "claude-y").unwrap_err();
        assert_eq!(err.code, Code::Forbidden);
        assert_eq!(err.field.as_deref(), Some("model"));
        assert!(
            o.routable(catalog.clone(), "anthropic/claude-y")
                .unwrap_err()
                .message
                .contains("not allowed")
        );
        // An exact pattern; an empty list allows everything.
        assert!(org(&["anthropic/claude-y"]).allows(&catalog[1]));
        assert!(!org(&["anthropic/claude-y"]).allows(&catalog[0]));
        assert_eq!(org(&[]).routable(catalog, "claude-y").unwrap().len(), 2);
    }

    #[test]
    fn org_bodies_are_validated_field_by_field() {
        let ok = parse_org(
            "acme",
            &json!({"limits": {"monthly_budget_micros": 5}, "allowed_models": ["openai/*"]}),
        )
        .unwrap();
        assert_eq!(ok.name, "acme");
        assert_eq!(ok.limits.monthly_budget_micros, Some(5));
        let field = |id: &str, body: Value| parse_org(id, &body).unwrap_err().field;
        assert_eq!(field("Acme", json!({})).as_deref(), Some("id"));
        assert_eq!(field("-a", json!({})).as_deref(), Some("id"));
        assert_eq!(field("a", json!([])).as_deref(), Some("body"));
        assert_eq!(field("a", json!({"x": 1})).as_deref(), Some("x"));
        assert_eq!(field("a", json!({"name": ""})).as_deref(), Some("name"));
        assert_eq!(
            field("a", json!({"limits": {"budget": 1}})).as_deref(),
            Some("limits")
        );
        assert_eq!(
            field(
                "a",
                json!({"limits": {"monthly_budget_micros": 18_446_744_073_709_551_615_u64}})
            )
            .as_deref(),
            Some("limits.monthly_budget_micros")
        );
        assert_eq!(
            field("a", json!({"name": "\u{0}\u{1b}[31m"})).as_deref(),
            Some("name")
        );
        // Patterns that could never match are refused, not stored.
        for bad in [
            "gpt-4o",
            "*/*",
            "openai/gpt-*",
            " openai/ x ",
            "openai/a b",
            "/x",
            "openai/",
        ] {
            assert_eq!(
                field("a", json!({"allowed_models": [bad]})).as_deref(),
                Some("allowed_models"),
                "{bad}"
            );
        }
        // Model names may hold slashes of their own.
        assert!(
            parse_org(
                "a",
                &json!({"allowed_models": ["local/meta-llama/llama-3"]})
            )
            .is_ok()
        );
    }

    #[test]
    fn roles_parse_and_refuse_unknown_or_empty() {
        assert_eq!(
            parse_roles(&json!(["events", "generate", "events"])).unwrap(),
            vec![Role::Generate, Role::Events]
        );
        assert_eq!(
            parse_roles(&json!(["read-metrics"])).unwrap(),
            vec![Role::ReadMetrics]
        );
        assert!(parse_roles(&json!(["admin"])).is_err());
        assert!(parse_roles(&json!([])).is_err());
        assert_eq!(missing_role(Role::Events).code, Code::Forbidden);
    }

    #[test]
    fn credentials_are_validated_and_replace_only_their_provider() {
        assert_eq!(
            parse_credential("openai", &json!({"api_key": " sk-1 "})).unwrap(),
            "sk-1"
        );
        assert_eq!(
            parse_credential("nope", &json!({"api_key": "x"}))
                .unwrap_err()
                .field
                .as_deref(),
            Some("provider")
        );
        assert!(parse_credential("openai", &json!({"api_key": ""})).is_err());
        // It goes into an HTTP header: a line break would break every request.
        for bad in ["sk-line1\nX-Injected: yes", "sk a", "sk-\u{0}", "sk-é"] {
            assert_eq!(
                parse_credential("openai", &json!({"api_key": bad}))
                    .unwrap_err()
                    .field
                    .as_deref(),
                Some("api_key"),
                "{bad:?}"
            );
        }
        assert!(parse_credential("openai", &json!({"key": "x"})).is_err());
        let base = ProviderSettings {
            openai_api_key: "deploy-openai".into(),
            anthropic_api_key: "deploy-anthropic".into(),
            ..ProviderSettings::default()
        };
        let s = with_credentials(&base, &[("openai".into(), "org-openai".into())]);
        assert_eq!(s.openai_api_key, "org-openai");
        assert_eq!(s.anthropic_api_key, "deploy-anthropic");
        // What the org's key meets at OpenAI stays out of the shared
        // routing state; what the deployment's key meets elsewhere does not.
        let seen = |key: &str| crate::gateway::engine::Observation {
            key: key.into(),
            latency_ms: 1,
            success: false,
            quality: None,
        };
        let shared = s.shared_observations(&[seen("openai/gpt-4o"), seen("anthropic/claude")]);
        assert_eq!(shared, vec![seen("anthropic/claude")]);
        assert_eq!(base.shared_observations(&[seen("openai/gpt-4o")]).len(), 1);
    }
}
