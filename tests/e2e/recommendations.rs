//! Recommendations end to end, lean (one host start): traffic through the
//! real gateway against the mock provider where the enhanced tier
//! (gpt-4o-mini) answers as well as the comprehensive one (gpt-4o) → a
//! `cheaper-tier` recommendation with its evidence → the daily scan stores
//! it and notifies once → apply starts a guarded rollout → the cheaper
//! models turn bad → the injected cron tick rolls it back. Every bad input
//! and denial is its own case.

use crate::gateway::var;
use chrono::{DurationRound, TimeDelta, Utc};
use dol_test_support::TestHost;
use dol_test_support::mock_llm::{Behavior, Flavor, MockLlm};
use dol_test_support::receiver::Receiver;
use serde_json::{Value, json};

const ADMIN: &str = "rec-admin";
const VIEWER: &str = "rec-viewer-secret-7x1k";
const KEY: &str = "dol-rec-key";

async fn call(
    host: &TestHost,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let body = body.map(|b| b.to_string());
    host.call(method, path, auth, body.as_deref()).await
}

/// `n` chat requests (distinct users and prompts); `tier` as the request's
/// hint, or none (the tier flag decides).
async fn traffic(host: &TestHost, prefix: &str, n: usize, tier: Option<&str>) {
    for i in 0..n {
        let mut body = json!({
            "model": "auto",
            "user": format!("{prefix}-{i}"),
            "messages": [{"role": "user", "content": format!(
                "Explain how Rust ownership and borrowing prevent data races, example {i}"
            )}]
        });
        if let Some(t) = tier {
            body["dol"] = json!({"tier": t});
        }
        let (s, reply) = call(host, "POST", "/v1/chat/completions", Some(KEY), Some(body)).await;
        assert_eq!(s, 200, "{reply}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cheaper_tier_is_recommended_applied_as_a_guarded_rollout_and_rolled_back() {
    let mock = MockLlm::start(Flavor::OpenAi).await.unwrap();
    let slack = Receiver::start(200).await;
    // The cron clock starts a little after the wall clock, so the injected
    // tick below comes after every request this test sends, and its guard
    // windows (an hour) reach back over them.
    let minute = Utc::now().duration_trunc(TimeDelta::minutes(1)).unwrap() + TimeDelta::minutes(10);
    let host = TestHost::builder("spin.toml")
        .variable(&var("admin_token"), ADMIN)
        .variable(&var("viewer_token"), VIEWER)
        .variable(&var("bootstrap_api_key"), KEY)
        .variable(&var("openai_api_key"), "key-openai")
        .variable(&var("openai_base_url"), &mock.base_url())
        .variable(&var("slack_webhook_url"), &slack.url("/services/T/B/X"))
        .variable(&var("gateway_retry_delay_ms"), "10")
        .clock_start(minute)
        .start()
        .await;

    // Nothing to recommend yet.
    let (s, list) = call(&host, "GET", "/admin/recommendations", Some(ADMIN), None).await;
    assert_eq!(s, 200, "{list}");
    assert_eq!(list["recommendations"], json!([]), "{list}");

    traffic(&host, "base", 24, None).await;
    traffic(&host, "cheap", 24, Some("enhanced")).await;
    // The bootstrap key has no limits: its rows trail the answers by up to 20 ms.
    let (s, list) = dol_test_support::eventually("all 48 requests in the evidence", || async {
        let (s, list) = call(&host, "GET", "/admin/recommendations", Some(ADMIN), None).await;
        let samples = list["recommendations"]
            .as_array()
            .and_then(|all| all.iter().find(|r| r["kind"] == "cheaper-tier"))
            .map(|r| r["evidence"]["samples"].clone());
        if samples == Some(json!({"current": 24, "cheaper": 24})) {
            Ok((s, list))
        } else {
            Err(list.to_string())
        }
    })
    .await;
    assert_eq!(s, 200, "{list}");
    let rec = list["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "cheaper-tier")
        .cloned()
        .unwrap_or_else(|| panic!("no cheaper-tier recommendation: {list}"));
    assert_eq!(
        rec["subject"],
        json!({"template": null, "tier": "comprehensive", "to": "enhanced"})
    );
    assert_eq!(
        rec["evidence"]["samples"],
        json!({"current": 24, "cheaper": 24}),
        "{rec}"
    );
    assert_eq!(rec["evidence"]["test"], "welch-t (non-inferiority)");
    assert!(rec["impact"]["usdPerDay"].as_f64().unwrap() > 0.0, "{rec}");
    assert_eq!(rec["apply"]["type"], "rollout");
    assert_eq!(rec["status"], "open");
    let id = rec["id"].as_str().unwrap().to_owned();

    // The daily scan stores it and notifies once.
    let (s, run) = call(
        &host,
        "POST",
        "/admin/scans/recommendations",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(s, 200, "{run}");
    assert!(
        run["summary"]["new"]
            .as_array()
            .unwrap()
            .contains(&json!(id)),
        "{run}"
    );
    let (_, again) = call(
        &host,
        "POST",
        "/admin/scans/recommendations",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(again["summary"]["new"], json!([]), "{again}");
    let texts: Vec<String> = slack
        .received()
        .iter()
        .map(|r| r.json()["text"].to_string())
        .collect();
    assert_eq!(
        texts
            .iter()
            .filter(|t| t.contains("Recommendation"))
            .count(),
        1,
        "{texts:?}"
    );

    // Denials and bad inputs, each its own answer.
    let apply = format!("/admin/recommendations/{id}/apply");
    assert_eq!(
        call(&host, "GET", "/admin/recommendations", None, None)
            .await
            .0,
        401
    );
    assert_eq!(
        call(&host, "POST", &apply, Some("wrong"), None).await.0,
        401
    );
    let (cookie, csrf) = crate::console::session(&host, VIEWER).await;
    let viewer = |method: &str, path: &str| {
        host.client
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                host.url(path),
            )
            .header("cookie", &cookie)
            .header("x-dol-csrf", &csrf)
    };
    assert_eq!(
        viewer("GET", "/admin/recommendations")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    for path in [
        apply.clone(),
        format!("/admin/recommendations/{id}/dismiss"),
    ] {
        let r = viewer("POST", &path).send().await.unwrap();
        assert_eq!(r.status(), 403, "{path}");
    }
    let (s, e) = call(
        &host,
        "POST",
        "/admin/recommendations/rec-0000000000000000/apply",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (404, Some("not-found")),
        "{e}"
    );
    let (s, e) = call(
        &host,
        "POST",
        &apply,
        Some(ADMIN),
        Some(json!({"steps": 3})),
    )
    .await;
    assert_eq!(
        (s, e["error"]["field"].as_str()),
        (400, Some("steps")),
        "{e}"
    );
    let (s, e) = call(&host, "POST", &apply, Some(ADMIN), Some(json!("text"))).await;
    assert_eq!(s, 400, "{e}");
    let (s, e) = call(
        &host,
        "GET",
        "/admin/recommendations?status=maybe",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(
        (s, e["error"]["field"].as_str()),
        (400, Some("status")),
        "{e}"
    );
    assert_eq!(call(&host, "GET", &apply, Some(ADMIN), None).await.0, 405);
    assert_eq!(
        call(&host, "POST", "/admin/recommendations", Some(ADMIN), None)
            .await
            .0,
        405
    );
    assert_eq!(
        call(
            &host,
            "POST",
            &format!("/admin/recommendations/{id}/explode"),
            Some(ADMIN),
            None
        )
        .await
        .0,
        404
    );

    // Apply: a guarded rollout of the tier flag, guards from the evidence.
    let (s, applied) = call(&host, "POST", &apply, Some(ADMIN), None).await;
    assert_eq!(s, 200, "{applied}");
    assert_eq!(applied["status"], "applied");
    assert_eq!(applied["rollout"]["variant"], "enhanced");
    assert_eq!(applied["rollout"]["status"], "active");
    let (s, e) = call(&host, "POST", &apply, Some(ADMIN), None).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (409, Some("conflict")),
        "{e}"
    );
    let (s, _) = call(
        &host,
        "POST",
        &format!("/admin/recommendations/{id}/dismiss"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(s, 409);
    let (_, audit) = call(
        &host,
        "GET",
        "/admin/audit?kind=recommendation",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(audit["entries"][0]["action"], "apply", "{audit}");

    // The cheaper models turn bad; the variant's share of new traffic
    // answers badly; the injected cron tick's guard loop rolls it back.
    for model in ["gpt-4o-mini", "gpt-4.1-nano"] {
        mock.set_model_behavior(
            model,
            Behavior::with_answer("I'm sorry, but I can't help with that request."),
        );
    }
    traffic(&host, "after", 48, None).await;
    host.cron_tick_at(minute + TimeDelta::minutes(1)).await;
    let (_, rollout) = call(
        &host,
        "GET",
        "/admin/flags/generation_pipeline/rollout",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(rollout["status"], "rolled_back", "{rollout}");
    assert!(
        rollout["reason"].as_str().unwrap().contains("quality"),
        "{rollout}"
    );
    host.app.shutdown().await;
}
