//! HTTP entry point: `GET /admin/dol[/{page}]`, `GET /admin/dol/assets/*`,
//! `POST /admin/dol/login`, `POST /admin/dol/logout`. Parse → session → page.

use dol_core::error::Code;
use spin_sdk::http::{Method, Request, Response};

use dol_spin_platform as platform;

use crate::{pages, session};

/// Routes the console.
fn handle(req: Request) -> Response {
    if let Err(too_large) = platform::check_body(&req, dol_core::hygiene::BODY_LIMIT) {
        return too_large;
    }
    let path = req.path().trim_end_matches('/');
    let rest = path.strip_prefix("/admin/dol").unwrap_or(path);
    let rest = rest.trim_start_matches('/');
    match (req.method(), rest) {
        (Method::Post, "login") => session::login(&req),
        (Method::Post, "logout") => session::logout(&req),
        (_, "login" | "logout") => platform::method_not_allowed("POST"),
        (Method::Get | Method::Head, _) => get(&req, rest),
        _ => platform::method_not_allowed("GET"),
    }
}

/// A page (or the sign-in form without a session) or an asset.
fn get(req: &Request, rest: &str) -> Response {
    if let Some(name) = rest.strip_prefix("assets/") {
        return pages::asset(name)
            .unwrap_or_else(|| platform::error(Code::NotFound, "no such console asset"));
    }
    let page = if rest.is_empty() { "overview" } else { rest };
    if !pages::exists(page) {
        return pages::not_found();
    }
    match session::current(req) {
        Some(s) => pages::page(page, &s, session::refresh_secs(req)),
        None => pages::sign_in(200, None),
    }
}

// The component's `wasi:http/handler@0.3.0` export (WASI 0.3: Spin and
// `dol up` reuse the instance, with what it keeps, across requests).
dol_spin_platform::http_service!(handle);
