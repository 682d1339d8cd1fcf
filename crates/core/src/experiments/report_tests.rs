//! Reports and verdicts from sufficient statistics.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::json;

use super::definition::{self, Definition};
use super::report::{Decision, ExperimentData, MetricData, VariantData, build};
use super::stats::{MeanSample, ProportionSample, two_proportion_z_test, welch_t_test};

fn def(min_lift: f64, weights: (f64, f64)) -> Definition {
    definition::parse(
        &json!({
            "flag": "f", "control": "control",
            "variants": [{"name": "control", "weight": weights.0}, {"name": "treatment", "weight": weights.1}],
            "start_ms": 0,
            "primary": {"kind": "conversion", "event": "purchase"},
            "guardrails": [{"kind": "mean", "event": "load_ms", "direction": "lower"}],
            "criteria": {"alpha": 0.05, "min_relative_lift": min_lift, "min_units_per_variant": 100}
        }),
        0,
    )
    .unwrap()
}

fn variant(units: u64, conversions: u64, load: MeanSample) -> VariantData {
    let mut metrics = BTreeMap::new();
    metrics.insert(
        "conversion:purchase".to_owned(),
        MetricData::Proportion(ProportionSample {
            n: units,
            successes: conversions,
        }),
    );
    metrics.insert("mean:load_ms".to_owned(), MetricData::Mean(load));
    VariantData {
        units,
        metrics,
        feedback: None,
    }
}

/// 100 load times around `mean` with a fixed spread.
fn load(mean: f64) -> MeanSample {
    let values: Vec<f64> = (0..100)
        .map(|i| mean + f64::from(i % 10) * 10.0 - 45.0)
        .collect();
    MeanSample::from_values(&values)
}

fn data(c: VariantData, t: VariantData) -> ExperimentData {
    let mut d = ExperimentData::new();
    d.insert("control".into(), c);
    d.insert("treatment".into(), t);
    d
}

#[test]
fn significant_big_lift_ships_and_numbers_equal_the_stats_functions() {
    let d = def(0.15, (1.0, 1.0));
    let data = data(
        variant(2000, 200, load(500.0)),
        variant(2000, 280, load(500.0)),
    );
    let r = build("exp", &d, &data);
    assert_eq!(r.verdict.decision, Decision::Ship, "{:?}", r.verdict);
    assert_eq!(r.verdict.variant.as_deref(), Some("treatment"));
    let want = two_proportion_z_test(
        ProportionSample {
            n: 2000,
            successes: 200,
        },
        ProportionSample {
            n: 2000,
            successes: 280,
        },
        0.05,
    )
    .unwrap();
    let line = &r.metrics[0].variants[1];
    assert_eq!(line.comparison.as_ref().unwrap().stats, want);
    assert_eq!(line.value, Some(0.14));
    assert_eq!(r.metrics[0].role, "primary");
    let g = r.metrics[1].variants[1].comparison.as_ref().unwrap();
    assert_eq!(
        g.stats,
        welch_t_test(load(500.0), load(500.0), 0.05).unwrap()
    );
    assert_eq!(g.test, "welch_t_test");
    // The JSON has the documented shape.
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["verdict"]["decision"], "ship");
    assert_eq!(v["metrics"][0]["kind"], "conversion");
    assert_eq!(
        v["metrics"][0]["variants"][1]["comparison"]["test"],
        "z_test"
    );
    assert!(v["metrics"][0]["variants"][1]["comparison"]["p_value"].is_f64());
    assert!(v["units"]["srm"]["p_value"].is_f64());
    assert_eq!(v["units"]["observed"][0], json!(["control", 2000]));
}

#[test]
fn significant_but_small_lift_keeps_running() {
    let d = def(0.50, (1.0, 1.0));
    let data = data(
        variant(2000, 200, load(500.0)),
        variant(2000, 280, load(500.0)),
    );
    let r = build("exp", &d, &data);
    assert_eq!(r.verdict.decision, Decision::KeepRunning);
    assert!(
        r.verdict
            .reasons
            .iter()
            .any(|m| m.contains("below the minimum 50.0 %")),
        "{:?}",
        r.verdict
    );
}

