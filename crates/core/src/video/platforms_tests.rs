use super::*;

fn platform(kind: PlatformKind) -> Platform {
    Platform {
        kind,
        base_url: "https://p.example/v1".to_owned(),
        api_key: "k".to_owned(),
    }
}

fn submit() -> Submit<'static> {
    Submit {
        model: "m/v",
        prompt: "a cat",
        seconds: 4,
        size: "1280x720",
        callback_url: Some("https://dol.example/v1/videos/video_1/callback".to_owned()),
        remix_of: None,
        image: None,
    }
}

#[test]
fn an_image_goes_to_each_platform_in_its_own_shape() {
    let image =
        crate::video::input::InputReference::from_bytes(b"\x89PNG\r\n\x1a\n\0\xff\r\n--x".to_vec())
            .unwrap();
    // OpenAI: its multipart upload, the file part holding the bytes whole.
    let spec = submit_request(
        &platform(PlatformKind::OpenAi),
        &Submit {
            image: Some((&image, None)),
            ..submit()
        },
    );
    assert!(spec.url.ends_with("/v1/videos"), "{}", spec.url);
    let ct = spec
        .headers
        .iter()
        .find(|(k, _)| k == "content-type")
        .map(|(_, v)| v.clone())
        .unwrap();
    let parts = crate::video::input::parse(&spec.body, crate::video::input::boundary(&ct).unwrap())
        .unwrap();
    let file = parts.iter().find(|p| p.name == "input_reference").unwrap();
    assert_eq!(
        (file.data.as_slice(), file.content_type.as_deref()),
        (image.data.as_slice(), Some("image/png"))
    );
    assert!(parts.iter().any(|p| p.name == "seconds" && p.data == b"4"));
    // Runway: image_to_video with promptImage as a data URI.
    let spec = submit_request(
        &platform(PlatformKind::Runway),
        &Submit {
            image: Some((&image, None)),
            ..submit()
        },
    );
    assert!(spec.url.ends_with("/image_to_video"), "{}", spec.url);
    let body: Value = serde_json::from_slice(&spec.body).unwrap();
    assert_eq!(body["promptImage"], image.data_uri());
    // Replicate: the model's image input, named by the catalog.
    let spec = submit_request(
        &platform(PlatformKind::Replicate),
        &Submit {
            image: Some((&image, Some("first_frame_image"))),
            ..submit()
        },
    );
    let body: Value = serde_json::from_slice(&spec.body).unwrap();
    assert_eq!(body["input"]["first_frame_image"], image.data_uri());
    let spec = submit_request(
        &platform(PlatformKind::Replicate),
        &Submit {
            image: Some((&image, None)),
            ..submit()
        },
    );
    let body: Value = serde_json::from_slice(&spec.body).unwrap();
    assert_eq!(body["input"]["image"], image.data_uri());
}

#[test]
fn only_openai_remixes_and_a_remix_posts_the_prompt_to_the_source() {
    let s = VideoSettings::from_variables(|n| match n {
        "openai_api_key" => "sk".to_owned(),
        _ => String::new(),
    })
    .unwrap();
    let p = s.platform("openai").unwrap();
    let spec = submit_request(
        p,
        &Submit {
            remix_of: Some("video_abc"),
            ..submit()
        },
    );
    assert_eq!(spec.method, "POST");
    assert!(
        spec.url.ends_with("/videos/video_abc/remix"),
        "{}",
        spec.url
    );
    let body: serde_json::Value = serde_json::from_slice(&spec.body).unwrap();
    assert_eq!(body, serde_json::json!({"prompt": "a cat"}));
    assert!(can_remix(PlatformKind::OpenAi));
    assert!(!can_remix(PlatformKind::Runway));
    assert!(!can_remix(PlatformKind::Replicate));
}

#[test]
fn settings_configure_only_platforms_with_a_key() {
    let s = VideoSettings::from_variables(|n| match n {
        "openai_api_key" => "sk".to_owned(),
        "runway_api_key" => "rw".to_owned(),
        "runway_base_url" => "http://127.0.0.1:9/v1/".to_owned(),
        "video_poll_interval_ms" => "0".to_owned(),
        _ => String::new(),
    })
    .unwrap();
    let names: Vec<_> = s.platforms.iter().map(|p| p.kind.name()).collect();
    assert_eq!(names, ["openai", "runway"]);
    assert_eq!(
        s.platform("runway").unwrap().base_url,
        "http://127.0.0.1:9/v1"
    );
    assert_eq!(
        s.platform("openai").unwrap().base_url,
        "https://api.openai.com/v1"
    );
    assert_eq!(
        (s.poll_base_ms, s.timeout_ms, s.throttled_polls),
        (0, 3_600_000, 5)
    );
    let bad = VideoSettings::from_variables(|n| {
        if n == "video_job_timeout_secs" {
            "soon".into()
        } else {
            String::new()
        }
    });
    assert!(bad.is_err());
}

