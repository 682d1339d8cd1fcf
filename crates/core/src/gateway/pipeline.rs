//! One generation request after parsing, over injected I/O (issue 11): the
//! entry tier (emergency mode, then the request's hint, then the tier flag),
//! planning, the worst-case reservation, the response cache (per API key,
//! TTL, `Cache-Control: no-cache`, streamed replay), the engine, and the
//! book-keeping (settlement and the request record in one transaction,
//! routing state, cache fill), all written before the answer's body ends.
//! With `auto` (hint or flag) the entry tier is chosen per prompt
//! difficulty ([`crate::optimize::auto_entry`]) and named in the
//! `x-dol-selection` header.
//! The component only parses HTTP, builds the adapters and writes what
//! [`Client`] is given.

use serde_json::Value;

use super::attempts::storage;
use super::bookings::Booking;
use super::cache::{self, CacheEntry};
use super::catalog::{self, ProviderSettings};
use super::circuit::CircuitConfig;
use super::cost;
use super::engine::{
    self, Downstream, EngineConfig, Generation, Outcome, Plan, PlanError, Upstream,
};
use super::keys::{Admission, KeyLimits, LimitKind, Reservation};
use super::openai::{ChatRequest, ErrorBody};
use super::probes::apply_probes;
use super::quality::QualityConfig;
use super::routing::{CatalogEntry, RouteRequest, RoutingWeights};
use super::store;
use super::telemetry::RequestRecord;
use super::tiers::{EntryTier, Tier};
use crate::error::{ApiError, Code};
use crate::observe::scans::{PROBES_KEY, ProbeResult};
use crate::optimize::auto_entry::{self, Choice};
use crate::optimize::savings;
use crate::orgs::crypto::{CryptoError, KeyRing};
use crate::orgs::{self, Org};
use crate::storage::{KeyValue, SqlExecutor};

/// EWMA smoothing of observed latency, success and quality (≈ the last 10 attempts weigh most).
pub const ROUTING_ALPHA: f64 = 0.2;

/// Everything a generation needs to know from configuration.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Provider keys and URLs.
    pub providers: ProviderSettings,
    /// Driver tuning.
    pub engine: EngineConfig,
    /// Quality scorer tuning.
    pub quality: QualityConfig,
    /// Circuit breaker tuning.
    pub circuit: CircuitConfig,
    /// Cache entry lifetime; 0 disables the cache.
    pub cache_ttl_secs: u64,
    /// Flag choosing the entry tier (empty = none).
    pub tier_flag: String,
    /// The savings baseline `provider/model` (empty = the cheapest priced
    /// comprehensive model; see [`crate::optimize::savings`]).
    pub savings_baseline: String,
    /// A key accepted without being stored (e.g. for `dol up` on a laptop); empty = none.
    pub bootstrap_key: String,
    /// The master keys of the orgs' encrypted provider credentials.
    pub byok: Byok,
}

/// The BYOK master keys from the variables, or why there are none. A
/// missing or malformed master key fails only the requests of orgs that
/// hold credentials (and the readiness check), never the whole gateway.
#[derive(Debug, Clone)]
pub struct Byok(pub Result<KeyRing, CryptoError>);

impl Default for Byok {
    fn default() -> Self {
        Self(Err(CryptoError::NoMasterKey))
    }
}

/// The caller, after authentication.
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    /// Key id (`bootstrap` for the configured bootstrap key).
    pub id: String,
    /// Its limits.
    pub limits: KeyLimits,
    /// Its org (limits, budget and allow-list apply too), if it has one.
    pub org: Option<Org>,
}

impl Caller {
    /// The org's id and limits, for [`store::admit_with_org`].
    pub fn org_limits(&self) -> Option<(&str, &KeyLimits)> {
        self.org.as_ref().map(|o| (o.id.as_str(), &o.limits))
    }

