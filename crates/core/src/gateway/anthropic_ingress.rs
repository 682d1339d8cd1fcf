//! `POST /v1/messages`: Anthropic's Messages API as an entry point (issue
//! 15), so an Anthropic SDK user changes only `base_url`. Pure mappings: an
//! Anthropic request becomes a [`ChatRequest`] that runs through the same
//! [`pipeline`](super::pipeline) as chat (any provider), and what the
//! pipeline answers in OpenAI's shape (a completion, SSE chunks, an error)
//! is rewritten into Anthropic's shapes by [`message_from_completion`],
//! [`StreamTranslator`] and [`error_body`].
//!
//! Supported: `model`, `max_tokens` (required), `messages` with string,
//! `text`, `tool_use` (assistant) and `tool_result` (user) blocks, `system`
//! (string or text blocks), `tools` (custom tools), `tool_choice`,
//! `stop_sequences`, `temperature`, `top_p`, `stream`, `metadata.user_id`
//! (tools mapped by [`super::messages_tools`]). Refused with a 400: other
//! content blocks (images, documents), server tools, `thinking`, and unknown
//! fields.

use serde_json::{Map, Value, json};

use super::engine::Downstream;
use super::openai::{ChatRequest, ErrorType};
use super::pipeline::{Client, ErrorReply};
use super::providers::SseParser;

/// The header Anthropic's API requires on every request.
pub const VERSION_HEADER: &str = "anthropic-version";

/// An error in Anthropic's shape: status and body.
#[derive(Debug, Clone, PartialEq)]
pub struct AnthropicError {
    /// HTTP status.
    pub status: u16,
    /// `{"type": "error", "error": {"type", "message"}}`.
    pub body: Value,
}

/// Anthropic's error type for DOL's OpenAI error type.
pub fn error_type(kind: ErrorType) -> &'static str {
    match kind {
        ErrorType::InvalidRequest => "invalid_request_error",
        ErrorType::Authentication => "authentication_error",
        ErrorType::Permission => "permission_error",
        ErrorType::NotFound => "not_found_error",
        ErrorType::RateLimit => "rate_limit_error",
        ErrorType::Api | ErrorType::Server => "api_error",
    }
}

/// An Anthropic error body.
pub fn error_json(kind: &str, message: &str) -> Value {
    json!({"type": "error", "error": {"type": kind, "message": message}})
}

/// A pipeline refusal in Anthropic's shape (same status, same message).
pub fn error_body(reply: &ErrorReply) -> AnthropicError {
    AnthropicError {
        status: reply.status,
        body: error_json(error_type(reply.body.error.kind), &reply.body.error.message),
    }
}

fn invalid(message: impl Into<String>) -> AnthropicError {
    AnthropicError {
        status: 400,
        body: error_json("invalid_request_error", &message.into()),
    }
}

const KNOWN: &[&str] = &[
    "model",
    "max_tokens",
    "messages",
    "system",
    "stop_sequences",
    "temperature",
    "top_p",
    "top_k",
    "stream",
    "metadata",
    "tools",
    "tool_choice",
];

const UNSUPPORTED: &[&str] = &["thinking", "mcp_servers", "container"];

/// The text of `content` (a string or `text` blocks) at `path`.
fn text_of(content: &Value, path: &str) -> Result<String, AnthropicError> {
    match content {
        Value::String(s) => Ok(s.clone()),
        Value::Array(blocks) => {
            let mut out = String::new();
            for (i, b) in blocks.iter().enumerate() {
                match (b["type"].as_str(), b["text"].as_str()) {
                    (Some("text"), Some(t)) => out.push_str(t),
                    (Some("text"), None) => {
                        return Err(invalid(format!("{path}.{i}.text: Field required")));
                    }
                    (Some(other), _) => {
                        return Err(invalid(format!(
                            "{path}.{i}: content blocks of type `{other}` are not supported by DOL's Messages entry point (text only)"
                        )));
                    }
                    (None, _) => return Err(invalid(format!("{path}.{i}.type: Field required"))),
                }
            }
            Ok(out)
        }
        _ => Err(invalid(format!(
            "{path}: Input should be a string or a list of content blocks"
        ))),
    }
}

