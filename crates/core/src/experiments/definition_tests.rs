//! Definition and event-body validation: every bad field has its own case
//! and the error names it.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::definition::{self, Direction, MetricKind};
use super::events;

fn valid() -> Value {
    json!({
        "flag": "checkout_button",
        "control": "control",
        "variants": [{"name": "control", "weight": 90}, {"name": "treatment", "weight": 10}],
        "start_ms": 1_000,
        "primary": {"kind": "conversion", "event": "purchase"},
        "guardrails": [
            {"kind": "mean", "event": "page_load_ms", "direction": "lower"},
            {"kind": "latency_ms"}
        ],
        "criteria": {"alpha": 0.05, "min_relative_lift": 0.15, "min_units_per_variant": 100},
        "description": "Green checkout button"
    })
}

#[test]
fn a_full_definition_parses_with_defaults_filled_in() {
    let d = definition::parse(&valid(), 5).unwrap();
    assert_eq!(d.flag, "checkout_button");
    assert_eq!(d.variant_names(), ["control", "treatment"]);
    assert_eq!(d.start_ms, 1_000);
    assert_eq!(d.primary.name, "conversion:purchase");
    assert_eq!(d.primary.direction, Direction::Higher);
    assert_eq!(d.guardrails[0].direction, Direction::Lower);
    assert_eq!(d.guardrails[1].kind, MetricKind::LatencyMs);
    assert_eq!(
        d.guardrails[1].direction,
        Direction::Lower,
        "latency defaults to lower"
    );
    assert!(d.units_from_events());
    // The stored JSON parses back to the same definition.
    assert_eq!(definition::parse(&d.to_json(), 0).unwrap(), d);
}

#[test]
fn minimal_definition_gets_default_criteria_and_start() {
    let d = definition::parse(
        &json!({
            "flag": "generation_pipeline", "control": "comprehensive",
            "variants": [{"name": "comprehensive", "weight": 1}, {"name": "basic", "weight": 1}],
            "primary": {"kind": "quality"}
        }),
        777,
    )
    .unwrap();
    assert_eq!(d.start_ms, 777);
    assert_eq!(d.criteria.alpha, definition::DEFAULT_ALPHA);
    assert_eq!(
        d.criteria.min_units_per_variant,
        definition::DEFAULT_MIN_UNITS
    );
    assert_eq!(d.criteria.min_relative_lift, 0.0);
    assert!(
        !d.units_from_events(),
        "gateway-only experiments count requests"
    );
}

/// Applies `edit` to a valid definition and expects an error on `field`.
fn rejects(field: &str, edit: impl FnOnce(&mut Value)) {
    let mut doc = valid();
    edit(&mut doc);
    let err = definition::parse(&doc, 0).expect_err(field);
    assert_eq!(err.field(), field, "{err}");
    assert!(err.to_string().starts_with(field), "{err}");
}

