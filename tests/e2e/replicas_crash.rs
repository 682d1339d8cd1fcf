//! `kill -9` of one replica under load (issue 14, README "What a crash can
//! lose"): three replicas share one PostgreSQL database and one Redis store;
//! one is a child process (crash.rs's child), two run in-process. Clients
//! create keys, write flags and spend a budget through all three while the
//! survivors race outbox deliveries; the child is killed with SIGKILL
//! mid-traffic. The survivors must have answered every request, every write
//! a client was told of must be in the shared database, the budget must not
//! be overspent, and each queued message must reach the receiver exactly once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dol_test_support::mock_llm::{Flavor, MockLlm};
use dol_test_support::receiver::Receiver;
use dol_test_support::shared::SharedBackends;
use serde_json::{Value, json};

use crate::crash::spawn_host;
use crate::gateway::{ADMIN, Gateway, PROMPT, ask, builder, var};

/// Outbox messages queued before the load.
const MESSAGES: usize = 6;
/// The spender's monthly budget, µ$: large enough for the load to keep
/// flowing, small enough that overspending would show.
const BUDGET: i64 = 5_000_000;

/// What the clients were told was done, and what a survivor failed to do.
#[derive(Default)]
struct Seen {
    keys: Vec<String>,
    flags: Vec<String>,
    /// (request id, cost µ$) of each answered chat completion.
    chats: Vec<(String, i64)>,
    /// A survivor's answer that was not a success (or a budget refusal).
    survivor_failures: Vec<String>,
}

