//! Runs Spin's own test suites — `spin-conformance` (fermyon/conformance-tests)
//! and `spin-runtime-tests` (Spin's runtime tests) — against `dol up`, or
//! against real Spin as the reference (`--runtime spin`).
//!
//! The protocol is the suites' own (see `../shared/conformance/README.md`): a
//! test directory holds a `spin.toml` template (`%{source=NAME}`,
//! `%{port=N}`), optionally a `test.json5` with invocations, an `error.txt` or a
//! `services` file. The runner fills the template in, starts the services the
//! test needs on loopback, starts the runtime on the manifest, sends each
//! invocation and compares the answer: status, body when given, and headers —
//! every header the suite lists must be there unless `optional` (with its
//! `value` when given), and no other header may be.
//!
//! Usage:
//! ```text
//! spin-suites [--runtime dol|spin] [--suites-dir DIR] [--dol-bin PATH]
//!             [--known-failures FILE] [--only NAME]...
//! spin-suites --portability [--spin-bin PATH]
//! ```
//! `--portability` runs DOL's own `spin.toml` on real Spin and `dol up` side
//! by side instead (see [`portability`]).
//! Exit code 0 only when every test passed (or, for `dol`, failed exactly as
//! listed in `known-failures.txt`). A test whose service cannot be started is
//! a failure, unless `DOL_SUITES_ALLOW_MISSING_SERVICES=1` (then it is listed
//! loudly as skipped; never set in CI).

mod json5;
mod portability;
mod services;

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use services::{Service, Services};

/// The two suites, in the order they run.
const SUITES: &[&str] = &["spin-conformance", "spin-runtime-tests"];

/// How long a runtime may take to load a test app before the test fails.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);

/// Which runtime the suites run against.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Runtime {
    Dol,
    Spin,
}

struct Options {
    runtime: Runtime,
    suites_dir: PathBuf,
    dol_bin: PathBuf,
    spin_bin: PathBuf,
    known_failures: PathBuf,
    only: Vec<String>,
    allow_missing_services: bool,
    portability: bool,
}

/// What happened to one test.
enum Outcome {
    Passed,
    Failed(String),
    Skipped(String),
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn parse_args() -> Result<Options> {
    let root = workspace_root();
    let mut options = Options {
        runtime: Runtime::Dol,
        suites_dir: std::env::var_os("DOL_CONFORMANCE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("../shared/conformance")),
        dol_bin: root.join("target/debug/dol"),
        spin_bin: std::env::var_os("SPIN_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("spin")),
        known_failures: root.join("tests/spin-suites/known-failures.txt"),
        only: Vec::new(),
        allow_missing_services: std::env::var("DOL_SUITES_ALLOW_MISSING_SERVICES").as_deref()
            == Ok("1"),
        portability: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--runtime" => {
                options.runtime = match value()?.as_str() {
                    "dol" => Runtime::Dol,
                    "spin" => Runtime::Spin,
                    other => bail!("--runtime: `{other}` is neither `dol` nor `spin`"),
                }
            }
            "--suites-dir" => options.suites_dir = PathBuf::from(value()?),
            "--dol-bin" => options.dol_bin = PathBuf::from(value()?),
            "--spin-bin" => options.spin_bin = PathBuf::from(value()?),
            "--known-failures" => options.known_failures = PathBuf::from(value()?),
            "--only" => options.only.push(value()?),
            "--portability" => options.portability = true,
            "-h" | "--help" => {
                println!(
                    "spin-suites [--runtime dol|spin] [--suites-dir DIR] [--dol-bin PATH] \
                     [--spin-bin PATH] [--known-failures FILE] [--only NAME]... | --portability"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument `{other}` (try --help)"),
        }
    }
    Ok(options)
}

/// `suite/test` → reason, from the known-failures file (dol only).
fn read_known_failures(path: &Path) -> Result<BTreeMap<String, String>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut known = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, reason) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        if !name.contains('/') {
            bail!("{}: `{name}` must be <suite>/<test>", path.display());
        }
        known.insert(name.to_owned(), reason.trim().to_owned());
    }
    Ok(known)
}

fn main() {
    match run() {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("spin-suites: {e:#}");
            std::process::exit(2);
        }
    }
}

