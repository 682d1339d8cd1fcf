//! The AI generation gateway's pure core (issue 4).
//!
//! Everything the `generate` component decides lives here, free of I/O: the
//! OpenAI-compatible wire types and their validation ([`openai`]), the quality
//! gate ([`quality`]), cost accounting ([`cost`]), provider routing
//! ([`routing`]), circuit breakers ([`circuit`]), retry timing ([`retry`]), the
//! tier fallback state machine ([`tiers`]), the offline basic provider
//! ([`offline`]), the adapters for real providers: OpenAI-compatible,
//! Anthropic and Gemini requests, responses, streams and errors
//! ([`providers`]), the generation driver over injected I/O ([`engine`]), the
//! model catalog ([`catalog`]), API keys and limits ([`keys`]), the response
//! cache key ([`cache`]), telemetry records ([`telemetry`]), prompt
//! templates ([`templates`]), the SQL and key-value storage of all of
//! these ([`store`], over the core's storage seam), the front of a request
//! (key check, body parsing, template rendering: [`intake`]) and the
//! request pipeline over injected clock, SQL, key-value, upstream and flag
//! evaluation ([`pipeline`]: entry tier, reservation, cache, settlement,
//! the request record). Time and jitter come in
//! as arguments, so every decision is deterministic and unit-testable.

pub mod admin;
pub mod anthropic_ingress;
pub mod attempts;
pub mod bookings;
pub mod cache;
pub mod catalog;
pub mod circuit;
pub mod completions_ingress;
pub mod cost;
pub mod embedding_pipeline;
pub mod embeddings;
pub mod engine;
pub mod image_pipeline;
pub mod images;
pub mod intake;
pub mod json_schema;
pub mod keys;
pub mod messages_tools;
pub mod offline;
pub mod openai;
pub mod pipeline;
#[cfg(test)]
mod pipeline_tests;
pub mod probes;
pub mod providers;
pub mod quality;
pub mod responses_ingress;
pub mod responses_stream;
pub mod responses_tools;
pub mod retry;
pub mod routing;
pub mod settings;
pub mod store;
#[cfg(test)]
mod store_tests;
pub mod telemetry;
pub mod templates;
pub mod text;
pub mod tiers;
pub mod tools;
