//! Gateway storage against a real in-memory SQLite (rusqlite) with the real
//! migrations applied: keys, admission and settlement (including requests
//! racing for the last of a budget on separate connections), the catalog and
//! its seeding, template versions, request telemetry and its minute
//! aggregate, the key-value state, and rows of the wrong shape.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::cache::CacheEntry;
use super::catalog;
use super::engine::{EntryState, RoutingState};
use super::keys::{self, Admission, KeyLimits, LimitKind, Reservation, Usage};
use super::openai::{DolInfo, FinishReason, Usage as TokenUsage};
use super::routing::CatalogEntry;
use super::store::*;
use super::telemetry::{LATENCY_BOUND_COUNT, RequestRecord, latency_bucket, latency_column};
use super::templates::{TemplateMessage, TemplateSpec};
use super::tiers::Tier;
use crate::storage::{KeyValue, MemoryKeyValue, SqlExecutor, SqlValue, StatementError};
use crate::test_db::{TestDb, count, db};

/// 2026-11-26T00:00:00Z, Unix seconds.
const NOW_SECS: u64 = 1_795_651_200;
const NOW_MS: i64 = 1_795_651_200_000;

fn sql(db: &mut TestDb, statement: &str) {
    db.run(statement, &[]);
}

fn scalar(db: &mut TestDb, query: &str) -> SqlValue {
    db.execute(query, &[]).unwrap().remove(0).remove(0)
}

fn want(cost_micros: u64) -> Reservation {
    Reservation {
        tokens: 100,
        cost_micros,
    }
}

fn admitted(decision: &Admission) -> bool {
    matches!(decision, Admission::Admit(_))
}

// ---------------------------------------------------------------------------
// Keys

#[test]
fn a_key_is_stored_hashed_found_by_its_secret_and_revoked_once() {
    let mut db = db();
    let secret = keys::format_key([7; 16]);
    let limits = KeyLimits {
        requests_per_minute: Some(5),
        tokens_per_minute: None,
        monthly_budget_micros: Some(1_000),
    };
    let created = create_key(
        &mut db,
        "key_a",
        &secret,
        &super::admin::NewKey::new("alpha", limits),
        NOW_MS,
    )
    .unwrap();
    assert_eq!(created.prefix, keys::display_prefix(&secret));
    assert_eq!(created.revoked_at, None);
    // Only the hash is stored.
    assert_eq!(
        scalar(&mut db, "SELECT key_hash FROM api_keys"),
        SqlValue::Text(keys::hash_key(&secret))
    );
    assert!(!created.to_json().to_string().contains(&secret));

    assert_eq!(
        find_active_key(&mut db, &secret).unwrap(),
        Some(created.clone())
    );
    assert_eq!(find_active_key(&mut db, "dol_sk_other").unwrap(), None);
    assert_eq!(get_key(&mut db, "key_a").unwrap(), Some(created.clone()));
    assert_eq!(get_key(&mut db, "key_none").unwrap(), None);

    create_key(
        &mut db,
        "key_b",
        "dol_sk_b",
        &super::admin::NewKey::new("beta", KeyLimits::default()),
        NOW_MS + 1,
    )
    .unwrap();
    let ids: Vec<String> = list_keys(&mut db)
        .unwrap()
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(ids, ["key_b", "key_a"], "newest first");

    let revoked = revoke_key(&mut db, "key_a", NOW_MS + 5).unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(NOW_MS + 5));
    assert_eq!(revoked.limits, limits);
    assert_eq!(find_active_key(&mut db, &secret).unwrap(), None);
    // Revoked keys are still listed, and a second revocation keeps the first time.
    assert_eq!(list_keys(&mut db).unwrap().len(), 2);
    let again = revoke_key(&mut db, "key_a", NOW_MS + 9).unwrap().unwrap();
    assert_eq!(again.revoked_at, Some(NOW_MS + 5));
    assert_eq!(revoke_key(&mut db, "key_none", NOW_MS).unwrap(), None);
}

#[test]
fn key_json_is_the_admin_shape() {
    let key = StoredKey {
        id: "key_a".into(),
        name: "alpha".into(),
        prefix: "dol_sk_abcd…".into(),
        limits: KeyLimits::budget(5),
        created_at: 1,
        revoked_at: None,
        org_id: None,
        roles: None,
    };
    assert_eq!(
        key.to_json(),
        json!({"id": "key_a", "name": "alpha", "prefix": "dol_sk_abcd…",
               "limits": {"monthly_budget_micros": 5}, "org": null,
               "roles": ["generate", "events"], "created_at": 1, "revoked_at": null})
    );
}

// ---------------------------------------------------------------------------
// Admission and settlement

#[test]
fn a_key_without_counters_has_zero_usage() {
    let mut db = db();
    assert_eq!(usage(&mut db, "key_a").unwrap(), Usage::default());
}

#[test]
fn the_request_limit_refuses_and_a_refusal_writes_nothing() {
    let mut db = db();
    let limits = KeyLimits {
        requests_per_minute: Some(2),
        ..KeyLimits::default()
    };
    for _ in 0..2 {
        assert!(admitted(
            &admit(&mut db, "k", &limits, want(0), NOW_SECS).unwrap()
        ));
    }
    let before = usage(&mut db, "k").unwrap();
    assert_eq!(before.window_requests, 2);
    assert_eq!(before.window_tokens, 200);
    let refused = admit(&mut db, "k", &limits, want(0), NOW_SECS + 1).unwrap();
    assert!(matches!(
        refused,
        Admission::Refuse {
            limit: LimitKind::Requests,
            ..
        }
    ));
    assert_eq!(usage(&mut db, "k").unwrap(), before);
    // The next minute starts a new window.
    assert!(admitted(
        &admit(&mut db, "k", &limits, want(0), NOW_SECS + 60).unwrap()
    ));
}

