//! `POST /v1/responses`, OpenAI's Responses API, plain and streamed (issue 15):
//! the request becomes a [`ChatRequest`] for the same
//! [`pipeline`](super::pipeline) as chat (any provider), and the completion
//! comes back as a `response` object ([`response_from_completion`], through
//! [`ResponsesClient`]). Errors keep OpenAI's shape.
//!
//! Supported: `model`, `input` (a string, or message items with string,
//! `input_text` or `output_text` content; roles `user`, `assistant`,
//! `system`, `developer`), `instructions`, `max_output_tokens`,
//! `temperature`, `top_p`, `user`, `metadata` (echoed), `store` and
//! `parallel_tool_calls` (accepted, nothing stored), `text.format` (`text`,
//! `json_object`, `json_schema`), function `tools`, `tool_choice`, and
//! `function_call` / `function_call_output` input items (mapped by
//! [`super::responses_tools`]; calls answer as `function_call` output
//! items, streamed by [`super::responses_stream`]). Refused with a 400
//! naming the parameter: `previous_response_id`, other input items (images,
//! files) and unknown fields.

use serde_json::{Map, Value, json};

use super::engine::Downstream;
use super::openai::{ChatRequest, ErrorBody, ErrorType};
use super::pipeline::Client;
pub use super::responses_stream::StreamTranslator;

fn bad(message: impl Into<String>, param: &str) -> ErrorBody {
    ErrorBody::new(
        message,
        ErrorType::InvalidRequest,
        Some(param.to_owned()),
        None,
    )
}

const KNOWN: &[&str] = &[
    "model",
    "input",
    "instructions",
    "max_output_tokens",
    "temperature",
    "top_p",
    "user",
    "metadata",
    "store",
    "parallel_tool_calls",
    "text",
    "stream",
    "tools",
    "tool_choice",
];

const UNSUPPORTED: &[&str] = &[
    "previous_response_id",
    "conversation",
    "background",
    "reasoning",
    "include",
];

/// What the `response` object echoes from the request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Echo {
    /// `instructions`.
    pub instructions: Value,
    /// `max_output_tokens`.
    pub max_output_tokens: Value,
    /// `temperature`.
    pub temperature: Value,
    /// `top_p`.
    pub top_p: Value,
    /// `metadata`.
    pub metadata: Value,
    /// `user`.
    pub user: Value,
    /// `text` (the output format).
    pub text: Value,
    /// `tools` as given (`[]` when absent).
    pub tools: Value,
    /// `tool_choice` as given (`"auto"` when absent).
    pub tool_choice: Value,
}

fn content_text(content: &Value, param: &str) -> Result<String, ErrorBody> {
    match content {
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut out = String::new();
            for p in parts {
                match (p["type"].as_str(), p["text"].as_str()) {
                    (Some("input_text" | "output_text" | "text"), Some(t)) => out.push_str(t),
                    (Some(other), _) => {
                        return Err(bad(
                            format!(
                                "content parts of type `{other}` are not supported (text only)"
                            ),
                            param,
                        ));
                    }
                    (None, _) => return Err(bad("each content part needs a `type`", param)),
                }
            }
            Ok(out)
        }
        _ => Err(bad("`content` must be a string or a list of parts", param)),
    }
}

