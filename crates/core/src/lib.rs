//! DOL's pure domain core.
//!
//! Nothing in this crate performs I/O: no spin-sdk, wasmtime, tokio or rusqlite.
//! Clock, randomness and storage come in as arguments or traits, so every rule
//! here is deterministic and unit-testable, and the same code runs inside the
//! wasm components and in native tests.

pub mod audit;
pub mod auth;
pub mod console;
pub mod error;
pub mod experiments;
pub mod flags;
pub mod gateway;
pub mod health;
pub mod hex;
pub mod hygiene;
pub mod masking;
pub mod migrate;
pub mod observe;
pub mod optimize;
pub mod orgs;
pub mod privacy;
pub mod ratelimit;
pub mod rollouts;
pub mod storage;
#[cfg(test)]
mod test_db;
pub mod video;
