//! The portability check (`--portability`): DOL's own `spin.toml` and built
//! `.wasm` files, unchanged, on real Spin (with the cron trigger plugin) and on
//! `dol up` side by side. Each route family must answer on Spin, with the same
//! status as on `dol up`, and a cron scan must fire on Spin (its claim lands
//! in the app's `default` SQLite database, `control` table).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{Options, Runtime, free_port, spawn_runtime, wait_ready};

/// The admin token both runtimes get, so admin routes are exercised past auth.
const ADMIN_TOKEN: &str = "portability-check";

/// One request per route family of DOL's `spin.toml`: method, path, body.
/// A 404 counts as "the route is missing" except where the component itself
/// answers 404 (`/admin/requests/{id}` for an unknown id).
const PROBES: &[(&str, &str, Option<&str>)] = &[
    ("GET", "/api/health", None),
    ("GET", "/health/ready", None),
    ("GET", "/api/metrics", None),
    ("GET", "/metrics", None),
    ("GET", "/v1/models", None),
    ("POST", "/v1/chat/completions", Some("{}")),
    ("POST", "/v1/completions", Some("{}")),
    ("POST", "/v1/images/generations", Some("{}")),
    ("POST", "/v1/feedback", Some("{}")),
    ("GET", "/v1/videos", None),
    ("GET", "/admin/orgs", None),
    ("GET", "/admin/settings", None),
    ("GET", "/admin/keys", None),
    ("GET", "/admin/templates", None),
    ("GET", "/admin/models", None),
    ("GET", "/admin/requests/no-such-request", None),
    ("GET", "/admin/experiments", None),
    ("GET", "/admin/scans/heartbeat", None),
    ("GET", "/admin/alerts", None),
    ("GET", "/admin/silences", None),
    ("GET", "/admin/emergency", None),
    ("POST", "/ofrep/v1/evaluate/flags", Some("{\"context\":{}}")),
    ("GET", "/admin/flags", None),
    ("GET", "/admin/audit", None),
    ("GET", "/admin/rollouts", None),
    ("POST", "/webhooks/alertmanager", Some("{}")),
    ("GET", "/admin/dol", None),
    ("GET", "/admin/dol/assets/console.js", None),
    ("POST", "/admin/dol/login", Some("token=wrong")),
];

/// Runs the check; `Ok(false)` when a difference or a missing cron firing was found.
pub async fn run(options: &Options, root: &Path) -> Result<bool> {
    let manifest = root.join("spin.toml");
    let text = std::fs::read_to_string(&manifest).context("reading spin.toml")?;
    for line in text.lines() {
        if let Some(source) = line.trim().strip_prefix("source = \"") {
            let source = source.trim_end_matches('"');
            if !root.join(source).is_file() {
                bail!("{source} is not built: run `dol build -f spin.toml` first");
            }
        }
    }
    let envs = [("SPIN_VARIABLE_ADMIN_TOKEN", ADMIN_TOKEN)];
    let dol_work = tempfile::tempdir().context("creating a temporary directory")?;
    let spin_work = tempfile::tempdir().context("creating a temporary directory")?;
    let dol_listen = format!("127.0.0.1:{}", free_port()?);
    let spin_listen = format!("127.0.0.1:{}", free_port()?);
    let mut dol = spawn_runtime(
        options,
        Runtime::Dol,
        &manifest,
        dol_work.path(),
        &dol_listen,
        &envs,
    )?;
    let mut spin = spawn_runtime(
        options,
        Runtime::Spin,
        &manifest,
        spin_work.path(),
        &spin_listen,
        &envs,
    )?;
    if let Err(why) = wait_ready(&mut dol, &dol_listen).await? {
        bail!("dol up: {why}");
    }
    if let Err(why) = wait_ready(&mut spin, &spin_listen).await? {
        bail!("spin up: {why}");
    }

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .context("building the HTTP client")?;
    let mut ok = true;
    for (method, path, body) in PROBES {
        let mut statuses = Vec::new();
        for listen in [&dol_listen, &spin_listen] {
            let method = reqwest::Method::from_bytes(method.as_bytes()).context("method")?;
            let mut request = client
                .request(method, format!("http://{listen}{path}"))
                .bearer_auth(ADMIN_TOKEN);
            if let Some(body) = body {
                request = request
                    .header("content-type", "application/json")
                    .body(*body);
            }
            let status = match request.send().await {
                Ok(response) => response.status().as_u16().to_string(),
                Err(error) => format!("no answer ({error})"),
            };
            statuses.push(status);
        }
        let (on_dol, on_spin) = (&statuses[0], &statuses[1]);
        // A 404 from Spin means the route family is missing there.
        let may_404 = path.starts_with("/admin/requests/");
        if on_dol == on_spin && (on_spin != "404" || may_404) {
            println!("portability: ok      {method} {path}: {on_spin} on both");
        } else {
            ok = false;
            println!("portability: FAILED  {method} {path}: dol up {on_dol}, spin up {on_spin}");
        }
    }

    // The every-minute trigger fires at second 0: wait for its claimed tick.
    let database = spin_work.path().join("state").join("sqlite_db.db");
    let deadline = Instant::now() + Duration::from_secs(75);
    let mut fired = None;
    while Instant::now() < deadline {
        if let Some(claims) = scan_claims(&database) {
            fired = Some(claims);
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    match fired {
        Some(claims) => println!("portability: ok      a cron scan fired on Spin ({claims})"),
        None => {
            ok = false;
            println!(
                "portability: FAILED  no cron scan fired on Spin within 75 s:\n        {}",
                spin.log_tail()
            );
        }
    }
    println!(
        "\nportability (DOL's spin.toml on real Spin): {}",
        if ok { "passed" } else { "FAILED" }
    );
    Ok(ok)
}

/// The scans claimed so far in the app's database, if any.
fn scan_claims(database: &Path) -> Option<String> {
    let connection =
        rusqlite::Connection::open_with_flags(database, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .ok()?;
    let mut statement = connection
        .prepare("SELECT name FROM scan_leases WHERE tick > 0 ORDER BY name")
        .ok()?;
    let keys: Vec<String> = statement
        .query_map([], |row| row.get(0))
        .ok()?
        .filter_map(std::result::Result::ok)
        .collect();
    (!keys.is_empty()).then(|| keys.join(", "))
}
