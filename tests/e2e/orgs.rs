//! Organizations end to end (issue 17): the admin API, key roles on each
//! route, the org allow-list, the org budget under concurrent requests,
//! org-filtered metrics, and BYOK credentials (encrypted at rest — the
//! database file is grepped —, used only for the org's requests, a
//! missing or wrong master key a clear error, rotation across restarts).

use dol_test_support::mock_llm::{Flavor, MockLlm};
use serde_json::{Value, json};

use crate::gateway::{Gateway, PROMPT, ask, start, start_over};

const K1: &str = "k1:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const K2: &str = "k2:f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff00112233445566778899aabbccddeeff";
const WRONG_K1: &str = "k1:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";
const ORG_SECRET: &str = "sk-org-acme-PLAINTEXT-never-stored-4321";

impl Gateway {
    async fn key_of(&self, body: Value) -> String {
        let r = self.admin("POST", "/admin/keys", Some(&body)).await;
        assert_eq!(r.status, 201, "{}", r.text);
        r.json()["key"].as_str().unwrap().to_owned()
    }

    async fn put_org(&self, id: &str, body: Value) {
        let r = self
            .admin("PUT", &format!("/admin/orgs/{id}"), Some(&body))
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }

    async fn ready(&self) -> (u16, Value) {
        let r = self.call("GET", "/health/ready", None, None, &[]).await;
        let check = r.json()["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "credentials")
            .cloned()
            .unwrap();
        (r.status, check)
    }
}

/// `/api/health`, `/api/metrics` and `/metrics` with `?org=`: acme's one
/// request (of its default key) and nothing else, for acme's reader and the
/// admin; each bad input and each denial its own case, on every route.
async fn org_health_and_prometheus(g: &Gateway, acme: &str, reader: &str, other_reader: &str) {
    for route in ["/api/health", "/api/metrics", "/metrics"] {
        let at = |org: &str| format!("{route}?org={org}");
        let r = g.call("GET", &at("acme"), Some(reader), None, &[]).await;
        assert_eq!(r.status, 200, "{route}: {}", r.text);
        let r = g.admin("GET", &at("acme"), None).await;
        assert_eq!(r.status, 200, "{route}: {}", r.text);
        // Wrong org, wrong role, no credentials: 403, 403, 401.
        let r = g
            .call("GET", &at("acme"), Some(other_reader), None, &[])
            .await;
        assert_eq!(r.status, 403, "{route}: {}", r.text);
        assert_eq!(r.json()["error"]["field"], "org", "{route}: {}", r.text);
        let r = g.call("GET", &at("acme"), Some(acme), None, &[]).await;
        assert_eq!(r.status, 403, "{route}: {}", r.text);
        assert!(r.text.contains("read-metrics"), "{route}: {}", r.text);
        let r = g.call("GET", &at("acme"), None, None, &[]).await;
        assert_eq!(r.status, 401, "{route}: {}", r.text);
        // Unknown org: 404 with JSON naming it; malformed id: 400.
        for (org, status) in [("none", 404), ("Not%20an%20id", 400), ("", 400)] {
            let r = g.admin("GET", &at(org), None).await;
            assert_eq!(r.status, status, "{route} {org}: {}", r.text);
            assert_eq!(r.json()["error"]["field"], "org", "{route}: {}", r.text);
        }
    }
    let health = g.admin("GET", "/api/health?org=acme", None).await.json();
    assert_eq!(health["org"], "acme", "{health}");
    assert_eq!(health["generation"]["requests"], 1, "{health}");
    let all = g.admin("GET", "/api/health", None).await.json();
    assert!(all.get("org").is_none(), "{all}");
    let beta = g.admin("GET", "/api/health?org=beta", None).await.json();
    assert_eq!(beta["generation"]["requests"], 0, "{beta}");
    let text = g
        .call("GET", "/metrics?org=acme", Some(reader), None, &[])
        .await
        .text;
    assert!(
        text.lines().any(
            |l| l.starts_with("dol_generation_requests_total{org=\"acme\",") && l.ends_with(" 1")
        ),
        "{text}"
    );
    assert!(text.contains("dol_health_score{org=\"acme\"}"), "{text}");
    for sample in text.lines().filter(|l| !l.starts_with('#')) {
        assert!(
            sample.contains("org=\"acme\""),
            "only acme's series: {sample}"
        );
    }
    // The deployment's exposition is unchanged: no org label.
    let text = g.call("GET", "/metrics", None, None, &[]).await.text;
    assert!(!text.contains("org=\""), "{text}");
}

/// `DELETE /admin/orgs/acme`: its keys revoked, its credential, settings,
/// request rows and stored bodies gone, its telemetry kept as anonymous
/// aggregates (the deployment's figures unchanged), audited; each bad
/// input and denial its own case. `ids`: a request of acme's (bodies
/// stored) and one of a key of no org.
async fn delete_acme(g: &Gateway, acme: &str, ids: &[String]) {
    let totals = |v: Value| v["totals"].clone();
    let before = totals(g.admin("GET", "/api/metrics?window=1h", None).await.json());
    let r = g.call("DELETE", "/admin/orgs/acme", None, None, &[]).await;
    assert_eq!(r.status, 401, "admin only: {}", r.text);
    let r = g
        .call("DELETE", "/admin/orgs/acme", Some(acme), None, &[])
        .await;
    assert_eq!(r.status, 401, "an API key is no admin: {}", r.text);
    let r = g.admin("DELETE", "/admin/orgs/Not-An-Id", None).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json()["error"]["field"], "id", "{}", r.text);
    let r = g.admin("DELETE", "/admin/orgs/nope", None).await;
    assert_eq!(r.status, 404, "{}", r.text);
    assert_eq!(r.json()["error"]["field"], "id", "{}", r.text);

