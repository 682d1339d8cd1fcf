//! Google's Gemini API (Generative Language API, `v1beta`).
//!
//! `POST {base}/v1beta/models/{model}:generateContent` (streaming:
//! `:streamGenerateContent?alt=sse`) with `x-goog-api-key`. Messages become
//! `contents` with roles `user` / `model`, system messages the
//! `systemInstruction`, sampling settings the `generationConfig`; JSON output
//! uses `responseMimeType: application/json` (a schema is passed as an
//! instruction). Function tools become `tools[].functionDeclarations` and
//! `toolConfig.functionCallingConfig` (`AUTO`, `NONE`, `ANY` with
//! `allowedFunctionNames`); assistant calls are `functionCall` parts, tool
//! messages `functionResponse` parts. Streamed events are whole `GenerateContentResponse`s with
//! partial text; the last carries the `finishReason`.

use serde_json::{Map, Value, json};

use super::super::openai::{ChatRequest, FinishReason, ResponseFormat, ToolCall, Usage};
use super::super::tools::ToolChoice;
use super::error::{ProviderFailure, embedded_error};
use super::sse::SseEvent;
use super::stream::{Progress, StreamEvent};
use super::{
    DiscoveredModel, HttpRequestSpec, Part, ProviderAnswer, ProviderConfig, ProviderKind, as_u64,
    conversation, data_url, endpoint, get, json_headers, json_instruction, post, stop_sequences,
    str_field, system_prompt, unversioned,
};

pub(super) fn request_headers(cfg: &ProviderConfig, stream: bool) -> Vec<(String, String)> {
    let mut h = json_headers(stream);
    if let Some(key) = cfg.key() {
        h.push(("x-goog-api-key".to_owned(), key.to_owned()));
    }
    h
}

/// `{base}/v1beta/{path}`, also when the configured base already names a version.
pub(super) fn url(cfg: &ProviderConfig, path: &str) -> String {
    endpoint(
        unversioned(&cfg.base_url, &["/v1beta", "/v1"]),
        &format!("v1beta/{path}"),
    )
}

/// The media type of an image URL, from its extension (Gemini requires one).
fn guess_mime(url: &str) -> &'static str {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let ext = path
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "png" => "image/png",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "heic" => "image/heic",
        "heif" => "image/heif",
        _ => "image/jpeg",
    }
}

fn part(p: &Part) -> Value {
    match p {
        Part::Text(text) => json!({"text": text}),
        Part::Image(url) => match data_url(url) {
            Some((mime, data)) => json!({"inlineData": {"mimeType": mime, "data": data}}),
            None => json!({"fileData": {"mimeType": guess_mime(url), "fileUri": url}}),
        },
        Part::ToolCall {
            name, arguments, ..
        } => json!({"functionCall": {"name": name, "args": arguments}}),
        // The response must be an object; a tool's text result is wrapped in one.
        Part::ToolResult { name, content, .. } => json!({"functionResponse": {
            "name": name,
            "response": match serde_json::from_str::<Value>(content) {
                Ok(v @ Value::Object(_)) => v,
                _ => json!({"content": content}),
            },
        }}),
    }
}

/// `tools` and `toolConfig` in Gemini's shape.
fn insert_tools(req: &ChatRequest, body: &mut Map<String, Value>) {
    let functions = req.functions();
    if functions.is_empty() {
        return;
    }
    let declarations: Vec<Value> = functions
        .iter()
        .map(|f| {
            let mut d = json!({"name": f.name, "parameters": f.parameters});
            if let Some(desc) = &f.description {
                d["description"] = json!(desc);
            }
            d
        })
        .collect();
    body.insert(
        "tools".to_owned(),
        json!([{"functionDeclarations": declarations}]),
    );
    let config = match req.tool_choice() {
        None => return,
        Some(ToolChoice::Auto) => json!({"mode": "AUTO"}),
        Some(ToolChoice::None) => json!({"mode": "NONE"}),
        Some(ToolChoice::Required) => json!({"mode": "ANY"}),
        Some(ToolChoice::Named(name)) => json!({"mode": "ANY", "allowedFunctionNames": [name]}),
    };
    body.insert(
        "toolConfig".to_owned(),
        json!({"functionCallingConfig": config}),
    );
}