fn input_messages(input: Option<&Value>) -> Result<Vec<Value>, ErrorBody> {
    match input {
        Some(Value::String(s)) if !s.is_empty() => Ok(vec![json!({"role": "user", "content": s})]),
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let param = format!("input[{i}]");
                if let Some(m) = super::responses_tools::item_message(item, &param) {
                    return m;
                }
                if item
                    .get("type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t != "message")
                {
                    return Err(bad(
                        format!(
                            "input items of type `{}` are not supported (messages only)",
                            item["type"].as_str().unwrap_or_default()
                        ),
                        &param,
                    ));
                }
                let role = match item["role"].as_str() {
                    Some("developer" | "system") => "system",
                    Some(r @ ("user" | "assistant")) => r,
                    _ => {
                        return Err(bad(
                            "`role` must be user, assistant, system or developer",
                            &format!("{param}.role"),
                        ));
                    }
                };
                let text = content_text(&item["content"], &format!("{param}.content"))?;
                Ok(json!({"role": role, "content": text}))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(super::responses_tools::merge_calls),
        None | Some(Value::Null) => Err(bad("`input` is required", "input")),
        Some(_) => Err(bad(
            "`input` must be a non-empty string or a non-empty list of messages",
            "input",
        )),
    }
}

fn response_format(text: &Value) -> Result<Option<Value>, ErrorBody> {
    let format = &text["format"];
    match format["type"].as_str() {
        None if text.is_null() || format.is_null() => Ok(None),
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => {
            let mut schema = Map::new();
            schema.insert(
                "name".to_owned(),
                format.get("name").cloned().unwrap_or(json!("response")),
            );
            schema.insert(
                "schema".to_owned(),
                format.get("schema").cloned().unwrap_or(json!({})),
            );
            if let Some(s) = format.get("strict") {
                schema.insert("strict".to_owned(), s.clone());
            }
            Ok(Some(json!({"type": "json_schema", "json_schema": schema})))
        }
        _ => Err(bad(
            "`text.format.type` must be text, json_object or json_schema",
            "text.format",
        )),
    }
}

/// Parses a Responses request into the chat request the pipeline runs, and
/// what the answer echoes.
pub fn parse_request(body: &[u8]) -> Result<(ChatRequest, Echo), ErrorBody> {
    let Ok(Value::Object(f)) = serde_json::from_slice::<Value>(body) else {
        return Err(bad("body must be a JSON object", "body"));
    };
    if let Some(k) = f.keys().find(|k| UNSUPPORTED.contains(&k.as_str())) {
        return Err(bad(
            format!("`{k}` is not supported by DOL's Responses API yet"),
            k,
        ));
    }
    if let Some(k) = f.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(bad(
            format!("Unrecognized request argument supplied: {k}"),
            k,
        ));
    }
    let stream = match f.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(bad("`stream` must be a boolean", "stream")),
    };
    let model = match f.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        _ => return Err(bad("`model` is required", "model")),
    };
    let mut messages = Vec::new();
    match f.get("instructions") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => messages.push(json!({"role": "system", "content": s})),
        Some(_) => return Err(bad("`instructions` must be a string", "instructions")),
    }
    messages.extend(input_messages(f.get("input"))?);
    let mut chat = Map::new();
    chat.insert("model".to_owned(), json!(model));
    chat.insert("messages".to_owned(), Value::Array(messages));
    match f.get("max_output_tokens") {
        None | Some(Value::Null) => {}
        Some(v) => {
            let n = v.as_u64().filter(|n| *n >= 1).ok_or_else(|| {
                bad(
                    "`max_output_tokens` must be a positive integer",
                    "max_output_tokens",
                )
            })?;
            chat.insert("max_tokens".to_owned(), json!(n));
        }
    }
    for k in ["temperature", "top_p", "user"] {
        if let Some(v) = f.get(k).filter(|v| !v.is_null()) {
            chat.insert(k.to_owned(), v.clone());
        }
    }
    if stream {
        chat.insert("stream".to_owned(), json!(true));
        // The usage chunk feeds the final `response.completed`.
        chat.insert("stream_options".to_owned(), json!({"include_usage": true}));
    }
    if let Some(t) = f.get("tools").filter(|v| !v.is_null()) {
        let tools = super::responses_tools::tools(t)?;
        // No tools is no tools (issue 15): an empty list must not change routing.
        if tools.as_array().is_some_and(|a| !a.is_empty()) {
            chat.insert("tools".to_owned(), tools);
        }
    }
    if let Some(c) = f.get("tool_choice").filter(|v| !v.is_null()) {
        chat.insert(
            "tool_choice".to_owned(),
            super::responses_tools::tool_choice(c)?,
        );
    }
    let text = f.get("text").cloned().unwrap_or(Value::Null);
    if let Some(rf) = response_format(&text)? {
        chat.insert("response_format".to_owned(), rf);
    }
    let request = ChatRequest::from_value(&Value::Object(chat)).map_err(|e| e.to_error_body())?;
    let field = |k: &str| f.get(k).cloned().unwrap_or(Value::Null);
    let echo = Echo {
        instructions: field("instructions"),
        max_output_tokens: field("max_output_tokens"),
        temperature: field("temperature"),
        top_p: field("top_p"),
        metadata: f.get("metadata").cloned().unwrap_or_else(|| json!({})),
        user: field("user"),
        tools: f.get("tools").cloned().unwrap_or_else(|| json!([])),
        tool_choice: f
            .get("tool_choice")
            .cloned()
            .unwrap_or_else(|| json!("auto")),
        text: if text.is_null() {
            json!({"format": {"type": "text"}})
        } else {
            text
        },
    };
    Ok((request, echo))
}

