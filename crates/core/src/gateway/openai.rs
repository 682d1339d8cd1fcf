//! OpenAI-compatible chat completions wire types and strict request validation.
//!
//! Requests are parsed from JSON by [`ChatRequest::from_json`], which checks
//! every field and reports the first problem with its path, e.g.
//! `messages[2].role: unknown role "robot"`. Responses, streaming chunks and
//! the error body serialize to the shapes the official OpenAI SDKs expect.
//!
//! DOL's own per-request hints travel in an extension object, `dol`
//! (`{"dol": {"max_cost": 0.01, "max_latency_ms": 2000, "tier": "enhanced"}}`);
//! SDK users pass it with `extra_body`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::tiers::{EntryTier, Tier};

/// A request field that failed validation, named by its JSON path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct RequestError {
    /// JSON path of the offending field, e.g. `messages[2].role`; `body` for the whole body.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

impl RequestError {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }

    /// The OpenAI error body for this problem (`invalid_request_error`,
    /// code `invalid-request`, `param` = the path).
    pub fn to_error_body(&self) -> ErrorBody {
        crate::error::ApiError::invalid(self.path.clone(), self.to_string()).to_openai()
    }
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions from the application (older name of `developer`).
    System,
    /// Instructions from the application developer.
    Developer,
    /// The end user.
    User,
    /// The model.
    Assistant,
    /// A tool result.
    Tool,
}

impl Role {
    /// Parses a lowercase role name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "system" => Some(Self::System),
            "developer" => Some(Self::Developer),
            "user" => Some(Self::User),
            "assistant" => Some(Self::Assistant),
            "tool" => Some(Self::Tool),
            _ => None,
        }
    }
}

/// Detail level of an image part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageUrl {
    /// `https://…` or `data:` URL.
    pub url: String,
    /// `auto`, `low` or `high`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// One part of a multi-part message content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// An image by URL.
    ImageUrl {
        /// The image.
        image_url: ImageUrl,
    },
    /// An assistant refusal (assistant messages only).
    Refusal {
        /// The refusal text.
        refusal: String,
    },
}

/// Message content: a plain string or a list of parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// A plain string.
    Text(String),
    /// A list of typed parts.
    Parts(Vec<ContentPart>),
}

impl Content {
    /// The text of the content: the string, or the text parts joined by newlines.
    pub fn text(&self) -> String {
        match self {
            Self::Text(s) => s.clone(),
            Self::Parts(parts) => parts
                .iter()
                .filter_map(|p| match p {
                    ContentPart::Text { text } => Some(text.as_str()),
                    ContentPart::Refusal { refusal } => Some(refusal.as_str()),
                    ContentPart::ImageUrl { .. } => None,
                })
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    /// Whether any part is an image.
    pub fn has_image(&self) -> bool {
        matches!(self, Self::Parts(parts) if parts.iter().any(|p| matches!(p, ContentPart::ImageUrl { .. })))
    }
}

/// One chat message of a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// Its content; `None` only for an assistant message that carries tool calls.
    pub content: Option<Content>,
    /// Optional participant name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Tool calls of an assistant message, passed through unchanged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Value>,
    /// The call a tool message answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl Message {
    /// A plain-text message.
    pub fn text(role: Role, content: &str) -> Self {
        Self {
            role,
            content: Some(Content::Text(content.to_owned())),
            name: None,
            tool_calls: None,
            tool_call_id: None,
        }
    }

    /// The message's text (empty without content).
    pub fn text_content(&self) -> String {
        self.content.as_ref().map(Content::text).unwrap_or_default()
    }
}

/// The kind of output the client asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    /// Free text (the default).
    Text,
    /// Any valid JSON object.
    JsonObject,
    /// JSON matching a schema.
    JsonSchema {
        /// `{"name", "schema", "strict", "description"}`, passed through.
        json_schema: Value,
    },
}

impl ResponseFormat {
    /// Whether the answer must be JSON.
    pub fn wants_json(&self) -> bool {
        !matches!(self, Self::Text)
    }
}

/// Streaming options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StreamOptions {
    /// Send a final chunk with `usage` (and empty `choices`) before `[DONE]`.
    #[serde(default)]
    pub include_usage: bool,
}

/// DOL's per-request hints (the `dol` extension object).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DolHints {
    /// Most the request may cost, in US dollars.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_cost: Option<f64>,
    /// Longest acceptable provider latency, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_latency_ms: Option<u64>,
    /// Entry tier requested by the client (a tier, or `auto`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<EntryTier>,
}

impl DolHints {
    /// Whether no hint is set.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// `max_cost` in micro-dollars (rounded down, so the hint is never loosened).
    pub fn max_cost_micros(&self) -> Option<u64> {
        // The value was validated finite and non-negative; `as` saturates anyway.
        self.max_cost.map(|usd| (usd * 1_000_000.0).floor() as u64)
    }
}

/// Output tokens a chat request may produce when it sets no limit of its
/// own: DOL sends this limit to the provider (`max_completion_tokens` to
/// OpenAI, `max_tokens` to other OpenAI-compatible servers and Anthropic,
/// `maxOutputTokens` to Gemini) and reserves budget for it, so an answer
/// never costs more than its reservation allowed for.
pub const DEFAULT_OUTPUT_TOKENS: u64 = 4096;

