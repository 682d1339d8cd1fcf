//! The scans' storage against a real in-memory SQLite with the real
//! migrations, and an in-memory key-value store.

use std::collections::BTreeSet;

use super::*;
use crate::observe::alerts::parse_rules;
use crate::observe::score::{HealthStatus, system_score};
use crate::observe::store::{EMERGENCY_AUTO_KEY, get_control, pending_messages};
use crate::observe::system::{read_api_health, read_score_inputs};
use crate::storage::MemoryKeyValue;
use crate::test_db::{TestDb, count, db};

/// 2027-01-15 08:00:05 UTC.
const NOW: i64 = 1_800_000_005_000;
const MINUTE_S: i64 = 1_800_000_000;
const MIN: i64 = 60_000;

fn clock() -> impl FnMut() -> i64 {
    let mut t = NOW;
    move || {
        t += 1;
        t
    }
}

fn ok(name: &str) -> CheckResult {
    CheckResult::pass(name, 1)
}

fn usage(db: &mut TestDb, minute: i64, outcome: &str, requests: i64, errors: i64) {
    db.run(
        "INSERT INTO usage_minute (minute, tier, provider, model, outcome, variant, requests, \
             errors, fallbacks, latency_sum_ms, quality_sum, quality_n, b1) \
             VALUES (?1, 'standard', 'openai', 'gpt-4o', ?2, '-', ?3, ?4, ?4, ?3 * 100, \
             ?3 * 8.0, ?3, ?3)",
        &[
            minute.into(),
            outcome.into(),
            requests.into(),
            errors.into(),
        ],
    );
}

fn model(db: &mut TestDb, provider: &str, model: &str, priced: bool, caps: &str) {
    let price = priced.then_some(100);
    db.run(
        "INSERT INTO models (provider, model, tier, input_price, output_price, context_window, \
             capabilities, source, updated_at) VALUES (?1, ?2, 'standard', ?3, ?3, 8192, ?4, \
             'seed', 0)",
        &[provider.into(), model.into(), price.into(), caps.into()],
    );
}

#[test]
fn runs_are_recorded_and_read_back() {
    let mut db = db();
    let mut kv = MemoryKeyValue::default();
    assert_eq!(last_run(&mut db).unwrap(), None);
    let mut run = ScanRun::new("alerts", 1_800_000_000, NOW, NOW + 5);
    run.outcome = Outcome::Error;
    run.detail = "{\"error\":\"x\"}".into();
    record_run(&mut db, Ok(&mut kv), &run).unwrap();
    record_run(
        &mut db,
        Ok(&mut kv),
        &ScanRun::new("probes", 0, NOW - 10, NOW),
    )
    .unwrap();
    // The table keeps no trigger time.
    assert_eq!(
        last_run(&mut db).unwrap(),
        Some(ScanRun {
            timestamp: 0,
            ..run.clone()
        })
    );
    let kept: ScanRun = serde_json::from_slice(&kv.entries[LAST_RUN_KEY]).unwrap();
    assert_eq!(kept.scan, "probes");
    kv.fail_writes = true;
    assert!(matches!(
        record_run(&mut db, Ok(&mut kv), &run),
        Err(StoreError::KeyValue { .. })
    ));
    // Without key-value the run is still in the table.
    let closed = record_run::<MemoryKeyValue>(&mut db, Err("gone".into()), &run);
    assert!(matches!(closed, Err(StoreError::KeyValue { .. })));
    assert_eq!(count(&mut db, "scan_runs"), 4);
}

#[test]
fn recent_runs_are_one_scans_newest_first_and_bounded() {
    let mut db = db();
    let mut kv = MemoryKeyValue::default();
    assert!(recent_runs(&mut db, "alerts", 10).unwrap().is_empty());
    for i in 0..5 {
        let mut run = ScanRun::new("alerts", 0, NOW + i * MIN, NOW + i * MIN + 7);
        if i == 3 {
            run.outcome = Outcome::Error;
        }
        record_run(&mut db, Ok(&mut kv), &run).unwrap();
        record_run(
            &mut db,
            Ok(&mut kv),
            &ScanRun::new("probes", 0, NOW + i, NOW + i),
        )
        .unwrap();
    }
    let runs = recent_runs(&mut db, "alerts", 3).unwrap();
    let starts: Vec<i64> = runs.iter().map(|r| r.started_at).collect();
    assert_eq!(starts, [NOW + 4 * MIN, NOW + 3 * MIN, NOW + 2 * MIN]);
    assert!(
        runs.iter()
            .all(|r| r.scan == "alerts" && r.duration_ms == 7)
    );
    assert_eq!(runs[1].outcome, Outcome::Error);
    // The limit is capped.
    assert_eq!(recent_runs(&mut db, "probes", 10_000).unwrap().len(), 5);
    assert_eq!(MAX_RECENT_RUNS, 100);
    assert_eq!(parse_runs_limit(None).unwrap(), DEFAULT_RECENT_RUNS);
    assert_eq!(parse_runs_limit(Some("100")).unwrap(), 100);
    for bad in ["0", "101", "-1", "x", ""] {
        let err = parse_runs_limit(Some(bad)).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("limit"), "{bad}");
    }
}

