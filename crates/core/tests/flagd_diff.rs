//! Differential test: DOL's evaluator against `@openfeature/flagd-core`.
//!
//! Generates deterministic pseudo-random contexts (xorshift, fixed seed) for
//! every flag of the flagd testkit and of `tests/flagd-diff/dol-flags.json`,
//! evaluates them here and once in node (`tests/flagd-diff/evaluate.mjs`),
//! and compares variant, value, reason and error code.
//!
//! Needs `npm ci --prefix tests/flagd-diff`; `DOL_SKIP_NODE_DIFF=1` skips
//! (loudly) where node is unavailable.
//!
//! Known disagreement, counted apart: json-logic-engine (flagd-core's
//! JsonLogic) throws on loose comparisons that coerce a non-numeric string
//! to NaN, which flagd-core reports as ERROR/GENERAL; DOL evaluates them.
//!
//! Deliberately not generated: non-ASCII bucketing keys. flagd (Go, and the
//! flagd spec) hashes UTF-8 bytes; flagd-core's `imurmurhash` hashes UTF-16
//! code units, so the two disagree there and DOL follows flagd.

// A panic is how this test reports failure; the workspace denies these outside tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use dol_core::flags::{EvaluationContext, FlagSet};
use serde_json::{Map, Value, json};

const CONTEXTS_PER_FLAG: usize = 2000;
const NOW: u64 = 1_700_000_000;

/// xorshift64*: tiny, deterministic, good enough to spread test inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn word(&mut self, max_len: usize) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCXYZ0123456789-_.@";
        let len = self.below(max_len + 1);
        (0..len).map(|_| *self.pick(ALPHABET) as char).collect()
    }
}

fn random_version(rng: &mut Rng) -> Value {
    match rng.below(8) {
        0 => json!(format!(
            "{}.{}.{}",
            rng.below(4),
            rng.below(4),
            rng.below(4)
        )),
        1 => json!(format!("v{}.{}", rng.below(4), rng.below(4))),
        2 => json!(format!(
            "{}.{}.{}-rc.{}",
            rng.below(3),
            rng.below(3),
            rng.below(3),
            rng.below(3)
        )),
        3 => json!(rng.below(4)),
        4 => json!(rng.below(40) as f64 / 10.0),
        5 => json!(
            rng.pick(&[
                "2.0.0-rc.1",
                "2.0.0+build.5",
                "1.5.0-alpha",
                "V2.1",
                "01.2.3",
                "2.0.0.0",
                "x",
                ""
            ])
            .to_string()
        ),
        6 => json!(format!("{}", rng.below(4))),
        _ => Value::Null,
    }
}

/// A value of a random JSON type, to probe coercions.
fn random_scalar(rng: &mut Rng) -> Value {
    match rng.below(6) {
        0 => Value::Null,
        1 => json!(rng.below(2) == 0),
        2 => json!(rng.below(70) as i64 - 5),
        3 => json!(rng.below(1000) as f64 / 8.0),
        4 => json!(rng.below(10).to_string()),
        _ => json!(rng.word(6)),
    }
}

