//! A `kill -9` of `dol up` under load loses no acknowledged write (README
//! "What a crash can lose"): the host runs as a child process (this test
//! binary, re-run as [`kill_9_child_host`]), concurrent clients create keys,
//! change flags and spend a budget, the child is killed with SIGKILL while
//! requests are in flight, and a new host on the same state directory must
//! still hold every key, flag change, audit entry, request record and charge
//! whose answer a client received.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dol_host::HostOptions;
use dol_host::clock::ManualClock;
use dol_test_support::mock_llm::{Flavor, MockLlm};
use dol_test_support::{build_guests, chrono_start, workspace_root};
use serde_json::{Value, json};

const ADMIN: &str = "crash-admin";
const CHILD: &str = "crash::kill_9_child_host";

/// The child: serves `spin.toml` on `DOL_CRASH_LISTEN` with state in
/// `DOL_CRASH_STATE` and the mock provider at `DOL_CRASH_MOCK`, until killed.
/// Optionally the runtime config file `DOL_CRASH_RUNTIME_CONFIG`; any
/// `SPIN_VARIABLE_*` in its environment (e.g. `SPIN_VARIABLE_DATABASE_URL`)
/// wins over the defaults below, as with `dol up`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "not a test: the child process the kill -9 tests start and kill"]
async fn kill_9_child_host() {
    let env = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
    let state = env("DOL_CRASH_STATE");
    let mut options = HostOptions::new(workspace_root().join("spin.toml"));
    options.listen = env("DOL_CRASH_LISTEN").parse().unwrap();
    options.state_dir = Some(state.clone().into());
    options.runtime_config = std::env::var_os("DOL_CRASH_RUNTIME_CONFIG").map(Into::into);
    options.cache_dir = Some(workspace_root().join("target/dol-test-cache"));
    // Cron never fires in the child: scans run where a test says, not at a
    // wall-clock minute that may fall inside the test.
    options.clock = Arc::new(ManualClock::new(chrono_start()));
    let variables = [
        ("SPIN_VARIABLE_ADMIN_TOKEN".to_owned(), ADMIN.to_owned()),
        (
            "SPIN_VARIABLE_OPENAI_API_KEY".to_owned(),
            "key-openai".to_owned(),
        ),
        (
            "SPIN_VARIABLE_OPENAI_BASE_URL".to_owned(),
            env("DOL_CRASH_MOCK"),
        ),
    ];
    options.variables = Arc::new(move |name| {
        std::env::var(name).ok().or_else(|| {
            variables
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        })
    });
    let _app = dol_host::start(options).await.unwrap();
    std::future::pending::<()>().await;
}

/// The child host; killed when dropped, so a failing test leaves no process behind.
pub(crate) struct Host(Child);

