//! Admin actions against a real in-memory SQLite: rule storage and its
//! precedence, every refused input (naming its field, changing nothing),
//! silences and the emergency override.

use serde_json::json;

use super::*;
use crate::error::ApiError;
use crate::observe::alerts::ActionError;
use crate::observe::alerts::{Severity, evaluate};
use crate::observe::scans::DEFAULT_RULES;
use crate::test_db::{TestDb, db};

const T0: i64 = 1_800_000_000_000;

const ONE: &str = r#"[{"name":"Busy","metric":"requests","comparison":">","threshold":100,"window":"5m","severity":"info"}]"#;

fn field(e: &AdminError) -> &str {
    match e {
        AdminError::Invalid { field, .. } => field,
        _ => "(none)",
    }
}

fn control_rows(db: &mut TestDb) -> i64 {
    db.int("SELECT COUNT(*) FROM control", &[])
}

#[test]
fn durations_render_in_the_file_format_and_round_trip() {
    assert_eq!(format_duration(0), json!(0));
    assert_eq!(format_duration(300), json!("5m"));
    assert_eq!(format_duration(90), json!("1m30s"));
    assert_eq!(format_duration(5_400), json!("1h30m"));
    assert_eq!(format_duration(86_400 + 1), json!("1d1s"));
    let rules = parse_rules(DEFAULT_RULES).unwrap();
    let again = parse_rule_set(&rules_json(&rules).to_string()).unwrap();
    assert_eq!(again, rules);
}

#[test]
fn file_then_variable_then_stored_rules_are_in_force() {
    let mut db = db();
    let file = load_rules(&mut db, "").unwrap();
    assert_eq!(file.source, RulesSource::File);
    assert_eq!(file.rules, parse_rules(DEFAULT_RULES).unwrap());
    let var = load_rules(&mut db, ONE).unwrap();
    assert_eq!((var.source, var.rules.len()), (RulesSource::Variable, 1));
    // Storing wins over both, and records who and when.
    let rules = parse_rule_set(ONE).unwrap();
    save_rules(&mut db, &rules, "alice", T0).unwrap();
    let stored = load_rules(&mut db, "").unwrap();
    assert_eq!(stored.source, RulesSource::Stored);
    assert_eq!(stored.rules, rules);
    assert_eq!(stored.updated_by.as_deref(), Some("alice"));
    assert_eq!(stored.updated_at_ms, Some(T0));
    assert_eq!(stored.to_json()["rules"][0]["window"], "5m");
    // Reset: the file again.
    assert!(reset_rules(&mut db, "").unwrap());
    assert_eq!(load_rules(&mut db, "").unwrap().source, RulesSource::File);
    assert!(!reset_rules(&mut db, "").unwrap());
}

#[test]
fn a_bad_variable_is_a_config_error() {
    let mut db = db();
    let e = load_rules(&mut db, "[{").unwrap_err();
    assert!(matches!(e, AdminError::Config(_)), "{e}");
    assert_eq!(ApiError::from(&e).status(), 500);
}

#[test]
fn put_one_rule_starts_from_the_rules_in_force() {
    let mut db = db();
    let shipped = parse_rules(DEFAULT_RULES).unwrap().len();
    let r = parse_one_rule(
        "Busy",
        r#"{"metric":"requests","comparison":">","threshold":5,"window":"1m","severity":"warning","labels":{"team":"ops"}}"#,
    )
    .unwrap();
    assert_eq!((r.name.as_str(), r.window_secs), ("Busy", 60));
    assert!(put_rule(&mut db, "", r.clone(), "bob", T0).unwrap());
    let set = load_rules(&mut db, "").unwrap();
    assert_eq!(set.rules.len(), shipped + 1);
    // Replacing keeps the count.
    let mut r2 = r;
    r2.threshold = 50.0;
    assert!(!put_rule(&mut db, "", r2, "bob", T0 + 1).unwrap());
    let set = load_rules(&mut db, "").unwrap();
    assert_eq!(set.rules.len(), shipped + 1);
    assert_eq!(set.rules.last().unwrap().threshold, 50.0);
    // Delete; an unknown name is a 404 and changes nothing.
    delete_rule(&mut db, "", "Busy", "bob", T0 + 2).unwrap();
    assert_eq!(load_rules(&mut db, "").unwrap().rules.len(), shipped);
    let e = delete_rule(&mut db, "", "Busy", "bob", T0 + 3).unwrap_err();
    assert_eq!(
        (
            ApiError::from(&e).status(),
            ApiError::from(&e).code.as_str()
        ),
        (404, "not-found")
    );
    assert_eq!(load_rules(&mut db, "").unwrap().updated_at_ms, Some(T0 + 2));
}

