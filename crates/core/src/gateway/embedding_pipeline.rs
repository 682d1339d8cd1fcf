//! One `POST /v1/embeddings` request over injected I/O (issue 15): the
//! candidates (catalog models with the `embeddings` capability at enabled
//! providers that can take the input, ranked by the same router as chat),
//! the worst-case reservation against the key's limits, the cache by exact
//! input, attempts with retries and fallback, cost, routing state and the
//! request record.
//!
//! Fallback policy: vectors of different models are not comparable, so a
//! pinned model falls back only among providers serving that same model and
//! fails with an error when all fail; `auto` falls back across models and at
//! the end to the offline provider (labelled, outcome `offline`).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::attempts::{self, Job, Tried, bad, failed};
use super::bookings::Booking;
use super::catalog;
use super::cost::{self, Cost};
use super::embeddings::{self, Embedded, EmbeddingRequest};
use super::engine::{PlanError, Target, Upstream, is_auto_model};
use super::keys::Reservation;
use super::offline;
use super::openai::{DolInfo, ErrorType};
use super::pipeline::{Caller, Clock, PipelineError, ROUTING_ALPHA, Settings, book};
use super::providers::ProviderFailure;
use super::providers::embed::{self, Unsupported};
use super::routing::{Candidate, CatalogEntry, RouteRequest, RoutingWeights, route};
use super::store;
use super::telemetry::RequestRecord;
use super::tiers::Tier;
use crate::storage::{KeyValue, SqlExecutor};

/// The route label of the request record.
pub const ROUTE: &str = "embeddings";

/// One parsed embeddings request.
#[derive(Debug, Clone)]
pub struct EmbedCall {
    /// Who asks.
    pub caller: Caller,
    /// The validated request.
    pub request: EmbeddingRequest,
    /// The `Cache-Control` request header.
    pub cache_control: Option<String>,
    /// The request id.
    pub id: String,
    /// Unix ms when the request arrived.
    pub started_ms: u64,
}

/// The answer to send and what was recorded.
#[derive(Debug, Clone)]
pub struct EmbedServed {
    /// Response headers (`x-dol-*`) and OpenAI's response body, or the
    /// error to send (every provider of a pinned model failed).
    pub answer: Result<(Vec<(String, String)>, Value), PipelineError>,
    /// The request record (written before the answer, or with
    /// [`EmbedServed::trailing`]).
    pub record: RequestRecord,
    /// The book-keeping the caller writes after the answer, in its
    /// instance's batch ([`super::bookings`]); `None` when it was written.
    pub trailing: Option<Booking>,
    /// Book-keeping failures (logged, not sent).
    pub warnings: Vec<String>,
}

/// A cached answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CachedEmbedding {
    embedded: Embedded,
    info: DolInfo,
    prompt_tokens: u64,
    expires_at_ms: u64,
}

/// The enabled candidates for `req`, best first, or the refusal.
pub fn candidates(
    req: &EmbeddingRequest,
    catalog: &[CatalogEntry],
    settings: &Settings,
    routing: &super::engine::RoutingState,
    now_ms: u64,
) -> Result<Vec<Target>, PipelineError> {
    if req.model == embeddings::OFFLINE_MODEL {
        return Ok(Vec::new());
    }
    let pinned = !is_auto_model(&req.model);
    let named = |e: &&CatalogEntry| e.model == req.model || e.key() == req.model;
    if pinned && !catalog.iter().any(|e| named(&e)) {
        return Err(PlanError::UnknownModel(req.model.clone()).into());
    }
    let embedding: Vec<&CatalogEntry> = catalog
        .iter()
        .filter(|e| e.capabilities.contains(embeddings::CAPABILITY))
        .filter(|e| !pinned || named(e))
        .collect();
    if pinned && embedding.is_empty() {
        return Err(bad(
            &format!(
                "The model `{}` is not an embedding model (catalog capability `embeddings`).",
                req.model
            ),
            "model",
        ));
    }
    let providers = catalog::enabled_providers(&settings.providers);
    let mut refusals: Vec<Unsupported> = Vec::new();
    let usable: Vec<(&CatalogEntry, super::providers::ProviderConfig)> = embedding
        .into_iter()
        .filter_map(|e| {
            let p = providers.iter().find(|p| p.name == e.provider)?;
            match embed::supports(p, req) {
                Ok(()) => Some((e, p.clone())),
                Err(u) => {
                    refusals.push(u);
                    None
                }
            }
        })
        .collect();
    if pinned && usable.is_empty() {
        return Err(match refusals.first() {
            Some(u) => bad(&u.to_string(), "input"),
            None => failed(
                &format!("No configured provider serves the model `{}`.", req.model),
                ErrorType::Api,
                "model_not_available",
            ),
        });
    }
    let list: Vec<Candidate<'_>> = usable
        .iter()
        .map(|(e, _)| {
            let s = routing.entries.get(&e.key());
            Candidate {
                entry: e,
                stats: s.map(|s| &s.stats),
                breaker: s.map(|s| &s.breaker),
            }
        })
        .collect();
    let route_req = RouteRequest {
        tier: None,
        // Each input is embedded on its own: the longest must fit the window.
        input_tokens: req.longest_input_tokens(),
        output_tokens: 0,
        capabilities: BTreeSet::from([embeddings::CAPABILITY.to_owned()]),
        max_cost_micros: None,
        max_latency_ms: None,
    };
    let decision = route(&list, &route_req, &RoutingWeights::default(), now_ms);
    let mut ranked: Vec<Target> = decision
        .ranked
        .iter()
        .filter_map(|r| usable.get(r.index))
        .map(|(e, p)| Target {
            entry: (*e).clone(),
            provider: p.clone(),
        })
        .collect();
    // A pinned model whose breakers are all open is still tried: refusing
    // outright would turn a flaky provider into a certain failure.
    if pinned && ranked.is_empty() {
        ranked = usable
            .into_iter()
            .map(|(e, p)| Target {
                entry: e.clone(),
                provider: p,
            })
            .collect();
    }
    Ok(ranked)
}

