//! Mock LLM provider servers: real HTTP servers speaking the OpenAI-compatible
//! Chat Completions, Anthropic Messages and Gemini `generateContent` wire
//! formats, for tests, benchmarks and demos.
//!
//! [`MockLlm::start`] binds `127.0.0.1:0` and serves one [`Flavor`] until the
//! handle is dropped; the `mock-llm` binary serves one flavor on a fixed
//! address until interrupted.
//!
//! # Provider endpoints
//!
//! | flavor | endpoints |
//! |---|---|
//! | [`Flavor::OpenAi`] | `POST /v1/chat/completions`, `POST /v1/embeddings`, `POST /v1/images/generations`, `GET /v1/models`, `GET /v1/models/{id}` |
//! | [`Flavor::Anthropic`] | `POST /v1/messages`, `GET /v1/models`, `GET /v1/models/{id}` |
//! | [`Flavor::Gemini`] | `POST /v1beta/models/{model}:generateContent`, `POST /v1beta/models/{model}:streamGenerateContent[?alt=sse]`, `POST /v1beta/models/{model}:batchEmbedContents` and `:embedContent`, `POST /v1beta/models/{model}:predict` (Imagen), `GET /v1beta/models`, `GET /v1beta/models/{model}` (also under `/v1/`) |
//!
//! A request declaring tools gets a call of its first (or its chosen)
//! function with arguments filled from the function's schema, until its last
//! message is a tool result ([`crate::mock_tools`]).
//!
//! Anthropic requests always need the `x-api-key` and `anthropic-version`
//! headers, as the real API does. Keys are only compared when
//! [`Behavior::require_key`] is set: `Authorization: Bearer` (OpenAI),
//! `x-api-key` (Anthropic), `x-goog-api-key` or `?key=` (Gemini).
//!
//! # Control API
//!
//! Behaviour can be steered over HTTP, so a running `mock-llm` binary can be
//! driven by scripts. Control requests are neither recorded nor subject to
//! keys or injected failures.
//!
//! | request | effect |
//! |---|---|
//! | `GET /__mock/behavior` | the current [`Behavior`] (its `fail_times` counts down) |
//! | `PUT /__mock/behavior` | replace it (missing fields take their defaults) |
//! | `PATCH /__mock/behavior` | change only the fields given |
//! | `GET`/`PUT`/`DELETE /__mock/behavior/{model}` | a behaviour for one model only (wins over the current behaviour, not over the script) |
//! | `GET`/`POST`/`DELETE /__mock/script` | list, append to (one object or an array) or clear the one-shot queue |
//! | `GET`/`DELETE /__mock/requests` | the recorded [`RecordedRequest`]s, or clear them |
//! | `GET`/`PUT /__mock/models` | the model list; `PUT` takes ids or [`MockModel`] objects |
//! | `GET /__mock/stats` | `{flavor, request_count, script_len}` |
//! | `POST /__mock/reset` | default behaviour and models, empty script and log |
//!
//! # How a generation request is answered
//!
//! 1. It is recorded (see [`RecordedRequest`]).
//! 2. Keys and headers are checked (401/400), then the body (400), then with
//!    [`Behavior::strict_models`] the model (404).
//! 3. The behaviour is the next script item if one is queued, else the
//!    requested model's own behaviour if one is set, else the current
//!    behaviour. Failure injection is decided ([`Behavior::fail_status`]).
//! 4. [`Behavior::delay_ms`] passes, then the error or the answer is sent.
//!
//! Model listings are recorded and checked for keys but never delayed,
//! failed or scripted.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Sleep;

/// Most requests kept by the request log; older ones are dropped first
/// ([`MockLlm::request_count`] still counts them).
pub const MAX_RECORDED: usize = 10_000;

/// The seed of the failure dice when [`Behavior::seed`] is not set.
pub const DEFAULT_SEED: u64 = 0x5EED_1DEA_F00D_CAFE;

/// How many pieces a streamed answer is split into by default.
pub const DEFAULT_STREAM_CHUNKS: usize = 8;

// ---------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------

/// Which provider's wire format a mock speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Flavor {
    /// OpenAI-compatible Chat Completions (`/v1/chat/completions`).
    #[serde(rename = "openai")]
    OpenAi,
    /// Anthropic Messages (`/v1/messages`).
    #[serde(rename = "anthropic")]
    Anthropic,
    /// Google Gemini (`/v1beta/models/{model}:generateContent`).
    #[serde(rename = "gemini")]
    Gemini,
}

impl Flavor {
    /// The lower-case name: `openai`, `anthropic` or `gemini`.
    pub fn name(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::Anthropic => "anthropic",
            Self::Gemini => "gemini",
        }
    }
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Flavor {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "openai" | "open-ai" | "open_ai" => Ok(Self::OpenAi),
            "anthropic" | "claude" => Ok(Self::Anthropic),
            "gemini" | "google" => Ok(Self::Gemini),
            other => Err(format!(
                "unknown flavor `{other}` (expected openai, anthropic or gemini)"
            )),
        }
    }
}

/// Why the answer ends, in the mock's own terms; each flavor maps it to its
/// wire value (`stop`/`length`, `end_turn`/`max_tokens`, `STOP`/`MAX_TOKENS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Finish {
    /// A natural end.
    #[default]
    Stop,
    /// Cut by the token limit.
    Length,
}

/// How the mock answers. Every field is optional in JSON (`{}` is the
/// default behaviour) and unknown fields are rejected, so typos show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Behavior {
    /// The answer text. Default: a deterministic, helpful-looking answer of
    /// 60–120 words that uses the key terms of the last user message, or a
    /// JSON object when the request asks for JSON (OpenAI `response_format`
    /// `json_object`/`json_schema`, Gemini `responseMimeType:
    /// application/json`, Anthropic: the word JSON in the system prompt or an
    /// `output_format` schema). A JSON schema, when given, is followed.
    pub answer: Option<String>,
    /// Milliseconds to wait before the response headers (errors included).
    pub delay_ms: u64,
    /// Milliseconds to wait between stream chunks.
    pub chunk_delay_ms: u64,
    /// How many pieces a streamed answer is split into (at word boundaries;
    /// fewer when the text has fewer words). Default 8.
    pub stream_chunks: usize,
    /// The finish reason when the answer is not cut by the request's token
    /// limit (`"stop"` or `"length"`). A request whose `max_tokens` (or
    /// `max_completion_tokens`, `maxOutputTokens`) is below the answer's
    /// token count gets a truncated answer and `length`.
    pub finish: Finish,
    /// Status of injected failures; the body is the flavor's error JSON.
    /// Set alone, every generation request fails; see `fail_times` and
    /// `fail_rate`. Anthropic's overloaded error is status 529.
    pub fail_status: Option<u16>,
    /// Fail only the next N generation requests (counts down to 0).
    /// Ignored in script items.
    pub fail_times: Option<u32>,
    /// Fail each generation request with this probability (0..1), drawn
    /// from a deterministic generator seeded by `seed` and reset whenever
    /// the behaviour is set. Uses `fail_status`, or 500 when unset.
    pub fail_rate: f64,
    /// Seed for `fail_rate` (default [`DEFAULT_SEED`]).
    pub seed: Option<u64>,
    /// Send `Retry-After: <seconds>` with injected failures.
    pub retry_after_s: Option<u64>,
    /// The message of injected failures (default: one fitting the status).
    pub fail_message: Option<String>,
    /// Close the connection after this many streamed text chunks, without
    /// the terminal event (a cut stream). On a non-streamed request the
    /// headers and half of the JSON body are sent before the cut.
    pub cut_stream_after: Option<usize>,
    /// Reject requests that do not carry this key with 401. Only read from
    /// the current behaviour, never from script items.
    pub require_key: Option<String>,
    /// Report this many prompt tokens (default: words × 1.3, at least 1).
    pub prompt_tokens: Option<u32>,
    /// Report this many completion tokens (default: words × 1.3, at least 1).
    pub completion_tokens: Option<u32>,
    /// Answer 404 for models not in the model list. Only read from the
    /// current behaviour.
    pub strict_models: bool,
}

impl Default for Behavior {
    fn default() -> Self {
        Self {
            answer: None,
            delay_ms: 0,
            chunk_delay_ms: 0,
            stream_chunks: DEFAULT_STREAM_CHUNKS,
            finish: Finish::Stop,
            fail_status: None,
            fail_times: None,
            fail_rate: 0.0,
            seed: None,
            retry_after_s: None,
            fail_message: None,
            cut_stream_after: None,
            require_key: None,
            prompt_tokens: None,
            completion_tokens: None,
            strict_models: false,
        }
    }
}

impl Behavior {
    /// The default behaviour answering `text`.
    pub fn with_answer(text: impl Into<String>) -> Self {
        Self {
            answer: Some(text.into()),
            ..Self::default()
        }
    }

    /// Failing with `status`: every request as the current behaviour, one
    /// request as a script item.
    pub fn failing(status: u16) -> Self {
        Self {
            fail_status: Some(status),
            ..Self::default()
        }
    }

    /// Failing the next `times` requests with `status`.
    pub fn failing_times(status: u16, times: u32) -> Self {
        Self {
            fail_status: Some(status),
            fail_times: Some(times),
            ..Self::default()
        }
    }
}

/// A model the mock lists. In JSON a bare string is an id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "ModelSpec")]
pub struct MockModel {
    /// The model id (`gpt-4o-mini`, `claude-…`, `gemini-…`; Gemini lists it
    /// as `models/<id>`).
    pub id: String,
    /// Human name (Anthropic `display_name`, Gemini `displayName`); default: the id.
    pub display_name: Option<String>,
    /// Creation time, Unix seconds (OpenAI `created`, Anthropic `created_at`).
    pub created: Option<i64>,
    /// OpenAI `owned_by` (default `mock-llm`).
    pub owned_by: Option<String>,
    /// Gemini `inputTokenLimit`.
    pub input_token_limit: Option<u32>,
    /// Gemini `outputTokenLimit`.
    pub output_token_limit: Option<u32>,
}