fn random_context(rng: &mut Rng) -> Map<String, Value> {
    let mut m = Map::new();
    let mut maybe = |rng: &mut Rng, key: &str, v: Value| {
        if rng.below(5) != 0 {
            m.insert(key.to_owned(), v);
        }
    };
    let tk = match rng.below(6) {
        0 => json!(""),
        1 => json!(
            rng.pick(&[
                "5c3d8535-f81a-4478-a6d3-afaa4d51199e",
                "jon@company.com",
                "user1"
            ])
            .to_string()
        ),
        _ => json!(rng.word(14)),
    };
    maybe(rng, "targetingKey", tk);
    let email = match rng.below(4) {
        0 => json!(
            rng.pick(&[
                "ballmer@macrosoft.com",
                "jobs@orange.com",
                "admin@x.io",
                "me@dol.dev"
            ])
            .to_string()
        ),
        1 => random_scalar(rng),
        _ => json!(format!(
            "{}@{}.{}",
            rng.word(6),
            rng.word(5),
            rng.pick(&["com", "dev", "io"])
        )),
    };
    maybe(rng, "email", email);
    let version = random_version(rng);
    maybe(rng, "version", version);
    let id = match rng.below(3) {
        0 => json!(format!("abc{}", rng.word(4))),
        1 => json!(format!("{}xyz", rng.word(4))),
        _ => random_scalar(rng),
    };
    maybe(rng, "id", id);
    let name = json!({"name": rng.word(8)});
    maybe(rng, "user", name);
    let tier = json!(rng.pick(&["premium", "basic", "gold"]).to_string());
    maybe(rng, "tier", tier);
    let color = json!(
        rng.pick(&["red", "green", "blue", "yellow", ""])
            .to_string()
    );
    maybe(rng, "color", color);
    let num = random_scalar(rng);
    maybe(rng, "num", num);
    let plan = match rng.below(2) {
        0 => json!(rng.pick(&["enterprise", "ent", "pro", "free"]).to_string()),
        _ => random_scalar(rng),
    };
    maybe(rng, "plan", plan);
    let seats = match rng.below(3) {
        0 => json!(rng.below(15)),
        1 => json!(rng.below(15).to_string()),
        _ => random_scalar(rng),
    };
    maybe(rng, "seats", seats);
    let trial = random_scalar(rng);
    maybe(rng, "trial", trial);
    let age = match rng.below(3) {
        0 => json!(rng.below(80)),
        1 => json!(rng.below(800) as f64 / 10.0),
        _ => random_scalar(rng),
    };
    maybe(rng, "age", age);
    let org = json!(rng.word(5));
    maybe(rng, "org", org);
    let tags = json!([rng.pick(&["night", "day"]).to_string(), rng.word(3)]);
    maybe(rng, "tags", tags);
    let region = json!(rng.pick(&["x", "y", "q"]).to_string());
    maybe(rng, "region", region);
    m
}

fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_value(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_value(v, w)))
        }
        _ => a == b,
    }
}

fn diff_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/flagd-diff")
}