/// A validated `POST /v1/chat/completions` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// Requested model id (`auto` lets DOL route).
    pub model: String,
    /// The conversation, at least one message.
    pub messages: Vec<Message>,
    /// Sampling temperature, 0–2.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling, 0–1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Legacy output token limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// Output token limit (newer name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u64>,
    /// Stream the answer as SSE chunks.
    #[serde(default)]
    pub stream: bool,
    /// Streaming options.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Output format.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    /// Stop sequences (string or list), passed through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop: Option<Value>,
    /// Sampling seed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Presence penalty, −2–2.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    /// Frequency penalty, −2–2.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    /// End-user id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Other known OpenAI fields DOL forwards without interpreting (`tools`, `metadata`, …);
    /// serialized at the top level, as received.
    #[serde(flatten)]
    pub passthrough: Map<String, Value>,
    /// DOL's hints (omitted from JSON when empty).
    #[serde(default, skip_serializing_if = "DolHints::is_empty")]
    pub dol: DolHints,
}

/// OpenAI fields accepted and forwarded unchanged.
pub const PASSTHROUGH_FIELDS: &[&str] = &[
    "logit_bias",
    "logprobs",
    "metadata",
    "modalities",
    "parallel_tool_calls",
    "prediction",
    "reasoning_effort",
    "service_tier",
    "store",
    "tool_choice",
    "tools",
    "top_logprobs",
];

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn want_string(v: &Value, path: &str) -> Result<String, RequestError> {
    v.as_str()
        .map(str::to_owned)
        .ok_or_else(|| RequestError::new(path, format!("expected a string, got {}", type_name(v))))
}

fn want_f64_in(v: &Value, path: &str, lo: f64, hi: f64) -> Result<f64, RequestError> {
    let n = v.as_f64().ok_or_else(|| {
        RequestError::new(path, format!("expected a number, got {}", type_name(v)))
    })?;
    if !(lo..=hi).contains(&n) {
        return Err(RequestError::new(
            path,
            format!("{n} is out of range ({lo} to {hi})"),
        ));
    }
    Ok(n)
}

fn want_positive_u64(v: &Value, path: &str) -> Result<u64, RequestError> {
    match v.as_u64() {
        Some(n) if n > 0 => Ok(n),
        _ => Err(RequestError::new(path, "expected a positive integer")),
    }
}

fn want_bool(v: &Value, path: &str) -> Result<bool, RequestError> {
    v.as_bool()
        .ok_or_else(|| RequestError::new(path, format!("expected a boolean, got {}", type_name(v))))
}

fn want_object<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>, RequestError> {
    v.as_object()
        .ok_or_else(|| RequestError::new(path, format!("expected an object, got {}", type_name(v))))
}

