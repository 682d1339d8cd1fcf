//! Async video jobs (issue 15): OpenAI's video object over several video
//! platforms, pure.
//!
//! - [`VideoRequest`] parses `POST /v1/videos` (OpenAI's body).
//! - [`Job`] is one stored job and renders OpenAI's video object
//!   ([`Job::to_object`]).
//! - [`catalog`] lists the video models per platform with their price per
//!   second of output and a quality score; [`select`] ranks the capable ones.
//! - [`platforms`] maps a job onto each platform's wire format (OpenAI
//!   videos, Runway tasks, Replicate predictions with callbacks) and
//!   normalises what they answer into an [`platforms::Update`].
//! - [`store`] holds the SQL; [`service`] runs the routes and the
//!   `video-jobs` scan over an injected SQL executor and HTTP sender;
//!   [`webhook`] signs and verifies Standard Webhooks signatures.
//! - [`input`] reads and checks an `input_reference` image;
//!   [`discovery`] probes the platforms and finds new video models.

pub mod catalog;
pub mod discovery;
pub mod health;
pub mod input;
pub mod platforms;
pub mod select;
pub mod service;
pub mod store;
pub mod webhook;

use serde_json::{Map, Value, json};

use crate::error::{ApiError, Code};
use input::InputReference;

/// Prompts longer than this are refused (characters).
pub const MAX_PROMPT_CHARS: usize = 32_000;
/// The longest clip anyone may ask for, seconds.
pub const MAX_SECONDS: u32 = 60;
/// Seconds when the request names none (OpenAI's default).
pub const DEFAULT_SECONDS: u32 = 4;
/// Size when the request names none (OpenAI's default).
pub const DEFAULT_SIZE: &str = "720x1280";
/// The model name that lets DOL pick the platform.
pub const AUTO: &str = "auto";

/// A job's lifecycle state, as OpenAI names it (plus `cancelled`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Accepted, waiting at the platform.
    Queued,
    /// The platform is rendering it.
    InProgress,
    /// Done; the content can be downloaded.
    Completed,
    /// Failed everywhere, or timed out.
    Failed,
    /// Cancelled by the caller (`DELETE`).
    Cancelled,
}

impl Status {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::InProgress => "in_progress",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Status> {
        [
            Status::Queued,
            Status::InProgress,
            Status::Completed,
            Status::Failed,
            Status::Cancelled,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }

    /// Whether the job can change no more.
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Completed | Status::Failed | Status::Cancelled)
    }
}

/// A validated `POST /v1/videos` body.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoRequest {
    /// `auto` or a catalog video model.
    pub model: String,
    /// What to render.
    pub prompt: String,
    /// Clip length, seconds.
    pub seconds: u32,
    /// `WIDTHxHEIGHT`.
    pub size: String,
    /// The image that guides the video (OpenAI's `input_reference`).
    pub input_reference: Option<InputReference>,
}

fn invalid(field: &str, message: &str) -> ApiError {
    ApiError::new(Code::InvalidRequest, message).with_field(field)
}

/// The required `prompt` of a create or remix body.
fn prompt_of(o: &Map<String, Value>) -> Result<String, ApiError> {
    let prompt = match o.get("prompt") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::String(_)) => return Err(invalid("prompt", "prompt must not be empty.")),
        Some(_) => return Err(invalid("prompt", "prompt must be a string.")),
        None => return Err(invalid("prompt", "Missing required parameter: 'prompt'.")),
    };
    if prompt.chars().count() > MAX_PROMPT_CHARS {
        return Err(invalid(
            "prompt",
            &format!("prompt is longer than {MAX_PROMPT_CHARS} characters."),
        ));
    }
    Ok(prompt)
}

