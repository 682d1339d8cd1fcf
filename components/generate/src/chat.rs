//! `POST /v1/chat/completions` and `POST /v1/generate`: authenticate, parse,
//! plan, admit, answer from the cache or run the engine, then settle, record
//! and respond. Every decision is `dol_core::gateway`'s.

use dol_core::auth;
use dol_core::gateway::cache::{self, CacheEntry};
use dol_core::gateway::catalog;
use dol_core::gateway::engine::{self, Generation, Outcome, Plan};
use dol_core::gateway::keys::{Admission, KeyLimits, Reservation};
use dol_core::gateway::openai::{ChatRequest, ErrorBody, ErrorType};
use dol_core::gateway::routing::RoutingWeights;
use dol_core::gateway::telemetry::RequestRecord;
use dol_core::gateway::templates;
use dol_core::gateway::tiers::Tier;
use serde_json::{Map, Value};
use spin_sdk::http::{Response, ResponseOutparam};

use crate::http::Incoming;
use crate::net::{self, SseClient, WasiUpstream};
use dol_spin_platform as platform;

use crate::{config, flags, store};

/// EWMA smoothing of observed latency, success and quality (≈ the last 10 attempts weigh most).
const ROUTING_ALPHA: f64 = 0.2;

/// An OpenAI-shaped error response.
pub fn openai_error(
    kind: ErrorType,
    message: &str,
    code: Option<&str>,
    extra: &[(&str, String)],
) -> Response {
    let body = ErrorBody::new(message, kind, None, code.map(str::to_owned));
    let value = serde_json::to_value(&body).unwrap_or(Value::Null);
    platform::json_with(body.status(), &value, extra)
}

/// OpenAI's generic 500, with no internals.
pub fn server_error() -> Response {
    openai_error(
        ErrorType::Server,
        "The server had an error while processing your request.",
        None,
        &[],
    )
}

/// Logs `err` under `context` and answers [`server_error`].
pub fn internal(context: &str, err: &anyhow::Error) -> Response {
    eprintln!("generate: {context}: {err:#}");
    openai_error(
        ErrorType::Server,
        "The server had an error while processing your request.",
        None,
        &[],
    )
}

/// The caller, after authentication.
pub struct Caller {
    /// Key id (`bootstrap` for the configured bootstrap key).
    pub id: String,
    /// Its limits.
    pub limits: KeyLimits,
}

/// Authenticates the request's key (`Authorization: Bearer` or `X-API-Key`).
pub fn authenticate(
    req: &Incoming,
    db: &spin_sdk::sqlite::Connection,
    bootstrap: &str,
) -> Result<Caller, Response> {
    let presented = auth::bearer(req.header("authorization")).or_else(|| req.header("x-api-key"));
    let Some(key) = presented.filter(|k| !k.is_empty()) else {
        return Err(openai_error(
            ErrorType::Authentication,
            "You didn't provide an API key. Send it as Authorization: Bearer <key> (create one with POST /admin/keys).",
            Some("missing_api_key"),
            &[("www-authenticate", "Bearer".to_owned())],
        ));
    };
    if !bootstrap.is_empty() && auth::constant_time_eq(key.as_bytes(), bootstrap.as_bytes()) {
        return Ok(Caller {
            id: "bootstrap".to_owned(),
            limits: KeyLimits::default(),
        });
    }
    match store::find_key(db, key) {
        Ok(Some(row)) => Ok(Caller {
            id: row.id,
            limits: row.limits,
        }),
        Ok(None) => Err(openai_error(
            ErrorType::Authentication,
            "Incorrect or revoked API key provided.",
            Some("invalid_api_key"),
            &[("www-authenticate", "Bearer".to_owned())],
        )),
        Err(e) => Err(internal("key lookup", &e)),
    }
}

/// What the route asked for, before planning.
pub struct Job {
    /// The validated request.
    pub request: ChatRequest,
    /// `chat` or `generate:<name>@<version>`.
    pub route: String,
}

