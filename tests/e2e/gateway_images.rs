//! `POST /v1/images/generations` end to end (issue 15): the real host and
//! `generate` component, mock OpenAI and Gemini providers speaking their
//! image wire formats over real HTTP, and the official `openai` SDK.

use super::*;

impl Gateway {
    async fn image(&self, key: &str, body: Value) -> Reply {
        self.call(
            "POST",
            "/v1/images/generations",
            Some(key),
            Some(&body),
            &[],
        )
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_reach_openai_priced_per_image_recorded_and_fall_back_to_gemini() {
    let openai = MockLlm::start(Flavor::OpenAi).await.unwrap();
    let gemini = MockLlm::start(Flavor::Gemini).await.unwrap();
    let g = start(&[&openai, &gemini], &[]).await;
    let (_, key) = g.new_key(json!({})).await;
    let r = g
        .image(
            &key,
            json!({"model": "dall-e-3", "prompt": "a red boat", "size": "1792x1024", "quality": "hd", "user": "u1"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert!(v["created"].as_u64().unwrap() > 0);
    assert!(
        v["data"][0]["url"]
            .as_str()
            .unwrap()
            .starts_with("https://")
    );
    assert!(v["data"][0]["revised_prompt"].is_string());
    assert_eq!(r.header("x-dol-provider"), "openai");
    // One hd 1792x1024 image at $0.12.
    assert_eq!(r.header("x-dol-cost-micros"), "120000");
    let sent = openai.requests();
    let up = sent.last().unwrap();
    assert_eq!(up.path, "/v1/images/generations");
    assert_eq!(up.header("authorization"), Some("Bearer key-openai"));
    let body = up.json().unwrap();
    assert_eq!(
        (&body["size"], &body["quality"], &body["user"]),
        (&json!("1792x1024"), &json!("hd"), &json!("u1"))
    );
    let id = r.header("x-dol-request-id").to_owned();
    let rec = g.admin("GET", &format!("/admin/requests/{id}"), None).await;
    assert_eq!(rec.status, 200, "{}", rec.text);
    assert_eq!(rec.json()["route"], "images");
    // Every OpenAI image model fails for good: `auto` falls back to Imagen,
    // whose bytes come back as a data: URL (a URL was asked for).
    openai.set_behavior(Behavior::failing(404));
    let r = g
        .image(&key, json!({"prompt": "a blue kite", "n": 2}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-dol-provider"), "gemini");
    assert_eq!(r.header("x-dol-model"), "imagen-4.0-generate-001");
    assert_eq!(r.header("x-dol-cost-micros"), "80000");
    let data = r.json()["data"].as_array().unwrap().clone();
    assert_eq!(data.len(), 2);
    assert!(
        data[0]["url"]
            .as_str()
            .unwrap()
            .starts_with("data:image/png;base64,iVBOR")
    );
    let up = gemini.requests();
    let up = up.last().unwrap();
    assert_eq!(up.path, "/v1beta/models/imagen-4.0-generate-001:predict");
    assert_eq!(up.json().unwrap()["parameters"]["sampleCount"], 2);
    // A pinned model whose provider keeps failing: 502 in OpenAI's shape.
    let r = g
        .image(&key, json!({"model": "dall-e-2", "prompt": "p"}))
        .await;
    assert_eq!(r.status, 502, "{}", r.text);
    assert_eq!(r.json()["error"]["type"], "api_error");
    g.host.app.shutdown().await;
}

/// Every bad image request with one host: its status and the parameter
/// (or words) OpenAI's error shape names; nothing reaches a provider.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_image_requests_are_400_401_and_429_in_openais_shape() {
    let mock = MockLlm::start(Flavor::OpenAi).await.unwrap();
    let anthropic = MockLlm::start(Flavor::Anthropic).await.unwrap();
    let g = start(&[&mock, &anthropic], &[]).await;
    let (_, key) = g.new_key(json!({})).await;
    let cases = [
        (json!(["x"]), 400, "body"),
        (json!({}), 400, "prompt"),
        (json!({"prompt": ""}), 400, "prompt"),
        (json!({"prompt": 1}), 400, "prompt"),
        (json!({"prompt": "p", "model": 5}), 400, "model"),
        (json!({"prompt": "p", "n": 0}), 400, "n"),
        (json!({"prompt": "p", "n": 11}), 400, "n"),
        (json!({"prompt": "p", "size": "9x9"}), 400, "size"),
        (json!({"prompt": "p", "quality": "ultra"}), 400, "quality"),
        (
            json!({"prompt": "p", "response_format": "png"}),
            400,
            "response_format",
        ),
        (json!({"prompt": "p", "style": "bold"}), 400, "style"),
        (json!({"prompt": "p", "user": 1}), 400, "user"),
        (json!({"prompt": "p", "seed": 1}), 400, "seed"),
        (json!({"prompt": "p", "model": "gpt-4o-mini"}), 400, "model"),
        (
            json!({"prompt": "p", "model": "no-such-model"}),
            404,
            "no-such-model",
        ),
    ];
    for (body, status, names) in cases {
        let r = g.image(&key, body.clone()).await;
        assert_eq!(r.status, status, "{body}: {}", r.text);
        let v = r.json();
        let kind = if status == 404 {
            "not_found_error"
        } else {
            "invalid_request_error"
        };
        assert_eq!(v["error"]["type"], kind, "{v}");
        assert!(
            v["error"]["param"].as_str() == Some(names)
                || v["error"]["message"].as_str().unwrap().contains(names),
            "{body}: {v}"
        );
    }
    assert!(mock.requests().is_empty());
    let r = g.image("sk-not-a-key", json!({"prompt": "p"})).await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert_eq!(r.json()["error"]["code"], "invalid_api_key");
    // A budget smaller than one image.
    let (_, poor) = g.new_key(json!({"monthly_budget_micros": 1000})).await;
    let r = g
        .image(&poor, json!({"model": "dall-e-3", "prompt": "p"}))
        .await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert!(mock.requests().is_empty());
    g.host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_openai_python_sdk_generates_images_and_completions_unchanged() {
    // One host for both scenarios (CI time): images, then legacy completions.
    let mock = MockLlm::start(Flavor::OpenAi).await.unwrap();
    let g = start(&[&mock], &[]).await;
    let (_, key) = g.new_key(json!({})).await;
    for scenario in ["images", "completions"] {
        let stdout = super::sdk_check("openai-sdk", scenario, g.host.url("/v1"), key.clone()).await;
        assert!(stdout.contains("all checks passed"), "{scenario}: {stdout}");
    }
    g.host.app.shutdown().await;
}