/// The prompt of OpenAI's remix body (`{"prompt"}`, JSON; nothing else).
pub fn remix_prompt(body: &[u8]) -> Result<String, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            Code::InvalidJson,
            format!("The body is not valid JSON: {e}"),
        )
    })?;
    let Value::Object(o) = v else {
        return Err(ApiError::new(
            Code::InvalidRequest,
            "The body must be a JSON object.",
        ));
    };
    if let Some(k) = o.keys().find(|k| k.as_str() != "prompt") {
        return Err(invalid(k, &format!("Unrecognized request argument: {k}.")));
    }
    prompt_of(&o)
}

impl VideoRequest {
    /// Parses OpenAI's JSON body (`input_reference` as
    /// `{"image_url": "data:…;base64,…"}`).
    pub fn from_json(body: &[u8]) -> Result<Self, ApiError> {
        let v: Value = serde_json::from_slice(body).map_err(|e| {
            ApiError::new(
                Code::InvalidJson,
                format!("The body is not valid JSON: {e}"),
            )
        })?;
        let Value::Object(o) = v else {
            return Err(ApiError::new(
                Code::InvalidRequest,
                "The body must be a JSON object.",
            ));
        };
        Self::from_map(&o, None)
    }

    /// Parses the body as its `Content-Type` says: JSON, or
    /// `multipart/form-data` (what the official Python SDK sends for
    /// `videos.create`), whose text fields read as JSON strings.
    pub fn from_body(content_type: Option<&str>, body: &[u8]) -> Result<Self, ApiError> {
        let ct = content_type.unwrap_or("application/json");
        if !ct.to_ascii_lowercase().starts_with("multipart/form-data") {
            return Self::from_json(body);
        }
        let boundary = input::boundary(ct).ok_or_else(|| {
            ApiError::new(
                Code::InvalidRequest,
                "multipart/form-data without a boundary.",
            )
        })?;
        let mut fields = Map::new();
        let mut upload = None;
        for part in input::parse(body, boundary)? {
            match (part.name.as_str(), part.filename.is_some()) {
                ("input_reference", true) => {
                    upload = Some(InputReference::from_bytes(part.data)?);
                }
                // The SDK sends a reference object as bracketed fields.
                ("input_reference[image_url]", false) => {
                    let url = String::from_utf8_lossy(&part.data).into_owned();
                    fields.insert("input_reference".to_owned(), json!({"image_url": url}));
                }
                ("input_reference[file_id]", false) => {
                    let id = String::from_utf8_lossy(&part.data).into_owned();
                    fields.insert("input_reference".to_owned(), json!({"file_id": id}));
                }
                _ => {
                    let text = String::from_utf8_lossy(&part.data).into_owned();
                    fields.insert(part.name, Value::String(text));
                }
            }
        }
        Self::from_map(&fields, upload)
    }