/// Parses a Messages request into the chat request the pipeline runs.
/// `version` is the `anthropic-version` header (required, as Anthropic requires it).
pub fn parse_request(body: &[u8], version: Option<&str>) -> Result<ChatRequest, AnthropicError> {
    if version.is_none_or(str::is_empty) {
        return Err(invalid(format!("{VERSION_HEADER}: header is required")));
    }
    let Ok(Value::Object(f)) = serde_json::from_slice::<Value>(body) else {
        return Err(invalid("The request body must be a JSON object."));
    };
    if let Some(k) = f.keys().find(|k| UNSUPPORTED.contains(&k.as_str())) {
        return Err(invalid(format!(
            "{k}: not supported by DOL's Messages entry point"
        )));
    }
    if let Some(k) = f.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(invalid(format!("{k}: Extra inputs are not permitted")));
    }
    let model = match f.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        _ => return Err(invalid("model: Field required (a non-empty string)")),
    };
    let max_tokens = f
        .get("max_tokens")
        .and_then(Value::as_u64)
        .filter(|n| *n >= 1)
        .ok_or_else(|| invalid("max_tokens: Field required (an integer of at least 1)"))?;
    let mut messages = Vec::new();
    match f.get("system") {
        None | Some(Value::Null) => {}
        Some(s) => messages.push(json!({"role": "system", "content": text_of(s, "system")?})),
    }
    let turns = f
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| invalid("messages: Field required (a non-empty list)"))?;
    for (i, m) in turns.iter().enumerate() {
        let role = match m["role"].as_str() {
            Some(r @ ("user" | "assistant")) => r,
            _ => {
                return Err(invalid(format!(
                    "messages.{i}.role: Input should be 'user' or 'assistant'"
                )));
            }
        };
        let path = format!("messages.{i}.content");
        messages.extend(super::messages_tools::turn(role, &m["content"], &path).map_err(invalid)?);
    }
    let mut chat = Map::new();
    chat.insert("model".to_owned(), json!(model));
    chat.insert("messages".to_owned(), Value::Array(messages));
    chat.insert("max_tokens".to_owned(), json!(max_tokens));
    if let Some(t) = f.get("temperature").filter(|v| !v.is_null()) {
        match t.as_f64() {
            Some(x) if (0.0..=1.0).contains(&x) => chat.insert("temperature".to_owned(), json!(x)),
            _ => return Err(invalid("temperature: Input should be a number from 0 to 1")),
        };
    }
    if let Some(p) = f.get("top_p").filter(|v| !v.is_null()) {
        match p.as_f64() {
            Some(x) if (0.0..=1.0).contains(&x) => chat.insert("top_p".to_owned(), json!(x)),
            _ => return Err(invalid("top_p: Input should be a number from 0 to 1")),
        };
    }
    if let Some(s) = f.get("stop_sequences").filter(|v| !v.is_null()) {
        let stops = s
            .as_array()
            .and_then(|a| a.iter().map(Value::as_str).collect::<Option<Vec<_>>>())
            .ok_or_else(|| invalid("stop_sequences: Input should be a list of strings"))?;
        if !stops.is_empty() {
            chat.insert("stop".to_owned(), json!(stops));
        }
    }
    match f.get("stream") {
        None | Some(Value::Null | Value::Bool(false)) => {}
        Some(Value::Bool(true)) => {
            chat.insert("stream".to_owned(), json!(true));
            // The usage chunk feeds `message_delta.usage`.
            chat.insert("stream_options".to_owned(), json!({"include_usage": true}));
        }
        Some(_) => return Err(invalid("stream: Input should be a valid boolean")),
    }
    if let Some(t) = f.get("tools").filter(|v| !v.is_null()) {
        let tools = super::messages_tools::tools(t).map_err(invalid)?;
        // No tools is no tools (issue 15): an empty list must not change routing.
        if tools.as_array().is_some_and(|a| !a.is_empty()) {
            chat.insert("tools".to_owned(), tools);
        }
    }
    if let Some(c) = f.get("tool_choice").filter(|v| !v.is_null()) {
        let (choice, parallel) = super::messages_tools::tool_choice(c).map_err(invalid)?;
        // Anthropic accepts `{"type": "none"}` without tools; OpenAI does not.
        if chat.contains_key("tools") {
            chat.insert("tool_choice".to_owned(), choice);
        }
        if let Some(p) = parallel.filter(|_| chat.contains_key("tools")) {
            chat.insert("parallel_tool_calls".to_owned(), p);
        }
    }
    match f.get("metadata").map(|m| &m["user_id"]) {
        None | Some(Value::Null) => {}
        Some(Value::String(u)) => {
            chat.insert("user".to_owned(), json!(u));
        }
        Some(_) => return Err(invalid("metadata.user_id: Input should be a string")),
    }
    ChatRequest::from_value(&Value::Object(chat)).map_err(|e| {
        let body = e.to_error_body();
        invalid(body.error.message)
    })
}

