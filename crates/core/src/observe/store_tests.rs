//! Store tests against a real in-memory SQLite (rusqlite), with the real
//! migrations applied.

use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::migrate;
use crate::observe::alerts::{MatchOp, NotificationKind};
use crate::test_db::{count, db};

const T0: i64 = 1_800_000_000_000;
const MIN: i64 = 60_000;

fn external(fp: &str, firing: bool) -> ExternalAlert {
    ExternalAlert {
        fingerprint: fp.into(),
        name: "HighLatency".into(),
        severity: Severity::Critical,
        labels: BTreeMap::from([
            ("alertname".into(), "HighLatency".into()),
            ("instance".into(), "gw-1".into()),
        ]),
        summary: if firing { "p95 > 5s" } else { "back to normal" }.into(),
        firing,
        starts_at_ms: None,
        ends_at_ms: None,
    }
}

fn firing_state(fp: &str, severity: Severity, fired_at: i64) -> AlertState {
    AlertState {
        fingerprint: fp.into(),
        name: format!("Rule-{fp}"),
        source: AlertSource::Rule,
        severity,
        labels: BTreeMap::from([("alertname".into(), format!("Rule-{fp}"))]),
        status: AlertStatus::Firing,
        value: Some(0.25),
        active_since_ms: Some(fired_at - MIN),
        fired_at_ms: Some(fired_at),
        resolved_at_ms: None,
        acknowledged_by: None,
        acknowledged_at_ms: None,
        resolved_by: None,
        incidents: 2,
        total_repair_ms: 7 * MIN as u64,
        last_repair_ms: Some(3 * MIN as u64),
    }
}

#[test]
fn migrations_create_the_tables_once() {
    let mut db = db();
    for table in ["alert_states", "silences", "outbox"] {
        assert_eq!(count(&mut db, table), 0, "{table}");
    }
    // `control` starts with the model catalog's stamp (migration 26) and
    // the org settings' (migration 27) only.
    assert_eq!(count(&mut db, "control"), 2);
    assert_eq!(count(&mut db, "control WHERE key = 'catalog_stamp'"), 1);
    assert_eq!(
        count(&mut db, "control WHERE key = 'org_settings_stamp'"),
        1
    );
    let again = migrate::apply(&mut db, 2).unwrap();
    assert!(again.applied.is_empty());
    let latest = migrate::MIGRATIONS.last().map_or(0, |m| m.version);
    assert_eq!(again.current_version, latest);
}

#[test]
fn alert_round_trip_keeps_every_field_and_summary() {
    let mut db = db();
    let mut s = firing_state("a1", Severity::Warning, T0);
    s.acknowledged_by = Some("ana".into());
    s.acknowledged_at_ms = Some(T0 + 5);
    s.resolved_by = Some("bo".into());
    s.resolved_at_ms = Some(T0 - 10 * MIN);
    upsert_alert(&mut db, &s, Some("error rate 25%"), T0).unwrap();
    let r = get_alert(&mut db, "a1").unwrap().unwrap();
    assert_eq!(r.state, s);
    assert_eq!(
        (r.summary.as_str(), r.updated_at_ms),
        ("error rate 25%", T0)
    );

    // Without a summary the stored one stays; a new row gets the name.
    s.status = AlertStatus::Resolved;
    upsert_alert(&mut db, &s, None, T0 + 1).unwrap();
    let r = get_alert(&mut db, "a1").unwrap().unwrap();
    assert_eq!(r.state.status, AlertStatus::Resolved);
    assert_eq!(
        (r.summary.as_str(), r.updated_at_ms),
        ("error rate 25%", T0 + 1)
    );
    upsert_alert(&mut db, &firing_state("a2", Severity::Info, T0), None, T0).unwrap();
    assert_eq!(
        get_alert(&mut db, "a2").unwrap().unwrap().summary,
        "Rule-a2"
    );
    assert_eq!(get_alert(&mut db, "nope").unwrap(), None);

    assert!(delete_alert(&mut db, "a2").unwrap());
    assert!(!delete_alert(&mut db, "a2").unwrap());
}

