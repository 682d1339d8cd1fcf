//! HTTP entry point: `GET /health`, `/health/ready`, `/api/health`,
//! `/api/metrics` and `/metrics`. Parse → core → respond.

use dol_core::health::{HealthReport, latest_scan};
use dol_core::observe::usage::{self, Window};
use spin_sdk::http::{Method, Request, Response};

use dol_core::error::Code;
use dol_spin_platform as platform;

use crate::{checks, report};

/// Routes the health endpoints.
fn handle(req: Request) -> Response {
    let path = req.path().to_owned();
    let known = matches!(
        path.as_str(),
        "/health" | "/health/ready" | "/api/health" | "/api/metrics" | "/metrics"
    );
    if !known {
        return platform::error(Code::NotFound, "no such route");
    }
    if *req.method() != Method::Get {
        return platform::method_not_allowed("GET");
    }
    if path.starts_with("/health") {
        return if path == "/health" { live() } else { ready() };
    }
    // `?org=ID` narrows the three figure routes to one org's keys, for the
    // admin or a `read-metrics` key of that org only.
    let org = match platform::query_param(req.query(), "org") {
        Ok(org) => org,
        Err(err) => return platform::fail("health", &err),
    };
    if let Some(org) = &org
        && let Err(denied) = report::authorize_org(&req, org)
    {
        return denied;
    }
    let org = org.as_deref();
    match path.as_str() {
        "/api/health" => api_health(org),
        "/api/metrics" => api_metrics(&req, org),
        _ => prometheus(org),
    }
}

/// Liveness: the component answers; no storage is touched.
fn live() -> Response {
    platform::json(
        200,
        &serde_json::json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}),
    )
}

/// Readiness: key-value and SQLite round trips, migrations applied.
fn ready() -> Response {
    let storage = checks::Storage::check();
    let migrations = checks::migrations();
    let report = HealthReport::new(
        env!("CARGO_PKG_VERSION"),
        vec![
            storage.key_value.result.clone(),
            storage.sqlite.result.clone(),
            migrations,
            checks::credentials(),
        ],
        latest_scan(storage.key_value.last_run, storage.sqlite.last_run),
    );
    respond(report.http_status(), &report)
}

fn api_health(org: Option<&str>) -> Response {
    match report::api_health(org) {
        Ok(h) => respond(h.http_status(), &h),
        Err(err) => internal(&err),
    }
}

fn api_metrics(req: &Request, org: Option<&str>) -> Response {
    let query = req.query();
    let raw = match platform::query_param(query, "window") {
        Ok(window) => window.unwrap_or_else(|| "1h".to_owned()),
        Err(err) => return platform::fail("health", &err),
    };
    let Some(window) = Window::parse(&raw) else {
        let err = dol_core::error::ApiError::invalid(
            "window",
            format!("window `{raw}` is not one of 1h, 24h, 7d, 30d"),
        );
        return platform::fail("health", &err);
    };
    match report::overview(window, org) {
        Ok(o) => respond(200, &o),
        Err(err) => internal(&err),
    }
}

fn prometheus(org: Option<&str>) -> Response {
    let text = report::metrics_input(org).and_then(|m| Ok(usage::render_metrics(&m)?));
    match text {
        Ok(body) => Response::builder()
            .status(200)
            .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
            .body(body)
            .build(),
        Err(err) => internal(&err),
    }
}

fn respond(status: u16, body: &impl serde::Serialize) -> Response {
    match serde_json::to_value(body) {
        Ok(v) => platform::json(status, &v),
        Err(err) => internal(&err.into()),
    }
}

/// A 500 without internals; the cause goes to the log.
fn internal(err: &anyhow::Error) -> Response {
    eprintln!("health: {err:#}");
    platform::error(Code::Internal, "internal error")
}

// The component's `wasi:http/handler@0.3.0` export (WASI 0.3: Spin and
// `dol up` reuse the instance, with what it keeps, across requests).
dol_spin_platform::http_service!(handle);
