//! Experiment storage against a real in-memory SQLite (rusqlite) with the
//! real migrations applied: the SQL computes the sufficient statistics the
//! report expects.

use serde_json::json;

use super::definition::{self, Definition};
use super::events::EventRecord;
use super::report::MetricData;
use super::stats::{MeanSample, ProportionSample};
use super::store;
use crate::storage::{SqlExecutor, SqlValue};
use crate::test_db::{TestDb, db};

fn ev(at: i64, who: &str, variant: &str, name: &str, value: Option<f64>) -> EventRecord {
    EventRecord {
        at,
        key_id: "k".into(),
        targeting_key: who.into(),
        flag: "f".into(),
        variant: variant.into(),
        name: name.into(),
        value,
    }
}

fn event_def() -> Definition {
    definition::parse(
        &json!({
            "flag": "f", "control": "a", "start_ms": 100,
            "variants": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1}],
            "primary": {"kind": "conversion", "event": "buy"},
            "guardrails": [{"kind": "mean", "event": "spend"}]
        }),
        0,
    )
    .unwrap()
}

#[test]
fn definitions_round_trip_and_keep_created_at() {
    let mut db = db();
    let d = event_def();
    assert!(store::put(&mut db, "e1", &d, "ana", 10).unwrap());
    assert!(!store::put(&mut db, "e1", &d, "bo", 20).unwrap());
    let got = store::get(&mut db, "e1").unwrap().unwrap();
    assert_eq!(got.definition, d);
    assert_eq!(
        (got.created_at, got.updated_at, got.actor.as_str()),
        (10, 20, "bo")
    );
    assert_eq!(got.to_json()["definition"]["flag"], "f");
    store::put(&mut db, "e0", &d, "ana", 30).unwrap();
    let keys: Vec<String> = store::list(&mut db)
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(keys, ["e0", "e1"]);
    assert!(store::delete(&mut db, "e1").unwrap());
    assert!(!store::delete(&mut db, "e1").unwrap());
    assert!(store::get(&mut db, "e1").unwrap().is_none());
}

#[test]
fn event_statistics_count_units_conversions_and_values() {
    let mut db = db();
    let events = [
        // Before the start: ignored.
        ev(50, "u0", "a", "exposure", None),
        ev(50, "u0", "a", "buy", None),
        // Variant a: u1, u2, u3 exposed; u1 buys twice (one conversion).
        ev(100, "u1", "a", "exposure", None),
        ev(101, "u1", "a", "buy", None),
        ev(102, "u1", "a", "buy", None),
        ev(100, "u2", "a", "exposure", None),
        ev(100, "u3", "a", "exposure", None),
        ev(103, "u1", "a", "spend", Some(10.0)),
        ev(103, "u2", "a", "spend", Some(20.0)),
        ev(103, "u2", "a", "spend", None),
        // Variant b: u4 exposed and buys; u5 only buys (still a unit).
        ev(100, "u4", "b", "exposure", None),
        ev(104, "u4", "b", "buy", None),
        ev(104, "u5", "b", "buy", None),
        ev(105, "u4", "b", "spend", Some(3.0)),
        ev(105, "u5", "b", "spend", Some(5.0)),
        // Another flag and an unknown variant: ignored.
        EventRecord {
            flag: "other".into(),
            ..ev(100, "u9", "a", "buy", None)
        },
        ev(100, "u8", "zzz", "exposure", None),
    ];
    store::insert_events(&mut db, &events).unwrap();
    let data = store::collect(&mut db, &event_def()).unwrap();
    let a = &data["a"];
    let b = &data["b"];
    assert_eq!((a.units, b.units), (3, 2));
    assert!(!data.contains_key("zzz"));
    assert_eq!(
        a.metrics["conversion:buy"],
        MetricData::Proportion(ProportionSample { n: 3, successes: 1 })
    );
    assert_eq!(
        b.metrics["conversion:buy"],
        MetricData::Proportion(ProportionSample { n: 2, successes: 2 })
    );
    assert_eq!(
        a.metrics["mean:spend"],
        MetricData::Mean(MeanSample {
            n: 2,
            sum: 30.0,
            sum_sq: 500.0
        })
    );
    assert_eq!(
        b.metrics["mean:spend"],
        MetricData::Mean(MeanSample {
            n: 2,
            sum: 8.0,
            sum_sq: 34.0
        })
    );
}

