//! `POST /v1/messages`: Anthropic's Messages API as an entry point. The core
//! maps the request onto the chat pipeline (`dol_core::gateway::
//! anthropic_ingress`) and rewrites answers, streams and errors into
//! Anthropic's shapes; this file only wires the Spin adapters.

use dol_core::error::ApiError;
use dol_core::gateway::anthropic_ingress::{self as ingress, AnthropicClient, AnthropicError};
use dol_core::gateway::intake;
use dol_core::gateway::pipeline::{Call, ErrorReply};
use dol_core::orgs::Role;
use spin_sdk::http::Response;

use crate::net::{self, ResponseSlot, SseClient};
use crate::request::Incoming;
use crate::run;
use dol_spin_platform::{self as platform, SpinSql};

fn render(e: &AnthropicError) -> Response {
    platform::json_with(e.status, &e.body, &[])
}

/// `err` in Anthropic's error shape (a server error's details are logged,
/// never sent).
fn anthropic(err: &ApiError) -> Response {
    platform::log_internal("generate", err);
    render(&ingress::error_body(&ErrorReply::from(err)))
}

/// Serves one Messages request end to end.
pub async fn serve(req: Incoming, out: ResponseSlot) {
    let started_ms = u64::try_from(platform::now_ms()).unwrap_or(0);
    let mut ready = match run::open() {
        Ok(ready) => ready,
        Err(err) => return net::respond(out, anthropic(&err)).await,
    };
    let mut sql = SpinSql(&ready.db);
    let caller = match intake::authenticate(
        &mut sql,
        req.header("authorization"),
        req.header("x-api-key"),
        &ready.settings.bootstrap_key,
        Role::Generate,
    ) {
        Ok(c) => c,
        Err(e) => return net::respond(out, anthropic(&ApiError::from(&e))).await,
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
        id: run::request_id("chatcmpl"),
        started_ms,
    };
    let mut client = SseClient::new(out);
    let served = {
        let mut messages = AnthropicClient::new(&mut client);
        run::pipeline(
            &mut messages,
            &mut sql,
            &mut ready.kv,
            &call,
            &ready.settings,
        )
        .await
    };
    run::finish(client, served, anthropic).await;
}
