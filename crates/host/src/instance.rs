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
    /// SQLite connections of this instance with a transaction open: while
    /// one is, the instance does not yield to its thread's other requests
    /// (they would wait for its write lock on the same thread it needs to
    /// finish) and is stopped if it computes for too long (`app.rs::new_store`).
    pub(crate) sqlite_transactions: Arc<std::sync::atomic::AtomicU32>,
    /// When the request the instance serves started (its creation for an
    /// instance of one request; a reused WASI 0.3 instance restarts it at
    /// each request it accepts, `reuse.rs`).
    pub(crate) request_started_at: std::time::Instant,
    /// How many requests a reused instance has started: the epoch callback
    /// restarts its per-request tick counts when this changes.
    pub(crate) requests_started: u64,
    /// Set when one of a reused instance's requests ran past the request
    /// time limit: the instance is then stopped — at the guest's next epoch
    /// tick, or by the dispatcher's expiration check — with every request
    /// it still runs, so no request outlives its limit because a newer one
    /// restarted the clock (`reuse.rs`).
    pub(crate) overdue: Arc<std::sync::atomic::AtomicBool>,
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
            sqlite_transactions: Arc::default(),
            request_started_at: std::time::Instant::now(),
            requests_started: 0,
            overdue: Arc::default(),
        }
    }

    /// A reused instance starts another request: the epoch callback's
    /// tick counts start again (its time limit is the request's own, kept
    /// by `reuse.rs`, which sets [`Self::overdue`]).
    pub(crate) fn request_started(&mut self) {
        self.request_started_at = std::time::Instant::now();
        self.requests_started += 1;
    }

    /// Whether a SQLite transaction is open on any of this instance's connections.
    pub(crate) fn in_sqlite_transaction(&self) -> bool {
        self.sqlite_transactions
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
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

#[cfg(test)]
impl InstanceState {
    /// The state of a component `probe` allowed to reach `allowed`, with no
    /// stores, sending in-process requests to `dispatch` (host unit tests).
    pub(crate) fn for_tests(
        allowed: &[&str],
        dispatch: Arc<dyn crate::outbound::InternalDispatch>,
    ) -> Self {
        use crate::outbound::OutboundClient;
        let entries: Vec<String> = allowed.iter().map(|e| (*e).to_string()).collect();
        let allowed = Arc::new(
            dol_manifest::outbound::AllowedHosts::parse(&entries)
                .unwrap_or_else(|e| panic!("allowed_outbound_hosts {entries:?}: {e}")),
        );
        let hooks = OutboundHooks::new("probe".into(), allowed, dispatch, OutboundClient::new());
        let grants = Arc::new(ComponentGrants {
            id: "probe".into(),
            key_value_stores: BTreeSet::new(),
            sqlite_databases: BTreeSet::new(),
            variables: BTreeMap::new(),
            environment: Vec::new(),
        });
        Self::new(
            wasmtime_wasi::WasiCtxBuilder::new().build(),
            hooks,
            grants,
            Arc::new(StorageCatalog::default()),
            1 << 20,
        )
    }
}

/// An [`crate::outbound::InternalDispatch`] for tests that make no in-process
/// requests: any request fails.
#[cfg(test)]
pub(crate) struct NoDispatch;

#[cfg(test)]
impl crate::outbound::InternalDispatch for NoDispatch {
    fn dispatch(
        &self,
        _: crate::outbound::InternalTarget,
        _: http::Request<wasmtime_wasi_http::WasiBody>,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<
                    Output = Result<
                        http::Response<wasmtime_wasi_http::WasiBody>,
                        wasmtime_wasi_http::Error,
                    >,
                > + Send,
        >,
    > {
        Box::pin(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}