fn reject_unknown(
    obj: &Map<String, Value>,
    path: &str,
    known: &[&str],
) -> Result<(), RequestError> {
    // Map iteration is key-ordered, so the reported field is deterministic.
    match obj.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(RequestError::new(
            join(path, k),
            format!("unknown field \"{k}\""),
        )),
        None => Ok(()),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Present and not JSON `null` (OpenAI treats `null` like absent).
fn field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn parse_part(v: &Value, path: &str, role: Role) -> Result<ContentPart, RequestError> {
    let obj = want_object(v, path)?;
    let kind = field(obj, "type")
        .ok_or_else(|| RequestError::new(join(path, "type"), "missing"))
        .and_then(|t| want_string(t, &join(path, "type")))?;
    match kind.as_str() {
        "text" => {
            reject_unknown(obj, path, &["type", "text"])?;
            let text = field(obj, "text")
                .ok_or_else(|| RequestError::new(join(path, "text"), "missing"))
                .and_then(|t| want_string(t, &join(path, "text")))?;
            Ok(ContentPart::Text { text })
        }
        "image_url" => {
            reject_unknown(obj, path, &["type", "image_url"])?;
            if role != Role::User {
                return Err(RequestError::new(
                    join(path, "type"),
                    "image parts are only allowed in user messages",
                ));
            }
            let ipath = join(path, "image_url");
            let img = field(obj, "image_url")
                .ok_or_else(|| RequestError::new(&ipath, "missing"))
                .and_then(|i| want_object(i, &ipath))?;
            reject_unknown(img, &ipath, &["url", "detail"])?;
            let url = field(img, "url")
                .ok_or_else(|| RequestError::new(join(&ipath, "url"), "missing"))
                .and_then(|u| want_string(u, &join(&ipath, "url")))?;
            let detail = match field(img, "detail") {
                Some(d) => {
                    let d = want_string(d, &join(&ipath, "detail"))?;
                    if !["auto", "low", "high"].contains(&d.as_str()) {
                        return Err(RequestError::new(
                            join(&ipath, "detail"),
                            format!("unknown detail \"{d}\" (expected auto, low or high)"),
                        ));
                    }
                    Some(d)
                }
                None => None,
            };
            Ok(ContentPart::ImageUrl {
                image_url: ImageUrl { url, detail },
            })
        }
        "refusal" => {
            reject_unknown(obj, path, &["type", "refusal"])?;
            if role != Role::Assistant {
                return Err(RequestError::new(
                    join(path, "type"),
                    "refusal parts are only allowed in assistant messages",
                ));
            }
            let refusal = field(obj, "refusal")
                .ok_or_else(|| RequestError::new(join(path, "refusal"), "missing"))
                .and_then(|t| want_string(t, &join(path, "refusal")))?;
            Ok(ContentPart::Refusal { refusal })
        }
        other => Err(RequestError::new(
            join(path, "type"),
            format!("unsupported content part type \"{other}\""),
        )),
    }
}

fn parse_message(v: &Value, path: &str) -> Result<Message, RequestError> {
    let obj = want_object(v, path)?;
    let role_path = join(path, "role");
    let role_s = field(obj, "role")
        .ok_or_else(|| RequestError::new(&role_path, "missing"))
        .and_then(|r| want_string(r, &role_path))?;
    let role = Role::parse(&role_s)
        .ok_or_else(|| RequestError::new(&role_path, format!("unknown role \"{role_s}\"")))?;
    reject_unknown(
        obj,
        path,
        &[
            "role",
            "content",
            "name",
            "tool_calls",
            "tool_call_id",
            "refusal",
        ],
    )?;
    let cpath = join(path, "content");
    let content = match field(obj, "content") {
        None => None,
        Some(Value::String(s)) => Some(Content::Text(s.clone())),
        Some(Value::Array(parts)) => {
            if parts.is_empty() {
                return Err(RequestError::new(&cpath, "must not be an empty array"));
            }
            let parsed = parts
                .iter()
                .enumerate()
                .map(|(i, p)| parse_part(p, &format!("{cpath}[{i}]"), role))
                .collect::<Result<Vec<_>, _>>()?;
            Some(Content::Parts(parsed))
        }
        Some(other) => {
            return Err(RequestError::new(
                &cpath,
                format!(
                    "expected a string or an array of parts, got {}",
                    type_name(other)
                ),
            ));
        }
    };
    let name = field(obj, "name")
        .map(|n| want_string(n, &join(path, "name")))
        .transpose()?;
    let tool_calls = match field(obj, "tool_calls") {
        None => None,
        Some(tc) if role == Role::Assistant && tc.is_array() => Some(tc.clone()),
        Some(_) if role == Role::Assistant => {
            return Err(RequestError::new(
                join(path, "tool_calls"),
                "expected an array",
            ));
        }
        Some(_) => {
            return Err(RequestError::new(
                join(path, "tool_calls"),
                "only allowed in assistant messages",
            ));
        }
    };
    let tool_call_id = field(obj, "tool_call_id")
        .map(|n| want_string(n, &join(path, "tool_call_id")))
        .transpose()?;
    if role == Role::Tool && tool_call_id.is_none() {
        return Err(RequestError::new(
            join(path, "tool_call_id"),
            "required for tool messages",
        ));
    }
    if role != Role::Tool && tool_call_id.is_some() {
        return Err(RequestError::new(
            join(path, "tool_call_id"),
            "only allowed in tool messages",
        ));
    }
    if content.is_none() && !(role == Role::Assistant && tool_calls.is_some()) {
        return Err(RequestError::new(&cpath, "missing"));
    }
    Ok(Message {
        role,
        content,
        name,
        tool_calls,
        tool_call_id,
    })
}

fn parse_response_format(v: &Value) -> Result<ResponseFormat, RequestError> {
    let path = "response_format";
    let obj = want_object(v, path)?;
    let kind = field(obj, "type")
        .ok_or_else(|| RequestError::new("response_format.type", "missing"))
        .and_then(|t| want_string(t, "response_format.type"))?;
    match kind.as_str() {
        "text" => {
            reject_unknown(obj, path, &["type"])?;
            Ok(ResponseFormat::Text)
        }
        "json_object" => {
            reject_unknown(obj, path, &["type"])?;
            Ok(ResponseFormat::JsonObject)
        }
        "json_schema" => {
            reject_unknown(obj, path, &["type", "json_schema"])?;
            let spath = "response_format.json_schema";
            let schema =
                field(obj, "json_schema").ok_or_else(|| RequestError::new(spath, "missing"))?;
            let sobj = want_object(schema, spath)?;
            reject_unknown(sobj, spath, &["name", "description", "schema", "strict"])?;
            let name = field(sobj, "name")
                .ok_or_else(|| RequestError::new("response_format.json_schema.name", "missing"))
                .and_then(|n| want_string(n, "response_format.json_schema.name"))?;
            let name_ok = !name.is_empty()
                && name.len() <= 64
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !name_ok {
                return Err(RequestError::new(
                    "response_format.json_schema.name",
                    "must be 1-64 characters of a-z, A-Z, 0-9, _ or -",
                ));
            }
            if let Some(s) = field(sobj, "schema") {
                want_object(s, "response_format.json_schema.schema")?;
            }
            if let Some(s) = field(sobj, "strict") {
                want_bool(s, "response_format.json_schema.strict")?;
            }
            Ok(ResponseFormat::JsonSchema {
                json_schema: schema.clone(),
            })
        }
        other => Err(RequestError::new(
            "response_format.type",
            format!("unknown type \"{other}\" (expected text, json_object or json_schema)"),
        )),
    }
}

fn parse_hints(v: &Value) -> Result<DolHints, RequestError> {
    let obj = want_object(v, "dol")?;
    reject_unknown(obj, "dol", &["max_cost", "max_latency_ms", "tier"])?;
    let max_cost = field(obj, "max_cost")
        .map(|c| want_f64_in(c, "dol.max_cost", 0.0, 1_000_000.0))
        .transpose()?;
    let max_latency_ms = field(obj, "max_latency_ms")
        .map(|c| want_positive_u64(c, "dol.max_latency_ms"))
        .transpose()?;
    let tier = match field(obj, "tier") {
        Some(t) => {
            let s = want_string(t, "dol.tier")?;
            Some(EntryTier::parse(&s).ok_or_else(|| {
                RequestError::new(
                    "dol.tier",
                    format!(
                        "unknown tier \"{s}\" (expected comprehensive, enhanced, basic or auto)"
                    ),
                )
            })?)
        }
        None => None,
    };
    Ok(DolHints {
        max_cost,
        max_latency_ms,
        tier,
    })
}

impl ChatRequest {
    /// Parses and validates a request body.
    pub fn from_json(body: &[u8]) -> Result<Self, RequestError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| RequestError::new("body", format!("invalid JSON: {e}")))?;
        Self::from_value(&value)
    }

    /// Validates an already-parsed JSON body.
    pub fn from_value(value: &Value) -> Result<Self, RequestError> {
        let obj = value
            .as_object()
            .ok_or_else(|| RequestError::new("body", "expected a JSON object"))?;
        for key in obj.keys() {
            let known = matches!(
                key.as_str(),
                "model"
                    | "messages"
                    | "temperature"
                    | "top_p"
                    | "max_tokens"
                    | "max_completion_tokens"
                    | "n"
                    | "stream"
                    | "stream_options"
                    | "response_format"
                    | "stop"
                    | "seed"
                    | "presence_penalty"
                    | "frequency_penalty"
                    | "user"
                    | "dol"
            ) || PASSTHROUGH_FIELDS.contains(&key.as_str());
            if !known {
                return Err(RequestError::new(
                    key.as_str(),
                    format!("unknown field \"{key}\""),
                ));
            }
        }
        let model = field(obj, "model")
            .ok_or_else(|| RequestError::new("model", "missing"))
            .and_then(|m| want_string(m, "model"))?;
        if model.trim().is_empty() {
            return Err(RequestError::new("model", "must not be empty"));
        }
        let raw_messages = field(obj, "messages")
            .ok_or_else(|| RequestError::new("messages", "missing"))?
            .as_array()
            .ok_or_else(|| RequestError::new("messages", "expected an array"))?;
        if raw_messages.is_empty() {
            return Err(RequestError::new(
                "messages",
                "must contain at least one message",
            ));
        }
        let messages = raw_messages
            .iter()
            .enumerate()
            .map(|(i, m)| parse_message(m, &format!("messages[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let temperature = field(obj, "temperature")
            .map(|v| want_f64_in(v, "temperature", 0.0, 2.0))
            .transpose()?;
        let top_p = field(obj, "top_p")
            .map(|v| want_f64_in(v, "top_p", 0.0, 1.0))
            .transpose()?;
        let max_tokens = field(obj, "max_tokens")
            .map(|v| want_positive_u64(v, "max_tokens"))
            .transpose()?;
        let max_completion_tokens = field(obj, "max_completion_tokens")
            .map(|v| want_positive_u64(v, "max_completion_tokens"))
            .transpose()?;
        if let Some(n) = field(obj, "n") {
            // Several choices would multiply cost and break the quality gate's single answer.
            if n.as_u64() != Some(1) {
                return Err(RequestError::new("n", "only n = 1 is supported"));
            }
        }
        let stream = field(obj, "stream")
            .map(|v| want_bool(v, "stream"))
            .transpose()?
            .unwrap_or(false);
        let stream_options = match field(obj, "stream_options") {
            Some(v) => {
                if !stream {
                    return Err(RequestError::new(
                        "stream_options",
                        "only allowed when stream is true",
                    ));
                }
                let so = want_object(v, "stream_options")?;
                reject_unknown(so, "stream_options", &["include_usage"])?;
                let include_usage = field(so, "include_usage")
                    .map(|b| want_bool(b, "stream_options.include_usage"))
                    .transpose()?
                    .unwrap_or(false);
                Some(StreamOptions { include_usage })
            }
            None => None,
        };
        let response_format = field(obj, "response_format")
            .map(parse_response_format)
            .transpose()?;
        let stop = match field(obj, "stop") {
            None => None,
            Some(Value::String(s)) => Some(Value::String(s.clone())),
            Some(Value::Array(items)) => {
                if items.len() > 4 {
                    return Err(RequestError::new("stop", "at most 4 stop sequences"));
                }
                for (i, item) in items.iter().enumerate() {
                    want_string(item, &format!("stop[{i}]"))?;
                }
                Some(Value::Array(items.clone()))
            }
            Some(other) => {
                return Err(RequestError::new(
                    "stop",
                    format!(
                        "expected a string or an array of strings, got {}",
                        type_name(other)
                    ),
                ));
            }
        };
        let seed = match field(obj, "seed") {
            Some(v) => Some(
                v.as_i64()
                    .ok_or_else(|| RequestError::new("seed", "expected an integer"))?,
            ),
            None => None,
        };
        let presence_penalty = field(obj, "presence_penalty")
            .map(|v| want_f64_in(v, "presence_penalty", -2.0, 2.0))
            .transpose()?;
        let frequency_penalty = field(obj, "frequency_penalty")
            .map(|v| want_f64_in(v, "frequency_penalty", -2.0, 2.0))
            .transpose()?;
        let user = field(obj, "user")
            .map(|v| want_string(v, "user"))
            .transpose()?;
        let dol = field(obj, "dol")
            .map(parse_hints)
            .transpose()?
            .unwrap_or_default();
        // Checked here so every provider mapping can rely on their shape.
        let functions = super::tools::functions(obj)?;
        super::tools::tool_choice(obj, &functions)?;
        // An empty `tools` list means no tools: it must neither ask routing
        // for the `tools` capability nor reach a provider (OpenAI refuses
        // `tools: []`).
        let no_tools = |k: &str, v: &Value| k == "tools" && v.as_array().is_some_and(Vec::is_empty);
        let passthrough = obj
            .iter()
            .filter(|(k, v)| {
                PASSTHROUGH_FIELDS.contains(&k.as_str()) && !v.is_null() && !no_tools(k, v)
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(Self {
            model,
            messages,
            temperature,
            top_p,
            max_tokens,
            max_completion_tokens,
            stream,
            stream_options,
            response_format,
            stop,
            seed,
            presence_penalty,
            frequency_penalty,
            user,
            passthrough,
            dol,
        })
    }

    /// The JSON body to send to an OpenAI-compatible provider serving `model`:
    /// the request as received, with the model replaced and DOL's `dol` hints removed.
    pub fn upstream_body(&self, model: &str) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(obj) = &mut v {
            obj.remove("dol");
            obj.insert("model".to_owned(), Value::String(model.to_owned()));
        }
        v
    }

    /// The functions of `tools` (validated when the request was parsed).
    pub fn functions(&self) -> Vec<super::tools::FunctionDef> {
        super::tools::functions(&self.passthrough).unwrap_or_default()
    }

    /// The `tool_choice` (validated when the request was parsed).
    pub fn tool_choice(&self) -> Option<super::tools::ToolChoice> {
        let functions = self.functions();
        super::tools::tool_choice(&self.passthrough, &functions)
            .ok()
            .flatten()
    }

    /// The output token limit: `max_completion_tokens`, else `max_tokens`.
    pub fn output_limit(&self) -> Option<u64> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    /// The most output tokens a provider may produce for this request: its
    /// own limit, else [`DEFAULT_OUTPUT_TOKENS`], which DOL then sends to the
    /// provider itself — the limit the request's budget reservation is for.
    pub fn output_cap(&self) -> u64 {
        self.output_limit().unwrap_or(DEFAULT_OUTPUT_TOKENS)
    }

    /// Whether the answer must be JSON.
    pub fn wants_json(&self) -> bool {
        self.response_format
            .as_ref()
            .is_some_and(ResponseFormat::wants_json)
    }

    /// The schema of a `json_schema` response format (`json_schema.schema`).
    pub fn json_schema(&self) -> Option<&Value> {
        match &self.response_format {
            Some(ResponseFormat::JsonSchema { json_schema }) => json_schema.get("schema"),
            _ => None,
        }
    }

    /// Whether a streamed answer must end with a usage chunk.
    pub fn include_usage(&self) -> bool {
        self.stream_options.is_some_and(|o| o.include_usage)
    }

    /// The text of the last user message (empty if there is none).
    pub fn last_user_text(&self) -> String {
        self.messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .map(Message::text_content)
            .unwrap_or_default()
    }
}

/// Why the model stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// Natural end or a stop sequence.
    Stop,
    /// Hit the token limit: the answer is truncated.
    Length,
    /// Content was filtered.
    ContentFilter,
    /// The model called tools.
    ToolCalls,
    /// The model called a function (legacy).
    FunctionCall,
}

/// Token usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: u64,
    /// Tokens in the answer.
    pub completion_tokens: u64,
    /// Their sum.
    pub total_tokens: u64,
}

impl Usage {
    /// Usage with `total_tokens` computed.
    pub fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
        }
    }
}

