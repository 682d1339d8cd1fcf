//! The operator console at `/admin/dol` end to end: sign-in, the session
//! cookie and its attributes, sign-out, the viewer's read-only session and
//! CSRF checks on the admin APIs over plain HTTP; then the whole console in
//! headless Chromium (tests/console-browser/check.py, Selenium) against the
//! real host with mock providers: empty states, every page and action, phone
//! width, every page in headless Firefox ESR, then again (Chromium) with one
//! provider down.

use crate::gateway::var;
use dol_test_support::TestHost;
use dol_test_support::mock_llm::{Behavior, Flavor, MockLlm};
use dol_test_support::mock_video::MockVideo;
use reqwest::redirect::Policy;

const APP: &str = "spin.toml";
const ADMIN: &str = "console-admin-secret-7f3k";
const VIEWER: &str = "console-viewer-secret-2q9w";

async fn start(extra: &[(&str, &str)]) -> TestHost {
    let mut b = TestHost::builder(APP)
        .variable(&var("admin_token"), ADMIN)
        .variable(&var("viewer_token"), VIEWER);
    for (k, v) in extra {
        b = b.variable(&var(k), v);
    }
    b.start().await
}

/// A client that shows redirects instead of following them.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

struct Reply {
    status: u16,
    set_cookie: Option<String>,
    location: Option<String>,
    text: String,
}

