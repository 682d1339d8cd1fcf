//! The video platforms' wire formats, pure: the request each step sends and
//! what each answer means, normalised to [`Update`].
//!
//! | platform | submit | poll | cancel | result |
//! |---|---|---|---|---|
//! | `openai` (OpenAI videos) | `POST {base}/videos` | `GET {base}/videos/{id}` (`queued`, `in_progress`, `completed`, `failed`) | `DELETE {base}/videos/{id}` | `GET {base}/videos/{id}/content`, proxied (it needs the key) |
//! | `runway` (Runway tasks) | `POST {base}/text_to_video`, with an image `POST {base}/image_to_video` (`X-Runway-Version: 2024-11-06`) | `GET {base}/tasks/{id}` (`PENDING`, `THROTTLED`, `RUNNING`, `SUCCEEDED`, `FAILED`, `CANCELLED`/`CANCELED`) | `DELETE {base}/tasks/{id}` | `output[0]`, redirected to |
//! | `replicate` (Replicate predictions) | `POST {base}/models/{owner}/{name}/predictions` with `webhook` when DOL has a public URL | `GET {base}/predictions/{id}` (`starting`, `processing`, `succeeded`, `failed`, `canceled`) and the signed callback | `POST {base}/predictions/{id}/cancel` | `output` (a URL or the first of a list), redirected to |
//!
//! An `input_reference` image goes to each in its own shape: OpenAI gets
//! the `multipart/form-data` upload it defines (`input_reference` file
//! part), Runway `promptImage` as a data URI, Replicate the model's image
//! input (catalog `image_field`, e.g. `first_frame_image`) as a data URI.

use serde_json::{Value, json};

use crate::gateway::providers::HttpRequestSpec;
use crate::gateway::settings::{SettingsError, number};

use super::input::InputReference;

/// Runway's API version header value.
pub const RUNWAY_VERSION: &str = "2024-11-06";

/// A platform's wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlatformKind {
    /// OpenAI's videos API.
    OpenAi,
    /// Runway's task API.
    Runway,
    /// Replicate's predictions with webhooks.
    Replicate,
}

impl PlatformKind {
    /// The platform's name (catalog, records, `dol.platform`).
    pub fn name(self) -> &'static str {
        match self {
            PlatformKind::OpenAi => "openai",
            PlatformKind::Runway => "runway",
            PlatformKind::Replicate => "replicate",
        }
    }

    /// Every platform DOL speaks.
    pub const ALL: [PlatformKind; 3] = [
        PlatformKind::OpenAi,
        PlatformKind::Runway,
        PlatformKind::Replicate,
    ];
}

/// One configured platform.
#[derive(Debug, Clone, PartialEq)]
pub struct Platform {
    /// Its wire format (and name).
    pub kind: PlatformKind,
    /// API base URL including the version prefix (`…/v1`), no trailing slash.
    pub base_url: String,
    /// Its key.
    pub api_key: String,
}

/// Everything the video routes and scan read from configuration.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VideoSettings {
    /// The platforms with a key set.
    pub platforms: Vec<Platform>,
    /// DOL's public base URL for platform callbacks (empty = poll only).
    pub callback_base_url: String,
    /// Replicate's webhook signing secret (`whsec_…`); callbacks are refused without it.
    pub replicate_webhook_secret: String,
    /// Where completion webhooks go (empty = none).
    pub webhook_url: String,
    /// Their signing secret (`whsec_…` or any text).
    pub webhook_secret: String,
    /// First poll interval, ms (doubled per poll up to [`Self::poll_max_ms`]).
    pub poll_base_ms: u64,
    /// Longest poll interval, ms.
    pub poll_max_ms: u64,
    /// A job not finished this long after creation fails with `timeout`, ms.
    pub timeout_ms: u64,
    /// Polls finding a job throttled before DOL moves it to the next platform.
    pub throttled_polls: u32,
    /// A key accepted without being stored (as the gateway's); empty = none.
    pub bootstrap_key: String,
}

fn base(var: &impl Fn(&str) -> String, name: &str, default: &str) -> String {
    let v = var(name);
    let v = v.trim();
    if v.is_empty() { default } else { v }
        .trim_end_matches('/')
        .to_owned()
}

