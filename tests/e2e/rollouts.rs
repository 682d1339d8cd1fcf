//! Guarded rollouts end to end: the DOL app on the real host, chat traffic
//! through the real `generate` component against a mock OpenAI-compatible
//! provider whose models can be made worse at run time, the guard loop in
//! the `scans` component (`POST /admin/scans/rollouts`, and the cron tick),
//! the flag served over OFREP, Slack messages to a mock receiver.
//!
//! The rolled-out flag is the gateway's tier flag `generation_pipeline`:
//! variant `enhanced` enters at the enhanced tier (gpt-4o-mini, falling
//! back to gpt-4.1-nano), control `comprehensive` at gpt-4o.

use std::time::{Duration, Instant};

use crate::gateway::var;
use dol_test_support::mock_llm::{Behavior, Flavor, MockLlm};
use dol_test_support::receiver::Receiver;
use dol_test_support::{TestHost, chrono_start};
use serde_json::{Value, json};

const APP: &str = "spin.toml";
const ADMIN: &str = "rollout-admin";
const KEY: &str = "dol-rollout-key";
const FLAG: &str = "generation_pipeline";

struct Env {
    host: TestHost,
    mock: MockLlm,
    slack: Receiver,
}

async fn start() -> Env {
    let mock = MockLlm::start(Flavor::OpenAi).await.unwrap();
    let slack = Receiver::start(200).await;
    let host = TestHost::builder(APP)
        .variable(&var("admin_token"), ADMIN)
        .variable(&var("bootstrap_api_key"), KEY)
        .variable(&var("openai_api_key"), "key-openai")
        .variable(&var("openai_base_url"), &mock.base_url())
        .variable(&var("slack_webhook_url"), &slack.url("/services/T/B/X"))
        .variable(&var("gateway_retry_delay_ms"), "10")
        .variable(&var("gateway_attempt_timeout_ms"), "3000")
        .variable(&var("gateway_timeout_ms"), "8000")
        .variable(&var("gateway_min_attempt_ms"), "50")
        .start()
        .await;
    Env { host, mock, slack }
}