/// The `functionCall` parts of a candidate; Gemini's calls may lack an id,
/// so one is made from the position (`call_0`, …; `offset` calls came before).
fn candidate_calls(c: &Value, offset: usize) -> Vec<ToolCall> {
    c.pointer("/content/parts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("functionCall"))
        .enumerate()
        .filter_map(|(i, f)| {
            Some(ToolCall {
                id: str_field(f, "id").unwrap_or_else(|| format!("call_{}", offset + i)),
                name: str_field(f, "name")?,
                arguments: f
                    .get("args")
                    .map_or_else(|| "{}".to_owned(), Value::to_string),
            })
        })
        .collect()
}

pub(super) fn chat_request(
    cfg: &ProviderConfig,
    req: &ChatRequest,
    model: &str,
    stream: bool,
) -> HttpRequestSpec {
    let conv = conversation(req);
    let contents: Vec<Value> = conv
        .turns
        .iter()
        .map(|t| {
            json!({
                "role": if t.assistant { "model" } else { "user" },
                "parts": t.parts.iter().map(part).collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut body = Map::new();
    body.insert("contents".to_owned(), Value::Array(contents));
    // JSON mode needs no instruction, but a schema can only travel as one.
    let schema_instruction = match &req.response_format {
        Some(f @ ResponseFormat::JsonSchema { .. }) => json_instruction(Some(f)),
        _ => None,
    };
    let system = system_prompt(&conv.system, schema_instruction);
    if !system.is_empty() {
        body.insert(
            "systemInstruction".to_owned(),
            json!({"parts": [{"text": system}]}),
        );
    }
    let mut config = Map::new();
    if let Some(t) = req.temperature {
        config.insert("temperature".to_owned(), json!(t));
    }
    if let Some(p) = req.top_p {
        config.insert("topP".to_owned(), json!(p));
    }
    config.insert("maxOutputTokens".to_owned(), json!(req.output_cap()));
    let stops = stop_sequences(req);
    if !stops.is_empty() {
        config.insert("stopSequences".to_owned(), json!(stops));
    }
    if req.wants_json() {
        config.insert("responseMimeType".to_owned(), json!("application/json"));
    }
    if let Some(seed) = req.seed {
        config.insert("seed".to_owned(), json!(seed));
    }
    if !config.is_empty() {
        body.insert("generationConfig".to_owned(), Value::Object(config));
    }
    insert_tools(req, &mut body);
    let model = model.strip_prefix("models/").unwrap_or(model);
    let method = if stream {
        "streamGenerateContent?alt=sse"
    } else {
        "generateContent"
    };
    post(
        url(cfg, &format!("models/{model}:{method}")),
        request_headers(cfg, stream),
        &Value::Object(body),
    )
}

pub(super) fn models_request(cfg: &ProviderConfig) -> HttpRequestSpec {
    let mut h = request_headers(cfg, false);
    h.retain(|(k, _)| k != "content-type");
    // The list is paged (50 by default); 1000, the maximum, fits it in one page.
    get(url(cfg, "models?pageSize=1000"), h)
}

/// `finishReason` → [`FinishReason`]; unknown reasons (`OTHER`, …) count as `stop`.
fn finish_reason(s: &str) -> FinishReason {
    match s {
        "MAX_TOKENS" => FinishReason::Length,
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            FinishReason::ContentFilter
        }
        _ => FinishReason::Stop,
    }
}

/// `usageMetadata`; thinking tokens are billed as output, so they count as completion.
fn usage(v: &Value) -> Option<Usage> {
    let m = v.get("usageMetadata")?;
    let prompt = m.get("promptTokenCount").and_then(as_u64);
    let candidates = m.get("candidatesTokenCount").and_then(as_u64);
    let thoughts = m.get("thoughtsTokenCount").and_then(as_u64);
    if prompt.is_none() && candidates.is_none() && thoughts.is_none() {
        return None;
    }
    Some(Usage::new(
        prompt.unwrap_or(0),
        candidates
            .unwrap_or(0)
            .saturating_add(thoughts.unwrap_or(0)),
    ))
}

/// The answer text of a candidate, without thought summaries.
fn candidate_text(c: &Value) -> String {
    c.pointer("/content/parts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|p| p.get("thought").and_then(Value::as_bool) != Some(true))
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect()
}

/// Whether the prompt itself was blocked (no candidates at all).
fn prompt_blocked(v: &Value) -> bool {
    v.pointer("/promptFeedback/blockReason").is_some()
}

pub(super) fn parse_response(v: &Value) -> Option<ProviderAnswer> {
    let first = v
        .get("candidates")
        .and_then(Value::as_array)
        .and_then(|c| c.first());
    let (content, mut finish) = match first {
        Some(c) => (
            candidate_text(c),
            c.get("finishReason")
                .and_then(Value::as_str)
                .map_or(FinishReason::Stop, finish_reason),
        ),
        None if prompt_blocked(v) => (String::new(), FinishReason::ContentFilter),
        None => return None,
    };
    let tool_calls = first.map(|c| candidate_calls(c, 0)).unwrap_or_default();
    // Gemini ends a calling turn with `STOP`; OpenAI's clients expect `tool_calls`.
    if !tool_calls.is_empty() && finish == FinishReason::Stop {
        finish = FinishReason::ToolCalls;
    }
    Some(ProviderAnswer {
        content,
        finish_reason: finish,
        usage: usage(v),
        model: str_field(v, "modelVersion"),
        system_fingerprint: None,
        tool_calls,
    })
}

pub(super) fn decode_event(ev: &SseEvent, progress: &mut Progress, out: &mut Vec<StreamEvent>) {
    let Ok(v) = serde_json::from_str::<Value>(&ev.data) else {
        out.push(StreamEvent::Error(ProviderFailure::malformed(
            "stream chunk is not JSON",
        )));
        return;
    };
    if let Some(failure) = embedded_error(ProviderKind::Gemini, &v, &[], 0) {
        out.push(StreamEvent::Error(failure));
        return;
    }
    if let Some(u) = usage(&v) {
        // Every chunk repeats the running usage; the last one is emitted at the end.
        progress.usage = Some(u);
    }
    let first = v
        .get("candidates")
        .and_then(Value::as_array)
        .and_then(|c| c.first());
    let reason = match first {
        Some(c) => {
            let text = candidate_text(c);
            if !text.is_empty() {
                out.push(StreamEvent::Delta(text));
            }
            // Gemini streams each call whole; ids continue across chunks.
            for call in candidate_calls(c, progress.tool_blocks.len()) {
                let index = progress.tool_blocks.len();
                progress.tool_blocks.push(index as u64);
                out.push(StreamEvent::ToolCall {
                    index: index as u32,
                    id: Some(call.id),
                    name: Some(call.name),
                    arguments: call.arguments,
                });
            }
            c.get("finishReason")
                .and_then(Value::as_str)
                .map(finish_reason)
                .map(|r| {
                    if r == FinishReason::Stop && !progress.tool_blocks.is_empty() {
                        FinishReason::ToolCalls
                    } else {
                        r
                    }
                })
        }
        None if prompt_blocked(&v) => Some(FinishReason::ContentFilter),
        None => None,
    };
    if let Some(r) = reason.filter(|_| !progress.finished) {
        progress.finished = true;
        out.push(StreamEvent::Finish(r));
    }
}

pub(super) fn parse_models(v: &Value) -> Option<Vec<DiscoveredModel>> {
    let Some(list) = v.get("models") else {
        // An account without models answers `{}`.
        return v.as_object().filter(|o| o.is_empty()).map(|_| Vec::new());
    };
    Some(
        list.as_array()?
            .iter()
            .filter_map(|m| {
                let methods: Vec<&str> = m
                    .get("supportedGenerationMethods")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let embeds = methods
                    .iter()
                    .any(|x| matches!(*x, "embedContent" | "batchEmbedContents"));
                // Models that neither chat nor embed cannot answer DOL's requests.
                if !methods.contains(&"generateContent") && !embeds {
                    return None;
                }
                let name = str_field(m, "name")?;
                let id = name.strip_prefix("models/").unwrap_or(&name).to_owned();
                let mut model = DiscoveredModel::new(id);
                model.display_name = str_field(m, "displayName");
                model.context_window = m.get("inputTokenLimit").and_then(as_u64);
                // An embedding model (issue 15) serves `/v1/embeddings` only.
                if !methods.contains(&"generateContent") {
                    model
                        .capabilities
                        .insert(super::super::embeddings::CAPABILITY.to_owned());
                    return Some(model);
                }
                model.output_limit = m.get("outputTokenLimit").and_then(as_u64);
                if methods.contains(&"streamGenerateContent") {
                    model.capabilities.insert("streaming".to_owned());
                }
                // Gemini models (unlike Gemma ones served by the same API) take
                // JSON mode, images and function calling.
                if model.id.starts_with("gemini-") {
                    model.capabilities.insert("json".to_owned());
                    model.capabilities.insert("tools".to_owned());
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

    const K: ProviderKind = ProviderKind::Gemini;

    fn weather_request(extra: Value) -> ChatRequest {
        let mut v = json!({
            "model": "auto",
            "messages": [
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_0", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_0", "content": "18C, sunny"}
            ],
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Current weather",
                       "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
        });
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        request(v)
    }

    #[test]
    fn tools_map_to_function_declarations_calls_and_responses() {
        let c = cfg(K, "https://generativelanguage.googleapis.com");
        let b = body(&build(
            &c,
            &weather_request(json!({})),
            "gemini-2.5-flash",
            false,
        ));
        assert_eq!(
            b["tools"],
            json!([{"functionDeclarations": [{"name": "get_weather", "description": "Current weather",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]}])
        );
        assert!(
            b.get("toolConfig").is_none(),
            "no tool_choice: Gemini's default (AUTO)"
        );
        assert_eq!(
            b["contents"],
            json!([
                {"role": "user", "parts": [{"text": "Weather in Paris?"}]},
                {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]},
                {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"content": "18C, sunny"}}}]}
            ])
        );
    }

    #[test]
    fn tool_choice_maps_to_function_calling_config() {
        let c = cfg(K, "https://generativelanguage.googleapis.com");
        let config = |v: Value| {
            body(&build(&c, &weather_request(v), "gemini-2.5-flash", false))["toolConfig"]["functionCallingConfig"].clone()
        };
        assert_eq!(
            config(json!({"tool_choice": "auto"})),
            json!({"mode": "AUTO"})
        );
        assert_eq!(
            config(json!({"tool_choice": "none"})),
            json!({"mode": "NONE"})
        );
        assert_eq!(
            config(json!({"tool_choice": "required"})),
            json!({"mode": "ANY"})
        );
        assert_eq!(
            config(
                json!({"tool_choice": {"type": "function", "function": {"name": "get_weather"}}})
            ),
            json!({"mode": "ANY", "allowedFunctionNames": ["get_weather"]})
        );
    }

    #[test]
    fn a_json_tool_result_is_sent_as_the_response_object() {
        let c = cfg(K, "https://generativelanguage.googleapis.com");
        let mut req = weather_request(json!({}));
        req.messages[2].content = Some(crate::gateway::openai::Content::Text(
            r#"{"temp": 18}"#.into(),
        ));
        let b = body(&build(&c, &req, "gemini-2.5-flash", false));
        assert_eq!(
            b["contents"][2]["parts"][0]["functionResponse"]["response"],
            json!({"temp": 18})
        );
    }

    #[test]
    fn function_call_answers_become_tool_calls() {
        let raw = json!({
            "candidates": [{"content": {"role": "model", "parts": [
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                {"functionCall": {"name": "get_weather", "args": {"city": "Lyon"}}}
            ]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 4},
            "modelVersion": "gemini-2.5-flash"
        })
        .to_string();
        let a = parse_chat_response(K, 200, &[], raw.as_bytes(), 0).unwrap();
        assert_eq!(a.finish_reason, FinishReason::ToolCalls);
        assert_eq!(a.content, "");
        assert_eq!(a.tool_calls.len(), 2);
        assert_eq!(a.tool_calls[1].id, "call_1");
        assert_eq!(a.tool_calls[0].arguments, r#"{"city":"Paris"}"#);
    }

    #[test]
    fn streamed_function_calls_become_whole_tool_call_pieces() {
        let sse = concat!(
            "data: {\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"name\":\"a\",\"args\":{}}}]}}]}\n\n",
            "data: {\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"name\":\"b\",\"args\":{\"x\":1}}}]},\"finishReason\":\"STOP\"}],\"usageMetadata\":{\"promptTokenCount\":3,\"candidatesTokenCount\":2}}\n\n",
        );
        let events = decode_both_ways(K, sse.as_bytes());
        assert_eq!(
            events,
            vec![
                StreamEvent::ToolCall {
                    index: 0,
                    id: Some("call_0".into()),
                    name: Some("a".into()),
                    arguments: "{}".into()
                },
                StreamEvent::ToolCall {
                    index: 1,
                    id: Some("call_1".into()),
                    name: Some("b".into()),
                    arguments: "{\"x\":1}".into()
                },
                StreamEvent::Finish(FinishReason::ToolCalls),
                StreamEvent::Usage(Usage::new(3, 2)),
                StreamEvent::Done,
            ]
        );
    }

    #[test]
    fn request_mapping() {
        let c = cfg(K, "https://generativelanguage.googleapis.com");
        let req = request(json!({
            "model": "auto",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/webp;base64,UklG"}},
                    {"type": "image_url", "image_url": {"url": "https://x/a.PNG?size=2"}}
                ]},
                {"role": "assistant", "content": "A cat."},
                {"role": "user", "content": "sure?"},
                {"role": "user", "content": "really?"}
            ],
            "temperature": 1.5,
            "top_p": 0.8,
            "max_tokens": 256,
            "stop": ["\n\n"],
            "seed": 42,
            "response_format": {"type": "json_object"}
        }));
        let spec = build(&c, &req, "gemini-2.5-flash", false);
        assert_eq!(
            spec.url,
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
        );
        assert_eq!(spec.header("x-goog-api-key"), Some("k-secret-123"));
        assert_eq!(spec.header("content-type"), Some("application/json"));
        assert_eq!(spec.header("authorization"), None);
        assert_eq!(
            body(&spec),
            json!({
                "contents": [
                    {"role": "user", "parts": [
                        {"text": "what is this?"},
                        {"inlineData": {"mimeType": "image/webp", "data": "UklG"}},
                        {"fileData": {"mimeType": "image/png", "fileUri": "https://x/a.PNG?size=2"}}
                    ]},
                    {"role": "model", "parts": [{"text": "A cat."}]},
                    {"role": "user", "parts": [{"text": "sure?"}, {"text": "really?"}]}
                ],
                "systemInstruction": {"parts": [{"text": "Be brief."}]},
                "generationConfig": {
                    "temperature": 1.5, "topP": 0.8, "maxOutputTokens": 256,
                    "stopSequences": ["\n\n"], "responseMimeType": "application/json", "seed": 42
                }
            })
        );
        let spec = build(&c, &req, "models/gemini-2.5-pro", true);
        assert_eq!(
            spec.url,
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
        );
        assert_eq!(spec.header("accept"), Some("text/event-stream"));
    }

    #[test]
    fn minimal_request_and_schema() {
        let c = cfg(K, "https://generativelanguage.googleapis.com/v1beta/");
        let req = request(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}));
        let spec = build(&c, &req, "gemini-2.0-flash", false);
        assert_eq!(
            spec.url,
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:generateContent"
        );
        // No limit of the request's own: the one its reservation is for.
        assert_eq!(
            body(&spec),
            json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
                   "generationConfig": {"maxOutputTokens": crate::gateway::openai::DEFAULT_OUTPUT_TOKENS}})
        );
        let req = request(json!({
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
        }));
        let b = body(&build(&c, &req, "gemini-2.0-flash", false));
        assert_eq!(
            b["generationConfig"]["responseMimeType"],
            "application/json"
        );
        let sys = b["systemInstruction"]["parts"][0]["text"].as_str().unwrap();
        assert!(sys.contains(r#"{"type":"object"}"#), "{sys}");
        assert_eq!(guess_mime("https://x/y"), "image/jpeg");
        assert_eq!(guess_mime("https://x/y.gif#f"), "image/gif");
    }

    fn response(finish: &str) -> String {
        json!({
            "candidates": [{
                "content": {"parts": [
                    {"text": "thinking...", "thought": true},
                    {"text": "Hello"},
                    {"text": " there"}
                ], "role": "model"},
                "finishReason": finish,
                "index": 0,
                "safetyRatings": []
            }],
            "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 5, "thoughtsTokenCount": 20, "totalTokenCount": 33},
            "modelVersion": "gemini-2.5-flash",
            "responseId": "abc"
        })
        .to_string()
    }

    #[test]
    fn response_parsing_and_finish_reasons() {
        let a = parse_chat_response(K, 200, &[], response("STOP").as_bytes(), 0).unwrap();
        assert_eq!(a.content, "Hello there");
        assert_eq!(a.finish_reason, FinishReason::Stop);
        assert_eq!(a.usage, Some(Usage::new(8, 25)));
        assert_eq!(a.model.as_deref(), Some("gemini-2.5-flash"));
        for (reason, expected) in [
            ("STOP", FinishReason::Stop),
            ("MAX_TOKENS", FinishReason::Length),
            ("SAFETY", FinishReason::ContentFilter),
            ("RECITATION", FinishReason::ContentFilter),
            ("BLOCKLIST", FinishReason::ContentFilter),
            ("PROHIBITED_CONTENT", FinishReason::ContentFilter),
            ("SPII", FinishReason::ContentFilter),
            ("OTHER", FinishReason::Stop),
        ] {
            let a = parse_chat_response(K, 200, &[], response(reason).as_bytes(), 0).unwrap();
            assert_eq!(a.finish_reason, expected, "{reason}");
        }
        // A blocked prompt has no candidates.
        let blocked = br#"{"promptFeedback":{"blockReason":"SAFETY","safetyRatings":[]},"usageMetadata":{"promptTokenCount":4,"totalTokenCount":4}}"#;
        let a = parse_chat_response(K, 200, &[], blocked, 0).unwrap();
        assert_eq!(a.content, "");
        assert_eq!(a.finish_reason, FinishReason::ContentFilter);
        assert_eq!(a.usage, Some(Usage::new(4, 0)));
        // A safety stop can come without content.
        let a = parse_chat_response(
            K,
            200,
            &[],
            br#"{"candidates":[{"finishReason":"SAFETY","index":0}]}"#,
            0,
        )
        .unwrap();
        assert_eq!(
            (a.content.as_str(), a.finish_reason),
            ("", FinishReason::ContentFilter)
        );
        let e = parse_chat_response(K, 200, &[], br#"{"usageMetadata":{}}"#, 0).unwrap_err();
        assert_eq!(e.class, ErrorClass::Malformed);
    }

    #[test]
    fn http_errors() {
        let body = br#"{"error": {"code": 429, "message": "Resource has been exhausted (e.g. check quota).", "status": "RESOURCE_EXHAUSTED"}}"#;
        let e = parse_chat_response(K, 429, &[], body, 0).unwrap_err();
        assert_eq!(e.class, ErrorClass::RateLimited);
        assert_eq!(
            e.failure,
            Some(FailureKind::Status {
                status: 429,
                retry_after_ms: None
            })
        );
    }

    const STREAM: &str = concat!(
        "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hel\"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 6,\"candidatesTokenCount\": 1,\"totalTokenCount\": 7},\"modelVersion\": \"gemini-2.0-flash\"}\r\n\r\n",
        "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"lo, ünïcode\"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 6,\"candidatesTokenCount\": 4,\"totalTokenCount\": 10},\"modelVersion\": \"gemini-2.0-flash\"}\r\n\r\n",
        "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"!\"}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 6,\"candidatesTokenCount\": 5,\"totalTokenCount\": 11},\"modelVersion\": \"gemini-2.0-flash\"}\r\n\r\n",
    );

    #[test]
    fn stream_decodes_the_same_in_any_chunking() {
        let expected = vec![
            StreamEvent::Delta("Hel".into()),
            StreamEvent::Delta("lo, ünïcode".into()),
            StreamEvent::Delta("!".into()),
            StreamEvent::Finish(FinishReason::Stop),
            StreamEvent::Usage(Usage::new(6, 5)),
            StreamEvent::Done,
        ];
        assert_eq!(decode_both_ways(K, STREAM.as_bytes()), expected);
        assert_eq!(
            decode_both_ways(K, STREAM.replace("\r\n", "\n").as_bytes()),
            expected
        );
        // A usage-only chunk after the finish still counts.
        let late = format!(
            "{STREAM}data: {{\"usageMetadata\": {{\"promptTokenCount\": 6, \"candidatesTokenCount\": 9}}}}\n\n"
        );
        assert_eq!(
            decode_both_ways(K, late.as_bytes()).get(4),
            Some(&StreamEvent::Usage(Usage::new(6, 9)))
        );
    }

    #[test]
    fn cut_stream_is_an_error() {
        let cut: String = STREAM.split_inclusive("\r\n\r\n").take(2).collect();
        let out = decode_both_ways(K, cut.as_bytes());
        assert_eq!(
            out,
            vec![
                StreamEvent::Delta("Hel".into()),
                StreamEvent::Delta("lo, ünïcode".into()),
                StreamEvent::Error(ProviderFailure::stream_ended_early()),
            ]
        );
    }

    #[test]
    fn in_stream_error_and_blocked_prompt() {
        let s = concat!(
            "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hi\"}],\"role\": \"model\"},\"index\": 0}]}\n\n",
            "data: {\"error\": {\"code\": 503, \"message\": \"The model is overloaded. Please try again later.\", \"status\": \"UNAVAILABLE\"}}\n\n",
        );
        let out = decode_both_ways(K, s.as_bytes());
        assert_eq!(out.len(), 2);
        let StreamEvent::Error(f) = &out[1] else {
            panic!("{out:?}")
        };
        assert_eq!(f.class, ErrorClass::Overloaded);
        let s = "data: {\"promptFeedback\": {\"blockReason\": \"PROHIBITED_CONTENT\"}, \"usageMetadata\": {\"promptTokenCount\": 3}}\n\n";
        assert_eq!(
            decode_both_ways(K, s.as_bytes()),
            vec![
                StreamEvent::Finish(FinishReason::ContentFilter),
                StreamEvent::Usage(Usage::new(3, 0)),
                StreamEvent::Done
            ]
        );
    }

    #[test]
    fn model_list() {
        let body = br#"{
          "models": [
            {"name": "models/gemini-2.5-flash", "version": "001", "displayName": "Gemini 2.5 Flash",
             "description": "Stable version", "inputTokenLimit": 1048576, "outputTokenLimit": 65536,
             "supportedGenerationMethods": ["generateContent", "countTokens", "createCachedContent", "batchGenerateContent"],
             "temperature": 1, "topP": 0.95, "topK": 64, "maxTemperature": 2, "thinking": true},
            {"name": "models/gemma-3-27b-it", "displayName": "Gemma 3 27B", "inputTokenLimit": 131072,
             "outputTokenLimit": 8192, "supportedGenerationMethods": ["generateContent", "countTokens", "streamGenerateContent"]},
            {"name": "models/text-embedding-004", "displayName": "Text Embedding 004", "inputTokenLimit": 2048,
             "outputTokenLimit": 1, "supportedGenerationMethods": ["embedContent"]}
          ],
          "nextPageToken": "x"
        }"#;
        let models = parse_model_list(K, body).unwrap();
        assert_eq!(models.len(), 3);
        // An embedding model is discovered with its capability (issue 15).
        assert_eq!(models[2].id, "text-embedding-004");
        assert_eq!(
            models[2].capabilities.iter().collect::<Vec<_>>(),
            ["embeddings"]
        );
        let m = &models[0];
        assert_eq!(m.id, "gemini-2.5-flash");
        assert_eq!(m.display_name.as_deref(), Some("Gemini 2.5 Flash"));
        assert_eq!(m.context_window, Some(1_048_576));
        assert_eq!(m.output_limit, Some(65_536));
        assert_eq!(
            m.capabilities
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            ["json", "tools", "vision"]
        );
        assert_eq!(models[1].id, "gemma-3-27b-it");
        assert_eq!(
            models[1]
                .capabilities
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            ["streaming"]
        );
        assert_eq!(parse_model_list(K, b"{}").unwrap(), vec![]);
        let spec = models_request(&cfg(K, "https://generativelanguage.googleapis.com"));
        assert_eq!(spec.method, "GET");
        assert_eq!(
            spec.url,
            "https://generativelanguage.googleapis.com/v1beta/models?pageSize=1000"
        );
        assert_eq!(spec.header("x-goog-api-key"), Some("k-secret-123"));
    }
}
