//! The OpenAI-compatible chat completions protocol.
//!
//! `POST {base}/chat/completions` with `authorization: Bearer KEY`; the body is
//! the client's request ([`ChatRequest::upstream_body`]) with the provider's
//! model, and when streaming always `stream_options.include_usage` so the
//! final chunk carries usage. Streams are `data: {chunk}` events ending with
//! `data: [DONE]`.

use serde_json::{Value, json};

use super::super::openai::{ChatRequest, FinishReason, ToolCall, Usage};
use super::error::{ProviderFailure, embedded_error};
use super::sse::SseEvent;
use super::stream::{Progress, StreamEvent};
use super::{
    DiscoveredModel, HttpRequestSpec, ProviderAnswer, ProviderConfig, ProviderKind, as_u64,
    endpoint, get, json_headers, post, str_field,
};

pub(super) fn auth_headers(cfg: &ProviderConfig, stream: bool) -> Vec<(String, String)> {
    let mut h = json_headers(stream);
    if let Some(key) = cfg.key() {
        h.push(("authorization".to_owned(), format!("Bearer {key}")));
    }
    h
}

pub(super) fn chat_request(
    cfg: &ProviderConfig,
    req: &ChatRequest,
    model: &str,
    stream: bool,
) -> HttpRequestSpec {
    let mut body = req.upstream_body(model);
    if let Value::Object(obj) = &mut body {
        obj.insert("stream".to_owned(), Value::Bool(stream));
        // The limit the budget reservation is for: the client's, else DOL's.
        // OpenAI's own API takes `max_completion_tokens` (its reasoning
        // models refuse `max_tokens`, which the Messages entry point and many
        // clients send); other servers know `max_tokens`.
        if cfg.name == "openai" {
            obj.remove("max_tokens");
            obj.insert("max_completion_tokens".to_owned(), json!(req.output_cap()));
        } else if req.output_limit().is_none() {
            obj.insert("max_tokens".to_owned(), json!(req.output_cap()));
        }
        if stream {
            // Always ask for usage: DOL accounts cost even when the client did not ask.
            obj.insert("stream_options".to_owned(), json!({"include_usage": true}));
        } else {
            obj.remove("stream_options");
        }
    }
    post(
        endpoint(&cfg.base_url, "chat/completions"),
        auth_headers(cfg, stream),
        &body,
    )
}

pub(super) fn models_request(cfg: &ProviderConfig) -> HttpRequestSpec {
    let mut headers = auth_headers(cfg, false);
    headers.retain(|(k, _)| k != "content-type");
    get(endpoint(&cfg.base_url, "models"), headers)
}

/// `stop`, `length`, … → [`FinishReason`]; unknown or missing reasons count as
/// `stop` (some servers send `eos` or nothing).
fn finish_reason(s: Option<&str>) -> FinishReason {
    match s {
        Some("length" | "max_tokens") => FinishReason::Length,
        Some("content_filter") => FinishReason::ContentFilter,
        Some("tool_calls") => FinishReason::ToolCalls,
        Some("function_call") => FinishReason::FunctionCall,
        _ => FinishReason::Stop,
    }
}

fn usage(v: &Value) -> Option<Usage> {
    let prompt = v.get("prompt_tokens").and_then(as_u64);
    let completion = v.get("completion_tokens").and_then(as_u64);
    if prompt.is_none() && completion.is_none() {
        return None;
    }
    Some(Usage::new(prompt.unwrap_or(0), completion.unwrap_or(0)))
}

pub(super) fn parse_response(v: &Value) -> Option<ProviderAnswer> {
    let choice = v.get("choices")?.as_array()?.first()?;
    let message = choice.get("message")?;
    // A refusal arrives with `content: null`; it is still the answer to show.
    let content = message
        .get("content")
        .and_then(Value::as_str)
        .or_else(|| message.get("refusal").and_then(Value::as_str))
        .unwrap_or_default()
        .to_owned();
    Some(ProviderAnswer {
        content,
        finish_reason: finish_reason(choice.get("finish_reason").and_then(Value::as_str)),
        usage: v.get("usage").and_then(usage),
        model: str_field(v, "model"),
        system_fingerprint: str_field(v, "system_fingerprint"),
        tool_calls: tool_calls(message),
    })
}

