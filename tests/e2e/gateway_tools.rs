//! Function calling and structured outputs on `/v1/chat/completions` end to
//! end (issue 15, item 4): the real host and `generate` component against a
//! mock provider of each wire format, plain and streamed, a tool round trip,
//! each refusal, and the official `openai` SDK.

use super::*;

fn weather(stream: bool) -> Value {
    json!({
        "model": "auto",
        "stream": stream,
        "messages": [{"role": "user", "content": "What is the weather in Paris today?"}],
        "tools": [{"type": "function", "function": {
            "name": "get_weather", "description": "Current weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
        }}]
    })
}

async fn tool_call_round_trip(flavor: Flavor) {
    let mock = MockLlm::start(flavor).await.unwrap();
    let g = start(&[&mock], &[]).await;
    let (_, key) = g.new_key(json!({})).await;
    let r = g.chat(&key, weather(false)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-dol-provider"), flavor.name());
    let v = r.json();
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{v}");
    assert_eq!(choice["message"]["content"], Value::Null, "{v}");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert!(args["city"].is_string(), "{args}");
    assert_eq!(
        v["dol"]["attempts"], 1,
        "a tool call is accepted at once: {v}"
    );
    // The provider saw the tools in its own wire format.
    let sent = mock.requests().last().unwrap().body.clone();
    let marker = match flavor {
        Flavor::OpenAi => "\"tools\"",
        Flavor::Anthropic => "\"input_schema\"",
        Flavor::Gemini => "\"functionDeclarations\"",
    };
    assert!(sent.contains(marker), "{sent}");

    // The caller runs the function and sends its result back: the model answers in text.
    let mut next = weather(false);
    next["messages"] = json!([
        {"role": "user", "content": "What is the weather in Paris today?"},
        {"role": "assistant", "content": null, "tool_calls": [call.clone()]},
        {"role": "tool", "tool_call_id": call["id"], "content": "18 degrees and sunny in Paris"}
    ]);
    let r = g.chat(&key, next).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");
    assert!(
        !v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .is_empty()
    );
    let sent = mock.requests().last().unwrap().body.clone();
    let result = match flavor {
        Flavor::OpenAi => "\"role\":\"tool\"",
        Flavor::Anthropic => "\"tool_result\"",
        Flavor::Gemini => "\"functionResponse\"",
    };
    assert!(sent.contains(result), "{sent}");
    g.host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_calls_round_trip_through_openai_compatible_providers() {
    tool_call_round_trip(Flavor::OpenAi).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_calls_round_trip_through_anthropic() {
    tool_call_round_trip(Flavor::Anthropic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_calls_round_trip_through_gemini() {
    tool_call_round_trip(Flavor::Gemini).await;
}

async fn streamed_tool_call(flavor: Flavor) {
    let mock = MockLlm::start(flavor).await.unwrap();
    let g = start(&[&mock], &[]).await;
    let (_, key) = g.new_key(json!({})).await;
    let r = g.chat(&key, weather(true)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let (_, frames) = r.sse();
    let chunks: Vec<Value> = frames
        .iter()
        .filter(|f| f.as_str() != "[DONE]")
        .map(|f| serde_json::from_str(f).unwrap())
        .collect();
    let pieces: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c.pointer("/choices/0/delta/tool_calls/0"))
        .collect();
    assert!(!pieces.is_empty(), "{}", r.text);
    assert_eq!(pieces[0]["function"]["name"], "get_weather");
    assert!(pieces[0]["id"].is_string());
    let arguments: String = pieces
        .iter()
        .filter_map(|p| p["function"]["arguments"].as_str())
        .collect();
    let args: Value = serde_json::from_str(&arguments).unwrap();
    assert!(args["city"].is_string(), "{arguments}");
    assert!(
        chunks
            .iter()
            .any(|c| c.pointer("/choices/0/finish_reason") == Some(&json!("tool_calls"))),
        "{}",
        r.text
    );
    assert_eq!(frames.last().map(String::as_str), Some("[DONE]"));
    g.host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_tool_calls_from_openai_compatible_providers_are_tool_call_deltas() {
    streamed_tool_call(Flavor::OpenAi).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_tool_use_from_anthropic_becomes_tool_call_deltas() {
    streamed_tool_call(Flavor::Anthropic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_function_calls_from_gemini_become_tool_call_deltas() {
    streamed_tool_call(Flavor::Gemini).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_object_for_an_object_schema_is_accepted_at_once() {
    let mock = MockLlm::start(Flavor::OpenAi).await.unwrap();
    mock.set_behavior(Behavior::with_answer("{}"));
    let g = start(&[&mock], &[]).await;
    let (_, key) = g.new_key(json!({})).await;
    let mut body = ask("auto", "List the entities in: hello");
    body["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "entities", "schema": {"type": "object"}}});
    let r = g.chat(&key, body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["choices"][0]["message"]["content"], "{}");
    assert_eq!(v["dol"]["attempts"], 1, "{v}");
    assert_eq!(v["dol"]["quality"], 10.0, "{v}");
    assert_eq!(
        mock.request_count(),
        1,
        "no retries for a valid structured answer"
    );
    // The schema reached the provider unchanged.
    assert!(mock.requests()[0].body.contains("\"json_schema\""));
    g.host.app.shutdown().await;
}

async fn refused(body: Value, param: &str) {
    let g = start(&[], &[]).await;
    let (_, key) = g.new_key(json!({})).await;
    let r = g.chat(&key, body.clone()).await;
    assert_eq!(r.status, 400, "{body}: {}", r.text);
    let v = r.json();
    assert_eq!(v["error"]["type"], "invalid_request_error", "{}", r.text);
    assert_eq!(v["error"]["param"], param, "{body}: {}", r.text);
    g.host.app.shutdown().await;
}

fn with(key: &str, value: Value) -> Value {
    let mut body = weather(false);
    body[key] = value;
    body
}

macro_rules! bad_tools {
    ($name:ident, $body:expr, $param:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            refused($body, $param).await;
        }
    };
}

bad_tools!(tools_not_an_array_is_400, with("tools", json!({})), "tools");
bad_tools!(
    non_function_tool_is_400,
    with("tools", json!([{"type": "web_search"}])),
    "tools[0].type"
);
bad_tools!(
    tool_without_function_is_400,
    with("tools", json!([{"type": "function"}])),
    "tools[0].function"
);
bad_tools!(
    tool_with_bad_name_is_400,
    with(
        "tools",
        json!([{"type": "function", "function": {"name": "get weather"}}])
    ),
    "tools[0].function.name"
);
bad_tools!(
    tool_with_non_object_parameters_is_400,
    with(
        "tools",
        json!([{"type": "function", "function": {"name": "f", "parameters": []}}])
    ),
    "tools[0].function.parameters"
);
bad_tools!(
    unknown_tool_choice_is_400,
    with("tool_choice", json!("always")),
    "tool_choice"
);
bad_tools!(
    tool_choice_naming_an_undeclared_function_is_400,
    with(
        "tool_choice",
        json!({"type": "function", "function": {"name": "nope"}})
    ),
    "tool_choice.function.name"
);
bad_tools!(
    tool_choice_without_tools_is_400,
    json!({"model": "auto", "messages": [{"role": "user", "content": "x"}], "tool_choice": "auto"}),
    "tool_choice"
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_openai_python_sdk_round_trips_a_tool_call() {
    let mock = MockLlm::start(Flavor::Anthropic).await.unwrap();
    let g = start(&[&mock], &[]).await;
    let (_, key) = g.new_key(json!({})).await;
    let stdout = super::sdk_check("openai-sdk", "tools", g.host.url("/v1"), key).await;
    assert!(stdout.contains("all checks passed"), "{stdout}");
    g.host.app.shutdown().await;
}