#[test]
fn an_unreadable_run_names_its_column() {
    let mut db = db();
    if !db.corrupt(
        "INSERT INTO scan_runs (name, started_at, finished_at, duration_ms, outcome) \
         VALUES ('x', 1, 'later', 0, 'ok')",
    ) {
        return;
    }
    match last_run(&mut db).unwrap_err() {
        StoreError::Column(e) => assert_eq!((e.table, e.column), ("scan_runs", "finished_at")),
        other => panic!("{other}"),
    }
}

fn listed(id: &str) -> DiscoveredModel {
    DiscoveredModel {
        id: id.into(),
        display_name: None,
        context_window: None,
        output_limit: None,
        capabilities: BTreeSet::new(),
    }
}

#[test]
fn discovery_records_new_models_unpriced_and_queues_one_message() {
    let mut db = db();
    model(&mut db, "openai", "gpt-4o", true, r#"["json"]"#);
    model(&mut db, "openai", "gpt-old", true, "[]");
    assert_eq!(unpriced_models(&mut db).unwrap(), 0);
    let listings: Vec<Listing> = vec![
        (
            "openai".into(),
            Ok(vec![listed("gpt-4o"), listed("gpt-new")]),
        ),
        ("anthropic".into(), Err("HTTP 500".into())),
    ];
    let d = discover(&mut db, &listings, NOW).unwrap();
    assert_eq!(d.providers.len(), 1);
    assert_eq!(d.providers[0].added[0].id, "gpt-new");
    assert_eq!(d.providers[0].removed, vec!["gpt-old".to_owned()]);
    assert_eq!(
        d.failures,
        vec![DiscoveryFailure {
            provider: "anthropic".into(),
            error: "HTTP 500".into()
        }]
    );
    assert!(d.queued.is_some());
    let new = catalog(&mut db)
        .unwrap()
        .into_iter()
        .find(|m| m.model == "gpt-new")
        .unwrap();
    assert_eq!(
        (new.source.as_str(), new.input_price, new.context_window),
        ("discovered", None, scans::UNKNOWN_CONTEXT_WINDOW)
    );
    assert_eq!(unpriced_models(&mut db).unwrap(), 1);
    // Nothing new the second time: no message (the removed one alone is not news).
    let again = discover(&mut db, &listings, NOW + MIN).unwrap();
    assert!(again.providers[0].added.is_empty());
    assert_eq!(again.queued, None);
    assert_eq!(pending_messages(&mut db, 10).unwrap().len(), 1);
    // The summary keeps its shape.
    let v = serde_json::to_value(&again).unwrap();
    assert_eq!(v["failures"][0]["provider"], "anthropic");
    assert!(v["queued"].is_null());

    // Unreadable capabilities are an error naming the column.
    db.run(
        "UPDATE models SET capabilities = 'json' WHERE model = 'gpt-4o'",
        &[],
    );
    let err = catalog(&mut db).unwrap_err();
    assert!(
        err.to_string().starts_with("models.capabilities: "),
        "{err}"
    );
}

#[test]
fn report_is_queued_once_per_time_and_retention_keeps_recent_rows() {
    let mut db = db();
    usage(&mut db, MINUTE_S - 600, "success", 4, 0);
    let r = report(&mut db, NOW).unwrap();
    assert_eq!(r.report.requests, 4);
    assert!(r.queued.is_some());
    assert_eq!(report(&mut db, NOW).unwrap().queued, None);

    let old = NOW - 40 * scans::DAY_MS;
    usage(&mut db, old / 1_000 / 60 * 60, "success", 1, 0);
    for at in [old, NOW] {
        db.run(
            "INSERT INTO scan_runs (name, started_at, finished_at, duration_ms, outcome) \
                 VALUES ('heartbeat', ?1, ?1, 0, 'ok')",
            &[at.into()],
        );
        db.run(
            "INSERT INTO outbox (kind, target, payload, next_attempt_at, delivered_at, \
                 created_at) VALUES ('scan', 'default', '{}', ?1, ?1, ?1)",
            &[at.into()],
        );
    }
    db.run(
        "INSERT INTO outbox (kind, target, payload, next_attempt_at, created_at) \
             VALUES ('scan', 'default', '{}', ?1, ?1)",
        &[old.into()],
    );
    for start in [NOW / 1_000 - 86_401, NOW / 1_000 - 60] {
        db.run(
            "INSERT INTO rate_windows (key, window_start, count) VALUES (?1, ?1, 1)",
            &[start.into()],
        );
    }
    let kept = retention(&mut db, "30", NOW).unwrap();
    assert_eq!(kept.retention_days, 30);
    assert_eq!(
        kept.deleted,
        Deleted {
            requests: 0,
            usage_minute: 1,
            usage_hour: 0,
            scan_runs: 1,
            outbox: 1,
            rate_windows: 1,
            feedback: 0,
        }
    );
    assert_eq!(count(&mut db, "usage_minute"), 1);
    // The undelivered old message stays, with the report's and the new one.
    assert_eq!(count(&mut db, "outbox"), 3);
    assert_eq!(retention(&mut db, "", NOW).unwrap().retention_days, 30);
    // A failure half-way deletes nothing.
    usage(&mut db, old / 1_000 / 60 * 60, "success", 1, 0);
    db.fail_on = Some("DELETE FROM scan_runs");
    assert!(retention(&mut db, "30", NOW).is_err());
    db.fail_on = None;
    assert_eq!(count(&mut db, "usage_minute"), 2);
}

#[test]
fn retention_deletes_a_minute_only_after_folding_it_into_its_hour() {
    // The alerts scan, which folds minutes into hours, has not run for
    // longer than the retention: the retention scan folds first, so the
    // 7- and 30-day views (read from the hours) keep the old minute.
    let mut db = db();
    let old = NOW - 3 * scans::DAY_MS;
    usage(&mut db, old / 1_000 / 60 * 60, "success", 5, 0);
    db.run(
        "INSERT INTO feedback (request_id, ts, key_id, scale, raw_score, score, comment, provider, \
         model, tier, route, variant) VALUES ('r-old', ?1, 'k', 'thumbs', 1, 1.0, 'old comment', \
         'p', 'm', 'basic', 'chat', '')",
        &[old.into()],
    );
    // Two days: minutes go after two, hours after four.
    let kept = retention(&mut db, "2", NOW).unwrap();
    assert_eq!((kept.deleted.usage_minute, kept.deleted.feedback), (1, 1));
    assert_eq!(count(&mut db, "usage_minute"), 0);
    assert_eq!(count(&mut db, "feedback"), 0);
    assert_eq!(db.int("SELECT SUM(requests) FROM usage_hour", &[]), 5);
}

const RULES: &str = r#"[
  {"name": "LowHealthScore", "metric": "health_score", "comparison": "<", "threshold": 60,
   "window": "1m", "severity": "critical"},
  {"name": "HighErrorRate", "metric": "error_rate", "comparison": ">", "threshold": 0.1,
   "window": "10m", "severity": "critical"},
  {"name": "Unpriced", "metric": "models_without_price", "comparison": ">", "threshold": 0,
   "window": "1m", "severity": "info"}
]"#;

