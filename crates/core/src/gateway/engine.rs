//! The generation driver: runs one chat request through routing, the tier
//! pipeline, provider attempts, the quality gate and the offline last resort.
//!
//! All I/O comes in through two traits: [`Upstream`] (sending provider
//! requests, reading their bodies, sleeping, the clock and randomness) and
//! [`Downstream`] (the client of a streamed answer). The `generate` component
//! implements them over wasi-http; tests implement them with scripted fakes,
//! so every fallback path is exercised without a network.
//!
//! Streaming follows the rule of the issue: until the first answer byte
//! reaches the client every failure falls back invisibly (the response
//! headers are not even sent yet); after that a failure ends the stream with
//! an OpenAI error event, never a silent truncation reported as success.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::circuit::{CircuitBreaker, CircuitConfig};
use super::cost::{Cost, request_cost};
use super::offline;
use super::openai::{
    ChatCompletion, ChatCompletionChunk, ChatRequest, Delta, DolInfo, FinishReason, Role, SSE_DONE,
    ToolCall, Usage,
};
use super::providers::{
    self, HttpRequestSpec, ProviderAnswer, ProviderConfig, ProviderFailure, StreamDecoder,
    StreamEvent,
};
use super::quality::{self, QualityConfig, QualityReport, score_for_request};
use super::retry::{FailureKind, jitter_from_u64};
use super::routing::{
    Candidate, CatalogEntry, ObservedStats, RouteDecision, RouteRequest, RoutingWeights, route,
};
use super::tiers::{Action, AttemptOutcome, Pipeline, PipelineConfig, Position, Tier};

/// Largest provider response body read for a non-streamed answer or an error.
pub const MAX_UPSTREAM_BODY: usize = 8 * 1024 * 1024;
/// Characters per chunk when DOL itself streams (offline tier, cache replay).
pub const REPLAY_CHUNK_CHARS: usize = 48;

/// A transport failure: no HTTP response (or body) could be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// Connecting or sending failed, or the connection broke.
    #[error("connection failed: {0}")]
    Connect(String),
    /// The time given for the call ran out.
    #[error("timed out")]
    Timeout,
    /// The host's outbound allow-list refused the destination.
    #[error("outbound request denied: {0}")]
    Denied(String),
}

/// The host side of provider calls.
#[allow(
    async_fn_in_trait,
    reason = "single-threaded wasm executor; no Send bound wanted"
)]
pub trait Upstream {
    /// An open response body.
    type Body;
    /// Sends `spec`, waiting at most `timeout_ms` for the response head.
    async fn send(
        &mut self,
        spec: &HttpRequestSpec,
        timeout_ms: u64,
    ) -> Result<(u16, Vec<(String, String)>, Self::Body), TransportError>;
    /// The next piece of `body`, waiting at most `timeout_ms`; `None` at its end.
    async fn read(
        &mut self,
        body: &mut Self::Body,
        timeout_ms: u64,
    ) -> Result<Option<Vec<u8>>, TransportError>;
    /// Waits `ms` milliseconds.
    async fn sleep(&mut self, ms: u64);
    /// Milliseconds since the request started (monotonic).
    fn elapsed_ms(&self) -> u64;
    /// Wall-clock Unix seconds (for `Retry-After` dates and `created`).
    fn now_unix_s(&self) -> u64;
    /// A random number (jitter).
    fn random_u64(&mut self) -> u64;
}

/// The client of a streamed answer.
#[allow(
    async_fn_in_trait,
    reason = "single-threaded wasm executor; no Send bound wanted"
)]
pub trait Downstream {
    /// Sends the response head (status 200, SSE, with `headers`); called once, before any body.
    async fn start(&mut self, headers: Vec<(String, String)>) -> bool;
    /// Sends body bytes; false when the client is gone.
    async fn send(&mut self, bytes: Vec<u8>) -> bool;
}

/// A routed destination: a catalog entry and the provider that serves it.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The model's catalog entry.
    pub entry: CatalogEntry,
    /// The provider's connection settings.
    pub provider: ProviderConfig,
}

impl Target {
    /// `provider/model`.
    pub fn key(&self) -> String {
        self.entry.key()
    }
}

/// Observed stats and breaker of every catalog entry, kept between requests.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RoutingState {
    /// Per `provider/model`.
    pub entries: BTreeMap<String, EntryState>,
    /// Per provider: the time (Unix ms) of the last health probe folded in
    /// by [`super::probes::apply_probes`], so each probe acts once.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub probes_applied: BTreeMap<String, i64>,
    /// When it was last stored (Unix ms; 0: never), for
    /// [`RoutingState::due_for_saving`].
    #[serde(default, skip_serializing_if = "is_zero")]
    pub saved_ms: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// How long a routing state whose only change is newer averages (latency,
/// success rate, quality of answered requests) may go unsaved, ms. Every
/// request read-modify-writes the one state, so under concurrency most of
/// those updates were already lost to the last writer; saving them at most
/// this often keeps the averages following the traffic (a sample of it
/// under load, every request when there are fewer than 20 a second) and
/// spares the key-value store a write per request. What routing must see
/// at once — a failure, a breaker or its tuning changing, a model seen for
/// the first time, a probe folded in — is always saved.
pub const ROUTING_SAVE_INTERVAL_MS: u64 = 50;

