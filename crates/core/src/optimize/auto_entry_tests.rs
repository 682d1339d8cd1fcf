use serde_json::json;

use super::*;
use crate::gateway::store::record as record_request;
use crate::gateway::telemetry::RequestRecord;
use crate::optimize::feedback::{self, Feedback, Scale};
use crate::storage::MemoryKeyValue;
use crate::test_db::db as migrated_db;

const CHEAPEST_FIRST: [Tier; 3] = [Tier::Basic, Tier::Enhanced, Tier::Comprehensive];

#[test]
fn the_choice_reads_the_user_text_and_skips_pinned_models() {
    let r = |model: &str, messages: Value| {
        ChatRequest::from_value(&json!({"model": model, "messages": messages})).unwrap()
    };
    // The system prompt's cues do not make an easy ask hard.
    let easy = r(
        "auto",
        json!([
            {"role": "system", "content": "Prove, derive and optimize step by step."},
            {"role": "user", "content": "What is the capital of France?"}
        ]),
    );
    assert_eq!(prompt_text(&easy), "What is the capital of France?");
    assert_eq!(classify(&easy), Some(Difficulty::Easy));
    let thread = r(
        "dol-auto",
        json!([
            {"role": "user", "content": "Prove the algorithm terminates."},
            {"role": "assistant", "content": "Sure."},
            {"role": "user", "content": "And its complexity?"}
        ]),
    );
    assert_eq!(classify(&thread), Some(Difficulty::Hard));
    assert_eq!(
        classify(&r("gpt-4o", json!([{"role": "user", "content": "hi"}]))),
        None
    );
}

#[test]
fn choose_uses_the_threshold_and_names_the_reason() {
    let mut t = QualityTable::default();
    for i in 0..10 {
        t.observe(Tier::Basic, Difficulty::Easy, 8.0 + f64::from(i % 2));
        t.observe(Tier::Enhanced, Difficulty::Easy, 9.0);
    }
    let c = choose(&t, Difficulty::Easy, &CHEAPEST_FIRST, 7.0).unwrap();
    assert_eq!((c.tier, c.reason), (Tier::Basic, Reason::Meets));
    assert_eq!(c.header_value(), "easy;meets");
    // At 8.5 basic's lower bound (8.5 − 1.645 · 0.1667 = 8.226) no longer clears it.
    let c = choose(&t, Difficulty::Easy, &CHEAPEST_FIRST, 8.5).unwrap();
    assert_eq!((c.tier, c.reason), (Tier::Enhanced, Reason::Meets));
    // Unknown difficulty: explore the cheapest tier with candidates.
    let c = choose(&t, Difficulty::Hard, &CHEAPEST_FIRST[1..], 7.0).unwrap();
    assert_eq!(c.header_value(), "hard;explore");
    assert_eq!(c.tier, Tier::Enhanced);
    assert_eq!(choose(&t, Difficulty::Hard, &[], 7.0), None);
}

#[test]
fn a_missing_table_is_empty_and_a_broken_one_an_error() {
    let mut kv = MemoryKeyValue::default();
    assert_eq!(read_table(&mut kv), Ok(QualityTable::default()));
    kv.set(TABLE_KEY, b"[1, 2]").unwrap();
    assert!(read_table(&mut kv).unwrap_err().contains("selection table"));
}

#[test]
fn learning_counts_answers_at_their_tier_and_what_the_gate_passed_over() {
    let detail = json!({"attempts": [
        {"tier": "enhanced", "target": "o/cheap", "attempt": 1, "outcome": "low_quality", "quality": 4.0},
        {"tier": "enhanced", "target": "o/cheap2", "attempt": 1, "outcome": "timeout"},
        {"tier": "basic", "target": "o/tiny", "attempt": 1, "outcome": "ok", "quality": 8.0}
    ]});
    // The answer came from basic after enhanced was gated.
    assert_eq!(passed_over(&detail, None), vec![(Tier::Enhanced, 4.0)]);
    // Returned below the threshold: the answer itself is not counted twice.
    let low = json!({"attempts": [
        {"tier": "enhanced", "outcome": "low_quality", "quality": 5.0},
        {"tier": "basic", "outcome": "low_quality", "quality": 3.0}
    ]});
    assert_eq!(
        passed_over(&low, Some((Tier::Enhanced, 5.0))),
        vec![(Tier::Basic, 3.0)]
    );
    let rows = [
        Observed {
            difficulty: Difficulty::Hard,
            tier: Tier::Basic,
            quality: Some(8.0),
            passed_over: passed_over(&detail, None),
        },
        Observed {
            difficulty: Difficulty::Hard,
            tier: Tier::Basic,
            quality: None,
            passed_over: Vec::new(),
        },
    ];
    let t = learn(&rows);
    assert_eq!(t.get(Tier::Basic, Difficulty::Hard).n, 1);
    assert_eq!(t.get(Tier::Enhanced, Difficulty::Hard).mean(), Some(4.0));
    assert_eq!(t.get(Tier::Enhanced, Difficulty::Easy).n, 0);
}

