//! The video routes and the `video-jobs` scan over an injected SQL executor
//! and HTTP sender ([`VideoNet`]), with "now" passed in.
//!
//! A job moves only forward: every write goes through [`store::write`],
//! which refuses to touch an ended job, and the books (budget settlement,
//! the request record, platform observations, the completion webhook) are
//! kept by whoever wrote the ending — exactly once, however often a poll or
//! a callback reports it.

use serde_json::{Value, json};

use super::catalog::{self, VideoModel};
use super::input::InputReference;
use super::platforms::{self, CallError, Platform, PlatformKind, Submit, Update, VideoSettings};
use super::select;
use super::store::{self, VideoStoreError};
use super::webhook::{self, Signed};
use super::{Choice, Job, Status, VideoRequest};
use crate::error::{ApiError, Code};
use crate::gateway::keys::{Admission, Reservation};
use crate::gateway::pipeline::{Caller, PipelineError};
use crate::gateway::providers::HttpRequestSpec;
use crate::gateway::store as gateway_store;
use crate::gateway::telemetry::RequestRecord;
use crate::gateway::tiers::Tier;
use crate::storage::SqlExecutor;

/// The route label of video request records.
pub const ROUTE: &str = "videos";
/// Jobs one scan polls at most.
pub const SCAN_BATCH: u32 = 50;

/// Blocking HTTP: status and body, or why nothing came back.
pub trait VideoNet {
    /// Sends `spec` and reads the whole answer.
    fn send(&mut self, spec: &HttpRequestSpec) -> Result<(u16, Vec<u8>), String>;
}

fn storage(e: VideoStoreError) -> ApiError {
    ApiError::internal(format!("video store: {e}"))
}

fn secs(ms: u64) -> u64 {
    ms / 1_000
}

/// `POST /v1/videos`: select the platforms, reserve the worst-case cost
/// against the key's budget, submit to the best platform (falling back on
/// refusal) and store the job. Answers OpenAI's video object.
pub fn create<S: SqlExecutor, N: VideoNet>(
    sql: &mut S,
    net: &mut N,
    settings: &VideoSettings,
    caller: &Caller,
    req: VideoRequest,
    id: String,
    now_ms: u64,
) -> Result<Value, ApiError> {
    let catalog = catalog::shipped();
    let stats = store::stats(sql).map_err(storage)?;
    let mut ranked = select::candidates(&req, &catalog, settings, &stats)?;
    if let Some(org) = &caller.org {
        // The org's allow-list holds for video platforms as for providers.
        ranked.retain(|r| org.allows_model(&r.choice.platform, &r.choice.model));
        if ranked.is_empty() {
            return Err(ApiError::new(
                Code::Forbidden,
                format!(
                    "Organization `{}` may not use the video model `{}` on any configured platform.",
                    org.id, req.model
                ),
            )
            .with_field("model"));
        }
    }
    let reserved = ranked
        .iter()
        .filter_map(|r| r.entry.cost_micros(req.seconds))
        .max()
        .unwrap_or(0);
    admit(sql, caller, reserved, now_ms)?;
    let input = req.input_reference;
    let job = queued_job(
        Identity {
            id,
            key_id: caller.id.clone(),
            model: req.model,
            prompt: req.prompt,
            seconds: req.seconds,
            size: req.size,
        },
        Choice {
            platform: String::new(),
            model: String::new(),
        },
        ranked.into_iter().map(|r| r.choice).collect(),
        reserved,
        settings,
        now_ms,
    );
    submit_new(sql, net, settings, job, None, input.as_ref(), now_ms)
}

/// Reserves `reserved` micro-dollars against the caller's key and org, or
/// the refusal (429).
fn admit<S: SqlExecutor>(
    sql: &mut S,
    caller: &Caller,
    reserved: u64,
    now_ms: u64,
) -> Result<(), ApiError> {
    let want = Reservation {
        tokens: 0,
        cost_micros: reserved,
    };
    // The key's org (if any) is admitted with it: a video job spends the
    // org's budget exactly as a chat request does.
    let admission = gateway_store::admit_with_org(
        sql,
        &caller.id,
        &caller.limits,
        caller.org_limits(),
        want,
        secs(now_ms),
    )
    .map_err(|e| ApiError::internal(format!("admission: {e}")))?;
    if let Admission::Refuse {
        limit,
        retry_after_secs,
        message,
    } = admission
    {
        return Err(ApiError::from(&PipelineError::Refused {
            limit,
            retry_after_secs,
            message,
        }));
    }
    Ok(())
}