#[test]
fn no_difference_keeps_running_naming_significance() {
    let d = def(0.15, (1.0, 1.0));
    let data = data(
        variant(2000, 200, load(500.0)),
        variant(2000, 205, load(500.0)),
    );
    let r = build("exp", &d, &data);
    assert_eq!(r.verdict.decision, Decision::KeepRunning);
    assert!(
        r.verdict
            .reasons
            .iter()
            .any(|m| m.contains("not significant")),
        "{:?}",
        r.verdict
    );
}

#[test]
fn too_few_units_keeps_running_even_when_significant() {
    let d = def(0.0, (1.0, 1.0));
    let data = data(variant(90, 5, load(500.0)), variant(90, 40, load(500.0)));
    let r = build("exp", &d, &data);
    assert_eq!(r.verdict.decision, Decision::KeepRunning);
    assert!(
        r.verdict
            .reasons
            .iter()
            .any(|m| m.contains("90 of the 100 units")),
        "{:?}",
        r.verdict
    );
}

#[test]
fn significantly_worse_primary_stops() {
    let d = def(0.15, (1.0, 1.0));
    let data = data(
        variant(2000, 280, load(500.0)),
        variant(2000, 200, load(500.0)),
    );
    let r = build("exp", &d, &data);
    assert_eq!(r.verdict.decision, Decision::Stop);
    assert!(
        r.verdict
            .reasons
            .iter()
            .any(|m| m.contains("primary conversion:purchase is significantly worse"))
    );
}

#[test]
fn a_worse_guardrail_stops_a_winning_primary() {
    let d = def(0.15, (1.0, 1.0));
    // Lower is better for load time: the treatment is 100 ms slower.
    let data = data(
        variant(2000, 200, load(500.0)),
        variant(2000, 280, load(600.0)),
    );
    let r = build("exp", &d, &data);
    assert_eq!(r.verdict.decision, Decision::Stop);
    assert!(
        r.verdict
            .reasons
            .iter()
            .any(|m| m.contains("guardrail mean:load_ms")),
        "{:?}",
        r.verdict
    );
    assert_eq!(
        r.metrics[1].variants[1]
            .comparison
            .as_ref()
            .unwrap()
            .outcome,
        "worse"
    );
}

#[test]
fn a_better_lower_is_better_guardrail_is_fine() {
    let d = def(0.15, (1.0, 1.0));
    let data = data(
        variant(2000, 200, load(600.0)),
        variant(2000, 280, load(500.0)),
    );
    let r = build("exp", &d, &data);
    assert_eq!(r.verdict.decision, Decision::Ship);
    assert_eq!(
        r.metrics[1].variants[1]
            .comparison
            .as_ref()
            .unwrap()
            .outcome,
        "better"
    );
}

#[test]
fn sample_ratio_mismatch_stops() {
    // Configured 90/10, observed 83/17.
    let d = def(0.15, (90.0, 10.0));
    let data = data(variant(830, 83, load(500.0)), variant(170, 40, load(500.0)));
    let r = build("exp", &d, &data);
    assert!(r.units.srm.as_ref().unwrap().mismatch);
    assert_eq!(r.verdict.decision, Decision::Stop);
    assert!(
        r.verdict.reasons[0].contains("sample ratio mismatch"),
        "{:?}",
        r.verdict
    );
}

#[test]
fn no_data_at_all_keeps_running_with_notes() {
    let d = def(0.15, (1.0, 1.0));
    let r = build("exp", &d, &ExperimentData::new());
    assert_eq!(r.verdict.decision, Decision::KeepRunning);
    assert!(!r.metrics[0].notes.is_empty());
    assert_eq!(r.metrics[0].variants[0].value, None);
    assert!(!r.units.srm.as_ref().unwrap().mismatch);
}

#[test]
fn with_two_treatments_the_better_shipper_is_named() {
    let d = definition::parse(
        &json!({
            "flag": "f", "control": "a", "start_ms": 0,
            "variants": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1}, {"name": "c", "weight": 1}],
            "primary": {"kind": "conversion", "event": "purchase"},
            "criteria": {"min_relative_lift": 0.1}
        }),
        0,
    )
    .unwrap();
    let mut data = ExperimentData::new();
    data.insert("a".into(), variant(3000, 300, load(1.0)));
    data.insert("b".into(), variant(3000, 390, load(1.0)));
    data.insert("c".into(), variant(3000, 450, load(1.0)));
    let r = build("exp", &d, &data);
    assert_eq!(r.verdict.decision, Decision::Ship);
    assert_eq!(r.verdict.variant.as_deref(), Some("c"));
    assert_eq!(r.treatments.len(), 2);
}

