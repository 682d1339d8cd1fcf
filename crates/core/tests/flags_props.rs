//! Property tests for the flag engine: fractional bucketing and the parser.

// A panic is how a property test fails; the workspace denies these outside tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use dol_core::flags::{EvaluationContext, FlagSet};
use proptest::prelude::*;
use serde_json::{Value, json};

fn fractional_set(weights: &[u32]) -> FlagSet {
    let mut variants = serde_json::Map::new();
    let mut buckets = Vec::new();
    for (i, w) in weights.iter().enumerate() {
        variants.insert(format!("v{i}"), json!(format!("v{i}")));
        buckets.push(json!([format!("v{i}"), w]));
    }
    variants.insert("none".into(), json!("none"));
    FlagSet::from_value(&json!({"flags": {"f": {
        "state": "ENABLED", "variants": variants, "defaultVariant": "none",
        "targeting": {"fractional": buckets}
    }}}))
    .unwrap()
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "[a-zA-Z$ _-]{0,8}".prop_map(Value::String),
        prop_oneof![
            Just("ENABLED"),
            Just("DISABLED"),
            Just("on"),
            Just("fractional"),
            Just("if")
        ]
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("flags".to_string()),
                    Just("state".to_string()),
                    Just("variants".to_string()),
                    Just("defaultVariant".to_string()),
                    Just("targeting".to_string()),
                    Just("metadata".to_string()),
                    Just("$evaluators".to_string()),
                    Just("$ref".to_string()),
                    "[a-z]{1,4}",
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn bucketing_is_stable_and_stays_in_the_list(
        weights in prop::collection::vec(1u32..100, 1..6),
        key in "[ -~]{1,24}",
    ) {
        let set = fractional_set(&weights);
        let ctx = EvaluationContext::new().with_targeting_key(key);
        let a = set.evaluate("f", &ctx, 0);
        let b = set.evaluate("f", &ctx, 99);
        prop_assert_eq!(&a, &b);
        let variant = a.variant.clone().unwrap();
        let idx: usize = variant.trim_start_matches('v').parse().unwrap();
        prop_assert!(idx < weights.len());
        prop_assert!(weights[idx] > 0);
    }

    #[test]
    fn parser_never_panics(doc in arb_json()) {
        if let Ok(set) = FlagSet::from_value(&doc) {
            let ctx = EvaluationContext::new().with_targeting_key("k").with("x", 1);
            let keys: Vec<String> = set.keys().map(str::to_owned).collect();
            for k in keys {
                let _ = set.evaluate(&k, &ctx, 0);
            }
        }
        let _ = FlagSet::parse(&doc.to_string());
    }
}

#[test]
fn distribution_respects_weights() {
    let weights = [10u32, 30, 60];
    let set = fractional_set(&weights);
    let n = 30_000;
    let mut counts = [0usize; 3];
    for i in 0..n {
        let ctx = EvaluationContext::new().with_targeting_key(format!("user-{i}"));
        let v = set.evaluate("f", &ctx, 0).variant.unwrap();
        counts[v.trim_start_matches('v').parse::<usize>().unwrap()] += 1;
    }
    for (c, w) in counts.iter().zip(weights) {
        let expected = n as f64 * f64::from(w) / 100.0;
        // ±5 standard deviations of a binomial count.
        let sd = (expected * (1.0 - f64::from(w) / 100.0)).sqrt();
        assert!((*c as f64 - expected).abs() < 5.0 * sd, "{counts:?}");
    }
}
