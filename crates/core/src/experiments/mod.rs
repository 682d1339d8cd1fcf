//! A/B experiments: statistics, definitions, events, reports and storage.
//!
//! - [`dist`]: normal, Student's t and chi-square distributions;
//! - [`stats`]: two-proportion z-test, Welch's t-test, relative lift, SRM.
//!
//! Everything is pure; the clock comes in as an argument.

pub mod dist;
pub mod stats;

#[cfg(test)]
mod dist_tests;
#[cfg(test)]
mod stats_tests;