proptest! {
    #[test]
    fn verdicts_follow_the_rules(
        nc in 0u64..3000, nt in 0u64..3000, fc in 0.0f64..=1.0, ft in 0.0f64..=1.0,
        lc in 1.0f64..1000.0, lt in 1.0f64..1000.0, min_lift in 0.0f64..0.5,
    ) {
        let d = def(min_lift, (1.0, 1.0));
        let c = variant(nc, (nc as f64 * fc) as u64, load(lc));
        let t = variant(nt, (nt as f64 * ft) as u64, load(lt));
        let r = build("exp", &d, &data(c, t));
        let primary = r.metrics[0].variants[1].comparison.clone();
        match r.verdict.decision {
            Decision::Ship => {
                let p = primary.unwrap();
                prop_assert!(p.significant && p.stats.difference > 0.0);
                prop_assert!(p.stats.relative_lift.unwrap() >= min_lift);
                prop_assert!(nc >= 100 && nt >= 100);
                prop_assert!(!r.units.srm.as_ref().unwrap().mismatch);
                prop_assert!(r.metrics[1].variants[1].comparison.as_ref().unwrap().outcome != "worse");
            }
            Decision::Stop => prop_assert!(!r.verdict.reasons.is_empty()),
            Decision::KeepRunning => prop_assert!(!r.verdict.reasons.is_empty()),
        }
        if r.units.srm.as_ref().is_some_and(|s| s.mismatch) {
            prop_assert_eq!(r.verdict.decision, Decision::Stop);
        }
        // Every p-value in the report is a probability.
        for m in &r.metrics {
            for line in &m.variants {
                if let Some(c) = &line.comparison {
                    prop_assert!((0.0..=1.0).contains(&c.stats.p_value));
                }
            }
        }
    }
}

#[test]
fn every_report_shows_feedback_per_variant_with_its_interval() {
    let d = def(0.15, (1.0, 1.0));
    let with = |v: VariantData, fb: &[f64]| VariantData {
        feedback: Some(MeanSample::from_values(fb)),
        ..v
    };
    let control = with(variant(2000, 200, load(500.0)), &[1.0, 1.0, 0.5, 1.0]);
    let treatment = with(variant(2000, 200, load(500.0)), &[0.0, 0.5, 0.0, 0.5]);
    let r = build("exp", &d, &data(control, treatment));
    assert_eq!(r.feedback.len(), 2);
    let c = &r.feedback[0];
    // Control: 1, 1, 0.5, 1 → mean 0.875, sd 0.25, se 0.125,
    // t(0.975, 3) = 3.182446: 0.875 ± 0.397806.
    assert_eq!(
        (c.variant.as_str(), c.n, c.value),
        ("control", 4, Some(0.875))
    );
    let (lo, hi) = c.ci.unwrap();
    assert!(
        (lo - 0.477_194).abs() < 1e-5 && (hi - 1.272_806).abs() < 1e-5,
        "{lo} {hi}"
    );
    assert!(c.comparison.is_none());
    let t = &r.feedback[1];
    assert_eq!(t.value, Some(0.25));
    let cmp = t.comparison.as_ref().unwrap();
    assert_eq!(
        cmp.stats,
        welch_t_test(
            MeanSample::from_values(&[1.0, 1.0, 0.5, 1.0]),
            MeanSample::from_values(&[0.0, 0.5, 0.0, 0.5]),
            0.05
        )
        .unwrap()
    );
    assert_eq!(cmp.outcome, "worse");
    // Informational only: the verdict is the declared metrics'.
    assert_ne!(r.verdict.decision, Decision::Stop, "{:?}", r.verdict);
    // No feedback: lines without values.
    let r = build(
        "exp",
        &d,
        &data(variant(10, 1, load(1.0)), variant(10, 1, load(1.0))),
    );
    assert_eq!(r.feedback[1].value, None);
    assert!(r.feedback[1].comparison.is_none());
}