#[test]
fn reservations_count_against_the_budget_until_settled() {
    let mut db = db();
    let limits = KeyLimits::budget(1_000);
    // Two in-flight requests reserve 400 each: 800 committed.
    for _ in 0..2 {
        assert!(admitted(
            &admit(&mut db, "k", &limits, want(400), NOW_SECS).unwrap()
        ));
    }
    assert_eq!(usage(&mut db, "k").unwrap().reserved_micros, 800);
    // A third would take reserved + spent to 1 200 > 1 000: refused, nothing written.
    let refused = admit(&mut db, "k", &limits, want(400), NOW_SECS).unwrap();
    assert!(matches!(
        refused,
        Admission::Refuse {
            limit: LimitKind::Budget,
            ..
        }
    ));
    assert_eq!(usage(&mut db, "k").unwrap().reserved_micros, 800);

    // Both settle at 100 actually spent: the reservations are released.
    for _ in 0..2 {
        settle(&mut db, "k", want(400), NOW_SECS, 50, 100, NOW_SECS + 2).unwrap();
    }
    let settled = usage(&mut db, "k").unwrap();
    assert_eq!(settled.reserved_micros, 0);
    assert_eq!(settled.spent_micros, 200);
    assert_eq!(
        settled.window_tokens, 100,
        "reserved tokens replaced by used"
    );
    assert_eq!(settled.month, keys::month_of(NOW_SECS));
    // 200 spent + 400 wanted fits again.
    assert!(admitted(
        &admit(&mut db, "k", &limits, want(400), NOW_SECS + 3).unwrap()
    ));
}

#[test]
fn a_failed_write_rolls_the_admission_back() {
    let mut db = db();
    db.fail_on = Some("INSERT INTO key_usage");
    let err = admit(&mut db, "k", &KeyLimits::budget(1_000), want(10), NOW_SECS).unwrap_err();
    assert!(matches!(err, GatewayStoreError::Statement(_)), "{err}");
    db.fail_on = None;
    assert_eq!(usage(&mut db, "k").unwrap(), Usage::default());
    // The lock was released: the next admission goes through.
    assert!(admitted(
        &admit(&mut db, "k", &KeyLimits::budget(1_000), want(10), NOW_SECS).unwrap()
    ));
}

/// Requests of one key admitted at the same time on separate connections
/// (as concurrent Spin instances are) never reserve more than the budget:
/// each admission reads and writes under one `BEGIN IMMEDIATE`.
#[test]
fn concurrent_requests_cannot_overspend_the_budget() {
    const THREADS: usize = 8;
    const ATTEMPTS: usize = 6;
    const BUDGET: u64 = 1_000;
    const COST: u64 = 70;
    let open = crate::test_db::shared("gateway-budget");
    crate::migrate::apply(&mut open(), 1).unwrap();

    let barrier = std::sync::Barrier::new(THREADS);
    let admitted_total: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let barrier = &barrier;
                let mut db = open();
                scope.spawn(move || {
                    barrier.wait();
                    (0..ATTEMPTS)
                        .filter(|_| {
                            admitted(
                                &admit(
                                    &mut db,
                                    "k",
                                    &KeyLimits::budget(BUDGET),
                                    want(COST),
                                    NOW_SECS,
                                )
                                .unwrap(),
                            )
                        })
                        .count()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });

    let stored = usage(&mut open(), "k").unwrap();
    let fits = usize::try_from(BUDGET / COST).unwrap();
    assert!(
        THREADS * ATTEMPTS > fits,
        "the test must ask for more than fits"
    );
    assert_eq!(admitted_total, fits);
    assert_eq!(stored.reserved_micros, COST * (BUDGET / COST));
    assert!(stored.reserved_micros + stored.spent_micros <= BUDGET);
    assert_eq!(stored.window_requests, u64::try_from(fits).unwrap());
}

/// The hot path locks only the usage rows it changes: while one connection
/// holds key A's row in an open transaction, another key's admission goes
/// ahead on PostgreSQL (requests of different keys do not wait for each
/// other on any replica), and waits on SQLite (one file, one writer); a
/// second admission of key A waits on both until the holder commits.
#[test]
fn a_usage_row_lock_holds_up_that_key_and_on_postgres_only_that_key() {
    use std::sync::mpsc;
    use std::time::Duration;
    let open = crate::test_db::shared("gateway-row-locks");
    crate::migrate::apply(&mut open(), 1).unwrap();
    let mut holder = open();
    // A plain `BEGIN`: the holder takes only key A's row lock, not the
    // shared write lock, so another test's exclusive transaction (they share
    // the PostgreSQL database and its advisory locks) never queues behind it
    // and, in turn, holds up key B's admission here.
    crate::storage::run(&mut holder, "BEGIN", &[]).unwrap();
    usage_for_update(&mut holder, "key_a").unwrap();

    let admit_in_thread = |key: &'static str| {
        let (done, finished) = mpsc::channel();
        let mut db = open();
        std::thread::spawn(move || {
            let decision =
                admit(&mut db, key, &KeyLimits::budget(1_000), want(10), NOW_SECS).unwrap();
            let _ = done.send(admitted(&decision));
        });
        finished
    };
    // How long a lock-free admission may take on a loaded machine: only a
    // wait that outlasts it counts as "held up".
    let patience = Duration::from_secs(5);
    let other_key = admit_in_thread("key_b");
    if TestDb::on_postgres() {
        assert_eq!(other_key.recv_timeout(patience), Ok(true));
    } else {
        assert!(other_key.recv_timeout(patience / 5).is_err());
    }
    let same_key = admit_in_thread("key_a");
    assert!(
        same_key.recv_timeout(patience / 5).is_err(),
        "key_a admitted while locked"
    );
    crate::storage::run(&mut holder, "COMMIT", &[]).unwrap();
    assert_eq!(same_key.recv_timeout(Duration::from_secs(30)), Ok(true));
    if !TestDb::on_postgres() {
        assert_eq!(other_key.recv_timeout(Duration::from_secs(30)), Ok(true));
    }
    assert_eq!(usage(&mut open(), "key_a").unwrap().window_requests, 1);
    assert_eq!(usage(&mut open(), "key_b").unwrap().window_requests, 1);
}

