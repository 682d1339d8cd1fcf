//! DOL's own app (`spin.toml` at the repo root) on the host: health answers
//! (`/health/ready`) with working storage, and the scans component's cron run shows up in it.

use std::time::Duration;

use dol_test_support::{TestHost, chrono_start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_with_storage_round_trips() {
    let host = TestHost::builder("spin.toml").start().await;
    let (status, body) = host.get_json("/health/ready").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok", "{body}");
    assert!(body["version"].is_string(), "{body}");
    let checks: Vec<(&str, bool)> = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|check| {
            (
                check["name"].as_str().unwrap(),
                check["ok"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        checks,
        vec![
            ("key-value", true),
            ("sqlite", true),
            ("migrations", true),
            ("credentials", true)
        ],
        "{body}"
    );
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_rejects_other_methods_with_json() {
    let host = TestHost::builder("spin.toml").start().await;
    let (status, body) = host.send_json("DELETE", "/health", "").await;
    assert_eq!(status, 405, "{body}");
    assert!(body["error"].is_object(), "{body}");
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_cron_run_is_visible_through_health() {
    let host = TestHost::builder("spin.toml").start().await;
    let mut events = host.app.cron_events();
    let tick = chrono_start() + chrono::Duration::minutes(1);
    host.clock.set(tick);
    let event = tokio::time::timeout(Duration::from_secs(30), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event.component, "scans");
    assert_eq!(event.outcome, Ok(()), "the heartbeat scan succeeds");
    let (status, body) = host.get_json("/health/ready").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["last_scan"]
            .to_string()
            .contains(&tick.timestamp().to_string()),
        "{body}"
    );
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_also_run_over_http() {
    let host = TestHost::builder("spin.toml")
        .variable("SPIN_VARIABLE_ADMIN_TOKEN", "admin")
        .start()
        .await;
    let post = |path: &'static str| {
        host.client
            .post(host.url(path))
            .header("authorization", "Bearer admin")
            .send()
    };
    let status = post("/admin/scans/heartbeat").await.unwrap().status();
    assert_eq!(status, 200);
    let status = post("/admin/scans/no-such-scan").await.unwrap().status();
    assert_eq!(status, 404);
    let (status, body) = host.send_json("POST", "/admin/scans/heartbeat", "").await;
    assert_eq!(status, 401, "admin token required: {body}");
    host.app.shutdown().await;
}
