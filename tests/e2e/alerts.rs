//! The alerts component's webhooks through the host: signed Slack clicks and
//! slash commands (and every refusal, with storage unchanged), Alertmanager
//! intake with fingerprint dedup, the generic HMAC webhook, the kill switch
//! through service chaining to flag-evaluate, and Slack follow-ups reaching a
//! mock `response_url` or, when they cannot, the outbox.

use std::path::Path;
use std::time::{Duration, Instant};

use dol_core::observe::slack::{sign_webhook, slack_signature};
use dol_test_support::mock::MockServer;
use dol_test_support::{TestHost, workspace_root};
use serde_json::{Value, json};

const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const AM_TOKEN: &str = "am-t0ken";
const WEBHOOK_SECRET: &str = "wh-s3cret";
const ADMIN: &str = "admin-s3cret";

/// The root spin.toml: follow-ups may only go to https://hooks.slack.com.
const APP: &str = "spin.toml";
/// The same components with follow-ups allowed to local mock servers.
const LOCAL: &str = "tests/apps/alerts-local/spin.toml";

/// Fingerprints in tests/fixtures/alertmanager/firing.json.
const FP1: &str = "a1b2c3d4e5f60718";
const FP2: &str = "0f1e2d3c4b5a6978";

async fn host(manifest: &str) -> TestHost {
    TestHost::builder(manifest)
        .variable("SPIN_VARIABLE_SLACK_SIGNING_SECRET", SLACK_SECRET)
        .variable("SPIN_VARIABLE_ALERTMANAGER_TOKEN", AM_TOKEN)
        .variable("SPIN_VARIABLE_WEBHOOK_SECRET", WEBHOOK_SECRET)
        .variable("SPIN_VARIABLE_ADMIN_TOKEN", ADMIN)
        .start()
        .await
}

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
    text: String,
}

impl Reply {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }
}