/// Admissions and settlements (each with its telemetry) of two keys of one
/// org, racing on separate connections, leave exact counters: every cost
/// admitted is spent once on the key and on the org, nothing stays
/// reserved, the minute aggregate counts every request once, and the org
/// budget is never overspent.
#[test]
fn racing_admissions_and_settlements_of_an_org_s_keys_stay_exact() {
    const THREADS: usize = 6;
    const ATTEMPTS: usize = 5;
    const ORG_BUDGET: u64 = 1_000;
    const RESERVE: u64 = 60;
    const SPENT: u64 = 45;
    let open = crate::test_db::shared("gateway-org-race");
    crate::migrate::apply(&mut open(), 1).unwrap();
    sql(
        &mut open(),
        "INSERT INTO orgs (id, name, created_at, updated_at) VALUES ('acme', 'Acme', 0, 0)",
    );
    let org_limits = KeyLimits::budget(ORG_BUDGET);
    let admitted_total: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|thread| {
                let mut db = open();
                let org_limits = &org_limits;
                scope.spawn(move || {
                    let key = if thread % 2 == 0 { "key_a" } else { "key_b" };
                    let mut admitted_here = 0;
                    for attempt in 0..ATTEMPTS {
                        let decision = admit_with_org(
                            &mut db,
                            key,
                            &KeyLimits::default(),
                            Some(("acme", org_limits)),
                            want(RESERVE),
                            NOW_SECS,
                        )
                        .unwrap();
                        if !admitted(&decision) {
                            continue;
                        }
                        admitted_here += 1;
                        let mut r = record_at(&format!("r-{thread}-{attempt}"), NOW_MS as u64, 5);
                        r.key_id = key.into();
                        let s = Settlement {
                            key_id: key,
                            org_id: Some("acme"),
                            want: Some(want(RESERVE)),
                            reserved_at_secs: NOW_SECS,
                            tokens: 30,
                            cost_micros: SPENT,
                            now_secs: NOW_SECS,
                        };
                        settle_and_record(&mut db, &s, &r).unwrap();
                    }
                    admitted_here
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let mut db = open();
    let org = usage(&mut db, &org_usage_key("acme")).unwrap();
    let (a, b) = (
        usage(&mut db, "key_a").unwrap(),
        usage(&mut db, "key_b").unwrap(),
    );
    let n = u64::try_from(admitted_total).unwrap();
    assert!(admitted_total > 0 && admitted_total <= THREADS * ATTEMPTS);
    assert_eq!(org.reserved_micros, 0);
    assert_eq!(org.spent_micros, SPENT * n);
    assert!(org.spent_micros <= ORG_BUDGET);
    assert_eq!(a.spent_micros + b.spent_micros, SPENT * n);
    assert_eq!(a.reserved_micros + b.reserved_micros, 0);
    assert_eq!(a.window_requests + b.window_requests, n);
    assert_eq!(count(&mut db, "requests"), i64::try_from(n).unwrap());
    let minute_requests = db.int("SELECT SUM(requests) FROM usage_minute", &[]);
    assert_eq!(minute_requests, i64::try_from(n).unwrap());
}

/// Requests admitted without a reservation (the key had no limits when they
/// were admitted) settle beside requests that reserved (a budget set in
/// between, on another replica): every request is counted once, every
/// cost is spent once, and no reservation is released twice.
#[test]
fn unreserved_and_reserved_settlements_of_one_key_stay_exact() {
    const THREADS: usize = 4;
    const REQUESTS: usize = 6;
    const RESERVE: u64 = 80;
    const SPENT: u64 = 45;
    let open = crate::test_db::shared("gateway-unreserved-race");
    crate::migrate::apply(&mut open(), 1).unwrap();
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let mut db = open();
            scope.spawn(move || {
                for n in 0..REQUESTS {
                    // Even threads' requests were admitted under no limits.
                    let reserved = (thread % 2 == 1).then_some(want(RESERVE));
                    if let Some(w) = reserved {
                        let limits = KeyLimits::budget(1_000_000);
                        assert!(admitted(
                            &admit(&mut db, "key_a", &limits, w, NOW_SECS).unwrap()
                        ));
                    }
                    let mut r = record_at(&format!("u-{thread}-{n}"), NOW_MS as u64, 5);
                    r.key_id = "key_a".into();
                    let s = Settlement {
                        key_id: "key_a",
                        org_id: None,
                        want: reserved,
                        reserved_at_secs: NOW_SECS,
                        tokens: 30,
                        cost_micros: SPENT,
                        now_secs: NOW_SECS,
                    };
                    settle_and_record(&mut db, &s, &r).unwrap();
                }
            });
        }
    });
    let mut db = open();
    let u = usage(&mut db, "key_a").unwrap();
    let all = u64::try_from(THREADS * REQUESTS).unwrap();
    assert_eq!(u.reserved_micros, 0);
    assert_eq!(u.spent_micros, SPENT * all);
    assert_eq!(u.window_requests, all);
    assert_eq!(u.window_tokens, 30 * all);
    assert_eq!(count(&mut db, "requests"), i64::try_from(all).unwrap());
}

// ---------------------------------------------------------------------------
// The catalog

fn entry(provider: &str, model: &str, price: Option<u64>) -> CatalogEntry {
    CatalogEntry {
        provider: provider.into(),
        model: model.into(),
        input_price: price,
        output_price: price,
        context_window: 8_192,
        capabilities: BTreeSet::from(["json".to_owned(), "streaming".to_owned()]),
        tier: Tier::Enhanced,
        image_prices: Default::default(),
    }
}

#[test]
fn the_catalog_is_seeded_once_from_the_seed_file() {
    let mut db = db();
    let seed = catalog::parse(catalog::SEED).unwrap();
    let mut expected = seed.clone();
    expected.sort_by(|a, b| (&a.provider, &a.model).cmp(&(&b.provider, &b.model)));

    assert_eq!(catalog(&mut db, NOW_MS).unwrap(), expected);
    assert_eq!(
        count(&mut db, "models WHERE source = 'seed'"),
        i64::try_from(seed.len()).unwrap()
    );
    // Seeded already: nothing more happens, whoever asks.
    assert!(!seed_catalog(&mut db, NOW_MS + 1).unwrap());
    assert_eq!(catalog(&mut db, NOW_MS + 1).unwrap(), expected);
    assert_eq!(
        count(&mut db, &format!("models WHERE updated_at = {NOW_MS}")),
        i64::try_from(seed.len()).unwrap(),
        "not seeded again"
    );
}

#[test]
fn seeding_reports_whether_it_seeded() {
    let mut db = db();
    assert!(seed_catalog(&mut db, NOW_MS).unwrap());
    assert!(!seed_catalog(&mut db, NOW_MS).unwrap());
    let seeded = count(&mut db, "models");
    // A table emptied by an admin is seeded again on the next read.
    sql(&mut db, "DELETE FROM models");
    assert_eq!(
        routable_catalog(&mut db, NOW_MS).unwrap().len(),
        usize::try_from(seeded).unwrap()
    );
}

#[test]
fn routing_skips_discovered_models_nobody_priced() {
    let mut db = db();
    seed_catalog(&mut db, NOW_MS).unwrap();
    sql(
        &mut db,
        "INSERT INTO models (provider, model, tier, input_price, output_price, context_window, \
         capabilities, source, updated_at) VALUES \
         ('openai', 'text-embedding-3', 'basic', NULL, NULL, 8192, '[]', 'discovered', 0), \
         ('openai', 'priced-later', 'basic', 5, 7, 8192, '[]', 'discovered', 0)",
    );
    let all = catalog(&mut db, NOW_MS).unwrap();
    let routable = routable_catalog(&mut db, NOW_MS).unwrap();
    assert_eq!(all.len(), routable.len() + 1);
    assert!(all.iter().any(|e| e.model == "text-embedding-3"));
    assert!(!routable.iter().any(|e| e.model == "text-embedding-3"));
    assert!(routable.iter().any(|e| e.model == "priced-later"));
}