/// What a `response` object is built from.
pub(super) struct Parts<'a> {
    pub(super) hex: &'a str,
    pub(super) created: &'a Value,
    pub(super) model: &'a Value,
    pub(super) text: Option<&'a str>,
    /// The answer's `function_call` output items.
    pub(super) calls: Vec<Value>,
    pub(super) finish: Option<&'a str>,
    pub(super) usage: Option<(u64, u64)>,
    pub(super) dol: Option<&'a Value>,
}

pub(super) fn build(p: &Parts<'_>, echo: &Echo) -> Value {
    let (status, incomplete) = match (p.text, p.finish) {
        (None, _) => ("in_progress", Value::Null),
        (_, Some("length")) => ("incomplete", json!({"reason": "max_output_tokens"})),
        (_, Some("content_filter")) => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    };
    // A message item for the text (none when the model only called tools),
    // then one `function_call` item per call.
    let mut output: Vec<Value> = p
        .text
        .filter(|t| !t.is_empty() || p.calls.is_empty())
        .map(|t| message_item(p.hex, t, "completed"))
        .into_iter()
        .collect();
    output.extend(p.calls.iter().cloned());
    let usage = p.usage.map_or(Value::Null, |(input, output)| {
        json!({
            "input_tokens": input,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input + output,
        })
    });
    let mut r = json!({
        "id": format!("resp_{}", p.hex),
        "object": "response",
        "created_at": p.created,
        "status": status,
        "error": null,
        "incomplete_details": incomplete,
        "model": p.model,
        "output": output,
        "parallel_tool_calls": true,
        "tool_choice": echo.tool_choice,
        "tools": echo.tools,
        "instructions": echo.instructions,
        "max_output_tokens": echo.max_output_tokens,
        "temperature": echo.temperature,
        "top_p": echo.top_p,
        "metadata": echo.metadata,
        "user": echo.user,
        "text": echo.text,
        "usage": usage,
    });
    if let Some(dol) = p.dol {
        r["dol"] = dol.clone();
    }
    r
}

pub(super) fn message_item(hex: &str, text: &str, status: &str) -> Value {
    let content: Vec<Value> = if status == "completed" {
        vec![output_text(text)]
    } else {
        Vec::new()
    };
    json!({"type": "message", "id": format!("msg_{hex}"), "status": status,
        "role": "assistant", "content": content})
}

pub(super) fn output_text(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": []})
}

pub(super) fn hex_of(id: &str) -> &str {
    id.strip_prefix("chatcmpl-").unwrap_or(id)
}