/// Stores a new job (and its `input` image, kept until it ends) and
/// submits it (a remix of the platform task `remix_of`, if given); a job
/// refused everywhere is a 502.
fn submit_new<S: SqlExecutor, N: VideoNet>(
    sql: &mut S,
    net: &mut N,
    settings: &VideoSettings,
    mut job: Job,
    remix_of: Option<&str>,
    input: Option<&InputReference>,
    now_ms: u64,
) -> Result<Value, ApiError> {
    store::insert(sql, &job).map_err(storage)?;
    if let Some(image) = input {
        store::save_input(sql, &job.id, image).map_err(storage)?;
    }
    let step = start_next(sql, net, settings, &mut job, remix_of, now_ms);
    let ended = end_or_write(sql, settings, &mut job, step, now_ms).map_err(storage)?;
    if job.status == Status::Failed && ended {
        return Err(ApiError::new(
            Code::UpstreamFailed,
            format!(
                "Every capable video platform refused the job {} ({}).",
                job.id,
                job.error.as_ref().map_or("", |e| e.1.as_str())
            ),
        ));
    }
    Ok(job.to_object())
}

/// `POST /v1/videos/{id}/remix`: a new job remixing the caller's completed
/// video `original` with `prompt`, at the platform that made it (only it
/// holds the video: no fallback). A video made where remix does not exist
/// (Runway, Replicate) is a 400 naming `video_id`; one not completed a 409.
#[allow(clippy::too_many_arguments)]
pub fn remix<S: SqlExecutor, N: VideoNet>(
    sql: &mut S,
    net: &mut N,
    settings: &VideoSettings,
    caller: &Caller,
    original: &str,
    prompt: String,
    id: String,
    now_ms: u64,
) -> Result<Value, ApiError> {
    let source = find(sql, &caller.id, original)?;
    if source.status != Status::Completed {
        return Err(ApiError::new(
            Code::Conflict,
            format!(
                "Video `{original}` is {}; only a completed video can be remixed.",
                source.status.as_str()
            ),
        )
        .with_field("video_id"));
    }
    let platform = settings.platform(&source.current.platform);
    if !platform.is_some_and(|p| platforms::can_remix(p.kind)) {
        return Err(ApiError::new(
            Code::InvalidRequest,
            format!(
                "Video `{original}` was made on {}, which cannot remix videos (only OpenAI videos can).",
                source.current.platform
            ),
        )
        .with_field("video_id"));
    }
    let catalog = catalog::shipped();
    let entry = catalog::find(&catalog, &source.current.platform, &source.current.model);
    let reserved = entry
        .and_then(|e| e.cost_micros(source.seconds))
        .unwrap_or(0);
    admit(sql, caller, reserved, now_ms)?;
    let job = Job {
        remixed_from: Some(source.id.clone()),
        ..queued_job(
            Identity {
                id,
                key_id: caller.id.clone(),
                model: source.model.clone(),
                prompt,
                seconds: source.seconds,
                size: source.size.clone(),
            },
            source.current.clone(),
            vec![source.current.clone()],
            reserved,
            settings,
            now_ms,
        )
    };
    submit_new(sql, net, settings, job, Some(&source.task_id), None, now_ms)
}

/// What happened to a job at a step.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    /// Still going; write the state.
    Continue,
    /// Done; the video is there.
    Complete(Option<String>),
    /// Ended without a video (every platform failed, or it timed out).
    Fail(String, String),
}

fn attempt(job: &mut Job, outcome: &str, detail: Option<&str>) {
    job.attempts.push(json!({
        "platform": job.current.platform,
        "model": job.current.model,
        "task_id": job.task_id,
        "outcome": outcome,
        "detail": detail,
    }));
}

