//! Org storage against a real SQLite with the real migrations: org-level
//! admission (the org budget refuses while the key still has room; keys of
//! one org racing on separate connections never overspend it), encrypted
//! credentials (the database file never holds the plaintext), rotation,
//! the readiness check and the audit entries.

use serde_json::json;

use super::crypto::tests::{Counter, K1, K2};
use super::crypto::{CryptoError, KeyRing};
use super::store::*;
use super::{Org, OrgSpec};
use crate::gateway::admin::NewKey;
use crate::gateway::keys::{Admission, KeyLimits, LimitKind, Reservation};
use crate::gateway::store::{admit_with_org, create_key, settle_with_org, usage};
use crate::gateway::telemetry::RequestRecord;
use crate::observe::system::read_overview_in;
use crate::observe::usage::Window;
use crate::storage::{SqlExecutor, SqlValue};
use crate::test_db::{TestDb, count, db};

const NOW_SECS: u64 = 1_795_651_200;
const NOW_MS: i64 = 1_795_651_200_000;

fn spec(limits: KeyLimits) -> OrgSpec {
    OrgSpec {
        name: "Acme".into(),
        limits,
        allowed_models: vec!["openai/*".into()],
    }
}

fn want(cost_micros: u64) -> Reservation {
    Reservation {
        tokens: 10,
        cost_micros,
    }
}

fn org(db: &mut TestDb, limits: KeyLimits) -> Org {
    put_org(db, "acme", &spec(limits), "admin", NOW_MS)
        .unwrap()
        .0
}

#[test]
fn orgs_are_created_replaced_listed_and_audited() {
    let mut db = db();
    let (created, new) = put_org(
        &mut db,
        "acme",
        &spec(KeyLimits::budget(5)),
        "alice",
        NOW_MS,
    )
    .unwrap();
    assert!(new);
    let (replaced, new) = put_org(
        &mut db,
        "acme",
        &spec(KeyLimits::budget(9)),
        "bob",
        NOW_MS + 1,
    )
    .unwrap();
    assert!(!new);
    assert_eq!(replaced.created_at, created.created_at);
    assert_eq!(
        get_org(&mut db, "acme").unwrap().unwrap().limits,
        KeyLimits::budget(9)
    );
    assert_eq!(list_orgs(&mut db).unwrap().len(), 1);
    assert!(get_org(&mut db, "none").unwrap().is_none());
    let audit = db
        .execute(
            "SELECT actor, action, before IS NOT NULL FROM audit_log ORDER BY id",
            &[],
        )
        .unwrap();
    assert_eq!(audit.len(), 2);
    assert_eq!(audit[1][0], SqlValue::Text("bob".into()));
    assert_eq!(audit[1][1], SqlValue::Text("org-put".into()));
    assert_eq!(audit[1][2], SqlValue::Integer(1));
}

