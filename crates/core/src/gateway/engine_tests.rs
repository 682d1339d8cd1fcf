//! Engine tests over a scripted upstream with a virtual clock.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use futures::executor::block_on;
use serde_json::json;

use super::*;
use crate::gateway::providers::ProviderKind;

/// One scripted provider reply.
#[derive(Clone)]
pub(crate) enum Reply {
    /// Status, headers, body chunks, with `delay` ms before the head.
    Http(u16, Vec<(String, String)>, Vec<Vec<u8>>, u64),
    /// The connection fails.
    Refused,
    /// No answer within any timeout.
    Hang,
    /// Head arrives, then the body stalls after these chunks.
    Stall(u16, Vec<Vec<u8>>),
}

pub(crate) struct Fake {
    now: u64,
    scripts: BTreeMap<String, VecDeque<Reply>>,
    pub(crate) sent: Vec<String>,
}

pub(crate) struct FakeBody {
    chunks: VecDeque<Vec<u8>>,
    stall: bool,
}

impl Fake {
    pub(crate) fn new() -> Self {
        Self {
            now: 0,
            scripts: BTreeMap::new(),
            sent: Vec::new(),
        }
    }
    pub(crate) fn script(&mut self, model: &str, replies: Vec<Reply>) {
        self.scripts
            .entry(model.to_owned())
            .or_default()
            .extend(replies);
    }
}

impl Upstream for Fake {
    type Body = FakeBody;
    async fn send(
        &mut self,
        spec: &HttpRequestSpec,
        timeout_ms: u64,
    ) -> Result<(u16, Vec<(String, String)>, FakeBody), TransportError> {
        let body: serde_json::Value = serde_json::from_slice(&spec.body).unwrap();
        let model = body["model"].as_str().unwrap_or_default().to_owned();
        self.sent.push(model.clone());
        let reply = self
            .scripts
            .get_mut(&model)
            .and_then(VecDeque::pop_front)
            .unwrap_or(Reply::Refused);
        match reply {
            Reply::Http(status, headers, chunks, delay) => {
                if delay > timeout_ms {
                    self.now += timeout_ms;
                    return Err(TransportError::Timeout);
                }
                self.now += delay;
                Ok((
                    status,
                    headers,
                    FakeBody {
                        chunks: chunks.into(),
                        stall: false,
                    },
                ))
            }
            Reply::Refused => Err(TransportError::Connect("refused".to_owned())),
            Reply::Hang => {
                self.now += timeout_ms;
                Err(TransportError::Timeout)
            }
            Reply::Stall(status, chunks) => Ok((
                status,
                Vec::new(),
                FakeBody {
                    chunks: chunks.into(),
                    stall: true,
                },
            )),
        }
    }
    async fn read(
        &mut self,
        body: &mut FakeBody,
        timeout_ms: u64,
    ) -> Result<Option<Vec<u8>>, TransportError> {
        match body.chunks.pop_front() {
            Some(c) => Ok(Some(c)),
            None if body.stall => {
                self.now += timeout_ms;
                Err(TransportError::Timeout)
            }
            None => Ok(None),
        }
    }
    async fn sleep(&mut self, ms: u64) {
        self.now += ms;
    }
    fn elapsed_ms(&self) -> u64 {
        self.now
    }
    fn now_unix_s(&self) -> u64 {
        1_795_651_200
    }
    fn random_u64(&mut self) -> u64 {
        0
    }
}

#[derive(Default)]
struct Client {
    head: Option<Vec<(String, String)>>,
    starts: usize,
    body: String,
    /// Sends after which the client is gone (`None`: it reads everything).
    gone_after: Option<usize>,
    sends: usize,
}

impl Downstream for Client {
    async fn start(&mut self, headers: Vec<(String, String)>) -> bool {
        self.starts += 1;
        self.head = Some(headers);
        true
    }
    async fn send(&mut self, bytes: Vec<u8>) -> bool {
        if self.gone_after.is_some_and(|n| self.sends >= n) {
            return false;
        }
        self.sends += 1;
        self.body.push_str(&String::from_utf8(bytes).unwrap());
        true
    }
}

