//! The portability check (`--portability`): DOL's own `spin.toml` and built
//! `.wasm` files, unchanged, on real Spin (with the cron trigger plugin) and on
//! `dol up` side by side. Each route family must answer on Spin, with the same
//! status as on `dol up`, and a cron scan must fire on Spin (its lease lands
//! in the app's database, `scan_leases` table).
//!
//! It runs twice: on the embedded default (SQLite and the key-value file in
//! the state directory), and on shared PostgreSQL and Redis — each runtime
//! its own database and Redis database on the servers named by
//! `DOL_TEST_POSTGRES_URL` and `DOL_TEST_REDIS_URL` (`scripts/test` starts
//! them), with `database_url` set and Spin's runtime config naming Redis.
//! Without those servers the second pass is skipped loudly, and fails under
//! `CI=true`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{Options, Runtime, free_port, spawn_runtime, wait_ready};

/// The admin token both runtimes get, so admin routes are exercised past auth.
const ADMIN_TOKEN: &str = "portability-check";

/// The bootstrap API key both runtimes are given (`bootstrap_api_key`).
const API_KEY: &str = "portability-api-key";

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

/// Where a pass keeps the app's state.
enum Backend {
    /// SQLite and the key-value file in each runtime's state directory.
    Embedded,
    /// A PostgreSQL server and a Redis server (URLs).
    Shared { postgres: String, redis: String },
}

/// Runs the check on both backends; `Ok(false)` when a difference or a
/// missing cron firing was found.
pub async fn run(options: &Options, root: &Path) -> Result<bool> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let shared = match (env("DOL_TEST_POSTGRES_URL"), env("DOL_TEST_REDIS_URL")) {
        (Some(postgres), Some(redis)) => {
            // Both passes at once: each waits for a cron minute, so running
            // them side by side saves a minute of the test run.
            let shared = Backend::Shared { postgres, redis };
            let (embedded, shared) = tokio::join!(
                run_pass(options, root, &Backend::Embedded),
                run_pass(options, root, &shared)
            );
            let (embedded, shared) = (embedded?, shared?);
            println!("{}{}", embedded.1.join("\n"), shared.1.join("\n"));
            return Ok(embedded.0 && shared.0);
        }
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            println!(
                "portability: FAILED  DOL_TEST_POSTGRES_URL and DOL_TEST_REDIS_URL are not set: \
                 CI must check the shared backends on real Spin"
            );
            false
        }
        _ => {
            println!(
                "!!! portability on shared PostgreSQL and Redis SKIPPED: DOL_TEST_POSTGRES_URL \
                 and DOL_TEST_REDIS_URL are not set (scripts/test sets them)"
            );
            true
        }
    };
    let (embedded, report) = run_pass(options, root, &Backend::Embedded).await?;
    println!("{}", report.join("\n"));
    Ok(embedded && shared)
}

/// The arguments and variables that put one runtime on `backend`: for the
/// shared one, a fresh database `dol_portability_{name}` and Redis database
/// `redis_db` (emptied), named in a runtime config written under `work`.
async fn backend_settings(
    backend: &Backend,
    name: &str,
    redis_db: u8,
    work: &Path,
) -> Result<(Vec<String>, Vec<(String, String)>)> {
    let Backend::Shared { postgres, redis } = backend else {
        return Ok((Vec::new(), Vec::new()));
    };
    let (client, connection) = tokio_postgres::connect(postgres, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("connecting to {postgres}"))?;
    tokio::spawn(connection);
    let database = format!("dol_portability_{name}");
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        .await?;
    client
        .batch_execute(&format!("CREATE DATABASE {database}"))
        .await?;
    let config: tokio_postgres::Config = postgres.parse()?;
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        _ => bail!("DOL_TEST_POSTGRES_URL must name a TCP host"),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("postgres");
    let redis_url = format!("{}/{redis_db}", redis.trim_end_matches('/'));
    redis_flush(&redis_url).await?;
    let runtime_config = work.join("runtime-config.toml");
    std::fs::write(
        &runtime_config,
        format!("[key_value_store.default]\ntype = \"redis\"\nurl = \"{redis_url}\"\n"),
    )?;
    Ok((
        vec![
            "--runtime-config-file".to_owned(),
            runtime_config.display().to_string(),
        ],
        vec![
            (
                "SPIN_VARIABLE_DATABASE_URL".to_owned(),
                format!("postgres://{user}@{host}:{port}/{database}"),
            ),
            (
                "SPIN_VARIABLE_DATABASE_HOST".to_owned(),
                format!("{host}:{port}"),
            ),
        ],
    ))
}