/// Submits `job` to its next candidate; falls through the list on refusals.
fn start_next<S: SqlExecutor, N: VideoNet>(
    sql: &mut S,
    net: &mut N,
    settings: &VideoSettings,
    job: &mut Job,
    remix_of: Option<&str>,
    now_ms: u64,
) -> Step {
    let mut last = (
        "no_platform".to_owned(),
        "no capable platform is configured".to_owned(),
    );
    // The image is read from the store, so a fallback after a restart
    // sends the same image the caller uploaded.
    let image = match store::input(sql, &job.id) {
        Ok(image) => image,
        Err(e) => return Step::Fail("storage".to_owned(), format!("the job's image: {e}")),
    };
    let catalog = catalog::shipped();
    while !job.candidates.is_empty() {
        let choice = job.candidates.remove(0);
        job.current = choice.clone();
        job.task_id = String::new();
        let Some(p) = settings.platform(&choice.platform) else {
            attempt(job, "not_configured", None);
            continue;
        };
        let callback_url = (p.kind == PlatformKind::Replicate
            && !settings.callback_base_url.is_empty())
        .then(|| {
            format!(
                "{}/v1/videos/{}/callback",
                settings.callback_base_url, job.id
            )
        });
        let spec = platforms::submit_request(
            p,
            &Submit {
                model: &choice.model,
                prompt: &job.prompt,
                seconds: job.seconds,
                size: &job.size,
                callback_url,
                remix_of,
                image: image.as_ref().map(|i| {
                    let field = catalog::find(&catalog, &choice.platform, &choice.model)
                        .and_then(|m| m.image_field.as_deref());
                    (i, field)
                }),
            },
        );
        let answer = net
            .send(&spec)
            .map_err(CallError::connect)
            .and_then(|(status, body)| platforms::parse_submit(p.kind, status, &body));
        match answer {
            Ok((task_id, update)) => {
                job.task_id = task_id;
                job.polls = 0;
                job.throttled_polls = 0;
                job.started_at_ms = None;
                job.status = Status::Queued;
                job.next_poll_at_ms = now_ms.saturating_add(settings.poll_base_ms);
                attempt(job, "submitted", None);
                return apply(sql, net, settings, job, update, now_ms);
            }
            Err(e) => {
                let message = redact(&e.message, p);
                attempt(job, "submit_failed", Some(&message));
                observe(sql, &choice, false, None, now_ms);
                last = (
                    "platform_failed".to_owned(),
                    format!("{}: {message}", choice.platform),
                );
            }
        }
    }
    Step::Fail(last.0, last.1)
}

fn redact(message: &str, p: &Platform) -> String {
    if p.api_key.is_empty() {
        message.to_owned()
    } else {
        message.replace(&p.api_key, "[redacted]")
    }
}

fn observe<S: SqlExecutor>(
    sql: &mut S,
    choice: &Choice,
    ok: bool,
    queue_ms: Option<u64>,
    now_ms: u64,
) {
    // Observations steer later choices; losing one must not fail the job.
    let _ = store::observe(sql, choice, ok, queue_ms, now_ms);
}

/// Applies what the platform said.
fn apply<S: SqlExecutor, N: VideoNet>(
    sql: &mut S,
    net: &mut N,
    settings: &VideoSettings,
    job: &mut Job,
    update: Update,
    now_ms: u64,
) -> Step {
    match update {
        Update::Queued { throttled } => {
            job.status = Status::Queued;
            job.throttled_polls = if throttled {
                job.throttled_polls + 1
            } else {
                0
            };
            if job.throttled_polls >= settings.throttled_polls {
                return fall_back(
                    sql,
                    net,
                    settings,
                    job,
                    "throttled",
                    "the platform kept the job throttled",
                    now_ms,
                );
            }
            Step::Continue
        }
        Update::Running { progress } => {
            job.status = Status::InProgress;
            job.throttled_polls = 0;
            job.started_at_ms.get_or_insert(now_ms);
            // Progress only grows, and 100 means done.
            job.progress = job.progress.max(progress.unwrap_or(0).min(99));
            Step::Continue
        }
        Update::Succeeded { url } => Step::Complete(url),
        Update::Failed { code, message } => {
            fall_back(sql, net, settings, job, &code, &message, now_ms)
        }
        Update::Cancelled => fall_back(
            sql,
            net,
            settings,
            job,
            "cancelled_by_platform",
            "the platform cancelled the job",
            now_ms,
        ),
    }
}

