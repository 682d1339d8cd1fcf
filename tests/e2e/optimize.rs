//! Issue 16 end to end, lean (one host start per test): each answered
//! request's savings against the baseline in `/api/metrics` and `/metrics`,
//! `POST /v1/feedback` with a case per bad input and per denial and its
//! effect on the routing state; an anomaly alert raised by the `alerts`
//! scan tick when the mock provider's latency jumps, with its band, in
//! `/api/health`, then silenced.

use crate::gateway::var;
use dol_test_support::TestHost;
use dol_test_support::mock_llm::{Behavior, Flavor, MockLlm};
use serde_json::{Value, json};

const ADMIN: &str = "admin-secret";

async fn send(
    host: &TestHost,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<String>,
) -> (u16, String, String) {
    let mut r = host.client.request(
        reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
        host.url(path),
    );
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    if let Some(b) = body {
        r = r.header("content-type", "application/json").body(b);
    }
    let resp = r.send().await.expect("request sent");
    let status = resp.status().as_u16();
    let id = resp
        .headers()
        .get("x-dol-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (status, id, resp.text().await.unwrap_or_default())
}

async fn new_key(host: &TestHost) -> String {
    let (s, _, text) = send(
        host,
        "POST",
        "/admin/keys",
        Some(ADMIN),
        Some(json!({"name": "opt"}).to_string()),
    )
    .await;
    assert_eq!(s, 201, "{text}");
    serde_json::from_str::<Value>(&text).unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| panic!("not JSON: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn savings_are_reported_and_feedback_is_attributed() {
    let mock = MockLlm::start(Flavor::OpenAi).await.unwrap();
    let host = TestHost::builder("spin.toml")
        .variable(&var("admin_token"), ADMIN)
        .variable(&var("openai_api_key"), "key-openai")
        .variable(&var("openai_base_url"), &mock.base_url())
        .start()
        .await;
    let key = new_key(&host).await;
    let other = new_key(&host).await;

    // One answer on the enhanced tier (gpt-4o-mini), priced against the
    // baseline (gpt-4o, the cheapest priced comprehensive model of the one
    // enabled provider): it saved money.
    let body = json!({"model": "auto", "messages": [{"role": "user", "content": "Name three colours of the rainbow."}], "dol": {"tier": "enhanced"}});
    let (s, id, text) = send(
        &host,
        "POST",
        "/v1/chat/completions",
        Some(&key),
        Some(body.to_string()),
    )
    .await;
    assert_eq!(s, 200, "{text}");
    assert!(!id.is_empty());

    // The key has no limits: its row is read by id, which waits for the
    // row that trails the answer; the metrics then hold it.
    let (s, _, text) = send(
        &host,
        "GET",
        &format!("/admin/requests/{id}"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(s, 200, "{text}");
    let (s, _, text) = send(&host, "GET", "/api/metrics?window=1h", None, None).await;
    assert_eq!(s, 200, "{text}");
    let totals = &parse(&text)["totals"];
    let (cost, baseline, saved) = (
        totals["costUsd"].as_f64().unwrap(),
        totals["baselineCostUsd"].as_f64().unwrap(),
        totals["savedUsd"].as_f64().unwrap(),
    );
    assert!(baseline > cost && cost > 0.0, "{totals}");
    assert!((saved - (baseline - cost)).abs() < 1e-9, "{totals}");
    assert!(
        totals["savedPct"].as_f64().unwrap() > 80.0,
        "gpt-4o-mini is ~6 % of gpt-4o: {totals}"
    );
    let by_model = &parse(&text)["byModel"]["openai/gpt-4o-mini"];
    assert_eq!(by_model["savedUsd"], totals["savedUsd"]);
    let (s, _, prom) = send(&host, "GET", "/metrics", None, None).await;
    assert_eq!(s, 200);
    assert!(prom.contains("dol_baseline_cost_usd_total{"), "{prom}");

    // Feedback: stored and attributed to the request's model, tier, route and variant.
    let fb = |v: Value| Some(v.to_string());
    let (s, _, text) = send(
        &host,
        "POST",
        "/v1/feedback",
        Some(&key),
        fb(json!({"request_id": id, "score": 4, "comment": "good"})),
    )
    .await;
    assert_eq!(s, 201, "{text}");
    let v = parse(&text);
    assert_eq!(
        (
            v["model"].as_str(),
            v["tier"].as_str(),
            v["route"].as_str(),
            v["score"].as_f64()
        ),
        (
            Some("gpt-4o-mini"),
            Some("enhanced"),
            Some("chat"),
            Some(0.75)
        ),
        "{v}"
    );

    // Routing learned the feedback (it counts from 5 feedbacks on).
    let (s, _, text) = send(&host, "GET", "/admin/models", Some(ADMIN), None).await;
    assert_eq!(s, 200, "{text}");
    let models = parse(&text);
    let mini = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["model"] == "gpt-4o-mini" && m["provider"] == "openai")
        .unwrap_or_else(|| panic!("{models}"));
    assert_eq!(mini["observed"]["feedback_samples"], 1, "{mini}");
    assert_eq!(mini["observed"]["feedback_quality"], 7.5, "{mini}");
    assert_eq!(
        mini["observed"]["routing_quality"], mini["observed"]["quality"],
        "{mini}"
    );

    // Each bad input is its own 400, naming its field.
    for (body, field) in [
        (json!({"score": 1}), "request_id"),
        (json!({"request_id": 7, "score": 1}), "request_id"),
        (json!({"request_id": id}), "score"),
        (json!({"request_id": id, "score": 9}), "score"),
        (json!({"request_id": id, "score": 0.5}), "score"),
        (
            json!({"request_id": id, "score": 0, "scale": "stars"}),
            "score",
        ),
        (
            json!({"request_id": id, "score": 1, "scale": "emoji"}),
            "scale",
        ),
        (
            json!({"request_id": id, "score": 1, "comment": ["x"]}),
            "comment",
        ),
    ] {
        let (s, _, text) = send(&host, "POST", "/v1/feedback", Some(&key), fb(body.clone())).await;
        assert_eq!(s, 400, "{body}: {text}");
        assert_eq!(parse(&text)["error"]["param"], field, "{body}: {text}");
    }
    let (s, _, text) = send(
        &host,
        "POST",
        "/v1/feedback",
        Some(&key),
        Some("{not json".into()),
    )
    .await;
    assert_eq!(s, 400, "{text}");
    // Unknown request → 404; another key's request is unknown to it; no key → 401.
    let (s, _, text) = send(
        &host,
        "POST",
        "/v1/feedback",
        Some(&key),
        fb(json!({"request_id": "chatcmpl-nope", "score": 1})),
    )
    .await;
    assert_eq!(s, 404, "{text}");
    let (s, _, text) = send(
        &host,
        "POST",
        "/v1/feedback",
        Some(&other),
        fb(json!({"request_id": id, "score": 1})),
    )
    .await;
    assert_eq!(s, 404, "{text}");
    let (s, _, text) = send(
        &host,
        "POST",
        "/v1/feedback",
        None,
        fb(json!({"request_id": id, "score": 1})),
    )
    .await;
    assert_eq!(s, 401, "{text}");
    let (s, _, text) = send(&host, "GET", "/v1/feedback", Some(&key), None).await;
    assert_eq!(s, 405, "{text}");
}

/// Fills the 40 minutes before the current one with a calm history of
/// openai/gpt-4o-mini (10 requests a minute at ~20 ms, cost unknown so the
/// cost series stays unjudged), under a variant of its own so no real row
/// collides with it.
fn calm_history(host: &TestHost) {
    use dol_core::gateway::telemetry::{latency_bucket, latency_column};
    let db = rusqlite::Connection::open(host.state_dir().join("sqlite_db.db")).unwrap();
    let now_minute = chrono::Utc::now().timestamp() / 60;
    let column = latency_column(latency_bucket(20));
    for m in now_minute - 40..now_minute {
        db.execute(
            &format!(
                "INSERT INTO usage_minute (minute, tier, provider, model, outcome, variant, \
                 requests, latency_sum_ms, cost_unknown, {column}) \
                 VALUES (?1, 'enhanced', 'openai', 'gpt-4o-mini', 'success', 'e2e-history', \
                 10, 200, 10, 10)"
            ),
            rusqlite::params![m * 60],
        )
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_latency_jump_raises_an_anomaly_alert_shown_in_health_and_silenced() {
    let mock = MockLlm::start(Flavor::OpenAi).await.unwrap();
    let host = TestHost::builder("spin.toml")
        .variable(&var("admin_token"), ADMIN)
        .variable(&var("openai_api_key"), "key-openai")
        .variable(&var("openai_base_url"), &mock.base_url())
        // One minute outside the band is enough here (default 3m).
        .variable(&var("anomaly_for"), "1m")
        .start()
        .await;
    let key = new_key(&host).await;
    calm_history(&host);
    // The provider slows down: two answers at ~700 ms.
    mock.set_behavior(Behavior {
        delay_ms: 700,
        ..Behavior::default()
    });
    let body = json!({"model": "auto", "messages": [{"role": "user", "content": "Name a colour."}], "dol": {"tier": "enhanced"}});
    for _ in 0..2 {
        let mut b = body.clone();
        b["messages"][0]["content"] = json!(format!("Name a colour {}", rand_suffix()));
        let (s, _, text) = send(
            &host,
            "POST",
            "/v1/chat/completions",
            Some(&key),
            Some(b.to_string()),
        )
        .await;
        assert_eq!(s, 200, "{text}");
    }

    // The injected tick: the alerts scan run now.
    let (s, _, text) = send(&host, "POST", "/admin/scans/alerts", Some(ADMIN), None).await;
    assert_eq!(s, 200, "{text}");
    let summary = &parse(&text)["summary"]["anomalies"];
    assert_eq!(summary["for_minutes"], 1, "{summary}");
    assert!(summary["queued"].as_u64().unwrap() >= 1, "{summary}");

    let (s, _, text) = send(&host, "GET", "/api/health", None, None).await;
    assert_eq!(s, 200, "{text}");
    let health = parse(&text);
    let anomaly = health["anomalies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["metric"] == "p95_latency_ms")
        .unwrap_or_else(|| panic!("no latency anomaly: {health}"))
        .clone();
    assert_eq!(
        (
            anomaly["provider"].as_str(),
            anomaly["model"].as_str(),
            anomaly["silenced"].as_bool()
        ),
        (Some("openai"), Some("gpt-4o-mini"), Some(false)),
        "{anomaly}"
    );
    let message = anomaly["summary"].as_str().unwrap();
    assert!(
        message.starts_with("p95_latency_ms of openai/gpt-4o-mini is ")
            && message.contains(", band 0–")
            && message.contains("for 1 min"),
        "{message}"
    );
    let id = anomaly["id"].as_str().unwrap();
    assert!(
        health["activeAlerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == id && a["source"] == "anomaly" && a["name"] == "Anomaly"),
        "{health}"
    );
    // A second tick deduplicates: nothing new queued for it.
    let (_, _, text) = send(&host, "POST", "/admin/scans/alerts", Some(ADMIN), None).await;
    let again = &parse(&text)["summary"]["anomalies"];
    assert!(
        !again["fired"].as_array().unwrap().iter().any(|f| f == id),
        "{again}"
    );

    // Silenced with the existing silences: shown as such, and acknowledging
    // it notifies nobody.
    let (s, _, text) = send(
        &host,
        "POST",
        "/admin/silences",
        Some(ADMIN),
        Some(json!({"labels": {"alertname": "Anomaly"}, "duration": "1h", "comment": "known slowdown"}).to_string()),
    )
    .await;
    assert_eq!(s, 201, "{text}");
    let (_, _, text) = send(&host, "GET", "/api/health", None, None).await;
    let health = parse(&text);
    let listed = health["anomalies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == id)
        .unwrap_or_else(|| panic!("{health}"));
    assert_eq!(listed["silenced"], true, "{listed}");
    let (s, _, text) = send(
        &host,
        "POST",
        &format!("/admin/alerts/{id}/ack"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(s, 200, "{text}");
    assert_eq!(parse(&text)["queued_notification"], Value::Null, "{text}");
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}
