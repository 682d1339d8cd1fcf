//! A webhook receiver for demos: stands in for a Slack incoming webhook or
//! the generic JSON webhook, answers 200 and prints each request it gets as
//! one JSON line (`{"path", "headers", "body"}`) on stdout.
//!
//! `mock-receiver --listen 127.0.0.1:9302` serves until Ctrl-C and prints
//! `listening on http://ADDR` first.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use dol_test_support::receiver::Receiver;
use serde_json::json;

/// Serve a webhook receiver that logs what it gets.
#[derive(Debug, Parser)]
#[command(name = "mock-receiver", version, about)]
struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:9302")]
    listen: SocketAddr,
    /// Status to answer with (e.g. 500 to play a Slack outage).
    #[arg(long, default_value_t = 200)]
    status: u16,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let receiver = Receiver::start_on(args.listen, args.status).await?;
    writeln!(std::io::stdout(), "listening on http://{}", receiver.addr())?;
    let mut printed = 0;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        let got = receiver.received();
        let mut out = std::io::stdout().lock();
        for r in got.iter().skip(printed) {
            let line = json!({"path": r.path, "headers": r.headers, "body": r.json()});
            writeln!(out, "{line}")?;
        }
        out.flush()?;
        printed = got.len();
    }
}