/// Observed behaviour of one catalog entry.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct EntryState {
    /// Latency, success and quality averages.
    pub stats: ObservedStats,
    /// Its circuit breaker.
    pub breaker: CircuitBreaker,
}

/// One attempt's effect on routing state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// `provider/model`.
    pub key: String,
    /// Attempt latency.
    pub latency_ms: u64,
    /// Whether the provider answered.
    pub success: bool,
    /// The answer's score, when scored.
    pub quality: Option<f64>,
}

impl RoutingState {
    /// Folds observations in at `now_ms` with EWMA factor `alpha`: stats updated,
    /// breakers (tuned by `circuit`) closed by successes and opened by failures.
    /// Returns whether routing must see the change at once (see
    /// [`ROUTING_SAVE_INTERVAL_MS`]): a failure, a breaker whose state or
    /// tuning changed, or an entry seen for the first time.
    pub fn apply(
        &mut self,
        observations: &[Observation],
        alpha: f64,
        circuit: CircuitConfig,
        now_ms: u64,
    ) -> bool {
        let mut urgent = false;
        for o in observations {
            let before = self.entries.get(&o.key).map(|e| e.breaker);
            let e = self.entries.entry(o.key.clone()).or_default();
            e.breaker.config = circuit;
            e.stats.observe(alpha, o.latency_ms, o.success, o.quality);
            if o.success {
                e.breaker.record_success();
            } else {
                e.breaker.record_failure(now_ms);
            }
            urgent |= !o.success || before != Some(e.breaker);
        }
        urgent
    }

    /// Whether to store the state now, after a request that changed it:
    /// always when the change is `urgent` or it was never saved, otherwise
    /// when it was last saved [`ROUTING_SAVE_INTERVAL_MS`] or more from
    /// `now_ms` (either way: a replica whose clock is behind the one that
    /// saved still saves).
    pub fn due_for_saving(&self, urgent: bool, now_ms: u64) -> bool {
        urgent || self.saved_ms == 0 || now_ms.abs_diff(self.saved_ms) >= ROUTING_SAVE_INTERVAL_MS
    }
}

/// The candidates of each tier, best first, and the entry tier.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Candidates per tier, indexed by [`Tier::index`].
    pub tiers: [Vec<Target>; 3],
    /// Where the pipeline starts.
    pub entry: Tier,
    /// Routing decisions per tier (for diagnostics).
    pub decisions: Vec<(Tier, RouteDecision)>,
}

impl Plan {
    /// The tiers that have candidates, cheapest first (basic, enhanced,
    /// comprehensive): what the auto entry chooses among.
    pub fn tiers_cheapest_first(&self) -> Vec<Tier> {
        Tier::ALL
            .into_iter()
            .rev()
            .filter(|t| !self.tiers[t.index()].is_empty())
            .collect()
    }

    /// Starts the pipeline at `tier` instead: the tiers above it are
    /// dropped, so neither the fallback nor the reservation sees them.
    pub fn enter_at(&mut self, tier: Tier) {
        for above in Tier::ALL.into_iter().filter(|t| *t < tier) {
            self.tiers[above.index()].clear();
        }
        self.decisions.retain(|(t, _)| *t >= tier);
        self.entry = tier;
    }
}

/// Why a request cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The requested model is neither `auto` nor in the catalog.
    #[error("The model `{0}` does not exist or you do not have access to it.")]
    UnknownModel(String),
}

/// Whether `model` asks DOL to choose (`auto`, empty, or DOL's own alias).
pub fn is_auto_model(model: &str) -> bool {
    matches!(model, "" | "auto" | "dol" | "dol-auto")
}

/// Plans a request: the entry tier (a pinned catalog model starts in its own
/// tier, first in line; otherwise `entry`), and per tier the routed
/// candidates whose provider is configured.
pub fn plan(
    request: &ChatRequest,
    catalog: &[CatalogEntry],
    providers: &[ProviderConfig],
    state: &RoutingState,
    entry: Tier,
    weights: &RoutingWeights,
    now_ms: u64,
) -> Result<Plan, PlanError> {
    let pinned = if is_auto_model(&request.model) || request.model == offline::MODEL {
        None
    } else {
        Some(
            catalog
                .iter()
                .find(|e| {
                    (e.model == request.model || e.key() == request.model)
                        && super::catalog::is_chat(e)
                })
                .ok_or_else(|| PlanError::UnknownModel(request.model.clone()))?,
        )
    };
    let entry = if request.model == offline::MODEL {
        Tier::Basic
    } else {
        pinned.map_or(entry, |p| p.tier)
    };
    let configured: Vec<&CatalogEntry> = catalog
        .iter()
        // Embedding and image models cannot chat: they serve their own routes only.
        .filter(|e| super::catalog::is_chat(e))
        .filter(|e| providers.iter().any(|p| p.name == e.provider))
        .collect();
    let mut tiers: [Vec<Target>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    let mut decisions = Vec::new();
    for tier in Tier::ALL {
        if tier < entry {
            continue;
        }
        let candidates: Vec<Candidate<'_>> = configured
            .iter()
            .map(|e| {
                let s = state.entries.get(&e.key());
                Candidate {
                    entry: e,
                    stats: s.map(|s| &s.stats),
                    breaker: s.map(|s| &s.breaker),
                }
            })
            .collect();
        let req = RouteRequest::from_chat(request, tier);
        let decision = route(&candidates, &req, weights, now_ms);
        let mut ranked: Vec<Target> = decision
            .ranked
            .iter()
            .filter_map(|r| configured.get(r.index))
            .filter_map(|e| {
                providers
                    .iter()
                    .find(|p| p.name == e.provider)
                    .map(|p| Target {
                        entry: (*e).clone(),
                        provider: p.clone(),
                    })
            })
            .collect();
        // A pinned model goes first in its tier when routing kept it.
        if let Some(p) = pinned.filter(|p| p.tier == tier)
            && let Some(i) = ranked.iter().position(|t| t.entry.key() == p.key())
        {
            let t = ranked.remove(i);
            ranked.insert(0, t);
        }
        tiers[tier.index()] = ranked;
        decisions.push((tier, decision));
    }
    Ok(Plan {
        tiers,
        entry,
        decisions,
    })
}

/// Driver tuning.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EngineConfig {
    /// Tiers, retries, deadline and quality threshold.
    pub pipeline: PipelineConfig,
    /// Longest single provider attempt.
    pub attempt_timeout_ms: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            pipeline: PipelineConfig::default(),
            attempt_timeout_ms: 60_000,
        }
    }
}

