//! The model catalog file (`catalog/models.json`) and provider settings.
//!
//! The catalog lists every model DOL may route to: provider, tier, USD prices
//! per 1M tokens (`null` = unknown, never treated as free), context window and
//! capabilities. Providers are enabled by configuration (a key, or a base URL
//! for a local OpenAI-compatible server); catalog models of providers that are
//! not enabled are listed but never routed to.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::Value;

use super::cost::{MAX_PRICE_USD, usd_per_million};
use super::engine::Observation;
use super::providers::{ProviderConfig, ProviderKind};
use super::routing::CatalogEntry;
use super::tiers::Tier;

/// The seed catalog shipped with DOL.
pub const SEED: &str = include_str!("../../../../catalog/models.json");

/// Known capability names. `embeddings` marks an embedding model: only
/// `POST /v1/embeddings` routes to it, and chat never does; `images` marks an
/// image model, served only by `POST /v1/images/generations`.
pub const CAPABILITIES: &[&str] = &[
    "json",
    "streaming",
    "vision",
    "tools",
    "embeddings",
    "images",
];

/// Capabilities that make a model a non-chat model: chat never routes to it.
pub const NON_CHAT: &[&str] = &["embeddings", "images"];

/// Whether chat may route to `e` (it has none of the [`NON_CHAT`] capabilities).
pub fn is_chat(e: &CatalogEntry) -> bool {
    !NON_CHAT.iter().any(|c| e.capabilities.contains(*c))
}