/// Empties the Redis database of `url` (`redis://host:port/N`) with
/// `SELECT N` and `FLUSHDB` over plain RESP.
async fn redis_flush(url: &str) -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.trim_start_matches("redis://");
    let (address, db) = rest
        .rsplit_once('/')
        .context("a Redis URL without a database")?;
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .with_context(|| format!("connecting to Redis at {address}"))?;
    let command = format!(
        "*2\r\n$6\r\nSELECT\r\n${}\r\n{db}\r\n*1\r\n$7\r\nFLUSHDB\r\n",
        db.len()
    );
    stream.write_all(command.as_bytes()).await?;
    let mut answer = [0u8; 10];
    stream.read_exact(&mut answer).await?;
    if &answer != b"+OK\r\n+OK\r\n" {
        bail!("Redis SELECT {db} / FLUSHDB answered {answer:?}");
    }
    Ok(())
}

/// One pass of the check on `backend`: whether it passed, and its report
/// (printed by the caller, so passes running together do not interleave).
async fn run_pass(
    options: &Options,
    root: &Path,
    backend: &Backend,
) -> Result<(bool, Vec<String>)> {
    let mut report = Vec::new();
    let label = match backend {
        Backend::Embedded => "embedded SQLite and key-value file",
        Backend::Shared { .. } => "shared PostgreSQL and Redis",
    };
    report.push(format!("\nportability on {label}:"));
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
    let envs = [
        ("SPIN_VARIABLE_ADMIN_TOKEN", ADMIN_TOKEN),
        ("SPIN_VARIABLE_BOOTSTRAP_API_KEY", API_KEY),
    ];
    let dol_work = tempfile::tempdir().context("creating a temporary directory")?;
    let spin_work = tempfile::tempdir().context("creating a temporary directory")?;
    let dol_listen = format!("127.0.0.1:{}", free_port()?);
    let spin_listen = format!("127.0.0.1:{}", free_port()?);
    let (dol_args, dol_vars) = backend_settings(backend, "dol", 14, dol_work.path()).await?;
    let (spin_args, spin_vars) = backend_settings(backend, "spin", 15, spin_work.path()).await?;
    let with = |vars: &[(String, String)]| -> Vec<(String, String)> {
        envs.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .chain(vars.iter().cloned())
            .collect()
    };
    let (dol_envs, spin_envs) = (with(&dol_vars), with(&spin_vars));
    let mut dol = spawn_runtime(
        options,
        Runtime::Dol,
        &manifest,
        dol_work.path(),
        &dol_listen,
        &pairs(&dol_envs),
        &args(&dol_args),
    )?;
    let mut spin = spawn_runtime(
        options,
        Runtime::Spin,
        &manifest,
        spin_work.path(),
        &spin_listen,
        &pairs(&spin_envs),
        &args(&spin_args),
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
            report.push(format!(
                "portability: ok      {method} {path}: {on_spin} on both"
            ));
        } else {
            ok = false;
            report.push(format!(
                "portability: FAILED  {method} {path}: dol up {on_dol}, spin up {on_spin}"
            ));
        }
    }

    // A generation end to end (key check, admission, the offline tier,
    // settlement), whole and streamed: the gateway is a WASI 0.3 component
    // whose response head and body leave separately.
    for (name, listen) in [("dol up", &dol_listen), ("spin up", &spin_listen)] {
        for stream in [false, true] {
            let line = match generation(&client, listen, stream).await {
                Ok(()) => format!(
                    "portability: ok      {name}: a chat completion (stream: {stream}) answered and recorded"
                ),
                Err(error) => {
                    ok = false;
                    format!(
                        "portability: FAILED  {name}: a chat completion (stream: {stream}): {error:#}"
                    )
                }
            };
            report.push(line);
        }
    }

    // Flag evaluations are counted with wasi:keyvalue atomics (increment and
    // compare-and-swap): the live count must see every single evaluation on
    // both runtimes and backends.
    for (name, listen) in [("dol up", &dol_listen), ("spin up", &spin_listen)] {
        match single_evaluations_counted(&client, listen, 3).await {
            Ok(3) => report.push(format!(
                "portability: ok      {name}: 3 single OFREP evaluations, live count +3 (atomic counters)"
            )),
            Ok(other) => {
                ok = false;
                report.push(format!(
                    "portability: FAILED  {name}: 3 single OFREP evaluations, live count +{other}"
                ));
            }
            Err(error) => {
                ok = false;
                report.push(format!(
                    "portability: FAILED  {name}: counting evaluations: {error:#}"
                ));
            }
        }
    }

    // The every-minute trigger fires at second 0: wait for its claimed tick.
    let database = spin_work.path().join("state").join("sqlite_db.db");
    let deadline = Instant::now() + Duration::from_secs(75);
    let mut fired = None;
    while Instant::now() < deadline {
        let claims = match backend {
            Backend::Embedded => scan_claims(&database),
            Backend::Shared { postgres, .. } => shared_scan_claims(postgres).await,
        };
        if let Some(claims) = claims {
            fired = Some(claims);
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    match fired {
        Some(claims) => {
            report.push(format!(
                "portability: ok      a cron scan fired on Spin ({claims})"
            ));
        }
        None => {
            ok = false;
            report.push(format!(
                "portability: FAILED  no cron scan fired on Spin within 75 s:\n        {}",
                spin.log_tail()
            ));
        }
    }
    report.push(format!(
        "\nportability (DOL's spin.toml on real Spin, {label}): {}",
        if ok { "passed" } else { "FAILED" }
    ));
    Ok((ok, report))
}

/// One chat completion with the bootstrap key (the offline tier answers:
/// no provider is configured): a 200 with the completion, or the SSE stream
/// ending in `[DONE]`, and then its request row, written after the answer.
async fn generation(client: &reqwest::Client, listen: &str, stream: bool) -> Result<()> {
    let body = serde_json::json!({
        "model": "auto",
        "stream": stream,
        "messages": [{"role": "user", "content": format!("portability check, stream {stream}")}],
    });
    let response = client
        .post(format!("http://{listen}/v1/chat/completions"))
        .bearer_auth(API_KEY)
        .json(&body)
        .send()
        .await
        .context("sending")?;
    let status = response.status().as_u16();
    let id = response
        .headers()
        .get("x-dol-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = response.text().await.context("reading the answer")?;
    let whole = if stream {
        text.trim_end().ends_with("data: [DONE]")
    } else {
        text.contains("\"chat.completion\"")
    };
    if status != 200 || !whole {
        bail!(
            "status {status}: {}",
            text.chars().take(300).collect::<String>()
        );
    }
    // The bootstrap key has no limits: the request's row is written by its
    // instance's batch after the answer (a WASI 0.3 task outliving the
    // response), which the host must let finish; reading it by id waits
    // for that batch.
    let id = id.context("no x-dol-request-id")?;
    let recorded = client
        .get(format!("http://{listen}/admin/requests/{id}"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .context("reading the request's row")?
        .status()
        .as_u16();
    if recorded != 200 {
        bail!("the answered request {id} was not recorded after its answer: {recorded}");
    }
    Ok(())
}

/// Sends `n` single OFREP evaluations of the seed's A/B flag to `listen` and
/// answers how much the flag's live evaluation count
/// (`/admin/flags/{key}/evaluations`) grew meanwhile.
async fn single_evaluations_counted(
    client: &reqwest::Client,
    listen: &str,
    n: usize,
) -> Result<u64> {
    const FLAG: &str = "generation_experiment";
    let live = || async {
        let live: serde_json::Value = client
            .get(format!("http://{listen}/admin/flags/{FLAG}/evaluations"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        live["total"]
            .as_u64()
            .with_context(|| format!("no total in {live}"))
    };
    let before = live().await?;
    for _ in 0..n {
        let status = client
            .post(format!("http://{listen}/ofrep/v1/evaluate/flags/{FLAG}"))
            .header("content-type", "application/json")
            .body(r#"{"context":{"targetingKey":"user-1"}}"#)
            .send()
            .await?
            .status();
        if !status.is_success() {
            bail!("the evaluation answered {status}");
        }
    }
    // The counts of an instance's answers are written together some
    // milliseconds after the first (dol_core::observe::flag_counts::FLUSH_AFTER_MS): wait
    // for them, up to 5 s, on both runtimes.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let counted = live().await?.saturating_sub(before);
        if counted >= n as u64 || std::time::Instant::now() >= deadline {
            return Ok(counted);
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
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

fn pairs(envs: &[(String, String)]) -> Vec<(&str, &str)> {
    envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn args(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// The scans leased so far in Spin's database on the shared PostgreSQL.
async fn shared_scan_claims(server: &str) -> Option<String> {
    let mut config: tokio_postgres::Config = server.parse().ok()?;
    config.dbname("dol_portability_spin");
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.ok()?;
    tokio::spawn(connection);
    let rows = client
        .query(
            "SELECT name FROM scan_leases WHERE tick > 0 ORDER BY name",
            &[],
        )
        .await
        .ok()?;
    let names: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
    (!names.is_empty()).then(|| names.join(", "))
}
