//! HTTP entry point (`/admin/recommendations...` goes to
//! [`crate::recommendations`]): `POST /admin/scans/{name}` runs the named scan now and
//! answers with its run record and summary, or 409 while another run of the
//! scan (cron or manual, any replica) holds its lease; `GET
//! /admin/scans/{name}?limit=N` lists its last runs from `scan_runs`, newest
//! first. Admin token or console session required.

use dol_core::observe::scan_lease::{self, Acquired, Trigger};
use dol_core::observe::scan_store;
use dol_core::observe::scans::ALL_SCANS;
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::http_component;

use dol_core::error::Code;
use dol_spin_platform as platform;

/// Routes `/admin/scans/{name}`.
#[http_component]
fn handle(req: Request) -> Response {
    if req.path().starts_with("/admin/recommendations") {
        return crate::recommendations::handle(&req);
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
    let actor = match admin(&req) {
        Ok(actor) => actor,
        Err(response) => return response,
    };
    if *req.method() == Method::Get {
        return history(&req, name);
    }
    if *req.method() != Method::Post {
        return platform::method_not_allowed("GET, POST");
    }
    let lease = match crate::scan::acquire(name, Trigger::Manual) {
        Ok(Acquired::Granted(lease)) => lease,
        Ok(refused) => {
            let (err, body) = scan_lease::refusal(name, &refused, platform::now_ms());
            let headers: Vec<(&str, String)> = err
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.clone()))
                .collect();
            return platform::json_with(err.status(), &body, &headers);
        }
        Err(err) => {
            eprintln!("scans: taking the {name} lease failed: {err:#}");
            return platform::error(Code::Internal, &format!("scan `{name}` could not start"));
        }
    };
    crate::scan::await_trailing_bookings();
    match crate::scan::run_leased(&lease, platform::now_ms()) {
        Ok((run, summary)) => {
            let body = serde_json::json!({ "scan": run, "summary": summary });
            // A scan run by hand is an admin action; cron runs are not.
            let record = dol_core::audit::Record::new("scan", "run", name).after(body.clone());
            match platform::open_db() {
                Ok(db) => platform::audit("scans", &mut platform::SpinSql(&db), &actor, record),
                Err(e) => eprintln!("scans: AUDIT WRITE FAILED: {e:#}"),
            }
            platform::json(200, &body)
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

/// `GET /admin/scans/{name}`: `{"scan", "runs": [...]}`, newest first.
fn history(req: &Request, name: &str) -> Response {
    let runs = platform::query_param(req.query(), "limit")
        .and_then(|limit| scan_store::parse_runs_limit(limit.as_deref()))
        .and_then(|limit| {
            let db = platform::open_db().map_err(platform::internal)?;
            scan_store::recent_runs(&mut platform::SpinSql(&db), name, limit)
                .map_err(platform::internal)
        });
    match runs {
        Ok(runs) => platform::json(200, &serde_json::json!({ "scan": name, "runs": runs })),
        Err(err) => platform::fail("scans", &err),
    }
}

/// Checks the admin token or console session; the error is the 401/403 to send.
fn admin(req: &Request) -> Result<String, Response> {
    platform::check_admin("scans", platform::admin_request(req))
}
