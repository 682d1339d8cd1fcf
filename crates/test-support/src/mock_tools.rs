//! Function calling in the mock LLM: which function a request asks the model
//! to call, and the answer calling it in each flavor's wire format
//! (OpenAI `tool_calls`, Anthropic `tool_use` blocks, Gemini `functionCall`
//! parts), plain and streamed.
//!
//! The mock calls a function when the request declares tools, its tool
//! choice allows a call, and its last message is not already a tool result;
//! otherwise it answers with text as usual, so a tool round trip ends in prose.

use bytes::Bytes;
use serde_json::{Value, json};

use crate::mock_llm::Flavor;

/// The function the mock will call: its name and its parameters schema.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolPick {
    /// The function's name.
    pub name: String,
    /// Its parameters' JSON Schema.
    pub schema: Value,
}

fn pick(tools: &[(String, Value)], wanted: Option<&str>) -> Option<ToolPick> {
    let (name, schema) = match wanted {
        Some(w) => tools.iter().find(|(n, _)| n == w)?,
        None => tools.first()?,
    };
    Some(ToolPick {
        name: name.clone(),
        schema: schema.clone(),
    })
}

/// The function a request of `flavor` asks to be called, if any.
pub fn requested(flavor: Flavor, body: &Value) -> Option<ToolPick> {
    let s = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    match flavor {
        Flavor::OpenAi => {
            let last = body.get("messages")?.as_array()?.last()?;
            if last.get("role").and_then(Value::as_str) == Some("tool") {
                return None;
            }
            let tools: Vec<(String, Value)> = body
                .get("tools")?
                .as_array()?
                .iter()
                .filter_map(|t| {
                    let f = t.get("function")?;
                    Some((
                        s(f.get("name"))?,
                        f.get("parameters").cloned().unwrap_or(json!({})),
                    ))
                })
                .collect();
            match body.get("tool_choice") {
                Some(Value::String(c)) if c == "none" => None,
                Some(Value::Object(o)) => pick(&tools, o.get("function")?.get("name")?.as_str()),
                _ => pick(&tools, None),
            }
        }
        Flavor::Anthropic => {
            let last = body.get("messages")?.as_array()?.last()?;
            let blocks = last.get("content").and_then(Value::as_array);
            if blocks
                .into_iter()
                .flatten()
                .any(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
            {
                return None;
            }
            let tools: Vec<(String, Value)> = body
                .get("tools")?
                .as_array()?
                .iter()
                .filter_map(|t| {
                    Some((
                        s(t.get("name"))?,
                        t.get("input_schema").cloned().unwrap_or(json!({})),
                    ))
                })
                .collect();
            match body.pointer("/tool_choice/type").and_then(Value::as_str) {
                Some("none") => None,
                Some("tool") => pick(
                    &tools,
                    body.pointer("/tool_choice/name").and_then(Value::as_str),
                ),
                _ => pick(&tools, None),
            }
        }
        Flavor::Gemini => {
            let last = body.get("contents")?.as_array()?.last()?;
            let parts = last.get("parts").and_then(Value::as_array);
            if parts
                .into_iter()
                .flatten()
                .any(|p| p.get("functionResponse").is_some())
            {
                return None;
            }
            let tools: Vec<(String, Value)> = body
                .get("tools")?
                .as_array()?
                .iter()
                .filter_map(|t| t.get("functionDeclarations").and_then(Value::as_array))
                .flatten()
                .filter_map(|f| {
                    Some((
                        s(f.get("name"))?,
                        f.get("parameters").cloned().unwrap_or(json!({})),
                    ))
                })
                .collect();
            let config = body.pointer("/toolConfig/functionCallingConfig");
            match config.and_then(|c| c.get("mode")).and_then(Value::as_str) {
                Some("NONE") => None,
                _ => pick(
                    &tools,
                    config
                        .and_then(|c| c.pointer("/allowedFunctionNames/0"))
                        .and_then(Value::as_str),
                ),
            }
        }
    }
}

/// A call's facts, for rendering.
pub struct Call<'a> {
    /// Response id counter.
    pub id: u64,
    /// The model.
    pub model: &'a str,
    /// The function.
    pub name: &'a str,
    /// Its arguments.
    pub args: &'a Value,
    /// Reported prompt tokens.
    pub prompt_tokens: u32,
    /// Reported completion tokens.
    pub completion_tokens: u32,
}

/// The complete (non-streamed) answer calling the function.
pub fn answer(flavor: Flavor, c: &Call<'_>) -> Value {
    match flavor {
        Flavor::OpenAi => json!({
            "id": format!("chatcmpl-mock{:016x}", c.id),
            "object": "chat.completion",
            "created": 0,
            "model": c.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "refusal": null,
                "tool_calls": [{"id": format!("call_mock{:x}", c.id), "type": "function",
                                "function": {"name": c.name, "arguments": c.args.to_string()}}]},
                "logprobs": null, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens,
                      "total_tokens": c.prompt_tokens.saturating_add(c.completion_tokens)},
        }),
        Flavor::Anthropic => json!({
            "id": format!("msg_mock{:016x}", c.id),
            "type": "message", "role": "assistant", "model": c.model,
            "content": [{"type": "tool_use", "id": format!("toolu_mock{:x}", c.id), "name": c.name, "input": c.args}],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": c.prompt_tokens, "output_tokens": c.completion_tokens},
        }),
        Flavor::Gemini => json!({
            "candidates": [{"content": {"role": "model", "parts": [{"functionCall": {"name": c.name, "args": c.args}}]},
                            "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": c.prompt_tokens, "candidatesTokenCount": c.completion_tokens,
                              "totalTokenCount": c.prompt_tokens.saturating_add(c.completion_tokens)},
            "modelVersion": c.model,
        }),
    }
}

