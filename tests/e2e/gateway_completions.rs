//! `POST /v1/completions` (OpenAI's legacy completions, plain and streamed)
//! end to end (issue 15): the real host and `generate` component, a mock
//! Anthropic provider behind it (the prompt mapped onto a chat provider),
//! and the official `openai` SDK's `completions.create` (in
//! `gateway_images.rs`, which shares its host).

use super::*;

impl Gateway {
    async fn complete(&self, key: &str, body: Value) -> Reply {
        self.call(
            "POST",
            "/v1/completions",
            Some(key),
            Some(&body),
            &[("cache-control", "no-cache")],
        )
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_plain_streamed_and_refused_through_an_anthropic_provider() {
    let mock = MockLlm::start(Flavor::Anthropic).await.unwrap();
    let g = start(&[&mock], &[]).await;
    let (_, key) = g.new_key(json!({})).await;
    let r = g
        .complete(
            &key,
            json!({"model": "auto", "prompt": PROMPT, "max_tokens": 300}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["object"], "text_completion");
    assert!(v["id"].as_str().unwrap().starts_with("cmpl-"));
    assert!(!v["choices"][0]["text"].as_str().unwrap().is_empty());
    assert_eq!(v["choices"][0]["index"], 0);
    assert_eq!(v["choices"][0]["logprobs"], Value::Null);
    assert!(v["usage"]["total_tokens"].as_u64().unwrap() > 0);
    assert_eq!(r.header("x-dol-provider"), "anthropic");
    let sent = mock.requests().last().unwrap().json().unwrap();
    assert_eq!(sent["messages"][0]["role"], "user");
    assert_eq!(sent["max_tokens"], 300);
    let id = r.header("x-dol-request-id").to_owned();
    let rec = g.admin("GET", &format!("/admin/requests/{id}"), None).await;
    assert_eq!(rec.json()["route"], "completions");
    // Streamed: text_completion chunks, then [DONE].
    let r = g
        .complete(
            &key,
            json!({"model": "auto", "prompt": [PROMPT], "stream": true}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.header("content-type").starts_with("text/event-stream"));
    let chunks: Vec<Value> = r
        .text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(
        chunks.iter().all(|c| c["object"] == "text_completion"),
        "{}",
        r.text
    );
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["text"].as_str())
        .collect();
    assert!(!text.is_empty(), "{}", r.text);
    assert!(r.text.trim_end().ends_with("data: [DONE]"), "{}", r.text);
    // Every bad input: a 400 naming its parameter, nothing sent upstream.
    let before = mock.requests().len();
    let cases = [
        (json!(["x"]), "body"),
        (json!({"prompt": "p"}), "model"),
        (json!({"model": "auto"}), "prompt"),
        (json!({"model": "auto", "prompt": ""}), "prompt"),
        (json!({"model": "auto", "prompt": ["a", "b"]}), "prompt"),
        (json!({"model": "auto", "prompt": [1, 2]}), "prompt"),
        (
            json!({"model": "auto", "prompt": "p", "suffix": "s"}),
            "suffix",
        ),
        (
            json!({"model": "auto", "prompt": "p", "echo": true}),
            "echo",
        ),
        (json!({"model": "auto", "prompt": "p", "n": 2}), "n"),
        (
            json!({"model": "auto", "prompt": "p", "best_of": 2}),
            "best_of",
        ),
        (
            json!({"model": "auto", "prompt": "p", "logprobs": 1}),
            "logprobs",
        ),
        (
            json!({"model": "auto", "prompt": "p", "logit_bias": {}}),
            "logit_bias",
        ),
        (
            json!({"model": "auto", "prompt": "p", "max_tokens": -1}),
            "max_tokens",
        ),
        (
            json!({"model": "auto", "prompt": "p", "stream": "yes"}),
            "stream",
        ),
        (
            json!({"model": "auto", "prompt": "p", "colour": 1}),
            "colour",
        ),
    ];
    for (body, param) in cases {
        let r = g.complete(&key, body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        let v = r.json();
        assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
        assert_eq!(v["error"]["param"], param, "{body}: {v}");
    }
    assert_eq!(mock.requests().len(), before);
    let r = g
        .complete("sk-not-a-key", json!({"model": "auto", "prompt": "p"}))
        .await;
    assert_eq!(r.status, 401, "{}", r.text);
    g.host.app.shutdown().await;
}
