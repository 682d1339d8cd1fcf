//! DOL's feature-flag component: OFREP evaluation
//! (`POST /ofrep/v1/evaluate/flags[/{key}]`) and the admin API
//! (`/admin/flags...`, `/admin/audit`, `/admin/rollouts`, `/admin/experiments...`). The rules live in `dol_core::flags`;
//! this crate only reads requests, talks to Spin's storage and writes
//! responses.

// `dol_spin_platform::http_service!` expands to wit-bindgen export glue that needs `unsafe`
// (raw canonical-ABI pointers, `#[export_name]`); the allow is scoped to that
// module, which holds nothing else but routing.
mod admin;
mod counting;
mod experiments;
#[allow(unsafe_code)]
mod http;
mod ofrep;
mod provider;
mod rollouts;
mod store;
