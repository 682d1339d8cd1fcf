//! `POST /v1/chat/completions` and `POST /v1/generate`: parse the request,
//! run `dol_core::gateway::pipeline` through [`crate::run`], answer in
//! OpenAI's shape. Every decision is the core's.

use dol_core::gateway::intake;
use dol_core::gateway::pipeline::Call;
use dol_core::orgs::Role;

use crate::net::{self, ResponseSlot, SseClient};
use crate::request::Incoming;
use crate::{reply, run};
use dol_spin_platform::{self as platform, SpinSql};

/// Serves one generation request end to end.
pub async fn serve(req: Incoming, out: ResponseSlot, generate_route: bool) {
    let started_ms = u64::try_from(platform::now_ms()).unwrap_or(0);
    let mut ready = match run::open() {
        Ok(ready) => ready,
        Err(err) => return net::respond(out, reply::openai(&err)).await,
    };
    let mut sql = SpinSql(&ready.db);
    let call = intake::authenticate(
        &mut sql,
        req.header("authorization"),
        req.header("x-api-key"),
        &ready.settings.bootstrap_key,
        Role::Generate,
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
            id: run::request_id("chatcmpl"),
            started_ms,
        })
    });
    let mut client = SseClient::new(out);
    let served = match call {
        Ok(call) => {
            run::pipeline(&mut client, &mut sql, &mut ready.kv, &call, &ready.settings).await
        }
        Err(e) => Err(e),
    };
    run::finish(client, served, reply::openai).await;
}
