//! The scans component's scans through the real host: alert evaluation
//! with Slack (Block Kit with buttons) and a signed generic webhook, the
//! outbox surviving a Slack outage, model discovery against a mock provider,
//! retention, and the admin routes' auth. Cron ticks are injected through
//! the manual clock, never slept.

use std::time::Duration;

use crate::gateway::var;
use dol_core::observe::slack::verify_webhook;
use dol_test_support::mock_llm::{Behavior, Flavor, MockLlm, MockModel};
use dol_test_support::receiver::Receiver;
use dol_test_support::{TestHost, TestHostBuilder, chrono_start};
use serde_json::{Value, json};

const APP: &str = "spin.toml";
const ADMIN: &str = "scans-admin";
const KEY: &str = "dol-test-bootstrap-key";
const SECRET: &str = "whsec-test";

fn builder(vars: &[(&str, &str)]) -> TestHostBuilder {
    let mut b = TestHost::builder(APP).variable(&var("admin_token"), ADMIN);
    for (k, v) in vars {
        b = b.variable(&var(k), v);
    }
    b
}

/// Sends `method path` with the admin token (or `token`), returning status and JSON.
async fn call(host: &TestHost, method: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = host.client.request(method, host.url(path));
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Runs a scan over HTTP; asserts success and returns the summary.
async fn scan(host: &TestHost, name: &str) -> Value {
    let (status, body) = call(host, "POST", &format!("/admin/scans/{name}"), Some(ADMIN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scan"]["outcome"], "ok", "{body}");
    eprintln!(
        "scan {name}: {} ms",
        body["scan"]["duration_ms"].as_i64().unwrap_or(-1)
    );
    body["summary"].clone()
}

/// Fires the cron trigger at `minutes` past the clock's start and waits for it.
async fn cron_tick(host: &TestHost, minutes: i64) {
    let mut events = host.app.cron_events();
    host.clock
        .set(chrono_start() + chrono::Duration::minutes(minutes));
    let event = tokio::time::timeout(Duration::from_secs(60), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event.component, "scans");
    assert_eq!(event.outcome, Ok(()), "the cron scans succeed");
}

fn scan_durations(host: &TestHost) -> Vec<(String, i64)> {
    let db = rusqlite::Connection::open(host.state_dir().join("sqlite_db.db")).unwrap();
    let mut st = db
        .prepare("SELECT name, duration_ms FROM scan_runs ORDER BY id")
        .unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_admin_routes_need_the_admin_token() {
    let host = builder(&[]).start().await;
    for (method, path) in [
        ("POST", "/admin/scans/alerts"),
        ("GET", "/admin/scans/alerts"),
        ("GET", "/admin/alerts"),
    ] {
        let (status, body) = call(&host, method, path, None).await;
        assert_eq!(status, 401, "{method} {path}: {body}");
        assert_eq!(body["error"]["code"], "unauthorized", "{body}");
        let (status, _) = call(&host, method, path, Some("wrong")).await;
        assert_eq!(status, 401, "{method} {path}");
    }
    let (status, body) = call(&host, "POST", "/admin/scans/nope", Some(ADMIN)).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "unknown-scan", "{body}");
    let (status, _) = call(&host, "PUT", "/admin/scans/alerts", Some(ADMIN)).await;
    assert_eq!(status, 405);
    let (status, body) = call(&host, "GET", "/admin/scans/nope", Some(ADMIN)).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!("unknown-scan")),
        "{body}"
    );
    let (status, body) = call(&host, "GET", "/admin/alerts", Some(ADMIN)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["alerts"].is_array(), "{body}");
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_history_lists_each_scans_last_runs_newest_first() {
    let host = builder(&[]).start().await;
    let (status, body) = call(&host, "GET", "/admin/scans/heartbeat", Some(ADMIN)).await;
    assert_eq!((status, &body["runs"]), (200, &json!([])), "{body}");
    scan(&host, "heartbeat").await;
    scan(&host, "heartbeat").await;
    scan(&host, "probes").await;
    let (status, body) = call(&host, "GET", "/admin/scans/heartbeat", Some(ADMIN)).await;
    assert_eq!(status, 200, "{body}");
    let runs = body["runs"].as_array().unwrap();
    assert_eq!(
        (body["scan"].as_str(), runs.len()),
        (Some("heartbeat"), 2),
        "{body}"
    );
    assert!(
        runs[0]["started_at"].as_i64() >= runs[1]["started_at"].as_i64(),
        "{body}"
    );
    assert!(
        runs.iter()
            .all(|r| r["scan"] == "heartbeat" && r["outcome"] == "ok"),
        "{body}"
    );
    let (_, one) = call(&host, "GET", "/admin/scans/heartbeat?limit=1", Some(ADMIN)).await;
    assert_eq!(one["runs"].as_array().map(Vec::len), Some(1), "{one}");
    assert_eq!(one["runs"][0], runs[0]);
    for bad in ["0", "101", "x", "-3"] {
        let path = format!("/admin/scans/heartbeat?limit={bad}");
        let (status, body) = call(&host, "GET", &path, Some(ADMIN)).await;
        assert_eq!(status, 400, "limit={bad}: {body}");
        assert_eq!(body["error"]["field"], "limit", "limit={bad}: {body}");
    }
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_threshold_breach_reaches_slack_and_survives_an_outage() {
    let slack = Receiver::start(500).await;
    let hook = Receiver::start(200).await;
    let mock = MockLlm::start(Flavor::OpenAi).await.unwrap();
    mock.set_behavior(Behavior::failing(500));
    let rules = json!([{
        "name": "HighErrorRate", "metric": "error_rate", "comparison": ">", "threshold": 0.1,
        "window": "5m", "severity": "critical", "labels": {"kill_flag": "generation_pipeline"},
        "description": "more than 10 % of requests failed"
    }])
    .to_string();
    let slack_url = slack.url("/services/T000/B000/XXXX");
    let hook_url = hook.url("/dol-alerts");
    let base = mock.base_url();
    let host = builder(&[
        ("bootstrap_api_key", KEY),
        ("openai_api_key", "key-openai"),
        ("openai_base_url", &base),
        ("gateway_retry_attempts", "1"),
        ("gateway_retry_delay_ms", "10"),
        ("gateway_attempt_timeout_ms", "1500"),
        ("gateway_min_attempt_ms", "50"),
        ("slack_webhook_url", &slack_url),
        ("notify_webhook_url", &hook_url),
        ("webhook_secret", SECRET),
        ("alert_rules", &rules),
    ])
    .start()
    .await;

    // The provider fails: the gateway answers offline and records errors.
    for _ in 0..3 {
        let r = host
            .client
            .post(host.url("/v1/chat/completions"))
            .header("authorization", format!("Bearer {KEY}"))
            .header("cache-control", "no-cache")
            .json(&json!({"model": "auto", "messages": [{"role": "user", "content": "Explain ownership in Rust"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(r.headers()["x-dol-provider"], "offline");
    }

    // Slack is down: the alert fires, the message stays in the outbox.
    let s = scan(&host, "alerts").await;
    assert_eq!(s["firing"], json!(["HighErrorRate"]), "{s}");
    assert_eq!(s["queued"], 1, "{s}");
    assert_eq!(s["delivery"]["failed"], 1, "{s}");
    // The scan also folds usage minutes (all but the last 15) into hour rows.
    let now_s = chrono::Utc::now().timestamp();
    let until = s["usage_fold"]["until"].as_i64().unwrap_or(0);
    assert!(
        until % 60 == 0 && (now_s - 1_020..=now_s - 900).contains(&until),
        "{s}"
    );
    assert_eq!(slack.received().len(), 1);
    assert_eq!(slack.received()[0].answered, 500);
    let (_, alerts) = call(&host, "GET", "/admin/alerts", Some(ADMIN)).await;
    assert_eq!(alerts["alerts"][0]["state"]["status"], "firing", "{alerts}");

    // Slack is back, but the retry is not due yet (backoff): nothing sent.
    slack.set_status(200);
    let s = scan(&host, "alerts").await;
    assert_eq!(s["queued"], 0, "still firing, not queued again: {s}");
    assert_eq!(s["delivery"]["delivered"], 0, "{s}");
    assert_eq!(slack.received().len(), 1);

    // A later cron tick (no traffic at that time: the alert resolves) delivers
    // the kept firing message and the resolution.
    cron_tick(&host, 1).await;
    let got: Vec<Value> = slack
        .received()
        .iter()
        .filter(|r| r.answered == 200)
        .map(|r| r.json())
        .collect();
    assert_eq!(got.len(), 2, "{got:?}");
    let firing = got[0].to_string();
    assert!(firing.contains("[FIRING] HighErrorRate"), "{firing}");
    for button in ["dol_ack", "dol_resolve", "dol_kill_switch"] {
        assert!(firing.contains(button), "{button} in {firing}");
    }
    let actions = got[0]["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "actions")
        .unwrap();
    assert_eq!(
        actions["elements"].as_array().unwrap().len(),
        3,
        "{actions}"
    );
    assert!(
        got[1].to_string().contains("[RESOLVED] HighErrorRate"),
        "{}",
        got[1]
    );

    // The generic webhook got both, signed.
    let hooks = hook.received();
    assert_eq!(hooks.len(), 2);
    for h in &hooks {
        let ts = h.header("x-dol-timestamp").unwrap();
        verify_webhook(
            SECRET,
            Some(ts),
            h.header("x-dol-signature"),
            h.body.as_bytes(),
            ts.parse().unwrap(),
        )
        .unwrap();
        assert_eq!(h.json()["type"], "alert");
    }
    assert_eq!(hooks[0].json()["payload"]["kind"], "firing");
    let runs = scan_durations(&host);
    eprintln!("scan_runs: {runs:?}");
    // Two alert scans over HTTP, then the cron tick's alerts, rollouts, video jobs and selection table.
    let names: Vec<&str> = runs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "alerts",
            "alerts",
            "alerts",
            "rollouts",
            "video-jobs",
            "selection"
        ]
    );
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_discovery_reports_a_new_model_and_alerts_on_its_price() {
    let slack = Receiver::start(200).await;
    let mock = MockLlm::start(Flavor::OpenAi).await.unwrap();
    let slack_url = slack.url("/services/T/B/X");
    let base = mock.base_url();
    let host = builder(&[
        ("openai_api_key", "key-openai"),
        ("openai_base_url", &base),
        ("slack_webhook_url", &slack_url),
    ])
    .start()
    .await;

    // Probes: the mock answers its model list.
    let s = scan(&host, "probes").await;
    assert_eq!(s["probes"][0]["provider"], "openai", "{s}");
    assert_eq!(s["probes"][0]["up"], true, "{s}");

    // First discovery: whatever the mock lists beyond the seed catalog.
    scan(&host, "discovery").await;
    let mut models = mock.models();
    models.push(MockModel::new("gpt-discovered-1"));
    mock.set_models(models);
    let s = scan(&host, "discovery").await;
    let added: Vec<&str> = s["providers"][0]["added"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(added, vec!["gpt-discovered-1"], "{s}");
    assert!(s["queued"].is_i64(), "{s}");

    // The next alerts scan flags the unpriced model and delivers the news.
    let s = scan(&host, "alerts").await;
    let firing = s["firing"].to_string();
    assert!(firing.contains("ModelsWithoutPrice"), "{s}");
    let bodies: Vec<String> = slack.received().iter().map(|r| r.body.clone()).collect();
    assert!(
        bodies
            .iter()
            .any(|b| b.contains("DOL model discovery") && b.contains("new openai/gpt-discovered-1")),
        "{bodies:?}"
    );
    assert!(
        bodies.iter().any(|b| b.contains("ModelsWithoutPrice")),
        "{bodies:?}"
    );

    // A provider going down is recorded, not silent.
    drop(mock);
    let s = scan(&host, "probes").await;
    assert_eq!(s["probes"][0]["up"], false, "{s}");
    assert!(s["probes"][0]["error"].is_string(), "{s}");
    eprintln!("scan_runs: {:?}", scan_durations(&host));
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_retention_deletes_old_rows_only() {
    let host = builder(&[("retention_days", "30")]).start().await;
    scan(&host, "heartbeat").await;
    let now = chrono::Utc::now().timestamp_millis();
    let old = now - 40 * 86_400_000;
    let new = now - 86_400_000;
    {
        let db = rusqlite::Connection::open(host.state_dir().join("sqlite_db.db")).unwrap();
        for (id, ts) in [("old", old), ("new", new)] {
            db.execute(
                "INSERT INTO requests (id, ts, key_id, route, tier, entry_tier, provider, model, attempts, \
                 latency_ms, prompt_tokens, completion_tokens, cost_unknown, outcome, fallbacks, cached, \
                 stream, variant, detail) VALUES (?1, ?2, '-', 'chat', 'basic', 'basic', 'offline', 'x', 1, \
                 5, 1, 1, 0, 'offline', 0, 0, 0, '-', '{}')",
                rusqlite::params![id, ts],
            )
            .unwrap();
            let minute = ts / 1_000 - (ts / 1_000) % 60;
            db.execute(
                "INSERT INTO usage_minute (minute, tier, provider, model, outcome, variant, requests) \
                 VALUES (?1, 'basic', 'offline', 'x', 'offline', '-', 1)",
                rusqlite::params![minute],
            )
            .unwrap();
            db.execute(
                "INSERT INTO scan_runs (name, started_at, finished_at, duration_ms, outcome) \
                 VALUES ('heartbeat', ?1, ?1, 0, 'ok')",
                rusqlite::params![ts],
            )
            .unwrap();
            // Delivered at ts: purged when old; an undelivered old one stays.
            db.execute(
                "INSERT INTO outbox (kind, target, payload, next_attempt_at, delivered_at, created_at) \
                 VALUES ('scan', 'default', '{}', ?1, ?1, ?1)",
                rusqlite::params![ts],
            )
            .unwrap();
        }
        db.execute(
            "INSERT INTO outbox (kind, target, payload, next_attempt_at, created_at) \
             VALUES ('scan', 'default', '{}', ?1, ?1)",
            rusqlite::params![old],
        )
        .unwrap();
        // Hour rollups are kept twice the retention: 40 days stays, 70 goes.
        for days in [40, 70] {
            let hour = (now - days * 86_400_000) / 1_000 / 3_600 * 3_600;
            db.execute(
                "INSERT INTO usage_hour (hour, tier, provider, model, outcome, variant, requests) \
                 VALUES (?1, 'basic', 'offline', 'x', 'offline', '-', 1)",
                rusqlite::params![hour],
            )
            .unwrap();
        }
    }
    // The console's key-value entries: an old sign-in counter and the mark
    // of a long-expired session go; a live counter, a mark of a session
    // still valid and keys of others stay.
    let now_s = now / 1_000;
    let kv_entries = [
        ("dol:console:sign-in:10.0.0.1", format!("{}:3", now_s - 600)),
        ("dol:console:sign-in:10.0.0.2", format!("{}:3", now_s - 10)),
        ("dol:console:signed-out:aaaa", format!("{}", now_s - 60)),
        ("dol:console:signed-out:bbbb", format!("{}", now_s + 3_600)),
        ("dol:other:keep", "1".to_owned()),
    ];
    {
        let kv = rusqlite::Connection::open(host.state_dir().join("sqlite_key_value.db")).unwrap();
        for (key, value) in &kv_entries {
            kv.execute(
                "INSERT INTO spin_key_value (store, key, value) VALUES ('default', ?1, ?2)",
                rusqlite::params![key, value.as_bytes()],
            )
            .unwrap();
        }
    }
    let s = scan(&host, "retention").await;
    assert_eq!(s["retention_days"], 30, "{s}");
    assert_eq!(
        s["deleted"],
        json!({"requests": 1, "usage_minute": 1, "usage_hour": 1, "scan_runs": 1, "outbox": 1,
               "rate_windows": 0, "console_keys": 2, "feedback": 0}),
        "{s}"
    );
    {
        let kv = rusqlite::Connection::open(host.state_dir().join("sqlite_key_value.db")).unwrap();
        let mut st = kv
            .prepare("SELECT key FROM spin_key_value WHERE key LIKE 'dol:%' ORDER BY key")
            .unwrap();
        let left: Vec<String> = st
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .filter(|k: &String| k.starts_with("dol:console:") || k.starts_with("dol:other"))
            .collect();
        assert_eq!(
            left,
            [
                "dol:console:sign-in:10.0.0.2",
                "dol:console:signed-out:bbbb",
                "dol:other:keep"
            ]
        );
    }
    let db = rusqlite::Connection::open(host.state_dir().join("sqlite_db.db")).unwrap();
    let count = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(count("SELECT COUNT(*) FROM requests WHERE id = 'new'"), 1);
    assert_eq!(count("SELECT COUNT(*) FROM requests"), 1);
    assert_eq!(count("SELECT COUNT(*) FROM usage_minute"), 1);
    // The 40-day hour (with the old minute, which the scan folded into it
    // before deleting the minute: no alerts scan had run) and the hour of
    // the recent minute.
    assert_eq!(count("SELECT COUNT(*) FROM usage_hour"), 2);
    let old_hour = old / 1_000 / 3_600 * 3_600;
    assert_eq!(
        db.query_row(
            "SELECT SUM(requests) FROM usage_hour WHERE hour = ?1",
            [old_hour],
            |r| r.get::<_, i64>(0)
        )
        .unwrap(),
        2,
        "the 40-day hour's own request and the folded minute's"
    );
    assert_eq!(count("SELECT COUNT(*) FROM outbox"), 2);
    assert_eq!(
        count("SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL"),
        1
    );
    // The heartbeat run, the new one and the retention run itself.
    assert_eq!(count("SELECT COUNT(*) FROM scan_runs"), 3);
    host.app.shutdown().await;
}