#[test]
fn admin_models_are_created_replaced_and_deleted_without_losing_the_seed() {
    let mut db = db();
    // The first change on a fresh database seeds first.
    put_model(&mut db, &entry("acme", "m1", Some(10)), NOW_MS).unwrap();
    let seeded = catalog::parse(catalog::SEED).unwrap().len();
    assert_eq!(catalog(&mut db, NOW_MS).unwrap().len(), seeded + 1);
    assert_eq!(count(&mut db, "models WHERE source = 'admin'"), 1);

    // Replacing changes the price; an unknown price stays unknown (NULL).
    put_model(&mut db, &entry("acme", "m1", None), NOW_MS + 1).unwrap();
    let stored = catalog(&mut db, NOW_MS).unwrap();
    let m1 = stored.iter().find(|e| e.key() == "acme/m1").unwrap();
    assert_eq!(m1, &entry("acme", "m1", None));

    assert!(delete_model(&mut db, "acme", "m1", NOW_MS).unwrap());
    assert!(!delete_model(&mut db, "acme", "m1", NOW_MS).unwrap());
    assert!(delete_model(&mut db, "openai", "gpt-4o", NOW_MS).unwrap());
    // A deleted seed model does not come back: the table is not empty.
    let after = catalog(&mut db, NOW_MS).unwrap();
    assert_eq!(after.len(), seeded - 1);
    assert!(!after.iter().any(|e| e.key() == "openai/gpt-4o"));
}

#[test]
fn deleting_on_a_fresh_database_finds_the_seed_model() {
    let mut db = db();
    assert!(delete_model(&mut db, "openai", "gpt-4o", NOW_MS).unwrap());
}

/// Counts the statements run through it.
struct Counting<'a>(&'a mut TestDb, usize);

impl SqlExecutor for Counting<'_> {
    fn execute(&mut self, sql: &str, params: &[SqlValue]) -> Result<Vec<Vec<SqlValue>>, String> {
        self.1 += 1;
        self.0.execute(sql, params)
    }
}

fn stamp(db: &mut TestDb) -> SqlValue {
    scalar(db, "SELECT value FROM control WHERE key = 'catalog_stamp'")
}

#[test]
fn the_catalog_cache_reads_one_row_while_the_stamp_stands() {
    let mut db = db();
    let mut cache = InstanceCache::default();
    // The first read seeds, reads the catalog with its stamp and keeps it.
    let first = cache.begin(&mut db, NOW_MS).unwrap().routable;
    assert_eq!(first, routable_catalog(&mut db, NOW_MS).unwrap());
    let mut counting = Counting(&mut db, 0);
    assert_eq!(cache.begin(&mut counting, NOW_MS).unwrap().routable, first);
    assert_eq!(counting.1, 1, "only the stamp is read");
    // A fresh cache (a new instance) reads the table: stamp, then catalog.
    let mut counting = Counting(&mut db, 0);
    assert_eq!(
        InstanceCache::default()
            .begin(&mut counting, NOW_MS)
            .unwrap()
            .routable,
        first
    );
    assert_eq!(counting.1, 2);
}

#[test]
fn every_catalog_change_is_seen_by_a_cache_that_read_before_it() {
    let mut db = db();
    let mut cache = InstanceCache::default();
    let seeded = cache.begin(&mut db, NOW_MS).unwrap().routable;
    let keys = |entries: &[CatalogEntry]| -> BTreeSet<String> {
        entries.iter().map(CatalogEntry::key).collect()
    };

    // An admin adds a model, then changes its price, then deletes it.
    let before = stamp(&mut db);
    put_model(&mut db, &entry("acme", "m1", Some(10)), NOW_MS).unwrap();
    assert_ne!(stamp(&mut db), before);
    let added = cache.begin(&mut db, NOW_MS).unwrap().routable;
    assert_eq!(added.len(), seeded.len() + 1);
    put_model(&mut db, &entry("acme", "m1", Some(20)), NOW_MS).unwrap();
    let priced = cache.begin(&mut db, NOW_MS).unwrap().routable;
    let m1 = priced.iter().find(|e| e.key() == "acme/m1").unwrap();
    assert_eq!(m1.input_price, Some(20));
    assert!(delete_model(&mut db, "acme", "m1", NOW_MS).unwrap());
    assert_eq!(
        keys(&cache.begin(&mut db, NOW_MS).unwrap().routable),
        keys(&seeded)
    );

    // Discovery stamps too (its unpriced models are not routable, but the
    // catalog changed).
    let before = stamp(&mut db);
    let diff = crate::observe::scans::ModelDiff {
        provider: "openai".to_owned(),
        added: vec![crate::gateway::providers::DiscoveredModel {
            id: "found-later".to_owned(),
            display_name: None,
            context_window: None,
            output_limit: None,
            capabilities: BTreeSet::new(),
        }],
        removed: Vec::new(),
        changed: Vec::new(),
    };
    crate::observe::scan_store::record_discovered(&mut db, &diff, NOW_MS).unwrap();
    assert_ne!(stamp(&mut db), before);
    assert_eq!(count(&mut db, "models WHERE model = 'found-later'"), 1);
}

#[test]
fn a_catalog_without_a_stamp_is_read_every_time() {
    let mut db = db();
    let mut cache = InstanceCache::default();
    let seeded = cache.begin(&mut db, NOW_MS).unwrap().routable;
    // A database whose stamp is gone (or a write that bypassed the store):
    // nothing is kept, so a direct change shows on the next read.
    sql(&mut db, "DELETE FROM control WHERE key = 'catalog_stamp'");
    assert_eq!(cache.begin(&mut db, NOW_MS).unwrap().routable, seeded);
    sql(&mut db, "DELETE FROM models WHERE model = 'gpt-4o'");
    let after = cache.begin(&mut db, NOW_MS).unwrap().routable;
    assert_eq!(after.len(), seeded.len() - 1);
    let mut counting = Counting(&mut db, 0);
    cache.begin(&mut counting, NOW_MS).unwrap();
    assert_eq!(counting.1, 2, "stamp, then the whole catalog");
}