/// One function call the model made, in OpenAI's terms: `arguments` is the
/// JSON text of the call's arguments, as OpenAI sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The call's id (a tool message answers it by `tool_call_id`).
    pub id: String,
    /// The function's name.
    pub name: String,
    /// The arguments as JSON text.
    pub arguments: String,
}

impl ToolCall {
    /// OpenAI's shape: `{"id", "type": "function", "function": {"name", "arguments"}}`.
    pub fn to_openai(&self) -> Value {
        serde_json::json!({
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        })
    }

    /// The calls of a response message in OpenAI's shape, `None` when there are none.
    pub fn list(calls: &[Self]) -> Option<Value> {
        (!calls.is_empty()).then(|| Value::Array(calls.iter().map(Self::to_openai).collect()))
    }
}

/// The assistant message of a response choice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseMessage {
    /// Always `assistant`.
    pub role: Role,
    /// The answer text (`null` when the model only called tools).
    pub content: Option<String>,
    /// A refusal message, if the model refused.
    #[serde(default)]
    pub refusal: Option<String>,
    /// Tool calls, passed through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Value>,
}

/// One choice of a response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    /// Index (always 0: DOL answers with one choice).
    pub index: u32,
    /// The answer.
    pub message: ResponseMessage,
    /// Why it ended.
    pub finish_reason: Option<FinishReason>,
    /// Log probabilities, passed through (`null` when not requested).
    #[serde(default)]
    pub logprobs: Option<Value>,
}