/// One provider attempt, for telemetry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// Tier.
    pub tier: Tier,
    /// `provider/model`.
    pub target: String,
    /// Attempt number on this target.
    pub attempt: u32,
    /// Milliseconds the attempt took.
    pub latency_ms: u64,
    /// `ok`, `low_quality`, `rate_limited`, `server`, `timeout`, `connect`, … .
    pub outcome: String,
    /// Short, key-free detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The answer's quality score, when scored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<f64>,
}

/// How a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A provider answered at or above the threshold (or unscored, streaming).
    Success,
    /// The best below-threshold answer was returned.
    LowQuality,
    /// No provider answered: the offline basic tier served.
    Offline,
    /// A stream failed after its first byte; the client got an error event.
    StreamAborted,
    /// The client went away during the stream.
    ClientGone,
}

impl Outcome {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::LowQuality => "low_quality",
            Self::Offline => "offline",
            Self::StreamAborted => "stream_aborted",
            Self::ClientGone => "client_gone",
        }
    }
}

/// The result of one generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// What DOL decided (tier, provider, model, attempts, quality, cost).
    pub info: DolInfo,
    /// The answer text (for a stream: what was sent).
    pub content: String,
    /// Why the answer ended.
    pub finish_reason: FinishReason,
    /// Token usage (provider's, or estimated when it sent none).
    pub usage: Usage,
    /// The quality report of the returned answer.
    pub quality: Option<QualityReport>,
    /// Every provider attempt.
    pub attempts: Vec<AttemptRecord>,
    /// How routing state should change.
    pub observations: Vec<Observation>,
    /// Tiers descended below the entry tier.
    pub fallbacks: u32,
    /// Milliseconds to the first streamed answer byte.
    pub ttft_ms: Option<u64>,
    /// How it ended.
    pub outcome: Outcome,
    /// Provider's system fingerprint, if any.
    pub system_fingerprint: Option<String>,
    /// The functions the model called (empty for a text answer).
    pub tool_calls: Vec<ToolCall>,
    /// Tokens of every answer a provider produced for this request (the
    /// returned one and those the quality gate turned down): what the
    /// tokens-per-minute limit is charged.
    pub billed_tokens: u64,
    /// The known cost of those answers, micro-dollars: what the key's budget
    /// is charged (an answer of a model without a price adds nothing, and
    /// is flagged by `info.cost_unknown` when it is the returned one).
    pub billed_micros: u64,
}

impl Generation {
    /// The non-streaming completion body, with the `dol` field.
    pub fn completion(&self, id: &str, created: u64) -> ChatCompletion {
        let mut c = ChatCompletion::text(
            id,
            created,
            &self.info.model,
            &self.content,
            self.finish_reason,
            self.usage,
        );
        c.system_fingerprint.clone_from(&self.system_fingerprint);
        c.dol = Some(self.info.clone());
        c.with_tool_calls(&self.tool_calls)
    }
}

/// An answer kept while the pipeline looks for a better one.
#[derive(Debug, Clone)]
struct Answer {
    tier: Tier,
    content: String,
    finish_reason: FinishReason,
    usage: Usage,
    quality: Option<QualityReport>,
    model: String,
    provider: String,
    fingerprint: Option<String>,
    ttft_ms: Option<u64>,
    /// Streamed by the provider straight to the client (scored, never gated).
    streamed: bool,
    tool_calls: Vec<ToolCall>,
}

/// How one attempt ended, from the driver's side.
enum Attempt {
    Answered(Box<Answer>),
    Failed(FailureKind, String, String),
    Fatal(String, String),
    Timeout,
    /// Streamed bytes reached the client, then the provider failed.
    Broken(Box<Answer>, String),
    ClientGone(Box<Answer>),
}

fn failure_outcome(f: &ProviderFailure) -> String {
    f.class.as_str().to_owned()
}

/// The driver state of one request.
struct Run<'a> {
    request: &'a ChatRequest,
    plan: &'a Plan,
    config: EngineConfig,
    quality: QualityConfig,
    id: String,
    created: u64,
    attempts: Vec<AttemptRecord>,
    observations: Vec<Observation>,
    below: BTreeMap<(usize, usize, u32), Answer>,
    /// Known cost and tokens of every answer a provider produced so far,
    /// returned or not: the provider billed each of them.
    paid: (u64, u64),
}