impl MockModel {
    /// A model with only an id.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            display_name: None,
            created: None,
            owned_by: None,
            input_token_limit: None,
            output_token_limit: None,
        }
    }

    /// Sets the display name.
    pub fn display_name(mut self, name: impl Into<String>) -> Self {
        self.display_name = Some(name.into());
        self
    }
}

impl From<&str> for MockModel {
    fn from(id: &str) -> Self {
        Self::new(id)
    }
}

impl From<String> for MockModel {
    fn from(id: String) -> Self {
        Self::new(id)
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ModelSpec {
    Id(String),
    Full(ModelFields),
}

#[derive(Deserialize)]
struct ModelFields {
    id: String,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    created: Option<i64>,
    #[serde(default)]
    owned_by: Option<String>,
    #[serde(default)]
    input_token_limit: Option<u32>,
    #[serde(default)]
    output_token_limit: Option<u32>,
}

impl From<ModelSpec> for MockModel {
    fn from(spec: ModelSpec) -> Self {
        match spec {
            ModelSpec::Id(id) => Self::new(id),
            ModelSpec::Full(f) => Self {
                id: f.id,
                display_name: f.display_name,
                created: f.created,
                owned_by: f.owned_by,
                input_token_limit: f.input_token_limit,
                output_token_limit: f.output_token_limit,
            },
        }
    }
}

/// A provider request the mock received (control requests are not recorded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// Method, e.g. `POST`.
    pub method: String,
    /// Path and query, e.g. `/v1/chat/completions`.
    pub path: String,
    /// Request headers, lower-case names, repeated values joined by `, `;
    /// all but `host`, `content-length`, `connection`, `keep-alive`,
    /// `transfer-encoding` and `accept-encoding`.
    pub headers: BTreeMap<String, String>,
    /// The body as text (lossy UTF-8).
    pub body: String,
}

impl RecordedRequest {
    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.body).ok()
    }

    /// A header's value (name matched case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// A running mock provider; it stops (and closes its connections) when dropped.
