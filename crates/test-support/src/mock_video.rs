//! A mock video platform over real HTTP (issue 15). One server speaks all
//! three wire formats DOL adapts (their paths do not collide), so a test
//! starts one per platform it configures:
//!
//! | platform | submit | poll | cancel |
//! |---|---|---|---|
//! | OpenAI videos | `POST /v1/videos` (a remix: `POST /v1/videos/{id}/remix`) | `GET /v1/videos/{id}` (+ `/content`: bytes) | `DELETE /v1/videos/{id}` |
//! | Runway tasks | `POST /v1/text_to_video`, `POST /v1/image_to_video` | `GET /v1/tasks/{id}` | `DELETE /v1/tasks/{id}` |
//! | Replicate predictions | `POST /v1/models/{owner}/{name}/predictions` | `GET /v1/predictions/{id}` | `POST /v1/predictions/{id}/cancel` |
//!
//! Run-time behaviour ([`VideoBehavior`], changeable while the host runs):
//! slow (polls spent running, an answer delay), throttled (Runway's
//! `THROTTLED` for the first polls), failing (submits refused with a
//! status, or jobs ending `failed`), and callback delivery
//! ([`MockVideo::deliver_callbacks`]: the finished prediction POSTed to
//! the `webhook` URL a Replicate submit named, signed as Standard Webhooks,
//! as many times as asked — at-least-once delivery on demand, no timers).
//! Results are served at `GET /files/{id}.mp4`.
//!
//! A submit's image is checked and kept ([`VideoRequestSeen::image`]): the
//! OpenAI multipart upload's `input_reference` file part, Runway's
//! `promptImage` and Replicate's `input.first_frame_image`/`input.image`
//! data URIs, decoded. Model lists for discovery and probes: OpenAI's
//! `GET /v1/models`, Runway's `GET /v1/organization` (`tier.models`),
//! Replicate's `GET /v1/account` (no list); [`VideoBehavior::models`] adds
//! models, [`VideoBehavior::probes_fail`] makes them answer 503.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// The bytes every finished mock video holds (`MOCKMP4 <id>`).
pub fn video_bytes(id: &str) -> Vec<u8> {
    format!("MOCKMP4 {id}").into_bytes()
}

/// How the platform behaves from now on.
#[derive(Debug, Clone, Default)]
pub struct VideoBehavior {
    /// Polls a job spends running before it ends (slow platforms).
    pub running_polls: u32,
    /// Polls answered `THROTTLED` (Runway) before the job runs.
    pub throttled_polls: u32,
    /// Submits are refused with this status.
    pub refuse_submit: Option<u16>,
    /// Jobs end `failed` instead of succeeding.
    pub fail_jobs: bool,
    /// Every answer waits this long.
    pub delay: Duration,
    /// Models listed beside the shipped catalog's (discovery finds them).
    pub models: Vec<String>,
    /// The model-list and account routes answer 503 (a probe fails).
    pub probes_fail: bool,
}

/// A request the mock received.
#[derive(Debug, Clone)]
pub struct VideoRequestSeen {
    /// `GET`, `POST`, …
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers, lowercase names.
    pub headers: Vec<(String, String)>,
    /// Body text.
    pub body: String,
    /// The image a submit carried (decoded), if any.
    pub image: Option<Vec<u8>>,
}

#[derive(Debug, Clone)]
struct MockJob {
    kind: &'static str,
    polls: u32,
    webhook: Option<String>,
}

#[derive(Default)]
struct State {
    behavior: VideoBehavior,
    jobs: BTreeMap<String, MockJob>,
    seen: Vec<VideoRequestSeen>,
    next: u32,
}

