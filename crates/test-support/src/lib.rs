//! Shared test support: locating the workspace, building the guest components
//! once per test process, starting the real host in-process, and small mock
//! HTTP servers for the services DOL talks to.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test support: a panic is a test failure"
)]

pub mod mock;
pub mod mock_embed;
pub mod mock_image;
pub mod mock_llm;
pub mod mock_tools;
pub mod mock_video;
pub mod receiver;
pub mod shared;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use dol_host::clock::ManualClock;
use dol_host::{HostOptions, RunningApp};

/// The workspace root (where `spin.toml` lives).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// Every guest package the tests run: DOL's components and the test guests.
pub const GUEST_PACKAGES: &[&str] = &[
    "dol-health",
    "dol-scans",
    "dol-flag-evaluate",
    "dol-generate",
    "dol-videos",
    "dol-alerts",
    "probe",
    "greeter",
    "greeting-app",
    "flags-consumer",
];

/// Builds every guest component once per test process (`cargo build` is a no-op
/// when they are fresh). Panics with cargo's output when the build fails.
pub fn build_guests() {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let result = BUILT.get_or_init(|| {
        let output = Command::new(env!("CARGO"))
            .current_dir(workspace_root())
            // The environment is kept: CI builds everything, these guests
            // included, with clippy-driver as the workspace's rustc wrapper
            // (scripts/test), and a build without it would compile them all
            // again here.
            .args([
                "build",
                "--target",
                "wasm32-wasip2",
                "--profile",
                "component",
            ])
            .args(GUEST_PACKAGES.iter().flat_map(|package| ["-p", package]))
            .output()
            .map_err(|e| format!("running cargo: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    });
    if let Err(stderr) = result {
        panic!("building the guest components failed:\n{stderr}");
    }
}

/// A host started in-process for one test, with its own state directory, a
/// manual cron clock and injected variables.
pub struct TestHost {
    /// The running host.
    pub app: RunningApp,
    /// The clock driving its cron triggers.
    pub clock: ManualClock,
    /// HTTP client for talking to it.
    pub client: reqwest::Client,
    _state: State,
    /// What started it, to start it again over the same state ([`TestHost::restart`]).
    settings: TestHostBuilder,
}

/// A host's state directory: its own (deleted with it), or another
/// running host's (a second replica on the same files).
enum State {
    Own(tempfile::TempDir),
    Shared(PathBuf),
}

impl State {
    fn path(&self) -> &Path {
        match self {
            Self::Own(dir) => dir.path(),
            Self::Shared(path) => path,
        }
    }
}

/// What a test may change before the host starts.
#[derive(Clone)]
pub struct TestHostBuilder {
    manifest: PathBuf,
    variables: Vec<(String, String)>,
    listen_port: u16,
    request_timeout: Duration,
    max_memory_bytes: usize,
    instance_reuse: dol_host::reuse::InstanceReuse,
    state_from: Option<PathBuf>,
    runtime_config: Option<PathBuf>,
    clock_start: Option<chrono::DateTime<chrono::Utc>>,
}

impl TestHostBuilder {
    /// Starts from a copy of the files of another, stopped host's state
    /// directory (its database and key-value store), e.g. to restart an app
    /// with other variables over the same data.
    pub fn state_from(mut self, dir: &Path) -> Self {
        self.state_from = Some(dir.to_path_buf());
        self
    }

    /// Sets `SPIN_VARIABLE_<NAME>` for this host only.
    pub fn variable(mut self, env_name: &str, value: &str) -> Self {
        self.variables
            .push((env_name.to_string(), value.to_string()));
        self
    }

    /// Listens on this port of 127.0.0.1 (0, the default, picks a free
    /// one); for a variable that must name the host's own URL.
    pub fn listen_port(mut self, port: u16) -> Self {
        self.listen_port = port;
        self
    }

    /// Starts the manual cron clock at `at` instead of [`chrono_start`]
    /// (e.g. the wall clock's minute, so a scan run by an injected tick sees
    /// the telemetry the test's requests just wrote within its windows).
    pub fn clock_start(mut self, at: chrono::DateTime<chrono::Utc>) -> Self {
        self.clock_start = Some(at);
        self
    }

    /// Reads Spin's runtime config from `path` (e.g. a Redis key-value store).
    pub fn runtime_config(mut self, path: &Path) -> Self {
        self.runtime_config = Some(path.to_path_buf());
        self
    }

    /// Lowers the per-request wall-clock limit (runaway tests).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Lowers the per-instance memory limit (runaway tests).
    pub fn max_memory_bytes(mut self, bytes: usize) -> Self {
        self.max_memory_bytes = bytes;
        self
    }

    /// How WASI 0.3 instances are reused (`dol up --max-instance-reuse-count`
    /// and its siblings; Spin's defaults otherwise).
    pub fn instance_reuse(mut self, reuse: dol_host::reuse::InstanceReuse) -> Self {
        self.instance_reuse = reuse;
        self
    }

    /// Starts the host, or returns the start-up error.
    pub async fn try_start(self) -> anyhow::Result<TestHost> {
        let state = tempfile::tempdir()?;
        if let Some(from) = &self.state_from {
            for entry in std::fs::read_dir(from)? {
                let entry = entry?;
                if entry.file_type()?.is_file() {
                    std::fs::copy(entry.path(), state.path().join(entry.file_name()))?;
                }
            }
        }
        self.start_over(State::Own(state)).await
    }

    /// Starts the host over the state directory `state`.
    async fn start_over(self, state: State) -> anyhow::Result<TestHost> {
        let clock = ManualClock::new(self.clock_start.unwrap_or_else(chrono_start));
        let mut options = HostOptions::new(&self.manifest);
        options.listen = std::net::SocketAddr::from(([127, 0, 0, 1], self.listen_port));
        options.state_dir = Some(state.path().to_path_buf());
        options.cache_dir = Some(workspace_root().join("target/dol-test-cache"));
        options.runtime_config = self.runtime_config.clone();
        let variables = Arc::new(Mutex::new(self.variables.clone()));
        options.variables = Arc::new(move |name| {
            let variables = variables.lock().unwrap();
            variables
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        });
        options.clock = Arc::new(clock.clone());
        options.limits.request_timeout = self.request_timeout;
        options.limits.max_memory_bytes = self.max_memory_bytes;
        options.limits.reuse = self.instance_reuse.clone();
        let app = dol_host::start(options).await?;
        Ok(TestHost {
            app,
            clock,
            client: reqwest::Client::new(),
            _state: state,
            settings: self,
        })
    }

    /// Starts the host; panics on a start-up error.
    pub async fn start(self) -> TestHost {
        self.try_start().await.expect("host starts")
    }
}

/// A port of 127.0.0.1 free a moment ago (the OS picked it; another
/// process could take it before it is bound again, which the OS makes unlikely).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The instant the manual clock starts at: a fixed, whole minute.
pub fn chrono_start() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("valid timestamp")
}

impl TestHost {
    /// A host for the manifest at `manifest` (relative to the workspace root).
    pub fn builder(manifest: impl AsRef<Path>) -> TestHostBuilder {
        build_guests();
        TestHostBuilder {
            manifest: workspace_root().join(manifest),
            variables: Vec::new(),
            listen_port: 0,
            request_timeout: Duration::from_secs(30),
            max_memory_bytes: 128 * 1024 * 1024,
            instance_reuse: dol_host::reuse::InstanceReuse::default(),
            state_from: None,
            runtime_config: None,
            clock_start: None,
        }
    }

    /// The host's state directory (what `.spin/` is for `dol up`): the
    /// key-value store and `sqlite_db.db`, the `default` SQLite database.
    pub fn state_dir(&self) -> &Path {
        self._state.path()
    }

    /// Starts a second host (another `dol up` replica: its own engine,
    /// instances, port and clock) with the same settings over this host's
    /// state directory, so both share the SQLite database and the key-value
    /// file as replicas share PostgreSQL and Redis. Stop it before this
    /// host: the directory goes with this host.
    pub async fn replica(&self) -> TestHost {
        self.settings
            .clone()
            .listen_port(0)
            .start_over(State::Shared(self.state_dir().to_path_buf()))
            .await
            .expect("replica starts")
    }

    /// Stops the host and starts it again over the same state directory
    /// (SQLite and key-value survive, as `.spin/` does across `dol up` runs).
    pub async fn restart(self) -> TestHost {
        self.app.shutdown().await;
        self.settings
            .start_over(self._state)
            .await
            .expect("host restarts")
    }

    /// Absolute URL of `path` on this host.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.app.url())
    }

    /// Sends `method path` with an optional bearer token and JSON body;
    /// returns the status and the body as JSON (a JSON string holding the
    /// text when it is not JSON).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        auth: Option<&str>,
        body: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let mut r = self.client.request(
            reqwest::Method::from_bytes(method.as_bytes()).expect("method"),
            self.url(path),
        );
        if let Some(a) = auth {
            r = r.bearer_auth(a);
        }
        if let Some(b) = body {
            r = r
                .header("content-type", "application/json")
                .body(b.to_owned());
        }
        let resp = r.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let value = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (status, value)
    }

    /// Moves the manual clock to `minutes` after [`chrono_start`], which
    /// fires the cron triggers due by then, and waits for them; asserts the
    /// cron scans succeeded.
    pub async fn cron_tick(&self, minutes: i64) {
        self.cron_tick_at(chrono_start() + chrono::Duration::minutes(minutes))
            .await;
    }

    /// Moves the manual clock to `at`, which fires every cron trigger due by
    /// then, and waits for all of them; asserts the cron scans succeeded.
    pub async fn cron_tick_at(&self, at: chrono::DateTime<chrono::Utc>) {
        let mut events = self.app.cron_events();
        // Every trigger the move fires (the minute and the five-minute one
        // at :05, say) must have finished, not only the first to report.
        let due = self.app.cron_triggers_due_by(at).max(1);
        self.clock.set(at);
        for _ in 0..due {
            let event = tokio::time::timeout(Duration::from_secs(60), events.recv())
                .await
                .expect("a cron event within 60 s")
                .expect("cron events open");
            assert_eq!(event.outcome, Ok(()), "the cron scans succeed");
        }
    }

    /// GET `path`, returning status and JSON body (see [`Self::send_json`]).
    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        self.send_json("GET", path, "").await
    }

    /// Sends `method path` with `body`, returning status and the body parsed
    /// as JSON (a JSON string holding the text when it is not JSON).
    pub async fn send_json(
        &self,
        method: &str,
        path: &str,
        body: &str,
    ) -> (u16, serde_json::Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let response = self
            .client
            .request(method, self.url(path))
            .body(body.to_string())
            .send()
            .await
            .expect("request sent");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body read");
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        )
    }
}

/// Polls `probe` every 10 ms until it gives `Ok`, for reads of what the
/// gateway writes after its answers (README "What a crash can lose": the
/// rows of a request whose key has no limits trail its answer by up to
/// 20 ms, so aggregates — metrics, usage, the console — catch up a moment
/// later); panics with `what` and the probe's last `Err` after 10 s.
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match probe().await {
            Ok(found) => return found,
            Err(last) if std::time::Instant::now() >= deadline => {
                panic!("{what}: not so after 10 s; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}
