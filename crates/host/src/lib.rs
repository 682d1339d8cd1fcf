//! A small Spin-compatible host on wasmtime.
//!
//! It reads a Spin manifest (v2, or v1 converted as Spin does), serves its
//! HTTP routes, fires its cron triggers, and gives components Spin's
//! key-value (also as `wasi:keyvalue`), SQLite, variables (also as
//! `wasi:config`), and allow-listed outbound HTTP, Redis, PostgreSQL and TCP
//! sockets, so the same `.wasm` files and `spin.toml` run on
//! `dol up` and on real Spin. [`start`] builds the whole host in-process, which
//! is how the CLI and every test use it.

mod app;
pub mod backup;
mod bindings;
pub mod build;
pub mod clock;
mod compose;
mod cron;
pub mod engine;
mod instance;
mod outbound;
mod outbound_client;
mod outbound_pg;
mod outbound_redis;
mod output;
mod pg_pool;
pub mod reuse;
mod server;
mod spin_apis;
mod storage;
#[cfg(test)]
mod test_postgres;
mod wasi_2023_10_18;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::net::TcpSocket;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

pub use cron::CronEvent;
pub use engine::Limits;

use crate::app::{LoadOptions, LoadedApp};
use crate::clock::{Clock, SystemClock};

/// Looks up a `SPIN_VARIABLE_*` value by its environment name.
pub type VariableLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// How to run an app.
#[derive(Clone)]
pub struct HostOptions {
    /// Path of the manifest (`spin.toml`).
    pub manifest: PathBuf,
    /// Address to listen on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// State directory; `.spin/` next to the manifest when `None`, like Spin.
    pub state_dir: Option<PathBuf>,
    /// Spin runtime config file.
    pub runtime_config: Option<PathBuf>,
    /// Where `SPIN_VARIABLE_*` values come from (the process environment by default).
    pub variables: VariableLookup,
    /// Per-instance limits.
    pub limits: Limits,
    /// Clock driving the cron triggers.
    pub clock: Arc<dyn Clock>,
    /// Compiled-code cache directory; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
}

impl HostOptions {
    /// Defaults for `manifest`: `127.0.0.1:3000`, process environment, system
    /// clock, compiled-code cache under the state directory.
    pub fn new(manifest: impl Into<PathBuf>) -> Self {
        Self {
            manifest: manifest.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
            state_dir: None,
            runtime_config: None,
            variables: Arc::new(|name| std::env::var(name).ok()),
            limits: Limits::default(),
            clock: Arc::new(SystemClock),
            cache_dir: None,
        }
    }
}

/// A running app: HTTP listener plus cron triggers.
pub struct RunningApp {
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    cron_events: broadcast::Sender<CronEvent>,
    cron_pending: cron::Pending,
}

impl RunningApp {
    /// The address the HTTP listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Base URL of the app, e.g. `http://127.0.0.1:3000`.
    pub fn url(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    /// Subscribes to cron firings (each carries its outcome).
    pub fn cron_events(&self) -> broadcast::Receiver<CronEvent> {
        self.cron_events.subscribe()
    }

    /// How many cron triggers fire once the clock reaches `at`: those whose
    /// next firing is at or before it. A test that moves the clock there
    /// waits for that many [`CronEvent`]s.
    pub fn cron_triggers_due_by(&self, at: chrono::DateTime<chrono::Utc>) -> usize {
        cron::due_by(&self.cron_pending, at)
    }

    /// Stops accepting requests and cron firings, and waits for in-flight work.
    pub async fn shutdown(self) {
        // Receivers gone means everything already stopped.
        self.shutdown.send_replace(true);
        for task in self.tasks {
            if let Err(error) = task.await {
                tracing::warn!("host task ended abnormally: {error}");
            }
        }
    }
}

/// Pending connections the listener queues: tokio's `TcpListener::bind` default.
const LISTEN_BACKLOG: u32 = 1024;

/// A socket bound to `address` but not yet listening: connecting is refused.
fn bind_socket(address: SocketAddr) -> Result<TcpSocket> {
    let socket = match address {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .context("creating the listening socket")?;
    // As `TcpListener::bind` does: a restarted host can take its port back
    // while the previous run's connections sit in TIME_WAIT.
    socket
        .set_reuseaddr(true)
        .context("setting SO_REUSEADDR on the listening socket")?;
    socket
        .bind(address)
        .with_context(|| format!("listening on {address}"))?;
    Ok(socket)
}

/// Loads the app, binds the listener and starts the triggers.
pub async fn start(options: HostOptions) -> Result<RunningApp> {
    let manifest = dol_manifest::manifest::load(&options.manifest)?;
    let state_dir = options
        .state_dir
        .clone()
        .unwrap_or_else(|| manifest.base_dir.join(".spin"));
    let runtime_config = match &options.runtime_config {
        Some(path) => dol_manifest::runtime_config::RuntimeConfig::load(path)?,
        None => dol_manifest::runtime_config::RuntimeConfig::default(),
    };
    // A relative `--state-dir ./x` is taken against the current directory
    // now, once, so nothing depends on the directory the host later runs in.
    let state_dir = std::path::absolute(&state_dir)
        .with_context(|| format!("resolving the state directory {}", state_dir.display()))?;
    let engine = engine::build_engine(&options.limits, options.cache_dir.as_deref())?;
    // Bound now, so a taken port fails before the slow part and the address is
    // known while loading; listening starts only once the app is loaded, so
    // until then (and when loading fails) clients are refused rather than
    // accepted into the backlog and then reset.
    let socket = bind_socket(options.listen)?;
    let local_addr = socket.local_addr().context("reading the bound address")?;
    let load_engine = engine.clone();
    let variables = options.variables.clone();
    let limits = options.limits.clone();
    // Compiling components is CPU-bound: keep it off the async workers.
    let app = tokio::task::spawn_blocking(move || {
        LoadedApp::load(LoadOptions {
            manifest,
            runtime_config,
            state_dir: &state_dir,
            variable_lookup: &*variables,
            limits,
            engine: load_engine,
            listen: local_addr,
        })
    })
    .await
    .context("loading the app")??;
    let listener = socket
        .listen(LISTEN_BACKLOG)
        .with_context(|| format!("listening on {local_addr}"))?;
    let app = Arc::new(app);
    let ticker = engine::EpochTicker::start(&engine)?;

    let (shutdown, shutdown_rx) = watch::channel(false);
    let (cron_events, _) = broadcast::channel(256);
    let mut tasks = Vec::new();
    let server_app = app.clone();
    let server_shutdown = shutdown_rx.clone();
    tasks.push(tokio::spawn(async move {
        server::run(server_app, listener, server_shutdown).await;
        // The ticker lives exactly as long as the server.
        drop(ticker);
    }));
    let started = options.clock.now();
    let cron_pending = cron::pending(&app.manifest.cron_triggers, started);
    for index in 0..app.manifest.cron_triggers.len() {
        tasks.push(tokio::spawn(cron::run_trigger(
            app.clone(),
            index,
            options.clock.clone(),
            started,
            cron::Channels {
                events: cron_events.clone(),
                pending: cron_pending.clone(),
            },
            shutdown_rx.clone(),
        )));
    }
    tracing::info!(
        "serving {} on http://{local_addr}",
        app.manifest.application.name
    );
    for (route, component) in app.router.routes() {
        tracing::info!("  {route} -> {component}");
    }
    Ok(RunningApp {
        local_addr,
        shutdown,
        tasks,
        cron_events,
        cron_pending,
    })
}