/// The current platform failed the job: cancel it there (best effort) and
/// try the next candidate.
fn fall_back<S: SqlExecutor, N: VideoNet>(
    sql: &mut S,
    net: &mut N,
    settings: &VideoSettings,
    job: &mut Job,
    code: &str,
    message: &str,
    now_ms: u64,
) -> Step {
    attempt(job, code, Some(message));
    observe(sql, &job.current.clone(), false, None, now_ms);
    cancel_at_platform(net, settings, job);
    job.progress = 0;
    // A remix has no candidates left to fall back to: None is never sent.
    match start_next(sql, net, settings, job, None, now_ms) {
        // Nothing left to fall back to: the job ends with this platform's failure.
        Step::Fail(..) => Step::Fail(code.to_owned(), message.to_owned()),
        other => other,
    }
}

fn cancel_at_platform<N: VideoNet>(net: &mut N, settings: &VideoSettings, job: &Job) {
    if let Some(p) = settings.platform(&job.current.platform)
        && !job.task_id.is_empty()
    {
        // Best effort: a platform that cannot cancel still ends the job for DOL.
        let _ = net.send(&platforms::cancel_request(p, &job.task_id));
    }
}

/// Ends the job as `step` says or writes its progress; true when this call
/// wrote an ending (and so kept the books).
fn end_or_write<S: SqlExecutor>(
    sql: &mut S,
    settings: &VideoSettings,
    job: &mut Job,
    step: Step,
    now_ms: u64,
) -> Result<bool, VideoStoreError> {
    match step {
        Step::Continue => {
            store::write(sql, job)?;
            return Ok(false);
        }
        Step::Complete(url) => {
            job.status = Status::Completed;
            job.progress = 100;
            job.output_url = url;
            let price = catalog::find(
                &catalog::shipped(),
                &job.current.platform,
                &job.current.model,
            )
            .cloned();
            job.cost_micros = price
                .as_ref()
                .and_then(|m: &VideoModel| m.cost_micros(job.seconds));
            job.cost_unknown = job.cost_micros.is_none();
        }
        Step::Fail(code, message) => {
            job.status = Status::Failed;
            job.error = Some((code, message));
            job.cost_micros = Some(0);
        }
    }
    job.completed_at_ms = Some(now_ms);
    ended(sql, settings, job, now_ms)
}

/// Writes an ending and, if this call wrote it, keeps the books once.
fn ended<S: SqlExecutor>(
    sql: &mut S,
    settings: &VideoSettings,
    job: &mut Job,
    now_ms: u64,
) -> Result<bool, VideoStoreError> {
    if !settings.webhook_url.is_empty() {
        job.notify_state = "pending".to_owned();
    }
    if !store::write(sql, job)? {
        return Ok(false);
    }
    // Nothing submits this job again: its image is no longer needed.
    let _ = store::delete_input(sql, &job.id);
    if job.status == Status::Completed {
        let queue = job
            .started_at_ms
            .map(|s| s.saturating_sub(job.created_at_ms));
        observe(sql, &job.current.clone(), true, queue, now_ms);
    }
    let charged = job.cost_micros.unwrap_or(0);
    // Settlement and the record are book-keeping after the fact: a failure
    // is reported by the caller's log, the ending itself stands.
    // The org is the key's now; a key cannot change org (keys are created
    // with it), so it is the org admitted at submission.
    let org_id = gateway_store::get_key(sql, &job.key_id)
        .ok()
        .flatten()
        .and_then(|k| k.org_id);
    let _ = gateway_store::settle_with_org(
        sql,
        &job.key_id,
        org_id.as_deref(),
        Reservation {
            tokens: 0,
            cost_micros: job.reserved_micros,
        },
        secs(job.created_at_ms),
        (0, charged),
        secs(now_ms),
    );
    let _ = gateway_store::record(sql, &record_of(job, now_ms));
    Ok(true)
}