    /// The provider settings of this caller's requests: the deployment's,
    /// with its org's own credentials (decrypted now) in place of the
    /// deployment-wide keys. Credentials that cannot be decrypted refuse
    /// the request rather than fall back to the deployment's key.
    pub fn providers(
        &self,
        sql: &mut impl SqlExecutor,
        settings: &Settings,
    ) -> Result<ProviderSettings, PipelineError> {
        let Some(org) = &self.org else {
            return Ok(settings.providers.clone());
        };
        let creds = orgs::store::org_credentials(sql, settings.byok.0.as_ref(), &org.id)
            .map_err(|e| PipelineError::Credentials(e.into()))?;
        Ok(orgs::with_credentials(&settings.providers, &creds))
    }

    /// What a one-shot route (embeddings, images) of this caller works
    /// with at `now_ms`: the routable catalog under its org's allow-list
    /// (`model` named outside it is refused) and the settings with its
    /// org's own credentials.
    pub fn scope(
        &self,
        sql: &mut impl SqlExecutor,
        settings: &Settings,
        model: &str,
        now_ms: u64,
    ) -> Result<(Vec<CatalogEntry>, Settings), PipelineError> {
        let catalog = store::routable_catalog(sql, i64::try_from(now_ms).unwrap_or(i64::MAX))
            .map_err(storage("catalog"))?;
        let catalog = self.routable(catalog, model)?;
        let settings = Settings {
            providers: self.providers(sql, settings)?,
            ..settings.clone()
        };
        Ok((catalog, settings))
    }

    /// Admits `want` for the key and its org at `now_secs` (one
    /// transaction, [`store::admit_with_org`]); a refusal is the error.
    /// Returns what was reserved, for the request's [`store::Settlement`]:
    /// `None` when neither the key nor its org has a limit, which nothing
    /// could refuse — that request takes no write transaction here and is
    /// counted when it is settled, so the counters come out the same.
    /// Requests settled later (video jobs) reserve always.
    pub fn admit(
        &self,
        sql: &mut impl SqlExecutor,
        want: Reservation,
        now_secs: u64,
    ) -> Result<Option<Reservation>, PipelineError> {
        let org_unlimited = self.org.as_ref().is_none_or(|o| o.limits.is_unlimited());
        if self.limits.is_unlimited() && org_unlimited {
            return Ok(None);
        }
        match store::admit_with_org(
            sql,
            &self.id,
            &self.limits,
            self.org_limits(),
            want,
            now_secs,
        )
        .map_err(storage("admission"))?
        {
            Admission::Refuse {
                limit,
                retry_after_secs,
                message,
            } => Err(PipelineError::Refused {
                limit,
                retry_after_secs,
                message,
            }),
            Admission::Admit(_) => Ok(Some(want)),
        }
    }

    /// The catalog this caller may route to (its org's allow-list, which
    /// refuses a named model outside it).
    pub fn routable(
        &self,
        catalog: Vec<CatalogEntry>,
        model: &str,
    ) -> Result<Vec<CatalogEntry>, PipelineError> {
        match &self.org {
            Some(org) => org.routable(catalog, model).map_err(PipelineError::Denied),
            None => Ok(catalog),
        }
    }
}

/// One parsed generation request.
#[derive(Debug, Clone)]
pub struct Call {
    /// Who asks.
    pub caller: Caller,
    /// The validated request.
    pub request: ChatRequest,
    /// `chat` or `generate:<name>@<version>`.
    pub route: String,
    /// The `Cache-Control` request header.
    pub cache_control: Option<String>,
    /// The response id (`chatcmpl-…`).
    pub id: String,
    /// Unix ms when the request arrived.
    pub started_ms: u64,
}

/// Wall-clock time.
pub trait Clock {
    /// Unix milliseconds now.
    fn now_ms(&self) -> u64;
}

/// The in-process flag evaluator.
pub trait FlagEvaluator {
    /// The tier `flag` serves (with its variant name) to this context — a
    /// tier or `auto`; `None` when the flag is missing, broken or serves no
    /// tier.
    fn entry_tier(
        &mut self,
        flag: &str,
        targeting_key: &str,
        key_id: &str,
        model: &str,
    ) -> Option<(EntryTier, String)>;
}