pub struct MockLlm {
    flavor: Flavor,
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for MockLlm {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl fmt::Debug for MockLlm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockLlm")
            .field("flavor", &self.flavor)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl MockLlm {
    /// Starts a mock of `flavor` on `127.0.0.1` with a free port.
    pub async fn start(flavor: Flavor) -> anyhow::Result<MockLlm> {
        Self::start_on(flavor, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts a mock of `flavor` on `addr` (port 0 picks a free port).
    /// Must be called inside a Tokio runtime.
    pub async fn start_on(flavor: Flavor, addr: SocketAddr) -> anyhow::Result<MockLlm> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the {flavor} mock to {addr}"))?;
        let addr = listener.local_addr().context("mock address")?;
        let shared = Arc::new(Shared::new(flavor));
        let task = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(MockLlm {
            flavor,
            addr,
            shared,
            task,
        })
    }

    /// The flavor it speaks.
    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL a client SDK is configured with: `http://ADDR/v1` for
    /// OpenAI, `http://ADDR` for Anthropic and Gemini.
    pub fn base_url(&self) -> String {
        match self.flavor {
            Flavor::OpenAi => format!("http://{}/v1", self.addr),
            Flavor::Anthropic | Flavor::Gemini => format!("http://{}", self.addr),
        }
    }

    /// `http://ADDR` followed by `path`, e.g. `url("/__mock/requests")`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Replaces the current behaviour (and reseeds the failure dice).
    pub fn set_behavior(&self, behavior: Behavior) {
        self.shared.lock().set_behavior(behavior);
    }

    /// The current behaviour (`fail_times` shows what is left).
    pub fn behavior(&self) -> Behavior {
        self.shared.lock().behavior.clone()
    }

    /// Sets the behaviour for one model (wins over the current behaviour,
    /// not over the script).
    pub fn set_model_behavior(&self, model: &str, behavior: Behavior) {
        self.shared
            .lock()
            .model_behaviors
            .insert(model.to_owned(), behavior);
    }

    /// Removes every per-model behaviour.
    pub fn clear_model_behaviors(&self) {
        self.shared.lock().model_behaviors.clear();
    }

    /// Queues a one-shot behaviour: the next generation request uses it
    /// instead of the current behaviour (unset fields take their defaults).
    pub fn push_script(&self, behavior: Behavior) {
        self.shared.lock().script.push_back(behavior);
    }

    /// The script items not used yet.
    pub fn script_len(&self) -> usize {
        self.shared.lock().script.len()
    }

    /// The recorded requests, oldest first (at most [`MAX_RECORDED`]).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.iter().cloned().collect()
    }

    /// Forgets the recorded requests and resets the request count.
    pub fn clear_requests(&self) {
        let mut state = self.shared.lock();
        state.requests.clear();
        state.request_count = 0;
    }

    /// How many provider requests arrived (control requests excluded).
    pub fn request_count(&self) -> u64 {
        self.shared.lock().request_count
    }

    /// Replaces the model list.
    pub fn set_models<I>(&self, models: I)
    where
        I: IntoIterator,
        I::Item: Into<MockModel>,
    {
        self.shared.lock().models = models.into_iter().map(Into::into).collect();
    }

    /// The model list.
    pub fn models(&self) -> Vec<MockModel> {
        self.shared.lock().models.clone()
    }

    /// Back to the start: default behaviour and models, empty script and log.
    pub fn reset(&self) {
        self.shared.lock().reset(self.flavor);
    }
}

/// The models a fresh mock of `flavor` lists.
pub fn default_models(flavor: Flavor) -> Vec<MockModel> {
    let model = |id: &str, name: &str, created: i64, input: u32, output: u32| MockModel {
        id: id.to_owned(),
        display_name: Some(name.to_owned()),
        created: Some(created),
        owned_by: None,
        input_token_limit: Some(input),
        output_token_limit: Some(output),
    };
    match flavor {
        Flavor::OpenAi => vec![
            MockModel {
                owned_by: Some("system".to_owned()),
                ..model("gpt-4o-mini", "GPT-4o mini", 1_721_172_741, 128_000, 16_384)
            },
            MockModel {
                owned_by: Some("system".to_owned()),
                ..model("gpt-4o", "GPT-4o", 1_715_367_049, 128_000, 16_384)
            },
            MockModel {
                owned_by: Some("system".to_owned()),
                ..model(
                    "gpt-4.1-mini",
                    "GPT-4.1 mini",
                    1_744_318_173,
                    1_047_576,
                    32_768,
                )
            },
        ],
        Flavor::Anthropic => vec![
            model(
                "claude-sonnet-4-5-20250929",
                "Claude Sonnet 4.5",
                1_759_104_000,
                200_000,
                64_000,
            ),
            model(
                "claude-haiku-4-5-20251001",
                "Claude Haiku 4.5",
                1_760_486_400,
                200_000,
                64_000,
            ),
            model(
                "claude-3-5-haiku-20241022",
                "Claude Haiku 3.5",
                1_729_555_200,
                200_000,
                8_192,
            ),
        ],
        Flavor::Gemini => vec![
            model(
                "gemini-2.5-flash",
                "Gemini 2.5 Flash",
                1_750_204_800,
                1_048_576,
                65_536,
            ),
            model(
                "gemini-2.5-pro",
                "Gemini 2.5 Pro",
                1_750_204_800,
                1_048_576,
                65_536,
            ),
            model(
                "gemini-2.0-flash",
                "Gemini 2.0 Flash",
                1_738_713_600,
                1_048_576,
                8_192,
            ),
        ],
    }
}

// ---------------------------------------------------------------------------
// Shared state
// ---------------------------------------------------------------------------

struct Shared {
    flavor: Flavor,
    ids: AtomicU64,
    state: Mutex<State>,
}

struct State {
    behavior: Behavior,
    /// Behaviours for single models, by model id.
    model_behaviors: BTreeMap<String, Behavior>,
    rng: u64,
    script: VecDeque<Behavior>,
    requests: VecDeque<RecordedRequest>,
    request_count: u64,
    models: Vec<MockModel>,
}

/// The behaviour one generation request gets, and whether it fails.
struct Plan {
    behavior: Behavior,
    fail: Option<u16>,
}

impl Shared {
    fn new(flavor: Flavor) -> Self {
        let behavior = Behavior::default();
        Self {
            flavor,
            ids: AtomicU64::new(1),
            state: Mutex::new(State {
                rng: DEFAULT_SEED,
                behavior,
                model_behaviors: BTreeMap::new(),
                script: VecDeque::new(),
                requests: VecDeque::new(),
                request_count: 0,
                models: default_models(flavor),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking holder cannot leave the state half-updated in a way that
        // matters to a mock; keep serving.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }

    fn record(&self, parts: &http::request::Parts, body: &[u8]) {
        const SKIPPED: [&str; 6] = [
            "host",
            "content-length",
            "connection",
            "keep-alive",
            "transfer-encoding",
            "accept-encoding",
        ];
        let mut headers: BTreeMap<String, String> = BTreeMap::new();
        for (name, value) in &parts.headers {
            if SKIPPED.contains(&name.as_str()) {
                continue;
            }
            let value = String::from_utf8_lossy(value.as_bytes());
            headers
                .entry(name.as_str().to_owned())
                .and_modify(|v| {
                    v.push_str(", ");
                    v.push_str(&value);
                })
                .or_insert_with(|| value.into_owned());
        }
        let recorded = RecordedRequest {
            method: parts.method.as_str().to_owned(),
            path: parts
                .uri
                .path_and_query()
                .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned()),
            headers,
            body: String::from_utf8_lossy(body).into_owned(),
        };
        let mut state = self.lock();
        state.request_count += 1;
        if state.requests.len() >= MAX_RECORDED {
            state.requests.pop_front();
        }
        state.requests.push_back(recorded);
    }

    /// Takes the next script item, the model's behaviour or the current
    /// behaviour, and decides failure.
    fn plan(&self, model: &str) -> Plan {
        let mut guard = self.lock();
        let state = &mut *guard;
        if let Some(item) = state.script.pop_front() {
            let fail = if item.fail_rate > 0.0 {
                roll(&mut state.rng, item.fail_rate).then(|| item.fail_status.unwrap_or(500))
            } else {
                item.fail_status
            };
            return Plan {
                behavior: item,
                fail,
            };
        }
        let behavior = match state.model_behaviors.get_mut(model) {
            Some(b) => b,
            None => &mut state.behavior,
        };
        let status = behavior.fail_status.unwrap_or(500);
        let fail = match behavior.fail_times {
            Some(n) if n > 0 => {
                behavior.fail_times = Some(n - 1);
                Some(status)
            }
            _ if behavior.fail_rate > 0.0 => {
                roll(&mut state.rng, behavior.fail_rate).then_some(status)
            }
            Some(_) => None,
            None => behavior.fail_status,
        };
        Plan {
            behavior: behavior.clone(),
            fail,
        }
    }
}

impl State {
    fn set_behavior(&mut self, behavior: Behavior) {
        self.rng = behavior.seed.unwrap_or(DEFAULT_SEED);
        self.behavior = behavior;
    }

    fn reset(&mut self, flavor: Flavor) {
        self.set_behavior(Behavior::default());
        self.model_behaviors.clear();
        self.script.clear();
        self.requests.clear();
        self.request_count = 0;
        self.models = default_models(flavor);
    }
}

/// splitmix64: small, fast, and the same sequence on every platform.
fn next_u64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// True with probability `rate` (clamped to 0..1).
fn roll(state: &mut u64, rate: f64) -> bool {
    let unit = (next_u64(state) >> 11) as f64 / (1u64 << 53) as f64;
    unit < rate.clamp(0.0, 1.0)
}

// ---------------------------------------------------------------------------
// Server plumbing
// ---------------------------------------------------------------------------

type Response = hyper::Response<MockBody>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    // Connections live in the set, so aborting this task closes them all.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    // Small SSE frames must not wait for Nagle.
                    let _ = stream.set_nodelay(true);
                    let shared = shared.clone();
                    connections.spawn(async move {
                        let service = service_fn(move |request| {
                            let shared = shared.clone();
                            async move { Ok::<_, Infallible>(handle(shared, request).await) }
                        });
                        // A client hanging up mid-request is normal under load.
                        let _closed = hyper::server::conn::http1::Builder::new()
                            .keep_alive(true)
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
                // Out of file descriptors and the like: back off briefly.
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// A response body: either one buffer, or frames sent with a pause between
/// them and optionally an error at the end, which makes hyper drop the
/// connection without the final chunk (a cut stream).
struct MockBody {
    frames: VecDeque<Bytes>,
    delay: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    cut: bool,
    flushed: bool,
}

impl MockBody {
    fn full(bytes: impl Into<Bytes>) -> Self {
        Self {
            frames: VecDeque::from([bytes.into()]),
            delay: Duration::ZERO,
            sleep: None,
            cut: false,
            flushed: false,
        }
    }

    fn frames(frames: Vec<Bytes>, delay: Duration, cut: bool) -> Self {
        Self {
            frames: frames.into(),
            delay,
            sleep: None,
            cut,
            flushed: false,
        }
    }
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(sleep) = this.sleep.as_mut() {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.sleep = None;
        }
        if let Some(frame) = this.frames.pop_front() {
            if !this.delay.is_zero() && (!this.frames.is_empty() || this.cut) {
                this.sleep = Some(Box::pin(tokio::time::sleep(this.delay)));
            }
            return Poll::Ready(Some(Ok(Frame::data(frame))));
        }
        if this.cut {
            if !this.flushed {
                // hyper drops its write buffer with the connection: give it
                // a moment to flush what was sent so far before the cut.
                this.flushed = true;
                let mut pause = Box::pin(tokio::time::sleep(Duration::from_millis(5)));
                if pause.as_mut().poll(cx).is_pending() {
                    this.sleep = Some(pause);
                    return Poll::Pending;
                }
            }
            this.cut = false;
            return Poll::Ready(Some(Err("mock-llm: stream cut on purpose".into())));
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty() && !self.cut
    }

    fn size_hint(&self) -> SizeHint {
        // One known buffer: let hyper send Content-Length. Streams are chunked.
        match (self.frames.len(), self.cut) {
            (0, false) => SizeHint::with_exact(0),
            (1, false) => self
                .frames
                .front()
                .map_or_else(SizeHint::default, |f| SizeHint::with_exact(f.len() as u64)),
            _ => SizeHint::default(),
        }
    }
}

fn response(status: u16, content_type: &'static str, body: MockBody) -> Response {
    let mut response = hyper::Response::new(body);
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn json_response(status: u16, value: &Value) -> Response {
    response(
        status,
        "application/json",
        MockBody::full(value.to_string()),
    )
}

fn set_header(response: &mut Response, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
}

fn sse_response(frames: Vec<Bytes>, delay: Duration, cut: bool) -> Response {
    let mut response = response(
        200,
        "text/event-stream",
        MockBody::frames(frames, delay, cut),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

async fn handle(shared: Arc<Shared>, request: hyper::Request<Incoming>) -> Response {
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            return json_response(
                400,
                &json!({"error": format!("reading the request body: {e}")}),
            );
        }
    };
    let path = parts.uri.path();
    if path == "/__mock" || path.starts_with("/__mock/") {
        return control(&shared, &parts.method, path, &body);
    }
    shared.record(&parts, &body);
    api(&shared, &parts, &body).await
}

// ---------------------------------------------------------------------------
// Control API
// ---------------------------------------------------------------------------

fn control_error(status: u16, message: String) -> Response {
    json_response(status, &json!({"error": message}))
}

fn to_json<T: Serialize>(value: &T) -> Response {
    match serde_json::to_value(value) {
        Ok(v) => json_response(200, &v),
        Err(e) => control_error(500, format!("serialising: {e}")),
    }
}

fn control(shared: &Shared, method: &Method, path: &str, body: &[u8]) -> Response {
    control_inner(shared, method, path, body).unwrap_or_else(|message| control_error(400, message))
}

/// The body as JSON (`{}` when empty).
fn control_body(body: &[u8]) -> Result<Value, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))
}

/// A control request; `Err` is a 400 with that message.
fn control_inner(
    shared: &Shared,
    method: &Method,
    path: &str,
    body: &[u8],
) -> Result<Response, String> {
    let what = path.trim_start_matches("/__mock").trim_matches('/');
    let response = match (method.as_str(), what) {
        ("GET", "behavior") => to_json(&shared.lock().behavior),
        ("PUT", "behavior") => {
            let behavior = serde_json::from_value::<Behavior>(control_body(body)?)
                .map_err(|e| format!("invalid behavior: {e}"))?;
            let mut state = shared.lock();
            state.set_behavior(behavior);
            to_json(&state.behavior)
        }
        ("PATCH", "behavior") => {
            let Value::Object(patch) = control_body(body)? else {
                return Err("a behavior patch is a JSON object".into());
            };
            let mut state = shared.lock();
            let mut current = match serde_json::to_value(&state.behavior) {
                Ok(Value::Object(map)) => map,
                _ => return Ok(control_error(500, "serialising the behavior".into())),
            };
            current.extend(patch);
            let behavior = serde_json::from_value::<Behavior>(Value::Object(current))
                .map_err(|e| format!("invalid behavior: {e}"))?;
            state.set_behavior(behavior);
            to_json(&state.behavior)
        }
        (method, what) if what.starts_with("behavior/") => {
            let model = what.trim_start_matches("behavior/");
            let mut state = shared.lock();
            match method {
                "GET" => match state.model_behaviors.get(model) {
                    Some(b) => to_json(b),
                    None => control_error(404, format!("no behaviour for model {model}")),
                },
                "PUT" => {
                    let behavior = serde_json::from_value::<Behavior>(control_body(body)?)
                        .map_err(|e| format!("invalid behavior: {e}"))?;
                    state.model_behaviors.insert(model.to_owned(), behavior);
                    to_json(&state.model_behaviors.get(model))
                }
                "DELETE" => {
                    let removed = state.model_behaviors.remove(model).is_some();
                    json_response(200, &json!({"removed": removed}))
                }
                _ => control_error(405, "GET, PUT or DELETE".into()),
            }
        }
        ("GET", "script") => to_json(&shared.lock().script),
        ("POST", "script") => {
            let items = match control_body(body)? {
                v @ Value::Array(_) => serde_json::from_value::<Vec<Behavior>>(v),
                other => serde_json::from_value::<Behavior>(other).map(|b| vec![b]),
            }
            .map_err(|e| format!("invalid script item: {e}"))?;
            let mut state = shared.lock();
            let queued = items.len();
            state.script.extend(items);
            json_response(
                200,
                &json!({"queued": queued, "script_len": state.script.len()}),
            )
        }
        ("DELETE", "script") => {
            shared.lock().script.clear();
            json_response(200, &json!({"script_len": 0}))
        }
        ("GET", "requests") => to_json(&shared.lock().requests),
        ("DELETE", "requests") => {
            let mut state = shared.lock();
            state.requests.clear();
            state.request_count = 0;
            json_response(200, &json!({"request_count": 0}))
        }
        ("GET", "models") => to_json(&shared.lock().models),
        ("PUT", "models") => {
            let models = serde_json::from_value::<Vec<MockModel>>(control_body(body)?)
                .map_err(|e| format!("models are a JSON array of ids or objects: {e}"))?;
            let mut state = shared.lock();
            state.models = models;
            to_json(&state.models)
        }
        ("POST", "reset") => {
            shared.lock().reset(shared.flavor);
            json_response(200, &json!({"reset": true}))
        }
        ("GET", "stats" | "") => {
            let state = shared.lock();
            json_response(
                200,
                &json!({
                    "flavor": shared.flavor.name(),
                    "request_count": state.request_count,
                    "script_len": state.script.len(),
                }),
            )
        }
        _ => control_error(404, format!("no control endpoint {method} {path}")),
    };
    Ok(response)
}

// ---------------------------------------------------------------------------
// Provider API: routing, keys, errors
// ---------------------------------------------------------------------------

enum Route {
    /// Embeddings (see `mock_embed`): the Gemini path's model, and whether batched.
    Embed {
        model: Option<String>,
        batch: bool,
    },
    /// Image generation (see `mock_image`): the Gemini path's model.
    Image {
        model: Option<String>,
    },
    Generate {
        model: Option<String>,
        stream: bool,
        sse: bool,
    },
    ListModels,
    GetModel(String),
    NotFound,
}

fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn route(flavor: Flavor, method: &Method, path: &str, query: Option<&str>) -> Route {
    let post = *method == Method::POST;
    let get = *method == Method::GET;
    match flavor {
        Flavor::OpenAi | Flavor::Anthropic => {
            let generate = if flavor == Flavor::OpenAi {
                "/v1/chat/completions"
            } else {
                "/v1/messages"
            };
            if post && flavor == Flavor::OpenAi && path == "/v1/images/generations" {
                return Route::Image { model: None };
            }
            if post && flavor == Flavor::OpenAi && path == "/v1/embeddings" {
                return Route::Embed {
                    model: None,
                    batch: true,
                };
            }
            if post && path == generate {
                return Route::Generate {
                    model: None,
                    stream: false,
                    sse: true,
                };
            }
            if get && (path == "/v1/models" || path == "/v1/models/") {
                return Route::ListModels;
            }
            match path.strip_prefix("/v1/models/") {
                Some(id) if get && !id.is_empty() => Route::GetModel(id.to_owned()),
                _ => Route::NotFound,
            }
        }
        Flavor::Gemini => {
            let Some(rest) = path
                .strip_prefix("/v1beta/")
                .or_else(|| path.strip_prefix("/v1/"))
            else {
                return Route::NotFound;
            };
            if get && (rest == "models" || rest == "models/") {
                return Route::ListModels;
            }
            let Some(rest) = rest.strip_prefix("models/") else {
                return Route::NotFound;
            };
            match rest.rsplit_once(':') {
                Some((model, method @ ("batchEmbedContents" | "embedContent"))) if post => {
                    Route::Embed {
                        model: Some(model.to_owned()),
                        batch: method == "batchEmbedContents",
                    }
                }
                Some((model, "predict")) if post => Route::Image {
                    model: Some(model.to_owned()),
                },
                Some((model, "generateContent")) if post => Route::Generate {
                    model: Some(model.to_owned()),
                    stream: false,
                    sse: false,
                },
                Some((model, "streamGenerateContent")) if post => Route::Generate {
                    model: Some(model.to_owned()),
                    stream: true,
                    sse: query_param(query, "alt") == Some("sse"),
                },
                None if get && !rest.is_empty() => Route::GetModel(rest.to_owned()),
                _ => Route::NotFound,
            }
        }
    }
}

/// An error in the flavor's own format.
struct ApiError {
    status: u16,
    message: String,
    /// OpenAI's `code`; derived from the status when `None`.
    code: Option<&'static str>,
    retry_after_s: Option<u64>,
}

impl ApiError {
    fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            code: None,
            retry_after_s: None,
        }
    }

    fn code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }
}

fn default_error_message(status: u16) -> &'static str {
    match status {
        400 => "Invalid request (mock-llm).",
        401 => "Invalid authentication (mock-llm).",
        403 => "Permission denied (mock-llm).",
        404 => "Not found (mock-llm).",
        408 => "Request timed out (mock-llm).",
        413 => "Request too large (mock-llm).",
        429 => "Rate limit exceeded, please retry later (mock-llm).",
        503 => "The service is temporarily unavailable (mock-llm).",
        529 => "Overloaded (mock-llm).",
        500..=599 => "The server had an error while processing your request (mock-llm).",
        _ => "Request failed (mock-llm).",
    }
}

fn error_body(flavor: Flavor, error: &ApiError, id: u64) -> Value {
    let status = error.status;
    match flavor {
        Flavor::OpenAi => {
            let (kind, code) = match status {
                401 => ("invalid_request_error", Some("invalid_api_key")),
                403 => ("permission_error", None),
                404 => ("invalid_request_error", Some("model_not_found")),
                429 => ("requests", Some("rate_limit_exceeded")),
                500..=599 => ("server_error", None),
                _ => ("invalid_request_error", None),
            };
            json!({"error": {
                "message": error.message,
                "type": kind,
                "param": null,
                "code": error.code.or(code),
            }})
        }
        Flavor::Anthropic => {
            let kind = match status {
                401 => "authentication_error",
                402 => "billing_error",
                403 => "permission_error",
                404 => "not_found_error",
                408 => "timeout_error",
                413 => "request_too_large",
                429 => "rate_limit_error",
                503 | 529 => "overloaded_error",
                500..=599 => "api_error",
                _ => "invalid_request_error",
            };
            json!({
                "type": "error",
                "error": {"type": kind, "message": error.message},
                "request_id": format!("req_mock{id:016x}"),
            })
        }
        Flavor::Gemini => {
            let kind = match status {
                400 => "INVALID_ARGUMENT",
                401 => "UNAUTHENTICATED",
                403 => "PERMISSION_DENIED",
                404 => "NOT_FOUND",
                409 => "ABORTED",
                429 => "RESOURCE_EXHAUSTED",
                499 => "CANCELLED",
                501 => "UNIMPLEMENTED",
                503 => "UNAVAILABLE",
                504 => "DEADLINE_EXCEEDED",
                500..=599 => "INTERNAL",
                _ => "FAILED_PRECONDITION",
            };
            json!({"error": {"code": status, "message": error.message, "status": kind}})
        }
    }
}

fn error_response(shared: &Shared, error: &ApiError) -> Response {
    let id = shared.next_id();
    let mut response = json_response(error.status, &error_body(shared.flavor, error, id));
    if let Some(seconds) = error.retry_after_s {
        set_header(&mut response, "retry-after", &seconds.to_string());
    }
    request_id_header(shared.flavor, &mut response, id);
    response
}

fn request_id_header(flavor: Flavor, response: &mut Response, id: u64) {
    match flavor {
        Flavor::OpenAi => set_header(response, "x-request-id", &format!("req_mock{id:016x}")),
        Flavor::Anthropic => set_header(response, "request-id", &format!("req_mock{id:016x}")),
        Flavor::Gemini => {}
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn check_auth(shared: &Shared, parts: &http::request::Parts) -> Result<(), ApiError> {
    let required = shared.lock().behavior.require_key.clone();
    let headers = &parts.headers;
    match shared.flavor {
        Flavor::OpenAi => {
            let Some(key) = required else { return Ok(()) };
            match header_str(headers, "authorization").and_then(|h| h.strip_prefix("Bearer ")) {
                None => Err(ApiError::new(
                    401,
                    "You didn't provide an API key. You need to provide your API key in an \
                     Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                )
                .code("missing_api_key")),
                Some(given) if given.trim() != key => {
                    Err(ApiError::new(401, "Incorrect API key provided (mock-llm)."))
                }
                Some(_) => Ok(()),
            }
        }
        Flavor::Anthropic => {
            let Some(given) = header_str(headers, "x-api-key") else {
                return Err(ApiError::new(401, "x-api-key header is required"));
            };
            if required.is_some_and(|key| key != given) {
                return Err(ApiError::new(401, "invalid x-api-key"));
            }
            if header_str(headers, "anthropic-version").is_none() {
                return Err(ApiError::new(400, "anthropic-version: header is required"));
            }
            Ok(())
        }
        Flavor::Gemini => {
            let Some(key) = required else { return Ok(()) };
            let given = header_str(headers, "x-goog-api-key")
                .or_else(|| query_param(parts.uri.query(), "key"));
            match given {
                None => Err(ApiError::new(
                    401,
                    "Method doesn't allow unregistered callers (callers without established \
                     identity). Please use API Key or other form of API consumer identity to \
                     call this API.",
                )),
                Some(given) if given != key => Err(ApiError::new(
                    401,
                    "API key not valid. Please pass a valid API key.",
                )),
                Some(_) => Ok(()),
            }
        }
    }
}

async fn api(shared: &Shared, parts: &http::request::Parts, body: &[u8]) -> Response {
    let flavor = shared.flavor;
    let route = route(flavor, &parts.method, parts.uri.path(), parts.uri.query());
    if let Route::NotFound = route {
        let message = format!("Unknown request URL: {} {}", parts.method, parts.uri.path());
        return error_response(shared, &ApiError::new(404, message).code("unknown_url"));
    }
    if let Err(error) = check_auth(shared, parts) {
        return error_response(shared, &error);
    }
    match route {
        Route::ListModels => list_models(shared),
        Route::GetModel(id) => get_model(shared, &id),
        Route::Generate { model, stream, sse } => generate(shared, body, model, stream, sse).await,
        Route::Embed { model, batch } => {
            one_shot(shared, body, model.as_deref(), |v| match &model {
                Some(m) => crate::mock_embed::gemini(v, m, batch),
                None => crate::mock_embed::openai(v),
            })
            .await
        }
        Route::Image { model } => {
            let created = u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0);
            one_shot(shared, body, model.as_deref(), |v| match &model {
                Some(_) => crate::mock_image::gemini(v),
                None => crate::mock_image::openai(v, created),
            })
            .await
        }
        Route::NotFound => error_response(shared, &ApiError::new(404, "Not found")),
    }
}

/// A one-shot JSON endpoint (embeddings, images): the chat mock's failure
/// injection and delay (by model: the path's, else the body's), then
/// `answer` (`Err` is a 400 message).
async fn one_shot(
    shared: &Shared,
    body: &[u8],
    path_model: Option<&str>,
    answer: impl FnOnce(&Value) -> Result<Value, String>,
) -> Response {
    let value: Value = match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return error_response(
                shared,
                &ApiError::new(400, "The body must be a JSON object."),
            );
        }
    };
    let model = path_model
        .map(str::to_owned)
        .unwrap_or_else(|| crate::mock_embed::openai_model(&value));
    let plan = shared.plan(&model);
    if plan.behavior.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(plan.behavior.delay_ms)).await;
    }
    if let Some(status) = plan.fail {
        let message = plan
            .behavior
            .fail_message
            .clone()
            .unwrap_or_else(|| default_error_message(status).to_owned());
        let error = ApiError {
            status,
            message,
            code: None,
            retry_after_s: plan.behavior.retry_after_s,
        };
        return error_response(shared, &error);
    }
    match answer(&value) {
        Ok(v) => {
            let mut response = json_response(200, &v);
            request_id_header(shared.flavor, &mut response, shared.next_id());
            response
        }
        Err(message) => error_response(shared, &ApiError::new(400, message)),
    }
}

