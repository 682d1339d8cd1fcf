//! End-to-end tests: the real host (in-process) with the real components,
//! spoken to over HTTP.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests: a panic is a failure"
)]

mod alerts;
mod apps;
mod auto_entry;
mod backup;
mod console;
mod crash;
mod dol_app;
mod experiments;
mod flag_metrics;
mod flag_publication;
mod flags;
mod flags_in_process;
mod gateway;
mod health_api;
mod ofrep_limits;
mod ops_admin;
mod optimize;
mod orgs;
mod probe;
mod probe_routing;
mod recommendations;
mod replicas;
mod replicas_crash;
mod replicas_state_dir;
mod reuse;
mod rollouts;
mod scans_jobs;
mod sqlite_sandbox;
mod startup;
mod trust;
mod videos;