/// The request record of an ended job (route `videos`).
pub fn record_of(job: &Job, now_ms: u64) -> RequestRecord {
    RequestRecord {
        // Savings are measured for chat-family routes only; no baseline
        // here counts the request's own cost.
        baseline_cost_micros: None,
        difficulty: None,
        subject: None,
        id: job.id.clone(),
        ts_ms: job.created_at_ms,
        key_id: job.key_id.clone(),
        route: ROUTE.to_owned(),
        tier: Tier::Comprehensive,
        entry_tier: Tier::Comprehensive,
        provider: job.current.platform.clone(),
        model: job.current.model.clone(),
        attempts: u32::try_from(job.attempts.len()).unwrap_or(u32::MAX),
        latency_ms: now_ms.saturating_sub(job.created_at_ms),
        ttft_ms: job
            .started_at_ms
            .map(|s| s.saturating_sub(job.created_at_ms)),
        prompt_tokens: 0,
        completion_tokens: 0,
        cost_micros: if job.cost_unknown {
            None
        } else {
            job.cost_micros
        },
        quality: None,
        outcome: match job.status {
            Status::Completed => "success",
            Status::Cancelled => "cancelled",
            _ => "failed",
        }
        .to_owned(),
        fallbacks: job.fallbacks(),
        cached: false,
        stream: false,
        variant: "-".to_owned(),
        detail: json!({"seconds": job.seconds, "size": job.size, "attempts": job.attempts, "error": job.error.as_ref().map(|e| &e.0)}),
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(Code::NotFound, format!("No video with id `{id}`.")).with_field("video_id")
}

/// The caller's job `id` (another key's job does not exist for it).
pub fn find<S: SqlExecutor>(sql: &mut S, key_id: &str, id: &str) -> Result<Job, ApiError> {
    match store::get(sql, id).map_err(storage)? {
        Some(j) if j.key_id == key_id => Ok(j),
        _ => Err(not_found(id)),
    }
}

/// `GET /v1/videos/{id}`. A job due for a poll is polled first, so a
/// caller polling every few seconds sees the platform's state without
/// waiting for the next scan (the back-off bounds how often a platform is
/// asked, however often the caller asks).
pub fn retrieve<S: SqlExecutor, N: VideoNet>(
    sql: &mut S,
    net: &mut N,
    settings: &VideoSettings,
    key_id: &str,
    id: &str,
    now_ms: u64,
) -> Result<Value, ApiError> {
    let mut job = find(sql, key_id, id)?;
    if !job.status.is_terminal() && (job.next_poll_at_ms <= now_ms || job.deadline_at_ms <= now_ms)
    {
        let step = poll(sql, net, settings, &mut job, now_ms);
        if !end_or_write(sql, settings, &mut job, step, now_ms).map_err(storage)? {
            // Someone else may have ended it meanwhile: answer what is stored.
            job = find(sql, key_id, id)?;
        }
    }
    Ok(job.to_object())
}

/// The query of `GET /v1/videos`.
#[derive(Debug, Clone, PartialEq)]
pub struct ListQuery {
    /// The last id of the previous page.
    pub after: Option<String>,
    /// 1-100, default 20.
    pub limit: u32,
    /// `asc` (oldest first) or `desc` (default).
    pub ascending: bool,
}

impl ListQuery {
    /// Validates the raw query parameters.
    pub fn parse(
        after: Option<String>,
        limit: Option<String>,
        order: Option<String>,
    ) -> Result<Self, ApiError> {
        let limit = match limit {
            None => 20,
            Some(l) => l
                .parse::<u32>()
                .ok()
                .filter(|l| (1..=100).contains(l))
                .ok_or_else(|| {
                    ApiError::invalid("limit", "limit must be a whole number from 1 to 100.")
                })?,
        };
        let ascending = match order.as_deref() {
            None | Some("desc") => false,
            Some("asc") => true,
            Some(_) => return Err(ApiError::invalid("order", "order must be `asc` or `desc`.")),
        };
        Ok(ListQuery {
            after: after.filter(|a| !a.is_empty()),
            limit,
            ascending,
        })
    }
}

/// `GET /v1/videos`: a page in OpenAI's cursor shape.
pub fn list<S: SqlExecutor>(sql: &mut S, key_id: &str, q: &ListQuery) -> Result<Value, ApiError> {
    let after =
        match &q.after {
            Some(id) => Some(find(sql, key_id, id).map_err(|_| {
                ApiError::invalid("after", format!("after: no video with id `{id}`."))
            })?),
            None => None,
        };
    let (jobs, more) =
        store::list(sql, key_id, after.as_ref(), q.limit, q.ascending).map_err(storage)?;
    let data: Vec<Value> = jobs.iter().map(Job::to_object).collect();
    Ok(json!({
        "object": "list",
        "data": data,
        "first_id": jobs.first().map(|j| j.id.clone()),
        "last_id": jobs.last().map(|j| j.id.clone()),
        "has_more": more,
    }))
}

/// `DELETE /v1/videos/{id}`: cancels a running job (at its platform too;
/// it stays readable as `cancelled`) or deletes an ended one. Answers
/// OpenAI's `video.deleted` object.
pub fn cancel<S: SqlExecutor, N: VideoNet>(
    sql: &mut S,
    net: &mut N,
    settings: &VideoSettings,
    key_id: &str,
    id: &str,
    now_ms: u64,
) -> Result<Value, ApiError> {
    let mut job = find(sql, key_id, id)?;
    let deleted = json!({"id": id, "object": "video.deleted", "deleted": true});
    if job.status.is_terminal() {
        crate::storage::run(
            sql,
            "DELETE FROM video_jobs WHERE id = ?",
            &[crate::storage::SqlValue::Text(id.to_owned())],
        )
        .map_err(|e| ApiError::internal(e.to_string()))?;
        store::delete_input(sql, id).map_err(storage)?;
        return Ok(deleted);
    }
    cancel_at_platform(net, settings, &job);
    job.status = Status::Cancelled;
    job.completed_at_ms = Some(now_ms);
    job.cost_micros = Some(0);
    attempt(&mut job, "cancelled_by_caller", None);
    ended(sql, settings, &mut job, now_ms).map_err(storage)?;
    Ok(deleted)
}

/// What `GET /v1/videos/{id}/content` answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    /// Redirect the caller to the platform's URL.
    Redirect(String),
    /// Fetch these bytes from the platform and pass them on.
    Fetch(HttpRequestSpec),
}