/// The `tool_calls` of a response message.
fn tool_calls(message: &Value) -> Vec<ToolCall> {
    message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let f = c.get("function")?;
            Some(ToolCall {
                id: str_field(c, "id").unwrap_or_default(),
                name: str_field(f, "name")?,
                arguments: str_field(f, "arguments").unwrap_or_else(|| "{}".to_owned()),
            })
        })
        .collect()
}

pub(super) fn decode_event(ev: &SseEvent, progress: &mut Progress, out: &mut Vec<StreamEvent>) {
    if ev.data.trim() == "[DONE]" {
        out.push(StreamEvent::Done);
        return;
    }
    let Ok(v) = serde_json::from_str::<Value>(&ev.data) else {
        out.push(StreamEvent::Error(ProviderFailure::malformed(
            "stream chunk is not JSON",
        )));
        return;
    };
    if let Some(failure) = embedded_error(ProviderKind::OpenAiCompatible, &v, &[], 0) {
        out.push(StreamEvent::Error(failure));
        return;
    }
    if let Some(choice) = v
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
    {
        let delta = choice.get("delta");
        let text = delta
            .and_then(|d| d.get("content"))
            .and_then(Value::as_str)
            .or_else(|| delta.and_then(|d| d.get("refusal")).and_then(Value::as_str));
        if let Some(t) = text.filter(|t| !t.is_empty()) {
            out.push(StreamEvent::Delta(t.to_owned()));
        }
        let calls = delta
            .and_then(|d| d.get("tool_calls"))
            .and_then(Value::as_array);
        for (i, c) in calls.into_iter().flatten().enumerate() {
            let f = c.get("function");
            out.push(StreamEvent::ToolCall {
                index: c
                    .get("index")
                    .and_then(as_u64)
                    .map_or(i as u32, |n| n as u32),
                id: str_field(c, "id"),
                name: f.and_then(|f| str_field(f, "name")),
                arguments: f
                    .and_then(|f| str_field(f, "arguments"))
                    .unwrap_or_default(),
            });
        }
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            progress.finished = true;
            out.push(StreamEvent::Finish(finish_reason(Some(reason))));
        }
    }
    if let Some(u) = v.get("usage").and_then(usage) {
        out.push(StreamEvent::Usage(u));
    }
}