    fn from_map(o: &Map<String, Value>, upload: Option<InputReference>) -> Result<Self, ApiError> {
        const KNOWN: [&str; 5] = ["model", "prompt", "seconds", "size", "input_reference"];
        if let Some(k) = o.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(invalid(k, &format!("Unrecognized request argument: {k}.")));
        }
        let prompt = prompt_of(o)?;
        let model = match o.get("model") {
            None | Some(Value::Null) => AUTO.to_owned(),
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(_) => return Err(invalid("model", "model must be a non-empty string.")),
        };
        // OpenAI types seconds as a string ("4"); a number is accepted too.
        let seconds = match o.get("seconds") {
            None | Some(Value::Null) => DEFAULT_SECONDS,
            Some(Value::String(s)) => s.trim().parse::<u32>().map_err(|_| {
                invalid(
                    "seconds",
                    "seconds must be a whole number of seconds, e.g. \"4\".",
                )
            })?,
            Some(Value::Number(n)) => n
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| invalid("seconds", "seconds must be a whole number of seconds."))?,
            Some(_) => {
                return Err(invalid(
                    "seconds",
                    "seconds must be a string such as \"4\".",
                ));
            }
        };
        if !(1..=MAX_SECONDS).contains(&seconds) {
            return Err(invalid(
                "seconds",
                &format!("seconds must be between 1 and {MAX_SECONDS}."),
            ));
        }
        let size = match o.get("size") {
            None | Some(Value::Null) => DEFAULT_SIZE.to_owned(),
            Some(Value::String(s)) if parse_size(s).is_some() => s.clone(),
            Some(_) => {
                return Err(invalid(
                    "size",
                    "size must be WIDTHxHEIGHT with each side 64-4096, e.g. \"1280x720\".",
                ));
            }
        };
        let input_reference = match (upload, o.get("input_reference")) {
            (Some(image), _) => Some(image),
            (None, None | Some(Value::Null)) => None,
            (None, Some(Value::Object(r))) => match r.get("image_url") {
                Some(Value::String(url)) => Some(InputReference::from_data_url(url)?),
                _ => {
                    return Err(invalid(
                        "input_reference",
                        "input_reference must be an uploaded image file or {\"image_url\": \"data:…;base64,…\"} (DOL has no Files API for file_id).",
                    ));
                }
            },
            (None, Some(_)) => {
                return Err(invalid(
                    "input_reference",
                    "input_reference must be an uploaded image file (multipart/form-data) or {\"image_url\": \"data:…;base64,…\"}.",
                ));
            }
        };
        Ok(VideoRequest {
            model,
            prompt,
            seconds,
            size,
            input_reference,
        })
    }
}

/// Width and height of a `WIDTHxHEIGHT` size, each 64-4096.
pub fn parse_size(s: &str) -> Option<(u32, u32)> {
    let (w, h) = s.split_once('x')?;
    let w: u32 = w.parse().ok()?;
    let h: u32 = h.parse().ok()?;
    let ok = |n: u32| (64..=4096).contains(&n);
    (ok(w) && ok(h)).then_some((w, h))
}

/// One platform model a job may run on, with what selection knew of it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Choice {
    /// Platform name (`openai`, `runway`, `replicate`).
    pub platform: String,
    /// The platform's model id.
    pub model: String,
}

/// One stored job.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// `video_<hex>`.
    pub id: String,
    /// The key that created it (only it may see it).
    pub key_id: String,
    /// Lifecycle state.
    pub status: Status,
    /// 0-100.
    pub progress: u8,
    /// The model asked for.
    pub model: String,
    /// The prompt.
    pub prompt: String,
    /// Clip length, seconds.
    pub seconds: u32,
    /// `WIDTHxHEIGHT`.
    pub size: String,
    /// Unix ms.
    pub created_at_ms: u64,
    /// Unix ms of the terminal state.
    pub completed_at_ms: Option<u64>,
    /// Where it runs now.
    pub current: Choice,
    /// The platform's id of the job.
    pub task_id: String,
    /// Platforms still to fall back to, best first.
    pub candidates: Vec<Choice>,
    /// What each platform did (JSON objects).
    pub attempts: Vec<Value>,
    /// Polls at the current platform.
    pub polls: u32,
    /// Consecutive polls that found the platform throttling the job.
    pub throttled_polls: u32,
    /// When the scan polls it next, Unix ms.
    pub next_poll_at_ms: u64,
    /// When the platform started rendering, Unix ms.
    pub started_at_ms: Option<u64>,
    /// When it times out, Unix ms.
    pub deadline_at_ms: u64,
    /// The platform's URL of the result.
    pub output_url: Option<String>,
    /// Why it failed: code and message.
    pub error: Option<(String, String)>,
    /// Budget reserved at creation, micro-dollars.
    pub reserved_micros: u64,
    /// Charged at completion; `None` with `cost_unknown` = no price known.
    pub cost_micros: Option<u64>,
    /// The price of the platform model is unknown (flagged, never $0).
    pub cost_unknown: bool,
    /// Completion webhook: `none`, `pending` or `delivered`.
    pub notify_state: String,
    /// The video this one remixes (`POST /v1/videos/{id}/remix`), if any.
    pub remixed_from: Option<String>,
}

