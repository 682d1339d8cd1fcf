//! Experiments end to end: the DOL app on the real host, clients posting
//! events to `POST /v1/events` with an API key, admins defining experiments
//! and reading reports from `/admin/experiments`, and the gateway's own
//! per-variant telemetry for experiments on the tier flag.

use crate::gateway::var;
use dol_core::experiments::definition;
use dol_core::experiments::report::{self, ExperimentData, MetricData, VariantData};
use dol_core::experiments::stats::{ProportionSample, two_proportion_z_test};
use dol_core::flags::{EvaluationContext, FlagSet};
use dol_test_support::TestHost;
use dol_test_support::mock_llm::{Flavor, MockLlm};
use serde_json::{Value, json};

const APP: &str = "spin.toml";
const ADMIN: &str = "admin-secret";
const API_KEY: &str = "dol-test-key";

async fn start(extra: &[(&str, &str)]) -> TestHost {
    let mut b = TestHost::builder(APP)
        .variable(&var("admin_token"), ADMIN)
        .variable(&var("bootstrap_api_key"), API_KEY)
        .variable(&var("gateway_retry_delay_ms"), "20")
        .variable(&var("gateway_attempt_timeout_ms"), "1500")
        .variable(&var("gateway_timeout_ms"), "6000")
        .variable(&var("gateway_min_attempt_ms"), "50");
    for (k, v) in extra {
        b = b.variable(&var(k), v);
    }
    b.start().await
}

async fn call(
    host: &TestHost,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    host.call(method, path, auth, body).await
}

async fn admin(host: &TestHost, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let text = body.map(Value::to_string);
    call(host, method, path, Some(ADMIN), text.as_deref()).await
}

async fn post_events(host: &TestHost, events: &[Value]) -> (u16, Value) {
    let body = json!({ "events": events }).to_string();
    call(host, "POST", "/v1/events", Some(API_KEY), Some(&body)).await
}

/// Rows in a table of the app's database (to prove refusals change nothing).
fn rows(host: &TestHost, table: &str) -> i64 {
    let db = rusqlite::Connection::open(host.state_dir().join("sqlite_db.db")).unwrap();
    db.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
        .unwrap_or(0)
}

/// JSON equality, with numbers equal to 1e-12 relative: serde_json's
/// default float parser may be off by one unit in the last place.
fn assert_close(got: &Value, want: &Value, path: &str) {
    match (got, want) {
        (Value::Number(g), Value::Number(w)) => {
            let (g, w) = (g.as_f64().unwrap(), w.as_f64().unwrap());
            assert!(
                (g - w).abs() <= 1e-12 * w.abs().max(1e-300),
                "{path}: {g} vs {w}"
            );
        }
        (Value::Array(g), Value::Array(w)) => {
            assert_eq!(g.len(), w.len(), "{path}");
            for (i, (g, w)) in g.iter().zip(w).enumerate() {
                assert_close(g, w, &format!("{path}[{i}]"));
            }
        }
        (Value::Object(g), Value::Object(w)) => {
            let gk: Vec<&String> = g.keys().collect();
            let wk: Vec<&String> = w.keys().collect();
            assert_eq!(gk, wk, "{path}");
            for (k, wv) in w {
                assert_close(&g[k], wv, &format!("{path}.{k}"));
            }
        }
        _ => assert_eq!(got, want, "{path}"),
    }
}

/// SplitMix64: a tiny deterministic generator for the simulated population.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A 50/50 flag by targeting key.
fn split_flag(a: &str, b: &str) -> Value {
    json!({
        "state": "ENABLED",
        "variants": {a: a, b: b},
        "defaultVariant": a,
        "targeting": {"fractional": [[a, 50], [b, 50]]}
    })
}

/// The variant the flag engine serves `user` (the same engine the server runs).
fn local_variant(flag_key: &str, flag: &Value, user: &str) -> String {
    let set = FlagSet::parse(&json!({"flags": {flag_key: flag}}).to_string()).unwrap();
    let ctx = EvaluationContext::new().with_targeting_key(user);
    set.evaluate(flag_key, &ctx, 1_800_000_000).variant.unwrap()
}

