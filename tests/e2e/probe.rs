//! The conformance probe — an app written against spin-sdk alone — on `dol up`:
//! the behaviour a Spin app sees on real Spin (routing headers, key-value,
//! SQLite 2.0.0 and 3.0.0, variables, environment, outbound allow-list,
//! streaming bodies, cron) plus the runaway limits.

use std::time::Duration;

use dol_test_support::mock::MockServer;
use dol_test_support::{TestHost, TestHostBuilder, chrono_start};

const PROBE_APP: &str = "tests/apps/probe-basic/spin.toml";

fn probe() -> TestHostBuilder {
    TestHost::builder(PROBE_APP).variable("SPIN_VARIABLE_SECRET_TOKEN", "s3cret")
}

/// The row count of the probe's `slow_tx` table (what the slow write
/// transactions committed).
async fn slow_tx_rows(host: &TestHost) -> serde_json::Value {
    let (status, body) = host
        .send_json(
            "POST",
            "/probe/sqlite3/default",
            "SELECT count(*) FROM slow_tx",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["rows"].clone()
}

/// Shuts down a host the test shared with its spawned requests, once they
/// have all been awaited (so the test holds the last reference).
async fn shut_down_shared(host: std::sync::Arc<TestHost>) {
    let Ok(host) = std::sync::Arc::try_unwrap(host) else {
        panic!("the host is still shared");
    };
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spin_routing_headers_match_spin() {
    let host = probe().start().await;
    let (status, body) = host.get_json("/probe/headers?x=1").await;
    assert_eq!(status, 200, "{body}");
    let headers = &body["headers"];
    let addr = host.app.local_addr();
    assert_eq!(
        headers["spin-full-url"],
        format!("http://{addr}/probe/headers?x=1")
    );
    assert_eq!(headers["spin-path-info"], "/headers");
    assert_eq!(headers["spin-matched-route"], "/probe/...");
    assert_eq!(headers["spin-raw-component-route"], "/probe/...");
    assert_eq!(headers["spin-component-route"], "/probe");
    assert_eq!(headers["spin-base-path"], "/");
    assert!(
        headers["spin-client-addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{headers}"
    );
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_spin_headers_are_replaced() {
    let host = probe().start().await;
    let response = host
        .client
        .get(host.url("/probe/headers"))
        .header("spin-path-info", "/forged")
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["headers"]["spin-path-info"], "/headers");
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_route_is_a_json_404() {
    let host = probe().start().await;
    let response = host.client.get(host.url("/nowhere")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    // The security headers of DOL's own JSON answers.
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
    ] {
        assert_eq!(response.headers()[name], value, "{name}");
    }
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not-found");
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_value_round_trip() {
    let host = probe().start().await;
    assert_eq!(
        host.send_json("GET", "/probe/kv/default/greeting", "")
            .await
            .0,
        404
    );
    assert_eq!(
        host.send_json("PUT", "/probe/kv/default/greeting", "hello")
            .await
            .0,
        200
    );
    let (status, body) = host.get_json("/probe/kv/default/greeting").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.to_string().contains("hello"), "{body}");
    assert_eq!(
        host.send_json("DELETE", "/probe/kv/default/greeting", "")
            .await
            .0,
        200
    );
    assert_eq!(
        host.send_json("GET", "/probe/kv/default/greeting", "")
            .await
            .0,
        404
    );
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_v2_and_v3_share_the_default_database() {
    let host = probe().start().await;
    let (status, body) = host
        .send_json(
            "POST",
            "/probe/sqlite/default",
            "CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = host
        .send_json(
            "POST",
            "/probe/sqlite3/default",
            "INSERT INTO notes (text) VALUES ('hi')",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = host
        .send_json(
            "POST",
            "/probe/sqlite/default",
            "SELECT id, text FROM notes",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["columns"], serde_json::json!(["id", "text"]));
    assert!(body["rows"].to_string().contains("hi"), "{body}");
    let (status, body) = host
        .send_json("POST", "/probe/sqlite/default", "SELEC nonsense")
        .await;
    assert_eq!(status, 500);
    assert!(body.to_string().contains("io"), "{body}");
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variables_come_from_defaults_and_spin_variable_env() {
    let host = probe().start().await;
    let (status, body) = host.get_json("/probe/var/greeting").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.to_string().contains("hello"), "{body}");
    let (status, body) = host.get_json("/probe/var/token").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.to_string().contains("s3cret"), "{body}");
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn component_environment_is_set() {
    let host = probe().start().await;
    let (status, body) = host.get_json("/probe/env/PROBE_ENV").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.to_string().contains("from-manifest"), "{body}");
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_to_an_allowed_host_works() {
    let mock = MockServer::fixed(200, "hello from mock").await;
    let host = probe().start().await;
    let (status, body) = host
        .send_json("POST", "/probe/outbound", &format!("{}/ping", mock.url()))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], 200);
    assert_eq!(body["body"], "hello from mock");
    assert_eq!(mock.received.lock().unwrap()[0].path, "/ping");
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_and_response_bodies_stream() {
    let host = probe().start().await;
    let payload = "x".repeat(3 * 1024 * 1024);
    let response = host
        .client
        .post(host.url("/probe/echo"))
        .body(payload.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap().len(), payload.len());
    host.app.shutdown().await;
}

/// Reads from `stream` into `seen` until it holds `wanted` (the test's
/// guard against a host that never sends it is the harness's timeout).
async fn read_until(stream: &mut tokio::net::TcpStream, seen: &mut Vec<u8>, wanted: &[u8]) {
    use tokio::io::AsyncReadExt;
    while !seen.windows(wanted.len()).any(|w| w == wanted) {
        let mut buf = [0u8; 4096];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed before {wanted:?}: {seen:?}");
        seen.extend_from_slice(&buf[..n]);
    }
}

/// Shutting down stops accepting at once, lets the request in flight on a
/// serving thread finish — here one whose body is still arriving — and
/// only then ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_the_request_in_flight_and_refuses_new_connections() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = probe().start().await;
    let addr = host.app.local_addr();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            b"POST /probe/echo HTTP/1.1\r\nHost: probe\r\nTransfer-Encoding: chunked\r\n\r\n\
              5\r\nhello\r\n",
        )
        .await
        .unwrap();
    let mut seen = Vec::new();
    // The echo streams: the first chunk comes back while the body is open.
    read_until(&mut stream, &mut seen, b"hello").await;
    assert!(seen.starts_with(b"HTTP/1.1 200"), "{seen:?}");

    let stopping = tokio::spawn(host.app.shutdown());
    // New connections are refused once the listener is gone.
    let mut refused = false;
    for _ in 0..500 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "the listener still accepts after shutdown started");
    assert!(
        !stopping.is_finished(),
        "shutdown ended with a request in flight"
    );

    // The request in flight still completes, and then the host stops.
    stream.write_all(b"6\r\n world\r\n0\r\n\r\n").await.unwrap();
    read_until(&mut stream, &mut seen, b" world").await;
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await.unwrap();
    seen.extend_from_slice(&rest);
    assert!(
        seen.ends_with(b"0\r\n\r\n"),
        "the response ended whole: {:?}",
        String::from_utf8_lossy(&seen)
    );
    stopping.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runaway_cpu_gets_a_500_and_the_host_keeps_serving() {
    let host = probe()
        .request_timeout(Duration::from_millis(500))
        .start()
        .await;
    let (status, body) = host.get_json("/probe/loop").await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"]["code"], "internal");
    assert!(
        !body.to_string().contains("epoch"),
        "5xx bodies carry no internals: {body}"
    );
    assert_eq!(host.get_json("/probe/headers").await.0, 200);
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_guest_does_not_hold_up_requests_on_its_serving_thread() {
    // More looping requests than serving threads (one per core), so at least
    // one shares its thread with the request below. A guest that never calls
    // the host once held its thread until its time limit: the request next to
    // it waited the whole limit.
    let host = std::sync::Arc::new(
        probe()
            .request_timeout(Duration::from_secs(5))
            .start()
            .await,
    );
    let threads = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    let loops: Vec<_> = (0..threads + 1)
        .map(|_| {
            let host = host.clone();
            tokio::spawn(async move { host.get_json("/probe/loop").await.0 })
        })
        .collect();
    // Let the loops start and take their threads.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..3 {
        let (status, body) = host.get_json("/probe/hello").await;
        assert_eq!(status, 200, "{body}");
    }
    assert!(
        loops.iter().all(|l| !l.is_finished()),
        "the requests were answered only after a loop ended"
    );
    // The loops still end at their limit.
    for l in loops {
        assert_eq!(l.await.unwrap(), 500);
    }
    shut_down_shared(host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_write_transaction_keeps_its_thread_until_it_commits() {
    // Write transactions that compute in the guest past the point where the
    // host starts yielding long instances, several per serving thread at
    // once. An instance that yielded inside its transaction let the next one
    // of its thread block the thread waiting for that lock (SQLite calls are
    // synchronous) until SQLite gave up: "database is locked".
    let host = std::sync::Arc::new(probe().start().await);
    let threads = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    // At most 9, so the last waits ~2 s for the lock on any machine, well
    // inside SQLite's 5 s busy timeout.
    let count = (2 * threads + 1).min(9);
    let writers: Vec<_> = (0..count)
        .map(|_| {
            let host = host.clone();
            tokio::spawn(async move {
                host.send_json("POST", "/probe/sqlite3-slow-tx/default/250", "")
                    .await
            })
        })
        .collect();
    for w in writers {
        let (status, body) = w.await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(slow_tx_rows(&host).await, serde_json::json!([[count]]));
    shut_down_shared(host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_that_computes_past_the_busy_timeout_is_stopped_and_rolled_back() {
    // An instance inside a SQLite transaction never yields its thread; one
    // that computes there for longer than SQLite's busy timeout (5 s, when
    // every waiter for its lock has failed anyway) is stopped instead of
    // keeping its thread and the write lock until its 30 s limit.
    let host = probe().start().await;
    let (status, body) = host
        .send_json("POST", "/probe/sqlite3-slow-tx/default/20000", "")
        .await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(
        slow_tx_rows(&host).await,
        serde_json::json!([[0]]),
        "rolled back"
    );
    let (status, body) = host
        .send_json("POST", "/probe/sqlite3-slow-tx/default/10", "")
        .await;
    assert_eq!(status, 200, "the lock is free again: {body}");
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runaway_memory_gets_a_500_and_the_host_keeps_serving() {
    let host = probe().max_memory_bytes(32 * 1024 * 1024).start().await;
    let (status, body) = host.get_json("/probe/alloc").await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(host.get_json("/probe/headers").await.0, 200);
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cron_fires_on_an_injected_tick() {
    let host = probe().start().await;
    let mut events = host.app.cron_events();
    // The probe's trigger runs every second; one second later it must fire once.
    let tick = chrono_start() + chrono::Duration::seconds(1);
    host.clock.set(tick);
    let event = tokio::time::timeout(Duration::from_secs(30), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event.component, "probe");
    assert_eq!(event.timestamp, u64::try_from(tick.timestamp()).unwrap());
    assert_eq!(event.outcome, Ok(()));
    let (status, body) = host.get_json("/probe/kv/default/probe:cron").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.to_string().contains(&tick.timestamp().to_string()),
        "{body}"
    );
    host.app.shutdown().await;
}