    let r = g.admin("DELETE", "/admin/orgs/acme", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let deleted = &r.json()["deleted"];
    assert_eq!(deleted["keys_revoked"], 2, "acme's two keys: {}", r.text);
    assert_eq!(deleted["credentials"], 1, "{}", r.text);
    assert_eq!(deleted["settings"], 1, "{}", r.text);
    assert_eq!(deleted["request_bodies"], 1, "{}", r.text);
    assert!(deleted["requests"].as_u64() >= Some(2), "{}", r.text);
    assert!(
        deleted["aggregate_rows_anonymized"].as_u64() >= Some(1),
        "{}",
        r.text
    );

    assert_eq!(
        g.chat(acme, ask("auto", PROMPT)).await.status,
        401,
        "revoked"
    );
    assert_eq!(g.admin("GET", "/admin/orgs/acme", None).await.status, 404);
    assert_eq!(
        g.admin("GET", "/api/metrics?org=acme", None).await.status,
        404
    );
    let r = g
        .admin("GET", &format!("/admin/requests/{}", ids[0]), None)
        .await;
    assert_eq!(r.status, 404, "acme's request rows and bodies: {}", r.text);
    let r = g
        .admin("GET", &format!("/admin/requests/{}", ids[1]), None)
        .await;
    assert_eq!(r.status, 200, "other requests stay: {}", r.text);
    let after = totals(g.admin("GET", "/api/metrics?window=1h", None).await.json());
    assert_eq!(after["requests"], before["requests"], "{before} {after}");
    assert_eq!(after["costUsd"], before["costUsd"], "{before} {after}");
    let r = g.admin("DELETE", "/admin/orgs/acme", None).await;
    assert_eq!(r.status, 404, "deleted once: {}", r.text);
    let audit = g.admin("GET", "/admin/audit?kind=org", None).await;
    let entry = &audit.json()["entries"][0];
    assert_eq!(entry["action"], "org-delete", "{}", audit.text);
    assert_eq!(entry["target"], "acme", "{}", audit.text);
    assert!(!audit.text.contains("PLAINTEXT"), "{}", audit.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orgs_roles_allow_lists_budgets_metrics_and_byok() {
    let mock = MockLlm::start(Flavor::OpenAi).await.unwrap();
    let g = start(&[&mock], &[("credentials_master_key", K1)]).await;

    // The admin API: bad bodies are 400s naming the field.
    for (path, body, field) in [
        ("/admin/orgs/Acme", json!({}), "id"),
        ("/admin/orgs/acme", json!({"budget": 1}), "budget"),
        (
            "/admin/orgs/acme",
            json!({"allowed_models": ["gpt-4o"]}),
            "allowed_models",
        ),
    ] {
        let r = g.admin("PUT", path, Some(&body)).await;
        assert_eq!(r.status, 400, "{}", r.text);
        assert_eq!(r.json()["error"]["field"], field, "{}", r.text);
    }
    g.put_org(
        "acme",
        json!({"name": "Acme", "allowed_models": ["openai/*"]}),
    )
    .await;
    // Room for two requests' worst case (~41 k µ$ each: the prompt and the
    // 4,096 output tokens DOL sends as the limit, at gpt-4o's price).
    g.put_org("beta", json!({"limits": {"monthly_budget_micros": 96_000}}))
        .await;
    let r = g.call("GET", "/admin/orgs", None, None, &[]).await;
    assert_eq!(r.status, 401, "the orgs API is admin-only: {}", r.text);
    let listed = g.admin("GET", "/admin/orgs", None).await.json();
    assert_eq!(listed["orgs"].as_array().unwrap().len(), 2, "{listed}");
    for (body, field) in [
        (json!({"org": "nope"}), "org"),
        (json!({"roles": ["admin"]}), "roles"),
        (json!({"roles": []}), "roles"),
    ] {
        let r = g.admin("POST", "/admin/keys", Some(&body)).await;
        assert_eq!(r.status, 400, "{}", r.text);
        assert_eq!(r.json()["error"]["field"], field, "{}", r.text);
    }

    let acme = g.key_of(json!({"org": "acme"})).await;
    let acme_metrics = g
        .key_of(json!({"org": "acme", "roles": ["read-metrics"]}))
        .await;
    let beta_metrics = g
        .key_of(json!({"org": "beta", "roles": ["read-metrics"]}))
        .await;
    let plain = g.key_of(json!({})).await;

    // Wrong role: a metrics-only key may not generate or send events; a
    // default key may not read an org's metrics.
    let r = g.chat(&acme_metrics, ask("auto", PROMPT)).await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.text.contains("generate"), "{}", r.text);
    let r = g
        .call(
            "POST",
            "/v1/events",
            Some(&acme_metrics),
            Some(&json!([])),
            &[],
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.text.contains("events"), "{}", r.text);
    let metrics = "/api/metrics?org=acme&window=1h";
    let r = g.call("GET", metrics, Some(&acme), None, &[]).await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.text.contains("read-metrics"), "{}", r.text);
    // Wrong org: beta's reader may not read acme's metrics.
    let r = g.call("GET", metrics, Some(&beta_metrics), None, &[]).await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.text.contains("acme"), "{}", r.text);
    // No credentials at all: 401.
    let r = g.call("GET", metrics, None, None, &[]).await;
    assert_eq!(r.status, 401, "{}", r.text);

