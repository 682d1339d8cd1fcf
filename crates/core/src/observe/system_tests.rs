//! Reads of the health score's inputs against a real in-memory SQLite
//! with the real migrations, and an in-memory key-value store.

use super::*;
use crate::gateway::engine::EntryState;
use crate::observe::score::{HealthStatus, system_score};
use crate::storage::MemoryKeyValue;
use crate::test_db::{TestDb, db};

/// 2027-01-15 08:00:05 UTC, a few seconds into a minute.
const NOW: i64 = 1_800_000_005_000;
const MINUTE_S: i64 = 1_800_000_000 / 60 * 60;

/// A clock that advances 1 ms per reading.
fn ticking() -> impl FnMut() -> i64 {
    let mut t = NOW;
    move || {
        t += 1;
        t
    }
}

/// One `usage_minute` row: `requests` of which `errors` offline, all in
/// the 100 ms bucket, quality 8/10 each.
fn usage(db: &mut TestDb, minute: i64, outcome: &str, requests: i64, errors: i64) {
    db.run(
        "INSERT INTO usage_minute (minute, tier, provider, model, outcome, variant, requests, \
             errors, fallbacks, latency_sum_ms, quality_sum, quality_n, l1) \
             VALUES (?1, 'standard', 'openai', 'gpt-4o', ?2, '-', ?3, ?4, ?4 * 2, ?3 * 100, \
             ?3 * 8.0, ?3, ?3)",
        &[
            minute.into(),
            outcome.into(),
            requests.into(),
            errors.into(),
        ],
    );
}

fn scan_run(db: &mut TestDb, name: &str, started_at: i64) {
    db.run(
        "INSERT INTO scan_runs (name, started_at, finished_at, duration_ms, outcome) \
             VALUES (?1, ?2, ?2, 0, 'ok')",
        &[name.into(), started_at.into()],
    );
}

/// A routing state whose only breaker is open at [`NOW`].
fn open_breaker(kv: &mut MemoryKeyValue) {
    let mut entry = EntryState::default();
    for _ in 0..entry.breaker.config.failure_threshold {
        entry.breaker.record_failure(NOW as u64);
    }
    let mut state = RoutingState::default();
    state.entries.insert("openai/gpt-4o".into(), entry);
    kv.set(ROUTING_KEY, &serde_json::to_vec(&state).unwrap())
        .unwrap();
}

fn ok(name: &str) -> CheckResult {
    CheckResult::pass(name, 1)
}

#[test]
fn usage_rows_read_checked_and_cap_fallbacks_at_requests() {
    let mut db = db();
    usage(&mut db, MINUTE_S, "offline", 3, 3);
    usage(&mut db, MINUTE_S - 600, "success", 2, 0);
    let rows = usage_since(&mut db, MINUTE_S - 60).unwrap();
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!((r.minute, r.outcome.as_str()), (MINUTE_S, "offline"));
    // Six tier descents over three requests: three fallback requests.
    assert_eq!((r.agg.requests, r.agg.errors, r.agg.fallbacks), (3, 3, 3));
    assert_eq!((r.agg.buckets[1], r.agg.quality_sum), (3, 24.0));
    let totals = usage_totals(&mut db).unwrap();
    let sum: u64 = totals.iter().map(|t| t.agg.requests).sum();
    assert_eq!((totals.len(), sum), (2, 5));
    assert!(totals.iter().all(|t| t.minute == 0 && t.variant == "-"));

    // A counter holding text is an error naming the column, not a 0.
    if !db.corrupt("UPDATE usage_minute SET requests = 'many' WHERE outcome = 'success'") {
        return;
    }
    match usage_since(&mut db, 0).unwrap_err() {
        StoreError::Column(e) => assert_eq!((e.table, e.column), ("usage_minute", "requests")),
        other => panic!("{other}"),
    }
}

