//! DOL's health component: `GET /health` (liveness), `GET /health/ready`
//! (storage round trips, migrations), `GET /api/health` (score, checks,
//! alerts, emergency mode), `GET /api/metrics` (usage overview) and
//! `GET /metrics` (Prometheus text).

mod checks;
// `dol_spin_platform::http_service!` expands to wit-bindgen export glue that needs `unsafe`
// (raw canonical-ABI pointers, `#[export_name]`); the allow is scoped to that
// module, which holds nothing else.
#[allow(unsafe_code)]
mod http;
mod report;
