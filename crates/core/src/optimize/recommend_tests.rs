//! The recommender: each kind on hand-built inputs, deterministic ids, and
//! its storage (scan, list, apply as a guarded rollout, dismiss) against a
//! real database with the real migrations.

use serde_json::{Value, json};

use super::recommend::*;
use super::recommend_store::{self as store, Config, ListFilter, parse_body};
use crate::experiments::stats::MeanSample;
use crate::gateway::telemetry::RequestRecord;
use crate::gateway::tiers::Tier;
use crate::observe::usage::Agg;
use crate::storage::{MemoryKeyValue, SqlValue};
use crate::test_db::{TestDb, count, db};

const NOW: i64 = 1_800_000_000_000;
const CFG: Config = Config {
    quality_threshold: 7.0,
    cache_ttl_secs: 3_600,
};

fn tier(template: Option<&str>, name: &str, cost_micros: u64, scores: &[f64]) -> TierStats {
    TierStats {
        template: template.map(str::to_owned),
        tier: name.to_owned(),
        requests: scores.len() as u64,
        cost_micros: cost_micros * scores.len() as u64,
        latency_sum_ms: 500 * scores.len() as u64,
        quality: MeanSample::from_values(scores),
        below: scores.iter().filter(|q| **q < 7.0).count() as u64,
    }
}

/// `n` scores alternating around `mean` (±0.5), so there is spread.
fn scores(n: usize, mean: f64) -> Vec<f64> {
    (0..n)
        .map(|i| if i % 2 == 0 { mean + 0.5 } else { mean - 0.5 })
        .collect()
}

fn inputs(tiers: Vec<TierStats>) -> Inputs {
    Inputs {
        window_secs: 86_400,
        quality_threshold: 7.0,
        tiers,
        ..Inputs::default()
    }
}

#[test]
fn a_cheaper_tier_of_equal_quality_is_recommended_as_a_guarded_rollout() {
    let recs = derive(&inputs(vec![
        tier(None, "comprehensive", 10_000, &scores(40, 8.0)),
        tier(None, "enhanced", 1_000, &scores(40, 8.0)),
        tier(None, "basic", 500, &scores(40, 5.0)),
    ]));
    assert_eq!(recs.len(), 1, "{recs:#?}");
    let r = &recs[0];
    assert_eq!(r.kind, Kind::CheaperTier);
    assert_eq!(
        r.id,
        recommendation_id(Kind::CheaperTier, &["", "comprehensive", "enhanced"])
    );
    // 40 requests a day at 0.009 USD less each.
    assert!((r.impact.usd_per_day.unwrap() - 0.36).abs() < 1e-9, "{r:?}");
    assert_eq!(r.impact.quality, Some(0.0));
    assert_eq!(r.evidence["test"], "welch-t (non-inferiority)");
    assert_eq!(r.evidence["samples"], json!({"current": 40, "cheaper": 40}));
    let (lo, hi) = (
        r.evidence["interval"][0].as_f64().unwrap(),
        r.evidence["interval"][1].as_f64().unwrap(),
    );
    assert!(
        lo < 0.0 && hi > 0.0 && lo > -NON_INFERIORITY_MARGIN,
        "{lo} {hi}"
    );
    assert!(r.confidence > 0.99, "{}", r.confidence);
    let Apply::Rollout {
        variant,
        control,
        plan,
    } = &r.apply
    else {
        panic!("not a rollout: {:?}", r.apply);
    };
    assert_eq!(
        (variant.as_str(), control.as_str()),
        ("enhanced", "comprehensive")
    );
    // The quality guard's floor: the observed 8.0 minus the margin (wider
    // than the interval's half-width here), and the plan is valid.
    assert_eq!(plan["guards"][0]["metric"], "quality");
    assert_eq!(plan["guards"][0]["threshold"], 7.5);
    assert_eq!(plan["on_breach"], "rollback");
    let variants = ["comprehensive", "enhanced", "basic"].map(str::to_owned);
    crate::rollouts::plan::RolloutPlan::parse(plan, &variants, Some("comprehensive")).unwrap();
}

#[test]
fn a_worse_or_unproven_cheaper_tier_is_not_recommended() {
    // Worse by 1 point: the interval reaches below the margin.
    assert!(
        derive(&inputs(vec![
            tier(None, "comprehensive", 10_000, &scores(40, 8.0)),
            tier(None, "enhanced", 1_000, &scores(40, 7.0)),
        ]))
        .is_empty()
    );
    // Equal but too few samples.
    assert!(
        derive(&inputs(vec![
            tier(None, "comprehensive", 10_000, &scores(10, 8.0)),
            tier(None, "enhanced", 1_000, &scores(10, 8.0)),
        ]))
        .is_empty()
    );
    // A template's finding is reported but not applicable as a rollout.
    let recs = derive(&inputs(vec![
        tier(Some("faq"), "comprehensive", 10_000, &scores(30, 8.0)),
        tier(Some("faq"), "enhanced", 1_000, &scores(30, 8.2)),
    ]));
    assert_eq!(recs.len(), 1);
    assert!(matches!(recs[0].apply, Apply::Manual { .. }));
    assert_ne!(
        recs[0].id,
        recommendation_id(Kind::CheaperTier, &["", "comprehensive", "enhanced"])
    );
}

