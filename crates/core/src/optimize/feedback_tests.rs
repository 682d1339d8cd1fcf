//! Reference values were computed with SciPy 1.17.1 (NumPy 2.4.6, Python 3):
//! `r = scipy.stats.pearsonr(x, y)`, `r.statistic`, `r.pvalue`,
//! `r.confidence_interval(0.95)`.

use super::*;
use crate::gateway::store::record as record_request;
use crate::gateway::telemetry::RequestRecord;
use crate::gateway::tiers::Tier;
use crate::test_db::db as migrated_db;

fn err(body: &str) -> FeedbackError {
    parse(body.as_bytes()).unwrap_err()
}

fn field_of(body: &str) -> &'static str {
    match err(body) {
        FeedbackError::Field { field, .. } => field,
        other => panic!("not a field error: {other:?}"),
    }
}

#[test]
fn thumbs_and_stars_normalize() {
    let f = parse(br#"{"request_id": "chatcmpl-1", "score": 1, "comment": "great"}"#).unwrap();
    assert_eq!((f.scale, f.raw_score, f.score), (Scale::Thumbs, 1, 1.0));
    assert_eq!(f.comment.as_deref(), Some("great"));
    assert_eq!(
        parse(br#"{"request_id": "a", "score": -1}"#).unwrap().score,
        0.0
    );
    assert_eq!(
        parse(br#"{"request_id": "a", "score": 0}"#).unwrap().score,
        0.5
    );
    let stars = parse(br#"{"request_id": "a", "score": 4}"#).unwrap();
    assert_eq!((stars.scale, stars.score), (Scale::Stars, 0.75));
    let one_star = parse(br#"{"request_id": "a", "score": 1, "scale": "stars"}"#).unwrap();
    assert_eq!((one_star.scale, one_star.score), (Scale::Stars, 0.0));
    assert_eq!(normalize(Scale::Stars, 5), Some(1.0));
    assert_eq!(normalize(Scale::Thumbs, 2), None);
}

#[test]
fn each_bad_body_names_its_problem() {
    assert!(matches!(err("not json"), FeedbackError::Json(_)));
    assert!(matches!(err("[1]"), FeedbackError::Json(_)));
    assert_eq!(field_of(r#"{"score": 1}"#), "request_id");
    assert_eq!(field_of(r#"{"request_id": 5, "score": 1}"#), "request_id");
    assert_eq!(field_of(r#"{"request_id": " ", "score": 1}"#), "request_id");
    let long = format!(r#"{{"request_id": "{}", "score": 1}}"#, "x".repeat(201));
    assert_eq!(field_of(&long), "request_id");
    assert_eq!(field_of(r#"{"request_id": "a"}"#), "score");
    assert_eq!(field_of(r#"{"request_id": "a", "score": "1"}"#), "score");
    assert_eq!(field_of(r#"{"request_id": "a", "score": 1.5}"#), "score");
    assert_eq!(field_of(r#"{"request_id": "a", "score": 6}"#), "score");
    assert_eq!(field_of(r#"{"request_id": "a", "score": -2}"#), "score");
    assert_eq!(
        field_of(r#"{"request_id": "a", "score": 0, "scale": "stars"}"#),
        "score"
    );
    assert_eq!(
        field_of(r#"{"request_id": "a", "score": 3, "scale": "thumbs"}"#),
        "score"
    );
    assert_eq!(
        field_of(r#"{"request_id": "a", "score": 1, "scale": "emoji"}"#),
        "scale"
    );
    assert_eq!(
        field_of(r#"{"request_id": "a", "score": 1, "comment": 7}"#),
        "comment"
    );
    let long = format!(
        r#"{{"request_id": "a", "score": 1, "comment": "{}"}}"#,
        "x".repeat(2_001)
    );
    assert_eq!(field_of(&long), "comment");
    let api = ApiError::from(err(r#"{"request_id": "a", "score": 9}"#));
    assert_eq!(api.status(), 400);
    assert_eq!(
        ApiError::from(FeedbackError::UnknownRequest("x".into())).status(),
        404
    );
}

fn request(id: &str, key: &str, quality: Option<f64>) -> RequestRecord {
    RequestRecord {
        id: id.into(),
        ts_ms: 1_000,
        key_id: key.into(),
        route: "generate:summary@2".into(),
        tier: Tier::Enhanced,
        entry_tier: Tier::Comprehensive,
        provider: "openai".into(),
        model: "gpt-4o-mini".into(),
        attempts: 1,
        latency_ms: 10,
        ttft_ms: None,
        prompt_tokens: 1,
        completion_tokens: 1,
        cost_micros: Some(1),
        baseline_cost_micros: Some(4),
        difficulty: None,
        subject: None,
        quality,
        outcome: "success".into(),
        fallbacks: 0,
        cached: false,
        stream: false,
        variant: "on".into(),
        detail: serde_json::json!({}),
    }
}

#[test]
fn feedback_is_attributed_to_the_request_of_the_same_key() {
    let mut db = migrated_db();
    record_request(&mut db, &request("r1", "key_a", Some(8.0))).unwrap();
    let f = parse(br#"{"request_id": "r1", "score": 5}"#).unwrap();
    let a = record(&mut db, &f, "key_a", 2_000).unwrap().unwrap();
    assert_eq!(
        (
            a.model.as_str(),
            a.tier.as_str(),
            a.route.as_str(),
            a.variant.as_str(),
            a.quality
        ),
        (
            "gpt-4o-mini",
            "enhanced",
            "generate:summary@2",
            "on",
            Some(8.0)
        )
    );
    // Another key's request, and an unknown one, are both "unknown".
    assert_eq!(
        record(&mut db, &f, "key_b", 2_000).unwrap(),
        Err(FeedbackError::UnknownRequest("r1".into()))
    );
    let unknown = parse(br#"{"request_id": "nope", "score": 1}"#).unwrap();
    assert!(record(&mut db, &unknown, "key_a", 2_000).unwrap().is_err());
    // A second feedback replaces the first.
    let down = parse(br#"{"request_id": "r1", "score": -1}"#).unwrap();
    record(&mut db, &down, "key_a", 3_000).unwrap().unwrap();
    assert_eq!(pairs_since(&mut db, 0).unwrap(), vec![(8.0, 0.0)]);
    assert_eq!(pairs_since(&mut db, 3_001).unwrap(), vec![]);
}

fn close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-9, "{a} vs {b}");
}

#[test]
fn pearson_matches_scipy() {
    let cases: [(&[f64], &[f64], [f64; 4]); 3] = [
        (
            &[1., 2., 3., 4., 5., 6., 7., 8., 9., 10.],
            &[2., 1., 4., 3., 7., 8., 6., 9., 10., 9.],
            [
                0.9195197232861378,
                0.00016640392960289707,
                0.6885073987966591,
                0.9811218176213646,
            ],
        ),
        (
            &[8.5, 7.0, 9.1, 6.2, 5.5, 8.8, 7.7, 9.5],
            &[0.25, 0.5, 0.0, 0.75, 1.0, 0.25, 0.5, 0.0],
            [
                -0.980296019223076,
                1.884350608047986e-05,
                -0.9965583392407629,
                -0.8913727479935434,
            ],
        ),
        (
            &[7.1, 8.2, 6.5, 9.0, 7.7, 8.8, 6.9, 7.4, 8.1, 9.3, 6.2, 7.9],
            &[1., 0.5, 0.5, 1., 0., 1., 0.5, 0., 1., 1., 0., 0.5],
            [
                0.6068530581835023,
                0.036405466241092685,
                0.05056026415083923,
                0.8757527904373293,
            ],
        ),
    ];
    for (x, y, [r, p, low, high]) in cases {
        let pairs: Vec<(f64, f64)> = x.iter().copied().zip(y.iter().copied()).collect();
        let c = pearson(&pairs, 0.05).unwrap();
        close(c.r, r);
        assert!(
            (c.p_value - p).abs() < 1e-9 * p.max(1e-3) * 1e3,
            "p {} vs {p}",
            c.p_value
        );
        close(c.ci_low, low);
        close(c.ci_high, high);
    }
    assert_eq!(pearson(&[(1.0, 1.0), (2.0, 2.0), (3.0, 3.0)], 0.05), None);
    assert_eq!(
        pearson(&[(1.0, 1.0), (1.0, 2.0), (1.0, 3.0), (1.0, 4.0)], 0.05),
        None
    );
}

#[test]
fn feedback_folds_into_the_answering_models_routing_stats() {
    use crate::gateway::store::{routing_state, set_routing_state};
    use crate::storage::MemoryKeyValue;
    let mut kv = MemoryKeyValue::default();
    let mut state = routing_state(&mut kv);
    state
        .entries
        .entry("openai/gpt-4o-mini".into())
        .or_default()
        .stats
        .observe(0.2, 100, true, Some(9.0));
    set_routing_state(&mut kv, &state).unwrap();
    let a = |provider: &str, score: f64| Attributed {
        request_id: "r".into(),
        score,
        provider: provider.into(),
        model: "gpt-4o-mini".into(),
        tier: "enhanced".into(),
        route: "chat".into(),
        variant: "-".into(),
        quality: Some(9.0),
    };
    for _ in 0..5 {
        fold_into_routing(&mut kv, &a("openai", 0.0)).unwrap();
    }
    // Offline answers credit nobody.
    fold_into_routing(&mut kv, &a("offline", 1.0)).unwrap();
    let state = routing_state(&mut kv);
    let stats = state.entries["openai/gpt-4o-mini"].stats;
    assert_eq!((stats.feedback_n, stats.feedback_quality), (5, Some(0.0)));
    // 0.5 · 9 + 0.5 · 0.
    assert_eq!(stats.routing_quality(), Some(4.5));
    assert_eq!(state.entries.len(), 1);
}

#[test]
fn selection_accuracy_reads_scored_answers_feedback_first() {
    use crate::optimize::selection::served_since;
    let mut db = migrated_db();
    record_request(&mut db, &request("scored", "k", Some(8.0))).unwrap();
    record_request(&mut db, &request("unscored", "k", None)).unwrap();
    let mut cached = request("cached", "k", Some(9.0));
    cached.cached = true;
    record_request(&mut db, &cached).unwrap();
    let mut offline = request("offline", "k", Some(3.0));
    offline.provider = "offline".into();
    record_request(&mut db, &offline).unwrap();
    let mut fed = request("fed", "k", Some(9.0));
    fed.model = "gpt-4o".into();
    record_request(&mut db, &fed).unwrap();
    // Thumbs down on "fed": its quality is the feedback (0 × 10), not 9.
    let f = parse(br#"{"request_id": "fed", "score": -1}"#).unwrap();
    record(&mut db, &f, "k", 2_000).unwrap().unwrap();
    let mut served = served_since(&mut db, 0).unwrap();
    served.sort_by(|a, b| a.model.cmp(&b.model));
    let got: Vec<(&str, &str, u64, f64)> = served
        .iter()
        .map(|s| (s.kind.as_str(), s.model.as_str(), s.cost_micros, s.quality))
        .collect();
    assert_eq!(
        got,
        vec![
            ("generate:summary@2", "openai/gpt-4o", 1, 0.0),
            ("generate:summary@2", "openai/gpt-4o-mini", 1, 8.0),
        ]
    );
    assert!(served_since(&mut db, 1_001).unwrap().is_empty());
}