/// What a simulated population did, per variant: units and converters.
#[derive(Default, Debug)]
struct Tally {
    units: std::collections::BTreeMap<String, (u64, u64)>,
}

/// Simulates `users` users: each is exposed (an `exposure` event without a
/// variant, so the server evaluates the flag), and converts (`purchase`)
/// with the probability of its variant. Every other conversion event names
/// its variant, as a client that cached the evaluation would.
async fn simulate(
    host: &TestHost,
    flag_key: &str,
    flag: &Value,
    users: u32,
    rates: &[(&str, f64)],
    seed: u64,
) -> Tally {
    let mut rng = Rng(seed);
    let mut tally = Tally::default();
    let mut batch = Vec::new();
    for i in 0..users {
        let user = format!("{flag_key}-user-{i}");
        let variant = local_variant(flag_key, flag, &user);
        let rate = rates.iter().find(|(v, _)| *v == variant).unwrap().1;
        let entry = tally.units.entry(variant.clone()).or_default();
        entry.0 += 1;
        batch.push(json!({"targetingKey": user, "flag": flag_key, "name": "exposure"}));
        if rng.uniform() < rate {
            entry.1 += 1;
            let mut e = json!({"targetingKey": user, "flag": flag_key, "name": "purchase", "value": 20.0 + rng.uniform() * 10.0});
            if i % 2 == 0 {
                e["variant"] = json!(variant);
            }
            batch.push(e);
        }
        if batch.len() >= 400 {
            let (status, body) = post_events(host, &batch).await;
            assert_eq!(status, 202, "{body}");
            assert_eq!(body["accepted"], batch.len());
            batch.clear();
        }
    }
    if !batch.is_empty() {
        let (status, body) = post_events(host, &batch).await;
        assert_eq!(status, 202, "{body}");
    }
    tally
}

