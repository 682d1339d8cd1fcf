use std::collections::VecDeque;

use super::*;
use crate::gateway::keys::KeyLimits;
use crate::test_db::{TestDb, count, db};
use crate::video::platforms::Platform;

const T0: u64 = 1_800_000_000_000;

/// Answers scripted per URL prefix, in order; records every request.
#[derive(Default)]
struct Net {
    script: Vec<(String, VecDeque<(u16, String)>)>,
    sent: Vec<HttpRequestSpec>,
}

impl Net {
    fn on(mut self, url_part: &str, answers: &[(u16, Value)]) -> Self {
        self.script.push((
            url_part.to_owned(),
            answers.iter().map(|(s, v)| (*s, v.to_string())).collect(),
        ));
        self
    }

    fn sent_to(&self, part: &str) -> usize {
        self.sent.iter().filter(|s| s.url.contains(part)).count()
    }
}

impl VideoNet for Net {
    fn send(&mut self, spec: &HttpRequestSpec) -> Result<(u16, Vec<u8>), String> {
        self.sent.push(spec.clone());
        let key = format!("{} {}", spec.method, spec.url);
        for (part, answers) in &mut self.script {
            if key.contains(part.as_str()) {
                let (s, b) = if answers.len() > 1 {
                    answers.pop_front()
                } else {
                    answers.front().cloned()
                }
                .ok_or("script ran dry")?;
                return Ok((s, b.into_bytes()));
            }
        }
        Err(format!("no script for {key}"))
    }
}

fn settings() -> VideoSettings {
    let p = |kind, url: &str| Platform {
        kind,
        base_url: url.to_owned(),
        api_key: "secret-key".to_owned(),
    };
    VideoSettings {
        platforms: vec![
            p(PlatformKind::OpenAi, "http://openai/v1"),
            p(PlatformKind::Runway, "http://runway/v1"),
            p(PlatformKind::Replicate, "http://replicate/v1"),
        ],
        callback_base_url: "http://dol".to_owned(),
        replicate_webhook_secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned(),
        poll_base_ms: 1_000,
        poll_max_ms: 8_000,
        timeout_ms: 600_000,
        throttled_polls: 2,
        ..VideoSettings::default()
    }
}

fn caller(budget: Option<u64>) -> Caller {
    Caller {
        id: "key1".to_owned(),
        limits: KeyLimits {
            monthly_budget_micros: budget,
            ..KeyLimits::default()
        },
        org: None,
    }
}

fn req(model: &str) -> VideoRequest {
    VideoRequest {
        model: model.to_owned(),
        prompt: "a cat".to_owned(),
        seconds: 4,
        size: "1280x720".to_owned(),
        input_reference: None,
    }
}

fn make(db: &mut TestDb, net: &mut Net, s: &VideoSettings, model: &str) -> Value {
    create(
        db,
        net,
        s,
        &caller(None),
        req(model),
        "video_1".to_owned(),
        T0,
    )
    .unwrap()
}

fn scan(db: &mut TestDb, net: &mut Net, s: &VideoSettings, at: u64) -> ScanSummary {
    advance_due(db, net, s, at).unwrap()
}

#[test]
fn a_runway_job_is_polled_with_back_off_to_completion_and_charged_once() {
    let mut db = db();
    let s = settings();
    let mut net = Net::default()
        .on(
            "POST http://runway/v1/text_to_video",
            &[(200, json!({"id": "t1"}))],
        )
        .on(
            "GET http://runway/v1/tasks/t1",
            &[
                (
                    200,
                    json!({"id": "t1", "status": "RUNNING", "progress": 0.5}),
                ),
                (
                    200,
                    json!({"id": "t1", "status": "SUCCEEDED", "output": ["https://cdn/t1.mp4"]}),
                ),
            ],
        );
    let v = make(&mut db, &mut net, &s, "veo3.1_fast");
    assert_eq!(
        (v["status"].as_str(), v["object"].as_str()),
        (Some("queued"), Some("video"))
    );
    assert_eq!(v["dol"]["platform"], "runway");
    // Not due before the first interval.
    assert_eq!(scan(&mut db, &mut net, &s, T0 + 500).polled, 0);
    assert_eq!(scan(&mut db, &mut net, &s, T0 + 1_000).polled, 1);
    let j = store::get(&mut db, "video_1").unwrap().unwrap();
    assert_eq!(
        (j.status, j.progress, j.next_poll_at_ms),
        (Status::InProgress, 50, T0 + 2_000)
    );
    assert_eq!(scan(&mut db, &mut net, &s, T0 + 2_000).ended, 1);
    let j = store::get(&mut db, "video_1").unwrap().unwrap();
    assert_eq!((j.status, j.progress), (Status::Completed, 100));
    assert_eq!(j.cost_micros, Some(600_000), "4 s at $0.15/s");
    assert_eq!(
        content(&mut db, &s, "key1", "video_1", None).unwrap(),
        Content::Redirect("https://cdn/t1.mp4".to_owned())
    );
    assert_eq!(
        crate::gateway::store::usage(&mut db, "key1")
            .unwrap()
            .spent_micros,
        600_000
    );
    assert_eq!(count(&mut db, "requests"), 1);
    // Nothing is due any more; the books stay as they are.
    assert_eq!(scan(&mut db, &mut net, &s, T0 + 100_000).polled, 0);
    assert_eq!(
        crate::gateway::store::usage(&mut db, "key1")
            .unwrap()
            .spent_micros,
        600_000
    );
}

