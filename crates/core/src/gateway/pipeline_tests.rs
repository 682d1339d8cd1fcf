//! Pipeline tests: every decision that used to live in the component's
//! `chat.rs`, over the engine tests' scripted upstream, a virtual wall clock,
//! in-memory key-value and the real in-memory SQLite.

use std::cell::Cell;

use futures::executor::block_on;
use serde_json::{Value, json};

use super::bookings;
use super::catalog::ProviderSettings;
use super::engine::Downstream;
use super::engine::tests::{Fake, GOOD, Reply, config, entry, ok_json, sse, status};
use super::keys::{KeyLimits, LimitKind};
use super::openai::ChatRequest;
use super::pipeline::*;
use super::routing::RouteRequest;
use super::store;
use super::tiers::{EntryTier, Tier};
use crate::observe::store::{EmergencyOverride, set_emergency_override};
use crate::orgs::Role;
use crate::storage::{MemoryKeyValue, SqlValue};
use crate::test_db::{TestDb, db};

/// 2026-11-25T00:00:00Z.
const T0: u64 = 1_795_651_200_000;

struct TestClock(Cell<u64>);

impl Clock for TestClock {
    fn now_ms(&self) -> u64 {
        self.0.get()
    }
}

/// Answers a fixed tier, and records each evaluation's context.
#[derive(Default)]
struct Flags {
    answer: Option<(EntryTier, String)>,
    calls: Vec<(String, String, String, String)>,
}

impl FlagEvaluator for Flags {
    fn entry_tier(&mut self, flag: &str, t: &str, k: &str, m: &str) -> Option<(EntryTier, String)> {
        self.calls
            .push((flag.to_owned(), t.to_owned(), k.to_owned(), m.to_owned()));
        self.answer.clone()
    }
}

/// What the HTTP client was sent.
#[derive(Default)]
struct Recorder {
    status: Option<u16>,
    head: Vec<(String, String)>,
    json: Option<Value>,
    streamed: bool,
    body: String,
}

