//! Two `dol up` replicas on one state directory (one SQLite database, one
//! key-value file — what replicas share as PostgreSQL and Redis): a key
//! created through replica A works on B at once, a flag changed through A
//! is evaluated on B at once, and a manual scan running on A makes B's run
//! of the same scan answer 409 (the scan lease). One host start each, no
//! sleeps: the running scan is held by an upstream the test answers when
//! it chooses.

use dol_test_support::TestHost;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

const ADMIN: &str = "replicas-admin";

/// A model-list upstream that reports each connection it accepts and
/// answers the first one only when `release` fires (the rest at once).
async fn gated_upstream() -> (String, mpsc::UnboundedReceiver<()>, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let (seen, accepted) = mpsc::unbounded_channel();
    let (release, gate) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut gate = Some(gate);
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = vec![0u8; 16 * 1024];
            let _ = stream.read(&mut buf).await;
            let _ = seen.send(());
            if let Some(gate) = gate.take() {
                let _ = gate.await;
            }
            let body = r#"{"object":"list","data":[]}"#;
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                 connection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(format!("{head}{body}").as_bytes()).await;
        }
    });
    (url, accepted, release)
}

async fn admin(host: &TestHost, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let text = body.map(Value::to_string);
    host.call(method, path, Some(ADMIN), text.as_deref()).await
}

async fn ofrep_variant(host: &TestHost) -> Value {
    let (status, body) = host
        .call(
            "POST",
            "/ofrep/v1/evaluate/flags/complete_context",
            None,
            Some(r#"{"context":{"targetingKey":"user-1"}}"#),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["variant"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_keys_flags_and_scan_leases() {
    let (upstream, mut accepted, release) = gated_upstream().await;
    let a = TestHost::builder("spin.toml")
        .variable("SPIN_VARIABLE_ADMIN_TOKEN", ADMIN)
        .variable("SPIN_VARIABLE_OPENAI_API_KEY", "key-openai")
        .variable("SPIN_VARIABLE_OPENAI_BASE_URL", &upstream)
        .start()
        .await;
    let b = a.replica().await;

    // A key created through A authenticates on B at once.
    let (status, created) = admin(
        &a,
        "POST",
        "/admin/keys",
        Some(&json!({"name": "replicas", "limits": {}})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap();
    let (status, models) = b.call("GET", "/v1/models", Some(key), None).await;
    assert_eq!(status, 200, "replica B knows A's new key: {models}");

    // B evaluates the flag (warming whatever it keeps), A kills it, and B's
    // next evaluation serves the kill.
    assert_eq!(ofrep_variant(&b).await, "on");
    let (status, body) = admin(
        &a,
        "POST",
        "/admin/flags/complete_context/kill",
        Some(&json!({"variant": "off"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ofrep_variant(&b).await, "off", "B serves A's flag change");

    // A runs the probes scan by hand; its model-list call is held, so A's
    // run holds the lease while B tries the same scan.
    let running = tokio::spawn({
        let url = a.url("/admin/scans/probes");
        let client = a.client.clone();
        async move {
            let r = client.post(url).bearer_auth(ADMIN).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    });
    accepted
        .recv()
        .await
        .expect("A's probe reached the upstream");
    let (status, refused) = admin(&b, "POST", "/admin/scans/probes", None).await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["code"], "conflict", "{refused}");
    assert_eq!(refused["lease"]["scan"], "probes", "{refused}");
    assert!(
        refused["lease"]["expiresAt"].as_i64().unwrap() > 0,
        "{refused}"
    );
    // Another scan is not blocked by it.
    let (status, body) = admin(&b, "POST", "/admin/scans/heartbeat", None).await;
    assert_eq!(status, 200, "{body}");

    release.send(()).unwrap();
    let (status, done) = running.await.unwrap();
    assert_eq!(status, 200, "{done}");
    // The lease was released at the end of A's run: B runs the scan now.
    let (status, body) = admin(&b, "POST", "/admin/scans/probes", None).await;
    assert_eq!(status, 200, "{body}");

    b.app.shutdown().await;
}
