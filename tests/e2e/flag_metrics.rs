//! `dol_flag_evaluations_total` through the real host: OFREP evaluations
//! (single, bulk, unknown flag) and the generate component's in-process
//! entry-tier flag are counted per minute in key-value, folded into SQLite
//! by the alerts scan on an injected cron tick (never slept), exported by
//! `/metrics` exactly once, and accepted by Prometheus' own parser.

use std::collections::BTreeMap;

use dol_test_support::TestHost;
use serde_json::{Value, json};

const ADMIN: &str = "flag-metrics-admin";
const KEY: &str = "flag-metrics-key";

async fn post(host: &TestHost, path: &str, body: Value, auth: Option<&str>) -> (u16, Value) {
    let mut req = host.client.post(host.url(path)).json(&body);
    if let Some(a) = auth {
        req = req.header("authorization", format!("Bearer {a}"));
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The `dol_flag_evaluations_total` samples of `/metrics`, by label text.
async fn flag_samples(host: &TestHost) -> (String, BTreeMap<String, f64>) {
    let text = host
        .client
        .get(host.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let samples = text
        .lines()
        .filter_map(|l| l.strip_prefix("dol_flag_evaluations_total{"))
        .filter_map(|l| l.rsplit_once("} "))
        .map(|(labels, v)| (labels.to_owned(), v.parse().unwrap()))
        .collect();
    (text, samples)
}

/// `GET /admin/flags/{flag}/evaluations` with the admin token.
async fn evaluations(host: &TestHost, flag: &str) -> Value {
    let r = host
        .client
        .get(host.url(&format!("/admin/flags/{flag}/evaluations")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.json().await.unwrap()
}

/// [`evaluations`] once its live total reaches `total`: the counts of an
/// instance's answers are written together some milliseconds after the
/// first (`dol_core::observe::flag_counts::FLUSH_AFTER_MS`). Fails after 5 s.
async fn evaluations_reaching(host: &TestHost, flag: &str, total: u64) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let live = evaluations(host, flag).await;
        if live["total"].as_u64() >= Some(total) || std::time::Instant::now() >= deadline {
            return live;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

fn label(flag: &str, variant: &str, reason: &str) -> String {
    format!("flag=\"{flag}\",variant=\"{variant}\",reason=\"{reason}\"")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flag_evaluations_are_counted_folded_once_and_exported() {
    let host = TestHost::builder("spin.toml")
        .variable("SPIN_VARIABLE_ADMIN_TOKEN", ADMIN)
        .variable("SPIN_VARIABLE_BOOTSTRAP_API_KEY", KEY)
        .start()
        .await;
    let ctx = json!({"context": {"targetingKey": "user-1", "maturityPhase": "run"}});
    let mut single = None;
    for _ in 0..3 {
        let (s, v) = post(
            &host,
            "/ofrep/v1/evaluate/flags/generation_experiment",
            ctx.clone(),
            None,
        )
        .await;
        assert_eq!(s, 200, "{v}");
        single = Some(v);
    }
    let single = single.unwrap();
    let (s, _) = post(
        &host,
        "/ofrep/v1/evaluate/flags/no_such_flag",
        ctx.clone(),
        None,
    )
    .await;
    assert_eq!(s, 404);
    // A bad request evaluates nothing and counts nothing.
    let (s, _) = post(
        &host,
        "/ofrep/v1/evaluate/flags/generation_experiment",
        json!({"context": 5}),
        None,
    )
    .await;
    assert_eq!(s, 400);
    let (s, bulk) = post(&host, "/ofrep/v1/evaluate/flags", ctx.clone(), None).await;
    assert_eq!(s, 200, "{bulk}");
    // The gateway evaluates its entry-tier flag in-process.
    let (s, v) = post(
        &host,
        "/v1/chat/completions",
        json!({"model": "auto", "messages": [{"role": "user", "content": "Hi"}]}),
        Some(KEY),
    )
    .await;
    assert_eq!(s, 200, "{v}");

    // Counted in key-value; nothing exported before the scan folds it.
    let (_, before) = flag_samples(&host).await;
    assert!(before.is_empty(), "{before:?}");
    // The live counts already show them, read from the open minute keys.
    let variant = single["variant"].as_str().unwrap();
    let live = evaluations_reaching(&host, "generation_experiment", 4).await;
    assert_eq!(live["variants"], json!({ variant: 4 }), "{live}");
    // Every instance's batch is written before the fold below: the unknown
    // flag's (another OFREP instance may have answered it) and the
    // gateway's in-process one (with the bulk answer's, two).
    let unknown = evaluations_reaching(&host, "%28unknown%29", 1).await;
    assert_eq!(unknown["total"].as_u64(), Some(1), "{unknown}");
    let pipeline = evaluations_reaching(&host, "generation_pipeline", 2).await;
    assert_eq!(pipeline["total"].as_u64(), Some(2), "{pipeline}");
    assert_eq!(
        (live["total"].as_u64(), live["unfolded"].as_u64()),
        (Some(4), Some(4)),
        "{live}"
    );

    // A cron tick well after these minutes closed: the alerts scan folds them.
    host.cron_tick(1).await;
    let (text, after) = flag_samples(&host).await;
    let experiment = label(
        "generation_experiment",
        single["variant"].as_str().unwrap(),
        single["reason"].as_str().unwrap(),
    );
    // Three single evaluations and one in the bulk answer.
    assert_eq!(after.get(&experiment), Some(&4.0), "{text}");
    assert_eq!(
        after.get(&label("(unknown)", "-", "ERROR")),
        Some(&1.0),
        "{text}"
    );
    let bulk_flags = bulk["flags"].as_array().unwrap();
    for f in bulk_flags {
        let key = f["key"].as_str().unwrap();
        let variant = f["variant"].as_str().unwrap_or("-");
        let reason = f["reason"].as_str().unwrap_or("ERROR");
        assert!(
            after.contains_key(&label(key, variant, reason)),
            "{key}: {text}"
        );
    }
    assert!(
        after
            .keys()
            .any(|l| l.starts_with("flag=\"generation_pipeline\"")),
        "the in-process evaluation is counted: {text}"
    );

    // Folded once: a later scan adds nothing.
    host.cron_tick(2).await;
    let (_, again) = flag_samples(&host).await;
    assert_eq!(again, after);
    // The live counts after the fold: the same, now from the totals only.
    let live = evaluations(&host, "generation_experiment").await;
    assert_eq!(live["variants"], json!({ variant: 4 }), "{live}");
    assert_eq!(live["unfolded"].as_u64(), Some(0), "{live}");
    // Admin only, and read only.
    let url = host.url("/admin/flags/generation_experiment/evaluations");
    let r = host.client.get(&url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = host
        .client
        .post(&url)
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);

    // Prometheus' own parser accepts the exposition.
    let python = dol_test_support::workspace_root().join("tests/prometheus/.venv/bin/python");
    assert!(
        python.exists(),
        "tests/prometheus/.venv is missing: run scripts/test (it installs prometheus_client)"
    );
    let script = dol_test_support::workspace_root().join("tests/prometheus/check.py");
    let url = host.url("/metrics");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(script)
            .arg(url)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("family dol_flag_evaluations counter "),
        "{stdout}"
    );
    host.app.shutdown().await;
}

/// Single evaluations are counted on atomic key-value counters
/// (`wasi:keyvalue/atomics.increment`), so concurrent requests lose none:
/// the live count and the folded total are exactly the answers given (the
/// read-modify-write list they replaced lost about 1 % at concurrency 16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_single_evaluations_are_all_counted() {
    const CLIENTS: usize = 16;
    const EACH: usize = 20;
    let host = TestHost::builder("spin.toml")
        .variable("SPIN_VARIABLE_ADMIN_TOKEN", ADMIN)
        .start()
        .await;
    let ctx = json!({"context": {"targetingKey": "user-1", "maturityPhase": "run"}});
    let clients = (0..CLIENTS).map(|_| async {
        let mut answers = Vec::new();
        for _ in 0..EACH {
            let (s, v) = post(
                &host,
                "/ofrep/v1/evaluate/flags/generation_experiment",
                ctx.clone(),
                None,
            )
            .await;
            assert_eq!(s, 200, "{v}");
            answers.push(v);
        }
        answers
    });
    let answers: Vec<Value> = futures::future::join_all(clients)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(answers.len(), CLIENTS * EACH);
    // One context, so one variant and reason for every answer.
    let (variant, reason) = (&answers[0]["variant"], &answers[0]["reason"]);
    assert!(
        answers
            .iter()
            .all(|a| (&a["variant"], &a["reason"]) == (variant, reason))
    );
    let variant = variant.as_str().unwrap();
    let expected = (CLIENTS * EACH) as u64;

    let live = evaluations_reaching(&host, "generation_experiment", expected).await;
    assert_eq!(live["variants"], json!({ variant: expected }), "{live}");
    assert_eq!(live["unfolded"].as_u64(), Some(expected), "{live}");

    host.cron_tick(1).await;
    let (text, after) = flag_samples(&host).await;
    let sample = label("generation_experiment", variant, reason.as_str().unwrap());
    assert_eq!(after.get(&sample), Some(&(expected as f64)), "{text}");
    let live = evaluations(&host, "generation_experiment").await;
    assert_eq!(
        (live["total"].as_u64(), live["unfolded"].as_u64()),
        (Some(expected), Some(0)),
        "{live}"
    );
    host.app.shutdown().await;
}
