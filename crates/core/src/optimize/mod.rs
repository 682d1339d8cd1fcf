//! Self-optimization that proves itself (issue 16): savings against a
//! baseline, anomaly detection on the minute series, user feedback and how it
//! agrees with the automatic quality score, model selection and its accuracy.
//! Pure: the components and scans hand in rows and the clock.

pub mod anomaly;
pub mod anomaly_alerts;
pub mod auto_entry;
pub mod feedback;
pub mod recommend;
pub mod recommend_store;
pub mod savings;
pub mod selection;

#[cfg(test)]
mod recommend_tests;
