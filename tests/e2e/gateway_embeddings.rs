//! `POST /v1/embeddings` end to end (issue 15): the real host and
//! `generate` component, mock OpenAI and Gemini providers speaking their
//! embeddings wire formats over real HTTP, and the official `openai` SDK.

use super::*;

impl Gateway {
    async fn embed(&self, key: &str, body: Value) -> Reply {
        self.call("POST", "/v1/embeddings", Some(key), Some(&body), &[])
            .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_reach_openai_priced_recorded_and_cached() {
    let mock = MockLlm::start(Flavor::OpenAi).await.unwrap();
    let g = start(&[&mock], &[]).await;
    let (_, key) = g.new_key(json!({})).await;
    let body = json!({"model": "text-embedding-3-small", "input": ["alpha beta", "gamma"], "dimensions": 4, "user": "u1"});
    let r = g.embed(&key, body.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "text-embedding-3-small");
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"][1]["index"], 1);
    let expected = dol_test_support::mock_embed::vector("gamma", 4);
    let got: Vec<f64> = v["data"][1]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(got, expected);
    assert_eq!(r.header("x-dol-provider"), "openai");
    assert_eq!(r.header("x-dol-cache"), "miss");
    // 3 tokens at $0.02 per 1M tokens: priced (a known, tiny cost), never "unknown".
    assert_eq!(v["usage"]["prompt_tokens"], 3);
    assert!(
        r.header("x-dol-cost-micros").parse::<u64>().is_ok(),
        "{:?}",
        r.headers
    );
    let sent = mock.requests();
    let upstream = sent.last().unwrap();
    assert_eq!(upstream.path, "/v1/embeddings");
    assert_eq!(upstream.header("authorization"), Some("Bearer key-openai"));
    let up = upstream.json().unwrap();
    assert_eq!(
        (up["dimensions"].clone(), up["user"].clone()),
        (json!(4), json!("u1"))
    );
    // The same input again: the cache answers, the provider is not called.
    let again = g.embed(&key, body).await;
    assert_eq!(again.header("x-dol-cache"), "hit");
    assert_eq!(mock.requests().len(), sent.len());
    assert_eq!(again.json()["data"], v["data"]);
    // The request record is there for health and metrics.
    let id = r.header("x-dol-request-id").to_owned();
    let rec = g.admin("GET", &format!("/admin/requests/{id}"), None).await;
    assert_eq!(rec.status, 200, "{}", rec.text);
    assert_eq!(rec.json()["route"], "embeddings");
    g.host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_reach_gemini_batch_embed_contents() {
    let mock = MockLlm::start(Flavor::Gemini).await.unwrap();
    let g = start(&[&mock], &[]).await;
    let (_, key) = g.new_key(json!({})).await;
    let r = g
        .embed(
            &key,
            json!({"model": "auto", "input": ["one", "two"], "dimensions": 3}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["model"], "gemini-embedding-001");
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 3);
    let sent = mock.requests();
    let upstream = sent.last().unwrap();
    assert_eq!(
        upstream.path,
        "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    );
    assert_eq!(upstream.header("x-goog-api-key"), Some("key-gemini"));
    assert_eq!(
        upstream.json().unwrap()["requests"][1]["content"]["parts"][0]["text"],
        "two"
    );
    // 150 inputs go out as two batches (Gemini takes at most 100 per call).
    let many: Vec<String> = (0..150).map(|i| format!("text number {i}")).collect();
    let before = mock.requests().len();
    let big = g
        .embed(
            &key,
            json!({"model": "gemini-embedding-001", "input": many}),
        )
        .await;
    assert_eq!(big.status, 200, "{}", big.text);
    assert_eq!(big.json()["data"].as_array().unwrap().len(), 150);
    assert_eq!(big.json()["data"][149]["index"], 149);
    assert_eq!(mock.requests().len(), before + 2);
    // Gemini takes no token arrays: a pinned Gemini model refuses them.
    let t = g
        .embed(
            &key,
            json!({"model": "gemini-embedding-001", "input": [1, 2, 3]}),
        )
        .await;
    assert_eq!(t.status, 400, "{}", t.text);
    assert_eq!(t.json()["error"]["param"], "input");
    g.host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_retry_then_fail_for_a_pinned_model_and_fall_back_offline_for_auto() {
    let mock = MockLlm::start(Flavor::OpenAi).await.unwrap();
    let g = start(&[&mock], &[]).await;
    let (_, key) = g.new_key(json!({})).await;
    mock.set_behavior(Behavior::failing_times(503, 1));
    let r = g
        .embed(
            &key,
            json!({"model": "text-embedding-3-small", "input": "retry me"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-dol-attempts"), "2");
    mock.set_behavior(Behavior::failing(500));
    let r = g
        .embed(
            &key,
            json!({"model": "text-embedding-3-small", "input": "fail"}),
        )
        .await;
    assert_eq!(r.status, 502, "{}", r.text);
    assert_eq!(r.json()["error"]["type"], "api_error");
    let r = g
        .embed(&key, json!({"model": "auto", "input": "fail"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-dol-provider"), "offline");
    assert_eq!(r.json()["model"], "dol-basic-embedding");
    g.host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_with_no_provider_are_offline_vectors() {
    let g = start(&[], &[]).await;
    let (_, key) = g.new_key(json!({})).await;
    let r = g
        .embed(
            &key,
            json!({"model": "auto", "input": "the cat sat", "encoding_format": "base64"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["model"], "dol-basic-embedding");
    // 256 float32 values, base64: 1024 bytes → 1368 characters.
    assert_eq!(v["data"][0]["embedding"].as_str().unwrap().len(), 1368);
    g.host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_budgets_answer_429() {
    let g = start(&[], &[]).await;
    let (_, key) = g.new_key(json!({"requests_per_minute": 1})).await;
    assert_eq!(
        g.embed(&key, json!({"model": "auto", "input": "a"}))
            .await
            .status,
        200
    );
    let r = g.embed(&key, json!({"model": "auto", "input": "b"})).await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert!(!r.header("retry-after").is_empty());
    g.host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_without_a_key_are_401() {
    let g = start(&[], &[]).await;
    let r = g
        .call(
            "POST",
            "/v1/embeddings",
            None,
            Some(&json!({"model": "auto", "input": "a"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert_eq!(r.json()["error"]["type"], "authentication_error");
    g.host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_with_a_wrong_key_are_401() {
    let g = start(&[], &[]).await;
    let r = g
        .embed("sk-not-a-key", json!({"model": "auto", "input": "a"}))
        .await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert_eq!(r.json()["error"]["code"], "invalid_api_key");
    g.host.app.shutdown().await;
}

/// One bad embeddings request: its status and the parameter (or words) the error names.
async fn refused(body: Value, status: u16, names: &str) {
    let g = start(&[], &[]).await;
    let (_, key) = g.new_key(json!({})).await;
    let r = g.embed(&key, body.clone()).await;
    assert_eq!(r.status, status, "{body}: {}", r.text);
    let v = r.json();
    assert!(
        v["error"]["param"].as_str() == Some(names)
            || v["error"]["message"].as_str().unwrap().contains(names),
        "{body}: {v}"
    );
    g.host.app.shutdown().await;
}

macro_rules! bad_embedding {
    ($name:ident, $body:expr, $status:expr, $names:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            refused($body, $status, $names).await;
        }
    };
}

bad_embedding!(
    embeddings_body_not_an_object_is_400,
    json!(["x"]),
    400,
    "body"
);
bad_embedding!(
    embeddings_missing_model_is_400,
    json!({"input": "x"}),
    400,
    "model"
);
bad_embedding!(
    embeddings_missing_input_is_400,
    json!({"model": "auto"}),
    400,
    "input"
);
bad_embedding!(
    embeddings_empty_input_is_400,
    json!({"model": "auto", "input": ""}),
    400,
    "input"
);
bad_embedding!(
    embeddings_bad_input_item_is_400,
    json!({"model": "auto", "input": [true]}),
    400,
    "input"
);
bad_embedding!(
    embeddings_zero_dimensions_is_400,
    json!({"model": "auto", "input": "x", "dimensions": 0}),
    400,
    "dimensions"
);
bad_embedding!(
    embeddings_unknown_encoding_is_400,
    json!({"model": "auto", "input": "x", "encoding_format": "int8"}),
    400,
    "encoding_format"
);
bad_embedding!(
    embeddings_non_string_user_is_400,
    json!({"model": "auto", "input": "x", "user": 5}),
    400,
    "user"
);
bad_embedding!(
    embeddings_chat_model_is_400,
    json!({"model": "gpt-4o-mini", "input": "x"}),
    400,
    "model"
);
bad_embedding!(
    embeddings_unknown_model_is_404,
    json!({"model": "no-such-embedder", "input": "x"}),
    404,
    "no-such-embedder"
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_openai_python_sdk_embeds_unchanged() {
    let mock = MockLlm::start(Flavor::OpenAi).await.unwrap();
    let g = start(&[&mock], &[]).await;
    let (_, key) = g.new_key(json!({})).await;
    let stdout = super::sdk_check("openai-sdk", "embeddings", g.host.url("/v1"), key).await;
    assert!(stdout.contains("all checks passed"));
    g.host.app.shutdown().await;
}
