//! HTTP entry point: `POST /admin/scans/<name>` runs the named scan.
//!
//! No auth yet: a later issue puts admin tokens in front of `/admin/...`.

use spin_sdk::http::{Method, Request, Response};
use spin_sdk::http_component;

use crate::{platform, scan};

/// Routes `/admin/scans/<name>`.
#[http_component]
fn handle(req: Request) -> Response {
    let Some(name) = req.path().strip_prefix("/admin/scans/") else {
        return platform::error(404, "not-found", "no such route");
    };
    if name != scan::HEARTBEAT {
        return platform::error(404, "unknown-scan", "no such scan");
    }
    if *req.method() != Method::Post {
        return platform::error(405, "method-not-allowed", "use POST");
    }
    let now_secs = u64::try_from(platform::now_ms() / 1000).unwrap_or_default();
    match scan::heartbeat(now_secs) {
        Ok(run) => platform::json(200, &serde_json::json!({ "scan": run })),
        Err(err) => {
            eprintln!("scans: heartbeat over HTTP failed: {err:#}");
            platform::error(500, "internal", "scan failed")
        }
    }
}
