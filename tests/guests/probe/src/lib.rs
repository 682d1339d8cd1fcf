//! The conformance probe: a Spin app written against spin-sdk alone (no DOL
//! code) whose routes expose exactly what a guest sees of the host: request
//! headers, key-value, SQLite v2 and v3, variables, environment, outbound
//! HTTP, streaming bodies, runaway CPU and memory, and the cron trigger.
//!
//! Every Spin error comes back as HTTP 500 with
//! `{"error": "<variant in kebab-case>", "detail": "<Display>"}` (outbound:
//! the `ErrorCode` variant name, e.g. `HttpRequestDenied`), so tests can
//! assert which error the guest saw.

mod cron;
// `#[http_component]` expands to wit-bindgen export glue that needs `unsafe`
// (raw canonical-ABI pointers, `#[export_name]`); the allow is scoped to that
// module, which holds only the router.
#[allow(unsafe_code)]
mod http;
mod reply;
mod routes;