#[test]
fn a_failing_platform_falls_back_to_the_next() {
    let mut db = db();
    let s = settings();
    let mut net = Net::default()
        .on("POST http://openai/v1/videos", &[(200, json!({"id": "o1", "status": "queued", "progress": 0}))])
        .on("GET http://openai/v1/videos/o1", &[(200, json!({"id": "o1", "status": "failed", "error": {"code": "gpu_lost", "message": "boom"}}))])
        .on("DELETE http://openai", &[(200, json!({}))])
        .on("POST http://replicate/v1/models", &[(500, json!({"detail": "secret-key down"}))])
        .on("POST http://runway/v1/text_to_video", &[(200, json!({"id": "t9"}))]);
    let v = create(
        &mut db,
        &mut net,
        &s,
        &caller(None),
        req("auto"),
        "video_1".to_owned(),
        T0,
    )
    .unwrap();
    // sora-2 ranks first (cheap and good); runway's veo is next.
    assert_eq!(v["dol"]["platform"], "openai");
    scan(&mut db, &mut net, &s, T0 + 1_000);
    let j = store::get(&mut db, "video_1").unwrap().unwrap();
    assert_eq!(j.status, Status::Queued);
    assert_ne!(j.current.platform, "openai");
    let outcomes: Vec<&str> = j
        .attempts
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(&outcomes[..2], ["submitted", "gpu_lost"]);
    assert!(
        !j.attempts
            .iter()
            .any(|a| a.to_string().contains("secret-key")),
        "{:?}",
        j.attempts
    );
    let o = store::stats(&mut db).unwrap()[&("openai".to_owned(), "sora-2".to_owned())];
    assert!((o.success - 0.63).abs() < 1e-9 && o.samples == 1, "{o:?}");
}

#[test]
fn an_image_is_kept_through_a_fallback_and_forgotten_at_the_end() {
    let mut db = db();
    let s = settings();
    let image = crate::video::input::InputReference::from_bytes(b"\x89PNG\r\n\x1a\nIMAGE".to_vec())
        .unwrap();
    let mut net = Net::default()
        .on(
            "POST http://openai/v1/videos",
            &[(200, json!({"id": "o1", "status": "queued", "progress": 0}))],
        )
        .on(
            "GET http://openai/v1/videos/o1",
            &[(200, json!({"id": "o1", "status": "failed"}))],
        )
        .on("DELETE http://openai", &[(200, json!({}))])
        .on("POST http://replicate/v1/models", &[(500, json!({}))])
        .on(
            "POST http://runway/v1/image_to_video",
            &[(200, json!({"id": "t9"}))],
        )
        .on(
            "GET http://runway/v1/tasks/t9",
            &[(
                200,
                json!({"id": "t9", "status": "SUCCEEDED", "output": ["https://cdn/t9.mp4"]}),
            )],
        );
    let asked = VideoRequest {
        input_reference: Some(image.clone()),
        ..req("auto")
    };
    let v = create(
        &mut db,
        &mut net,
        &s,
        &caller(None),
        asked,
        "video_1".to_owned(),
        T0,
    )
    .unwrap();
    assert_eq!(v["dol"]["platform"], "openai");
    assert_eq!(
        store::input(&mut db, "video_1").unwrap(),
        Some(image.clone())
    );
    let first = &net.sent[0];
    assert!(String::from_utf8_lossy(&first.body).contains("name=\"input_reference\""));
    scan(&mut db, &mut net, &s, T0 + 1_000);
    let j = store::get(&mut db, "video_1").unwrap().unwrap();
    // Replicate's text-only model is not even a candidate.
    let tried: Vec<&str> = j
        .attempts
        .iter()
        .filter_map(|a| a["model"].as_str())
        .collect();
    assert!(!tried.contains(&"tencent/hunyuan-video"), "{tried:?}");
    assert!(
        !j.candidates
            .iter()
            .any(|c| c.model == "tencent/hunyuan-video"),
        "{:?}",
        j.candidates
    );
    assert_eq!(j.current.platform, "runway", "{:?}", j.attempts);
    let runway = net
        .sent
        .iter()
        .find(|r| r.url.ends_with("/image_to_video"))
        .unwrap();
    let body: Value = serde_json::from_slice(&runway.body).unwrap();
    assert_eq!(body["promptImage"], image.data_uri());
    scan(&mut db, &mut net, &s, T0 + 10_000);
    let j = store::get(&mut db, "video_1").unwrap().unwrap();
    assert_eq!(j.status, Status::Completed);
    assert_eq!(
        store::input(&mut db, "video_1").unwrap(),
        None,
        "forgotten once ended"
    );
}