#[test]
fn listing_filters_and_orders_by_severity_then_recency() {
    let mut db = db();
    upsert_alert(
        &mut db,
        &firing_state("w-old", Severity::Warning, T0),
        None,
        T0,
    )
    .unwrap();
    upsert_alert(
        &mut db,
        &firing_state("w-new", Severity::Warning, T0 + MIN),
        None,
        T0,
    )
    .unwrap();
    upsert_alert(
        &mut db,
        &firing_state("c", Severity::Critical, T0),
        None,
        T0,
    )
    .unwrap();
    upsert_alert(
        &mut db,
        &firing_state("i", Severity::Info, T0 + 2 * MIN),
        None,
        T0,
    )
    .unwrap();
    let mut resolved = firing_state("r", Severity::Critical, T0);
    resolved.status = AlertStatus::Resolved;
    resolved.source = AlertSource::Alertmanager;
    upsert_alert(&mut db, &resolved, None, T0).unwrap();

    let ids = |v: Vec<AlertRecord>| -> Vec<String> {
        v.into_iter().map(|r| r.state.fingerprint).collect()
    };
    assert_eq!(
        ids(active_alerts(&mut db).unwrap()),
        ["c", "w-new", "w-old", "i"]
    );
    assert_eq!(
        ids(list_alerts(&mut db, &AlertQuery::default()).unwrap()).len(),
        5
    );
    let q = AlertQuery {
        source: Some(AlertSource::Alertmanager),
        ..AlertQuery::default()
    };
    assert_eq!(ids(list_alerts(&mut db, &q).unwrap()), ["r"]);
    let q = AlertQuery {
        status: Some(AlertStatus::Firing),
        limit: Some(2),
        ..AlertQuery::default()
    };
    assert_eq!(ids(list_alerts(&mut db, &q).unwrap()), ["c", "w-new"]);
}

#[test]
fn acknowledge_queues_one_notification_and_refusals_change_nothing() {
    let mut db = db();
    upsert_alert(
        &mut db,
        &firing_state("a", Severity::Critical, T0),
        Some("s"),
        T0,
    )
    .unwrap();

    let out = acknowledge_alert(&mut db, "a", "slack:ana", T0 + MIN).unwrap();
    assert_eq!(
        out.alert.state.acknowledged_by.as_deref(),
        Some("slack:ana")
    );
    assert_eq!(out.alert.state.acknowledged_at_ms, Some(T0 + MIN));
    assert_eq!(out.alert.summary, "s");
    let stored = get_alert(&mut db, "a").unwrap().unwrap();
    assert_eq!(stored.state, out.alert.state);
    let id = out.queued.unwrap();
    let msg = get_message(&mut db, id).unwrap().unwrap();
    assert_eq!(
        (msg.kind.as_str(), msg.target.as_str()),
        (KIND_ALERT, TARGET_DEFAULT)
    );
    assert_eq!(msg.payload["kind"], "acknowledged");
    assert_eq!(msg.payload["by"], "slack:ana");
    assert_eq!(msg.next_attempt_at_ms, T0 + MIN);

    let before = (count(&mut db, "outbox"), get_alert(&mut db, "a").unwrap());
    assert_eq!(
        acknowledge_alert(&mut db, "a", "bo", T0 + 2 * MIN),
        Err(StoreError::Refused(ActionError::AlreadyAcknowledged(
            "a".into(),
            "slack:ana".into()
        )))
    );
    assert_eq!(
        acknowledge_alert(&mut db, "zzz", "bo", T0),
        Err(StoreError::Refused(ActionError::NotFound("zzz".into())))
    );
    assert_eq!(
        (count(&mut db, "outbox"), get_alert(&mut db, "a").unwrap()),
        before
    );
}

