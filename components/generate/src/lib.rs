//! DOL's AI generation gateway component: an OpenAI-compatible
//! `/v1/chat/completions` (streaming too), `/v1/models`, `/v1/generate` over
//! prompt templates, `/v1/events` (experiment events), and the gateway admin API. Routing, fallback, quality,
//! cost, limits and caching are decided by `dol_core::gateway`; this crate
//! is the Spin adapter (HTTP, outbound calls, SQLite, key-value, variables).

mod admin;
mod chat;
mod config;
mod experiments;
mod flags;
// spin-sdk's `#[http_component]` expands to an `#[export_name]` function.
#[allow(unsafe_code)]
mod http;
mod net;
mod probes;
mod store;