impl Recorder {
    fn header(&self, name: &str) -> Option<&str> {
        self.head
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Downstream for Recorder {
    async fn start(&mut self, headers: Vec<(String, String)>) -> bool {
        self.status = Some(200);
        self.head = headers;
        self.streamed = true;
        true
    }
    async fn send(&mut self, bytes: Vec<u8>) -> bool {
        self.body.push_str(&String::from_utf8(bytes).unwrap());
        true
    }
}

impl Client for Recorder {
    async fn complete(&mut self, status: u16, headers: Vec<(String, String)>, body: Value) {
        self.status = Some(status);
        self.head = headers;
        self.json = Some(body);
    }
}

struct World {
    sql: TestDb,
    kv: MemoryKeyValue,
    fake: Fake,
    flags: Flags,
    clock: TestClock,
    /// What the instance keeps across the world's requests.
    cache: std::cell::RefCell<store::InstanceCache>,
    settings: Settings,
    next_id: u32,
}

impl World {
    /// A catalog of three models (`best` comprehensive at $10/1M, `cheap`
    /// enhanced at $1/1M, `tiny` basic without a price) on one provider.
    fn new() -> Self {
        let mut sql = db();
        let now = i64::try_from(T0).unwrap();
        let ours = ["best", "cheap", "tiny"];
        for e in [
            entry("best", Tier::Comprehensive, Some(10_000_000)),
            entry("cheap", Tier::Enhanced, Some(1_000_000)),
            entry("tiny", Tier::Basic, None),
        ] {
            store::put_model(&mut sql, &e, now).unwrap();
        }
        // Then the seed goes (ours keep the table from being seeded again).
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
            tier_flag: "generation_pipeline".to_owned(),
            ..Settings::default()
        };
        Self {
            sql,
            kv: MemoryKeyValue::default(),
            fake: Fake::new(),
            flags: Flags::default(),
            cache: std::cell::RefCell::default(),
            clock: TestClock(Cell::new(T0)),
            settings,
            next_id: 0,
        }
    }

    fn call(&mut self, key: &str, limits: KeyLimits, body: Value) -> Call {
        self.next_id += 1;
        Call {
            caller: Caller {
                id: key.to_owned(),
                limits,
                org: None,
            },
            request: ChatRequest::from_value(&body).unwrap(),
            route: "chat".to_owned(),
            cache_control: None,
            id: format!("chatcmpl-{}", self.next_id),
            started_ms: self.clock.now_ms(),
        }
    }

    fn serve(&mut self, call: &Call) -> (Result<Served, PipelineError>, Recorder) {
        let (served, client) = self.serve_unbooked(call);
        // What trails the answer is written as the instance's batch would.
        let trailing = served.as_ref().ok().and_then(|s| s.trailing.as_ref());
        bookings::write_in_test(&mut self.sql, trailing);
        (served, client)
    }

    /// Serves `call` and leaves what trails the answer unwritten.
    fn serve_unbooked(&mut self, call: &Call) -> (Result<Served, PipelineError>, Recorder) {
        let mut client = Recorder::default();
        let io = Io {
            sql: &mut self.sql,
            kv: &mut self.kv,
            upstream: &mut self.fake,
            flags: &mut self.flags,
            clock: &self.clock,
            cache: &self.cache,
        };
        let served = block_on(serve(io, &mut client, call, &self.settings));
        (served, client)
    }

    fn ask(&mut self, key: &str, body: Value) -> (Served, Recorder) {
        let call = self.call(key, KeyLimits::default(), body);
        let (served, client) = self.serve(&call);
        (served.unwrap(), client)
    }

    fn usage(&mut self, key: &str) -> super::keys::Usage {
        store::usage(&mut self.sql, key).unwrap()
    }
}

fn body(stream: bool) -> Value {
    let mut b = json!({
        "model": "auto",
        "messages": [{"role": "user", "content": "Explain Rust ownership and borrowing with lifetimes"}]
    });
    if stream {
        b["stream"] = json!(true);
        b["stream_options"] = json!({"include_usage": true});
    }
    b
}

fn with(mut b: Value, field: &str, value: Value) -> Value {
    b[field] = value;
    b
}

// ---- entry tier ----

#[test]
fn entry_tier_precedence_is_emergency_then_hint_then_flag_then_comprehensive() {
    let fixed = EntryTier::Fixed;
    let flag = || Some((fixed(Tier::Enhanced), "treatment".to_owned()));
    assert_eq!(
        entry_tier(true, Some(EntryTier::Auto), flag),
        (fixed(Tier::Basic), "emergency".to_owned())
    );
    assert_eq!(
        entry_tier(false, Some(fixed(Tier::Basic)), flag),
        (fixed(Tier::Basic), "-".to_owned())
    );
    assert_eq!(
        entry_tier(false, Some(EntryTier::Auto), flag),
        (EntryTier::Auto, "-".to_owned())
    );
    assert_eq!(
        entry_tier(false, None, flag),
        (fixed(Tier::Enhanced), "treatment".to_owned())
    );
    assert_eq!(
        entry_tier(false, None, || Some((EntryTier::Auto, "auto".to_owned()))),
        (EntryTier::Auto, "auto".to_owned())
    );
    assert_eq!(
        entry_tier(false, None, || None),
        (fixed(Tier::Comprehensive), "-".to_owned())
    );
}

#[test]
fn the_flag_chooses_the_entry_tier_with_the_user_as_targeting_key() {
    let mut w = World::new();
    w.flags.answer = Some((Tier::Enhanced.into(), "cheap-first".to_owned()));
    w.fake.script("cheap", vec![ok_json(GOOD, "stop")]);
    let (s, _) = w.ask("key_a", with(body(false), "user", json!("u1")));
    assert_eq!(
        (s.record.entry_tier, s.record.variant.as_str()),
        (Tier::Enhanced, "cheap-first")
    );
    assert_eq!(
        w.flags.calls,
        vec![(
            "generation_pipeline".to_owned(),
            "u1".to_owned(),
            "key_a".to_owned(),
            "auto".to_owned()
        )]
    );
    // The user is the request's subject, written by the settlement itself.
    assert_eq!(s.record.subject.as_deref(), Some("u1"));
    let subject = |w: &mut World, id: &str| {
        crate::storage::run(
            &mut w.sql,
            "SELECT subject FROM requests WHERE id = ?",
            &[SqlValue::Text(id.to_owned())],
        )
        .unwrap()[0][0]
            .clone()
    };
    assert_eq!(subject(&mut w, &s.record.id), SqlValue::Text("u1".into()));
    // Without a user the key is the targeting key, and there is no subject.
    w.fake.script("cheap", vec![ok_json(GOOD, "stop")]);
    let (s, _) = w.ask("key_a", with(body(false), "temperature", json!(0.1)));
    assert_eq!(w.flags.calls[1].1, "key_a");
    assert_eq!(subject(&mut w, &s.record.id), SqlValue::Null);
}

#[test]
fn without_a_flag_answer_the_entry_tier_is_comprehensive() {
    let mut w = World::new();
    w.fake.script("best", vec![ok_json(GOOD, "stop")]);
    let (s, c) = w.ask("key_a", body(false));
    assert_eq!(
        (s.record.entry_tier, s.record.variant.as_str()),
        (Tier::Comprehensive, "-")
    );
    assert_eq!(c.header("x-dol-model"), Some("best"));
}

#[test]
fn the_hint_beats_the_flag_which_is_not_evaluated() {
    let mut w = World::new();
    w.flags.answer = Some((Tier::Comprehensive.into(), "treatment".to_owned()));
    w.fake.script("cheap", vec![ok_json(GOOD, "stop")]);
    let (s, c) = w.ask(
        "key_a",
        with(body(false), "dol", json!({"tier": "enhanced"})),
    );
    assert_eq!(
        (s.record.entry_tier, s.record.variant.as_str()),
        (Tier::Enhanced, "-")
    );
    assert_eq!(c.header("x-dol-model"), Some("cheap"));
    assert!(w.flags.calls.is_empty());
}

#[test]
fn emergency_mode_beats_the_hint_and_the_flag() {
    let mut w = World::new();
    set_emergency_override(&mut w.sql, Some(EmergencyOverride::On), "test", 1).unwrap();
    w.flags.answer = Some((Tier::Comprehensive.into(), "treatment".to_owned()));
    let (s, c) = w.ask(
        "key_a",
        with(body(false), "dol", json!({"tier": "comprehensive"})),
    );
    assert_eq!(
        (s.record.entry_tier, s.record.variant.as_str()),
        (Tier::Basic, "emergency")
    );
    assert_eq!(c.header("x-dol-tier"), Some("basic"));
    assert!(w.flags.calls.is_empty());
    assert!(!w.fake.sent.iter().any(|m| m == "best" || m == "cheap"));
}

// ---- auto entry ----

fn prompt(text: &str) -> Value {
    json!({"model": "auto", "messages": [{"role": "user", "content": text}]})
}

/// A learned table where `tiny` (basic) fails hard prompts and `cheap`
/// (enhanced) clears 7 on them, as the minute scan stores it.
fn learned_table(w: &mut World) {
    use crate::optimize::auto_entry::{Learned, TABLE_KEY};
    use crate::optimize::selection::{Difficulty, QualityTable};
    use crate::storage::KeyValue;
    let mut table = QualityTable::default();
    for i in 0..10 {
        table.observe(Tier::Basic, Difficulty::Hard, 3.0 + f64::from(i % 2));
        table.observe(
            Tier::Enhanced,
            Difficulty::Hard,
            8.5 + f64::from(i % 2) / 2.0,
        );
    }
    let learned = Learned {
        table,
        ..Learned::default()
    };
    w.kv.set(TABLE_KEY, &serde_json::to_vec(&learned).unwrap())
        .unwrap();
}

#[test]
fn the_auto_flag_enters_where_the_learned_table_says_and_names_why() {
    let mut w = World::new();
    w.flags.answer = Some((EntryTier::Auto, "auto".to_owned()));
    learned_table(&mut w);
    // Hard: basic is ruled out, enhanced meets the threshold.
    w.fake.script("cheap", vec![ok_json(GOOD, "stop")]);
    let hard = "Prove step by step that Rust ownership and borrowing prevent data races";
    let (s, c) = w.ask("key_a", prompt(hard));
    assert_eq!(
        (s.record.entry_tier, s.record.variant.as_str()),
        (Tier::Enhanced, "auto")
    );
    assert_eq!(c.header("x-dol-selection"), Some("hard;meets"));
    assert_eq!(
        s.record.difficulty,
        Some(crate::optimize::selection::Difficulty::Hard)
    );
    assert_eq!(s.record.detail["selection"], json!({"reason": "meets"}));
    assert!(
        !w.fake.sent.iter().any(|m| m == "best"),
        "{:?}",
        w.fake.sent
    );
    // The stored row carries the difficulty.
    let row = store::request(&mut w.sql, &s.record.id).unwrap().unwrap();
    assert_eq!(row.difficulty, s.record.difficulty);
    // Easy: nothing known yet, the cheapest tier is explored.
    w.fake.script("tiny", vec![ok_json(GOOD, "stop")]);
    let (s, c) = w.ask("key_a", prompt("Rust ownership and borrowing?"));
    assert_eq!(s.record.entry_tier, Tier::Basic);
    assert_eq!(c.header("x-dol-selection"), Some("easy;explore"));
    // The reservation priced only what the plan can reach from basic.
    assert_eq!(s.reservation.cost_micros, 0);
}

#[test]
fn the_auto_hint_streams_with_the_header_and_a_pinned_model_ignores_it() {
    let mut w = World::new();
    learned_table(&mut w);
    w.fake.script(
        "cheap",
        vec![Reply::Http(200, Vec::new(), sse(GOOD, true), 5)],
    );
    let mut b = prompt("Prove step by step that Rust ownership and borrowing prevent data races");
    b["stream"] = json!(true);
    b["dol"] = json!({"tier": "auto"});
    let (s, c) = w.ask("key_a", b);
    assert!(c.streamed);
    assert_eq!(c.header("x-dol-selection"), Some("hard;meets"));
    assert_eq!(
        (s.record.entry_tier, s.record.variant.as_str()),
        (Tier::Enhanced, "-")
    );
    assert!(w.flags.calls.is_empty());
    // A pinned model is not chosen: no selection, no difficulty.
    w.fake.script("best", vec![ok_json(GOOD, "stop")]);
    let mut pinned = prompt("Prove step by step that Rust ownership is sound");
    pinned["model"] = json!("best");
    pinned["dol"] = json!({"tier": "auto"});
    let (s, c) = w.ask("key_a", pinned);
    assert_eq!(c.header("x-dol-selection"), None);
    assert_eq!(
        (s.record.entry_tier, s.record.difficulty),
        (Tier::Comprehensive, None)
    );
}

#[test]
fn an_unreadable_table_explores_with_a_warning_and_the_default_is_unchanged() {
    use crate::storage::KeyValue;
    let mut w = World::new();
    w.kv.set(crate::optimize::auto_entry::TABLE_KEY, b"{not json")
        .unwrap();
    // Without auto the table is not read and the entry stays comprehensive.
    w.fake.script("best", vec![ok_json(GOOD, "stop")]);
    let (s, c) = w.ask("key_a", body(false));
    assert_eq!(s.record.entry_tier, Tier::Comprehensive);
    assert_eq!(c.header("x-dol-selection"), None);
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    // The difficulty is recorded all the same (the table learns from it).
    assert_eq!(
        s.record.difficulty,
        Some(crate::optimize::selection::Difficulty::Medium)
    );
    w.flags.answer = Some((EntryTier::Auto, "auto".to_owned()));
    w.fake.script("tiny", vec![ok_json(GOOD, "stop")]);
    let (s, c) = w.ask("key_a", body(false));
    assert_eq!(s.record.entry_tier, Tier::Basic);
    assert_eq!(c.header("x-dol-selection"), Some("medium;explore"));
    assert!(
        s.warnings.iter().any(|w| w.contains("selection table")),
        "{:?}",
        s.warnings
    );
}

// ---- reservation ----

#[test]
fn the_reservation_is_every_answer_the_request_may_pay_for_from_max_tokens() {
    let mut w = World::new();
    w.fake.script("best", vec![ok_json(GOOD, "stop")]);
    let (s, _) = w.ask("key_a", with(body(false), "max_tokens", json!(100)));
    let req = ChatRequest::from_value(&with(body(false), "max_tokens", json!(100))).unwrap();
    let route = RouteRequest::from_chat(&req, Tier::Comprehensive);
    assert_eq!(route.output_tokens, 100);
    let one = route.input_tokens + 100;
    // The quality gate may turn down the comprehensive answer ($10/1M both
    // ways), then the enhanced one ($1/1M), then take the basic one
    // (unpriced): three answers, each billed.
    assert_eq!(s.reservation.tokens, 3 * one);
    assert_eq!(s.reservation.cost_micros, one * 10 + one);
}

#[test]
fn a_stream_reserves_one_answer_at_the_dearest_price() {
    // Streams are not gated: one answer, whichever candidate gives it.
    let mut w = World::new();
    w.fake.script(
        "best",
        vec![Reply::Http(200, Vec::new(), sse(GOOD, true), 5)],
    );
    let (s, _) = w.ask("key_a", with(body(true), "max_tokens", json!(100)));
    let req = ChatRequest::from_value(&with(body(true), "max_tokens", json!(100))).unwrap();
    let one = RouteRequest::from_chat(&req, Tier::Comprehensive).input_tokens + 100;
    assert_eq!(
        (s.reservation.tokens, s.reservation.cost_micros),
        (one, one * 10)
    );
}

#[test]
fn over_budget_is_refused_before_anything_is_sent_or_reserved() {
    let mut w = World::new();
    let limits = KeyLimits {
        monthly_budget_micros: Some(1),
        ..KeyLimits::default()
    };
    let call = w.call("key_a", limits, body(false));
    let (served, client) = w.serve(&call);
    let err = served.unwrap_err();
    assert!(matches!(
        err,
        PipelineError::Refused {
            limit: LimitKind::Budget,
            ..
        }
    ));
    let reply = err.reply();
    assert_eq!(reply.status, 429);
    assert_eq!(reply.body.error.code.as_deref(), Some("insufficient_quota"));
    assert!(reply.headers.iter().any(|(k, _)| k == "retry-after"));
    assert_eq!(client.status, None);
    assert!(w.fake.sent.is_empty());
    assert_eq!(w.usage("key_a").reserved_micros, 0);
}

#[test]
fn a_success_settles_the_actual_cost_and_releases_the_reservation() {
    let mut w = World::new();
    w.fake.script("best", vec![ok_json(GOOD, "stop")]);
    let (s, c) = w.ask("key_a", body(false));
    assert!(s.reservation.cost_micros > 600);
    // 20 + 40 tokens at $10/1M.
    assert_eq!(s.record.cost_micros, Some(600));
    assert_eq!(c.header("x-dol-cost-micros"), Some("600"));
    let u = w.usage("key_a");
    assert_eq!((u.spent_micros, u.reserved_micros), (600, 0));
    let stored = store::request(&mut w.sql, &s.record.id).unwrap().unwrap();
    assert_eq!(stored.cost_micros, Some(600));
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
}

#[test]
fn an_instance_reads_the_catalog_once_and_a_price_change_applies_to_its_next_request() {
    let mut w = World::new();
    w.fake.script("best", vec![ok_json(GOOD, "stop")]);
    // Different prompts: none is answered from the response cache.
    let (first, _) = w.ask(
        "key_a",
        prompt("Explain Rust ownership and borrowing with lifetimes"),
    );
    assert_eq!(first.record.cost_micros, Some(600));
    // Unchanged catalog: the next request reads its stamp, not the models.
    let call = w.call(
        "key_a",
        KeyLimits::default(),
        prompt("Explain Rust lifetimes in detail"),
    );
    let events = noted(&mut w, &call);
    // The recorder keeps a statement's first three words.
    assert!(
        !events
            .iter()
            .any(|e| e.starts_with("SELECT provider, model")),
        "{events:?}"
    );
    // One statement reads the stamps and emergency mode; the org's privacy
    // settings are kept too.
    let control_reads = events
        .iter()
        .filter(|e| e.starts_with("SELECT key, value"))
        .count();
    assert_eq!(control_reads, 1, "{events:?}");
    assert!(
        !events.iter().any(|e| e.starts_with("SELECT store_bodies")),
        "{events:?}"
    );
    // An admin doubles `best`'s price: the same instance charges it at once.
    let mut best = entry("best", Tier::Comprehensive, Some(20_000_000));
    best.capabilities = store::catalog(&mut w.sql, 0)
        .unwrap()
        .into_iter()
        .find(|e| e.model == "best")
        .unwrap()
        .capabilities;
    store::put_model(&mut w.sql, &best, i64::try_from(T0).unwrap()).unwrap();
    w.fake.script("best", vec![ok_json(GOOD, "stop")]);
    let (after, _) = w.ask("key_a", prompt("Explain Rust borrowing with examples"));
    assert_eq!(after.record.model, "best");
    assert_eq!(after.record.cost_micros, Some(1_200));
}

#[test]
fn an_upstream_failure_releases_the_reservation() {
    let mut w = World::new();
    w.fake.script("best", vec![status(500, None); 5]);
    w.fake.script("cheap", vec![Reply::Refused; 5]);
    let (s, c) = w.ask("key_a", body(false));
    assert_eq!(c.status, Some(200));
    assert_eq!(s.generation.info.provider, super::offline::PROVIDER);
    let u = w.usage("key_a");
    assert_eq!((u.spent_micros, u.reserved_micros), (0, 0));
}

#[test]
fn a_cut_stream_releases_the_reservation_and_is_not_cached() {
    let mut w = World::new();
    let chunks: Vec<Vec<u8>> = sse(GOOD, false).into_iter().take(3).collect();
    w.fake.script("best", vec![Reply::Stall(200, chunks)]);
    let (s, c) = w.ask("key_a", body(true));
    assert!(c.streamed);
    assert_ne!(s.generation.outcome, super::engine::Outcome::Success);
    assert_eq!(w.usage("key_a").reserved_micros, 0);
    // Not cached: the same request goes upstream again.
    let before = w.fake.sent.len();
    w.fake.script("best", vec![ok_json(GOOD, "stop")]);
    let (again, _) = w.ask("key_a", body(false));
    assert!(!again.generation.info.cached);
    assert!(w.fake.sent.len() > before);
}

/// Statements and the answer, in the order they happened.
type Events = std::rc::Rc<std::cell::RefCell<Vec<String>>>;

/// SQL that notes each statement's first words in `events`.
struct Noting<'a>(&'a mut TestDb, Events);