async fn send(
    host: &TestHost,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = client()
        .request(method, host.url(path))
        .body(body.to_owned());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = req.send().await.unwrap();
    let header = |name: &str| {
        res.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (set_cookie, location) = (header("set-cookie"), header("location"));
    let status = res.status().as_u16();
    Reply {
        status,
        set_cookie,
        location,
        text: res.text().await.unwrap(),
    }
}

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

async fn login(host: &TestHost, token: &str, extra: &[(&str, &str)]) -> Reply {
    let mut headers = vec![FORM];
    headers.extend_from_slice(extra);
    send(
        host,
        "POST",
        "/admin/dol/login",
        &headers,
        &format!("token={token}"),
    )
    .await
}

/// Signs in; returns the `Cookie` header value and the page's CSRF token.
pub(crate) async fn session(host: &TestHost, token: &str) -> (String, String) {
    let r = login(host, token, &[]).await;
    assert_eq!(r.status, 303, "{}", r.text);
    let set = r.set_cookie.unwrap();
    let cookie = set.split(';').next().unwrap().to_owned();
    let page = send(host, "GET", "/admin/dol", &[("cookie", &cookie)], "").await;
    assert_eq!(page.status, 200);
    let csrf = page
        .text
        .split("name=\"dol-csrf\" content=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_owned();
    (cookie, csrf)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_session_every_page_shows_the_sign_in_form() {
    let host = start(&[]).await;
    for path in [
        "/admin/dol",
        "/admin/dol/",
        "/admin/dol/flags",
        "/admin/dol/keys",
    ] {
        let r = send(&host, "GET", path, &[], "").await;
        assert_eq!(r.status, 200, "{path}");
        assert!(
            r.text.contains("action=\"/admin/dol/login\""),
            "{path}: {}",
            r.text
        );
        assert!(
            !r.text.contains("dol-csrf"),
            "{path}: no page without a session"
        );
        assert!(r.set_cookie.is_none());
    }
    let r = send(&host, "GET", "/admin/dol/no-such-page", &[], "").await;
    assert_eq!(r.status, 404);
    let r = send(&host, "GET", "/admin/dol/login", &[], "").await;
    assert_eq!(r.status, 405, "login is POST only");
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_gets_the_form_again_with_an_error_and_no_cookie() {
    let host = start(&[]).await;
    for token in ["wrong", "", "console-admin-secret-7f3"] {
        let r = login(&host, token, &[]).await;
        assert_eq!(r.status, 401, "{token:?}");
        assert!(r.set_cookie.is_none(), "{token:?}: no cookie");
        assert!(r.text.contains("not valid"), "{}", r.text);
        assert!(r.text.contains("action=\"/admin/dol/login\""));
        assert!(!r.text.contains(ADMIN));
    }
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_sets_an_httponly_strict_expiring_cookie_and_redirects() {
    let host = start(&[]).await;
    let r = login(&host, ADMIN, &[]).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.location.as_deref(), Some("/admin/dol"));
    let set = r.set_cookie.unwrap();
    for attr in [
        "dol_session=v1.admin.",
        "HttpOnly",
        "SameSite=Strict",
        "Max-Age=43200",
        "Path=/",
    ] {
        assert!(set.contains(attr), "{set} lacks {attr}");
    }
    assert!(!set.contains("Secure"), "plain HTTP: {set}");
    assert!(!set.contains(ADMIN), "the token is not in the cookie");
    let page = send(
        &host,
        "GET",
        "/admin/dol",
        &[("cookie", set.split(';').next().unwrap())],
        "",
    )
    .await;
    assert!(page.text.contains("data-role=\"admin\""));
    assert!(!page.text.contains(ADMIN), "the token is not in the page");
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cookie_is_secure_behind_https() {
    let host = start(&[]).await;
    let r = login(&host, ADMIN, &[("x-forwarded-proto", "https")]).await;
    assert_eq!(r.status, 303);
    assert!(r.set_cookie.unwrap().contains("; Secure"));
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_out_clears_the_cookie_and_ends_the_session() {
    let host = start(&[]).await;
    let (cookie, _) = session(&host, ADMIN).await;
    let r = send(
        &host,
        "POST",
        "/admin/dol/logout",
        &[("cookie", &cookie)],
        "",
    )
    .await;
    assert_eq!(r.status, 303);
    let set = r.set_cookie.unwrap();
    assert!(
        set.starts_with("dol_session=;") && set.contains("Max-Age=0"),
        "{set}"
    );
    // A copy of the cookie no longer works either: the session is over.
    let r = send(&host, "GET", "/admin/keys", &[("cookie", &cookie)], "").await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert!(r.text.contains("signed out"), "{}", r.text);
    let page = send(&host, "GET", "/admin/dol", &[("cookie", &cookie)], "").await;
    assert!(
        page.text.contains("action=\"/admin/dol/login\""),
        "sign in again"
    );
    let (other, _) = session(&host, ADMIN).await;
    let r = send(&host, "GET", "/admin/keys", &[("cookie", &other)], "").await;
    assert_eq!(r.status, 200, "other sessions go on: {}", r.text);
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_and_sign_out_forms_posted_from_another_site_are_refused() {
    let host = start(&[]).await;
    let authority = host
        .url("")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    for headers in [
        vec![("sec-fetch-site", "cross-site")],
        vec![("sec-fetch-site", "same-site")],
        vec![("origin", "http://evil.example")],
        vec![("origin", "null")],
    ] {
        let r = login(&host, ADMIN, &headers).await;
        assert_eq!(r.status, 403, "{headers:?}: {}", r.text);
        assert!(r.set_cookie.is_none(), "{headers:?}: no session");
        assert!(r.text.contains("sent from another site"), "{}", r.text);
    }
    // The console's own form, from a browser: Sec-Fetch-Site same-origin
    // and Origin naming this host.
    let origin = format!("http://{authority}");
    let own = [
        ("sec-fetch-site", "same-origin"),
        ("origin", origin.as_str()),
    ];
    let r = login(&host, ADMIN, &own).await;
    assert_eq!(r.status, 303, "{}", r.text);
    let older_browser = [("origin", origin.as_str())];
    assert_eq!(login(&host, ADMIN, &older_browser).await.status, 303);
    // Signing a browser out from another site does not end its session.
    let (cookie, _) = session(&host, ADMIN).await;
    let out = send(
        &host,
        "POST",
        "/admin/dol/logout",
        &[("cookie", &cookie), ("sec-fetch-site", "cross-site")],
        "",
    )
    .await;
    assert_eq!(out.status, 403);
    let page = send(&host, "GET", "/admin/dol", &[("cookie", &cookie)], "").await;
    assert!(page.text.contains("dol-csrf"), "still signed in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_sessions_are_refused() {
    use dol_core::console::{self, Role};
    let host = start(&[]).await;
    // Guests read the wall clock, so the test signs a session (with the key
    // it can derive, knowing the admin token) that ended a minute ago.
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    let key = console::signing_key(ADMIN, VIEWER);
    let issued = now - console::SESSION_TTL_SECS - 60;
    let cookie = format!(
        "dol_session={}",
        console::create(&key, Role::Admin, issued, "old")
    );
    let r = send(&host, "GET", "/admin/keys", &[("cookie", &cookie)], "").await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert!(r.text.contains("expired"), "{}", r.text);
    let page = send(&host, "GET", "/admin/dol", &[("cookie", &cookie)], "").await;
    assert!(
        page.text.contains("action=\"/admin/dol/login\""),
        "sign in again"
    );
    let fresh = format!(
        "dol_session={}",
        console::create(&key, Role::Admin, now, "new")
    );
    let r = send(&host, "GET", "/admin/keys", &[("cookie", &fresh)], "").await;
    assert_eq!(r.status, 200, "{}", r.text);
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_session_changes_state_only_with_its_csrf_token() {
    let host = start(&[]).await;
    let (cookie, csrf) = session(&host, ADMIN).await;
    let kill = "/admin/flags/beta_features/kill";
    let forged = send(&host, "POST", kill, &[("cookie", &cookie)], "").await;
    assert_eq!(forged.status, 403, "{}", forged.text);
    assert!(forged.text.contains("CSRF"), "{}", forged.text);
    let wrong = send(
        &host,
        "POST",
        kill,
        &[("cookie", &cookie), ("x-dol-csrf", "00ff")],
        "",
    )
    .await;
    assert_eq!(wrong.status, 403, "{}", wrong.text);
    let (_, other_csrf) = session(&host, ADMIN).await;
    let other = send(
        &host,
        "POST",
        kill,
        &[("cookie", &cookie), ("x-dol-csrf", &other_csrf)],
        "",
    )
    .await;
    assert_eq!(other.status, 403, "another session's token: {}", other.text);
    let ok = send(
        &host,
        "POST",
        kill,
        &[("cookie", &cookie), ("x-dol-csrf", &csrf)],
        "",
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    let audit = send(
        &host,
        "GET",
        "/admin/audit?limit=1",
        &[("cookie", &cookie)],
        "",
    )
    .await;
    assert!(audit.text.contains("console:admin"), "{}", audit.text);
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_session_only_reads() {
    let host = start(&[]).await;
    let (cookie, csrf) = session(&host, VIEWER).await;
    let page = send(&host, "GET", "/admin/dol/flags", &[("cookie", &cookie)], "").await;
    assert!(page.text.contains("data-role=\"viewer\""));
    for path in ["/admin/flags", "/admin/keys", "/admin/alerts"] {
        let r = send(&host, "GET", path, &[("cookie", &cookie)], "").await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
    }
    let with_csrf = [("cookie", cookie.as_str()), ("x-dol-csrf", csrf.as_str())];
    for (method, path) in [
        ("POST", "/admin/flags/beta_features/kill"),
        ("POST", "/admin/keys"),
        ("POST", "/admin/scans/heartbeat"),
        ("DELETE", "/admin/flags/beta_features"),
    ] {
        let r = send(&host, method, path, &with_csrf, "{}").await;
        assert_eq!(r.status, 403, "{method} {path}: {}", r.text);
        assert!(r.text.contains("viewer"), "{}", r.text);
    }
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_session_cookie_is_refused() {
    let host = start(&[]).await;
    let (cookie, _) = session(&host, VIEWER).await;
    let forged = cookie.replacen("v1.viewer.", "v1.admin.", 1);
    let r = send(&host, "GET", "/admin/keys", &[("cookie", &forged)], "").await;
    assert_eq!(r.status, 401, "{}", r.text);
    let page = send(&host, "GET", "/admin/dol", &[("cookie", &forged)], "").await;
    assert!(page.text.contains("action=\"/admin/dol/login\""));
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_token_works_as_before_beside_sessions() {
    let host = start(&[]).await;
    let bearer = format!("Bearer {ADMIN}");
    let r = send(
        &host,
        "POST",
        "/admin/flags/beta_features/kill",
        &[("authorization", &bearer)],
        "",
    )
    .await;
    assert_eq!(
        r.status, 200,
        "no CSRF token needed with the bearer token: {}",
        r.text
    );
    let r = send(
        &host,
        "GET",
        "/admin/keys",
        &[("authorization", "Bearer wrong")],
        "",
    )
    .await;
    assert_eq!(r.status, 401);
    let r = send(&host, "GET", "/admin/keys", &[], "").await;
    assert_eq!(r.status, 401);
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_admin_token_the_console_is_closed() {
    let host = TestHost::builder(APP)
        .variable(&var("viewer_token"), VIEWER)
        .start()
        .await;
    let r = login(&host, VIEWER, &[]).await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.set_cookie.is_none());
    assert!(r.text.contains("admin_token is not configured"));
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_in_headless_chromium() {
    let root = dol_test_support::workspace_root();
    let python = root.join("tests/console-browser/.venv/bin/python");
    let geckodriver = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("geckodriver"))
            .find(|p| p.is_file())
    });
    let missing: Vec<&str> = [
        (
            python.exists(),
            "tests/console-browser/.venv (run scripts/test: pip install selenium)",
        ),
        (
            std::path::Path::new("/usr/bin/chromium").exists(),
            "/usr/bin/chromium (apt-get install chromium)",
        ),
        (
            std::path::Path::new("/usr/bin/chromedriver").exists(),
            "/usr/bin/chromedriver (apt-get install chromium-driver)",
        ),
        (
            std::path::Path::new("/usr/bin/firefox-esr").exists(),
            "/usr/bin/firefox-esr (apt-get install firefox-esr)",
        ),
        (
            geckodriver.is_some(),
            "geckodriver on PATH (cargo install --locked geckodriver)",
        ),
    ]
    .into_iter()
    .filter_map(|(ok, what)| (!ok).then_some(what))
    .collect();
    // Never green without a browser: a missing install fails, in CI and here.
    assert!(
        missing.is_empty(),
        "browser test cannot run, missing: {missing:?}"
    );

    // Two LLM providers (the second goes down for the last phase) and a
    // video platform, all mocks.
    let mock = MockLlm::start(Flavor::OpenAi).await.unwrap();
    let second = MockLlm::start(Flavor::Anthropic).await.unwrap();
    let video = MockVideo::start().await;
    let host = start(&[
        ("openai_api_key", "key-openai"),
        ("openai_base_url", &mock.base_url()),
        ("anthropic_api_key", "key-anthropic"),
        ("anthropic_base_url", &second.base_url()),
        ("runway_api_key", "key-runway"),
        ("runway_base_url", &video.base_url()),
        ("video_poll_interval_ms", "0"),
        ("bootstrap_api_key", "dol-console-test-key"),
        ("alertmanager_token", "am-token"),
    ])
    .await;
    let artifacts = root.join("target/console-browser");
    let run = |phase: &'static str| {
        let envs = [
            ("DOL_PHASE", phase.to_owned()),
            (
                "DOL_GECKODRIVER",
                geckodriver
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            ),
            ("DOL_BASE_URL", host.url("")),
            ("DOL_ADMIN_TOKEN", ADMIN.to_owned()),
            ("DOL_VIEWER_TOKEN", VIEWER.to_owned()),
            ("DOL_API_KEY", "dol-console-test-key".to_owned()),
            ("DOL_ALERTMANAGER_TOKEN", "am-token".to_owned()),
            (
                "DOL_FIRING_JSON",
                root.join("tests/fixtures/alertmanager/firing.json")
                    .display()
                    .to_string(),
            ),
            ("DOL_ARTIFACTS", artifacts.display().to_string()),
        ];
        let (python, script) = (python.clone(), root.join("tests/console-browser/check.py"));
        let artifacts = artifacts.clone();
        async move {
            let out = tokio::task::spawn_blocking(move || {
                std::process::Command::new(python)
                    .arg(script)
                    .envs(envs)
                    .output()
                    .unwrap()
            })
            .await
            .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(
                out.status.success() && stdout.contains("all checks passed"),
                "phase {phase}:\n{stdout}\n{}\n(screenshots in {})",
                String::from_utf8_lossy(&out.stderr),
                artifacts.display()
            );
            println!("{stdout}");
        }
    };
    // Empty states first (no traffic yet), then every page and action.
    run("main").await;
    // One provider down: every page still answers.
    second.set_behavior(Behavior::failing(503));
    run("provider-down").await;
    println!("screenshots: {}", artifacts.display());
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_sign_in_attempts_are_refused_for_a_while() {
    let host = start(&[]).await;
    for i in 0..dol_core::console::SIGN_IN_ATTEMPTS {
        let r = login(&host, "guess", &[]).await;
        assert_eq!(r.status, 401, "attempt {i}");
    }
    // Even the right token waits: the counter is per address, not per token.
    let r = login(&host, ADMIN, &[]).await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert!(r.set_cookie.is_none());
    assert!(r.text.contains("Too many sign-in attempts"), "{}", r.text);
    // The bearer token on the APIs is not affected.
    let bearer = format!("Bearer {ADMIN}");
    let r = send(
        &host,
        "GET",
        "/admin/keys",
        &[("authorization", &bearer)],
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    host.app.shutdown().await;
}
