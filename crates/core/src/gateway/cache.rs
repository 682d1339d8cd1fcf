//! The exact-match response cache: key normalization and entries.
//!
//! Two requests share a cache entry when everything that shapes the answer is
//! equal: model, messages, sampling parameters, output format, stop sequences,
//! tools and other forwarded fields, and the entry tier asked for. Fields that
//! only change the *delivery* (`stream`, `stream_options`) or the accounting
//! (`user`, DOL's cost/latency hints) are left out, so a streamed request can
//! replay a non-streamed answer and vice versa. Keys are scoped to the API key
//! (one tenant never reads another's answers) and JSON object keys are sorted,
//! so field order does not matter.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::openai::{ChatRequest, DolInfo, FinishReason, Usage};

/// Default time an entry lives.
pub const DEFAULT_TTL_SECS: u64 = 3_600;

/// A cached answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheEntry {
    /// The answer text.
    pub content: String,
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// The original usage.
    pub usage: Usage,
    /// The original decision record.
    pub info: DolInfo,
    /// Unix ms when stored.
    pub stored_at_ms: u64,
    /// Unix ms after which it is stale.
    pub expires_at_ms: u64,
}

impl CacheEntry {
    /// Whether the entry is still fresh at `now_ms`.
    pub fn is_fresh(&self, now_ms: u64) -> bool {
        now_ms < self.expires_at_ms
    }
}

fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let mut out = Map::new();
            for k in keys {
                if let Some(x) = m.get(k) {
                    out.insert(k.clone(), canonical(x));
                }
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

fn sorted_json(v: &Value) -> String {
    // Emit keys in sorted order whatever the map's own ordering is.
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .filter_map(|k| {
                    m.get(k)
                        .map(|x| format!("{}:{}", Value::String(k.clone()), sorted_json(x)))
                })
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(sorted_json).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

/// The cache key of `request` for the API key `scope`: `gw:cache:<sha256>`.
pub fn key(request: &ChatRequest, scope: &str) -> String {
    let mut v = serde_json::to_value(request).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        for delivery_only in ["stream", "stream_options", "user"] {
            m.remove(delivery_only);
        }
        // Of DOL's hints only the tier shapes the answer.
        let tier = m
            .remove("dol")
            .and_then(|d| d.get("tier").cloned())
            .unwrap_or(Value::Null);
        m.insert("dol_tier".to_owned(), tier);
    }
    let canon = sorted_json(&canonical(&v));
    let mut h = Sha256::new();
    h.update(scope.as_bytes());
    h.update([0u8]);
    h.update(canon.as_bytes());
    let mut key = String::from("gw:cache:");
    crate::hex::encode_into(&mut key, &h.finalize());
    key
}

/// Whether the client asked to bypass the cache (`Cache-Control: no-cache` or `no-store`).
pub fn bypass(cache_control: Option<&str>) -> bool {
    cache_control.is_some_and(|v| {
        v.split(',')
            .map(|d| d.trim().to_ascii_lowercase())
            .any(|d| d == "no-cache" || d == "no-store")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: &str) -> ChatRequest {
        ChatRequest::from_json(json.as_bytes()).unwrap()
    }

    #[test]
    fn delivery_fields_and_key_order_do_not_change_the_key() {
        let a = req(
            r#"{"model":"auto","messages":[{"role":"user","content":"hi"}],"temperature":0.5}"#,
        );
        let b = req(
            r#"{"temperature":0.5,"stream":true,"user":"u1","messages":[{"content":"hi","role":"user"}],"model":"auto"}"#,
        );
        assert_eq!(key(&a, "k1"), key(&b, "k1"));
    }

    #[test]
    fn content_parameters_and_scope_change_the_key() {
        let a = req(r#"{"model":"auto","messages":[{"role":"user","content":"hi"}]}"#);
        let other_text = req(r#"{"model":"auto","messages":[{"role":"user","content":"hello"}]}"#);
        let other_temp =
            req(r#"{"model":"auto","messages":[{"role":"user","content":"hi"}],"temperature":1}"#);
        let other_tier = req(
            r#"{"model":"auto","messages":[{"role":"user","content":"hi"}],"dol":{"tier":"basic"}}"#,
        );
        let k = key(&a, "k1");
        assert!(k.starts_with("gw:cache:"));
        assert_ne!(k, key(&other_text, "k1"));
        assert_ne!(k, key(&other_temp, "k1"));
        assert_ne!(k, key(&other_tier, "k1"));
        assert_ne!(k, key(&a, "k2"));
    }

    #[test]
    fn cache_control_bypass() {
        assert!(bypass(Some("no-cache")));
        assert!(bypass(Some("max-age=0, No-Store")));
        assert!(!bypass(Some("max-age=60")));
        assert!(!bypass(None));
    }
}
