//! HTTP entry point: routes `/webhooks/...` (answers, then runs the reply's
//! follow-up, if any) and the operator routes of [`crate::ops`] (admin
//! token required).

use spin_sdk::http::{Method, Request, ResponseOutparam};
use spin_sdk::http_component;

use crate::error::Rejection;
use crate::reply::{self, Reply};
use crate::{intake, ops, slack};
use dol_spin_platform as platform;

/// Routes a request, answers it, then posts any follow-up.
#[http_component]
async fn handle(req: Request, out: ResponseOutparam) {
    if let Err(too_large) = platform::check_body(&req, dol_core::hygiene::BODY_LIMIT) {
        return reply::send(out, too_large).await;
    }
    let Reply {
        response,
        follow_up,
    } = match route(&req).await {
        Ok(reply) => reply,
        Err(rejection) => Reply {
            response: rejection.response(),
            follow_up: None,
        },
    };
    reply::send(out, response).await;
    if let Some(follow_up) = follow_up {
        follow_up.deliver().await;
    }
}

async fn route(req: &Request) -> Result<Reply, Rejection> {
    let path = req.path();
    if ops::owns(path) {
        let response = match platform::check_admin("alerts", platform::admin_request(req)) {
            Ok(actor) => ops::handle(req, &actor),
            Err(response) => response,
        };
        return Ok(Reply {
            response,
            follow_up: None,
        });
    }
    let known = matches!(
        path,
        "/webhooks/slack/actions"
            | "/webhooks/slack/commands"
            | "/webhooks/alertmanager"
            | "/webhooks/generic"
    );
    if !known {
        return Err(Rejection::NotFound);
    }
    if *req.method() != Method::Post {
        return Err(Rejection::Method);
    }
    match path {
        "/webhooks/slack/actions" => slack::actions(req).await,
        "/webhooks/slack/commands" => slack::command(req).await,
        "/webhooks/alertmanager" => intake::alertmanager(req),
        _ => intake::generic(req),
    }
}
