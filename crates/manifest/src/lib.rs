//! Spin application manifest (version 2, and version 1 read as Spin reads it) and
//! runtime-config model for the DOL host.
//!
//! Everything here is pure except [`manifest::load`] and [`runtime_config::RuntimeConfig::load`],
//! which read one file each. The host (`dol`) loads a manifest, checks it against the runtime
//! config, builds a [`routes::Router`] from the HTTP triggers, parses each component's outbound
//! allow-list ([`outbound::AllowedHosts`]), resolves application variables
//! ([`variables::resolve`]) and schedules cron triggers ([`schedule::Schedule`]).
//!
//! The behaviour follows Spin 3.x; where a choice had to be made, the doc comment of the item
//! says what Spin does and where that was checked. Manifest features the host does not
//! implement are refused by name instead of being silently ignored.

pub mod manifest;
pub mod outbound;
pub mod routes;
pub mod runtime_config;
pub mod schedule;
pub mod variables;

mod ids;
mod template;
mod v1;

pub use manifest::{
    Application, BuildConfig, Component, CronTrigger, Dependency, HttpTrigger, Manifest,
    ManifestError, RouteSpec, load, parse,
};
pub use outbound::{AllowedHosts, OutboundError, service_chaining_target};
pub use routes::{RouteError, RouteMatch, Router, spin_headers};
pub use runtime_config::{RuntimeConfig, StoreConfig, check_labels};
pub use schedule::{Schedule, ScheduleError};
pub use variables::{ResolvedVariables, VariableDecl, VariableError, resolve};
