//! Pure provider adapters: the HTTP requests DOL sends to AI providers and the
//! meaning of what comes back, without doing any I/O.
//!
//! Three wire protocols are spoken, chosen by [`ProviderKind`]:
//!
//! - **OpenAI-compatible** (`POST {base}/chat/completions`, `base` including the
//!   version prefix such as `https://api.openai.com/v1`): the client's request is
//!   forwarded almost unchanged ([`ChatRequest::upstream_body`]).
//! - **Anthropic Messages** (`POST {base}/v1/messages`): system messages move to
//!   `system`, `max_tokens` is always set, JSON output is asked for in the
//!   system prompt (the API has no JSON mode).
//! - **Gemini** (`POST {base}/v1beta/models/{model}:generateContent`):
//!   `contents` / `systemInstruction` / `generationConfig`.
//!
//! The `generate` component drives the adapters: [`chat_request`] builds an
//! [`HttpRequestSpec`], the component sends it, then hands status, headers and
//! body to [`parse_chat_response`] (or feeds a streamed body to a
//! [`StreamDecoder`]). Failures come back as a [`ProviderFailure`] carrying an
//! [`ErrorClass`] for routing and a
//! [`FailureKind`](super::retry::FailureKind) for the retry policy.
//! [`models_request`] / [`parse_models`] discover a provider's models and double
//! as the health probe.
//!
//! Function calling travels in every protocol: OpenAI-compatible providers get
//! `tools` / `tool_choice` unchanged; Anthropic gets `tools` with
//! `input_schema`, assistant `tool_use` and user `tool_result` blocks; Gemini
//! gets `functionDeclarations`, `toolConfig`, `functionCall` and
//! `functionResponse` parts. Answers carry the calls as [`ToolCall`]s.

mod anthropic;
pub mod embed;
mod error;
mod gemini;
pub mod image;
mod openai_compat;
mod sse;
mod stream;

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::openai::{
    ChatRequest, Content, ContentPart, FinishReason, ResponseFormat, Role, ToolCall, Usage,
};

pub use error::{ErrorClass, MAX_MESSAGE_CHARS, ProviderFailure, classify_error};
pub use sse::{SseEvent, SseParser};
pub use stream::{StreamDecoder, StreamEvent};

/// The wire protocol a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    /// OpenAI's chat completions API, also served by vLLM, Ollama, OpenRouter, Groq, …
    #[serde(rename = "openai-compatible", alias = "openai")]
    OpenAiCompatible,
    /// Anthropic's Messages API.
    Anthropic,
    /// Google's Gemini API (Generative Language API).
    Gemini,
}

impl ProviderKind {
    /// Parses `openai`, `openai-compatible`, `anthropic` or `gemini`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "openai" | "openai-compatible" => Some(Self::OpenAiCompatible),
            "anthropic" => Some(Self::Anthropic),
            "gemini" => Some(Self::Gemini),
            _ => None,
        }
    }

    /// The canonical name: `openai-compatible`, `anthropic` or `gemini`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenAiCompatible => "openai-compatible",
            Self::Anthropic => "anthropic",
            Self::Gemini => "gemini",
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How to reach one configured provider.
#[derive(Clone, PartialEq, Eq)]
pub struct ProviderConfig {
    /// The provider's name in DOL's configuration (e.g. `openai`, `local-vllm`).
    pub name: String,
    /// Its wire protocol.
    pub kind: ProviderKind,
    /// Base URL: with the version prefix for OpenAI-compatible providers
    /// (`https://api.openai.com/v1`), without it for Anthropic
    /// (`https://api.anthropic.com`) and Gemini
    /// (`https://generativelanguage.googleapis.com`).
    pub base_url: String,
    /// The API key; `None` (or empty) sends no credentials. Secret: never logged.
    pub api_key: Option<String>,
}

impl fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key must not reach logs through `{:?}`; only its presence is shown.
        f.debug_struct("ProviderConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| REDACTED))
            .finish()
    }
}

