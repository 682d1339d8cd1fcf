//! `POST /v1/chat/completions` and `POST /v1/generate`: parse the request,
//! build the Spin adapters, run `dol_core::gateway::pipeline`, write what it
//! answers. Every decision is the core's.

use dol_core::error::ApiError;
use dol_core::gateway::intake;
use dol_core::gateway::pipeline::{self, Call, Io, PipelineError};
use spin_sdk::http::{Response, ResponseOutparam};

use crate::client::{InProcessFlags, WallClock};
use crate::config;
use crate::net::{self, SseClient};
use crate::reply;
use crate::request::Incoming;
use crate::upstream::WasiUpstream;
use dol_spin_platform::{self as platform, SpinKv, SpinSql};

fn random_id() -> String {
    let a = wasi::random::random::get_random_u64();
    let b = wasi::random::random::get_random_u64();
    format!("chatcmpl-{a:016x}{b:08x}")
}

/// Serves one generation request end to end.
pub async fn serve(req: Incoming, out: ResponseOutparam, generate_route: bool) {
    let started_ms = u64::try_from(platform::now_ms()).unwrap_or(0);
    let settings = match config::load() {
        Ok(s) => s,
        Err(message) => {
            eprintln!("generate: configuration error: {message}");
            return net::respond(out, reply::openai(&ApiError::from(message))).await;
        }
    };
    let (db, mut kv) = match (platform::open_db(), SpinKv::open_default()) {
        (Ok(db), Ok(kv)) => (db, kv),
        (Err(e), _) | (_, Err(e)) => {
            return net::respond(out, reply::internal("storage", &e)).await;
        }
    };
    let mut sql = SpinSql(&db);
    let call = intake::authenticate(
        &mut sql,
        req.header("authorization"),
        req.header("x-api-key"),
        &settings.bootstrap_key,
    )
    .and_then(|caller| {
        let (request, route) = if generate_route {
            intake::parse_generate(&mut sql, &req.body)?
        } else {
            intake::parse_chat(&req.body)?
        };
        Ok(Call {
            caller,
            request,
            route,
            cache_control: req.header("cache-control").map(str::to_owned),
            id: random_id(),
            started_ms,
        })
    });
    let mut client = SseClient::new(out);
    let served = match call {
        Ok(call) => {
            let io = Io {
                sql: &mut sql,
                kv: &mut kv,
                upstream: &mut WasiUpstream::new(),
                flags: &mut InProcessFlags,
                clock: &WallClock,
            };
            pipeline::serve(io, &mut client, &call, &settings).await
        }
        Err(e) => Err(e),
    };
    finish(client, served).await;
}

/// Logs the book-keeping failures, and answers when nothing was sent yet: the
/// refusal, or (defensively: the core always answers) a 500.
async fn finish(mut client: SseClient, served: Result<pipeline::Served, PipelineError>) {
    let response: Response = match &served {
        Ok(s) => {
            for warning in &s.warnings {
                eprintln!("generate: {warning}");
            }
            reply::internal("chat", &"the pipeline served without answering")
        }
        Err(e) => reply::error(e),
    };
    if let Some(unstarted) = client.take_unstarted() {
        net::respond(unstarted, response).await;
    }
}
