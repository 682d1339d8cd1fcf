//! `POST /v1/messages`, Anthropic's Messages API as an entry point, end to
//! end (issue 15): the real host and `generate` component, mock providers
//! of every wire format behind it, and the official `anthropic` SDK.

use super::*;

const VERSION: (&str, &str) = ("anthropic-version", "2023-06-01");

impl Gateway {
    /// A Messages call with `x-api-key` (as the Anthropic SDK sends it; none when `key` is empty).
    async fn messages(&self, key: &str, body: Value) -> Reply {
        let mut headers = vec![VERSION, ("cache-control", "no-cache")];
        if !key.is_empty() {
            headers.push(("x-api-key", key));
        }
        self.call("POST", "/v1/messages", None, Some(&body), &headers)
            .await
    }
}

fn hello() -> Value {
    json!({"model": "auto", "max_tokens": 200, "messages": [{"role": "user", "content": PROMPT}]})
}

fn event_names(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .map(str::to_owned)
        .collect()
}

/// An Anthropic error body of `kind`.
fn anthropic_error(r: &Reply, status: u16, kind: &str) -> String {
    assert_eq!(r.status, status, "{}", r.text);
    let v = r.json();
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["type"], kind, "{v}");
    v["error"]["message"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_answer_in_anthropics_shape_through_any_provider() {
    for flavor in [Flavor::OpenAi, Flavor::Gemini, Flavor::Anthropic] {
        let mock = MockLlm::start(flavor).await.unwrap();
        let g = start(&[&mock], &[]).await;
        let (_, key) = g.new_key(json!({})).await;
        let r = g
            .messages(&key, with_system(hello(), "Answer in one paragraph."))
            .await;
        assert_eq!(r.status, 200, "{flavor:?}: {}", r.text);
        let v = r.json();
        assert_eq!(v["type"], "message");
        assert_eq!(v["role"], "assistant");
        assert!(v["id"].as_str().unwrap().starts_with("msg_"));
        assert!(!v["content"][0]["text"].as_str().unwrap().is_empty());
        assert_eq!(v["stop_reason"], "end_turn");
        assert!(v["usage"]["output_tokens"].as_u64().unwrap() > 0);
        assert_eq!(r.header("x-dol-provider"), flavor.name());
        // The system prompt reached the provider.
        let sent = mock.requests().last().unwrap().body.clone();
        assert!(sent.contains("Answer in one paragraph."), "{sent}");
        g.host.app.shutdown().await;
    }
}

fn with_system(mut v: Value, system: &str) -> Value {
    v["system"] = json!(system);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_stream_anthropics_events() {
    let mock = MockLlm::start(Flavor::OpenAi).await.unwrap();
    let g = start(&[&mock], &[]).await;
    let (_, key) = g.new_key(json!({})).await;
    let mut body = hello();
    body["stream"] = json!(true);
    let r = g.messages(&key, body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.header("content-type").starts_with("text/event-stream"));
    let names = event_names(&r.text);
    assert_eq!(
        names[..3],
        ["message_start", "ping", "content_block_start"],
        "{names:?}"
    );
    assert!(names.contains(&"content_block_delta".to_owned()));
    assert_eq!(
        names[names.len() - 3..],
        ["content_block_stop", "message_delta", "message_stop"],
        "{names:?}"
    );
    g.host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_take_a_bearer_key_too() {
    let g = start(&[], &[]).await;
    let (_, key) = g.new_key(json!({})).await;
    let r = g
        .call(
            "POST",
            "/v1/messages",
            Some(&key),
            Some(&hello()),
            &[VERSION],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["type"], "message");
    g.host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_without_a_key_are_401_in_anthropics_shape() {
    let g = start(&[], &[]).await;
    let r = g.messages("", hello()).await;
    anthropic_error(&r, 401, "authentication_error");
    g.host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_with_a_wrong_key_are_401_in_anthropics_shape() {
    let g = start(&[], &[]).await;
    let r = g.messages("sk-ant-not-a-dol-key", hello()).await;
    anthropic_error(&r, 401, "authentication_error");
    g.host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_without_anthropic_version_are_400() {
    let g = start(&[], &[]).await;
    let (_, key) = g.new_key(json!({})).await;
    let r = g
        .call("POST", "/v1/messages", Some(&key), Some(&hello()), &[])
        .await;
    let m = anthropic_error(&r, 400, "invalid_request_error");
    assert!(m.contains("anthropic-version"), "{m}");
    g.host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_for_an_unknown_model_are_404_in_anthropics_shape() {
    let g = start(&[], &[]).await;
    let (_, key) = g.new_key(json!({})).await;
    let mut body = hello();
    body["model"] = json!("claude-nonexistent-9");
    let r = g.messages(&key, body).await;
    let m = anthropic_error(&r, 404, "not_found_error");
    assert!(m.contains("claude-nonexistent-9"), "{m}");
    g.host.app.shutdown().await;
}

/// One bad Messages body: a 400 `invalid_request_error` whose message names `names`.
async fn refused(change: fn(&mut Value), names: &str) {
    let g = start(&[], &[]).await;
    let (_, key) = g.new_key(json!({})).await;
    let mut body = hello();
    change(&mut body);
    let r = g.messages(&key, body.clone()).await;
    let m = anthropic_error(&r, 400, "invalid_request_error");
    assert!(m.contains(names), "{body}: {m}");
    g.host.app.shutdown().await;
}

macro_rules! bad_message {
    ($name:ident, $change:expr, $names:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            refused($change, $names).await;
        }
    };
}

bad_message!(
    messages_body_not_an_object_is_400,
    |b| *b = json!([1]),
    "JSON object"
);
bad_message!(
    messages_missing_max_tokens_is_400,
    |b| {
        b.as_object_mut().unwrap().remove("max_tokens");
    },
    "max_tokens"
);
bad_message!(
    messages_missing_model_is_400,
    |b| {
        b.as_object_mut().unwrap().remove("model");
    },
    "model"
);
bad_message!(
    messages_empty_messages_is_400,
    |b| b["messages"] = json!([]),
    "messages"
);
bad_message!(
    messages_bad_role_is_400,
    |b| b["messages"][0]["role"] = json!("system"),
    "role"
);
bad_message!(
    messages_image_block_is_400,
    |b| b["messages"][0]["content"] =
        json!([{"type": "image", "source": {"type": "url", "url": "http://x/y.png"}}]),
    "image"
);
bad_message!(
    messages_server_tools_are_400,
    |b| b["tools"] = json!([{"type": "web_search_20250305", "name": "web_search"}]),
    "server tools"
);
bad_message!(
    messages_tools_without_input_schema_are_400,
    |b| b["tools"] = json!([{"name": "f"}]),
    "tools.0.input_schema"
);
bad_message!(
    messages_unknown_tool_choice_is_400,
    |b| b["tool_choice"] = json!({"type": "sometimes"}),
    "tool_choice"
);
bad_message!(
    messages_temperature_out_of_range_is_400,
    |b| b["temperature"] = json!(2),
    "temperature"
);
bad_message!(
    messages_stop_sequences_not_a_list_is_400,
    |b| b["stop_sequences"] = json!("END"),
    "stop_sequences"
);
bad_message!(
    messages_unknown_field_is_400,
    |b| b["frobnicate"] = json!(true),
    "frobnicate"
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_anthropic_python_sdk_works_unchanged() {
    let mock = MockLlm::start(Flavor::OpenAi).await.unwrap();
    let g = start(&[&mock], &[]).await;
    let (_, key) = g.new_key(json!({})).await;
    let stdout = super::sdk_check("anthropic-sdk", "messages", g.host.url(""), key).await;
    assert!(stdout.contains("all checks passed"));
    g.host.app.shutdown().await;
}

/// Anthropic tools through each provider mapping on one host: a pinned model
/// per wire format answers `tool_use` (plain and streamed), then the
/// `tool_result` is answered in text; each provider saw its own tool terms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_tools_round_trip_through_every_provider_mapping() {
    let openai = MockLlm::start(Flavor::OpenAi).await.unwrap();
    let anthropic = MockLlm::start(Flavor::Anthropic).await.unwrap();
    let gemini = MockLlm::start(Flavor::Gemini).await.unwrap();
    let g = start(&[&openai, &anthropic, &gemini], &[]).await;
    let (_, key) = g.new_key(json!({})).await;
    let tools = json!([{"name": "get_weather", "description": "Current weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]);
    let question = json!({"role": "user", "content": "What is the weather in Paris today?"});
    let cases = [
        (&openai, "gpt-4o-mini", "\"tools\"", "\"role\":\"tool\""),
        (
            &anthropic,
            "claude-haiku-4-5",
            "\"input_schema\"",
            "\"tool_result\"",
        ),
        (
            &gemini,
            "gemini-2.5-flash",
            "\"functionDeclarations\"",
            "\"functionResponse\"",
        ),
    ];
    for (mock, model, tool_terms, result_terms) in cases {
        let ask = json!({"model": model, "max_tokens": 300, "tools": tools,
            "tool_choice": {"type": "auto"}, "messages": [question]});
        let r = g.messages(&key, ask.clone()).await;
        assert_eq!(r.status, 200, "{model}: {}", r.text);
        let v = r.json();
        assert_eq!(v["stop_reason"], "tool_use", "{model}: {v}");
        let call = v["content"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["type"] == "tool_use")
            .unwrap_or_else(|| panic!("{model}: no tool_use in {v}"))
            .clone();
        assert_eq!(call["name"], "get_weather");
        assert!(call["input"]["city"].is_string(), "{model}: {call}");
        let sent = mock.requests().last().unwrap().body.clone();
        assert!(sent.contains(tool_terms), "{model}: {sent}");
        // Streamed: a tool_use block whose input arrives as input_json_delta.
        let mut streamed = ask.clone();
        streamed["stream"] = json!(true);
        let s = g.messages(&key, streamed).await;
        assert_eq!(s.status, 200, "{model}: {}", s.text);
        assert!(
            s.text.contains("\"type\":\"tool_use\""),
            "{model}: {}",
            s.text
        );
        assert!(s.text.contains("input_json_delta"), "{model}: {}", s.text);
        assert!(
            s.text.contains("\"stop_reason\":\"tool_use\""),
            "{model}: {}",
            s.text
        );
        // The caller runs the tool and sends a tool_result: answered in text.
        let mut answer = ask;
        answer["messages"] = json!([question,
            {"role": "assistant", "content": [call.clone()]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call["id"], "content": "18 degrees and sunny"}]}]);
        let r = g.messages(&key, answer).await;
        assert_eq!(r.status, 200, "{model}: {}", r.text);
        let v = r.json();
        assert_eq!(v["stop_reason"], "end_turn", "{model}: {v}");
        assert_eq!(v["content"][0]["type"], "text", "{model}: {v}");
        let sent = mock.requests().last().unwrap().body.clone();
        assert!(sent.contains(result_terms), "{model}: {sent}");
    }
    // `"tools": []` on chat is no tools: routed like a plain request and
    // never sent upstream (OpenAI refuses an empty list).
    let r = g
        .chat(
            &key,
            json!({"model": "gpt-4o-mini", "tools": [], "messages": [question]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-dol-model"), "gpt-4o-mini");
    let sent = openai.requests().last().unwrap().json().unwrap();
    assert!(sent.get("tools").is_none(), "{sent}");
    // A tool_use block in a user turn: Anthropic's 400.
    let bad = json!({"model": "auto", "max_tokens": 10, "messages": [{"role": "user",
        "content": [{"type": "tool_use", "id": "x", "name": "get_weather", "input": {}}]}]});
    let message = anthropic_error(&g.messages(&key, bad).await, 400, "invalid_request_error");
    assert!(message.contains("not allowed"), "{message}");
    g.host.app.shutdown().await;
}