#[test]
fn rule_set_errors_name_the_field() {
    let cases = [
        ("{", "(body)"),
        ("42", "(body)"),
        (r#"[{"name":"x"}]"#, "rules[0].metric"),
        (
            r#"[{"name":"x","metric":"error_rate","comparison":">","threshold":"high","window":"5m","severity":"info"}]"#,
            "rules[0].threshold",
        ),
        (
            r#"[{"name":"x","metric":"error_rate","comparison":"~","threshold":1,"window":"5m","severity":"info"}]"#,
            "rules[0].comparison",
        ),
        (
            r#"[{"name":"x","metric":"error_rate","comparison":">","threshold":1,"window":"soon","severity":"info"}]"#,
            "rules[0].window",
        ),
        (
            r#"[{"name":"x","metric":"error_rate","comparison":">","threshold":1,"window":"5m","severity":"urgent"}]"#,
            "rules[0].severity",
        ),
        (
            r#"[{"name":"x","metric":"eror_rate","comparison":">","threshold":1,"window":"5m","severity":"info"}]"#,
            "rules[0].metric",
        ),
        (
            r#"[{"name":"x","metric":"error_rate","comparison":">","threshold":1,"window":"5m","severity":"info","colour":"red"}]"#,
            "rules[0].colour",
        ),
        (
            r#"[{"name":"x","metric":"error_rate","comparison":">","threshold":1,"window":"5m","severity":"info","labels":{"bad-name":"v"}}]"#,
            "rules[0].labels.bad-name",
        ),
        (
            r#"[{"name":"x","metric":"requests","comparison":">","threshold":1,"window":"5m","severity":"info"},
                {"name":"x","metric":"requests","comparison":">","threshold":1,"window":"5m","severity":"info"}]"#,
            "rules[1].name",
        ),
    ];
    for (body, want) in cases {
        let e = parse_rule_set(body).unwrap_err();
        assert_eq!(field(&e), want, "{body}: {e}");
        assert_eq!(ApiError::from(&e).status(), 400, "{body}");
    }
}