/// Why a catalog document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    /// Not JSON, or not the expected shape.
    #[error("catalog is not valid: {0}")]
    Shape(String),
    /// One entry is invalid.
    #[error("catalog entry {index} ({key}): {reason}")]
    Entry {
        /// Position in `models`.
        index: usize,
        /// `provider/model` as far as known.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The same provider/model appears twice.
    #[error("catalog lists {0} twice")]
    Duplicate(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    provider: String,
    model: String,
    tier: String,
    input_usd_per_1m: Option<f64>,
    output_usd_per_1m: Option<f64>,
    context_window: u64,
    #[serde(default)]
    capabilities: Vec<String>,
    /// USD per generated image by price key (see `gateway::images`).
    #[serde(default)]
    image_usd: BTreeMap<String, f64>,
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/'))
}

/// Parses and validates one catalog entry given as JSON.
pub fn parse_entry(index: usize, value: &Value) -> Result<CatalogEntry, CatalogError> {
    let key = format!(
        "{}/{}",
        value.get("provider").and_then(Value::as_str).unwrap_or("?"),
        value.get("model").and_then(Value::as_str).unwrap_or("?")
    );
    let fail = |reason: String| CatalogError::Entry {
        index,
        key: key.clone(),
        reason,
    };
    let raw: RawEntry = serde_json::from_value(value.clone()).map_err(|e| fail(e.to_string()))?;
    if !is_name(&raw.provider) || raw.provider.contains('/') {
        return Err(fail(
            "provider must be a short name of letters, digits, - _ . :".to_owned(),
        ));
    }
    if !is_name(&raw.model) {
        return Err(fail(
            "model must be 1–128 characters of letters, digits, - _ . : /".to_owned(),
        ));
    }
    let tier = Tier::parse(&raw.tier)
        .ok_or_else(|| fail("tier must be comprehensive, enhanced or basic".to_owned()))?;
    let price = |p: Option<f64>, name: &str| {
        match p {
        None => Ok(None),
        Some(usd) => usd_per_million(usd)
            .map(Some)
            .ok_or_else(|| {
                fail(format!(
                    "{name} must be a number from 0 to {MAX_PRICE_USD} (US dollars per million tokens) or null"
                ))
            }),
    }
    };
    let input_price = price(raw.input_usd_per_1m, "input_usd_per_1m")?;
    let output_price = price(raw.output_usd_per_1m, "output_usd_per_1m")?;
    if raw.context_window == 0 {
        return Err(fail("context_window must be positive".to_owned()));
    }
    let mut capabilities = BTreeSet::new();
    for c in raw.capabilities {
        if !CAPABILITIES.contains(&c.as_str()) {
            return Err(fail(format!(
                "unknown capability {c:?} (known: {})",
                CAPABILITIES.join(", ")
            )));
        }
        capabilities.insert(c);
    }
    let mut image_prices = BTreeMap::new();
    for (k, usd) in raw.image_usd {
        if !super::images::is_price_key(&k) {
            return Err(fail(format!(
                "image_usd key {k:?} must be \"{{size}}/{{quality}}\", \"{{size}}\" or \"*\""
            )));
        }
        let micros = usd_per_million(usd).ok_or_else(|| {
            fail(format!(
                "image_usd[{k:?}] must be a number from 0 to {MAX_PRICE_USD} (US dollars per image)"
            ))
        })?;
        image_prices.insert(k, micros);
    }
    Ok(CatalogEntry {
        image_prices,
        provider: raw.provider,
        model: raw.model,
        input_price,
        output_price,
        context_window: raw.context_window,
        capabilities,
        tier,
    })
}

/// Parses a catalog document `{"models": [...]}`.
pub fn parse(json: &str) -> Result<Vec<CatalogEntry>, CatalogError> {
    let doc: Value = serde_json::from_str(json).map_err(|e| CatalogError::Shape(e.to_string()))?;
    let models = doc.get("models").and_then(Value::as_array).ok_or_else(|| {
        CatalogError::Shape("expected an object with a `models` array".to_owned())
    })?;
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(models.len());
    for (i, m) in models.iter().enumerate() {
        let entry = parse_entry(i, m)?;
        if !seen.insert(entry.key()) {
            return Err(CatalogError::Duplicate(entry.key()));
        }
        out.push(entry);
    }
    Ok(out)
}

/// The catalog entry as JSON in the file's format.
pub fn entry_json(e: &CatalogEntry) -> Value {
    let usd = |p: Option<u64>| p.map(|m| m as f64 / 1e6);
    serde_json::json!({
        "provider": e.provider,
        "model": e.model,
        "tier": e.tier.as_str(),
        "input_usd_per_1m": usd(e.input_price),
        "output_usd_per_1m": usd(e.output_price),
        "context_window": e.context_window,
        "capabilities": e.capabilities,
        "image_usd": e.image_prices.iter().map(|(k, m)| (k.clone(), Value::from(*m as f64 / 1e6))).collect::<serde_json::Map<String, Value>>(),
    })
}

/// Provider settings as read from configuration (Spin variables).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProviderSettings {
    /// OpenAI API key.
    pub openai_api_key: String,
    /// OpenAI base URL (with `/v1`).
    pub openai_base_url: String,
    /// Anthropic API key.
    pub anthropic_api_key: String,
    /// Anthropic base URL.
    pub anthropic_base_url: String,
    /// Gemini API key.
    pub gemini_api_key: String,
    /// Gemini base URL.
    pub gemini_base_url: String,
    /// Base URL of a local OpenAI-compatible server (Ollama, vLLM, llama.cpp); empty = off.
    pub local_base_url: String,
    /// Its key, if it wants one.
    pub local_api_key: String,
    /// Providers whose key above is an org's own credential, not the
    /// deployment's: what their attempts show (an org's bad key, its
    /// account's rate limits) says nothing about the deployment's access,
    /// so it stays out of the shared routing state.
    pub org_credentials: BTreeSet<String>,
}

impl ProviderSettings {
    /// The `observations` that describe the deployment's own access to its
    /// providers: all of them, except those of providers reached with an
    /// org's credential. One org's bad key must not open the breakers every
    /// other org's requests are routed by.
    pub fn shared_observations(&self, observations: &[Observation]) -> Vec<Observation> {
        observations
            .iter()
            .filter(|o| {
                let provider = o.key.split_once('/').map_or(o.key.as_str(), |(p, _)| p);
                !self.org_credentials.contains(provider)
            })
            .cloned()
            .collect()
    }
}

/// Default base URLs.
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
/// Default Anthropic base URL.
pub const ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";
/// Default Gemini base URL.
pub const GEMINI_BASE_URL: &str = "https://generativelanguage.googleapis.com";

