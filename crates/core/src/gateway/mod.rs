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
//! cache key ([`cache`]), telemetry records ([`telemetry`]) and prompt
//! templates ([`templates`]). Time and jitter come in as arguments, so every
//! decision is deterministic and unit-testable.

pub mod cache;
pub mod catalog;
pub mod circuit;
pub mod cost;
pub mod engine;
pub mod keys;
pub mod offline;
pub mod openai;
pub mod probes;
pub mod providers;
pub mod quality;
pub mod retry;
pub mod routing;
pub mod telemetry;
pub mod templates;
pub mod text;
pub mod tiers;
