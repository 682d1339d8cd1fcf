//! flagd-testbed evaluator conformance suite, run against `dol_core::flags`.
//!
//! The suite (gherkin features + `flags/testkit-flags.json`) lives in the
//! shared folder: `$DOL_SHARED_DIR/conformance/flagd-testbed/evaluator`, or
//! `<workspace>/../shared/...` when the variable is unset. A missing suite is
//! a failure, never a silent pass.
//!
//! Skipped tags:
//! - `@fractional-v1`: the legacy float bucketing; DOL implements only the
//!   v2 integer algorithm (`(hash × totalWeight) >> 32`), and v1/v2 examples
//!   expect different buckets for the same keys.
//!
//! Every other tag in the suite (`@targeting`, `@fractional`,
//! `@fractional-v2`, `@fractional-nested`, `@operator-errors`, `@semver*`,
//! `@string`, `@evaluator-refs*`, `@disabled`, `@metadata`,
//! `@no-default-variant`) concerns the evaluator itself and runs. The suite
//! has no gRPC/file/RPC-provider tags in its evaluator folder; should one
//! appear (`@grpc`, `@rpc`, `@file`, `@in-process`, `@sync`, `@caching`,
//! `@events`, `@reconnect`, `@customCert`, `@unixsocket`, `@targetURI`), it
//! is skipped because it needs a provider or a running flagd.

// A panic is how a cucumber step fails; the workspace denies these outside tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use cucumber::gherkin::Step;
use cucumber::writer::Stats as _;
use cucumber::{World, given, then, when};
use dol_core::flags::{Evaluation, EvaluationContext, FlagSet, FlagType};
use serde_json::{Value, json};

const SKIPPED_TAGS: &[&str] = &[
    "fractional-v1",
    "grpc",
    "rpc",
    "file",
    "in-process",
    "sync",
    "caching",
    "events",
    "reconnect",
    "customCert",
    "unixsocket",
    "targetURI",
];

/// Scenarios left out by [`SKIPPED_TAGS`].
static SKIPPED: AtomicUsize = AtomicUsize::new(0);

/// A fixed evaluation time keeps `$flagd.timestamp` deterministic.
const NOW: u64 = 1_700_000_000;

fn suite_dir() -> PathBuf {
    let shared = std::env::var_os("DOL_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    shared.join("conformance/flagd-testbed/evaluator")
}

/// The testkit's flag document, read and parsed once.
fn testkit_flags() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let path = suite_dir().join("flags/testkit-flags.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    })
}

/// The testkit's whole flag set, compiled once.
fn flag_set() -> &'static FlagSet {
    static SET: OnceLock<FlagSet> = OnceLock::new();
    SET.get_or_init(|| {
        FlagSet::from_value(testkit_flags())
            .unwrap_or_else(|e| panic!("testkit flags rejected: {e}"))
    })
}

#[derive(Debug, Default, World)]
struct FlagWorld {
    flag_type: Option<FlagType>,
    key: String,
    fallback: Value,
    ctx: EvaluationContext,
    result: Option<Evaluation>,
}

impl FlagWorld {
    fn result(&self) -> &Evaluation {
        self.result.as_ref().expect("the flag was not evaluated")
    }
}

fn flag_type(name: &str) -> FlagType {
    match name {
        "Boolean" => FlagType::Boolean,
        "String" => FlagType::String,
        "Integer" => FlagType::Integer,
        "Float" => FlagType::Float,
        "Object" => FlagType::Object,
        other => panic!("unknown flag type {other}"),
    }
}

/// Read a gherkin cell as a JSON value of the given type.
fn typed_value(ty: &str, raw: &str) -> Value {
    match ty {
        "Boolean" => json!(raw.parse::<bool>().expect("boolean")),
        "String" => json!(raw),
        "Integer" => json!(raw.parse::<i64>().expect("integer")),
        "Float" => json!(raw.parse::<f64>().expect("float")),
        "Object" => serde_json::from_str(&raw.replace("\\\"", "\"")).expect("object JSON"),
        other => panic!("unknown value type {other}"),
    }
}

#[given("an evaluator")]
fn an_evaluator(_w: &mut FlagWorld) {
    flag_set();
}

#[given(regex = r#"^a ([A-Za-z]+)-flag with key "([^"]*)" and a fallback value "(.*)"$"#)]
fn a_flag(w: &mut FlagWorld, ty: String, key: String, fallback: String) {
    w.flag_type = Some(flag_type(&ty));
    w.fallback = typed_value(&ty, &fallback);
    w.key = key;
}

#[given(
    regex = r#"^a context containing a key "([^"]*)", with type "([A-Za-z]+)" and with value "(.*)"$"#
)]
fn context_key(w: &mut FlagWorld, key: String, ty: String, value: String) {
    let v = typed_value(&ty, &value);
    w.ctx.attributes.insert(key, v);
}

#[given(regex = r#"^a context containing a targeting key with value "(.*)"$"#)]
fn context_targeting_key(w: &mut FlagWorld, value: String) {
    w.ctx.targeting_key = Some(value);
}