pub(crate) const GOOD: &str = "Rust ownership means every value has a single owner; borrowing lets code read or change a value without taking it, and the compiler checks lifetimes so references never outlive their data.";

pub(crate) fn ok_json(text: &str, finish: &str) -> Reply {
    let body = json!({
        "id": "x", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 40, "total_tokens": 60}
    });
    Reply::Http(200, Vec::new(), vec![body.to_string().into_bytes()], 10)
}

pub(crate) fn status(code: u16, retry_after: Option<&str>) -> Reply {
    let headers = retry_after
        .map(|r| vec![("retry-after".to_owned(), r.to_owned())])
        .unwrap_or_default();
    let body = json!({"error": {"message": "nope", "type": "server_error", "code": null}});
    Reply::Http(code, headers, vec![body.to_string().into_bytes()], 5)
}

pub(crate) fn sse(text: &str, done: bool) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = text
        .split_inclusive(' ')
        .map(|w| format!("data: {}\n\n", json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [{"index": 0, "delta": {"content": w}, "finish_reason": null}]})).into_bytes())
        .collect();
    if done {
        out.push(format!("data: {}\n\n", json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})).into_bytes());
        out.push(format!("data: {}\n\n", json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [], "usage": {"prompt_tokens": 20, "completion_tokens": 30, "total_tokens": 50}})).into_bytes());
        out.push(b"data: [DONE]\n\n".to_vec());
    }
    out
}