#[allow(
    clippy::too_many_arguments,
    reason = "one argument per column reads like the row"
)]
fn request(
    db: &mut TestDb,
    id: u32,
    ts: i64,
    variant: &str,
    latency: i64,
    quality: Option<f64>,
    cost: Option<i64>,
    outcome: &str,
) {
    db.execute(
        "INSERT INTO requests (id, ts, key_id, route, tier, entry_tier, provider, model, attempts, \
         latency_ms, prompt_tokens, completion_tokens, cost_micros, cost_unknown, quality, outcome, \
         fallbacks, cached, stream, variant, detail) \
         VALUES (?, ?, 'k', 'chat', 'basic', 'basic', 'p', 'm', 1, ?, 1, 1, ?, ?, ?, ?, 0, 0, 0, ?, '')",
        &[
            SqlValue::Text(format!("r{id}")),
            SqlValue::Integer(ts),
            SqlValue::Integer(latency),
            cost.map_or(SqlValue::Null, SqlValue::Integer),
            SqlValue::Integer(i64::from(cost.is_none())),
            quality.map_or(SqlValue::Null, SqlValue::Real),
            SqlValue::Text(outcome.into()),
            SqlValue::Text(variant.into()),
        ],
    )
    .unwrap();
}

#[test]
fn gateway_statistics_come_from_requests() {
    let mut db = db();
    let d = definition::parse(
        &json!({
            "flag": "generation_pipeline", "control": "comprehensive", "start_ms": 1000,
            "variants": [{"name": "comprehensive", "weight": 1}, {"name": "basic", "weight": 1}],
            "primary": {"kind": "quality"},
            "guardrails": [{"kind": "latency_ms"}, {"kind": "cost"}, {"kind": "success"}]
        }),
        0,
    )
    .unwrap();
    request(
        &mut db,
        0,
        999,
        "comprehensive",
        1,
        Some(1.0),
        Some(1),
        "success",
    ); // too early
    request(
        &mut db,
        1,
        1000,
        "comprehensive",
        100,
        Some(8.0),
        Some(50),
        "success",
    );
    request(
        &mut db,
        2,
        1001,
        "comprehensive",
        300,
        Some(9.0),
        None,
        "low_quality",
    );
    request(
        &mut db,
        3,
        1002,
        "comprehensive",
        200,
        None,
        Some(70),
        "offline",
    );
    request(
        &mut db,
        4,
        1003,
        "basic",
        50,
        Some(6.0),
        Some(0),
        "stream_aborted",
    );
    request(
        &mut db,
        5,
        1004,
        "basic",
        70,
        Some(7.0),
        Some(0),
        "cache_hit",
    );
    let data = store::collect(&mut db, &d).unwrap();
    let c = &data["comprehensive"];
    let b = &data["basic"];
    assert_eq!(
        (c.units, b.units),
        (3, 2),
        "gateway-only experiments count requests"
    );
    assert_eq!(
        c.metrics["quality"],
        MetricData::Mean(MeanSample {
            n: 2,
            sum: 17.0,
            sum_sq: 145.0
        })
    );
    assert_eq!(
        c.metrics["latency_ms"],
        MetricData::Mean(MeanSample {
            n: 3,
            sum: 600.0,
            sum_sq: 140_000.0
        })
    );
    assert_eq!(
        c.metrics["cost"],
        MetricData::Mean(MeanSample {
            n: 2,
            sum: 120.0,
            sum_sq: 7400.0
        })
    );
    assert_eq!(
        c.metrics["success"],
        MetricData::Proportion(ProportionSample { n: 3, successes: 2 })
    );
    assert_eq!(
        b.metrics["success"],
        MetricData::Proportion(ProportionSample { n: 2, successes: 1 })
    );
}

#[test]
fn costly_requests_still_give_a_cost_statistic() {
    // A request over about $3,000 (3.04e9 µ$) overflowed the BIGINT square
    // on PostgreSQL and failed the whole report; the bound on one request's
    // stored cost is 10^12.
    let mut db = db();
    let d = definition::parse(
        &json!({
            "flag": "f", "control": "a", "start_ms": 1000,
            "variants": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1}],
            "primary": {"kind": "cost"}
        }),
        0,
    )
    .unwrap();
    let big = 1_000_000_000_000_i64;
    request(&mut db, 1, 1000, "a", 10, None, Some(big), "success");
    request(
        &mut db,
        2,
        1001,
        "a",
        10,
        None,
        Some(4_000_000_000),
        "success",
    );
    let data = store::collect(&mut db, &d).unwrap();
    let MetricData::Mean(sample) = &data["a"].metrics["cost"] else {
        panic!("{:?}", data["a"].metrics);
    };
    assert_eq!(sample.n, 2);
    assert_eq!(sample.sum, 1.004e12);
    let expected_sq = 1e24 + 1.6e19;
    assert!(
        (sample.sum_sq - expected_sq).abs() / expected_sq < 1e-12,
        "{}",
        sample.sum_sq
    );
}