#[test]
fn resolve_records_mttr_and_refuses_a_second_time() {
    let mut db = db();
    upsert_alert(
        &mut db,
        &firing_state("a", Severity::Critical, T0),
        None,
        T0,
    )
    .unwrap();
    let out = resolve_alert(&mut db, "a", "slack:bo", T0 + 4 * MIN).unwrap();
    let s = &out.alert.state;
    assert_eq!(s.status, AlertStatus::Resolved);
    assert_eq!(s.resolved_by.as_deref(), Some("slack:bo"));
    assert_eq!((s.incidents, s.last_repair_ms), (3, Some(4 * MIN as u64)));
    assert_eq!(s.total_repair_ms, 11 * MIN as u64);
    assert!(out.queued.is_some());
    assert_eq!(
        resolve_alert(&mut db, "a", "slack:bo", T0 + 5 * MIN),
        Err(StoreError::Refused(ActionError::NotFiring("a".into())))
    );
    assert_eq!(count(&mut db, "outbox"), 1);
    assert_eq!(get_alert(&mut db, "a").unwrap().unwrap().state, *s);
}

#[test]
fn incidents_give_mean_times_to_acknowledge_and_resolve_per_window() {
    let mut db = db();
    let day = 24 * 60 * MIN;
    let now = T0 + 40 * day;
    // Thirty-five days ago: fired, acknowledged after 2 min, resolved after 10.
    let old = T0 + 5 * day;
    upsert_alert(
        &mut db,
        &firing_state("a", Severity::Critical, old),
        None,
        old,
    )
    .unwrap();
    acknowledge_alert(&mut db, "a", "ann", old + 2 * MIN).unwrap();
    resolve_alert(&mut db, "a", "ann", old + 10 * MIN).unwrap();
    // Three days ago the same alert fired again: acknowledged after 4 min,
    // resolved after 20; a repeated upsert of the resolved state changes nothing.
    let recent = now - 3 * day;
    upsert_alert(
        &mut db,
        &firing_state("a", Severity::Critical, recent),
        None,
        recent,
    )
    .unwrap();
    acknowledge_alert(&mut db, "a", "bo", recent + 4 * MIN).unwrap();
    let resolved = resolve_alert(&mut db, "a", "bo", recent + 20 * MIN).unwrap();
    upsert_alert(&mut db, &resolved.alert.state, None, recent + 30 * MIN).unwrap();
    // A day ago another alert fired and is still open, unacknowledged.
    upsert_alert(
        &mut db,
        &firing_state("b", Severity::Warning, now - day),
        None,
        now - day,
    )
    .unwrap();
    assert_eq!(count(&mut db, "alert_incidents"), 3);

    let week = incident_stats(&mut db, now - 7 * day).unwrap();
    assert_eq!(
        week,
        IncidentStats {
            incidents: 2,
            acknowledged: 1,
            resolved: 1,
            open: 1,
            mtta_ms: Some(4 * MIN as u64),
            mttr_ms: Some(20 * MIN as u64),
        }
    );
    let month = incident_stats(&mut db, now - 30 * day).unwrap();
    assert_eq!(
        (month.incidents, month.open),
        (2, 1),
        "35 days ago is outside"
    );
    let all = incident_stats(&mut db, 0).unwrap();
    assert_eq!(
        (all.mtta_ms, all.mttr_ms),
        (Some(3 * MIN as u64), Some(15 * MIN as u64))
    );
    // Nothing in a window: no means.
    assert_eq!(
        incident_stats(&mut db, now + 1).unwrap(),
        IncidentStats::default()
    );
}

#[test]
fn incidents_of_alerts_that_fired_before_the_migration_are_carried_over() {
    let mut db = crate::test_db::empty();
    let up_to_9: Vec<migrate::Migration> = migrate::MIGRATIONS
        .iter()
        .copied()
        .filter(|m| m.version <= 9)
        .collect();
    migrate::apply_list(&mut db, &up_to_9, T0).unwrap();
    let mut firing = firing_state("a", Severity::Critical, T0);
    upsert_alert_states_only(&mut db, &firing);
    firing.fingerprint = "b".into();
    firing.status = AlertStatus::Resolved;
    firing.resolved_at_ms = Some(T0 + 6 * MIN);
    upsert_alert_states_only(&mut db, &firing);
    migrate::apply(&mut db, T0).unwrap();
    let stats = incident_stats(&mut db, 0).unwrap();
    assert_eq!((stats.incidents, stats.resolved), (2, 1));
    assert_eq!(stats.mttr_ms, Some(6 * MIN as u64));
}