fn model(provider: &str, name: &str, requests: u64, errors: u64, bucket: usize) -> ModelStats {
    let mut agg = Agg {
        requests,
        errors,
        ..Agg::default()
    };
    agg.buckets[bucket] = requests;
    ModelStats {
        provider: provider.into(),
        model: name.into(),
        agg,
    }
}

#[test]
fn a_failing_or_slow_model_is_the_wrong_default() {
    let mut i = inputs(vec![]);
    i.models = vec![
        model("openai", "gpt-4o", 200, 2, 3),
        model("anthropic", "claude-haiku-4-5", 100, 20, 3),
        model("gemini", "gemini-2.5-flash", 100, 1, 9),
    ];
    let recs = derive(&i);
    let kinds: Vec<(Kind, &str)> = recs
        .iter()
        .map(|r| (r.kind, r.subject["model"].as_str().unwrap()))
        .collect();
    assert!(
        kinds.contains(&(Kind::ErrorRate, "claude-haiku-4-5")),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&(Kind::SlowModel, "gemini-2.5-flash")),
        "{kinds:?}"
    );
    assert_eq!(kinds.len(), 2, "{kinds:?}");
    let err = recs.iter().find(|r| r.kind == Kind::ErrorRate).unwrap();
    assert_eq!(err.evidence["samples"], json!({"model": 100, "rest": 300}));
    assert!(err.evidence["pValue"].as_f64().unwrap() < ALPHA_STRICT);
    assert!(matches!(err.apply, Apply::Manual { .. }));
}

#[test]
fn a_template_below_the_threshold_too_often_and_unpriced_models_are_reported() {
    let mut i = inputs(vec![tier(
        Some("summary"),
        "enhanced",
        1_000,
        &scores(40, 6.0),
    )]);
    i.unpriced = vec![Unpriced {
        provider: "local".into(),
        model: "mystery".into(),
        requests: 12,
    }];
    let recs = derive(&i);
    let low = recs
        .iter()
        .find(|r| r.kind == Kind::LowQualityTemplate)
        .unwrap();
    assert_eq!(low.subject["template"], "summary");
    assert_eq!(low.evidence["share"], 1.0);
    assert!(low.evidence["interval"][0].as_f64().unwrap() > MAX_BELOW_SHARE);
    let unpriced = recs.iter().find(|r| r.kind == Kind::UnpricedModel).unwrap();
    assert_eq!(unpriced.impact.requests_per_day, 12.0);
    assert_eq!(unpriced.confidence, 1.0);
    // A healthy template is not reported.
    let ok = derive(&inputs(vec![tier(
        Some("faq"),
        "enhanced",
        1_000,
        &scores(40, 8.5),
    )]));
    assert!(ok.is_empty(), "{ok:?}");
}

fn sent(key: &str, minute: i64, cached: bool) -> Sent {
    Sent {
        key: key.into(),
        ts_ms: minute * 60_000,
        cached,
        cost_micros: 1_000,
    }
}

#[test]
fn repeats_after_the_ttl_suggest_a_longer_one() {
    // 100 prompts, each sent again 2 h later (missed with a 1 h TTL), and
    // 100 sent again 10 min later (a cache hit), in any order.
    let mut all = Vec::new();
    for i in 0..100 {
        let (a, b) = (format!("k\u{0}slow {i}"), format!("k\u{0}fast {i}"));
        all.extend([sent(&a, i, false), sent(&a, i + 120, false)]);
        all.extend([sent(&b, i, false), sent(&b, i + 10, true)]);
    }
    all.reverse();
    let stats = repeat_stats(all, 3_600);
    assert_eq!(
        (
            stats.requests,
            stats.missed,
            stats.missed_cost_micros,
            stats.suggested_ttl_secs
        ),
        (400, 100, 100_000, 7_200)
    );
    let mut i = inputs(vec![]);
    i.cache_ttl_secs = 3_600;
    i.repeats = stats.clone();
    let recs = derive(&i);
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(recs[0].kind, Kind::CacheTtl);
    assert_eq!(recs[0].subject["to"], 7_200);
    assert_eq!(recs[0].evidence["share"], 0.25);
    assert!(matches!(recs[0].apply, Apply::Manual { .. }));
    // Already long enough, or too few samples: nothing.
    i.cache_ttl_secs = 7_200;
    assert!(derive(&i).is_empty());
    i.cache_ttl_secs = 3_600;
    i.repeats.requests = 50;
    assert!(derive(&i).is_empty());
}