/// Anthropic's `stop_reason` for an OpenAI `finish_reason`.
pub fn stop_reason(finish: Option<&str>) -> &'static str {
    match finish {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

/// `msg_…` from DOL's `chatcmpl-…` id (the same request id).
pub fn message_id(chat_id: &str) -> String {
    format!(
        "msg_{}",
        chat_id.strip_prefix("chatcmpl-").unwrap_or(chat_id)
    )
}

/// A chat completion (OpenAI JSON) as an Anthropic message.
pub fn message_from_completion(c: &Value) -> Value {
    let choice = &c["choices"][0];
    json!({
        "id": message_id(c["id"].as_str().unwrap_or_default()),
        "type": "message",
        "role": "assistant",
        "model": c["model"],
        "content": super::messages_tools::content_blocks(&choice["message"]),
        "stop_reason": stop_reason(choice["finish_reason"].as_str()),
        "stop_sequence": null,
        "usage": {
            "input_tokens": c["usage"]["prompt_tokens"].as_u64().unwrap_or(0),
            "output_tokens": c["usage"]["completion_tokens"].as_u64().unwrap_or(0),
        },
    })
}

fn event(name: &str, data: &Value) -> Vec<u8> {
    format!("event: {name}\ndata: {data}\n\n").into_bytes()
}

/// Rewrites the pipeline's OpenAI SSE stream (chunks, the usage chunk,
/// `[DONE]`, or an error frame) into Anthropic's events: `message_start`,
/// `ping`, `content_block_start`, `content_block_delta` (`text_delta`) …,
/// `content_block_stop`, `message_delta` (stop reason, output tokens),
/// `message_stop`; an error frame becomes an `error` event. Tool-call
/// deltas open a `tool_use` block each (`id`, `name`, `input: {}`) whose
/// argument pieces are `input_json_delta`s.
#[derive(Debug, Default)]
pub struct StreamTranslator {
    parser: SseParser,
    started: bool,
    finish: Option<String>,
    /// Input tokens, known from the usage chunk at the end (a stream's
    /// `message_start` goes out before any usage is known).
    input_tokens: u64,
    output_tokens: u64,
    done: bool,
    /// The open content block's index and whether it is a `tool_use` block.
    block: (u64, bool),
    /// Block index per OpenAI tool-call index.
    tool_blocks: std::collections::BTreeMap<u64, u64>,
}

impl StreamTranslator {
    /// A translator at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    fn start(&mut self, chunk: &Value, out: &mut Vec<u8>) {
        self.started = true;
        let message = json!({
            "id": message_id(chunk["id"].as_str().unwrap_or_default()),
            "type": "message",
            "role": "assistant",
            "model": chunk["model"],
            "content": [],
            "stop_reason": null,
            "stop_sequence": null,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        });
        out.extend(event(
            "message_start",
            &json!({"type": "message_start", "message": message}),
        ));
        out.extend(event("ping", &json!({"type": "ping"})));
        out.extend(event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ));
    }

    fn end(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.done = true;
        if !self.started {
            self.start(&json!({}), out);
        }
        self.stop_block(out);
        out.extend(event(
            "message_delta",
            &json!({"type": "message_delta",
                "delta": {"stop_reason": stop_reason(self.finish.as_deref()), "stop_sequence": null},
                "usage": {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens}}),
        ));
        out.extend(event("message_stop", &json!({"type": "message_stop"})));
    }

    fn stop_block(&mut self, out: &mut Vec<u8>) {
        out.extend(event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": self.block.0}),
        ));
    }

    /// Opens the next block (closing the open one) and returns its index.
    fn open_block(&mut self, block: Value, tool: bool, out: &mut Vec<u8>) -> u64 {
        self.stop_block(out);
        self.block = (self.block.0 + 1, tool);
        out.extend(event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": self.block.0, "content_block": block}),
        ));
        self.block.0
    }

    /// The Anthropic events of one OpenAI `delta.tool_calls` piece.
    fn tool_delta(&mut self, call: &Value, out: &mut Vec<u8>) {
        let n = call["index"].as_u64().unwrap_or(0);
        let index = match self.tool_blocks.get(&n) {
            Some(i) => *i,
            None => {
                let block = json!({"type": "tool_use", "id": call["id"], "name": call["function"]["name"], "input": {}});
                let i = self.open_block(block, true, out);
                self.tool_blocks.insert(n, i);
                i
            }
        };
        if let Some(piece) = call["function"]["arguments"]
            .as_str()
            .filter(|p| !p.is_empty())
        {
            out.extend(event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": piece}}),
            ));
        }
    }

    /// Consumes bytes the pipeline sent; returns the Anthropic bytes to send.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for ev in self.parser.feed(bytes) {
            if self.done {
                break;
            }
            if ev.data.trim() == "[DONE]" {
                self.end(&mut out);
                continue;
            }
            let Ok(chunk) = serde_json::from_str::<Value>(&ev.data) else {
                continue;
            };
            if let Some(e) = chunk.get("error") {
                self.done = true;
                let message = e["message"].as_str().unwrap_or("stream failed");
                out.extend(event("error", &error_json("api_error", message)));
                continue;
            }
            if !self.started {
                self.start(&chunk, &mut out);
            }
            let choice = &chunk["choices"][0];
            if let Some(text) = choice["delta"]["content"]
                .as_str()
                .filter(|t| !t.is_empty())
            {
                if self.block.1 {
                    self.open_block(json!({"type": "text", "text": ""}), false, &mut out);
                }
                out.extend(event(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": self.block.0, "delta": {"type": "text_delta", "text": text}}),
                ));
            }
            for call in choice["delta"]["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
            {
                self.tool_delta(call, &mut out);
            }
            if let Some(f) = choice["finish_reason"].as_str() {
                self.finish = Some(f.to_owned());
            }
            if let Some(n) = chunk["usage"]["completion_tokens"].as_u64() {
                self.output_tokens = n;
            }
            if let Some(n) = chunk["usage"]["prompt_tokens"].as_u64() {
                self.input_tokens = n;
            }
        }
        out
    }

    /// Whether the stream ended (`message_stop` or `error` sent).
    pub fn is_done(&self) -> bool {
        self.done
    }
}