/// Writes an alert state the way releases before migration 16 did.
fn upsert_alert_states_only(db: &mut crate::test_db::TestDb, s: &AlertState) {
    db.execute(
        "INSERT INTO alert_states (fingerprint, name, source, severity, status, fired_at, \
         resolved_at, created_at, updated_at) VALUES (?, ?, 'rule', 'critical', ?, ?, ?, 0, 0)",
        &[
            SqlValue::Text(s.fingerprint.clone()),
            SqlValue::Text(s.name.clone()),
            SqlValue::Text(status_str(s.status).into()),
            opt_int(s.fired_at_ms),
            opt_int(s.resolved_at_ms),
        ],
    )
    .unwrap();
}

#[test]
fn a_failing_statement_rolls_the_whole_action_back() {
    let mut db = db();
    upsert_alert(
        &mut db,
        &firing_state("a", Severity::Critical, T0),
        None,
        T0,
    )
    .unwrap();
    db.fail_on = Some("INSERT INTO outbox");
    let err = acknowledge_alert(&mut db, "a", "ana", T0 + MIN).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Sql {
                context: "queue message",
                ..
            }
        ),
        "{err}"
    );
    db.fail_on = None;
    let s = get_alert(&mut db, "a").unwrap().unwrap().state;
    assert_eq!(
        s.acknowledged_by, None,
        "the acknowledgement was rolled back"
    );
    assert_eq!(count(&mut db, "outbox"), 0);
    // The connection is usable again (no transaction left open).
    assert!(acknowledge_alert(&mut db, "a", "ana", T0 + MIN).is_ok());
}

#[test]
fn an_external_alert_cannot_fire_or_resolve_another_source_s_alert() {
    // Ids are per source: a webhook naming a rule's fingerprint is listed as
    // conflicting and the rule's alert is left as it was.
    let mut db = db();
    let rule = firing_state("r1", Severity::Critical, T0);
    upsert_alert(&mut db, &rule, Some("rule says so"), T0).unwrap();
    let out = apply_external_alerts(
        &mut db,
        AlertSource::Alertmanager,
        &[external("r1", false), external("fp9", true)],
        T0 + MIN,
    )
    .unwrap();
    assert_eq!(out.conflicting, ["r1"]);
    assert_eq!(out.fired, ["fp9"]);
    let r = get_alert(&mut db, "r1").unwrap().unwrap();
    assert_eq!(r.state, rule);
    assert_eq!(r.summary, "rule says so");
}

#[test]
fn an_external_alert_s_implausible_times_are_taken_as_now() {
    // A sender's clock in the year 9999 (or 1970) would keep an incident in
    // every window, or record 57 years of repair time.
    let mut db = db();
    let src = AlertSource::Alertmanager;
    let mut future = external("fut", true);
    future.starts_at_ms = Some(253_402_300_799_999);
    let mut past = external("past", true);
    past.starts_at_ms = Some(1);
    let mut recent = external("recent", true);
    recent.starts_at_ms = Some(T0 - 5 * MIN);
    apply_external_alerts(&mut db, src, &[future, past, recent], T0).unwrap();
    for (fp, fired) in [("fut", T0), ("past", T0), ("recent", T0 - 5 * MIN)] {
        let r = get_alert(&mut db, fp).unwrap().unwrap();
        assert_eq!(r.state.fired_at_ms, Some(fired), "{fp}");
    }
}