impl crate::storage::SqlExecutor for Noting<'_> {
    fn execute(
        &mut self,
        sql: &str,
        params: &[crate::storage::SqlValue],
    ) -> Result<Vec<Vec<crate::storage::SqlValue>>, String> {
        let words: Vec<&str> = sql.split_whitespace().take(3).collect();
        self.1.borrow_mut().push(words.join(" "));
        self.0.execute(sql, params)
    }
}

/// A client that notes when the answer went out.
struct NotingClient(Recorder, Events);

impl Downstream for NotingClient {
    async fn start(&mut self, headers: Vec<(String, String)>) -> bool {
        self.0.start(headers).await
    }
    async fn send(&mut self, bytes: Vec<u8>) -> bool {
        self.0.send(bytes).await
    }
}

impl Client for NotingClient {
    async fn complete(&mut self, status: u16, headers: Vec<(String, String)>, body: Value) {
        self.1.borrow_mut().push("ANSWER".to_owned());
        self.0.complete(status, headers, body).await;
    }
}

/// Serves one completion for `call`, noting every statement and the answer.
fn noted(w: &mut World, call: &Call) -> Vec<String> {
    w.fake.script("best", vec![ok_json(GOOD, "stop")]);
    let events = Events::default();
    let mut client = NotingClient(Recorder::default(), events.clone());
    let io = Io {
        sql: &mut Noting(&mut w.sql, events.clone()),
        kv: &mut w.kv,
        upstream: &mut w.fake,
        flags: &mut w.flags,
        clock: &w.clock,
        cache: &w.cache,
    };
    let served = block_on(serve(io, &mut client, call, &w.settings)).unwrap();
    assert!(served.warnings.is_empty(), "{:?}", served.warnings);
    assert_eq!(client.0.status, Some(200));
    // What trails the answer, written as the instance's batch would: its
    // statements follow `ANSWER`.
    if let Some(booking) = served.trailing {
        let sql = &mut Noting(&mut w.sql, events.clone());
        let warnings = bookings::write(sql, &[booking]);
        assert!(warnings.is_empty(), "{warnings:?}");
    }
    events.take()
}