#[test]
fn route_quality_scan_and_migration_reads() {
    let mut db = db();
    for (id, route, quality) in [
        ("a", "chat", Some(8.0)),
        ("b", "chat", Some(3.0)),
        ("c", "generate:x@1", None),
    ] {
        db.run(
            "INSERT INTO requests (id, ts, key_id, route, tier, entry_tier, provider, model, \
                 attempts, latency_ms, prompt_tokens, completion_tokens, cost_unknown, outcome, \
                 fallbacks, cached, stream, variant, detail, quality) VALUES (?1, 0, '-', ?2, \
                 'basic', 'basic', 'openai', 'gpt-4o', 1, 5, 1, 1, 0, 'success', 0, 0, 0, '-', \
                 '{}', ?3)",
            &[id.into(), route.into(), quality.into()],
        );
    }
    assert_eq!(
        route_counts(&mut db).unwrap(),
        vec![("chat".to_owned(), 2), ("generate:x@1".to_owned(), 1)]
    );
    let q = quality_histograms(&mut db).unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].2, [0, 0, 1, 1, 1, 1, 1, 2, 2, 2]);
    assert_eq!((q[0].3, q[0].4), (11.0, 2));
    scan_run(&mut db, "alerts", 5);
    scan_run(&mut db, "alerts", 9);
    scan_run(&mut db, "probes", 7);
    assert_eq!(
        latest_scans(&mut db).unwrap(),
        vec![("alerts".to_owned(), 9), ("probes".to_owned(), 7)]
    );
    let applied = applied_migrations(&mut db).unwrap();
    assert!(usage::missing_migrations(&applied).is_empty());
}

#[test]
fn storage_round_trips_pass_fail_and_name_the_cause() {
    let mut kv = MemoryKeyValue::default();
    let run = ScanRun::new("heartbeat", 1, 2, 3);
    kv.set(LAST_RUN_KEY, &serde_json::to_vec(&run).unwrap())
        .unwrap();
    let c = key_value_check(Ok(&mut kv), HEALTH_PROBE_KEY, &mut ticking());
    assert!(c.result.ok, "{c:?}");
    assert_eq!(c.result.latency_ms, 1);
    assert_eq!(c.last_run, Some(run));
    assert!(!kv.entries.contains_key(HEALTH_PROBE_KEY), "deleted again");
    kv.fail_writes = true;
    let c = key_value_check(Ok(&mut kv), HEALTH_PROBE_KEY, &mut ticking());
    assert_eq!(c.result.error.as_deref(), Some("unavailable"));
    assert!(c.error.unwrap().starts_with("set: "));
    let c = key_value_check::<MemoryKeyValue>(Err("open: gone".into()), "k", &mut ticking());
    assert_eq!(
        (c.result.ok, c.error.as_deref()),
        (false, Some("open: gone"))
    );

    let mut db = db();
    let c = sqlite_check(Ok(&mut db), &mut ticking());
    assert_eq!((c.result.ok, c.last_run.as_ref()), (true, None));
    scan_run(&mut db, "heartbeat", 42);
    let c = sqlite_check(Ok(&mut db), &mut ticking());
    assert_eq!(c.last_run.map(|r| r.started_at), Some(42));
    // A row that does not read: the round trip worked, the log says why.
    if db.corrupt("UPDATE scan_runs SET started_at = 'soon'") {
        let c = sqlite_check(Ok(&mut db), &mut ticking());
        assert!(c.result.ok);
        assert!(c.error.unwrap().contains("scan_runs.started_at"));
    }
    db.fail_on = Some("scan_runs");
    let c = sqlite_check(Ok(&mut db), &mut ticking());
    assert_eq!(c.result.error.as_deref(), Some("unavailable"));
    db.fail_on = None;

    assert!(migrations_check(Ok(&mut db), &mut ticking()).result.ok);
    db.run("DELETE FROM _dol_migrations WHERE version = 2", &[]);
    let c = migrations_check(Ok(&mut db), &mut ticking());
    assert_eq!(c.result.error.as_deref(), Some("missing versions 2"));
}