impl Job {
    /// How many platforms the job left for another (submits refused or
    /// jobs failed there).
    pub fn fallbacks(&self) -> u32 {
        let tried = self
            .attempts
            .iter()
            .filter(|a| matches!(a["outcome"].as_str(), Some("submitted" | "submit_failed")))
            .count();
        u32::try_from(tried.saturating_sub(1)).unwrap_or(u32::MAX)
    }

    /// OpenAI's video object, with DOL's decision under `dol`.
    pub fn to_object(&self) -> Value {
        let secs = |ms: u64| ms / 1_000;
        let error = self
            .error
            .as_ref()
            .map(|(code, message)| json!({"code": code, "message": message}));
        json!({
            "id": self.id,
            "object": "video",
            "status": self.status.as_str(),
            "progress": self.progress,
            "model": self.model,
            "prompt": self.prompt,
            "seconds": self.seconds.to_string(),
            "size": self.size,
            "created_at": secs(self.created_at_ms),
            "completed_at": self.completed_at_ms.map(secs),
            "expires_at": Value::Null,
            "remixed_from_video_id": self.remixed_from,
            "error": error,
            "dol": {
                "platform": self.current.platform,
                "platform_model": self.current.model,
                "fallbacks": self.fallbacks(),
                "cost_micros": self.cost_micros,
                "cost_unknown": self.cost_unknown,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<VideoRequest, ApiError> {
        VideoRequest::from_json(v.to_string().as_bytes())
    }

    #[test]
    fn a_remix_takes_only_a_prompt() {
        assert_eq!(
            remix_prompt(br#"{"prompt":"at night"}"#).unwrap(),
            "at night"
        );
        let field = |b: &[u8]| remix_prompt(b).unwrap_err().field;
        assert_eq!(field(br#"{}"#).as_deref(), Some("prompt"));
        assert_eq!(field(br#"{"prompt":" "}"#).as_deref(), Some("prompt"));
        assert_eq!(field(br#"{"prompt":3}"#).as_deref(), Some("prompt"));
        assert_eq!(
            field(br#"{"prompt":"x","seconds":"8"}"#).as_deref(),
            Some("seconds")
        );
        assert_eq!(remix_prompt(b"nope").unwrap_err().code, Code::InvalidJson);
        assert_eq!(remix_prompt(b"[1]").unwrap_err().status(), 400);
    }

    #[test]
    fn a_minimal_body_takes_openais_defaults() {
        let r = parse(json!({"prompt": "a cat"})).unwrap();
        assert_eq!(
            (r.model.as_str(), r.seconds, r.size.as_str()),
            ("auto", 4, "720x1280")
        );
        let r = parse(
            json!({"prompt": "a cat", "seconds": "8", "size": "1280x720", "model": "sora-2"}),
        )
        .unwrap();
        assert_eq!((r.seconds, r.model.as_str()), (8, "sora-2"));
        assert_eq!(
            parse(json!({"prompt": "x", "seconds": 12}))
                .unwrap()
                .seconds,
            12
        );
    }

    #[test]
    fn each_bad_field_is_named() {
        let field = |v: Value| parse(v).unwrap_err().field.unwrap_or_default();
        assert_eq!(field(json!({})), "prompt");
        assert_eq!(field(json!({"prompt": " "})), "prompt");
        assert_eq!(field(json!({"prompt": 3})), "prompt");
        assert_eq!(field(json!({"prompt": "x", "seconds": "four"})), "seconds");
        assert_eq!(field(json!({"prompt": "x", "seconds": "0"})), "seconds");
        assert_eq!(field(json!({"prompt": "x", "seconds": 61})), "seconds");
        assert_eq!(field(json!({"prompt": "x", "size": "big"})), "size");
        assert_eq!(field(json!({"prompt": "x", "size": "10x10"})), "size");
        assert_eq!(field(json!({"prompt": "x", "model": 1})), "model");
        assert_eq!(field(json!({"prompt": "x", "colour": "red"})), "colour");
        assert_eq!(
            field(json!({"prompt": "x", "input_reference": "f"})),
            "input_reference"
        );
        let e = VideoRequest::from_json(b"{nope").unwrap_err();
        assert_eq!(e.status(), 400);
        assert_eq!(VideoRequest::from_json(b"[]").unwrap_err().status(), 400);
    }

    #[test]
    fn the_sdks_multipart_form_reads_like_json() {
        let body = "--b0\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\na red fox\r\n\
--b0\r\nContent-Disposition: form-data; name=\"seconds\"\r\n\r\n8\r\n\
--b0\r\nContent-Disposition: form-data; name=\"size\"\r\n\r\n1280x720\r\n--b0--\r\n";
        let r = VideoRequest::from_body(Some("multipart/form-data; boundary=b0"), body.as_bytes())
            .unwrap();
        assert_eq!(
            (r.prompt.as_str(), r.seconds, r.size.as_str()),
            ("a red fox", 8, "1280x720")
        );
        let file = "--b0\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nx\r\n\
--b0\r\nContent-Disposition: form-data; name=\"input_reference\"; filename=\"a.png\"\r\n\r\nPNG\r\n--b0--";
        let e = VideoRequest::from_body(Some("multipart/form-data; boundary=b0"), file.as_bytes())
            .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("input_reference"));
        assert_eq!(
            VideoRequest::from_body(Some("multipart/form-data"), b"")
                .unwrap_err()
                .status(),
            400
        );
        assert_eq!(
            VideoRequest::from_body(Some("multipart/form-data; boundary=b0"), b"junk")
                .unwrap_err()
                .status(),
            400
        );
        assert_eq!(
            VideoRequest::from_body(None, br#"{"prompt":"x"}"#)
                .unwrap()
                .prompt,
            "x"
        );
    }

    #[test]
    fn an_uploaded_or_data_url_image_is_the_input_reference() {
        let png = b"\x89PNG\r\n\x1a\n\x00\xff\r\n";
        let mut body = b"--b0\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nx\r\n--b0\r\n\
Content-Disposition: form-data; name=\"input_reference\"; filename=\"a.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            .to_vec();
        body.extend_from_slice(png);
        body.extend_from_slice(b"\r\n--b0--\r\n");
        let r = VideoRequest::from_body(Some("multipart/form-data; boundary=b0"), &body).unwrap();
        let image = r.input_reference.unwrap();
        assert_eq!(
            (image.media_type.as_str(), image.data.as_slice()),
            ("image/png", &png[..])
        );
        let url = image.data_uri();
        let r = parse(json!({"prompt": "x", "input_reference": {"image_url": url}})).unwrap();
        assert_eq!(r.input_reference, Some(image));
        let field = |v: Value| parse(v).unwrap_err().field.unwrap_or_default();
        assert_eq!(
            field(json!({"prompt": "x", "input_reference": {"file_id": "file_1"}})),
            "input_reference"
        );
        assert_eq!(
            field(json!({"prompt": "x", "input_reference": {"image_url": "https://a/b.png"}})),
            "input_reference"
        );
        let id = b"--b0\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nx\r\n--b0\r\n\
Content-Disposition: form-data; name=\"input_reference[file_id]\"\r\n\r\nfile_1\r\n--b0--\r\n";
        let e = VideoRequest::from_body(Some("multipart/form-data; boundary=b0"), id).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("input_reference"));
    }

    #[test]
    fn statuses_round_trip_and_know_the_end() {
        for s in ["queued", "in_progress", "completed", "failed", "cancelled"] {
            assert_eq!(Status::parse(s).unwrap().as_str(), s);
        }
        assert!(Status::Cancelled.is_terminal() && !Status::InProgress.is_terminal());
        assert_eq!(Status::parse("done"), None);
    }
}