fn row(
    id: &str,
    ts: u64,
    d: Option<Difficulty>,
    tier: Tier,
    quality: Option<f64>,
) -> RequestRecord {
    RequestRecord {
        id: id.to_owned(),
        ts_ms: ts,
        key_id: "key_a".to_owned(),
        route: "chat".to_owned(),
        tier,
        entry_tier: Tier::Enhanced,
        provider: "openai".to_owned(),
        model: "m".to_owned(),
        attempts: 1,
        latency_ms: 10,
        ttft_ms: None,
        prompt_tokens: 5,
        completion_tokens: 5,
        cost_micros: Some(1),
        baseline_cost_micros: Some(2),
        difficulty: d,
        subject: None,
        quality,
        outcome: "success".to_owned(),
        fallbacks: 0,
        cached: false,
        stream: false,
        variant: "auto".to_owned(),
        detail: json!({"attempts": []}),
    }
}

#[test]
fn relearn_folds_the_window_with_feedback_and_stores_one_key() {
    let mut db = migrated_db();
    let mut kv = MemoryKeyValue::default();
    let now: u64 = 1_800_000_000_000;
    let mut gated = row(
        "r-gated",
        now - 1_000,
        Some(Difficulty::Hard),
        Tier::Basic,
        Some(8.0),
    );
    gated.detail = json!({"attempts": [
        {"tier": "enhanced", "outcome": "low_quality", "quality": 5.0},
        {"tier": "basic", "outcome": "ok", "quality": 8.0}
    ], "selection": {"reason": "explore"}});
    gated.fallbacks = 1;
    let rows = [
        gated,
        row(
            "r-easy",
            now - 2_000,
            Some(Difficulty::Easy),
            Tier::Basic,
            Some(9.0),
        ),
        // Feedback (thumbs down → 0) replaces the automatic 9.
        row(
            "r-fb",
            now - 3_000,
            Some(Difficulty::Easy),
            Tier::Basic,
            Some(9.0),
        ),
        // Left out: no difficulty (a pinned model), too old, a cache hit.
        row("r-pinned", now - 4_000, None, Tier::Basic, Some(1.0)),
        row(
            "r-old",
            now - 2 * 86_400_000,
            Some(Difficulty::Easy),
            Tier::Basic,
            Some(1.0),
        ),
        RequestRecord {
            cached: true,
            ..row(
                "r-hit",
                now - 5_000,
                Some(Difficulty::Easy),
                Tier::Basic,
                Some(1.0),
            )
        },
    ];
    for r in &rows {
        record_request(&mut db, r).unwrap();
    }
    let fb = Feedback {
        request_id: "r-fb".to_owned(),
        scale: Scale::Thumbs,
        raw_score: -1,
        score: 0.0,
        comment: None,
    };
    feedback::record(&mut db, &fb, "key_a", now)
        .unwrap()
        .unwrap();

    let learned = relearn(&mut db, &mut kv, i64::try_from(now).unwrap()).unwrap();
    assert_eq!((learned.rows, learned.auto_entered), (3, 1));
    let t = &learned.table;
    let easy = t.get(Tier::Basic, Difficulty::Easy);
    assert_eq!((easy.n, easy.mean()), (2, Some(4.5)));
    assert_eq!(t.get(Tier::Basic, Difficulty::Hard).mean(), Some(8.0));
    assert_eq!(t.get(Tier::Enhanced, Difficulty::Hard).mean(), Some(5.0));
    assert_eq!(read_table(&mut kv).unwrap(), learned.table);

    // The admin view: cells, the choices and the flag's auto variants.
    let doc = json!({"flags": {"generation_pipeline": {
        "state": "ENABLED", "defaultVariant": "auto",
        "variants": {"comprehensive": "comprehensive", "auto": "auto", "on": "auto"}}}});
    let v = view(&mut kv, 7.0, "generation_pipeline", Some(&doc));
    assert_eq!(v["autoVariants"], json!(["auto (default)", "on"]));
    assert_eq!(
        (v["rows"].clone(), v["autoEntered"].clone()),
        (json!(3), json!(1))
    );
    let cells = v["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 3);
    assert_eq!(cells[0]["tier"], "basic");
    assert_eq!(cells[0]["difficulty"], "easy");
    assert_eq!(
        (cells[0]["n"].clone(), cells[0]["mean"].clone()),
        (json!(2), json!(4.5))
    );
    assert_eq!(
        v["choices"]["easy"],
        json!({"tier": "basic", "reason": "explore"})
    );
    assert_eq!(v["error"], Value::Null);
    // An empty store: no cells, everything explored at basic; the flag
    // without an auto variant says so.
    let v = view(
        &mut MemoryKeyValue::default(),
        7.0,
        "generation_pipeline",
        None,
    );
    assert_eq!(
        (v["cells"].clone(), v["autoVariants"].clone()),
        (json!([]), Value::Null)
    );
    assert_eq!(
        auto_variants(&json!({"flags": {}}), "generation_pipeline"),
        Vec::<String>::new()
    );
}