impl Env {
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.host.client.request(method, self.host.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn admin(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        self.call(method, path, Some(ADMIN), body).await
    }

    /// `n` chat requests from distinct users (`{prefix}-{i}`), distinct
    /// prompts (no cache hits); returns how many were served by the variant
    /// and by control.
    async fn traffic(&self, prefix: &str, n: usize) -> (usize, usize) {
        let (mut enhanced, mut comprehensive) = (0, 0);
        for i in 0..n {
            let body = json!({
                "model": "auto",
                "user": format!("{prefix}-{i}"),
                "messages": [{"role": "user", "content": format!(
                    "Explain how Rust ownership and borrowing prevent data races, example {prefix} {i}"
                )}]
            });
            let (status, reply) = self
                .call("POST", "/v1/chat/completions", Some(KEY), Some(&body))
                .await;
            assert_eq!(status, 200, "{reply}");
            // Control enters (and, healthy, answers) at comprehensive; the
            // variant enters at enhanced and may fall back to basic.
            match reply["dol"]["tier"].as_str() {
                Some("comprehensive") => comprehensive += 1,
                _ => enhanced += 1,
            }
        }
        (enhanced, comprehensive)
    }

    /// Runs the guard loop now; returns this flag's summary entry.
    async fn guard(&self) -> Value {
        let (status, body) = self.admin("POST", "/admin/scans/rollouts", None).await;
        assert_eq!(status, 200, "{body}");
        body["summary"]["rollouts"]
            .as_array()
            .and_then(|a| a.iter().find(|r| r["flag"] == FLAG).cloned())
            .unwrap_or(Value::Null)
    }

    /// Share of 200 targeting keys that OFREP serves `enhanced`.
    async fn ofrep_share(&self) -> usize {
        let mut n = 0;
        for i in 0..200 {
            let body = json!({"context": {"targetingKey": format!("probe-{i}")}});
            let (status, r) = self
                .call(
                    "POST",
                    &format!("/ofrep/v1/evaluate/flags/{FLAG}"),
                    None,
                    Some(&body),
                )
                .await;
            assert_eq!(status, 200, "{r}");
            if r["value"] == "enhanced" {
                n += 1;
            }
        }
        n
    }

    fn slack_texts(&self) -> Vec<String> {
        self.slack
            .received()
            .iter()
            .map(|r| r.json()["text"].as_str().unwrap_or("").to_owned())
            .collect()
    }
}

/// A plan that moves fast enough for a test: no hold times, few samples.
fn fast_plan(guards: Value) -> Value {
    json!({
        "variant": "enhanced",
        "steps": [{"percent": 50}, {"percent": 100}],
        "min_samples": 3,
        "guards": guards,
    })
}

/// Makes the cheaper pipeline answer badly: its models refuse (the quality
/// gate then has nothing better to fall back to).
fn worsen_quality(mock: &MockLlm) {
    for model in ["gpt-4o-mini", "gpt-4.1-nano"] {
        mock.set_model_behavior(
            model,
            Behavior::with_answer("I'm sorry, but I can't help with that request."),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollouts_admin_api_validates_and_needs_the_admin_token() {
    let env = start().await;
    let plan = fast_plan(json!([]));
    let path = format!("/admin/flags/{FLAG}/rollout");
    // Auth.
    assert_eq!(env.call("PUT", &path, None, Some(&plan)).await.0, 401);
    assert_eq!(
        env.call("PUT", &path, Some("wrong"), Some(&plan)).await.0,
        401
    );
    assert_eq!(env.call("GET", "/admin/rollouts", None, None).await.0, 401);
    // Bad input, each named.
    let (s, b) = env.call("PUT", &path, Some(ADMIN), None).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("invalid-json")),
        "{b}"
    );
    for (body, field) in [
        (
            json!({"variant": "turbo", "steps": [{"percent": 100}]}),
            "variant",
        ),
        (
            json!({"variant": "enhanced", "steps": [{"percent": 60}, {"percent": 40}]}),
            "steps[1].percent",
        ),
        (
            json!({"variant": "enhanced", "steps": [{"percent": 100}], "guards": [{"metric": "vibes", "threshold": 1, "window": "5m"}]}),
            "guards[0].metric",
        ),
        (
            json!({"variant": "enhanced", "steps": [{"percent": 100}], "guards": [{"metric": "error_rate", "threshold": 5, "window": "5m"}]}),
            "guards[0].threshold",
        ),
    ] {
        let (s, b) = env.admin("PUT", &path, Some(&body)).await;
        assert_eq!(s, 400, "{b}");
        assert_eq!(b["error"]["field"], field, "{b}");
    }
    let (s, b) = env
        .admin("PUT", "/admin/flags/no-such-flag/rollout", Some(&plan))
        .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (404, Some("flag-not-found"))
    );
    let (s, _) = env.admin("GET", &path, None).await;
    assert_eq!(s, 404, "no rollout yet");
    assert_eq!(
        env.admin("POST", &format!("{path}/pause"), None).await.0,
        404
    );
    assert_eq!(
        env.admin("POST", &format!("{path}/explode"), None).await.0,
        404
    );
    assert_eq!(
        env.admin("GET", &format!("{path}/pause"), None).await.0,
        405
    );
    // Nothing was stored by the refusals.
    let (_, audit) = env
        .admin("GET", &format!("/admin/audit?flag={FLAG}"), None)
        .await;
    assert_eq!(audit["entries"].as_array().unwrap().len(), 0, "{audit}");

    // Start; a second start and direct edits of the flag are refused.
    let (s, started) = env.admin("PUT", &path, Some(&plan)).await;
    assert_eq!(s, 201, "{started}");
    assert_eq!(started["percent"], 50);
    assert_eq!(started["status"], "active");
    assert_eq!(started["control"], "comprehensive");
    assert_eq!(env.admin("PUT", &path, Some(&plan)).await.0, 409);
    let (s, b) = env
        .admin(
            "PUT",
            &format!("/admin/flags/{FLAG}"),
            Some(&json!({"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a"})),
        )
        .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (409, Some("conflict")),
        "{b}"
    );
    assert_eq!(
        env.admin("DELETE", &format!("/admin/flags/{FLAG}"), None)
            .await
            .0,
        409
    );
    assert_eq!(
        env.admin("POST", &format!("{path}/resume"), None).await.0,
        409
    );
    // Listed, pausable, cancellable; the flag is editable again afterwards.
    let (_, list) = env.admin("GET", "/admin/rollouts", None).await;
    assert_eq!(list["rollouts"][0]["flag"], FLAG);
    let (s, paused) = env.admin("POST", &format!("{path}/pause"), None).await;
    assert_eq!((s, paused["status"].as_str()), (200, Some("paused")));
    let (s, cancelled) = env.admin("DELETE", &path, None).await;
    assert_eq!(
        (s, cancelled["status"].as_str()),
        (200, Some("cancelled")),
        "{cancelled}"
    );
    assert_eq!(env.ofrep_share().await, 0);
    let (_, view) = env.admin("GET", &path, None).await;
    let actions: Vec<&str> = view["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["rollout-cancel", "rollout-pause", "rollout-start"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_rollout_advances_and_completes_by_itself() {
    let env = start().await;
    let plan = fast_plan(json!([
        {"metric": "quality", "threshold": 7.0, "window": "10m", "min_samples": 3},
        {"metric": "error_rate", "threshold": 0.10, "window": "10m", "min_samples": 3},
        {"metric": "error_rate", "vs": "control", "threshold": 0.05, "window": "10m", "min_samples": 3}
    ]));
    let (s, b) = env
        .admin("PUT", &format!("/admin/flags/{FLAG}/rollout"), Some(&plan))
        .await;
    assert_eq!(s, 201, "{b}");
    let share = env.ofrep_share().await;
    assert!(
        (70..=130).contains(&share),
        "50 % over OFREP: {share} of 200"
    );

    // Too few samples yet: hold.
    let held = env.guard().await;
    assert_eq!(held["action"], "hold", "{held}");

    let (enhanced, comprehensive) = env.traffic("healthy", 16).await;
    assert!(
        enhanced >= 3 && comprehensive >= 3,
        "{enhanced}/{comprehensive}"
    );
    let advanced = env.guard().await;
    assert_eq!(advanced["action"], "advance", "{advanced}");
    assert_eq!(advanced["percent"], 100);
    assert_eq!(env.ofrep_share().await, 200);

    env.traffic("healthy-2", 4).await;
    let done = env.guard().await;
    assert_eq!(done["action"], "complete", "{done}");
    let (_, flag) = env
        .admin("GET", &format!("/admin/flags/{FLAG}"), None)
        .await;
    assert_eq!(flag["flag"]["defaultVariant"], "enhanced", "{flag}");
    assert!(flag["flag"].get("targeting").is_none(), "{flag}");
    let texts = env.slack_texts();
    assert!(texts.iter().any(|t| t.contains("at 100 %")), "{texts:?}");
    assert!(texts.iter().any(|t| t.contains("completed")), "{texts:?}");
}

/// Starts a 50 % rollout with `guards`, sends traffic, runs the guard loop,
/// and asserts it rolled back naming `metric`; returns the breach.
async fn assert_rolls_back(env: &Env, guards: Value, metric: &str, requests: usize) -> Value {
    let (s, b) = env
        .admin(
            "PUT",
            &format!("/admin/flags/{FLAG}/rollout"),
            Some(&fast_plan(guards)),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let (enhanced, _) = env.traffic(metric, requests).await;
    assert!(enhanced >= 3, "enough traffic on the variant: {enhanced}");
    // Pick a targeting key the variant serves now, to see the rollback land.
    let mut witness = None;
    for i in 0..50 {
        let body = json!({"context": {"targetingKey": format!("witness-{i}")}});
        let (_, r) = env
            .call(
                "POST",
                &format!("/ofrep/v1/evaluate/flags/{FLAG}"),
                None,
                Some(&body),
            )
            .await;
        if r["value"] == "enhanced" {
            witness = Some(body);
            break;
        }
    }
    let witness = witness.expect("a key served the variant at 50 %");
    // Before the loop acts, the rollout's view shows the breach it will see
    // (once the rows that trail the answers by up to 20 ms are written).
    let view = dol_test_support::eventually("the guard breaching in the view", || async {
        let (_, view) = env
            .admin("GET", &format!("/admin/flags/{FLAG}/rollout"), None)
            .await;
        let breaching = view["guards"].as_array().is_some_and(|g| {
            g.iter()
                .any(|g| g["metric"] == metric && g["state"] == "breaching")
        });
        if breaching {
            Ok(view)
        } else {
            Err(view.to_string())
        }
    })
    .await;
    assert!(
        view["guards"].as_array().is_some_and(|g| g
            .iter()
            .any(|g| g["metric"] == metric && g["state"] == "breaching")),
        "{view}"
    );
    let started = Instant::now();
    let decision = env.guard().await;
    let guard_ms = started.elapsed().as_millis();
    assert_eq!(decision["action"], "roll_back", "{decision}");
    assert_eq!(decision["breach"]["metric"], metric, "{decision}");
    let (_, r) = env
        .call(
            "POST",
            &format!("/ofrep/v1/evaluate/flags/{FLAG}"),
            None,
            Some(&witness),
        )
        .await;
    assert_eq!(r["value"], "comprehensive", "{r}");
    eprintln!(
        "rollback on {metric}: guard loop {guard_ms} ms (decision, flag version, publish, Slack), \
         first evaluation serving control {} ms after the loop started",
        started.elapsed().as_millis()
    );
    // Takes effect for the next evaluation everywhere: OFREP and the gateway.
    assert_eq!(env.ofrep_share().await, 0);
    let (_, after) = {
        let body = json!({"model": "auto", "user": "after-rollback",
            "messages": [{"role": "user", "content": "After the rollback, explain borrowing"}]});
        env.call("POST", "/v1/chat/completions", Some(KEY), Some(&body))
            .await
    };
    assert_eq!(after["dol"]["tier"], "comprehensive", "{after}");
    // Visible: status, audit entry with the reason; audible: Slack.
    let (_, view) = env
        .admin("GET", &format!("/admin/flags/{FLAG}/rollout"), None)
        .await;
    assert_eq!(view["status"], "rolled_back", "{view}");
    assert_eq!(
        view["guards"],
        json!([]),
        "a finished rollout reads no guards: {view}"
    );
    assert_eq!(view["percent"], 0);
    assert_eq!(view["audit"][0]["action"], "rollout-rollback");
    let reason = view["audit"][0]["after"]["reason"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(reason.contains(metric), "{reason}");
    let texts = env.slack_texts();
    assert!(
        texts
            .iter()
            .any(|t| t.contains("rolled back") && t.contains(metric)),
        "{texts:?}"
    );
    // Finished: the loop leaves it alone; restarting needs an admin.
    assert!(env.guard().await.is_null());
    decision["breach"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worse_pipeline_is_rolled_back_on_quality() {
    let env = start().await;
    worsen_quality(&env.mock);
    let breach = assert_rolls_back(
        &env,
        json!([{"metric": "quality", "threshold": 7.0, "window": "30m", "min_samples": 3}]),
        "quality",
        16,
    )
    .await;
    assert!(breach["observed"].as_f64().unwrap() < 7.0, "{breach}");
    assert_eq!(breach["threshold"], 7.0);
    // The restart needs an admin; it starts again from the first step.
    let (s, restarted) = env
        .admin(
            "POST",
            &format!("/admin/flags/{FLAG}/rollout/restart"),
            None,
        )
        .await;
    assert_eq!(
        (s, restarted["percent"].as_u64()),
        (200, Some(50)),
        "{restarted}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_pipeline_is_rolled_back_on_errors() {
    let env = start().await;
    for model in ["gpt-4o-mini", "gpt-4.1-nano"] {
        env.mock.set_model_behavior(model, Behavior::failing(500));
    }
    let breach = assert_rolls_back(
        &env,
        json!([{"metric": "error_rate", "vs": "control", "threshold": 0.05, "window": "15m", "min_samples": 3}]),
        "error_rate",
        12,
    )
    .await;
    assert_eq!(breach["observed"], 1.0, "{breach}");
    assert_eq!(breach["control"], 0.0, "{breach}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_pipeline_is_rolled_back_on_latency() {
    let env = start().await;
    env.mock.set_model_behavior(
        "gpt-4o-mini",
        Behavior {
            delay_ms: 1_100,
            ..Behavior::default()
        },
    );
    let breach = assert_rolls_back(
        &env,
        json!([{"metric": "p95_latency_ms", "threshold": 1000, "window": "20m", "min_samples": 3}]),
        "p95_latency_ms",
        10,
    )
    .await;
    assert!(breach["observed"].as_f64().unwrap() > 1000.0, "{breach}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emergency_mode_pauses_rollouts_on_the_cron_tick() {
    let env = start().await;
    let (s, _) = env
        .admin(
            "PUT",
            &format!("/admin/flags/{FLAG}/rollout"),
            Some(&fast_plan(json!([]))),
        )
        .await;
    assert_eq!(s, 201);
    // An operator forces emergency mode.
    let (s, forced) = env
        .admin("PUT", "/admin/emergency", Some(&json!({"mode": "on"})))
        .await;
    assert_eq!(s, 200, "{forced}");
    let mut events = env.host.app.cron_events();
    env.host
        .clock
        .set(chrono_start() + chrono::Duration::minutes(1));
    let event = tokio::time::timeout(Duration::from_secs(60), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event.outcome, Ok(()), "the cron scans succeed");
    let (_, view) = env
        .admin("GET", &format!("/admin/flags/{FLAG}/rollout"), None)
        .await;
    assert_eq!(view["status"], "paused", "{view}");
    assert_eq!(view["paused"], "emergency");
    assert_eq!(view["percent"], 50, "paused, not rolled back");
    assert!(
        view["reason"].as_str().unwrap().contains("emergency"),
        "{view}"
    );
    // Emergency over: the next tick resumes it.
    let (s, auto) = env
        .admin("PUT", "/admin/emergency", Some(&json!({"mode": "auto"})))
        .await;
    assert_eq!(s, 200, "{auto}");
    let resumed = env.guard().await;
    assert_eq!(resumed["action"], "resume", "{resumed}");
}