/// One request; `None` when no whole answer arrived (the replica died).
async fn send(
    http: &reqwest::Client,
    method: &str,
    url: String,
    auth: &str,
    body: &Value,
) -> Option<(u16, reqwest::header::HeaderMap, Value)> {
    let mut r = http.request(method.parse().unwrap(), url).bearer_auth(auth);
    if method != "GET" {
        r = r.header("cache-control", "no-cache").json(body);
    }
    let resp = r.send().await.ok()?;
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    let bytes = resp.bytes().await.ok()?;
    Some((
        status,
        headers,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

/// Client `worker`'s loop against replica `base` (`survivor`: must never fail).
async fn client(
    http: reqwest::Client,
    base: String,
    spender: String,
    worker: usize,
    survivor: bool,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
) {
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let (method, url, auth, body) = match n % 3 {
            0 => (
                "POST",
                format!("{base}/admin/keys"),
                ADMIN,
                json!({"name": format!("k{worker}-{n}")}),
            ),
            1 => (
                "PUT",
                format!("{base}/admin/flags/crash_{worker}_{n}"),
                ADMIN,
                json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}),
            ),
            _ => (
                "POST",
                format!("{base}/v1/chat/completions"),
                spender.as_str(),
                ask("gpt-4o", PROMPT),
            ),
        };
        let answer = send(&http, method, url.clone(), auth, &body).await;
        let mut seen = seen.lock().unwrap();
        let Some((status, headers, v)) = answer else {
            if survivor {
                seen.survivor_failures
                    .push(format!("{method} {url}: no answer"));
            }
            continue;
        };
        let header = |name: &str| headers.get(name).and_then(|h| h.to_str().ok());
        match (n % 3, status) {
            (0, 201) => seen.keys.push(v["id"].as_str().unwrap().to_owned()),
            (1, 200 | 201) => seen.flags.push(format!("crash_{worker}_{n}")),
            (2, 200) => {
                let cost = header("x-dol-cost-micros").and_then(|c| c.parse().ok());
                let id = header("x-dol-request-id").unwrap().to_owned();
                seen.chats.push((id, cost.unwrap_or(0)));
            }
            // The budget refusing a request is the budget holding.
            (2, 429) => {}
            _ if survivor => seen
                .survivor_failures
                .push(format!("{method} {url}: {status} {v}")),
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_of_one_replica_under_load_loses_nothing_the_others_acknowledged() {
    let Some(shared) = SharedBackends::fresh("replicas_crash", 10).await else {
        return;
    };
    let mock = MockLlm::start(Flavor::OpenAi).await.unwrap();
    let hook = Receiver::start(200).await;
    let hook_url = hook.url("/hook");
    let extra = [("notify_webhook_url", hook_url.as_str())];
    let mut survivors = Vec::new();
    for _ in 0..2 {
        let host = shared.apply(builder(&[&mock], &extra)).start().await;
        survivors.push(Gateway { host });
    }
    let http = reqwest::Client::new();
    let state = tempfile::tempdir().unwrap();
    let mut env: Vec<(String, String)> = shared
        .variables()
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    env.push((
        "DOL_CRASH_RUNTIME_CONFIG".to_owned(),
        shared.runtime_config().display().to_string(),
    ));
    env.push((var("admin_token"), ADMIN.to_owned()));
    env.push((var("notify_webhook_url"), hook_url.clone()));
    let (mut child, child_base) = spawn_host(state.path(), &mock, &http, &env).await;

    let r = survivors[0]
        .admin(
            "POST",
            "/admin/keys",
            Some(&json!({"name": "spender", "limits": {"monthly_budget_micros": BUDGET}})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let (spender_id, spender) = (
        r.json()["id"].as_str().unwrap().to_owned(),
        r.json()["key"].as_str().unwrap().to_owned(),
    );
    // Messages due now, queued as a scan queues them (the first request
    // applied the migrations).
    let db = shared.connect().await;
    let now = chrono::Utc::now().timestamp_millis();
    for i in 0..MESSAGES {
        let payload =
            json!({"scan": "crash", "title": format!("m{i}"), "text": "t", "data": {"n": i}});
        db.batch_execute(&format!(
            "INSERT INTO outbox (kind, target, payload, next_attempt_at, created_at) \
             VALUES ('scan', 'default', '{payload}', {due}, {due})",
            due = now - 1_000
        ))
        .await
        .unwrap();
    }

    let bases = [
        child_base,
        survivors[0].host.url(""),
        survivors[1].host.url(""),
    ];
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for worker in 0..6 {
        let base = bases[worker % 3].clone();
        clients.push(tokio::spawn(client(
            http.clone(),
            base,
            spender.clone(),
            worker,
            worker % 3 != 0,
            seen.clone(),
            stop.clone(),
        )));
    }
    // The survivors race the outbox delivery while the load runs: a run
    // finding the other's scan lease held answers 409, never sends twice.
    let scans = futures::future::join_all(
        survivors
            .iter()
            .map(|g| g.admin("POST", "/admin/scans/alerts", None)),
    )
    .await;
    for r in &scans {
        assert!(
            r.status == 200 || r.status == 409,
            "{} {}",
            r.status,
            r.text
        );
    }
    // Kill while every kind of write is flowing through every replica.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        {
            let s = seen.lock().unwrap();
            if s.keys.len() >= 6 && s.flags.len() >= 6 && s.chats.len() >= 6 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the load did not get going");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill_9();
    // The survivors keep serving after the kill: a little more load.
    let after = seen.lock().unwrap().keys.len() + 4;
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.lock().unwrap().keys.len() < after {
        assert!(Instant::now() < deadline, "the survivors stopped serving");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert!(
        seen.survivor_failures.is_empty(),
        "survivors failed: {:?}",
        seen.survivor_failures
    );

    // A scan on a survivor after the kill delivers what is still due.
    let r = survivors[1]
        .admin("POST", "/admin/scans/alerts", None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);

    // Every acknowledged write is in the shared database.
    let ids = |sql: &'static str| {
        let db = &db;
        async move {
            db.query(sql, &[])
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<_, String>(0))
                .collect::<Vec<_>>()
        }
    };
    let keys = ids("SELECT id FROM api_keys").await;
    for id in &seen.keys {
        assert!(keys.contains(id), "key {id} was acknowledged and is gone");
    }
    let requests = ids("SELECT id FROM requests").await;
    for (id, _) in &seen.chats {
        assert!(requests.contains(id), "request {id} is gone");
    }
    for key in &seen.flags {
        let r = survivors[0]
            .admin("GET", &format!("/admin/flags/{key}"), None)
            .await;
        assert_eq!(r.status, 200, "flag {key} is gone: {}", r.text);
        let r = survivors[1]
            .admin("GET", &format!("/admin/audit?flag={key}"), None)
            .await;
        assert!(
            !r.json()["entries"].as_array().unwrap().is_empty(),
            "the audit entry of {key} is gone"
        );
    }
    // Charged at least what was acknowledged, never more than the budget.
    let row = db
        .query_one(
            "SELECT spent_micros, reserved_micros FROM key_usage WHERE key_id = $1",
            &[&spender_id],
        )
        .await
        .unwrap();
    let (spent, reserved): (i64, i64) = (row.get(0), row.get(1));
    let charged: i64 = seen.chats.iter().map(|(_, c)| c).sum();
    assert!(
        spent >= charged,
        "acknowledged {charged} µ$, spent {spent} µ$"
    );
    assert!(
        spent + reserved <= BUDGET,
        "spent {spent} + reserved {reserved}"
    );

    // Each queued message reached the receiver exactly once, and is marked so.
    // Each carries its delivery id (header and signed body) for a receiver
    // to dedupe on, one id per message.
    let mut got = vec![0; MESSAGES];
    let mut delivery_ids = std::collections::BTreeSet::new();
    for r in hook.received() {
        let v = r.json();
        if v["payload"]["scan"] == "crash" {
            got[v["payload"]["data"]["n"].as_u64().unwrap() as usize] += 1;
            let id = r.header("idempotency-key").unwrap_or_default().to_owned();
            assert!(id.starts_with("dol-outbox-"), "{id:?}");
            assert_eq!(v["delivery"], id);
            delivery_ids.insert(id);
        }
    }
    assert_eq!(got, vec![1; MESSAGES], "deliveries per message");
    assert_eq!(delivery_ids.len(), MESSAGES, "one delivery id per message");
    let undelivered: i64 = db
        .query_one(
            "SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL AND kind = 'scan'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(undelivered, 0, "messages left undelivered");
    eprintln!(
        "replicas_crash: {} keys, {} flags, {} chats acknowledged; {spent} µ$ spent",
        seen.keys.len(),
        seen.flags.len(),
        seen.chats.len()
    );
}