/// Runs a request to completion. For a streaming request `downstream` must be
/// `Some`: the answer is written to it as OpenAI SSE (head, chunks, the final
/// usage/`dol` chunk, `[DONE]`), or an error event after a late failure.
pub async fn generate<U: Upstream, D: Downstream>(
    upstream: &mut U,
    downstream: Option<&mut D>,
    request: &ChatRequest,
    plan: &Plan,
    config: EngineConfig,
    quality: QualityConfig,
    id: &str,
) -> Generation {
    let mut downstream = downstream;
    let mut run = Run {
        request,
        plan,
        config,
        quality,
        id: id.to_owned(),
        created: upstream.now_unix_s(),
        attempts: Vec::new(),
        observations: Vec::new(),
        below: BTreeMap::new(),
        paid: (0, 0),
    };
    let generation = run.drive(upstream, downstream.as_deref_mut()).await;
    // A provider stream that ended well still needs its closing frames.
    if request.stream
        && matches!(generation.outcome, Outcome::Success | Outcome::LowQuality)
        && let Some(d) = downstream
    {
        for frame in closing_frames(&generation, id, run.created, request.include_usage()) {
            if !d.send(frame).await {
                break;
            }
        }
    }
    generation
}

impl Run<'_> {
    async fn drive<U: Upstream, D: Downstream>(
        &mut self,
        upstream: &mut U,
        mut downstream: Option<&mut D>,
    ) -> Generation {
        let counts = [
            self.plan.tiers[0].len(),
            self.plan.tiers[1].len(),
            self.plan.tiers[2].len(),
        ];
        let (mut pipeline, mut action) = Pipeline::start(
            self.config.pipeline,
            counts,
            self.plan.entry,
            upstream.elapsed_ms(),
        );
        let mut last: Option<Answer> = None;
        loop {
            match action {
                Action::Start { at } | Action::NextCandidate { at } | Action::NextTier { at } => {
                    let outcome = self.attempt(upstream, downstream.as_deref_mut(), at).await;
                    let (reported, keep) = self.classify(at, outcome);
                    if let Some(done) = keep {
                        match done {
                            Finished::Answer(a) => last = Some(*a),
                            Finished::Broken(a) => {
                                return self.abort(downstream, a).await;
                            }
                            Finished::Gone(a) => {
                                return self.finish(
                                    *a,
                                    pipeline.attempts() + 1,
                                    Outcome::ClientGone,
                                );
                            }
                        }
                    }
                    let jitter = jitter_from_u64(upstream.random_u64());
                    action = pipeline.on_outcome(reported, upstream.elapsed_ms(), jitter);
                }
                Action::Retry { at, delay_ms } => {
                    upstream.sleep(delay_ms).await;
                    action = Action::Start { at };
                }
                Action::Return { .. } => {
                    let Some(answer) = last.take() else {
                        return self
                            .offline(upstream, downstream, pipeline.attempts())
                            .await;
                    };
                    return self.finish(answer, pipeline.attempts(), Outcome::Success);
                }
                Action::ReturnBest { at, .. } => {
                    let Some(answer) =
                        self.below
                            .remove(&(at.tier.index(), at.candidate, at.attempt))
                    else {
                        return self
                            .offline(upstream, downstream, pipeline.attempts())
                            .await;
                    };
                    return self.finish(answer, pipeline.attempts(), Outcome::LowQuality);
                }
                Action::GiveUp => {
                    return self
                        .offline(upstream, downstream, pipeline.attempts())
                        .await;
                }
                Action::AbortStream => {
                    // Only reached through `Finished::Broken`, handled above.
                    return self
                        .offline(upstream, downstream, pipeline.attempts())
                        .await;
                }
            }
        }
    }

    /// Maps an attempt to the pipeline's outcome, keeping answers as needed.
    fn classify(&mut self, at: Position, outcome: Attempt) -> (AttemptOutcome, Option<Finished>) {
        if let Attempt::Answered(a) | Attempt::Broken(a, _) | Attempt::ClientGone(a) = &outcome {
            let cost = self.cost(a).micros().unwrap_or(0);
            self.paid = (
                self.paid.0.saturating_add(cost),
                self.paid.1.saturating_add(a.usage.total_tokens),
            );
        }
        match outcome {
            Attempt::Answered(a) => {
                // A streamed answer already reached the client: it is recorded,
                // not gated. Nor is one cut at the output limit DOL set itself
                // (the request set none): every tier would be cut at the same
                // limit, so asking lower only pays for more cut answers.
                let cut_at_dols_limit = a.finish_reason == FinishReason::Length
                    && self.request.output_limit().is_none();
                let q = a
                    .quality
                    .as_ref()
                    .map(|r| r.total)
                    .filter(|_| !a.streamed && !cut_at_dols_limit);
                if let Some(q) = q
                    && q < self.config.pipeline.quality_threshold
                {
                    self.below
                        .insert((at.tier.index(), at.candidate, at.attempt), (*a).clone());
                }
                (
                    AttemptOutcome::Success { quality: q },
                    Some(Finished::Answer(a)),
                )
            }
            Attempt::Failed(failure, _, _) => (AttemptOutcome::Failed { failure }, None),
            Attempt::Fatal(_, _) => (AttemptOutcome::Fatal, None),
            Attempt::Timeout => (AttemptOutcome::Timeout, None),
            Attempt::Broken(a, _) => (AttemptOutcome::StreamBroken, Some(Finished::Broken(a))),
            Attempt::ClientGone(a) => (AttemptOutcome::StreamBroken, Some(Finished::Gone(a))),
        }
    }

    fn target(&self, at: Position) -> Option<&Target> {
        self.plan.tiers[at.tier.index()].get(at.candidate)
    }

    fn record(&mut self, at: Position, key: String, latency_ms: u64, tally: Tally) {
        self.observations.push(Observation {
            key: key.clone(),
            latency_ms,
            success: tally.success,
            quality: tally.quality,
        });
        self.attempts.push(AttemptRecord {
            tier: at.tier,
            target: key,
            attempt: at.attempt,
            latency_ms,
            outcome: tally.outcome,
            detail: tally.detail,
            quality: tally.quality,
        });
    }

    /// The time one attempt may take: its own limit, within the deadline.
    fn attempt_budget(&self, elapsed_ms: u64) -> u64 {
        let remaining = self.config.pipeline.retry.remaining_ms(elapsed_ms);
        self.config.attempt_timeout_ms.min(remaining).max(1)
    }

    async fn attempt<U: Upstream, D: Downstream>(
        &mut self,
        upstream: &mut U,
        downstream: Option<&mut D>,
        at: Position,
    ) -> Attempt {
        let Some(target) = self.target(at).cloned() else {
            return Attempt::Fatal("no_target".to_owned(), "no candidate".to_owned());
        };
        let start = upstream.elapsed_ms();
        let budget = self.attempt_budget(start);
        let outcome = match downstream {
            Some(d) if self.request.stream => {
                self.stream_attempt(upstream, d, &target, at, start, budget)
                    .await
            }
            _ => self.plain_attempt(upstream, &target, at, budget).await,
        };
        let latency = upstream.elapsed_ms().saturating_sub(start);
        let tally = match &outcome {
            Attempt::Answered(a) => {
                let q = a.quality.as_ref().map(|r| r.total);
                let passed =
                    a.streamed || q.is_none_or(|q| q >= self.config.pipeline.quality_threshold);
                Tally::new(if passed { "ok" } else { "low_quality" }, None, q, true)
            }
            Attempt::Failed(_, outcome, detail) | Attempt::Fatal(outcome, detail) => {
                Tally::new(outcome, Some(detail.clone()), None, false)
            }
            Attempt::Timeout => Tally::new("timeout", None, None, false),
            Attempt::Broken(_, detail) => {
                Tally::new("stream_broken", Some(detail.clone()), None, false)
            }
            Attempt::ClientGone(_) => Tally::new("client_gone", None, None, true),
        };
        self.record(at, target.key(), latency, tally);
        outcome
    }

    /// Reads a whole body within `deadline` (elapsed ms), bounded in size.
    async fn read_all<U: Upstream>(
        upstream: &mut U,
        body: &mut U::Body,
        deadline: u64,
    ) -> Result<Vec<u8>, TransportError> {
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_sub(upstream.elapsed_ms());
            if left == 0 {
                return Err(TransportError::Timeout);
            }
            match upstream.read(body, left).await? {
                Some(piece) => {
                    if out.len() + piece.len() > MAX_UPSTREAM_BODY {
                        return Err(TransportError::Connect(
                            "response body too large".to_owned(),
                        ));
                    }
                    out.extend_from_slice(&piece);
                }
                None => return Ok(out),
            }
        }
    }

    fn transport_failure(e: TransportError) -> Attempt {
        match e {
            TransportError::Timeout => Attempt::Timeout,
            TransportError::Connect(m) => {
                Attempt::Failed(FailureKind::Connect, "connect".to_owned(), m)
            }
            TransportError::Denied(m) => Attempt::Fatal("denied".to_owned(), m),
        }
    }

    fn failed(target: &Target, mut f: ProviderFailure) -> Attempt {
        // A provider may echo the key back in an error; it must never reach logs or telemetry.
        if let Some(key) = &target.provider.api_key {
            f.redact_secret(key);
        }
        let outcome = failure_outcome(&f);
        match f.failure {
            Some(kind) => Attempt::Failed(kind, outcome, f.message),
            None => Attempt::Fatal(outcome, f.message),
        }
    }

    async fn plain_attempt<U: Upstream>(
        &mut self,
        upstream: &mut U,
        target: &Target,
        at: Position,
        budget: u64,
    ) -> Attempt {
        let spec =
            providers::chat_request(&target.provider, self.request, &target.entry.model, false);
        let deadline = upstream.elapsed_ms().saturating_add(budget);
        let (status, headers, mut body) = match upstream.send(&spec, budget).await {
            Ok(r) => r,
            Err(e) => return Self::transport_failure(e),
        };
        let bytes = match Self::read_all(upstream, &mut body, deadline).await {
            Ok(b) => b,
            Err(e) => return Self::transport_failure(e),
        };
        let now = upstream.now_unix_s();
        match providers::parse_chat_response(target.provider.kind, status, &headers, &bytes, now) {
            Ok(answer) => Attempt::Answered(Box::new(self.scored(target, at, answer, None))),
            Err(f) => Self::failed(target, f),
        }
    }

    fn scored(
        &self,
        target: &Target,
        at: Position,
        answer: ProviderAnswer,
        ttft_ms: Option<u64>,
    ) -> Answer {
        let usage = answer
            .usage
            .unwrap_or_else(|| self.estimated_usage(&answer.content));
        let report = self.score(&answer.content, &answer.tool_calls, answer.finish_reason);
        Answer {
            tier: at.tier,
            tool_calls: answer.tool_calls,
            content: answer.content,
            finish_reason: answer.finish_reason,
            usage,
            quality: Some(report),
            model: target.entry.model.clone(),
            provider: target.entry.provider.clone(),
            fingerprint: answer.system_fingerprint,
            ttft_ms,
            streamed: false,
        }
    }

    /// The quality report of an answer: function calls are judged as calls,
    /// text (and structured text) by the gate.
    fn score(&self, content: &str, calls: &[ToolCall], finish: FinishReason) -> QualityReport {
        if calls.is_empty() {
            score_for_request(self.request, content, Some(finish), &self.quality)
        } else {
            quality::score_tool_calls(calls, Some(finish), &self.quality)
        }
    }

    fn estimated_usage(&self, content: &str) -> Usage {
        let prompt = self
            .request
            .messages
            .iter()
            .map(|m| super::text::approx_tokens(&m.text_content()) + 3)
            .sum();
        Usage::new(prompt, super::text::approx_tokens(content))
    }

    fn head(&self, tier: Tier, provider: &str, model: &str) -> Vec<(String, String)> {
        vec![
            ("x-dol-tier".to_owned(), tier.as_str().to_owned()),
            ("x-dol-provider".to_owned(), provider.to_owned()),
            ("x-dol-model".to_owned(), model.to_owned()),
            ("x-dol-cache".to_owned(), "miss".to_owned()),
            ("x-dol-request-id".to_owned(), self.id.clone()),
        ]
    }

    /// Sends the response head and the role chunk; false when the client left.
    async fn open_stream<D: Downstream>(&self, downstream: &mut D, answer: &Answer) -> bool {
        if !downstream
            .start(self.head(answer.tier, &answer.provider, &answer.model))
            .await
        {
            return false;
        }
        let role = Delta {
            role: Some(Role::Assistant),
            content: Some(String::new()),
            ..Delta::default()
        };
        downstream.send(self.chunk(&answer.model, role, None)).await
    }

    fn chunk(&self, model: &str, delta: Delta, finish: Option<FinishReason>) -> Vec<u8> {
        ChatCompletionChunk::delta(&self.id, self.created, model, delta, finish)
            .to_sse()
            .into_bytes()
    }

    #[allow(clippy::too_many_lines, reason = "one linear streaming state machine")]
    async fn stream_attempt<U: Upstream, D: Downstream>(
        &mut self,
        upstream: &mut U,
        downstream: &mut D,
        target: &Target,
        at: Position,
        start: u64,
        budget: u64,
    ) -> Attempt {
        let spec =
            providers::chat_request(&target.provider, self.request, &target.entry.model, true);
        let deadline = start.saturating_add(budget);
        let (status, headers, mut body) = match upstream.send(&spec, budget).await {
            Ok(r) => r,
            Err(e) => return Self::transport_failure(e),
        };
        if status != 200 {
            let bytes = Self::read_all(upstream, &mut body, deadline)
                .await
                .unwrap_or_default();
            let now = upstream.now_unix_s();
            return Self::failed(
                target,
                providers::classify_error(target.provider.kind, status, &headers, &bytes, now),
            );
        }
        let model = target.entry.model.clone();
        let mut decoder = StreamDecoder::new(target.provider.kind);
        let mut answer = Answer {
            tier: at.tier,
            content: String::new(),
            finish_reason: FinishReason::Stop,
            usage: Usage::new(0, 0),
            quality: None,
            model: model.clone(),
            provider: target.entry.provider.clone(),
            fingerprint: None,
            ttft_ms: None,
            streamed: true,
            tool_calls: Vec::new(),
        };
        let mut usage: Option<Usage> = None;
        let mut finished = false;
        let mut started = false;
        loop {
            let events = if finished {
                Vec::new()
            } else {
                let left = deadline.saturating_sub(upstream.elapsed_ms());
                match upstream.read(&mut body, left.max(1)).await {
                    Ok(Some(bytes)) => decoder.feed(&bytes),
                    Ok(None) => {
                        finished = true;
                        decoder.finish()
                    }
                    Err(e) => {
                        if started {
                            answer.usage =
                                usage.unwrap_or_else(|| self.estimated_usage(&answer.content));
                            return Attempt::Broken(Box::new(answer), e.to_string());
                        }
                        return Self::transport_failure(e);
                    }
                }
            };
            for event in events {
                match event {
                    StreamEvent::Delta(text) => {
                        if text.is_empty() {
                            continue;
                        }
                        if !started {
                            started = true;
                            answer.ttft_ms = Some(upstream.elapsed_ms());
                            if !self.open_stream(downstream, &answer).await {
                                return self.client_gone(answer, usage);
                            }
                        }
                        answer.content.push_str(&text);
                        let piece = Delta {
                            content: Some(text),
                            ..Delta::default()
                        };
                        if !downstream.send(self.chunk(&model, piece, None)).await {
                            return self.client_gone(answer, usage);
                        }
                    }
                    StreamEvent::ToolCall {
                        index,
                        id,
                        name,
                        arguments,
                    } => {
                        if !started {
                            started = true;
                            answer.ttft_ms = Some(upstream.elapsed_ms());
                            if !self.open_stream(downstream, &answer).await {
                                return self.client_gone(answer, usage);
                            }
                        }
                        let piece =
                            tool_call_delta(&mut answer.tool_calls, index, id, name, arguments);
                        if !downstream.send(self.chunk(&model, piece, None)).await {
                            return self.client_gone(answer, usage);
                        }
                    }
                    StreamEvent::Finish(reason) => answer.finish_reason = reason,
                    StreamEvent::Usage(u) => usage = Some(u),
                    StreamEvent::Error(f) => {
                        if started {
                            answer.usage =
                                usage.unwrap_or_else(|| self.estimated_usage(&answer.content));
                            return Attempt::Broken(Box::new(answer), f.message);
                        }
                        return Self::failed(target, f);
                    }
                    StreamEvent::Done => finished = true,
                }
            }
            if finished {
                break;
            }
        }
        if !started {
            // Nothing reached the client: an empty answer falls back like any
            // failure. A provider that reported usage (a reasoning model that
            // spent the output limit thinking) billed it all the same.
            if let Some(u) = usage.filter(|u| u.total_tokens > 0) {
                answer.usage = u;
                let cost = self.cost(&answer).micros().unwrap_or(0);
                self.paid = (
                    self.paid.0.saturating_add(cost),
                    self.paid.1.saturating_add(u.total_tokens),
                );
            }
            return Attempt::Fatal("empty".to_owned(), "provider streamed no text".to_owned());
        }
        answer.usage = usage.unwrap_or_else(|| self.estimated_usage(&answer.content));
        // Streamed answers are scored after completion and recorded, not gated.
        let report = self.score(&answer.content, &answer.tool_calls, answer.finish_reason);
        answer.quality = Some(report);
        Attempt::Answered(Box::new(answer))
    }

    /// A stream the client stopped reading: the provider produced (and
    /// bills) what was generated so far, so the answer carries that usage —
    /// the provider's if it sent one, else estimated from the text.
    fn client_gone(&self, mut answer: Answer, usage: Option<Usage>) -> Attempt {
        answer.usage = usage.unwrap_or_else(|| self.estimated_usage(&answer.content));
        Attempt::ClientGone(Box::new(answer))
    }

    /// The cost of `answer` at its catalog price.
    fn cost(&self, answer: &Answer) -> Cost {
        let price = self
            .plan
            .tiers
            .iter()
            .flatten()
            .find(|t| t.entry.provider == answer.provider && t.entry.model == answer.model)
            .map(|t| (t.entry.input_price, t.entry.output_price));
        match price {
            Some((i, o)) => request_cost(
                answer.usage.prompt_tokens,
                answer.usage.completion_tokens,
                i,
                o,
            ),
            // The offline tier costs nothing; anything else without a catalog price is unknown.
            None if answer.provider == offline::PROVIDER => Cost::Known(0),
            None => Cost::Unknown,
        }
    }

    fn info(&self, answer: &Answer, attempts: u32) -> DolInfo {
        let cost = self.cost(answer);
        DolInfo {
            tier: answer.tier,
            provider: answer.provider.clone(),
            model: answer.model.clone(),
            attempts,
            quality: answer.quality.as_ref().map(|q| q.total),
            cost_micros: cost.micros(),
            cost_unknown: cost.is_unknown(),
            cached: false,
        }
    }

    fn finish(&mut self, answer: Answer, attempts: u32, outcome: Outcome) -> Generation {
        let mut info = self.info(&answer, attempts);
        // The request costs every answer the providers produced for it: those
        // the quality gate turned down were billed too. `paid` already holds
        // the returned answer unless DOL answered itself (offline).
        let own = (info.cost_micros.unwrap_or(0), answer.usage.total_tokens);
        let others = if outcome == Outcome::Offline {
            self.paid
        } else {
            (
                self.paid.0.saturating_sub(own.0),
                self.paid.1.saturating_sub(own.1),
            )
        };
        info.cost_micros = info.cost_micros.map(|c| c.saturating_add(others.0));
        // Score-less streamed answers were scored at the end; the quality lands in the
        // observation of the attempt that produced them.
        let fallbacks = (answer.tier.index().saturating_sub(self.plan.entry.index())) as u32;
        Generation {
            info,
            content: answer.content,
            finish_reason: answer.finish_reason,
            usage: answer.usage,
            quality: answer.quality,
            attempts: std::mem::take(&mut self.attempts),
            observations: std::mem::take(&mut self.observations),
            fallbacks,
            ttft_ms: answer.ttft_ms,
            outcome,
            system_fingerprint: answer.fingerprint,
            tool_calls: answer.tool_calls,
            billed_tokens: own.1.saturating_add(others.1),
            billed_micros: own.0.saturating_add(others.0),
        }
    }

    /// The stream failed after its first byte: end it with an error event.
    async fn abort<D: Downstream>(
        &mut self,
        downstream: Option<&mut D>,
        answer: Box<Answer>,
    ) -> Generation {
        if let Some(d) = downstream {
            // The cause (a transport error, the provider's own message) stays
            // in the attempt's record: the client's error names no internals.
            let error = crate::error::ApiError::new(
                crate::error::Code::UpstreamFailed,
                "The provider stream failed after the answer started.",
            );
            let _ = d.send(error.to_openai().to_sse().into_bytes()).await;
        }
        let attempts = self.attempts.len() as u32;
        self.finish(*answer, attempts, Outcome::StreamAborted)
    }

    /// The offline basic tier: DOL answers itself.
    async fn offline<U: Upstream, D: Downstream>(
        &mut self,
        upstream: &mut U,
        downstream: Option<&mut D>,
        attempts: u32,
    ) -> Generation {
        let json = self.request.wants_json();
        let a = offline::answer(&self.request.messages, json);
        let answer = Answer {
            tier: Tier::Basic,
            content: a.content,
            finish_reason: a.finish_reason,
            usage: a.usage,
            // A canned answer is not a model's: it is labelled, not scored, so it never
            // inflates quality figures (telemetry counts it under the `offline` outcome).
            quality: None,
            model: offline::MODEL.to_owned(),
            provider: offline::PROVIDER.to_owned(),
            fingerprint: None,
            ttft_ms: Some(upstream.elapsed_ms()),
            streamed: false,
            tool_calls: Vec::new(),
        };
        let mut generation = self.finish(answer, attempts, Outcome::Offline);
        // The offline tier is the bottom of the pipeline, whatever the entry tier was.
        generation.fallbacks = (Tier::Basic.index() - self.plan.entry.index()) as u32;
        if let Some(d) = downstream
            && self.request.stream
        {
            let mut head = self.head(Tier::Basic, offline::PROVIDER, offline::MODEL);
            head.retain(|(k, _)| k != "x-dol-cache");
            head.push(("x-dol-cache".to_owned(), "miss".to_owned()));
            if !d.start(head).await {
                generation.outcome = Outcome::ClientGone;
                return generation;
            }
            let frames = replay_frames(
                &generation,
                &self.id,
                self.created,
                self.request.include_usage(),
            );
            for frame in frames {
                if !d.send(frame).await {
                    generation.outcome = Outcome::ClientGone;
                    return generation;
                }
            }
        }
        generation
    }
}