#[test]
fn external_alerts_dedup_by_fingerprint_and_resolve() {
    let mut db = db();
    let src = AlertSource::Alertmanager;
    let out = apply_external_alerts(
        &mut db,
        src,
        &[
            external("fp1", true),
            external("fp1", true),
            external("fp2", true),
        ],
        T0,
    )
    .unwrap();
    assert_eq!(out.fired, ["fp1", "fp2"]);
    assert_eq!(out.queued, 2);
    assert_eq!(count(&mut db, "alert_states"), 2);
    let r = get_alert(&mut db, "fp1").unwrap().unwrap();
    assert_eq!((r.state.source, r.state.status), (src, AlertStatus::Firing));
    assert_eq!(r.state.fired_at_ms, Some(T0));
    assert_eq!(r.summary, "p95 > 5s");

    // A repeat changes nothing and queues nothing.
    let out = apply_external_alerts(&mut db, src, &[external("fp1", true)], T0 + MIN).unwrap();
    assert_eq!((out.unchanged, out.queued), (vec!["fp1".to_owned()], 0));
    assert_eq!(count(&mut db, "outbox"), 2);

    // Resolve: MTTR recorded; a resolve of an unknown alert is ignored.
    let out = apply_external_alerts(
        &mut db,
        src,
        &[external("fp1", false), external("ghost", false)],
        T0 + 10 * MIN,
    )
    .unwrap();
    assert_eq!(out.resolved, ["fp1"]);
    assert_eq!(out.unchanged, ["ghost"]);
    assert_eq!(out.queued, 1);
    let r = get_alert(&mut db, "fp1").unwrap().unwrap();
    assert_eq!(r.state.status, AlertStatus::Resolved);
    assert_eq!(r.state.last_repair_ms, Some(10 * MIN as u64));
    assert_eq!(r.summary, "back to normal");
    assert_eq!(get_alert(&mut db, "ghost").unwrap(), None);

    // Firing again reopens it; the webhook source is recorded for new ones.
    let out = apply_external_alerts(&mut db, src, &[external("fp1", true)], T0 + 20 * MIN).unwrap();
    assert_eq!(out.fired, ["fp1"]);
    let out =
        apply_external_alerts(&mut db, AlertSource::Webhook, &[external("w", true)], T0).unwrap();
    assert_eq!(out.fired, ["w"]);
    assert_eq!(
        get_alert(&mut db, "w").unwrap().unwrap().state.source,
        AlertSource::Webhook
    );
}

fn silence(id: &str, start: i64, end: i64) -> Silence {
    Silence {
        id: id.into(),
        matchers: vec![Matcher::eq("alertname", "HighLatency")],
        starts_at_ms: start,
        ends_at_ms: end,
        created_by: "ana".into(),
        comment: "maintenance".into(),
    }
}

#[test]
fn silences_crud_and_muting() {
    let mut db = db();
    let s1 = silence("s1", T0, T0 + 60 * MIN);
    let mut s2 = silence("s2", T0 + 120 * MIN, T0 + 180 * MIN);
    s2.matchers.push(Matcher {
        name: "env".into(),
        value: "dev".into(),
        op: MatchOp::NotEqual,
    });
    create_silence(&mut db, &s1, T0).unwrap();
    create_silence(&mut db, &s2, T0).unwrap();
    assert_eq!(
        create_silence(&mut db, &s1, T0),
        Err(StoreError::DuplicateSilence("s1".into()))
    );
    let mut bad = silence("b", T0, T0);
    assert!(matches!(
        create_silence(&mut db, &bad, T0),
        Err(StoreError::InvalidSilence(_))
    ));
    bad.ends_at_ms = T0 + 1;
    bad.matchers.clear();
    assert!(matches!(
        create_silence(&mut db, &bad, T0),
        Err(StoreError::InvalidSilence(_))
    ));
    assert_eq!(get_silence(&mut db, "s2").unwrap(), Some(s2.clone()));
    assert_eq!(list_silences(&mut db).unwrap(), [s1.clone(), s2.clone()]);
    assert_eq!(
        active_silences(&mut db, T0).unwrap(),
        std::slice::from_ref(&s1)
    );
    assert!(active_silences(&mut db, T0 + 60 * MIN).unwrap().is_empty());
    assert_eq!(active_silences(&mut db, T0 + 150 * MIN).unwrap(), [s2]);

    // A silenced alert changes state but queues nothing.
    let out = apply_external_alerts(
        &mut db,
        AlertSource::Alertmanager,
        &[external("fp", true)],
        T0 + MIN,
    )
    .unwrap();
    assert_eq!((out.fired.len(), out.queued), (1, 0));
    let out = acknowledge_alert(&mut db, "fp", "ana", T0 + 2 * MIN).unwrap();
    assert_eq!(out.queued, None);
    assert_eq!(count(&mut db, "outbox"), 0);

    assert!(delete_silence(&mut db, "s1").unwrap());
    assert!(!delete_silence(&mut db, "s1").unwrap());
    assert_eq!(purge_silences(&mut db, T0 + 180 * MIN).unwrap(), 1);
    assert!(list_silences(&mut db).unwrap().is_empty());
}