/// One scan at `now` with the storage checks as given.
fn scan(db: &mut TestDb, kv: &mut MemoryKeyValue, key_value: &CheckResult, now: i64) -> AlertsRun {
    let rules = parse_rules(RULES).unwrap();
    run_alerts(
        db,
        Some(kv),
        &rules,
        &ok("sqlite"),
        key_value,
        &mut clock(),
        now,
    )
    .unwrap()
}

#[test]
fn the_alerts_scan_scores_like_api_health_and_drives_emergency_with_it() {
    let mut db = db();
    let mut kv = MemoryKeyValue::default();
    usage(&mut db, MINUTE_S, "offline", 12, 12);
    usage(&mut db, MINUTE_S - 60, "success", 1, 0);
    // The last scan ran 20 minutes ago: stale for /api/health until this
    // scan is recorded; the scan counts itself.
    db.run(
        "INSERT INTO scan_runs (name, started_at, finished_at, duration_ms, outcome) \
             VALUES ('alerts', ?1, ?1, 0, 'ok')",
        &[(NOW - 20 * MIN).into()],
    );
    let kv_failed = CheckResult::fail("key-value", 2, "unavailable");

    let run = scan(&mut db, &mut kv, &kv_failed, NOW);
    // The same storage read for the score by itself, with this run counted.
    let mut inputs = read_score_inputs(
        Some(&mut db),
        Some(&mut kv),
        &ok("sqlite"),
        &kv_failed,
        0,
        &mut clock(),
        NOW,
    )
    .unwrap()
    .inputs;
    inputs.scans = vec![("alerts".into(), NOW)];
    assert_eq!(run.health, system_score(&inputs).health);
    // Components 60 × 5/9 ≈ 33.3 (key-value and generation failed),
    // telemetry 40 − 15 (errors) − 5 (fallbacks) = 20: 53, critical.
    assert_eq!(
        (run.health.score, run.health.status),
        (53, HealthStatus::Critical)
    );
    // The emergency decision took exactly that score.
    assert_eq!(
        run.emergency,
        EmergencyDecision {
            active: true,
            reason: EmergencyReason::Entered
        }
    );
    let stored = get_control(&mut db, EMERGENCY_AUTO_KEY).unwrap().unwrap();
    assert_eq!(stored.value["active"], true);
    assert_eq!(stored.value["since_ms"], NOW);
    // The `health_score` metric is that score too.
    assert!(run.firing.contains(&"LowHealthScore".to_owned()), "{run:?}");
    assert!(run.firing.contains(&"HighErrorRate".to_owned()), "{run:?}");

    // Recorded, the run makes /api/health read the same score and show
    // the emergency the scan decided.
    record_run(
        &mut db,
        Ok(&mut kv),
        &ScanRun::new("alerts", 1_800_000_005, NOW, NOW + 3),
    )
    .unwrap();
    let (body, _) = read_api_health(
        Some(&mut db),
        Some(&mut kv),
        &ok("sqlite"),
        &kv_failed,
        &mut clock(),
        NOW + 3,
        None,
    )
    .unwrap();
    assert_eq!(body.health.system_health, run.health);
    assert_eq!(body.http_status(), 503);
    assert!(body.emergency_mode.active);
    assert_eq!(body.emergency_mode.mode, "automatic");
}

