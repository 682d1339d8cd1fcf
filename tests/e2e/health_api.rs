//! The health component's endpoints end to end: liveness and readiness,
//! `/api/health` degrading under injected provider faults, `/api/metrics`
//! counting real gateway traffic, and `/metrics` validated by the official
//! Python `prometheus_client` parser.

use crate::gateway::var;
use dol_test_support::TestHost;
use dol_test_support::mock_llm::{Behavior, Flavor, MockLlm};
use serde_json::{Value, json};

const APP: &str = "spin.toml";
const ADMIN: &str = "admin-secret";
const AM_TOKEN: &str = "am-t0ken";

async fn start(mock: Option<&MockLlm>, extra: &[(&str, &str)]) -> TestHost {
    let mut b = TestHost::builder(APP)
        .variable(&var("admin_token"), ADMIN)
        .variable(&var("alertmanager_token"), AM_TOKEN)
        .variable(&var("gateway_retry_delay_ms"), "20")
        .variable(&var("gateway_attempt_timeout_ms"), "1500")
        .variable(&var("gateway_timeout_ms"), "6000")
        .variable(&var("gateway_min_attempt_ms"), "50");
    if let Some(m) = mock {
        let name = m.flavor().name();
        b = b
            .variable(&var(&format!("{name}_api_key")), &format!("key-{name}"))
            .variable(&var(&format!("{name}_base_url")), &m.base_url());
    }
    for (k, v) in extra {
        b = b.variable(&var(k), v);
    }
    b.start().await
}

async fn send(
    host: &TestHost,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<String>,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut r = host.client.request(
        reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
        host.url(path),
    );
    if let Some(a) = auth {
        r = r.bearer_auth(a);
    }
    if let Some(b) = body {
        r = r.header("content-type", "application/json").body(b);
    }
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let resp = r.send().await.expect("request sent");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.unwrap_or_default())
}

async fn get(host: &TestHost, path: &str) -> (u16, Value) {
    let (s, _, text) = send(host, "GET", path, None, None, &[]).await;
    let v = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: not JSON: {text}"));
    (s, v)
}

