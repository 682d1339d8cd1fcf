//! One `POST /v1/images/generations` request over injected I/O (issue 15):
//! the candidates (catalog models with the `images` capability at enabled
//! providers that can take the request), ranked by the same router as chat
//! with each model priced per image for this request's size and quality,
//! the worst-case reservation against the key's limits, attempts with
//! retries and fallback, cost per image, routing state and the request
//! record. Images are not cached: asking again means asking for new ones.
//!
//! Fallback policy: a pinned model falls back only among providers serving
//! that model; `auto` falls back across image models. There is no offline
//! image model: when every candidate fails, the caller gets the error.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::attempts::{self, Job, bad, failed};
use super::bookings::Booking;
use super::catalog;
use super::cost::Cost;
use super::engine::{PlanError, RoutingState, Target, Upstream, is_auto_model};
use super::images::{self, Image, ImageRequest};
use super::keys::Reservation;
use super::openai::{DolInfo, ErrorType};
use super::pipeline::{Caller, Clock, PipelineError, ROUTING_ALPHA, Settings, book};
use super::providers::image::{self as wire, Unsupported};
use super::providers::{ProviderConfig, ProviderFailure};
use super::routing::{Candidate, CatalogEntry, RouteRequest, RoutingWeights, route};
use super::store;
use super::telemetry::RequestRecord;
use super::tiers::Tier;
use crate::storage::{KeyValue, SqlExecutor};

/// The route label of the request record.
pub const ROUTE: &str = "images";

/// One parsed image request.
#[derive(Debug, Clone)]
pub struct ImageCall {
    /// Who asks.
    pub caller: Caller,
    /// The validated request.
    pub request: ImageRequest,
    /// The request id.
    pub id: String,
    /// Unix ms when the request arrived.
    pub started_ms: u64,
}

/// The answer to send and what was recorded.
#[derive(Debug, Clone)]
pub struct ImageServed {
    /// Response headers (`x-dol-*`) and OpenAI's response body, or the
    /// error to send (every candidate failed).
    pub answer: Result<(Vec<(String, String)>, Value), PipelineError>,
    /// The request record (written before the answer, or with
    /// [`ImageServed::trailing`]).
    pub record: RequestRecord,
    /// The book-keeping the caller writes after the answer, in its
    /// instance's batch ([`super::bookings`]); `None` when it was written.
    pub trailing: Option<Booking>,
    /// Book-keeping failures (logged, not sent).
    pub warnings: Vec<String>,
}

/// The cost of `req`'s `n` images at `entry`'s per-image price (unknown
/// when no price key matches the request's size and quality).
pub fn cost_of(req: &ImageRequest, n: u64, entry: &CatalogEntry) -> Cost {
    match images::image_price(&entry.image_prices, req) {
        Some(each) => Cost::Known(each.saturating_mul(n)),
        None => Cost::Unknown,
    }
}