    // Model not allowed: acme allows openai/* only.
    let r = g.chat(&acme, ask("claude-sonnet-4-5", PROMPT)).await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(r.json()["error"]["param"], "model", "{}", r.text);
    // The deployment key serves acme until it brings its own.
    let r = g.chat(&acme, ask("gpt-4o-mini", PROMPT)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sent = mock.requests();
    assert_eq!(
        sent.last().unwrap().header("authorization"),
        Some("Bearer key-openai")
    );

    // The org's metrics: its reader and the admin see them; other orgs' traffic is not in them.
    // Its keys have no limits: their rows trail the answers by up to 20 ms.
    let r = dol_test_support::eventually("acme's request in its metrics", || async {
        let r = g.call("GET", metrics, Some(&acme_metrics), None, &[]).await;
        if r.json()["totals"]["requests"] == 1 {
            Ok(r)
        } else {
            Err(r.text.clone())
        }
    })
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["totals"]["requests"], 1, "{}", r.text);
    // Savings read from the org's request rows as from usage_minute: the
    // baseline is never below zero savings for a request without one.
    let totals = &r.json()["totals"];
    assert!(
        totals["baselineCostUsd"].as_f64() >= totals["costUsd"].as_f64(),
        "{}",
        r.text
    );
    let r = g.admin("GET", "/api/metrics?org=beta", None).await;
    assert_eq!(r.json()["totals"]["requests"], 0, "{}", r.text);
    let r = g.admin("GET", "/api/metrics?org=none", None).await;
    assert_eq!(r.status, 404, "{}", r.text);
    org_health_and_prometheus(&g, &acme, &acme_metrics, &beta_metrics).await;