#[test]
fn body_not_an_object() {
    assert_eq!(
        definition::parse(&json!([1]), 0).unwrap_err().field(),
        "body"
    );
}
#[test]
fn unknown_top_level_field() {
    rejects("colour", |d| d["colour"] = json!("green"));
}
#[test]
fn missing_flag() {
    rejects("flag", |d| {
        d.as_object_mut()
            .unwrap()
            .remove("flag")
            .map(drop)
            .unwrap_or(())
    });
}
#[test]
fn empty_flag() {
    rejects("flag", |d| d["flag"] = json!(""));
}
#[test]
fn flag_not_a_string() {
    rejects("flag", |d| d["flag"] = json!(3));
}
#[test]
fn flag_too_long() {
    rejects("flag", |d| d["flag"] = json!("f".repeat(129)));
}
#[test]
fn variants_missing() {
    rejects("variants", |d| d["variants"] = Value::Null);
}
#[test]
fn variants_only_one() {
    rejects("variants", |d| {
        d["variants"] = json!([{"name": "control", "weight": 1}])
    });
}
#[test]
fn variant_not_an_object() {
    rejects("variants[1]", |d| d["variants"][1] = json!("treatment"));
}
#[test]
fn variant_unknown_field() {
    rejects("variants[0].share", |d| {
        d["variants"][0]["share"] = json!(1)
    });
}
#[test]
fn variant_duplicate_name() {
    rejects("variants[1].name", |d| {
        d["variants"][1]["name"] = json!("control")
    });
}
#[test]
fn variant_zero_weight() {
    rejects("variants[1].weight", |d| {
        d["variants"][1]["weight"] = json!(0)
    });
}
#[test]
fn variant_negative_weight() {
    rejects("variants[0].weight", |d| {
        d["variants"][0]["weight"] = json!(-5)
    });
}
#[test]
fn variant_weight_not_a_number() {
    rejects("variants[0].weight", |d| {
        d["variants"][0]["weight"] = json!("90")
    });
}
#[test]
fn control_not_a_variant() {
    rejects("control", |d| d["control"] = json!("baseline"));
}
#[test]
fn start_negative() {
    rejects("start_ms", |d| d["start_ms"] = json!(-1));
}
#[test]
fn start_not_an_integer() {
    rejects("start_ms", |d| d["start_ms"] = json!("yesterday"));
}
#[test]
fn primary_missing() {
    rejects("primary", |d| d["primary"] = Value::Null);
}
#[test]
fn primary_unknown_kind() {
    rejects("primary.kind", |d| d["primary"]["kind"] = json!("revenue"));
}
#[test]
fn conversion_without_event() {
    rejects("primary.event", |d| {
        d["primary"] = json!({"kind": "conversion"})
    });
}
#[test]
fn gateway_metric_with_event() {
    rejects("guardrails[1].event", |d| {
        d["guardrails"][1]["event"] = json!("x")
    });
}
#[test]
fn bad_direction() {
    rejects("guardrails[0].direction", |d| {
        d["guardrails"][0]["direction"] = json!("up")
    });
}
#[test]
fn metric_unknown_field() {
    rejects("primary.threshold", |d| {
        d["primary"]["threshold"] = json!(1)
    });
}
#[test]
fn duplicate_metric_names() {
    rejects("guardrails[0].name", |d| {
        d["guardrails"][0] = json!({"kind": "conversion", "event": "purchase"});
    });
}
#[test]
fn guardrails_not_an_array() {
    rejects("guardrails", |d| d["guardrails"] = json!({"kind": "cost"}));
}
#[test]
fn alpha_out_of_range() {
    rejects("criteria.alpha", |d| d["criteria"]["alpha"] = json!(0.9));
}
#[test]
fn alpha_zero() {
    rejects("criteria.alpha", |d| d["criteria"]["alpha"] = json!(0));
}
#[test]
fn negative_min_lift() {
    rejects("criteria.min_relative_lift", |d| {
        d["criteria"]["min_relative_lift"] = json!(-0.1)
    });
}
#[test]
fn min_units_too_small() {
    rejects("criteria.min_units_per_variant", |d| {
        d["criteria"]["min_units_per_variant"] = json!(1);
    });
}
#[test]
fn min_units_fractional() {
    rejects("criteria.min_units_per_variant", |d| {
        d["criteria"]["min_units_per_variant"] = json!(10.5);
    });
}
#[test]
fn criteria_unknown_field() {
    rejects("criteria.power", |d| d["criteria"]["power"] = json!(0.8));
}
#[test]
fn description_too_long() {
    rejects("description", |d| {
        d["description"] = json!("x".repeat(1001))
    });
}

#[test]
fn experiment_keys() {
    assert!(definition::valid_key("checkout-2026.q1_a"));
    for bad in ["", "a b", "a/b", "ü", &"k".repeat(129)] {
        assert_eq!(
            definition::check_key(bad).unwrap_err().field(),
            "key",
            "{bad:?}"
        );
    }
}

fn event() -> Value {
    json!({"targetingKey": "user-1", "flag": "f", "name": "exposure"})
}

#[test]
fn events_batch_and_single_forms_parse() {
    let batch = events::parse(&json!({"events": [
        event(),
        {"targetingKey": "user-2", "flag": "f", "name": "purchase", "value": 12.5,
         "variant": "treatment", "context": {"orgId": "o"}}
    ]}))
    .unwrap();
    assert_eq!(batch.len(), 2);
    assert_eq!(batch[1].value, Some(12.5));
    assert_eq!(batch[1].variant.as_deref(), Some("treatment"));
    assert_eq!(batch[1].context["orgId"], "o");
    let single = events::parse(&event()).unwrap();
    assert_eq!(single[0].targeting_key, "user-1");
    assert_eq!(single[0].variant, None);
}

fn event_rejects(body: Value, field: &str) {
    let err = events::parse(&body).expect_err(field);
    assert_eq!(err.field(), field, "{err}");
}

fn with(key: &str, value: Value) -> Value {
    let mut e = event();
    e[key] = value;
    json!({"events": [event(), e]})
}

fn without(key: &str) -> Value {
    let mut e = event();
    e.as_object_mut().unwrap().remove(key);
    json!({"events": [e]})
}

