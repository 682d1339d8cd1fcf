//! Image pipeline tests over the engine tests' scripted upstream, a virtual
//! clock, in-memory key-value and the real in-memory SQLite.

use std::cell::Cell;
use std::collections::BTreeMap;

use futures::executor::block_on;
use serde_json::{Value, json};

use super::*;
use crate::gateway::catalog::ProviderSettings;
use crate::gateway::embedding_pipeline::tests::{T0, TestClock};
use crate::gateway::engine::tests::{Fake, Reply, config, entry, status};
use crate::gateway::keys::KeyLimits;
use crate::storage::MemoryKeyValue;
use crate::test_db::{TestDb, db};

struct World {
    sql: TestDb,
    kv: MemoryKeyValue,
    fake: Fake,
    clock: TestClock,
    settings: Settings,
    /// Requests served so far: the next one's id is `img-{n + 1}`.
    served: u64,
}

fn image_entry(model: &str, prices: &[(&str, u64)]) -> CatalogEntry {
    let mut e = entry(model, Tier::Enhanced, Some(0));
    e.capabilities = BTreeSet::from([images::CAPABILITY.to_owned()]);
    e.image_prices = prices
        .iter()
        .map(|(k, v)| ((*k).to_owned(), *v))
        .collect::<BTreeMap<_, _>>();
    e
}

fn urls(n: usize) -> Reply {
    let data: Vec<Value> = (0..n)
        .map(|i| json!({"url": format!("https://img/{i}.png"), "revised_prompt": "r"}))
        .collect();
    let body = json!({"created": 1, "data": data});
    Reply::Http(200, Vec::new(), vec![body.to_string().into_bytes()], 5)
}