#[test]
fn a_platform_refusing_every_submit_fails_the_create_with_502() {
    let mut db = db();
    let s = settings();
    let mut net = Net::default().on(
        "POST http://openai/v1/videos",
        &[(400, json!({"error": "no"}))],
    );
    let e = create(
        &mut db,
        &mut net,
        &s,
        &caller(None),
        req("sora-2"),
        "video_1".to_owned(),
        T0,
    )
    .unwrap_err();
    assert_eq!(e.status(), 502);
    let j = store::get(&mut db, "video_1").unwrap().unwrap();
    assert_eq!(j.status, Status::Failed);
    assert_eq!(
        crate::gateway::store::usage(&mut db, "key1")
            .unwrap()
            .reserved_micros,
        0
    );
}

#[test]
fn staying_throttled_moves_the_job_on() {
    let mut db = db();
    let mut s = settings();
    s.platforms.retain(|p| p.kind != PlatformKind::Replicate);
    let mut net = Net::default()
        .on(
            "POST http://runway/v1/text_to_video",
            &[(200, json!({"id": "t1"}))],
        )
        .on(
            "GET http://runway/v1/tasks/t1",
            &[(200, json!({"id": "t1", "status": "THROTTLED"}))],
        )
        .on("DELETE http://runway/v1/tasks/t1", &[(204, json!(null))])
        .on(
            "POST http://openai/v1/videos",
            &[(200, json!({"id": "o1", "status": "queued", "progress": 0}))],
        );
    // sora-2 failed once before: runway's veo now ranks first, sora-2-pro next.
    let sora = Choice {
        platform: "openai".to_owned(),
        model: "sora-2".to_owned(),
    };
    store::observe(&mut db, &sora, false, None, T0).unwrap();
    let mut r = req("auto");
    r.seconds = 8;
    create(
        &mut db,
        &mut net,
        &s,
        &caller(None),
        r,
        "video_1".to_owned(),
        T0,
    )
    .unwrap();
    let j = store::get(&mut db, "video_1").unwrap().unwrap();
    assert_eq!(j.current.platform, "runway");
    scan(&mut db, &mut net, &s, T0 + 10_000);
    assert_eq!(
        store::get(&mut db, "video_1")
            .unwrap()
            .unwrap()
            .throttled_polls,
        1
    );
    scan(&mut db, &mut net, &s, T0 + 20_000);
    let j = store::get(&mut db, "video_1").unwrap().unwrap();
    assert_eq!(
        (j.current.platform.as_str(), j.current.model.as_str()),
        ("openai", "sora-2-pro")
    );
    assert_eq!(net.sent_to("/tasks/t1"), 3, "two polls and the cancel");
}

#[test]
fn a_late_job_times_out_and_is_cancelled_at_the_platform() {
    let mut db = db();
    let s = settings();
    let mut net = Net::default()
        .on(
            "POST http://runway/v1/text_to_video",
            &[(200, json!({"id": "t1"}))],
        )
        .on("DELETE http://runway/v1/tasks/t1", &[(204, json!(null))]);
    make(&mut db, &mut net, &s, "veo3.1_fast");
    assert_eq!(scan(&mut db, &mut net, &s, T0 + 600_000).ended, 1);
    let j = store::get(&mut db, "video_1").unwrap().unwrap();
    assert_eq!(
        (j.status, j.error.unwrap().0.as_str()),
        (Status::Failed, "timeout")
    );
    assert!(
        net.sent
            .iter()
            .any(|r| r.method == "DELETE" && r.url.ends_with("/tasks/t1"))
    );
}