impl VideoSettings {
    /// Reads the video variables (`var` answers "" for an unset one): a
    /// platform is configured when its key is set (`openai_api_key`,
    /// `runway_api_key`, `replicate_api_token`).
    pub fn from_variables(var: impl Fn(&str) -> String) -> Result<Self, SettingsError> {
        let mut platforms = Vec::new();
        let specs = [
            (
                PlatformKind::OpenAi,
                "openai_api_key",
                "openai_base_url",
                "https://api.openai.com/v1",
            ),
            (
                PlatformKind::Runway,
                "runway_api_key",
                "runway_base_url",
                "https://api.dev.runwayml.com/v1",
            ),
            (
                PlatformKind::Replicate,
                "replicate_api_token",
                "replicate_base_url",
                "https://api.replicate.com/v1",
            ),
        ];
        for (kind, key, url, default) in specs {
            let api_key = var(key);
            if !api_key.trim().is_empty() {
                platforms.push(Platform {
                    kind,
                    base_url: base(&var, url, default),
                    api_key: api_key.trim().to_owned(),
                });
            }
        }
        let poll_base_ms = number(&var, "video_poll_interval_ms", 5_000u64)?;
        Ok(VideoSettings {
            platforms,
            callback_base_url: var("video_callback_base_url")
                .trim()
                .trim_end_matches('/')
                .to_owned(),
            replicate_webhook_secret: var("replicate_webhook_secret").trim().to_owned(),
            webhook_url: var("video_webhook_url").trim().to_owned(),
            webhook_secret: var("video_webhook_secret").trim().to_owned(),
            poll_base_ms,
            poll_max_ms: poll_base_ms.saturating_mul(12).max(poll_base_ms),
            timeout_ms: number(&var, "video_job_timeout_secs", 3_600u64)?
                .max(1)
                .saturating_mul(1_000),
            throttled_polls: u32::try_from(number(&var, "video_throttled_polls", 5u64)?.max(1))
                .unwrap_or(u32::MAX),
            bootstrap_key: var("bootstrap_api_key"),
        })
    }

    /// The configured platform named `name`.
    pub fn platform(&self, name: &str) -> Option<&Platform> {
        self.platforms.iter().find(|p| p.kind.name() == name)
    }
}

/// What a platform says about a job, normalised.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// Waiting; `throttled` when the platform says it is holding it back.
    Queued {
        /// Runway's `THROTTLED`.
        throttled: bool,
    },
    /// Rendering.
    Running {
        /// 0-100, when the platform says.
        progress: Option<u8>,
    },
    /// Done.
    Succeeded {
        /// Where the video is (absent for OpenAI: fetched through its API).
        url: Option<String>,
    },
    /// The platform failed it.
    Failed {
        /// A short code.
        code: String,
        /// The platform's message.
        message: String,
    },
    /// Cancelled at the platform.
    Cancelled,
}

/// A call that did not give an answer to act on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct CallError {
    /// Worth asking again later (429, 5xx, no connection).
    pub transient: bool,
    /// What happened (no secrets).
    pub message: String,
}

impl CallError {
    /// A failure to connect or to read.
    pub fn connect(message: impl Into<String>) -> Self {
        CallError {
            transient: true,
            message: message.into(),
        }
    }

    fn status(status: u16, body: &[u8]) -> Self {
        let text = String::from_utf8_lossy(body);
        let short: String = text.chars().take(200).collect();
        CallError {
            transient: status == 429 || status >= 500,
            message: format!("HTTP {status}: {short}"),
        }
    }

    fn malformed(what: &str) -> Self {
        CallError {
            transient: false,
            message: format!("malformed answer: {what}"),
        }
    }
}

/// What a job asks a platform for.
#[derive(Debug, Clone, PartialEq)]
pub struct Submit<'a> {
    /// The platform's model id.
    pub model: &'a str,
    /// The prompt.
    pub prompt: &'a str,
    /// Seconds.
    pub seconds: u32,
    /// `WIDTHxHEIGHT`.
    pub size: &'a str,
    /// Where the platform should call back (Replicate), if anywhere.
    pub callback_url: Option<String>,
    /// The platform's task id of the video to remix, for a remix.
    pub remix_of: Option<&'a str>,
    /// The image that guides the video, and (Replicate) the model input
    /// that takes it.
    pub image: Option<(&'a InputReference, Option<&'a str>)>,
}

/// Whether `kind` can remix a video it made (OpenAI's
/// `POST /videos/{id}/remix`; Runway and Replicate have no remix).
pub fn can_remix(kind: PlatformKind) -> bool {
    kind == PlatformKind::OpenAi
}

