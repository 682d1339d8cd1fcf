//! `POST /v1/responses` (OpenAI's Responses API, plain and streamed) end to
//! end (issue 15): the real host and `generate` component, mock providers,
//! and the official `openai` SDK's `responses.create` and `responses.stream`.

use super::*;

fn respond(input: Value) -> Value {
    json!({"model": "auto", "input": input})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_answer_a_response_object_through_the_chat_pipeline() {
    let mock = MockLlm::start(Flavor::Gemini).await.unwrap();
    let g = start(&[&mock], &[]).await;
    let (_, key) = g.new_key(json!({})).await;
    let mut body =
        respond(json!([{"role": "user", "content": [{"type": "input_text", "text": PROMPT}]}]));
    body["instructions"] = json!("Use one paragraph.");
    body["max_output_tokens"] = json!(300);
    let r = g
        .call(
            "POST",
            "/v1/responses",
            Some(&key),
            Some(&body),
            &[("cache-control", "no-cache")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["object"], "response");
    assert!(v["id"].as_str().unwrap().starts_with("resp_"));
    assert_eq!(v["status"], "completed");
    assert_eq!(v["output"][0]["type"], "message");
    assert!(
        !v["output"][0]["content"][0]["text"]
            .as_str()
            .unwrap()
            .is_empty()
    );
    assert_eq!(v["instructions"], "Use one paragraph.");
    assert!(v["usage"]["total_tokens"].as_u64().unwrap() > 0);
    assert_eq!(r.header("x-dol-provider"), "gemini");
    let sent = mock.requests().last().unwrap().body.clone();
    assert!(sent.contains("Use one paragraph."), "{sent}");
    let id = r.header("x-dol-request-id").to_owned();
    let rec = g.admin("GET", &format!("/admin/requests/{id}"), None).await;
    assert_eq!(rec.json()["route"], "responses");
    g.host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_stream_the_typed_events() {
    let mock = MockLlm::start(Flavor::Anthropic).await.unwrap();
    let g = start(&[&mock], &[]).await;
    let (_, key) = g.new_key(json!({})).await;
    let mut body = respond(json!(PROMPT));
    body["stream"] = json!(true);
    let r = g
        .call(
            "POST",
            "/v1/responses",
            Some(&key),
            Some(&body),
            &[("cache-control", "no-cache")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.header("content-type").starts_with("text/event-stream"));
    let names: Vec<&str> = r
        .text
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(
        names[..2],
        ["response.created", "response.in_progress"],
        "{names:?}"
    );
    assert!(names.contains(&"response.output_text.delta"), "{names:?}");
    assert_eq!(names.last(), Some(&"response.completed"), "{names:?}");
    assert!(!r.text.contains("[DONE]"));
    g.host.app.shutdown().await;
}

/// The typed events of a streamed Responses answer: (name, data).
fn typed_events(text: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut name = String::new();
    for line in text.lines() {
        if let Some(n) = line.strip_prefix("event: ") {
            name = n.to_owned();
        } else if let Some(d) = line.strip_prefix("data: ") {
            out.push((name.clone(), serde_json::from_str(d).unwrap()));
        }
    }
    out
}

/// Streamed function calls from each provider mapping (OpenAI
/// `delta.tool_calls`, Anthropic `input_json_delta`, Gemini `functionCall`
/// parts) come out as `function_call` items with argument deltas, and
/// unstreamed as a `function_call` output item; one host with the three
/// mocks, each model pinned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_stream_function_calls_from_every_provider_mapping() {
    let openai = MockLlm::start(Flavor::OpenAi).await.unwrap();
    let anthropic = MockLlm::start(Flavor::Anthropic).await.unwrap();
    let gemini = MockLlm::start(Flavor::Gemini).await.unwrap();
    let g = start(&[&openai, &anthropic, &gemini], &[]).await;
    let (_, key) = g.new_key(json!({})).await;
    for (model, provider) in [
        ("gpt-4o-mini", "openai"),
        ("claude-haiku-4-5", "anthropic"),
        ("gemini-2.5-flash", "gemini"),
    ] {
        let body = json!({"model": model, "stream": true,
            "input": "What is the weather in Paris today?",
            "tools": [{"type": "function", "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]});
        let r = g
            .call("POST", "/v1/responses", Some(&key), Some(&body), &[])
            .await;
        assert_eq!(r.status, 200, "{model}: {}", r.text);
        assert_eq!(r.header("x-dol-provider"), provider);
        let ev = typed_events(&r.text);
        let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names[..3],
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added"
            ],
            "{model}: {names:?}"
        );
        assert_eq!(
            names.last(),
            Some(&"response.completed"),
            "{model}: {names:?}"
        );
        let added = &ev[2].1["item"];
        assert_eq!(added["type"], "function_call", "{model}: {added}");
        assert_eq!(added["name"], "get_weather");
        assert_eq!(added["status"], "in_progress");
        let deltas: String = ev
            .iter()
            .filter(|(n, _)| n == "response.function_call_arguments.delta")
            .map(|(_, d)| d["delta"].as_str().unwrap().to_owned())
            .collect();
        let (_, done) = ev
            .iter()
            .find(|(n, _)| n == "response.function_call_arguments.done")
            .unwrap_or_else(|| panic!("{model}: {names:?}"));
        assert_eq!(done["arguments"].as_str(), Some(deltas.as_str()), "{model}");
        assert_eq!(done["item_id"], added["id"]);
        let args: Value = serde_json::from_str(&deltas).unwrap();
        assert!(args["city"].is_string(), "{model}: {deltas}");
        let item_done = &ev
            .iter()
            .find(|(n, _)| n == "response.output_item.done")
            .unwrap()
            .1;
        assert_eq!(item_done["item"]["call_id"], added["call_id"]);
        assert_eq!(item_done["item"]["status"], "completed");
        let final_output = &ev.last().unwrap().1["response"]["output"];
        assert_eq!(
            final_output[0]["type"], "function_call",
            "{model}: {final_output}"
        );
        assert_eq!(final_output[0]["arguments"].as_str(), Some(deltas.as_str()));
        assert!(!r.text.contains("[DONE]"));
        // Unstreamed, the same call is one function_call output item.
        let mut plain = body.clone();
        plain["stream"] = json!(false);
        let r = g
            .call("POST", "/v1/responses", Some(&key), Some(&plain), &[])
            .await;
        assert_eq!(r.status, 200, "{model}: {}", r.text);
        let v = r.json();
        assert_eq!(v["output"][0]["type"], "function_call", "{model}: {v}");
        assert_eq!(v["output"][0]["name"], "get_weather");
    }
    g.host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_without_a_key_are_401() {
    let g = start(&[], &[]).await;
    let r = g
        .call(
            "POST",
            "/v1/responses",
            None,
            Some(&respond(json!("hi"))),
            &[],
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert_eq!(r.json()["error"]["type"], "authentication_error");
    g.host.app.shutdown().await;
}

async fn refused(body: Value, param: &str) {
    let g = start(&[], &[]).await;
    let (_, key) = g.new_key(json!({})).await;
    let r = g
        .call("POST", "/v1/responses", Some(&key), Some(&body), &[])
        .await;
    assert_eq!(r.status, 400, "{body}: {}", r.text);
    assert_eq!(r.json()["error"]["param"], param, "{body}: {}", r.text);
    g.host.app.shutdown().await;
}

macro_rules! bad_response {
    ($name:ident, $body:expr, $param:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            refused($body, $param).await;
        }
    };
}

bad_response!(
    responses_missing_input_is_400,
    json!({"model": "auto"}),
    "input"
);
bad_response!(
    responses_non_boolean_stream_is_400,
    json!({"model": "auto", "input": "x", "stream": "yes"}),
    "stream"
);
bad_response!(
    responses_non_function_tools_are_400,
    json!({"model": "auto", "input": "x", "tools": [{"type": "web_search"}]}),
    "tools[0].type"
);
bad_response!(
    responses_function_call_items_without_call_id_are_400,
    json!({"model": "auto", "input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}),
    "input[0].call_id"
);
bad_response!(
    responses_image_input_is_400,
    json!({"model": "auto", "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "http://x/y.png"}]}]}),
    "input[0].content"
);
bad_response!(
    responses_previous_response_id_is_400,
    json!({"model": "auto", "input": "x", "previous_response_id": "resp_1"}),
    "previous_response_id"
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_openai_python_sdk_creates_responses() {
    let mock = MockLlm::start(Flavor::OpenAi).await.unwrap();
    let g = start(&[&mock], &[]).await;
    let (_, key) = g.new_key(json!({})).await;
    let stdout = super::sdk_check("openai-sdk", "responses", g.host.url("/v1"), key).await;
    assert!(stdout.contains("all checks passed"));
    g.host.app.shutdown().await;
}
