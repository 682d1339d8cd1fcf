//! HTTP entry point: `GET /health`.

use dol_core::health::{HealthReport, latest_scan};
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::http_component;

use crate::{checks, platform};

/// Routes `/health`.
#[http_component]
fn handle(req: Request) -> Response {
    if req.path() != "/health" {
        return platform::error(404, "not-found", "no such route");
    }
    if *req.method() != Method::Get {
        return platform::error(405, "method-not-allowed", "use GET");
    }
    let (kv, kv_scan) = checks::key_value();
    let (sql, sql_scan) = checks::sqlite();
    let report = HealthReport::new(
        env!("CARGO_PKG_VERSION"),
        vec![kv, sql],
        latest_scan(kv_scan, sql_scan),
    );
    match serde_json::to_value(&report) {
        Ok(body) => platform::json(report.http_status(), &body),
        Err(err) => {
            eprintln!("health: serialising the report failed: {err}");
            platform::error(500, "internal", "internal error")
        }
    }
}
