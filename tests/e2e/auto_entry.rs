//! The auto entry tier end to end, lean (one host start, 11 chat requests): the
//! tier flag serves `auto`; the basic model (gpt-4.1-nano) refuses hard
//! prompts while it is being explored and answers easy ones well; the
//! injected minute tick's `selection` scan learns the table; then easy
//! prompts enter at basic and hard ones at enhanced (the
//! `x-dol-selection` header and the request rows say so), and the whole
//! run cost less than always-comprehensive (each row's baseline).

use crate::gateway::var;
use chrono::{DurationRound, TimeDelta, Timelike, Utc};
use dol_test_support::TestHost;
use dol_test_support::mock_llm::{Behavior, Flavor, MockLlm};
use serde_json::{Value, json};

const ADMIN: &str = "auto-admin";
const KEY: &str = "dol-auto-key";

/// One chat request: (status, `x-dol-selection`, `x-dol-tier`, request id, body).
async fn ask(host: &TestHost, text: &str) -> (u16, String, String, String, Value) {
    let body = json!({"model": "auto", "messages": [{"role": "user", "content": text}]});
    let resp = host
        .client
        .post(host.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let (selection, tier, id) = (
        header("x-dol-selection"),
        header("x-dol-tier"),
        header("x-dol-request-id"),
    );
    let status = resp.status().as_u16();
    (
        status,
        selection,
        tier,
        id,
        resp.json().await.unwrap_or_default(),
    )
}

/// Asks `text`, asserts a 200 with `selection` and `tier`; returns the request id.
async fn expect(host: &TestHost, text: &str, selection: &str, tier: &str) -> String {
    let (s, sel, got, id, b) = ask(host, text).await;
    assert_eq!(
        (s, sel.as_str(), got.as_str()),
        (200, selection, tier),
        "{text}: {b}"
    );
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_auto_flag_enters_easy_prompts_cheaper_than_hard_ones_after_the_minute_scan() {
    let mock = MockLlm::start(Flavor::OpenAi).await.unwrap();
    // The cron clock starts after the wall clock, so the injected tick comes
    // after every request and its one-day window reaches back over them.
    // The tick is off the five-minute grid: there the `*/5` trigger fires
    // too, finds this tick's scans leased by the minute trigger and may
    // report its event before they are done.
    let mut minute =
        Utc::now().duration_trunc(TimeDelta::minutes(1)).unwrap() + TimeDelta::minutes(10);
    while (minute + TimeDelta::minutes(1)).minute().is_multiple_of(5) {
        minute += TimeDelta::minutes(1);
    }
    let host = TestHost::builder("spin.toml")
        .variable(&var("admin_token"), ADMIN)
        .variable(&var("bootstrap_api_key"), KEY)
        .variable(&var("openai_api_key"), "key-openai")
        .variable(&var("openai_base_url"), &mock.base_url())
        .variable(&var("gateway_retry_delay_ms"), "10")
        .clock_start(minute)
        .start()
        .await;
    let flag = json!({
        "state": "ENABLED",
        "variants": {"comprehensive": "comprehensive", "enhanced": "enhanced", "basic": "basic", "auto": "auto"},
        "defaultVariant": "auto"
    });
    let (s, r) = host
        .call(
            "PUT",
            "/admin/flags/generation_pipeline",
            Some(ADMIN),
            Some(&flag.to_string()),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    // An unknown hint is still the client's mistake, naming the field.
    let (s, e) = host
        .call(
            "POST",
            "/v1/chat/completions",
            Some(KEY),
            Some(
                &json!({"model": "auto", "dol": {"tier": "gold"},
                "messages": [{"role": "user", "content": "hi"}]})
                .to_string(),
            ),
        )
        .await;
    assert_eq!(
        (s, e["error"]["param"].as_str()),
        (400, Some("dol.tier")),
        "{e}"
    );

    let hard = |i: usize| {
        format!("Prove step by step that merge sort variant {i} runs in O(n log n) time")
    };
    let easy = |i: usize| format!("What is the capital of country number {i}?");
    let mut ids = Vec::new();
    // Nothing learned: everything explores the cheapest tier. The basic
    // model fails the hard prompts (a refusal the quality gate scores low).
    mock.set_model_behavior(
        "gpt-4.1-nano",
        Behavior::with_answer("I'm sorry, but I can't help with that request."),
    );
    for i in 0..3 {
        ids.push(expect(&host, &hard(i), "hard;explore", "basic").await);
    }
    mock.clear_model_behaviors();
    for i in 0..3 {
        ids.push(expect(&host, &easy(i), "easy;explore", "basic").await);
    }

    // The minute tick learns the table: basic is ruled out for hard prompts.
    host.cron_tick_at(minute + TimeDelta::minutes(1)).await;
    let (s, list) = host
        .call("GET", "/admin/recommendations", Some(ADMIN), None)
        .await;
    assert_eq!(s, 200, "{list}");
    let sel = &list["selection"];
    assert_eq!(sel["autoVariants"], json!(["auto (default)"]), "{sel}");
    assert_eq!(
        (sel["rows"].clone(), sel["autoEntered"].clone()),
        (json!(6), json!(6)),
        "{sel}"
    );
    let cell = |tier: &str, d: &str| {
        sel["cells"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["tier"] == tier && c["difficulty"] == d)
            .cloned()
            .unwrap_or_else(|| panic!("no {tier}/{d} cell: {sel}"))
    };
    assert_eq!(cell("basic", "hard")["n"], 3, "{sel}");
    assert!(
        cell("basic", "hard")["mean"].as_f64().unwrap() < 7.0,
        "{sel}"
    );
    assert!(
        cell("basic", "easy")["mean"].as_f64().unwrap() >= 7.0,
        "{sel}"
    );
    assert_eq!(
        sel["choices"]["hard"],
        json!({"tier": "enhanced", "reason": "explore"}),
        "{sel}"
    );

    // Now easy prompts enter at basic, hard ones at enhanced.
    for i in 3..5 {
        ids.push(expect(&host, &hard(i), "hard;explore", "enhanced").await);
        ids.push(expect(&host, &easy(i), "easy;explore", "basic").await);
    }

    // The rows: entry tier, variant and difficulty; and the cost against
    // always-comprehensive (the savings baseline of the same tokens).
    let (mut cost, mut baseline) = (0, 0);
    for id in &ids {
        let (s, row) = host
            .call("GET", &format!("/admin/requests/{id}"), Some(ADMIN), None)
            .await;
        assert_eq!(s, 200, "{row}");
        assert_eq!(row["variant"], "auto", "{row}");
        assert!(
            row["difficulty"] == "easy" || row["difficulty"] == "hard",
            "{row}"
        );
        assert_ne!(row["entry_tier"], "comprehensive", "{row}");
        cost += row["cost_micros"].as_u64().unwrap();
        baseline += row["baseline_cost_micros"].as_u64().unwrap();
    }
    eprintln!("auto entry: {cost} µ$ against {baseline} µ$ always-comprehensive");
    assert!(cost * 2 < baseline, "{cost} vs {baseline}");
    host.app.shutdown().await;
}
