//! Property tests for the gateway core: quality scores, the tier state machine,
//! retry timing, cost, routing determinism, the offline provider and request parsing.

// A panic is how a property test fails; the workspace denies these outside tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use dol_core::gateway::circuit::{CircuitBreaker, CircuitConfig};
use dol_core::gateway::cost::{Cost, request_cost};
use dol_core::gateway::offline;
use dol_core::gateway::openai::{ChatRequest, FinishReason, Message, Role};
use dol_core::gateway::quality::{self, QualityConfig, QualityInput};
use dol_core::gateway::retry::{FailureKind, RetryDecision, RetryPolicy};
use dol_core::gateway::routing::{
    Candidate, CatalogEntry, ObservedStats, RouteRequest, RoutingWeights, route,
};
use dol_core::gateway::tiers::{Action, AttemptOutcome, Pipeline, PipelineConfig, Tier};
use proptest::prelude::*;

fn finish_reason() -> impl Strategy<Value = Option<FinishReason>> {
    prop_oneof![
        Just(None),
        Just(Some(FinishReason::Stop)),
        Just(Some(FinishReason::Length)),
        Just(Some(FinishReason::ContentFilter)),
        Just(Some(FinishReason::ToolCalls)),
    ]
}

fn tier() -> impl Strategy<Value = Tier> {
    prop_oneof![
        Just(Tier::Comprehensive),
        Just(Tier::Enhanced),
        Just(Tier::Basic)
    ]
}

fn failure() -> impl Strategy<Value = FailureKind> {
    prop_oneof![
        (400u16..600, proptest::option::of(0u64..200_000)).prop_map(|(status, retry_after_ms)| {
            FailureKind::Status {
                status,
                retry_after_ms,
            }
        }),
        Just(FailureKind::Connect),
        Just(FailureKind::Timeout),
        proptest::option::of(0u64..200_000)
            .prop_map(|retry_after_ms| FailureKind::Overloaded { retry_after_ms }),
    ]
}

fn outcome() -> impl Strategy<Value = AttemptOutcome> {
    prop_oneof![
        proptest::option::of(-5.0f64..15.0).prop_map(|quality| AttemptOutcome::Success { quality }),
        failure().prop_map(|failure| AttemptOutcome::Failed { failure }),
        Just(AttemptOutcome::Timeout),
        Just(AttemptOutcome::Fatal),
        Just(AttemptOutcome::StreamBroken),
    ]
}

