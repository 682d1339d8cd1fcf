//! Per-instance store data: WASI, wasi:http, the Spin APIs a component was
//! granted, and resource limits.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::outbound::OutboundHooks;
use crate::storage::StorageCatalog;

/// What one component may use, resolved from the manifest at start-up.
pub struct ComponentGrants {
    /// Component id from the manifest.
    pub id: String,
    /// Key-value store labels it lists in `key_value_stores`.
    pub key_value_stores: BTreeSet<String>,
    /// SQLite database labels it lists in `sqlite_databases`.
    pub sqlite_databases: BTreeSet<String>,
    /// Its `[component.X.variables]`, rendered against the app variables.
    pub variables: BTreeMap<String, String>,
    /// Its `environment` table.
    pub environment: Vec<(String, String)>,
}

/// The data of one `Store`: one request or one cron invocation.
pub struct InstanceState {
    pub(crate) wasi: WasiCtx,
    pub(crate) http: WasiHttpCtx,
    pub(crate) table: ResourceTable,
    pub(crate) hooks: OutboundHooks,
    pub(crate) limits: StoreLimits,
    pub(crate) grants: Arc<ComponentGrants>,
    pub(crate) storage: Arc<StorageCatalog>,
}

impl InstanceState {
    /// State for a fresh instance of the component `grants` describes.
    pub(crate) fn new(
        wasi: WasiCtx,
        hooks: OutboundHooks,
        grants: Arc<ComponentGrants>,
        storage: Arc<StorageCatalog>,
        max_memory_bytes: usize,
    ) -> Self {
        Self {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks,
            // Trap instead of returning -1 from memory.grow: a guest that runs out
            // of its budget is a runaway, and a trap turns into a clean 500.
            limits: StoreLimitsBuilder::new()
                .memory_size(max_memory_bytes)
                .trap_on_grow_failure(true)
                .build(),
            grants,
            storage,
        }
    }
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for InstanceState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}
