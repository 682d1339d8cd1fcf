//! In-process flag evaluation: a static flag, a 3-rule targeting flag and a
//! fractional flag, each with a 5-attribute context (goal: <= 1 µs each), and
//! compiling the seed flag set (what a fresh instance pays once per request).
//!
//! `cargo bench -p dol-core --bench flags`

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use dol_core::flags::{EvaluationContext, FlagSet};

const DOC: &str = r#"{
  "flags": {
    "static": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"},
    "targeting": {
      "state": "ENABLED",
      "variants": {"gold": "gold", "silver": "silver", "bronze": "bronze", "none": "none"},
      "defaultVariant": "none",
      "targeting": {"if": [
        {"ends_with": [{"var": "email"}, "@example.com"]}, "gold",
        {"in": [{"var": "maturityPhase"}, ["run", "fly"]]}, "silver",
        {"sem_ver": [{"var": "appVersion"}, ">=", "2.0.0"]}, "bronze",
        null
      ]}
    },
    "fractional": {
      "state": "ENABLED",
      "variants": {"control": "control", "treatment": "treatment"},
      "defaultVariant": "control",
      "targeting": {"fractional": [["control", 90], ["treatment", 10]]}
    }
  }
}"#;

fn bench(c: &mut Criterion) {
    let set = FlagSet::parse(DOC).unwrap();
    let ctx = EvaluationContext::new()
        .with_targeting_key("user-1234567")
        .with("email", "someone@elsewhere.org")
        .with("maturityPhase", "walk")
        .with("appVersion", "2.3.1")
        .with("orgId", "org-42");
    let now = 1_800_000_000;
    for key in ["static", "targeting", "fractional"] {
        c.bench_function(&format!("evaluate/{key}"), |b| {
            b.iter(|| set.evaluate(black_box(key), black_box(&ctx), now))
        });
    }
    // What a fresh Spin instance pays once per request before its first
    // evaluation: parsing and compiling the shipped seed flag set.
    let seed = include_str!("../../../flags/seed.json");
    c.bench_function("compile/seed-flag-set", |b| {
        b.iter(|| FlagSet::parse(black_box(seed)))
    });
    // What an OFREP single evaluation or the gateway's entry-tier flag pays:
    // parsing the published document and compiling the one flag it asks for.
    c.bench_function("compile/one-flag-of-seed", |b| {
        b.iter(|| {
            let doc: serde_json::Value = serde_json::from_str(black_box(seed)).unwrap();
            FlagSet::from_value_for(&doc, black_box("generation_experiment"))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