#[test]
fn bodies_of_apply_and_dismiss_are_checked() {
    assert_eq!(parse_body(b"").unwrap(), None);
    assert_eq!(parse_body(b"{}").unwrap(), None);
    assert_eq!(
        parse_body(br#"{"reason": "seasonal"}"#).unwrap().as_deref(),
        Some("seasonal")
    );
    for (body, field) in [
        (&b"not json"[..], "$"),
        (b"[1]", "$"),
        (br#"{"why": 1}"#, "why"),
        (br#"{"reason": 5}"#, "reason"),
    ] {
        match parse_body(body) {
            Err(store::RecommendError::Body { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Storage

fn request(id: usize, entry: Tier, model: &str, cost: u64, quality: f64) -> RequestRecord {
    RequestRecord {
        id: format!("req-{id}"),
        ts_ms: (NOW - 3_600_000) as u64 + id as u64,
        key_id: "k".into(),
        route: "chat".into(),
        tier: entry,
        entry_tier: entry,
        provider: "openai".into(),
        model: model.into(),
        attempts: 1,
        latency_ms: 400,
        ttft_ms: None,
        prompt_tokens: 10,
        completion_tokens: 20,
        cost_micros: Some(cost),
        baseline_cost_micros: Some(cost),
        difficulty: None,
        subject: None,
        quality: Some(quality),
        outcome: "success".into(),
        fallbacks: 0,
        cached: false,
        stream: false,
        variant: "-".into(),
        detail: json!({}),
    }
}

/// 30 requests per tier, equal quality, enhanced ten times cheaper.
fn traffic(db: &mut TestDb) {
    for i in 0..60 {
        let q = if i % 2 == 0 { 8.5 } else { 7.5 };
        let r = if i < 30 {
            request(i, Tier::Comprehensive, "gpt-4o", 10_000, q)
        } else {
            request(i, Tier::Enhanced, "gpt-4o-mini", 1_000, q)
        };
        crate::gateway::store::record(db, &r).unwrap();
    }
}

/// Applies finding `id` as `alice` at [`NOW`], the tier flag named `flag`.
fn apply_as_alice(
    db: &mut TestDb,
    kv: &mut MemoryKeyValue,
    id: &str,
    flag: &str,
) -> Result<Value, crate::error::ApiError> {
    store::apply(db, kv, id, flag, "alice", NOW, &CFG)
}

fn cheaper_id() -> String {
    recommendation_id(Kind::CheaperTier, &["", "comprehensive", "enhanced"])
}

fn ids(list: &Value) -> Vec<String> {
    list["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn the_scan_stores_findings_and_queues_each_new_one_once() {
    let mut db = db();
    traffic(&mut db);
    let first = store::scan(&mut db, NOW, &CFG).unwrap();
    assert_eq!(first.new, vec![cheaper_id()], "{first:?}");
    assert_eq!(count(&mut db, "outbox"), 1);
    let rows = db.run("SELECT payload FROM outbox", &[]);
    let payload: Value = match &rows[0][0] {
        SqlValue::Text(t) => serde_json::from_str(t).unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(payload["data"]["level"], "info");
    assert_eq!(payload["scan"], "recommendations");
    // Recomputed a day later: the same finding, nothing new queued.
    let again = store::scan(&mut db, NOW + 86_400_000, &CFG).unwrap();
    assert!(again.new.is_empty(), "{again:?}");
    assert_eq!(count(&mut db, "outbox"), 1);
    assert_eq!(count(&mut db, "recommendations"), 1);
}

#[test]
fn dismissal_sticks_across_recomputation_and_is_audited() {
    let mut db = db();
    traffic(&mut db);
    let id = cheaper_id();
    let listed = store::list(&mut db, NOW, &CFG, ListFilter::Active).unwrap();
    assert_eq!(ids(&listed), vec![id.clone()]);
    assert_eq!(listed["recommendations"][0]["status"], "open");
    // Unknown id.
    let err = store::dismiss(&mut db, "rec-0000", None, "alice", NOW, &CFG).unwrap_err();
    assert_eq!(err.status(), 404);
    store::dismiss(&mut db, &id, Some("not now"), "alice", NOW, &CFG).unwrap();
    // Hidden by default, marked with ?status=all, also after a new scan.
    store::scan(&mut db, NOW + 60_000, &CFG).unwrap();
    let active = store::list(&mut db, NOW + 60_000, &CFG, ListFilter::Active).unwrap();
    assert!(ids(&active).is_empty(), "{active}");
    let all = store::list(&mut db, NOW + 60_000, &CFG, ListFilter::All).unwrap();
    assert_eq!(all["recommendations"][0]["status"], "dismissed");
    assert_eq!(all["recommendations"][0]["decision"]["by"], "alice");
    // Twice: 409; applying a dismissed one: 409.
    let again = store::dismiss(&mut db, &id, None, "alice", NOW, &CFG).unwrap_err();
    assert_eq!(again.status(), 409);
    let mut kv = MemoryKeyValue::default();
    let apply = apply_as_alice(&mut db, &mut kv, &id, "generation_pipeline").unwrap_err();
    assert_eq!(apply.status(), 409);
    let audited = db.run(
        "SELECT COUNT(*) FROM audit_log WHERE kind = 'recommendation' AND action = 'dismiss'",
        &[],
    );
    assert_eq!(audited[0][0], SqlValue::Integer(1));
}

#[test]
fn applying_a_routing_finding_starts_a_guarded_rollout_in_the_same_transaction() {
    let mut db = db();
    traffic(&mut db);
    let mut kv = MemoryKeyValue::default();
    let id = cheaper_id();
    let out = apply_as_alice(&mut db, &mut kv, &id, "generation_pipeline").unwrap();
    assert_eq!(out["status"], "applied");
    assert_eq!(out["rollout"]["variant"], "enhanced");
    assert_eq!(out["rollout"]["control"], "comprehensive");
    assert_eq!(out["rollout"]["status"], "active");
    let rollout = crate::rollouts::store::get(&mut db, "generation_pipeline")
        .unwrap()
        .unwrap();
    assert_eq!(rollout.plan.guards.len(), 2);
    assert_eq!(
        rollout.plan.on_breach,
        crate::rollouts::plan::OnBreach::Rollback
    );
    let audited = db.run(
        "SELECT COUNT(*) FROM audit_log WHERE kind = 'recommendation' AND action = 'apply'",
        &[],
    );
    assert_eq!(audited[0][0], SqlValue::Integer(1));
    // Twice: 409, nothing more written.
    let again = apply_as_alice(&mut db, &mut kv, &id, "generation_pipeline").unwrap_err();
    assert_eq!(again.status(), 409);
    // A refused rollout (the flag is under rollout now) rolls the decision
    // back: a second finding on another database shows it.
    let mut other = self::db();
    traffic(&mut other);
    let mut kv2 = MemoryKeyValue::default();
    let missing = apply_as_alice(&mut other, &mut kv2, &id, "no-such-flag").unwrap_err();
    assert_eq!(missing.status(), 404);
    assert_eq!(count(&mut other, "recommendations"), 0, "nothing decided");
}

#[test]
fn a_finding_that_needs_a_person_is_refused_with_its_reason() {
    let mut db = db();
    db.run(
        "INSERT INTO models (provider, model, tier, input_price, output_price, context_window, updated_at) \
         VALUES ('openai', 'gpt-4o', 'comprehensive', NULL, NULL, 1000, 0)",
        &[],
    );
    let id = recommendation_id(Kind::UnpricedModel, &["openai", "gpt-4o"]);
    let mut kv = MemoryKeyValue::default();
    let err = apply_as_alice(&mut db, &mut kv, &id, "generation_pipeline").unwrap_err();
    assert_eq!(err.status(), 409);
    assert!(
        err.message.contains("PUT /admin/models/openai/gpt-4o"),
        "{}",
        err.message
    );
    assert_eq!(count(&mut db, "recommendations"), 0);
    assert_eq!(count(&mut db, "rollouts"), 0);
}

#[test]
fn logged_prompts_repeated_after_the_ttl_are_read_from_the_request_log() {
    let mut db = db();
    // 60 prompts, each sent again 2 h later: every repeat missed a 1 h cache.
    for i in 0..120usize {
        let mut r = request(i, Tier::Enhanced, "gpt-4o-mini", 1_000, 8.0);
        r.ts_ms = (NOW - 10 * 3_600_000) as u64 + (i / 60) as u64 * 7_200_000 + (i % 60) as u64;
        crate::gateway::store::record(&mut db, &r).unwrap();
        db.run(
            "INSERT INTO request_bodies (request_id, org_id, ts, prompt, answer) VALUES (?, '', ?, ?, '')",
            &[
                SqlValue::Text(r.id.clone()),
                SqlValue::Integer(r.ts_ms as i64),
                SqlValue::Text(format!("prompt {}", i % 60)),
            ],
        );
    }
    let inputs = store::read_inputs(&mut db, NOW, &CFG).unwrap();
    assert_eq!(
        (
            inputs.repeats.requests,
            inputs.repeats.missed,
            inputs.repeats.suggested_ttl_secs
        ),
        (120, 60, 7_200)
    );
    let listed = store::list(&mut db, NOW, &CFG, ListFilter::Active).unwrap();
    assert!(
        ids(&listed).contains(&recommendation_id(Kind::CacheTtl, &[])),
        "{listed}"
    );
}