/// The enabled candidates for `req`, best first, or the refusal.
pub fn candidates(
    req: &ImageRequest,
    catalog: &[CatalogEntry],
    settings: &Settings,
    routing: &RoutingState,
    now_ms: u64,
) -> Result<Vec<Target>, PipelineError> {
    let pinned = !is_auto_model(&req.model);
    let named = |e: &&CatalogEntry| e.model == req.model || e.key() == req.model;
    if pinned && !catalog.iter().any(|e| named(&e)) {
        return Err(PlanError::UnknownModel(req.model.clone()).into());
    }
    let image_models: Vec<&CatalogEntry> = catalog
        .iter()
        .filter(|e| e.capabilities.contains(images::CAPABILITY))
        .filter(|e| !pinned || named(e))
        .collect();
    if pinned && image_models.is_empty() {
        return Err(bad(
            &format!(
                "The model `{}` is not an image model (catalog capability `images`).",
                req.model
            ),
            "model",
        ));
    }
    let providers = catalog::enabled_providers(&settings.providers);
    let mut refusals: Vec<Unsupported> = Vec::new();
    let usable: Vec<(&CatalogEntry, ProviderConfig)> = image_models
        .into_iter()
        .filter_map(|e| {
            let p = providers.iter().find(|p| p.name == e.provider)?;
            match wire::supports(p, req) {
                Ok(()) => Some((e, p.clone())),
                Err(u) => {
                    refusals.push(u);
                    None
                }
            }
        })
        .collect();
    if usable.is_empty() {
        return Err(match refusals.first() {
            Some(u) if pinned => bad(&u.to_string(), "model"),
            _ => failed(
                &format!(
                    "No configured provider serves {} for this request.",
                    if pinned {
                        format!("the model `{}`", req.model)
                    } else {
                        "an image model (catalog capability `images`)".to_owned()
                    }
                ),
                ErrorType::Api,
                "model_not_available",
            ),
        });
    }
    // Routing prices tokens: each entry is scored with its per-image price
    // for this request as the price of one million "tokens", so the router's
    // weighted price, latency, success and quality terms apply unchanged.
    let priced: Vec<CatalogEntry> = usable
        .iter()
        .map(|(e, _)| CatalogEntry {
            input_price: images::image_price(&e.image_prices, req),
            output_price: Some(0),
            context_window: u64::MAX,
            ..(*e).clone()
        })
        .collect();
    let list: Vec<Candidate<'_>> = priced
        .iter()
        .map(|e| {
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
        input_tokens: 1_000_000,
        output_tokens: 0,
        capabilities: BTreeSet::from([images::CAPABILITY.to_owned()]),
        max_cost_micros: None,
        max_latency_ms: None,
    };
    let decision = route(&list, &route_req, &RoutingWeights::default(), now_ms);
    let to_target = |(e, p): &(&CatalogEntry, ProviderConfig)| Target {
        entry: (*e).clone(),
        provider: p.clone(),
    };
    let ranked: Vec<Target> = decision
        .ranked
        .iter()
        .filter_map(|r| usable.get(r.index))
        .map(to_target)
        .collect();
    // Every breaker open: still try them rather than turn a flaky provider
    // into a certain failure.
    Ok(if ranked.is_empty() {
        usable.iter().map(to_target).collect()
    } else {
        ranked
    })
}

/// What a request may spend: `n` images at the dearest priced candidate.
pub fn reservation(req: &ImageRequest, targets: &[Target]) -> Reservation {
    let cost = targets
        .iter()
        .filter_map(|t| cost_of(req, u64::from(req.n), &t.entry).micros())
        .max()
        .unwrap_or(0);
    Reservation {
        tokens: 0,
        cost_micros: cost,
    }
}

/// One image request as an attempt.
struct ImageJob<'a>(&'a ImageRequest);

impl Job for ImageJob<'_> {
    type Output = Vec<Image>;

    async fn attempt<U: Upstream>(
        &self,
        upstream: &mut U,
        t: &Target,
        timeout_ms: u64,
    ) -> Result<Vec<Image>, ProviderFailure> {
        let spec = wire::image_request(&t.provider, self.0, &t.entry.model)
            .map_err(|u| ProviderFailure::malformed(&u.to_string()))?;
        let kind = t.provider.kind;
        let want_bytes = self.0.format == images::ImageFormat::B64Json;
        attempts::exchange(
            upstream,
            t,
            &spec,
            timeout_ms,
            |status, headers, body, now| {
                let got = wire::parse_image_response(kind, status, headers, body, now)?;
                // DOL cannot fetch a provider's URL for the caller: bytes asked
                // for and a URL answered is the provider not keeping the request.
                if want_bytes && got.iter().any(|i| i.b64.is_none()) {
                    return Err(ProviderFailure::malformed(
                        "b64_json was asked for and the provider answered URLs",
                    ));
                }
                Ok(got)
            },
        )
        .await
    }
}