#[test]
fn the_migration_stamps_a_catalog_and_no_two_databases_alike() {
    let mut one = db();
    let mut two = db();
    let (a, b) = (stamp(&mut one), stamp(&mut two));
    assert!(matches!(&a, SqlValue::Text(t) if t.len() > 2), "{a:?}");
    assert_ne!(a, b);
    // The stamp is JSON, like every `control` value.
    let SqlValue::Text(text) = a else {
        unreachable!()
    };
    assert!(serde_json::from_str::<Value>(&text).unwrap().is_string());
}

#[test]
fn a_request_reads_its_stamps_and_emergency_mode_in_one_statement() {
    use crate::observe::store::{EmergencyOverride, set_emergency_override};
    let mut db = db();
    let mut cache = InstanceCache::default();
    let warm = cache.begin(&mut db, NOW_MS).unwrap();
    assert_eq!(warm.emergency, Ok(false));
    let settings = cache.org_settings(&mut db, "default").unwrap();
    assert!(!settings.store_bodies);
    // Warm: one statement for the catalog, emergency mode and the settings.
    let mut counting = Counting(&mut db, 0);
    let begun = cache.begin(&mut counting, NOW_MS).unwrap();
    assert_eq!(
        cache.org_settings(&mut counting, "default").unwrap(),
        settings
    );
    assert_eq!(counting.1, 1, "the control rows only");
    assert_eq!(begun.routable, warm.routable);
    // Emergency mode is read fresh by every request, in that statement.
    set_emergency_override(&mut db, Some(EmergencyOverride::On), "ops", NOW_MS).unwrap();
    let mut counting = Counting(&mut db, 0);
    assert_eq!(
        cache.begin(&mut counting, NOW_MS).unwrap().emergency,
        Ok(true)
    );
    assert_eq!(counting.1, 1);
    // Its rows unreadable: the request is told, the catalog still served.
    sql(
        &mut db,
        "UPDATE control SET value = 'not json' WHERE key = 'emergency_mode'",
    );
    let begun = cache.begin(&mut db, NOW_MS).unwrap();
    assert!(begun.emergency.is_err(), "{:?}", begun.emergency);
    assert_eq!(begun.routable, warm.routable);
}

#[test]
fn every_settings_change_is_seen_by_an_instance_that_kept_them_before() {
    use crate::privacy::{OrgSettings, load_settings, save_settings};
    let mut db = db();
    let mut cache = InstanceCache::default();
    cache.begin(&mut db, NOW_MS).unwrap();
    assert!(!cache.org_settings(&mut db, "default").unwrap().store_bodies);
    // Saved through the store: the stamp changes, the next request re-reads.
    let on = OrgSettings {
        store_bodies: true,
        ..OrgSettings::default()
    };
    save_settings(&mut db, "default", &on, "ops", NOW_MS).unwrap();
    cache.begin(&mut db, NOW_MS).unwrap();
    assert_eq!(cache.org_settings(&mut db, "default").unwrap(), on);
    // An org deleted: its settings go, and so do the kept ones.
    let spec = crate::orgs::OrgSpec {
        name: "Acme".to_owned(),
        limits: KeyLimits::default(),
        allowed_models: Vec::new(),
    };
    crate::orgs::store::put_org(&mut db, "acme", &spec, "ops", NOW_MS).unwrap();
    save_settings(&mut db, "acme", &on, "ops", NOW_MS).unwrap();
    cache.begin(&mut db, NOW_MS).unwrap();
    assert!(cache.org_settings(&mut db, "acme").unwrap().store_bodies);
    crate::orgs::store::delete_org(&mut db, "acme", "ops", NOW_MS).unwrap();
    cache.begin(&mut db, NOW_MS).unwrap();
    assert_eq!(
        cache.org_settings(&mut db, "acme").unwrap(),
        load_settings(&mut db, "acme").unwrap()
    );
    assert!(!cache.org_settings(&mut db, "acme").unwrap().store_bodies);
    // Without a stamp (gone, or a write that bypassed the store) nothing
    // is kept: a direct change shows on the next read.
    sql(
        &mut db,
        "DELETE FROM control WHERE key = 'org_settings_stamp'",
    );
    cache.begin(&mut db, NOW_MS).unwrap();
    assert!(cache.org_settings(&mut db, "default").unwrap().store_bodies);
    sql(
        &mut db,
        "UPDATE org_settings SET store_bodies = 0 WHERE org_id = 'default'",
    );
    let mut counting = Counting(&mut db, 0);
    assert!(
        !cache
            .org_settings(&mut counting, "default")
            .unwrap()
            .store_bodies
    );
    assert_eq!(counting.1, 1, "read every time");
}

// ---------------------------------------------------------------------------
// Templates

fn spec(content: &str) -> TemplateSpec {
    TemplateSpec {
        messages: vec![TemplateMessage {
            role: "user".into(),
            content: content.into(),
        }],
        variables: Default::default(),
        defaults: Default::default(),
        description: None,
    }
}

#[test]
fn every_template_write_is_a_new_version_and_old_ones_stay() {
    let mut db = db();
    assert_eq!(get_template(&mut db, "greet", None).unwrap(), None);
    assert_eq!(
        put_template(&mut db, "greet", &spec("v1"), "ann", NOW_MS).unwrap(),
        1
    );
    assert_eq!(
        put_template(&mut db, "greet", &spec("v2"), "bob", NOW_MS + 5).unwrap(),
        2
    );
    assert_eq!(
        put_template(&mut db, "other", &spec("o"), "ann", NOW_MS + 1).unwrap(),
        1
    );

    assert_eq!(
        get_template(&mut db, "greet", None).unwrap(),
        Some(TemplateVersion {
            version: 2,
            spec: spec("v2")
        })
    );
    assert_eq!(
        get_template(&mut db, "greet", Some(1))
            .unwrap()
            .unwrap()
            .spec,
        spec("v1")
    );
    assert_eq!(get_template(&mut db, "greet", Some(3)).unwrap(), None);

    let listed: Vec<Value> = list_templates(&mut db)
        .unwrap()
        .iter()
        .map(TemplateSummary::to_json)
        .collect();
    assert_eq!(
        listed,
        [
            json!({"name": "greet", "latest_version": 2, "updated_at": NOW_MS + 5}),
            json!({"name": "other", "latest_version": 1, "updated_at": NOW_MS + 1}),
        ]
    );
}

#[test]
fn a_failed_template_insert_takes_no_version() {
    let mut db = db();
    db.fail_on = Some("INSERT INTO prompt_templates");
    assert!(put_template(&mut db, "greet", &spec("v1"), "ann", NOW_MS).is_err());
    db.fail_on = None;
    assert_eq!(
        put_template(&mut db, "greet", &spec("v1"), "ann", NOW_MS).unwrap(),
        1
    );
}

