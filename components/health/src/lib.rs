//! DOL's health component: `GET /health` reports the version, a key-value and
//! a SQLite round trip, and the last scan run.

mod checks;
// `#[http_component]` expands to wit-bindgen export glue that needs `unsafe`
// (raw canonical-ABI pointers, `#[export_name]`); the allow is scoped to that
// module, which holds nothing else.
#[allow(unsafe_code)]
mod http;
mod platform;