proptest! {
    #[test]
    fn quality_score_is_bounded_and_deterministic(
        prompt in ".{0,200}",
        answer in ".{0,400}",
        finish in finish_reason(),
        wants_json in any::<bool>(),
        threshold in 0.0f64..10.0,
    ) {
        let input = QualityInput { prompt: &prompt, answer: &answer, finish_reason: finish, wants_json, schema: None };
        let cfg = QualityConfig { threshold, ..QualityConfig::default() };
        let a = quality::score(&input, &cfg);
        let b = quality::score(&input, &cfg);
        prop_assert!((0.0..=10.0).contains(&a.total), "total {}", a.total);
        prop_assert!(a.dimensions.iter().all(|d| (0.0..=1.0).contains(&d.score)));
        prop_assert_eq!(a.passed, a.total >= threshold);
        prop_assert_eq!(a, b);
    }

    #[test]
    fn repeated_words_never_score_well(word in "[a-z]{2,8}", n in 20usize..80) {
        let answer = vec![word.as_str(); n].join(" ");
        let r = quality::score(
            &QualityInput { prompt: "", answer: &answer, finish_reason: None, wants_json: false, schema: None },
            &QualityConfig::default(),
        );
        prop_assert!(!r.passed, "{r:?}");
    }

    #[test]
    fn pipeline_terminates_and_never_climbs_tiers(
        counts in proptest::array::uniform3(0usize..4),
        entry in tier(),
        outcomes in proptest::collection::vec((outcome(), 0u64..20_000, 0.0f64..1.0), 0..64),
    ) {
        let (mut p, first) = Pipeline::start(PipelineConfig::default(), counts, entry, 0);
        let bound = p.max_steps();
        let mut action = first;
        let mut tier_seen = action.attempt_at().map(|at| at.tier);
        if let Some(t) = tier_seen {
            prop_assert!(t >= entry);
        }
        let mut elapsed = 0u64;
        let mut steps = 0u64;
        let mut iter = outcomes.into_iter();
        while !action.is_terminal() {
            // Out of scripted outcomes: keep failing so only the machine's own bound stops it.
            let (o, dt, j) = iter.next().unwrap_or((AttemptOutcome::Fatal, 1, 0.0));
            if let Action::Retry { delay_ms, .. } = action {
                elapsed += delay_ms;
            }
            elapsed += dt;
            action = p.on_outcome(o, elapsed, j);
            steps += 1;
            prop_assert!(steps <= bound, "{steps} steps > bound {bound}");
            if let (Some(at), Some(prev)) = (action.attempt_at(), tier_seen) {
                prop_assert!(at.tier >= prev, "went back from {prev:?} to {:?}", at.tier);
                prop_assert!(counts[at.tier.index()] > at.candidate);
                prop_assert!(at.attempt >= 1 && at.attempt <= 3);
                tier_seen = Some(at.tier);
            }
            if let Action::Retry { delay_ms, .. } = action {
                prop_assert!(elapsed + delay_ms < 120_000);
            }
        }
        // Terminal actions stick.
        prop_assert_eq!(p.on_outcome(AttemptOutcome::Fatal, elapsed, 0.0), action);
    }

    #[test]
    fn retry_never_crosses_deadline_nor_retries_4xx(
        attempt in 1u32..6,
        f in failure(),
        elapsed in 0u64..200_000,
        jitter in -1.0f64..2.0,
    ) {
        let p = RetryPolicy::default();
        match p.decide(attempt, f, elapsed, jitter) {
            RetryDecision::RetryAfter { delay_ms } => {
                prop_assert!(f.is_retryable());
                prop_assert!(attempt < p.max_attempts);
                prop_assert!(elapsed + delay_ms < p.deadline_ms);
                prop_assert!(delay_ms >= f.retry_after_ms().unwrap_or(0));
            }
            RetryDecision::GiveUp { .. } => {}
        }
        if let FailureKind::Status { status, .. } = f
            && (400..500).contains(&status)
            && status != 429
        {
            prop_assert!(!f.is_retryable());
        }
    }

    #[test]
    fn cost_is_monotone_and_unknown_is_never_zero(
        inp in 0u64..10_000_000,
        out in 0u64..10_000_000,
        pi in proptest::option::of(0u64..100_000_000),
        po in proptest::option::of(0u64..100_000_000),
    ) {
        let c = request_cost(inp, out, pi, po);
        if (inp > 0 && pi.is_none()) || (out > 0 && po.is_none()) {
            prop_assert_eq!(c, Cost::Unknown);
        } else {
            let more = request_cost(inp + 1, out + 1, pi, po);
            prop_assert!(more.micros().unwrap() >= c.micros().unwrap());
        }
    }

    #[test]
    fn routing_order_ignores_input_order(
        specs in proptest::collection::vec(
            ("[a-c]", "[x-z]", proptest::option::of(0u64..20_000_000), proptest::option::of((10u64..5_000, any::<bool>(), 0.0f64..10.0))),
            1..8,
        ),
        rotate in 0usize..8,
        max_cost in proptest::option::of(0u64..100_000),
    ) {
        let entries: Vec<CatalogEntry> = specs.iter().map(|(p, m, price, _)| CatalogEntry {
            provider: p.clone(),
            model: m.clone(),
            input_price: *price,
            output_price: *price,
            context_window: 100_000,
            capabilities: BTreeSet::new(),
            tier: Tier::Enhanced,
            image_prices: Default::default(),
        }).collect();
        let stats: Vec<Option<ObservedStats>> = specs.iter().map(|(_, _, _, obs)| obs.map(|(lat, ok, q)| {
            let mut s = ObservedStats::default();
            s.observe(0.2, lat, ok, Some(q));
            s
        })).collect();
        let breaker = {
            let mut b = CircuitBreaker::new(CircuitConfig { failure_threshold: 1, cooldown_ms: 10 });
            b.record_failure(0);
            b
        };
        let cands: Vec<Candidate<'_>> = entries.iter().zip(&stats).enumerate().map(|(i, (e, s))| Candidate {
            entry: e,
            stats: s.as_ref(),
            breaker: (i == 0).then_some(&breaker),
        }).collect();
        let req = RouteRequest { input_tokens: 500, output_tokens: 500, max_cost_micros: max_cost, ..RouteRequest::default() };
        let a = route(&cands, &req, &RoutingWeights::default(), 5);
        let mut rotated = cands.clone();
        let k = rotate % rotated.len();
        rotated.rotate_left(k);
        let b = route(&rotated, &req, &RoutingWeights::default(), 5);
        // Same scores in the same order; duplicate keys may tie, so compare (key, score) pairs.
        let ka: Vec<(String, u64)> = a.ranked.iter().map(|c| (c.key.clone(), c.score.to_bits())).collect();
        let kb: Vec<(String, u64)> = b.ranked.iter().map(|c| (c.key.clone(), c.score.to_bits())).collect();
        prop_assert_eq!(ka, kb);
        prop_assert!(a.ranked.iter().all(|c| c.index != 0));
        if let Some(max) = max_cost {
            prop_assert!(a.ranked.iter().all(|c| c.estimated_cost_micros.is_some_and(|e| e <= max)));
        }
    }

    #[test]
    fn offline_is_deterministic_and_splits_losslessly(user in ".{0,300}", max in 1usize..64, json in any::<bool>()) {
        let m = vec![Message::text(Role::User, &user)];
        let a = offline::answer(&m, json);
        prop_assert_eq!(&a, &offline::answer(&m, json));
        if json {
            prop_assert!(serde_json::from_str::<serde_json::Value>(&a.content).unwrap().is_object());
        } else {
            prop_assert!(a.content.starts_with(offline::LABEL));
        }
        let parts = offline::split(&a.content, max);
        prop_assert_eq!(parts.concat(), a.content);
        prop_assert!(parts.iter().all(|p| !p.is_empty() && p.chars().count() <= max));
    }

    #[test]
    fn request_parser_never_panics(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = ChatRequest::from_json(&body);
    }

    #[test]
    fn unknown_roles_are_named(role in "[a-z]{1,10}", idx in 0usize..4) {
        prop_assume!(!["system", "developer", "user", "assistant", "tool"].contains(&role.as_str()));
        let mut messages: Vec<serde_json::Value> = (0..4).map(|_| serde_json::json!({"role": "user", "content": "x"})).collect();
        messages[idx]["role"] = serde_json::Value::String(role.clone());
        let err = ChatRequest::from_value(&serde_json::json!({"model": "m", "messages": messages})).unwrap_err();
        prop_assert_eq!(err.to_string(), format!("messages[{idx}].role: unknown role \"{role}\""));
    }

    #[test]
    fn breaker_blocks_until_cooldown_and_recovers(
        threshold in 1u32..6,
        cooldown in 1u64..10_000,
        failures in 0u32..10,
        probe_at in 0u64..20_000,
        probe_ok in any::<bool>(),
    ) {
        let mut b = CircuitBreaker::new(CircuitConfig { failure_threshold: threshold, cooldown_ms: cooldown });
        for _ in 0..failures {
            b.record_failure(0);
        }
        let should_be_open = failures >= threshold;
        prop_assert_eq!(b.is_open(0), should_be_open);
        let allowed = b.try_acquire(probe_at);
        prop_assert_eq!(allowed, !should_be_open || probe_at >= cooldown);
        if allowed {
            if probe_ok {
                b.record_success();
                prop_assert!(b.allows(probe_at));
            } else {
                b.record_failure(probe_at);
                if should_be_open || threshold == 1 || failures + 1 >= threshold {
                    prop_assert!(b.is_open(probe_at));
                    prop_assert!(b.allows(probe_at + cooldown));
                }
            }
        }
    }
}

proptest! {
    /// Any JSON object answer to an object schema without required keys passes
    /// the gate, however short (issue 15: `{}` used to score 0 and be retried).
    #[test]
    fn valid_structured_objects_always_pass(
        entries in proptest::collection::btree_map("[a-z]{1,6}", "[a-z ]{0,12}", 0..5),
        prompt in "[a-zA-Z ]{0,80}",
    ) {
        let answer = serde_json::to_string(&entries).unwrap();
        let schema = serde_json::json!({"type": "object"});
        let r = quality::score(
            &QualityInput { prompt: &prompt, answer: &answer, finish_reason: None, wants_json: true, schema: Some(&schema) },
            &QualityConfig::default(),
        );
        prop_assert!(r.passed, "{r:?}");
    }
}