// ---------------------------------------------------------------------------
// Request telemetry

fn record_at(id: &str, ts_ms: u64, latency_ms: u64) -> RequestRecord {
    RequestRecord {
        id: id.into(),
        ts_ms,
        key_id: "key_a".into(),
        route: "chat".into(),
        tier: Tier::Enhanced,
        entry_tier: Tier::Comprehensive,
        provider: "openai".into(),
        model: "gpt-4o-mini".into(),
        attempts: 2,
        latency_ms,
        ttft_ms: Some(40),
        prompt_tokens: 10,
        completion_tokens: 20,
        cost_micros: Some(300),
        baseline_cost_micros: Some(1_200),
        difficulty: None,
        subject: None,
        quality: Some(7.5),
        outcome: "success".into(),
        fallbacks: 1,
        cached: false,
        stream: true,
        variant: "on".into(),
        detail: json!({"attempts": [{"provider": "anthropic", "error": "timeout"}]}),
    }
}

#[test]
fn a_request_record_is_stored_and_read_back_whole() {
    let mut db = db();
    let r = record_at("chatcmpl-1", NOW_MS as u64 + 1_500, 120);
    record(&mut db, &r).unwrap();
    assert_eq!(request(&mut db, "chatcmpl-1").unwrap(), Some(r.clone()));
    assert_eq!(request(&mut db, "chatcmpl-2").unwrap(), None);

    // Unknown cost: NULL and flagged; no quality: NULL.
    let mut unknown = record_at("chatcmpl-3", NOW_MS as u64, 10);
    unknown.cost_micros = None;
    unknown.quality = None;
    unknown.ttft_ms = None;
    record(&mut db, &unknown).unwrap();
    assert_eq!(
        request(&mut db, "chatcmpl-3").unwrap(),
        Some(unknown.clone())
    );
    assert_eq!(
        scalar(
            &mut db,
            "SELECT cost_unknown FROM requests WHERE id = 'chatcmpl-3'"
        ),
        SqlValue::Integer(1)
    );
    assert_eq!(request_json(&unknown)["cost_unknown"], json!(true));
    assert_eq!(request_json(&unknown)["quality"], Value::Null);
}

#[test]
fn the_subject_is_written_with_the_request_row_and_not_listed() {
    let mut db = db();
    let mut r = record_at("chatcmpl-s", NOW_MS as u64, 10);
    r.subject = Some("end-user-7".into());
    // The settlement's own transaction writes it: no later UPDATE of the row.
    let settled = Settlement {
        key_id: "key_a",
        org_id: None,
        want: Some(Reservation::default()),
        reserved_at_secs: NOW_MS as u64 / 1_000,
        tokens: 30,
        cost_micros: 300,
        now_secs: NOW_MS as u64 / 1_000,
    };
    settle_and_record(&mut db, &settled, &r).unwrap();
    assert_eq!(
        scalar(
            &mut db,
            "SELECT subject FROM requests WHERE id = 'chatcmpl-s'"
        ),
        SqlValue::Text("end-user-7".into())
    );
    // Listings read records without it (the detail view shows it, through
    // privacy::request_extras), and their JSON has no such member.
    let read = request(&mut db, "chatcmpl-s").unwrap().unwrap();
    assert_eq!(read.subject, None);
    assert!(request_json(&read).get("subject").is_none());
    // No subject named: NULL, as before.
    record(&mut db, &record_at("chatcmpl-n", NOW_MS as u64, 10)).unwrap();
    assert_eq!(
        scalar(
            &mut db,
            "SELECT subject FROM requests WHERE id = 'chatcmpl-n'"
        ),
        SqlValue::Null
    );
}

#[test]
fn settlement_and_telemetry_are_stored_together_in_one_transaction() {
    let mut db = db();
    let limits = KeyLimits::budget(1_000);
    assert!(admitted(
        &admit(&mut db, "key_a", &limits, want(400), NOW_SECS).unwrap()
    ));
    let s = Settlement {
        org_id: None,
        key_id: "key_a",
        want: Some(want(400)),
        reserved_at_secs: NOW_SECS,
        tokens: 30,
        cost_micros: 300,
        now_secs: NOW_SECS + 1,
    };
    let r = record_at("chatcmpl-1", NOW_MS as u64 + 1_500, 120);
    settle_and_record(&mut db, &s, &r).unwrap();
    let settled = usage(&mut db, "key_a").unwrap();
    assert_eq!((settled.reserved_micros, settled.spent_micros), (0, 300));
    assert_eq!(request(&mut db, "chatcmpl-1").unwrap(), Some(r.clone()));
    assert_eq!(count(&mut db, "usage_minute"), 1);

    // A telemetry row that cannot be written (the same id again) rolls the
    // settlement back with it: both or neither.
    assert!(admitted(
        &admit(&mut db, "key_a", &limits, want(400), NOW_SECS).unwrap()
    ));
    assert!(settle_and_record(&mut db, &s, &r).is_err());
    let after = usage(&mut db, "key_a").unwrap();
    assert_eq!((after.reserved_micros, after.spent_micros), (400, 300));
    assert_eq!(count(&mut db, "usage_minute"), 1);
}

#[test]
fn request_json_is_the_admin_shape() {
    let r = record_at("chatcmpl-1", 1_000, 120);
    assert_eq!(
        request_json(&r),
        json!({
            "id": "chatcmpl-1", "ts": 1_000, "key_id": "key_a", "route": "chat",
            "tier": "enhanced", "entry_tier": "comprehensive", "provider": "openai",
            "model": "gpt-4o-mini", "attempts": 2, "latency_ms": 120, "ttft_ms": 40,
            "prompt_tokens": 10, "completion_tokens": 20, "cost_micros": 300,
            "cost_unknown": false, "baseline_cost_micros": 1_200, "difficulty": null, "quality": 7.5,
            "outcome": "success", "fallbacks": 1,
            "cached": false, "stream": true, "variant": "on",
            "detail": {"attempts": [{"provider": "anthropic", "error": "timeout"}]},
        })
    );
}