#[test]
fn score_inputs_come_from_usage_breakers_and_scans() {
    let mut db = db();
    let mut kv = MemoryKeyValue::default();
    usage(&mut db, MINUTE_S, "offline", 12, 12);
    usage(&mut db, MINUTE_S - 60, "success", 1, 0);
    // Outside the 5 minutes: counts for uptime, not for the score.
    usage(&mut db, MINUTE_S - 3_600, "success", 50, 0);
    scan_run(&mut db, "alerts", NOW - 60_000);
    open_breaker(&mut kv);
    let sqlite = ok("sqlite");
    let r = read_score_inputs(
        Some(&mut db),
        Some(&mut kv),
        &sqlite,
        &ok("key-value"),
        MINUTE_S - 86_400,
        &mut ticking(),
        NOW,
    )
    .unwrap();
    assert_eq!(r.rows.len(), 3);
    assert_eq!((r.inputs.recent.requests, r.inputs.recent.errors), (13, 12));
    assert!(!r.inputs.usage_failed);
    assert_eq!(r.inputs.breakers[0].state, "open");
    assert_eq!(r.inputs.scans, vec![("alerts".to_owned(), NOW - 60_000)]);
    let names: Vec<&str> = r.inputs.storage.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["database", "key-value"]);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    let scored = system_score(&r.inputs);
    // Components 60 × 6/9 = 40 (generation and providers failed),
    // telemetry 40 − 15 (errors) − 5 (fallbacks) = 20.
    assert_eq!(
        (scored.health.score, scored.health.status),
        (60, HealthStatus::Warning)
    );

    // A later start still reads the score's 5 minutes.
    let late = read_score_inputs(
        Some(&mut db),
        Some(&mut kv),
        &sqlite,
        &ok("key-value"),
        MINUTE_S,
        &mut ticking(),
        NOW,
    )
    .unwrap();
    assert_eq!(late.inputs.recent, r.inputs.recent);
}

#[test]
fn without_sqlite_or_routing_state_the_inputs_say_so() {
    let mut db = db();
    let mut kv = MemoryKeyValue::default();
    kv.set(ROUTING_KEY, b"not json").unwrap();
    let failed = CheckResult::fail("sqlite", 3, "unavailable");
    let r = read_score_inputs(
        Some(&mut db),
        Some(&mut kv),
        &failed,
        &ok("key-value"),
        0,
        &mut ticking(),
        NOW,
    )
    .unwrap();
    assert!(r.inputs.usage_failed);
    assert!(r.inputs.breakers.is_empty());
    assert_eq!(r.warnings.len(), 1);
    assert!(r.warnings[0].contains(ROUTING_KEY), "{:?}", r.warnings);
    let scored = system_score(&r.inputs);
    let failed: Vec<&str> = scored
        .checks
        .iter()
        .filter(|c| !c.check.ok)
        .map(|c| c.check.name.as_str())
        .collect();
    assert_eq!(failed, ["database", "generation"]);

    // Unreadable usage: the generation check fails, the reason is kept.
    db.fail_on = Some("usage_minute");
    let r = read_score_inputs(
        Some(&mut db),
        None::<&mut MemoryKeyValue>,
        &ok("sqlite"),
        &ok("key-value"),
        0,
        &mut ticking(),
        NOW,
    )
    .unwrap();
    assert!(r.inputs.usage_failed);
    assert!(matches!(r.usage_error, Some(StoreError::Sql { .. })));
    assert_eq!(r.warnings.len(), 2, "{:?}", r.warnings);
}