fn shared_flags() -> Option<PathBuf> {
    let shared = std::env::var_os("DOL_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    let p = shared.join("conformance/flagd-testbed/evaluator/flags/testkit-flags.json");
    p.is_file().then_some(p)
}

/// Evaluate `cases` in node; one result per case, in order.
fn run_node(flags: &Path, cases: &[(String, Map<String, Value>)]) -> Vec<Value> {
    let mut input = String::new();
    for (flag, ctx) in cases {
        input.push_str(&json!({"flag": flag, "context": ctx}).to_string());
        input.push('\n');
    }
    let mut child = Command::new("node")
        .arg(diff_dir().join("evaluate.mjs"))
        .arg(flags)
        .current_dir(diff_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting node (is it installed?)");
    let mut stdin = child.stdin.take().expect("node stdin");
    // Write from a thread so a full stdout pipe cannot deadlock us.
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("node output");
    writer
        .join()
        .expect("writer thread")
        .expect("writing to node");
    assert!(
        out.status.success(),
        "node evaluate.mjs failed: {}",
        out.status
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("node result JSON"))
        .collect()
}

fn main() {
    if std::env::var_os("DOL_SKIP_NODE_DIFF").is_some_and(|v| v == "1") {
        eprintln!(
            "!!! flagd differential test SKIPPED (DOL_SKIP_NODE_DIFF=1): nothing was compared !!!"
        );
        println!("flagd-diff: 0 passed, 0 failed, 1 skipped");
        return;
    }
    if !diff_dir()
        .join("node_modules/@openfeature/flagd-core")
        .is_dir()
    {
        eprintln!(
            "flagd differential test: {} has no node_modules; run `npm ci --prefix tests/flagd-diff` \
             (or set DOL_SKIP_NODE_DIFF=1 to skip)",
            diff_dir().display()
        );
        println!("flagd-diff: 0 passed, 1 failed");
        std::process::exit(1);
    }
    let mut files = vec![diff_dir().join("dol-flags.json")];
    match shared_flags() {
        Some(p) => files.push(p),
        None => {
            eprintln!(
                "flagd differential test: flagd testkit flags not found (set DOL_SHARED_DIR)"
            );
            println!("flagd-diff: 0 passed, 1 failed");
            std::process::exit(1);
        }
    }
    let (mut passed, mut failed, mut known) = (0usize, 0usize, 0usize);
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read flags");
        let set = FlagSet::parse(&text).expect("flags parse");
        // OFREP and the gateway compile only the flag they evaluate, without
        // the optimizer passes (`FlagSet::from_value_for`): every case must
        // get the same answer that way as from the whole optimized set.
        let doc: Value = serde_json::from_str(&text).expect("flags JSON");
        let singles: std::collections::BTreeMap<&str, FlagSet> = set
            .keys()
            .map(|key| (key, FlagSet::from_value_for(&doc, key).expect("one flag")))
            .collect();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut cases = Vec::new();
        for key in set.keys() {
            for _ in 0..CONTEXTS_PER_FLAG {
                cases.push((key.to_owned(), random_context(&mut rng)));
            }
        }
        let theirs = run_node(&file, &cases);
        assert_eq!(theirs.len(), cases.len(), "node returned a result per case");
        let mut shown = 0;
        // Counts a failure and prints the first 25 (the rest only count).
        let mut fail = |report: String| {
            failed += 1;
            if shown < 25 {
                shown += 1;
                eprintln!("{report}");
            }
        };
        for ((flag, ctx), their) in cases.iter().zip(&theirs) {
            let ours = set.evaluate(flag, &EvaluationContext::from_map(ctx.clone()), NOW);
            let alone = singles[flag.as_str()].evaluate(
                flag,
                &EvaluationContext::from_map(ctx.clone()),
                NOW,
            );
            if alone != ours {
                fail(format!(
                    "ONE-FLAG MISMATCH {flag} ctx={}\n  whole set: {ours:?}\n  one flag:  {alone:?}",
                    Value::Object(ctx.clone())
                ));
                continue;
            }
            let mine = json!({
                "value": ours.value.clone().unwrap_or(Value::Null),
                "variant": ours.variant,
                "reason": ours.reason.as_str(),
                "errorCode": ours.error.as_ref().map(|e| e.code.as_str()),
            });
            let ok = ["variant", "reason", "errorCode"]
                .iter()
                .all(|k| mine[k] == their[k])
                && same_value(&mine["value"], &their["value"]);
            if ok {
                passed += 1;
            } else if their["thrown"] == "NaN"
                || ours
                    .error
                    .as_ref()
                    .is_some_and(|e| e.message.contains("NaN"))
            {
                // Known divergence: json-logic-engine throws when a loose
                // comparison coerces a non-numeric string to NaN (`"a" == false`,
                // `"x" < 5`); flagd-core turns that into ERROR/GENERAL, while
                // DOL's JsonLogic (like json-logic-js and flagd's Go engine)
                // simply compares false. Conversely datalogic-rs guards
                // `"" == 1` (NaN) where json-logic-engine reads "" as 0.
                known += 1;
            } else {
                fail(format!(
                    "MISMATCH {flag} ctx={}\n  dol:        {mine}\n  flagd-core: {their}",
                    Value::Object(ctx.clone())
                ));
            }
        }
    }
    if known > 0 {
        eprintln!(
            "{known} cases differ only by json-logic-engine's NaN guard (flagd-core ERROR/GENERAL, DOL evaluates the comparison as false); counted as known disagreements, not failures"
        );
    }
    println!("flagd-diff: {passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}