/// What DOL decided for a request; in the `dol` field and in `x-dol-*` headers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DolInfo {
    /// Tier that produced the answer.
    pub tier: Tier,
    /// Provider name.
    pub provider: String,
    /// Model id at the provider.
    pub model: String,
    /// Attempts made across all candidates.
    pub attempts: u32,
    /// Quality score 0–10 of the answer, when scored.
    pub quality: Option<f64>,
    /// Cost in micro-dollars; `null` when unknown.
    pub cost_micros: Option<u64>,
    /// True when the cost is unknown (a model without a price) — never reported as 0.
    pub cost_unknown: bool,
    /// Whether the answer came from the cache.
    #[serde(default)]
    pub cached: bool,
}

impl DolInfo {
    /// The `x-dol-*` response headers carrying the same information; an
    /// unknown cost is sent as `unknown`, an unscored answer omits the quality header.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut h = vec![
            ("x-dol-tier", self.tier.as_str().to_owned()),
            ("x-dol-provider", self.provider.clone()),
            ("x-dol-model", self.model.clone()),
            ("x-dol-attempts", self.attempts.to_string()),
            (
                "x-dol-cost-micros",
                self.cost_micros
                    .filter(|_| !self.cost_unknown)
                    .map_or_else(|| "unknown".to_owned(), |c| c.to_string()),
            ),
            (
                "x-dol-cache",
                if self.cached { "hit" } else { "miss" }.to_owned(),
            ),
        ];
        if let Some(q) = self.quality {
            h.push(("x-dol-quality", format!("{q:.2}")));
        }
        h
    }
}

/// One model of `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelObject {
    /// Model id clients send as `model`.
    pub id: String,
    /// Always `model`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// Owner; DOL uses the provider name.
    pub owned_by: String,
}

/// The `GET /v1/models` body: `{"object": "list", "data": [...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelList {
    /// Always `list`.
    pub object: String,
    /// The models.
    pub data: Vec<ModelObject>,
}