/// How one attempt counts in telemetry and routing state.
struct Tally {
    outcome: String,
    detail: Option<String>,
    quality: Option<f64>,
    success: bool,
}

impl Tally {
    fn new(outcome: &str, detail: Option<String>, quality: Option<f64>, success: bool) -> Self {
        Self {
            outcome: outcome.to_owned(),
            detail,
            quality,
            success,
        }
    }
}

enum Finished {
    Answer(Box<Answer>),
    Broken(Box<Answer>),
    Gone(Box<Answer>),
}

/// Records one streamed piece of a function call in `calls` and returns the
/// OpenAI delta announcing it (`id`, `type` and `name` with the first piece).
fn tool_call_delta(
    calls: &mut Vec<ToolCall>,
    index: u32,
    id: Option<String>,
    name: Option<String>,
    arguments: String,
) -> Delta {
    let i = index as usize;
    while calls.len() <= i {
        calls.push(ToolCall {
            id: String::new(),
            name: String::new(),
            arguments: String::new(),
        });
    }
    let call = &mut calls[i];
    let mut piece = serde_json::json!({"index": index, "function": {"arguments": arguments}});
    if let Some(id) = id {
        piece["id"] = serde_json::json!(id);
        piece["type"] = serde_json::json!("function");
        call.id = id;
    }
    if let Some(name) = name {
        piece["function"]["name"] = serde_json::json!(name);
        call.name = name;
    }
    call.arguments.push_str(&arguments);
    Delta {
        tool_calls: Some(serde_json::Value::Array(vec![piece])),
        ..Delta::default()
    }
}

