//! Several replicas on shared PostgreSQL and Redis (issue 14): each test
//! starts two or three hosts of the real app whose state is one PostgreSQL
//! database (`database_url`) and one Redis key-value store (Spin's runtime
//! config), as replicas behind a load balancer are, and checks that what one
//! replica writes every other uses on the next request, that limits and
//! budgets hold across replicas under concurrent load, and that a cron tick
//! firing on every replica runs each scan once.

use dol_test_support::mock_llm::{Flavor, MockLlm};
use dol_test_support::shared::SharedBackends;
use serde_json::{Value, json};

use crate::gateway::{Gateway, PROMPT, ask, builder};

/// `n` replicas of the app on `shared`, with `mock` as their provider.
async fn replicas(shared: &SharedBackends, mock: &MockLlm, n: usize) -> Vec<Gateway> {
    let mut hosts = Vec::with_capacity(n);
    for _ in 0..n {
        hosts.push(Gateway {
            host: shared.apply(builder(&[mock], &[])).start().await,
        });
    }
    hosts
}

async fn new_key(g: &Gateway, limits: Value) -> (String, String) {
    let r = g
        .admin(
            "POST",
            "/admin/keys",
            Some(&json!({"name": "replicas", "limits": limits})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let v = r.json();
    (
        v["id"].as_str().unwrap().to_owned(),
        v["key"].as_str().unwrap().to_owned(),
    )
}

async fn put_flag(g: &Gateway, key: &str, variant: &str) {
    let flag =
        json!({"state": "ENABLED", "variants": {"a": "A", "b": "B"}, "defaultVariant": variant});
    let r = g
        .admin("PUT", &format!("/admin/flags/{key}"), Some(&flag))
        .await;
    assert!(r.status == 200 || r.status == 201, "{}", r.text);
}

async fn evaluate(g: &Gateway, key: &str) -> Value {
    let r = g
        .call(
            "POST",
            &format!("/ofrep/v1/evaluate/flags/{key}"),
            None,
            Some(&json!({"context": {"targetingKey": "u"}})),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["value"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_one_replica_writes_every_other_uses_at_once() {
    let Some(shared) = SharedBackends::fresh("replicas_writes", 1).await else {
        return;
    };
    let mock = MockLlm::start(Flavor::OpenAi).await.unwrap();
    let hosts = replicas(&shared, &mock, 2).await;
    let (a, b) = (&hosts[0], &hosts[1]);

    // Both replicas report the shared database in their health checks.
    let r = b.call("GET", "/health/ready", None, None, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.text.contains("\"postgres\""), "{}", r.text);

    // A key created through A works through B at once, and its revocation too.
    let (id, key) = new_key(a, json!({})).await;
    assert_eq!(b.chat(&key, ask("auto", PROMPT)).await.status, 200);
    let r = a.admin("DELETE", &format!("/admin/keys/{id}"), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(b.chat(&key, ask("auto", PROMPT)).await.status, 401);

    // Flag versions switch everywhere together, whichever replica writes.
    put_flag(a, "replica_flag", "a").await;
    assert_eq!(evaluate(b, "replica_flag").await, "A");
    put_flag(b, "replica_flag", "b").await;
    assert_eq!(evaluate(a, "replica_flag").await, "B");
    assert_eq!(evaluate(b, "replica_flag").await, "B");

    // A template written through B is used by A's next request.
    let (_, key) = new_key(a, json!({})).await;
    let spec = json!({"messages": [{"role": "user", "content": "Summarize: {{text}}"}], "variables": {"text": {}}});
    let r = b.admin("PUT", "/admin/templates/brief", Some(&spec)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = a
        .call(
            "POST",
            "/v1/generate",
            Some(&key),
            Some(&json!({"template": "brief", "variables": {"text": "replicas share state"}})),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);

    // A model price set through A is what B lists.
    let model = json!({"tier": "basic", "context_window": 1000, "input_usd_per_1m": 7.0, "output_usd_per_1m": 9.0});
    let r = a
        .admin("PUT", "/admin/models/local/replica-m", Some(&model))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = b.admin("GET", "/admin/models", None).await;
    assert!(r.text.contains("replica-m"), "{}", r.text);

    // Both answered requests (B's chat, A's template) are in the one database.
    // The key has no limits: each row trails its answer by up to 20 ms.
    let db = shared.connect().await;
    dol_test_support::eventually("both request rows", || async {
        let requests: i64 = db
            .query_one("SELECT COUNT(*) FROM requests", &[])
            .await
            .unwrap()
            .get(0);
        (requests == 2)
            .then_some(())
            .ok_or(format!("{requests} request rows"))
    })
    .await;
}

/// The cost B charged for one `gpt-4o` answer to [`PROMPT`].
async fn cost_of_one_answer(g: &Gateway, key: &str) -> u64 {
    let r = g.chat(key, ask("gpt-4o", PROMPT)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.headers
        .get("x-dol-cost-micros")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no cost header: {:?}", r.headers))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_price_set_through_one_replica_is_charged_by_the_other_at_once() {
    let Some(shared) = SharedBackends::fresh("replicas_prices", 1).await else {
        return;
    };
    let mock = MockLlm::start(Flavor::OpenAi).await.unwrap();
    let hosts = replicas(&shared, &mock, 2).await;
    let (a, b) = (&hosts[0], &hosts[1]);
    let (_, key) = new_key(a, json!({})).await;
    // B's instances keep the catalog they read (dol_core::gateway::store::
    // InstanceCache) while its stamp stands: two answers at the seed price.
    let seed_price = cost_of_one_answer(b, &key).await;
    assert_eq!(cost_of_one_answer(b, &key).await, seed_price);
    // A doubles gpt-4o's price (seed: $2.50 / $10 per 1M tokens).
    let doubled = json!({"tier": "comprehensive", "context_window": 128000, "input_usd_per_1m": 5.0, "output_usd_per_1m": 20.0, "capabilities": ["json", "streaming", "vision", "tools"]});
    let r = a
        .admin("PUT", "/admin/models/openai/gpt-4o", Some(&doubled))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // B's very next answer is charged at the new price (rounded per part).
    let after = cost_of_one_answer(b, &key).await;
    assert!(
        after > seed_price && after.abs_diff(2 * seed_price) <= 2,
        "seed {seed_price} µ$, after the change {after} µ$"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_and_budgets_hold_across_three_replicas_under_concurrent_load() {
    let Some(shared) = SharedBackends::fresh("replicas_limits", 2).await else {
        return;
    };
    let mock = MockLlm::start(Flavor::OpenAi).await.unwrap();
    let hosts = replicas(&shared, &mock, 3).await;

    // A rate limit of 5 a minute: 15 concurrent requests spread over three
    // replicas admit exactly 5.
    let (_, key) = new_key(&hosts[0], json!({"requests_per_minute": 5})).await;
    let calls = (0..15).map(|i| hosts[i % 3].chat(&key, ask("auto", PROMPT)));
    let statuses: Vec<u16> = futures::future::join_all(calls)
        .await
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        10,
        "{statuses:?}"
    );

    // A monthly budget smaller than the load asks for is never overspent,
    // whichever replicas the requests land on.
    // About two requests' worst case (~41 k µ$: the prompt and the 4,096
    // output tokens DOL sends as the limit, at gpt-4o's price).
    const BUDGET: i64 = 96_000;
    let (id, key) = new_key(&hosts[1], json!({"monthly_budget_micros": BUDGET})).await;
    let calls = (0..16).map(|i| hosts[i % 3].chat(&key, ask("gpt-4o", PROMPT)));
    let replies = futures::future::join_all(calls).await;
    let ok = replies.iter().filter(|r| r.status == 200).count();
    let refused = replies.iter().filter(|r| r.status == 429).count();
    assert_eq!(
        ok + refused,
        16,
        "{:?}",
        replies.iter().map(|r| &r.text).collect::<Vec<_>>()
    );
    assert!(ok >= 1 && refused >= 1, "ok {ok}, refused {refused}");
    let db = shared.connect().await;
    let row = db
        .query_one(
            "SELECT spent_micros, reserved_micros FROM key_usage WHERE key_id = $1",
            &[&id],
        )
        .await
        .unwrap();
    let (spent, reserved): (i64, i64) = (row.get(0), row.get(1));
    assert!(spent > 0 && spent <= BUDGET, "spent {spent} of {BUDGET}");
    assert_eq!(reserved, 0, "every reservation settled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_tick_firing_on_two_replicas_runs_each_scan_once() {
    let Some(shared) = SharedBackends::fresh("replicas_cron", 3).await else {
        return;
    };
    let mock = MockLlm::start(Flavor::OpenAi).await.unwrap();
    let hosts = replicas(&shared, &mock, 2).await;
    // A rollout whose every guard run takes one step (no hold, no samples
    // needed): a step applied twice would skip 50 %.
    put_flag(&hosts[0], "replica_rollout", "a").await;
    let plan = json!({"variant": "b", "steps": [{"percent": 25}, {"percent": 50}, {"percent": 100}],
        "min_samples": 0});
    let r = hosts[0]
        .admin("PUT", "/admin/flags/replica_rollout/rollout", Some(&plan))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    // Both replicas' cron triggers fire for the same minute, together.
    tokio::join!(hosts[0].host.cron_tick(1), hosts[1].host.cron_tick(1));
    let db = shared.connect().await;
    let rows = db
        .query("SELECT name, COUNT(*) FROM scan_runs GROUP BY name", &[])
        .await
        .unwrap();
    let runs: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert!(!runs.is_empty(), "the tick ran scans");
    assert!(runs.iter().all(|(_, n)| *n == 1), "{runs:?}");
    // The rollout took one step, seen the same from either replica.
    for g in &hosts {
        let r = g
            .admin("GET", "/admin/flags/replica_rollout/rollout", None)
            .await;
        assert_eq!(r.json()["percent"], 50, "{}", r.text);
    }
    // The next minute's ticks, together again: one more step.
    tokio::join!(hosts[0].host.cron_tick(2), hosts[1].host.cron_tick(2));
    let r = hosts[1]
        .admin("GET", "/admin/flags/replica_rollout/rollout", None)
        .await;
    assert_eq!(r.json()["percent"], 100, "{}", r.text);
}