fn run() -> Result<bool> {
    let options = parse_args()?;
    if options.portability {
        let runtime = tokio::runtime::Runtime::new().context("starting tokio")?;
        return runtime.block_on(portability::run(&options, &workspace_root()));
    }
    if !options.suites_dir.join(SUITES[0]).is_dir() {
        bail!(
            "the suites are not at {} (set DOL_CONFORMANCE_DIR or --suites-dir)",
            options.suites_dir.display()
        );
    }
    if options.runtime == Runtime::Dol && !options.dol_bin.is_file() {
        bail!(
            "{} does not exist: build it first (cargo build -p dol-host --bin dol)",
            options.dol_bin.display()
        );
    }
    let known = if options.runtime == Runtime::Dol {
        read_known_failures(&options.known_failures)?
    } else {
        BTreeMap::new()
    };
    let runtime_name = match options.runtime {
        Runtime::Dol => "dol up",
        Runtime::Spin => "spin up",
    };
    let runtime = tokio::runtime::Runtime::new().context("starting tokio")?;
    let mut services = Services::new(&options.suites_dir)?;
    let mut all_ok = true;
    let mut seen = BTreeSet::new();
    for suite in SUITES {
        let tests_dir = options.suites_dir.join(suite).join("tests");
        let mut names: Vec<String> = std::fs::read_dir(&tests_dir)
            .with_context(|| format!("listing {}", tests_dir.display()))?
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.path().is_dir())
            .filter_map(|entry| entry.file_name().into_string().ok())
            .collect();
        names.sort();
        let (mut passed, mut failed) = (0, 0);
        let mut failures = Vec::new();
        let mut skipped = Vec::new();
        let mut known_hits = Vec::new();
        for name in names {
            let full = format!("{suite}/{name}");
            if !options.only.is_empty() && !options.only.iter().any(|o| *o == name || *o == full) {
                continue;
            }
            seen.insert(full.clone());
            let started = Instant::now();
            let outcome = match runtime.block_on(run_test(&options, &mut services, suite, &name)) {
                Ok(outcome) => outcome,
                Err(e) => Outcome::Failed(format!("{e:#}")),
            };
            let took = started.elapsed().as_secs_f32();
            match (outcome, known.get(&full)) {
                (Outcome::Passed, None) => {
                    passed += 1;
                    println!("{runtime_name}: ok      {full} ({took:.1}s)");
                }
                (Outcome::Passed, Some(reason)) => {
                    failed += 1;
                    println!("{runtime_name}: PASSES  {full} but is listed as a known failure");
                    failures.push((
                        full,
                        format!(
                            "listed in known-failures.txt ({reason}) but passes now: remove it from the list"
                        ),
                    ));
                }
                (Outcome::Failed(why), Some(reason)) => {
                    println!("{runtime_name}: known failure: {full}: {reason}");
                    known_hits.push((full, reason.clone(), why));
                }
                (Outcome::Failed(why), None) => {
                    failed += 1;
                    println!("{runtime_name}: FAILED  {full} ({took:.1}s): {why}");
                    failures.push((full, why));
                }
                (Outcome::Skipped(why), _) => {
                    println!("{runtime_name}: SKIPPED {full}: {why}");
                    skipped.push((full, why));
                }
            }
        }
        let failed_total = failed + known_hits.len();
        println!(
            "\n{suite} on {runtime_name}: {passed} passed, {failed_total} failed{}",
            if skipped.is_empty() {
                String::new()
            } else {
                format!(", {} SKIPPED", skipped.len())
            }
        );
        for (name, why) in &failures {
            println!("  FAILED {name}: {why}");
        }
        for (name, reason, why) in &known_hits {
            println!("  known failure: {name}: {reason}\n      (this run: {why})");
        }
        for (name, why) in &skipped {
            println!(
                "  SKIPPED (missing service, DOL_SUITES_ALLOW_MISSING_SERVICES=1): {name}: {why}"
            );
        }
        println!();
        if failed > 0 {
            all_ok = false;
        }
    }
    if options.only.is_empty() {
        for name in known.keys() {
            if !seen.contains(name) {
                println!("known-failures.txt lists `{name}`, which is no test of the suites");
                all_ok = false;
            }
        }
    }
    services.stop();
    Ok(all_ok)
}

/// Picks a free loopback port (bind to port 0, read it, release it).
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
    Ok(listener
        .local_addr()
        .context("reading the free port")?
        .port())
}

/// Replaces `%{source=NAME}` and `%{port=N}` in a template.
fn fill_template(
    text: &str,
    components: &Path,
    services: &mut Services,
    allow_missing: bool,
) -> Result<std::result::Result<String, String>> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("%{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').context("unterminated %{ in a template")?;
        let (key, value) = after[..end]
            .split_once('=')
            .with_context(|| format!("template `%{{{}}}` has no `=`", &after[..end]))?;
        match key {
            "source" => {
                let path = components.join(format!("{value}.wasm"));
                if !path.is_file() {
                    bail!("component {} does not exist", path.display());
                }
                out.push_str(&path.display().to_string());
            }
            "port" => {
                let service = Service::for_guest_port(value)
                    .with_context(|| format!("no service listens on guest port {value}"))?;
                match services.port(service) {
                    Ok(port) => out.push_str(&port.to_string()),
                    Err(e) if allow_missing => return Ok(Err(format!("{e:#}"))),
                    Err(e) => bail!("{e:#}"),
                }
            }
            other => bail!("unknown template key `{other}`"),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(Ok(out))
}

/// A runtime process that is killed when dropped.
struct RuntimeProcess {
    child: Child,
    log: PathBuf,
}

impl RuntimeProcess {
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(15)..];
        tail.join("\n        ")
    }
}