#[test]
fn a_request_s_events_are_stored_all_or_none() {
    let mut db = db();
    let events = [
        ev(100, "u1", "a", "exposure", None),
        ev(101, "u1", "a", "buy", Some(2.0)),
    ];
    store::record_events(&mut db, &events).unwrap();
    assert_eq!(crate::test_db::count(&mut db, "events"), 2);

    // The commit fails after both inserts ran: both are rolled back.
    let mut failing = db;
    failing.fail_on = Some("COMMIT");
    assert!(store::record_events(&mut failing, &events).is_err());
    failing.fail_on = None;
    assert_eq!(crate::test_db::count(&mut failing, "events"), 2);
}

fn feedback_row(db: &mut TestDb, id: &str, ts: i64, variant: &str, score: f64) {
    db.execute(
        "INSERT INTO feedback (request_id, ts, key_id, scale, raw_score, score, provider, model, \
         tier, route, variant) VALUES (?, ?, 'k', 'thumbs', 1, ?, 'p', 'm', 'basic', 'chat', ?)",
        &[
            SqlValue::Text(id.into()),
            SqlValue::Integer(ts),
            SqlValue::Real(score),
            SqlValue::Text(variant.into()),
        ],
    )
    .unwrap();
}

#[test]
fn feedback_per_variant_is_collected_and_can_be_a_metric() {
    let mut db = db();
    let d = definition::parse(
        &json!({
            "flag": "generation_pipeline", "control": "comprehensive", "start_ms": 1000,
            "variants": [{"name": "comprehensive", "weight": 1}, {"name": "basic", "weight": 1}],
            "primary": {"kind": "feedback"}
        }),
        0,
    )
    .unwrap();
    feedback_row(&mut db, "early", 999, "comprehensive", 0.0);
    for (i, s) in [1.0, 1.0, 0.5].iter().enumerate() {
        feedback_row(
            &mut db,
            &format!("c{i}"),
            1000 + i as i64,
            "comprehensive",
            *s,
        );
    }
    for (i, s) in [0.0, 0.5].iter().enumerate() {
        feedback_row(&mut db, &format!("b{i}"), 1000 + i as i64, "basic", *s);
    }
    feedback_row(&mut db, "other", 1000, "elsewhere", 1.0);
    let data = store::collect(&mut db, &d).unwrap();
    let c = data["comprehensive"].feedback.unwrap();
    assert_eq!((c.n, c.sum, c.sum_sq), (3, 2.5, 2.25));
    let b = data["basic"].feedback.unwrap();
    assert_eq!((b.n, b.sum, b.sum_sq), (2, 0.5, 0.25));
    // Declared as the primary metric: the same sums.
    assert_eq!(
        data["basic"].metrics["feedback"],
        MetricData::Mean(MeanSample {
            n: 2,
            sum: 0.5,
            sum_sq: 0.25
        })
    );
    assert!(!data.contains_key("elsewhere"));
}

#[test]
fn migration_25_bounds_the_event_values_that_broke_a_mean_metric() {
    use crate::migrate::{MIGRATIONS, apply, apply_list};
    let mut db = crate::test_db::empty();
    let before_25 = MIGRATIONS.iter().position(|m| m.version == 25).unwrap();
    apply_list(&mut db, &MIGRATIONS[..before_25], 0).unwrap();
    for (who, value) in [("a", 1e308), ("b", -1e200), ("c", 12.5)] {
        db.execute(
            "INSERT INTO events (at, key_id, targeting_key, flag_key, variant, name, value) \
             VALUES (1, 'k', ?, 'f', 'on', 'load', ?)",
            &[SqlValue::Text(who.into()), SqlValue::Real(value)],
        )
        .unwrap();
    }
    apply(&mut db, 0).unwrap();
    let values = db
        .execute("SELECT value FROM events ORDER BY targeting_key", &[])
        .unwrap();
    assert_eq!(
        values,
        [
            vec![SqlValue::Real(1e12)],
            vec![SqlValue::Real(-1e12)],
            vec![SqlValue::Real(12.5)]
        ]
    );
}