impl Host {
    /// SIGKILL, as `kill -9` sends it.
    pub(crate) fn kill_9(&mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Starts the child host, with `env` added to its environment (see
/// [`kill_9_child_host`]), and waits until it answers `/health`.
pub(crate) async fn spawn_host(
    state: &Path,
    mock: &MockLlm,
    http: &reqwest::Client,
    env: &[(String, String)],
) -> (Host, String) {
    let addr = free_addr();
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            CHILD,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("DOL_CRASH_STATE", state)
        .env("DOL_CRASH_LISTEN", addr.to_string())
        .env("DOL_CRASH_MOCK", mock.base_url())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(Host)
        .unwrap();
    let base = format!("http://{addr}");
    let deadline = Instant::now() + Duration::from_secs(120);
    // Waiting for the child to listen (compiling on a cold cache), not timing anything.
    while http.get(format!("{base}/health")).send().await.is_err() {
        assert!(Instant::now() < deadline, "the child host did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (child, base)
}

async fn admin(
    http: &reqwest::Client,
    method: &str,
    url: String,
    body: Option<Value>,
) -> Option<Value> {
    let mut r = http
        .request(method.parse().unwrap(), url)
        .bearer_auth(ADMIN);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    resp.json().await.ok()
}

/// What the clients were told was done.
#[derive(Default)]
struct Acknowledged {
    keys: Vec<String>,
    flags: Vec<String>,
    /// (request id, cost in micro-dollars) of each answered chat completion.
    chats: Vec<(String, u64)>,
    /// (request id, cost, when it was answered) of each answered chat
    /// completion of the key without limits, whose book-keeping trails the
    /// answer by up to 20 ms.
    free_chats: Vec<(String, u64, Instant)>,
}

/// Sends one chat completion with `key`; (request id, cost) once the whole
/// answer arrived.
async fn chat(http: &reqwest::Client, base: &str, key: &str) -> Option<(String, u64)> {
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Explain Rust ownership"}]});
    let resp = http
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(key)
        .header("cache-control", "no-cache")
        .json(&body)
        .send()
        .await
        .ok()?;
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (id, cost) = (header("x-dol-request-id"), header("x-dol-cost-micros"));
    // Acknowledged = the whole answer arrived.
    if resp.status().is_success() && resp.bytes().await.is_ok() {
        return Some((id?, cost.and_then(|c| c.parse().ok()).unwrap_or(0)));
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_under_load_loses_no_acknowledged_write() {
    build_guests();
    let mock = MockLlm::start(Flavor::OpenAi).await.unwrap();
    let state = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let (mut child, base) = spawn_host(state.path(), &mock, &http, &[]).await;

    let created = admin(
        &http,
        "POST",
        format!("{base}/admin/keys"),
        Some(json!({"name": "spender", "limits": {"monthly_budget_micros": 1_000_000_000}})),
    )
    .await
    .unwrap();
    let (spender_id, spender) = (
        created["id"].as_str().unwrap().to_owned(),
        created["key"].as_str().unwrap().to_owned(),
    );
    let free = admin(
        &http,
        "POST",
        format!("{base}/admin/keys"),
        Some(json!({"name": "free"})),
    )
    .await
    .unwrap();
    let (free_id, free) = (
        free["id"].as_str().unwrap().to_owned(),
        free["key"].as_str().unwrap().to_owned(),
    );
    let acked = Arc::new(Mutex::new(Acknowledged::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for worker in 0..8 {
        let (http, base, spender, free) =
            (http.clone(), base.clone(), spender.clone(), free.clone());
        let (acked, stop) = (acked.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                match worker % 4 {
                    0 => {
                        let body = json!({"name": format!("k{worker}-{n}")});
                        let url = format!("{base}/admin/keys");
                        if let Some(v) = admin(&http, "POST", url, Some(body)).await {
                            let id = v["id"].as_str().unwrap().to_owned();
                            acked.lock().unwrap().keys.push(id);
                        }
                    }
                    1 => {
                        let key = format!("crash_{worker}_{n}");
                        let flag = json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"});
                        let url = format!("{base}/admin/flags/{key}");
                        if admin(&http, "PUT", url, Some(flag)).await.is_some() {
                            acked.lock().unwrap().flags.push(key);
                        }
                    }
                    2 => {
                        if let Some(answered) = chat(&http, &base, &spender).await {
                            acked.lock().unwrap().chats.push(answered);
                        }
                    }
                    _ => {
                        if let Some((id, cost)) = chat(&http, &base, &free).await {
                            let at = Instant::now();
                            acked.lock().unwrap().free_chats.push((id, cost, at));
                        }
                    }
                }
            }
        }));
    }
    // Kill while every kind of write is flowing.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        {
            let a = acked.lock().unwrap();
            // Some answers of the key without limits more than a second
            // old: their trailing batches must have been written.
            let settled = a
                .free_chats
                .iter()
                .filter(|(_, _, at)| at.elapsed() > Duration::from_secs(1))
                .count();
            if a.keys.len() >= 5 && a.flags.len() >= 5 && a.chats.len() >= 10 && settled >= 10 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the load did not get going");
        tokio::task::yield_now().await;
    }
    child.kill_9();
    let killed_at = Instant::now();
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }

    let (_restarted, base) = spawn_host(state.path(), &mock, &http, &[]).await;
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    let listed = admin(&http, "GET", format!("{base}/admin/keys"), None)
        .await
        .unwrap();
    let listed = listed.to_string();
    for id in &acked.keys {
        assert!(
            listed.contains(id.as_str()),
            "key {id} was acknowledged and is gone"
        );
    }
    for key in &acked.flags {
        let url = format!("{base}/admin/flags/{key}");
        assert!(
            admin(&http, "GET", url, None).await.is_some(),
            "flag {key} is gone"
        );
        let url = format!("{base}/admin/audit?flag={key}");
        let audit = admin(&http, "GET", url, None).await.unwrap();
        assert!(
            !audit["entries"].as_array().unwrap().is_empty(),
            "the audit entry of {key} is gone"
        );
    }
    let mut charged = 0;
    for (id, cost) in &acked.chats {
        let url = format!("{base}/admin/requests/{id}");
        assert!(
            admin(&http, "GET", url, None).await.is_some(),
            "request {id} is gone"
        );
        charged += cost;
    }
    let usage = admin(
        &http,
        "GET",
        format!("{base}/admin/keys/{spender_id}"),
        None,
    )
    .await
    .unwrap();
    let spent = usage["usage"]["spent_micros"].as_u64().unwrap();
    assert!(
        spent >= charged,
        "acknowledged charges of {charged} µ$, {spent} µ$ spent after the restart"
    );
    // The key without limits: what was answered a second or more before
    // the kill was written by its instance's batch; only the last 20 ms of
    // answers may be lost.
    let mut settled_cost = 0;
    let mut settled = 0;
    for (id, cost, at) in &acked.free_chats {
        if killed_at.duration_since(*at) < Duration::from_secs(1) {
            continue;
        }
        let url = format!("{base}/admin/requests/{id}");
        assert!(
            admin(&http, "GET", url, None).await.is_some(),
            "request {id} of the key without limits, answered {:?} before the kill, is gone",
            killed_at.duration_since(*at)
        );
        settled_cost += cost;
        settled += 1;
    }
    assert!(
        settled >= 10,
        "{settled} settled answers of the key without limits"
    );
    let usage = admin(&http, "GET", format!("{base}/admin/keys/{free_id}"), None)
        .await
        .unwrap();
    let spent = usage["usage"]["spent_micros"].as_u64().unwrap();
    assert!(
        spent >= settled_cost,
        "{settled_cost} µ$ answered a second before the kill, {spent} µ$ counted after the restart"
    );
}