impl Drop for RuntimeProcess {
    fn drop(&mut self) {
        // `spin up` runs each trigger as a child process (`spin trigger http`,
        // `spin trigger-cron`) that outlives it when only it is killed, so the
        // whole process group it leads (its own, see `spawn_runtime`) goes.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn run_test(
    options: &Options,
    services: &mut Services,
    suite: &str,
    name: &str,
) -> Result<Outcome> {
    let dir = options.suites_dir.join(suite).join("tests").join(name);
    let components = options.suites_dir.join(suite).join("components");
    let allow_missing = options.allow_missing_services;

    // The services the test asks for, besides the ones its templates name.
    let mut needed: Vec<Service> = Vec::new();
    if let Ok(text) = std::fs::read_to_string(dir.join("services")) {
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            needed
                .push(Service::by_name(line).with_context(|| format!("unknown service `{line}`"))?);
        }
    }
    let spec: Option<Value> = match std::fs::read_to_string(dir.join("test.json5")) {
        Ok(text) => {
            let text = match fill_template(&text, &components, services, allow_missing)? {
                Ok(text) => text,
                Err(why) => return Ok(Outcome::Skipped(why)),
            };
            Some(json5::parse(&text).context("parsing test.json5")?)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).context("reading test.json5"),
    };
    if let Some(preconditions) = spec
        .as_ref()
        .and_then(|s| s.get("preconditions"))
        .and_then(Value::as_array)
    {
        for p in preconditions {
            let kind = p.get("kind").and_then(Value::as_str).unwrap_or_default();
            if let Some(service) = Service::by_name(kind) {
                needed.push(service);
            }
        }
    }
    for service in needed {
        if let Err(e) = services.port(service) {
            if allow_missing {
                return Ok(Outcome::Skipped(format!("{e:#}")));
            }
            return Ok(Outcome::Failed(format!("service unavailable: {e:#}")));
        }
    }

    let template = std::fs::read_to_string(dir.join("spin.toml")).context("reading spin.toml")?;
    let manifest_text = match fill_template(&template, &components, services, allow_missing)? {
        Ok(text) => text,
        Err(why) => return Ok(Outcome::Skipped(why)),
    };
    let work = tempfile::tempdir().context("creating a temporary directory")?;
    let manifest = work.path().join("spin.toml");
    std::fs::write(&manifest, manifest_text).context("writing the manifest")?;
    let port = free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let mut process = spawn_runtime(
        options,
        options.runtime,
        &manifest,
        work.path(),
        &listen,
        &[],
        &[],
    )?;
    if let Err(why) = wait_ready(&mut process, &listen).await? {
        return Ok(Outcome::Failed(why));
    }

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .context("building the HTTP client")?;
    let base = format!("http://{listen}");
    let result = match spec {
        None => {
            let expected_error = std::fs::read_to_string(dir.join("error.txt")).ok();
            check_default(&client, &base, expected_error.as_deref()).await
        }
        Some(spec) => check_invocations(&client, &base, &spec).await,
    };
    Ok(match result {
        Ok(()) => Outcome::Passed,
        Err(why) => Outcome::Failed(format!("{why:#}\n        log: {}", process.log_tail())),
    })
}

/// Starts `runtime` on `manifest` with its state under `work` and its output
/// in `work/runtime.log`.
fn spawn_runtime(
    options: &Options,
    runtime: Runtime,
    manifest: &Path,
    work: &Path,
    listen: &str,
    envs: &[(&str, &str)],
    extra_args: &[&str],
) -> Result<RuntimeProcess> {
    let state = work.join("state");
    let log = work.join("runtime.log");
    let log_file = std::fs::File::create(&log).context("creating the runtime log")?;
    let mut command = match runtime {
        Runtime::Dol => Command::new(&options.dol_bin),
        Runtime::Spin => {
            let mut c = Command::new(&options.spin_bin);
            // The installed data dir holds the cron plugin; a throw-away one
            // otherwise keeps Spin from touching the user's.
            if std::env::var_os("SPIN_DATA_DIR").is_none() {
                c.env("SPIN_DATA_DIR", work.join("spin-data"));
            }
            c
        }
    };
    command
        .arg("up")
        .arg("-f")
        .arg(manifest)
        .args(["--listen", listen])
        .arg("--state-dir")
        .arg(&state)
        .args(extra_args)
        .envs(envs.iter().copied())
        // Error chains, not backtraces, are what a failure report needs.
        .env("RUST_BACKTRACE", "0")
        .env("RUST_LIB_BACKTRACE", "0")
        .current_dir(work)
        // Its own process group, so its trigger processes die with it.
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().context("cloning the log handle")?)
        .stderr(log_file);
    let child = command
        .spawn()
        .with_context(|| format!("starting {:?}", command.get_program()))?;
    Ok(RuntimeProcess { child, log })
}