impl ProviderConfig {
    /// The key, if one is configured and non-empty.
    fn key(&self) -> Option<&str> {
        self.api_key.as_deref().filter(|k| !k.is_empty())
    }
}

/// What secrets are replaced with in `Debug` output and messages.
const REDACTED: &str = "[redacted]";

/// Header names whose values are credentials.
const SECRET_HEADERS: &[&str] = &["authorization", "x-api-key", "x-goog-api-key"];

/// An HTTP request to send, fully built. Header names are lowercase.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpRequestSpec {
    /// `GET` or `POST`.
    pub method: String,
    /// The absolute URL.
    pub url: String,
    /// Headers, in sending order.
    pub headers: Vec<(String, String)>,
    /// The body (empty for `GET`).
    pub body: Vec<u8>,
}

impl HttpRequestSpec {
    /// The value of the first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(&self.headers, name)
    }
}

impl fmt::Debug for HttpRequestSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Credential headers are redacted so a logged request never leaks the key.
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| {
                let secret = SECRET_HEADERS.iter().any(|s| k.eq_ignore_ascii_case(s));
                (k.as_str(), if secret { REDACTED } else { v.as_str() })
            })
            .collect();
        f.debug_struct("HttpRequestSpec")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("headers", &headers)
            .field("body", &String::from_utf8_lossy(&self.body))
            .finish()
    }
}

/// A provider's complete (non-streamed) answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderAnswer {
    /// The answer text (empty when the model only called tools or was blocked).
    pub content: String,
    /// Why the model stopped.
    pub finish_reason: FinishReason,
    /// Token usage, when the provider reported it.
    pub usage: Option<Usage>,
    /// The model (version) that answered, when reported.
    pub model: Option<String>,
    /// The backend fingerprint (OpenAI only).
    pub system_fingerprint: Option<String>,
    /// The functions the model called, in order.
    pub tool_calls: Vec<ToolCall>,
}

/// A model found by [`parse_models`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoveredModel {
    /// The id to send as `model` (Gemini's `models/` prefix removed).
    pub id: String,
    /// Human-readable name, when the provider has one.
    pub display_name: Option<String>,
    /// Input context window in tokens, when reported.
    pub context_window: Option<u64>,
    /// Most output tokens per request, when reported.
    pub output_limit: Option<u64>,
    /// Capabilities DOL can rely on through this adapter, in routing's
    /// vocabulary (`json`, `streaming`, `vision`, `tools`); empty when unknown.
    pub capabilities: BTreeSet<String>,
}

impl DiscoveredModel {
    /// A model known by its id only (nothing else reported).
    pub fn new(id: String) -> Self {
        Self {
            id,
            display_name: None,
            context_window: None,
            output_limit: None,
            capabilities: BTreeSet::new(),
        }
    }
}

/// The request for one chat completion of `req` by `model` at `cfg`'s provider;
/// `stream` asks for an SSE answer (always with usage, so cost can be accounted).
pub fn chat_request(
    cfg: &ProviderConfig,
    req: &ChatRequest,
    model: &str,
    stream: bool,
) -> HttpRequestSpec {
    match cfg.kind {
        ProviderKind::OpenAiCompatible => openai_compat::chat_request(cfg, req, model, stream),
        ProviderKind::Anthropic => anthropic::chat_request(cfg, req, model, stream),
        ProviderKind::Gemini => gemini::chat_request(cfg, req, model, stream),
    }
}