#[test]
fn single_rule_errors_name_the_field() {
    let ok =
        r#""metric":"requests","comparison":">","threshold":1,"window":"5m","severity":"info""#;
    for (body, want) in [
        ("[1]".to_owned(), "(body)"),
        ("nope".to_owned(), "(body)"),
        (format!(r#"{{"name":"Other",{ok}}}"#), "name"),
        (format!(r#"{{"name":7,{ok}}}"#), "name"),
        (r#"{"metric":"requests"}"#.to_owned(), "comparison"),
        (
            r#"{"metric":"nope","comparison":">","threshold":1,"window":"5m","severity":"info"}"#
                .to_owned(),
            "metric",
        ),
        (format!(r#"{{{ok},"for":"later"}}"#), "for"),
    ] {
        let e = parse_one_rule("Busy", &body).unwrap_err();
        assert_eq!(field(&e), want, "{body}: {e}");
        assert_eq!(ApiError::from(&e).status(), 400);
    }
    assert!(parse_one_rule("Busy", &format!(r#"{{"name":"Busy",{ok}}}"#)).is_ok());
}

#[test]
fn removing_a_rule_drops_its_alert_state() {
    let mut db = db();
    let rules = parse_rule_set(
        r#"[{"name":"A","metric":"requests","comparison":">","threshold":0,"window":"1m","severity":"critical"},
            {"name":"B","metric":"requests","comparison":">","threshold":0,"window":"1m","severity":"info"}]"#,
    )
    .unwrap();
    save_rules(&mut db, &rules, "t", T0).unwrap();
    let mut values = crate::observe::alerts::MetricValues::new();
    values.insert("requests", 60, 5.0);
    let (states, _) = evaluate(&rules, &values, &[], &[], T0);
    for s in &states {
        store::upsert_alert(&mut db, s, None, T0).unwrap();
    }
    assert_eq!(store::active_alerts(&mut db).unwrap().len(), 2);
    delete_rule(&mut db, "", "A", "t", T0 + 1).unwrap();
    let left = store::active_alerts(&mut db).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].state.name, "B");
    assert_eq!(left[0].state.severity, Severity::Info);
}

#[test]
fn silences_parse_with_duration_or_end() {
    let s = parse_silence(
        r#"{"labels":{"alertname":"HighErrorRate"},"matchers":[{"name":"env","value":"dev","op":"!="}],"duration":"2h","comment":"deploy"}"#,
        "alice",
        T0,
    )
    .unwrap();
    assert!(s.id.starts_with("sil_"));
    assert_eq!(s.starts_at_ms, T0);
    assert_eq!(s.ends_at_ms, T0 + 7_200_000);
    assert_eq!(s.created_by, "alice");
    assert_eq!(s.comment, "deploy");
    assert_eq!(s.matchers.len(), 2);
    assert_eq!(s.matchers[0].op, MatchOp::NotEqual);
    assert_eq!(s.matchers[1], Matcher::eq("alertname", "HighErrorRate"));
    let s2 = parse_silence(
        &format!(
            r#"{{"labels":{{"a":"b"}},"starts_at":{},"ends_at":{}}}"#,
            T0 + 10,
            T0 + 20
        ),
        "bob",
        T0,
    )
    .unwrap();
    assert_eq!((s2.starts_at_ms, s2.ends_at_ms), (T0 + 10, T0 + 20));
    assert_ne!(s.id, s2.id);
    assert_eq!(silence_json(&s2, T0)["active"], false);
    assert_eq!(silence_json(&s2, T0 + 15)["active"], true);
    // Created mid-second: it holds for a scan at that whole second.
    let s3 = parse_silence(r#"{"labels":{"a":"b"},"duration":"1m"}"#, "c", T0 + 250).unwrap();
    assert_eq!((s3.starts_at_ms, s3.ends_at_ms), (T0, T0 + 60_000));
}

#[test]
fn silence_errors_name_the_field() {
    let end = T0 + 60_000;
    for (body, want) in [
        ("[]".to_owned(), "(body)"),
        ("{".to_owned(), "(body)"),
        (r#"{"duration":"1h"}"#.to_owned(), "matchers"),
        (r#"{"matchers":[],"duration":"1h"}"#.to_owned(), "matchers"),
        (r#"{"labels":{},"duration":"1h"}"#.to_owned(), "matchers"),
        (r#"{"matchers":{},"duration":"1h"}"#.to_owned(), "matchers"),
        (r#"{"labels":[],"duration":"1h"}"#.to_owned(), "labels"),
        (
            r#"{"labels":{"a-b":"c"},"duration":"1h"}"#.to_owned(),
            "labels.a-b",
        ),
        (
            r#"{"labels":{"a":1},"duration":"1h"}"#.to_owned(),
            "labels.a",
        ),
        (
            r#"{"matchers":[{"value":"x"}],"duration":"1h"}"#.to_owned(),
            "matchers[0].name",
        ),
        (
            r#"{"matchers":[{"name":"a"}],"duration":"1h"}"#.to_owned(),
            "matchers[0].value",
        ),
        (
            r#"{"matchers":[{"name":"a","value":"b","op":"~"}],"duration":"1h"}"#.to_owned(),
            "matchers[0].op",
        ),
        (
            r#"{"matchers":[{"name":"a","value":"b","x":1}],"duration":"1h"}"#.to_owned(),
            "matchers[0].x",
        ),
        (r#"{"labels":{"a":"b"}}"#.to_owned(), "ends_at"),
        (
            format!(r#"{{"labels":{{"a":"b"}},"ends_at":{end},"duration":"1h"}}"#),
            "duration",
        ),
        (
            r#"{"labels":{"a":"b"},"duration":"0s"}"#.to_owned(),
            "duration",
        ),
        (
            r#"{"labels":{"a":"b"},"duration":"soon"}"#.to_owned(),
            "duration",
        ),
        (
            format!(r#"{{"labels":{{"a":"b"}},"starts_at":{end},"ends_at":{end}}}"#),
            "ends_at",
        ),
        (
            format!(
                r#"{{"labels":{{"a":"b"}},"starts_at":0,"ends_at":{}}}"#,
                T0 - 1
            ),
            "ends_at",
        ),
        (
            r#"{"labels":{"a":"b"},"ends_at":"tomorrow"}"#.to_owned(),
            "ends_at",
        ),
        (
            r#"{"labels":{"a":"b"},"starts_at":-5,"duration":"1h"}"#.to_owned(),
            "starts_at",
        ),
        (
            r#"{"labels":{"a":"b"},"duration":"1h","comment":5}"#.to_owned(),
            "comment",
        ),
        (
            r#"{"labels":{"a":"b"},"duration":"1h","id":"mine"}"#.to_owned(),
            "id",
        ),
    ] {
        let e = parse_silence(&body, "alice", T0).unwrap_err();
        assert_eq!(field(&e), want, "{body}: {e}");
        assert_eq!(ApiError::from(&e).status(), 400, "{body}");
    }
}

#[test]
fn emergency_modes_parse_and_refuse_the_rest() {
    assert_eq!(
        parse_emergency_mode(r#"{"mode":"on"}"#).unwrap(),
        Some(EmergencyOverride::On)
    );
    assert_eq!(
        parse_emergency_mode(r#"{"mode":"off"}"#).unwrap(),
        Some(EmergencyOverride::Off)
    );
    assert_eq!(parse_emergency_mode(r#"{"mode":"auto"}"#).unwrap(), None);
    for (body, want) in [
        ("", "(body)"),
        ("[]", "(body)"),
        ("{}", "mode"),
        (r#"{"mode":"maybe"}"#, "mode"),
        (r#"{"mode":true}"#, "mode"),
        (r#"{"mode":"on","why":"x"}"#, "why"),
    ] {
        let e = parse_emergency_mode(body).unwrap_err();
        assert_eq!(field(&e), want, "{body}: {e}");
    }
}

#[test]
fn emergency_override_is_recorded_and_wins_over_automatic() {
    let mut db = db();
    let s = emergency_status(&mut db).unwrap();
    assert_eq!(s["override"], Value::Null);
    assert_eq!(s["automatic"], Value::Null);
    assert_eq!(s["effective"], false);
    store::set_control(
        &mut db,
        EMERGENCY_AUTO_KEY,
        &json!({"active": true, "since_ms": T0}),
        "scans",
        T0,
    )
    .unwrap();
    assert_eq!(emergency_status(&mut db).unwrap()["effective"], true);
    set_emergency(&mut db, Some(EmergencyOverride::Off), "alice", T0 + 5).unwrap();
    let s = emergency_status(&mut db).unwrap();
    assert_eq!(s["override"], "off");
    assert_eq!(s["override_set"]["by"], "alice");
    assert_eq!(s["automatic"]["active"], true);
    assert_eq!(s["effective"], false);
    assert_eq!(
        s["last_change"],
        json!({"mode": "off", "by": "alice", "at_ms": T0 + 5})
    );
    set_emergency(&mut db, None, "bob", T0 + 9).unwrap();
    let s = emergency_status(&mut db).unwrap();
    assert_eq!(s["override"], Value::Null);
    assert_eq!(s["effective"], true);
    assert_eq!(s["last_change"]["mode"], "auto");
    assert_eq!(s["last_change"]["by"], "bob");
    // A failed write leaves nothing half-done.
    let before = control_rows(&mut db);
    db.fail_on = Some("INSERT INTO control");
    assert!(set_emergency(&mut db, Some(EmergencyOverride::On), "eve", T0 + 10).is_err());
    db.fail_on = None;
    assert_eq!(control_rows(&mut db), before);
    assert_eq!(
        emergency_status(&mut db).unwrap()["last_change"]["by"],
        "bob"
    );
}

#[test]
fn store_refusals_map_to_statuses() {
    let nf = AdminError::Store(StoreError::Refused(ActionError::NotFound("x".into())));
    assert_eq!(
        (
            ApiError::from(&nf).status(),
            ApiError::from(&nf).code.as_str()
        ),
        (404, "alert-not-found")
    );
    let nfire = AdminError::Store(StoreError::Refused(ActionError::NotFiring("x".into())));
    assert_eq!(
        (
            ApiError::from(&nfire).status(),
            ApiError::from(&nfire).code.as_str()
        ),
        (409, "alert-conflict")
    );
    let dup = AdminError::Store(StoreError::DuplicateSilence("s".into()));
    assert_eq!(ApiError::from(&dup).status(), 409);
    let sql = AdminError::Store(StoreError::Sql {
        context: "x",
        message: "secret path".into(),
    });
    assert_eq!(ApiError::from(&sql).status(), 500);
    assert_eq!(ApiError::from(&sql).message, "internal error");
}
