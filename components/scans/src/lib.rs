//! DOL's scans component: the periodic scans (the operator routes for the
//! alerts they raise are the `alerts` component's), run by Spin's cron trigger and,
//! because SpinKube runs no cron triggers, also over HTTP
//! (`POST /admin/scans/{name}`, admin token).
//!
//! One component carries two exports: `wasi:http/incoming-handler` from
//! spin-sdk's `#[http_component]` ([`http`]) and `handle-cron-event` from
//! wit-bindgen on `wit/guests.wit` ([`cron`]); wasm-component-ld merges the
//! two worlds into one component.
//!
//! The scans ([`alerts`], [`rollouts`], [`videos`], [`selection`], [`probes`], [`discovery`],
//! [`report`], [`recommendations`], which also serves `/admin/recommendations`) are thin:
//! their decisions are pure functions in `dol_core::observe::scans`, their
//! storage is `dol_core::observe::scan_store` (the health score of the
//! `alerts` scan is `/api/health`'s, read by `dol_core::observe::system`);
//! this crate does the network calls and maps the results to JSON.

mod alerts;
mod config;
mod cron;
mod deliver;
mod discovery;
mod flag_fold;
// `#[http_component]` expands to wit-bindgen export glue that needs `unsafe`
// (raw canonical-ABI pointers, `#[export_name]`); the allow is scoped to that
// module, which holds nothing else.
#[allow(unsafe_code)]
mod http;
mod net;
mod probes;
mod recommendations;
mod report;
mod rollouts;
mod scan;
mod selection;
mod videos;
