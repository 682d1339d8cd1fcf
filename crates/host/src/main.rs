//! `dol`: build and serve a Spin app on the DOL host.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use dol_host::reuse::{IdleTimeout, InstanceReuse};
use dol_host::{HostOptions, Limits};

// Every request allocates a store, its WASI context and many small buffers
// on two runtime threads; glibc's allocator took about an eighth of the
// host's CPU under load (its arena locks and consolidation).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "dol",
    version,
    about = "A Spin-compatible host: build and serve Spin apps"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run each component's build command (like `spin build`).
    Build {
        /// Path of the app manifest.
        #[arg(short = 'f', long = "from", default_value = "spin.toml")]
        from: PathBuf,
    },
    /// Serve the app (like `spin up`).
    Up {
        /// Path of the app manifest.
        #[arg(short = 'f', long = "from", default_value = "spin.toml")]
        from: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:3000")]
        listen: SocketAddr,
        /// State directory (default: `.spin/` next to the manifest).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Spin runtime config file (key-value stores, SQLite databases).
        #[arg(long)]
        runtime_config_file: Option<PathBuf>,
        /// Build the components first.
        #[arg(long)]
        build: bool,
        /// Wall-clock limit of one request or cron run, in seconds.
        #[arg(long, default_value_t = 60)]
        request_timeout_secs: u64,
        /// Memory limit of one instance, in MiB.
        #[arg(long, default_value_t = 256)]
        max_memory_mib: usize,
        /// Requests one instance of a WASI 0.3 component answers before it
        /// is dropped (Spin's option and default; WASI 0.2 components get an
        /// instance per request).
        #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..))]
        max_instance_reuse_count: u32,
        /// Requests one instance of a WASI 0.3 component answers at once.
        #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
        max_instance_concurrent_reuse_count: u32,
        /// How long an idle WASI 0.3 instance is kept for the next request:
        /// seconds, or a number suffixed by `s`, `ms`, `us`, `ns`; or a range
        /// (`1..8s`) each instance draws its own from.
        #[arg(long, default_value = "1s")]
        idle_instance_timeout: IdleTimeout,
    },
    /// Write a consistent snapshot of a state directory's SQLite databases and
    /// key-value store to one file, while `dol up` keeps serving.
    Backup {
        /// The state directory `dol up` uses (default `.spin/` next to spin.toml).
        #[arg(long)]
        state_dir: PathBuf,
        /// The backup file to write (never overwritten).
        #[arg(long)]
        out: PathBuf,
    },
    /// Restore a backup into a new, empty state directory.
    Restore {
        /// The backup file written by `dol backup`.
        #[arg(long)]
        from: PathBuf,
        /// The new state directory (missing or empty).
        #[arg(long)]
        state_dir: PathBuf,
    },
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,wasmtime=warn,cranelift=warn")
            }),
        )
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Build { from } => {
            let manifest = dol_manifest::manifest::load(&from)?;
            dol_host::build::build_all(&manifest)
        }
        Command::Backup { state_dir, out } => {
            let summary = dol_host::backup::backup(&state_dir, &out)?;
            for (name, bytes) in summary.files {
                eprintln!("backed up {name} ({bytes} bytes)");
            }
            eprintln!("wrote {}", out.display());
            Ok(())
        }
        Command::Restore { from, state_dir } => {
            let summary = dol_host::backup::restore(&from, &state_dir)?;
            for (name, bytes) in summary.files {
                eprintln!("restored {name} ({bytes} bytes)");
            }
            eprintln!("restored into {}", state_dir.display());
            Ok(())
        }
        Command::Up {
            from,
            listen,
            state_dir,
            runtime_config_file,
            build,
            request_timeout_secs,
            max_memory_mib,
            max_instance_reuse_count,
            max_instance_concurrent_reuse_count,
            idle_instance_timeout,
        } => {
            if build {
                let manifest = dol_manifest::manifest::load(&from)?;
                dol_host::build::build_all(&manifest)?;
            }
            let mut options = HostOptions::new(from);
            options.listen = listen;
            options.runtime_config = runtime_config_file;
            options.limits = Limits {
                request_timeout: Duration::from_secs(request_timeout_secs),
                max_memory_bytes: max_memory_mib * 1024 * 1024,
                reuse: InstanceReuse {
                    max_requests: max_instance_reuse_count as usize,
                    max_concurrent: max_instance_concurrent_reuse_count as usize,
                    idle_timeout: idle_instance_timeout,
                },
                ..Limits::default()
            };
            let state_dir = match state_dir {
                Some(dir) => dir,
                None => options
                    .manifest
                    .canonicalize()
                    .with_context(|| format!("reading {}", options.manifest.display()))?
                    .parent()
                    .map(|dir| dir.join(".spin"))
                    .unwrap_or_else(|| PathBuf::from(".spin")),
            };
            options.cache_dir = Some(state_dir.join("compiled-cache"));
            options.state_dir = Some(state_dir);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(serve(options))
        }
    }
}

async fn serve(options: HostOptions) -> Result<()> {
    let app = dol_host::start(options).await?;
    eprintln!("Serving {}", app.url());
    wait_for_signal().await?;
    eprintln!("Shutting down");
    app.shutdown().await;
    Ok(())
}

async fn wait_for_signal() -> Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("waiting for Ctrl-C"),
        _ = terminate.recv() => Ok(()),
    }
}