/// Where the write transactions of `events` begin.
fn write_transactions(events: &[String]) -> Vec<usize> {
    (0..events.len())
        .filter(|&i| events[i].starts_with("BEGIN IMMEDIATE"))
        .collect()
}

#[test]
fn settlement_and_the_record_are_one_transaction_written_before_the_answer() {
    let mut w = World::new();
    let call = w.call("key_a", KeyLimits::budget(1_000_000), body(false));
    let events = noted(&mut w, &call);
    let at = |e: &str| events.iter().position(|x| x.starts_with(e)).unwrap();
    let answer = at("ANSWER");
    let record = at("INSERT INTO requests");
    // Two write transactions in all: admission, then book-keeping.
    let begins = write_transactions(&events);
    assert_eq!(begins.len(), 2, "{events:?}");
    // Both lock only the rows they change (shared write lock on PostgreSQL);
    // the recorder keeps a statement's first three words.
    assert!(
        begins.iter().all(
            |&i| crate::storage::BEGIN_ROW_LOCKED.starts_with(&events[i])
                && events[i].ends_with("/*")
        ),
        "{events:?}"
    );
    assert!(begins[1] < record && record < answer, "{events:?}");
    let commit = (record..events.len())
        .find(|&i| events[i] == "COMMIT")
        .unwrap();
    assert!(commit < answer, "{events:?}");
}

