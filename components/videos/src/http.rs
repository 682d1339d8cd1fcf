//! The HTTP entry point: routes `/v1/videos/...` to [`crate::routes`].

use spin_sdk::http::{Method, Request, Response};
use spin_sdk::http_component;

use crate::{content, routes};

/// Routes one request.
#[http_component]
fn handle(req: Request) -> Response {
    let path = req.path().trim_end_matches('/').to_owned();
    let rest = path.strip_prefix("/v1/videos").unwrap_or("");
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    let method = req.method().clone();
    match (parts.as_slice(), method) {
        ([], Method::Post) => routes::create(&req),
        ([], Method::Get) => routes::list(&req),
        ([], _) => routes::not_allowed("GET, POST"),
        ([id], Method::Get) => routes::retrieve(&req, id),
        ([id], Method::Delete) => routes::cancel(&req, id),
        ([_], _) => routes::not_allowed("GET, DELETE"),
        ([id, "content"], Method::Get) => content::content(&req, id),
        ([_, "content"], _) => routes::not_allowed("GET"),
        ([id, "callback"], Method::Post) => routes::callback(&req, id),
        ([id, "remix"], Method::Post) => routes::remix(&req, id),
        ([_, "remix"], _) => routes::not_allowed("POST"),
        ([_, "callback"], _) => routes::not_allowed("POST"),
        _ => routes::not_found(&path),
    }
}
