//! Embeddings pipeline tests over the engine tests' scripted upstream, a
//! virtual clock, in-memory key-value and the real in-memory SQLite.

use std::cell::Cell;

use futures::executor::block_on;
use serde_json::{Value, json};

use super::*;
use crate::gateway::catalog::ProviderSettings;
use crate::gateway::engine::tests::{Fake, Reply, config, entry, status};
use crate::gateway::keys::KeyLimits;
use crate::storage::MemoryKeyValue;
use crate::test_db::{TestDb, db};

/// 2026-11-25T00:00:00Z.
pub(crate) const T0: u64 = 1_795_651_200_000;

pub(crate) struct TestClock(pub(crate) Cell<u64>);

impl Clock for TestClock {
    fn now_ms(&self) -> u64 {
        self.0.get()
    }
}

struct World {
    sql: TestDb,
    kv: MemoryKeyValue,
    fake: Fake,
    clock: TestClock,
    settings: Settings,
    /// Requests served so far: the next one's id is `emb-{n + 1}`.
    served: u64,
}

fn embedding_entry(model: &str, price: Option<u64>) -> CatalogEntry {
    let mut e = entry(model, Tier::Enhanced, price);
    e.capabilities = BTreeSet::from([embeddings::CAPABILITY.to_owned()]);
    e.output_price = Some(0);
    e
}

fn vectors(n: usize, model: &str) -> Reply {
    let data: Vec<Value> = (0..n)
        .map(|i| json!({"object": "embedding", "index": i, "embedding": [0.5, i as f64]}))
        .collect();
    let body = json!({"object": "list", "data": data, "model": model,
        "usage": {"prompt_tokens": 1_000_000, "total_tokens": 1_000_000}});
    Reply::Http(200, Vec::new(), vec![body.to_string().into_bytes()], 5)
}

impl World {
    /// `emb-a` ($0.02/1M) and `emb-b` (no price) embedding models and a chat
    /// model `chat` on the OpenAI-compatible provider `openai`.
    fn new() -> Self {
        let mut sql = db();
        let now = i64::try_from(T0).unwrap();
        let ours = ["emb-a", "emb-b", "chat"];
        for e in [
            embedding_entry("emb-a", Some(20_000)),
            embedding_entry("emb-b", None),
            entry("chat", Tier::Enhanced, Some(1_000_000)),
        ] {
            store::put_model(&mut sql, &e, now).unwrap();
        }
        for e in store::catalog(&mut sql, now).unwrap() {
            if !ours.contains(&e.model.as_str()) {
                store::delete_model(&mut sql, &e.provider, &e.model, now).unwrap();
            }
        }
        let settings = Settings {
            providers: ProviderSettings {
                openai_api_key: "k".to_owned(),
                openai_base_url: "http://mock/v1".to_owned(),
                ..ProviderSettings::default()
            },
            engine: config(),
            cache_ttl_secs: 60,
            ..Settings::default()
        };
        Self {
            sql,
            kv: MemoryKeyValue::default(),
            fake: Fake::new(),
            clock: TestClock(Cell::new(T0)),
            settings,
            served: 0,
        }
    }

    fn serve_with(&mut self, limits: KeyLimits, body: Value) -> Result<EmbedServed, PipelineError> {
        self.served += 1;
        let call = EmbedCall {
            caller: Caller {
                id: "key_a".to_owned(),
                limits,
                org: None,
            },
            request: EmbeddingRequest::from_json(body.to_string().as_bytes()).unwrap(),
            cache_control: None,
            id: format!("emb-{}", self.served),
            started_ms: self.clock.now_ms(),
        };
        let served = block_on(serve(
            &mut self.sql,
            &mut self.kv,
            &mut self.fake,
            &self.clock,
            &call,
            &self.settings,
        ));
        // What trails the answer is written as the instance's batch would.
        let trailing = served.as_ref().ok().and_then(|s| s.trailing.as_ref());
        crate::gateway::bookings::write_in_test(&mut self.sql, trailing);
        served
    }