#[test]
fn api_health_and_metrics_show_the_one_score() {
    let mut db = db();
    let mut kv = MemoryKeyValue::default();
    usage(&mut db, MINUTE_S, "offline", 12, 12);
    usage(&mut db, MINUTE_S, "success", 1, 0);
    open_breaker(&mut kv);
    store::set_emergency_override(&mut db, Some(store::EmergencyOverride::On), "ops", NOW).unwrap();
    let (sqlite, key_value) = (ok("sqlite"), ok("key-value"));
    let (body, warnings) = read_api_health(
        Some(&mut db),
        Some(&mut kv),
        &sqlite,
        &key_value,
        &mut ticking(),
        NOW,
        None,
    )
    .unwrap();
    assert!(warnings.is_empty());
    let inputs = read_score_inputs(
        Some(&mut db),
        Some(&mut kv),
        &sqlite,
        &key_value,
        0,
        &mut ticking(),
        NOW,
    )
    .unwrap()
    .inputs;
    assert_eq!(body.health.system_health, system_score(&inputs).health);
    assert_eq!(body.health.system_health.score, 60);
    assert_eq!(body.http_status(), 200);
    assert!(body.emergency_mode.active);
    assert_eq!(body.emergency_mode.set_by.as_deref(), Some("ops"));
    assert_eq!(body.generation.requests, 13);

    let m = read_metrics(&mut db, &body, NOW).unwrap();
    assert_eq!((m.health_score, m.emergency), (60, true));
    assert_eq!(m.breakers, body.providers);
    let text = usage::render_metrics(&m).unwrap();
    assert!(text.lines().any(|l| l == "dol_health_score 60"), "{text}");

    let o = read_overview(&mut db, Window::Hour, NOW / 1000).unwrap();
    assert_eq!((o.totals.requests, o.totals.errors), (13, 12));
}

#[test]
fn an_orgs_health_and_overview_read_its_own_aggregates_through_the_one_score() {
    let mut db = db();
    let mut kv = MemoryKeyValue::default();
    // The deployment fails (12 of 13 offline); org acme's 10 requests all succeed.
    usage(&mut db, MINUTE_S, "offline", 12, 12);
    usage(&mut db, MINUTE_S, "success", 1, 0);
    db.run(
        "INSERT INTO usage_minute (minute, tier, provider, model, outcome, variant, org_id, \
         requests, latency_sum_ms, quality_sum, quality_n, l1) \
         VALUES (?1, 'standard', 'openai', 'gpt-4o', 'success', '-', 'acme', 10, 1000, 80.0, 10, 10)",
        &[MINUTE_S.into()],
    );
    let (sqlite, key_value) = (ok("sqlite"), ok("key-value"));
    let mut health = |org| {
        read_api_health(
            Some(&mut db),
            Some(&mut kv),
            &sqlite,
            &key_value,
            &mut ticking(),
            NOW,
            org,
        )
        .unwrap()
        .0
    };
    let all = health(None);
    let acme = health(Some("acme"));
    let other = health(Some("other"));
    assert_eq!(all.generation.requests, 23);
    assert_eq!((acme.generation.requests, acme.generation.errors), (10, 0));
    assert_eq!(acme.org.as_deref(), Some("acme"));
    assert!(serde_json::to_value(&all).unwrap().get("org").is_none());
    // The one score, over the org's own telemetry: acme is healthy where the
    // deployment is not; an org without traffic earns the no-evidence score.
    assert!(acme.health.system_health.score > all.health.system_health.score);
    assert_eq!(acme.health.system_health.score, 100);
    assert_eq!(other.generation.requests, 0);
    let overview =
        |db: &mut TestDb, org| read_overview_in(db, Window::Hour, NOW / 1000, org).unwrap();
    assert_eq!(overview(&mut db, Some("acme")).totals.requests, 10);
    assert_eq!(overview(&mut db, None).totals.requests, 23);
    let m = read_org_metrics(&mut db, &acme, "acme").unwrap();
    assert_eq!(m.usage.iter().map(|r| r.agg.requests).sum::<u64>(), 10);
    assert_eq!(m.health_score, 100);
}

