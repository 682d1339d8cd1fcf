//! Rollout storage against a real in-memory SQLite with the real
//! migrations: every change writes flag version, audit entry, row and
//! outbox message together, and refusals write nothing.

use serde_json::{Value, json};

use super::guard::{Action, Conditions, Status, Telemetry, decide};
use super::store::*;
use crate::flags::store as flag_store;
use crate::flags::{EvaluationContext, FlagSet};
use crate::observe::store::EmergencyOverride;
use crate::storage::{MemoryKeyValue, SqlValue};
use crate::test_db::{TestDb, count, db};

const T0: i64 = 1_800_000_000_000;
const MIN: i64 = 60_000;
const FLAG: &str = "generation_pipeline";

fn plan() -> Value {
    json!({
        "variant": "enhanced",
        "steps": [{"percent": 10}, {"percent": 50}, {"percent": 100}],
        "min_samples": 0,
        "guards": [{"metric": "quality", "threshold": 7.0, "window": "10m", "min_samples": 5}]
    })
}

fn started() -> (TestDb, Applied) {
    let mut db = db();
    let mut kv = MemoryKeyValue::default();
    let applied = start(&mut db, &mut kv, FLAG, &plan(), "alice", T0).unwrap();
    // The version the start wrote is published with it.
    let (version, _) = applied.flags.clone().unwrap();
    assert_eq!(
        flag_store::published_version(&mut kv).unwrap(),
        flag_store::Published::Version(version)
    );
    (db, applied)
}

fn flag_def(db: &mut TestDb) -> Value {
    let (_, state) = flag_store::select_latest(db).unwrap().unwrap();
    state.flag(FLAG).cloned().unwrap()
}

fn variant_share(db: &mut TestDb) -> usize {
    let (_, state) = flag_store::select_latest(db).unwrap().unwrap();
    let set: FlagSet = state.compile().unwrap();
    (0..1000)
        .filter(|i| {
            let ctx = EvaluationContext::new().with_targeting_key(format!("user-{i}"));
            set.evaluate(FLAG, &ctx, 0).variant.as_deref() == Some("enhanced")
        })
        .count()
}