impl ModelList {
    /// A list of `(id, owner)` pairs, all with `created`.
    pub fn new<'a>(models: impl IntoIterator<Item = (&'a str, &'a str)>, created: u64) -> Self {
        Self {
            object: "list".to_owned(),
            data: models
                .into_iter()
                .map(|(id, owner)| ModelObject {
                    id: id.to_owned(),
                    object: "model".to_owned(),
                    created,
                    owned_by: owner.to_owned(),
                })
                .collect(),
        }
    }
}

/// A non-streaming chat completion (`object: "chat.completion"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletion {
    /// `chatcmpl-…`.
    pub id: String,
    /// Always `chat.completion`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// Model that answered.
    pub model: String,
    /// The single choice.
    pub choices: Vec<Choice>,
    /// Token usage.
    pub usage: Option<Usage>,
    /// Backend fingerprint, if the provider sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
    /// DOL's decision record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dol: Option<DolInfo>,
}

impl ChatCompletion {
    /// A one-choice text completion.
    pub fn text(
        id: &str,
        created: u64,
        model: &str,
        content: &str,
        finish_reason: FinishReason,
        usage: Usage,
    ) -> Self {
        Self {
            id: id.to_owned(),
            object: "chat.completion".to_owned(),
            created,
            model: model.to_owned(),
            choices: vec![Choice {
                index: 0,
                message: ResponseMessage {
                    role: Role::Assistant,
                    content: Some(content.to_owned()),
                    refusal: None,
                    tool_calls: None,
                },
                finish_reason: Some(finish_reason),
                logprobs: None,
            }],
            usage: Some(usage),
            system_fingerprint: None,
            dol: None,
        }
    }

    /// The same completion answering with tool calls: `content` becomes
    /// `null` when the model wrote no text (as OpenAI answers).
    #[must_use]
    pub fn with_tool_calls(mut self, calls: &[ToolCall]) -> Self {
        if let Some(choice) = self.choices.first_mut()
            && !calls.is_empty()
        {
            if choice.message.content.as_deref() == Some("") {
                choice.message.content = None;
            }
            choice.message.tool_calls = ToolCall::list(calls);
        }
        self
    }

    /// The first choice's text (empty if none).
    pub fn content(&self) -> &str {
        self.choices
            .first()
            .and_then(|c| c.message.content.as_deref())
            .unwrap_or("")
    }

    /// The first choice's finish reason.
    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.choices.first().and_then(|c| c.finish_reason)
    }
}

/// The incremental message of a streaming choice.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Delta {
    /// Present in the first chunk only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// A piece of the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// A piece of a refusal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// Tool-call fragments, passed through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Value>,
}

/// One choice of a streaming chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkChoice {
    /// Index (always 0).
    pub index: u32,
    /// The increment.
    pub delta: Delta,
    /// Set on the last content chunk.
    pub finish_reason: Option<FinishReason>,
    /// Log probabilities, passed through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<Value>,
}

/// A streaming chunk (`object: "chat.completion.chunk"`), sent as an SSE `data:` line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionChunk {
    /// Same id in every chunk of one answer.
    pub id: String,
    /// Always `chat.completion.chunk`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// Model that answers.
    pub model: String,
    /// Zero or one choice (zero in the final usage chunk).
    pub choices: Vec<ChunkChoice>,
    /// Usage, only in the final chunk when `include_usage` was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// DOL's decision record, on the final chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dol: Option<DolInfo>,
}

impl ChatCompletionChunk {
    /// A chunk with one choice.
    pub fn delta(
        id: &str,
        created: u64,
        model: &str,
        delta: Delta,
        finish_reason: Option<FinishReason>,
    ) -> Self {
        Self {
            id: id.to_owned(),
            object: "chat.completion.chunk".to_owned(),
            created,
            model: model.to_owned(),
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason,
                logprobs: None,
            }],
            usage: None,
            dol: None,
        }
    }

    /// The final usage chunk: no choices, `usage` set.
    pub fn usage(id: &str, created: u64, model: &str, usage: Usage) -> Self {
        Self {
            id: id.to_owned(),
            object: "chat.completion.chunk".to_owned(),
            created,
            model: model.to_owned(),
            choices: Vec::new(),
            usage: Some(usage),
            dol: None,
        }
    }

    /// The SSE frame for this chunk: `data: {json}\n\n`.
    pub fn to_sse(&self) -> String {
        // Serializing plain structs with string keys cannot fail; an empty object is a safe fallback.
        let json = serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned());
        format!("data: {json}\n\n")
    }
}

/// The SSE frame that ends a stream.
pub const SSE_DONE: &str = "data: [DONE]\n\n";

/// OpenAI's error `type` values DOL uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorType {
    /// Bad request (400).
    #[serde(rename = "invalid_request_error")]
    InvalidRequest,
    /// Missing or bad key (401).
    #[serde(rename = "authentication_error")]
    Authentication,
    /// Key lacks permission (403).
    #[serde(rename = "permission_error")]
    Permission,
    /// Unknown route or model (404).
    #[serde(rename = "not_found_error")]
    NotFound,
    /// Rate limit or budget (429).
    #[serde(rename = "rate_limit_error")]
    RateLimit,
    /// Upstream failure (502/503/504).
    #[serde(rename = "api_error")]
    Api,
    /// DOL's own failure (500).
    #[serde(rename = "server_error")]
    Server,
}

impl ErrorType {
    /// The HTTP status this error type is sent with.
    pub fn status(self) -> u16 {
        match self {
            Self::InvalidRequest => 400,
            Self::Authentication => 401,
            Self::Permission => 403,
            Self::NotFound => 404,
            Self::RateLimit => 429,
            Self::Api => 502,
            Self::Server => 500,
        }
    }
}