/// The HTTP client of one request: a whole JSON answer, or a stream.
#[allow(
    async_fn_in_trait,
    reason = "single-threaded wasm executor; no Send bound wanted"
)]
pub trait Client: Downstream {
    /// Sends a complete JSON response.
    async fn complete(&mut self, status: u16, headers: Vec<(String, String)>, body: Value);
}

/// The injected I/O of the pipeline.
pub struct Io<'a, S, K, U, F, C> {
    /// SQL (keys, usage, catalog, requests, emergency mode).
    pub sql: &'a mut S,
    /// Key-value (routing state, probes, cache).
    pub kv: &'a mut K,
    /// Provider calls.
    pub upstream: &'a mut U,
    /// Flag evaluation.
    pub flags: &'a mut F,
    /// Wall clock.
    pub clock: &'a C,
    /// What this instance keeps between requests: the routable catalog and
    /// org privacy settings, each under its stamp ([`store::InstanceCache`];
    /// borrowed only while it is read).
    pub cache: &'a std::cell::RefCell<store::InstanceCache>,
}

/// Why a request was refused before any answer was sent.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PipelineError {
    /// No API key was presented.
    #[error("no API key")]
    MissingKey,
    /// The key is unknown or revoked.
    #[error("incorrect or revoked API key")]
    InvalidKey,
    /// The body is invalid (OpenAI's error body names the parameter).
    #[error("{}", .0.error.message)]
    BadRequest(ErrorBody),
    /// `/v1/generate` named a template (or version) that does not exist.
    #[error("no template `{0}`")]
    TemplateNotFound(String),
    /// No candidate serves the requested model.
    #[error("{0}")]
    Plan(#[from] PlanError),
    /// A key limit refused the request.
    #[error("{message}")]
    Refused {
        /// The limit hit.
        limit: LimitKind,
        /// Seconds until it may succeed.
        retry_after_secs: u64,
        /// A message for the client.
        message: String,
    },
    /// Every provider failed, or none can serve (the body says why; 502 and the like).
    #[error("{}", .0.error.message)]
    Failed(ErrorBody),
    /// A permission denial (a missing role, another org, a model outside
    /// the org's allow-list): the error says which.
    #[error("{}", .0.message)]
    Denied(ApiError),
    /// The org's provider credentials cannot be used (master key missing
    /// or wrong): the error names the configuration problem, no secret.
    #[error("{}", .0.message)]
    Credentials(ApiError),
    /// Storage failed (`context` names the step).
    #[error("{context}: {message}")]
    Storage {
        /// The step.
        context: &'static str,
        /// The storage error.
        message: String,
    },
}

/// An error answer: status, OpenAI body, extra headers.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorReply {
    /// HTTP status.
    pub status: u16,
    /// OpenAI's error shape.
    pub body: ErrorBody,
    /// Extra headers (`retry-after`).
    pub headers: Vec<(String, String)>,
}

impl PipelineError {
    /// The answer to send in OpenAI's shape (a storage failure is a generic
    /// 500 with no internals), rendered from the one error model.
    pub fn reply(&self) -> ErrorReply {
        ErrorReply::from(&ApiError::from(self))
    }
}

impl From<&ApiError> for ErrorReply {
    /// `err` in OpenAI's shape, with its headers.
    fn from(err: &ApiError) -> Self {
        ErrorReply {
            status: err.status(),
            body: err.to_openai(),
            headers: err.headers.clone(),
        }
    }
}