/// A running mock platform; stops when dropped.
pub struct MockVideo {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MockVideo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MockVideo {
    /// Starts a mock on a free port of 127.0.0.1.
    pub async fn start() -> MockVideo {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind video mock");
        let addr = listener.local_addr().expect("video mock addr");
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(handle(shared, addr, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        MockVideo { addr, state, task }
    }

    /// The API base URL to configure (`http://127.0.0.1:PORT/v1`).
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Changes the behaviour of later answers.
    pub fn set_behavior(&self, behavior: VideoBehavior) {
        self.state.lock().expect("video mock").behavior = behavior;
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<VideoRequestSeen> {
        self.state.lock().expect("video mock").seen.clone()
    }

    /// How many requests had `method` and a path starting with `prefix`.
    pub fn count(&self, method: &str, prefix: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == method && r.path.starts_with(prefix))
            .count()
    }

    /// Finishes every Replicate prediction that named a webhook and POSTs
    /// it there `times` times, signed with `secret` (Standard Webhooks,
    /// the same `webhook-id` each time, as a redelivery). Returns the
    /// statuses the receiver answered.
    pub async fn deliver_callbacks(&self, secret: &str, times: u32) -> Vec<u16> {
        let targets: Vec<(String, String)> = {
            let s = self.state.lock().expect("video mock");
            s.jobs
                .iter()
                .filter_map(|(id, j)| j.webhook.clone().map(|w| (id.clone(), w)))
                .collect()
        };
        let client = reqwest::Client::new();
        let mut statuses = Vec::new();
        for (id, url) in targets {
            let fail = self.state.lock().expect("video mock").behavior.fail_jobs;
            let body = replicate_final(&id, fail, self.addr).to_string();
            let msg_id = format!("msg_{id}");
            for _ in 0..times {
                let ts = chrono::Utc::now().timestamp().max(0) as u64;
                let sig = dol_core::video::webhook::sign(secret, &msg_id, ts, body.as_bytes());
                let r = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("webhook-id", &msg_id)
                    .header("webhook-timestamp", ts.to_string())
                    .header("webhook-signature", sig)
                    .body(body.clone())
                    .send()
                    .await
                    .expect("callback sent");
                statuses.push(r.status().as_u16());
            }
        }
        statuses
    }
}

fn file_url(addr: SocketAddr, id: &str) -> String {
    format!("http://{addr}/files/{id}.mp4")
}

fn replicate_final(id: &str, fail: bool, addr: SocketAddr) -> Value {
    if fail {
        json!({"id": id, "status": "failed", "output": null, "error": "mock failure"})
    } else {
        json!({"id": id, "status": "succeeded", "output": file_url(addr, id), "error": null})
    }
}

/// A submit's fields (JSON, or a multipart form's text parts as strings)
/// and the image it carried, decoded.
fn submitted(headers: &[(String, String)], body: &[u8]) -> (Value, Option<Vec<u8>>) {
    use dol_core::video::input;
    let ct = headers
        .iter()
        .find(|(k, _)| k == "content-type")
        .map_or("", |(_, v)| v.as_str());
    if let Some(boundary) = input::boundary(ct) {
        let mut fields = serde_json::Map::new();
        let mut image = None;
        for part in input::parse(body, boundary).unwrap_or_default() {
            if part.filename.is_some() {
                image = Some(part.data);
            } else {
                fields.insert(part.name, json!(String::from_utf8_lossy(&part.data)));
            }
        }
        return (Value::Object(fields), image);
    }
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let uri = [
        &v["promptImage"],
        &v["input"]["first_frame_image"],
        &v["input"]["image"],
    ]
    .into_iter()
    .find_map(Value::as_str);
    let image = uri.and_then(|u| {
        let (_, data) = u.split_once(";base64,")?;
        dol_core::video::webhook::base64_decode(data)
    });
    (v, image)
}

/// The model list (or account) of a platform, in its shape.
fn listing(route: &str, b: &VideoBehavior) -> hyper::Response<Full<Bytes>> {
    if b.probes_fail {
        return json_reply(503, &json!({"error": "mock outage"}));
    }
    let catalog = dol_core::video::catalog::shipped();
    let of = |platform: &str| -> Vec<String> {
        catalog
            .iter()
            .filter(|m| m.platform == platform)
            .map(|m| m.model.clone())
            .chain(b.models.iter().cloned())
            .collect()
    };
    match route {
        "models" => {
            // OpenAI lists every model it serves, chat ones too.
            let data: Vec<Value> = of("openai")
                .into_iter()
                .chain(["gpt-4o-mini".to_owned()])
                .map(|id| json!({"id": id, "object": "model", "owned_by": "openai"}))
                .collect();
            json_reply(200, &json!({"object": "list", "data": data}))
        }
        "organization" => {
            let models: serde_json::Map<String, Value> = of("runway")
                .into_iter()
                .map(|m| {
                    (
                        m,
                        json!({"maxConcurrentGenerations": 2, "maxDailyGenerations": 50}),
                    )
                })
                .collect();
            json_reply(
                200,
                &json!({"creditBalance": 1000, "tier": {"maxMonthlyCreditSpend": 10000, "models": models}}),
            )
        }
        _ => json_reply(200, &json!({"type": "organization", "username": "mock"})),
    }
}

fn json_reply(status: u16, v: &Value) -> hyper::Response<Full<Bytes>> {
    let mut r = hyper::Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = hyper::StatusCode::from_u16(status).expect("status");
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn bytes_reply(bytes: Vec<u8>, content_type: &'static str) -> hyper::Response<Full<Bytes>> {
    let mut r = hyper::Response::new(Full::new(Bytes::from(bytes)));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}

/// The state of job `id` at its `polls`-th poll, in `kind`'s words.
fn status_at(kind: &str, id: &str, polls: u32, b: &VideoBehavior, addr: SocketAddr) -> Value {
    let throttled = kind == "runway" && polls <= b.throttled_polls;
    let after_throttle = polls.saturating_sub(if kind == "runway" {
        b.throttled_polls
    } else {
        0
    });
    let running = after_throttle <= b.running_polls;
    let progress = if b.running_polls == 0 {
        50
    } else {
        after_throttle * 100 / (b.running_polls + 1)
    };
    match kind {
        "openai" if running => {
            json!({"id": id, "object": "video", "status": "in_progress", "progress": progress})
        }
        "openai" if b.fail_jobs => {
            json!({"id": id, "object": "video", "status": "failed", "progress": 0, "error": {"code": "mock_failed", "message": "mock failure"}})
        }
        "openai" => json!({"id": id, "object": "video", "status": "completed", "progress": 100}),
        "runway" if throttled => json!({"id": id, "status": "THROTTLED"}),
        "runway" if running => {
            json!({"id": id, "status": "RUNNING", "progress": f64::from(progress) / 100.0})
        }
        "runway" if b.fail_jobs => {
            json!({"id": id, "status": "FAILED", "failure": "mock failure", "failureCode": "INTERNAL.MOCK"})
        }
        "runway" => json!({"id": id, "status": "SUCCEEDED", "output": [file_url(addr, id)]}),
        _ if running => json!({"id": id, "status": "processing", "output": null}),
        _ => replicate_final(id, b.fail_jobs, addr),
    }
}

async fn handle(
    state: Arc<Mutex<State>>,
    addr: SocketAddr,
    req: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let method = req.method().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                v.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body_text = String::from_utf8_lossy(&body).into_owned();
    let (sent, image) = submitted(&headers, &body);
    let behavior = {
        let mut s = state.lock().expect("video mock");
        s.seen.push(VideoRequestSeen {
            method: method.clone(),
            path: path.clone(),
            headers,
            body: body_text,
            image,
        });
        s.behavior.clone()
    };
    if !behavior.delay.is_zero() {
        tokio::time::sleep(behavior.delay).await;
    }
    let parts: Vec<&str> = path
        .split('?')
        .next()
        .unwrap_or("")
        .split('/')
        .filter(|p| !p.is_empty())
        .collect();
    let submit_kind = match (method.as_str(), parts.as_slice()) {
        ("POST", ["v1", "videos"]) => Some("openai"),
        // A remix is a new OpenAI job (the source id is not checked).
        ("POST", ["v1", "videos", _, "remix"]) => Some("openai"),
        ("POST", ["v1", "text_to_video" | "image_to_video"]) => Some("runway"),
        ("POST", ["v1", "models", _, _, "predictions"]) => Some("replicate"),
        _ => None,
    };
    if let Some(kind) = submit_kind {
        if let Some(status) = behavior.refuse_submit {
            return json_reply(status, &json!({"error": "mock refusal"}));
        }
        let mut s = state.lock().expect("video mock");
        s.next += 1;
        let id = format!("{kind}_{}", s.next);
        let webhook = sent["webhook"].as_str().map(str::to_owned);
        s.jobs.insert(
            id.clone(),
            MockJob {
                kind,
                polls: 0,
                webhook,
            },
        );
        return match kind {
            "openai" => json_reply(
                200,
                &json!({"id": id, "object": "video", "status": "queued", "progress": 0, "model": sent["model"], "seconds": sent["seconds"], "size": sent["size"]}),
            ),
            "runway" => json_reply(200, &json!({"id": id})),
            _ => json_reply(
                201,
                &json!({"id": id, "status": "starting", "output": null}),
            ),
        };
    }
    if let ("GET", ["v1", "models" | "organization" | "account"]) =
        (method.as_str(), parts.as_slice())
    {
        return listing(parts[1], &behavior);
    }
    let mut s = state.lock().expect("video mock");
    match (method.as_str(), parts.as_slice()) {
        ("GET", ["v1", "videos" | "tasks" | "predictions", id]) => match s.jobs.get_mut(*id) {
            Some(j) => {
                j.polls += 1;
                let (kind, polls) = (j.kind, j.polls);
                json_reply(200, &status_at(kind, id, polls, &behavior, addr))
            }
            None => json_reply(404, &json!({"error": "no such job"})),
        },
        // OpenAI's variants: the MP4, or a preview image of it.
        ("GET", ["v1", "videos", id, "content"]) if s.jobs.contains_key(*id) => {
            if path.contains("variant=thumbnail") {
                bytes_reply(b"RIFF\0\0\0\0WEBPVP8 thumbnail".to_vec(), "image/webp")
            } else {
                bytes_reply(video_bytes(id), "video/mp4")
            }
        }
        ("GET", ["files", file]) => {
            bytes_reply(video_bytes(file.trim_end_matches(".mp4")), "video/mp4")
        }
        ("DELETE", ["v1", "videos" | "tasks", id])
        | ("POST", ["v1", "predictions", id, "cancel"]) => {
            if s.jobs.remove(*id).is_some() {
                json_reply(200, &json!({"id": id, "deleted": true}))
            } else {
                json_reply(404, &json!({"error": "no such job"}))
            }
        }
        _ => json_reply(
            404,
            &json!({"error": format!("no mock route {method} {path}")}),
        ),
    }
}