/// The inner object of an OpenAI error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Human-readable message.
    pub message: String,
    /// Error type.
    #[serde(rename = "type")]
    pub kind: ErrorType,
    /// The offending parameter, if any (`null` otherwise).
    pub param: Option<String>,
    /// A machine-readable code, if any (`null` otherwise).
    pub code: Option<String>,
}

/// OpenAI's error body: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

impl ErrorBody {
    /// An error body.
    pub fn new(
        message: impl Into<String>,
        kind: ErrorType,
        param: Option<String>,
        code: Option<String>,
    ) -> Self {
        Self {
            error: ErrorDetail {
                message: message.into(),
                kind,
                param,
                code,
            },
        }
    }

    /// The HTTP status to send it with.
    pub fn status(&self) -> u16 {
        self.error.kind.status()
    }

    /// The body as an SSE `data:` frame, ending a broken stream: the OpenAI
    /// SDKs raise an API error on a chunk whose JSON has an `error` key.
    pub fn to_sse(&self) -> String {
        // Plain structs with string keys always serialize; the fallback keeps the frame well-formed.
        let json = serde_json::to_string(self)
            .unwrap_or_else(|_| r#"{"error":{"message":"stream failed","type":"server_error","param":null,"code":null}}"#.to_owned());
        format!("data: {json}\n\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<ChatRequest, RequestError> {
        ChatRequest::from_value(&v)
    }

    fn err(v: Value) -> String {
        parse(v).unwrap_err().to_string()
    }

    #[test]
    fn minimal_request_parses() {
        let r =
            parse(json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}))
                .unwrap();
        assert_eq!(r.model, "gpt-4o-mini");
        assert_eq!(r.messages.len(), 1);
        assert!(!r.stream);
        assert_eq!(r.last_user_text(), "hi");
        assert!(!r.wants_json());
    }