/// Parses a chat completion body.
pub fn parse_chat(body: &[u8]) -> Result<Job, Response> {
    ChatRequest::from_json(body)
        .map(|request| Job {
            request,
            route: "chat".to_owned(),
        })
        .map_err(|e| {
            let body = e.to_error_body();
            platform::json(400, &serde_json::to_value(&body).unwrap_or(Value::Null))
        })
}

fn bad_request(message: &str, param: &str) -> Response {
    let body = ErrorBody::new(
        message,
        ErrorType::InvalidRequest,
        Some(param.to_owned()),
        None,
    );
    platform::json(400, &serde_json::to_value(&body).unwrap_or(Value::Null))
}

/// Renders a `POST /v1/generate` body (`{"template", "version"?, "variables"?, …request fields}`).
pub fn parse_generate(body: &[u8], db: &spin_sdk::sqlite::Connection) -> Result<Job, Response> {
    let Ok(Value::Object(mut fields)) = serde_json::from_slice::<Value>(body) else {
        return Err(bad_request("body must be a JSON object", "body"));
    };
    let Some(Value::String(name)) = fields.remove("template") else {
        return Err(bad_request(
            "`template` (the template name) is required",
            "template",
        ));
    };
    let version = match fields.remove("version") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_i64().filter(|v| *v > 0) {
            Some(v) => Some(v),
            None => {
                return Err(bad_request(
                    "`version` must be a positive integer",
                    "version",
                ));
            }
        },
    };
    let variables = match fields.remove("variables") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(bad_request("`variables` must be an object", "variables")),
    };
    if fields.contains_key("messages") {
        return Err(bad_request(
            "`messages` come from the template; send `variables` instead",
            "messages",
        ));
    }
    let (version, spec) = match store::get_template(db, &name, version) {
        Ok(Some(found)) => found,
        Ok(None) => {
            return Err(openai_error(
                ErrorType::NotFound,
                &format!("No template `{name}` (or no such version)."),
                Some("template_not_found"),
                &[],
            ));
        }
        Err(e) => return Err(internal("template lookup", &e)),
    };
    let messages = templates::render(&spec, &variables)
        .map_err(|e| bad_request(&e.to_string(), "variables"))?;
    let mut merged = spec.defaults.clone();
    merged.extend(fields);
    merged
        .entry("model")
        .or_insert_with(|| Value::String("auto".to_owned()));
    merged.insert(
        "messages".to_owned(),
        serde_json::to_value(&messages).unwrap_or(Value::Null),
    );
    let request = ChatRequest::from_value(&Value::Object(merged)).map_err(|e| {
        let body = e.to_error_body();
        platform::json(400, &serde_json::to_value(&body).unwrap_or(Value::Null))
    })?;
    Ok(Job {
        request,
        route: format!("generate:{name}@{version}"),
    })
}

fn emergency_active(db: &spin_sdk::sqlite::Connection) -> bool {
    dol_core::observe::store::emergency_active(&mut platform::SpinSql(db)).unwrap_or_else(|e| {
        // Unknown state: keep serving normally rather than failing every request.
        eprintln!("generate: reading emergency mode failed: {e}");
        false
    })
}

/// The worst-case cost of the plan's candidates (what a request may spend).
fn reservation(plan: &Plan, request: &ChatRequest) -> Reservation {
    let req = dol_core::gateway::routing::RouteRequest::from_chat(
        request,
        plan.entry,
        engine::DEFAULT_OUTPUT_TOKENS,
    );
    let cost = plan
        .tiers
        .iter()
        .flatten()
        .filter_map(|t| {
            dol_core::gateway::cost::request_cost(
                req.input_tokens,
                req.output_tokens,
                t.entry.input_price,
                t.entry.output_price,
            )
            .micros()
        })
        .max()
        .unwrap_or(0);
    Reservation {
        tokens: req.input_tokens + req.output_tokens,
        cost_micros: cost,
    }
}

fn random_id() -> String {
    let a = wasi::random::random::get_random_u64();
    let b = wasi::random::random::get_random_u64();
    format!("chatcmpl-{a:016x}{b:08x}")
}

