//! A mock LLM provider (OpenAI-compatible, Anthropic or Gemini) for demos,
//! benchmarks and manual tests.
//!
//! `mock-llm --flavor openai --listen 127.0.0.1:9001` serves until Ctrl-C. It
//! prints `listening on http://ADDR` (the real port when `:0` was asked for)
//! and the base URL for client SDKs on stdout. Steer it over HTTP, e.g.
//!
//! ```text
//! curl -X PATCH localhost:9001/__mock/behavior -d '{"delay_ms": 200}'
//! curl -X POST  localhost:9001/__mock/script   -d '{"fail_status": 429, "retry_after_s": 2}'
//! curl          localhost:9001/__mock/requests
//! ```
//!
//! See `dol_test_support::mock_llm` for every endpoint and behaviour field.

use std::io::Write;
use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use dol_test_support::mock_llm::{Behavior, Flavor, MockLlm};

/// Serve a mock LLM provider API.
#[derive(Debug, Parser)]
#[command(name = "mock-llm", version, about)]
struct Args {
    /// Wire format: openai, anthropic or gemini.
    #[arg(long, default_value = "openai", env = "MOCK_LLM_FLAVOR")]
    flavor: Flavor,
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:9001", env = "MOCK_LLM_LISTEN")]
    listen: SocketAddr,
    /// Initial behaviour as JSON, e.g. '{"delay_ms": 100, "chunk_delay_ms": 20}'
    /// (or @FILE to read it from a file).
    #[arg(long, env = "MOCK_LLM_BEHAVIOR")]
    behavior: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let behavior = match &args.behavior {
        None => None,
        Some(text) => {
            let text = match text.strip_prefix('@') {
                Some(path) => std::fs::read_to_string(path)
                    .with_context(|| format!("reading the behaviour file {path}"))?,
                None => text.clone(),
            };
            Some(serde_json::from_str::<Behavior>(&text).context("parsing --behavior")?)
        }
    };
    let mock = MockLlm::start_on(args.flavor, args.listen).await?;
    if let Some(behavior) = behavior {
        mock.set_behavior(behavior);
    }
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{}", mock.addr())?;
        writeln!(out, "{} base URL: {}", mock.flavor(), mock.base_url())?;
        out.flush()?;
    }
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    Ok(())
}
