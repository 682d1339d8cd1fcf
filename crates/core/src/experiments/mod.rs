//! A/B experiments: statistics, definitions, events, reports and storage.
//!
//! - [`dist`]: normal, Student's t and chi-square distributions;
//! - [`stats`]: two-proportion z-test, Welch's t-test, relative lift, SRM;
//! - [`definition`]: the experiment format an admin stores, validated;
//! - [`events`]: `POST /v1/events` bodies;
//! - [`report`]: per-variant results and the ship / keep running / stop verdict;
//! - [`store`]: SQL over [`crate::storage::SqlExecutor`] that turns events and
//!   gateway telemetry into the report's sufficient statistics.
//!
//! Everything is pure; the clock comes in as an argument.

pub mod attribution;
pub mod definition;
pub mod dist;
pub mod events;
pub mod report;
pub mod stats;
pub mod store;

#[cfg(test)]
mod definition_tests;
#[cfg(test)]
mod dist_tests;
#[cfg(test)]
mod report_tests;
#[cfg(test)]
mod stats_tests;
#[cfg(test)]
mod store_tests;
