//! Trust end to end (issue 17): the opt-in masked request log, subject
//! deletion, retention by an injected cron tick, the audit trail of every
//! admin action, CORS, body limits and security headers.

use std::time::Duration;

use dol_test_support::{TestHost, chrono_start};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

const ADMIN: &str = "admin-trust";
const API_KEY: &str = "dol-trust-key";

async fn start(extra: &[(&str, &str)]) -> TestHost {
    let mut builder = TestHost::builder("spin.toml")
        .variable("SPIN_VARIABLE_ADMIN_TOKEN", ADMIN)
        .variable("SPIN_VARIABLE_BOOTSTRAP_API_KEY", API_KEY);
    for (name, value) in extra {
        builder = builder.variable(name, value);
    }
    builder.start().await
}

struct Reply {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

async fn call(
    host: &TestHost,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> Reply {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = host.client.request(method, host.url(path)).body(body);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Reply {
        status,
        headers,
        body,
    }
}

async fn admin(host: &TestHost, method: &str, path: &str, body: &str) -> Reply {
    let auth = format!("Bearer {ADMIN}");
    let headers = [
        ("authorization", auth.as_str()),
        ("x-dol-actor", "trust-e2e"),
        ("content-type", "application/json"),
    ];
    call(host, method, path, &headers, body.to_string()).await
}

async fn chat(host: &TestHost, user: &str, content: &str) -> String {
    let body =
        json!({"model": "auto", "user": user, "messages": [{"role": "user", "content": content}]});
    let auth = format!("Bearer {API_KEY}");
    let r = call(
        host,
        "POST",
        "/v1/chat/completions",
        &[("authorization", &auth)],
        body.to_string(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.headers["x-dol-request-id"].to_str().unwrap().to_owned()
}

fn db_text(host: &TestHost) -> Vec<u8> {
    let mut bytes = std::fs::read(host.state_dir().join("sqlite_db.db")).unwrap();
    if let Ok(wal) = std::fs::read(host.state_dir().join("sqlite_db.db-wal")) {
        bytes.extend(wal);
    }
    bytes
}

fn rows(host: &TestHost, sql: &str) -> i64 {
    let db = rusqlite::Connection::open(host.state_dir().join("sqlite_db.db")).unwrap();
    db.query_row(sql, [], |r| r.get(0)).unwrap()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_log_is_opt_in_masked_and_subjects_are_deleted_and_audited() {
    let host = start(&[]).await;
    let r = admin(&host, "GET", "/admin/settings", "").await;
    assert_eq!(r.body["store_bodies"], false, "{}", r.body);

    // Off by default: the request row names its subject, no body is kept.
    let first = chat(&host, "user-1", "hello").await;
    let r = admin(&host, "GET", &format!("/admin/requests/{first}"), "").await;
    assert_eq!(
        (r.body["subject"].clone(), r.body["bodies"].clone()),
        (json!("user-1"), Value::Null),
        "{}",
        r.body
    );

    // Every bad setting is its own 400, and stores nothing.
    for (body, field) in [
        (json!({"store_bodies": 1}), "store_bodies"),
        (
            json!({"mask_patterns": [{"name": "t", "pattern": "("}]}),
            "mask_patterns",
        ),
        (json!({"retention": {"forever": 1}}), "retention.forever"),
        (json!({"retention": {"events": 0}}), "retention.events"),
        (json!({"nope": true}), "nope"),
    ] {
        let r = admin(&host, "PUT", "/admin/settings", &body.to_string()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert_eq!(r.body["error"]["field"], field, "{body}: {}", r.body);
    }
    let r = admin(&host, "PUT", "/admin/settings", "{oops").await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = call(&host, "PUT", "/admin/settings", &[], "{}").await;
    assert_eq!(r.status, 401, "no credentials: {}", r.body);
    let r = admin(&host, "POST", "/admin/settings", "{}").await;
    assert_eq!(r.status, 405, "{}", r.body);
    assert_eq!(
        admin(&host, "GET", "/admin/settings", "").await.body["store_bodies"],
        false
    );

    // Opted in: prompt and answer are stored masked; the file never holds the raw text.
    let settings = json!({"store_bodies": true, "mask_patterns": [{"name": "ticket", "pattern": "TCK-[0-9]{4}"}]});
    let r = admin(&host, "PUT", "/admin/settings", &settings.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let secret = "mail zoe.secret@example.org, card 4111 1111 1111 1111, ticket TCK-4242";
    let second = chat(&host, "user-1", secret).await;
    let third = chat(&host, "user-2", "hi").await;
    let r = admin(&host, "GET", &format!("/admin/requests/{second}"), "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["bodies"]["prompt"][0]["content"],
        "mail [MASKED:email], card [MASKED:card], ticket [MASKED:ticket]",
        "{}",
        r.body
    );
    assert!(r.body["bodies"]["answer"].is_string(), "{}", r.body);
    // Embedding inputs are logged masked too; the vectors never are.
    let auth = format!("Bearer {API_KEY}");
    let body = json!({"model": "auto", "user": "user-1", "input": [secret, "plain text"]});
    let r = call(
        &host,
        "POST",
        "/v1/embeddings",
        &[("authorization", &auth)],
        body.to_string(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let first_value = r.body["data"][0]["embedding"][0].to_string();
    let embedded = r.headers["x-dol-request-id"].to_str().unwrap().to_owned();
    let r = admin(&host, "GET", &format!("/admin/requests/{embedded}"), "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let bodies = &r.body["bodies"];
    assert_eq!(
        bodies["prompt"],
        json!([
            "mail [MASKED:email], card [MASKED:card], ticket [MASKED:ticket]",
            "plain text"
        ]),
        "{}",
        r.body
    );
    assert_eq!(
        bodies["answer"], "[2 embedding vectors, not stored]",
        "{}",
        r.body
    );
    assert_eq!(
        bodies["masked"],
        json!({"card": 1, "email": 1, "ticket": 1}),
        "{}",
        r.body
    );
    assert!(
        !bodies.to_string().contains(&first_value),
        "no vector stored"
    );
    let file = db_text(&host);
    assert!(!contains(&file, "zoe.secret@example.org") && !contains(&file, "TCK-4242"));

    let event = json!({"targetingKey": "user-1", "flag": "generation_experiment", "name": "exposure",
                       "context": {"maturityPhase": "run"}});
    let auth = format!("Bearer {API_KEY}");
    let r = call(
        &host,
        "POST",
        "/v1/events",
        &[("authorization", &auth)],
        event.to_string(),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);

    // Deleting user-1 removes their rows and bodies; user-2 and aggregates stay.
    let usage = rows(&host, "SELECT SUM(requests) FROM usage_minute");
    let r = admin(&host, "DELETE", "/admin/subjects/user-1", "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["deleted"],
        json!({"events": 1, "requests": 3, "request_bodies": 2, "feedback": 0}),
        "{}",
        r.body
    );
    for id in [&first, &second, &embedded] {
        assert_eq!(
            admin(&host, "GET", &format!("/admin/requests/{id}"), "")
                .await
                .status,
            404
        );
    }
    assert_eq!(
        admin(&host, "GET", &format!("/admin/requests/{third}"), "")
            .await
            .status,
        200
    );
    assert_eq!(
        rows(&host, "SELECT SUM(requests) FROM usage_minute"),
        usage,
        "aggregates intact"
    );
    let r = admin(&host, "DELETE", "/admin/subjects/%ZZ", "").await;
    assert_eq!(
        (r.status, r.body["error"]["field"].clone()),
        (400, json!("targetingKey")),
        "{}",
        r.body
    );
    let r = call(&host, "DELETE", "/admin/subjects/user-2", &[], "").await;
    assert_eq!(r.status, 401, "{}", r.body);
    // An org's subjects are deleted through the org (see the core's tests
    // for the scoping); an org that does not exist is a 404.
    let r = admin(&host, "DELETE", "/admin/orgs/nobody/subjects/user-2", "").await;
    assert_eq!(r.status, 404, "{}", r.body);
    let r = admin(&host, "GET", "/admin/orgs/nobody/subjects/user-2", "").await;
    assert_eq!(r.status, 405, "{}", r.body);
    assert_eq!(
        admin(&host, "GET", "/admin/subjects/user-2", "")
            .await
            .status,
        405
    );

    // Both the settings change and the deletion are in the audit log.
    let r = admin(&host, "GET", "/admin/audit?kind=subject", "").await;
    let entries = r.body["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{}", r.body);
    assert_eq!(entries[0]["target"], "user-1");
    assert!(
        entries[0]["actor"]
            .as_str()
            .unwrap()
            .starts_with("trust-e2e")
    );
    let r = admin(&host, "GET", "/admin/audit?kind=settings", "").await;
    let entry = &r.body["entries"][0];
    assert_eq!(entry["before"]["store_bodies"], false, "{}", r.body);
    assert_eq!(entry["after"]["store_bodies"], true, "{}", r.body);
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_scan_deletes_bodies_by_their_own_days_at_the_injected_tick() {
    let host = start(&[]).await;
    let settings =
        json!({"store_bodies": true, "retention": {"request_bodies": 30, "audit": 3650}});
    assert_eq!(
        admin(&host, "PUT", "/admin/settings", &settings.to_string())
            .await
            .status,
        200
    );
    let id = chat(&host, "u", "hello").await;
    assert_eq!(rows(&host, "SELECT COUNT(*) FROM request_bodies"), 1);
    // The manual clock is weeks after the real time the body was written.
    let mut events = host.app.cron_events();
    // The next 03:00 UTC, when the daily retention scan is due.
    let midnight = chrono_start().timestamp() / 86_400 * 86_400;
    let tick = chrono::DateTime::from_timestamp(midnight + 27 * 3_600, 0).unwrap();
    host.clock.set(tick);
    loop {
        let event = tokio::time::timeout(Duration::from_secs(60), events.recv())
            .await
            .unwrap()
            .unwrap();
        if rows(
            &host,
            "SELECT COUNT(*) FROM scan_runs WHERE name = 'retention'",
        ) > 0
        {
            assert_eq!(event.outcome, Ok(()));
            break;
        }
    }
    assert_eq!(
        rows(&host, "SELECT COUNT(*) FROM request_bodies"),
        0,
        "bodies older than 30 days go"
    );
    let r = admin(&host, "GET", &format!("/admin/requests/{id}"), "").await;
    assert_eq!(r.body["bodies"], Value::Null, "{}", r.body);
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_action_is_audited_without_secrets() {
    let host = start(&[("SPIN_VARIABLE_ALERTMANAGER_TOKEN", "am-token")]).await;
    let firing = std::fs::read_to_string(
        dol_test_support::workspace_root().join("tests/fixtures/alertmanager/firing.json"),
    )
    .unwrap();
    let headers = [
        ("authorization", "Bearer am-token"),
        ("content-type", "application/json"),
    ];
    let r = call(&host, "POST", "/webhooks/alertmanager", &headers, firing).await;
    let alert_id = r.body["fired"][0].as_str().unwrap().to_owned();
    let r = admin(&host, "POST", &format!("/admin/alerts/{alert_id}/ack"), "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let key = admin(&host, "POST", "/admin/keys", r#"{"name": "web"}"#).await;
    assert_eq!(key.status, 201, "{}", key.body);
    let (key_id, secret) = (
        key.body["id"].as_str().unwrap(),
        key.body["key"].as_str().unwrap(),
    );
    assert_eq!(
        admin(&host, "DELETE", &format!("/admin/keys/{key_id}"), "")
            .await
            .status,
        200
    );
    let model = json!({"tier": "basic", "context_window": 1000, "input_usd_per_1m": 1.0, "output_usd_per_1m": 1.0});
    assert_eq!(
        admin(&host, "PUT", "/admin/models/local/m1", &model.to_string())
            .await
            .status,
        200
    );
    assert_eq!(
        admin(&host, "DELETE", "/admin/models/local/m1", "")
            .await
            .status,
        200
    );
    let template = json!({"messages": [{"role": "system", "content": "Be brief."}]});
    let r = admin(
        &host,
        "PUT",
        "/admin/templates/brief",
        &template.to_string(),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let experiment = json!({
        "flag": "generation_experiment", "control": "control",
        "variants": [{"name": "control", "weight": 50}, {"name": "treatment", "weight": 50}],
        "start_ms": 0, "primary": {"kind": "conversion", "event": "purchase"},
        "criteria": {"alpha": 0.05, "min_relative_lift": 0.15, "min_units_per_variant": 200}
    });
    let r = admin(
        &host,
        "PUT",
        "/admin/experiments/exp1",
        &experiment.to_string(),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        admin(&host, "DELETE", "/admin/experiments/exp1", "")
            .await
            .status,
        200
    );
    let r = admin(&host, "PUT", "/admin/emergency", r#"{"mode": "on"}"#).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let rule =
        r#"{"metric":"requests","comparison":">","threshold":1,"window":"1m","severity":"info"}"#;
    let r = admin(&host, "PUT", "/admin/alerts/rules/Always", rule).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let silence = json!({"matchers": [{"name": "alertname", "value": "X"}], "duration": "1h", "comment": "quiet"});
    let r = admin(&host, "POST", "/admin/silences", &silence.to_string()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        admin(&host, "POST", "/admin/scans/heartbeat", "")
            .await
            .status,
        200
    );

    let r = admin(&host, "GET", "/admin/audit?actor=trust-e2e&limit=100", "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let entries = r.body["entries"].as_array().unwrap();
    let kinds: Vec<(String, String)> = entries
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_owned(),
                e["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for expected in [
        ("key", "create"),
        ("key", "revoke"),
        ("model", "put"),
        ("model", "delete"),
        ("template", "put"),
        ("experiment", "put"),
        ("experiment", "delete"),
        ("silence", "create"),
        ("alert_rule", "put"),
        ("alert", "ack"),
        ("emergency", "set"),
        ("scan", "run"),
    ] {
        assert!(
            kinds
                .iter()
                .any(|(k, a)| (k.as_str(), a.as_str()) == expected),
            "{expected:?} missing from {kinds:?}"
        );
    }
    assert!(
        !r.body.to_string().contains(secret),
        "the key secret reached the audit log"
    );
    let ack = entries.iter().find(|e| e["kind"] == "alert").unwrap();
    assert_eq!(ack["target"], alert_id.as_str());
    assert!(
        ack["before"].is_object() && ack["after"].is_object(),
        "{ack}"
    );
    let emergency = entries.iter().find(|e| e["kind"] == "emergency").unwrap();
    assert!(
        emergency["before"].is_object() && emergency["after"].is_object(),
        "{emergency}"
    );

    // Filters: kind, actor, time range; each bad one is its own 400.
    let r = admin(&host, "GET", "/admin/audit?kind=key", "").await;
    assert_eq!(r.body["entries"].as_array().unwrap().len(), 2, "{}", r.body);
    let r = admin(&host, "GET", "/admin/audit?actor=someone-else", "").await;
    assert_eq!(r.body["entries"].as_array().unwrap().len(), 0, "{}", r.body);
    let r = admin(&host, "GET", "/admin/audit?from=0&to=1", "").await;
    assert_eq!(r.body["entries"].as_array().unwrap().len(), 0, "{}", r.body);
    for (query, field) in [
        ("kind=nope", "kind"),
        ("from=soon", "from"),
        ("from=5&to=5", "to"),
        ("limit=0", "limit"),
    ] {
        let r = admin(&host, "GET", &format!("/admin/audit?{query}"), "").await;
        assert_eq!(
            (r.status, r.body["error"]["field"].clone()),
            (400, json!(field)),
            "{query}: {}",
            r.body
        );
    }
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_body_limits_and_security_headers() {
    let host = start(&[("SPIN_VARIABLE_CORS_ALLOWED_ORIGINS", "https://app.example")]).await;
    let allowed = [
        ("origin", "https://app.example"),
        ("access-control-request-method", "POST"),
        (
            "access-control-request-headers",
            "authorization, content-type",
        ),
    ];
    let r = call(&host, "OPTIONS", "/v1/chat/completions", &allowed, "").await;
    assert_eq!(r.status, 204);
    assert_eq!(
        r.headers["access-control-allow-origin"],
        "https://app.example"
    );
    assert_eq!(
        r.headers["access-control-allow-headers"],
        "authorization, content-type"
    );
    let r = call(
        &host,
        "OPTIONS",
        "/v1/chat/completions",
        &[
            ("origin", "https://evil.example"),
            ("access-control-request-method", "POST"),
        ],
        "",
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.headers.get("access-control-allow-origin").is_none());
    let r = call(
        &host,
        "OPTIONS",
        "/v1/chat/completions",
        &[("access-control-request-method", "POST")],
        "",
    )
    .await;
    assert_eq!(
        (r.status, r.body["error"]["param"].clone()),
        (400, json!("origin")),
        "{}",
        r.body
    );
    let r = call(
        &host,
        "OPTIONS",
        "/v1/models",
        &[("origin", "https://app.example")],
        "",
    )
    .await;
    assert_eq!(r.status, 400, "no request method: {}", r.body);
    let r = call(
        &host,
        "OPTIONS",
        "/v1/models",
        &[
            ("origin", "https://app.example"),
            ("access-control-request-method", "DELETE"),
        ],
        "",
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    // An actual request from the allowed origin carries the CORS headers; another origin's does not.
    let auth = format!("Bearer {API_KEY}");
    let r = call(
        &host,
        "GET",
        "/v1/models",
        &[("authorization", &auth), ("origin", "https://app.example")],
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers["access-control-allow-origin"],
        "https://app.example"
    );
    // A browser client may read every DOL header an answer carries.
    let exposed = r.headers["access-control-expose-headers"].to_str().unwrap();
    for h in [
        "x-dol-request-id",
        "x-dol-cost-micros",
        "x-dol-quality",
        "x-dol-selection",
    ] {
        assert!(exposed.contains(h), "{h} not in {exposed}");
    }
    let r = call(
        &host,
        "GET",
        "/v1/models",
        &[("authorization", &auth), ("origin", "https://evil.example")],
        "",
    )
    .await;
    assert!(r.headers.get("access-control-allow-origin").is_none());

    // Body limits: a 413 naming the limit on each component that reads a body.
    let big = vec![b'x'; 4 * 1024 * 1024 + 1];
    let r = call(
        &host,
        "POST",
        "/v1/chat/completions",
        &[("authorization", &auth)],
        big,
    )
    .await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(
        r.body.to_string().contains("4194304 bytes (4 MiB)"),
        "{}",
        r.body
    );
    let one_mib = vec![b'x'; 1024 * 1024 + 1];
    let auth_admin = format!("Bearer {ADMIN}");
    for (method, path) in [
        ("PUT", "/admin/flags/f"),
        ("POST", "/webhooks/generic"),
        ("PUT", "/admin/alerts/rules"),
        ("POST", "/admin/dol/login"),
    ] {
        let r = call(
            &host,
            method,
            path,
            &[("authorization", &auth_admin)],
            one_mib.clone(),
        )
        .await;
        assert_eq!(r.status, 413, "{path}: {}", r.body);
        assert!(
            r.body.to_string().contains("1048576 bytes (1 MiB)"),
            "{path}: {}",
            r.body
        );
    }

    // Security headers on the admin APIs of every component and the console.
    for path in [
        "/admin/keys",
        "/admin/flags",
        "/admin/alerts",
        "/admin/audit",
        "/admin/settings",
        "/admin/dol/login",
    ] {
        let r = call(&host, "GET", path, &[("authorization", &auth_admin)], "").await;
        for name in [
            "content-security-policy",
            "x-content-type-options",
            "referrer-policy",
            "x-frame-options",
        ] {
            assert!(r.headers.get(name).is_some(), "{path} lacks {name}");
        }
        let csp = r.headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
    }
    host.app.shutdown().await;
}

/// A request whose body the client never finishes (it promises 1,000 bytes,
/// sends 10 and stops sending) is a 400 naming the unreadable body, on the
/// gateway and on a component behind the shared WASI 0.3 glue — never a
/// handler run on a truncated body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_cut_short_is_a_400() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = start(&[]).await;
    for path in ["/v1/chat/completions", "/admin/flags/f"] {
        let mut stream = tokio::net::TcpStream::connect(host.app.local_addr())
            .await
            .unwrap();
        let head = format!(
            "PUT {path} HTTP/1.1\r\nhost: dol\r\ncontent-type: application/json\r\n\
             authorization: Bearer {ADMIN}\r\ncontent-length: 1000\r\n\r\n{{\"model\":"
        );
        let head = if path.starts_with("/v1/") {
            head.replacen("PUT", "POST", 1)
        } else {
            head
        };
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.shutdown().await.unwrap();
        let mut answer = String::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(30),
            stream.read_to_string(&mut answer),
        )
        .await
        .expect("an answer within 30 s")
        .unwrap();
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
        assert!(
            answer.contains("could not read the request body"),
            "{path}: {answer}"
        );
    }
    host.app.shutdown().await;
}
