//! DOL's AI generation gateway component: an OpenAI-compatible
//! `/v1/chat/completions` (streaming too), `/v1/completions` (legacy, streaming too), `/v1/embeddings`, `/v1/images/generations`, Anthropic's `/v1/messages`, `/v1/responses` (streaming too), `/v1/models`, `/v1/generate` over
//! prompt templates, `/v1/events` (experiment events), and the gateway admin API. Routing, fallback, quality,
//! cost, limits and caching are decided by `dol_core::gateway`, and its
//! storage (every SQL statement, the key-value layout) is
//! `dol_core::gateway::store`; this crate is the Spin adapter (HTTP,
//! outbound calls, opening SQLite and key-value, variables).

mod admin;
mod books;
mod chat;
mod client;
mod completions;
mod config;
mod embeddings;
mod events;
mod feedback;
mod flags;
// The `wasi:http/handler@0.3.0` export glue (`wasip3::http::service::export!`)
// expands to `#[export_name]` functions that need `unsafe`.
#[allow(unsafe_code)]
mod http;
mod images;
mod messages;
mod net;
mod reply;
mod request;
mod responses;
mod run;
mod timer;
mod upstream;