// ---------------------------------------------------------------------------
// Models
// ---------------------------------------------------------------------------

fn bare_id(id: &str) -> &str {
    id.strip_prefix("models/").unwrap_or(id)
}

fn rfc3339(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| "2025-01-01T00:00:00Z".to_owned())
}

fn model_json(flavor: Flavor, model: &MockModel) -> Value {
    let created = model.created.unwrap_or(1_735_689_600);
    let name = model
        .display_name
        .clone()
        .unwrap_or_else(|| model.id.clone());
    match flavor {
        Flavor::OpenAi => json!({
            "id": model.id,
            "object": "model",
            "created": created,
            "owned_by": model.owned_by.as_deref().unwrap_or("mock-llm"),
        }),
        Flavor::Anthropic => json!({
            "id": model.id,
            "type": "model",
            "display_name": name,
            "created_at": rfc3339(created),
        }),
        Flavor::Gemini => json!({
            "name": format!("models/{}", bare_id(&model.id)),
            "version": "001",
            "displayName": name,
            "description": format!("{name} (mock-llm)"),
            "inputTokenLimit": model.input_token_limit.unwrap_or(1_048_576),
            "outputTokenLimit": model.output_token_limit.unwrap_or(8_192),
            "supportedGenerationMethods": ["generateContent", "streamGenerateContent", "countTokens"],
        }),
    }
}

