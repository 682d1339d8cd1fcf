//! Observability core: health scoring, telemetry statistics, alert rules and
//! their state machine, Prometheus exposition, Slack and generic webhook
//! signing, Alertmanager intake, inbound webhook rules, and their storage
//! over [`crate::storage::SqlExecutor`] and [`crate::storage::KeyValue`]:
//! the alert store (states, silences, outbox, control values, [`store`]),
//! the health score's inputs and the health component's reads
//! ([`system`]), the scans' storage ([`scan_store`]) and their leases
//! ([`scan_lease`]).
//!
//! Everything here is pure: the clock (`now`, Unix milliseconds unless a name
//! says otherwise), the metric values and the previous states come in as
//! arguments, and storage is a trait; the callers (health, scans and webhook
//! components) do the I/O.
pub mod admin;
pub mod alertmanager;
pub mod alerts;
pub mod flag_counts;
pub mod inbound;
pub mod prometheus;
pub mod scan_lease;
pub mod scan_store;
pub mod scans;
pub mod score;
pub mod slack;
pub mod stats;
pub mod store;
pub mod system;
pub mod usage;
