//! `POST /v1/completions`: OpenAI's legacy completions as an entry point.
//! The core maps the request onto the chat pipeline (`dol_core::gateway::
//! completions_ingress`) and rewrites completions and chunks into
//! `text_completion`s; this file only wires the adapters.

use dol_core::gateway::completions_ingress::{self as ingress, CompletionsClient};
use dol_core::gateway::pipeline::{Call, PipelineError};

use crate::net::{self, ResponseSlot, SseClient};
use crate::request::Incoming;
use crate::{reply, run};
use dol_spin_platform::{self as platform, SpinSql};

/// Serves one completions request end to end.
pub async fn serve(req: Incoming, out: ResponseSlot) {
    let started_ms = u64::try_from(platform::now_ms()).unwrap_or(0);
    let (mut ready, caller) = match run::open_authenticated(&req) {
        Ok(r) => r,
        Err(response) => return net::respond(out, response).await,
    };
    let request = match ingress::parse_request(&req.body) {
        Ok(r) => r,
        Err(e) => return net::respond(out, reply::error(&PipelineError::BadRequest(e))).await,
    };
    let call = Call {
        caller,
        request,
        route: "completions".to_owned(),
        cache_control: req.header("cache-control").map(str::to_owned),
        id: run::request_id("chatcmpl"),
        started_ms,
    };
    let mut sql = SpinSql(&ready.db);
    let mut client = SseClient::new(out);
    let served = {
        let mut completions = CompletionsClient::new(&mut client);
        run::pipeline(
            &mut completions,
            &mut sql,
            &mut ready.kv,
            &call,
            &ready.settings,
        )
        .await
    };
    run::finish(client, served, reply::openai).await;
}