fn experiment(flag: &str, control: &str, treatment: &str, weights: (u32, u32)) -> Value {
    json!({
        "flag": flag,
        "control": control,
        "variants": [{"name": control, "weight": weights.0}, {"name": treatment, "weight": weights.1}],
        "start_ms": 0,
        "primary": {"kind": "conversion", "event": "purchase"},
        "criteria": {"alpha": 0.05, "min_relative_lift": 0.15, "min_units_per_variant": 200}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_effect_ships_with_the_core_numbers() {
    let host = start(&[]).await;
    let flag = split_flag("control", "treatment");
    let (s, b) = admin(&host, "PUT", "/admin/flags/checkout_button", Some(&flag)).await;
    assert_eq!(s, 200, "{b}");
    let def = experiment("checkout_button", "control", "treatment", (50, 50));
    let (s, b) = admin(
        &host,
        "PUT",
        "/admin/experiments/checkout-green",
        Some(&def),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["definition"]["primary"]["name"], "conversion:purchase");
    let (s, _) = admin(
        &host,
        "PUT",
        "/admin/experiments/checkout-green",
        Some(&def),
    )
    .await;
    assert_eq!(s, 200, "a replace answers 200");

    // 10 % vs 15 % conversion over 2000 users.
    let tally = simulate(
        &host,
        "checkout_button",
        &flag,
        2000,
        &[("control", 0.10), ("treatment", 0.15)],
        7,
    )
    .await;
    let (s, r) = admin(&host, "GET", "/admin/experiments/checkout-green", None).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["verdict"]["decision"], "ship", "{r:#}");
    assert_eq!(r["verdict"]["variant"], "treatment");
    assert_eq!(r["units"]["source"], "events");

    // The server's numbers equal the core's on the same counts.
    let (cu, cc) = tally.units["control"];
    let (tu, tc) = tally.units["treatment"];
    assert_eq!(
        r["units"]["observed"],
        json!([["control", cu], ["treatment", tu]])
    );
    let line = &r["metrics"][0]["variants"][1];
    assert_eq!(
        (line["n"].as_u64(), line["successes"].as_u64()),
        (Some(tu), Some(tc))
    );
    let want = two_proportion_z_test(
        ProportionSample {
            n: cu,
            successes: cc,
        },
        ProportionSample {
            n: tu,
            successes: tc,
        },
        0.05,
    )
    .unwrap();
    let p = line["comparison"]["p_value"].as_f64().unwrap();
    assert!(
        (p - want.p_value).abs() <= 1e-12 * want.p_value,
        "{p} vs {}",
        want.p_value
    );
    assert!(want.p_value < 0.05);
    let parsed = definition::parse(&def, 0).unwrap();
    let mut data = ExperimentData::new();
    for (v, (n, conv)) in &tally.units {
        let mut vd = VariantData {
            units: *n,
            ..VariantData::default()
        };
        vd.metrics.insert(
            "conversion:purchase".into(),
            MetricData::Proportion(ProportionSample {
                n: *n,
                successes: *conv,
            }),
        );
        data.insert(v.clone(), vd);
    }
    let local = serde_json::to_value(report::build("checkout-green", &parsed, &data)).unwrap();
    for field in ["metrics", "units", "verdict", "treatments"] {
        assert_close(&r[field], &local[field], field);
    }

    // Listed; deleted; gone.
    let (s, list) = admin(&host, "GET", "/admin/experiments", None).await;
    assert_eq!(s, 200);
    assert_eq!(list["experiments"][0]["key"], "checkout-green");
    let (s, _) = admin(&host, "DELETE", "/admin/experiments/checkout-green", None).await;
    assert_eq!(s, 200);
    let (s, _) = admin(&host, "GET", "/admin/experiments/checkout-green", None).await;
    assert_eq!(s, 404);
    let (s, _) = admin(&host, "DELETE", "/admin/experiments/checkout-green", None).await;
    assert_eq!(s, 404);
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_a_a_test_keeps_running_and_a_skewed_allocation_is_an_srm() {
    let host = start(&[]).await;
    let flag = split_flag("a", "b");
    let (s, b) = admin(&host, "PUT", "/admin/flags/aa_flag", Some(&flag)).await;
    assert_eq!(s, 200, "{b}");
    let (s, _) = admin(
        &host,
        "PUT",
        "/admin/experiments/aa",
        Some(&experiment("aa_flag", "a", "b", (1, 1))),
    )
    .await;
    assert_eq!(s, 201);
    // The same flag, but the experiment expects 90/10: a sample-ratio mismatch.
    let (s, _) = admin(
        &host,
        "PUT",
        "/admin/experiments/aa-skewed",
        Some(&experiment("aa_flag", "a", "b", (90, 10))),
    )
    .await;
    assert_eq!(s, 201);
    simulate(
        &host,
        "aa_flag",
        &flag,
        1200,
        &[("a", 0.10), ("b", 0.10)],
        11,
    )
    .await;

    let (_, r) = admin(&host, "GET", "/admin/experiments/aa", None).await;
    assert_eq!(r["verdict"]["decision"], "keep_running", "{r:#}");
    assert_eq!(r["units"]["srm"]["mismatch"], false);
    assert!(
        r["metrics"][0]["variants"][1]["comparison"]["p_value"]
            .as_f64()
            .unwrap()
            >= 0.05
    );

    let (_, r) = admin(&host, "GET", "/admin/experiments/aa-skewed", None).await;
    assert_eq!(r["verdict"]["decision"], "stop", "{r:#}");
    assert_eq!(r["units"]["srm"]["mismatch"], true);
    assert!(r["units"]["srm"]["p_value"].as_f64().unwrap() < 0.001);
    assert!(
        r["verdict"]["reasons"][0]
            .as_str()
            .unwrap()
            .contains("sample ratio mismatch")
    );
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_metrics_compare_pipeline_variants() {
    let mock = MockLlm::start(Flavor::OpenAi).await.unwrap();
    let host = start(&[
        ("openai_api_key", "key-openai"),
        ("openai_base_url", &mock.base_url()),
    ])
    .await;
    let flag = split_flag("comprehensive", "basic");
    let (s, b) = admin(
        &host,
        "PUT",
        "/admin/flags/generation_pipeline",
        Some(&flag),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let def = json!({
        "flag": "generation_pipeline",
        "control": "comprehensive",
        "variants": [{"name": "comprehensive", "weight": 1}, {"name": "basic", "weight": 1}],
        "start_ms": 0,
        "primary": {"kind": "cost"},
        "guardrails": [{"kind": "quality"}, {"kind": "success"}, {"kind": "latency_ms"}],
        "criteria": {"min_relative_lift": 0.15, "min_units_per_variant": 10}
    });
    let (s, b) = admin(
        &host,
        "PUT",
        "/admin/experiments/cheaper-pipeline",
        Some(&def),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let mut expected = std::collections::BTreeMap::<String, u64>::new();
    // One request id per variant, to give feedback on.
    let mut first = std::collections::BTreeMap::<String, String>::new();
    for i in 0..40 {
        let user = format!("pipeline-user-{i}");
        let variant = local_variant("generation_pipeline", &flag, &user);
        *expected.entry(variant.clone()).or_default() += 1;
        let body = json!({
            "model": "auto", "user": user,
            "messages": [{"role": "user", "content": "Explain how Rust ownership prevents data races"}]
        })
        .to_string();
        let resp = host
            .client
            .post(host.url("/v1/chat/completions"))
            .bearer_auth(API_KEY)
            .header("cache-control", "no-cache")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let id = resp.headers()["x-dol-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        first.entry(variant).or_insert(id);
        // Read the answer so the gateway finishes writing it.
        resp.text().await.unwrap();
    }
    // Thumbs down on the comprehensive answer, up on the basic one.
    for (variant, score) in [("comprehensive", -1), ("basic", 1)] {
        let body = json!({"request_id": first[variant], "score": score}).to_string();
        let (s, b) = call(&host, "POST", "/v1/feedback", Some(API_KEY), Some(&body)).await;
        assert_eq!(s, 201, "{b}");
    }
    // The key has no limits: its rows trail the answers by up to 20 ms.
    let observed = json!([
        ["comprehensive", expected["comprehensive"]],
        ["basic", expected["basic"]]
    ]);
    let (s, r) = dol_test_support::eventually("every request in the report", || async {
        let (s, r) = admin(&host, "GET", "/admin/experiments/cheaper-pipeline", None).await;
        if r["units"]["observed"] == observed {
            Ok((s, r))
        } else {
            Err(r.to_string())
        }
    })
    .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["units"]["source"], "requests");
    assert_eq!(
        r["units"]["observed"],
        json!([
            ["comprehensive", expected["comprehensive"]],
            ["basic", expected["basic"]]
        ]),
        "{r:#}"
    );
    let names: Vec<&str> = r["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cost", "quality", "success", "latency_ms"]);
    // The basic tier's model is cheaper per request: significantly better cost.
    let cost = &r["metrics"][0]["variants"][1];
    assert_eq!(cost["variant"], "basic");
    assert_eq!(cost["comparison"]["outcome"], "better", "{r:#}");
    let success = &r["metrics"][2]["variants"];
    assert_eq!(success[0]["value"], 1.0);
    // Every report lists each variant's feedback (informational).
    let fb = &r["feedback"];
    assert_eq!(
        (&fb[0]["variant"], &fb[0]["n"], &fb[0]["value"]),
        (&json!("comprehensive"), &json!(1), &json!(0.0)),
        "{r:#}"
    );
    assert_eq!(
        (&fb[1]["variant"], &fb[1]["n"], &fb[1]["value"]),
        (&json!("basic"), &json!(1), &json!(1.0)),
        "{r:#}"
    );
    assert_eq!(r["verdict"]["decision"], "ship", "{r:#}");
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_event_is_refused_by_name_and_stores_nothing() {
    let host = start(&[]).await;
    // The seed has generation_experiment (control/treatment) and
    // beta_features (DISABLED: serves no variant).
    let good = json!({"targetingKey": "u1", "flag": "generation_experiment", "name": "exposure", "context": {"maturityPhase": "run"}});
    let (s, b) = post_events(&host, std::slice::from_ref(&good)).await;
    assert_eq!((s, b["accepted"].as_u64()), (202, Some(1)), "{b}");
    let (s, b) = call(
        &host,
        "POST",
        "/v1/events",
        Some(API_KEY),
        Some(&good.to_string()),
    )
    .await;
    assert_eq!(
        (s, b["accepted"].as_u64()),
        (202, Some(1)),
        "a single event object: {b}"
    );
    let before = rows(&host, "events");
    assert_eq!(before, 2);

    let with = |k: &str, v: Value| {
        let mut e = good.clone();
        e[k] = v;
        json!({"events": [good.clone(), e]}).to_string()
    };
    let without = |k: &str| {
        let mut e = good.clone();
        e.as_object_mut().unwrap().remove(k);
        json!({"events": [e]}).to_string()
    };
    let many: Vec<Value> = (0..1001).map(|_| good.clone()).collect();
    let cases: Vec<(&str, String, &str)> = vec![
        ("not JSON", "{nope".into(), "body"),
        ("not an object", "[1]".into(), "body"),
        (
            "events not an array",
            json!({"events": good}).to_string(),
            "events",
        ),
        ("no events", json!({"events": []}).to_string(), "events"),
        (
            "too many events",
            json!({"events": many}).to_string(),
            "events",
        ),
        (
            "unknown top-level field",
            json!({"events": [good], "x": 1}).to_string(),
            "x",
        ),
        (
            "event not an object",
            json!({"events": [1]}).to_string(),
            "events[0]",
        ),
        (
            "unknown event field",
            with("user", json!("u")),
            "events[1].user",
        ),
        (
            "missing targetingKey",
            without("targetingKey"),
            "events[0].targetingKey",
        ),
        (
            "targetingKey too long",
            with("targetingKey", json!("u".repeat(257))),
            "events[1].targetingKey",
        ),
        ("missing flag", without("flag"), "events[0].flag"),
        (
            "unknown flag",
            with("flag", json!("no_such_flag")),
            "events[1].flag",
        ),
        ("missing name", without("name"), "events[0].name"),
        (
            "name too long",
            with("name", json!("n".repeat(129))),
            "events[1].name",
        ),
        (
            "value not a number",
            with("value", json!("3")),
            "events[1].value",
        ),
        (
            "variant not declared",
            with("variant", json!("purple")),
            "events[1].variant",
        ),
        (
            "variant not a string",
            with("variant", json!(1)),
            "events[1].variant",
        ),
        (
            "context not an object",
            with("context", json!("x")),
            "events[1].context",
        ),
        (
            "flag serves no variant",
            with("flag", json!("beta_features")),
            "events[1].variant",
        ),
    ];
    for (name, body, field) in cases {
        let (s, b) = call(&host, "POST", "/v1/events", Some(API_KEY), Some(&body)).await;
        assert_eq!(s, 400, "{name}: {b}");
        assert_eq!(b["error"]["param"], field, "{name}: {b}");
        assert!(
            b["error"]["message"].as_str().unwrap().contains(field),
            "{name}: {b}"
        );
        assert_eq!(rows(&host, "events"), before, "{name} stored something");
    }
    // A declared variant may differ from what the flag serves now.
    let (s, b) = post_events(&host, &[json!({"targetingKey": "u1", "flag": "generation_experiment", "name": "purchase", "variant": "treatment"})]).await;
    assert_eq!(s, 202, "{b}");
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_auth_denial_and_bad_definition_is_refused() {
    let host = start(&[]).await;
    let good = experiment("generation_experiment", "control", "treatment", (90, 10));
    let body = good.to_string();

    // Events need an API key.
    let event = json!({"targetingKey": "u", "flag": "generation_experiment", "name": "exposure"})
        .to_string();
    let (s, b) = call(&host, "POST", "/v1/events", None, Some(&event)).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (401, Some("invalid_api_key")),
        "{b}"
    );
    assert!(
        b["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("didn't provide an API key")),
        "{b}"
    );
    let (s, b) = call(
        &host,
        "POST",
        "/v1/events",
        Some("dol_sk_wrong"),
        Some(&event),
    )
    .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (401, Some("invalid_api_key")),
        "{b}"
    );
    let (s, b) = call(&host, "POST", "/v1/events", Some(ADMIN), Some(&event)).await;
    assert_eq!(s, 401, "the admin token is not an API key: {b}");
    let (s, _) = call(&host, "GET", "/v1/events", Some(API_KEY), None).await;
    assert_eq!(s, 405);
    assert_eq!(rows(&host, "events"), 0);

    // Admin routes need the admin token: each route, missing and wrong.
    let routes = [
        ("GET", "/admin/experiments", None),
        ("PUT", "/admin/experiments/e1", Some(body.as_str())),
        ("GET", "/admin/experiments/e1", None),
        ("DELETE", "/admin/experiments/e1", None),
    ];
    for (method, path, b) in routes {
        for token in [None, Some("wrong-token"), Some(API_KEY)] {
            let (s, r) = call(&host, method, path, token, b).await;
            assert_eq!(s, 401, "{method} {path} with {token:?}: {r}");
        }
    }
    assert_eq!(rows(&host, "experiments"), 0);

    // Bad definitions: 400 naming the field, nothing stored.
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut d = good.clone();
        f(&mut d);
        d
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        ("unknown field", edit(&|d| d["colour"] = json!(1)), "colour"),
        ("missing flag", edit(&|d| d["flag"] = Value::Null), "flag"),
        (
            "one variant",
            edit(&|d| d["variants"] = json!([{"name": "control", "weight": 1}])),
            "variants",
        ),
        (
            "zero weight",
            edit(&|d| d["variants"][1]["weight"] = json!(0)),
            "variants[1].weight",
        ),
        (
            "duplicate variant",
            edit(&|d| d["variants"][1]["name"] = json!("control")),
            "variants[1].name",
        ),
        (
            "control not a variant",
            edit(&|d| d["control"] = json!("other")),
            "control",
        ),
        (
            "negative start",
            edit(&|d| d["start_ms"] = json!(-5)),
            "start_ms",
        ),
        (
            "missing primary",
            edit(&|d| d["primary"] = Value::Null),
            "primary",
        ),
        (
            "unknown metric kind",
            edit(&|d| d["primary"]["kind"] = json!("revenue")),
            "primary.kind",
        ),
        (
            "conversion without event",
            edit(&|d| d["primary"] = json!({"kind": "conversion"})),
            "primary.event",
        ),
        (
            "bad direction",
            edit(&|d| d["guardrails"] = json!([{"kind": "cost", "direction": "down"}])),
            "guardrails[0].direction",
        ),
        (
            "alpha too large",
            edit(&|d| d["criteria"]["alpha"] = json!(0.7)),
            "criteria.alpha",
        ),
        (
            "negative minimum lift",
            edit(&|d| d["criteria"]["min_relative_lift"] = json!(-1)),
            "criteria.min_relative_lift",
        ),
        (
            "minimum units too small",
            edit(&|d| d["criteria"]["min_units_per_variant"] = json!(0)),
            "criteria.min_units_per_variant",
        ),
    ];
    for (name, def, field) in cases {
        let (s, r) = admin(&host, "PUT", "/admin/experiments/e1", Some(&def)).await;
        assert_eq!(s, 400, "{name}: {r}");
        assert_eq!(r["error"]["field"], field, "{name}: {r}");
        assert_eq!(rows(&host, "experiments"), 0, "{name} stored something");
    }
    let (s, r) = call(
        &host,
        "PUT",
        "/admin/experiments/e1",
        Some(ADMIN),
        Some("{nope"),
    )
    .await;
    assert_eq!(s, 400, "not JSON: {r}");
    let (s, r) = call(
        &host,
        "PUT",
        "/admin/experiments/bad%20key",
        Some(ADMIN),
        Some(&body),
    )
    .await;
    assert_eq!((s, r["error"]["field"].as_str()), (400, Some("key")), "{r}");
    let resp = host
        .client
        .put(host.url("/admin/experiments/e1"))
        .bearer_auth(ADMIN)
        .header("content-type", "text/plain")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 415);
    let (s, _) = admin(&host, "POST", "/admin/experiments", Some(&good)).await;
    assert_eq!(s, 405);
    assert_eq!(rows(&host, "experiments"), 0);
    let (s, _) = admin(&host, "GET", "/admin/experiments/e1", None).await;
    assert_eq!(s, 404);
    host.app.shutdown().await;
}
