//! What the one-shot (non-streamed, non-chat) generation routes share
//! (issue 15: `/v1/embeddings`, `/v1/images/generations`): one provider
//! exchange read to its end, the attempt loop over ranked targets with the
//! retry policy and fallback, and the errors and headers they answer with.

use serde_json::{Value, json};

use super::engine::{MAX_UPSTREAM_BODY, Observation, Target, Upstream};
use super::openai::{DolInfo, ErrorBody, ErrorType};
use super::pipeline::{PipelineError, Settings};
use super::providers::{ErrorClass, HttpRequestSpec, ProviderFailure};
use super::retry::{FailureKind, RetryDecision, jitter_from_u64};
use super::store;

/// One unit of work a target is asked for (one attempt; its retries and the
/// fallback to the next target are [`run`]'s).
#[allow(
    async_fn_in_trait,
    reason = "single-threaded wasm executor; no Send bound wanted"
)]
pub trait Job {
    /// What a successful attempt yields.
    type Output;
    /// One attempt at `t`, waiting at most `timeout_ms` per read.
    async fn attempt<U: Upstream>(
        &self,
        upstream: &mut U,
        t: &Target,
        timeout_ms: u64,
    ) -> Result<Self::Output, ProviderFailure>;
}

/// What the attempts did, success or not.
#[derive(Debug, Clone, Default)]
pub struct Tried {
    /// One JSON object per attempt (target, attempt number, latency, outcome).
    pub attempts: Vec<Value>,
    /// Observations for the routing state.
    pub observations: Vec<Observation>,
    /// Targets given up on before the one that answered.
    pub fallbacks: u32,
}

impl Tried {
    /// The number of attempts, saturated.
    pub fn count(&self) -> u32 {
        u32::try_from(self.attempts.len()).unwrap_or(u32::MAX)
    }
}

/// Sends `spec` to `t` and reads the whole body, then lets `parse` judge
/// status, headers and bytes; `t`'s key is redacted from a failure message.
pub async fn exchange<U: Upstream, T>(
    upstream: &mut U,
    t: &Target,
    spec: &HttpRequestSpec,
    timeout_ms: u64,
    parse: impl FnOnce(u16, &[(String, String)], &[u8], u64) -> Result<T, ProviderFailure>,
) -> Result<T, ProviderFailure> {
    let (status, headers, mut body) =
        upstream
            .send(spec, timeout_ms)
            .await
            .map_err(|e| ProviderFailure {
                class: ErrorClass::Server,
                failure: Some(FailureKind::Connect),
                message: e.to_string(),
            })?;
    let mut bytes = Vec::new();
    loop {
        match upstream.read(&mut body, timeout_ms).await {
            Ok(Some(piece)) => {
                bytes.extend_from_slice(&piece);
                if bytes.len() > MAX_UPSTREAM_BODY {
                    return Err(ProviderFailure::malformed("response body too large"));
                }
            }
            Ok(None) => break,
            Err(_) => return Err(ProviderFailure::stream_ended_early()),
        }
    }
    let mut r = parse(status, &headers, &bytes, upstream.now_unix_s());
    if let (Err(f), Some(key)) = (&mut r, t.provider.api_key.as_deref()) {
        f.redact_secret(key);
    }
    r
}

/// Asks `targets` in order, each retried as the retry policy says, until one
/// answers: its output and index, or the last failure. Either way, what was
/// tried.
pub async fn run<U: Upstream, J: Job>(
    upstream: &mut U,
    job: &J,
    targets: &[Target],
    settings: &Settings,
) -> Result<(J::Output, usize, Tried), (ProviderFailure, Tried)> {
    let policy = settings.engine.pipeline.retry;
    let mut tried = Tried::default();
    let mut last: Option<ProviderFailure> = None;
    for (i, t) in targets.iter().enumerate() {
        tried.fallbacks = u32::try_from(i).unwrap_or(u32::MAX);
        let mut n = 0u32;
        loop {
            n += 1;
            let began = upstream.elapsed_ms();
            let remaining = policy.remaining_ms(began);
            let timeout = settings.engine.attempt_timeout_ms.min(remaining).max(1);
            let r = job.attempt(upstream, t, timeout).await;
            let latency_ms = upstream.elapsed_ms().saturating_sub(began);
            tried.observations.push(Observation {
                key: t.key(),
                latency_ms,
                success: r.is_ok(),
                quality: None,
            });
            let outcome = match &r {
                Ok(_) => "success",
                Err(f) => f.class.as_str(),
            };
            tried.attempts.push(json!({"target": t.key(), "attempt": n, "latency_ms": latency_ms, "outcome": outcome}));
            match r {
                Ok(out) => return Ok((out, i, tried)),
                Err(f) => {
                    let decision = f.failure.map(|kind| {
                        policy.decide(
                            n,
                            kind,
                            upstream.elapsed_ms(),
                            jitter_from_u64(upstream.random_u64()),
                        )
                    });
                    last = Some(f);
                    match decision {
                        Some(RetryDecision::RetryAfter { delay_ms }) => {
                            upstream.sleep(delay_ms).await;
                        }
                        _ => break,
                    }
                }
            }
        }
    }
    tried.fallbacks = u32::try_from(targets.len()).unwrap_or(u32::MAX);
    let f = last.unwrap_or_else(|| ProviderFailure::malformed("no candidate"));
    Err((f, tried))
}

/// A 400 naming `param`.
pub fn bad(message: &str, param: &str) -> PipelineError {
    PipelineError::BadRequest(ErrorBody::new(
        message,
        ErrorType::InvalidRequest,
        Some(param.to_owned()),
        None,
    ))
}

/// A failure of kind `kind` with `code`.
pub fn failed(message: &str, kind: ErrorType, code: &str) -> PipelineError {
    PipelineError::Failed(ErrorBody::new(message, kind, None, Some(code.to_owned())))
}

/// The error a caller gets when a model's every attempt failed: the
/// provider's refusal of the input as a 400, anything else as a 502.
pub fn failure_error(model: &str, f: &ProviderFailure) -> PipelineError {
    match f.class {
        ErrorClass::BadRequest | ErrorClass::ContextLength => {
            PipelineError::BadRequest(ErrorBody::new(
                format!(
                    "The provider refused the request for `{model}`: {}",
                    f.message
                ),
                ErrorType::InvalidRequest,
                None,
                Some(f.class.as_str().to_owned()),
            ))
        }
        _ => failed(
            &format!(
                "Every provider of `{model}` failed (last: {}).",
                f.class.as_str()
            ),
            ErrorType::Api,
            "upstream_failed",
        ),
    }
}

/// The `x-dol-*` headers of an answer, with its request id.
pub fn headers(info: &DolInfo, id: &str) -> Vec<(String, String)> {
    let mut h: Vec<(String, String)> = info
        .headers()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    h.push(("x-dol-request-id".to_owned(), id.to_owned()));
    h
}

/// Maps a storage error in `context` to the pipeline's error.
pub fn storage(context: &'static str) -> impl Fn(store::GatewayStoreError) -> PipelineError {
    move |e| PipelineError::Storage {
        context,
        message: e.to_string(),
    }
}