/// The cost of `tokens` input tokens at `entry`'s price (unknown when unpriced).
pub fn cost_of(tokens: u64, entry: &CatalogEntry) -> Cost {
    cost::request_cost(tokens, 0, entry.input_price, entry.output_price)
}

/// What a request may spend: its tokens at the dearest priced candidate.
pub fn reservation(req: &EmbeddingRequest, targets: &[Target]) -> Reservation {
    let tokens = req.approx_tokens();
    let cost = targets
        .iter()
        .filter_map(|t| cost_of(tokens, &t.entry).micros())
        .max()
        .unwrap_or(0);
    Reservation {
        tokens,
        cost_micros: cost,
    }
}

/// One embeddings request as an attempt: one call per batch the provider
/// takes, in order.
struct EmbedJob<'a>(&'a EmbeddingRequest);

impl Job for EmbedJob<'_> {
    type Output = Embedded;

    async fn attempt<U: Upstream>(
        &self,
        upstream: &mut U,
        t: &Target,
        timeout_ms: u64,
    ) -> Result<Embedded, ProviderFailure> {
        let req = self.0;
        let size = embed::max_batch(t.provider.kind).max(1);
        if req.inputs.len() <= size {
            return call(upstream, t, req, timeout_ms).await;
        }
        let mut all = Embedded {
            vectors: Vec::with_capacity(req.inputs.len()),
            prompt_tokens: Some(0),
        };
        for chunk in req.inputs.chunks(size) {
            let part = EmbeddingRequest {
                inputs: chunk.to_vec(),
                ..req.clone()
            };
            let e = call(upstream, t, &part, timeout_ms).await?;
            all.vectors.extend(e.vectors);
            // One batch without a count makes the total unknown (then estimated).
            all.prompt_tokens = all.prompt_tokens.zip(e.prompt_tokens).map(|(a, b)| a + b);
        }
        Ok(all)
    }
}

/// One provider call for `req`.
async fn call<U: Upstream>(
    upstream: &mut U,
    t: &Target,
    req: &EmbeddingRequest,
    timeout_ms: u64,
) -> Result<Embedded, ProviderFailure> {
    let spec = embed::embed_request(&t.provider, req, &t.entry.model)
        .map_err(|u| ProviderFailure::malformed(&u.to_string()))?;
    let kind = t.provider.kind;
    let inputs = req.inputs.len();
    attempts::exchange(
        upstream,
        t,
        &spec,
        timeout_ms,
        |status, headers, body, now| {
            embed::parse_embed_response(kind, status, headers, body, inputs, now)
        },
    )
    .await
}

/// What the attempts produced.
struct Outcome {
    embedded: Embedded,
    info: DolInfo,
    prompt_tokens: u64,
    outcome: &'static str,
    tried: Tried,
}

fn provider_outcome(
    req: &EmbeddingRequest,
    t: &Target,
    embedded: Embedded,
    tried: Tried,
) -> Outcome {
    let tokens = embedded
        .prompt_tokens
        .unwrap_or_else(|| req.approx_tokens());
    let cost = cost_of(tokens, &t.entry);
    Outcome {
        info: DolInfo {
            tier: t.entry.tier,
            provider: t.entry.provider.clone(),
            model: t.entry.model.clone(),
            attempts: tried.count(),
            quality: None,
            cost_micros: cost.micros(),
            cost_unknown: cost.is_unknown(),
            cached: false,
        },
        embedded,
        prompt_tokens: tokens,
        outcome: "success",
        tried,
    }
}

