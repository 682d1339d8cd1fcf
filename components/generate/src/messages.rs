//! `POST /v1/messages`: Anthropic's Messages API as an entry point. The core
//! maps the request onto the chat pipeline (`dol_core::gateway::
//! anthropic_ingress`) and rewrites answers, streams and errors into
//! Anthropic's shapes; this file only wires the Spin adapters.

use dol_core::gateway::anthropic_ingress::{self as ingress, AnthropicClient, AnthropicError};
use dol_core::gateway::intake;
use dol_core::gateway::pipeline::{self, Call, Io, PipelineError};
use spin_sdk::http::{Response, ResponseOutparam};

use crate::client::{InProcessFlags, WallClock};
use crate::config;
use crate::net::{self, SseClient};
use crate::request::Incoming;
use crate::upstream::WasiUpstream;
use dol_spin_platform::{self as platform, SpinKv, SpinSql};

fn random_id() -> String {
    let a = wasi::random::random::get_random_u64();
    let b = wasi::random::random::get_random_u64();
    format!("chatcmpl-{a:016x}{b:08x}")
}

fn render(e: &AnthropicError) -> Response {
    platform::json_with(e.status, &e.body, &[])
}

fn refusal(e: &PipelineError) -> Response {
    if let PipelineError::Storage { .. } = e {
        eprintln!("generate: {e}");
    }
    render(&ingress::error_body(&e.reply()))
}

/// Serves one Messages request end to end.
pub async fn serve(req: Incoming, out: ResponseOutparam) {
    let started_ms = u64::try_from(platform::now_ms()).unwrap_or(0);
    let settings = match config::load() {
        Ok(s) => s,
        Err(message) => {
            eprintln!("generate: configuration error: {message}");
            let body = ingress::error_json("api_error", "gateway misconfigured");
            return net::respond(out, platform::json_with(500, &body, &[])).await;
        }
    };
    let (db, mut kv) = match (platform::open_db(), SpinKv::open_default()) {
        (Ok(db), Ok(kv)) => (db, kv),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("generate: storage: {e}");
            let body = ingress::error_json("api_error", "internal error");
            return net::respond(out, platform::json_with(500, &body, &[])).await;
        }
    };
    let mut sql = SpinSql(&db);
    let caller = match intake::authenticate(
        &mut sql,
        req.header("authorization"),
        req.header("x-api-key"),
        &settings.bootstrap_key,
    ) {
        Ok(c) => c,
        Err(e) => return net::respond(out, refusal(&e)).await,
    };
    let request = match ingress::parse_request(&req.body, req.header(ingress::VERSION_HEADER)) {
        Ok(r) => r,
        Err(e) => return net::respond(out, render(&e)).await,
    };
    let call = Call {
        caller,
        request,
        route: "messages".to_owned(),
        cache_control: req.header("cache-control").map(str::to_owned),
        id: random_id(),
        started_ms,
    };
    let mut client = SseClient::new(out);
    let served = {
        let mut anthropic = AnthropicClient::new(&mut client);
        let io = Io {
            sql: &mut sql,
            kv: &mut kv,
            upstream: &mut WasiUpstream::new(),
            flags: &mut InProcessFlags,
            clock: &WallClock,
        };
        pipeline::serve(io, &mut anthropic, &call, &settings).await
    };
    let response = match &served {
        Ok(s) => {
            for warning in &s.warnings {
                eprintln!("generate: {warning}");
            }
            // The core always answers; reaching here is a bug, never a client mistake.
            platform::json_with(
                500,
                &ingress::error_json("api_error", "internal error"),
                &[],
            )
        }
        Err(e) => refusal(e),
    };
    // Nothing sent yet: the refusal (or, defensively, a 500) goes out now.
    if let Some(unstarted) = client.take_unstarted() {
        net::respond(unstarted, response).await;
    }
}
