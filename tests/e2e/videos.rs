//! Async video jobs end to end (issue 15): the real host with the `videos`
//! and `scans` components, mock video platforms speaking OpenAI's,
//! Runway's and Replicate's wire formats over real HTTP, and the official
//! `openai` SDK. Jobs advance when polled (`GET /v1/videos/{id}`) and at
//! cron ticks injected through the manual clock; nothing sleeps.

use dol_test_support::mock_video::{MockVideo, VideoBehavior};
use dol_test_support::receiver::Receiver;
use dol_test_support::{TestHost, free_port};
use serde_json::{Value, json};

const ADMIN: &str = "admin-secret";
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn var(name: &str) -> String {
    format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase())
}

/// A host with the given platforms (`openai`, `runway`, `replicate`) on
/// mocks; polls are due at once (interval 0) so every read polls.
async fn start(platforms: &[(&str, &MockVideo)], extra: &[(&str, &str)]) -> TestHost {
    start_with(platforms, extra, 0).await
}

/// [`start`] on `port` (0: any free one).
async fn start_with(
    platforms: &[(&str, &MockVideo)],
    extra: &[(&str, &str)],
    port: u16,
) -> TestHost {
    let mut b = TestHost::builder("spin.toml")
        .listen_port(port)
        .variable(&var("admin_token"), ADMIN)
        .variable(&var("video_poll_interval_ms"), "0");
    for (name, mock) in platforms {
        let key = if *name == "replicate" {
            "replicate_api_token".to_owned()
        } else {
            format!("{name}_api_key")
        };
        b = b
            .variable(&var(&key), &format!("key-{name}"))
            .variable(&var(&format!("{name}_base_url")), &mock.base_url());
    }
    for (k, v) in extra {
        b = b.variable(&var(k), v);
    }
    b.start().await
}