impl World {
    /// `img-cheap` ($0.02 per 1024x1024 image), `img-dear` ($0.08, hd
    /// $0.12), `img-free-form` (no price) and a chat model `chat`, all on
    /// the OpenAI-compatible provider `openai`.
    fn new() -> Self {
        let mut sql = db();
        let now = i64::try_from(T0).unwrap();
        let ours = ["img-cheap", "img-dear", "img-unpriced", "chat"];
        for e in [
            image_entry("img-cheap", &[("1024x1024", 20_000)]),
            image_entry("img-dear", &[("*", 80_000), ("1024x1024/hd", 120_000)]),
            image_entry("img-unpriced", &[]),
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

    fn serve_with(&mut self, limits: KeyLimits, body: Value) -> Result<ImageServed, PipelineError> {
        self.served += 1;
        let call = ImageCall {
            caller: Caller {
                id: "key_a".to_owned(),
                limits,
                org: None,
            },
            request: ImageRequest::from_json(body.to_string().as_bytes()).unwrap(),
            id: format!("img-{}", self.served),
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

    fn serve(&mut self, body: Value) -> Result<ImageServed, PipelineError> {
        self.serve_with(KeyLimits::default(), body)
    }
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[test]
fn auto_picks_the_cheapest_image_model_and_prices_per_image() {
    let mut w = World::new();
    w.fake.script("img-cheap", vec![urls(2)]);
    let s = w.serve(json!({"prompt": "a cat", "n": 2})).unwrap();
    let (headers, body) = s.answer.unwrap();
    assert_eq!(w.fake.sent, vec!["img-cheap"]);
    assert_eq!(header(&headers, "x-dol-model"), Some("img-cheap"));
    assert_eq!(header(&headers, "x-dol-cost-micros"), Some("40000"));
    assert_eq!(body["data"][1]["url"], "https://img/1.png");
    assert_eq!(s.record.route, "images");
    assert_eq!(s.record.cost_micros, Some(40_000));
    assert_eq!(s.record.outcome, "success");
    assert_eq!(s.record.detail["images"], 2);
}

#[test]
fn size_and_quality_choose_the_price_and_an_unmatched_one_is_unknown() {
    let mut w = World::new();
    w.fake.script("img-dear", vec![urls(1), urls(1)]);
    let hd = w
        .serve(json!({"model": "img-dear", "prompt": "p", "quality": "hd"}))
        .unwrap();
    assert_eq!(hd.record.cost_micros, Some(120_000));
    let wide = w
        .serve(json!({"model": "img-dear", "prompt": "p", "size": "1792x1024"}))
        .unwrap();
    assert_eq!(wide.record.cost_micros, Some(80_000));
    w.fake.script("img-unpriced", vec![urls(1)]);
    let s = w
        .serve(json!({"model": "img-unpriced", "prompt": "p"}))
        .unwrap();
    let (headers, _) = s.answer.unwrap();
    assert_eq!(header(&headers, "x-dol-cost-micros"), Some("unknown"));
    assert_eq!(s.record.cost_micros, None);
}

#[test]
fn auto_falls_back_to_the_next_image_model() {
    let mut w = World::new();
    // A 404 is not retried: the next models are asked (the unpriced one
    // scores the router's unknown-price score, above the dear one).
    w.fake.script("img-cheap", vec![status(404, None)]);
    w.fake.script("img-unpriced", vec![status(404, None)]);
    w.fake.script("img-dear", vec![urls(1)]);
    let s = w.serve(json!({"prompt": "p"})).unwrap();
    let (headers, _) = s.answer.unwrap();
    assert_eq!(header(&headers, "x-dol-model"), Some("img-dear"));
    assert_eq!(s.record.fallbacks, 2);
    assert_eq!(w.fake.sent, vec!["img-cheap", "img-unpriced", "img-dear"]);
}

#[test]
fn every_candidate_failing_is_a_502_and_a_failed_record() {
    let mut w = World::new();
    w.fake.script(
        "img-dear",
        vec![status(500, None), status(500, None), status(500, None)],
    );
    let s = w
        .serve(json!({"model": "img-dear", "prompt": "p"}))
        .unwrap();
    assert_eq!(s.answer.unwrap_err().reply().status, 502);
    assert_eq!(w.fake.sent.len(), 3);
    assert_eq!(s.record.outcome, "failed");
    assert!(s.record.is_error());
}

#[test]
fn a_provider_refusal_is_a_400_and_bytes_asked_for_but_urls_answered_fail() {
    let mut w = World::new();
    w.fake.script("img-dear", vec![status(400, None)]);
    let s = w
        .serve(json!({"model": "img-dear", "prompt": "p"}))
        .unwrap();
    assert_eq!(s.answer.unwrap_err().reply().status, 400);
    w.fake.script("img-dear", vec![urls(1)]);
    let b = w
        .serve(json!({"model": "img-dear", "prompt": "p", "response_format": "b64_json"}))
        .unwrap();
    assert_eq!(b.answer.unwrap_err().reply().status, 502);
}

#[test]
fn refusals_before_any_call() {
    let mut w = World::new();
    let unknown = w
        .serve(json!({"model": "nope", "prompt": "p"}))
        .unwrap_err();
    assert_eq!(unknown.reply().status, 404);
    let chat = w
        .serve(json!({"model": "chat", "prompt": "p"}))
        .unwrap_err();
    assert_eq!(chat.reply().status, 400);
    // A budget too small for the dearest candidate's n images.
    let limits = KeyLimits {
        monthly_budget_micros: Some(10_000),
        ..KeyLimits::default()
    };
    let over = w
        .serve_with(limits, json!({"model": "img-dear", "prompt": "p"}))
        .unwrap_err();
    assert_eq!(over.reply().status, 429);
    assert!(w.fake.sent.is_empty());
    w.settings.providers = ProviderSettings::default();
    let none = w.serve(json!({"prompt": "p"})).unwrap_err();
    assert_eq!(none.reply().status, 502);
}

#[test]
fn chat_never_routes_to_an_image_model() {
    assert!(!catalog::is_chat(&image_entry("img-cheap", &[("*", 1)])));
    assert!(catalog::is_chat(&entry("chat", Tier::Enhanced, None)));
}