/// The pipeline's [`Client`] for a Messages request: answers and streams
/// pass through to `inner` rewritten into Anthropic's shapes.
pub struct AnthropicClient<'a, D> {
    inner: &'a mut D,
    translator: StreamTranslator,
}

impl<'a, D: Client> AnthropicClient<'a, D> {
    /// Wraps the HTTP client of the request.
    pub fn new(inner: &'a mut D) -> Self {
        Self {
            inner,
            translator: StreamTranslator::new(),
        }
    }
}

impl<D: Client> Downstream for AnthropicClient<'_, D> {
    async fn start(&mut self, headers: Vec<(String, String)>) -> bool {
        self.inner.start(headers).await
    }

    async fn send(&mut self, bytes: Vec<u8>) -> bool {
        let out = self.translator.feed(&bytes);
        // OpenAI frames with nothing to say in Anthropic's events (e.g. a role-only delta).
        if out.is_empty() {
            return true;
        }
        self.inner.send(out).await
    }
}

impl<D: Client> Client for AnthropicClient<'_, D> {
    async fn complete(&mut self, status: u16, headers: Vec<(String, String)>, body: Value) {
        let body = if (200..300).contains(&status) {
            message_from_completion(&body)
        } else {
            let message = body["error"]["message"]
                .as_str()
                .unwrap_or("request failed");
            error_json("api_error", message)
        };
        self.inner.complete(status, headers, body).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const V: Option<&str> = Some("2023-06-01");

    fn parse(v: Value) -> Result<ChatRequest, AnthropicError> {
        parse_request(v.to_string().as_bytes(), V)
    }

    fn refusal(v: Value) -> String {
        let e = parse(v).unwrap_err();
        assert_eq!(e.status, 400);
        assert_eq!(e.body["type"], "error");
        assert_eq!(e.body["error"]["type"], "invalid_request_error");
        e.body["error"]["message"].as_str().unwrap().to_owned()
    }

    fn ok() -> Value {
        json!({"model": "auto", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]})
    }

    fn with(mut v: Value, k: &str, x: Value) -> Value {
        v[k] = x;
        v
    }

    #[test]
    fn maps_system_blocks_stops_and_sampling() {
        let r = parse(json!({
            "model": "claude-haiku-4-5", "max_tokens": 50,
            "system": [{"type": "text", "text": "Be brief."}],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                {"role": "assistant", "content": "c"},
                {"role": "user", "content": "d"}],
            "stop_sequences": ["END"], "temperature": 0.5, "top_p": 0.9, "top_k": 5,
            "metadata": {"user_id": "u1"}, "stream": true
        }))
        .unwrap();
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v["messages"][0],
            json!({"role": "system", "content": "Be brief."})
        );
        assert_eq!(v["messages"][1]["content"], "ab");
        assert_eq!(v["messages"].as_array().unwrap().len(), 4);
        assert_eq!(v["stop"], json!(["END"]));
        assert_eq!(v["max_tokens"], 50);
        assert_eq!(v["user"], "u1");
        assert!(r.stream && r.include_usage());
    }

    fn weather() -> Value {
        json!([{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object",
            "properties": {"city": {"type": "string"}}, "required": ["city"]}}])
    }

    #[test]
    fn tools_tool_use_and_tool_result_map_onto_chat() {
        let r = parse(json!({
            "model": "auto", "max_tokens": 100, "tools": weather(),
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            "messages": [
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"}]}]
        }))
        .unwrap();
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["messages"][1]["tool_calls"][0]["id"], "toolu_1");
        assert_eq!(
            v["messages"][2],
            json!({"role": "tool", "tool_call_id": "toolu_1", "content": "18C"})
        );
        assert_eq!(r.functions()[0].name, "get_weather");
        assert_eq!(r.passthrough["tool_choice"], "required");
        assert_eq!(r.passthrough["parallel_tool_calls"], false);
        // No tools is no tools: an empty list (and a choice without tools) asks nothing of routing.
        let empty = parse(with(
            with(ok(), "tools", json!([])),
            "tool_choice",
            json!({"type": "none"}),
        ))
        .unwrap();
        assert!(empty.passthrough.is_empty());
    }

    #[test]
    fn a_tool_call_completion_becomes_tool_use_blocks() {
        let c = json!({"id": "chatcmpl-1", "model": "m", "choices": [{"index": 0, "finish_reason": "tool_calls",
            "message": {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_9", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}]}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4}});
        let m = message_from_completion(&c);
        assert_eq!(m["stop_reason"], "tool_use");
        assert_eq!(
            m["content"],
            json!([{"type": "tool_use", "id": "call_9", "name": "get_weather", "input": {"city": "Oslo"}}])
        );
    }

    #[test]
    fn streamed_tool_calls_become_tool_use_blocks_with_input_json_deltas() {
        let frame = |delta: Value, finish: Value| {
            format!(
                "data: {}\n\n",
                json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "m",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
            )
        };
        let stream = [
            frame(json!({"role": "assistant", "content": "Checking."}), Value::Null),
            frame(json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}), Value::Null),
            frame(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}), Value::Null),
            frame(json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Oslo\"}"}}]}), json!("tool_calls")),
            "data: [DONE]\n\n".to_owned(),
        ]
        .concat();
        let out = String::from_utf8(StreamTranslator::new().feed(stream.as_bytes())).unwrap();
        let events: Vec<Value> = out
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(
            events[5]["content_block"],
            json!({"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {}})
        );
        assert_eq!(events[5]["index"], 1);
        let json: String = events[6..8]
            .iter()
            .map(|e| e["delta"]["partial_json"].as_str().unwrap())
            .collect();
        assert_eq!(json, "{\"city\":\"Oslo\"}");
        assert_eq!(events[8]["index"], 1);
        assert_eq!(events[9]["delta"]["stop_reason"], "tool_use");
    }

    #[test]
    fn each_bad_request_is_an_anthropic_400() {
        let e = parse_request(ok().to_string().as_bytes(), None).unwrap_err();
        assert!(
            e.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains(VERSION_HEADER)
        );
        assert!(parse_request(b"[]", V).is_err());
        let mut no_model = ok();
        no_model.as_object_mut().unwrap().remove("model");
        assert!(refusal(no_model).contains("model"));
        let mut no_max = ok();
        no_max.as_object_mut().unwrap().remove("max_tokens");
        assert!(refusal(no_max).contains("max_tokens"));
        assert!(refusal(with(ok(), "max_tokens", json!(0))).contains("max_tokens"));
        assert!(refusal(with(ok(), "messages", json!([]))).contains("messages"));
        assert!(
            refusal(with(
                ok(),
                "messages",
                json!([{"role": "system", "content": "x"}])
            ))
            .contains("role")
        );
        assert!(
            refusal(with(
                ok(),
                "messages",
                json!([{"role": "user", "content": [{"type": "image", "source": {}}]}])
            ))
            .contains("image")
        );
        assert!(
            refusal(with(
                ok(),
                "messages",
                json!([{"role": "user", "content": 5}])
            ))
            .contains("content")
        );
        assert!(refusal(with(ok(), "temperature", json!(1.5))).contains("temperature"));
        assert!(refusal(with(ok(), "stop_sequences", json!("END"))).contains("stop_sequences"));
        assert!(
            refusal(with(ok(), "tools", json!([{"name": "f"}]))).contains("tools.0.input_schema")
        );
        assert!(
            refusal(with(
                ok(),
                "tools",
                json!([{"type": "bash_20250124", "name": "bash"}])
            ))
            .contains("server tools")
        );
        assert!(
            refusal(with(ok(), "tool_choice", json!({"type": "sometimes"})))
                .contains("tool_choice")
        );
        assert!(refusal(with(ok(), "thinking", json!({"type": "enabled"}))).contains("thinking"));
        assert!(refusal(with(ok(), "frobnicate", json!(1))).contains("frobnicate"));
        assert!(refusal(with(ok(), "stream", json!("yes"))).contains("stream"));
    }

    #[test]
    fn completion_becomes_a_message() {
        let c = json!({"id": "chatcmpl-abc", "model": "m", "choices": [{"index": 0,
            "message": {"role": "assistant", "content": "hello"}, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}});
        let m = message_from_completion(&c);
        assert_eq!(m["id"], "msg_abc");
        assert_eq!(m["type"], "message");
        assert_eq!(m["content"][0], json!({"type": "text", "text": "hello"}));
        assert_eq!(m["stop_reason"], "max_tokens");
        assert_eq!(m["usage"], json!({"input_tokens": 3, "output_tokens": 4}));
        assert_eq!(stop_reason(Some("stop")), "end_turn");
    }

    #[test]
    fn pipeline_errors_keep_status_and_message() {
        let reply = super::super::pipeline::PipelineError::InvalidKey.reply();
        let e = error_body(&reply);
        assert_eq!(e.status, 401);
        assert_eq!(e.body["error"]["type"], "authentication_error");
    }

    fn chunk(text: &str, finish: Option<&str>) -> String {
        format!(
            "data: {}\n\n",
            json!({"id": "chatcmpl-x", "object": "chat.completion.chunk", "model": "m",
                "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]})
        )
    }

    fn names(bytes: &[u8]) -> Vec<String> {
        let mut p = SseParser::new();
        p.feed(bytes).into_iter().filter_map(|e| e.event).collect()
    }

    #[test]
    fn stream_events_come_in_anthropics_order() {
        let mut t = StreamTranslator::new();
        let mut out = Vec::new();
        out.extend(t.feed(chunk("Hel", None).as_bytes()));
        out.extend(t.feed(chunk("lo", Some("stop")).as_bytes()));
        out.extend(t.feed(b"data: {\"id\":\"chatcmpl-x\",\"choices\":[],\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":9,\"total_tokens\":11}}\n\n"));
        out.extend(t.feed(b"data: [DONE]\n\n"));
        assert!(t.is_done());
        assert_eq!(
            names(&out),
            [
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("\"usage\":{\"input_tokens\":2,\"output_tokens\":9}"),
            "{text}"
        );
        assert!(text.contains("\"stop_reason\":\"end_turn\""));
        assert!(text.contains("\"id\":\"msg_x\""));
    }

    #[derive(Default)]
    struct Sink {
        head: bool,
        bytes: Vec<u8>,
        json: Option<Value>,
    }

    impl Downstream for Sink {
        async fn start(&mut self, _: Vec<(String, String)>) -> bool {
            self.head = true;
            true
        }
        async fn send(&mut self, bytes: Vec<u8>) -> bool {
            self.bytes.extend(bytes);
            true
        }
    }

    impl Client for Sink {
        async fn complete(&mut self, _: u16, _: Vec<(String, String)>, body: Value) {
            self.json = Some(body);
        }
    }

    #[test]
    fn the_client_rewrites_answers_and_streams() {
        use futures::executor::block_on;
        let mut sink = Sink::default();
        let mut c = AnthropicClient::new(&mut sink);
        let completion = json!({"id": "chatcmpl-1", "model": "m", "choices": [{"message": {"content": "x"}, "finish_reason": "stop"}]});
        block_on(c.complete(200, Vec::new(), completion));
        assert_eq!(sink.json.as_ref().unwrap()["type"], "message");
        let mut sink = Sink::default();
        let mut c = AnthropicClient::new(&mut sink);
        assert!(block_on(c.start(Vec::new())));
        assert!(block_on(c.send(chunk("a", Some("stop")).into_bytes())));
        assert!(block_on(c.send(b"data: [DONE]\n\n".to_vec())));
        assert!(sink.head);
        assert_eq!(names(&sink.bytes).last().unwrap(), "message_stop");
    }

    #[test]
    fn an_error_frame_becomes_an_error_event() {
        let mut t = StreamTranslator::new();
        let mut out = t.feed(chunk("a", None).as_bytes());
        out.extend(
            t.feed(b"data: {\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}\n\n"),
        );
        assert_eq!(names(&out).last().unwrap(), "error");
        assert!(t.is_done());
    }

    proptest! {
        /// A tool call mapped OpenAI → Anthropic (the provider mapping) →
        /// OpenAI (this entry point) keeps its id, name and arguments; and a
        /// completion's call → a `tool_use` block → the provider mapping's
        /// parse keeps them too.
        #[test]
        fn tool_calls_survive_the_round_trip_through_anthropic(
            id in "[A-Za-z0-9_]{1,24}",
            name in "[A-Za-z_][A-Za-z0-9_-]{0,40}",
            args in proptest::collection::btree_map("[a-z]{1,8}", prop_oneof![
                any::<i64>().prop_map(Value::from),
                "[ -~]{0,12}".prop_map(Value::from),
                any::<bool>().prop_map(Value::from),
            ], 0..4),
        ) {
            use crate::gateway::providers::{self, ProviderKind};
            let arguments = Value::Object(args.into_iter().collect()).to_string();
            let call = json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}});
            let chat = ChatRequest::from_value(&json!({"model": "m", "max_tokens": 10, "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": null, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": id, "content": "r"}]})).unwrap();
            let cfg = providers::test_support::cfg(ProviderKind::Anthropic, "http://a");
            let spec = providers::chat_request(&cfg, &chat, "claude", false);
            let back = parse_request(&spec.body, V).unwrap();
            let v = serde_json::to_value(&back).unwrap();
            let got = &v["messages"][1]["tool_calls"][0];
            prop_assert_eq!(got["id"].as_str(), Some(id.as_str()));
            prop_assert_eq!(got["function"]["name"].as_str(), Some(name.as_str()));
            let parsed: Value = serde_json::from_str(got["function"]["arguments"].as_str().unwrap()).unwrap();
            prop_assert_eq!(parsed, serde_json::from_str::<Value>(&arguments).unwrap());
            prop_assert_eq!(v["messages"][2]["tool_call_id"].as_str(), Some(id.as_str()));

            let completion = json!({"id": "chatcmpl-1", "model": "m", "choices": [{"index": 0,
                "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null, "tool_calls": [
                    {"id": id, "type": "function", "function": {"name": name, "arguments": arguments}}]}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1}});
            let message = message_from_completion(&completion);
            let answer = providers::parse_chat_response(
                ProviderKind::Anthropic, 200, &[], message.to_string().as_bytes(), 0).unwrap();
            prop_assert_eq!(answer.tool_calls.len(), 1);
            prop_assert_eq!(&answer.tool_calls[0].id, &id);
            prop_assert_eq!(&answer.tool_calls[0].name, &name);
            prop_assert_eq!(
                serde_json::from_str::<Value>(&answer.tool_calls[0].arguments).unwrap(),
                serde_json::from_str::<Value>(&arguments).unwrap()
            );
        }

        #[test]
        fn parser_never_panics_and_refuses_with_400(body in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Err(e) = parse_request(&body, V) {
                prop_assert_eq!(e.status, 400);
            }
        }

        #[test]
        fn split_streams_translate_the_same(cut in 1usize..200) {
            let mut all = chunk("Hello there", None);
            all.push_str(&chunk(" friend", Some("stop")));
            all.push_str("data: [DONE]\n\n");
            let whole = StreamTranslator::new().feed(all.as_bytes());
            let bytes = all.as_bytes();
            let cut = cut.min(bytes.len());
            let mut t = StreamTranslator::new();
            let mut parts = t.feed(&bytes[..cut]);
            parts.extend(t.feed(&bytes[cut..]));
            prop_assert_eq!(whole, parts);
        }
    }
}
