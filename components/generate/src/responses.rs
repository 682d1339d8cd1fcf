//! `POST /v1/responses`: the core maps the Responses request onto the chat
//! pipeline (`dol_core::gateway::responses_ingress`) and the completion into
//! a `response` object (a stream into the typed events); this file only
//! wires the adapters.

use dol_core::gateway::intake;
use dol_core::gateway::pipeline::{Call, PipelineError};
use dol_core::gateway::responses_ingress::{self as ingress, ResponsesClient};
use dol_core::orgs::Role;

use crate::net::{self, ResponseSlot, SseClient};
use crate::request::Incoming;
use crate::{reply, run};
use dol_spin_platform::{self as platform, SpinSql};

/// Serves one Responses request end to end.
pub async fn serve(req: Incoming, out: ResponseSlot) {
    let started_ms = u64::try_from(platform::now_ms()).unwrap_or(0);
    let mut ready = match run::open() {
        Ok(ready) => ready,
        Err(err) => return net::respond(out, reply::openai(&err)).await,
    };
    let mut sql = SpinSql(&ready.db);
    let parsed = intake::authenticate(
        &mut sql,
        req.header("authorization"),
        req.header("x-api-key"),
        &ready.settings.bootstrap_key,
        Role::Generate,
    )
    .and_then(|caller| {
        let (request, echo) =
            ingress::parse_request(&req.body).map_err(PipelineError::BadRequest)?;
        let call = Call {
            caller,
            request,
            route: "responses".to_owned(),
            cache_control: req.header("cache-control").map(str::to_owned),
            id: run::request_id("chatcmpl"),
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
        run::pipeline(
            &mut responses,
            &mut sql,
            &mut ready.kv,
            &call,
            &ready.settings,
        )
        .await
    };
    run::finish(client, served, reply::openai).await;
}
