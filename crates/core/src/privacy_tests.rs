#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use serde_json::json;

use super::*;
use crate::test_db::{TestDb, count, db};

const DAY: i64 = 86_400_000;

fn request_row(db: &mut TestDb, id: &str, ts: i64) {
    subject_request_row(db, id, None, ts);
}

/// A request row as the settlement writes it, with its subject.
fn subject_request_row(db: &mut TestDb, id: &str, subject: Option<&str>, ts: i64) {
    run(
        db,
        "INSERT INTO requests (id, ts, key_id, route, tier, entry_tier, provider, model, attempts, latency_ms, \
         prompt_tokens, completion_tokens, cost_unknown, outcome, fallbacks, cached, stream, variant, detail, subject) \
         VALUES (?, ?, 'k', 'chat', 'basic', 'basic', 'offline', 'm', 0, 1, 1, 1, 0, 'success', 0, 0, 0, '', '{}', ?)",
        &[
            SqlValue::Text(id.into()),
            SqlValue::Integer(ts),
            subject.map_or(SqlValue::Null, |s| SqlValue::Text(s.into())),
        ],
    )
    .unwrap();
}

fn event(db: &mut TestDb, subject: &str, at: i64) {
    run(
        db,
        "INSERT INTO events (at, key_id, targeting_key, flag_key, variant, name) VALUES (?, 'k', ?, 'f', 'on', 'buy')",
        &[SqlValue::Integer(at), SqlValue::Text(subject.into())],
    )
    .unwrap();
}

/// Feedback with a comment on request `id`.
fn feedback(db: &mut TestDb, id: &str, comment: &str) {
    run(
        db,
        "INSERT INTO feedback (request_id, ts, key_id, scale, raw_score, score, comment, provider, model, \
         tier, route, variant) VALUES (?, 1, 'k', 'thumbs', 1, 1.0, ?, 'p', 'm', 'basic', 'chat', '')",
        &[SqlValue::Text(id.into()), SqlValue::Text(comment.into())],
    )
    .unwrap();
}

fn opt_in(db: &mut TestDb, extra: Value) {
    let mut body = json!({"store_bodies": true});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let settings = parse_settings(&body).unwrap();
    save_settings(db, DEFAULT_ORG, &settings, "ann", 0).unwrap();
}

fn log(db: &mut TestDb, id: &str, subject: Option<&str>, ts: i64, prompt: &Value, answer: &str) {
    subject_request_row(db, id, subject, ts);
    let logged = Logged {
        request_id: id,
        subject,
        ts_ms: ts,
        prompt: &|| prompt.clone(),
        answer,
    };
    log_request(db, DEFAULT_ORG, &logged).unwrap();
}

#[test]
fn bodies_are_not_stored_by_default() {
    let mut db = db();
    log(
        &mut db,
        "r1",
        Some("u1"),
        1,
        &json!([{"role": "user", "content": "a@b.io"}]),
        "ok",
    );
    assert_eq!(count(&mut db, "request_bodies"), 0);
    let extras = request_extras(&mut db, "r1").unwrap();
    assert_eq!(extras, json!({"subject": "u1", "bodies": null}));
}

#[test]
fn opted_in_bodies_are_stored_masked_with_custom_patterns() {
    let mut db = db();
    opt_in(
        &mut db,
        json!({"mask_patterns": [{"name": "ticket", "pattern": "TCK-[0-9]+"}]}),
    );
    let prompt = json!([{"role": "user", "content": "I am ann@corp.example, card 4111 1111 1111 1111, TCK-991"}]);
    log(&mut db, "r1", None, 1, &prompt, "Call +44 20 7946 0958");
    let extras = request_extras(&mut db, "r1").unwrap();
    let bodies = &extras["bodies"];
    assert_eq!(
        bodies["prompt"][0]["content"],
        "I am [MASKED:email], card [MASKED:card], [MASKED:ticket]"
    );
    assert_eq!(bodies["answer"], "Call [MASKED:phone]");
    assert_eq!(
        bodies["masked"],
        json!({"card": 1, "email": 1, "phone": 1, "ticket": 1})
    );
    let raw: Vec<Vec<SqlValue>> =
        run(&mut db, "SELECT prompt || answer FROM request_bodies", &[]).unwrap();
    let raw = raw[0][0].as_str().unwrap();
    assert!(
        !raw.contains("ann@corp.example") && !raw.contains("4111"),
        "{raw}"
    );
}

#[test]
fn settings_round_trip_and_return_the_previous_ones() {
    let mut db = db();
    assert_eq!(
        load_settings(&mut db, DEFAULT_ORG).unwrap(),
        OrgSettings::default()
    );
    let new =
        parse_settings(&json!({"store_bodies": true, "retention": {"events": 30, "audit": null}}))
            .unwrap();
    let before = save_settings(&mut db, DEFAULT_ORG, &new, "ann", 5).unwrap();
    assert_eq!(before, OrgSettings::default());
    assert_eq!(load_settings(&mut db, DEFAULT_ORG).unwrap(), new);
    assert_eq!(
        new.to_json(),
        json!({"store_bodies": true, "mask_patterns": [],
               "retention": {"request_bodies": null, "telemetry": null, "events": 30, "audit": null}})
    );
    assert_eq!(
        load_settings(&mut db, "other-org").unwrap(),
        OrgSettings::default()
    );
}

