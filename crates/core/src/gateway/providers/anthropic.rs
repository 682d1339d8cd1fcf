//! Anthropic's Messages API.
//!
//! `POST {base}/v1/messages` with `x-api-key` and `anthropic-version`. System
//! messages become the top-level `system` prompt, `max_tokens` is always sent
//! (the request's limit, else [`DEFAULT_OUTPUT_TOKENS`](crate::gateway::openai::DEFAULT_OUTPUT_TOKENS)), `stop` becomes
//! `stop_sequences`, and a JSON `response_format` becomes an instruction in the
//! system prompt, since the API has no JSON mode. Function tools become `tools`
//! (`name`, `description`, `input_schema`) and `tool_choice` (`auto`, `any`,
//! `none`, `tool`); assistant calls are `tool_use` blocks, tool messages
//! `tool_result` blocks in the user turn. Streams are named SSE events:
//! `message_start`, `content_block_delta`, `message_delta`, `message_stop`,
//! `ping` and `error`.

use serde_json::{Map, Value, json};

use super::super::openai::{ChatRequest, FinishReason, ToolCall, Usage};
use super::super::tools::ToolChoice;
use super::error::{ProviderFailure, embedded_error};
use super::sse::SseEvent;
use super::stream::{Progress, StreamEvent};
use super::{
    DiscoveredModel, HttpRequestSpec, Part, ProviderAnswer, ProviderConfig, ProviderKind, as_u64,
    conversation, data_url, endpoint, get, json_headers, json_instruction, post, stop_sequences,
    str_field, system_prompt, unversioned,
};

/// The API version DOL speaks.
pub const API_VERSION: &str = "2023-06-01";

fn request_headers(cfg: &ProviderConfig, stream: bool) -> Vec<(String, String)> {
    let mut h = json_headers(stream);
    if let Some(key) = cfg.key() {
        h.push(("x-api-key".to_owned(), key.to_owned()));
    }
    h.push(("anthropic-version".to_owned(), API_VERSION.to_owned()));
    h
}

/// `{base}/v1/{path}`, also when the configured base already ends in `/v1`.
fn url(cfg: &ProviderConfig, path: &str) -> String {
    endpoint(unversioned(&cfg.base_url, &["/v1"]), &format!("v1/{path}"))
}

fn block(part: &Part) -> Value {
    match part {
        Part::Text(text) => json!({"type": "text", "text": text}),
        Part::Image(url) => match data_url(url) {
            Some((media_type, data)) => json!({
                "type": "image",
                "source": {"type": "base64", "media_type": media_type, "data": data}
            }),
            None => json!({"type": "image", "source": {"type": "url", "url": url}}),
        },
        Part::ToolCall {
            id,
            name,
            arguments,
        } => json!({"type": "tool_use", "id": id, "name": name, "input": arguments}),
        Part::ToolResult { id, content, .. } => {
            json!({"type": "tool_result", "tool_use_id": id, "content": content})
        }
    }
}

/// `tools` and `tool_choice` in Anthropic's shape.
fn insert_tools(req: &ChatRequest, body: &mut Map<String, Value>) {
    let functions = req.functions();
    if functions.is_empty() {
        return;
    }
    let tools: Vec<Value> = functions
        .iter()
        .map(|f| {
            let mut t = json!({"name": f.name, "input_schema": f.parameters});
            if let Some(d) = &f.description {
                t["description"] = json!(d);
            }
            t
        })
        .collect();
    body.insert("tools".to_owned(), Value::Array(tools));
    let mut choice = match req.tool_choice() {
        None | Some(ToolChoice::Auto) => json!({"type": "auto"}),
        Some(ToolChoice::None) => json!({"type": "none"}),
        Some(ToolChoice::Required) => json!({"type": "any"}),
        Some(ToolChoice::Named(name)) => json!({"type": "tool", "name": name}),
    };
    // OpenAI's `parallel_tool_calls: false` is Anthropic's `disable_parallel_tool_use`.
    if req.passthrough.get("parallel_tool_calls") == Some(&Value::Bool(false))
        && choice["type"] != "none"
    {
        choice["disable_parallel_tool_use"] = json!(true);
    }
    body.insert("tool_choice".to_owned(), choice);
}