pub(super) fn parse_models(v: &Value) -> Option<Vec<DiscoveredModel>> {
    let data = v.get("data")?.as_array()?;
    Some(
        data.iter()
            .filter_map(|m| {
                let mut model = DiscoveredModel::new(str_field(m, "id")?);
                // OpenAI lists its video models beside the chat ones: they are
                // the video discovery's, never a chat model to price.
                if crate::video::discovery::is_openai_video_model(&model.id) {
                    return None;
                }
                model.display_name = str_field(m, "name");
                // OpenAI reports no limits; OpenRouter, vLLM and others do, under these names.
                model.context_window = ["context_length", "context_window", "max_model_len"]
                    .iter()
                    .find_map(|k| m.get(*k).and_then(as_u64));
                model.output_limit = m
                    .get("max_completion_tokens")
                    .or_else(|| m.pointer("/top_provider/max_completion_tokens"))
                    .and_then(as_u64);
                // OpenAI's model list says nothing of what a model does; an
                // id naming embeddings (`text-embedding-3-small`,
                // `nomic-embed-text`) is an embedding model (issue 15), which
                // serves `/v1/embeddings` only.
                if model.id.contains("embed") {
                    model
                        .capabilities
                        .insert(super::super::embeddings::CAPABILITY.to_owned());
                    return Some(model);
                }
                let inputs = m
                    .pointer("/architecture/input_modalities")
                    .and_then(Value::as_array);
                if inputs.is_some_and(|i| i.iter().any(|x| x.as_str() == Some("image"))) {
                    model.capabilities.insert("vision".to_owned());
                }
                let params = m.get("supported_parameters").and_then(Value::as_array);
                for p in params.into_iter().flatten().filter_map(Value::as_str) {
                    match p {
                        "response_format" | "structured_outputs" => {
                            model.capabilities.insert("json".to_owned());
                        }
                        "tools" => {
                            model.capabilities.insert("tools".to_owned());
                        }
                        _ => {}
                    }
                }
                Some(model)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::openai::DEFAULT_OUTPUT_TOKENS;
    use crate::gateway::providers::test_support::*;
    use crate::gateway::providers::{
        ErrorClass, ProviderKind, chat_request as build, models_request, parse_chat_response,
        parse_models as parse_model_list,
    };
    use crate::gateway::retry::FailureKind;

    const K: ProviderKind = ProviderKind::OpenAiCompatible;

    #[test]
    fn tool_calls_are_parsed_from_answers() {
        let raw = json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_abc", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
            ]}, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 3}
        })
        .to_string();
        let a = parse_chat_response(K, 200, &[], raw.as_bytes(), 0).unwrap();
        assert_eq!(a.finish_reason, FinishReason::ToolCalls);
        assert_eq!(a.content, "");
        assert_eq!(
            a.tool_calls,
            vec![ToolCall {
                id: "call_abc".into(),
                name: "get_weather".into(),
                arguments: r#"{"city":"Paris"}"#.into()
            }]
        );
    }

    #[test]
    fn streamed_tool_call_deltas_are_decoded() {
        let sse = concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
            "data: [DONE]\n\n",
        );
        let events = decode_both_ways(K, sse.as_bytes());
        assert_eq!(
            events,
            vec![
                StreamEvent::ToolCall {
                    index: 0,
                    id: Some("call_1".into()),
                    name: Some("get_weather".into()),
                    arguments: String::new()
                },
                StreamEvent::ToolCall {
                    index: 0,
                    id: None,
                    name: None,
                    arguments: "{\"city\":\"Paris\"}".into()
                },
                StreamEvent::Finish(FinishReason::ToolCalls),
                StreamEvent::Done,
            ]
        );
    }

    #[test]
    fn request_mapping() {
        let c = cfg(K, "https://api.openai.com/v1/");
        let req = request(json!({
            "model": "auto",
            "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
            "temperature": 0.3,
            "stream": true,
            "stream_options": {"include_usage": false},
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "dol": {"max_cost": 0.5}
        }));
        let spec = build(&c, &req, "gpt-4o-mini", false);
        assert_eq!(spec.method, "POST");
        assert_eq!(spec.url, "https://api.openai.com/v1/chat/completions");
        assert_eq!(spec.header("Authorization"), Some("Bearer k-secret-123"));
        assert_eq!(spec.header("content-type"), Some("application/json"));
        assert_eq!(spec.header("accept"), Some("application/json"));
        let b = body(&spec);
        assert_eq!(b["model"], "gpt-4o-mini");
        assert_eq!(b["stream"], false);
        assert!(b.get("stream_options").is_none());
        assert!(b.get("dol").is_none());
        assert_eq!(b["temperature"], 0.3);
        assert_eq!(b["tools"][0]["function"]["name"], "f");
        assert_eq!(
            b["messages"],
            json!([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}])
        );

        let spec = build(&c, &req, "gpt-4o-mini", true);
        let b = body(&spec);
        assert_eq!(b["stream"], true);
        assert_eq!(b["stream_options"], json!({"include_usage": true}));
        assert_eq!(spec.header("accept"), Some("text/event-stream"));

        let local = ProviderConfig {
            api_key: None,
            ..cfg(K, "http://127.0.0.1:9001/v1")
        };
        let spec = build(&local, &req, "llama", false);
        assert_eq!(spec.url, "http://127.0.0.1:9001/v1/chat/completions");
        assert_eq!(spec.header("authorization"), None);
        let empty_key = ProviderConfig {
            api_key: Some(String::new()),
            ..local
        };
        assert_eq!(
            build(&empty_key, &req, "llama", false).header("authorization"),
            None
        );
    }

    #[test]
    fn a_request_without_an_output_limit_is_sent_the_one_its_budget_reservation_is_for() {
        let req =
            request(json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}]}));
        let openai = ProviderConfig {
            name: "openai".into(),
            ..cfg(K, "https://api.openai.com/v1/")
        };
        let b = body(&build(&openai, &req, "gpt-4o", false));
        assert_eq!(b["max_completion_tokens"], DEFAULT_OUTPUT_TOKENS);
        assert!(b.get("max_tokens").is_none(), "{b}");
        let b = body(&build(
            &cfg(K, "http://127.0.0.1:9001/v1"),
            &req,
            "llama",
            false,
        ));
        assert_eq!(b["max_tokens"], DEFAULT_OUTPUT_TOKENS);
        assert!(b.get("max_completion_tokens").is_none(), "{b}");
        // The client's own limit: as `max_completion_tokens` to OpenAI (its
        // reasoning models refuse `max_tokens`), as sent to other servers.
        let own = request(json!({"model": "auto", "max_tokens": 50,
                                 "messages": [{"role": "user", "content": "hi"}]}));
        let b = body(&build(&openai, &own, "gpt-4o", false));
        assert_eq!(
            (b["max_completion_tokens"].clone(), b.get("max_tokens")),
            (json!(50), None)
        );
        let b = body(&build(
            &cfg(K, "http://127.0.0.1:9001/v1"),
            &own,
            "llama",
            false,
        ));
        assert_eq!(
            (b["max_tokens"].clone(), b.get("max_completion_tokens")),
            (json!(50), None)
        );
    }

    #[test]
    fn response_parsing_and_finish_reasons() {
        let raw = |content: Value, reason: Value| {
            json!({
                "id": "chatcmpl-1", "object": "chat.completion", "created": 1,
                "model": "gpt-4o-mini-2024-07-18", "system_fingerprint": "fp_1",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": null},
                             "logprobs": null, "finish_reason": reason}],
                "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21,
                          "completion_tokens_details": {"reasoning_tokens": 0}}
            })
            .to_string()
        };
        let a = parse_chat_response(
            K,
            200,
            &[],
            raw(json!("Hello!"), json!("stop")).as_bytes(),
            0,
        )
        .unwrap();
        assert_eq!(a.content, "Hello!");
        assert_eq!(a.finish_reason, FinishReason::Stop);
        assert_eq!(a.usage, Some(Usage::new(9, 12)));
        assert_eq!(a.model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
        assert_eq!(a.system_fingerprint.as_deref(), Some("fp_1"));
        for (reason, expected) in [
            (json!("stop"), FinishReason::Stop),
            (json!("length"), FinishReason::Length),
            (json!("content_filter"), FinishReason::ContentFilter),
            (json!("tool_calls"), FinishReason::ToolCalls),
            (json!("function_call"), FinishReason::FunctionCall),
            (json!("eos"), FinishReason::Stop),
            (Value::Null, FinishReason::Stop),
        ] {
            let a = parse_chat_response(K, 200, &[], raw(json!("x"), reason.clone()).as_bytes(), 0)
                .unwrap();
            assert_eq!(a.finish_reason, expected, "{reason}");
        }
        // Tool calls only: no text.
        let a = parse_chat_response(
            K,
            201,
            &[],
            raw(Value::Null, json!("tool_calls")).as_bytes(),
            0,
        )
        .unwrap();
        assert_eq!(a.content, "");
        // A refusal is the answer.
        let refused = json!({"choices": [{"message": {"role": "assistant", "content": null, "refusal": "I can't help with that."}, "finish_reason": "stop"}]});
        let a = parse_chat_response(K, 200, &[], refused.to_string().as_bytes(), 0).unwrap();
        assert_eq!(a.content, "I can't help with that.");
        assert_eq!(a.usage, None);
        assert_eq!(a.model, None);
        // No choices is malformed.
        let e = parse_chat_response(K, 200, &[], br#"{"choices": []}"#, 0).unwrap_err();
        assert_eq!(e.class, ErrorClass::Malformed);
        let e = parse_chat_response(K, 200, &[], br#"{"choices": [{"index": 0}]}"#, 0).unwrap_err();
        assert_eq!(e.class, ErrorClass::Malformed);
    }

    #[test]
    fn http_errors() {
        let h = headers(&[("retry-after-ms", "250")]);
        let e = parse_chat_response(
            K,
            429,
            &h,
            br#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#,
            0,
        )
        .unwrap_err();
        assert_eq!(e.class, ErrorClass::RateLimited);
        assert_eq!(
            e.failure,
            Some(FailureKind::Status {
                status: 429,
                retry_after_ms: Some(250)
            })
        );
    }

    const STREAM: &str = concat!(
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"},\"finish_reason\":null}],\"usage\":null}\n\n",
        ": keep-alive\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo 🌍\"},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}],\"usage\":null}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":3,\"total_tokens\":8}}\n\n",
        "data: [DONE]\n\n",
    );

    #[test]
    fn stream_decodes_the_same_in_any_chunking() {
        let expected = vec![
            StreamEvent::Delta("Hel".into()),
            StreamEvent::Delta("lo 🌍".into()),
            StreamEvent::Finish(FinishReason::Length),
            StreamEvent::Usage(Usage::new(5, 3)),
            StreamEvent::Done,
        ];
        assert_eq!(decode_both_ways(K, STREAM.as_bytes()), expected);
        let crlf = STREAM.replace('\n', "\r\n");
        assert_eq!(decode_both_ways(K, crlf.as_bytes()), expected);
        // `[DONE]` without the final blank line still completes.
        let trimmed = STREAM.trim_end();
        assert_eq!(decode_both_ways(K, trimmed.as_bytes()), expected);
    }

    #[test]
    fn cut_stream_is_an_error() {
        let cut = STREAM.replace("data: [DONE]\n\n", "");
        let out = decode_both_ways(K, cut.as_bytes());
        assert_eq!(out.len(), 5);
        assert!(matches!(
            out.last(),
            Some(StreamEvent::Error(ProviderFailure { class: ErrorClass::Server, failure: Some(FailureKind::Connect), message })) if message == "stream ended early"
        ));
        // Cut in the middle of a chunk.
        let half = &STREAM.as_bytes()[..STREAM.len() / 2];
        assert!(matches!(
            decode_both_ways(K, half).last(),
            Some(StreamEvent::Error(_))
        ));
    }

    #[test]
    fn in_stream_error() {
        let s = concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n",
            "data: {\"error\":{\"message\":\"The server had an error while processing your request.\",\"type\":\"server_error\",\"code\":null}}\n\n",
            "data: [DONE]\n\n",
        );
        let out = decode_both_ways(K, s.as_bytes());
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], StreamEvent::Delta("Hi".into()));
        let StreamEvent::Error(f) = &out[1] else {
            panic!("{out:?}")
        };
        assert_eq!(f.class, ErrorClass::Server);
        assert_eq!(
            f.failure,
            Some(FailureKind::Status {
                status: 500,
                retry_after_ms: None
            })
        );
        assert!(f.message.contains("server_error"));
    }

    #[test]
    fn model_list() {
        let openai = br#"{"object":"list","data":[
            {"id":"gpt-4o-mini","object":"model","created":1721172741,"owned_by":"system"},
            {"id":"text-embedding-3-small","object":"model","created":1705948997,"owned_by":"system"},
            {"id":"sora-2","object":"model","created":1759708615,"owned_by":"system"},
            {"object":"model"}
        ]}"#;
        let models = parse_model_list(K, openai).unwrap();
        // `sora-2` is a video model: the video discovery's, not a chat one.
        assert_eq!(models.len(), 2);
        assert_eq!(models[0].id, "gpt-4o-mini");
        assert_eq!(models[0].context_window, None);
        assert!(models[0].capabilities.is_empty());
        // An id naming embeddings is an embedding model (issue 15).
        assert_eq!(
            models[1].capabilities.iter().collect::<Vec<_>>(),
            ["embeddings"]
        );
        let openrouter =
            br#"{"data":[{"id":"anthropic/claude-3.5-sonnet","name":"Anthropic: Claude 3.5 Sonnet",
            "context_length":200000,"architecture":{"input_modalities":["text","image"]},
            "top_provider":{"max_completion_tokens":8192},
            "supported_parameters":["tools","response_format","temperature"]}]}"#;
        let m = &parse_model_list(K, openrouter).unwrap()[0];
        assert_eq!(
            m.display_name.as_deref(),
            Some("Anthropic: Claude 3.5 Sonnet")
        );
        assert_eq!(m.context_window, Some(200_000));
        assert_eq!(m.output_limit, Some(8192));
        assert_eq!(
            m.capabilities
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            ["json", "tools", "vision"]
        );
        let vllm = br#"{"object":"list","data":[{"id":"meta-llama/Llama-3.1-8B-Instruct","object":"model","owned_by":"vllm","max_model_len":32768}]}"#;
        assert_eq!(
            parse_model_list(K, vllm).unwrap()[0].context_window,
            Some(32_768)
        );
        let spec = models_request(&cfg(K, "https://api.openai.com/v1"));
        assert_eq!(spec.method, "GET");
        assert_eq!(spec.url, "https://api.openai.com/v1/models");
        assert_eq!(spec.header("authorization"), Some("Bearer k-secret-123"));
        assert_eq!(spec.header("content-type"), None);
        assert!(spec.body.is_empty());
    }
}