#[test]
fn each_bad_setting_is_its_own_error() {
    for (body, field) in [
        (json!({"store_bodies": "yes"}), "store_bodies"),
        (json!({"colour": "red"}), "colour"),
        (json!({"mask_patterns": "x"}), "mask_patterns"),
        (json!({"mask_patterns": [{"name": "a"}]}), "mask_patterns"),
        (
            json!({"mask_patterns": [{"name": "a", "pattern": "("}]}),
            "mask_patterns",
        ),
        (
            json!({"mask_patterns": [{"name": "A", "pattern": "x"}]}),
            "mask_patterns",
        ),
        (json!({"retention": 30}), "retention"),
        (json!({"retention": {"logs": 3}}), "retention.logs"),
        (json!({"retention": {"events": 0}}), "retention.events"),
        (json!({"retention": {"audit": 3651}}), "retention.audit"),
        (
            json!({"retention": {"telemetry": 1.5}}),
            "retention.telemetry",
        ),
        (
            json!({"retention": {"request_bodies": "30"}}),
            "retention.request_bodies",
        ),
    ] {
        let error = parse_settings(&body).unwrap_err();
        assert_eq!(error.field.as_deref(), Some(field), "{body}: {error:?}");
        assert_eq!(error.code, Code::InvalidRequest, "{body}");
    }
    assert_eq!(
        parse_settings(&json!([1])).unwrap_err().code,
        Code::InvalidJson
    );
}

#[test]
fn subject_deletion_removes_rows_of_that_user_only_and_keeps_aggregates() {
    let mut db = db();
    opt_in(&mut db, json!({}));
    log(&mut db, "r1", Some("u1"), 1, &json!([]), "a");
    log(&mut db, "r2", Some("u1"), 2, &json!([]), "b");
    log(&mut db, "r3", Some("u2"), 3, &json!([]), "c");
    feedback(&mut db, "r1", "my name is Jane");
    feedback(&mut db, "r3", "other user");
    event(&mut db, "u1", 1);
    event(&mut db, "u2", 1);
    run(&mut db, "INSERT INTO usage_minute (minute, tier, provider, model, outcome, variant, requests) VALUES (0, 'basic', 'offline', 'm', 'success', '', 3)", &[]).unwrap();
    let deleted = delete_subject(&mut db, DEFAULT_ORG, "u1").unwrap();
    assert_eq!(
        deleted,
        SubjectDeleted {
            events: 1,
            requests: 2,
            request_bodies: 2,
            feedback: 1,
        }
    );
    assert_eq!(count(&mut db, "requests"), 1);
    assert_eq!(count(&mut db, "request_bodies"), 1);
    assert_eq!(count(&mut db, "events"), 1);
    assert_eq!(count(&mut db, "feedback"), 1, "u2's feedback stays");
    assert_eq!(count(&mut db, "usage_minute"), 1);
    assert_eq!(
        delete_subject(&mut db, DEFAULT_ORG, "u1").unwrap(),
        SubjectDeleted::default()
    );
}

#[test]
fn subject_deletion_stays_inside_its_org() {
    // The same subject name in two orgs is two people: deleting one org's
    // user leaves the other org's rows, and the default org (keys of no org)
    // is an org of its own.
    let mut db = db();
    run(
        &mut db,
        "INSERT INTO api_keys (id, name, key_hash, prefix, created_at, org_id) VALUES ('kb', 'b', 'hb', 'p', 0, 'beta')",
        &[],
    )
    .unwrap();
    subject_request_row(&mut db, "r-default", Some("42"), 1);
    event(&mut db, "42", 1);
    run(
        &mut db,
        "INSERT INTO requests (id, ts, key_id, route, tier, entry_tier, provider, model, attempts, latency_ms, \
         prompt_tokens, completion_tokens, cost_unknown, outcome, fallbacks, cached, stream, variant, detail, subject) \
         VALUES ('r-beta', 1, 'kb', 'chat', 'basic', 'basic', 'offline', 'm', 0, 1, 1, 1, 0, 'success', 0, 0, 0, '', '{}', '42')",
        &[],
    )
    .unwrap();
    run(
        &mut db,
        "INSERT INTO events (at, key_id, targeting_key, flag_key, variant, name) VALUES (1, 'kb', '42', 'f', 'on', 'buy')",
        &[],
    )
    .unwrap();
    run(
        &mut db,
        "INSERT INTO request_bodies (request_id, org_id, subject, ts, prompt, answer) VALUES ('r-beta', 'beta', '42', 1, '[]', 'x')",
        &[],
    )
    .unwrap();
    feedback(&mut db, "r-beta", "beta's user");
    let beta = delete_subject(&mut db, "beta", "42").unwrap();
    assert_eq!(
        beta,
        SubjectDeleted {
            events: 1,
            requests: 1,
            request_bodies: 1,
            feedback: 1,
        }
    );
    // The default org's user 42 is still there, and is deleted on its own.
    assert_eq!(count(&mut db, "requests"), 1);
    assert_eq!(count(&mut db, "events"), 1);
    let default = delete_subject(&mut db, DEFAULT_ORG, "42").unwrap();
    assert_eq!((default.requests, default.events), (1, 1));
    assert_eq!(count(&mut db, "requests"), 0);
}