#[test]
fn requests_fold_into_their_minute_aggregate() {
    let mut db = db();
    let minute_ms = NOW_MS as u64;
    let first = record_at("r1", minute_ms + 1_000, 40);
    let mut second = record_at("r2", minute_ms + 59_000, 200);
    second.cost_micros = None;
    second.quality = None;
    second.fallbacks = 0;
    second.outcome = "success".into();
    let mut offline = record_at("r3", minute_ms + 2_000, 200);
    offline.outcome = "offline".into();
    let mut next_minute = record_at("r4", minute_ms + 60_000, 40);
    next_minute.variant = "off".into();
    for r in [&first, &second, &offline, &next_minute] {
        record(&mut db, r).unwrap();
    }
    assert_eq!(count(&mut db, "requests"), 4);
    // success / offline in this minute, and the next minute's: three rows.
    assert_eq!(count(&mut db, "usage_minute"), 3);

    let row = db
        .execute(
            &format!(
                "SELECT requests, errors, fallbacks, cache_hits, latency_sum_ms, quality_sum, \
                 quality_n, prompt_tokens, completion_tokens, cost_micros, cost_unknown, {}, {}, {} \
                 FROM usage_minute WHERE minute = ? AND outcome = 'success' AND variant = 'on'",
                latency_column(latency_bucket(40)),
                latency_column(latency_bucket(200)),
                latency_column(LATENCY_BOUND_COUNT),
            ),
            &[SqlValue::Integer(NOW_MS / 1_000)],
        )
        .unwrap()
        .remove(0);
    use SqlValue::{Integer as I, Real as R};
    assert_eq!(
        row,
        [
            I(2),
            I(0),
            I(1),
            I(0),
            I(240),
            R(7.5),
            I(1),
            I(20),
            I(40),
            I(300),
            I(1),
            I(1),
            I(1),
            I(0)
        ]
    );
    assert_eq!(
        scalar(
            &mut db,
            "SELECT errors FROM usage_minute WHERE outcome = 'offline'"
        ),
        I(1)
    );
    // Both success requests have a baseline of 1 200 µ$.
    assert_eq!(
        scalar(
            &mut db,
            "SELECT baseline_micros FROM usage_minute WHERE outcome = 'success' AND variant = 'on'"
        ),
        I(2_400)
    );
    // A request without a baseline adds its own cost (saving nothing).
    let mut unpriced = record_at("r5", minute_ms + 60_000, 40);
    unpriced.baseline_cost_micros = None;
    record(&mut db, &unpriced).unwrap();
    assert_eq!(
        scalar(
            &mut db,
            &format!(
                "SELECT baseline_micros FROM usage_minute WHERE variant = 'on' AND minute = {}",
                NOW_MS / 1_000 + 60
            )
        ),
        I(300)
    );
}

#[test]
fn absurd_request_figures_are_bounded_so_the_aggregates_stay_readable() {
    // A mistyped price or a provider reporting nonsense usage once made two
    // requests overflow their minute's sum: SQLite stored it as a REAL and
    // every reader of the row (metrics, health, the alerts scan) failed.
    let mut db = db();
    let minute_ms = NOW_MS as u64;
    for (i, at) in [1_000, 2_000, 3_000].into_iter().enumerate() {
        let mut r = record_at(&format!("absurd-{i}"), minute_ms + at, 40);
        r.cost_micros = Some(u64::MAX);
        r.baseline_cost_micros = Some(u64::MAX);
        r.prompt_tokens = u64::MAX;
        r.completion_tokens = u64::MAX;
        record(&mut db, &r).unwrap();
    }
    let max = SqlValue::Integer(MAX_PER_REQUEST as i64);
    let thrice = SqlValue::Integer(3 * MAX_PER_REQUEST as i64);
    assert_eq!(
        db.execute(
            "SELECT cost_micros, baseline_micros, prompt_tokens, completion_tokens \
             FROM usage_minute",
            &[],
        )
        .unwrap(),
        [vec![thrice.clone(), thrice.clone(), thrice.clone(), thrice]]
    );
    assert_eq!(
        scalar(&mut db, "SELECT MAX(cost_micros) FROM requests"),
        max
    );
    // The readers that failed on the REAL read the bounded figures.
    let overview = crate::observe::system::read_overview(
        &mut db,
        crate::observe::usage::Window::Hour,
        NOW_MS / 1_000 + 60,
    )
    .unwrap();
    assert_eq!(overview.totals.requests, 3);
    fold(&mut db, NOW_MS + 3 * 3_600_000);
    assert_eq!(
        scalar(&mut db, "SELECT cost_micros FROM usage_hour"),
        SqlValue::Integer(3 * MAX_PER_REQUEST as i64)
    );
}

#[test]
fn a_slow_request_lands_in_the_infinite_bucket() {
    let mut db = db();
    record(&mut db, &record_at("slow", NOW_MS as u64, 500_000)).unwrap();
    assert_eq!(
        scalar(&mut db, "SELECT l72 FROM usage_minute"),
        SqlValue::Integer(1)
    );
}

/// Folds every minute that ended more than the fold lag before `now_ms`.
fn fold(db: &mut TestDb, now_ms: i64) {
    crate::observe::scan_store::fold_usage(db, now_ms).unwrap();
}

#[test]
fn a_record_later_than_the_fold_lag_goes_to_its_hour_when_its_minute_was_folded() {
    let mut db = db();
    // A 20-minute stream that started at NOW: by the time it is recorded
    // the fold has moved past its minute.
    fold(&mut db, NOW_MS + 20 * 60_000);
    record(&mut db, &record_at("long", NOW_MS as u64, 20 * 60_000)).unwrap();
    assert_eq!(count(&mut db, "usage_minute"), 0);
    let hour = NOW_SECS - NOW_SECS % 3_600;
    assert_eq!(
        scalar(
            &mut db,
            &format!(
                "SELECT requests || '/' || cost_micros || '/' || l72 FROM usage_hour WHERE hour = {hour}"
            )
        ),
        SqlValue::Text("1/300/1".into())
    );
    // A second late request adds to the same hour row.
    record(
        &mut db,
        &record_at("long2", NOW_MS as u64 + 1_000, 20 * 60_000),
    )
    .unwrap();
    assert_eq!(
        scalar(&mut db, "SELECT requests FROM usage_hour"),
        SqlValue::Integer(2)
    );
    // And a later fold does not count them again.
    fold(&mut db, NOW_MS + 40 * 60_000);
    assert_eq!(
        scalar(&mut db, "SELECT SUM(requests) FROM usage_hour"),
        SqlValue::Integer(2)
    );
}

