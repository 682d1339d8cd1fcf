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
    responses_streamed_tools_are_400,
    json!({"model": "auto", "input": "x", "stream": true, "tools": [{"type": "function", "name": "f"}]}),
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