/// `GET /v1/videos/{id}/content?variant=`.
pub fn content<S: SqlExecutor>(
    sql: &mut S,
    settings: &VideoSettings,
    key_id: &str,
    id: &str,
    variant: Option<&str>,
) -> Result<Content, ApiError> {
    let variant = variant.unwrap_or("video");
    if !["video", "thumbnail", "spritesheet"].contains(&variant) {
        return Err(ApiError::invalid(
            "variant",
            "variant must be video, thumbnail or spritesheet.",
        ));
    }
    let job = find(sql, key_id, id)?;
    if job.status != Status::Completed {
        return Err(ApiError::new(
            Code::Conflict,
            format!(
                "The video `{id}` is {}, not completed: poll GET /v1/videos/{id} first.",
                job.status.as_str()
            ),
        ));
    }
    let unavailable = || {
        ApiError::new(
            Code::Unavailable,
            format!(
                "The platform `{}` of this video is no longer configured.",
                job.current.platform
            ),
        )
    };
    match job.output_url {
        Some(url) if variant == "video" => Ok(Content::Redirect(url)),
        Some(_) => Err(ApiError::invalid(
            "variant",
            format!(
                "The platform `{}` offers only the video variant.",
                job.current.platform
            ),
        )),
        None => {
            let p = settings
                .platform(&job.current.platform)
                .ok_or_else(unavailable)?;
            Ok(Content::Fetch(platforms::content_request(
                p,
                &job.task_id,
                variant,
            )))
        }
    }
}