#[test]
fn event_body_not_an_object() {
    event_rejects(json!("exposure"), "body");
}
#[test]
fn events_not_an_array() {
    event_rejects(json!({"events": event()}), "events");
}
#[test]
fn events_empty() {
    event_rejects(json!({"events": []}), "events");
}
#[test]
fn too_many_events() {
    let many: Vec<Value> = (0..=events::MAX_EVENTS).map(|_| event()).collect();
    event_rejects(json!({"events": many}), "events");
}
#[test]
fn unknown_field_next_to_events() {
    event_rejects(json!({"events": [event()], "extra": 1}), "extra");
}
#[test]
fn event_not_an_object() {
    event_rejects(json!({"events": [event(), 3]}), "events[1]");
}
#[test]
fn event_unknown_field() {
    event_rejects(with("user", json!("u")), "events[1].user");
}
#[test]
fn event_missing_targeting_key() {
    event_rejects(without("targetingKey"), "events[0].targetingKey");
}
#[test]
fn event_targeting_key_too_long() {
    event_rejects(
        with("targetingKey", json!("u".repeat(257))),
        "events[1].targetingKey",
    );
}
#[test]
fn event_targeting_key_not_a_string() {
    event_rejects(with("targetingKey", json!(42)), "events[1].targetingKey");
}
#[test]
fn event_missing_flag() {
    event_rejects(without("flag"), "events[0].flag");
}
#[test]
fn event_missing_name() {
    event_rejects(without("name"), "events[0].name");
}
#[test]
fn event_empty_name() {
    event_rejects(with("name", json!("")), "events[1].name");
}
#[test]
fn event_name_too_long() {
    event_rejects(with("name", json!("n".repeat(129))), "events[1].name");
}
#[test]
fn event_name_with_control_characters() {
    event_rejects(with("name", json!("a\nb")), "events[1].name");
}
#[test]
fn event_value_not_a_number() {
    event_rejects(with("value", json!("12")), "events[1].value");
}
#[test]
fn event_value_whose_square_would_overflow_the_sums() {
    event_rejects(with("value", json!(1e308)), "events[1].value");
    event_rejects(with("value", json!(-1e13)), "events[1].value");
    assert!(events::parse(&with("value", json!(events::MAX_VALUE))).is_ok());
}
#[test]
fn event_variant_not_a_string() {
    event_rejects(with("variant", json!(true)), "events[1].variant");
}
#[test]
fn event_context_not_an_object() {
    event_rejects(with("context", json!([1])), "events[1].context");
}
#[test]
fn event_context_with_targeting_key() {
    event_rejects(
        with("context", json!({"targetingKey": "x"})),
        "events[1].context.targetingKey",
    );
}
#[test]
fn event_context_too_large() {
    event_rejects(
        with("context", json!({"blob": "x".repeat(5000)})),
        "events[1].context",
    );
}
#[test]
fn single_event_errors_name_the_event() {
    event_rejects(json!({"flag": "f", "name": "n"}), "event.targetingKey");
}

proptest! {
    #[test]
    fn definition_parser_never_panics_and_names_a_field(
        flag in prop::option::of("[a-z_]{0,10}"),
        weights in prop::collection::vec(-2.0f64..100.0, 0..4),
        alpha in -1.0f64..1.0,
        kind in prop::sample::select(vec!["conversion", "mean", "quality", "cost", "bogus"]),
    ) {
        let variants: Vec<Value> = weights
            .iter()
            .enumerate()
            .map(|(i, w)| json!({"name": format!("v{i}"), "weight": w}))
            .collect();
        let doc = json!({
            "flag": flag, "control": "v0", "variants": variants,
            "primary": {"kind": kind, "event": "e"}, "criteria": {"alpha": alpha}
        });
        match definition::parse(&doc, 0) {
            Ok(d) => {
                prop_assert!(d.variants.len() >= 2);
                prop_assert!(d.variants.iter().all(|v| v.weight > 0.0));
                prop_assert!(d.criteria.alpha > 0.0 && d.criteria.alpha <= 0.5);
            }
            Err(e) => prop_assert!(!e.field().is_empty()),
        }
    }

    #[test]
    fn event_parser_never_panics(
        body in prop::collection::vec(("[a-zA-Z]{0,3}", prop::option::of(-5.0f64..5.0)), 0..5)
    ) {
        let items: Vec<Value> = body
            .iter()
            .map(|(s, v)| json!({"targetingKey": s, "flag": s, "name": s, "value": v}))
            .collect();
        match events::parse(&json!({"events": items})) {
            Ok(list) => prop_assert!(list.iter().all(|e| !e.name.is_empty())),
            Err(e) => prop_assert!(!e.field().is_empty()),
        }
    }
}

#[test]
fn flag_variants_come_from_the_flagd_document() {
    let doc = json!({"flags": {"f": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"}}});
    let set = crate::flags::FlagSet::from_value(&doc).unwrap();
    let mut v = set.variants("f").unwrap();
    v.sort();
    assert_eq!(v, ["off", "on"]);
    assert_eq!(set.variants("g"), None);
}