#[test]
fn migration_8_keeps_the_old_histogram_readable() {
    use crate::gateway::telemetry::{latency_bucket, latency_column};
    use crate::migrate::{MIGRATIONS, apply, apply_list};
    let mut db = crate::test_db::empty();
    // A database from before migration 8, with a minute of old-style counts:
    // 3 requests ≤ 50 ms, 1 ≤ 5 s and 1 over 120 s.
    apply_list(&mut db, &MIGRATIONS[..7], 0).unwrap();
    db.run(
        "INSERT INTO usage_minute (minute, tier, provider, model, outcome, variant, requests, \
             b0, b6, b11) VALUES (?1, 'standard', 'openai', 'gpt-4o', 'success', '-', 5, 3, 1, 1)",
        &[MINUTE_S.into()],
    );
    apply(&mut db, 0).unwrap();
    let mut count =
        |column: &str| -> i64 { db.int(&format!("SELECT {column} FROM usage_minute"), &[]) };
    assert_eq!(count(latency_column(latency_bucket(50))), 3);
    assert_eq!(count(latency_column(latency_bucket(5_000))), 1);
    assert_eq!(count(latency_column(latency_bucket(120_001))), 1);
    assert_eq!(count("b0 + b6 + b11"), 0, "moved, not copied");
    // Read as before: the median of that minute is about 50 ms, p99 about 120 s.
    let rows = usage_since(&mut db, 0).unwrap();
    let p50 = rows[0].agg.percentile_ms(0.5).unwrap();
    let p99 = rows[0].agg.percentile_ms(0.99).unwrap();
    assert!((45..=55).contains(&p50), "{p50}");
    assert!((108_000..=132_000).contains(&p99), "{p99}");
}

#[test]
fn migration_24_repairs_the_aggregates_an_absurd_price_broke() {
    use crate::migrate::{MIGRATIONS, apply, apply_list};
    let mut db = crate::test_db::empty();
    let before_24 = MIGRATIONS.iter().position(|m| m.version == 24).unwrap();
    apply_list(&mut db, &MIGRATIONS[..before_24], 0).unwrap();
    // What the gateway stored before requests were bounded: one request's
    // cost capped at i64::MAX in each of two minutes (their sum overflows
    // every reader's SUM) and, on SQLite, a minute whose sum overflowed
    // into a REAL.
    usage(&mut db, MINUTE_S, "success", 1, 0);
    usage(&mut db, MINUTE_S - 60, "success", 1, 0);
    usage(&mut db, MINUTE_S - 120, "success", 2, 0);
    db.run(
        "UPDATE usage_minute SET cost_micros = 9223372036854775807, prompt_tokens = 5 \
         WHERE minute >= ?1",
        &[(MINUTE_S - 60).into()],
    );
    let real = db.corrupt(&format!(
        "UPDATE usage_minute SET cost_micros = 1.4e19 WHERE minute = {}",
        MINUTE_S - 120
    ));
    db.run(
        "INSERT INTO requests (id, ts, key_id, route, tier, entry_tier, provider, model, \
         attempts, latency_ms, prompt_tokens, completion_tokens, cost_micros, cost_unknown, \
         outcome, fallbacks, cached, stream, variant, detail) VALUES ('r1', ?1, 'k', 'chat', \
         'basic', 'basic', 'openai', 'gpt-4o', 1, 40, 7, 9, 9223372036854775807, 0, 'success', \
         0, 0, 0, '-', '{}')",
        &[(MINUTE_S * 1_000).into()],
    );
    apply(&mut db, 0).unwrap();
    let bound = crate::gateway::store::MAX_PER_REQUEST as i64;
    let costs = db.run("SELECT cost_micros FROM usage_minute ORDER BY minute", &[]);
    let expected_first = if real { bound } else { 0 };
    assert_eq!(
        costs,
        [
            vec![SqlValue::Integer(expected_first)],
            vec![SqlValue::Integer(bound)],
            vec![SqlValue::Integer(bound)]
        ]
    );
    assert_eq!(
        db.int(
            "SELECT prompt_tokens FROM usage_minute WHERE minute = ?1",
            &[MINUTE_S.into()]
        ),
        5,
        "sane figures are kept"
    );
    assert_eq!(db.int("SELECT cost_micros FROM requests", &[]), bound);
    // The readers that failed read the rows again.
    let rows = usage_since(&mut db, 0).unwrap();
    assert_eq!(rows.iter().map(|r| r.agg.requests).sum::<u64>(), 4);
}