pub(super) fn chat_request(
    cfg: &ProviderConfig,
    req: &ChatRequest,
    model: &str,
    stream: bool,
) -> HttpRequestSpec {
    let conv = conversation(req);
    let messages: Vec<Value> = conv
        .turns
        .iter()
        .map(|t| {
            json!({
                "role": if t.assistant { "assistant" } else { "user" },
                "content": t.parts.iter().map(block).collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut body = Map::new();
    body.insert("model".to_owned(), json!(model));
    body.insert("max_tokens".to_owned(), json!(req.output_cap()));
    body.insert("messages".to_owned(), Value::Array(messages));
    let system = system_prompt(&conv.system, json_instruction(req.response_format.as_ref()));
    if !system.is_empty() {
        body.insert("system".to_owned(), json!(system));
    }
    if let Some(t) = req.temperature {
        // Anthropic's range is 0–1 where OpenAI's is 0–2: clamp rather than be rejected.
        body.insert("temperature".to_owned(), json!(t.clamp(0.0, 1.0)));
    } else if let Some(p) = req.top_p {
        // Newer Claude models reject temperature and top_p together; temperature wins.
        body.insert("top_p".to_owned(), json!(p));
    }
    let stops = stop_sequences(req);
    if !stops.is_empty() {
        body.insert("stop_sequences".to_owned(), json!(stops));
    }
    insert_tools(req, &mut body);
    if stream {
        body.insert("stream".to_owned(), Value::Bool(true));
    }
    post(
        url(cfg, "messages"),
        request_headers(cfg, stream),
        &Value::Object(body),
    )
}

pub(super) fn models_request(cfg: &ProviderConfig) -> HttpRequestSpec {
    let mut h = request_headers(cfg, false);
    h.retain(|(k, _)| k != "content-type");
    // The list is paged (20 by default); 1000, the maximum, fits every account in one page.
    get(url(cfg, "models?limit=1000"), h)
}

/// `stop_reason` → [`FinishReason`]; unknown reasons count as `stop`.
fn finish_reason(s: &str) -> FinishReason {
    match s {
        "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
        "refusal" => FinishReason::ContentFilter,
        "tool_use" => FinishReason::ToolCalls,
        _ => FinishReason::Stop,
    }
}

/// All input tokens of a `usage` object: uncached plus cache writes and reads.
fn input_tokens(usage: &Value) -> Option<u64> {
    let plain = usage.get("input_tokens").and_then(as_u64)?;
    let cached: u64 = ["cache_creation_input_tokens", "cache_read_input_tokens"]
        .iter()
        .filter_map(|k| usage.get(*k).and_then(as_u64))
        .sum();
    Some(plain.saturating_add(cached))
}

pub(super) fn parse_response(v: &Value) -> Option<ProviderAnswer> {
    let blocks = v.get("content")?.as_array()?;
    let tool_calls = blocks
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_use"))
        .filter_map(|b| {
            Some(ToolCall {
                id: str_field(b, "id")?,
                name: str_field(b, "name")?,
                arguments: b
                    .get("input")
                    .map_or_else(|| "{}".to_owned(), Value::to_string),
            })
        })
        .collect();
    let content = blocks
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .collect::<String>();
    let usage = v.get("usage").and_then(|u| {
        let output = u.get("output_tokens").and_then(as_u64);
        let input = input_tokens(u);
        (input.is_some() || output.is_some())
            .then(|| Usage::new(input.unwrap_or(0), output.unwrap_or(0)))
    });
    Some(ProviderAnswer {
        content,
        finish_reason: v
            .get("stop_reason")
            .and_then(Value::as_str)
            .map_or(FinishReason::Stop, finish_reason),
        usage,
        model: str_field(v, "model"),
        system_fingerprint: None,
        tool_calls,
    })
}

pub(super) fn decode_event(ev: &SseEvent, progress: &mut Progress, out: &mut Vec<StreamEvent>) {
    let Ok(v) = serde_json::from_str::<Value>(&ev.data) else {
        out.push(StreamEvent::Error(ProviderFailure::malformed(
            "stream event is not JSON",
        )));
        return;
    };
    // The payload's `type` repeats the SSE event name; either will do.
    let kind = v
        .get("type")
        .and_then(Value::as_str)
        .or(ev.event.as_deref())
        .unwrap_or_default();
    match kind {
        "message_start" => {
            progress.prompt_tokens = v.pointer("/message/usage").and_then(input_tokens);
        }
        "content_block_start"
            if v.pointer("/content_block/type").and_then(Value::as_str) == Some("tool_use") =>
        {
            let block = v.get("index").and_then(as_u64).unwrap_or(0);
            out.push(StreamEvent::ToolCall {
                index: progress.tool_blocks.len() as u32,
                id: v
                    .pointer("/content_block/id")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                name: v
                    .pointer("/content_block/name")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                arguments: String::new(),
            });
            progress.tool_blocks.push(block);
        }
        "content_block_delta"
            if v.pointer("/delta/type").and_then(Value::as_str) == Some("input_json_delta") =>
        {
            let block = v.get("index").and_then(as_u64).unwrap_or(0);
            if let Some(index) = progress.tool_blocks.iter().position(|b| *b == block) {
                out.push(StreamEvent::ToolCall {
                    index: index as u32,
                    id: None,
                    name: None,
                    arguments: v
                        .pointer("/delta/partial_json")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                });
            }
        }
        "content_block_start" => {
            if let Some(t) = v
                .pointer("/content_block/text")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
            {
                out.push(StreamEvent::Delta(t.to_owned()));
            }
        }
        "content_block_delta" => {
            let delta = v.get("delta");
            let is_text =
                delta.and_then(|d| d.get("type")).and_then(Value::as_str) == Some("text_delta");
            if let Some(t) = delta
                .filter(|_| is_text)
                .and_then(|d| d.get("text"))
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
            {
                out.push(StreamEvent::Delta(t.to_owned()));
            }
        }
        "message_delta" => {
            if let Some(reason) = v.pointer("/delta/stop_reason").and_then(Value::as_str) {
                progress.finished = true;
                out.push(StreamEvent::Finish(finish_reason(reason)));
            }
            if let Some(usage) = v.get("usage") {
                // Some Anthropic-compatible gateways report input tokens only here.
                let input = input_tokens(usage)
                    .filter(|n| *n > 0)
                    .or(progress.prompt_tokens)
                    .unwrap_or(0);
                if let Some(output) = usage.get("output_tokens").and_then(as_u64) {
                    out.push(StreamEvent::Usage(Usage::new(input, output)));
                }
            }
        }
        "message_stop" => out.push(StreamEvent::Done),
        "error" => {
            let failure = embedded_error(ProviderKind::Anthropic, &v, &[], 0)
                .unwrap_or_else(|| ProviderFailure::malformed("stream error event without error"));
            out.push(StreamEvent::Error(failure));
        }
        // `ping`, `content_block_stop` and event types added later carry nothing DOL needs.
        _ => {}
    }
}

pub(super) fn parse_models(v: &Value) -> Option<Vec<DiscoveredModel>> {
    let data = v.get("data")?.as_array()?;
    Some(
        data.iter()
            .filter_map(|m| {
                let mut model = DiscoveredModel::new(str_field(m, "id")?);
                model.display_name = str_field(m, "display_name");
                model.context_window = m.get("max_input_tokens").and_then(as_u64);
                model.output_limit = m.get("max_tokens").and_then(as_u64);
                // Every Messages model streams, and JSON output is this adapter's system prompt.
                model.capabilities.insert("streaming".to_owned());
                model.capabilities.insert("json".to_owned());
                // Every Messages model takes function tools.
                model.capabilities.insert("tools".to_owned());
                if m.pointer("/capabilities/image_input/supported")
                    .and_then(Value::as_bool)
                    == Some(true)
                {
                    model.capabilities.insert("vision".to_owned());
                }
                Some(model)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::providers::test_support::*;
    use crate::gateway::providers::{
        ErrorClass, chat_request as build, models_request, parse_chat_response,
        parse_models as parse_model_list,
    };
    use crate::gateway::retry::FailureKind;

    const K: ProviderKind = ProviderKind::Anthropic;

    fn weather_request(extra: Value) -> ChatRequest {
        let mut v = json!({
            "model": "auto",
            "messages": [
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "toolu_1", "content": "18C, sunny"}
            ],
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Current weather",
                       "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
        });
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        request(v)
    }

    #[test]
    fn tools_map_to_anthropic_tools_tool_use_and_tool_result() {
        let c = cfg(K, "https://api.anthropic.com");
        let b = body(&build(&c, &weather_request(json!({})), "claude", false));
        assert_eq!(
            b["tools"],
            json!([{"name": "get_weather", "description": "Current weather",
                    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}])
        );
        assert_eq!(b["tool_choice"], json!({"type": "auto"}));
        assert_eq!(
            b["messages"],
            json!([
                {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C, sunny"}]}
            ])
        );
    }

    #[test]
    fn tool_choice_maps_to_anthropic_terms() {
        let c = cfg(K, "https://api.anthropic.com");
        let choice = |v: Value| {
            body(&build(&c, &weather_request(v), "claude", false))["tool_choice"].clone()
        };
        assert_eq!(
            choice(json!({"tool_choice": "required"})),
            json!({"type": "any"})
        );
        assert_eq!(
            choice(json!({"tool_choice": "none"})),
            json!({"type": "none"})
        );
        assert_eq!(
            choice(
                json!({"tool_choice": {"type": "function", "function": {"name": "get_weather"}}})
            ),
            json!({"type": "tool", "name": "get_weather"})
        );
        assert_eq!(
            choice(json!({"parallel_tool_calls": false})),
            json!({"type": "auto", "disable_parallel_tool_use": true})
        );
    }

    #[test]
    fn tool_use_answers_become_tool_calls() {
        let raw = json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
            "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_9", "name": "get_weather", "input": {"city": "Paris"}}
            ],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 10, "output_tokens": 5}
        })
        .to_string();
        let a = parse_chat_response(K, 200, &[], raw.as_bytes(), 0).unwrap();
        assert_eq!(a.finish_reason, FinishReason::ToolCalls);
        assert_eq!(a.content, "Let me check.");
        assert_eq!(
            a.tool_calls,
            vec![ToolCall {
                id: "toolu_9".into(),
                name: "get_weather".into(),
                arguments: r#"{"city":"Paris"}"#.into()
            }]
        );
    }

    #[test]
    fn streamed_tool_use_becomes_tool_call_pieces() {
        let sse = concat!(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":7}}}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"get_weather\",\"input\":{}}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\":\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\\\"Paris\\\"}\"}}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":9}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        );
        let events = decode_both_ways(K, sse.as_bytes());
        assert_eq!(
            events,
            vec![
                StreamEvent::ToolCall {
                    index: 0,
                    id: Some("toolu_1".into()),
                    name: Some("get_weather".into()),
                    arguments: String::new()
                },
                StreamEvent::ToolCall {
                    index: 0,
                    id: None,
                    name: None,
                    arguments: "{\"city\":".into()
                },
                StreamEvent::ToolCall {
                    index: 0,
                    id: None,
                    name: None,
                    arguments: "\"Paris\"}".into()
                },
                StreamEvent::Finish(FinishReason::ToolCalls),
                StreamEvent::Usage(Usage::new(7, 9)),
                StreamEvent::Done,
            ]
        );
    }

    #[test]
    fn request_mapping() {
        let c = cfg(K, "https://api.anthropic.com");
        let req = request(json!({
            "model": "auto",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "first"},
                {"role": "user", "content": [
                    {"type": "text", "text": "second"},
                    {"type": "text", "text": "  "},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
                    {"type": "image_url", "image_url": {"url": "https://x/cat.jpg"}}
                ]},
                {"role": "developer", "content": "Use metric units."},
                {"role": "assistant", "content": "ok"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c1"}]},
                {"role": "tool", "content": "42", "tool_call_id": "c1"}
            ],
            "temperature": 1.6,
            "top_p": 0.9,
            "stop": "END",
            "max_completion_tokens": 300
        }));
        let spec = build(&c, &req, "claude-sonnet-4-5", true);
        assert_eq!(spec.url, "https://api.anthropic.com/v1/messages");
        assert_eq!(spec.header("x-api-key"), Some("k-secret-123"));
        assert_eq!(spec.header("anthropic-version"), Some("2023-06-01"));
        assert_eq!(spec.header("content-type"), Some("application/json"));
        assert_eq!(spec.header("authorization"), None);
        let b = body(&spec);
        assert_eq!(
            b,
            json!({
                "model": "claude-sonnet-4-5",
                "max_tokens": 300,
                "system": "Be brief.\n\nUse metric units.",
                "messages": [
                    {"role": "user", "content": [
                        {"type": "text", "text": "first"},
                        {"type": "text", "text": "second"},
                        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}},
                        {"type": "image", "source": {"type": "url", "url": "https://x/cat.jpg"}}
                    ]},
                    {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c1", "content": "42"}]}
                ],
                "temperature": 1.0,
                "stop_sequences": ["END"],
                "stream": true
            })
        );
    }

    #[test]
    fn defaults_json_and_odd_bases() {
        let c = cfg(K, "https://proxy.example/anthropic/v1/");
        let req = request(json!({
            "model": "auto",
            "messages": [{"role": "user", "content": "list three colours"}],
            "top_p": 0.5,
            "stop": ["a", "b"],
            "response_format": {"type": "json_object"}
        }));
        let spec = build(&c, &req, "claude-haiku-4-5", false);
        assert_eq!(spec.url, "https://proxy.example/anthropic/v1/messages");
        let b = body(&spec);
        assert_eq!(b["max_tokens"], 4096);
        assert_eq!(b["top_p"], 0.5);
        assert!(b.get("temperature").is_none());
        assert!(b.get("stream").is_none());
        assert_eq!(b["stop_sequences"], json!(["a", "b"]));
        let system = b["system"].as_str().unwrap();
        assert!(
            system.starts_with("Respond with a single valid JSON object only"),
            "{system}"
        );
        // Only system text: it becomes the user turn.
        let req =
            request(json!({"model": "m", "messages": [{"role": "system", "content": "Say hi"}]}));
        let b = body(&build(&c, &req, "m", false));
        assert_eq!(
            b["messages"],
            json!([{"role": "user", "content": [{"type": "text", "text": "Say hi"}]}])
        );
        assert!(b.get("system").is_none());
        let keyless = ProviderConfig { api_key: None, ..c };
        assert_eq!(build(&keyless, &req, "m", false).header("x-api-key"), None);
    }

    fn message(stop_reason: &str) -> String {
        json!({
            "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "x"},
                {"type": "text", "text": "Hello"},
                {"type": "tool_use", "id": "t", "name": "f", "input": {}},
                {"type": "text", "text": " world"}
            ],
            "stop_reason": stop_reason, "stop_sequence": null,
            "usage": {"input_tokens": 10, "cache_creation_input_tokens": 5, "cache_read_input_tokens": 20, "output_tokens": 7}
        })
        .to_string()
    }

    #[test]
    fn response_parsing_and_finish_reasons() {
        let a = parse_chat_response(K, 200, &[], message("end_turn").as_bytes(), 0).unwrap();
        assert_eq!(a.content, "Hello world");
        assert_eq!(a.finish_reason, FinishReason::Stop);
        assert_eq!(a.usage, Some(Usage::new(35, 7)));
        assert_eq!(a.model.as_deref(), Some("claude-sonnet-4-5-20250929"));
        assert_eq!(a.system_fingerprint, None);
        for (reason, expected) in [
            ("end_turn", FinishReason::Stop),
            ("stop_sequence", FinishReason::Stop),
            ("max_tokens", FinishReason::Length),
            ("refusal", FinishReason::ContentFilter),
            ("tool_use", FinishReason::ToolCalls),
            ("pause_turn", FinishReason::Stop),
        ] {
            let a = parse_chat_response(K, 200, &[], message(reason).as_bytes(), 0).unwrap();
            assert_eq!(a.finish_reason, expected, "{reason}");
        }
        let e = parse_chat_response(K, 200, &[], br#"{"type":"message","content":"x"}"#, 0)
            .unwrap_err();
        assert_eq!(e.class, ErrorClass::Malformed);
    }

    #[test]
    fn http_errors() {
        let overloaded = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_011"}"#;
        let e = parse_chat_response(K, 529, &[], overloaded, 0).unwrap_err();
        assert_eq!(e.class, ErrorClass::Overloaded);
        let h = headers(&[("retry-after", "30")]);
        let limited = br#"{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"}}"#;
        let e = parse_chat_response(K, 429, &h, limited, 0).unwrap_err();
        assert_eq!(e.class, ErrorClass::RateLimited);
        assert_eq!(
            e.failure,
            Some(FailureKind::Status {
                status: 429,
                retry_after_ms: Some(30_000)
            })
        );
    }

    const STREAM: &str = concat!(
        "event: message_start\n",
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-sonnet-4-5\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: ping\n",
        "data: {\"type\": \"ping\"}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\", wörld\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"a\\\"\"}}\n\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: message_delta\n",
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"max_tokens\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}\n\n",
        "event: message_stop\n",
        "data: {\"type\":\"message_stop\"}\n\n",
    );

    #[test]
    fn stream_decodes_the_same_in_any_chunking() {
        let expected = vec![
            StreamEvent::Delta("Hello".into()),
            StreamEvent::Delta(", wörld".into()),
            StreamEvent::Finish(FinishReason::Length),
            StreamEvent::Usage(Usage::new(25, 15)),
            StreamEvent::Done,
        ];
        assert_eq!(decode_both_ways(K, STREAM.as_bytes()), expected);
        assert_eq!(
            decode_both_ways(K, STREAM.replace('\n', "\r").as_bytes()),
            expected
        );
    }

    #[test]
    fn cut_stream_is_an_error() {
        let cut = STREAM
            .split("event: message_stop")
            .next()
            .unwrap_or_default();
        let out = decode_both_ways(K, cut.as_bytes());
        assert_eq!(out.len(), 5);
        assert_eq!(
            out.last(),
            Some(&StreamEvent::Error(ProviderFailure::stream_ended_early()))
        );
    }

    #[test]
    fn in_stream_overload() {
        let s = concat!(
            "event: message_start\n",
            "data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n",
            "event: content_block_delta\n",
            "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n",
            "event: error\n",
            "data: {\"type\": \"error\", \"error\": {\"type\": \"overloaded_error\", \"message\": \"Overloaded\"}}\n\n",
        );
        let out = decode_both_ways(K, s.as_bytes());
        assert_eq!(out.len(), 2);
        let StreamEvent::Error(f) = &out[1] else {
            panic!("{out:?}")
        };
        assert_eq!(f.class, ErrorClass::Overloaded);
        assert_eq!(
            f.failure,
            Some(FailureKind::Overloaded {
                retry_after_ms: None
            })
        );
    }

    #[test]
    fn gateway_reports_input_tokens_late() {
        let s = concat!(
            "data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":0,\"output_tokens\":0}}}\n\n",
            "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"input_tokens\":9,\"output_tokens\":4}}\n\n",
            "data: {\"type\":\"message_stop\"}\n\n",
        );
        assert_eq!(
            decode_both_ways(K, s.as_bytes()),
            vec![
                StreamEvent::Finish(FinishReason::Stop),
                StreamEvent::Usage(Usage::new(9, 4)),
                StreamEvent::Done
            ]
        );
    }

    #[test]
    fn model_list() {
        let body = br#"{
            "data": [
                {"type": "model", "id": "claude-sonnet-4-5-20250929", "display_name": "Claude Sonnet 4.5",
                 "created_at": "2025-09-29T00:00:00Z", "max_input_tokens": 200000, "max_tokens": 64000,
                 "capabilities": {"image_input": {"supported": true}, "pdf_input": {"supported": true},
                                  "structured_outputs": {"supported": true}, "thinking": {"supported": true}}},
                {"type": "model", "id": "claude-3-haiku-20240307", "display_name": "Claude Haiku 3",
                 "created_at": "2024-03-07T00:00:00Z"}
            ],
            "has_more": false, "first_id": "claude-sonnet-4-5-20250929", "last_id": "claude-3-haiku-20240307"
        }"#;
        let models = parse_model_list(K, body).unwrap();
        assert_eq!(models.len(), 2);
        let m = &models[0];
        assert_eq!(m.id, "claude-sonnet-4-5-20250929");
        assert_eq!(m.display_name.as_deref(), Some("Claude Sonnet 4.5"));
        assert_eq!(m.context_window, Some(200_000));
        assert_eq!(m.output_limit, Some(64_000));
        assert_eq!(
            m.capabilities
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            ["json", "streaming", "tools", "vision"]
        );
        assert_eq!(models[1].context_window, None);
        assert!(!models[1].capabilities.contains("vision"));
        let spec = models_request(&cfg(K, "https://api.anthropic.com/"));
        assert_eq!(spec.method, "GET");
        assert_eq!(spec.url, "https://api.anthropic.com/v1/models?limit=1000");
        assert_eq!(spec.header("x-api-key"), Some("k-secret-123"));
        assert_eq!(spec.header("anthropic-version"), Some("2023-06-01"));
    }
}
