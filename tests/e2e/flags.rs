//! The flag-evaluate component through the host: OFREP status codes, auth,
//! ETags, the admin API (errors, import/export of the seed flags, kill
//! switch, audit log) and a real OpenFeature OFREP client in node.

use std::path::Path;
use std::process::Command;

use dol_test_support::{TestHost, workspace_root};
use serde_json::{Value, json};

const ADMIN: &str = "admin-s3cret";

async fn host_with(vars: &[(&str, &str)]) -> TestHost {
    let mut builder = TestHost::builder("spin.toml");
    for (name, value) in vars {
        builder = builder.variable(name, value);
    }
    builder.start().await
}

async fn admin_host() -> TestHost {
    host_with(&[("SPIN_VARIABLE_ADMIN_TOKEN", ADMIN)]).await
}

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
    text: String,
}

async fn call(
    host: &TestHost,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = host
        .client
        .request(method, host.url(path))
        .body(body.to_string());
    for (name, value) in headers {
        req = req.header(*name, *value);
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

async fn admin(host: &TestHost, method: &str, path: &str, body: &str) -> Reply {
    let auth = format!("Bearer {ADMIN}");
    call(
        host,
        method,
        path,
        &[("authorization", &auth), ("x-dol-actor", "e2e-tester")],
        body,
    )
    .await
}

async fn ofrep(host: &TestHost, key: &str, context: Value) -> Reply {
    let body = json!({ "context": context }).to_string();
    call(
        host,
        "POST",
        &format!("/ofrep/v1/evaluate/flags/{key}"),
        &[],
        &body,
    )
    .await
}

fn version(reply: &Reply) -> i64 {
    reply.headers["x-dol-flags-version"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ofrep_single_flag_status_codes() {
    let host = host_with(&[]).await;
    let user = json!({"targetingKey": "user-1", "maturityPhase": "walk", "orgId": "org-1"});

    let r = ofrep(&host, "complete_context", user.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["key"], "complete_context");
    assert_eq!(r.body["value"], true);
    assert_eq!(r.body["variant"], "on");
    assert_eq!(r.body["reason"], "STATIC");
    assert_eq!(r.body["metadata"]["flagSetId"], "dol");

    let r = ofrep(&host, "comprehensive_engines", user.clone()).await;
    assert_eq!((r.status, &r.body["value"]), (200, &json!(true)));
    assert_eq!(r.body["reason"], "TARGETING_MATCH");

    let r = ofrep(&host, "generation_experiment", user.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(["control", "treatment"].contains(&r.body["value"].as_str().unwrap()));

    // Disabled: 200 DISABLED with no value (the caller's code default).
    let r = ofrep(&host, "beta_features", user.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["reason"], "DISABLED");
    assert!(r.body.get("value").is_none(), "{}", r.text);

    // 404 FLAG_NOT_FOUND.
    let r = ofrep(&host, "no_such_flag", user.clone()).await;
    assert_eq!(r.status, 404, "{}", r.text);
    assert_eq!(r.body["errorCode"], "FLAG_NOT_FOUND");
    assert_eq!(r.body["key"], "no_such_flag");

    // 400 INVALID_CONTEXT: unparseable body, non-object context, bad targetingKey.
    for body in [
        "{not json",
        r#"{"context": [1]}"#,
        r#"{"context": {"targetingKey": 5}}"#,
    ] {
        let r = call(
            &host,
            "POST",
            "/ofrep/v1/evaluate/flags/complete_context",
            &[],
            body,
        )
        .await;
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        assert_eq!(r.body["errorCode"], "INVALID_CONTEXT", "{}", r.text);
        assert_eq!(r.body["key"], "complete_context");
        assert!(r.body["errorDetails"].is_string());
    }

    // An empty body is an empty context.
    let r = call(
        &host,
        "POST",
        "/ofrep/v1/evaluate/flags/complete_context",
        &[],
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);

    // 405 with JSON for other methods; 404 JSON for unknown OFREP paths.
    let r = call(
        &host,
        "GET",
        "/ofrep/v1/evaluate/flags/complete_context",
        &[],
        "",
    )
    .await;
    assert_eq!(r.status, 405, "{}", r.text);
    assert!(r.body["errorDetails"].is_string());
    let r = call(&host, "POST", "/ofrep/v2/whatever", &[], "").await;
    assert_eq!(r.status, 404, "{}", r.text);
    assert!(r.body["errorDetails"].is_string());
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ofrep_bulk_etag_and_304() {
    let host = admin_host().await;
    let body = json!({"context": {"targetingKey": "user-9", "maturityPhase": "fly"}}).to_string();
    let r = call(&host, "POST", "/ofrep/v1/evaluate/flags", &[], &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let keys: Vec<&str> = r.body["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["key"].as_str().unwrap())
        .collect();
    // beta_features is disabled and left out of bulk evaluation.
    assert_eq!(
        keys,
        [
            "complete_context",
            "comprehensive_engines",
            "generation_experiment",
            "generation_pipeline",
            "genre_engines"
        ]
    );
    let etag = r.headers["etag"].to_str().unwrap().to_owned();

    let r = call(
        &host,
        "POST",
        "/ofrep/v1/evaluate/flags",
        &[("if-none-match", &etag)],
        &body,
    )
    .await;
    assert_eq!(r.status, 304, "{}", r.text);
    assert_eq!(r.headers["etag"].to_str().unwrap(), etag);
    assert!(r.text.is_empty());

    // A write changes the answer, and the ETag with it.
    let r = admin(
        &host,
        "POST",
        "/admin/flags/complete_context/kill",
        r#"{"variant":"off"}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = call(
        &host,
        "POST",
        "/ofrep/v1/evaluate/flags",
        &[("if-none-match", &etag)],
        &body,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_ne!(r.headers["etag"].to_str().unwrap(), etag);

    // 400 for a bad bulk request: errorCode without a key.
    let r = call(
        &host,
        "POST",
        "/ofrep/v1/evaluate/flags",
        &[],
        r#"{"context": "x"}"#,
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.body["errorCode"], "INVALID_CONTEXT");
    assert!(r.body.get("key").is_none());
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ofrep_token_gives_401_and_403() {
    let host = host_with(&[("SPIN_VARIABLE_OFREP_TOKEN", "client-t0ken")]).await;
    let path = "/ofrep/v1/evaluate/flags/complete_context";
    let r = call(&host, "POST", path, &[], "{}").await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert!(r.body["errorDetails"].is_string());
    let r = call(
        &host,
        "POST",
        path,
        &[("authorization", "Bearer nope")],
        "{}",
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = call(
        &host,
        "POST",
        "/ofrep/v1/evaluate/flags",
        &[("x-api-key", "nope")],
        "{}",
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = call(
        &host,
        "POST",
        path,
        &[("authorization", "Bearer client-t0ken")],
        "{}",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = call(&host, "POST", path, &[("x-api-key", "client-t0ken")], "{}").await;
    assert_eq!(r.status, 200, "{}", r.text);
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_is_closed_without_admin_token() {
    let host = host_with(&[]).await;
    for (method, path) in [
        ("GET", "/admin/flags"),
        ("PUT", "/admin/flags/x"),
        ("GET", "/admin/audit"),
    ] {
        let r = call(&host, method, path, &[("authorization", "Bearer ")], "{}").await;
        assert_eq!(r.status, 403, "{method} {path}: {}", r.text);
        assert!(
            r.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("admin_token is not configured"),
            "{}",
            r.text
        );
    }
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_errors_store_nothing() {
    let host = admin_host().await;
    let r = call(&host, "GET", "/admin/flags", &[], "").await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert_eq!(r.body["error"]["code"], "unauthorized");
    let r = call(
        &host,
        "GET",
        "/admin/flags",
        &[("authorization", "Bearer wrong")],
        "",
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert_eq!(r.body["error"]["code"], "unauthorized");

    let r = admin(&host, "GET", "/admin/flags", "").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let start = version(&r);
    let exported = r.body.clone();

    let r = admin(&host, "PUT", "/admin/flags", "{oops").await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.body["error"]["code"], "invalid-json");
    let r = admin(&host, "PUT", "/admin/flags/new_flag", "[1,").await;
    assert_eq!(r.status, 400, "{}", r.text);

    let bad = json!({"state": "ENABLED", "variants": {"a": true}, "defaultVariant": "b"});
    let r = admin(&host, "PUT", "/admin/flags/new_flag", &bad.to_string()).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.body["error"]["code"], "invalid-definition");
    assert_eq!(r.body["error"]["field"], "flags.new_flag.defaultVariant");

    let mut doc = exported.clone();
    doc["flags"]["genre_engines"]["state"] = json!("MAYBE");
    let r = admin(&host, "PUT", "/admin/flags", &doc.to_string()).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.body["error"]["field"], "flags.genre_engines.state");
    // An import takes only the keys a single-flag PUT takes.
    let mut doc = exported.clone();
    doc["flags"]["a b/c"] = exported["flags"]["genre_engines"].clone();
    let r = admin(&host, "PUT", "/admin/flags", &doc.to_string()).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.body["error"]["field"], "flags.a b/c");

    for (method, path) in [
        ("GET", "/admin/flags/nope"),
        ("DELETE", "/admin/flags/nope"),
        ("POST", "/admin/flags/nope/kill"),
        ("DELETE", "/admin/flags/nope/kill"),
    ] {
        let r = admin(&host, method, path, "").await;
        assert_eq!(r.status, 404, "{method} {path}: {}", r.text);
        assert_eq!(r.body["error"]["code"], "flag-not-found");
    }
    let r = admin(
        &host,
        "POST",
        "/admin/flags/genre_engines/kill",
        r#"{"variant":"zzz"}"#,
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = admin(&host, "DELETE", "/admin/flags/genre_engines/kill", "").await;
    assert_eq!(r.status, 409, "{}", r.text);
    let r = admin(&host, "PATCH", "/admin/flags", "").await;
    assert_eq!(r.status, 405, "{}", r.text);
    let r = admin(&host, "GET", "/admin/audit?limit=0", "").await;
    assert_eq!(r.status, 400, "{}", r.text);

    // Nothing above was stored.
    let r = admin(&host, "GET", "/admin/flags", "").await;
    assert_eq!(version(&r), start);
    assert_eq!(r.body, exported);
    let r = ofrep(&host, "new_flag", json!({})).await;
    assert_eq!(r.status, 404, "{}", r.text);
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_round_trips_seed_kill_switch_and_audit() {
    let host = admin_host().await;
    let seed: Value = serde_json::from_str(
        &std::fs::read_to_string(workspace_root().join("flags/seed.json")).unwrap(),
    )
    .unwrap();

    // Export is the seed; importing it back changes nothing.
    let r = admin(&host, "GET", "/admin/flags", "").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body, seed);
    let v1 = version(&r);
    let r = admin(&host, "PUT", "/admin/flags", &seed.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(version(&r), v1, "a no-op import stores no version");

    // One flag: put, read back, evaluate.
    let flag = json!({"state": "ENABLED", "variants": {"big": 10, "small": 1}, "defaultVariant": "small",
                      "targeting": {"if": [{"==": [{"var": "plan"}, "pro"]}, "big", null]}});
    let r = admin(&host, "PUT", "/admin/flags/batch_size", &flag.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(version(&r), v1 + 1);
    let r = admin(&host, "GET", "/admin/flags/batch_size", "").await;
    assert_eq!(r.body["flag"], flag);
    assert_eq!(r.body["killed"], Value::Null);
    let r = ofrep(&host, "batch_size", json!({"plan": "pro"})).await;
    assert_eq!(
        (r.body["value"].clone(), r.body["reason"].clone()),
        (json!(10), json!("TARGETING_MATCH"))
    );

    // Kill: everyone gets the default variant, it survives a PUT, shows in GET.
    let r = admin(&host, "POST", "/admin/flags/batch_size/kill", "").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["killed"]["variant"], "small");
    let r = ofrep(&host, "batch_size", json!({"plan": "pro"})).await;
    assert_eq!(r.body["value"], 1, "{}", r.text);
    assert_eq!(r.body["metadata"]["dolKilled"], true);
    let mut edited = flag.clone();
    edited["targeting"]["if"][0]["=="][1] = json!("enterprise");
    let r = admin(&host, "PUT", "/admin/flags/batch_size", &edited.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = admin(&host, "GET", "/admin/flags/batch_size", "").await;
    assert_eq!(r.body["flag"], edited);
    assert_eq!(r.body["killed"]["variant"], "small", "{}", r.text);
    assert!(
        r.body["killed"]["actor"]
            .as_str()
            .unwrap()
            .starts_with("e2e-tester")
    );
    let r = ofrep(&host, "batch_size", json!({"plan": "pro"})).await;
    assert_eq!(r.body["value"], 1, "still killed after PUT: {}", r.text);

    // Unkill: targeting is back.
    let r = admin(&host, "DELETE", "/admin/flags/batch_size/kill", "").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["killed"], Value::Null);
    let r = ofrep(&host, "batch_size", json!({"plan": "enterprise"})).await;
    assert_eq!(r.body["value"], 10, "{}", r.text);

    // Delete.
    let r = admin(&host, "DELETE", "/admin/flags/batch_size", "").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = ofrep(&host, "batch_size", json!({})).await;
    assert_eq!(r.status, 404, "{}", r.text);

    // The export is the seed again.
    let r = admin(&host, "GET", "/admin/flags", "").await;
    assert_eq!(r.body, seed);

    // Audit: newest first, who / when / what / before / after.
    let r = admin(&host, "GET", "/admin/audit", "").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let entries = r.body["entries"].as_array().unwrap();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["delete", "unkill", "put", "kill", "put", "seed"]);
    let put = &entries[4];
    assert_eq!(put["flag_key"], "batch_size");
    assert_eq!(put["before"], Value::Null);
    assert_eq!(put["after"], flag);
    assert!(
        put["actor"]
            .as_str()
            .unwrap()
            .starts_with("e2e-tester (token:")
    );
    assert!(put["at"].as_i64().unwrap() > 1_600_000_000_000);
    assert!(
        !r.text.contains(ADMIN),
        "the audit log never shows the token"
    );
    assert_eq!(entries[2]["before"], flag);
    assert_eq!(entries[2]["after"], edited);
    assert_eq!(entries[0]["before"], edited);
    assert_eq!(entries[0]["after"], Value::Null);
    let r = admin(&host, "GET", "/admin/audit?flag=batch_size&limit=2", "").await;
    let actions: Vec<&str> = r.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["delete", "unkill"]);
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openfeature_ofrep_client_evaluates_seed_flags() {
    let dir = workspace_root().join("tests/ofrep-client");
    if !Path::new(&dir.join("node_modules/@openfeature/ofrep-provider")).exists() {
        if std::env::var_os("DOL_SKIP_NODE").is_some_and(|v| v == "1") {
            eprintln!(
                "!!! OpenFeature OFREP client test SKIPPED (DOL_SKIP_NODE=1, no node_modules): nothing was evaluated !!!"
            );
            return;
        }
        panic!(
            "tests/ofrep-client/node_modules is missing: run `npm ci --prefix tests/ofrep-client` \
             (or set DOL_SKIP_NODE=1 to skip)"
        );
    }
    let host = host_with(&[("SPIN_VARIABLE_OFREP_TOKEN", "node-t0ken")]).await;
    let base = host.app.url().to_string();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(dir.join("evaluate.mjs"))
            .arg(base)
            .arg("node-t0ken")
            .output()
    })
    .await
    .unwrap()
    .expect("running node (is it installed?)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "node failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let out: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(out["complete_context"]["value"], true, "{out}");
    assert_eq!(out["complete_context"]["reason"], "STATIC", "{out}");
    assert_eq!(out["comprehensive_engines"]["value"], true, "{out}");
    assert_eq!(out["comprehensive_engines"]["reason"], "TARGETING_MATCH");
    assert!(out["genre_engines"]["value"].is_boolean(), "{out}");
    assert_eq!(out["genre_engines"]["errorCode"], Value::Null, "{out}");
    // Disabled: the client gets its own default.
    assert_eq!(out["beta_features"]["value"], true, "{out}");
    let ab = out["generation_experiment"]["value"].as_str().unwrap();
    assert!(ab == "control" || ab == "treatment", "{out}");
    assert_eq!(out["generation_experiment"]["reason"], "TARGETING_MATCH");
    assert_eq!(out["excluded_org"]["value"], "control", "{out}");
    assert_eq!(out["missing"]["value"], true, "{out}");
    assert_eq!(out["missing"]["errorCode"], "FLAG_NOT_FOUND", "{out}");
    host.app.shutdown().await;
}