#[test]
fn a_key_and_org_without_limits_are_booked_after_the_answer_and_counted() {
    let mut w = World::new();
    let call = w.call("key_a", KeyLimits::default(), body(false));
    let events = noted(&mut w, &call);
    // Nothing to admit against: no reservation, and the book-keeping
    // trails the answer, one transaction in the instance's batch.
    let begins = write_transactions(&events);
    assert_eq!(begins.len(), 1, "{events:?}");
    let record = events
        .iter()
        .position(|x| x.starts_with("INSERT INTO requests"))
        .unwrap();
    let answer = events.iter().position(|x| x == "ANSWER").unwrap();
    assert!(answer < begins[0] && begins[0] < record, "{events:?}");
    // The key's counters end as a reserved request's would.
    let u = w.usage("key_a");
    assert_eq!(
        (
            u.window_requests,
            u.window_tokens,
            u.spent_micros,
            u.reserved_micros
        ),
        (1, 60, 600, 0)
    );
    // A second request counts again.
    let mut again = call.clone();
    again.id = "chatcmpl-again".to_owned();
    again.cache_control = Some("no-cache".to_owned());
    let events = noted(&mut w, &again);
    assert_eq!(write_transactions(&events).len(), 1, "{events:?}");
    let u = w.usage("key_a");
    assert_eq!((u.window_requests, u.spent_micros), (2, 1_200));
}

