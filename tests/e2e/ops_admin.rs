//! The operator routes of the scans component through the real host: alert
//! rules stored through the admin API and used by the alerts scan, alert
//! acknowledge/resolve, silences and the emergency override. Every
//! permission denial and every bad input has its own case, and a refused
//! request is shown to change nothing.

use dol_test_support::{TestHost, TestHostBuilder};
use serde_json::{Value, json};

const APP: &str = "spin.toml";
const ADMIN: &str = "ops-admin";

fn builder(admin: Option<&str>) -> TestHostBuilder {
    let b = TestHost::builder(APP);
    match admin {
        Some(t) => b.variable("SPIN_VARIABLE_ADMIN_TOKEN", t),
        None => b,
    }
}

/// `method path` with `body`, the admin token (or `token`) and an actor.
async fn call(
    host: &TestHost,
    method: &str,
    path: &str,
    body: &str,
    token: Option<&str>,
) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = host
        .client
        .request(method, host.url(path))
        .header("x-dol-actor", "alice")
        .body(body.to_owned());
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Whether an actor label names alice (the label adds a token hash).
fn by_alice(v: &Value) -> bool {
    v.as_str().is_some_and(|a| a.starts_with("alice"))
}

async fn admin(host: &TestHost, method: &str, path: &str, body: &str) -> (u16, Value) {
    call(host, method, path, body, Some(ADMIN)).await
}

/// Asserts a 400 naming `field`.
async fn refused(host: &TestHost, method: &str, path: &str, body: &str, field: &str) {
    let (status, v) = admin(host, method, path, body).await;
    assert_eq!(status, 400, "{method} {path} {body}: {v}");
    assert_eq!(v["error"]["field"], field, "{method} {path} {body}: {v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains(field),
        "{v}"
    );
}