impl From<&PipelineError> for ApiError {
    fn from(err: &PipelineError) -> Self {
        let bearer = |message: &str| {
            ApiError::new(Code::Unauthorized, message).with_header("www-authenticate", "Bearer")
        };
        match err {
            PipelineError::MissingKey => bearer(
                "You didn't provide an API key. Send it as Authorization: Bearer <key> (create one with POST /admin/keys).",
            ),
            PipelineError::InvalidKey => bearer("Incorrect or revoked API key provided."),
            PipelineError::BadRequest(body) => {
                let bad = ApiError::new(Code::InvalidRequest, body.error.message.clone());
                match &body.error.param {
                    Some(param) => bad.with_field(param.clone()),
                    None => bad,
                }
            }
            PipelineError::TemplateNotFound(name) => ApiError::new(
                Code::TemplateNotFound,
                format!("No template `{name}` (or no such version)."),
            ),
            PipelineError::Plan(e) => ApiError::new(Code::ModelNotFound, e.to_string()),
            PipelineError::Failed(body) => {
                // The body was written for the client (which provider
                // failed how); its status says whose fault it is.
                let code = match body.status() {
                    400 => Code::InvalidRequest,
                    404 => Code::ModelNotFound,
                    503 => Code::Unavailable,
                    _ => Code::UpstreamFailed,
                };
                let err = ApiError::new(code, body.error.message.clone());
                match &body.error.param {
                    Some(param) => err.with_field(param.clone()),
                    None => err,
                }
            }
            PipelineError::Refused {
                limit,
                retry_after_secs,
                message,
            } => {
                let code = match limit {
                    LimitKind::Budget => Code::BudgetExceeded,
                    LimitKind::Requests | LimitKind::Tokens => Code::RateLimited,
                };
                ApiError::new(code, message.clone())
                    .with_header("retry-after", retry_after_secs.to_string())
            }
            PipelineError::Denied(e) | PipelineError::Credentials(e) => e.clone(),
            PipelineError::Storage { .. } => ApiError::internal(err.to_string()),
        }
    }
}

/// What a served request did (for the component's log).
#[derive(Debug, Clone)]
pub struct Served {
    /// The generation (from the cache or the engine).
    pub generation: Generation,
    /// The worst case admission weighed before answering (reserved only
    /// when the key or its org has a limit: [`Caller::admit`]).
    pub reservation: Reservation,
    /// The record written to `requests` (before the answer, or with
    /// [`Served::trailing`]).
    pub record: RequestRecord,
    /// The book-keeping the caller writes after the answer, in its
    /// instance's batch ([`super::bookings::Pending`],
    /// [`super::bookings::write`]);
    /// `None` when it was written before the answer.
    pub trailing: Option<Booking>,
    /// Book-keeping failures after the answer went out (logged, not sent).
    pub warnings: Vec<String>,
}

/// The entry tier and the variant it is attributed to: emergency mode forces
/// `basic`; else the request's `dol.tier` hint; else the tier flag; else
/// `comprehensive`. `auto` (from the hint or the flag) is resolved by
/// [`auto_entry_choice`].
pub fn entry_tier(
    emergency: bool,
    hint: Option<EntryTier>,
    flag: impl FnOnce() -> Option<(EntryTier, String)>,
) -> (EntryTier, String) {
    if emergency {
        (EntryTier::Fixed(Tier::Basic), "emergency".to_owned())
    } else if let Some(t) = hint {
        (t, "-".to_owned())
    } else {
        flag().unwrap_or((EntryTier::Fixed(Tier::Comprehensive), "-".to_owned()))
    }
}

/// The auto entry's choice when `asked` is `auto` and the request lets DOL
/// choose the model (`difficulty` is then known): the learned table is read
/// from key-value (missing or unreadable = empty, a warning — never a failed
/// request) and the tier chosen among the plan's tiers with candidates.
/// `None` otherwise: the fixed tier (or a pinned model's) applies.
pub fn auto_entry_choice(
    asked: EntryTier,
    difficulty: Option<crate::optimize::selection::Difficulty>,
    kv: &mut impl KeyValue,
    plan: &Plan,
    threshold: f64,
    warnings: &mut Vec<String>,
) -> Option<Choice> {
    let d = difficulty.filter(|_| asked == EntryTier::Auto)?;
    let table = auto_entry::read_table(kv).unwrap_or_else(|e| {
        warnings.push(format!("reading the selection table failed: {e}"));
        Default::default()
    });
    auto_entry::choose(&table, d, &plan.tiers_cheapest_first(), threshold)
}