#[test]
fn what_trails_the_answer_is_not_written_until_the_batch_is() {
    let mut w = World::new();
    w.fake.script("best", vec![ok_json(GOOD, "stop")]);
    let call = w.call("key_a", KeyLimits::default(), body(false));
    let served = w.serve_unbooked(&call).0.unwrap();
    let booking = served.trailing.expect("a key without limits trails");
    assert_eq!(booking.record, served.record);
    assert!(store::request(&mut w.sql, &call.id).unwrap().is_none());
    assert_eq!(w.usage("key_a").window_requests, 0);
    assert!(bookings::write(&mut w.sql, &[booking]).is_empty());
    assert!(store::request(&mut w.sql, &call.id).unwrap().is_some());
    assert_eq!(w.usage("key_a").spent_micros, 600);
    // A key with a limit is settled before its answer: nothing trails.
    w.fake.script("best", vec![ok_json(GOOD, "stop")]);
    let mut limited = w.call("key_b", KeyLimits::budget(1_000_000), body(false));
    limited.cache_control = Some("no-cache".to_owned());
    let served = w.serve_unbooked(&limited).0.unwrap();
    assert!(served.trailing.is_none());
    assert!(store::request(&mut w.sql, &limited.id).unwrap().is_some());
}

#[test]
fn an_org_with_a_limit_reserves_for_its_unlimited_key() {
    let mut w = World::new();
    let mut call = w.call("key_a", KeyLimits::default(), body(false));
    call.caller.org = Some(crate::orgs::Org {
        id: "acme".to_owned(),
        name: "Acme".to_owned(),
        limits: KeyLimits::budget(1_000_000),
        allowed_models: Vec::new(),
        created_at: 0,
        updated_at: 0,
    });
    let events = noted(&mut w, &call);
    assert_eq!(write_transactions(&events).len(), 2, "{events:?}");
    let org = w.usage(&store::org_usage_key("acme"));
    assert_eq!((org.spent_micros, org.reserved_micros), (600, 0));
}

// ---- settlement ----

#[test]
fn an_unknown_price_is_flagged_never_zero() {
    let mut w = World::new();
    w.fake.script("tiny", vec![ok_json(GOOD, "stop")]);
    let (s, c) = w.ask("key_a", with(body(false), "dol", json!({"tier": "basic"})));
    assert_eq!(c.header("x-dol-model"), Some("tiny"));
    assert_eq!(c.header("x-dol-cost-micros"), Some("unknown"));
    assert_eq!(s.record.cost_micros, None);
    let stored = store::request(&mut w.sql, &s.record.id).unwrap().unwrap();
    assert_eq!(stored.cost_micros, None);
    assert_eq!(w.usage("key_a").reserved_micros, 0);
}

// ---- cache ----

#[test]
fn a_repeat_is_a_hit_recorded_as_cache_hit_at_no_cost() {
    let mut w = World::new();
    w.fake.script("best", vec![ok_json(GOOD, "stop")]);
    let (first, c1) = w.ask("key_a", body(false));
    assert_eq!(c1.header("x-dol-cache"), Some("miss"));
    let sent = w.fake.sent.len();
    let (hit, c2) = w.ask("key_a", body(false));
    assert_eq!(w.fake.sent.len(), sent, "a hit makes no upstream call");
    assert_eq!(c2.header("x-dol-cache"), Some("hit"));
    assert_eq!(c2.header("x-dol-attempts"), Some("0"));
    assert_eq!(
        c2.json.as_ref().unwrap()["choices"][0]["message"]["content"],
        json!(GOOD)
    );
    // Record rewriting: a hit is `cache_hit`, cached, and cost 0.
    assert!(hit.record.cached);
    assert_eq!(hit.record.outcome, "cache_hit");
    assert_eq!(hit.record.cost_micros, Some(0));
    let stored = store::request(&mut w.sql, &hit.record.id).unwrap().unwrap();
    assert_eq!(
        (stored.outcome.as_str(), stored.cost_micros),
        ("cache_hit", Some(0))
    );
    // A hit costs nothing: the spend is only the first answer's.
    let u = w.usage("key_a");
    assert_eq!(
        (u.spent_micros, u.reserved_micros),
        (first.record.cost_micros.unwrap(), 0)
    );
}

#[test]
fn no_cache_bypasses_the_cache() {
    let mut w = World::new();
    w.fake
        .script("best", vec![ok_json(GOOD, "stop"), ok_json(GOOD, "stop")]);
    w.ask("key_a", body(false));
    let mut call = w.call("key_a", KeyLimits::default(), body(false));
    call.cache_control = Some("no-cache".to_owned());
    let (s, c) = w.serve(&call);
    assert!(!s.unwrap().generation.info.cached);
    assert_eq!(c.header("x-dol-cache"), Some("miss"));
    assert_eq!(w.fake.sent.len(), 2);
}

#[test]
fn a_zero_ttl_disables_the_cache() {
    let mut w = World::new();
    w.settings.cache_ttl_secs = 0;
    w.fake
        .script("best", vec![ok_json(GOOD, "stop"), ok_json(GOOD, "stop")]);
    w.ask("key_a", body(false));
    let (s, _) = w.ask("key_a", body(false));
    assert!(!s.generation.info.cached);
    assert_eq!(w.fake.sent.len(), 2);
}

#[test]
fn the_cache_is_per_api_key() {
    let mut w = World::new();
    w.fake
        .script("best", vec![ok_json(GOOD, "stop"), ok_json(GOOD, "stop")]);
    w.ask("key_a", body(false));
    let (s, _) = w.ask("key_b", body(false));
    assert!(!s.generation.info.cached);
    assert_eq!(w.fake.sent.len(), 2);
}