#[test]
fn bad_subjects_are_refused() {
    assert!(parse_subject("user-1").is_ok());
    for bad in ["", "a\nb", &"x".repeat(257)] {
        assert_eq!(
            parse_subject(bad).unwrap_err().field.as_deref(),
            Some("targetingKey")
        );
    }
}

#[test]
fn retention_deletes_each_class_by_its_own_days() {
    let mut db = db();
    let now = 400 * DAY;
    opt_in(
        &mut db,
        json!({"retention": {"request_bodies": 10, "events": 20, "audit": 30}}),
    );
    for (id, age) in [("old", 11), ("new", 9)] {
        log(&mut db, id, None, now - age * DAY, &json!([]), "x");
    }
    event(&mut db, "u", now - 21 * DAY);
    event(&mut db, "u", now - 19 * DAY);
    for age in [31, 29] {
        crate::audit::append(
            &mut db,
            "ann",
            now - age * DAY,
            crate::audit::Record::new("scan", "run", "x"),
        )
        .unwrap();
    }
    let deleted = apply_retention(&mut db, DEFAULT_ORG, now).unwrap();
    assert_eq!(
        deleted,
        RetentionDeleted {
            request_bodies: 1,
            events: 1,
            audit: 1
        }
    );
    assert_eq!(
        request_extras(&mut db, "new").unwrap()["bodies"]["answer"],
        "x"
    );
    assert_eq!(
        request_extras(&mut db, "old").unwrap()["bodies"],
        Value::Null
    );
}

#[test]
fn retention_defaults_keep_events_and_audit_and_bodies_90_days() {
    let mut db = db();
    let now = 400 * DAY;
    opt_in(&mut db, json!({}));
    log(&mut db, "old", None, now - 91 * DAY, &json!([]), "x");
    log(&mut db, "new", None, now - 89 * DAY, &json!([]), "x");
    event(&mut db, "u", 0);
    crate::audit::append(
        &mut db,
        "ann",
        0,
        crate::audit::Record::new("scan", "run", "x"),
    )
    .unwrap();
    let deleted = apply_retention(&mut db, DEFAULT_ORG, now).unwrap();
    assert_eq!(
        deleted,
        RetentionDeleted {
            request_bodies: 1,
            events: 0,
            audit: 0
        }
    );
}

#[test]
fn telemetry_days_follow_the_org_then_the_variable() {
    let mut db = db();
    assert_eq!(telemetry_days(&mut db, DEFAULT_ORG, "30").unwrap(), "30");
    opt_in(&mut db, json!({"retention": {"telemetry": 7}}));
    assert_eq!(telemetry_days(&mut db, DEFAULT_ORG, "30").unwrap(), "7");
}

#[test]
fn every_org_keeps_its_bodies_by_its_own_days_and_events_follow_the_default_org() {
    let mut db = db();
    let now = 400 * DAY;
    opt_in(
        &mut db,
        json!({"retention": {"request_bodies": 10, "events": 20}}),
    );
    let acme = parse_settings(&json!({"store_bodies": true,
        "retention": {"request_bodies": 40, "events": 1}}))
    .unwrap();
    save_settings(&mut db, "acme", &acme, "ann", 0).unwrap();
    for (id, org) in [("default-old", DEFAULT_ORG), ("acme-old", "acme")] {
        request_row(&mut db, id, now - 30 * DAY);
        let logged = Logged {
            request_id: id,
            subject: None,
            ts_ms: now - 30 * DAY,
            prompt: &|| json!([]),
            answer: "x",
        };
        log_request(&mut db, org, &logged).unwrap();
    }
    event(&mut db, "u", now - 5 * DAY);
    let deleted = apply_retention_to_every_org(&mut db, now).unwrap();
    assert_eq!(deleted.keys().collect::<Vec<_>>(), ["", "acme"]);
    // 30 days old: past the default org's 10, within acme's 40.
    assert_eq!(deleted[""].request_bodies, 1);
    assert_eq!(deleted["acme"].request_bodies, 0);
    assert_eq!(count(&mut db, "request_bodies"), 1);
    // acme's 1-day events setting does not apply to events (they have no org).
    assert_eq!((deleted[""].events, deleted["acme"].events), (0, 0));
    assert_eq!(count(&mut db, "events"), 1);
}