async fn post(host: &TestHost, path: &str, headers: &[(&str, String)], body: &str) -> Reply {
    let mut req = host.client.post(host.url(path)).body(body.to_owned());
    for (name, value) in headers {
        req = req.header(*name, value);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    Reply {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    }
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

fn form_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.*".contains(&b) {
            out.push(char::from(b));
        } else if b == b' ' {
            out.push('+');
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Headers Slack sends: form content type, timestamp, v0 signature.
fn slack_headers(secret: &str, ts: i64, body: &str) -> Vec<(&'static str, String)> {
    let ts = ts.to_string();
    vec![
        (
            "content-type",
            "application/x-www-form-urlencoded".to_owned(),
        ),
        ("x-slack-request-timestamp", ts.clone()),
        (
            "x-slack-signature",
            slack_signature(secret, &ts, body.as_bytes()),
        ),
    ]
}

/// A `block_actions` interactivity body for one button.
fn click(action_id: &str, value: &str, response_url: &str) -> String {
    let payload = json!({
        "type": "block_actions",
        "user": {"id": "U123", "username": "ana", "team_id": "T1"},
        "api_app_id": "A1",
        "team": {"id": "T1", "domain": "dol"},
        "channel": {"id": "C1", "name": "alerts"},
        "trigger_id": "1.2.3",
        "response_url": response_url,
        "actions": [{"type": "button", "action_id": action_id, "block_id": "dol_alert:x",
                     "value": value, "action_ts": "1800000000.1"}]
    });
    format!("payload={}", form_encode(&payload.to_string()))
}

/// A slash-command body, as Slack sends it.
fn command(text: &str) -> String {
    format!(
        "token=x&team_id=T1&team_domain=dol&channel_id=C1&channel_name=alerts&user_id=U123\
         &user_name=ana&command=%2Fdol&text={}&api_app_id=A1\
         &response_url={}&trigger_id=1.2.3",
        form_encode(text),
        form_encode("https://hooks.slack.com/commands/T1/1/abc")
    )
}

async fn slack(host: &TestHost, path: &str, body: &str) -> Reply {
    post(
        host,
        path,
        &slack_headers(SLACK_SECRET, now_secs(), body),
        body,
    )
    .await
}

async fn slash(host: &TestHost, text: &str) -> Reply {
    slack(host, "/webhooks/slack/commands", &command(text)).await
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        workspace_root()
            .join("tests/fixtures/alertmanager")
            .join(name),
    )
    .unwrap()
}

async fn alertmanager(host: &TestHost, name: &str) -> Reply {
    post(
        host,
        "/webhooks/alertmanager",
        &[
            ("authorization", format!("Bearer {AM_TOKEN}")),
            ("content-type", "application/json".to_owned()),
        ],
        &fixture(name),
    )
    .await
}

fn signed_generic(secret: &str, body: &str) -> Vec<(&'static str, String)> {
    let mut headers: Vec<(&'static str, String)> =
        sign_webhook(secret, now_secs(), body.as_bytes())
            .into_iter()
            .collect();
    headers.push(("content-type", "application/json".to_owned()));
    headers
}

fn db(host: &TestHost) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(
        host.state_dir().join("sqlite_db.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap()
}

/// Every row of the alerting tables, as text (empty before the first write).
fn snapshot(host: &TestHost) -> String {
    let path = host.state_dir().join("sqlite_db.db");
    if !Path::new(&path).exists() {
        return String::new();
    }
    let conn = db(host);
    let mut out = String::new();
    for table in ["alert_states", "silences", "outbox", "control"] {
        let exists: bool = conn
            .query_row(
                "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?",
                [table],
                |r| r.get(0),
            )
            .unwrap();
        if !exists {
            continue;
        }
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM {table} ORDER BY 1"))
            .unwrap();
        let columns = stmt.column_count();
        let mut rows = stmt.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            let values: Vec<String> = (0..columns)
                .map(|i| match row.get_ref(i).unwrap() {
                    rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                    other => format!("{other:?}"),
                })
                .collect();
            out.push_str(&format!("{table}: {}\n", values.join(" | ")));
        }
    }
    out
}

fn alert_row(host: &TestHost, id: &str) -> (String, Option<String>, i64, Option<i64>) {
    db(host)
        .query_row(
            "SELECT status, acknowledged_by, incidents, last_repair_ms FROM alert_states \
             WHERE fingerprint = ?",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap()
}

fn outbox(host: &TestHost) -> Vec<(String, String, i64, Option<String>, Value)> {
    if !snapshot(host).contains("outbox: ") {
        return Vec::new();
    }
    let conn = db(host);
    let mut stmt = conn
        .prepare("SELECT kind, target, attempts, last_error, payload FROM outbox ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| {
        let payload: String = r.get(4)?;
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            serde_json::from_str(&payload).unwrap(),
        ))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// Waits until the mock has received `n` requests (follow-ups are posted
/// after the response, so they may land a moment later).
async fn received(mock: &MockServer, n: usize) -> Vec<dol_test_support::mock::Recorded> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = mock.received.lock().unwrap().clone();
        if got.len() >= n || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the outbox holds `n` rows.
/// Waits until the outbox has `n` rows and its last row has been tried
/// once: the follow-up is queued first and sent after the reply to Slack,
/// so the row exists a moment before its attempt is recorded.
async fn outbox_len(
    host: &TestHost,
    n: usize,
) -> Vec<(String, String, i64, Option<String>, Value)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = outbox(host);
        let tried = rows
            .last()
            .is_some_and(|(_, _, attempts, _, _)| *attempts > 0);
        if (rows.len() >= n && tried) || Instant::now() > deadline {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_slack_click_acknowledges_and_follows_up_to_response_url() {
    let host = host(LOCAL).await;
    let slack_mock = MockServer::fixed(200, "ok").await;
    let r = alertmanager(&host, "firing.json").await;
    assert_eq!(r.status, 200, "{}", r.text);

    let response_url = format!("{}/actions/T1/1/abc", slack_mock.url());
    let started = Instant::now();
    let r = slack(
        &host,
        "/webhooks/slack/actions",
        &click("dol_ack", FP1, &response_url),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "Slack wants an answer within 3 s"
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["ok"], true);
    assert!(
        r.body["text"]
            .as_str()
            .unwrap()
            .contains("acknowledged by slack:ana")
    );
    let (status, by, _, _) = alert_row(&host, FP1);
    assert_eq!(
        (status.as_str(), by.as_deref()),
        ("firing", Some("slack:ana"))
    );
    // The other alert is untouched.
    assert_eq!(alert_row(&host, FP2).1, None);

    let got = received(&slack_mock, 1).await;
    assert_eq!(got.len(), 1, "one follow-up reached the mock Slack");
    assert_eq!(
        (got[0].method.as_str(), got[0].path.as_str()),
        ("POST", "/actions/T1/1/abc")
    );
    let message: Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(message["replace_original"], false);
    assert!(
        message["text"]
            .as_str()
            .unwrap()
            .contains(&format!("`{FP1}`) acknowledged by slack:ana"))
    );

    // Resolve button: resolved by hand, MTTR recorded, follow-up sent.
    let r = slack(
        &host,
        "/webhooks/slack/actions",
        &click("dol_resolve", FP1, &response_url),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let (status, _, incidents, repair) = alert_row(&host, FP1);
    assert_eq!((status.as_str(), incidents), ("resolved", 1));
    assert!(repair.unwrap() > 0);
    assert_eq!(received(&slack_mock, 2).await.len(), 2);

    // Notifications for the channels are queued: two firing, ack, resolve.
    let kinds: Vec<String> = outbox(&host)
        .iter()
        .map(|(kind, target, _, _, p)| format!("{kind}/{target}/{}", p["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            "alert/default/firing",
            "alert/default/firing",
            "alert/default/acknowledged",
            "alert/default/resolved"
        ]
    );
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_follow_up_is_kept_in_the_outbox() {
    let host = host(LOCAL).await;
    let slack_down = MockServer::fixed(500, "oops").await;
    assert_eq!(alertmanager(&host, "firing.json").await.status, 200);
    let before = outbox(&host).len();
    let url = format!("{}/actions/T1/9/secret-part", slack_down.url());
    let r = slack(
        &host,
        "/webhooks/slack/actions",
        &click("dol_ack", FP2, &url),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let rows = outbox_len(&host, before + 2).await;
    let (kind, target, attempts, error, payload) = rows.last().unwrap().clone();
    assert_eq!(
        (kind.as_str(), target.as_str()),
        ("slack_response", url.as_str())
    );
    assert_eq!((attempts, error.as_deref()), (1, Some("HTTP 500")));
    assert!(
        payload["text"]
            .as_str()
            .unwrap()
            .contains("acknowledged by slack:ana")
    );
    assert_eq!(received(&slack_down, 1).await.len(), 1);
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_refusals_answer_401_or_400_and_change_nothing() {
    let host = host(APP).await;
    assert_eq!(alertmanager(&host, "firing.json").await.status, 200);
    let before = snapshot(&host);
    assert!(before.contains(FP1));
    let body = click("dol_ack", FP1, "https://hooks.slack.com/actions/T1/1/abc");
    let now = now_secs();
    let form = (
        "content-type",
        "application/x-www-form-urlencoded".to_owned(),
    );

    // No signature, no timestamp.
    let r = post(
        &host,
        "/webhooks/slack/actions",
        std::slice::from_ref(&form),
        &body,
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (401, "missing-timestamp"),
        "{}",
        r.text
    );
    let mut headers = slack_headers(SLACK_SECRET, now, &body);
    headers.pop();
    let r = post(&host, "/webhooks/slack/actions", &headers, &body).await;
    assert_eq!(
        (r.status, r.code()),
        (401, "missing-signature"),
        "{}",
        r.text
    );

    // Stale: correctly signed, but past the 300 s limit (either way). Read
    // the clock again and keep a margin: the future case turns fresh if
    // the requests above took a few seconds on a loaded machine.
    let now = now_secs();
    for ts in [now - 330, now + 330] {
        let r = post(
            &host,
            "/webhooks/slack/actions",
            &slack_headers(SLACK_SECRET, ts, &body),
            &body,
        )
        .await;
        assert_eq!((r.status, r.code()), (401, "stale-timestamp"), "{}", r.text);
        assert!(
            r.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("limit 300 s")
        );
    }

    // Signed with another secret.
    let r = post(
        &host,
        "/webhooks/slack/actions",
        &slack_headers("not-the-secret", now, &body),
        &body,
    )
    .await;
    assert_eq!((r.status, r.code()), (401, "bad-signature"), "{}", r.text);

    // Tampered body: the signature is for the original.
    let tampered = click(
        "dol_resolve",
        FP1,
        "https://hooks.slack.com/actions/T1/1/abc",
    );
    let r = post(
        &host,
        "/webhooks/slack/actions",
        &slack_headers(SLACK_SECRET, now, &body),
        &tampered,
    )
    .await;
    assert_eq!((r.status, r.code()), (401, "bad-signature"), "{}", r.text);

    // Malformed signature header.
    let mut headers = slack_headers(SLACK_SECRET, now, &body);
    headers[2].1 = "sha256=abc".to_owned();
    let r = post(&host, "/webhooks/slack/actions", &headers, &body).await;
    assert_eq!(
        (r.status, r.code()),
        (401, "malformed-signature"),
        "{}",
        r.text
    );

    // Correctly signed, but JSON instead of a form.
    let mut headers = slack_headers(SLACK_SECRET, now, &body);
    headers[0].1 = "application/json".to_owned();
    let r = post(&host, "/webhooks/slack/actions", &headers, &body).await;
    assert_eq!(
        (r.status, r.code()),
        (415, "unsupported-media-type"),
        "{}",
        r.text
    );

    // Correctly signed, malformed payloads.
    for bad in [
        "payload=%7Bnot-json",
        "nothing=here",
        &click("other_button", FP1, "x"),
    ] {
        let r = slack(&host, "/webhooks/slack/actions", bad).await;
        assert_eq!(
            (r.status, r.code()),
            (400, "invalid-payload"),
            "{bad}: {}",
            r.text
        );
    }

    // Correctly signed, unknown alert id.
    let r = slack(
        &host,
        "/webhooks/slack/actions",
        &click("dol_ack", "no-such-alert", "x"),
    )
    .await;
    assert_eq!((r.status, r.code()), (404, "alert-not-found"), "{}", r.text);
    let r = slash(&host, "resolve no-such-alert").await;
    assert_eq!((r.status, r.code()), (404, "alert-not-found"), "{}", r.text);

    // The slash-command route verifies the same way.
    let cmd = command("emergency on");
    let r = post(
        &host,
        "/webhooks/slack/commands",
        &slack_headers("not-the-secret", now, &cmd),
        &cmd,
    )
    .await;
    assert_eq!((r.status, r.code()), (401, "bad-signature"), "{}", r.text);
    let r = post(
        &host,
        "/webhooks/slack/commands",
        &slack_headers(SLACK_SECRET, now - 400, &cmd),
        &cmd,
    )
    .await;
    assert_eq!((r.status, r.code()), (401, "stale-timestamp"), "{}", r.text);

    assert_eq!(
        snapshot(&host),
        before,
        "no refused request changed storage"
    );

    // A second acknowledgement is a conflict and changes nothing either.
    assert_eq!(slash(&host, &format!("ack {FP1}")).await.status, 200);
    let after_ack = snapshot(&host);
    let r = slack(
        &host,
        "/webhooks/slack/actions",
        &click("dol_ack", FP1, "x"),
    )
    .await;
    assert_eq!((r.status, r.code()), (409, "alert-conflict"), "{}", r.text);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already acknowledged by slack:ana")
    );
    assert_eq!(snapshot(&host), after_ack);

    // Other methods and paths.
    let r = host
        .client
        .get(host.url("/webhooks/slack/actions"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    let r = post(&host, "/webhooks/nope", &[], "").await;
    assert_eq!((r.status, r.code()), (404, "not-found"), "{}", r.text);
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconfigured_secrets_close_the_routes_with_503() {
    let host = TestHost::builder(APP).start().await;
    let body = command("emergency on");
    for (path, variable) in [
        ("/webhooks/slack/actions", "slack_signing_secret"),
        ("/webhooks/slack/commands", "slack_signing_secret"),
        ("/webhooks/alertmanager", "alertmanager_token"),
        ("/webhooks/generic", "webhook_secret"),
    ] {
        // Signed with the empty secret: still refused, never open.
        let r = post(&host, path, &slack_headers("", now_secs(), &body), &body).await;
        assert_eq!(
            (r.status, r.code()),
            (503, "not-configured"),
            "{path}: {}",
            r.text
        );
        assert!(
            r.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains(variable),
            "{}",
            r.text
        );
    }
    assert_eq!(snapshot(&host), "");
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slash_commands_status_ack_resolve_emergency_and_usage() {
    let host = host(APP).await;
    let r = slash(&host, "status").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["response_type"], "ephemeral");
    assert_eq!(
        r.body["text"],
        "Emergency mode: automatic.\nNo firing alerts."
    );

    assert_eq!(alertmanager(&host, "firing.json").await.status, 200);
    let r = slash(&host, "").await;
    let text = r.body["text"].as_str().unwrap();
    assert!(text.contains("Firing alerts (2):"), "{text}");
    assert!(
        text.contains(&format!("[CRITICAL] *DolHighErrorRate* (`{FP1}`)")),
        "{text}"
    );
    assert!(
        text.contains("error rate 14% &gt; 10% for 5m on edge-1"),
        "{text}"
    );

    let r = slash(&host, &format!("ack {FP1}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["response_type"], "ephemeral");
    assert!(
        r.body["text"]
            .as_str()
            .unwrap()
            .contains("acknowledged by slack:ana")
    );
    assert!(
        slash(&host, "status").await.body["text"]
            .as_str()
            .unwrap()
            .contains("acknowledged by slack:ana")
    );

    let r = slash(&host, &format!("resolve {FP2}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.body["text"]
            .as_str()
            .unwrap()
            .contains("resolved by slack:ana after")
    );
    assert_eq!(alert_row(&host, FP2).0, "resolved");
    assert!(
        slash(&host, "status").await.body["text"]
            .as_str()
            .unwrap()
            .contains("Firing alerts (1):")
    );

    // Emergency mode forced on, then off, in the control table.
    let r = slash(&host, "emergency on").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.body["text"]
            .as_str()
            .unwrap()
            .contains("forced *on* by slack:ana")
    );
    let (value, by): (String, String) = db(&host)
        .query_row(
            "SELECT value, updated_by FROM control WHERE key = 'emergency_mode'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (value.as_str(), by.as_str()),
        (r#"{"mode":"on"}"#, "slack:ana")
    );
    assert!(
        slash(&host, "status").await.body["text"]
            .as_str()
            .unwrap()
            .starts_with("Emergency mode: forced *on* by slack:ana")
    );
    let r = slash(&host, "emergency off").await;
    assert!(r.body["text"].as_str().unwrap().contains("forced *off*"));
    // Each change made from Slack is in the audit log, by the Slack user,
    // as the same change through the operator routes would be.
    let audited: Vec<(String, String, String)> = db(&host)
        .prepare("SELECT kind, action, actor FROM audit_log WHERE actor LIKE 'slack:%' ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (kind, action) in [("alert", "resolve"), ("emergency", "set")] {
        assert!(
            audited
                .iter()
                .any(|(k, a, who)| k == kind && a == action && who == "slack:ana"),
            "{kind} {action} not audited: {audited:?}"
        );
    }
    assert_eq!(
        audited.iter().filter(|(k, _, _)| k == "emergency").count(),
        2,
        "on and off: {audited:?}"
    );

    // Unknown subcommands get the usage, as an ephemeral 200.
    for text in ["frobnicate", "emergency maybe", "ack"] {
        let r = slash(&host, text).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.body["response_type"], "ephemeral");
        let usage = r.body["text"].as_str().unwrap();
        assert!(
            usage.contains(&format!("Sorry, I don't know `{text}`")),
            "{usage}"
        );
        assert!(usage.contains("`kill <flag>`"), "{usage}");
    }
    // A form without user_id is malformed.
    let r = slack(&host, "/webhooks/slack/commands", "text=status").await;
    assert_eq!((r.status, r.code()), (400, "invalid-payload"), "{}", r.text);
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_firing_then_resolved_with_fingerprint_dedup() {
    let host = host(APP).await;
    let json_type = ("content-type", "application/json".to_owned());
    let firing = fixture("firing.json");

    // Credentials first: missing, wrong, other scheme.
    for auth in [
        None,
        Some(format!("Bearer {AM_TOKEN}x")),
        Some(format!("Basic {AM_TOKEN}")),
    ] {
        let mut headers = vec![json_type.clone()];
        if let Some(a) = &auth {
            headers.push(("authorization", a.clone()));
        }
        let r = post(&host, "/webhooks/alertmanager", &headers, &firing).await;
        assert_eq!(
            (r.status, r.code()),
            (401, "unauthorized"),
            "{auth:?}: {}",
            r.text
        );
        assert_eq!(r.headers["www-authenticate"], "Bearer");
        assert!(!r.text.contains(AM_TOKEN), "the token is never echoed");
    }
    let auth = ("authorization", format!("Bearer {AM_TOKEN}"));
    let r = post(
        &host,
        "/webhooks/alertmanager",
        &[auth.clone(), ("content-type", "text/plain".to_owned())],
        &firing,
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (415, "unsupported-media-type"),
        "{}",
        r.text
    );
    let r = alertmanager(&host, "bad_version.json").await;
    assert_eq!((r.status, r.code()), (400, "invalid-payload"), "{}", r.text);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unsupported version `3`")
    );
    let r = post(
        &host,
        "/webhooks/alertmanager",
        &[auth.clone(), json_type.clone()],
        "{",
    )
    .await;
    assert_eq!((r.status, r.code()), (400, "invalid-payload"), "{}", r.text);
    assert_eq!(snapshot(&host), "", "nothing stored for refused deliveries");

    // Firing: two alerts, two notifications.
    let r = alertmanager(&host, "firing.json").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["received"], 2);
    assert_eq!(r.body["fired"], json!([FP1, FP2]));
    assert_eq!(r.body["queued_notifications"], 2);
    let (source, severity, summary, fired_at, labels): (String, String, String, i64, String) =
        db(&host)
            .query_row(
                "SELECT source, severity, summary, fired_at, labels FROM alert_states \
                 WHERE fingerprint = ?",
                [FP1],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .unwrap();
    assert_eq!(
        (source.as_str(), severity.as_str(), summary.as_str()),
        (
            "alertmanager",
            "critical",
            "error rate 14% > 10% for 5m on edge-1"
        )
    );
    // 2026-11-20T09:15:00Z, the alert's startsAt.
    assert_eq!(fired_at, 1_795_166_100_000);
    assert!(labels.contains(r#""provider":"openai""#), "{labels}");

    // The same group again (Alertmanager re-sends every repeat_interval): deduplicated.
    let r = alertmanager(&host, "firing.json").await;
    assert_eq!(r.body["fired"], json!([]));
    assert_eq!(r.body["unchanged"], json!([FP1, FP2]));
    assert_eq!(r.body["queued_notifications"], 0);
    let count: i64 = db(&host)
        .query_row("SELECT COUNT(*) FROM alert_states", [], |r| r.get(0))
        .unwrap();
    assert_eq!(count, 2);

    // Resolved: MTTR from startsAt to endsAt (27 minutes).
    let r = alertmanager(&host, "resolved.json").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["resolved"], json!([FP1]));
    assert_eq!(
        alert_row(&host, FP1),
        ("resolved".to_owned(), None, 1, Some(27 * 60_000))
    );
    assert_eq!(alert_row(&host, FP2).0, "firing");
    assert_eq!(outbox(&host).len(), 3);
    let r = alertmanager(&host, "resolved.json").await;
    assert_eq!(r.body["unchanged"], json!([FP1]));
    assert_eq!(outbox(&host).len(), 3);
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_webhook_signed_and_unsigned() {
    let host = host(APP).await;
    let firing = r#"{"name":"DiskFull","status":"firing","severity":"warning","labels":{"host":"db-1"},"summary":"disk 97% full"}"#;
    let json_type = ("content-type", "application/json".to_owned());

    let r = post(
        &host,
        "/webhooks/generic",
        std::slice::from_ref(&json_type),
        firing,
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (401, "missing-timestamp"),
        "{}",
        r.text
    );
    let r = post(
        &host,
        "/webhooks/generic",
        &signed_generic("wrong-secret", firing),
        firing,
    )
    .await;
    assert_eq!((r.status, r.code()), (401, "bad-signature"), "{}", r.text);
    let tampered = firing.replace("97%", "12%");
    let r = post(
        &host,
        "/webhooks/generic",
        &signed_generic(WEBHOOK_SECRET, firing),
        &tampered,
    )
    .await;
    assert_eq!((r.status, r.code()), (401, "bad-signature"), "{}", r.text);
    let stale: Vec<(&str, String)> =
        sign_webhook(WEBHOOK_SECRET, now_secs() - 600, firing.as_bytes())
            .into_iter()
            .chain([json_type.clone()])
            .collect();
    let r = post(&host, "/webhooks/generic", &stale, firing).await;
    assert_eq!((r.status, r.code()), (401, "stale-timestamp"), "{}", r.text);
    let mut wrong_type = signed_generic(WEBHOOK_SECRET, firing);
    wrong_type[2].1 = "application/x-www-form-urlencoded".to_owned();
    let r = post(&host, "/webhooks/generic", &wrong_type, firing).await;
    assert_eq!(
        (r.status, r.code()),
        (415, "unsupported-media-type"),
        "{}",
        r.text
    );
    let bad = r#"{"name":"DiskFull"}"#;
    let r = post(
        &host,
        "/webhooks/generic",
        &signed_generic(WEBHOOK_SECRET, bad),
        bad,
    )
    .await;
    assert_eq!((r.status, r.code()), (400, "invalid-payload"), "{}", r.text);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("missing field `status`")
    );
    assert_eq!(snapshot(&host), "");

    let r = post(
        &host,
        "/webhooks/generic",
        &signed_generic(WEBHOOK_SECRET, firing),
        firing,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(r.body["fired"], json!([id]));
    let r = post(
        &host,
        "/webhooks/generic",
        &signed_generic(WEBHOOK_SECRET, firing),
        firing,
    )
    .await;
    assert_eq!(r.body["unchanged"], json!([id]), "{}", r.text);
    let source: String = db(&host)
        .query_row(
            "SELECT source FROM alert_states WHERE fingerprint = ?",
            [&id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(source, "webhook");
    assert!(
        slash(&host, "status").await.body["text"]
            .as_str()
            .unwrap()
            .contains("*DiskFull*")
    );

    let resolved = r#"{"name":"DiskFull","status":"resolved","labels":{"host":"db-1"}}"#;
    let r = post(
        &host,
        "/webhooks/generic",
        &signed_generic(WEBHOOK_SECRET, resolved),
        resolved,
    )
    .await;
    assert_eq!(r.body["resolved"], json!([id]), "{}", r.text);
    assert_eq!(alert_row(&host, &id).0, "resolved");
    host.app.shutdown().await;
}

async fn ofrep(host: &TestHost, key: &str) -> Value {
    let r = post(
        host,
        &format!("/ofrep/v1/evaluate/flags/{key}"),
        &[("content-type", "application/json".to_owned())],
        r#"{"context": {"targetingKey": "user-1"}}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_switch_turns_flags_off_through_service_chaining() {
    let host = host(APP).await;
    let before = ofrep(&host, "comprehensive_engines").await;
    assert_eq!(
        (&before["value"], &before["reason"]),
        (&json!(true), &json!("TARGETING_MATCH"))
    );

    // Slash command: kill.
    let r = slash(&host, "kill comprehensive_engines").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.body["text"]
            .as_str()
            .unwrap()
            .contains("Kill switch on for flag `comprehensive_engines` by slack:ana")
    );
    let after = ofrep(&host, "comprehensive_engines").await;
    assert_eq!(
        after["value"], false,
        "the default variant, for everyone: {after}"
    );
    assert_eq!(after["metadata"]["dolKilled"], true);

    // Button: kill; the follow-up to a host the root manifest does not allow
    // is denied by the host and kept in the outbox instead of being lost.
    let mock = MockServer::fixed(200, "ok").await;
    let url = format!("{}/actions/T1/2/xyz", mock.url());
    let r = slack(
        &host,
        "/webhooks/slack/actions",
        &click("dol_kill_switch", "genre_engines", &url),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        ofrep(&host, "genre_engines").await["metadata"]["dolKilled"],
        true
    );
    let rows = outbox_len(&host, 1).await;
    assert_eq!(rows.len(), 1);
    let (kind, target, attempts, error, payload) = &rows[0];
    assert_eq!(
        (kind.as_str(), target.as_str(), *attempts),
        ("slack_response", url.as_str(), 1)
    );
    // spin-sdk meets the denial while writing the body (StreamError::Closed),
    // before it would see the HttpRequestDenied response.
    assert!(
        error.as_deref().unwrap().starts_with("request failed"),
        "{error:?}"
    );
    assert!(
        payload["text"]
            .as_str()
            .unwrap()
            .contains("`genre_engines`")
    );
    assert!(mock.received.lock().unwrap().is_empty());

    // The flags audit log names the Slack user.
    let audit = host
        .client
        .get(host.url("/admin/audit?flag=genre_engines"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let entry = &audit["entries"][0];
    assert_eq!(entry["action"], "kill");
    assert!(
        entry["actor"].as_str().unwrap().starts_with("slack:ana"),
        "{entry}"
    );

    // Unknown flag: 404; nothing else changes.
    let r = slash(&host, "kill no_such_flag").await;
    assert_eq!((r.status, r.code()), (404, "flag-not-found"), "{}", r.text);
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_switch_without_admin_token_is_not_configured() {
    let host = TestHost::builder(APP)
        .variable("SPIN_VARIABLE_SLACK_SIGNING_SECRET", SLACK_SECRET)
        .start()
        .await;
    let r = slash(&host, "kill comprehensive_engines").await;
    assert_eq!((r.status, r.code()), (503, "not-configured"), "{}", r.text);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("admin_token")
    );
    assert_eq!(ofrep(&host, "comprehensive_engines").await["value"], true);
    host.app.shutdown().await;
}
