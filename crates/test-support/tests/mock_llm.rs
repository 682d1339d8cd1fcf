//! The mock LLM providers over real HTTP: each flavor's wire format, streaming,
//! failure injection, cut streams, models, recording and the control API.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: a panic is a test failure"
)]

use std::time::{Duration, Instant};

use dol_core::gateway::openai::FinishReason;
use dol_core::gateway::quality::{QualityConfig, QualityInput, score};
use dol_test_support::mock_llm::{Behavior, Finish, Flavor, MockLlm, MockModel};
use serde_json::{Value, json};

const PROMPT: &str = "How do rivers shape valleys and canyons over geological time?";

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

/// One server-sent event: its `event:` name (if any) and `data:`.
#[derive(Debug)]
struct Event {
    name: Option<String>,
    data: String,
}

fn parse_sse(text: &str) -> Vec<Event> {
    let text = text.replace("\r\n", "\n");
    text.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut name = None;
            let mut data = Vec::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = Some(v.trim().to_string());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push(v.trim_start().to_string());
                }
            }
            Event {
                name,
                data: data.join("\n"),
            }
        })
        .collect()
}

/// Reads a body chunk by chunk until it ends or the connection drops.
/// Returns the text received and whether it ended with an error.
async fn read_until_cut(mut response: reqwest::Response) -> (String, bool) {
    let mut bytes = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) => return (String::from_utf8(bytes).unwrap(), false),
            Err(_) => return (String::from_utf8(bytes).unwrap(), true),
        }
    }
}

fn quality(prompt: &str, answer: &str, wants_json: bool) -> f64 {
    let report = score(
        &QualityInput {
            prompt,
            answer,
            finish_reason: Some(FinishReason::Stop),
            wants_json,
            schema: None,
        },
        &QualityConfig::default(),
    );
    assert!(report.passed, "{report:?}\n{answer}");
    report.total
}

// ---------------------------------------------------------------------------
// OpenAI
// ---------------------------------------------------------------------------

fn openai_body(stream: bool) -> Value {
    json!({
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are a geology tutor."},
            {"role": "user", "content": PROMPT}
        ],
        "stream": stream,
        "stream_options": {"include_usage": true}
    })
}