fn list_models(shared: &Shared) -> Response {
    let flavor = shared.flavor;
    let models = shared.lock().models.clone();
    let data: Vec<Value> = models.iter().map(|m| model_json(flavor, m)).collect();
    let body = match flavor {
        Flavor::OpenAi => json!({"object": "list", "data": data}),
        Flavor::Anthropic => json!({
            "data": data,
            "has_more": false,
            "first_id": models.first().map(|m| m.id.clone()),
            "last_id": models.last().map(|m| m.id.clone()),
        }),
        Flavor::Gemini => json!({"models": data}),
    };
    let mut response = json_response(200, &body);
    request_id_header(flavor, &mut response, shared.next_id());
    response
}

fn find_model(shared: &Shared, id: &str) -> Option<MockModel> {
    let id = bare_id(id);
    shared
        .lock()
        .models
        .iter()
        .find(|m| bare_id(&m.id) == id)
        .cloned()
}

fn model_not_found(shared: &Shared, id: &str) -> ApiError {
    let message = match shared.flavor {
        Flavor::OpenAi => {
            format!("The model `{id}` does not exist or you do not have access to it.")
        }
        Flavor::Anthropic => format!("model: {id}"),
        Flavor::Gemini => format!(
            "models/{} is not found for API version v1beta, or is not supported for \
             generateContent.",
            bare_id(id)
        ),
    };
    ApiError::new(404, message)
}

fn get_model(shared: &Shared, id: &str) -> Response {
    match find_model(shared, id) {
        Some(model) => json_response(200, &model_json(shared.flavor, &model)),
        None => error_response(shared, &model_not_found(shared, id)),
    }
}

// ---------------------------------------------------------------------------
// Generation: parsing the request
// ---------------------------------------------------------------------------

enum JsonMode {
    Object,
    Schema(Value),
}

struct GenRequest {
    model: String,
    stream: bool,
    /// Gemini streams without `alt=sse` as a JSON array.
    sse: bool,
    include_usage: bool,
    max_tokens: Option<u32>,
    json: Option<JsonMode>,
    last_user: String,
    prompt_words: usize,
}

/// The text of a message content: a string, or the `text` of its parts.
fn text_of(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| match p {
                Value::String(s) => Some(s.as_str()),
                other => other.get("text").and_then(Value::as_str),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn word_count(text: &str) -> usize {
    text.split_whitespace().count()
}

fn as_u32(value: Option<&Value>) -> Option<u32> {
    value
        .and_then(Value::as_u64)
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
}

fn field<'a>(value: &'a Value, names: &[&str]) -> Option<&'a Value> {
    names.iter().find_map(|n| value.get(*n))
}

fn parse_request(
    flavor: Flavor,
    body: &Value,
    path_model: Option<String>,
    path_stream: bool,
    sse: bool,
) -> Result<GenRequest, String> {
    match flavor {
        Flavor::OpenAi => {
            let model = body
                .get("model")
                .and_then(Value::as_str)
                .ok_or("you must provide a model parameter")?;
            let messages = body
                .get("messages")
                .and_then(Value::as_array)
                .ok_or("Missing required parameter: 'messages'.")?;
            if messages.is_empty() {
                return Err("[] is too short - 'messages'".into());
            }
            let mut prompt_words = 0;
            let mut last_user = String::new();
            for message in messages {
                let text = text_of(message.get("content"));
                prompt_words += word_count(&text);
                if message.get("role").and_then(Value::as_str) == Some("user") {
                    last_user = text;
                }
            }
            let json = match body
                .pointer("/response_format/type")
                .and_then(Value::as_str)
            {
                Some("json_object") => Some(JsonMode::Object),
                Some("json_schema") => Some(
                    body.pointer("/response_format/json_schema/schema")
                        .cloned()
                        .map_or(JsonMode::Object, JsonMode::Schema),
                ),
                _ => None,
            };
            Ok(GenRequest {
                model: model.to_owned(),
                stream: body.get("stream").and_then(Value::as_bool) == Some(true),
                sse: true,
                include_usage: body
                    .pointer("/stream_options/include_usage")
                    .and_then(Value::as_bool)
                    == Some(true),
                max_tokens: as_u32(field(body, &["max_completion_tokens", "max_tokens"])),
                json,
                last_user,
                prompt_words,
            })
        }
        Flavor::Anthropic => {
            let model = body
                .get("model")
                .and_then(Value::as_str)
                .ok_or("model: Field required")?;
            let max_tokens = as_u32(body.get("max_tokens")).ok_or("max_tokens: Field required")?;
            let messages = body
                .get("messages")
                .and_then(Value::as_array)
                .ok_or("messages: Field required")?;
            if messages.is_empty() {
                return Err("messages: at least one message is required".into());
            }
            let system = text_of(body.get("system"));
            let mut prompt_words = word_count(&system);
            let mut last_user = String::new();
            for message in messages {
                let text = text_of(message.get("content"));
                prompt_words += word_count(&text);
                if message.get("role").and_then(Value::as_str) == Some("user") {
                    last_user = text;
                }
            }
            let json = match body.pointer("/output_format/schema") {
                Some(schema) => Some(JsonMode::Schema(schema.clone())),
                None if system.to_ascii_lowercase().contains("json") => Some(JsonMode::Object),
                None => None,
            };
            Ok(GenRequest {
                model: model.to_owned(),
                stream: body.get("stream").and_then(Value::as_bool) == Some(true),
                sse: true,
                include_usage: true,
                max_tokens: Some(max_tokens),
                json,
                last_user,
                prompt_words,
            })
        }
        Flavor::Gemini => {
            let contents = body
                .get("contents")
                .and_then(Value::as_array)
                .filter(|c| !c.is_empty())
                .ok_or("* GenerateContentRequest.contents: contents is not specified")?;
            let system = field(body, &["systemInstruction", "system_instruction"])
                .map(|s| text_of(s.get("parts")))
                .unwrap_or_default();
            let mut prompt_words = word_count(&system);
            let mut last_user = String::new();
            for content in contents {
                let text = text_of(content.get("parts"));
                prompt_words += word_count(&text);
                if content
                    .get("role")
                    .and_then(Value::as_str)
                    .unwrap_or("user")
                    == "user"
                {
                    last_user = text;
                }
            }
            let config = field(body, &["generationConfig", "generation_config"]);
            let get = |names: &[&str]| config.and_then(|c| field(c, names));
            let json =
                match get(&["responseMimeType", "response_mime_type"]).and_then(Value::as_str) {
                    Some("application/json") => Some(
                        get(&[
                            "responseJsonSchema",
                            "response_json_schema",
                            "responseSchema",
                            "response_schema",
                        ])
                        .cloned()
                        .map_or(JsonMode::Object, JsonMode::Schema),
                    ),
                    _ => None,
                };
            Ok(GenRequest {
                model: path_model.unwrap_or_default(),
                stream: path_stream,
                sse,
                include_usage: true,
                max_tokens: as_u32(get(&["maxOutputTokens", "max_output_tokens"])),
                json,
                last_user,
                prompt_words,
            })
        }
    }
}

// ---------------------------------------------------------------------------
// Generation: the answer
// ---------------------------------------------------------------------------