fn offline_outcome(req: &EmbeddingRequest, outcome: &'static str, tried: Tried) -> Outcome {
    Outcome {
        info: DolInfo {
            tier: Tier::Basic,
            provider: offline::PROVIDER.to_owned(),
            model: embeddings::OFFLINE_MODEL.to_owned(),
            attempts: tried.count(),
            quality: None,
            // The offline provider is free by construction, not by a missing price.
            cost_micros: Some(0),
            cost_unknown: false,
            cached: false,
        },
        embedded: embeddings::offline(req),
        prompt_tokens: req.approx_tokens(),
        outcome,
        tried,
    }
}

/// Serves one parsed embeddings request. An `Err` is a refusal before any
/// provider was asked (nothing recorded); after that the answer, success or
/// failure, is in [`EmbedServed::answer`] and the request is recorded.
/// Errors render with [`PipelineError::reply`].
pub async fn serve<S: SqlExecutor, K: KeyValue, U: Upstream, C: Clock>(
    sql: &mut S,
    kv: &mut K,
    upstream: &mut U,
    clock: &C,
    call: &EmbedCall,
    settings: &Settings,
) -> Result<EmbedServed, PipelineError> {
    let req = &call.request;
    let now_ms = clock.now_ms();
    let (catalog, settings) = call.caller.scope(sql, settings, &req.model, now_ms)?;
    let settings = &settings;
    let mut routing = store::routing_state(kv);
    let targets = candidates(req, &catalog, settings, &routing, now_ms)?;
    let want = reservation(req, &targets);
    let now_secs = now_ms / 1_000;
    let reserved = call.caller.admit(sql, want, now_secs)?;
    let mut warnings = Vec::new();
    let key = embeddings::cache_key(req, &req.model, &call.caller.id);
    let use_cache =
        settings.cache_ttl_secs > 0 && !super::cache::bypass(call.cache_control.as_deref());
    let hit = use_cache
        .then(|| kv.get(&key).ok().flatten())
        .flatten()
        .and_then(|b| serde_json::from_slice::<CachedEmbedding>(&b).ok())
        .filter(|c| c.expires_at_ms > now_ms);
    let result = if let Some(c) = hit {
        let mut info = c.info;
        info.cached = true;
        info.attempts = 0;
        Ok(Outcome {
            embedded: c.embedded,
            info,
            prompt_tokens: c.prompt_tokens,
            outcome: "cache_hit",
            tried: Tried::default(),
        })
    } else if targets.is_empty() {
        Ok(offline_outcome(req, "success", Tried::default()))
    } else {
        match attempts::run(upstream, &EmbedJob(req), &targets, settings).await {
            Ok((embedded, i, tried)) => Ok(provider_outcome(req, &targets[i], embedded, tried)),
            Err((_, tried)) if is_auto_model(&req.model) => {
                Ok(offline_outcome(req, "offline", tried))
            }
            Err(e) => Err(e),
        }
    };
    let finished_ms = clock.now_ms();
    let observations = match &result {
        Ok(o) => o.tried.observations.clone(),
        Err((_, tried)) => tried.observations.clone(),
    };
    if !observations.is_empty() {
        let observations = settings.providers.shared_observations(&observations);
        let urgent = routing.apply(&observations, ROUTING_ALPHA, settings.circuit, finished_ms);
        if let Err(e) = store::save_routing_state(kv, &mut routing, urgent, finished_ms) {
            warnings.push(format!("storing the routing state failed: {e}"));
        }
    }
    let (tokens, cost_micros) = match &result {
        Ok(o) if !o.info.cached => (o.prompt_tokens, o.info.cost_micros.unwrap_or(0)),
        _ => (0, 0),
    };
    let mut record = RequestRecord {
        id: call.id.clone(),
        ts_ms: call.started_ms,
        key_id: call.caller.id.clone(),
        route: ROUTE.to_owned(),
        tier: Tier::Basic,
        entry_tier: Tier::Basic,
        provider: String::new(),
        model: req.model.clone(),
        attempts: 0,
        latency_ms: finished_ms.saturating_sub(call.started_ms),
        ttft_ms: None,
        prompt_tokens: 0,
        completion_tokens: 0,
        cost_micros: None,
        // Embeddings are not compared with a chat baseline: they save nothing.
        baseline_cost_micros: None,
        difficulty: None,
        subject: req.user.clone(),
        quality: None,
        outcome: String::new(),
        fallbacks: 0,
        cached: false,
        stream: false,
        variant: "-".to_owned(),
        detail: Value::Null,
    };
    let served = match result {
        Ok(o) => {
            record.tier = o.info.tier;
            record.entry_tier = targets.first().map_or(Tier::Basic, |t| t.entry.tier);
            record.provider = o.info.provider.clone();
            record.model = o.info.model.clone();
            record.attempts = o.info.attempts;
            record.prompt_tokens = o.prompt_tokens;
            record.cost_micros = if o.info.cached {
                Some(0)
            } else {
                o.info.cost_micros.filter(|_| !o.info.cost_unknown)
            };
            record.outcome = o.outcome.to_owned();
            record.fallbacks = o.tried.fallbacks;
            record.cached = o.info.cached;
            record.detail = json!({"attempts": o.tried.attempts, "inputs": req.inputs.len()});
            // Offline vectors are not cached: once a provider is configured,
            // `auto` must reach it rather than replay the stand-in.
            if use_cache
                && !o.info.cached
                && o.outcome == "success"
                && o.info.provider != offline::PROVIDER
            {
                let entry = CachedEmbedding {
                    embedded: o.embedded.clone(),
                    info: o.info.clone(),
                    prompt_tokens: o.prompt_tokens,
                    expires_at_ms: finished_ms + settings.cache_ttl_secs * 1_000,
                };
                let bytes = serde_json::to_vec(&entry).unwrap_or_default();
                if let Err(e) = kv.set(&key, &bytes) {
                    warnings.push(format!("storing the cache entry failed: {e}"));
                }
            }
            let body = embeddings::response_body(
                &o.embedded,
                &o.info.model,
                req.encoding,
                o.prompt_tokens,
            );
            Ok((attempts::headers(&o.info, &call.id), body))
        }
        Err((f, tried)) => {
            record.entry_tier = targets.first().map_or(Tier::Basic, |t| t.entry.tier);
            record.provider = targets
                .first()
                .map(|t| t.entry.provider.clone())
                .unwrap_or_default();
            record.attempts = tried.count();
            // `failed` counts as an error in health and metrics, like the offline fallback.
            record.outcome = "failed".to_owned();
            record.detail = json!({"attempts": tried.attempts, "failed": f.class.as_str()});
            Err(attempts::failure_error(&req.model, &f))
        }
    };
    let settled = store::Settlement {
        key_id: &call.caller.id,
        org_id: call.caller.org.as_ref().map(|o| o.id.as_str()),
        want: reserved,
        reserved_at_secs: now_secs,
        tokens,
        cost_micros,
        now_secs: finished_ms / 1_000,
    };
    let org = call
        .caller
        .org
        .as_ref()
        .map_or(crate::privacy::DEFAULT_ORG, |o| o.id.as_str());
    let org_settings = crate::privacy::load_settings(sql, org);
    // Unreadable settings: booked now, where the input log reports them.
    let stores_bodies = org_settings.as_ref().map_or(true, |s| s.store_bodies);
    let (trailing, recorded_now) = book(sql, &settled, &record, stores_bodies, &mut warnings);
    if recorded_now {
        let logged =
            org_settings.and_then(|settings| log_inputs(sql, &settings, org, call, req, &record));
        if let Err(e) = logged {
            warnings.push(format!("writing the request log failed: {e}"));
        }
    }
    Ok(EmbedServed {
        answer: served,
        record,
        trailing,
        warnings,
    })
}

/// The request log of an embedding request, as for chat
/// ([`crate::privacy::log_request`]): its subject on the request row and,
/// when the key's org opted in, the inputs masked (texts, or token ids as
/// given). The vectors are never stored: the answer is only how many were
/// sent back.
fn log_inputs(
    sql: &mut impl SqlExecutor,
    settings: &crate::privacy::OrgSettings,
    org: &str,
    call: &EmbedCall,
    req: &EmbeddingRequest,
    record: &RequestRecord,
) -> Result<(), crate::storage::StatementError> {
    let answer = if record.outcome == "failed" {
        String::new()
    } else {
        format!("[{} embedding vectors, not stored]", req.inputs.len())
    };
    let logged = crate::privacy::Logged {
        request_id: &record.id,
        subject: req.user.as_deref(),
        ts_ms: i64::try_from(call.started_ms).unwrap_or(i64::MAX),
        prompt: &|| serde_json::to_value(&req.inputs).unwrap_or(Value::Null),
        answer: &answer,
    };
    crate::privacy::log_request_with(sql, settings, org, &logged)
}

#[cfg(test)]
#[path = "embedding_pipeline_tests.rs"]
pub(super) mod tests;