async fn openai_chat(mock: &MockLlm, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{}/chat/completions", mock.base_url()))
        .bearer_auth("sk-test")
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn openai_completion_and_stream_agree() {
    let mock = MockLlm::start(Flavor::OpenAi).await.unwrap();
    assert!(mock.base_url().ends_with("/v1"));

    let response = openai_chat(&mock, &openai_body(false)).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-request-id"));
    let full: Value = response.json().await.unwrap();
    assert_eq!(full["object"], "chat.completion");
    assert_eq!(full["model"], "gpt-4o-mini");
    assert_eq!(full["choices"][0]["message"]["role"], "assistant");
    assert_eq!(full["choices"][0]["finish_reason"], "stop");
    let text = full["choices"][0]["message"]["content"].as_str().unwrap();
    let words = text.split_whitespace().count();
    assert!((60..=120).contains(&words), "{words}: {text}");
    for term in ["rivers", "valleys", "canyons", "geological"] {
        assert!(text.contains(term), "{term} missing from {text}");
    }
    assert!(quality(PROMPT, text, false) >= 9.5);
    let usage = &full["usage"];
    let (p, c) = (
        usage["prompt_tokens"].as_u64().unwrap(),
        usage["completion_tokens"].as_u64().unwrap(),
    );
    assert!(p > 0 && c > 0);
    assert_eq!(usage["total_tokens"].as_u64().unwrap(), p + c);
    assert_eq!(c, (words as u64 * 13).div_ceil(10));

    let response = openai_chat(&mock, &openai_body(true)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let events = parse_sse(&response.text().await.unwrap());
    assert!(events.iter().all(|e| e.name.is_none()));
    assert_eq!(events.last().unwrap().data, "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(&e.data).unwrap())
        .collect();
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let usage_chunk = chunks.last().unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"], full["usage"]);
    let finish_chunk = &chunks[chunks.len() - 2];
    assert_eq!(finish_chunk["choices"][0]["finish_reason"], "stop");
    assert_eq!(finish_chunk["choices"][0]["delta"], json!({}));
    let content: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(content.len(), 8, "default stream_chunks");
    assert_eq!(content.concat(), text);
    assert!(
        chunks[..chunks.len() - 2]
            .iter()
            .all(|c| c["choices"][0]["finish_reason"].is_null() && c["usage"].is_null())
    );

    // Without include_usage there is no usage chunk and no usage field.
    let mut body = openai_body(true);
    body.as_object_mut().unwrap().remove("stream_options");
    let events = parse_sse(&openai_chat(&mock, &body).await.text().await.unwrap());
    let last_chunk: Value = serde_json::from_str(&events[events.len() - 2].data).unwrap();
    assert_eq!(last_chunk["choices"][0]["finish_reason"], "stop");
    assert!(last_chunk.get("usage").is_none());
}

#[tokio::test]
async fn openai_json_modes_answer_json() {
    let mock = MockLlm::start(Flavor::OpenAi).await.unwrap();
    let mut body = openai_body(false);
    body["response_format"] = json!({"type": "json_object"});
    let full: Value = openai_chat(&mock, &body).await.json().await.unwrap();
    let text = full["choices"][0]["message"]["content"].as_str().unwrap();
    let answer: Value = serde_json::from_str(text).unwrap();
    assert!(answer.is_object());
    quality(PROMPT, text, true);

    body["response_format"] = json!({"type": "json_schema", "json_schema": {
        "name": "geo", "strict": true,
        "schema": {"type": "object", "required": ["summary", "landforms", "confidence"],
            "properties": {
                "summary": {"type": "string"},
                "landforms": {"type": "array", "items": {"type": "string"}},
                "confidence": {"type": "number"}
            }}
    }});
    // Streamed JSON concatenates to the same valid JSON.
    body["stream"] = json!(true);
    let events = parse_sse(&openai_chat(&mock, &body).await.text().await.unwrap());
    let text: String = events
        .iter()
        .filter(|e| e.data != "[DONE]")
        .filter_map(|e| {
            let v: Value = serde_json::from_str(&e.data).unwrap();
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert!(answer["summary"].as_str().unwrap().contains("rivers"));
    assert!(answer["landforms"].is_array());
    assert!(answer["confidence"].is_number());
    quality(PROMPT, &text, true);
}

#[tokio::test]
async fn openai_failures_count_down_with_retry_after() {
    let mock = MockLlm::start(Flavor::OpenAi).await.unwrap();
    mock.set_behavior(Behavior {
        retry_after_s: Some(3),
        ..Behavior::failing_times(429, 2)
    });
    for left in [1, 0] {
        let response = openai_chat(&mock, &openai_body(false)).await;
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], "3");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "rate_limit_exceeded");
        assert!(error["error"]["message"].is_string());
        assert!(error["error"]["type"].is_string());
        assert_eq!(mock.behavior().fail_times, Some(left));
    }
    let response = openai_chat(&mock, &openai_body(false)).await;
    assert_eq!(response.status(), 200);

    mock.set_behavior(Behavior::failing(500));
    for _ in 0..3 {
        let response = openai_chat(&mock, &openai_body(true)).await;
        assert_eq!(response.status(), 500);
        assert!(response.headers().get("retry-after").is_none());
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["type"], "server_error");
    }
    // Model listings are never failed.
    let response = client()
        .get(format!("{}/models", mock.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn openai_cut_stream_has_no_terminal_event() {
    let mock = MockLlm::start(Flavor::OpenAi).await.unwrap();
    mock.set_behavior(Behavior {
        cut_stream_after: Some(3),
        ..Behavior::default()
    });
    let response = openai_chat(&mock, &openai_body(true)).await;
    assert_eq!(response.status(), 200);
    let (text, cut) = read_until_cut(response).await;
    assert!(cut, "the connection must drop: {text}");
    assert!(!text.contains("[DONE]"));
    assert!(!text.contains("\"finish_reason\":\"stop\""));
    let content = parse_sse(&text)
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(&e.data).ok())
        .filter(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|s| !s.is_empty())
        })
        .count();
    assert_eq!(content, 3);

    // A non-streamed request is cut half-way through its JSON.
    let response = openai_chat(&mock, &openai_body(false)).await;
    let (text, cut) = read_until_cut(response).await;
    assert!(cut);
    assert!(serde_json::from_str::<Value>(&text).is_err());
}

#[tokio::test]
async fn openai_keys_limits_and_models() {
    let mock = MockLlm::start(Flavor::OpenAi).await.unwrap();
    mock.set_behavior(Behavior {
        require_key: Some("sk-right".into()),
        ..Behavior::default()
    });
    let url = format!("{}/chat/completions", mock.base_url());
    let no_key = client()
        .post(&url)
        .json(&openai_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(no_key.status(), 401);
    let wrong = openai_chat(&mock, &openai_body(false)).await; // sends sk-test
    assert_eq!(wrong.status(), 401);
    let error: Value = wrong.json().await.unwrap();
    assert_eq!(error["error"]["code"], "invalid_api_key");
    let right = client()
        .post(&url)
        .bearer_auth("sk-right")
        .json(&openai_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);

    // max_tokens below the answer's length truncates it.
    mock.set_behavior(Behavior::default());
    let mut body = openai_body(false);
    body["max_completion_tokens"] = json!(12);
    let full: Value = openai_chat(&mock, &body).await.json().await.unwrap();
    assert_eq!(full["choices"][0]["finish_reason"], "length");
    assert!(full["usage"]["completion_tokens"].as_u64().unwrap() <= 12);
    // An explicit finish and token counts.
    mock.set_behavior(Behavior {
        answer: Some("Short.".into()),
        finish: Finish::Length,
        prompt_tokens: Some(7),
        completion_tokens: Some(5),
        ..Behavior::default()
    });
    let full: Value = openai_chat(&mock, &openai_body(false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(full["choices"][0]["message"]["content"], "Short.");
    assert_eq!(full["choices"][0]["finish_reason"], "length");
    assert_eq!(
        full["usage"],
        json!({"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12})
    );

    let list: Value = client()
        .get(format!("{}/models", mock.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["object"], "list");
    assert_eq!(list["data"][0]["object"], "model");
    assert!(list["data"][0]["created"].is_i64());
    assert!(list["data"][0]["owned_by"].is_string());
    mock.set_models(["m-one", "m-two"]);
    let list: Value = client()
        .get(format!("{}/models", mock.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["m-one", "m-two"]);
    let one: Value = client()
        .get(format!("{}/models/m-two", mock.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["id"], "m-two");

    // strict_models rejects models not listed.
    mock.set_behavior(Behavior {
        strict_models: true,
        ..Behavior::default()
    });
    let response = openai_chat(&mock, &openai_body(false)).await;
    assert_eq!(response.status(), 404);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "model_not_found");
    let mut body = openai_body(false);
    body["model"] = json!("m-one");
    assert_eq!(openai_chat(&mock, &body).await.status(), 200);

    // Bad requests.
    let response = openai_chat(&mock, &json!({"model": "m-one"})).await;
    assert_eq!(response.status(), 400);
    let response = client().post(&url).body("{not json").send().await.unwrap();
    assert_eq!(response.status(), 400);
    let response = client().get(mock.url("/v1/nothing")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "unknown_url");
}

#[tokio::test]
async fn delays_apply_before_headers_and_between_chunks() {
    let mock = MockLlm::start(Flavor::OpenAi).await.unwrap();
    mock.set_behavior(Behavior {
        delay_ms: 150,
        ..Behavior::default()
    });
    let started = Instant::now();
    assert_eq!(openai_chat(&mock, &openai_body(false)).await.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(150));

    mock.set_behavior(Behavior {
        chunk_delay_ms: 30,
        stream_chunks: 4,
        ..Behavior::default()
    });
    let started = Instant::now();
    let response = openai_chat(&mock, &openai_body(true)).await;
    let headers_after = started.elapsed();
    let text = response.text().await.unwrap();
    // preamble, 4 pieces, terminal: 5 pauses.
    assert!(
        headers_after < Duration::from_millis(150),
        "{headers_after:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert!(text.ends_with("data: [DONE]\n\n"));
}

// ---------------------------------------------------------------------------
// Anthropic
// ---------------------------------------------------------------------------

fn anthropic_body(stream: bool) -> Value {
    json!({
        "model": "claude-haiku-4-5-20251001",
        "max_tokens": 1024,
        "system": "You are a geology tutor.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": PROMPT}]}],
        "stream": stream
    })
}

async fn anthropic_messages(mock: &MockLlm, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{}/v1/messages", mock.base_url()))
        .header("x-api-key", "sk-ant-test")
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn anthropic_message_and_stream_agree() {
    let mock = MockLlm::start(Flavor::Anthropic).await.unwrap();
    let response = anthropic_messages(&mock, &anthropic_body(false)).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("request-id"));
    let message: Value = response.json().await.unwrap();
    assert_eq!(message["type"], "message");
    assert_eq!(message["role"], "assistant");
    assert_eq!(message["model"], "claude-haiku-4-5-20251001");
    assert_eq!(message["stop_reason"], "end_turn");
    assert_eq!(message["content"][0]["type"], "text");
    let text = message["content"][0]["text"].as_str().unwrap();
    quality(PROMPT, text, false);
    let input = message["usage"]["input_tokens"].as_u64().unwrap();
    let output = message["usage"]["output_tokens"].as_u64().unwrap();
    assert!(input > 0 && output > 0);

    let response = anthropic_messages(&mock, &anthropic_body(true)).await;
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let events = parse_sse(&response.text().await.unwrap());
    let names: Vec<&str> = events.iter().map(|e| e.name.as_deref().unwrap()).collect();
    let deltas = names
        .iter()
        .filter(|n| **n == "content_block_delta")
        .count();
    assert_eq!(deltas, 8);
    let mut expected = vec!["message_start", "content_block_start", "ping"];
    expected.extend(std::iter::repeat_n("content_block_delta", deltas));
    expected.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(names, expected);
    let data: Vec<Value> = events
        .iter()
        .map(|e| serde_json::from_str(&e.data).unwrap())
        .collect();
    for (event, value) in events.iter().zip(&data) {
        assert_eq!(value["type"], event.name.as_deref().unwrap());
    }
    assert_eq!(data[0]["message"]["usage"]["input_tokens"], input);
    let streamed: String = data
        .iter()
        .filter(|d| d["type"] == "content_block_delta")
        .map(|d| {
            assert_eq!(d["delta"]["type"], "text_delta");
            d["delta"]["text"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(streamed, text);
    let delta = &data[data.len() - 2];
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["output_tokens"], output);

    // max_tokens is honoured.
    let mut body = anthropic_body(false);
    body["max_tokens"] = json!(10);
    let message: Value = anthropic_messages(&mock, &body).await.json().await.unwrap();
    assert_eq!(message["stop_reason"], "max_tokens");
    assert!(message["usage"]["output_tokens"].as_u64().unwrap() <= 10);
}

#[tokio::test]
async fn anthropic_headers_errors_and_json() {
    let mock = MockLlm::start(Flavor::Anthropic).await.unwrap();
    let url = format!("{}/v1/messages", mock.base_url());
    let no_key = client()
        .post(&url)
        .header("anthropic-version", "2023-06-01")
        .json(&anthropic_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(no_key.status(), 401);
    let error: Value = no_key.json().await.unwrap();
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "authentication_error");
    let no_version = client()
        .post(&url)
        .header("x-api-key", "k")
        .json(&anthropic_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(no_version.status(), 400);
    let error: Value = no_version.json().await.unwrap();
    assert_eq!(error["error"]["type"], "invalid_request_error");
    let mut body = anthropic_body(false);
    body.as_object_mut().unwrap().remove("max_tokens");
    assert_eq!(anthropic_messages(&mock, &body).await.status(), 400);

    for (status, kind) in [
        (529, "overloaded_error"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (400, "invalid_request_error"),
        (401, "authentication_error"),
    ] {
        mock.push_script(Behavior {
            retry_after_s: Some(1),
            ..Behavior::failing(status)
        });
        let response = anthropic_messages(&mock, &anthropic_body(true)).await;
        assert_eq!(response.status().as_u16(), status);
        assert_eq!(response.headers()["retry-after"], "1");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["type"], "error");
        assert_eq!(error["error"]["type"], kind);
        assert!(error["error"]["message"].is_string());
    }
    assert_eq!(
        anthropic_messages(&mock, &anthropic_body(false))
            .await
            .status(),
        200
    );

    // The word JSON in the system prompt asks for a JSON answer.
    let mut body = anthropic_body(false);
    body["system"] = json!([{"type": "text", "text": "Reply with a JSON object only."}]);
    let message: Value = anthropic_messages(&mock, &body).await.json().await.unwrap();
    let text = message["content"][0]["text"].as_str().unwrap();
    assert!(serde_json::from_str::<Value>(text).unwrap().is_object());

    // A cut stream never reaches message_stop.
    mock.push_script(Behavior {
        cut_stream_after: Some(2),
        ..Behavior::default()
    });
    let (text, cut) = read_until_cut(anthropic_messages(&mock, &anthropic_body(true)).await).await;
    assert!(cut);
    let names: Vec<String> = parse_sse(&text)
        .into_iter()
        .filter_map(|e| e.name)
        .collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta"
        ]
    );

    let models: Value = client()
        .get(format!("{}/v1/models", mock.base_url()))
        .header("x-api-key", "k")
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["has_more"], false);
    let first = &models["data"][0];
    assert_eq!(first["type"], "model");
    assert!(first["display_name"].is_string());
    assert!(first["created_at"].as_str().unwrap().ends_with('Z'));
}

// ---------------------------------------------------------------------------
// Gemini
// ---------------------------------------------------------------------------

fn gemini_body() -> Value {
    json!({
        "systemInstruction": {"parts": [{"text": "You are a geology tutor."}]},
        "contents": [{"role": "user", "parts": [{"text": PROMPT}]}],
        "generationConfig": {"temperature": 0.2}
    })
}

async fn gemini_post(mock: &MockLlm, path: &str, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{}{path}", mock.base_url()))
        .header("x-goog-api-key", "g-key")
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn gemini_generate_and_stream_agree() {
    let mock = MockLlm::start(Flavor::Gemini).await.unwrap();
    let response = gemini_post(
        &mock,
        "/v1beta/models/gemini-2.5-flash:generateContent",
        &gemini_body(),
    )
    .await;
    assert_eq!(response.status(), 200);
    let full: Value = response.json().await.unwrap();
    let candidate = &full["candidates"][0];
    assert_eq!(candidate["content"]["role"], "model");
    assert_eq!(candidate["finishReason"], "STOP");
    let text = candidate["content"]["parts"][0]["text"].as_str().unwrap();
    quality(PROMPT, text, false);
    let usage = &full["usageMetadata"];
    let p = usage["promptTokenCount"].as_u64().unwrap();
    let c = usage["candidatesTokenCount"].as_u64().unwrap();
    assert!(p > 0 && c > 0);
    assert_eq!(usage["totalTokenCount"].as_u64().unwrap(), p + c);

    let response = gemini_post(
        &mock,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        &gemini_body(),
    )
    .await;
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let raw = response.text().await.unwrap();
    assert!(
        raw.contains("\r\n\r\n"),
        "Gemini frames end with CRLF pairs"
    );
    let chunks: Vec<Value> = parse_sse(&raw)
        .iter()
        .map(|e| serde_json::from_str(&e.data).unwrap())
        .collect();
    assert_eq!(chunks.len(), 8);
    let streamed: String = chunks
        .iter()
        .map(|c| {
            c["candidates"][0]["content"]["parts"][0]["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(streamed, text);
    let mut previous = 0;
    for (i, chunk) in chunks.iter().enumerate() {
        let last = i + 1 == chunks.len();
        assert_eq!(
            chunk["candidates"][0].get("finishReason").is_some(),
            last,
            "{chunk}"
        );
        let so_far = chunk["usageMetadata"]["candidatesTokenCount"]
            .as_u64()
            .unwrap();
        assert!(so_far >= previous.max(1));
        previous = so_far;
    }
    assert_eq!(
        chunks.last().unwrap()["usageMetadata"],
        full["usageMetadata"]
    );

    // Without alt=sse the stream is one JSON array of the same responses.
    let response = gemini_post(
        &mock,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
        &gemini_body(),
    )
    .await;
    let array: Value = response.json().await.unwrap();
    assert_eq!(array.as_array().unwrap().len(), 8);

    // responseMimeType application/json gives JSON; maxOutputTokens truncates.
    let mut body = gemini_body();
    body["generationConfig"] = json!({"responseMimeType": "application/json",
        "responseSchema": {"type": "OBJECT", "properties": {"answer": {"type": "STRING"}}}});
    let full: Value = gemini_post(
        &mock,
        "/v1beta/models/gemini-2.5-flash:generateContent",
        &body,
    )
    .await
    .json()
    .await
    .unwrap();
    let text = full["candidates"][0]["content"]["parts"][0]["text"]
        .as_str()
        .unwrap();
    let answer: Value = serde_json::from_str(text).unwrap();
    assert!(answer["answer"].is_string());
    body["generationConfig"] = json!({"maxOutputTokens": 5});
    let full: Value = gemini_post(
        &mock,
        "/v1beta/models/gemini-2.5-flash:generateContent",
        &body,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(full["candidates"][0]["finishReason"], "MAX_TOKENS");
}

#[tokio::test]
async fn gemini_errors_keys_models_and_cuts() {
    let mock = MockLlm::start(Flavor::Gemini).await.unwrap();
    let path = "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse";
    for (status, kind) in [
        (429, "RESOURCE_EXHAUSTED"),
        (500, "INTERNAL"),
        (503, "UNAVAILABLE"),
        (400, "INVALID_ARGUMENT"),
    ] {
        mock.push_script(Behavior {
            retry_after_s: Some(7),
            ..Behavior::failing(status)
        });
        let response = gemini_post(&mock, path, &gemini_body()).await;
        assert_eq!(response.status().as_u16(), status);
        assert_eq!(response.headers()["retry-after"], "7");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], status);
        assert_eq!(error["error"]["status"], kind);
    }

    mock.set_behavior(Behavior {
        require_key: Some("good".into()),
        cut_stream_after: Some(1),
        ..Behavior::default()
    });
    let response = gemini_post(&mock, path, &gemini_body()).await; // header g-key
    assert_eq!(response.status(), 401);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["status"], "UNAUTHENTICATED");
    let response = client()
        .post(mock.url(&format!("{path}&key=good")))
        .json(&gemini_body())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (text, cut) = read_until_cut(response).await;
    assert!(cut);
    let events = parse_sse(&text);
    assert_eq!(events.len(), 1);
    assert!(!text.contains("finishReason"));

    mock.set_behavior(Behavior::default());
    let models: Value = client()
        .get(mock.url("/v1beta/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let first = &models["models"][0];
    assert!(first["name"].as_str().unwrap().starts_with("models/"));
    assert!(first["displayName"].is_string());
    assert!(first["inputTokenLimit"].is_u64());
    assert!(first["outputTokenLimit"].is_u64());
    assert!(
        first["supportedGenerationMethods"]
            .as_array()
            .unwrap()
            .contains(&json!("streamGenerateContent"))
    );
    mock.set_models([MockModel::new("gemini-mock").display_name("Gemini Mock")]);
    let models: Value = client()
        .get(mock.url("/v1beta/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["models"][0]["name"], "models/gemini-mock");
    assert_eq!(models["models"][0]["displayName"], "Gemini Mock");
    let response = gemini_post(
        &mock,
        "/v1beta/models/gemini-2.0-flash:generateContent",
        &json!({"contents": []}),
    )
    .await;
    assert_eq!(response.status(), 400);
}

// ---------------------------------------------------------------------------
// Scripts, dice, recording and the control API
// ---------------------------------------------------------------------------

#[tokio::test]
async fn script_items_apply_once_each_in_order() {
    let mock = MockLlm::start(Flavor::OpenAi).await.unwrap();
    mock.push_script(Behavior::with_answer("first"));
    mock.push_script(Behavior::failing(503));
    // Model listings do not use up script items.
    client()
        .get(format!("{}/models", mock.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(mock.script_len(), 2);
    let first: Value = openai_chat(&mock, &openai_body(false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["choices"][0]["message"]["content"], "first");
    assert_eq!(openai_chat(&mock, &openai_body(false)).await.status(), 503);
    let third: Value = openai_chat(&mock, &openai_body(false))
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(third["choices"][0]["message"]["content"], "first");
    assert_eq!(mock.script_len(), 0);
}

#[tokio::test]
async fn a_model_behaviour_applies_to_that_model_only() {
    let mock = MockLlm::start(Flavor::OpenAi).await.unwrap();
    mock.set_model_behavior("gpt-4o-mini", Behavior::failing(500));
    assert_eq!(openai_chat(&mock, &openai_body(false)).await.status(), 500);
    let mut other = openai_body(false);
    other["model"] = json!("gpt-4o");
    assert_eq!(openai_chat(&mock, &other).await.status(), 200);
    // The script still wins over a model behaviour.
    mock.push_script(Behavior::with_answer("scripted"));
    let scripted: Value = openai_chat(&mock, &openai_body(false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(scripted["choices"][0]["message"]["content"], "scripted");
    // Over the control API: set, read, delete.
    let url = mock.url("/__mock/behavior/gpt-4o");
    let put = client()
        .put(&url)
        .json(&json!({"answer": "from control"}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let answer: Value = openai_chat(&mock, &other).await.json().await.unwrap();
    assert_eq!(answer["choices"][0]["message"]["content"], "from control");
    let bad = client()
        .put(&url)
        .json(&json!({"answr": "typo"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let deleted: Value = client()
        .delete(&url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(deleted["removed"], true);
    assert_eq!(client().get(&url).send().await.unwrap().status(), 404);
    mock.clear_model_behaviors();
    assert_eq!(openai_chat(&mock, &openai_body(false)).await.status(), 200);
}

async fn statuses_with_rate(seed: u64) -> Vec<u16> {
    let mock = MockLlm::start(Flavor::OpenAi).await.unwrap();
    mock.set_behavior(Behavior {
        fail_rate: 0.5,
        fail_status: Some(503),
        seed: Some(seed),
        ..Behavior::default()
    });
    let mut statuses = Vec::new();
    for _ in 0..40 {
        statuses.push(
            openai_chat(&mock, &openai_body(false))
                .await
                .status()
                .as_u16(),
        );
    }
    statuses
}

#[tokio::test]
async fn fail_rate_is_reproducible() {
    let a = statuses_with_rate(7).await;
    let b = statuses_with_rate(7).await;
    assert_eq!(a, b);
    let failed = a.iter().filter(|s| **s == 503).count();
    assert!((10..=30).contains(&failed), "{failed} of 40");
    assert!(a.iter().all(|s| *s == 503 || *s == 200));
    assert_ne!(a, statuses_with_rate(8).await);
}

#[tokio::test]
async fn requests_are_recorded() {
    let mock = MockLlm::start(Flavor::OpenAi).await.unwrap();
    openai_chat(&mock, &openai_body(false)).await;
    client()
        .get(mock.url("/v1/models?limit=5"))
        .header("x-trace", "abc")
        .send()
        .await
        .unwrap();
    client()
        .get(mock.url("/__mock/requests"))
        .send()
        .await
        .unwrap();
    assert_eq!(mock.request_count(), 2);
    let requests = mock.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].path, "/v1/chat/completions");
    assert_eq!(requests[0].header("Authorization"), Some("Bearer sk-test"));
    assert_eq!(requests[0].header("content-type"), Some("application/json"));
    assert_eq!(requests[0].json().unwrap()["model"], "gpt-4o-mini");
    assert_eq!(requests[1].path, "/v1/models?limit=5");
    assert_eq!(requests[1].header("x-trace"), Some("abc"));
    assert!(requests[1].header("host").is_none());
    mock.clear_requests();
    assert_eq!(mock.request_count(), 0);
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn control_api_over_http() {
    let mock = MockLlm::start(Flavor::Anthropic).await.unwrap();
    let http = client();
    let put = |path: &str, body: Value| {
        let request = http.put(mock.url(path)).json(&body);
        async move { request.send().await.unwrap() }
    };

    let current: Value = http
        .get(mock.url("/__mock/behavior"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(current["stream_chunks"], 8);
    assert_eq!(current["fail_status"], Value::Null);

    let response = put(
        "/__mock/behavior",
        json!({"answer": "from http", "stream_chunks": 2}),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(mock.behavior().answer.as_deref(), Some("from http"));
    let patched: Value = http
        .patch(mock.url("/__mock/behavior"))
        .json(&json!({"delay_ms": 1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(patched["answer"], "from http");
    assert_eq!(patched["delay_ms"], 1);
    let typo = put("/__mock/behavior", json!({"delay": 5})).await;
    assert_eq!(typo.status(), 400);

    let queued: Value = http
        .post(mock.url("/__mock/script"))
        .json(&json!([{"answer": "scripted"}, {"fail_status": 529, "fail_message": "busy"}]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(queued["queued"], 2);
    let message: Value = anthropic_messages(&mock, &anthropic_body(false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(message["content"][0]["text"], "scripted");
    let response = anthropic_messages(&mock, &anthropic_body(false)).await;
    assert_eq!(response.status(), 529);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["message"], "busy");
    let message: Value = anthropic_messages(&mock, &anthropic_body(false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(message["content"][0]["text"], "from http");

    let models = put(
        "/__mock/models",
        json!(["claude-a", {"id": "claude-b", "display_name": "Claude B"}]),
    )
    .await;
    assert_eq!(models.status(), 200);
    assert_eq!(mock.models()[1].display_name.as_deref(), Some("Claude B"));

    let recorded: Value = http
        .get(mock.url("/__mock/requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(recorded.as_array().unwrap().len(), 3);
    assert_eq!(recorded[0]["headers"]["anthropic-version"], "2023-06-01");
    assert_eq!(recorded[0]["path"], "/v1/messages");
    let stats: Value = http
        .get(mock.url("/__mock/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        stats,
        json!({"flavor": "anthropic", "request_count": 3, "script_len": 0})
    );

    let reset = http.post(mock.url("/__mock/reset")).send().await.unwrap();
    assert_eq!(reset.status(), 200);
    assert_eq!(mock.behavior(), Behavior::default());
    assert_eq!(mock.request_count(), 0);
    assert_eq!(mock.models()[0].id, "claude-sonnet-4-5-20250929");
    assert_eq!(
        http.get(mock.url("/__mock/nope"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn keep_alive_serves_many_requests_quickly() {
    let mock = MockLlm::start(Flavor::OpenAi).await.unwrap();
    let http = client();
    let url = format!("{}/chat/completions", mock.base_url());
    let started = Instant::now();
    for _ in 0..200 {
        let response = http
            .post(&url)
            .json(&openai_body(true))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.text().await.unwrap();
    }
    assert_eq!(mock.request_count(), 200);
    // Generous: a debug build on a loaded machine; no per-request sleeps.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn binary_serves_and_is_steerable() {
    use tokio::io::AsyncBufReadExt;

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mock-llm"))
        .args([
            "--flavor",
            "gemini",
            "--listen",
            "127.0.0.1:0",
            "--behavior",
            r#"{"answer": "hello from the binary"}"#,
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let base = first.strip_prefix("listening on ").unwrap().to_string();
    let http = client();
    let generate = format!("{base}/v1beta/models/gemini-2.5-flash:generateContent");
    let full: Value = http
        .post(&generate)
        .json(&gemini_body())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        full["candidates"][0]["content"]["parts"][0]["text"],
        "hello from the binary"
    );
    let response = http
        .put(format!("{base}/__mock/behavior"))
        .json(&json!({"fail_status": 429, "fail_times": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = http
        .post(&generate)
        .json(&gemini_body())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let response = http
        .post(&generate)
        .json(&gemini_body())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    child.kill().await.unwrap();
}