/// Interprets a complete chat response: an answer for a 2xx status with a
/// well-formed body, otherwise the classified failure (a 2xx body that does
/// not parse is [`ErrorClass::Malformed`]). `now_unix_s` resolves a
/// `Retry-After` date.
pub fn parse_chat_response(
    kind: ProviderKind,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
    now_unix_s: u64,
) -> Result<ProviderAnswer, ProviderFailure> {
    if !(200..=299).contains(&status) {
        return Err(classify_error(kind, status, headers, body, now_unix_s));
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| ProviderFailure::malformed("response body is not JSON"))?;
    // Some gateways answer 200 with an error object; it is still an error.
    if let Some(failure) = error::embedded_error(kind, &v, headers, now_unix_s) {
        return Err(failure);
    }
    let answer = match kind {
        ProviderKind::OpenAiCompatible => openai_compat::parse_response(&v),
        ProviderKind::Anthropic => anthropic::parse_response(&v),
        ProviderKind::Gemini => gemini::parse_response(&v),
    };
    answer.ok_or_else(|| ProviderFailure::malformed("response has no answer where expected"))
}

/// The request listing the provider's models; cheap, so also the health probe.
pub fn models_request(cfg: &ProviderConfig) -> HttpRequestSpec {
    match cfg.kind {
        ProviderKind::OpenAiCompatible => openai_compat::models_request(cfg),
        ProviderKind::Anthropic => anthropic::models_request(cfg),
        ProviderKind::Gemini => gemini::models_request(cfg),
    }
}

/// Parses a 2xx model-list body. (For other statuses use [`classify_error`].)
/// An error object in the body is classified; a body of another shape is
/// [`ErrorClass::Malformed`].
pub fn parse_models(
    kind: ProviderKind,
    body: &[u8],
) -> Result<Vec<DiscoveredModel>, ProviderFailure> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| ProviderFailure::malformed("model list is not JSON"))?;
    if let Some(failure) = error::embedded_error(kind, &v, &[], 0) {
        return Err(failure);
    }
    let models = match kind {
        ProviderKind::OpenAiCompatible => openai_compat::parse_models(&v),
        ProviderKind::Anthropic => anthropic::parse_models(&v),
        ProviderKind::Gemini => gemini::parse_models(&v),
    };
    models.ok_or_else(|| ProviderFailure::malformed("model list has an unexpected shape"))
}

/// `base` without trailing slashes, then `/`, then `path`.
fn endpoint(base: &str, path: &str) -> String {
    format!("{}/{}", base.trim_end_matches('/'), path)
}

/// `base` without trailing slashes and without a trailing version segment in
/// `versions`, for providers whose paths carry the version themselves.
fn unversioned<'a>(base: &'a str, versions: &[&str]) -> &'a str {
    let trimmed = base.trim_end_matches('/');
    versions
        .iter()
        .find_map(|v| trimmed.strip_suffix(v))
        .map_or(trimmed, |b| b.trim_end_matches('/'))
}

/// The first header named `name`, case-insensitively.
fn header_value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Serializes a JSON body.
fn json_bytes(v: &Value) -> Vec<u8> {
    // A `Value` has only string keys, so serializing it cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

/// Headers every JSON request carries, plus the `accept` matching `stream`.
fn json_headers(stream: bool) -> Vec<(String, String)> {
    vec![
        ("content-type".to_owned(), "application/json".to_owned()),
        (
            "accept".to_owned(),
            if stream {
                "text/event-stream"
            } else {
                "application/json"
            }
            .to_owned(),
        ),
    ]
}

/// A `POST` of `body` to `url`.
fn post(url: String, headers: Vec<(String, String)>, body: &Value) -> HttpRequestSpec {
    HttpRequestSpec {
        method: "POST".to_owned(),
        url,
        headers,
        body: json_bytes(body),
    }
}

/// A `GET` of `url`.
fn get(url: String, headers: Vec<(String, String)>) -> HttpRequestSpec {
    HttpRequestSpec {
        method: "GET".to_owned(),
        url,
        headers,
        body: Vec::new(),
    }
}

/// The system-prompt instruction replacing a JSON mode the provider lacks
/// (Anthropic), or reinforcing one that cannot take a schema (Gemini).
fn json_instruction(format: Option<&ResponseFormat>) -> Option<String> {
    match format? {
        ResponseFormat::Text => None,
        ResponseFormat::JsonObject => Some(
            "Respond with a single valid JSON object only: no prose before or after it and no \
             Markdown code fences."
                .to_owned(),
        ),
        ResponseFormat::JsonSchema { json_schema } => {
            let mut s = "Respond with a single valid JSON value only: no prose before or after \
                         it and no Markdown code fences."
                .to_owned();
            if let Some(schema) = json_schema.get("schema").filter(|s| !s.is_null()) {
                s.push_str(" It must conform to this JSON Schema: ");
                s.push_str(&schema.to_string());
            }
            Some(s)
        }
    }
}

/// The stop sequences of a request as a list (OpenAI allows a string or a list).
fn stop_sequences(req: &ChatRequest) -> Vec<String> {
    match &req.stop {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// A `data:` image URL split into media type and base64 payload.
fn data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media_type = meta.strip_suffix(";base64")?;
    Some((media_type, data))
}

/// One piece of a conversation turn, before a protocol renders it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    /// Non-blank text.
    Text(String),
    /// An image by `https:` or `data:` URL.
    Image(String),
    /// A function call the assistant made (arguments as an object).
    ToolCall {
        /// The call's id.
        id: String,
        /// The function.
        name: String,
        /// Its arguments.
        arguments: Value,
    },
    /// The result of a call, from a `tool` message.
    ToolResult {
        /// The call it answers.
        id: String,
        /// The called function's name (from the assistant's call; empty if unknown).
        name: String,
        /// The result text.
        content: String,
    },
}

/// A user or assistant turn.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Turn {
    /// Whether the model wrote it.
    assistant: bool,
    /// Its content, never empty.
    parts: Vec<Part>,
}