#[test]
fn entries_expire_after_the_ttl_on_the_injected_clock() {
    let mut w = World::new();
    w.fake
        .script("best", vec![ok_json(GOOD, "stop"), ok_json(GOOD, "stop")]);
    w.ask("key_a", body(false));
    w.clock.0.set(T0 + 59_000);
    assert!(w.ask("key_a", body(false)).0.generation.info.cached);
    w.clock.0.set(T0 + 61_000);
    assert!(!w.ask("key_a", body(false)).0.generation.info.cached);
    assert_eq!(w.fake.sent.len(), 2);
}

#[test]
fn a_streamed_request_replays_a_cached_answer_as_sse() {
    let mut w = World::new();
    w.fake.script("best", vec![ok_json(GOOD, "stop")]);
    w.ask("key_a", body(false));
    let (s, c) = w.ask("key_a", body(true));
    assert!(s.generation.info.cached);
    assert!(c.streamed && c.json.is_none());
    assert_eq!(c.header("x-dol-cache"), Some("hit"));
    assert!(c.header("x-dol-request-id").is_some());
    assert!(c.body.starts_with("data: "));
    assert!(c.body.ends_with("data: [DONE]\n\n"));
    assert!(c.body.contains("\"usage\""));
    assert_eq!(w.fake.sent.len(), 1, "{:?}", w.fake.sent);
}

// ---- intake ----

#[test]
fn refusals_render_as_openai_errors() {
    let missing = PipelineError::MissingKey.reply();
    assert_eq!(missing.status, 401);
    assert_eq!(missing.body.error.code.as_deref(), Some("invalid_api_key"));
    assert!(
        missing
            .body
            .error
            .message
            .contains("didn't provide an API key")
    );
    assert!(
        missing
            .headers
            .iter()
            .any(|(k, v)| k == "www-authenticate" && v == "Bearer")
    );
    let storage = PipelineError::Storage {
        context: "catalog",
        message: "disk on fire".to_owned(),
    }
    .reply();
    assert_eq!(storage.status, 500);
    assert!(!storage.body.error.message.contains("disk"));
    let mut w = World::new();
    let call = w.call(
        "key_a",
        KeyLimits::default(),
        with(body(false), "model", json!("nope")),
    );
    let err = w.serve(&call).0.unwrap_err();
    assert_eq!(err.reply().status, 404);
    assert_eq!(
        err.reply().body.error.code.as_deref(),
        Some("model_not_found")
    );
}

#[test]
fn authentication_takes_the_bearer_then_x_api_key_then_the_bootstrap_key() {
    use super::intake::authenticate;
    let mut sql = db();
    let limits = KeyLimits {
        requests_per_minute: Some(3),
        ..KeyLimits::default()
    };
    store::create_key(
        &mut sql,
        "key_1",
        "dol_sk_secret",
        &super::admin::NewKey::new("web", limits),
        1,
    )
    .unwrap();
    let c = authenticate(
        &mut sql,
        Some("Bearer dol_sk_secret"),
        None,
        "",
        Role::Generate,
    )
    .unwrap();
    assert_eq!((c.id.as_str(), c.limits), ("key_1", limits));
    let c = authenticate(&mut sql, None, Some("dol_sk_secret"), "", Role::Generate).unwrap();
    assert_eq!(c.id, "key_1");
    let c = authenticate(&mut sql, Some("Bearer dev"), None, "dev", Role::Generate).unwrap();
    assert_eq!(
        (c.id.as_str(), c.limits),
        ("bootstrap", KeyLimits::default())
    );
    assert_eq!(
        authenticate(&mut sql, None, Some(""), "dev", Role::Generate),
        Err(PipelineError::MissingKey)
    );
    assert_eq!(
        authenticate(&mut sql, Some("Bearer nope"), None, "", Role::Generate),
        Err(PipelineError::InvalidKey)
    );
    assert_eq!(PipelineError::InvalidKey.reply().status, 401);
    store::revoke_key(&mut sql, "key_1", 2).unwrap();
    assert_eq!(
        authenticate(
            &mut sql,
            Some("Bearer dol_sk_secret"),
            None,
            "",
            Role::Generate
        ),
        Err(PipelineError::InvalidKey)
    );
}

/// Each permission denial of the key check has its own case: a key without
/// the route's role, and a key whose org row is gone.
#[test]
fn authentication_checks_the_role_and_loads_the_org() {
    use super::admin::NewKey;
    use super::intake::authenticate;
    use crate::orgs::{OrgSpec, store as org_store};
    let mut sql = db();
    let spec = OrgSpec {
        name: "Acme".into(),
        limits: KeyLimits::default(),
        allowed_models: vec![],
    };
    org_store::put_org(&mut sql, "acme", &spec, "admin", 1).unwrap();
    let key = |roles: Option<Vec<Role>>, org: Option<&str>| NewKey {
        roles,
        org: org.map(str::to_owned),
        ..NewKey::new("k", KeyLimits::default())
    };
    store::create_key(
        &mut sql,
        "key_m",
        "dol_sk_m",
        &key(Some(vec![Role::ReadMetrics]), Some("acme")),
        1,
    )
    .unwrap();
    store::create_key(&mut sql, "key_d", "dol_sk_d", &key(None, None), 1).unwrap();
    store::create_key(&mut sql, "key_g", "dol_sk_g", &key(None, Some("gone")), 1).unwrap();
    // Wrong role: a metrics-only key may not generate or send events.
    for role in [Role::Generate, Role::Events] {
        let err = authenticate(&mut sql, Some("Bearer dol_sk_m"), None, "", role).unwrap_err();
        let reply = err.reply();
        assert_eq!(reply.status, 403);
        assert!(reply.body.error.message.contains(role.as_str()));
    }
    let c = authenticate(
        &mut sql,
        Some("Bearer dol_sk_m"),
        None,
        "",
        Role::ReadMetrics,
    )
    .unwrap();
    assert_eq!(c.org.unwrap().id, "acme");
    // A key created without roles keeps what keys could do before roles.
    for role in [Role::Generate, Role::Events] {
        assert!(authenticate(&mut sql, Some("Bearer dol_sk_d"), None, "", role).is_ok());
    }
    assert!(
        authenticate(
            &mut sql,
            Some("Bearer dol_sk_d"),
            None,
            "",
            Role::ReadMetrics
        )
        .is_err()
    );
    assert_eq!(
        authenticate(&mut sql, Some("Bearer dol_sk_g"), None, "", Role::Generate),
        Err(PipelineError::InvalidKey)
    );
}