    // Org budget exhausted while the key still has room, under concurrency:
    // beta's keys never spend more than beta's budget together.
    let beta = g
        .key_of(json!({"org": "beta", "limits": {"monthly_budget_micros": 10_000_000}}))
        .await;
    let calls = (0..8).map(|_| g.chat(&beta, ask("auto", PROMPT)));
    let replies = futures::future::join_all(calls).await;
    let ok = replies.iter().filter(|r| r.status == 200).count();
    let refused: Vec<_> = replies.iter().filter(|r| r.status == 429).collect();
    assert_eq!(
        ok + refused.len(),
        8,
        "{:?}",
        replies.iter().map(|r| &r.text).collect::<Vec<_>>()
    );
    assert!(ok >= 1 && !refused.is_empty(), "ok {ok}");
    assert!(
        refused[0].text.contains("organization `beta`"),
        "{}",
        refused[0].text
    );
    let org = g.admin("GET", "/admin/orgs/beta", None).await.json();
    let spent = org["usage"]["spent_micros"].as_u64().unwrap();
    assert!(spent > 0 && spent <= 96_000, "{org}");
    assert_eq!(org["usage"]["reserved_micros"], 0, "{org}");

    // BYOK: stored encrypted, shown as its last four only, used for acme only.
    let path = "/admin/orgs/acme/credentials/openai";
    let r = g
        .admin("PUT", path, Some(&json!({"api_key": ORG_SECRET})))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["last4"], "4321", "{}", r.text);
    assert_eq!(r.json()["key_id"], "k1", "{}", r.text);
    for bad in [json!({"api_key": ""}), json!({"key": "x"})] {
        assert_eq!(g.admin("PUT", path, Some(&bad)).await.status, 400);
    }
    let r = g
        .admin(
            "PUT",
            "/admin/orgs/acme/credentials/nope",
            Some(&json!({"api_key": "x"})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    let shown = g.admin("GET", "/admin/orgs/acme", None).await;
    assert_eq!(
        shown.json()["credentials"][0]["last4"],
        "4321",
        "{}",
        shown.text
    );
    let listed = g.admin("GET", "/admin/orgs", None).await;
    let audit = g.admin("GET", "/admin/audit", None).await;
    assert!(audit.text.contains("org-credential-set"), "{}", audit.text);
    for body in [&shown.text, &listed.text, &audit.text] {
        assert!(
            !body.contains("PLAINTEXT"),
            "a secret in an API answer: {body}"
        );
    }
    assert_eq!(g.chat(&acme, ask("gpt-4o-mini", PROMPT)).await.status, 200);
    let used = mock
        .requests()
        .last()
        .unwrap()
        .header("authorization")
        .map(str::to_owned);
    assert_eq!(
        used.as_deref(),
        Some(format!("Bearer {ORG_SECRET}").as_str())
    );
    assert_eq!(g.chat(&plain, ask("gpt-4o-mini", PROMPT)).await.status, 200);
    let used = mock
        .requests()
        .last()
        .unwrap()
        .header("authorization")
        .map(str::to_owned);
    assert_eq!(
        used.as_deref(),
        Some("Bearer key-openai"),
        "other keys keep the deployment's"
    );
    // An org's own trust settings: acme logs its requests' bodies, keys of
    // no org keep the default (off).
    let settings = json!({"store_bodies": true});
    let r = g
        .admin("PUT", "/admin/orgs/acme/settings", Some(&settings))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = g.admin("GET", "/admin/orgs/acme/settings", None).await;
    assert_eq!(r.json()["store_bodies"], true, "{}", r.text);
    let r = g.admin("GET", "/admin/settings", None).await;
    assert_eq!(r.json()["store_bodies"], false, "{}", r.text);
    let r = g
        .admin("PUT", "/admin/orgs/nope/settings", Some(&settings))
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    let r = g
        .admin(
            "PUT",
            "/admin/orgs/acme/settings",
            Some(&json!({"store_bodies": 1})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json()["error"]["field"], "store_bodies", "{}", r.text);
    assert_eq!(
        g.admin("DELETE", "/admin/orgs/acme/settings", None)
            .await
            .status,
        405
    );
    let mut logged_ids = Vec::new();
    for (key, stored) in [(&acme, true), (&plain, false)] {
        let r = g.chat(key, ask("auto", PROMPT)).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let id = r.json()["id"].as_str().unwrap().to_owned();
        logged_ids.push(id.clone());
        let logged = g.admin("GET", &format!("/admin/requests/{id}"), None).await;
        assert_eq!(
            logged.json()["bodies"].is_object(),
            stored,
            "{}",
            logged.text
        );
    }

    delete_acme(&g, &acme, &logged_ids).await;
    assert_eq!(g.ready().await.0, 200);

    let db = g.host.state_dir().join("sqlite_db.db");
    g.host.app.shutdown().await;
    let bytes = std::fs::read(db).unwrap();
    assert!(
        !String::from_utf8_lossy(&bytes).contains("PLAINTEXT"),
        "the database file holds the plaintext credential"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_wrong_master_key_is_an_error_and_rotation_keeps_credentials() {
    let mock = MockLlm::start(Flavor::OpenAi).await.unwrap();
    let g = start(&[&mock], &[("credentials_master_key", K1)]).await;
    g.put_org("acme", json!({})).await;
    let path = "/admin/orgs/acme/credentials/openai";
    let r = g
        .admin("PUT", path, Some(&json!({"api_key": ORG_SECRET})))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let acme = g.key_of(json!({"org": "acme"})).await;
    let plain = g.key_of(json!({})).await;
    let state = g.host.state_dir().to_path_buf();
    g.host.app.shutdown().await;

    // No master key: readiness fails naming it, acme's requests are refused
    // (never served with the deployment's key), other keys still work.
    let g2 = start_over(&[&mock], &[], Some(&state)).await;
    let (status, check) = g2.ready().await;
    assert_eq!(status, 503, "{check}");
    assert!(
        check["error"]
            .as_str()
            .unwrap()
            .contains("credentials_master_key"),
        "{check}"
    );
    let sent = mock.request_count();
    let r = g2.chat(&acme, ask("gpt-4o-mini", PROMPT)).await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(r.text.contains("credentials_master_key"), "{}", r.text);
    assert_eq!(
        mock.request_count(),
        sent,
        "nothing sent without the org's credential"
    );
    let r = g2
        .admin("PUT", path, Some(&json!({"api_key": "sk-new"})))
        .await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(
        g2.chat(&plain, ask("gpt-4o-mini", PROMPT)).await.status,
        200
    );
    g2.host.app.shutdown().await;

    // A wrong master key under the same id: readiness fails, requests are a 500 saying so.
    let g3 = start_over(
        &[&mock],
        &[("credentials_master_key", WRONG_K1)],
        Some(&state),
    )
    .await;
    let (status, check) = g3.ready().await;
    assert_eq!(status, 503, "{check}");
    assert!(
        check["error"]
            .as_str()
            .unwrap()
            .contains("wrong master key"),
        "{check}"
    );
    let r = g3.chat(&acme, ask("gpt-4o-mini", PROMPT)).await;
    assert_eq!(r.status, 500, "{}", r.text);
    assert!(r.text.contains("master key"), "{}", r.text);
    assert!(!r.text.contains("PLAINTEXT"));
    g3.host.app.shutdown().await;

    // Rotation: the new key current, the old one previous. The old
    // ciphertext still serves, the rotation re-encrypts it, and afterwards
    // the new key alone is enough.
    let rotating = [
        ("credentials_master_key", K2),
        ("credentials_previous_keys", K1),
    ];
    let g4 = start_over(&[&mock], &rotating, Some(&state)).await;
    assert_eq!(g4.ready().await.0, 200);
    assert_eq!(g4.chat(&acme, ask("gpt-4o-mini", PROMPT)).await.status, 200);
    let r = g4.admin("POST", "/admin/credentials/rotate", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["reencrypted"], 1, "{}", r.text);
    assert_eq!(r.json()["key_id"], "k2", "{}", r.text);
    let after = g4.host.state_dir().to_path_buf();
    g4.host.app.shutdown().await;
    let g5 = start_over(&[&mock], &[("credentials_master_key", K2)], Some(&after)).await;
    assert_eq!(g5.ready().await.0, 200);
    assert_eq!(g5.chat(&acme, ask("gpt-4o-mini", PROMPT)).await.status, 200);
    let used = mock
        .requests()
        .last()
        .unwrap()
        .header("authorization")
        .map(str::to_owned);
    assert_eq!(
        used.as_deref(),
        Some(format!("Bearer {ORG_SECRET}").as_str())
    );
    g5.host.app.shutdown().await;
}
