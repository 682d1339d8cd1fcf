//! Provider health probes feed routing, through the real host: a provider
//! that fails its probe (`POST /admin/scans/probes`) is skipped by the next
//! chat completion without being tried, and a healthy probe lets its
//! breaker recover through one real request.

use crate::gateway::var;
use dol_test_support::TestHost;
use dol_test_support::mock_llm::{Flavor, MockLlm};
use serde_json::{Value, json};

const ADMIN: &str = "probe-admin";
const KEY: &str = "probe-key";

/// Sends a chat completion; returns the answering provider and the attempts.
async fn chat(host: &TestHost) -> (String, String) {
    let r = host
        .client
        .post(host.url("/v1/chat/completions"))
        .header("authorization", format!("Bearer {KEY}"))
        // Not from the cache: the answer must come from routing.
        .header("cache-control", "no-cache")
        .json(&json!({"model": "auto", "messages": [{"role": "user", "content": "Explain Rust ownership"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let h = |n: &str| {
        r.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    (h("x-dol-provider"), h("x-dol-attempts"))
}

async fn admin(host: &TestHost, method: &str, path: &str) -> Value {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let r = host
        .client
        .request(method, host.url(path))
        .header("authorization", format!("Bearer {ADMIN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.json().await.unwrap()
}

/// Waits (up to 5 s) for `model`'s breaker to read `want`: the gateway
/// stores the routing state after the answer has been sent.
async fn breaker_becomes(host: &TestHost, model: &str, want: &str) {
    let mut last = Value::Null;
    for _ in 0..50 {
        let models = admin(host, "GET", "/admin/models").await;
        last = models["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["provider"] == "openai" && m["model"] == model)
            .map(|m| m["circuit"]["state"].clone())
            .unwrap_or(Value::Null);
        if last == want {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{model}: breaker {last}, expected {want}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_probe_keeps_requests_off_the_provider_until_a_healthy_one() {
    let mock = MockLlm::start(Flavor::OpenAi).await.unwrap();
    let addr = mock.addr();
    let host = TestHost::builder("spin.toml")
        .variable(&var("admin_token"), ADMIN)
        .variable(&var("bootstrap_api_key"), KEY)
        .variable(&var("openai_api_key"), "key-openai")
        .variable(&var("openai_base_url"), &mock.base_url())
        // Long cool-down: only probes and real requests move the breakers.
        .variable(&var("gateway_circuit_cooldown_ms"), "600000")
        .variable(&var("gateway_retry_attempts"), "1")
        .start()
        .await;
    let (provider, _) = chat(&host).await;
    assert_eq!(provider, "openai", "warm-up answered by the provider");

    // The provider goes away; the probe scan records it down.
    drop(mock);
    let v = admin(&host, "POST", "/admin/scans/probes").await;
    let probes = v["summary"]["probes"].as_array().unwrap();
    assert_eq!(probes[0]["provider"], "openai", "{v}");
    assert_eq!(probes[0]["up"], false, "{v}");

    // It is back on the same address, but routing trusts the failed probe:
    // the next request goes to the offline tier without trying it.
    let mock = MockLlm::start_on(Flavor::OpenAi, addr).await.unwrap();
    let (provider, attempts) = chat(&host).await;
    assert_eq!(provider, "offline");
    assert_eq!(attempts, "0", "no provider attempt");
    assert_eq!(mock.request_count(), 0, "the failed provider was not tried");
    breaker_becomes(&host, "gpt-4o", "open").await;

    // A healthy probe lets one request through; it succeeds and closes it.
    let v = admin(&host, "POST", "/admin/scans/probes").await;
    assert_eq!(v["summary"]["probes"][0]["up"], true, "{v}");
    let (provider, _) = chat(&host).await;
    assert_eq!(provider, "openai");
    assert!(mock.request_count() >= 1);
    breaker_becomes(&host, "gpt-4o", "closed").await;
    host.app.shutdown().await;
}