    fn serve(&mut self, body: Value) -> Result<EmbedServed, PipelineError> {
        self.serve_with(KeyLimits::default(), body)
    }
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[test]
fn a_pinned_model_is_called_priced_recorded_and_cached() {
    let mut w = World::new();
    w.fake.script("emb-a", vec![vectors(2, "emb-a")]);
    let s = w
        .serve(json!({"model": "emb-a", "input": ["a", "b"]}))
        .unwrap();
    let (headers, body) = s.answer.unwrap();
    assert_eq!(body["data"][1]["embedding"], json!([0.5, 1.0]));
    assert_eq!(body["model"], "emb-a");
    assert_eq!(header(&headers, "x-dol-cost-micros"), Some("20000"));
    assert_eq!(s.record.route, ROUTE);
    assert_eq!(s.record.cost_micros, Some(20_000));
    assert_eq!(s.record.outcome, "success");
    let stored = store::request(&mut w.sql, "emb-1").unwrap().unwrap();
    assert_eq!(stored.model, "emb-a");
    // The same input again is a cache hit: no provider call, no cost.
    let again = w
        .serve(json!({"model": "emb-a", "input": ["a", "b"], "encoding_format": "base64"}))
        .unwrap();
    assert_eq!(w.fake.sent.len(), 1);
    assert_eq!(again.record.outcome, "cache_hit");
    let (h, b) = again.answer.unwrap();
    assert_eq!(header(&h, "x-dol-cache"), Some("hit"));
    assert!(b["data"][0]["embedding"].is_string());
}

#[test]
fn large_requests_are_split_into_the_providers_batches() {
    let mut w = World::new();
    w.settings.providers = ProviderSettings {
        gemini_api_key: "g".to_owned(),
        gemini_base_url: "http://g".to_owned(),
        ..ProviderSettings::default()
    };
    let mut g = embedding_entry("gem-emb", Some(150_000));
    g.provider = "gemini".to_owned();
    store::put_model(&mut w.sql, &g, i64::try_from(T0).unwrap()).unwrap();
    let batch = |n: usize| {
        let items: Vec<Value> = (0..n).map(|i| json!({"values": [i as f64]})).collect();
        Reply::Http(
            200,
            Vec::new(),
            vec![json!({"embeddings": items}).to_string().into_bytes()],
            5,
        )
    };
    // The fake keys scripts by the body's `model`, absent in Gemini bodies.
    w.fake.script("", vec![batch(100), batch(50)]);
    let inputs: Vec<String> = (0..150).map(|i| format!("text {i}")).collect();
    let s = w
        .serve(json!({"model": "gem-emb", "input": inputs}))
        .unwrap();
    let (_, body) = s.answer.unwrap();
    assert_eq!(w.fake.sent.len(), 2);
    assert_eq!(body["data"].as_array().unwrap().len(), 150);
    assert_eq!(body["data"][120]["embedding"], json!([20.0]));
}

#[test]
fn an_unpriced_model_records_its_cost_as_unknown_never_zero() {
    let mut w = World::new();
    w.fake.script("emb-b", vec![vectors(1, "emb-b")]);
    let s = w.serve(json!({"model": "emb-b", "input": "x"})).unwrap();
    let (headers, _) = s.answer.unwrap();
    assert_eq!(header(&headers, "x-dol-cost-micros"), Some("unknown"));
    assert_eq!(s.record.cost_micros, None);
}

#[test]
fn a_pinned_model_retries_then_fails_with_a_502_and_a_failed_record() {
    let mut w = World::new();
    w.fake.script(
        "emb-a",
        vec![status(500, None), status(500, None), status(500, None)],
    );
    let s = w.serve(json!({"model": "emb-a", "input": "x"})).unwrap();
    let e = s.answer.unwrap_err();
    assert_eq!(e.reply().status, 502);
    assert_eq!(w.fake.sent.len(), 3);
    assert_eq!(s.record.outcome, "failed");
    assert!(s.record.is_error());
}

#[test]
fn a_provider_refusal_of_the_input_is_a_400() {
    let mut w = World::new();
    w.fake.script("emb-a", vec![status(400, None)]);
    let s = w.serve(json!({"model": "emb-a", "input": "x"})).unwrap();
    assert_eq!(s.answer.unwrap_err().reply().status, 400);
    assert_eq!(w.fake.sent.len(), 1);
}

#[test]
fn auto_falls_back_across_models_then_to_offline() {
    let mut w = World::new();
    // Both fail for good (a 404 is not retried): auto ends at the offline provider.
    w.fake.script("emb-a", vec![status(404, None)]);
    w.fake.script("emb-b", vec![status(404, None)]);
    let s = w
        .serve(json!({"model": "auto", "input": "x", "dimensions": 16}))
        .unwrap();
    let (headers, body) = s.answer.unwrap();
    assert_eq!(header(&headers, "x-dol-provider"), Some(offline::PROVIDER));
    assert_eq!(body["model"], embeddings::OFFLINE_MODEL);
    assert_eq!(body["data"][0]["embedding"].as_array().unwrap().len(), 16);
    assert_eq!(s.record.outcome, "offline");
    assert_eq!(w.fake.sent.len(), 2);
    // A working candidate answers after the first fails.
    w.fake.script("emb-a", vec![status(404, None)]);
    w.fake.script("emb-b", vec![vectors(1, "emb-b")]);
    let ok = w.serve(json!({"model": "auto", "input": "y"})).unwrap();
    assert_eq!(ok.record.fallbacks, 1);
    assert_eq!(ok.record.model, "emb-b");
}

#[test]
fn without_a_configured_provider_auto_is_served_offline() {
    let mut w = World::new();
    w.settings.providers = ProviderSettings::default();
    let s = w
        .serve(json!({"model": "auto", "input": "hello world"}))
        .unwrap();
    let (_, body) = s.answer.unwrap();
    assert_eq!(body["model"], embeddings::OFFLINE_MODEL);
    assert!(w.fake.sent.is_empty());
    let named = w
        .serve(json!({"model": embeddings::OFFLINE_MODEL, "input": "x"}))
        .unwrap();
    assert!(named.answer.is_ok());
    // Offline vectors are not cached: a provider configured later is reached.
    w.settings.providers = World::new().settings.providers;
    w.fake.script("emb-a", vec![vectors(1, "emb-a")]);
    w.fake.script("emb-b", vec![vectors(1, "emb-b")]);
    let later = w
        .serve(json!({"model": "auto", "input": "hello world"}))
        .unwrap();
    assert_eq!(later.record.outcome, "success");
    assert_ne!(later.record.provider, offline::PROVIDER);
}

#[test]
fn refusals_before_any_call() {
    let mut w = World::new();
    let unknown = w.serve(json!({"model": "nope", "input": "x"})).unwrap_err();
    assert_eq!(unknown.reply().status, 404);
    let chat = w.serve(json!({"model": "chat", "input": "x"})).unwrap_err();
    let r = chat.reply();
    assert_eq!(
        (r.status, r.body.error.param.as_deref()),
        (400, Some("model"))
    );
    w.settings.providers = ProviderSettings::default();
    let unconfigured = w
        .serve(json!({"model": "emb-a", "input": "x"}))
        .unwrap_err();
    assert_eq!(unconfigured.reply().status, 502);
    let limited = KeyLimits {
        monthly_budget_micros: Some(1),
        ..KeyLimits::default()
    };
    w.settings.providers.openai_api_key = "k".to_owned();
    w.settings.providers.openai_base_url = "http://mock/v1".to_owned();
    let long = "word ".repeat(100_000);
    let refused = w
        .serve_with(limited, json!({"model": "emb-a", "input": long}))
        .unwrap_err();
    assert_eq!(refused.reply().status, 429);
    assert!(w.fake.sent.is_empty());
}

#[test]
fn gemini_refuses_token_input_for_a_pinned_model() {
    let mut w = World::new();
    w.settings.providers = ProviderSettings {
        gemini_api_key: "g".to_owned(),
        gemini_base_url: "http://g".to_owned(),
        ..ProviderSettings::default()
    };
    let mut g = embedding_entry("gem-emb", Some(150_000));
    g.provider = "gemini".to_owned();
    store::put_model(&mut w.sql, &g, i64::try_from(T0).unwrap()).unwrap();
    let e = w
        .serve(json!({"model": "gem-emb", "input": [1, 2]}))
        .unwrap_err();
    let r = e.reply();
    assert_eq!(
        (r.status, r.body.error.param.as_deref()),
        (400, Some("input"))
    );
}

#[test]
fn chat_never_routes_to_an_embedding_model() {
    let catalog = vec![embedding_entry("emb-a", Some(1))];
    let req = crate::gateway::openai::ChatRequest::from_value(
        &json!({"model": "emb-a", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .unwrap();
    let plan = crate::gateway::engine::plan(
        &req,
        &catalog,
        &[],
        &crate::gateway::engine::RoutingState::default(),
        Tier::Comprehensive,
        &RoutingWeights::default(),
        0,
    );
    assert!(matches!(plan, Err(PlanError::UnknownModel(_))));
}
