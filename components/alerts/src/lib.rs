//! DOL's alerts component: alerts in and the operator's hands on them.
//!
//! Inbound alert webhooks:
//!
//! | route | what |
//! |---|---|
//! | `POST /webhooks/slack/actions` | Slack interactivity: Acknowledge / Resolve / Kill-switch buttons |
//! | `POST /webhooks/slack/commands` | Slack slash command: `status`, `ack`, `resolve`, `kill`, `emergency` |
//! | `POST /webhooks/alertmanager` | Prometheus Alertmanager webhook v4 (bearer token) |
//! | `POST /webhooks/generic` | a generic HMAC-SHA256 signed alert |
//!
//! Operator routes (admin token), in [`ops`]: `GET /admin/alerts`,
//! `/admin/alerts/{id}[/ack|/resolve]`, `/admin/alerts/rules[/{name}]`,
//! `/admin/silences[/{id}]`, `/admin/emergency`.
//!
//! Verification, parsing, the alert state machine and storage are in
//! `dol_core::observe` (`slack`, `alertmanager`, `inbound`, `store`); this
//! crate reads requests, calls the core and maps the outcome to responses.

mod db;
mod error;
mod flags;
// `#[http_component]` expands to wit-bindgen export glue that needs `unsafe`
// (raw canonical-ABI pointers, `#[export_name]`); the allow is scoped to that
// module, which holds nothing else but routing.
#[allow(unsafe_code)]
mod http;
mod intake;
mod ops;
mod reply;
mod request;
mod slack;
