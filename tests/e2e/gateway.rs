//! The generation gateway end to end: the DOL app (spin.toml) on the real
//! host, the real `generate` component, and mock providers speaking the
//! OpenAI, Anthropic and Gemini wire formats over real HTTP.

use std::time::{Duration, Instant};

use dol_test_support::mock_llm::{Behavior, Flavor, MockLlm};
use dol_test_support::{TestHost, TestHostBuilder};
use serde_json::{Value, json};

const APP: &str = "spin.toml";
pub(crate) const ADMIN: &str = "admin-secret";
pub(crate) const PROMPT: &str = "Explain how Rust ownership and borrowing prevent data races";

/// Mocks enabled for a test; their keys are fixed.
pub(crate) struct Gateway {
    pub(crate) host: TestHost,
}

pub(crate) fn var(name: &str) -> String {
    format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase())
}

pub(crate) async fn start(mocks: &[&MockLlm], extra: &[(&str, &str)]) -> Gateway {
    start_over(mocks, extra, None).await
}

/// [`start`] over a copy of a stopped host's state (`state`), if given.
pub(crate) async fn start_over(
    mocks: &[&MockLlm],
    extra: &[(&str, &str)],
    state: Option<&std::path::Path>,
) -> Gateway {
    let mut b = builder(mocks, extra);
    if let Some(dir) = state {
        b = b.state_from(dir);
    }
    Gateway {
        host: b.start().await,
    }
}

/// The builder [`start`] uses: the app with `mocks` as its providers and
/// `extra` variables.
pub(crate) fn builder(mocks: &[&MockLlm], extra: &[(&str, &str)]) -> TestHostBuilder {
    let mut b = TestHost::builder(APP)
        .variable(&var("admin_token"), ADMIN)
        .variable(&var("gateway_retry_delay_ms"), "20")
        .variable(&var("gateway_attempt_timeout_ms"), "1500")
        .variable(&var("gateway_timeout_ms"), "6000")
        .variable(&var("gateway_min_attempt_ms"), "50");
    for m in mocks {
        let name = m.flavor().name();
        b = b
            .variable(&var(&format!("{name}_api_key")), &format!("key-{name}"))
            .variable(&var(&format!("{name}_base_url")), &m.base_url());
    }
    for (k, v) in extra {
        b = b.variable(&var(k), v);
    }
    b
}

pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) text: String,
}