/// `POST /v1/videos/{id}/callback`: a Replicate callback, verified
/// (Standard Webhooks signature), applied at most once: a callback for a
/// job already ended, or for a prediction the job has since left, changes
/// nothing and is acknowledged (so the platform stops resending it).
pub fn callback<S: SqlExecutor, N: VideoNet>(
    sql: &mut S,
    net: &mut N,
    settings: &VideoSettings,
    id: &str,
    signed: Signed<'_>,
    body: &[u8],
    now_ms: u64,
) -> Result<Value, ApiError> {
    webhook::verify(
        &settings.replicate_webhook_secret,
        signed,
        body,
        secs(now_ms),
    )?;
    let v: Value = serde_json::from_slice(body).map_err(|_| {
        ApiError::new(
            Code::InvalidPayload,
            "The callback body is not a JSON prediction.",
        )
    })?;
    let mut job = store::get(sql, id)
        .map_err(storage)?
        .ok_or_else(|| not_found(id))?;
    let current = job.current.platform == PlatformKind::Replicate.name()
        && v["id"].as_str() == Some(job.task_id.as_str());
    if job.status.is_terminal() || !current {
        return Ok(json!({"applied": false, "status": job.status.as_str()}));
    }
    let update = platforms::update_of(PlatformKind::Replicate, &v).map_err(|e| {
        ApiError::new(
            Code::InvalidPayload,
            format!("The callback's prediction is unusable: {e}"),
        )
    })?;
    let step = apply(sql, net, settings, &mut job, update, now_ms);
    let wrote_end = end_or_write(sql, settings, &mut job, step, now_ms).map_err(storage)?;
    Ok(json!({"applied": true, "ended": wrote_end, "status": job.status.as_str()}))
}

/// The wait before poll number `polls` (1-based): the base interval
/// doubled per poll, capped.
pub fn backoff_ms(settings: &VideoSettings, polls: u32) -> u64 {
    let doubled = settings
        .poll_base_ms
        .saturating_mul(1u64 << polls.saturating_sub(1).min(20));
    doubled.min(settings.poll_max_ms)
}

/// Polls one due job (or times it out).
fn poll<S: SqlExecutor, N: VideoNet>(
    sql: &mut S,
    net: &mut N,
    settings: &VideoSettings,
    job: &mut Job,
    now_ms: u64,
) -> Step {
    if now_ms >= job.deadline_at_ms {
        cancel_at_platform(net, settings, job);
        attempt(job, "timeout", None);
        return Step::Fail(
            "timeout".to_owned(),
            format!(
                "The job did not finish within {} s.",
                settings.timeout_ms / 1_000
            ),
        );
    }
    let Some(p) = settings.platform(&job.current.platform).cloned() else {
        return fall_back(
            sql,
            net,
            settings,
            job,
            "not_configured",
            "the platform is no longer configured",
            now_ms,
        );
    };
    job.polls += 1;
    job.next_poll_at_ms = now_ms.saturating_add(backoff_ms(settings, job.polls));
    let answer = net
        .send(&platforms::poll_request(&p, &job.task_id))
        .map_err(CallError::connect)
        .and_then(|(status, body)| platforms::parse_poll(p.kind, status, &body));
    match answer {
        Ok(update) => apply(sql, net, settings, job, update, now_ms),
        // A hiccup: ask again at the next interval.
        Err(e) if e.transient => Step::Continue,
        Err(e) => {
            let message = redact(&e.message, &p);
            fall_back(sql, net, settings, job, "platform_error", &message, now_ms)
        }
    }
}

/// What one `video-jobs` scan did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ScanSummary {
    /// Jobs polled.
    pub polled: u32,
    /// Jobs this scan ended.
    pub ended: u32,
    /// Completion webhooks delivered.
    pub notified: u32,
    /// Problems (logged; the scan goes on).
    pub errors: Vec<String>,
}