async fn new_key(host: &TestHost) -> String {
    let r = host
        .client
        .post(host.url("/admin/keys"))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "videos"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    r.json::<Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn call(
    host: &TestHost,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    host.call(method, path, key, body).await
}

async fn create(host: &TestHost, key: &str, body: Value) -> Value {
    let (status, v) = call(
        host,
        "POST",
        "/v1/videos",
        Some(key),
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    v
}

async fn get(host: &TestHost, key: &str, id: &str) -> Value {
    let (status, v) = call(host, "GET", &format!("/v1/videos/{id}"), Some(key), None).await;
    assert_eq!(status, 200, "{v}");
    v
}

/// A small PNG (its magic number, then a marker the mocks' copies show).
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR DOL-TEST-IMAGE \xff\r\n--";

/// `POST /v1/videos` as `multipart/form-data` with `fields` and an
/// `input_reference` file part holding `image` (as the SDK sends it).
async fn create_multipart(
    host: &TestHost,
    key: &str,
    fields: &[(&str, &str)],
    image: &[u8],
    content_type: &str,
) -> (u16, Value) {
    let boundary = "e2e-boundary-0123456789";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"input_reference\"; filename=\"ref\"\r\nContent-Type: {content_type}\r\n\r\n")
            .as_bytes(),
    );
    body.extend_from_slice(image);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let r = host
        .client
        .post(host.url("/v1/videos"))
        .bearer_auth(key)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn count(host: &TestHost, sql: &str, id: &str) -> i64 {
    let db = rusqlite::Connection::open(host.state_dir().join("sqlite_db.db")).unwrap();
    db.query_row(sql, [id], |r| r.get(0)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn videos_work_from_the_official_openai_sdk() {
    let openai = MockVideo::start().await;
    let runway = MockVideo::start().await;
    runway.set_behavior(VideoBehavior {
        running_polls: 2,
        ..VideoBehavior::default()
    });
    let host = start(&[("openai", &openai), ("runway", &runway)], &[]).await;
    let key = new_key(&host).await;
    let stdout = super::gateway::sdk_check("openai-sdk", "videos", host.url("/v1"), key).await;
    assert!(stdout.contains("all checks passed"), "{stdout}");
    // The SDK's input_reference upload reached the OpenAI-style platform
    // as its multipart file part, bytes intact.
    let sent = openai.requests();
    assert!(
        sent.iter().any(|r| r.image.as_deref().is_some_and(|i| {
            i.starts_with(b"\x89PNG") && i.windows(8).any(|w| w == b"SDKIMAGE")
        })),
        "no image reached the platform"
    );
    // The OpenAI-style platform got the key; its content was fetched through DOL.
    assert!(
        sent.iter()
            .any(|r| r.path.starts_with("/v1/videos/") && r.path.contains("/content"))
    );
    assert!(sent.iter().all(|r| {
        r.headers
            .iter()
            .any(|(k, v)| k == "authorization" && v == "Bearer key-openai")
    }));
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_video_platform_falls_back_to_the_next() {
    let openai = MockVideo::start().await;
    let runway = MockVideo::start().await;
    let host = start(&[("openai", &openai), ("runway", &runway)], &[]).await;
    let key = new_key(&host).await;
    // With nothing observed yet, sora-2 (OpenAI) ranks first. A job the
    // platform fails after accepting it moves on to the next platform.
    openai.set_behavior(VideoBehavior {
        fail_jobs: true,
        ..VideoBehavior::default()
    });
    let v = create(
        &host,
        &key,
        json!({"prompt": "a harbour at dawn", "model": "auto"}),
    )
    .await;
    assert_eq!(v["dol"]["platform"], "openai", "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let moved = get(&host, &key, &id).await;
    assert_eq!(moved["dol"]["platform"], "runway", "{moved}");
    let done = get(&host, &key, &id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["dol"]["fallbacks"], 1);
    assert_eq!(
        openai.count("DELETE", "/v1/videos/"),
        1,
        "the failed job is cancelled at its platform"
    );
    // OpenAI's failure now ranks Runway first; a refused submit lands the
    // next job back on OpenAI at once.
    openai.set_behavior(VideoBehavior::default());
    runway.set_behavior(VideoBehavior {
        refuse_submit: Some(503),
        ..VideoBehavior::default()
    });
    let v = create(&host, &key, json!({"prompt": "a lighthouse in fog"})).await;
    assert_eq!(
        (
            v["dol"]["platform"].as_str(),
            v["dol"]["fallbacks"].as_u64()
        ),
        (Some("openai"), Some(1)),
        "{v}"
    );
    let id = done["id"].as_str().unwrap();
    // Recorded once, as a fallback, priced per second (4 s of veo3.1_fast at $0.15).
    let (status, rec) = call(
        &host,
        "GET",
        &format!("/admin/requests/{id}"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 200, "{rec}");
    assert_eq!(
        (rec["route"].as_str(), rec["fallbacks"].as_u64()),
        (Some("videos"), Some(1))
    );
    assert_eq!(rec["cost_micros"], 600_000);
    // Both platforms in the one health score and /metrics: a fallback
    // counts against the platform that failed (too few outcomes yet to
    // make either unhealthy).
    let (status, health) = call(&host, "GET", "/api/health", None, None).await;
    assert_eq!(status, 200, "{health}");
    let platforms = &health["videoPlatforms"];
    assert_eq!(platforms[0]["platform"], "openai", "{health}");
    assert_eq!(
        (
            platforms[0]["failures"].as_u64(),
            platforms[0]["open"].as_u64()
        ),
        (Some(1), Some(1)),
        "{health}"
    );
    assert_eq!(platforms[1]["platform"], "runway");
    assert_eq!(
        (
            platforms[1]["successes"].as_u64(),
            platforms[1]["failures"].as_u64()
        ),
        (Some(1), Some(1)),
        "{health}"
    );
    assert_eq!(platforms[1]["costMicros"], 600_000);
    let video = health["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "video")
        .unwrap_or_else(|| panic!("{health}"));
    assert_eq!(video["ok"], true, "{health}");
    let metrics = reqwest::get(host.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "dol_video_jobs{platform=\"runway\",status=\"completed\"} 1",
        "dol_video_jobs{platform=\"openai\",status=\"queued\"} 1",
        "dol_video_platform_failures{platform=\"openai\"} 1",
        "dol_video_platform_healthy{platform=\"runway\"} 1",
        "dol_video_cost_usd{platform=\"runway\"} 0.6",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
    // The official parser accepts the video series.
    let parsed = super::health_api::prometheus_check(
        super::health_api::prometheus_python(),
        host.url("/metrics"),
    )
    .await;
    assert!(parsed.contains("family dol_video_jobs gauge"), "{parsed}");
    host.app.shutdown().await;
}

/// Polls `id` until it ends (the mock finishes a job within a few polls).
async fn until_ended(host: &TestHost, key: &str, id: &str) -> Value {
    for _ in 0..10 {
        let v = get(host, key, id).await;
        if v["status"] != "queued" && v["status"] != "in_progress" {
            return v;
        }
    }
    panic!("{id} did not end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_openai_video_is_remixed_and_other_platforms_refuse_it() {
    let openai = MockVideo::start().await;
    let runway = MockVideo::start().await;
    let host = start(&[("openai", &openai), ("runway", &runway)], &[]).await;
    let key = new_key(&host).await;
    let sora = create(&host, &key, json!({"prompt": "a fox", "model": "sora-2"})).await;
    let sora_id = sora["id"].as_str().unwrap().to_owned();
    let remix = |id: &str, body: &str| {
        let path = format!("/v1/videos/{id}/remix");
        let (key, body, host) = (key.clone(), body.to_owned(), &host);
        async move { call(host, "POST", &path, Some(&key), Some(&body)).await }
    };
    // Not completed yet: 409 naming the video.
    let (status, v) = remix(&sora_id, r#"{"prompt":"at night"}"#).await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["error"]["param"], "video_id", "{v}");
    assert_eq!(
        until_ended(&host, &key, &sora_id).await["status"],
        "completed"
    );
    // The content keeps the platform's type: the MP4, or a preview image.
    for (variant, content_type) in [("video", "video/mp4"), ("thumbnail", "image/webp")] {
        let response = host
            .client
            .get(host.url(&format!("/v1/videos/{sora_id}/content?variant={variant}")))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{variant}");
        assert_eq!(
            response.headers()["content-type"],
            content_type,
            "{variant}"
        );
    }
    let (status, v) = remix(&sora_id, r#"{"prompt":"the same fox at night"}"#).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["remixed_from_video_id"], sora_id.as_str(), "{v}");
    assert_eq!(v["dol"]["platform"], "openai");
    assert_eq!(v["model"], "sora-2");
    assert_eq!(openai.count("POST", "/v1/videos/openai_1/remix"), 1);
    let id = v["id"].as_str().unwrap().to_owned();
    let done = until_ended(&host, &key, &id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        done["dol"]["cost_micros"], 400_000,
        "priced as its source: 4 s of sora-2"
    );
    // Runway has no remix: 400 naming the video, nothing sent.
    let veo = create(
        &host,
        &key,
        json!({"prompt": "a fox", "model": "veo3.1_fast"}),
    )
    .await;
    let veo_id = veo["id"].as_str().unwrap().to_owned();
    until_ended(&host, &key, &veo_id).await;
    let (status, v) = remix(&veo_id, r#"{"prompt":"at night"}"#).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["param"], "video_id", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("runway"),
        "{v}"
    );
    // Each bad input, its own answer.
    for (body, param) in [
        ("{}", "prompt"),
        (r#"{"prompt":""}"#, "prompt"),
        (r#"{"prompt":"x","seconds":"8"}"#, "seconds"),
    ] {
        let (status, v) = remix(&sora_id, body).await;
        assert_eq!(
            (status, v["error"]["param"].as_str()),
            (400, Some(param)),
            "{body}: {v}"
        );
    }
    let (status, v) = remix(&sora_id, "not json").await;
    assert_eq!(status, 400, "{v}");
    let (status, v) = remix("video_nope", r#"{"prompt":"x"}"#).await;
    assert_eq!(status, 404, "{v}");
    let (status, _) = call(
        &host,
        "POST",
        &format!("/v1/videos/{sora_id}/remix"),
        None,
        Some("{}"),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = call(
        &host,
        "GET",
        &format!("/v1/videos/{sora_id}/remix"),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(status, 405);
    assert_eq!(
        openai.count("POST", "/v1/videos/"),
        1,
        "only the one remix reached OpenAI"
    );
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_job_survives_a_host_restart_and_the_cron_scan_finishes_it() {
    // An image-to-video job: its first platform fails it after the
    // restart, and the fallback still sends the caller's image.
    let openai = MockVideo::start().await;
    openai.set_behavior(VideoBehavior {
        fail_jobs: true,
        ..VideoBehavior::default()
    });
    let runway = MockVideo::start().await;
    runway.set_behavior(VideoBehavior {
        running_polls: 1,
        ..VideoBehavior::default()
    });
    let hook = Receiver::start(200).await;
    let host = start(
        &[("openai", &openai), ("runway", &runway)],
        &[
            ("video_webhook_url", &hook.url("/video-events")),
            ("video_webhook_secret", SECRET),
        ],
    )
    .await;
    let key = new_key(&host).await;
    let (status, v) = create_multipart(
        &host,
        &key,
        &[("prompt", "a train through hills"), ("seconds", "8")],
        PNG,
        "image/png",
    )
    .await;
    assert_eq!(
        (status, v["dol"]["platform"].as_str()),
        (200, Some("openai")),
        "{v}"
    );
    assert_eq!(openai.requests()[0].image.as_deref(), Some(PNG));
    let id = v["id"].as_str().unwrap().to_owned();
    assert_eq!(
        count(
            &host,
            "SELECT COUNT(*) FROM video_inputs WHERE job_id = ?",
            &id
        ),
        1
    );
    let host = host.restart().await;
    // Tick 1 polls OpenAI (failed) and falls back to Runway's image_to_video.
    host.cron_tick(1).await;
    let submit = runway
        .requests()
        .into_iter()
        .find(|r| r.path == "/v1/image_to_video")
        .expect("the fallback went to Runway's image_to_video");
    assert_eq!(submit.image.as_deref(), Some(PNG));
    host.cron_tick(2).await;
    assert_eq!(runway.count("GET", "/v1/tasks/"), 1);
    host.cron_tick(3).await;
    let (status, v) = call(&host, "GET", &format!("/v1/videos/{id}"), Some(&key), None).await;
    assert_eq!(
        (status, v["status"].as_str(), v["dol"]["fallbacks"].as_u64()),
        (200, Some("completed"), Some(1)),
        "{v}"
    );
    // Ended: the image is forgotten.
    assert_eq!(
        count(
            &host,
            "SELECT COUNT(*) FROM video_inputs WHERE job_id = ?",
            &id
        ),
        0
    );
    // The completion webhook went out from the same scan, signed.
    let got = hook.received();
    assert_eq!(got.len(), 1, "{got:?}");
    let body: Value = got[0].json();
    assert_eq!(
        (body["type"].as_str(), body["data"]["id"].as_str()),
        (Some("video.completed"), Some(id.as_str()))
    );
    let signed = dol_core::video::webhook::Signed {
        id: got[0].header("webhook-id"),
        timestamp: got[0].header("webhook-timestamp"),
        signature: got[0].header("webhook-signature"),
    };
    let ts: u64 = signed.timestamp.unwrap().parse().unwrap();
    assert_eq!(
        dol_core::video::webhook::verify(SECRET, signed, got[0].body.as_bytes(), ts),
        Ok(())
    );
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicated_replicate_callback_is_applied_once() {
    let replicate = MockVideo::start().await;
    // Polls would find it still processing: only the callback can end it.
    replicate.set_behavior(VideoBehavior {
        running_polls: 100,
        ..VideoBehavior::default()
    });
    // DOL's public URL must be known before it starts: the callbacks name it.
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let host = start_with(
        &[("replicate", &replicate)],
        &[
            ("replicate_webhook_secret", SECRET),
            ("video_callback_base_url", &base),
        ],
        port,
    )
    .await;
    let key = new_key(&host).await;
    let v = create(
        &host,
        &key,
        json!({"prompt": "rain on a window", "model": "minimax/video-01"}),
    )
    .await;
    let id = v["id"].as_str().unwrap().to_owned();
    let submit = &replicate.requests()[0];
    let sent: Value = serde_json::from_str(&submit.body).unwrap();
    assert_eq!(
        sent["webhook"],
        host.url(&format!("/v1/videos/{id}/callback"))
    );
    // At-least-once: the same delivery three times.
    assert_eq!(
        replicate.deliver_callbacks(SECRET, 3).await,
        [200, 200, 200]
    );
    let done = get(&host, &key, &id).await;
    assert_eq!(done["status"], "completed", "{done}");
    // Unknown price: flagged, never $0; one record, nothing charged.
    assert_eq!(
        (
            done["dol"]["cost_unknown"].as_bool(),
            done["dol"]["cost_micros"].is_null()
        ),
        (Some(true), true)
    );
    assert_eq!(
        count(&host, "SELECT COUNT(*) FROM requests WHERE id = ?", &id),
        1
    );
    assert_eq!(
        count(
            &host,
            "SELECT COUNT(*) FROM requests WHERE id = ? AND cost_unknown = 1",
            &id
        ),
        1
    );
    // A forged callback is refused in OpenAI's error shape.
    let (status, e) = call(
        &host,
        "POST",
        &format!("/v1/videos/{id}/callback"),
        None,
        Some("{}"),
    )
    .await;
    assert_eq!(status, 401, "{e}");
    assert_eq!(e["error"]["code"], "missing-signature");
    host.app.shutdown().await;
}

/// A bad request: name, method, path, key, body, status, the parameter named.
type Case<'a> = (
    &'a str,
    &'a str,
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    u16,
    Option<&'a str>,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_video_requests_are_refused_each_with_its_cause() {
    let openai = MockVideo::start().await;
    let host = start(&[("openai", &openai)], &[]).await;
    let key = new_key(&host).await;
    let k = Some(key.as_str());
    let cases: &[Case<'_>] = &[
        (
            "no prompt",
            "POST",
            "/v1/videos",
            k,
            Some(r#"{"model":"sora-2"}"#),
            400,
            Some("prompt"),
        ),
        (
            "empty prompt",
            "POST",
            "/v1/videos",
            k,
            Some(r#"{"prompt":""}"#),
            400,
            Some("prompt"),
        ),
        (
            "prompt not text",
            "POST",
            "/v1/videos",
            k,
            Some(r#"{"prompt":7}"#),
            400,
            Some("prompt"),
        ),
        (
            "seconds not a number",
            "POST",
            "/v1/videos",
            k,
            Some(r#"{"prompt":"x","seconds":"four"}"#),
            400,
            Some("seconds"),
        ),
        (
            "seconds zero",
            "POST",
            "/v1/videos",
            k,
            Some(r#"{"prompt":"x","seconds":"0"}"#),
            400,
            Some("seconds"),
        ),
        (
            "seconds longer than the model",
            "POST",
            "/v1/videos",
            k,
            Some(r#"{"prompt":"x","model":"sora-2","seconds":"20"}"#),
            400,
            Some("seconds"),
        ),
        (
            "size malformed",
            "POST",
            "/v1/videos",
            k,
            Some(r#"{"prompt":"x","size":"big"}"#),
            400,
            Some("size"),
        ),
        (
            "unknown field",
            "POST",
            "/v1/videos",
            k,
            Some(r#"{"prompt":"x","fps":24}"#),
            400,
            Some("fps"),
        ),
        (
            "input_reference a string",
            "POST",
            "/v1/videos",
            k,
            Some(r#"{"prompt":"x","input_reference":"a.png"}"#),
            400,
            Some("input_reference"),
        ),
        (
            "input_reference file_id (no Files API)",
            "POST",
            "/v1/videos",
            k,
            Some(r#"{"prompt":"x","input_reference":{"file_id":"file_1"}}"#),
            400,
            Some("input_reference"),
        ),
        (
            "input_reference a URL (not fetched)",
            "POST",
            "/v1/videos",
            k,
            Some(r#"{"prompt":"x","input_reference":{"image_url":"https://a.example/b.png"}}"#),
            400,
            Some("input_reference"),
        ),
        (
            "input_reference data URL not an image",
            "POST",
            "/v1/videos",
            k,
            Some(
                r#"{"prompt":"x","input_reference":{"image_url":"data:image/png;base64,aGVsbG8="}}"#,
            ),
            400,
            Some("input_reference"),
        ),
        (
            "input_reference to a text-only model",
            "POST",
            "/v1/videos",
            k,
            Some(
                r#"{"prompt":"x","model":"tencent/hunyuan-video","input_reference":{"image_url":"data:image/png;base64,iVBORw0KGgoAAAANSUhEUg=="}}"#,
            ),
            400,
            Some("input_reference"),
        ),
        (
            "not JSON",
            "POST",
            "/v1/videos",
            k,
            Some("{nope"),
            400,
            None,
        ),
        (
            "unknown model",
            "POST",
            "/v1/videos",
            k,
            Some(r#"{"prompt":"x","model":"veo-9"}"#),
            404,
            Some("model"),
        ),
        (
            "model on an unconfigured platform",
            "POST",
            "/v1/videos",
            k,
            Some(r#"{"prompt":"x","model":"veo3.1_fast"}"#),
            503,
            None,
        ),
        (
            "no key",
            "POST",
            "/v1/videos",
            None,
            Some(r#"{"prompt":"x"}"#),
            401,
            None,
        ),
        (
            "wrong key",
            "GET",
            "/v1/videos",
            Some("dol_sk_00000000000000000000000000000000"),
            None,
            401,
            None,
        ),
        (
            "limit zero",
            "GET",
            "/v1/videos?limit=0",
            k,
            None,
            400,
            Some("limit"),
        ),
        (
            "limit too big",
            "GET",
            "/v1/videos?limit=101",
            k,
            None,
            400,
            Some("limit"),
        ),
        (
            "order unknown",
            "GET",
            "/v1/videos?order=up",
            k,
            None,
            400,
            Some("order"),
        ),
        (
            "after unknown",
            "GET",
            "/v1/videos?after=video_nope",
            k,
            None,
            400,
            Some("after"),
        ),
        (
            "unknown video",
            "GET",
            "/v1/videos/video_nope",
            k,
            None,
            404,
            Some("video_id"),
        ),
        (
            "content of an unknown video",
            "GET",
            "/v1/videos/video_nope/content",
            k,
            None,
            404,
            Some("video_id"),
        ),
        (
            "cancel of an unknown video",
            "DELETE",
            "/v1/videos/video_nope",
            k,
            None,
            404,
            Some("video_id"),
        ),
        ("method", "PUT", "/v1/videos", k, None, 405, None),
        (
            "no such route",
            "GET",
            "/v1/videos/a/b/c",
            k,
            None,
            404,
            None,
        ),
    ];
    for (name, method, path, key, body, status, field) in cases {
        let (got, v) = call(&host, method, path, *key, *body).await;
        assert_eq!(got, *status, "{name}: {v}");
        assert!(
            v["error"]["message"].is_string(),
            "{name}: OpenAI's error shape: {v}"
        );
        if let Some(f) = field {
            assert_eq!(v["error"]["param"], *f, "{name}: {v}");
        }
    }
    // Uploads: a file that is not a JPEG/PNG/WebP (whatever its label),
    // an image over 3 MiB, and a body over the 4 MiB limit.
    let (got, e) =
        create_multipart(&host, &key, &[("prompt", "x")], b"GIF89a....", "image/png").await;
    assert_eq!(
        (got, e["error"]["param"].as_str()),
        (400, Some("input_reference")),
        "{e}"
    );
    let mut big = PNG.to_vec();
    big.resize(3 * 1024 * 1024 + 1, 0);
    let (got, e) = create_multipart(&host, &key, &[("prompt", "x")], &big, "image/png").await;
    assert_eq!(
        (got, e["error"]["param"].as_str()),
        (413, Some("input_reference")),
        "{e}"
    );
    big.resize(4 * 1024 * 1024 + 1, 0);
    let (got, e) = create_multipart(&host, &key, &[("prompt", "x")], &big, "image/png").await;
    assert_eq!(
        (got, e["error"]["param"].as_str()),
        (413, Some("input_reference")),
        "{e}"
    );
    assert!(
        !openai.requests().iter().any(|r| r.image.is_some()),
        "a refused image never reaches a platform"
    );
    // Content before completion, and a variant the platform cannot give.
    let v = create(&host, &key, json!({"prompt": "x"})).await;
    let id = v["id"].as_str().unwrap();
    openai.set_behavior(VideoBehavior {
        running_polls: 10,
        ..VideoBehavior::default()
    });
    let (got, e) = call(&host, "GET", &format!("/v1/videos/{id}/content"), k, None).await;
    assert_eq!(got, 409, "{e}");
    let (got, e) = call(
        &host,
        "GET",
        &format!("/v1/videos/{id}/content?variant=gif"),
        k,
        None,
    )
    .await;
    assert_eq!(
        (got, e["error"]["param"].as_str()),
        (400, Some("variant")),
        "{e}"
    );
    // Another key cannot see it.
    let other = new_key(&host).await;
    let (got, _) = call(
        &host,
        "GET",
        &format!("/v1/videos/{id}"),
        Some(&other),
        None,
    )
    .await;
    assert_eq!(got, 404);
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_platforms_are_probed_discovered_and_alerted_on_at_cron_ticks() {
    // OpenAI lists a model the catalog lacks; Runway's probe fails.
    let openai = MockVideo::start().await;
    openai.set_behavior(VideoBehavior {
        models: vec!["sora-3".to_owned()],
        ..VideoBehavior::default()
    });
    let runway = MockVideo::start().await;
    runway.set_behavior(VideoBehavior {
        probes_fail: true,
        ..VideoBehavior::default()
    });
    let host = start(&[("openai", &openai), ("runway", &runway)], &[]).await;
    // Run by hand (the cron schedule runs them every 5 minutes and 6 hours).
    for scan in ["probes", "discovery"] {
        let (status, v) = call(
            &host,
            "POST",
            &format!("/admin/scans/{scan}"),
            Some(ADMIN),
            None,
        )
        .await;
        assert_eq!(status, 200, "{scan}: {v}");
    }
    assert_eq!(
        count(
            &host,
            "SELECT COUNT(*) FROM video_models WHERE model = ?",
            "sora-3"
        ),
        1
    );
    assert!(
        runway.count("GET", "/v1/organization") >= 2,
        "a probe and a discovery listing"
    );
    let (_, health) = call(&host, "GET", "/api/health", None, None).await;
    let runway_health = health["videoPlatforms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["platform"] == "runway")
        .cloned()
        .unwrap_or_else(|| panic!("{health}"));
    assert_eq!(
        (
            runway_health["probeUp"].as_bool(),
            runway_health["healthy"].as_bool()
        ),
        (Some(false), Some(false)),
        "{health}"
    );
    let video = health["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "video")
        .cloned()
        .unwrap();
    assert_eq!(video["ok"], false, "{health}");
    // The default rule goes pending at the first alerts scan and fires
    // 3 minutes later (minute ticks: no 5-minute trigger fires between).
    for minute in 1..=4 {
        host.cron_tick(minute).await;
    }
    let (status, list) = call(&host, "GET", "/admin/alerts", Some(ADMIN), None).await;
    assert_eq!(status, 200, "{list}");
    let state = |name: &str| {
        list["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["state"]["name"] == name)
            .map(|a| a["state"]["status"].clone())
    };
    assert_eq!(
        state("VideoPlatformsUnhealthy"),
        Some(json!("firing")),
        "{list}"
    );
    // The unpriced discovered model is flagged like a chat model.
    assert_eq!(state("ModelsWithoutPrice"), Some(json!("firing")), "{list}");
    host.app.shutdown().await;
}