/// A conversation reshaped for protocols with a separate system prompt and
/// only user and assistant turns (Anthropic, Gemini).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Conversation {
    /// System and developer messages, in order.
    system: Vec<String>,
    /// The other messages, consecutive same-role messages merged.
    turns: Vec<Turn>,
}

/// Splits a request into system prompt and turns. Assistant tool calls
/// become [`Part::ToolCall`]s, `tool` messages user-side [`Part::ToolResult`]s
/// (named after the call they answer, which Gemini needs); blank text is
/// dropped (both APIs reject it). A request without any user or
/// assistant text sends its system text as the user turn, because both APIs
/// need at least one turn.
fn conversation(req: &ChatRequest) -> Conversation {
    let mut system = Vec::new();
    let mut turns: Vec<Turn> = Vec::new();
    let mut call_names: Vec<(String, String)> = Vec::new();
    for m in &req.messages {
        let (assistant, parts) = match m.role {
            Role::System | Role::Developer => {
                let text = m.text_content();
                if !text.trim().is_empty() {
                    system.push(text);
                }
                continue;
            }
            Role::User => (false, parts(m.content.as_ref())),
            Role::Assistant => {
                let mut ps = parts(m.content.as_ref());
                let calls = assistant_calls(m.tool_calls.as_ref());
                for (id, name, _) in &calls {
                    call_names.push((id.clone(), name.clone()));
                }
                ps.extend(
                    calls
                        .into_iter()
                        .map(|(id, name, arguments)| Part::ToolCall {
                            id,
                            name,
                            arguments,
                        }),
                );
                (true, ps)
            }
            Role::Tool => {
                let id = m.tool_call_id.clone().unwrap_or_default();
                let name = call_names
                    .iter()
                    .find(|(i, _)| *i == id)
                    .map(|(_, n)| n.clone())
                    .unwrap_or_default();
                let content = m.text_content();
                (false, vec![Part::ToolResult { id, name, content }])
            }
        };
        if parts.is_empty() {
            continue;
        }
        match turns.last_mut() {
            // Both APIs want alternating roles: consecutive same-role messages merge.
            Some(last) if last.assistant == assistant => last.parts.extend(parts),
            _ => turns.push(Turn { assistant, parts }),
        }
    }
    if turns.is_empty() && !system.is_empty() {
        turns.push(Turn {
            assistant: false,
            parts: vec![Part::Text(system.join("\n\n"))],
        });
        system.clear();
    }
    Conversation { system, turns }
}