#[test]
fn outbox_dedup_due_backoff_and_delivery() {
    let mut db = db();
    let payload = json!({"text": "hi"});
    let msg = |key| NewMessage {
        kind: KIND_SLACK_RESPONSE,
        target: "https://hooks.slack.com/actions/T/1/x",
        payload: &payload,
        dedup_key: key,
    };
    let a = enqueue(&mut db, &msg(Some("k1")), T0).unwrap().unwrap();
    assert_eq!(enqueue(&mut db, &msg(Some("k1")), T0 + 1).unwrap(), None);
    let b = enqueue(&mut db, &msg(None), T0 + 1).unwrap().unwrap();
    let c = enqueue(&mut db, &msg(None), T0 + 2).unwrap().unwrap();
    assert_eq!(count(&mut db, "outbox"), 3);

    let due = due_messages(&mut db, T0 + 1, 10).unwrap();
    assert_eq!(due.iter().map(|m| m.id).collect::<Vec<_>>(), [a, b]);
    assert_eq!(due[0].payload, payload);
    assert_eq!(due[0].dedup_key.as_deref(), Some("k1"));
    assert_eq!(due[0].attempts, 0);

    // Failures back off 30 s, 60 s, 120 s, …, at most an hour.
    let long = "x".repeat(2 * MAX_ERROR_CHARS);
    assert_eq!(
        mark_failed(&mut db, a, "HTTP 500", T0).unwrap(),
        Some(T0 + 30_000)
    );
    assert_eq!(
        mark_failed(&mut db, a, &long, T0).unwrap(),
        Some(T0 + 60_000)
    );
    let m = get_message(&mut db, a).unwrap().unwrap();
    assert_eq!(m.attempts, 2);
    assert_eq!(m.last_error.map(|e| e.len()), Some(MAX_ERROR_CHARS));
    let due = due_messages(&mut db, T0 + 59_999, 10).unwrap();
    assert_eq!(due.iter().map(|m| m.id).collect::<Vec<_>>(), [b, c]);
    assert_eq!(due_messages(&mut db, T0 + 60_000, 1).unwrap()[0].id, b);

    assert!(mark_delivered(&mut db, b, T0 + 5).unwrap());
    assert!(!mark_delivered(&mut db, b, T0 + 6).unwrap());
    assert_eq!(mark_failed(&mut db, b, "late", T0 + 7).unwrap(), None);
    assert_eq!(mark_failed(&mut db, 999, "x", T0).unwrap(), None);
    assert_eq!(
        pending_messages(&mut db, 10)
            .unwrap()
            .iter()
            .map(|m| m.id)
            .collect::<Vec<_>>(),
        [a, c]
    );
    assert_eq!(purge_delivered(&mut db, T0 + 5).unwrap(), 0);
    assert_eq!(purge_delivered(&mut db, T0 + 6).unwrap(), 1);
    assert_eq!(count(&mut db, "outbox"), 2);
}