#[given(
    regex = r#"^a context containing a nested property with outer key "([^"]*)" and inner key "([^"]*)", with value "(.*)"$"#
)]
fn context_nested(w: &mut FlagWorld, outer: String, inner: String, value: String) {
    let entry = w.ctx.attributes.entry(outer).or_insert_with(|| json!({}));
    entry
        .as_object_mut()
        .expect("outer key is an object")
        .insert(inner, json!(value));
}

#[when("the flag was evaluated with details")]
fn evaluated(w: &mut FlagWorld) {
    let ty = w.flag_type.expect("no flag chosen");
    let whole = flag_set().evaluate_typed(&w.key, ty, &w.ctx, NOW);
    // OFREP and the gateway compile only the flag they evaluate, without the
    // optimizer passes: every scenario must pass that way too.
    let alone = FlagSet::from_value_for(testkit_flags(), &w.key)
        .expect("one flag compiles")
        .evaluate_typed(&w.key, ty, &w.ctx, NOW);
    assert_eq!(alone, whole, "flag {} compiled alone", w.key);
    w.result = Some(whole);
}

#[then(regex = r#"^the resolved details value should be "(.*)"$"#)]
fn resolved_value(w: &mut FlagWorld, expected: String) {
    let ty = match w.flag_type.expect("no flag chosen") {
        FlagType::Boolean => "Boolean",
        FlagType::String => "String",
        FlagType::Integer => "Integer",
        FlagType::Float => "Float",
        FlagType::Object => "Object",
    };
    let expected = typed_value(ty, &expected);
    let got = w.result().value_or(w.fallback.clone());
    let same = match (&got, &expected) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => got == expected,
    };
    assert!(
        same,
        "value: got {got}, expected {expected} ({:?})",
        w.result()
    );
}

#[then(regex = r#"^the reason should be "(.*)"$"#)]
fn reason(w: &mut FlagWorld, expected: String) {
    let r = w.result();
    assert_eq!(r.reason.as_str(), expected, "{r:?}");
}

#[then(regex = r#"^the error-code should be "(.*)"$"#)]
fn error_code(w: &mut FlagWorld, expected: String) {
    let r = w.result();
    let code = r.error.as_ref().map(|e| e.code.as_str()).unwrap_or("");
    assert_eq!(code, expected, "{r:?}");
}

#[then("the resolved metadata should contain")]
fn metadata_contains(w: &mut FlagWorld, step: &Step) {
    let table = step.table.as_ref().expect("metadata table");
    let meta = &w.result().metadata;
    for row in table.rows.iter().skip(1) {
        let (key, ty, raw) = (&row[0], &row[1], &row[2]);
        let expected = typed_value(ty, raw);
        let got = meta
            .get(key)
            .unwrap_or_else(|| panic!("metadata {key} missing: {meta:?}"));
        let same = match (got, &expected) {
            (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
            _ => *got == expected,
        };
        assert!(same, "metadata {key}: got {got}, expected {expected}");
    }
}

#[then("the resolved metadata is empty")]
fn metadata_empty(w: &mut FlagWorld) {
    let meta = &w.result().metadata;
    assert!(meta.is_empty(), "metadata: {meta:?}");
}

/// The `gherkin` crate rejects table cells containing `\"` (the testbed
/// writes JSON objects that way), so the runner works on copies where `\"`
/// is replaced by a plain `"`; cell values mean the same either way.
fn normalized_copy(features: &std::path::Path) -> PathBuf {
    let out = std::env::temp_dir().join(format!("dol-flagd-conformance-{}", std::process::id()));
    std::fs::create_dir_all(&out).expect("create temp dir");
    for entry in std::fs::read_dir(features).expect("read gherkin dir") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "feature") {
            let text = std::fs::read_to_string(&path).expect("read feature");
            let name = path.file_name().expect("file name");
            std::fs::write(out.join(name), text.replace("\\\"", "\"")).expect("write feature");
        }
    }
    out
}

fn main() {
    let dir = suite_dir();
    let features = dir.join("gherkin");
    if !features.is_dir() || !dir.join("flags/testkit-flags.json").is_file() {
        eprintln!(
            "flagd conformance suite not found: looked for {} (and flags/testkit-flags.json beside it). \
             Set DOL_SHARED_DIR to the folder holding conformance/flagd-testbed, or place `shared` next to the workspace.",
            features.display()
        );
        println!("0 passed, 1 failed");
        std::process::exit(1);
    }
    let features_copy = normalized_copy(&features);
    let writer = futures::executor::block_on(FlagWorld::cucumber().filter_run(
        features_copy.clone(),
        |feature, rule, scenario| {
            let skip = |tags: &[String]| tags.iter().any(|t| SKIPPED_TAGS.contains(&t.as_str()));
            let run = !(skip(&feature.tags)
                || rule.is_some_and(|r| skip(&r.tags))
                || skip(&scenario.tags));
            if !run {
                SKIPPED.fetch_add(1, Ordering::Relaxed);
            }
            run
        },
    ));
    let stats = writer.scenarios_stats();
    let failed = stats.failed + writer.parsing_errors() + writer.hook_errors();
    let _ = std::fs::remove_dir_all(&features_copy);
    let skipped = stats.skipped + SKIPPED.load(Ordering::Relaxed);
    println!(
        "{} passed, {failed} failed, {skipped} skipped",
        stats.passed
    );
    if failed > 0 || writer.execution_has_failed() || stats.passed == 0 {
        std::process::exit(1);
    }
}