#[test]
fn generate_renders_the_template_under_the_request_fields() {
    use super::intake::{parse_chat, parse_generate};
    let mut sql = db();
    let spec: super::templates::TemplateSpec = serde_json::from_value(json!({
        "messages": [{"role": "user", "content": "Summarize: {{text}}"}],
        "variables": {"text": {}},
        "defaults": {"temperature": 0.2, "max_tokens": 50}
    }))
    .unwrap();
    store::put_template(&mut sql, "sum", &spec, "ann", 1).unwrap();
    let input = json!({"template": "sum", "variables": {"text": "abc"}, "max_tokens": 9});
    let (req, route) = parse_generate(&mut sql, input.to_string().as_bytes()).unwrap();
    assert_eq!(route, "generate:sum@1");
    assert_eq!(req.model, "auto");
    let v = serde_json::to_value(&req).unwrap();
    assert_eq!(v["messages"][0]["content"], json!("Summarize: abc"));
    assert_eq!(
        (v["max_tokens"].clone(), v["temperature"].clone()),
        (json!(9), json!(0.2))
    );

    let mut status = |b: Value| {
        parse_generate(&mut sql, b.to_string().as_bytes())
            .unwrap_err()
            .reply()
    };
    let missing = status(json!({"variables": {}}));
    assert_eq!(
        (missing.status, missing.body.error.param.as_deref()),
        (400, Some("template"))
    );
    let bad_version = status(json!({"template": "sum", "version": 0}));
    assert_eq!(bad_version.body.error.param.as_deref(), Some("version"));
    let messages = status(json!({"template": "sum", "messages": []}));
    assert_eq!(messages.body.error.param.as_deref(), Some("messages"));
    let unknown = status(json!({"template": "sum", "version": 2}));
    assert_eq!(
        (unknown.status, unknown.body.error.code.as_deref()),
        (404, Some("template-not-found"))
    );
    let unrendered = status(json!({"template": "sum"}));
    assert_eq!(
        (unrendered.status, unrendered.body.error.param.as_deref()),
        (400, Some("variables"))
    );
    let chat = parse_chat(b"{\"model\":\"auto\"}").unwrap_err().reply();
    assert_eq!(chat.status, 400);
    assert_eq!(
        parse_chat(body(false).to_string().as_bytes()).unwrap().1,
        "chat"
    );
}

#[test]
fn the_routing_state_is_saved_for_what_routing_must_see_at_once_and_otherwise_every_interval() {
    use super::engine::ROUTING_SAVE_INTERVAL_MS;
    let mut w = World::new();
    // Every request goes to the provider (a cached answer observes nothing).
    w.settings.cache_ttl_secs = 0;
    let stored = |w: &mut World| {
        let state = store::routing_state(&mut w.kv);
        (
            state.saved_ms,
            state.entries.get("openai/best").map(|e| e.stats.samples),
        )
    };
    // The first answer of a model is saved at once.
    w.fake.script("best", vec![ok_json(GOOD, "stop")]);
    w.ask("key_a", body(false));
    assert_eq!(stored(&mut w), (T0, Some(1)));
    // Another success in the same interval changes only averages: not saved.
    w.clock.0.set(T0 + ROUTING_SAVE_INTERVAL_MS - 1);
    w.fake.script("best", vec![ok_json(GOOD, "stop")]);
    w.ask("key_a", body(false));
    assert_eq!(stored(&mut w), (T0, Some(1)));
    // Once the interval has passed: saved.
    w.clock.0.set(T0 + ROUTING_SAVE_INTERVAL_MS);
    w.fake.script("best", vec![ok_json(GOOD, "stop")]);
    w.ask("key_a", body(false));
    assert_eq!(stored(&mut w), (T0 + ROUTING_SAVE_INTERVAL_MS, Some(2)));
    // A failure is saved at once, inside the interval.
    w.clock.0.set(T0 + ROUTING_SAVE_INTERVAL_MS + 1);
    w.fake.script(
        "best",
        vec![status(500, None), status(500, None), status(500, None)],
    );
    w.fake.script("cheap", vec![ok_json(GOOD, "stop")]);
    w.ask("key_a", body(false));
    let state = store::routing_state(&mut w.kv);
    assert_eq!(state.saved_ms, T0 + ROUTING_SAVE_INTERVAL_MS + 1);
    assert!(
        state.entries["openai/best"].stats.success_rate < 1.0,
        "{state:?}"
    );
}