const ROUTES: [(&str, &str, &str); 14] = [
    ("GET", "/admin/alerts/rules", ""),
    ("PUT", "/admin/alerts/rules", "[]"),
    ("DELETE", "/admin/alerts/rules", ""),
    ("GET", "/admin/alerts/rules/HighErrorRate", ""),
    ("PUT", "/admin/alerts/rules/HighErrorRate", "{}"),
    ("DELETE", "/admin/alerts/rules/HighErrorRate", ""),
    ("GET", "/admin/alerts/abc", ""),
    ("POST", "/admin/alerts/abc/ack", ""),
    ("POST", "/admin/alerts/abc/resolve", ""),
    ("GET", "/admin/silences", ""),
    ("POST", "/admin/silences", "{}"),
    ("DELETE", "/admin/silences/sil_x", ""),
    ("GET", "/admin/emergency", ""),
    ("PUT", "/admin/emergency", r#"{"mode":"on"}"#),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_routes_refuse_missing_and_wrong_tokens() {
    let host = builder(Some(ADMIN)).start().await;
    for (method, path, body) in ROUTES {
        let (status, v) = call(&host, method, path, body, None).await;
        assert_eq!(status, 401, "{method} {path} without a token: {v}");
        assert_eq!(v["error"]["code"], "unauthorized", "{v}");
        let (status, v) = call(&host, method, path, body, Some("wrong")).await;
        assert_eq!(status, 401, "{method} {path} with a wrong token: {v}");
    }
    // Nothing was stored by the refused writes.
    let (_, rules) = admin(&host, "GET", "/admin/alerts/rules", "").await;
    assert_eq!(rules["source"], "file", "{rules}");
    let (_, em) = admin(&host, "GET", "/admin/emergency", "").await;
    assert_eq!(em["override"], Value::Null, "{em}");
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_routes_are_closed_without_an_admin_token() {
    let host = builder(None).start().await;
    for (method, path, body) in ROUTES {
        let (status, v) = call(&host, method, path, body, Some("anything")).await;
        assert_eq!(status, 403, "{method} {path}: {v}");
        assert_eq!(v["error"]["code"], "admin-closed", "{v}");
    }
    host.app.shutdown().await;
}

const ALWAYS: &str = r#"{"metric":"requests","comparison":">=","threshold":0,"window":"1m","severity":"critical","labels":{"team":"ops"},"description":"always fires"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_alert_rules_are_stored_used_by_the_scan_and_acted_on() {
    let host = builder(Some(ADMIN)).start().await;
    let (status, v) = admin(&host, "GET", "/admin/alerts/rules", "").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["source"], "file");
    let shipped = v["rules"].as_array().unwrap().len();
    assert!(shipped >= 5, "{v}");

    // Bad input: 400 naming the field, nothing stored.
    refused(&host, "PUT", "/admin/alerts/rules", "{", "(body)").await;
    refused(
        &host,
        "PUT",
        "/admin/alerts/rules",
        r#"{"rules":7}"#,
        "(body)",
    )
    .await;
    refused(
        &host,
        "PUT",
        "/admin/alerts/rules",
        r#"[{"name":"x","metric":"requests","comparison":">","threshold":"lots","window":"1m","severity":"info"}]"#,
        "rules[0].threshold",
    )
    .await;
    refused(
        &host,
        "PUT",
        "/admin/alerts/rules",
        r#"[{"name":"x","metric":"nope","comparison":">","threshold":1,"window":"1m","severity":"info"}]"#,
        "rules[0].metric",
    )
    .await;
    refused(
        &host,
        "PUT",
        "/admin/alerts/rules/Always",
        r#"{"metric":"requests","comparison":">","threshold":1,"window":"1m","severity":"loud"}"#,
        "severity",
    )
    .await;
    refused(
        &host,
        "PUT",
        "/admin/alerts/rules/Always",
        r#"{"name":"Other","metric":"requests","comparison":">","threshold":1,"window":"1m","severity":"info"}"#,
        "name",
    )
    .await;
    refused(&host, "PUT", "/admin/alerts/rules/Always", "[]", "(body)").await;
    let (_, v) = admin(&host, "GET", "/admin/alerts/rules", "").await;
    assert_eq!(v["source"], "file", "refused writes store nothing: {v}");

    // One rule added: the set in force is stored, file rules kept.
    let (status, v) = admin(&host, "PUT", "/admin/alerts/rules/Always", ALWAYS).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["rule"]["window"], "1m", "{v}");
    let (status, v) = admin(&host, "PUT", "/admin/alerts/rules/Always", ALWAYS).await;
    assert_eq!((status, v["created"].clone()), (200, json!(false)), "{v}");
    let (_, v) = admin(&host, "GET", "/admin/alerts/rules", "").await;
    assert_eq!(v["source"], "stored", "{v}");
    assert!(by_alice(&v["updated_by"]), "{v}");
    assert_eq!(v["rules"].as_array().unwrap().len(), shipped + 1);
    let (status, v) = admin(&host, "GET", "/admin/alerts/rules/Always", "").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["rule"]["threshold"], 0.0, "{v}");
    let (status, v) = admin(&host, "GET", "/admin/alerts/rules/Nope", "").await;
    assert_eq!(
        (status, v["error"]["code"].clone()),
        (404, json!("not-found"))
    );
    let (status, _) = admin(&host, "POST", "/admin/alerts/rules/Always", "").await;
    assert_eq!(status, 405);

    // The alerts scan uses the stored rules: Always fires at once.
    let (status, v) = admin(&host, "POST", "/admin/scans/alerts", "").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["summary"]["rules"], shipped + 1, "{v}");
    assert!(
        v["summary"]["firing"]
            .as_array()
            .unwrap()
            .contains(&json!("Always")),
        "{v}"
    );
    let (_, list) = admin(&host, "GET", "/admin/alerts", "").await;
    let id = list["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["state"]["name"] == "Always")
        .map(|a| a["state"]["fingerprint"].as_str().unwrap().to_owned())
        .unwrap();
    let (status, v) = admin(&host, "GET", &format!("/admin/alerts/{id}"), "").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["alert"]["state"]["status"], "firing", "{v}");

    // Acknowledge, twice (409), unknown id (404), resolve, twice (409).
    let (status, v) = admin(&host, "POST", &format!("/admin/alerts/{id}/ack"), "").await;
    assert_eq!(status, 200, "{v}");
    assert!(by_alice(&v["alert"]["state"]["acknowledged_by"]), "{v}");
    let (status, v) = admin(&host, "POST", &format!("/admin/alerts/{id}/ack"), "").await;
    assert_eq!(
        (status, v["error"]["code"].clone()),
        (409, json!("alert-conflict")),
        "{v}"
    );
    let (status, v) = admin(&host, "POST", "/admin/alerts/nope/ack", "").await;
    assert_eq!(
        (status, v["error"]["code"].clone()),
        (404, json!("alert-not-found")),
        "{v}"
    );
    let (status, v) = admin(&host, "POST", "/admin/alerts/nope/resolve", "").await;
    assert_eq!(status, 404, "{v}");
    let (status, _) = admin(&host, "GET", &format!("/admin/alerts/{id}/ack"), "").await;
    assert_eq!(status, 405);
    let (status, v) = admin(&host, "POST", &format!("/admin/alerts/{id}/resolve"), "").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["alert"]["state"]["status"], "resolved", "{v}");
    let (status, v) = admin(&host, "POST", &format!("/admin/alerts/{id}/resolve"), "").await;
    assert_eq!(status, 409, "{v}");
    // The incident is in the response times of both windows.
    let (_, list) = admin(&host, "GET", "/admin/alerts", "").await;
    for window in ["7d", "30d"] {
        let w = &list["incidents"][window];
        assert_eq!(
            (
                &w["incidents"],
                &w["acknowledged"],
                &w["resolved"],
                &w["open"]
            ),
            (&json!(1), &json!(1), &json!(1), &json!(0)),
            "{list}"
        );
        assert!(
            w["mtta_ms"].as_u64().is_some() && w["mttr_ms"].as_u64().is_some(),
            "{list}"
        );
        assert!(w["mtta_ms"].as_u64() <= w["mttr_ms"].as_u64(), "{list}");
    }

    // Deleting the rule drops its alert (its incident stays history);
    // unknown names are 404.
    let (status, v) = admin(&host, "DELETE", "/admin/alerts/rules/Always", "").await;
    assert_eq!(status, 200, "{v}");
    let (status, _) = admin(&host, "DELETE", "/admin/alerts/rules/Always", "").await;
    assert_eq!(status, 404);
    let (status, _) = admin(&host, "GET", &format!("/admin/alerts/{id}"), "").await;
    assert_eq!(status, 404);
    let (_, list) = admin(&host, "GET", "/admin/alerts", "").await;
    assert_eq!(list["incidents"]["7d"]["incidents"], 1, "{list}");

    // The whole set replaced, then reset to the file.
    let one = format!(r#"[{}]"#, ALWAYS.replacen('{', r#"{"name":"Only","#, 1));
    let (status, v) = admin(&host, "PUT", "/admin/alerts/rules", &one).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["rules"].as_array().unwrap().len(), 1, "{v}");
    let (_, v) = admin(&host, "POST", "/admin/scans/alerts", "").await;
    assert_eq!(v["summary"]["rules"], 1, "{v}");
    let (status, v) = admin(&host, "DELETE", "/admin/alerts/rules", "").await;
    assert_eq!((status, v["source"].clone()), (200, json!("file")), "{v}");
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_silences_validate_mute_and_delete() {
    let host = builder(Some(ADMIN)).start().await;
    for (body, field) in [
        ("{", "(body)"),
        (r#"{"duration":"1h"}"#, "matchers"),
        (r#"{"matchers":[],"duration":"1h"}"#, "matchers"),
        (r#"{"labels":{"alertname":"x"}}"#, "ends_at"),
        (
            r#"{"labels":{"alertname":"x"},"starts_at":2000,"ends_at":1000}"#,
            "ends_at",
        ),
        (r#"{"labels":{"alertname":"x"},"ends_at":1000}"#, "ends_at"),
        (
            r#"{"labels":{"alertname":"x"},"duration":"0s"}"#,
            "duration",
        ),
        (
            r#"{"labels":{"alertname":"x"},"duration":"1h","ends_at":99999999999999}"#,
            "duration",
        ),
        (
            r#"{"matchers":[{"name":"alertname","value":"x","op":"like"}],"duration":"1h"}"#,
            "matchers[0].op",
        ),
        (
            r#"{"labels":{"bad-label":"x"},"duration":"1h"}"#,
            "labels.bad-label",
        ),
        (
            r#"{"labels":{"alertname":"x"},"duration":"1h","until":"later"}"#,
            "until",
        ),
    ] {
        refused(&host, "POST", "/admin/silences", body, field).await;
    }
    let (_, v) = admin(&host, "GET", "/admin/silences", "").await;
    assert_eq!(
        v["silences"],
        json!([]),
        "refused silences store nothing: {v}"
    );

    // A silence on a rule's alert: it fires but queues no notification.
    let (status, v) = admin(
        &host,
        "POST",
        "/admin/silences",
        r#"{"labels":{"alertname":"Always"},"duration":"2h","comment":"maintenance"}"#,
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let id = v["silence"]["id"].as_str().unwrap().to_owned();
    assert!(by_alice(&v["silence"]["created_by"]), "{v}");
    assert_eq!(v["silence"]["active"], true, "{v}");
    let (_, v) = admin(&host, "GET", "/admin/silences", "").await;
    assert_eq!(v["silences"][0]["comment"], "maintenance", "{v}");
    let (status, v) = admin(&host, "PUT", "/admin/alerts/rules/Always", ALWAYS).await;
    assert_eq!(status, 201, "{v}");
    let (_, v) = admin(&host, "POST", "/admin/scans/alerts", "").await;
    assert!(
        v["summary"]["firing"]
            .as_array()
            .unwrap()
            .contains(&json!("Always")),
        "{v}"
    );
    assert_eq!(v["summary"]["queued"], 0, "silenced: {v}");

    let (status, _) = admin(&host, "DELETE", &format!("/admin/silences/{id}"), "").await;
    assert_eq!(status, 200);
    let (status, v) = admin(&host, "DELETE", &format!("/admin/silences/{id}"), "").await;
    assert_eq!(
        (status, v["error"]["code"].clone()),
        (404, json!("not-found")),
        "{v}"
    );
    let (status, _) = admin(&host, "PUT", "/admin/silences", "{}").await;
    assert_eq!(status, 405);
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_emergency_override_is_forced_shown_and_returned_to_auto() {
    let host = builder(Some(ADMIN)).start().await;
    let (status, v) = admin(&host, "GET", "/admin/emergency", "").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["override"].clone(), v["effective"].clone()),
        (Value::Null, json!(false))
    );
    for (body, field) in [
        ("", "(body)"),
        ("{}", "mode"),
        (r#"{"mode":"maybe"}"#, "mode"),
        (r#"{"mode":"on","reason":"x"}"#, "reason"),
    ] {
        refused(&host, "PUT", "/admin/emergency", body, field).await;
    }
    let (_, v) = admin(&host, "GET", "/admin/emergency", "").await;
    assert_eq!(
        v["last_change"],
        Value::Null,
        "refused: nothing recorded: {v}"
    );

    let (status, v) = admin(&host, "PUT", "/admin/emergency", r#"{"mode":"on"}"#).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["override"], "on", "{v}");
    assert!(by_alice(&v["override_set"]["by"]), "{v}");
    assert_eq!(v["effective"], true, "{v}");
    assert_eq!(v["last_change"]["mode"], "on", "{v}");
    // Visible in /api/health and used by generation (safe tier).
    let (_, h) = host.get_json("/api/health").await;
    assert_eq!(h["emergencyMode"]["active"], true, "{h}");
    assert_eq!(h["emergencyMode"]["mode"], "override", "{h}");
    assert!(by_alice(&h["emergencyMode"]["setBy"]), "{h}");

    let (status, v) = admin(&host, "PUT", "/admin/emergency", r#"{"mode":"auto"}"#).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["override"], Value::Null, "{v}");
    assert_eq!(v["effective"], false, "{v}");
    assert_eq!(v["last_change"]["mode"], "auto", "{v}");
    let (_, h) = host.get_json("/api/health").await;
    assert_eq!(h["emergencyMode"]["mode"], "automatic", "{h}");
    let (status, _) = admin(&host, "POST", "/admin/emergency", "").await;
    assert_eq!(status, 405);
    host.app.shutdown().await;
}