#[test]
fn emergency_ends_after_ten_minutes_at_75_or_more() {
    let mut db = db();
    let mut kv = MemoryKeyValue::default();
    let kv_failed = CheckResult::fail("key-value", 2, "unavailable");
    usage(&mut db, MINUTE_S, "offline", 12, 12);
    assert!(scan(&mut db, &mut kv, &kv_failed, NOW).emergency.active);
    // No traffic in the last 5 minutes any more, storage fine: 100.
    let later = NOW + 10 * MIN;
    let r = scan(&mut db, &mut kv, &ok("key-value"), later);
    assert_eq!(r.health.score, 100);
    assert_eq!(
        (r.emergency.active, r.emergency.reason),
        (true, EmergencyReason::Recovering)
    );
    let r = scan(&mut db, &mut kv, &ok("key-value"), later + 9 * MIN);
    assert!(r.emergency.active);
    let r = scan(&mut db, &mut kv, &ok("key-value"), later + 10 * MIN);
    assert_eq!(
        (r.emergency.active, r.emergency.reason),
        (false, EmergencyReason::Recovered)
    );
    assert!(r.firing.is_empty(), "{r:?}");
}

#[test]
fn unreadable_usage_fails_the_scan_and_changes_nothing() {
    let mut db = db();
    let mut kv = MemoryKeyValue::default();
    model(&mut db, "openai", "gpt-x", false, "[]");
    db.fail_on = Some("FROM usage_minute");
    let rules = parse_rules(RULES).unwrap();
    let err = run_alerts(
        &mut db,
        Some(&mut kv),
        &rules,
        &ok("sqlite"),
        &ok("key-value"),
        &mut clock(),
        NOW,
    )
    .unwrap_err();
    assert!(matches!(err, StoreError::Sql { .. }), "{err}");
    db.fail_on = None;
    let sqlite_failed = CheckResult::fail("sqlite", 1, "unavailable");
    let err = run_alerts(
        &mut db,
        Some(&mut kv),
        &rules,
        &sqlite_failed,
        &ok("key-value"),
        &mut clock(),
        NOW,
    )
    .unwrap_err();
    assert!(err.to_string().contains("sqlite check failed"), "{err}");
    assert_eq!(count(&mut db, "alert_states"), 0);
    assert!(get_control(&mut db, EMERGENCY_AUTO_KEY).unwrap().is_none());
    // Read again, the unpriced model alerts and the probes count.
    kv.set(
        PROBES_KEY,
        br#"[{"provider":"openai","up":false,"status":500,"latency_ms":3,"error":"HTTP 500","at_ms":1}]"#,
    )
    .unwrap();
    assert_eq!(last_probes(&mut kv).len(), 1);
    let run = scan(&mut db, &mut kv, &ok("key-value"), NOW);
    assert_eq!(run.firing, vec!["Unpriced".to_owned()]);
    assert!(run.unknown_metrics.is_empty());
}