fn spec(p: &Platform, method: &str, path: &str, body: Option<Value>) -> HttpRequestSpec {
    let mut headers = vec![("authorization".to_owned(), format!("Bearer {}", p.api_key))];
    if p.kind == PlatformKind::Runway {
        headers.push(("x-runway-version".to_owned(), RUNWAY_VERSION.to_owned()));
    }
    let body = match body {
        Some(b) => {
            headers.push(("content-type".to_owned(), "application/json".to_owned()));
            b.to_string().into_bytes()
        }
        None => Vec::new(),
    };
    HttpRequestSpec {
        method: method.to_owned(),
        url: format!("{}{path}", p.base_url),
        headers,
        body,
    }
}

/// The request that starts `job` at `p`.
pub fn submit_request(p: &Platform, job: &Submit<'_>) -> HttpRequestSpec {
    match p.kind {
        PlatformKind::OpenAi if job.remix_of.is_some() => spec(
            p,
            "POST",
            &format!("/videos/{}/remix", job.remix_of.unwrap_or_default()),
            Some(json!({"prompt": job.prompt})),
        ),
        PlatformKind::OpenAi => match job.image {
            Some((image, _)) => openai_multipart(p, job, image),
            None => spec(
                p,
                "POST",
                "/videos",
                Some(
                    json!({"model": job.model, "prompt": job.prompt, "seconds": job.seconds.to_string(), "size": job.size}),
                ),
            ),
        },
        PlatformKind::Runway => {
            let mut body = json!({"model": job.model, "promptText": job.prompt, "ratio": job.size.replace('x', ":"), "duration": job.seconds});
            let path = match job.image {
                Some((image, _)) => {
                    body["promptImage"] = json!(image.data_uri());
                    "/image_to_video"
                }
                None => "/text_to_video",
            };
            spec(p, "POST", path, Some(body))
        }
        PlatformKind::Replicate => {
            let mut body = json!({"input": {"prompt": job.prompt, "duration": job.seconds}});
            if let Some((image, field)) = job.image {
                body["input"][field.unwrap_or("image")] = json!(image.data_uri());
            }
            if let Some(url) = &job.callback_url {
                body["webhook"] = json!(url);
                body["webhook_events_filter"] = json!(["start", "completed"]);
            }
            spec(
                p,
                "POST",
                &format!("/models/{}/predictions", job.model),
                Some(body),
            )
        }
    }
}

/// The boundary of DOL's multipart uploads (never inside a PNG, JPEG or
/// WebP header; the parts' ends are found by it, so it is long).
const BOUNDARY: &str = "dol-video-boundary-7f3c9a1e5b2d4c6f8a0e";

/// OpenAI's create with an image: `multipart/form-data`, the text fields
/// and the `input_reference` file part.
fn openai_multipart(p: &Platform, job: &Submit<'_>, image: &InputReference) -> HttpRequestSpec {
    let mut body = Vec::with_capacity(image.data.len() + 1024);
    let seconds = job.seconds.to_string();
    for (name, value) in [
        ("model", job.model),
        ("prompt", job.prompt),
        ("seconds", seconds.as_str()),
        ("size", job.size),
    ] {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    let ext = image.media_type.trim_start_matches("image/");
    body.extend_from_slice(
        format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"input_reference\"; filename=\"input_reference.{ext}\"\r\nContent-Type: {}\r\n\r\n",
            image.media_type
        )
        .as_bytes(),
    );
    body.extend_from_slice(&image.data);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    let mut spec = spec(p, "POST", "/videos", None);
    spec.headers.push((
        "content-type".to_owned(),
        format!("multipart/form-data; boundary={BOUNDARY}"),
    ));
    spec.body = body;
    spec
}

fn json_of(status: u16, body: &[u8]) -> Result<Value, CallError> {
    if !(200..300).contains(&status) {
        return Err(CallError::status(status, body));
    }
    serde_json::from_slice(body).map_err(|_| CallError::malformed("not JSON"))
}

/// The platform's task id and first state from its answer to a submit.
pub fn parse_submit(
    kind: PlatformKind,
    status: u16,
    body: &[u8],
) -> Result<(String, Update), CallError> {
    let v = json_of(status, body)?;
    let id = v["id"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| CallError::malformed("no id"))?
        .to_owned();
    // Runway answers only the id; the task starts pending.
    let update = if kind == PlatformKind::Runway {
        Update::Queued { throttled: false }
    } else {
        update_of(kind, &v)?
    };
    Ok((id, update))
}