    #[test]
    fn full_request_parses() {
        let r = parse(json!({
            "model": "auto",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "developer", "content": "really"},
                {"role": "user", "content": [
                    {"type": "text", "text": "describe"},
                    {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}}
                ]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c1"}]},
                {"role": "tool", "content": "42", "tool_call_id": "c1"},
                {"role": "user", "content": "thanks", "name": "ann"}
            ],
            "temperature": 0.2,
            "top_p": 1,
            "max_tokens": 100,
            "max_completion_tokens": 50,
            "stream": true,
            "stream_options": {"include_usage": true},
            "response_format": {"type": "json_schema", "json_schema": {"name": "x_1", "schema": {"type": "object"}, "strict": true}},
            "stop": ["\n"],
            "seed": 7,
            "user": "u1",
            "tools": [],
            "dol": {"max_cost": 0.0125, "max_latency_ms": 1500, "tier": "enhanced"}
        }))
        .unwrap();
        assert_eq!(r.output_limit(), Some(50));
        assert!(r.include_usage());
        assert!(r.wants_json());
        assert_eq!(r.dol.max_cost_micros(), Some(12_500));
        assert_eq!(r.dol.max_latency_ms, Some(1500));
        assert_eq!(r.dol.tier, Some(EntryTier::Fixed(Tier::Enhanced)));
        let auto = parse(
            json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}],
            "dol": {"tier": "auto"}}),
        )
        .unwrap();
        assert_eq!(auto.dol.tier, Some(EntryTier::Auto));
        // It serializes back as written (the cache key reads it).
        assert_eq!(
            serde_json::to_value(&auto.dol).unwrap(),
            json!({"tier": "auto"})
        );
        assert!(r.messages[2].content.as_ref().unwrap().has_image());
        assert_eq!(r.last_user_text(), "thanks");
        // `tools: []` is no tools (issue 15): not passed on, no capability asked.
        assert!(!r.passthrough.contains_key("tools"));
    }

    #[test]
    fn unknown_role_names_the_message() {
        assert_eq!(
            err(json!({"model": "m", "messages": [
                {"role": "user", "content": "a"},
                {"role": "user", "content": "b"},
                {"role": "robot", "content": "c"}
            ]})),
            "messages[2].role: unknown role \"robot\""
        );
    }

    #[test]
    fn field_errors_name_the_field() {
        let m = json!([{"role": "user", "content": "hi"}]);
        assert_eq!(err(json!({"messages": m})), "model: missing");
        assert_eq!(
            err(json!({"model": "m", "messages": []})),
            "messages: must contain at least one message"
        );
        assert_eq!(
            err(json!({"model": "m", "messages": m, "temperature": 3})),
            "temperature: 3 is out of range (0 to 2)"
        );
        assert_eq!(
            err(json!({"model": "m", "messages": m, "max_tokens": 0})),
            "max_tokens: expected a positive integer"
        );
        assert_eq!(
            err(json!({"model": "m", "messages": m, "bogus": 1})),
            "bogus: unknown field \"bogus\""
        );
        assert_eq!(
            err(json!({"model": "m", "messages": m, "response_format": {"type": "yaml"}})),
            "response_format.type: unknown type \"yaml\" (expected text, json_object or json_schema)"
        );
        assert_eq!(
            err(json!({"model": "m", "messages": m, "stream_options": {"include_usage": true}})),
            "stream_options: only allowed when stream is true"
        );
        assert_eq!(
            err(json!({"model": "m", "messages": m, "dol": {"tier": "gold"}})),
            "dol.tier: unknown tier \"gold\" (expected comprehensive, enhanced, basic or auto)"
        );
        assert_eq!(
            err(json!({"model": "m", "messages": m, "n": 2})),
            "n: only n = 1 is supported"
        );
        assert_eq!(
            err(
                json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "audio"}]}]})
            ),
            "messages[0].content[0].type: unsupported content part type \"audio\""
        );
        assert_eq!(
            err(json!({"model": "m", "messages": [{"role": "user"}]})),
            "messages[0].content: missing"
        );
        assert_eq!(
            err(json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]})),
            "messages[0].tool_call_id: required for tool messages"
        );
        assert_eq!(
            err(json!({"model": "m", "messages": [{"role": "user", "content": 5}]})),
            "messages[0].content: expected a string or an array of parts, got a number"
        );
    }

    #[test]
    fn upstream_body_drops_hints_and_keeps_passthrough() {
        let raw = json!({
            "model": "auto",
            "messages": [{"role": "user", "content": "hi"}],
            "temperature": 0.5,
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "dol": {"max_cost": 0.01}
        });
        let r = parse(raw).unwrap();
        let up = r.upstream_body("gpt-4o-mini");
        assert_eq!(up["model"], "gpt-4o-mini");
        assert_eq!(up["temperature"], 0.5);
        assert_eq!(up["tools"][0]["function"]["name"], "f");
        assert_eq!(up["messages"][0], json!({"role": "user", "content": "hi"}));
        assert!(up.get("dol").is_none());
        assert!(up.get("passthrough").is_none());
        // The serde form round-trips (for caching).
        let back: ChatRequest = serde_json::from_value(serde_json::to_value(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn invalid_json_is_a_body_error() {
        let e = ChatRequest::from_json(b"{not json").unwrap_err();
        assert_eq!(e.path, "body");
        let body = e.to_error_body();
        assert_eq!(body.status(), 400);
    }

    #[test]
    fn null_fields_count_as_absent() {
        let r = parse(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": null, "stream": null}))
            .unwrap();
        assert_eq!(r.temperature, None);
        assert!(!r.stream);
    }

    #[test]
    fn error_body_has_openai_shape() {
        let e = parse(json!({"model": "m", "messages": [{"role": "robot", "content": "x"}]}))
            .unwrap_err();
        let v = serde_json::to_value(e.to_error_body()).unwrap();
        assert_eq!(
            v,
            json!({"error": {
                "message": "messages[0].role: unknown role \"robot\"",
                "type": "invalid_request_error",
                "param": "messages[0].role",
                "code": "invalid-request"
            }})
        );
        let auth = ErrorBody::new("bad key", ErrorType::Authentication, None, None);
        assert_eq!(auth.status(), 401);
        assert_eq!(
            serde_json::to_value(auth).unwrap(),
            json!({"error": {"message": "bad key", "type": "authentication_error", "param": null, "code": null}})
        );
    }

    #[test]
    fn completion_serializes_like_openai() {
        let c = ChatCompletion::text(
            "chatcmpl-1",
            10,
            "m",
            "hello",
            FinishReason::Stop,
            Usage::new(3, 1),
        );
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["choices"][0]["message"]["role"], "assistant");
        assert_eq!(v["choices"][0]["message"]["content"], "hello");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(v["usage"]["total_tokens"], 4);
        assert!(v.get("dol").is_none());
        let back: ChatCompletion = serde_json::from_value(v).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.content(), "hello");
    }

    #[test]
    fn provider_response_parses() {
        // A typical upstream answer, including fields DOL does not model.
        let raw = json!({
            "id": "chatcmpl-abc", "object": "chat.completion", "created": 1, "model": "gpt-4o",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi", "refusal": null},
                         "logprobs": null, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12,
                      "prompt_tokens_details": {"cached_tokens": 0}},
            "system_fingerprint": "fp_1"
        });
        let c: ChatCompletion = serde_json::from_value(raw).unwrap();
        assert_eq!(c.finish_reason(), Some(FinishReason::Length));
        assert_eq!(c.usage.unwrap().completion_tokens, 7);
    }

    #[test]
    fn dol_info_headers_and_model_list() {
        let info = DolInfo {
            tier: Tier::Basic,
            provider: "offline".into(),
            model: "dol-basic-offline".into(),
            attempts: 2,
            quality: Some(7.5),
            cost_micros: None,
            cost_unknown: true,
            cached: false,
        };
        let h = info.headers();
        assert!(h.contains(&("x-dol-tier", "basic".to_owned())));
        assert!(h.contains(&("x-dol-cost-micros", "unknown".to_owned())));
        assert!(h.contains(&("x-dol-quality", "7.50".to_owned())));
        let list = ModelList::new([("dol-basic-offline", "offline")], 0);
        assert_eq!(
            serde_json::to_value(list).unwrap(),
            json!({"object": "list", "data": [{"id": "dol-basic-offline", "object": "model", "created": 0, "owned_by": "offline"}]})
        );
        let sse = ErrorBody::new("upstream broke", ErrorType::Api, None, None).to_sse();
        assert!(sse.starts_with("data: {\"error\":{"));
        assert!(sse.ends_with("\n\n"));
    }

    #[test]
    fn chunks_serialize_like_openai() {
        let first = ChatCompletionChunk::delta(
            "c",
            1,
            "m",
            Delta {
                role: Some(Role::Assistant),
                content: Some("He".into()),
                ..Delta::default()
            },
            None,
        );
        let v = serde_json::to_value(&first).unwrap();
        assert_eq!(v["object"], "chat.completion.chunk");
        assert_eq!(
            v["choices"][0]["delta"],
            json!({"role": "assistant", "content": "He"})
        );
        assert_eq!(v["choices"][0]["finish_reason"], Value::Null);
        let last = ChatCompletionChunk::usage("c", 1, "m", Usage::new(1, 2));
        let v = serde_json::to_value(&last).unwrap();
        assert_eq!(v["choices"], json!([]));
        assert_eq!(v["usage"]["total_tokens"], 3);
        assert!(first.to_sse().starts_with("data: {"));
        assert!(first.to_sse().ends_with("\n\n"));
    }
}