/// A [`Client`] adding `extra` headers to the answer's head (streamed or
/// whole): how the pipeline names its own decisions (`x-dol-selection`)
/// beside the engine's `x-dol-*` headers.
struct WithHeaders<'a, D> {
    inner: &'a mut D,
    extra: Vec<(String, String)>,
}

impl<D: Client> Downstream for WithHeaders<'_, D> {
    async fn start(&mut self, mut headers: Vec<(String, String)>) -> bool {
        headers.extend(self.extra.iter().cloned());
        self.inner.start(headers).await
    }

    async fn send(&mut self, bytes: Vec<u8>) -> bool {
        self.inner.send(bytes).await
    }
}

impl<D: Client> Client for WithHeaders<'_, D> {
    async fn complete(&mut self, status: u16, mut headers: Vec<(String, String)>, body: Value) {
        headers.extend(self.extra.iter().cloned());
        self.inner.complete(status, headers, body).await;
    }
}

/// The worst case of what a request may spend: every answer a provider
/// may produce for it, each of the prompt plus the output limit. The quality
/// gate turns a weak answer down and asks one tier lower (within the last
/// tier, the next candidate), and the providers bill every answer, so a
/// non-streamed request may pay the dearest candidate of each tier from its
/// entry tier on and every candidate of the last one; a stream is not gated
/// and pays one answer, the dearest.
pub fn reservation(plan: &Plan, request: &ChatRequest) -> Reservation {
    let req = RouteRequest::from_chat(request, plan.entry);
    let one = req.input_tokens.saturating_add(req.output_tokens);
    let price = |t: &engine::Target| {
        cost::request_cost(
            req.input_tokens,
            req.output_tokens,
            t.entry.input_price,
            t.entry.output_price,
        )
        .micros()
        .unwrap_or(0)
    };
    let tiers: Vec<&Vec<engine::Target>> = plan.tiers[plan.entry.index()..]
        .iter()
        .filter(|t| !t.is_empty())
        .collect();
    let (cost, answers) = if request.stream {
        let dearest = tiers.iter().flat_map(|t| t.iter()).map(price).max();
        (dearest.unwrap_or(0), u64::from(dearest.is_some()))
    } else {
        let last = tiers.len().saturating_sub(1);
        tiers
            .iter()
            .enumerate()
            .fold((0u64, 0u64), |(cost, n), (i, t)| {
                if i == last {
                    let all = t.iter().map(price).fold(0u64, u64::saturating_add);
                    (cost.saturating_add(all), n + t.len() as u64)
                } else {
                    let dearest = t.iter().map(price).max().unwrap_or(0);
                    (cost.saturating_add(dearest), n + 1)
                }
            })
    };
    Reservation {
        tokens: one.saturating_mul(answers.max(1)),
        cost_micros: cost,
    }
}

/// A cache hit as a generation: costs nothing, made no attempt.
pub fn from_cache(hit: CacheEntry) -> Generation {
    let mut info = hit.info;
    info.cached = true;
    info.attempts = 0;
    // The stored answer's cost was paid when it was generated, not now.
    info.cost_micros = Some(0);
    info.cost_unknown = false;
    Generation {
        info,
        content: hit.content,
        finish_reason: hit.finish_reason,
        usage: hit.usage,
        quality: None,
        attempts: Vec::new(),
        observations: Vec::new(),
        fallbacks: 0,
        ttft_ms: None,
        outcome: Outcome::Success,
        system_fingerprint: None,
        tool_calls: Vec::new(),
        billed_tokens: 0,
        billed_micros: 0,
    }
}

/// Tokens and cost to settle: a cache hit used none (the reservation is released).
pub fn settlement(g: &Generation) -> (u64, u64) {
    if g.info.cached {
        (0, 0)
    } else {
        (g.billed_tokens, g.billed_micros)
    }
}

