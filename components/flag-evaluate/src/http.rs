//! HTTP entry point: routes `/ofrep/...` and the admin paths.

use dol_core::error::{ApiError, Code};
use spin_sdk::http::{Request, Response};

use dol_spin_platform as platform;

use crate::{admin, ofrep};

/// Routes a request to OFREP or the admin API.
fn handle(req: Request) -> Response {
    if let Err(too_large) = platform::check_body(&req, dol_core::hygiene::BODY_LIMIT) {
        return too_large;
    }
    let path = req.path();
    if path.starts_with("/ofrep/") {
        ofrep::handle(&req)
    } else if path == "/admin/audit"
        || path == "/admin/rollouts"
        || path == "/admin/flags"
        || path == "/admin/experiments"
        || path.starts_with("/admin/experiments/")
        || path.starts_with("/admin/flags/")
    {
        admin::handle(&req)
    } else {
        platform::fail(
            "flag-evaluate",
            &ApiError::new(Code::NotFound, "no such route"),
        )
    }
}

// The component's `wasi:http/handler@0.3.0` export (WASI 0.3: Spin and
// `dol up` reuse the instance, with what it keeps, across requests).
dol_spin_platform::http_service!(handle);