/// Requests and the slowest bucket summed over `usage_hour`.
fn hour_totals(db: &mut TestDb) -> (i64, i64) {
    (
        db.int("SELECT COALESCE(SUM(requests), 0) FROM usage_hour", &[]),
        db.int("SELECT COALESCE(SUM(l72), 0) FROM usage_hour", &[]),
    )
}

#[test]
fn usage_is_folded_into_hours_exactly_once() {
    let mut db = db();
    // Two minutes of one hour, one of the hour before, one too recent.
    usage(&mut db, MINUTE_S - 7_200, "success", 2, 0);
    usage(&mut db, MINUTE_S - 3_600, "success", 3, 0);
    usage(&mut db, MINUTE_S - 3_540, "offline", 4, 4);
    usage(&mut db, MINUTE_S - 60, "success", 100, 0);

    // A fold that fails half-way folds nothing and keeps the watermark.
    db.fail_on = Some("UPDATE usage_rollup");
    assert!(fold_usage(&mut db, NOW).is_err());
    db.fail_on = None;
    assert_eq!(hour_totals(&mut db), (0, 0));
    assert_eq!(system::folded_until(&mut db).unwrap(), 0);

    let fold = fold_usage(&mut db, NOW).unwrap();
    assert_eq!((fold.from, fold.until), (0, usage::fold_until(NOW / 1_000)));
    assert_eq!(fold.until, MINUTE_S - 900, "15 minutes of lag");
    assert_eq!(
        fold.hour_rows, 3,
        "two outcomes in one hour, one in the other"
    );
    assert_eq!(hour_totals(&mut db).0, 9);
    // The same tick again, and a tick a second later: nothing new.
    let again = fold_usage(&mut db, NOW).unwrap();
    assert_eq!(
        (again.from, again.until, again.hour_rows),
        (fold.until, fold.until, 0)
    );
    assert_eq!(fold_usage(&mut db, NOW + 1_000).unwrap().hour_rows, 0);
    assert_eq!(hour_totals(&mut db).0, 9);
    // Fallbacks are capped at requests, like every minute reader does.
    let fallbacks = db.int("SELECT SUM(fallbacks) FROM usage_hour", &[]);
    assert_eq!(fallbacks, 4);
    // Later ticks fold later minutes into the same hour rows.
    let later = fold_usage(&mut db, NOW + 15 * 60_000).unwrap();
    assert_eq!((later.from, later.hour_rows), (fold.until, 1));
    assert_eq!(hour_totals(&mut db).0, 109);
    assert_eq!(system::folded_until(&mut db).unwrap(), later.until);
}

#[test]
fn retention_keeps_hour_rollups_twice_as_long() {
    let mut db = db();
    for days in [20, 45, 70] {
        usage(&mut db, MINUTE_S - days * 86_400, "success", 1, 0);
    }
    fold_usage(&mut db, NOW).unwrap();
    let r = retention(&mut db, "30", NOW).unwrap();
    assert_eq!((r.deleted.usage_minute, r.deleted.usage_hour), (2, 1));
    assert_eq!(count(&mut db, "usage_minute"), 1);
    assert_eq!(hour_totals(&mut db).0, 2, "20 and 45 days old");
}