/// The request record, rewritten for a cache hit (outcome `cache_hit`, cost 0).
pub fn record(
    g: &Generation,
    call: &Call,
    entry: Tier,
    finished_ms: u64,
    variant: &str,
) -> RequestRecord {
    let mut r = RequestRecord::from_generation(
        g,
        &call.id,
        call.started_ms,
        &call.caller.id,
        &call.route,
        entry,
        finished_ms.saturating_sub(call.started_ms),
        call.request.stream,
        variant,
    );
    r.subject.clone_from(&call.request.user);
    if g.info.cached {
        r.cached = true;
        r.outcome = "cache_hit".to_owned();
        r.cost_micros = Some(0);
    }
    r
}

/// Folds the scans' provider probes not yet applied into `routing`; absent or
/// unreadable probes change nothing.
/// Folds the stored probe results into `routing`; returns whether any
/// probe was folded in (the state must then be saved, so it acts once).
fn apply_stored_probes(
    kv: &mut impl KeyValue,
    routing: &mut engine::RoutingState,
    catalog: &[CatalogEntry],
    circuit: CircuitConfig,
    warnings: &mut Vec<String>,
) -> bool {
    let probes: Vec<ProbeResult> = match kv.get(PROBES_KEY) {
        Ok(Some(bytes)) => match serde_json::from_slice(&bytes) {
            Ok(p) => p,
            Err(e) => {
                warnings.push(format!("reading provider probes failed: {e}"));
                return false;
            }
        },
        Ok(None) => return false,
        Err(e) => {
            warnings.push(format!("reading provider probes failed: {e}"));
            return false;
        }
    };
    let keys: Vec<String> = catalog.iter().map(CatalogEntry::key).collect();
    let applied_before = routing.probes_applied.clone();
    let fx = apply_probes(routing, &probes, &keys, circuit);
    if !fx.opened.is_empty() {
        warnings.push(format!(
            "failed health probe opened breakers: {}",
            fx.opened.join(", ")
        ));
    }
    routing.probes_applied != applied_before
}

fn head(g: &Generation, id: &str) -> Vec<(String, String)> {
    let mut h: Vec<(String, String)> = g
        .info
        .headers()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    h.push(("x-dol-request-id".to_owned(), id.to_owned()));
    h
}

async fn answer_from_cache(client: &mut impl Client, g: &Generation, call: &Call, created: u64) {
    if !call.request.stream {
        let body = serde_json::to_value(g.completion(&call.id, created)).unwrap_or(Value::Null);
        return client.complete(200, head(g, &call.id), body).await;
    }
    if !client.start(head(g, &call.id)).await {
        return;
    }
    for frame in engine::replay_frames(g, &call.id, created, call.request.include_usage()) {
        if !client.send(frame).await {
            return;
        }
    }
}

/// Settlement and telemetry in one write transaction; when that fails, each
/// on its own, so a telemetry row that cannot be written never costs the
/// settlement. Failures become warnings, never the caller's error. Returns
/// whether the request's telemetry row was stored. [`book`] and a trailing
/// batch that failed ([`super::bookings::write`]) book through it.
pub(crate) fn book_keep(
    sql: &mut impl SqlExecutor,
    settled: &store::Settlement<'_>,
    record: &RequestRecord,
    warnings: &mut Vec<String>,
) -> bool {
    let Err(together) = store::settle_and_record(sql, settled, record) else {
        return true;
    };
    warnings.push(format!(
        "book-keeping in one transaction failed: {together}"
    ));
    if let Err(e) = store::settle_alone(sql, settled) {
        warnings.push(format!("settling usage failed: {e}"));
    }
    match store::record(sql, record) {
        Ok(()) => true,
        Err(e) => {
            warnings.push(format!("recording telemetry failed: {e}"));
            false
        }
    }
}

/// Books a request: hands its book-keeping back to trail the answer when
/// it may ([`Booking::trailing`]: nothing reserved, no stored bodies —
/// `stores_bodies`, `true` when the org's settings could not be read — and
/// on time for the usage fold), else writes it now ([`book_keep`]). Returns
/// the booking to trail the answer, and whether the `requests` row was
/// stored now (the body log may then follow). Every route's pipeline
/// (chat, embeddings, images) books through it.
pub(crate) fn book(
    sql: &mut impl SqlExecutor,
    settled: &store::Settlement<'_>,
    record: &RequestRecord,
    stores_bodies: bool,
    warnings: &mut Vec<String>,
) -> (Option<Booking>, bool) {
    match Booking::trailing(settled, record, stores_bodies) {
        Some(booking) => (Some(booking), false),
        None => (None, book_keep(sql, settled, record, warnings)),
    }
}

