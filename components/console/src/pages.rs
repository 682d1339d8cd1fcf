//! The console's HTML and assets, built into the `.wasm` with `include_str!`.
//! Pages are one shell whose script (`console.js`) renders the page named in
//! its `<body data-page>` from the JSON APIs; nothing secret is in a page.

use dol_core::console;
use spin_sdk::http::Response;

use crate::session::Current;

const SHELL: &str = include_str!("../assets/shell.html");
const SIGN_IN: &str = include_str!("../assets/sign-in.html");
const SCRIPT: &str = include_str!("../assets/console.js");
const STYLE: &str = include_str!("../assets/console.css");

/// Pages under `/admin/dol/`, `overview` being `/admin/dol` itself.
const PAGES: &[&str] = &[
    "overview",
    "production-health",
    "analytics",
    "flags",
    "keys",
    "alerts",
    "experiments",
    "models",
    "templates",
    "audit",
    "scans",
    "optimization",
    "video-monitoring",
];

/// Content-Security-Policy of every page: only this origin's script and
/// style, no inline code, no framing.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Whether `page` is a console page.
pub fn exists(page: &str) -> bool {
    PAGES.contains(&page)
}

/// An HTML response with the console's security headers.
fn html(status: u16, body: String) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "text/html; charset=utf-8")
        .header("content-security-policy", CSP)
        .header("x-frame-options", "DENY")
        .header("x-content-type-options", "nosniff")
        .header("referrer-policy", "no-referrer")
        .header("cache-control", "no-store")
        .body(body)
        .build()
}

/// The sign-in form, with an error message when given.
pub fn sign_in(status: u16, error: Option<&str>) -> Response {
    let error = error
        .map(|e| {
            format!(
                "<p class=\"error\" role=\"alert\">{}</p>",
                console::escape_html(e)
            )
        })
        .unwrap_or_default();
    html(status, SIGN_IN.replace("{{error}}", &error))
}

/// The sign-in form refusing a client that tried too often (429).
pub fn too_many(retry_after_secs: u64) -> Response {
    let message =
        format!("Too many sign-in attempts from this address: try again in {retry_after_secs} s.");
    let mut response = sign_in(429, Some(&message));
    response.set_header("retry-after", retry_after_secs.to_string());
    response
}

/// A console page for a signed-in operator.
pub fn page(name: &str, current: &Current, refresh_secs: u32) -> Response {
    let body = SHELL
        .replace("{{page}}", name)
        .replace("{{role}}", current.role.as_str())
        .replace("{{csrf}}", &current.csrf)
        .replace("{{refresh}}", &refresh_secs.to_string());
    html(200, body)
}

/// The 404 page.
pub fn not_found() -> Response {
    html(
        404,
        "<!doctype html><title>Not found</title><p>No such console page. <a href=\"/admin/dol\">Back</a></p>"
            .to_owned(),
    )
}

/// A static asset by name.
pub fn asset(name: &str) -> Option<Response> {
    let (body, content_type) = match name {
        "console.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        "console.css" => (STYLE, "text/css; charset=utf-8"),
        _ => return None,
    };
    Some(
        Response::builder()
            .status(200)
            .header("content-type", content_type)
            .header("x-content-type-options", "nosniff")
            .header("cache-control", "no-cache")
            .body(body)
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::SCRIPT;

    #[test]
    fn the_scans_page_lists_every_scan() {
        let list = SCRIPT
            .split("const SCANS = [")
            .nth(1)
            .and_then(|rest| rest.split("];").next())
            .expect("console.js declares SCANS");
        for scan in dol_core::observe::scans::ALL_SCANS {
            assert!(
                list.contains(&format!("\"{scan}\"")),
                "{scan} missing from the console's scans page"
            );
        }
    }
}