/// Serves one generation request end to end.
#[allow(
    clippy::too_many_lines,
    reason = "one linear request flow; each step calls the core"
)]
pub async fn serve(req: Incoming, out: ResponseOutparam, generate_route: bool) {
    let started_ms = u64::try_from(platform::now_ms()).unwrap_or(0);
    let settings = match config::load() {
        Ok(s) => s,
        Err(message) => {
            eprintln!("generate: configuration error: {message}");
            return net::respond(
                out,
                openai_error(
                    ErrorType::Server,
                    &format!("gateway misconfigured: {message}"),
                    None,
                    &[],
                ),
            )
            .await;
        }
    };
    let (db, kv) = match (store::db(), store::kv()) {
        (Ok(db), Ok(kv)) => (db, kv),
        (Err(e), _) | (_, Err(e)) => return net::respond(out, internal("storage", &e)).await,
    };
    let caller = match authenticate(&req, &db, &settings.bootstrap_key) {
        Ok(c) => c,
        Err(response) => return net::respond(out, response).await,
    };
    let job = if generate_route {
        parse_generate(&req.body, &db)
    } else {
        parse_chat(&req.body)
    };
    let job = match job {
        Ok(j) => j,
        Err(response) => return net::respond(out, response).await,
    };
    let request = job.request;
    let now_ms = u64::try_from(platform::now_ms()).unwrap_or(0);
    let catalog_entries = match store::routable_catalog(&db, platform::now_ms()) {
        Ok(c) => c,
        Err(e) => return net::respond(out, internal("catalog", &e)).await,
    };
    let providers = catalog::enabled_providers(&settings.providers);
    let mut routing = store::routing_state(&kv);
    crate::probes::apply(&kv, &mut routing, &catalog_entries, settings.circuit);

    // Entry tier: emergency mode, then the client's hint, then the flag.
    let targeting = request.user.clone().unwrap_or_else(|| caller.id.clone());
    let (entry, variant) = if emergency_active(&db) {
        (Tier::Basic, "emergency".to_owned())
    } else if let Some(t) = request.dol.tier {
        (t, "-".to_owned())
    } else {
        flags::entry_tier(&settings.tier_flag, &targeting, &caller.id, &request.model)
            .unwrap_or((Tier::Comprehensive, "-".to_owned()))
    };
    let plan = match engine::plan(
        &request,
        &catalog_entries,
        &providers,
        &routing,
        entry,
        &RoutingWeights::default(),
        now_ms,
    ) {
        Ok(p) => p,
        Err(e) => {
            return net::respond(
                out,
                openai_error(
                    ErrorType::NotFound,
                    &e.to_string(),
                    Some("model_not_found"),
                    &[],
                ),
            )
            .await;
        }
    };

    let want = reservation(&plan, &request);
    let now_secs = now_ms / 1_000;
    match store::admit(&db, &caller.id, &caller.limits, want, now_secs) {
        Ok(Admission::Admit(_)) => {}
        Ok(Admission::Refuse {
            limit,
            retry_after_secs,
            message,
        }) => {
            let code = format!(
                "{}_limit_exceeded",
                serde_json::to_value(limit)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            );
            return net::respond(
                out,
                openai_error(
                    ErrorType::RateLimit,
                    &message,
                    Some(&code),
                    &[("retry-after", retry_after_secs.to_string())],
                ),
            )
            .await;
        }
        Err(e) => return net::respond(out, internal("admission", &e)).await,
    }

    let id = random_id();
    let cache_key = cache::key(&request, &caller.id);
    let use_cache = settings.cache_ttl_secs > 0 && !cache::bypass(req.header("cache-control"));
    let cached = use_cache
        .then(|| store::cache_get(&kv, &cache_key, now_ms))
        .flatten();
    let generation = if let Some(hit) = cached {
        let g = from_cache(hit);
        if request.stream {
            let mut client = SseClient::new(out);
            stream_cached(&mut client, &g, &id, &request).await;
        } else {
            respond_completion(out, &g, &id).await;
        }
        g
    } else if request.stream {
        let mut upstream = WasiUpstream::new();
        let mut client = SseClient::new(out);
        let g = engine::generate(
            &mut upstream,
            Some(&mut client),
            &request,
            &plan,
            settings.engine,
            settings.quality,
            &id,
        )
        .await;
        if let Some(unstarted) = client.take_unstarted() {
            // Defensive: the engine always starts a stream; never leave the client without an answer.
            net::respond(unstarted, server_error()).await;
        }
        g
    } else {
        let mut upstream = WasiUpstream::new();
        let g = engine::generate::<_, SseClient>(
            &mut upstream,
            None,
            &request,
            &plan,
            settings.engine,
            settings.quality,
            &id,
        )
        .await;
        respond_completion(out, &g, &id).await;
        g
    };

    // Book-keeping after the answer went out: failures here are logged, not sent.
    let finished_ms = u64::try_from(platform::now_ms()).unwrap_or(0);
    let cost = if generation.info.cached {
        0
    } else {
        generation.info.cost_micros.unwrap_or(0)
    };
    let tokens = if generation.info.cached {
        0
    } else {
        generation.usage.total_tokens
    };
    if let Err(e) = store::settle(
        &db,
        &caller.id,
        want,
        now_secs,
        tokens,
        cost,
        finished_ms / 1_000,
    ) {
        eprintln!("generate: settling usage failed: {e:#}");
    }
    if !generation.info.cached {
        routing.apply(
            &generation.observations,
            ROUTING_ALPHA,
            settings.circuit,
            finished_ms,
        );
        if let Err(e) = store::set_routing_state(&kv, &routing) {
            eprintln!("generate: {e:#}");
        }
        if use_cache && generation.outcome == Outcome::Success {
            let entry = CacheEntry {
                content: generation.content.clone(),
                finish_reason: generation.finish_reason,
                usage: generation.usage,
                info: generation.info.clone(),
                stored_at_ms: finished_ms,
                expires_at_ms: finished_ms + settings.cache_ttl_secs * 1_000,
            };
            if let Err(e) = store::cache_put(&kv, &cache_key, &entry) {
                eprintln!("generate: {e:#}");
            }
        }
    }
    let mut record = RequestRecord::from_generation(
        &generation,
        &id,
        started_ms,
        &caller.id,
        &job.route,
        plan.entry,
        finished_ms.saturating_sub(started_ms),
        request.stream,
        &variant,
    );
    if generation.info.cached {
        record.cached = true;
        record.outcome = "cache_hit".to_owned();
        record.cost_micros = Some(0);
    }
    if let Err(e) = store::record(&db, &record) {
        eprintln!("generate: recording telemetry failed: {e:#}");
    }
}

fn from_cache(hit: CacheEntry) -> Generation {
    let mut info = hit.info;
    info.cached = true;
    info.attempts = 0;
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
    }
}

async fn respond_completion(out: ResponseOutparam, g: &Generation, id: &str) {
    let created = u64::try_from(platform::now_ms()).unwrap_or(0) / 1_000;
    let body = serde_json::to_value(g.completion(id, created)).unwrap_or(Value::Null);
    let mut headers: Vec<(&str, String)> = g.info.headers();
    headers.push(("x-dol-request-id", id.to_owned()));
    net::respond(out, platform::json_with(200, &body, &headers)).await;
}

async fn stream_cached(client: &mut SseClient, g: &Generation, id: &str, request: &ChatRequest) {
    use dol_core::gateway::engine::Downstream as _;
    let created = u64::try_from(platform::now_ms()).unwrap_or(0) / 1_000;
    let mut head: Vec<(String, String)> = g
        .info
        .headers()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    head.push(("x-dol-request-id".to_owned(), id.to_owned()));
    if !client.start(head).await {
        return;
    }
    for frame in engine::replay_frames(g, id, created, request.include_usage()) {
        if !client.send(frame).await {
            return;
        }
    }
}