#[test]
fn a_record_later_than_the_fold_lag_stays_a_minute_row_while_its_minute_is_not_folded() {
    let mut db = db();
    fold(&mut db, NOW_MS);
    record(&mut db, &record_at("long", NOW_MS as u64, 20 * 60_000)).unwrap();
    assert_eq!(count(&mut db, "usage_hour"), 0);
    assert_eq!(
        scalar(&mut db, "SELECT requests FROM usage_minute"),
        SqlValue::Integer(1)
    );
    // The fold then takes it exactly once.
    fold(&mut db, NOW_MS + 40 * 60_000);
    assert_eq!(
        scalar(&mut db, "SELECT SUM(requests) FROM usage_hour"),
        SqlValue::Integer(1)
    );
}

// ---------------------------------------------------------------------------
// Rows of the wrong shape

fn column_error(
    table: &'static str,
    column: &'static str,
    expected: &'static str,
) -> GatewayStoreError {
    GatewayStoreError::Column {
        table,
        column,
        expected,
    }
}

#[test]
fn a_column_of_the_wrong_type_is_a_typed_error_naming_it() {
    let mut db = db();
    seed_catalog(&mut db, NOW_MS).unwrap();
    if !db.corrupt("UPDATE models SET context_window = 'wide' WHERE model = 'gpt-4o'") {
        return;
    }
    let err = catalog(&mut db, NOW_MS).unwrap_err();
    assert_eq!(
        err,
        column_error("models", "context_window", "non-negative integer")
    );
    assert_eq!(
        err.to_string(),
        "models.context_window: expected non-negative integer"
    );

    let mut db = crate::test_db::db();
    seed_catalog(&mut db, NOW_MS).unwrap();
    sql(
        &mut db,
        "UPDATE models SET tier = 'platinum' WHERE model = 'gpt-4o'",
    );
    assert_eq!(
        routable_catalog(&mut db, NOW_MS).unwrap_err(),
        column_error("models", "tier", "comprehensive, enhanced or basic")
    );

    let mut db = crate::test_db::db();
    seed_catalog(&mut db, NOW_MS).unwrap();
    sql(&mut db, "UPDATE models SET capabilities = 'json'");
    assert_eq!(
        catalog(&mut db, NOW_MS).unwrap_err(),
        column_error("models", "capabilities", "JSON text of the expected shape")
    );
}

#[test]
fn corrupt_key_usage_request_and_template_rows_are_typed_errors() {
    let mut db = db();
    create_key(
        &mut db,
        "key_a",
        "dol_sk_a",
        &super::admin::NewKey::new("a", KeyLimits::default()),
        NOW_MS,
    )
    .unwrap();
    sql(&mut db, "UPDATE api_keys SET requests_per_minute = -3");
    assert_eq!(
        list_keys(&mut db).unwrap_err(),
        column_error(
            "api_keys",
            "requests_per_minute",
            "non-negative integer or NULL"
        )
    );

    admit(&mut db, "k", &KeyLimits::default(), want(0), NOW_SECS).unwrap();
    if db.corrupt("UPDATE key_usage SET month = CAST(X'01' AS BLOB)") {
        assert_eq!(
            usage(&mut db, "k").unwrap_err(),
            column_error("key_usage", "month", "text")
        );
        // The admission reads the same row inside its transaction: refused
        // as an error, and the lock is released.
        assert!(admit(&mut db, "k", &KeyLimits::default(), want(0), NOW_SECS).is_err());
        sql(&mut db, "UPDATE key_usage SET month = ''");
        admit(&mut db, "k", &KeyLimits::default(), want(0), NOW_SECS).unwrap();
    }

    record(&mut db, &record_at("r1", NOW_MS as u64, 10)).unwrap();
    if db.corrupt("UPDATE requests SET quality = 'great'") {
        assert_eq!(
            request(&mut db, "r1").unwrap_err(),
            column_error("requests", "quality", "real or NULL")
        );
    }

    put_template(&mut db, "greet", &spec("hi"), "ann", NOW_MS).unwrap();
    sql(
        &mut db,
        "UPDATE prompt_templates SET spec = '{\"nope\": 1}'",
    );
    assert_eq!(
        get_template(&mut db, "greet", None).unwrap_err(),
        column_error(
            "prompt_templates",
            "spec",
            "JSON text of the expected shape"
        )
    );
}

#[test]
fn a_failed_statement_names_it() {
    let mut db = db();
    db.fail_on = Some("FROM api_keys");
    let err = list_keys(&mut db).unwrap_err();
    let GatewayStoreError::Statement(StatementError { sql, .. }) = err else {
        panic!("expected a statement error, got {err:?}");
    };
    assert!(sql.starts_with("SELECT id, name"), "{sql}");
}

// ---------------------------------------------------------------------------
// Key-value: routing state and cache

#[test]
fn the_routing_state_round_trips_and_an_unreadable_one_is_empty() {
    let mut kv = MemoryKeyValue::default();
    assert_eq!(routing_state(&mut kv), RoutingState::default());
    let mut state = RoutingState::default();
    state
        .entries
        .insert("openai/gpt-4o".into(), EntryState::default());
    state.probes_applied.insert("openai".into(), 5);
    set_routing_state(&mut kv, &state).unwrap();
    assert_eq!(routing_state(&mut kv), state);

    kv.set(ROUTING_KEY, b"not json").unwrap();
    assert_eq!(routing_state(&mut kv), RoutingState::default());

    kv.fail_writes = true;
    assert!(matches!(
        set_routing_state(&mut kv, &state),
        Err(GatewayStoreError::KeyValue { key, .. }) if key == ROUTING_KEY
    ));
}

#[test]
fn the_cache_serves_fresh_entries_only() {
    let mut kv = MemoryKeyValue::default();
    let entry = CacheEntry {
        content: "hello".into(),
        finish_reason: FinishReason::Stop,
        usage: TokenUsage {
            prompt_tokens: 1,
            completion_tokens: 2,
            total_tokens: 3,
        },
        info: DolInfo {
            tier: Tier::Basic,
            provider: "offline".into(),
            model: "dol-basic-offline".into(),
            attempts: 0,
            quality: None,
            cost_micros: Some(0),
            cost_unknown: false,
            cached: false,
        },
        stored_at_ms: 1_000,
        expires_at_ms: 2_000,
    };
    assert_eq!(cache_get(&mut kv, "c1", 1_500), None);
    cache_put(&mut kv, "c1", &entry).unwrap();
    assert_eq!(cache_get(&mut kv, "c1", 1_500), Some(entry.clone()));
    assert_eq!(cache_get(&mut kv, "c1", 2_000), None, "stale");
    kv.set("c2", b"{").unwrap();
    assert_eq!(
        cache_get(&mut kv, "c2", 1_500),
        None,
        "unreadable is a miss"
    );
    kv.fail_writes = true;
    assert!(cache_put(&mut kv, "c1", &entry).is_err());
}