struct Answer {
    text: String,
    finish: Finish,
    prompt_tokens: u32,
    completion_tokens: u32,
}

/// Words × 1.3, rounded up, at least 1.
fn estimate_tokens(words: usize) -> u32 {
    let tokens = (words.saturating_mul(13).saturating_add(9)) / 10;
    u32::try_from(tokens).unwrap_or(u32::MAX).max(1)
}

/// The first `n` words of `text`, keeping its spacing.
fn first_words(text: &str, n: usize) -> &str {
    let mut seen = 0;
    let mut in_word = false;
    for (i, ch) in text.char_indices() {
        if ch.is_whitespace() {
            if in_word {
                seen += 1;
                if seen == n {
                    return &text[..i];
                }
            }
            in_word = false;
        } else {
            in_word = true;
        }
    }
    text
}

fn compose(behavior: &Behavior, request: &GenRequest) -> Answer {
    let mut text = match &behavior.answer {
        Some(text) => text.clone(),
        None => default_answer(&request.last_user, request.json.as_ref()),
    };
    let mut finish = behavior.finish;
    let mut completion = behavior
        .completion_tokens
        .unwrap_or_else(|| estimate_tokens(word_count(&text)));
    if let Some(cap) = request.max_tokens.map(|c| c.max(1))
        && completion > cap
    {
        let keep = usize::try_from(cap.saturating_mul(10) / 13)
            .unwrap_or(usize::MAX)
            .max(1);
        text = first_words(&text, keep).to_owned();
        completion = match behavior.completion_tokens {
            Some(_) => cap,
            None => estimate_tokens(word_count(&text)).min(cap),
        };
        finish = Finish::Length;
    }
    Answer {
        text,
        finish,
        prompt_tokens: behavior
            .prompt_tokens
            .unwrap_or_else(|| estimate_tokens(request.prompt_words)),
        completion_tokens: completion,
    }
}

/// Stopwords skipped when picking the key terms of a prompt (the same list as
/// the gateway's quality scorer).
const STOPWORDS: &[&str] = &[
    "a", "about", "above", "after", "again", "all", "also", "am", "an", "and", "any", "are", "as",
    "at", "be", "because", "been", "before", "being", "below", "between", "both", "but", "by",
    "can", "could", "did", "do", "does", "doing", "down", "during", "each", "explain", "few",
    "for", "from", "further", "give", "had", "has", "have", "having", "he", "her", "here", "hers",
    "him", "his", "how", "i", "if", "in", "into", "is", "it", "its", "just", "like", "me", "more",
    "most", "my", "no", "nor", "not", "now", "of", "off", "on", "once", "only", "or", "other",
    "our", "out", "over", "own", "please", "same", "she", "should", "so", "some", "such", "tell",
    "than", "that", "the", "their", "them", "then", "there", "these", "they", "this", "those",
    "through", "to", "too", "under", "until", "up", "us", "very", "was", "we", "were", "what",
    "when", "where", "which", "while", "who", "whom", "why", "will", "with", "would", "write",
    "you", "your",
];

/// Distinct key terms of `text` in order of appearance, in their original
/// spelling: runs of alphanumerics (apostrophes inside kept), without
/// stopwords and one-letter words (numbers are kept).
fn key_terms(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    let mut push = |word: &mut String| {
        let trimmed = word.trim_end_matches(['\'', '\u{2019}']);
        let lower: String = trimmed
            .chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect();
        let is_number = !lower.is_empty() && lower.chars().all(|c| c.is_ascii_digit());
        let keep = (lower.chars().count() >= 2 || is_number)
            && STOPWORDS.binary_search(&lower.as_str()).is_err()
            && !seen.contains(&lower);
        if keep {
            out.push(trimmed.to_owned());
            seen.push(lower);
        }
        word.clear();
    };
    let mut current = String::new();
    for ch in text.chars() {
        if ch.is_alphanumeric() || ((ch == '\'' || ch == '\u{2019}') && !current.is_empty()) {
            current.push(ch);
        } else if !current.is_empty() {
            push(&mut current);
        }
    }
    if !current.is_empty() {
        push(&mut current);
    }
    out
}

const TEMPLATES: [&str; 7] = [
    "Here is a concise overview of {a} and {b}.",
    "In practice, getting {a} right directly shapes {b} over time.",
    "A sensible first step is to look at {a} together with {b}, since each one influences the other.",
    "When working with {a}, keep {b} in mind and check your assumptions early.",
    "It also helps to compare {a} against {b} using a small, concrete example.",
    "Most common pitfalls come from overlooking {a} or underestimating {b}.",
    "For {a}, the practical advice is to start simple and measure before tuning {b}.",
];

const CLOSING: &str =
    "Finally, writing down decisions about {a} and {b} makes later changes easier to review.";

const GENERIC_SUBJECTS: [&str; 16] = [
    "the overall goal",
    "the main constraints",
    "the expected outcome",
    "the available options",
    "the surrounding context",
    "the next steps",
    "the trade-offs involved",
    "the long-term plan",
    "the key risks",
    "the people affected",
    "the underlying data",
    "the success criteria",
    "the budget",
    "the timeline",
    "the edge cases",
    "the final result",
];

const FILLERS: [&str; 4] = [
    "Start with the smallest version that works, then refine it step by step.",
    "Measure the result, note what changed, and adjust the plan accordingly.",
    "Clear names, small steps and honest measurements keep the work easy to follow.",
    "Each of these points can be expanded with more detail whenever that would be useful.",
];

/// Prose of 60–120 words using the key terms of `prompt`, without refusal
/// phrases or repeated word trigrams.
fn prose(prompt: &str) -> String {
    let terms = key_terms(prompt);
    let mut term_iter = terms.iter().map(String::as_str);
    let mut generic = GENERIC_SUBJECTS.iter().copied();
    let mut next = |terms_left: &mut usize| {
        if let Some(term) = term_iter.next() {
            *terms_left = terms_left.saturating_sub(1);
            term
        } else {
            generic.next().unwrap_or("the details")
        }
    };
    let fill = |template: &str, a: &str, b: &str| template.replace("{a}", a).replace("{b}", b);
    let mut terms_left = terms.len();
    let mut sentences: Vec<String> = Vec::new();
    let mut words = 0;
    for template in TEMPLATES {
        if terms_left == 0 && words >= 45 {
            break;
        }
        let a = next(&mut terms_left);
        let b = next(&mut terms_left);
        let sentence = fill(template, a, b);
        words += word_count(&sentence);
        sentences.push(sentence);
    }
    // Terms the templates had no room for, as far as the length budget allows.
    if terms_left > 2 {
        let budget = 120usize.saturating_sub(words + word_count(CLOSING) + 6);
        let mut extra: Vec<&str> = Vec::new();
        while terms_left > 2 && extra.len() < budget {
            extra.push(next(&mut terms_left));
        }
        if let Some((last, rest)) = extra.split_last() {
            let list = if rest.is_empty() {
                (*last).to_owned()
            } else {
                format!("{} and {last}", rest.join(", "))
            };
            let sentence = format!("Related points worth covering include {list}.");
            words += word_count(&sentence);
            sentences.push(sentence);
        }
    }
    let a = next(&mut terms_left);
    let b = next(&mut terms_left);
    let closing = fill(CLOSING, a, b);
    words += word_count(&closing);
    sentences.push(closing);
    for filler in FILLERS {
        if words >= 60 {
            break;
        }
        words += word_count(filler);
        sentences.push(filler.to_owned());
    }
    sentences.join(" ")
}

/// The default answer: prose, or a JSON object when JSON was asked for.
fn default_answer(prompt: &str, json: Option<&JsonMode>) -> String {
    let text = prose(prompt);
    match json {
        None => text,
        Some(JsonMode::Object) => {
            let terms: Vec<String> = key_terms(prompt)
                .into_iter()
                .map(|t| t.to_lowercase())
                .collect();
            json!({"answer": text, "key_terms": terms, "confidence": "high"}).to_string()
        }
        Some(JsonMode::Schema(schema)) => {
            let terms = key_terms(prompt);
            let mut filler = SchemaFiller {
                prose: Some(text),
                terms: &terms,
                next_term: 0,
            };
            let value = filler.instance(schema, schema, 0);
            let value = if value.is_object() {
                value
            } else {
                json!({"answer": value})
            };
            value.to_string()
        }
    }
}

/// Field names that get the prose answer first when a schema is followed.
const PROSE_FIELDS: [&str; 10] = [
    "answer",
    "summary",
    "response",
    "text",
    "content",
    "explanation",
    "description",
    "result",
    "message",
    "body",
];

/// Builds a value matching a JSON schema (OpenAI/Anthropic JSON Schema or
/// Gemini's OpenAPI subset with upper-case types).
struct SchemaFiller<'a> {
    prose: Option<String>,
    terms: &'a [String],
    next_term: usize,
}