/// A chat completion (OpenAI JSON) as a `response` object.
pub fn response_from_completion(c: &Value, echo: &Echo) -> Value {
    let choice = &c["choices"][0];
    let usage = (
        c["usage"]["prompt_tokens"].as_u64().unwrap_or(0),
        c["usage"]["completion_tokens"].as_u64().unwrap_or(0),
    );
    build(
        &Parts {
            hex: hex_of(c["id"].as_str().unwrap_or_default()),
            created: &c["created"],
            model: &c["model"],
            text: Some(choice["message"]["content"].as_str().unwrap_or_default()),
            calls: super::responses_tools::output_items(&choice["message"], "completed"),
            finish: choice["finish_reason"].as_str(),
            usage: Some(usage),
            dol: c.get("dol"),
        },
        echo,
    )
}

/// The pipeline's [`Client`] for a Responses request: the completion goes
/// to `inner` as a `response` object, a stream as the typed events.
pub struct ResponsesClient<'a, D> {
    inner: &'a mut D,
    echo: Echo,
    translator: StreamTranslator,
}

impl<'a, D: Client> ResponsesClient<'a, D> {
    /// Wraps the HTTP client of the request.
    pub fn new(inner: &'a mut D, echo: Echo) -> Self {
        Self {
            inner,
            translator: StreamTranslator::new(echo.clone()),
            echo,
        }
    }
}

impl<D: Client> Downstream for ResponsesClient<'_, D> {
    async fn start(&mut self, headers: Vec<(String, String)>) -> bool {
        self.inner.start(headers).await
    }

    async fn send(&mut self, bytes: Vec<u8>) -> bool {
        let out = self.translator.feed(&bytes);
        // OpenAI frames with nothing to say as Responses events.
        if out.is_empty() {
            return true;
        }
        self.inner.send(out).await
    }
}