fn signed_callback(body: &Value, ts: u64) -> (Vec<u8>, String) {
    let bytes = body.to_string().into_bytes();
    let sig = webhook::sign(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_1",
        ts,
        &bytes,
    );
    (bytes, sig)
}

#[test]
fn a_duplicated_callback_is_applied_once() {
    let mut db = db();
    let s = settings();
    let mut net = Net::default().on(
        "POST http://replicate/v1/models/minimax/video-01/predictions",
        &[(201, json!({"id": "p1", "status": "starting"}))],
    );
    let v = make(&mut db, &mut net, &s, "minimax/video-01");
    assert_eq!(v["dol"]["platform"], "replicate");
    let sent: Value = serde_json::from_slice(&net.sent[0].body).unwrap();
    assert_eq!(sent["webhook"], "http://dol/v1/videos/video_1/callback");
    let done = json!({"id": "p1", "status": "succeeded", "output": "https://r/p1.mp4"});
    let ts = T0 / 1_000;
    let (body, sig) = signed_callback(&done, ts);
    let ts_text = ts.to_string();
    let h = Signed {
        id: Some("msg_1"),
        timestamp: Some(&ts_text),
        signature: Some(&sig),
    };
    let first = callback(&mut db, &mut net, &s, "video_1", h, &body, T0 + 5).unwrap();
    assert_eq!(first["ended"], true);
    let again = callback(&mut db, &mut net, &s, "video_1", h, &body, T0 + 6).unwrap();
    assert_eq!(again["applied"], false);
    assert_eq!(count(&mut db, "requests"), 1);
    let j = store::get(&mut db, "video_1").unwrap().unwrap();
    assert_eq!(
        (j.status, j.cost_unknown, j.cost_micros),
        (Status::Completed, true, None)
    );
    assert_eq!(j.to_object()["dol"]["cost_unknown"], true);
    // A forged callback is refused before anything is read.
    let forged = Signed {
        signature: Some("v1,AAAA"),
        ..h
    };
    assert_eq!(
        callback(&mut db, &mut net, &s, "video_1", forged, &body, T0)
            .unwrap_err()
            .status(),
        401
    );
}

#[test]
fn cancel_list_and_the_budget() {
    let mut db = db();
    let s = settings();
    let mut net = Net::default()
        .on(
            "POST http://runway/v1/text_to_video",
            &[(200, json!({"id": "t1"}))],
        )
        .on("DELETE http://runway", &[(204, json!(null))]);
    for (i, at) in [(1, T0), (2, T0 + 1), (3, T0 + 2)] {
        create(
            &mut db,
            &mut net,
            &s,
            &caller(None),
            req("veo3.1_fast"),
            format!("video_{i}"),
            at,
        )
        .unwrap();
    }
    let page = list(
        &mut db,
        "key1",
        &ListQuery::parse(None, Some("2".into()), None).unwrap(),
    )
    .unwrap();
    assert_eq!(page["data"][0]["id"], "video_3");
    assert_eq!(
        (page["has_more"].as_bool(), page["last_id"].as_str()),
        (Some(true), Some("video_2"))
    );
    let rest = list(
        &mut db,
        "key1",
        &ListQuery::parse(Some("video_2".into()), None, None).unwrap(),
    )
    .unwrap();
    assert_eq!(rest["data"].as_array().unwrap().len(), 1);
    assert_eq!(rest["has_more"], false);
    assert_eq!(
        list(
            &mut db,
            "other",
            &ListQuery::parse(None, None, None).unwrap()
        )
        .unwrap()["data"],
        json!([])
    );
    assert_eq!(
        ListQuery::parse(None, Some("0".into()), None)
            .unwrap_err()
            .field
            .as_deref(),
        Some("limit")
    );
    assert_eq!(
        ListQuery::parse(None, None, Some("up".into()))
            .unwrap_err()
            .field
            .as_deref(),
        Some("order")
    );

    let d = cancel(&mut db, &mut net, &s, "key1", "video_1", T0 + 10).unwrap();
    assert_eq!(d["object"], "video.deleted");
    assert_eq!(
        retrieve(&mut db, &mut net, &s, "key1", "video_1", T0 + 11).unwrap()["status"],
        "cancelled"
    );
    assert_eq!(
        retrieve(&mut db, &mut net, &s, "other", "video_2", T0 + 11)
            .unwrap_err()
            .status(),
        404
    );
    assert_eq!(
        content(&mut db, &s, "key1", "video_2", None)
            .unwrap_err()
            .status(),
        409
    );
    assert_eq!(
        content(&mut db, &s, "key1", "video_2", Some("gif"))
            .unwrap_err()
            .status(),
        400
    );

    // A budget smaller than the worst case refuses before any platform is asked.
    let sent = net.sent.len();
    let e = create(
        &mut db,
        &mut net,
        &s,
        &caller(Some(100)),
        req("veo3.1_fast"),
        "video_9".to_owned(),
        T0,
    )
    .unwrap_err();
    assert_eq!(e.status(), 429);
    assert_eq!(net.sent.len(), sent);
}