#[test]
fn migration_17_keeps_every_aggregate_and_gives_it_no_org() {
    use crate::migrate::{MIGRATIONS, apply, apply_list};
    let mut db = crate::test_db::empty();
    let before_17 = MIGRATIONS.iter().position(|m| m.version == 17).unwrap();
    apply_list(&mut db, &MIGRATIONS[..before_17], 0).unwrap();
    usage(&mut db, MINUTE_S, "offline", 12, 12);
    usage(&mut db, MINUTE_S - 60, "success", 3, 0);
    db.run(
        "INSERT INTO usage_hour (hour, tier, provider, model, outcome, variant, requests, \
         cost_micros, l5) VALUES (?1, 'standard', 'openai', 'gpt-4o', 'success', '-', 4, 9, 4)",
        &[(MINUTE_S - MINUTE_S % 3600 - 3600).into()],
    );
    let read = |db: &mut TestDb| {
        (
            serde_json::to_value(read_overview(db, Window::Week, NOW / 1000).unwrap()).unwrap(),
            usage_since(db, 0).unwrap(),
            usage_totals(db).unwrap(),
        )
    };
    let before = read(&mut db);
    apply(&mut db, 0).unwrap();
    assert_eq!(read(&mut db), before, "the no-org view reads as before");
    let orgs = db.run(
        "SELECT DISTINCT org_id FROM usage_minute UNION SELECT org_id FROM usage_hour",
        &[],
    );
    assert_eq!(orgs, vec![vec![SqlValue::Text(String::new())]]);
}

/// `n` requests spread pseudo-randomly over the 62 days before [`NOW`],
/// recorded the way the gateway does, with a mix of providers, outcomes,
/// variants, latencies (1 ms to 5 min), costs and qualities (halves, so
/// sums are exact in any order).
fn traffic(db: &mut TestDb, n: u64) {
    use crate::gateway::telemetry::RequestRecord;
    use crate::gateway::tiers::Tier;
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move |m: u64| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % m
    };
    let span = 62 * 86_400_000;
    for i in 0..n {
        let provider = ["openai", "anthropic", "offline"][next(3) as usize];
        let outcome = if provider == "offline" {
            "offline"
        } else {
            ["success", "success", "cache_hit", "low_quality"][next(4) as usize]
        };
        let r = RequestRecord {
            id: format!("r{i}"),
            ts_ms: NOW as u64 - next(span),
            key_id: "-".into(),
            route: "chat".into(),
            tier: [Tier::Basic, Tier::Enhanced][next(2) as usize],
            entry_tier: Tier::Comprehensive,
            provider: provider.into(),
            model: "m".into(),
            attempts: 1,
            latency_ms: [1, 7, 90, 450, 2_000, 299_000][next(6) as usize],
            ttft_ms: None,
            prompt_tokens: next(100),
            completion_tokens: next(100),
            cost_micros: (next(5) > 0).then(|| next(1_000)),
            baseline_cost_micros: (next(4) > 0).then(|| next(2_000)),
            difficulty: None,
            subject: None,
            quality: (next(3) > 0).then(|| next(21) as f64 / 2.0),
            outcome: outcome.into(),
            fallbacks: next(3) as u32,
            cached: outcome == "cache_hit",
            stream: false,
            variant: ["-", "on", "off"][next(3) as usize].into(),
            detail: serde_json::json!({}),
        };
        crate::gateway::store::record(db, &r).unwrap();
    }
}