/// Serves one parsed image request. An `Err` is a refusal before any
/// provider was asked (nothing recorded); after that the answer, success or
/// failure, is in [`ImageServed::answer`] and the request is recorded.
pub async fn serve<S: SqlExecutor, K: KeyValue, U: Upstream, C: Clock>(
    sql: &mut S,
    kv: &mut K,
    upstream: &mut U,
    clock: &C,
    call: &ImageCall,
    settings: &Settings,
) -> Result<ImageServed, PipelineError> {
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
    let result = attempts::run(upstream, &ImageJob(req), &targets, settings).await;
    let finished_ms = clock.now_ms();
    let tried = match &result {
        Ok((_, _, tried)) | Err((_, tried)) => tried,
    };
    if !tried.observations.is_empty() {
        let urgent = routing.apply(
            &settings.providers.shared_observations(&tried.observations),
            ROUTING_ALPHA,
            settings.circuit,
            finished_ms,
        );
        if let Err(e) = store::save_routing_state(kv, &mut routing, urgent, finished_ms) {
            warnings.push(format!("storing the routing state failed: {e}"));
        }
    }
    let first = targets.first();
    let mut record = RequestRecord {
        // Savings are measured for chat-family routes only; no baseline
        // here counts the request's own cost.
        baseline_cost_micros: None,
        difficulty: None,
        subject: None,
        id: call.id.clone(),
        ts_ms: call.started_ms,
        key_id: call.caller.id.clone(),
        route: ROUTE.to_owned(),
        tier: Tier::Basic,
        entry_tier: first.map_or(Tier::Basic, |t| t.entry.tier),
        provider: first.map(|t| t.entry.provider.clone()).unwrap_or_default(),
        model: req.model.clone(),
        attempts: tried.count(),
        latency_ms: finished_ms.saturating_sub(call.started_ms),
        ttft_ms: None,
        prompt_tokens: 0,
        completion_tokens: 0,
        cost_micros: None,
        quality: None,
        outcome: "failed".to_owned(),
        fallbacks: tried.fallbacks,
        cached: false,
        stream: false,
        variant: "-".to_owned(),
        detail: json!({"attempts": tried.attempts, "n": req.n, "size": req.priced_size(), "quality": req.priced_quality()}),
    };
    let (spent, answer) = match result {
        Ok((got, i, tried)) => {
            let t = &targets[i];
            let count = u64::try_from(got.len()).unwrap_or(u64::MAX);
            let cost = cost_of(req, count, &t.entry);
            let info = DolInfo {
                tier: t.entry.tier,
                provider: t.entry.provider.clone(),
                model: t.entry.model.clone(),
                attempts: tried.count(),
                quality: None,
                cost_micros: cost.micros(),
                cost_unknown: cost.is_unknown(),
                cached: false,
            };
            record.tier = info.tier;
            record.provider = info.provider.clone();
            record.model = info.model.clone();
            record.cost_micros = cost.micros();
            record.outcome = "success".to_owned();
            record.detail["images"] = json!(count);
            let body = images::response_body(&got, req.format, finished_ms / 1_000);
            (
                cost.micros().unwrap_or(0),
                Ok((attempts::headers(&info, &call.id), body)),
            )
        }
        Err((f, _)) => {
            record.detail["failed"] = json!(f.class.as_str());
            (0, Err(attempts::failure_error(&req.model, &f)))
        }
    };
    let settled = store::Settlement {
        key_id: &call.caller.id,
        org_id: call.caller.org.as_ref().map(|o| o.id.as_str()),
        want: reserved,
        reserved_at_secs: now_secs,
        tokens: 0,
        cost_micros: spent,
        now_secs: finished_ms / 1_000,
    };
    // No image request stores bodies: what it may not trail is a reservation.
    let (trailing, _) = book(sql, &settled, &record, false, &mut warnings);
    Ok(ImageServed {
        answer,
        record,
        trailing,
        warnings,
    })
}

#[cfg(test)]
#[path = "image_pipeline_tests.rs"]
mod tests;