#[test]
fn each_platform_gets_its_own_submit() {
    let o = submit_request(&platform(PlatformKind::OpenAi), &submit());
    assert_eq!(
        (o.method.as_str(), o.url.as_str()),
        ("POST", "https://p.example/v1/videos")
    );
    let b: Value = serde_json::from_slice(&o.body).unwrap();
    assert_eq!(b["seconds"], "4");
    let r = submit_request(&platform(PlatformKind::Runway), &submit());
    assert_eq!(r.url, "https://p.example/v1/text_to_video");
    assert_eq!(r.header("x-runway-version"), Some(RUNWAY_VERSION));
    let b: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        (b["ratio"].as_str(), b["promptText"].as_str()),
        (Some("1280:720"), Some("a cat"))
    );
    let p = submit_request(&platform(PlatformKind::Replicate), &submit());
    assert_eq!(p.url, "https://p.example/v1/models/m/v/predictions");
    let b: Value = serde_json::from_slice(&p.body).unwrap();
    assert_eq!(
        b["webhook"],
        "https://dol.example/v1/videos/video_1/callback"
    );
    assert_eq!(b["input"]["prompt"], "a cat");
}

#[test]
fn platform_states_normalise() {
    let u = |k, v: Value| update_of(k, &v).unwrap();
    use PlatformKind::*;
    assert_eq!(
        u(Runway, json!({"status": "THROTTLED"})),
        Update::Queued { throttled: true }
    );
    assert_eq!(
        u(Runway, json!({"status": "RUNNING", "progress": 0.42})),
        Update::Running { progress: Some(42) }
    );
    assert_eq!(
        u(
            Runway,
            json!({"status": "SUCCEEDED", "output": ["https://cdn/x.mp4"]})
        ),
        Update::Succeeded {
            url: Some("https://cdn/x.mp4".to_owned())
        }
    );
    assert!(
        matches!(u(Runway, json!({"status": "FAILED", "failure": "bad", "failureCode": "SAFETY"})), Update::Failed { code, .. } if code == "SAFETY")
    );
    assert_eq!(u(Runway, json!({"status": "CANCELED"})), Update::Cancelled);
    assert_eq!(
        u(OpenAi, json!({"status": "in_progress", "progress": 30})),
        Update::Running { progress: Some(30) }
    );
    assert_eq!(
        u(OpenAi, json!({"status": "completed"})),
        Update::Succeeded { url: None }
    );
    assert_eq!(
        u(Replicate, json!({"status": "starting"})),
        Update::Queued { throttled: false }
    );
    assert_eq!(
        u(
            Replicate,
            json!({"status": "succeeded", "output": "https://r/o.mp4"})
        ),
        Update::Succeeded {
            url: Some("https://r/o.mp4".to_owned())
        }
    );
    assert!(update_of(Replicate, &json!({"status": "dreaming"})).is_err());
    assert!(update_of(Runway, &json!({"status": "SUCCEEDED"})).is_err());
}

#[test]
fn answers_classify_transient_and_permanent_failures() {
    let (id, u) = parse_submit(PlatformKind::Runway, 200, br#"{"id":"t1"}"#).unwrap();
    assert_eq!(
        (id.as_str(), u),
        ("t1", Update::Queued { throttled: false })
    );
    assert!(
        parse_submit(PlatformKind::OpenAi, 429, b"slow down")
            .unwrap_err()
            .transient
    );
    assert!(
        parse_submit(PlatformKind::OpenAi, 503, b"")
            .unwrap_err()
            .transient
    );
    assert!(
        !parse_submit(PlatformKind::OpenAi, 400, b"no")
            .unwrap_err()
            .transient
    );
    assert!(
        !parse_submit(PlatformKind::OpenAi, 200, b"{}")
            .unwrap_err()
            .transient
    );
    assert!(
        !parse_poll(PlatformKind::Runway, 404, b"gone")
            .unwrap_err()
            .transient
    );
}

#[test]
fn cancel_and_content_requests() {
    assert_eq!(
        cancel_request(&platform(PlatformKind::Replicate), "p1").url,
        "https://p.example/v1/predictions/p1/cancel"
    );
    assert_eq!(
        cancel_request(&platform(PlatformKind::Runway), "t1").method,
        "DELETE"
    );
    assert_eq!(
        poll_request(&platform(PlatformKind::Runway), "t1").url,
        "https://p.example/v1/tasks/t1"
    );
    assert_eq!(
        content_request(&platform(PlatformKind::OpenAi), "v1", "video").url,
        "https://p.example/v1/videos/v1/content?variant=video"
    );
}