async fn new_key(host: &TestHost) -> String {
    let (s, _, text) = send(
        host,
        "POST",
        "/admin/keys",
        Some(ADMIN),
        Some(json!({"name": "health"}).to_string()),
        &[],
    )
    .await;
    assert_eq!(s, 201, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    v["key"].as_str().unwrap().to_owned()
}

/// One chat completion; `cached` lets the gateway's cache answer.
async fn chat(host: &TestHost, key: &str, prompt: &str, cached: bool) -> (u16, String) {
    let body = json!({"model": "auto", "messages": [{"role": "user", "content": prompt}]});
    let headers: &[(&str, &str)] = if cached {
        &[]
    } else {
        &[("cache-control", "no-cache")]
    };
    let (s, h, text) = send(
        host,
        "POST",
        "/v1/chat/completions",
        Some(key),
        Some(body.to_string()),
        headers,
    )
    .await;
    let cache = h
        .get("x-dol-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert_eq!(s, 200, "{text}");
    (s, cache)
}

/// Runs the official Prometheus parser (tests/prometheus/check.py) over
/// `url` with `python`; asserts it passed and returns its stdout.
pub(crate) async fn prometheus_check(python: std::path::PathBuf, url: String) -> String {
    let script = dol_test_support::workspace_root().join("tests/prometheus/check.py");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(script)
            .arg(url)
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

pub(crate) fn prometheus_python() -> std::path::PathBuf {
    let venv = dol_test_support::workspace_root().join("tests/prometheus/.venv/bin/python");
    if !venv.exists() {
        panic!(
            "tests/prometheus/.venv is missing: run scripts/test (it installs prometheus_client from PyPI into that venv)"
        );
    }
    venv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_liveness_readiness_and_bad_queries() {
    let host = start(None, &[]).await;
    let (s, v) = get(&host, "/health").await;
    assert_eq!((s, v["status"].as_str()), (200, Some("ok")), "{v}");
    assert!(
        v.get("checks").is_none(),
        "liveness touches no storage: {v}"
    );
    let (s, v) = get(&host, "/health/ready").await;
    assert_eq!(s, 200, "{v}");
    let names: Vec<(&str, bool)> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["ok"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        names,
        vec![
            ("key-value", true),
            ("sqlite", true),
            ("migrations", true),
            ("credentials", true)
        ],
        "{v}"
    );
    let (s, v) = get(&host, "/api/metrics?window=2h").await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("2h"),
        "{v}"
    );
    // A value that is not valid percent-encoding is refused, not read as
    // absent (which would answer another question: the default window, the
    // whole deployment instead of one org).
    for (path, field) in [
        ("/api/metrics?window=%ZZ", "window"),
        ("/api/health?org=%ZZ", "org"),
        ("/metrics?org=%E2%28", "org"),
    ] {
        let (s, v) = get(&host, path).await;
        assert_eq!(
            (s, v["error"]["field"].as_str()),
            (400, Some(field)),
            "{path}: {v}"
        );
    }
    let (s, v) = get(&host, "/api/metrics").await;
    assert_eq!((s, v["window"].as_str()), (200, Some("1h")), "{v}");
    assert_eq!(v["totals"]["requests"], 0, "{v}");
    let (s, v) = get(&host, "/api/health").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["systemHealth"]["status"], "HEALTHY", "{v}");
    assert_eq!(v["systemHealth"]["score"], 100, "{v}");
    assert_eq!(v["uptime"], 100.0, "{v}");
    assert_eq!(v["emergencyMode"]["mode"], "automatic", "{v}");
    let (s, _, _) = send(&host, "POST", "/api/health", None, None, &[]).await;
    assert_eq!(s, 405);
    let (s, _, _) = send(&host, "GET", "/health/nope", None, None, &[]).await;
    assert_eq!(s, 404);
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_api_metrics_count_traffic_cache_hits_and_fallbacks() {
    let mock = MockLlm::start(Flavor::OpenAi).await.unwrap();
    let host = start(Some(&mock), &[]).await;
    let key = new_key(&host).await;
    for i in 0..3 {
        chat(
            &host,
            &key,
            &format!("Explain Rust ownership, take {i}"),
            false,
        )
        .await;
    }
    let (_, first) = chat(&host, &key, "What is a cache hit ratio?", true).await;
    let (_, second) = chat(&host, &key, "What is a cache hit ratio?", true).await;
    assert_eq!((first.as_str(), second.as_str()), ("miss", "hit"));
    // 400 from the comprehensive model: next tier, one fallback.
    mock.push_script(Behavior::failing(400));
    chat(&host, &key, "Explain borrowing in one paragraph", false).await;
    // The key has no limits: its rows trail the answers by up to 20 ms.
    dol_test_support::eventually("six requests in the metrics", || async {
        let (_, v) = get(&host, "/api/metrics?window=1h").await;
        (v["totals"]["requests"] == 6)
            .then_some(())
            .ok_or(v.to_string())
    })
    .await;

    for window in ["1h", "24h", "7d", "30d"] {
        let (s, v) = get(&host, &format!("/api/metrics?window={window}")).await;
        assert_eq!(s, 200, "{v}");
        let t = &v["totals"];
        assert_eq!(t["requests"], 6, "{window}: {v}");
        let series = v["series"].as_array().unwrap();
        let charted: u64 = series.iter().map(|p| p["requests"].as_u64().unwrap()).sum();
        assert_eq!(charted, 6, "{window}: the series holds every request");
        assert_eq!(t["cacheHits"], 1, "{window}: {v}");
        assert_eq!(t["fallbacks"], 1, "{window}: {v}");
        assert_eq!(t["errors"], 0, "{window}: {v}");
        assert_eq!(t["successRate"], 1.0, "{window}: {v}");
        assert!(t["p50Ms"].is_u64() && t["p99Ms"].is_u64(), "{v}");
        let by_provider: u64 = v["byProvider"]
            .as_object()
            .unwrap()
            .values()
            .map(|f| f["requests"].as_u64().unwrap())
            .sum();
        assert_eq!(by_provider, 6, "{v}");
        assert_eq!(v["byOutcome"]["cache_hit"], 1, "{v}");
        assert!(
            v["byTier"]["enhanced"]["requests"].as_u64().unwrap() >= 1,
            "{v}"
        );
        assert_eq!(v["trend"], "STABLE", "{v}");
    }
    let (s, v) = get(&host, "/api/health").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["systemHealth"]["status"], "HEALTHY", "{v}");
    assert_eq!(v["generation"]["requests"], 6, "{v}");
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_degrades_under_provider_faults_and_metrics_parse() {
    let python = prometheus_python();
    let mock = MockLlm::start(Flavor::OpenAi).await.unwrap();
    let host = start(
        Some(&mock),
        &[
            ("gateway_circuit_failures", "2"),
            ("gateway_circuit_cooldown_ms", "600000"),
            ("gateway_retry_attempts", "1"),
        ],
    )
    .await;
    let key = new_key(&host).await;
    chat(&host, &key, "A healthy warm-up question", false).await;
    // The provider fails: every answer comes from the offline tier.
    mock.set_behavior(Behavior::failing(500));
    for i in 0..12 {
        chat(
            &host,
            &key,
            &format!("Question {i} while the provider is down"),
            false,
        )
        .await;
    }
    // An external alert from Alertmanager.
    let firing = std::fs::read_to_string(
        dol_test_support::workspace_root().join("tests/fixtures/alertmanager/firing.json"),
    )
    .unwrap();
    let (s, _, text) = send(
        &host,
        "POST",
        "/webhooks/alertmanager",
        Some(AM_TOKEN),
        Some(firing),
        &[],
    )
    .await;
    assert_eq!(s, 200, "{text}");

    // The key has no limits: its rows trail the answers by up to 20 ms.
    let (s, v) = dol_test_support::eventually("twelve errors in the health", || async {
        let (s, v) = get(&host, "/api/health").await;
        if v["generation"]["errors"] == 12 {
            Ok((s, v))
        } else {
            Err(v.to_string())
        }
    })
    .await;
    assert!(s == 200 || s == 503, "{v}");
    let status = v["systemHealth"]["status"].as_str().unwrap();
    assert_ne!(status, "HEALTHY", "{v}");
    assert!(v["systemHealth"]["score"].as_u64().unwrap() < 80, "{v}");
    let issues = v["systemHealth"]["issues"].to_string();
    assert!(
        issues.contains("generation check failed: error rate"),
        "{issues}"
    );
    assert!(issues.contains("error rate"), "{issues}");
    assert_eq!(v["generation"]["errors"], 12, "{v}");
    assert!(
        v["generation"]["fallbackRate"].as_f64().unwrap() <= 1.0,
        "{v}"
    );
    let open = v["providers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["state"] == "open")
        .count();
    assert!(open >= 1, "{v}");
    let generation = v["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "generation")
        .unwrap();
    assert_eq!(generation["ok"], false, "{generation}");
    assert!(generation["latency_ms"].is_u64(), "{generation}");
    let alerts: Vec<&str> = v["activeAlerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert!(alerts.contains(&"DolHighErrorRate"), "{v}");
    assert!(v["uptime"].as_f64().unwrap() <= 100.0, "{v}");

    // An admin forces emergency mode on: shown as an override.
    let db = rusqlite::Connection::open(host.state_dir().join("sqlite_db.db")).unwrap();
    db.execute(
        "INSERT INTO control (key, value, updated_by, updated_at) VALUES ('emergency_mode', '{\"mode\":\"on\"}', 'ops', 0)",
        [],
    )
    .unwrap();
    let (_, v) = get(&host, "/api/health").await;
    assert_eq!(
        v["emergencyMode"],
        json!({"active": true, "mode": "override", "setBy": "ops"}),
        "{v}"
    );

    let (s, v) = get(&host, "/api/metrics").await;
    assert_eq!(s, 200);
    assert_eq!(v["totals"]["requests"], 13, "{v}");
    assert_eq!(v["totals"]["errors"], 12, "{v}");
    assert_eq!(v["byOutcome"]["offline"], 12, "{v}");

    // /metrics: the official parser accepts it.
    let stdout = prometheus_check(python, host.url("/metrics")).await;
    for family in [
        "family dol_generation_requests counter ",
        "family dol_generation_latency_seconds histogram ",
        "family dol_generation_quality histogram ",
        "family dol_cost_usd counter ",
        "family dol_cache_hits counter ",
        "family dol_circuit_breaker_state gauge ",
        "family dol_alert_state gauge ",
        "family dol_scan_age_seconds gauge ",
        "family dol_health_score gauge ",
    ] {
        assert!(stdout.contains(family), "{family} missing:\n{stdout}");
    }
    assert!(stdout.contains("all checks passed"), "{stdout}");
    let (s, h, text) = send(&host, "GET", "/metrics", None, None, &[]).await;
    assert_eq!(s, 200);
    assert_eq!(
        h.get("content-type").unwrap(),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert!(
        text.contains("dol_generation_requests_total{tier=\"basic\",provider=\"offline\""),
        "{text}"
    );
    assert!(text.contains("dol_emergency_mode 1"), "{text}");
    assert!(text.contains("alertname=\"DolHighErrorRate\""), "{text}");
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_api_score_is_the_one_the_alerts_scan_records() {
    let mock = MockLlm::start(Flavor::OpenAi).await.unwrap();
    let host = start(
        Some(&mock),
        &[
            ("gateway_circuit_failures", "2"),
            ("gateway_circuit_cooldown_ms", "600000"),
            ("gateway_retry_attempts", "1"),
        ],
    )
    .await;
    let key = new_key(&host).await;
    // The provider fails: offline answers, open breakers, a low score.
    mock.set_behavior(Behavior::failing(500));
    for i in 0..12 {
        chat(&host, &key, &format!("Question {i} for the score"), false).await;
    }
    let (s, _, text) = send(&host, "POST", "/admin/scans/alerts", Some(ADMIN), None, &[]).await;
    assert_eq!(s, 200, "{text}");
    let summary = &serde_json::from_str::<Value>(&text).unwrap()["summary"];
    // What the scan recorded in scan_runs: its summary, with the score
    // that drove automatic emergency mode.
    let db = rusqlite::Connection::open(host.state_dir().join("sqlite_db.db")).unwrap();
    let detail: String = db
        .query_row(
            "SELECT detail FROM scan_runs WHERE name = 'alerts' ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let recorded: Value = serde_json::from_str(&detail).unwrap();
    assert_eq!(&recorded, summary);
    let scored = &recorded["health"];
    assert!(scored["score"].as_u64().unwrap() < 80, "{recorded}");

    // /api/health at the same moment: the same score, status and issues,
    // and the emergency decision the scan made from it.
    let (status, v) = get(&host, "/api/health").await;
    assert_eq!(
        v["systemHealth"]["score"], scored["score"],
        "{v}\n{recorded}"
    );
    assert_eq!(v["systemHealth"]["status"], scored["status"], "{v}");
    assert_eq!(v["systemHealth"]["issues"], scored["issues"], "{v}");
    assert_eq!(status == 503, scored["status"] == "CRITICAL", "{v}");
    assert_eq!(
        v["emergencyMode"]["active"], recorded["emergency"]["active"],
        "{v}\n{recorded}"
    );
    assert_eq!(
        recorded["emergency"]["active"],
        scored["score"].as_u64().unwrap() < 60,
        "{recorded}"
    );
    // And the /metrics gauge.
    let (_, _, metrics) = send(&host, "GET", "/metrics", None, None, &[]).await;
    let gauge = format!("dol_health_score {}", scored["score"]);
    assert!(metrics.lines().any(|l| l == gauge), "{gauge}\n{metrics}");
    host.app.shutdown().await;
}

/// The percentiles `/api/metrics` reports are within 10 % of the exact ones
/// computed from the requests' own recorded latencies (fast answers and a
/// slower one, so the old 50 ms first bucket would have failed this).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reported_percentiles_match_the_recorded_latencies() {
    let mock = MockLlm::start(Flavor::OpenAi).await.unwrap();
    let host = start(Some(&mock), &[]).await;
    let key = new_key(&host).await;
    let mut latencies = Vec::new();
    for i in 0..12 {
        if i == 11 {
            // One slow answer: it becomes the p99.
            mock.push_script(Behavior {
                delay_ms: 400,
                ..Behavior::default()
            });
        }
        let body = json!({"model": "auto", "messages": [{"role": "user", "content": format!("Explain caching, take {i}")}]});
        let (s, _, text) = send(
            &host,
            "POST",
            "/v1/chat/completions",
            Some(&key),
            Some(body.to_string()),
            &[("cache-control", "no-cache")],
        )
        .await;
        assert_eq!(s, 200, "{text}");
        let id = serde_json::from_str::<Value>(&text).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let (s, _, record) = send(
            &host,
            "GET",
            &format!("/admin/requests/{id}"),
            Some(ADMIN),
            None,
            &[],
        )
        .await;
        assert_eq!(s, 200, "{record}");
        let record: Value = serde_json::from_str(&record).unwrap();
        latencies.push(record["latency_ms"].as_u64().unwrap());
    }
    latencies.sort_unstable();
    let exact = |q: f64| {
        latencies[((q * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len()) - 1]
    };
    let (s, v) = get(&host, "/api/metrics?window=1h").await;
    assert_eq!(s, 200, "{v}");
    for (field, q) in [("p50Ms", 0.5), ("p95Ms", 0.95), ("p99Ms", 0.99)] {
        let reported = v["totals"][field].as_u64().unwrap() as f64;
        let exact = exact(q) as f64;
        // Below 10 ms every millisecond is its own bucket: exact.
        assert!(
            (reported - exact).abs() <= 0.1 * exact,
            "{field}: reported {reported} ms, exact {exact} ms (latencies {latencies:?}): {v}"
        );
    }
    host.app.shutdown().await;
}