impl<D: Client> Client for ResponsesClient<'_, D> {
    async fn complete(&mut self, status: u16, headers: Vec<(String, String)>, body: Value) {
        let body = if (200..300).contains(&status) {
            response_from_completion(&body, &self.echo)
        } else {
            body
        };
        self.inner.complete(status, headers, body).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(v: Value) -> Result<(ChatRequest, Echo), ErrorBody> {
        parse_request(v.to_string().as_bytes())
    }

    fn param(v: Value) -> String {
        let e = parse(v).unwrap_err();
        assert_eq!(e.status(), 400);
        e.error.param.unwrap()
    }

    #[test]
    fn maps_instructions_items_and_limits() {
        let (r, echo) = parse(json!({
            "model": "auto", "instructions": "Be brief.",
            "input": [
                {"role": "developer", "content": "Use English."},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
                {"role": "assistant", "content": [{"type": "output_text", "text": "Hello"}]},
                {"role": "user", "content": "Again"}],
            "max_output_tokens": 64, "temperature": 0.3, "metadata": {"a": "b"},
            "text": {"format": {"type": "json_object"}}
        }))
        .unwrap();
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v["messages"][0],
            json!({"role": "system", "content": "Be brief."})
        );
        assert_eq!(v["messages"][1]["role"], "system");
        assert_eq!(v["messages"][2]["content"], "Hi");
        assert_eq!(v["messages"].as_array().unwrap().len(), 5);
        assert_eq!(v["max_tokens"], 64);
        assert_eq!(v["response_format"]["type"], "json_object");
        assert_eq!(echo.metadata, json!({"a": "b"}));
        let (plain, _) = parse(json!({"model": "auto", "input": "Hi"})).unwrap();
        assert_eq!(plain.messages.len(), 1);
    }

    #[test]
    fn function_tools_and_call_items_map_onto_chat_and_back() {
        let (r, echo) = parse(json!({"model": "auto",
            "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}],
            "tool_choice": {"type": "function", "name": "get_weather"},
            "input": [{"role": "user", "content": "Weather?"},
                {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"},
                {"type": "function_call_output", "call_id": "call_1", "output": "18C"}]}))
        .unwrap();
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["messages"][1]["tool_calls"][0]["id"], "call_1");
        assert_eq!(
            v["messages"][2],
            json!({"role": "tool", "tool_call_id": "call_1", "content": "18C"})
        );
        assert_eq!(r.functions()[0].name, "get_weather");
        assert_eq!(echo.tool_choice["name"], "get_weather");
        let c = json!({"id": "chatcmpl-1", "created": 1, "model": "m", "choices": [{"index": 0,
            "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1}});
        let out = response_from_completion(&c, &echo);
        assert_eq!(out["status"], "completed");
        assert_eq!(out["output"].as_array().unwrap().len(), 1);
        assert_eq!(out["output"][0]["type"], "function_call");
        assert_eq!(out["output"][0]["call_id"], "call_2");
        assert_eq!(out["tools"][0]["name"], "get_weather");
        // No tools is no tools: an empty list asks nothing of routing.
        let (empty, _) = parse(json!({"model": "auto", "input": "x", "tools": []})).unwrap();
        assert!(!empty.passthrough.contains_key("tools"));
    }

    #[test]
    fn each_bad_request_names_its_parameter() {
        assert_eq!(
            parse_request(b"1").unwrap_err().error.param.unwrap(),
            "body"
        );
        assert_eq!(param(json!({"input": "x"})), "model");
        assert_eq!(param(json!({"model": "auto"})), "input");
        assert_eq!(param(json!({"model": "auto", "input": ""})), "input");
        assert_eq!(param(json!({"model": "auto", "input": []})), "input");
        assert_eq!(
            param(json!({"model": "auto", "input": [{"type": "function_call_output"}]})),
            "input[0].call_id"
        );
        assert_eq!(
            param(json!({"model": "auto", "input": [{"type": "input_file"}]})),
            "input[0]"
        );
        assert_eq!(
            param(json!({"model": "auto", "input": "x", "tools": [{"type": "file_search"}]})),
            "tools[0].type"
        );
        assert_eq!(
            param(json!({"model": "auto", "input": [{"role": "tool", "content": "x"}]})),
            "input[0].role"
        );
        assert_eq!(
            param(
                json!({"model": "auto", "input": [{"role": "user", "content": [{"type": "input_image"}]}]})
            ),
            "input[0].content"
        );
        assert_eq!(
            param(json!({"model": "auto", "input": "x", "stream": "yes"})),
            "stream"
        );
        assert_eq!(
            param(json!({"model": "auto", "input": "x", "tools": {}})),
            "tools"
        );
        assert_eq!(
            param(json!({"model": "auto", "input": "x", "previous_response_id": "r"})),
            "previous_response_id"
        );
        assert_eq!(
            param(json!({"model": "auto", "input": "x", "max_output_tokens": 0})),
            "max_output_tokens"
        );
        assert_eq!(
            param(json!({"model": "auto", "input": "x", "instructions": 3})),
            "instructions"
        );
        assert_eq!(
            param(json!({"model": "auto", "input": "x", "text": {"format": {"type": "xml"}}})),
            "text.format"
        );
        assert_eq!(
            param(json!({"model": "auto", "input": "x", "frobnicate": 1})),
            "frobnicate"
        );
        assert_eq!(
            param(json!({"model": "auto", "input": "x", "temperature": 9})),
            "temperature"
        );
    }

    #[test]
    fn completion_becomes_a_response() {
        let c = json!({"id": "chatcmpl-ab", "created": 5, "model": "m", "choices": [{"index": 0,
            "message": {"role": "assistant", "content": "hi"}, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}});
        let r = response_from_completion(&c, &Echo::default());
        assert_eq!(r["id"], "resp_ab");
        assert_eq!(r["object"], "response");
        assert_eq!(r["status"], "incomplete");
        assert_eq!(r["incomplete_details"]["reason"], "max_output_tokens");
        assert_eq!(
            r["output"][0]["content"][0],
            json!({"type": "output_text", "text": "hi", "annotations": []})
        );
        assert_eq!(r["usage"]["total_tokens"], 5);
    }

    proptest! {
        #[test]
        fn parser_never_panics_and_refuses_with_400(body in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Err(e) = parse_request(&body) {
                prop_assert_eq!(e.status(), 400);
            }
        }
    }
}