#[test]
fn long_windows_read_from_hour_rollups_give_the_minute_figures() {
    let mut db = db();
    traffic(&mut db, 4_000);
    // Two folds, as successive scans would: 20 days ago, then now.
    let first = super::super::scan_store::fold_usage(&mut db, NOW - 20 * 86_400_000).unwrap();
    let second = super::super::scan_store::fold_usage(&mut db, NOW).unwrap();
    assert_eq!((first.from, second.from), (0, first.until));
    assert!(first.hour_rows > 0 && second.hour_rows > 0);
    let now_s = NOW / 1000;
    for at in [now_s, now_s + 1_234, now_s + 3 * 3_600 + 7] {
        for window in [Window::Hour, Window::Day, Window::Week, Window::Month] {
            let minutes = read_overview_minutes(&mut db, window, at).unwrap();
            assert!(minutes.totals.requests > 0 || window == Window::Hour);
            assert_eq!(
                read_overview(&mut db, window, at).unwrap(),
                minutes,
                "{window:?} at {at}"
            );
        }
    }
    // The long windows really read the hour rows: with the minutes they
    // replace gone, the figures stay.
    let expected = read_overview(&mut db, Window::Month, now_s).unwrap();
    let plan = usage::plan_read(
        &usage::overview_boundaries(Window::Month, now_s),
        folded_until(&mut db).unwrap(),
    );
    // The month starts on the hour: everything up to the watermark's hour
    // comes from hour rows, only the unfolded tail from minute rows.
    let folded = folded_until(&mut db).unwrap();
    let hours: i64 = plan.hours.iter().map(|(a, b)| b - a).sum();
    assert!(hours >= 29 * 86_400, "{plan:?}");
    assert_eq!(plan.minutes.len(), 1, "{plan:?}");
    assert!(plan.minutes[0].0 > folded - 3_600, "{plan:?}");
    for (a, b) in &plan.hours {
        db.run(
            "DELETE FROM usage_minute WHERE minute >= ?1 AND minute < ?2",
            &[(*a).into(), (*b).into()],
        );
    }
    assert_eq!(
        read_overview(&mut db, Window::Month, now_s).unwrap(),
        expected
    );
    assert_ne!(
        read_overview_minutes(&mut db, Window::Month, now_s).unwrap(),
        expected
    );
}

/// One ended (or, without `completed_at`, open) `video_jobs` row at `platform`.
fn video_job(db: &mut TestDb, id: &str, platform: &str, status: &str, completed_at: Option<i64>) {
    let outcome = if status == "failed" {
        "platform_failed"
    } else {
        "submitted"
    };
    let attempts = format!("[{{\"platform\":\"{platform}\",\"outcome\":\"{outcome}\"}}]");
    db.run(
        "INSERT INTO video_jobs (id, key_id, status, model, prompt, seconds, size, created_at, \
         completed_at, platform, attempts, deadline_at, cost_micros) \
         VALUES (?1, 'k', ?2, 'auto', 'p', 4, '720x1280', ?3, ?4, ?5, ?6, ?3, 400000)",
        &[
            id.into(),
            status.into(),
            (NOW - 600_000).into(),
            completed_at.into(),
            platform.into(),
            attempts.into(),
        ],
    );
}

#[test]
fn video_platforms_with_recent_jobs_are_a_scored_check() {
    let mut db = db();
    let mut kv = MemoryKeyValue::default();
    let read = |db: &mut TestDb, kv: &mut MemoryKeyValue| {
        read_score_inputs(
            Some(db),
            Some(kv),
            &ok("sqlite"),
            &ok("key-value"),
            MINUTE_S,
            &mut ticking(),
            NOW,
        )
        .unwrap()
    };
    // No video jobs: no video check at all.
    let r = read(&mut db, &mut kv);
    assert!(r.inputs.video.is_empty());
    assert!(
        !system_score(&r.inputs)
            .checks
            .iter()
            .any(|c| c.check.name == "video")
    );
    // Older than the hour: not read.
    video_job(&mut db, "v0", "runway", "failed", Some(NOW - 7_200_000));
    for i in 0..3 {
        video_job(
            &mut db,
            &format!("f{i}"),
            "runway",
            "failed",
            Some(NOW - 60_000),
        );
    }
    video_job(&mut db, "ok", "openai", "completed", Some(NOW - 60_000));
    video_job(&mut db, "open", "openai", "queued", None);
    let r = read(&mut db, &mut kv);
    let names: Vec<(&str, bool)> = r
        .inputs
        .video
        .iter()
        .map(|p| (p.platform.as_str(), p.healthy))
        .collect();
    assert_eq!(names, [("openai", true), ("runway", false)]);
    assert_eq!(
        r.inputs.video[1].failures, 3,
        "the older job is outside the hour"
    );
    assert_eq!(r.inputs.video[0].open, 1);
    let scored = system_score(&r.inputs);
    let video = scored
        .checks
        .iter()
        .find(|c| c.check.name == "video")
        .unwrap();
    assert!(!video.check.ok);
    assert_eq!(video.weight, 1);
    assert_eq!(
        video.check.error.as_deref(),
        Some("video platforms: 1 of 2 healthy (runway 0 % success)")
    );
}