/// The SSE frames of a finished answer, as DOL streams it itself (offline
/// tier, cache replay): role chunk, content chunks, finish chunk, the final
/// chunk with `dol` (and `usage` when asked for), `[DONE]`.
pub fn replay_frames(g: &Generation, id: &str, created: u64, include_usage: bool) -> Vec<Vec<u8>> {
    let model = g.info.model.as_str();
    let mut frames = vec![
        ChatCompletionChunk::delta(
            id,
            created,
            model,
            Delta {
                role: Some(Role::Assistant),
                content: Some(String::new()),
                ..Delta::default()
            },
            None,
        )
        .to_sse()
        .into_bytes(),
    ];
    for piece in offline::split(&g.content, REPLAY_CHUNK_CHARS) {
        frames.push(
            ChatCompletionChunk::delta(
                id,
                created,
                model,
                Delta {
                    content: Some(piece),
                    ..Delta::default()
                },
                None,
            )
            .to_sse()
            .into_bytes(),
        );
    }
    frames.extend(closing_frames(g, id, created, include_usage));
    frames
}

/// The frames that end a successful stream: the finish chunk, the final
/// chunk carrying `dol` (and `usage` when asked for), and `[DONE]`.
pub fn closing_frames(g: &Generation, id: &str, created: u64, include_usage: bool) -> Vec<Vec<u8>> {
    let model = g.info.model.as_str();
    let finish =
        ChatCompletionChunk::delta(id, created, model, Delta::default(), Some(g.finish_reason));
    let mut last = ChatCompletionChunk::usage(id, created, model, g.usage);
    if !include_usage {
        last.usage = None;
    }
    last.dol = Some(g.info.clone());
    vec![
        finish.to_sse().into_bytes(),
        last.to_sse().into_bytes(),
        SSE_DONE.as_bytes().to_vec(),
    ]
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]
#[path = "engine_tests.rs"]
pub(super) mod tests;