/// The request that asks `p` about task `task_id`.
pub fn poll_request(p: &Platform, task_id: &str) -> HttpRequestSpec {
    let path = match p.kind {
        PlatformKind::OpenAi => format!("/videos/{task_id}"),
        PlatformKind::Runway => format!("/tasks/{task_id}"),
        PlatformKind::Replicate => format!("/predictions/{task_id}"),
    };
    spec(p, "GET", &path, None)
}

/// The state in a poll's answer.
pub fn parse_poll(kind: PlatformKind, status: u16, body: &[u8]) -> Result<Update, CallError> {
    let v = json_of(status, body)?;
    update_of(kind, &v)
}

fn pct(v: &Value, scale: f64) -> Option<u8> {
    v.as_f64()
        .map(|p| (p * scale).clamp(0.0, 100.0).round() as u8)
}

fn first_url(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => items.first().and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

/// The normalised state of a platform's job object (also a Replicate
/// callback's body, which is the prediction).
pub fn update_of(kind: PlatformKind, v: &Value) -> Result<Update, CallError> {
    let status = v["status"]
        .as_str()
        .ok_or_else(|| CallError::malformed("no status"))?;
    let failed = |code: &str, message: Option<&str>| Update::Failed {
        code: code.to_owned(),
        message: message.unwrap_or("the platform failed the job").to_owned(),
    };
    let u = match (kind, status) {
        (PlatformKind::OpenAi, "queued") => Update::Queued { throttled: false },
        (PlatformKind::OpenAi, "in_progress") => Update::Running {
            progress: pct(&v["progress"], 1.0),
        },
        (PlatformKind::OpenAi, "completed") => Update::Succeeded { url: None },
        (PlatformKind::OpenAi, "failed") => failed(
            v["error"]["code"].as_str().unwrap_or("platform_failed"),
            v["error"]["message"].as_str(),
        ),
        (PlatformKind::Runway, "PENDING") => Update::Queued { throttled: false },
        (PlatformKind::Runway, "THROTTLED") => Update::Queued { throttled: true },
        (PlatformKind::Runway, "RUNNING") => Update::Running {
            progress: pct(&v["progress"], 100.0),
        },
        (PlatformKind::Runway, "SUCCEEDED") => Update::Succeeded {
            url: Some(first_url(&v["output"]).ok_or_else(|| CallError::malformed("no output"))?),
        },
        (PlatformKind::Runway, "FAILED") => failed(
            v["failureCode"].as_str().unwrap_or("platform_failed"),
            v["failure"].as_str(),
        ),
        (PlatformKind::Runway, "CANCELLED" | "CANCELED") => Update::Cancelled,
        (PlatformKind::Replicate, "starting") => Update::Queued { throttled: false },
        (PlatformKind::Replicate, "processing") => Update::Running { progress: None },
        (PlatformKind::Replicate, "succeeded") => Update::Succeeded {
            url: Some(first_url(&v["output"]).ok_or_else(|| CallError::malformed("no output"))?),
        },
        (PlatformKind::Replicate, "failed") => failed("platform_failed", v["error"].as_str()),
        (PlatformKind::Replicate, "canceled") => Update::Cancelled,
        (_, other) => return Err(CallError::malformed(&format!("unknown status {other}"))),
    };
    Ok(u)
}

/// The request that cancels task `task_id` at `p`.
pub fn cancel_request(p: &Platform, task_id: &str) -> HttpRequestSpec {
    match p.kind {
        PlatformKind::OpenAi => spec(p, "DELETE", &format!("/videos/{task_id}"), None),
        PlatformKind::Runway => spec(p, "DELETE", &format!("/tasks/{task_id}"), None),
        PlatformKind::Replicate => spec(p, "POST", &format!("/predictions/{task_id}/cancel"), None),
    }
}

/// The request that fetches a finished OpenAI video's bytes (`variant`:
/// `video`, `thumbnail` or `spritesheet`).
pub fn content_request(p: &Platform, task_id: &str, variant: &str) -> HttpRequestSpec {
    spec(
        p,
        "GET",
        &format!("/videos/{task_id}/content?variant={variant}"),
        None,
    )
}

#[cfg(test)]
#[path = "platforms_tests.rs"]
mod tests;