/// The `video-jobs` scan at `now_ms`: polls due jobs, times out late ones,
/// falls back, and delivers pending completion webhooks.
pub fn advance_due<S: SqlExecutor, N: VideoNet>(
    sql: &mut S,
    net: &mut N,
    settings: &VideoSettings,
    now_ms: u64,
) -> Result<ScanSummary, ApiError> {
    let mut summary = ScanSummary::default();
    for mut job in store::due(sql, now_ms, SCAN_BATCH).map_err(storage)? {
        summary.polled += 1;
        let step = poll(sql, net, settings, &mut job, now_ms);
        match end_or_write(sql, settings, &mut job, step, now_ms) {
            Ok(true) => summary.ended += 1,
            Ok(false) => {}
            Err(e) => summary.errors.push(format!("{}: {e}", job.id)),
        }
    }
    if !settings.webhook_url.is_empty() {
        for job in store::pending_notifications(sql, SCAN_BATCH).map_err(storage)? {
            match notify(net, settings, &job, now_ms) {
                Ok(()) => {
                    summary.notified += 1;
                    store::set_notify(sql, &job.id, "delivered").map_err(storage)?;
                }
                Err(e) => summary.errors.push(format!("webhook for {}: {e}", job.id)),
            }
        }
    }
    Ok(summary)
}

/// The completion webhook of an ended job: OpenAI's event shape
/// (`video.completed`, `video.failed`, `video.cancelled`), signed as
/// Standard Webhooks with `video_webhook_secret`. The event id is stable
/// per job and ending, so a receiver can drop a redelivery.
pub fn webhook_request(settings: &VideoSettings, job: &Job, now_ms: u64) -> HttpRequestSpec {
    let event_id = format!("evt_{}_{}", job.id, job.status.as_str());
    let body = json!({
        "id": event_id,
        "object": "event",
        "type": format!("video.{}", job.status.as_str()),
        "created_at": secs(job.completed_at_ms.unwrap_or(now_ms)),
        "data": {"id": job.id},
    })
    .to_string()
    .into_bytes();
    let ts = secs(now_ms);
    let mut headers = vec![
        ("content-type".to_owned(), "application/json".to_owned()),
        ("webhook-id".to_owned(), event_id.clone()),
        ("webhook-timestamp".to_owned(), ts.to_string()),
    ];
    if !settings.webhook_secret.is_empty() {
        headers.push((
            "webhook-signature".to_owned(),
            webhook::sign(&settings.webhook_secret, &event_id, ts, &body),
        ));
    }
    HttpRequestSpec {
        method: "POST".to_owned(),
        url: settings.webhook_url.clone(),
        headers,
        body,
    }
}

fn notify<N: VideoNet>(
    net: &mut N,
    settings: &VideoSettings,
    job: &Job,
    now_ms: u64,
) -> Result<(), String> {
    let (status, _) = net.send(&webhook_request(settings, job, now_ms))?;
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("HTTP {status}"))
    }
}

#[cfg(test)]
#[path = "service_tests.rs"]
mod tests;

/// What the caller asked for in a new job.
struct Identity {
    id: String,
    key_id: String,
    model: String,
    prompt: String,
    seconds: u32,
    size: String,
}

/// A job just accepted: queued, nothing tried yet, `reserved` held against
/// the budget, due for its first poll now and timing out after the
/// configured timeout.
fn queued_job(
    asked: Identity,
    current: Choice,
    candidates: Vec<Choice>,
    reserved: u64,
    settings: &VideoSettings,
    now_ms: u64,
) -> Job {
    Job {
        id: asked.id,
        key_id: asked.key_id,
        status: Status::Queued,
        progress: 0,
        model: asked.model,
        prompt: asked.prompt,
        seconds: asked.seconds,
        size: asked.size,
        created_at_ms: now_ms,
        completed_at_ms: None,
        current,
        task_id: String::new(),
        candidates,
        attempts: Vec::new(),
        polls: 0,
        throttled_polls: 0,
        next_poll_at_ms: now_ms,
        started_at_ms: None,
        deadline_at_ms: now_ms.saturating_add(settings.timeout_ms),
        output_url: None,
        error: None,
        reserved_micros: reserved,
        cost_micros: None,
        cost_unknown: false,
        notify_state: "none".to_owned(),
        remixed_from: None,
    }
}
