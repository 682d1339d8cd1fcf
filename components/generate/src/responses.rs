//! `POST /v1/responses`: the core maps the Responses request onto the chat
//! pipeline (`dol_core::gateway::responses_ingress`) and the completion into
//! a `response` object (a stream into the typed events); this file only
//! wires the adapters.

use dol_core::error::ApiError;
use dol_core::gateway::intake;
use dol_core::gateway::pipeline::{self, Call, Io, PipelineError};
use dol_core::gateway::responses_ingress::{self as ingress, ResponsesClient};
use spin_sdk::http::ResponseOutparam;

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

/// Serves one Responses request end to end.
pub async fn serve(req: Incoming, out: ResponseOutparam) {
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
    let parsed = intake::authenticate(
        &mut sql,
        req.header("authorization"),
        req.header("x-api-key"),
        &settings.bootstrap_key,
    )
    .and_then(|caller| {
        let (request, echo) =
            ingress::parse_request(&req.body).map_err(PipelineError::BadRequest)?;
        let call = Call {
            caller,
            request,
            route: "responses".to_owned(),
            cache_control: req.header("cache-control").map(str::to_owned),
            id: random_id(),
            started_ms,
        };
        Ok((call, echo))
    });
    let (call, echo) = match parsed {
        Ok(p) => p,
        Err(e) => return net::respond(out, reply::error(&e)).await,
    };
    let mut client = SseClient::new(out);
    let served = {
        let mut responses = ResponsesClient::new(&mut client, echo);
        let io = Io {
            sql: &mut sql,
            kv: &mut kv,
            upstream: &mut WasiUpstream::new(),
            flags: &mut InProcessFlags,
            clock: &WallClock,
        };
        pipeline::serve(io, &mut responses, &call, &settings).await
    };
    let response = match &served {
        Ok(s) => {
            for warning in &s.warnings {
                eprintln!("generate: {warning}");
            }
            reply::internal("responses", &"the pipeline served without answering")
        }
        Err(e) => reply::error(e),
    };
    // Nothing sent yet: the refusal (or, defensively, a 500) goes out now.
    if let Some(unstarted) = client.take_unstarted() {
        net::respond(unstarted, response).await;
    }
}