impl SchemaFiller<'_> {
    fn string(&mut self, schema: &Value) -> Value {
        let format = schema.get("format").and_then(Value::as_str);
        let text = match format {
            Some("date-time") => "2025-01-01T00:00:00Z".to_owned(),
            Some("date") => "2025-01-01".to_owned(),
            Some("time") => "12:00:00".to_owned(),
            Some("email") => "user@example.com".to_owned(),
            Some("uri" | "url") => "https://example.com/".to_owned(),
            Some("uuid") => "00000000-0000-4000-8000-000000000000".to_owned(),
            _ => match self.prose.take() {
                Some(prose) => prose,
                None => {
                    let term = self.terms.get(self.next_term).cloned();
                    self.next_term += 1;
                    term.unwrap_or_else(|| format!("value {}", self.next_term))
                }
            },
        };
        Value::String(text)
    }

    fn instance(&mut self, schema: &Value, root: &Value, depth: usize) -> Value {
        if depth > 12 {
            return Value::Null;
        }
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            return match reference
                .strip_prefix('#')
                .and_then(|pointer| root.pointer(pointer))
            {
                Some(target) => self.instance(target, root, depth + 1),
                None => Value::Null,
            };
        }
        if let Some(value) = schema.get("const") {
            return value.clone();
        }
        if let Some(first) = schema
            .get("enum")
            .and_then(Value::as_array)
            .and_then(|e| e.first())
        {
            return first.clone();
        }
        for key in ["anyOf", "oneOf", "allOf", "any_of"] {
            if let Some(options) = schema.get(key).and_then(Value::as_array) {
                let choice = options
                    .iter()
                    .find(|o| type_of(o).as_deref() != Some("null"))
                    .or_else(|| options.first());
                if let Some(choice) = choice {
                    return self.instance(choice, root, depth + 1);
                }
            }
        }
        let kind = type_of(schema).or_else(|| {
            if schema.get("properties").is_some() {
                Some("object".to_owned())
            } else if schema.get("items").is_some() {
                Some("array".to_owned())
            } else {
                None
            }
        });
        match kind.as_deref() {
            Some("object") => {
                let mut map = serde_json::Map::new();
                if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                    // The prose goes to the likeliest text field: preferred
                    // names first, then other plain strings, then the rest.
                    let mut ordered: Vec<(&String, &Value)> = properties.iter().collect();
                    ordered.sort_by_key(|(name, property)| {
                        let text = type_of(property).is_none_or(|t| t == "string")
                            && property.get("enum").is_none();
                        let preferred = PROSE_FIELDS.contains(&name.to_ascii_lowercase().as_str());
                        match (text, preferred) {
                            (true, true) => 0,
                            (true, false) => 1,
                            _ => 2,
                        }
                    });
                    for (name, property) in ordered {
                        map.insert(name.clone(), self.instance(property, root, depth + 1));
                    }
                }
                Value::Object(map)
            }
            Some("array") => {
                let count = schema
                    .get("minItems")
                    .and_then(Value::as_u64)
                    .unwrap_or(1)
                    .clamp(1, 5);
                let items = schema.get("items").cloned().unwrap_or(Value::Null);
                (0..count)
                    .map(|_| self.instance(&items, root, depth + 1))
                    .collect()
            }
            Some("integer") => schema
                .get("minimum")
                .and_then(Value::as_i64)
                .map_or_else(|| json!(1), |m| json!(m)),
            Some("number") => schema
                .get("minimum")
                .and_then(Value::as_f64)
                .map_or_else(|| json!(1.5), |m| json!(m)),
            Some("boolean") => Value::Bool(true),
            Some("null") => Value::Null,
            _ => self.string(schema),
        }
    }
}

/// The lower-case `type` of a schema (the first non-null one of a list).
fn type_of(schema: &Value) -> Option<String> {
    match schema.get("type")? {
        Value::String(s) => Some(s.to_ascii_lowercase()),
        Value::Array(types) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| !t.eq_ignore_ascii_case("null"))
            .or_else(|| types.first().and_then(Value::as_str))
            .map(str::to_ascii_lowercase),
        _ => None,
    }
}

/// Splits `text` into at most `n` non-empty pieces at spaces (pieces start
/// with the space, like model tokens); concatenated they are `text`.
fn split_pieces(text: &str, n: usize) -> Vec<&str> {
    if text.is_empty() {
        return Vec::new();
    }
    let n = n.max(1);
    let len = text.len();
    let mut pieces = Vec::with_capacity(n);
    let mut start = 0;
    for i in 1..n {
        let mut cut = len * i / n;
        if cut <= start {
            continue;
        }
        while cut < len && !text.is_char_boundary(cut) {
            cut += 1;
        }
        if let Some(offset) = text[cut..].find(' ') {
            cut += offset;
        }
        if cut <= start || cut >= len {
            continue;
        }
        pieces.push(&text[start..cut]);
        start = cut;
    }
    pieces.push(&text[start..]);
    pieces
}

// ---------------------------------------------------------------------------
// Generation: responses
// ---------------------------------------------------------------------------

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn generate(
    shared: &Shared,
    body: &[u8],
    path_model: Option<String>,
    path_stream: bool,
    sse: bool,
) -> Response {
    let flavor = shared.flavor;
    let value: Value = match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => {
            return error_response(
                shared,
                &ApiError::new(400, "The request body must be a JSON object."),
            );
        }
        Err(e) => {
            return error_response(
                shared,
                &ApiError::new(
                    400,
                    format!("We could not parse the JSON body of your request: {e}"),
                ),
            );
        }
    };
    let request = match parse_request(flavor, &value, path_model, path_stream, sse) {
        Ok(r) => r,
        Err(message) => return error_response(shared, &ApiError::new(400, message)),
    };
    let strict = shared.lock().behavior.strict_models;
    if strict && find_model(shared, &request.model).is_none() {
        return error_response(shared, &model_not_found(shared, &request.model));
    }
    let plan = shared.plan(&request.model);
    let behavior = &plan.behavior;
    if behavior.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(behavior.delay_ms)).await;
    }
    if let Some(status) = plan.fail {
        let message = behavior
            .fail_message
            .clone()
            .unwrap_or_else(|| default_error_message(status).to_owned());
        let error = ApiError {
            status,
            message,
            code: None,
            retry_after_s: behavior.retry_after_s,
        };
        return error_response(shared, &error);
    }
    let answer = compose(behavior, &request);
    let id = shared.next_id();
    // A request that asks for a function call gets one, in the flavor's wire format.
    let tool = behavior
        .answer
        .is_none()
        .then(|| crate::mock_tools::requested(flavor, &value))
        .flatten();
    if let Some(tool) = tool {
        let terms = key_terms(&request.last_user);
        let mut filler = SchemaFiller {
            prose: None,
            terms: &terms,
            next_term: 0,
        };
        let args = match filler.instance(&tool.schema, &tool.schema, 0) {
            v @ Value::Object(_) => v,
            _ => json!({}),
        };
        let call = crate::mock_tools::Call {
            id,
            model: &request.model,
            name: &tool.name,
            args: &args,
            prompt_tokens: answer.prompt_tokens,
            completion_tokens: estimate_tokens(args.to_string().len() / 4 + 1),
        };
        let mut response = if request.stream {
            sse_response(
                crate::mock_tools::stream(flavor, &call),
                Duration::ZERO,
                false,
            )
        } else {
            json_response(200, &crate::mock_tools::answer(flavor, &call))
        };
        request_id_header(flavor, &mut response, id);
        return response;
    }
    let mut response = if request.stream {
        let pieces = split_pieces(&answer.text, behavior.stream_chunks);
        let cut_after = behavior.cut_stream_after;
        let sent = cut_after.map_or(pieces.len(), |n| n.min(pieces.len()));
        let stream = Stream {
            id,
            model: &request.model,
            answer: &answer,
            pieces: &pieces[..sent],
            cut: cut_after.is_some(),
            include_usage: request.include_usage,
            sse: request.sse,
        };
        let frames = match flavor {
            Flavor::OpenAi => openai_stream(&stream),
            Flavor::Anthropic => anthropic_stream(&stream),
            Flavor::Gemini => gemini_stream(&stream),
        };
        let delay = Duration::from_millis(behavior.chunk_delay_ms);
        if flavor == Flavor::Gemini && !request.sse {
            // Without `alt=sse` Gemini streams one JSON array.
            response(
                200,
                "application/json",
                MockBody::frames(frames, delay, stream.cut),
            )
        } else {
            sse_response(frames, delay, stream.cut)
        }
    } else {
        let body = match flavor {
            Flavor::OpenAi => openai_completion(id, &request.model, &answer),
            Flavor::Anthropic => anthropic_message(id, &request.model, &answer),
            Flavor::Gemini => gemini_response(id, &request.model, &answer, &answer.text, true),
        };
        let bytes = Bytes::from(body.to_string());
        if behavior.cut_stream_after.is_some() {
            let half = bytes.slice(..bytes.len() / 2);
            response(
                200,
                "application/json",
                MockBody::frames(vec![half], Duration::ZERO, true),
            )
        } else {
            response(200, "application/json", MockBody::full(bytes))
        }
    };
    request_id_header(flavor, &mut response, id);
    response
}

/// What a streamed answer is made of.
struct Stream<'a> {
    id: u64,
    model: &'a str,
    answer: &'a Answer,
    /// The pieces to send (fewer than all when cut).
    pieces: &'a [&'a str],
    /// Close the connection instead of sending the terminal events.
    cut: bool,
    include_usage: bool,
    /// Gemini: SSE (`alt=sse`) rather than a JSON array.
    sse: bool,
}

fn openai_finish(finish: Finish) -> &'static str {
    match finish {
        Finish::Stop => "stop",
        Finish::Length => "length",
    }
}

fn openai_completion(id: u64, model: &str, answer: &Answer) -> Value {
    json!({
        "id": format!("chatcmpl-mock{id:016x}"),
        "object": "chat.completion",
        "created": unix_now(),
        "model": model,
        "system_fingerprint": "fp_mock",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": answer.text, "refusal": null},
            "logprobs": null,
            "finish_reason": openai_finish(answer.finish),
        }],
        "usage": {
            "prompt_tokens": answer.prompt_tokens,
            "completion_tokens": answer.completion_tokens,
            "total_tokens": answer.prompt_tokens.saturating_add(answer.completion_tokens),
        },
    })
}