#[test]
fn backoff_doubles_up_to_an_hour() {
    assert_eq!(backoff_ms(0), 30_000);
    assert_eq!(backoff_ms(1), 30_000);
    assert_eq!(backoff_ms(2), 60_000);
    assert_eq!(backoff_ms(5), 480_000);
    assert_eq!(backoff_ms(8), BACKOFF_MAX_MS);
    assert_eq!(backoff_ms(u32::MAX), BACKOFF_MAX_MS);
}

#[test]
fn notification_enqueue_is_idempotent() {
    let mut db = db();
    let n = Notification {
        kind: NotificationKind::Firing,
        fingerprint: "fp".into(),
        name: "X".into(),
        severity: Severity::Info,
        labels: BTreeMap::new(),
        value: None,
        summary: "x".into(),
        at_ms: T0,
        by: None,
    };
    assert!(enqueue_notification(&mut db, &n, T0).unwrap().is_some());
    assert_eq!(enqueue_notification(&mut db, &n, T0 + 1).unwrap(), None);
    assert_eq!(count(&mut db, "outbox"), 1);
}

#[test]
fn control_values_and_emergency_override() {
    let mut db = db();
    assert_eq!(get_control(&mut db, "x").unwrap(), None);
    set_control(&mut db, "x", &json!({"a": 1}), "ana", T0).unwrap();
    set_control(&mut db, "x", &json!({"a": 2}), "bo", T0 + 1).unwrap();
    let c = get_control(&mut db, "x").unwrap().unwrap();
    assert_eq!(
        (c.value, c.updated_by.as_str(), c.updated_at_ms),
        (json!({"a": 2}), "bo", T0 + 1)
    );
    assert!(delete_control(&mut db, "x").unwrap());
    assert!(!delete_control(&mut db, "x").unwrap());

    assert_eq!(emergency_override(&mut db).unwrap(), None);
    set_emergency_override(&mut db, Some(EmergencyOverride::On), "slack:ana", T0).unwrap();
    let (mode, c) = emergency_override(&mut db).unwrap().unwrap();
    assert_eq!(
        (mode, c.updated_by.as_str()),
        (EmergencyOverride::On, "slack:ana")
    );
    assert_eq!(c.value, json!({"mode": "on"}));
    set_emergency_override(&mut db, Some(EmergencyOverride::Off), "bo", T0 + 1).unwrap();
    assert_eq!(
        emergency_override(&mut db).unwrap().map(|(m, _)| m),
        Some(EmergencyOverride::Off)
    );
    set_emergency_override(&mut db, None, "bo", T0 + 2).unwrap();
    assert_eq!(emergency_override(&mut db).unwrap(), None);
    // Something unreadable under the key counts as automatic.
    set_control(&mut db, EMERGENCY_KEY, &json!("weird"), "x", T0).unwrap();
    assert_eq!(emergency_override(&mut db).unwrap(), None);
}

#[test]
fn emergency_is_the_override_when_set_else_the_automatic_state() {
    let mut db = db();
    let auto = |db: &mut _, active: bool| {
        set_control(
            db,
            EMERGENCY_AUTO_KEY,
            &json!({"active": active}),
            "health",
            T0,
        )
        .unwrap();
    };
    let forced = |db: &mut _, mode: Option<EmergencyOverride>| {
        set_emergency_override(db, mode, "ana", T0).unwrap();
    };
    // Never decided: off.
    assert!(!emergency_active(&mut db).unwrap());
    auto(&mut db, true);
    assert!(emergency_active(&mut db).unwrap());
    forced(&mut db, Some(EmergencyOverride::Off));
    assert!(!emergency_active(&mut db).unwrap(), "the override wins");
    auto(&mut db, false);
    forced(&mut db, Some(EmergencyOverride::On));
    assert!(emergency_active(&mut db).unwrap(), "the override wins");
    forced(&mut db, None);
    assert!(!emergency_active(&mut db).unwrap());
    // An unreadable override counts as automatic; an unreadable automatic
    // state as off.
    auto(&mut db, true);
    set_control(
        &mut db,
        EMERGENCY_KEY,
        &json!({"mode": "sideways"}),
        "x",
        T0,
    )
    .unwrap();
    assert!(emergency_active(&mut db).unwrap());
    set_control(&mut db, EMERGENCY_AUTO_KEY, &json!("weird"), "x", T0).unwrap();
    assert!(!emergency_active(&mut db).unwrap());
    // Other control values are not read as either.
    set_control(
        &mut db,
        "x",
        &json!({"mode": "on", "active": true}),
        "x",
        T0,
    )
    .unwrap();
    assert!(!emergency_active(&mut db).unwrap());
}