#[test]
fn the_org_budget_refuses_while_the_key_still_has_room() {
    let mut db = db();
    let acme = org(&mut db, KeyLimits::budget(100));
    let org_limits = Some((acme.id.as_str(), &acme.limits));
    // Two keys of the org, each with a large budget of its own.
    let key = KeyLimits::budget(1_000_000);
    for k in ["k1", "k2"] {
        assert!(matches!(
            admit_with_org(&mut db, k, &key, org_limits, want(40), NOW_SECS).unwrap(),
            Admission::Admit(_)
        ));
    }
    match admit_with_org(&mut db, "k1", &key, org_limits, want(40), NOW_SECS).unwrap() {
        Admission::Refuse { limit, message, .. } => {
            assert_eq!(limit, LimitKind::Budget);
            assert!(message.contains("organization `acme`"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // The refused request reserved nothing at key level either.
    assert_eq!(usage(&mut db, "k1").unwrap().reserved_micros, 40);
    assert_eq!(org_usage(&mut db, "acme").unwrap().reserved_micros, 80);
    // Settling at the real (lower) cost frees room in both.
    settle_with_org(
        &mut db,
        "k1",
        Some("acme"),
        want(40),
        NOW_SECS,
        (5, 10),
        NOW_SECS,
    )
    .unwrap();
    let o = org_usage(&mut db, "acme").unwrap();
    assert_eq!((o.spent_micros, o.reserved_micros), (10, 40));
    assert_eq!(usage(&mut db, "k1").unwrap().spent_micros, 10);
    assert!(matches!(
        admit_with_org(&mut db, "k1", &key, org_limits, want(40), NOW_SECS).unwrap(),
        Admission::Admit(_)
    ));
}

#[test]
fn the_key_budget_still_refuses_first() {
    let mut db = db();
    let acme = org(&mut db, KeyLimits::budget(1_000_000));
    let decision = admit_with_org(
        &mut db,
        "k1",
        &KeyLimits::budget(10),
        Some((acme.id.as_str(), &acme.limits)),
        want(40),
        NOW_SECS,
    )
    .unwrap();
    let Admission::Refuse { message, .. } = decision else {
        panic!("{decision:?}")
    };
    assert!(message.contains("this key"), "{message}");
    // The org reserved nothing for a request its key refused.
    assert_eq!(org_usage(&mut db, "acme").unwrap().reserved_micros, 0);
}

/// Keys of one org admitted at the same time on separate connections (as
/// concurrent Spin instances are) never reserve more than the org budget.
#[test]
fn concurrent_keys_of_an_org_never_overspend_its_budget() {
    const THREADS: usize = 8;
    const ATTEMPTS: usize = 5;
    const BUDGET: u64 = 1_000;
    const COST: u64 = 70;
    let open = crate::test_db::shared("org-budget");
    crate::migrate::apply(&mut open(), 1).unwrap();
    let acme = org(&mut open(), KeyLimits::budget(BUDGET));
    let barrier = std::sync::Barrier::new(THREADS);
    let admitted: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|i| {
                let (barrier, acme) = (&barrier, &acme);
                let mut db = open();
                scope.spawn(move || {
                    barrier.wait();
                    // Each thread is its own key with room for everything.
                    let key = format!("k{i}");
                    (0..ATTEMPTS)
                        .filter(|_| {
                            matches!(
                                admit_with_org(
                                    &mut db,
                                    &key,
                                    &KeyLimits::budget(u64::MAX / 2),
                                    Some((acme.id.as_str(), &acme.limits)),
                                    want(COST),
                                    NOW_SECS
                                )
                                .unwrap(),
                                Admission::Admit(_)
                            )
                        })
                        .count()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let stored = org_usage(&mut open(), "acme").unwrap();
    let fits = BUDGET / COST;
    assert!(THREADS * ATTEMPTS > fits as usize);
    assert_eq!(admitted as u64, fits);
    assert_eq!(stored.reserved_micros, COST * fits);
}

const SECRET: &str = "sk-live-VERY-SECRET-provider-key-9876";

#[test]
fn credentials_round_trip_encrypted_and_the_file_never_holds_the_plaintext() {
    let path = std::env::temp_dir().join(format!("dol-org-byok-{}.sqlite", std::process::id()));
    let _ = std::fs::remove_file(&path);
    // Always a SQLite file, whichever backend the other tests use: the
    // subject is the bytes at rest.
    let mut db = TestDb::sqlite(rusqlite::Connection::open(&path).unwrap());
    crate::migrate::apply(&mut db, 1).unwrap();
    org(&mut db, KeyLimits::default());
    let ring = KeyRing::from_variables(K1, "").unwrap();
    let info = set_credential(
        &mut db,
        &ring,
        &mut Counter(0),
        ("acme", "openai"),
        SECRET,
        "alice",
        NOW_MS,
    )
    .unwrap();
    assert_eq!(info.last4, "9876");
    assert_eq!(info.key_id, "k1");
    assert_eq!(credential_infos(&mut db, "acme").unwrap(), vec![info]);
    assert_eq!(
        org_credentials(&mut db, Ok(&ring), "acme").unwrap(),
        vec![("openai".to_owned(), SECRET.to_owned())]
    );
    // Another org has none (and needs no master key for that).
    let none = Err(&CryptoError::NoMasterKey);
    assert!(org_credentials(&mut db, none, "other").unwrap().is_empty());
    // Without a master key the org's credential is an error, not a fallback.
    assert_eq!(
        org_credentials(&mut db, none, "acme"),
        Err(OrgStoreError::Crypto(CryptoError::NoMasterKey))
    );
    drop(db);
    let bytes = std::fs::read(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    let haystack = String::from_utf8_lossy(&bytes);
    assert!(!haystack.contains(SECRET), "plaintext in the database file");
    assert!(!haystack.contains("VERY-SECRET"));
    assert!(
        haystack.contains("org-credential-set"),
        "the audit entry is there"
    );
}

#[test]
fn the_audit_log_shows_only_the_last_four() {
    let mut db = db();
    org(&mut db, KeyLimits::default());
    let ring = KeyRing::from_variables(K1, "").unwrap();
    set_credential(
        &mut db,
        &ring,
        &mut Counter(0),
        ("acme", "openai"),
        SECRET,
        "a",
        NOW_MS,
    )
    .unwrap();
    assert!(delete_credential(&mut db, "acme", "openai", "a", NOW_MS).unwrap());
    assert!(!delete_credential(&mut db, "acme", "openai", "a", NOW_MS).unwrap());
    let rows = db
        .execute(
            "SELECT action, COALESCE(before, '') || COALESCE(after, '') FROM audit_log",
            &[],
        )
        .unwrap();
    let actions: Vec<_> = rows.iter().map(|r| r[0].clone()).collect();
    assert_eq!(
        actions,
        ["org-put", "org-credential-set", "org-credential-delete"]
            .map(|a| SqlValue::Text(a.into()))
    );
    for r in &rows {
        let SqlValue::Text(t) = &r[1] else { panic!() };
        assert!(!t.contains("VERY-SECRET"), "{t}");
    }
    assert_eq!(count(&mut db, "org_credentials"), 0);
}

#[test]
fn a_credential_for_an_org_deleted_before_the_write_is_refused_and_not_stored() {
    // The org existed when the admin API looked; its deletion committed
    // before the credential's write: the write checks again under the lock,
    // so no secret is left for a later org of the same id.
    let mut db = db();
    org(&mut db, KeyLimits::default());
    delete_org(&mut db, "acme", "admin", NOW_MS)
        .unwrap()
        .unwrap();
    let ring = KeyRing::from_variables(K1, "").unwrap();
    let refused = set_credential(
        &mut db,
        &ring,
        &mut Counter(0),
        ("acme", "openai"),
        SECRET,
        "a",
        NOW_MS,
    )
    .unwrap_err();
    assert_eq!(refused, OrgStoreError::NoSuchOrg("acme".into()));
    let api: crate::error::ApiError = refused.into();
    assert_eq!(api.code, crate::error::Code::NotFound);
    assert_eq!(count(&mut db, "org_credentials"), 0);
}

#[test]
fn a_rotation_binds_older_ciphertexts_to_their_provider() {
    // Stored before the provider was part of the associated data: it
    // decrypts, and a rotation under the same key re-seals it bound.
    let mut db = db();
    org(&mut db, KeyLimits::default());
    let ring = KeyRing::from_variables(K1, "").unwrap();
    let older = super::crypto::tests::seal_older_format(&ring, "acme", SECRET);
    db.execute(
        "INSERT INTO org_credentials (org_id, provider, key_id, ciphertext, last4, set_at) \
         VALUES ('acme', 'openai', ?, ?, '9876', 0)",
        &[
            SqlValue::Text(older.key_id.clone()),
            SqlValue::Text(older.blob.clone()),
        ],
    )
    .unwrap();
    assert_eq!(
        org_credentials(&mut db, Ok(&ring), "acme").unwrap(),
        vec![("openai".to_owned(), SECRET.to_owned())]
    );
    let report = rotate_credentials(&mut db, &ring, &mut Counter(9), "a", NOW_MS).unwrap();
    assert_eq!((report.reencrypted, report.already_current), (1, 0));
    let rows = db
        .execute("SELECT ciphertext FROM org_credentials", &[])
        .unwrap();
    let SqlValue::Text(blob) = &rows[0][0] else {
        panic!("{rows:?}")
    };
    assert!(blob.starts_with("v2:"), "{blob}");
    assert_eq!(
        org_credentials(&mut db, Ok(&ring), "acme").unwrap(),
        vec![("openai".to_owned(), SECRET.to_owned())]
    );
    // Now current: a second rotation leaves it as it is.
    let again = rotate_credentials(&mut db, &ring, &mut Counter(10), "a", NOW_MS).unwrap();
    assert_eq!((again.reencrypted, again.already_current), (0, 1));
}

#[test]
fn rotation_re_encrypts_everything_and_old_ciphertexts_decrypt_meanwhile() {
    let mut db = db();
    org(&mut db, KeyLimits::default());
    put_org(&mut db, "beta", &spec(KeyLimits::default()), "a", NOW_MS).unwrap();
    let old = KeyRing::from_variables(K1, "").unwrap();
    let mut nonces = Counter(0);
    for (org_id, provider, secret) in [
        ("acme", "openai", "sk-acme-openai"),
        ("acme", "anthropic", "sk-acme-anthropic"),
        ("beta", "openai", "sk-beta-openai"),
    ] {
        set_credential(
            &mut db,
            &old,
            &mut nonces,
            (org_id, provider),
            secret,
            "a",
            NOW_MS,
        )
        .unwrap();
    }
    // During rotation (new current key, old one listed as previous): every
    // credential still decrypts, and the readiness check passes.
    let rotating = KeyRing::from_variables(K2, K1).unwrap();
    assert_eq!(
        org_credentials(&mut db, Ok(&rotating), "beta").unwrap(),
        vec![("openai".to_owned(), "sk-beta-openai".to_owned())]
    );
    assert!(credentials_check(&mut db, Ok(&rotating), 0).ok);
    // A credential set during the rotation is written under the new key.
    set_credential(
        &mut db,
        &rotating,
        &mut nonces,
        ("beta", "gemini"),
        "g-key",
        "a",
        NOW_MS,
    )
    .unwrap();
    let report = rotate_credentials(&mut db, &rotating, &mut nonces, "ops", NOW_MS).unwrap();
    assert_eq!(
        report,
        RotationReport {
            reencrypted: 3,
            already_current: 1
        }
    );
    let key_ids = db
        .execute("SELECT DISTINCT key_id FROM org_credentials", &[])
        .unwrap();
    assert_eq!(key_ids, vec![vec![SqlValue::Text("k2".into())]]);
    // After it, the old key can go: the new key alone decrypts everything.
    let new_only = KeyRing::from_variables(K2, "").unwrap();
    assert_eq!(
        org_credentials(&mut db, Ok(&new_only), "acme").unwrap(),
        vec![
            ("anthropic".to_owned(), "sk-acme-anthropic".to_owned()),
            ("openai".to_owned(), "sk-acme-openai".to_owned())
        ]
    );
    assert!(credentials_check(&mut db, Ok(&new_only), 0).ok);
    // The old key alone no longer knows the ciphertexts' key id.
    assert!(!credentials_check(&mut db, Ok(&old), 0).ok);
    // A second rotation has nothing to do.
    let again = rotate_credentials(&mut db, &new_only, &mut nonces, "ops", NOW_MS).unwrap();
    assert_eq!(again.reencrypted, 0);
}

#[test]
fn a_rotation_that_cannot_decrypt_changes_nothing() {
    let mut db = db();
    org(&mut db, KeyLimits::default());
    let old = KeyRing::from_variables(K1, "").unwrap();
    set_credential(
        &mut db,
        &old,
        &mut Counter(0),
        ("acme", "openai"),
        "sk-1",
        "a",
        NOW_MS,
    )
    .unwrap();
    // The operator forgot to list the old key as previous.
    let forgot = KeyRing::from_variables(K2, "").unwrap();
    assert_eq!(
        rotate_credentials(&mut db, &forgot, &mut Counter(9), "ops", NOW_MS),
        Err(OrgStoreError::Crypto(CryptoError::UnknownKeyId(
            "k1".into()
        )))
    );
    assert_eq!(
        org_credentials(&mut db, Ok(&old), "acme").unwrap()[0].1,
        "sk-1"
    );
}

#[test]
fn the_readiness_check_names_a_missing_or_wrong_master_key() {
    let mut db = db();
    let none = CryptoError::NoMasterKey;
    // Nothing stored: no master key needed.
    assert!(credentials_check(&mut db, Err(&none), 3).ok);
    org(&mut db, KeyLimits::default());
    let ring = KeyRing::from_variables(K1, "").unwrap();
    set_credential(
        &mut db,
        &ring,
        &mut Counter(0),
        ("acme", "openai"),
        "sk-1",
        "a",
        NOW_MS,
    )
    .unwrap();
    let missing = credentials_check(&mut db, Err(&none), 3);
    assert!(!missing.ok);
    assert!(
        missing
            .error
            .unwrap()
            .contains("credentials_master_key is not set")
    );
    let wrong = KeyRing::from_variables(
        "k1:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "",
    )
    .unwrap();
    let check = credentials_check(&mut db, Ok(&wrong), 3);
    assert!(!check.ok);
    assert!(check.error.unwrap().contains("wrong master key"));
    let malformed = KeyRing::from_variables("k1:zz", "").unwrap_err();
    assert!(!credentials_check(&mut db, Err(&malformed), 3).ok);
    assert!(credentials_check(&mut db, Ok(&ring), 3).ok);
    // The API error for a wrong key is a 500 naming the configuration, with no secret.
    let err =
        crate::error::ApiError::from(OrgStoreError::Crypto(CryptoError::WrongKey("k1".into())));
    assert_eq!(err.status(), 500);
    assert!(!err.message.contains("sk-1"));
}

#[test]
fn keys_carry_their_org_and_roles_and_metrics_filter_by_org() {
    let mut db = db();
    org(&mut db, KeyLimits::default());
    let new = |org| new_key(org, Some(vec![super::Role::ReadMetrics]));
    let k = create_key(&mut db, "key_a", "dol_sk_a", &new(Some("acme")), NOW_MS).unwrap();
    assert_eq!(k.to_json()["org"], json!("acme"));
    assert_eq!(k.to_json()["roles"], json!(["read-metrics"]));
    create_key(&mut db, "key_b", "dol_sk_b", &new(None), NOW_MS).unwrap();
    let found = crate::gateway::store::find_active_key(&mut db, "dol_sk_a")
        .unwrap()
        .unwrap();
    assert_eq!(found.org_id.as_deref(), Some("acme"));
    // One request of each key in the last hour, recorded as the gateway
    // does: the aggregates carry the key's org, and the org's overview
    // reads them (never the `requests` rows).
    for (id, key) in [("r1", "key_a"), ("r2", "key_b"), ("r3", "key_a")] {
        crate::gateway::store::record(&mut db, &record(id, key, NOW_MS - 60_000)).unwrap();
    }
    db.execute("DELETE FROM requests", &[]).unwrap();
    let o = read_overview_in(&mut db, Window::Hour, NOW_SECS as i64, Some("acme")).unwrap();
    let v = serde_json::to_value(&o).unwrap();
    assert_eq!(v["totals"]["requests"], json!(2), "{v}");
    let none = read_overview_in(&mut db, Window::Hour, NOW_SECS as i64, Some("other")).unwrap();
    let all = read_overview_in(&mut db, Window::Hour, NOW_SECS as i64, None).unwrap();
    assert_eq!(
        serde_json::to_value(&all).unwrap()["totals"]["requests"],
        json!(3)
    );
    assert_eq!(
        serde_json::to_value(&none).unwrap()["totals"]["requests"],
        json!(0)
    );
}

/// Each denial of the org metrics reader has its own case.
#[test]
fn org_metrics_need_the_role_and_the_same_org() {
    let mut db = db();
    org(&mut db, KeyLimits::default());
    put_org(&mut db, "beta", &spec(KeyLimits::default()), "a", NOW_MS).unwrap();
    let key = |id: &str, secret: &str, org: &str, roles: Vec<super::Role>, db: &mut TestDb| {
        let new = NewKey {
            org: Some(org.to_owned()),
            roles: Some(roles),
            ..NewKey::new("k", KeyLimits::default())
        };
        create_key(db, id, secret, &new, NOW_MS).unwrap();
    };
    key(
        "m",
        "dol_sk_m",
        "acme",
        vec![super::Role::ReadMetrics],
        &mut db,
    );
    key(
        "g",
        "dol_sk_g",
        "acme",
        vec![super::Role::Generate],
        &mut db,
    );
    assert!(authorize_org_reader(&mut db, Some("Bearer dol_sk_m"), None, "acme").is_ok());
    // Wrong org.
    let err = authorize_org_reader(&mut db, Some("Bearer dol_sk_m"), None, "beta").unwrap_err();
    assert_eq!((err.status(), err.field.as_deref()), (403, Some("org")));
    // Wrong role.
    let err = authorize_org_reader(&mut db, None, Some("dol_sk_g"), "acme").unwrap_err();
    assert_eq!(err.status(), 403);
    assert!(err.message.contains("read-metrics"));
    // Unknown key.
    let err = authorize_org_reader(&mut db, Some("Bearer dol_sk_x"), None, "acme").unwrap_err();
    assert_eq!(err.status(), 401);
}

/// A key named `k` of `org` with `roles`, without limits.
fn new_key(org: Option<&str>, roles: Option<Vec<super::Role>>) -> NewKey {
    NewKey {
        name: "k".into(),
        limits: KeyLimits::default(),
        org: org.map(str::to_owned),
        roles,
    }
}

/// A finished request of `key` at `ts_ms`, as the gateway records it.
pub(crate) fn record(id: &str, key: &str, ts_ms: i64) -> RequestRecord {
    serde_json::from_value(json!({
        "id": id, "ts_ms": ts_ms, "key_id": key, "route": "chat", "tier": "basic",
        "entry_tier": "basic", "provider": "offline", "model": "dol-basic", "attempts": 1,
        "latency_ms": 20, "ttft_ms": null, "prompt_tokens": 1, "completion_tokens": 1,
        "cost_micros": 5, "quality": null, "outcome": "success", "fallbacks": 0,
        "cached": false, "stream": false, "variant": "-", "detail": {}
    }))
    .unwrap()
}

#[test]
fn deleting_an_org_revokes_erases_deletes_and_keeps_anonymous_aggregates() {
    let mut db = db();
    org(&mut db, KeyLimits::default());
    let new = |org| new_key(org, None);
    create_key(&mut db, "key_a", "dol_sk_a", &new(Some("acme")), NOW_MS).unwrap();
    create_key(&mut db, "key_b", "dol_sk_b", &new(None), NOW_MS).unwrap();
    let ring = KeyRing::from_variables(K1, "").unwrap();
    let pair = ("acme", "openai");
    set_credential(
        &mut db,
        &ring,
        &mut Counter(0),
        pair,
        "sk-acme-1234",
        "a",
        NOW_MS,
    )
    .unwrap();
    for (id, key) in [("r1", "key_a"), ("r2", "key_a"), ("r3", "key_b")] {
        crate::gateway::store::record(&mut db, &record(id, key, NOW_MS - 60_000)).unwrap();
    }
    for (id, org) in [("r1", "acme"), ("r3", "")] {
        db.execute(
            "INSERT INTO request_bodies (request_id, org_id, ts, prompt, answer) \
             VALUES (?, ?, 0, 'p', 'a')",
            &[SqlValue::Text(id.into()), SqlValue::Text(org.into())],
        )
        .unwrap();
    }
    db.execute(
        "INSERT INTO org_settings (org_id, store_bodies, updated_at, actor) VALUES ('acme', 1, 0, 'a')",
        &[],
    )
    .unwrap();
    let overview = |db: &mut TestDb, org| {
        let o = read_overview_in(db, Window::Hour, NOW_SECS as i64, org).unwrap();
        serde_json::to_value(o).unwrap()
    };
    let before = overview(&mut db, None);
    assert_eq!(before["totals"]["requests"], json!(3));

    let deleted = delete_org(&mut db, "acme", "alice", NOW_MS)
        .unwrap()
        .unwrap();
    assert_eq!(
        serde_json::to_value(&deleted).unwrap(),
        json!({"keys_revoked": 1, "credentials": 1, "settings": 1, "request_bodies": 1,
               "requests": 2, "feedback": 0, "video_jobs": 0, "events": 0,
               "aggregate_rows_anonymized": 1})
    );
    assert!(get_org(&mut db, "acme").unwrap().is_none());
    assert!(credential_infos(&mut db, "acme").unwrap().is_empty());
    assert!(
        crate::gateway::store::find_active_key(&mut db, "dol_sk_a")
            .unwrap()
            .is_none()
    );
    assert!(
        crate::gateway::store::find_active_key(&mut db, "dol_sk_b")
            .unwrap()
            .is_some()
    );
    assert_eq!(count(&mut db, "requests"), 1);
    assert_eq!(count(&mut db, "request_bodies"), 1);
    assert_eq!(count(&mut db, "org_settings WHERE org_id = 'acme'"), 0);
    assert_eq!(count(&mut db, "key_usage WHERE key_id = 'org:acme'"), 0);
    // Telemetry stays, anonymous: the deployment's figures do not change.
    assert_eq!(count(&mut db, "usage_minute WHERE org_id <> ''"), 0);
    assert_eq!(overview(&mut db, None), before);
    assert_eq!(
        overview(&mut db, Some("acme"))["totals"]["requests"],
        json!(0)
    );
    let audit = db
        .execute(
            "SELECT kind, action, target, before, after FROM audit_log ORDER BY id DESC LIMIT 1",
            &[],
        )
        .unwrap();
    let row = &audit[0];
    assert_eq!(row[0], SqlValue::Text("org".into()));
    assert_eq!(row[1], SqlValue::Text("org-delete".into()));
    assert_eq!(row[2], SqlValue::Text("acme".into()));
    let SqlValue::Text(before) = &row[3] else {
        panic!("{row:?}")
    };
    assert!(
        before.contains("1234") && !before.contains("sk-acme"),
        "{before}"
    );
    assert!(matches!(&row[4], SqlValue::Text(a) if a.contains("\"requests\":2")));
    // Unknown (or already deleted): nothing changes.
    assert_eq!(delete_org(&mut db, "acme", "alice", NOW_MS).unwrap(), None);
}

#[test]
fn a_new_org_of_a_deleted_org_s_id_starts_with_nothing_of_the_old_one() {
    // A request of acme's key was admitted before acme was deleted and
    // settles after it (the hot path does not look for deleted orgs): its
    // request row, the org's counters and its usage name acme again. A new
    // org `acme` must not find any of it.
    let mut db = db();
    org(&mut db, KeyLimits::default());
    create_key(
        &mut db,
        "key_a",
        "dol_sk_a",
        &new_key(Some("acme"), None),
        NOW_MS,
    )
    .unwrap();
    let limits = KeyLimits::budget(1_000_000);
    let admitted = admit_with_org(
        &mut db,
        "key_a",
        &KeyLimits::default(),
        Some(("acme", &limits)),
        want(400),
        NOW_SECS,
    )
    .unwrap();
    assert!(matches!(admitted, Admission::Admit(_)));
    delete_org(&mut db, "acme", "admin", NOW_MS)
        .unwrap()
        .unwrap();
    let late = crate::gateway::store::Settlement {
        key_id: "key_a",
        org_id: Some("acme"),
        want: Some(want(400)),
        reserved_at_secs: NOW_SECS,
        tokens: 10,
        cost_micros: 60,
        now_secs: NOW_SECS + 1,
    };
    crate::gateway::store::settle_and_record(&mut db, &late, &record("r-late", "key_a", NOW_MS))
        .unwrap();
    db.execute(
        "INSERT INTO events (at, key_id, targeting_key, flag_key, variant, name) \
         VALUES (1, 'key_a', 'u42', 'f', 'on', 'buy')",
        &[],
    )
    .unwrap();
    let totals = read_overview_in(&mut db, Window::Hour, NOW_SECS as i64, None).unwrap();
    let deployment = serde_json::to_value(totals).unwrap()["totals"]["requests"].clone();

    let (_, created) = put_org(
        &mut db,
        "acme",
        &spec(KeyLimits::budget(5)),
        "bob",
        NOW_MS + 2,
    )
    .unwrap();
    assert!(created);
    assert_eq!(org_usage(&mut db, "acme").unwrap(), Default::default());
    assert_eq!(count(&mut db, "requests"), 0);
    assert_eq!(count(&mut db, "events"), 0);
    assert_eq!(count(&mut db, "usage_minute WHERE org_id = 'acme'"), 0);
    let o = read_overview_in(&mut db, Window::Hour, NOW_SECS as i64, Some("acme")).unwrap();
    assert_eq!(
        serde_json::to_value(o).unwrap()["totals"]["requests"],
        json!(0)
    );
    // The deployment's figures keep the request, as no org's.
    let o = read_overview_in(&mut db, Window::Hour, NOW_SECS as i64, None).unwrap();
    assert_eq!(
        serde_json::to_value(o).unwrap()["totals"]["requests"],
        deployment
    );
}

#[test]
fn a_failed_audit_write_keeps_the_org_undeleted() {
    let mut db = db();
    org(&mut db, KeyLimits::default());
    db.fail_on = Some("INSERT INTO audit_log");
    let err = delete_org(&mut db, "acme", "alice", NOW_MS).unwrap_err();
    assert!(matches!(err, OrgStoreError::Audit(_)), "{err:?}");
    db.fail_on = None;
    assert!(get_org(&mut db, "acme").unwrap().is_some(), "rolled back");
}