impl Reply {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|_| panic!("not JSON: {}", self.text))
    }
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
    /// The streamed text and the data frames of an SSE body.
    fn sse(&self) -> (String, Vec<String>) {
        let frames: Vec<String> = self
            .text
            .split("\n\n")
            .filter_map(|f| f.strip_prefix("data: "))
            .map(str::to_owned)
            .collect();
        let text = frames
            .iter()
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .filter_map(|v| {
                v["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect();
        (text, frames)
    }
}

impl Gateway {
    pub(crate) async fn call(
        &self,
        method: &str,
        path: &str,
        auth: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut r = self.host.client.request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            self.host.url(path),
        );
        if let Some(a) = auth {
            r = r.bearer_auth(a);
        }
        if let Some(b) = body {
            r = r
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        let resp = r.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        Reply {
            status,
            headers,
            text,
        }
    }

    pub(crate) async fn admin(&self, method: &str, path: &str, body: Option<&Value>) -> Reply {
        self.call(method, path, Some(ADMIN), body, &[]).await
    }

    async fn new_key(&self, limits: Value) -> (String, String) {
        let r = self
            .admin(
                "POST",
                "/admin/keys",
                Some(&json!({"name": "test", "limits": limits})),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        let v = r.json();
        (
            v["id"].as_str().unwrap().to_owned(),
            v["key"].as_str().unwrap().to_owned(),
        )
    }

    pub(crate) async fn chat(&self, key: &str, body: Value) -> Reply {
        self.call(
            "POST",
            "/v1/chat/completions",
            Some(key),
            Some(&body),
            &[("cache-control", "no-cache")],
        )
        .await
    }
}

pub(crate) fn ask(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

fn ask_stream(model: &str, text: &str) -> Value {
    json!({"model": model, "stream": true, "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": text}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_required_created_listed_and_revoked() {
    let g = start(&[], &[]).await;
    let r = g
        .call(
            "POST",
            "/v1/chat/completions",
            None,
            Some(&ask("auto", PROMPT)),
            &[],
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert_eq!(r.json()["error"]["type"], "authentication_error");
    let r = g
        .call(
            "POST",
            "/v1/chat/completions",
            Some("dol_sk_nope"),
            Some(&ask("auto", PROMPT)),
            &[],
        )
        .await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (401, Some("invalid_api_key"))
    );
    // Admin routes need the admin token.
    let r = g
        .call(
            "POST",
            "/admin/keys",
            None,
            Some(&json!({"name": "x"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 401);
    let r = g
        .call(
            "POST",
            "/admin/keys",
            Some("wrong"),
            Some(&json!({"name": "x"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 401);
    let r = g
        .admin(
            "POST",
            "/admin/keys",
            Some(&json!({"name": "x", "limits": {"requests_per_minute": -1}})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = g
        .admin(
            "POST",
            "/admin/keys",
            Some(&json!({"name": "x", "colour": "red"})),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.text.contains("colour"));

    let (id, key) = g.new_key(json!({})).await;
    assert!(key.starts_with("dol_sk_"));
    let r = g.chat(&key, ask("auto", PROMPT)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let listed = g.admin("GET", "/admin/keys", None).await;
    assert!(listed.text.contains(&id));
    assert!(
        !listed.text.contains(&key),
        "the secret must never be listed"
    );
    let r = g.admin("DELETE", &format!("/admin/keys/{id}"), None).await;
    assert_eq!(r.status, 200);
    assert!(r.json()["revoked_at"].is_i64());
    let r = g.chat(&key, ask("auto", PROMPT)).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        g.admin("DELETE", "/admin/keys/key_missing", None)
            .await
            .status,
        404
    );
    g.host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_provider_the_offline_tier_answers_and_is_listed() {
    let g = start(&[], &[]).await;
    let (_, key) = g.new_key(json!({})).await;
    let models = g.call("GET", "/v1/models", Some(&key), None, &[]).await;
    assert_eq!(models.status, 200);
    let ids: Vec<String> = models.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(ids.contains(&"dol-basic-offline".to_owned()), "{ids:?}");
    let r = g.chat(&key, ask("auto", PROMPT)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(r.header("x-dol-provider"), "offline");
    assert_eq!(r.header("x-dol-tier"), "basic");
    assert!(
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .starts_with("[DOL basic tier")
    );
    assert_eq!(v["dol"]["cost_micros"], 0);
    let s = g.chat(&key, ask_stream("auto", PROMPT)).await;
    assert_eq!(s.status, 200);
    assert!(s.header("content-type").starts_with("text/event-stream"));
    let (text, frames) = s.sse();
    assert!(text.starts_with("[DOL basic tier"));
    assert_eq!(frames.last().map(String::as_str), Some("[DONE]"));
    g.host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_wire_format_answers_and_streams() {
    for flavor in [Flavor::OpenAi, Flavor::Anthropic, Flavor::Gemini] {
        let mock = MockLlm::start(flavor).await.unwrap();
        let g = start(&[&mock], &[]).await;
        let (_, key) = g.new_key(json!({})).await;
        let r = g.chat(&key, ask("auto", PROMPT)).await;
        assert_eq!(r.status, 200, "{flavor}: {}", r.text);
        let v = r.json();
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(r.header("x-dol-provider"), flavor.name(), "{flavor}");
        assert_eq!(r.header("x-dol-tier"), "comprehensive", "{flavor}");
        assert!(v["usage"]["total_tokens"].as_u64().unwrap() > 0);
        assert!(
            v["dol"]["cost_micros"].as_u64().unwrap() > 0,
            "{flavor}: {v}"
        );
        assert!(
            v["dol"]["quality"].as_f64().unwrap() >= 7.0,
            "{flavor}: {v}"
        );
        let answer = v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_owned();
        // The provider got the key the way its API expects it.
        let sent = mock.requests();
        let last = sent.last().unwrap();
        match flavor {
            Flavor::OpenAi => assert_eq!(last.header("authorization"), Some("Bearer key-openai")),
            Flavor::Anthropic => assert_eq!(last.header("x-api-key"), Some("key-anthropic")),
            Flavor::Gemini => assert_eq!(last.header("x-goog-api-key"), Some("key-gemini")),
        }
        let s = g.chat(&key, ask_stream("auto", PROMPT)).await;
        assert_eq!(s.status, 200, "{flavor}: {}", s.text);
        let (text, frames) = s.sse();
        assert_eq!(text, answer, "{flavor}: the stream carries the same answer");
        assert_eq!(
            frames.last().map(String::as_str),
            Some("[DONE]"),
            "{flavor}"
        );
        let last_chunk: Value = serde_json::from_str(&frames[frames.len() - 2]).unwrap();
        assert!(
            last_chunk["usage"]["total_tokens"].as_u64().unwrap() > 0,
            "{flavor}: {last_chunk}"
        );
        assert_eq!(last_chunk["dol"]["provider"], flavor.name());
        g.host.app.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_error_class_falls_back_as_it_should() {
    let mock = MockLlm::start(Flavor::OpenAi).await.unwrap();
    let g = start(&[&mock], &[]).await;
    let (_, key) = g.new_key(json!({})).await;

    // 5xx: retried on the same model, then the answer.
    mock.push_script(Behavior::failing(503));
    let r = g.chat(&key, ask("auto", PROMPT)).await;
    assert_eq!(
        (r.status, r.header("x-dol-attempts"), r.header("x-dol-tier")),
        (200, "2", "comprehensive"),
        "{}",
        r.text
    );

    // 429 with Retry-After: waited, retried.
    mock.push_script(Behavior {
        retry_after_s: Some(1),
        ..Behavior::failing(429)
    });
    let t = Instant::now();
    let r = g.chat(&key, ask("auto", PROMPT)).await;
    assert_eq!((r.status, r.header("x-dol-attempts")), (200, "2"));
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "Retry-After not honoured: {:?}",
        t.elapsed()
    );

    // 400 (e.g. context length): not retried, next tier.
    mock.push_script(Behavior::failing(400));
    let r = g.chat(&key, ask("auto", PROMPT)).await;
    assert_eq!(
        (
            r.header("x-dol-attempts"),
            r.header("x-dol-tier"),
            r.header("x-dol-model")
        ),
        ("2", "enhanced", "gpt-4o-mini")
    );

    // 401 from the provider (bad provider key): not retried either.
    mock.push_script(Behavior::failing(401));
    let r = g.chat(&key, ask("auto", PROMPT)).await;
    assert_eq!(
        (r.header("x-dol-attempts"), r.header("x-dol-tier")),
        ("2", "enhanced")
    );

    // Retries exhausted on every model: offline tier, labelled.
    mock.set_behavior(Behavior::failing(500));
    let r = g.chat(&key, ask("auto", PROMPT)).await;
    assert_eq!(
        (r.status, r.header("x-dol-provider")),
        (200, "offline"),
        "{}",
        r.text
    );
    g.host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_is_respected_with_slow_providers() {
    let mock = MockLlm::start(Flavor::OpenAi).await.unwrap();
    mock.set_behavior(Behavior {
        delay_ms: 4_000,
        ..Behavior::default()
    });
    let g = start(&[&mock], &[]).await;
    let (_, key) = g.new_key(json!({})).await;
    let t = Instant::now();
    let r = g.chat(&key, ask("auto", PROMPT)).await;
    let took = t.elapsed();
    assert_eq!(
        (r.status, r.header("x-dol-provider")),
        (200, "offline"),
        "{}",
        r.text
    );
    // Deadline 6 s (attempts of 1.5 s each); allow scheduling slack but never the providers' 4 s × attempts.
    assert!(took < Duration::from_millis(7_500), "took {took:?}");
    g.host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_circuit_breaker_opens_and_recovers() {
    let mock = MockLlm::start(Flavor::OpenAi).await.unwrap();
    let g = start(
        &[&mock],
        &[
            ("gateway_circuit_failures", "2"),
            ("gateway_circuit_cooldown_ms", "1500"),
            ("gateway_retry_attempts", "2"),
        ],
    )
    .await;
    let (_, key) = g.new_key(json!({})).await;
    mock.set_behavior(Behavior::failing(500));
    let r = g.chat(&key, ask("auto", PROMPT)).await;
    assert_eq!(r.header("x-dol-provider"), "offline");
    let sent = mock.request_count();
    assert!(sent >= 2);
    // Every breaker is open now: no provider is even tried.
    let r = g.chat(&key, ask("auto", PROMPT)).await;
    assert_eq!(r.header("x-dol-provider"), "offline");
    assert_eq!(mock.request_count(), sent, "an open breaker must not send");
    let models = g.admin("GET", "/admin/models", None).await.json();
    let gpt4o = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["model"] == "gpt-4o")
        .unwrap()
        .clone();
    assert_eq!(gpt4o["circuit"]["state"], "open", "{gpt4o}");
    // After the cool-down the half-open probe succeeds and the breaker closes.
    mock.set_behavior(Behavior::default());
    tokio::time::sleep(Duration::from_millis(1_700)).await;
    let r = g.chat(&key, ask("auto", PROMPT)).await;
    assert_eq!(
        (r.header("x-dol-provider"), r.header("x-dol-model")),
        ("openai", "gpt-4o"),
        "{}",
        r.text
    );
    let models = g.admin("GET", "/admin/models", None).await.json();
    let gpt4o = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["model"] == "gpt-4o")
        .unwrap()
        .clone();
    assert_eq!(gpt4o["circuit"]["state"], "closed");
    g.host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quality_gate_moves_a_weak_answer_down_a_tier() {
    let mock = MockLlm::start(Flavor::OpenAi).await.unwrap();
    let g = start(&[&mock], &[]).await;
    let (_, key) = g.new_key(json!({})).await;
    mock.push_script(Behavior::with_answer(
        "I'm sorry, but I can't help with that.",
    ));
    let r = g.chat(&key, ask("auto", PROMPT)).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        (r.header("x-dol-tier"), r.header("x-dol-attempts")),
        ("enhanced", "2"),
        "{}",
        r.text
    );
    let id = r.header("x-dol-request-id").to_owned();
    let rec = g.admin("GET", &format!("/admin/requests/{id}"), None).await;
    assert_eq!(rec.status, 200, "{}", rec.text);
    let rec = rec.json();
    assert_eq!(rec["fallbacks"], 1);
    assert_eq!(rec["detail"]["attempts"][0]["outcome"], "low_quality");
    assert!(rec["quality"].as_f64().unwrap() >= 7.0);
    assert!(rec["cost_micros"].as_u64().unwrap() > 0);
    g.host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_cached_and_replayed_as_sse() {
    let mock = MockLlm::start(Flavor::OpenAi).await.unwrap();
    let g = start(&[&mock], &[]).await;
    let (_, key) = g.new_key(json!({})).await;
    let body = ask("auto", "What is a cache hit ratio?");
    let first = g
        .call("POST", "/v1/chat/completions", Some(&key), Some(&body), &[])
        .await;
    assert_eq!(first.header("x-dol-cache"), "miss");
    let sent = mock.request_count();
    let second = g
        .call("POST", "/v1/chat/completions", Some(&key), Some(&body), &[])
        .await;
    assert_eq!(second.header("x-dol-cache"), "hit", "{}", second.text);
    assert_eq!(mock.request_count(), sent);
    assert_eq!(
        first.json()["choices"][0]["message"]["content"],
        second.json()["choices"][0]["message"]["content"]
    );
    assert_eq!(second.json()["dol"]["cached"], true);
    // The same question streamed replays the cached answer as SSE.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let s = g
        .call(
            "POST",
            "/v1/chat/completions",
            Some(&key),
            Some(&streamed),
            &[],
        )
        .await;
    assert_eq!(s.header("x-dol-cache"), "hit");
    assert_eq!(
        s.sse().0,
        first.json()["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
    );
    assert_eq!(mock.request_count(), sent);
    // no-cache bypasses it.
    let fresh = g
        .call(
            "POST",
            "/v1/chat/completions",
            Some(&key),
            Some(&body),
            &[("cache-control", "no-cache")],
        )
        .await;
    assert_eq!(fresh.header("x-dol-cache"), "miss");
    assert_eq!(mock.request_count(), sent + 1);
    g.host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_and_budgets_answer_429_with_retry_after() {
    let mock = MockLlm::start(Flavor::OpenAi).await.unwrap();
    let g = start(&[&mock], &[]).await;
    let (_, key) = g.new_key(json!({"requests_per_minute": 2})).await;
    for _ in 0..2 {
        assert_eq!(g.chat(&key, ask("auto", PROMPT)).await.status, 200);
    }
    let r = g.chat(&key, ask("auto", PROMPT)).await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert_eq!(r.json()["error"]["type"], "rate_limit_error");
    let retry: u64 = r.header("retry-after").parse().unwrap();
    assert!((1..=60).contains(&retry));

    // A budget of 96,000 µ$: gpt-4o's worst case for this prompt (~15 tokens
    // plus the 4,096 DOL sends as the output limit) is ~41 k µ$, so
    // reservations keep concurrent requests from overspending it.
    let (id, key) = g.new_key(json!({"monthly_budget_micros": 96_000})).await;
    let calls = (0..8).map(|_| g.chat(&key, ask("auto", PROMPT)));
    let replies = futures::future::join_all(calls).await;
    let ok = replies.iter().filter(|r| r.status == 200).count();
    let refused = replies.iter().filter(|r| r.status == 429).count();
    assert_eq!(
        ok + refused,
        8,
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert!(ok >= 1 && refused >= 1, "ok {ok}, refused {refused}");
    let usage = g
        .admin("GET", &format!("/admin/keys/{id}"), None)
        .await
        .json();
    let spent = usage["usage"]["spent_micros"].as_u64().unwrap();
    assert!(spent > 0 && spent <= 96_000, "{usage}");
    assert_eq!(
        usage["usage"]["reserved_micros"], 0,
        "every reservation settled: {usage}"
    );
    let r = replies.iter().find(|r| r.status == 429).unwrap();
    assert_eq!(r.json()["error"]["code"], "insufficient_quota");
    g.host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_openai_error() {
    let g = start(&[], &[]).await;
    let (_, key) = g.new_key(json!({})).await;
    let cases = [
        (json!("just a string"), 400, "body"),
        (
            json!({"messages": [{"role": "user", "content": "hi"}]}),
            400,
            "model",
        ),
        (json!({"model": "auto", "messages": []}), 400, "messages"),
        (
            json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}], "temperature": 7}),
            400,
            "temperature",
        ),
        (
            json!({"model": "auto", "messages": [{"role": "wizard", "content": "hi"}]}),
            400,
            "role",
        ),
        (
            json!({"model": "gpt-9-ultra", "messages": [{"role": "user", "content": "hi"}]}),
            404,
            "gpt-9-ultra",
        ),
    ];
    for (body, status, mentions) in cases {
        let r = g.chat(&key, body.clone()).await;
        assert_eq!(r.status, status, "{body}: {}", r.text);
        let v = r.json();
        assert!(
            v["error"]["message"].as_str().unwrap().contains(mentions)
                || v["error"]["param"]
                    .as_str()
                    .is_some_and(|p| p.contains(mentions)),
            "{body}: {v}"
        );
    }
    let r = g
        .call(
            "POST",
            "/v1/chat/completions",
            Some(&key),
            None,
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        g.call("GET", "/v1/chat/completions", Some(&key), None, &[])
            .await
            .status,
        405
    );
    // A body over the 4 MiB limit is refused as too large, not as malformed.
    let huge = ask("auto", &"x".repeat(5 * 1024 * 1024));
    let r = g.chat(&key, huge).await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (413, Some("payload-too-large")),
        "{}",
        r.text
    );
    // Admin bodies whose numbers storage cannot hold are refused, naming the
    // field: a price above the ceiling (it was capped, and the costs it
    // produced overflowed the usage aggregates), a limit above i64::MAX (it
    // was echoed back, then stored as i64::MAX).
    let absurd = json!({"tier": "basic", "context_window": 1000, "input_usd_per_1m": 1e308, "output_usd_per_1m": 1.0});
    let r = g
        .admin("PUT", "/admin/models/openai/fz-model", Some(&absurd))
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.text
            .contains("input_usd_per_1m must be a number from 0 to 10000"),
        "{}",
        r.text
    );
    let models = g.admin("GET", "/admin/models", None).await.json();
    assert!(
        !models.to_string().contains("fz-model"),
        "nothing stored: {models}"
    );
    let r = g
        .admin(
            "POST",
            "/admin/keys",
            Some(&json!({"limits": {"monthly_budget_micros": 18_446_744_073_709_551_615_u64}})),
        )
        .await;
    assert_eq!(
        (r.status, r.json()["error"]["field"].as_str()),
        (400, Some("limits.monthly_budget_micros")),
        "{}",
        r.text
    );
    g.host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalog_change_applies_to_the_next_request() {
    let mock = MockLlm::start(Flavor::OpenAi).await.unwrap();
    let g = start(&[&mock], &[]).await;
    let (_, key) = g.new_key(json!({})).await;
    let cost = |r: &Reply| -> u64 {
        assert_eq!(r.status, 200, "{}", r.text);
        r.header("x-dol-cost-micros").parse().unwrap()
    };
    // Two answers at the seed price: the second from an instance that kept
    // the catalog it read (dol_core::gateway::store::InstanceCache).
    let seed_price = cost(&g.chat(&key, ask("gpt-4o", PROMPT)).await);
    assert_eq!(cost(&g.chat(&key, ask("gpt-4o", PROMPT)).await), seed_price);
    let doubled = json!({"tier": "comprehensive", "context_window": 128000, "input_usd_per_1m": 5.0, "output_usd_per_1m": 20.0, "capabilities": ["json", "streaming", "vision", "tools"]});
    let r = g
        .admin("PUT", "/admin/models/openai/gpt-4o", Some(&doubled))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let after = cost(&g.chat(&key, ask("gpt-4o", PROMPT)).await);
    assert!(
        after > seed_price && after.abs_diff(2 * seed_price) <= 2,
        "seed {seed_price} µ$, after the change {after} µ$"
    );
    // A deleted model is gone from the very next request's routing.
    let r = g.admin("DELETE", "/admin/models/openai/gpt-4o", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = g.chat(&key, ask("gpt-4o", PROMPT)).await;
    assert_eq!(r.status, 404, "{}", r.text);
    g.host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_render_versions_and_run_the_same_pipeline() {
    let mock = MockLlm::start(Flavor::Gemini).await.unwrap();
    let g = start(&[&mock], &[]).await;
    let (_, key) = g.new_key(json!({})).await;
    let spec = json!({
        "messages": [{"role": "system", "content": "Answer in a {{tone}} tone."}, {"role": "user", "content": "Summarize: {{text}}"}],
        "variables": {"tone": {"default": "neutral"}, "text": {}},
        "defaults": {"temperature": 0.2}
    });
    let r = g
        .admin("PUT", "/admin/templates/summarize", Some(&spec))
        .await;
    assert_eq!(
        (r.status, r.json()["version"].as_i64()),
        (201, Some(1)),
        "{}",
        r.text
    );
    let r = g
        .admin(
            "PUT",
            "/admin/templates/summarize",
            Some(&json!({"messages": [{"role": "user", "content": "{{undeclared}}"}]})),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.text.contains("undeclared"));
    let r = g
        .admin("PUT", "/admin/templates/Bad Name", Some(&spec))
        .await;
    assert_eq!(r.status, 400);

    let r = g.call("POST", "/v1/generate", Some(&key), Some(&json!({"template": "summarize", "variables": {"text": "Rust ownership rules and borrowing"}})), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-dol-provider"), "gemini");
    let sent = mock.requests().last().unwrap().json().unwrap();
    assert!(
        sent.to_string()
            .contains("Summarize: Rust ownership rules and borrowing"),
        "{sent}"
    );
    assert!(sent.to_string().contains("neutral tone"), "{sent}");

    let r = g
        .call(
            "POST",
            "/v1/generate",
            Some(&key),
            Some(&json!({"template": "summarize"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.text.contains("text"));
    let r = g
        .call(
            "POST",
            "/v1/generate",
            Some(&key),
            Some(&json!({"template": "nope"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 404);
    let r = g
        .call(
            "POST",
            "/v1/generate",
            Some(&key),
            Some(&json!({"template": "summarize", "version": 9, "variables": {"text": "x"}})),
            &[],
        )
        .await;
    assert_eq!(r.status, 404);
    g.host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flag_chooses_the_entry_tier() {
    let mock = MockLlm::start(Flavor::OpenAi).await.unwrap();
    let g = start(&[&mock], &[]).await;
    let (_, key) = g.new_key(json!({})).await;
    let flag = json!({
        "state": "ENABLED",
        "variants": {"comprehensive": "comprehensive", "enhanced": "enhanced", "basic": "basic"},
        "defaultVariant": "basic"
    });
    let r = g
        .admin("PUT", "/admin/flags/generation_pipeline", Some(&flag))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = g.chat(&key, ask("auto", PROMPT)).await;
    assert_eq!(
        (r.header("x-dol-tier"), r.header("x-dol-model")),
        ("basic", "gpt-4.1-nano"),
        "{}",
        r.text
    );
    let id = r.header("x-dol-request-id").to_owned();
    let rec = g
        .admin("GET", &format!("/admin/requests/{id}"), None)
        .await
        .json();
    assert_eq!(rec["variant"], "basic");
    g.host.app.shutdown().await;
}

/// Runs an official SDK's check script, `tests/<sdk>/check.py <scenario>`, in
/// that SDK's venv against `base` with `key`; asserts it exited 0 and returns
/// its stdout. A missing venv fails loudly: scripts/test installs it.
pub(crate) async fn sdk_check(sdk: &str, scenario: &str, base: String, key: String) -> String {
    let dir = dol_test_support::workspace_root().join("tests").join(sdk);
    let python = dir.join(".venv/bin/python");
    assert!(
        python.exists(),
        "tests/{sdk}/.venv is missing: run scripts/test (it installs the SDK from PyPI)"
    );
    let script = dir.join("check.py");
    let scenario = scenario.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(script)
            .arg(scenario)
            .env("DOL_BASE_URL", base)
            .env("DOL_API_KEY", key)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_openai_python_sdk_works_unchanged() {
    let mock = MockLlm::start(Flavor::OpenAi).await.unwrap();
    let g = start(&[&mock], &[]).await;
    let (_, key) = g.new_key(json!({})).await;
    let stdout = sdk_check("openai-sdk", "basic", g.host.url("/v1"), key.clone()).await;
    assert!(stdout.contains("all checks passed"));

    mock.set_behavior(Behavior {
        cut_stream_after: Some(2),
        ..Behavior::default()
    });
    sdk_check("openai-sdk", "broken-stream", g.host.url("/v1"), key).await;
    g.host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emergency_mode_switches_generation_to_the_basic_tier() {
    let mock = MockLlm::start(Flavor::OpenAi).await.unwrap();
    let g = start(&[&mock], &[]).await;
    let (_, key) = g.new_key(json!({})).await;
    let r = g.chat(&key, ask("auto", PROMPT)).await;
    assert_eq!(r.header("x-dol-tier"), "comprehensive");
    // An operator forces emergency mode on (as `/dol emergency on` in Slack stores it).
    let db = rusqlite::Connection::open(g.host.state_dir().join("sqlite_db.db")).unwrap();
    db.execute(
        "INSERT INTO control (key, value, updated_by, updated_at) VALUES ('emergency_mode', '{\"mode\":\"on\"}', 'test', 0)",
        [],
    )
    .unwrap();
    let r = g.chat(&key, ask("auto", PROMPT)).await;
    assert_eq!(
        (r.header("x-dol-tier"), r.header("x-dol-model")),
        ("basic", "gpt-4.1-nano"),
        "{}",
        r.text
    );
    let rec = g
        .admin(
            "GET",
            &format!("/admin/requests/{}", r.header("x-dol-request-id")),
            None,
        )
        .await
        .json();
    assert_eq!(rec["variant"], "emergency");
    db.execute("DELETE FROM control WHERE key = 'emergency_mode'", [])
        .unwrap();
    let r = g.chat(&key, ask("auto", PROMPT)).await;
    assert_eq!(r.header("x-dol-tier"), "comprehensive");
    g.host.app.shutdown().await;
}

#[path = "gateway_embeddings.rs"]
mod embeddings;

#[path = "gateway_messages.rs"]
mod messages;

#[path = "gateway_responses.rs"]
mod responses;

#[path = "gateway_tools.rs"]
mod tools;

#[path = "gateway_images.rs"]
mod images;

#[path = "gateway_completions.rs"]
mod completions;