fn sse_data(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

fn sse_event(name: &str, value: &Value) -> String {
    format!("event: {name}\ndata: {value}\n\n")
}

fn openai_stream(s: &Stream<'_>) -> Vec<Bytes> {
    let created = unix_now();
    let id = format!("chatcmpl-mock{:016x}", s.id);
    let chunk = |delta: Value, finish: Option<&str>| {
        let mut chunk = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": s.model,
            "system_fingerprint": "fp_mock",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        if s.include_usage
            && let Some(map) = chunk.as_object_mut()
        {
            map.insert("usage".to_owned(), Value::Null);
        }
        chunk
    };
    let mut frames = Vec::with_capacity(s.pieces.len() + 2);
    frames.push(sse_data(&chunk(
        json!({"role": "assistant", "content": "", "refusal": null}),
        None,
    )));
    for piece in s.pieces {
        frames.push(sse_data(&chunk(json!({"content": piece}), None)));
    }
    if !s.cut {
        let mut last = String::new();
        last.push_str(&format!(
            "data: {}\n\n",
            chunk(json!({}), Some(openai_finish(s.answer.finish)))
        ));
        if s.include_usage {
            let usage = json!({
                "id": id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": s.model,
                "system_fingerprint": "fp_mock",
                "choices": [],
                "usage": {
                    "prompt_tokens": s.answer.prompt_tokens,
                    "completion_tokens": s.answer.completion_tokens,
                    "total_tokens": s.answer.prompt_tokens.saturating_add(s.answer.completion_tokens),
                },
            });
            last.push_str(&format!("data: {usage}\n\n"));
        }
        last.push_str("data: [DONE]\n\n");
        frames.push(Bytes::from(last));
    }
    frames
}

fn anthropic_stop(finish: Finish) -> &'static str {
    match finish {
        Finish::Stop => "end_turn",
        Finish::Length => "max_tokens",
    }
}

fn anthropic_message(id: u64, model: &str, answer: &Answer) -> Value {
    json!({
        "id": format!("msg_mock{id:016x}"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": answer.text}],
        "stop_reason": anthropic_stop(answer.finish),
        "stop_sequence": null,
        "usage": {
            "input_tokens": answer.prompt_tokens,
            "output_tokens": answer.completion_tokens,
        },
    })
}

fn anthropic_stream(s: &Stream<'_>) -> Vec<Bytes> {
    let mut frames = Vec::with_capacity(s.pieces.len() + 2);
    let start = json!({
        "type": "message_start",
        "message": {
            "id": format!("msg_mock{:016x}", s.id),
            "type": "message",
            "role": "assistant",
            "model": s.model,
            "content": [],
            "stop_reason": null,
            "stop_sequence": null,
            "usage": {"input_tokens": s.answer.prompt_tokens, "output_tokens": 1},
        },
    });
    let mut preamble = sse_event("message_start", &start);
    preamble.push_str(&sse_event(
        "content_block_start",
        &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ));
    preamble.push_str(&sse_event("ping", &json!({"type": "ping"})));
    frames.push(Bytes::from(preamble));
    for piece in s.pieces {
        frames.push(Bytes::from(sse_event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}),
        )));
    }
    if !s.cut {
        let mut end = sse_event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": 0}),
        );
        end.push_str(&sse_event(
            "message_delta",
            &json!({
                "type": "message_delta",
                "delta": {"stop_reason": anthropic_stop(s.answer.finish), "stop_sequence": null},
                "usage": {"output_tokens": s.answer.completion_tokens},
            }),
        ));
        end.push_str(&sse_event("message_stop", &json!({"type": "message_stop"})));
        frames.push(Bytes::from(end));
    }
    frames
}

fn gemini_finish(finish: Finish) -> &'static str {
    match finish {
        Finish::Stop => "STOP",
        Finish::Length => "MAX_TOKENS",
    }
}

/// One `GenerateContentResponse`; `so_far` is the candidate tokens up to and
/// including this text (cumulative, as Gemini reports them).
fn gemini_response_with(
    id: u64,
    model: &str,
    answer: &Answer,
    text: &str,
    last: bool,
    so_far: u32,
) -> Value {
    let mut candidate = json!({
        "content": {"role": "model", "parts": [{"text": text}]},
        "index": 0,
    });
    if last && let Some(map) = candidate.as_object_mut() {
        map.insert(
            "finishReason".to_owned(),
            Value::String(gemini_finish(answer.finish).to_owned()),
        );
    }
    json!({
        "candidates": [candidate],
        "usageMetadata": {
            "promptTokenCount": answer.prompt_tokens,
            "candidatesTokenCount": so_far,
            "totalTokenCount": answer.prompt_tokens.saturating_add(so_far),
        },
        "modelVersion": model,
        "responseId": format!("mock{id:016x}"),
    })
}

fn gemini_response(id: u64, model: &str, answer: &Answer, text: &str, last: bool) -> Value {
    gemini_response_with(id, model, answer, text, last, answer.completion_tokens)
}

fn gemini_stream(s: &Stream<'_>) -> Vec<Bytes> {
    let total = s.answer.completion_tokens;
    let count = s.pieces.len();
    let chunks: Vec<Value> = if count == 0 {
        if s.cut {
            Vec::new()
        } else {
            vec![gemini_response(s.id, s.model, s.answer, "", true)]
        }
    } else {
        let all = s.answer.text.len().max(1) as u64;
        let mut sent = 0u64;
        s.pieces
            .iter()
            .enumerate()
            .map(|(i, piece)| {
                sent += piece.len() as u64;
                let last = i + 1 == count && !s.cut;
                // Cumulative candidate tokens in proportion to the text sent,
                // at least 1, exactly the total on the final chunk.
                let so_far = if last {
                    total
                } else {
                    let share = u64::from(total) * sent / all;
                    u32::try_from(share).unwrap_or(total).clamp(1, total.max(1))
                };
                gemini_response_with(s.id, s.model, s.answer, piece, last, so_far)
            })
            .collect()
    };
    if s.sse {
        // Gemini ends its SSE events with CRLF pairs.
        chunks
            .iter()
            .map(|c| Bytes::from(format!("data: {c}\r\n\r\n")))
            .collect()
    } else {
        let mut frames: Vec<Bytes> = chunks
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let lead = if i == 0 { "[" } else { ",\r\n" };
                Bytes::from(format!("{lead}{c}"))
            })
            .collect();
        if !s.cut {
            let close: &'static [u8] = if chunks.is_empty() { b"[]" } else { b"]" };
            frames.push(Bytes::from_static(close));
        }
        frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_concatenate_to_the_text() {
        let text = "The quick brown fox jumps over the lazy dog, again and again.";
        for n in 0..20 {
            let pieces = split_pieces(text, n);
            assert_eq!(pieces.concat(), text, "n = {n}");
            assert!(pieces.len() <= n.max(1));
            assert!(pieces.iter().all(|p| !p.is_empty()));
        }
        assert_eq!(split_pieces("", 8), Vec::<&str>::new());
        assert_eq!(
            split_pieces("héllo wörld ünïcode", 3).concat(),
            "héllo wörld ünïcode"
        );
        assert_eq!(split_pieces("{\"a\":1}", 4).concat(), "{\"a\":1}");
    }

    #[test]
    fn key_terms_keep_spelling_and_skip_stopwords() {
        assert_eq!(
            key_terms("What is the capital of France? The capital, please."),
            vec!["capital", "France"]
        );
        assert_eq!(key_terms("what is 2 + 2"), vec!["2"]);
        assert_eq!(key_terms("Don't panic"), vec!["Don't", "panic"]);
    }

    #[test]
    fn prose_length_is_in_range() {
        for prompt in [
            "",
            "hi",
            "What is the capital of France?",
            "Compare Rust, Go, Zig, C, C++, Java, Kotlin, Swift, Python, Ruby, Elixir, Erlang, \
             Haskell, OCaml, Scala, Clojure, Lua, Perl, PHP, JavaScript, TypeScript and Dart \
             for backend services, embedded firmware, data pipelines and command-line tools.",
        ] {
            let text = prose(prompt);
            let words = word_count(&text);
            assert!(
                (60..=120).contains(&words),
                "{words} words for {prompt:?}: {text}"
            );
        }
    }

    #[test]
    fn truncation_respects_the_cap() {
        let request = GenRequest {
            model: "m".into(),
            stream: false,
            sse: true,
            include_usage: false,
            max_tokens: Some(10),
            json: None,
            last_user: "Tell me about rivers".into(),
            prompt_words: 4,
        };
        let answer = compose(&Behavior::default(), &request);
        assert_eq!(answer.finish, Finish::Length);
        assert!(answer.completion_tokens <= 10);
        assert_eq!(word_count(&answer.text), 7);
        assert_eq!(answer.prompt_tokens, 6);
    }

    #[test]
    fn schema_instances_follow_the_schema() {
        let schema = json!({
            "type": "object",
            "properties": {
                "title": {"type": "string"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "count": {"type": "integer"},
                "kind": {"enum": ["a", "b"]},
                "nested": {"$ref": "#/$defs/n"},
                "maybe": {"type": ["null", "boolean"]}
            },
            "$defs": {"n": {"type": "OBJECT", "properties": {"ok": {"type": "BOOLEAN"}}}}
        });
        let text = default_answer("rivers and lakes", Some(&JsonMode::Schema(schema)));
        let value: Value = serde_json::from_str(&text).unwrap();
        assert!(value["title"].as_str().unwrap().contains("rivers"));
        assert_eq!(value["tags"], json!(["rivers"]));
        assert_eq!(value["count"], json!(1));
        assert_eq!(value["kind"], json!("a"));
        assert_eq!(value["nested"], json!({"ok": true}));
        assert_eq!(value["maybe"], json!(true));
    }

    #[test]
    fn dice_are_deterministic() {
        let mut a = 42;
        let mut b = 42;
        let rolls_a: Vec<bool> = (0..100).map(|_| roll(&mut a, 0.3)).collect();
        let rolls_b: Vec<bool> = (0..100).map(|_| roll(&mut b, 0.3)).collect();
        assert_eq!(rolls_a, rolls_b);
        let hits = rolls_a.iter().filter(|x| **x).count();
        assert!((15..=45).contains(&hits), "{hits}");
        assert!(!roll(&mut a, 0.0));
        assert!(roll(&mut a, 1.0));
    }
}
