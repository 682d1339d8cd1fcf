//! OFREP rate limiting: past `ofrep_rate_limit_per_minute` a client gets
//! `429` with `Retry-After`, as the OFREP spec describes.

use dol_test_support::TestHost;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_limit_answers_429_with_retry_after() {
    let host = TestHost::builder("tests/apps/ofrep-rate-limit/spin.toml")
        .start()
        .await;
    let url = host.url("/ofrep/v1/evaluate/flags/complete_context");
    let body = r#"{"context":{"targetingKey":"u1"}}"#;
    // The limit is 2 per minute window: the third request is refused, unless a
    // window boundary passes mid-test, which five requests still cover.
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..5 {
        let response = host.client.post(&url).body(body).send().await.unwrap();
        statuses.push(response.status().as_u16());
        if response.status() == 429 {
            limited = Some(response);
            break;
        }
    }
    let response = limited.unwrap_or_else(|| panic!("never rate limited: {statuses:?}"));
    assert!(statuses.len() >= 3, "limited too early: {statuses:?}");
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["errorDetails"]
            .as_str()
            .unwrap()
            .contains("rate limit"),
        "{body}"
    );
    host.app.shutdown().await;
}