/// The enabled providers: a cloud provider needs its key; the local one its base URL.
pub fn enabled_providers(s: &ProviderSettings) -> Vec<ProviderConfig> {
    let base = |url: &str, default: &str| {
        let url = url.trim().trim_end_matches('/');
        if url.is_empty() {
            default.to_owned()
        } else {
            url.to_owned()
        }
    };
    let key = |k: &str| Some(k.trim().to_owned()).filter(|k| !k.is_empty());
    let mut out = Vec::new();
    let cloud = [
        (
            "openai",
            ProviderKind::OpenAiCompatible,
            &s.openai_api_key,
            &s.openai_base_url,
            OPENAI_BASE_URL,
        ),
        (
            "anthropic",
            ProviderKind::Anthropic,
            &s.anthropic_api_key,
            &s.anthropic_base_url,
            ANTHROPIC_BASE_URL,
        ),
        (
            "gemini",
            ProviderKind::Gemini,
            &s.gemini_api_key,
            &s.gemini_base_url,
            GEMINI_BASE_URL,
        ),
    ];
    for (name, kind, api_key, url, default) in cloud {
        if let Some(api_key) = key(api_key) {
            out.push(ProviderConfig {
                name: name.to_owned(),
                kind,
                base_url: base(url, default),
                api_key: Some(api_key),
            });
        }
    }
    if !s.local_base_url.trim().is_empty() {
        out.push(ProviderConfig {
            name: "local".to_owned(),
            kind: ProviderKind::OpenAiCompatible,
            base_url: base(&s.local_base_url, ""),
            api_key: key(&s.local_api_key),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_catalog_parses() {
        let c = parse(SEED).unwrap();
        assert!(c.len() >= 8);
        assert!(c.iter().any(|e| e.tier == Tier::Comprehensive));
        let mini = c.iter().find(|e| e.model == "gpt-4o-mini").unwrap();
        assert_eq!(mini.input_price, Some(150_000));
        assert_eq!(mini.output_price, Some(600_000));
    }

    #[test]
    fn bad_entries_are_named() {
        let bad = |m: &str| {
            parse(&format!(r#"{{"models": [{m}]}}"#))
                .unwrap_err()
                .to_string()
        };
        let base = r#""provider": "p", "model": "m", "context_window": 10"#;
        assert!(bad(&format!(r#"{{{base}, "tier": "gold"}}"#)).contains("tier"));
        assert!(
            bad(&format!(
                r#"{{{base}, "tier": "basic", "input_usd_per_1m": -1}}"#
            ))
            .contains("input_usd_per_1m")
        );
        // A price above the ceiling is refused, not capped (it used to be
        // stored as u64::MAX micro-dollars per million tokens).
        let absurd = bad(&format!(
            r#"{{{base}, "tier": "basic", "output_usd_per_1m": 1e308}}"#
        ));
        assert!(
            absurd.contains("output_usd_per_1m must be a number from 0 to 10000"),
            "{absurd}"
        );
        assert!(
            bad(&format!(
                r#"{{{base}, "tier": "basic", "image_usd": {{"*": 10000.5}}}}"#
            ))
            .contains("image_usd[\"*\"] must be a number from 0 to 10000")
        );
        assert!(
            bad(&format!(
                r#"{{{base}, "tier": "basic", "capabilities": ["telepathy"]}}"#
            ))
            .contains("telepathy")
        );
        assert!(bad(&format!(r#"{{{base}, "tier": "basic", "colour": 1}}"#)).contains("colour"));
        assert!(
            bad(r#"{"provider": "p/q", "model": "m", "tier": "basic", "context_window": 1}"#)
                .contains("provider")
        );
        let dup = format!(r#"{{{base}, "tier": "basic"}}, {{{base}, "tier": "enhanced"}}"#);
        assert_eq!(bad(&dup), "catalog lists p/m twice");
        assert!(parse("[]").unwrap_err().to_string().contains("models"));
    }

    #[test]
    fn unknown_prices_stay_unknown() {
        let c = parse(r#"{"models": [{"provider": "p", "model": "m", "tier": "basic", "context_window": 10, "input_usd_per_1m": null}]}"#).unwrap();
        assert_eq!(c[0].input_price, None);
        assert_eq!(c[0].output_price, None);
        assert_eq!(entry_json(&c[0])["input_usd_per_1m"], Value::Null);
    }

    #[test]
    fn providers_are_enabled_by_keys_and_local_url() {
        assert!(enabled_providers(&ProviderSettings::default()).is_empty());
        let p = enabled_providers(&ProviderSettings {
            anthropic_api_key: " sk-ant ".to_owned(),
            local_base_url: "http://127.0.0.1:11434/v1/".to_owned(),
            ..ProviderSettings::default()
        });
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].name, "anthropic");
        assert_eq!(p[0].base_url, ANTHROPIC_BASE_URL);
        assert_eq!(p[0].api_key.as_deref(), Some("sk-ant"));
        assert_eq!(p[1].base_url, "http://127.0.0.1:11434/v1");
        assert_eq!(p[1].api_key, None);
    }
}