pub(crate) fn entry(model: &str, tier: Tier, price: Option<u64>) -> CatalogEntry {
    CatalogEntry {
        provider: "openai".to_owned(),
        model: model.to_owned(),
        input_price: price,
        output_price: price,
        context_window: 100_000,
        capabilities: ["json", "streaming"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect::<BTreeSet<_>>(),
        tier,
        image_prices: Default::default(),
    }
}

fn provider() -> ProviderConfig {
    ProviderConfig {
        name: "openai".to_owned(),
        kind: ProviderKind::OpenAiCompatible,
        base_url: "http://mock/v1".to_owned(),
        api_key: Some("k".to_owned()),
    }
}

fn catalog() -> Vec<CatalogEntry> {
    vec![
        entry("best", Tier::Comprehensive, Some(10_000_000)),
        entry("cheap", Tier::Enhanced, Some(1_000_000)),
        entry("tiny", Tier::Basic, None),
    ]
}

fn request(stream: bool) -> ChatRequest {
    let mut body = json!({
        "model": "auto",
        "messages": [{"role": "user", "content": "Explain Rust ownership and borrowing with lifetimes"}]
    });
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    ChatRequest::from_value(&body).unwrap()
}

pub(crate) fn config() -> EngineConfig {
    let mut c = EngineConfig::default();
    c.pipeline.retry.base_delay_ms = 100;
    c.attempt_timeout_ms = 5_000;
    c.pipeline.retry.deadline_ms = 30_000;
    c
}

fn run(fake: &mut Fake, req: &ChatRequest, client: Option<&mut Client>) -> Generation {
    let plan = plan(
        req,
        &catalog(),
        &[provider()],
        &RoutingState::default(),
        Tier::Comprehensive,
        &RoutingWeights::default(),
        0,
    )
    .unwrap();
    block_on(generate(
        fake,
        client,
        req,
        &plan,
        config(),
        QualityConfig::default(),
        "chatcmpl-t",
    ))
}

#[test]
fn a_good_first_answer_is_returned_with_its_cost() {
    let mut f = Fake::new();
    f.script("best", vec![ok_json(GOOD, "stop")]);
    let g = run(&mut f, &request(false), None);
    assert_eq!(g.outcome, Outcome::Success);
    assert_eq!(
        (g.info.tier, g.info.model.as_str(), g.info.attempts),
        (Tier::Comprehensive, "best", 1)
    );
    // 20 + 40 tokens at $10/1M = 600 µ$.
    assert_eq!(g.info.cost_micros, Some(600));
    assert!(!g.info.cost_unknown);
    assert!(g.info.quality.unwrap() >= 7.0, "{:?}", g.quality);
    assert_eq!(g.observations.len(), 1);
}

#[test]
fn server_errors_are_retried_with_backoff_honouring_retry_after() {
    let mut f = Fake::new();
    f.script(
        "best",
        vec![
            status(503, None),
            status(429, Some("3")),
            ok_json(GOOD, "stop"),
        ],
    );
    let g = run(&mut f, &request(false), None);
    assert_eq!(g.outcome, Outcome::Success);
    assert_eq!(g.info.attempts, 3);
    assert_eq!(f.sent, ["best", "best", "best"]);
    // Waited at least the 3 s Retry-After.
    assert!(f.now >= 3_000, "{}", f.now);
    let outcomes: Vec<&str> = g.attempts.iter().map(|a| a.outcome.as_str()).collect();
    assert_eq!(outcomes, ["server", "rate_limited", "ok"]);
}

#[test]
fn client_errors_are_not_retried_and_fall_to_the_next_tier() {
    let mut f = Fake::new();
    f.script("best", vec![status(400, None)]);
    f.script("cheap", vec![ok_json(GOOD, "stop")]);
    let g = run(&mut f, &request(false), None);
    assert_eq!(f.sent, ["best", "cheap"]);
    assert_eq!((g.info.tier, g.fallbacks), (Tier::Enhanced, 1));
    assert_eq!(g.info.cost_micros, Some(60));
}

#[test]
fn a_low_quality_answer_moves_down_a_tier() {
    let mut f = Fake::new();
    f.script(
        "best",
        vec![ok_json("I'm sorry, but I can't help with that.", "stop")],
    );
    f.script("cheap", vec![ok_json(GOOD, "stop")]);
    let g = run(&mut f, &request(false), None);
    assert_eq!(g.info.model, "cheap");
    assert_eq!(g.attempts[0].outcome, "low_quality");
    // The turned-down answer was billed by its provider, so the request
    // costs both: 60 tokens at $10/1M and 60 at $1/1M.
    assert_eq!(g.info.cost_micros, Some(600 + 60));
    assert_eq!(g.billed_tokens, 120);
    assert_eq!(
        g.usage.total_tokens, 60,
        "the client sees its answer's usage"
    );
}

#[test]
fn when_only_weak_answers_exist_the_best_is_returned() {
    let mut f = Fake::new();
    f.script(
        "best",
        vec![ok_json("I'm sorry, but I can't help with that.", "stop")],
    );
    f.script("cheap", vec![ok_json("Rust ownership.", "length")]);
    f.script(
        "tiny",
        vec![status(500, None), status(500, None), status(500, None)],
    );
    // The client's own limit cut the answer: the gate judges it.
    let mut req = request(false);
    req.max_tokens = Some(40);
    let g = run(&mut f, &req, None);
    assert_eq!(g.outcome, Outcome::LowQuality);
    assert!(g.info.quality.unwrap() < 7.0);
}

#[test]
fn an_answer_cut_at_dols_own_output_limit_is_returned_not_retried_a_tier_down() {
    // The request set no limit: DOL sent its own, and every tier would be
    // cut at the same one, so a lower tier would only be paid for another
    // cut answer.
    let mut f = Fake::new();
    f.script("best", vec![ok_json(GOOD, "length")]);
    f.script("cheap", vec![ok_json(GOOD, "stop")]);
    let g = run(&mut f, &request(false), None);
    assert_eq!(f.sent, ["best"]);
    assert_eq!(
        (g.outcome, g.finish_reason),
        (Outcome::Success, FinishReason::Length)
    );
}

#[test]
fn when_everything_fails_the_offline_tier_answers_with_a_label() {
    let mut f = Fake::new();
    let g = run(&mut f, &request(false), None);
    assert_eq!(g.outcome, Outcome::Offline);
    assert_eq!(g.info.provider, offline::PROVIDER);
    assert_eq!(g.info.cost_micros, Some(0));
    assert!(g.content.starts_with(offline::LABEL));
    assert_eq!(g.fallbacks, 2);
}

#[test]
fn an_unknown_price_is_reported_as_unknown_not_zero() {
    let mut f = Fake::new();
    let req = ChatRequest::from_value(&json!({"model": "tiny", "messages": [{"role": "user", "content": "Explain Rust ownership and borrowing with lifetimes"}]})).unwrap();
    f.script("tiny", vec![ok_json(GOOD, "stop")]);
    let g = run(&mut f, &req, None);
    assert_eq!(g.info.model, "tiny");
    assert!(g.info.cost_unknown);
    assert_eq!(g.info.cost_micros, None);
}

#[test]
fn the_deadline_bounds_slow_providers() {
    let mut f = Fake::new();
    f.script("best", vec![Reply::Hang]);
    f.script("cheap", vec![Reply::Hang]);
    f.script("tiny", vec![Reply::Hang]);
    let g = run(&mut f, &request(false), None);
    assert_eq!(g.outcome, Outcome::Offline);
    assert!(f.now <= 30_000, "deadline crossed: {}", f.now);
    assert!(g.attempts.iter().all(|a| a.outcome == "timeout"));
}

#[test]
fn unknown_models_are_refused_and_pinned_models_go_first() {
    let req = ChatRequest::from_value(
        &json!({"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}),
    )
    .unwrap();
    assert!(matches!(
        plan(&req, &catalog(), &[provider()], &RoutingState::default(), Tier::Comprehensive, &RoutingWeights::default(), 0),
        Err(PlanError::UnknownModel(m)) if m == "gpt-9"
    ));
    let req = ChatRequest::from_value(
        &json!({"model": "cheap", "messages": [{"role": "user", "content": "x"}]}),
    )
    .unwrap();
    let p = plan(
        &req,
        &catalog(),
        &[provider()],
        &RoutingState::default(),
        Tier::Comprehensive,
        &RoutingWeights::default(),
        0,
    )
    .unwrap();
    assert_eq!(p.entry, Tier::Enhanced);
    assert!(p.tiers[0].is_empty());
    assert_eq!(p.tiers[1][0].entry.model, "cheap");
}

#[test]
fn open_breakers_are_skipped() {
    let mut state = RoutingState::default();
    let fail = Observation {
        key: "openai/best".to_owned(),
        latency_ms: 10,
        success: false,
        quality: None,
    };
    let circuit = CircuitConfig {
        failure_threshold: 2,
        cooldown_ms: 1_000,
    };
    state.apply(&[fail.clone(), fail], 0.2, circuit, 100);
    let req = request(false);
    let p = plan(
        &req,
        &catalog(),
        &[provider()],
        &state,
        Tier::Comprehensive,
        &RoutingWeights::default(),
        500,
    )
    .unwrap();
    assert!(p.tiers[0].is_empty(), "open breaker still routed");
    // After the cool-down a probe is allowed again.
    let p = plan(
        &req,
        &catalog(),
        &[provider()],
        &state,
        Tier::Comprehensive,
        &RoutingWeights::default(),
        1_200,
    )
    .unwrap();
    assert_eq!(p.tiers[0].len(), 1);
}

#[test]
fn a_stream_that_fails_before_its_first_byte_falls_back_invisibly() {
    let mut f = Fake::new();
    f.script(
        "best",
        vec![status(500, None), Reply::Refused, Reply::Refused],
    );
    f.script(
        "cheap",
        vec![Reply::Http(200, Vec::new(), sse(GOOD, true), 5)],
    );
    let mut client = Client::default();
    let g = run(&mut f, &request(true), Some(&mut client));
    assert_eq!(g.outcome, Outcome::Success);
    assert_eq!(client.starts, 1);
    let head = client.head.unwrap();
    assert!(head.contains(&("x-dol-model".to_owned(), "cheap".to_owned())));
    assert!(client.body.ends_with("data: [DONE]\n\n"));
    assert!(client.body.contains("\"dol\""));
    assert!(client.body.contains("\"usage\""));
    assert_eq!(g.content, GOOD);
}

#[test]
fn a_stream_cut_after_its_first_byte_ends_with_an_error_event() {
    let mut f = Fake::new();
    let mut cut = sse(GOOD, false);
    cut.truncate(3);
    f.script("best", vec![Reply::Http(200, Vec::new(), cut, 5)]);
    let mut client = Client::default();
    let g = run(&mut f, &request(true), Some(&mut client));
    assert_eq!(g.outcome, Outcome::StreamAborted);
    assert!(client.body.contains("\"error\""), "{}", client.body);
    assert!(!client.body.contains("[DONE]"));
    assert_eq!(
        f.sent,
        ["best"],
        "no second provider after bytes reached the client"
    );
    // What was generated before the cut was billed: it is charged, from the
    // text since the provider sent no usage.
    assert_charged_what_was_generated(&g);
}

#[test]
fn a_turned_down_answer_is_charged_even_when_the_returned_one_has_no_price() {
    let mut f = Fake::new();
    f.script(
        "best",
        vec![ok_json("I'm sorry, but I can't help with that.", "stop")],
    );
    f.script("cheap", vec![status(400, None)]);
    f.script("tiny", vec![ok_json(GOOD, "stop")]);
    let g = run(&mut f, &request(false), None);
    assert_eq!(g.info.model, "tiny");
    assert!(g.info.cost_unknown, "tiny has no price");
    // best's answer (60 tokens at $10/1M) was billed all the same.
    assert_eq!(g.billed_micros, 600);
    assert_eq!(crate::gateway::pipeline::settlement(&g), (120, 600));
}

#[test]
fn a_stream_that_sent_no_text_but_usage_is_charged_and_falls_back() {
    // A reasoning model that spent the whole output limit thinking: no text,
    // then its usage. The client sees the next candidate's answer; the key
    // pays both.
    let mut f = Fake::new();
    f.script("best", vec![Reply::Http(200, Vec::new(), sse("", true), 5)]);
    f.script(
        "cheap",
        vec![Reply::Http(200, Vec::new(), sse(GOOD, true), 5)],
    );
    let mut client = Client::default();
    let g = run(&mut f, &request(true), Some(&mut client));
    assert_eq!(f.sent, ["best", "cheap"]);
    assert_eq!(g.outcome, Outcome::Success);
    // 50 tokens at $10/1M, then 50 at $1/1M.
    assert_eq!(g.billed_tokens, 100);
    assert_eq!(g.billed_micros, 500 + 50);
    assert_eq!(crate::gateway::pipeline::settlement(&g), (100, 550));
}

#[test]
fn a_client_that_stops_reading_a_stream_is_charged_what_was_generated() {
    let mut f = Fake::new();
    f.script(
        "best",
        vec![Reply::Http(200, Vec::new(), sse(GOOD, true), 5)],
    );
    let mut client = Client {
        gone_after: Some(3),
        ..Client::default()
    };
    let g = run(&mut f, &request(true), Some(&mut client));
    assert_eq!(g.outcome, Outcome::ClientGone);
    assert_charged_what_was_generated(&g);
    let (tokens, cost) = crate::gateway::pipeline::settlement(&g);
    assert!(tokens > 0 && cost > 0, "settled {tokens} tokens, {cost} µ$");
}

/// `g` (of `best`, $10/1M) carries the usage of what was generated (the
/// provider's or estimated) and is charged it.
fn assert_charged_what_was_generated(g: &Generation) {
    assert!(
        g.usage.completion_tokens > 0 && g.usage.prompt_tokens > 0,
        "{:?}",
        g.usage
    );
    assert_eq!(g.billed_tokens, g.usage.total_tokens);
    assert_eq!(g.info.cost_micros, Some(g.usage.total_tokens * 10));
}

#[test]
fn a_stalled_stream_after_its_first_byte_is_aborted_not_truncated() {
    let mut f = Fake::new();
    let mut partial = sse(GOOD, false);
    partial.truncate(2);
    f.script("best", vec![Reply::Stall(200, partial)]);
    let mut client = Client::default();
    let g = run(&mut f, &request(true), Some(&mut client));
    assert_eq!(g.outcome, Outcome::StreamAborted);
    assert!(client.body.contains("upstream-failed"));
}

#[test]
fn an_offline_stream_is_complete_sse() {
    let mut f = Fake::new();
    let mut client = Client::default();
    let g = run(&mut f, &request(true), Some(&mut client));
    assert_eq!(g.outcome, Outcome::Offline);
    assert_eq!(client.starts, 1);
    assert!(client.body.starts_with("data: "));
    assert!(client.body.ends_with("data: [DONE]\n\n"));
    let text: String = client
        .body
        .split("\n\n")
        .filter_map(|f| f.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(text, g.content);
}

fn tools_catalog() -> Vec<CatalogEntry> {
    let mut e = entry("best", Tier::Comprehensive, Some(10_000_000));
    e.capabilities.insert("tools".to_owned());
    vec![e]
}

fn run_on(
    fake: &mut Fake,
    req: &ChatRequest,
    catalog: &[CatalogEntry],
    client: Option<&mut Client>,
) -> Generation {
    let plan = plan(
        req,
        catalog,
        &[provider()],
        &RoutingState::default(),
        Tier::Comprehensive,
        &RoutingWeights::default(),
        0,
    )
    .unwrap();
    block_on(generate(
        fake,
        client,
        req,
        &plan,
        config(),
        QualityConfig::default(),
        "chatcmpl-t",
    ))
}

fn tools_request(stream: bool) -> ChatRequest {
    ChatRequest::from_value(&json!({
        "model": "auto",
        "stream": stream,
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
        "tools": [{"type": "function", "function": {"name": "get_weather",
                   "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    }))
    .unwrap()
}

fn tool_call_json() -> Reply {
    let body = json!({
        "id": "x", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
        ]}, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30}
    });
    Reply::Http(200, Vec::new(), vec![body.to_string().into_bytes()], 10)
}

#[test]
fn a_tool_call_answer_is_accepted_at_once_and_returned_in_openai_shape() {
    let mut f = Fake::new();
    f.script("best", vec![tool_call_json()]);
    let g = run_on(&mut f, &tools_request(false), &tools_catalog(), None);
    assert_eq!(g.outcome, Outcome::Success);
    assert_eq!(
        g.info.attempts, 1,
        "a tool call is not retried for lacking prose"
    );
    assert_eq!(g.finish_reason, FinishReason::ToolCalls);
    let c = serde_json::to_value(g.completion("chatcmpl-t", 1)).unwrap();
    let m = &c["choices"][0]["message"];
    assert_eq!(m["content"], serde_json::Value::Null);
    assert_eq!(m["tool_calls"][0]["id"], "call_1");
    assert_eq!(m["tool_calls"][0]["type"], "function");
    assert_eq!(
        m["tool_calls"][0]["function"]["arguments"],
        "{\"city\":\"Paris\"}"
    );
    assert_eq!(c["choices"][0]["finish_reason"], "tool_calls");
}

#[test]
fn streamed_tool_calls_reach_the_client_as_tool_call_deltas() {
    let chunk = |delta: serde_json::Value, finish: serde_json::Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
        .into_bytes()
    };
    let body = vec![
        chunk(
            json!({"role": "assistant", "tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
            json!(null),
        ),
        chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":\"Paris\"}"}}]}),
            json!(null),
        ),
        chunk(json!({}), json!("tool_calls")),
        b"data: [DONE]\n\n".to_vec(),
    ];
    let mut f = Fake::new();
    f.script("best", vec![Reply::Http(200, Vec::new(), body, 10)]);
    let mut client = Client::default();
    let g = run_on(
        &mut f,
        &tools_request(true),
        &tools_catalog(),
        Some(&mut client),
    );
    assert_eq!(g.outcome, Outcome::Success);
    assert_eq!(
        g.tool_calls,
        vec![ToolCall {
            id: "call_1".into(),
            name: "get_weather".into(),
            arguments: "{\"city\":\"Paris\"}".into()
        }]
    );
    assert!(
        client.body.contains(r#""tool_calls":[{"function":{"arguments":"","name":"get_weather"},"id":"call_1","index":0,"type":"function"}]"#),
        "{}",
        client.body
    );
    assert!(
        client
            .body
            .contains(r#"{"function":{"arguments":"{\"city\":\"Paris\"}"},"index":0}"#),
        "{}",
        client.body
    );
    assert_eq!(g.quality.as_ref().map(|q| q.total), Some(10.0));
}

#[test]
fn an_empty_object_for_an_object_schema_is_not_retried() {
    let mut f = Fake::new();
    f.script("best", vec![ok_json("{}", "stop")]);
    let req = ChatRequest::from_value(&json!({
        "model": "auto",
        "messages": [{"role": "user", "content": "Extract any entities from: hello"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "e", "schema": {"type": "object"}}}
    }))
    .unwrap();
    let g = run_on(&mut f, &req, &catalog(), None);
    assert_eq!(g.outcome, Outcome::Success);
    assert_eq!(g.info.attempts, 1, "{:?}", g.quality);
    assert_eq!(g.content, "{}");
    assert_eq!(g.info.quality, Some(10.0));
}

#[test]
fn only_failures_breakers_and_new_entries_are_urgent_to_save() {
    let circuit = CircuitConfig {
        failure_threshold: 2,
        cooldown_ms: 1_000,
    };
    let seen = |success: bool| Observation {
        key: "openai/best".to_owned(),
        latency_ms: 10,
        success,
        quality: Some(8.0),
    };
    let mut state = RoutingState::default();
    assert!(state.apply(&[seen(true)], 0.2, circuit, 100), "a new entry");
    assert!(
        !state.apply(&[seen(true)], 0.2, circuit, 200),
        "only averages"
    );
    assert!(state.apply(&[seen(false)], 0.2, circuit, 300), "a failure");
    assert!(
        state.apply(&[seen(true)], 0.2, circuit, 400),
        "the breaker closes again"
    );
    assert!(!state.apply(&[seen(true)], 0.2, circuit, 500));
    let retuned = CircuitConfig {
        failure_threshold: 3,
        ..circuit
    };
    assert!(state.apply(&[seen(true)], 0.2, retuned, 600), "new tuning");
    // Several observations: urgent when any of them is.
    let other = Observation {
        key: "openai/cheap".to_owned(),
        ..seen(true)
    };
    assert!(state.apply(&[seen(true), other.clone()], 0.2, retuned, 700));
    assert!(!state.apply(&[seen(true), other], 0.2, retuned, 800));
    assert_eq!(state.entries["openai/best"].stats.samples, 8);
}

#[test]
fn averages_alone_are_saved_at_most_every_interval() {
    let state = RoutingState {
        saved_ms: 10_000,
        ..RoutingState::default()
    };
    assert!(!state.due_for_saving(false, 10_000));
    assert!(!state.due_for_saving(false, 10_000 + ROUTING_SAVE_INTERVAL_MS - 1));
    assert!(state.due_for_saving(false, 10_000 + ROUTING_SAVE_INTERVAL_MS));
    assert!(state.due_for_saving(true, 10_000), "urgent: at once");
    // Saved by a replica whose clock runs ahead: this one still saves.
    assert!(state.due_for_saving(false, 10_000 - ROUTING_SAVE_INTERVAL_MS));
    // Never saved: due.
    assert!(RoutingState::default().due_for_saving(false, 1));
}