/// `(id, name, arguments object)` of an assistant message's OpenAI `tool_calls`.
fn assistant_calls(calls: Option<&Value>) -> Vec<(String, String, Value)> {
    calls
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let f = c.get("function")?;
            Some((
                str_field(c, "id").unwrap_or_default(),
                str_field(f, "name")?,
                super::tools::arguments_object(
                    f.get("arguments").and_then(Value::as_str).unwrap_or("{}"),
                ),
            ))
        })
        .collect()
}

/// The parts of one message's content.
fn parts(content: Option<&Content>) -> Vec<Part> {
    let text = |s: &str| (!s.trim().is_empty()).then(|| Part::Text(s.to_owned()));
    match content {
        None => Vec::new(),
        Some(Content::Text(s)) => text(s).into_iter().collect(),
        Some(Content::Parts(ps)) => ps
            .iter()
            .filter_map(|p| match p {
                ContentPart::Text { text: t } | ContentPart::Refusal { refusal: t } => text(t),
                ContentPart::ImageUrl { image_url } => Some(Part::Image(image_url.url.clone())),
            })
            .collect(),
    }
}

/// The system prompt: system messages, then the JSON instruction, if any.
fn system_prompt(system: &[String], json: Option<String>) -> String {
    system
        .iter()
        .cloned()
        .chain(json)
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// A JSON value as a non-negative integer (also from floats like `12.0`).
fn as_u64(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0)
            .map(|f| f as u64)
    })
}