#[test]
fn completion_webhooks_are_signed_and_retried_until_delivered() {
    let mut db = db();
    let mut s = settings();
    s.webhook_url = "http://hooks/video".to_owned();
    s.webhook_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned();
    let mut net = Net::default()
        .on(
            "POST http://runway/v1/text_to_video",
            &[(200, json!({"id": "t1"}))],
        )
        .on(
            "GET http://runway/v1/tasks/t1",
            &[(200, json!({"status": "SUCCEEDED", "output": ["u"]}))],
        )
        .on(
            "POST http://hooks/video",
            &[(500, json!({})), (200, json!({}))],
        );
    make(&mut db, &mut net, &s, "veo3.1_fast");
    let first = scan(&mut db, &mut net, &s, T0 + 1_000);
    assert_eq!((first.ended, first.notified, first.errors.len()), (1, 0, 1));
    let second = scan(&mut db, &mut net, &s, T0 + 2_000);
    assert_eq!(second.notified, 1);
    let hook = net
        .sent
        .iter()
        .rev()
        .find(|r| r.url == "http://hooks/video")
        .unwrap();
    let body: Value = serde_json::from_slice(&hook.body).unwrap();
    assert_eq!(
        (body["type"].as_str(), body["data"]["id"].as_str()),
        (Some("video.completed"), Some("video_1"))
    );
    let h = Signed {
        id: hook.header("webhook-id"),
        timestamp: hook.header("webhook-timestamp"),
        signature: hook.header("webhook-signature"),
    };
    assert_eq!(
        webhook::verify(&s.webhook_secret, h, &hook.body, (T0 + 2_000) / 1_000),
        Ok(())
    );
    assert_eq!(scan(&mut db, &mut net, &s, T0 + 3_000).notified, 0);
}

#[test]
fn retrieving_a_due_job_polls_it_once_per_interval() {
    let mut db = db();
    let s = settings();
    let mut net = Net::default()
        .on(
            "POST http://runway/v1/text_to_video",
            &[(200, json!({"id": "t1"}))],
        )
        .on(
            "GET http://runway/v1/tasks/t1",
            &[
                (200, json!({"status": "RUNNING", "progress": 0.2})),
                (200, json!({"status": "SUCCEEDED", "output": ["u"]})),
            ],
        );
    make(&mut db, &mut net, &s, "veo3.1_fast");
    let early = retrieve(&mut db, &mut net, &s, "key1", "video_1", T0 + 10).unwrap();
    assert_eq!(
        (early["status"].as_str(), net.sent_to("/tasks/")),
        (Some("queued"), 0)
    );
    let v = retrieve(&mut db, &mut net, &s, "key1", "video_1", T0 + 1_000).unwrap();
    assert_eq!(
        (v["status"].as_str(), v["progress"].as_u64()),
        (Some("in_progress"), Some(20))
    );
    retrieve(&mut db, &mut net, &s, "key1", "video_1", T0 + 1_500).unwrap();
    assert_eq!(
        net.sent_to("/tasks/"),
        1,
        "not due again before the back-off"
    );
    let v = retrieve(&mut db, &mut net, &s, "key1", "video_1", T0 + 3_000).unwrap();
    assert_eq!(v["status"], "completed");
    assert_eq!(count(&mut db, "requests"), 1);
}

#[test]
fn back_off_doubles_up_to_the_cap() {
    let s = settings();
    let waits: Vec<u64> = (1..=6).map(|n| backoff_ms(&s, n)).collect();
    assert_eq!(waits, [1_000, 2_000, 4_000, 8_000, 8_000, 8_000]);
}