fn audit_actions(db: &mut TestDb) -> Vec<String> {
    flag_store::audit(db, Some(FLAG), 50)
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn start_writes_flag_version_audit_row_and_message_together() {
    let (mut db, applied) = started();
    let (version, _) = applied.flags.clone().unwrap();
    assert_eq!(version, 2, "seed is version 1");
    assert_eq!(applied.record.percent(), 10);
    assert_eq!(applied.record.created_by, "alice");
    let def = flag_def(&mut db);
    assert_eq!(def["targeting"]["fractional"][0], json!(["enhanced", 10]));
    assert_eq!(def["metadata"]["dolRolloutPercent"], 10);
    let share = variant_share(&mut db);
    assert!((60..=140).contains(&share), "{share} of 1000 at 10 %");
    assert_eq!(audit_actions(&mut db), vec!["rollout-start"]);
    assert_eq!(count(&mut db, "outbox"), 1);
    assert_eq!(count(&mut db, "rollouts"), 1);
    assert!(blocks_edit(&mut db, FLAG).unwrap());
    assert!(!blocks_edit(&mut db, "other").unwrap());
}

#[test]
fn refusals_store_nothing() {
    let mut db = db();
    // Seed first so the flag table is not what changes.
    flag_store::load_latest(&mut db, T0).unwrap();
    let before = (count(&mut db, "flag_sets"), count(&mut db, "audit_log"));
    let bad = start(
        &mut db,
        &mut MemoryKeyValue::default(),
        FLAG,
        &json!({"variant": "nope", "steps": [{"percent": 100}]}),
        "a",
        T0,
    )
    .unwrap_err();
    assert_eq!(bad.status(), 400);
    assert_eq!(bad.body()["error"]["field"], "variant");
    let missing = start(
        &mut db,
        &mut MemoryKeyValue::default(),
        "no-such-flag",
        &plan(),
        "a",
        T0,
    )
    .unwrap_err();
    assert_eq!(missing.status(), 404);
    let none = admin(
        &mut db,
        &mut MemoryKeyValue::default(),
        FLAG,
        AdminOp::Pause,
        "a",
        T0,
    )
    .unwrap_err();
    assert_eq!(none.status(), 404);
    assert_eq!(
        (count(&mut db, "flag_sets"), count(&mut db, "audit_log")),
        before
    );
    assert_eq!(count(&mut db, "rollouts"), 0);
    assert_eq!(count(&mut db, "outbox"), 0);

    let (mut db, _) = started();
    let again = start(
        &mut db,
        &mut MemoryKeyValue::default(),
        FLAG,
        &plan(),
        "bob",
        T0 + MIN,
    )
    .unwrap_err();
    assert_eq!(again.status(), 409);
    let resume = admin(
        &mut db,
        &mut MemoryKeyValue::default(),
        FLAG,
        AdminOp::Resume,
        "bob",
        T0,
    )
    .unwrap_err();
    assert_eq!(resume.status(), 409);
    let restart = admin(
        &mut db,
        &mut MemoryKeyValue::default(),
        FLAG,
        AdminOp::Restart,
        "bob",
        T0,
    )
    .unwrap_err();
    assert_eq!(restart.status(), 409);
    assert_eq!(count(&mut db, "flag_sets"), 2);
}

#[test]
fn a_failing_statement_rolls_the_whole_change_back() {
    let mut db = db();
    flag_store::load_latest(&mut db, T0).unwrap();
    db.fail_on = Some("INSERT INTO outbox");
    assert!(
        start(
            &mut db,
            &mut MemoryKeyValue::default(),
            FLAG,
            &plan(),
            "a",
            T0
        )
        .is_err()
    );
    db.fail_on = None;
    assert_eq!(count(&mut db, "flag_sets"), 1);
    assert_eq!(count(&mut db, "rollouts"), 0);
    assert!(audit_actions(&mut db).is_empty());
    // Usable again afterwards.
    start(
        &mut db,
        &mut MemoryKeyValue::default(),
        FLAG,
        &plan(),
        "a",
        T0,
    )
    .unwrap();
}

#[test]
fn guard_decisions_advance_and_roll_back_the_served_rule() {
    let (mut db, applied) = started();
    let record = applied.record;
    let healthy = Telemetry {
        step_samples: 10,
        guards: vec![super::guard::GuardReading {
            variant: super::guard::Reading {
                value: Some(8.0),
                samples: 10,
            },
            control: super::guard::Reading::default(),
        }],
    };
    let d = decide(
        &record.plan,
        &record.state,
        &healthy,
        Conditions::default(),
        T0 + MIN,
    );
    assert_eq!(d.action, Action::Advance);
    let applied = apply_decision(
        &mut db,
        &mut MemoryKeyValue::default(),
        &record,
        &d,
        T0 + MIN,
    )
    .unwrap()
    .unwrap();
    assert_eq!(applied.record.percent(), 50);
    assert_eq!(applied.flags.as_ref().unwrap().0, 3);
    let share = variant_share(&mut db);
    assert!((430..=570).contains(&share), "{share} of 1000 at 50 %");

    // A decision computed on a stale record is dropped.
    assert!(
        apply_decision(
            &mut db,
            &mut MemoryKeyValue::default(),
            &record,
            &d,
            T0 + MIN
        )
        .unwrap()
        .is_none()
    );

    let record = applied.record;
    let mut bad = healthy.clone();
    bad.guards[0].variant.value = Some(4.5);
    let d = decide(
        &record.plan,
        &record.state,
        &bad,
        Conditions::default(),
        T0 + 2 * MIN,
    );
    assert_eq!(d.action, Action::RollBack);
    let applied = apply_decision(
        &mut db,
        &mut MemoryKeyValue::default(),
        &record,
        &d,
        T0 + 2 * MIN,
    )
    .unwrap()
    .unwrap();
    assert_eq!(applied.record.state.status, Status::RolledBack);
    assert_eq!(variant_share(&mut db), 0);
    let def = flag_def(&mut db);
    assert!(def.get("targeting").is_none(), "{def}");
    assert!(
        def.get("metadata")
            .and_then(|m| m.get("dolRolloutPercent"))
            .is_none()
    );
    let entries = flag_store::audit(&mut db, Some(FLAG), 1).unwrap();
    assert_eq!(entries[0]["action"], "rollout-rollback");
    assert_eq!(entries[0]["after"]["breach"]["metric"], "quality");
    assert!(
        entries[0]["after"]["reason"]
            .as_str()
            .unwrap()
            .contains("quality 4.50 < 7.00"),
        "{}",
        entries[0]["after"]
    );
    assert_eq!(count(&mut db, "outbox"), 3);
    assert!(!blocks_edit(&mut db, FLAG).unwrap());

    // Restart needs an admin, and starts from the first step.
    let restarted = admin(
        &mut db,
        &mut MemoryKeyValue::default(),
        FLAG,
        AdminOp::Restart,
        "carol",
        T0 + 3 * MIN,
    )
    .unwrap();
    assert_eq!(restarted.record.percent(), 10);
    assert_eq!(restarted.record.state.status, Status::Active);
}

#[test]
fn holds_update_the_row_without_audit_or_message() {
    let (mut db, applied) = started();
    let record = applied.record;
    let thin = Telemetry {
        step_samples: 1,
        guards: vec![super::guard::GuardReading::default()],
    };
    let d = decide(
        &record.plan,
        &record.state,
        &thin,
        Conditions::default(),
        T0 + MIN,
    );
    assert_eq!(d.action, Action::Hold);
    let (flags, audits, outbox) = (
        count(&mut db, "flag_sets"),
        count(&mut db, "audit_log"),
        count(&mut db, "outbox"),
    );
    let applied = apply_decision(
        &mut db,
        &mut MemoryKeyValue::default(),
        &record,
        &d,
        T0 + MIN,
    )
    .unwrap()
    .unwrap();
    assert!(applied.flags.is_none());
    assert_eq!(
        (
            count(&mut db, "flag_sets"),
            count(&mut db, "audit_log"),
            count(&mut db, "outbox")
        ),
        (flags, audits, outbox)
    );
    assert_eq!(get(&mut db, FLAG).unwrap().unwrap().state.reason, d.reason);
}

#[test]
fn completion_makes_the_variant_default_and_cancel_restores() {
    let (mut db, applied) = started();
    let mut record = applied.record;
    let healthy = Telemetry {
        step_samples: 10,
        guards: vec![super::guard::GuardReading {
            variant: super::guard::Reading {
                value: Some(9.0),
                samples: 10,
            },
            control: super::guard::Reading::default(),
        }],
    };
    let mut now = T0;
    while record.state.status == Status::Active {
        now += MIN;
        let d = decide(
            &record.plan,
            &record.state,
            &healthy,
            Conditions::default(),
            now,
        );
        record = apply_decision(&mut db, &mut MemoryKeyValue::default(), &record, &d, now)
            .unwrap()
            .unwrap()
            .record;
    }
    assert_eq!(record.state.status, Status::Completed);
    let def = flag_def(&mut db);
    assert_eq!(def["defaultVariant"], "enhanced");
    assert!(def.get("targeting").is_none());
    assert_eq!(variant_share(&mut db), 1000);
    assert_eq!(
        audit_actions(&mut db),
        vec![
            "rollout-complete",
            "rollout-advance",
            "rollout-advance",
            "rollout-start"
        ]
    );

    // A new rollout back to comprehensive, cancelled by an admin.
    let back = json!({"variant": "comprehensive", "steps": [{"percent": 30}, {"percent": 100}]});
    start(
        &mut db,
        &mut MemoryKeyValue::default(),
        FLAG,
        &back,
        "dave",
        now,
    )
    .unwrap();
    assert!(variant_share(&mut db) > 500);
    admin(
        &mut db,
        &mut MemoryKeyValue::default(),
        FLAG,
        AdminOp::Pause,
        "dave",
        now + MIN,
    )
    .unwrap();
    let paused = get(&mut db, FLAG).unwrap().unwrap();
    assert_eq!(paused.state.status, Status::Paused);
    let cancelled = admin(
        &mut db,
        &mut MemoryKeyValue::default(),
        FLAG,
        AdminOp::Cancel,
        "dave",
        now + 2 * MIN,
    )
    .unwrap();
    assert_eq!(cancelled.record.state.status, Status::Cancelled);
    assert_eq!(
        variant_share(&mut db),
        1000,
        "enhanced is the default again"
    );
    let cancel_again = admin(
        &mut db,
        &mut MemoryKeyValue::default(),
        FLAG,
        AdminOp::Cancel,
        "dave",
        now + 3 * MIN,
    )
    .unwrap_err();
    assert_eq!(cancel_again.status(), 409);
}

/// Carol restarts `FLAG`'s rollout at `at`.
fn restart(db: &mut TestDb, kv: &mut MemoryKeyValue, at: i64) -> Result<Applied, RolloutError> {
    admin(db, kv, FLAG, AdminOp::Restart, "carol", at)
}

/// Edits `FLAG` as the admin API does (refused under a rollout).
fn edit_flag(db: &mut TestDb, kv: &mut MemoryKeyValue, edit: impl FnOnce(&mut Value)) {
    let mut def = flag_def(db);
    edit(&mut def);
    flag_store::write_with(db, kv, "admin", T0, |db, s| {
        refuse_edits_under_rollout(db, s, s.put_flag(FLAG, def).map(|(n, e)| (n, vec![e])))
    })
    .unwrap()
    .unwrap();
}

#[test]
fn restarting_a_finished_rollout_keeps_the_flag_edits_made_since_it_finished() {
    let (mut db, _) = started();
    let mut kv = MemoryKeyValue::default();
    let cancel = |db: &mut TestDb, kv: &mut MemoryKeyValue, at: i64| {
        admin(db, kv, FLAG, AdminOp::Cancel, "dave", at).unwrap()
    };
    cancel(&mut db, &mut kv, T0 + MIN);
    // After the cancel the admin gives the flag a targeting rule.
    let rule = json!({"if": [{"==": [{"var": "country"}, "fr"]}, "basic", null]});
    edit_flag(&mut db, &mut kv, |def| def["targeting"] = rule.clone());
    let restarted = restart(&mut db, &mut kv, T0 + 2 * MIN).unwrap();
    assert_eq!(restarted.record.original_targeting, Some(rule.clone()));
    // Cancelling again gives back the admin's rule, not the one from before
    // the first start.
    cancel(&mut db, &mut kv, T0 + 3 * MIN);
    assert_eq!(flag_def(&mut db)["targeting"], rule);
}

#[test]
fn a_flag_whose_targeting_is_an_empty_object_rolls_out_and_evaluates() {
    // flagd reads `"targeting": {}` as no targeting; the rollout's rule once
    // wrapped it and every evaluation of the flag failed.
    let mut db = db();
    let mut kv = MemoryKeyValue::default();
    flag_store::load_latest(&mut db, T0).unwrap();
    edit_flag(&mut db, &mut kv, |def| def["targeting"] = json!({}));
    let applied = start(&mut db, &mut kv, FLAG, &plan(), "alice", T0).unwrap();
    assert_eq!(applied.record.original_targeting, None);
    let share = variant_share(&mut db);
    assert!((60..=140).contains(&share), "{share} of 1000 at 10 %");
}

#[test]
fn restarting_a_rollout_whose_variant_was_removed_is_refused_and_writes_nothing() {
    let (mut db, _) = started();
    let mut kv = MemoryKeyValue::default();
    admin(&mut db, &mut kv, FLAG, AdminOp::Cancel, "dave", T0 + MIN).unwrap();
    edit_flag(&mut db, &mut kv, |def| {
        def["variants"].as_object_mut().unwrap().remove("enhanced");
    });
    let before = (
        count(&mut db, "flag_sets"),
        count(&mut db, "audit_log"),
        count(&mut db, "outbox"),
    );
    let refused = restart(&mut db, &mut kv, T0 + 2 * MIN).unwrap_err();
    assert_eq!(refused.status(), 409, "{:?}", refused.body());
    assert!(
        refused.body().to_string().contains("enhanced"),
        "{:?}",
        refused.body()
    );
    assert_eq!(
        (
            count(&mut db, "flag_sets"),
            count(&mut db, "audit_log"),
            count(&mut db, "outbox"),
        ),
        before
    );
    assert_eq!(
        get(&mut db, FLAG).unwrap().unwrap().state.status,
        Status::Cancelled
    );
}

#[test]
fn rollout_messages_name_the_flag_and_reason() {
    let (mut db, _) = started();
    let rows: Vec<(String, String)> = db
        .run("SELECT kind, payload FROM outbox", &[])
        .into_iter()
        .map(|r| match &r[..] {
            [SqlValue::Text(kind), SqlValue::Text(payload)] => (kind.clone(), payload.clone()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, "scan");
    let payload: Value = serde_json::from_str(&rows[0].1).unwrap();
    assert_eq!(payload["scan"], "rollouts");
    assert_eq!(
        payload["title"],
        "Rollout of generation_pipeline → enhanced: at 10 %"
    );
    assert!(
        payload["text"]
            .as_str()
            .unwrap()
            .contains("started by alice")
    );
}

/// `n` request rows for `variant` at `ts_ms`, each 400 ms, quality `q`.
fn requests(db: &mut TestDb, ts_ms: i64, variant: &str, n: usize, q: f64) {
    for i in 0..n {
        db.run("INSERT INTO requests (id, ts, key_id, route, tier, entry_tier, provider, model, attempts, \
                 latency_ms, prompt_tokens, completion_tokens, cost_micros, cost_unknown, quality, outcome, \
                 fallbacks, cached, stream, variant, detail) VALUES (?, ?, 'k', 'chat', 'enhanced', 'enhanced', \
                 'openai', 'gpt-4o-mini', 1, 400, 10, 20, 5, 0, ?, 'success', 0, 0, 0, ?, '')", &[format!("{variant}-{ts_ms}-{i}").into(), ts_ms.into(), q.into(), variant.into()]);
    }
}

#[test]
fn the_guard_loop_reads_per_variant_telemetry_and_rolls_back() {
    let (mut db, _) = started();
    // Before the rollout started (same minute): healthy traffic of the
    // variant from an earlier rollout, which must not count.
    requests(&mut db, T0 - 1_000, "enhanced", 30, 9.5);
    // Control is fine, the variant answers badly.
    for m in 0..3 {
        requests(&mut db, T0 + m * MIN, "comprehensive", 40, 8.8);
        requests(&mut db, T0 + m * MIN, "enhanced", 5, 3.0);
    }
    // What the console shows before the loop acts: the same readings,
    // quality 3.0 against its bound 7.0.
    let record = get(&mut db, FLAG).unwrap().unwrap();
    let now = guards_now(&mut db, &record, T0 + 3 * MIN).unwrap();
    assert_eq!((now[0].state, now[0].bound), ("breaching", Some(7.0)));
    assert_eq!(
        (now[0].variant.value, now[0].variant.samples),
        (Some(3.0), 15)
    );
    let out = run_guards(&mut db, &mut MemoryKeyValue::default(), T0 + 3 * MIN).unwrap();
    assert_eq!(out.len(), 1);
    let o = &out[0];
    assert_eq!(
        o.telemetry,
        telemetry(&mut db, &record, T0 + 3 * MIN).unwrap()
    );
    assert_eq!(o.telemetry.step_samples, 15);
    assert_eq!(o.telemetry.guards[0].variant.samples, 15);
    assert_eq!(o.telemetry.guards[0].control.samples, 120);
    assert_eq!(o.decision.action, Action::RollBack, "{}", o.decision.reason);
    assert_eq!(o.percent, 0);
    assert!(o.applied.as_ref().unwrap().flags.is_some());
    assert_eq!(o.summary()["breach"]["metric"], "quality");
    assert_eq!(variant_share(&mut db), 0);
    // Rolled back: no guards to show (its windows are over).
    let record = get(&mut db, FLAG).unwrap().unwrap();
    assert!(
        guards_now(&mut db, &record, T0 + 4 * MIN)
            .unwrap()
            .is_empty()
    );
    // Nothing in progress any more: the next tick does nothing.
    assert!(
        run_guards(&mut db, &mut MemoryKeyValue::default(), T0 + 4 * MIN)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn the_guard_loop_pauses_every_rollout_in_an_emergency() {
    let (mut db, _) = started();
    crate::observe::store::set_emergency_override(&mut db, Some(EmergencyOverride::On), "ops", T0)
        .unwrap();
    let out = run_guards(&mut db, &mut MemoryKeyValue::default(), T0 + MIN).unwrap();
    assert_eq!(out[0].decision.action, Action::Pause);
    assert_eq!(out[0].percent, 10, "paused, not rolled back");
    crate::observe::store::set_emergency_override(&mut db, Some(EmergencyOverride::Off), "ops", T0)
        .unwrap();
    let out = run_guards(&mut db, &mut MemoryKeyValue::default(), T0 + 2 * MIN).unwrap();
    assert_eq!(out[0].decision.action, Action::Resume);
}

#[test]
fn a_flag_edit_racing_a_rollout_start_is_refused_inside_the_write() {
    // The admin reads the flag (no rollout yet), a rollout starts, then the
    // admin's write arrives: the check runs under the write lock, so the
    // write is refused instead of overwriting the rollout's targeting.
    let mut db = db();
    let mut kv = MemoryKeyValue::default();
    let (_, read_by_admin) = flag_store::load_latest(&mut db, T0).unwrap();
    assert!(!blocks_edit(&mut db, FLAG).unwrap());
    start(&mut db, &mut kv, FLAG, &plan(), "rollouts", T0).unwrap();
    let rolled_out = flag_def(&mut db);
    let mut edited = read_by_admin.flag(FLAG).cloned().unwrap();
    edited["defaultVariant"] = json!("basic");
    let outcome = flag_store::write_with(&mut db, &mut kv, "admin", T0, |db, s| {
        refuse_edits_under_rollout(db, s, s.put_flag(FLAG, edited).map(|(n, e)| (n, vec![e])))
    })
    .unwrap();
    let refused = outcome.unwrap_err();
    assert_eq!(refused.status(), 409, "{:?}", refused.body());
    assert_eq!(
        flag_def(&mut db),
        rolled_out,
        "the rollout's flag is untouched"
    );
    // Other flags and kill switches stay editable during the rollout.
    let other = flag_store::write_with(&mut db, &mut kv, "admin", T0, |db, s| {
        let def = json!({"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on"});
        refuse_edits_under_rollout(db, s, s.put_flag("other", def).map(|(n, e)| (n, vec![e])))
    })
    .unwrap();
    assert!(other.is_ok());
    let killed = flag_store::write_with(&mut db, &mut kv, "admin", T0, |db, s| {
        refuse_edits_under_rollout(
            db,
            s,
            s.kill(FLAG, None, T0, "admin").map(|(n, e)| (n, vec![e])),
        )
    })
    .unwrap();
    assert!(killed.is_ok());
}
