//! HTTP entry point: `POST /admin/scans/{name}` runs the named scan now and
//! answers with its run record and summary; `GET /admin/alerts` lists the
//! alert states; the operator routes (rules, alert actions, silences,
//! emergency mode) are in [`crate::ops`]. Admin token required
//! (`Authorization: Bearer`).

use dol_core::observe::scans::ALL_SCANS;
use dol_core::observe::store::{self, AlertQuery};
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::http_component;

use dol_core::error::Code;
use dol_spin_platform::{self as platform, SpinSql};

/// Routes `/admin/scans/{name}`, `/admin/alerts` and [`crate::ops`]'s routes.
#[http_component]
fn handle(req: Request) -> Response {
    if crate::ops::owns(req.path()) {
        return match admin(&req) {
            Ok(actor) => crate::ops::handle(&req, &actor),
            Err(response) => response,
        };
    }
    if req.path().trim_end_matches('/') == "/admin/alerts" {
        if let Err(response) = admin(&req) {
            return response;
        }
        return match req.method() {
            Method::Get => list_alerts(),
            _ => platform::method_not_allowed("GET"),
        };
    }
    let Some(name) = req.path().strip_prefix("/admin/scans/") else {
        return platform::error(Code::NotFound, "no such route");
    };
    let name = name.trim_end_matches('/');
    if !ALL_SCANS.contains(&name) {
        return platform::error(
            Code::UnknownScan,
            &format!("no scan `{name}`; scans: {}", ALL_SCANS.join(", ")),
        );
    }
    if let Err(response) = admin(&req) {
        return response;
    }
    if *req.method() != Method::Post {
        return platform::method_not_allowed("POST");
    }
    match crate::scan::run(name, platform::now_ms()) {
        Ok((run, summary)) => {
            platform::json(200, &serde_json::json!({ "scan": run, "summary": summary }))
        }
        Err(err) => {
            eprintln!("scans: {name} over HTTP failed: {err:#}");
            platform::error(
                Code::Internal,
                &format!("scan `{name}` failed (see the logs and scan_runs)"),
            )
        }
    }
}

/// Checks the admin token or console session; the error is the 401/403 to send.
fn admin(req: &Request) -> Result<String, Response> {
    platform::check_admin("scans", platform::admin_request(req))
}

/// The alert states, most severe first.
fn list_alerts() -> Response {
    let listed = platform::open_db()
        .map_err(|e| format!("{e:#}"))
        .and_then(|db| {
            store::list_alerts(&mut SpinSql(&db), &AlertQuery::default()).map_err(|e| e.to_string())
        });
    match listed {
        Ok(records) => platform::json(200, &serde_json::json!({ "alerts": records })),
        Err(err) => {
            eprintln!("scans: listing alerts failed: {err}");
            platform::error(Code::Internal, "listing alerts failed")
        }
    }
}