/// The streamed answer calling the function, as SSE frames (the arguments
/// in two pieces where the format streams them).
pub fn stream(flavor: Flavor, c: &Call<'_>) -> Vec<Bytes> {
    let args = c.args.to_string();
    let (a, b) = args.split_at(args.len() / 2);
    let data = |v: Value| Bytes::from(format!("data: {v}\n\n"));
    let event = |name: &str, v: Value| Bytes::from(format!("event: {name}\ndata: {v}\n\n"));
    match flavor {
        Flavor::OpenAi => {
            let chunk = |delta: Value, finish: Value| {
                data(
                    json!({"id": format!("chatcmpl-mock{:016x}", c.id), "object": "chat.completion.chunk",
                            "created": 0, "model": c.model,
                            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]}),
                )
            };
            vec![
                chunk(
                    json!({"role": "assistant", "content": null, "tool_calls": [{"index": 0, "id": format!("call_mock{:x}", c.id),
                    "type": "function", "function": {"name": c.name, "arguments": ""}}]}),
                    Value::Null,
                ),
                chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": a}}]}),
                    Value::Null,
                ),
                chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": b}}]}),
                    Value::Null,
                ),
                chunk(json!({}), json!("tool_calls")),
                data(
                    json!({"id": format!("chatcmpl-mock{:016x}", c.id), "object": "chat.completion.chunk", "created": 0,
                            "model": c.model, "choices": [],
                            "usage": {"prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens,
                                      "total_tokens": c.prompt_tokens.saturating_add(c.completion_tokens)}}),
                ),
                Bytes::from_static(b"data: [DONE]\n\n"),
            ]
        }
        Flavor::Anthropic => vec![
            event(
                "message_start",
                json!({"type": "message_start", "message": {"id": format!("msg_mock{:016x}", c.id),
                "type": "message", "role": "assistant", "model": c.model, "content": [], "stop_reason": null,
                "usage": {"input_tokens": c.prompt_tokens, "output_tokens": 1}}}),
            ),
            event(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "tool_use", "id": format!("toolu_mock{:x}", c.id), "name": c.name, "input": {}}}),
            ),
            event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": a}}),
            ),
            event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": b}}),
            ),
            event(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 0}),
            ),
            event(
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null},
                "usage": {"output_tokens": c.completion_tokens}}),
            ),
            event("message_stop", json!({"type": "message_stop"})),
        ],
        // Gemini streams a call whole, in one event.
        Flavor::Gemini => vec![Bytes::from(format!("data: {}\r\n\r\n", answer(flavor, c)))],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_flavor_finds_the_requested_function() {
        let openai = json!({"messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "function", "function": {"name": "a", "parameters": {"type": "object"}}},
                      {"type": "function", "function": {"name": "b"}}],
            "tool_choice": {"type": "function", "function": {"name": "b"}}});
        assert_eq!(requested(Flavor::OpenAi, &openai).unwrap().name, "b");
        let anthropic = json!({"messages": [{"role": "user", "content": "x"}],
            "tools": [{"name": "a", "input_schema": {"type": "object"}}]});
        assert_eq!(requested(Flavor::Anthropic, &anthropic).unwrap().name, "a");
        let gemini = json!({"contents": [{"role": "user", "parts": [{"text": "x"}]}],
            "tools": [{"functionDeclarations": [{"name": "g"}]}]});
        assert_eq!(requested(Flavor::Gemini, &gemini).unwrap().name, "g");
    }

    #[test]
    fn a_tool_result_last_or_choice_none_means_text() {
        let openai = json!({"messages": [{"role": "tool", "tool_call_id": "c", "content": "r"}],
            "tools": [{"type": "function", "function": {"name": "a"}}]});
        assert_eq!(requested(Flavor::OpenAi, &openai), None);
        let none = json!({"messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "function", "function": {"name": "a"}}], "tool_choice": "none"});
        assert_eq!(requested(Flavor::OpenAi, &none), None);
        let anthropic = json!({"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "r"}]}],
            "tools": [{"name": "a"}]});
        assert_eq!(requested(Flavor::Anthropic, &anthropic), None);
        let gemini = json!({"contents": [{"role": "user", "parts": [{"functionResponse": {"name": "g", "response": {}}}]}],
            "tools": [{"functionDeclarations": [{"name": "g"}]}]});
        assert_eq!(requested(Flavor::Gemini, &gemini), None);
    }
}