/// Waits until the runtime accepts connections (dol binds only once loaded);
/// the inner error says why it never did.
async fn wait_ready(
    process: &mut RuntimeProcess,
    listen: &str,
) -> Result<std::result::Result<(), String>> {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        if let Some(status) = process.child.try_wait().context("polling the runtime")? {
            return Ok(Err(format!(
                "the runtime exited during start-up ({status}):\n        {}",
                process.log_tail()
            )));
        }
        if tokio::net::TcpStream::connect(listen).await.is_ok() {
            return Ok(Ok(()));
        }
        if Instant::now() > deadline {
            return Ok(Err(format!(
                "the runtime did not answer within {}s:\n        {}",
                STARTUP_TIMEOUT.as_secs(),
                process.log_tail()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// No `test.json5`: `GET /` answers 200, or 500 with `error.txt`'s text.
async fn check_default(
    client: &reqwest::Client,
    base: &str,
    expected_error: Option<&str>,
) -> Result<()> {
    let response = client
        .get(format!("{base}/"))
        .send()
        .await
        .context("GET /")?;
    let status = response.status().as_u16();
    let body = response.text().await.context("reading the body")?;
    match expected_error {
        None if status == 200 => Ok(()),
        None => bail!("GET / answered {status} (want 200): {body}"),
        Some(text) => {
            let text = text.trim();
            if status != 500 {
                bail!("GET / answered {status} (want 500 containing {text:?}): {body}");
            }
            if !body.contains(text) {
                bail!("GET / answered 500 with {body:?}, which does not contain {text:?}");
            }
            Ok(())
        }
    }
}

async fn check_invocations(client: &reqwest::Client, base: &str, spec: &Value) -> Result<()> {
    let invocations = spec
        .get("invocations")
        .and_then(Value::as_array)
        .context("test.json5 has no invocations")?;
    for (index, invocation) in invocations.iter().enumerate() {
        check_invocation(client, base, invocation)
            .await
            .with_context(|| format!("invocation {}", index + 1))?;
    }
    Ok(())
}

async fn check_invocation(client: &reqwest::Client, base: &str, invocation: &Value) -> Result<()> {
    let request = invocation.get("request").context("no request")?;
    let method = request
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or("GET");
    let path = request.get("path").and_then(Value::as_str).unwrap_or("/");
    let method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .context("bad method")?;
    let mut builder = client.request(method, format!("{base}{path}"));
    for header in request
        .get("headers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = header
            .get("name")
            .and_then(Value::as_str)
            .context("header name")?;
        let value = header
            .get("value")
            .and_then(Value::as_str)
            .unwrap_or_default();
        builder = builder.header(name, value);
    }
    if let Some(body) = request.get("body").and_then(Value::as_str) {
        builder = builder.body(body.to_owned());
    }
    let response = builder.send().await.context("sending the request")?;
    let status = response.status().as_u16();
    let mut headers: BTreeMap<String, String> = response
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = response.text().await.context("reading the body")?;

    let expected = invocation.get("response");
    let want_status = expected
        .and_then(|r| r.get("status"))
        .and_then(Value::as_u64)
        .unwrap_or(200);
    let mut problems = Vec::new();
    if u64::from(status) != want_status {
        problems.push(format!("status {status}, want {want_status}"));
    }
    if let Some(want_body) = expected.and_then(|r| r.get("body")).and_then(Value::as_str)
        && body != want_body
    {
        problems.push(format!("body {body:?}, want {want_body:?}"));
    }
    for header in expected
        .and_then(|r| r.get("headers"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = header
            .get("name")
            .and_then(Value::as_str)
            .context("header name")?
            .to_ascii_lowercase();
        let optional = header
            .get("optional")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let want = header.get("value").and_then(Value::as_str);
        match (headers.remove(&name), want) {
            (None, _) if optional => {}
            (None, _) => problems.push(format!("header `{name}` missing")),
            (Some(got), Some(want)) if got != want => {
                problems.push(format!("header `{name}: {got}`, want `{want}`"));
            }
            (Some(_), _) => {}
        }
    }
    for (name, value) in headers {
        problems.push(format!("unexpected header `{name}: {value}`"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        if !problems.iter().any(|p| p.starts_with("body")) && !body.is_empty() {
            problems.push(format!("(body {body:?})"));
        }
        bail!("{}", problems.join("; "))
    }
}