/// A JSON string field as an owned string.
fn str_field(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Shared helpers of the provider tests.

    use super::*;
    use crate::gateway::openai::ChatRequest;

    /// A config of `kind` with key `k-secret-123`.
    pub fn cfg(kind: ProviderKind, base: &str) -> ProviderConfig {
        ProviderConfig {
            name: "p".into(),
            kind,
            base_url: base.into(),
            api_key: Some("k-secret-123".into()),
        }
    }

    /// Parses a request, panicking on validation errors.
    pub fn request(v: Value) -> ChatRequest {
        ChatRequest::from_value(&v).unwrap()
    }

    /// The body of a spec as JSON.
    pub fn body(spec: &HttpRequestSpec) -> Value {
        serde_json::from_slice(&spec.body).unwrap()
    }

    /// Headers from pairs.
    pub fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// Decodes `input` once in one piece and once byte by byte, checks both
    /// give the same events, and returns them (including `finish()`'s).
    pub fn decode_both_ways(kind: ProviderKind, input: &[u8]) -> Vec<StreamEvent> {
        let mut whole = StreamDecoder::new(kind);
        let mut a = whole.feed(input);
        a.extend(whole.finish());
        let mut bytewise = StreamDecoder::new(kind);
        let mut b = Vec::new();
        for byte in input {
            b.extend(bytewise.feed(std::slice::from_ref(byte)));
        }
        b.extend(bytewise.finish());
        assert_eq!(a, b, "one piece and byte by byte differ");
        a
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;
    use serde_json::json;

    #[test]
    fn kind_parses_and_prints() {
        assert_eq!(
            ProviderKind::parse("openai"),
            Some(ProviderKind::OpenAiCompatible)
        );
        assert_eq!(
            ProviderKind::parse("openai-compatible"),
            Some(ProviderKind::OpenAiCompatible)
        );
        assert_eq!(
            ProviderKind::parse("anthropic"),
            Some(ProviderKind::Anthropic)
        );
        assert_eq!(ProviderKind::parse("gemini"), Some(ProviderKind::Gemini));
        assert_eq!(ProviderKind::parse("cohere"), None);
        for k in [
            ProviderKind::OpenAiCompatible,
            ProviderKind::Anthropic,
            ProviderKind::Gemini,
        ] {
            assert_eq!(ProviderKind::parse(k.as_str()), Some(k));
            assert_eq!(serde_json::to_value(k).unwrap(), json!(k.as_str()));
            assert_eq!(k.to_string(), k.as_str());
        }
        let k: ProviderKind = serde_json::from_value(json!("openai")).unwrap();
        assert_eq!(k, ProviderKind::OpenAiCompatible);
    }

    #[test]
    fn debug_output_never_shows_the_key() {
        let c = cfg(ProviderKind::OpenAiCompatible, "https://api.openai.com/v1");
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("k-secret-123"), "{dbg}");
        assert!(dbg.contains("[redacted]"));
        let req = request(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}));
        for kind in [
            ProviderKind::OpenAiCompatible,
            ProviderKind::Anthropic,
            ProviderKind::Gemini,
        ] {
            let c = cfg(kind, "https://x");
            for spec in [chat_request(&c, &req, "m", false), models_request(&c)] {
                let dbg = format!("{spec:?}");
                assert!(!dbg.contains("k-secret-123"), "{dbg}");
                assert!(dbg.contains("[redacted]"), "{dbg}");
            }
        }
        let none = ProviderConfig { api_key: None, ..c };
        assert!(format!("{none:?}").contains("api_key: None"));
    }

    #[test]
    fn endpoints_join_cleanly() {
        assert_eq!(endpoint("http://h/v1/", "models"), "http://h/v1/models");
        assert_eq!(unversioned("https://a.com/v1/", &["/v1"]), "https://a.com");
        assert_eq!(unversioned("https://a.com", &["/v1"]), "https://a.com");
        assert_eq!(
            unversioned("https://g.com/v1beta", &["/v1beta", "/v1"]),
            "https://g.com"
        );
    }

    #[test]
    fn helpers() {
        assert_eq!(
            data_url("data:image/png;base64,AAAA"),
            Some(("image/png", "AAAA"))
        );
        assert_eq!(data_url("https://x/y.png"), None);
        assert_eq!(data_url("data:image/png,AAAA"), None);
        assert_eq!(as_u64(&json!(12.0)), Some(12));
        assert_eq!(as_u64(&json!(-1)), None);
        assert_eq!(json_instruction(Some(&ResponseFormat::Text)), None);
        let schema = ResponseFormat::JsonSchema {
            json_schema: json!({"name": "x", "schema": {"type": "object"}}),
        };
        let s = json_instruction(Some(&schema)).unwrap();
        assert!(s.contains(r#"{"type":"object"}"#), "{s}");
    }

    #[test]
    fn non_2xx_and_unparseable_bodies() {
        for kind in [
            ProviderKind::OpenAiCompatible,
            ProviderKind::Anthropic,
            ProviderKind::Gemini,
        ] {
            let e = parse_chat_response(kind, 200, &[], b"<html>", 0).unwrap_err();
            assert_eq!(e.class, ErrorClass::Malformed);
            assert_eq!(e.failure, None);
            let e = parse_chat_response(kind, 200, &[], b"{}", 0).unwrap_err();
            assert_eq!(e.class, ErrorClass::Malformed);
            let e = parse_chat_response(kind, 503, &[], b"", 0).unwrap_err();
            assert_eq!(e.class, ErrorClass::Server);
            let e = parse_models(kind, b"[1,2]").unwrap_err();
            assert_eq!(e.class, ErrorClass::Malformed);
            let e = parse_models(kind, b"nope").unwrap_err();
            assert_eq!(e.class, ErrorClass::Malformed);
        }
    }

    #[test]
    fn error_object_in_a_200_is_an_error() {
        let body = br#"{"error": {"message": "Rate limit reached", "type": "rate_limit_error"}}"#;
        let e = parse_chat_response(ProviderKind::OpenAiCompatible, 200, &[], body, 0).unwrap_err();
        assert_eq!(e.class, ErrorClass::RateLimited);
        let e = parse_models(
            ProviderKind::Gemini,
            br#"{"error": {"code": 403, "message": "denied", "status": "PERMISSION_DENIED"}}"#,
        )
        .unwrap_err();
        assert_eq!(e.class, ErrorClass::Auth);
    }
}