#[test]
fn unreadable_rows_are_errors_not_panics() {
    let mut db = db();
    db.run(
        "INSERT INTO alert_states (fingerprint, name, source, severity, status, labels, \
             created_at, updated_at) VALUES ('x', 'X', 'rule', 'info', 'firing', 'not json', 0, 0)",
        &[],
    );
    let err = get_alert(&mut db, "x").unwrap_err();
    assert!(
        matches!(
            &err,
            StoreError::Column(ColumnError {
                table: "alert_states",
                column: "labels",
                ..
            })
        ),
        "{err}"
    );
    assert!(active_alerts(&mut db).is_err());
}

#[test]
fn a_due_message_is_claimed_by_one_sender_and_held_for_a_while() {
    let mut db = db();
    let msg = NewMessage {
        kind: KIND_ALERT,
        target: TARGET_DEFAULT,
        payload: &json!({}),
        dedup_key: None,
    };
    let a = enqueue(&mut db, &msg, T0).unwrap().unwrap();
    assert!(!claim_message(&mut db, a, T0 - 1).unwrap(), "not due yet");
    assert!(claim_message(&mut db, a, T0).unwrap());
    assert!(
        !claim_message(&mut db, a, T0 + 1).unwrap(),
        "held by its sender"
    );
    assert!(due_messages(&mut db, T0 + 1, 10).unwrap().is_empty());
    // A sender that died: due again once the hold lapses.
    assert!(claim_message(&mut db, a, T0 + CLAIM_HOLD_MS).unwrap());
    // Given back (no channel): due at once.
    assert!(unclaim_message(&mut db, a, T0 + CLAIM_HOLD_MS).unwrap());
    assert_eq!(
        due_messages(&mut db, T0 + CLAIM_HOLD_MS, 10).unwrap()[0].id,
        a
    );
    assert!(claim_message(&mut db, a, T0 + CLAIM_HOLD_MS).unwrap());
    assert!(mark_delivered(&mut db, a, T0 + CLAIM_HOLD_MS + 5).unwrap());
    assert!(
        !claim_message(&mut db, a, T0 + 10 * CLAIM_HOLD_MS).unwrap(),
        "delivered"
    );
    assert!(!unclaim_message(&mut db, a, T0).unwrap());
    assert!(!claim_message(&mut db, 999, T0).unwrap());
}

#[test]
fn senders_racing_for_due_messages_send_each_once() {
    use std::sync::{Arc, Barrier};
    let open = crate::test_db::shared("outbox-claims");
    let mut setup = open();
    migrate::apply(&mut setup, 1).unwrap();
    let msg = NewMessage {
        kind: KIND_ALERT,
        target: TARGET_DEFAULT,
        payload: &json!({}),
        dedup_key: None,
    };
    let ids: Vec<i64> = (0..10)
        .map(|_| enqueue(&mut setup, &msg, T0).unwrap().unwrap())
        .collect();
    let barrier = Arc::new(Barrier::new(3));
    let handles: Vec<_> = (0..3)
        .map(|_| {
            // Opened before the thread: a failed open cannot strand the
            // others at the barrier.
            let (mut db, barrier, ids) = (open(), Arc::clone(&barrier), ids.clone());
            std::thread::spawn(move || {
                barrier.wait();
                ids.iter()
                    .filter(|id| claim_message(&mut db, **id, T0 + 1).unwrap())
                    .count()
            })
        })
        .collect();
    let claimed: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(claimed, 10, "each message claimed by exactly one sender");
}