/// Serves one parsed request: decides, answers through `client`, then applies
/// the book-keeping through the injected stores. An `Err` means nothing was
/// sent: the caller answers with [`PipelineError::reply`].
pub async fn serve<S, K, U, F, C, D>(
    io: Io<'_, S, K, U, F, C>,
    client: &mut D,
    call: &Call,
    settings: &Settings,
) -> Result<Served, PipelineError>
where
    S: SqlExecutor,
    K: KeyValue,
    U: Upstream,
    F: FlagEvaluator,
    C: Clock,
    D: Client,
{
    let Io {
        sql,
        kv,
        upstream,
        flags,
        clock,
        cache,
    } = io;
    let mut warnings = Vec::new();
    let request = &call.request;
    let now_ms = clock.now_ms();
    // One statement: the catalog's and the settings' stamps, and emergency mode.
    let begun = cache
        .borrow_mut()
        .begin(sql, i64::try_from(now_ms).unwrap_or(i64::MAX))
        .map_err(storage("catalog"))?;
    let catalog_entries = call.caller.routable(begun.routable, &request.model)?;
    let caller_providers = call.caller.providers(sql, settings)?;
    let providers = catalog::enabled_providers(&caller_providers);
    let mut routing = store::routing_state(kv);
    let probes_applied = apply_stored_probes(
        kv,
        &mut routing,
        &catalog_entries,
        settings.circuit,
        &mut warnings,
    );

    let emergency = begun.emergency.unwrap_or_else(|e| {
        // Unknown state: keep serving normally rather than failing every request.
        warnings.push(format!("reading emergency mode failed: {e}"));
        false
    });
    let (asked, variant) = entry_tier(emergency, request.dol.tier, || {
        let targeting = request.user.as_deref().unwrap_or(&call.caller.id);
        flags.entry_tier(
            &settings.tier_flag,
            targeting,
            &call.caller.id,
            &request.model,
        )
    });
    let entry = match asked {
        EntryTier::Fixed(t) => t,
        EntryTier::Auto => Tier::Comprehensive,
    };
    let mut plan = engine::plan(
        request,
        &catalog_entries,
        &providers,
        &routing,
        entry,
        &RoutingWeights::default(),
        now_ms,
    )?;
    let difficulty = auto_entry::classify(request);
    let selection = auto_entry_choice(
        asked,
        difficulty,
        kv,
        &plan,
        settings.quality.threshold,
        &mut warnings,
    );
    if let Some(choice) = &selection {
        plan.enter_at(choice.tier);
    }
    let mut client = WithHeaders {
        inner: client,
        extra: selection
            .iter()
            .map(|c| (auto_entry::HEADER.to_owned(), c.header_value()))
            .collect(),
    };
    let client = &mut client;

    let want = reservation(&plan, request);
    let now_secs = now_ms / 1_000;
    let reserved = call.caller.admit(sql, want, now_secs)?;

    let use_cache = settings.cache_ttl_secs > 0 && !cache::bypass(call.cache_control.as_deref());
    // Hashing the canonical request is work only a request that may use the
    // cache needs.
    let cache_key = use_cache.then(|| cache::key(request, &call.caller.id));
    let cached = cache_key
        .as_deref()
        .and_then(|key| store::cache_get(kv, key, now_ms));
    // A streamed answer goes out while it is generated; every other answer
    // waits for the book-keeping below.
    let from_cache_hit = cached.is_some();
    let generation = if let Some(hit) = cached {
        from_cache(hit)
    } else {
        let downstream = request.stream.then_some(&mut *client);
        engine::generate(
            upstream,
            downstream,
            request,
            &plan,
            settings.engine,
            settings.quality,
            &call.id,
        )
        .await
    };

    // A request admitted against a limit (or whose org stores bodies) is
    // booked before its answer is finished; one that reserved nothing is
    // handed back to trail it in its instance's batch (`bookings`: README
    // "What a crash can lose"). Failures are reported, not sent.
    let finished_ms = clock.now_ms();
    let (tokens, cost_micros) = settlement(&generation);
    let mut record = record(&generation, call, plan.entry, finished_ms, &variant);
    record.difficulty = difficulty;
    if let (Some(c), Value::Object(detail)) = (&selection, &mut record.detail) {
        // What the learner counts as an auto entry (the `detail` is
        // written anyway: no extra column, no extra write).
        detail.insert(
            "selection".to_owned(),
            serde_json::json!({"reason": c.reason.as_str()}),
        );
    }
    let enabled: Vec<&str> = providers.iter().map(|p| p.name.as_str()).collect();
    record.baseline_cost_micros = savings::baseline_cost(
        savings::baseline_entry(&catalog_entries, &settings.savings_baseline, &enabled),
        record.prompt_tokens,
        record.completion_tokens,
    );
    let org_id = call.caller.org.as_ref().map(|o| o.id.as_str());
    let settled = store::Settlement {
        key_id: &call.caller.id,
        org_id,
        want: reserved,
        reserved_at_secs: now_secs,
        tokens,
        cost_micros,
        now_secs: finished_ms / 1_000,
    };
    // The key's org decides whether bodies are stored and how they are
    // masked; keys of no org use the default org's settings.
    let org = org_id.unwrap_or(crate::privacy::DEFAULT_ORG);
    let org_settings = cache.borrow_mut().org_settings(sql, org);
    // Unreadable settings: booked now, where the body log reports them.
    let stores_bodies = org_settings.as_ref().map_or(true, |s| s.store_bodies);
    let (trailing, recorded_now) = book(sql, &settled, &record, stores_bodies, &mut warnings);
    if recorded_now {
        let logged = crate::privacy::Logged {
            request_id: &record.id,
            subject: request.user.as_deref(),
            ts_ms: i64::try_from(call.started_ms).unwrap_or(i64::MAX),
            prompt: &|| serde_json::to_value(&request.messages).unwrap_or(Value::Null),
            answer: &generation.content,
        };
        let logged_with = org_settings
            .and_then(|settings| crate::privacy::log_request_with(sql, &settings, org, &logged));
        if let Err(e) = logged_with {
            warnings.push(format!("writing the request log failed: {e}"));
        }
    }
    if !generation.info.cached {
        let urgent = routing.apply(
            &caller_providers.shared_observations(&generation.observations),
            ROUTING_ALPHA,
            settings.circuit,
            finished_ms,
        ) || probes_applied;
        if let Err(e) = store::save_routing_state(kv, &mut routing, urgent, finished_ms) {
            warnings.push(format!("storing the routing state failed: {e}"));
        }
        // The cache keeps text; an answer made of tool calls is not replayed from it.
        if let Some(cache_key) = &cache_key
            && generation.outcome == Outcome::Success
            && generation.tool_calls.is_empty()
        {
            let entry = CacheEntry {
                content: generation.content.clone(),
                finish_reason: generation.finish_reason,
                usage: generation.usage,
                info: generation.info.clone(),
                stored_at_ms: finished_ms,
                expires_at_ms: finished_ms + settings.cache_ttl_secs * 1_000,
            };
            if let Err(e) = store::cache_put(kv, cache_key, &entry) {
                warnings.push(format!("storing the cache entry failed: {e}"));
            }
        }
    }
    if from_cache_hit {
        answer_from_cache(client, &generation, call, clock.now_ms() / 1_000).await;
    } else if !request.stream {
        let created = clock.now_ms() / 1_000;
        let body =
            serde_json::to_value(generation.completion(&call.id, created)).unwrap_or(Value::Null);
        client
            .complete(200, head(&generation, &call.id), body)
            .await;
    }

    Ok(Served {
        generation,
        reservation: want,
        record,
        trailing,
        warnings,
    })
}
