//! Loading a Spin app: manifest → grants, storage, compiled components, and the
//! per-request / per-tick instantiation that both triggers share.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use dol_manifest::manifest::Manifest;
use dol_manifest::outbound::AllowedHosts;
use dol_manifest::routes::{RouteMatch, Router};
use dol_manifest::runtime_config::RuntimeConfig;
use dol_manifest::variables::ResolvedVariables;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use wasmtime::component::{Component, HasSelf, InstancePre, Linker, Resource};
use wasmtime::{Engine, Store, UpdateDeadline};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::types::{HostIncomingRequest, HostResponseOutparam};
use wasmtime_wasi_http::p3::bindings::ServicePre;
use wasmtime_wasi_http::{WasiBody, WasiHttp, WasiHttpView};

use crate::bindings::wasi_2023_10_18::{WasiHttp20231018, WasiHttp20231018Pre};
use crate::bindings::{SpinHost, cron_types};
use crate::engine::{Limits, TRANSACTION_TICKS_WITHOUT_YIELD, YIELD_AFTER_TICKS};
use crate::instance::{ComponentGrants, InstanceState};
use crate::outbound::{InternalDispatch, InternalTarget, OutboundClient, OutboundHooks};
use crate::output::{PrefixedOutput, Target};
use crate::reuse;
use crate::storage::{DatabaseLocation, KeyValueBackend, StorageCatalog};

/// Body of every response the host produces.
pub type ResponseBody = UnsyncBoxBody<Bytes, anyhow::Error>;

/// Name of the cron plugin's export.
const CRON_EXPORT: &str = "handle-cron-event";

/// A component ready to instantiate.
pub(crate) struct LoadedComponent {
    pub(crate) grants: Arc<ComponentGrants>,
    allowed_hosts: Arc<AllowedHosts>,
    pre: InstancePre<InstanceState>,
    handler: Option<HttpHandler>,
    /// A WASI 0.3 component's dispatcher per serving thread (index
    /// `server::current_worker() - 1`), made on its first request there.
    reused: Vec<OnceLock<reuse::Handler>>,
    pub(crate) has_cron_export: bool,
}

/// The HTTP handler a component exports, by WASI version.
#[derive(Clone)]
enum HttpHandler {
    /// `wasi:http/handler@0.3.0`: instances are reused (`reuse.rs`).
    Reused(ServicePre<InstanceState>),
    /// A WASI 0.2 `incoming-handler`: one instance per request.
    PerRequest(PerRequestHandler),
}

/// The `wasi:http/incoming-handler` of a WASI 0.2 component, by release.
#[derive(Clone)]
enum PerRequestHandler {
    /// WASI 0.2 (any 0.2.x).
    Wasi0_2(ProxyPre<InstanceState>),
    /// The 0.2.0-rc-2023-10-18 release candidate, as Spin still serves it.
    Wasi2023_10_18(WasiHttp20231018Pre<InstanceState>),
}

impl HttpHandler {
    /// The handler `pre` exports: the newest WASI first, as Spin looks.
    fn detect(pre: &InstancePre<InstanceState>) -> Option<Self> {
        if let Ok(service) = ServicePre::new(pre.clone()) {
            return Some(Self::Reused(service));
        }
        if let Ok(proxy) = ProxyPre::new(pre.clone()) {
            return Some(Self::PerRequest(PerRequestHandler::Wasi0_2(proxy)));
        }
        WasiHttp20231018Pre::new(pre.clone())
            .ok()
            .map(|pre| Self::PerRequest(PerRequestHandler::Wasi2023_10_18(pre)))
    }
}

impl PerRequestHandler {
    /// Instantiates the component in `store` and calls its `handle`.
    async fn call(
        &self,
        store: &mut Store<InstanceState>,
        request: Resource<HostIncomingRequest>,
        outparam: Resource<HostResponseOutparam>,
    ) -> wasmtime::Result<()> {
        match self {
            Self::Wasi0_2(pre) => {
                let proxy = pre.instantiate_async(&mut *store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut *store, request, outparam)
                    .await
            }
            Self::Wasi2023_10_18(pre) => {
                let proxy = pre.instantiate_async(&mut *store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut *store, request, outparam)
                    .await
            }
        }
    }
}

/// A loaded app, shared by the HTTP server and the cron scheduler.
pub struct LoadedApp {
    pub(crate) engine: Engine,
    pub(crate) manifest: Manifest,
    pub(crate) router: Router,
    pub(crate) components: BTreeMap<String, LoadedComponent>,
    storage: Arc<StorageCatalog>,
    /// Outbound HTTP connections, pooled per authority across instances.
    outbound: OutboundClient,
    pub(crate) limits: Limits,
    /// Address the HTTP listener is bound to (for `spin-full-url` of chained requests).
    pub(crate) listen: SocketAddr,
}

/// Everything that decides how an app is loaded.
pub struct LoadOptions<'a> {
    /// The manifest, already parsed.
    pub manifest: Manifest,
    /// Runtime config (`--runtime-config-file`), or the defaults.
    pub runtime_config: RuntimeConfig,
    /// State directory (`.spin/` next to the manifest by default).
    pub state_dir: &'a Path,
    /// Looks up `SPIN_VARIABLE_*` values.
    pub variable_lookup: &'a (dyn Fn(&str) -> Option<String> + Send + Sync),
    /// Per-instance limits.
    pub limits: Limits,
    /// The engine to compile with.
    pub engine: Engine,
    /// Listener address.
    pub listen: SocketAddr,
}

impl LoadedApp {
    /// Resolves variables and storage, compiles and pre-instantiates every component.
    pub fn load(options: LoadOptions<'_>) -> Result<Self> {
        let LoadOptions {
            manifest,
            runtime_config,
            state_dir,
            variable_lookup,
            limits,
            engine,
            listen,
        } = options;
        dol_manifest::runtime_config::check_labels(&manifest, &runtime_config)?;
        let variables =
            dol_manifest::variables::resolve(&manifest.variables, |name| variable_lookup(name))?;
        let storage = Arc::new(open_storage(&manifest, &runtime_config, state_dir)?);
        let router = Router::build(&manifest.application.http_base, &manifest.http_triggers)
            .with_context(|| format!("{}: routes", manifest.path.display()))?;

        let mut linker: Linker<InstanceState> = Linker::new(&engine);
        link_host_interfaces(&mut linker)?;

        let mut components = BTreeMap::new();
        for (id, component) in &manifest.components {
            if !component.source.exists() {
                bail!(
                    "component {id}: {} does not exist (did you run `dol build`?)",
                    component.source.display()
                );
            }
            let wasm = if component.dependencies.is_empty() {
                Component::from_file(&engine, &component.source)
            } else {
                let composed = crate::compose::compose(
                    id,
                    &component.source,
                    &component.dependencies,
                    component.dependencies_inherit_configuration,
                    !component.environment.is_empty(),
                )?;
                Component::new(&engine, composed)
            }
            .map_err(anyhow::Error::from)
            .with_context(|| format!("component {id}: loading {}", component.source.display()))?;
            let pre = linker
                .instantiate_pre(&wasm)
                .map_err(|error| unsatisfied_import(id, &wasm, &engine, error.into()))?;
            let handler = HttpHandler::detect(&pre);
            let has_cron_export = wasm.get_export_index(None, CRON_EXPORT).is_some();
            let grants = Arc::new(grants_for(id, component, &variables)?);
            let allowed_hosts = Arc::new(
                component
                    .resolve_allowed_hosts(&variables)
                    .map_err(anyhow::Error::from)
                    .with_context(|| {
                        format!(
                            "{}: component.{id}.allowed_outbound_hosts",
                            manifest.path.display()
                        )
                    })?,
            );
            components.insert(
                id.clone(),
                LoadedComponent {
                    grants,
                    allowed_hosts,
                    pre,
                    handler,
                    reused: (0..crate::server::worker_count())
                        .map(|_| OnceLock::new())
                        .collect(),
                    has_cron_export,
                },
            );
        }
        Ok(Self {
            engine,
            manifest,
            router,
            components,
            storage,
            outbound: OutboundClient::new(),
            limits,
            listen,
        })
    }

    /// A fresh store for one instance of `component`.
    pub(crate) fn new_store(self: &Arc<Self>, component: &LoadedComponent) -> Store<InstanceState> {
        let id = &component.grants.id;
        let mut wasi = WasiCtxBuilder::new();
        wasi.envs(&component.grants.environment)
            .stdout(PrefixedOutput::new(id, Target::Stdout))
            .stderr(PrefixedOutput::new(id, Target::Stderr))
            .allow_tcp(true)
            .allow_udp(true);
        let allowed = component.allowed_hosts.clone();
        wasi.socket_addr_check(move |addr, addr_use| {
            let allowed = allowed.clone();
            Box::pin(async move { crate::outbound::socket_allowed(&allowed, addr, addr_use) })
        });
        let dispatch: Arc<dyn InternalDispatch> = Arc::new(self.clone());
        let hooks = OutboundHooks::new(
            id.clone(),
            component.allowed_hosts.clone(),
            dispatch,
            self.outbound.clone(),
        );
        let state = InstanceState::new(
            wasi.build(),
            hooks,
            component.grants.clone(),
            self.storage.clone(),
            self.limits.max_memory_bytes,
        );
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);
        // Epoch interruption bounds CPU-bound runaways even when the guest never
        // yields; the tokio timeout around each call bounds time spent in host
        // calls. A serving thread runs many instances on one runtime, so a
        // guest that computes for long must also give the others their turn
        // (requests on the same thread used to wait for a looping guest's
        // whole time limit): once its code has run into YIELD_AFTER_TICKS
        // epoch ticks (a wait in a host call counts as at most one) it yields
        // at every tick — except while it holds a SQLite transaction, because
        // SQLite calls block their thread and another instance of the thread
        // waiting for that write lock would hold up the very instance that
        // must finish to free it. An instance that runs into
        // TRANSACTION_TICKS_WITHOUT_YIELD ticks inside a transaction (SQLite's
        // busy timeout, after which every waiter has failed anyway) is
        // stopped, which rolls its transaction back: `BEGIN; loop {}` cannot
        // keep its thread or the lock. Past the time limit: a trap as well.
        // A reused WASI 0.3 instance restarts the clock and the tick counts
        // at each request it takes (`InstanceState::request_started`); each
        // of its requests' own limit is kept by `reuse.rs`, which marks the
        // instance overdue when one runs past it.
        let limit = self.limits.request_timeout;
        let mut counted_request: u64 = 0;
        let mut running_ticks: u64 = 0;
        let mut transaction_ticks: u64 = 0;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |ctx| {
            let state = ctx.data();
            if state.request_started_at.elapsed() >= limit
                || state.overdue.load(std::sync::atomic::Ordering::Relaxed)
            {
                return Ok(UpdateDeadline::Interrupt);
            }
            if state.requests_started != counted_request {
                counted_request = state.requests_started;
                running_ticks = 0;
                transaction_ticks = 0;
            }
            running_ticks += 1;
            let in_transaction = state.in_sqlite_transaction();
            transaction_ticks = if in_transaction {
                transaction_ticks + 1
            } else {
                0
            };
            if in_transaction {
                return Ok(if transaction_ticks < TRANSACTION_TICKS_WITHOUT_YIELD {
                    UpdateDeadline::Continue(1)
                } else {
                    UpdateDeadline::Interrupt
                });
            }
            if running_ticks < YIELD_AFTER_TICKS {
                return Ok(UpdateDeadline::Continue(1));
            }
            Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(tokio::task::yield_now()),
            ))
        });
        store
    }

    /// Serves one HTTP request with the component `route` matched.
    pub(crate) async fn handle_http<B>(
        self: &Arc<Self>,
        route: &RouteMatch,
        request: http::Request<B>,
    ) -> Result<http::Response<ResponseBody>>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let component = self
            .components
            .get(&route.component)
            .ok_or_else(|| anyhow!("route names unknown component {}", route.component))?;
        let handler = match &component.handler {
            Some(HttpHandler::PerRequest(handler)) => handler.clone(),
            Some(HttpHandler::Reused(pre)) => {
                return self.handle_reused(component, pre, request).await;
            }
            None => bail!(
                "component {} has an HTTP route but exports no wasi:http handler \
                 (wasi:http/handler@0.3.0, or wasi:http/incoming-handler of WASI 0.2 or \
                 0.2.0-rc-2023-10-18)",
                route.component
            ),
        };
        let mut store = self.new_store(component);
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let incoming = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, request)?;
        let outparam = store.data_mut().http().new_response_outparam(sender)?;
        let timeout = self.limits.request_timeout;
        let component_id = route.component.clone();
        let log_id = component_id.clone();
        let task = tokio::spawn(async move {
            let call = handler.call(&mut store, incoming, outparam);
            let result = match tokio::time::timeout(timeout, call).await {
                Ok(result) => result.map_err(anyhow::Error::from),
                Err(_) => Err(anyhow!("exceeded the request time limit of {timeout:?}")),
            };
            // A failure after the response started streaming reaches nobody
            // else: the client only sees the body end early.
            if let Err(error) = &result {
                tracing::warn!("component {log_id}: instance failed: {error:#}");
            }
            result
        });
        match receiver.await {
            Ok(Ok(response)) => {
                Ok(response.map(|body| body.map_err(|code| anyhow!("{code:?}")).boxed_unsync()))
            }
            Ok(Err(code)) => bail!("component {component_id} answered with error {code:?}"),
            Err(_) => {
                // The guest dropped the response-outparam without setting it: the
                // task's own result says why (trap, timeout, or a plain bug).
                let why = match task.await {
                    Ok(Ok(())) => anyhow!("it returned without sending a response"),
                    Ok(Err(error)) => error,
                    Err(join) => anyhow!(join),
                };
                Err(why.context(format!("component {component_id} failed")))
            }
        }
    }

    /// Serves one request with a WASI 0.3 component: on an instance of this
    /// serving thread that may take another request, or a new one
    /// (`reuse.rs`). Off the serving threads (in-process calls from cron
    /// runs and tests) a request gets an instance of its own, dropped when
    /// it is done.
    async fn handle_reused<B>(
        self: &Arc<Self>,
        component: &LoadedComponent,
        pre: &ServicePre<InstanceState>,
        request: http::Request<B>,
    ) -> Result<http::Response<ResponseBody>>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let id = &component.grants.id;
        let request = request.map(|body| body.map_err(Into::into).boxed_unsync());
        let this_thread = crate::server::current_worker()
            .checked_sub(1)
            .and_then(|index| component.reused.get(index));
        let result = match this_thread {
            Some(slot) => {
                slot.get_or_init(|| reuse::handler(self, id, pre.clone(), false))
                    .handle((), request)
                    .await
            }
            None => {
                reuse::handler(self, id, pre.clone(), true)
                    .handle((), request)
                    .await
            }
        };
        let response = result
            .map_err(anyhow::Error::from)
            .with_context(|| format!("component {id} failed"))?;
        Ok(response.map(|body| body.map_err(|error| anyhow!("{error:?}")).boxed_unsync()))
    }

    /// Calls `handle-cron-event` on `component` with `timestamp` (unix seconds).
    pub(crate) async fn handle_cron(
        self: &Arc<Self>,
        component_id: &str,
        timestamp: u64,
    ) -> Result<()> {
        let component = self
            .components
            .get(component_id)
            .ok_or_else(|| anyhow!("cron trigger names unknown component {component_id}"))?;
        if !component.has_cron_export {
            bail!(
                "component {component_id} has a cron trigger but does not export `{CRON_EXPORT}` (fermyon:spin-cron@2.0.0)"
            );
        }
        let mut store = self.new_store(component);
        let pre = component.pre.clone();
        let call = async {
            let instance = pre.instantiate_async(&mut store).await?;
            let handler = instance
                .get_typed_func::<(cron_types::Metadata,), (Result<(), cron_types::Error>,)>(
                    &mut store,
                    CRON_EXPORT,
                )?;
            let (outcome,) = handler
                .call_async(&mut store, (cron_types::Metadata { timestamp },))
                .await?;
            Ok::<_, wasmtime::Error>(outcome)
        };
        let outcome = tokio::time::timeout(self.limits.request_timeout, call)
            .await
            .map_err(|_| {
                anyhow!(
                    "exceeded the time limit of {:?}",
                    self.limits.request_timeout
                )
            })?
            .map_err(|error: wasmtime::Error| anyhow::Error::from(error))?;
        match outcome {
            Ok(()) => Ok(()),
            Err(cron_types::Error::Other(message)) => {
                bail!("component {component_id} reported: {message}")
            }
        }
    }

    /// Full URL of a request the way `spin-full-url` reports it.
    pub(crate) fn full_url(&self, authority: Option<&str>, path_and_query: &str) -> String {
        match authority {
            Some(authority) => format!("http://{authority}{path_and_query}"),
            None => format!("http://{}{path_and_query}", self.listen),
        }
    }
}

/// Adds WASI, wasi:http (with Spin's outgoing handler) and the Spin APIs.
fn link_host_interfaces(linker: &mut Linker<InstanceState>) -> Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker).map_err(anyhow::Error::from)?;
    let options = wasmtime_wasi_http::p2::bindings::LinkOptions::default();
    wasmtime_wasi_http::p2::bindings::http::types::add_to_linker::<_, WasiHttp>(
        linker,
        &options.into(),
        InstanceState::http,
    )
    .map_err(anyhow::Error::from)?;
    crate::outbound::link_outgoing_handler(linker)?;
    // WASI 0.3 beside 0.2: a `wasi:http/handler@0.3.0` component imports
    // these (its outbound `wasi:http/client` goes through the same hooks).
    wasmtime_wasi::p3::add_to_linker(linker).map_err(anyhow::Error::from)?;
    wasmtime_wasi_http::p3::add_to_linker(linker).map_err(anyhow::Error::from)?;
    SpinHost::add_to_linker::<_, HasSelf<InstanceState>>(linker, |state| state)
        .map_err(anyhow::Error::from)
        .context("linking the Spin interfaces")?;
    // WASI 0.2.0-rc-2023-10-18 (wasi:http, wasi:io), forwarded to the above.
    WasiHttp20231018::add_to_linker::<_, HasSelf<InstanceState>>(linker, |state| state)
        .map_err(anyhow::Error::from)
        .context("linking WASI 0.2.0-rc-2023-10-18")?;
    Ok(())
}

/// The start-up error for a component the host's interfaces cannot satisfy:
/// names the import by its full name (wasmtime stops at the first one it
/// cannot match), says whose it is and what to do, and keeps wasmtime's
/// explanation as the cause.
fn unsatisfied_import(
    id: &str,
    component: &Component,
    engine: &Engine,
    error: anyhow::Error,
) -> anyhow::Error {
    // wasmtime's outermost message is "component imports instance `NAME`, but
    // a matching implementation was not found in the linker"; matching it
    // against the component's own import names avoids parsing its wording.
    let outermost = error.to_string();
    let component_type = component.component_type();
    let import = component_type
        .imports(engine)
        .map(|(name, _)| name)
        .find(|name| outermost.contains(&format!("`{name}`")));
    let Some(import) = import else {
        return error.context(format!(
            "component {id}: it imports something dol does not provide"
        ));
    };
    // The items inside the import wasmtime could not find, outermost first
    // ("instance export `bucket` has the wrong type" → `bucket`).
    let items: Vec<String> = error
        .chain()
        .skip(1)
        .filter_map(|cause| {
            let message = cause.to_string();
            let rest = message.strip_prefix("instance export `")?;
            Some(rest.split_once('`')?.0.to_string())
        })
        .collect();
    let within = if items.is_empty() {
        String::new()
    } else {
        format!(" (no match for its `{}`)", items.join("."))
    };
    let message = format!(
        "component {id}: it imports `{import}`, which dol does not provide{within}; \
         hint: dol provides WASI 0.2 and 0.3 with wasi:http and wasi:sockets, wasi:http and \
         wasi:io of WASI 0.2.0-rc-2023-10-18, and Spin's \
         key-value, SQLite, variables, Redis and PostgreSQL interfaces \
         (fermyon:spin/{{key-value,sqlite,variables,redis}}@2.0.0, \
         spin:sqlite/sqlite@3.0.0, spin:postgres/postgres@4.0.0, \
         wasi:keyvalue@0.2.0-draft2, wasi:config@0.2.0-draft-2024-09-27) — \
         build the component without `{import}`, satisfy it with a dependency in \
         [component.{id}.dependencies], or run the app on Spin"
    );
    error.context(message)
}

fn grants_for(
    id: &str,
    component: &dol_manifest::manifest::Component,
    variables: &ResolvedVariables,
) -> Result<ComponentGrants> {
    let mut rendered = BTreeMap::new();
    for (name, template) in &component.variables {
        let value = variables
            .render(template)
            .with_context(|| format!("component {id}: variable {name}"))?;
        rendered.insert(name.clone(), value);
    }
    Ok(ComponentGrants {
        id: id.to_string(),
        key_value_stores: component
            .key_value_stores
            .iter()
            .cloned()
            .collect::<BTreeSet<_>>(),
        sqlite_databases: component
            .sqlite_databases
            .iter()
            .cloned()
            .collect::<BTreeSet<_>>(),
        variables: rendered,
        environment: component
            .environment
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    })
}

/// `url` with its password, if any, replaced by `***` (for messages).
fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                "***".to_owned()
            };
            format!("{scheme}://{masked}@{host}{}", &rest[authority_end..])
        }
        None => url.to_owned(),
    }
}

/// The label every app has, for SQLite as for key-value stores.
const DEFAULT_SQLITE_LABEL: &str = "default";

/// `path` as one spelling per file: symlinks and `..` resolved through the
/// nearest existing folder, so two paths to one file compare equal.
fn file_identity(path: &Path) -> PathBuf {
    if let Ok(real) = path.canonicalize() {
        return real;
    }
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    match (absolute.parent(), absolute.file_name()) {
        (Some(folder), Some(name)) => folder
            .canonicalize()
            .map_or_else(|_| absolute.clone(), |folder| folder.join(name)),
        _ => absolute,
    }
}

/// Where a SQLite label lives when the runtime config gives it no path:
/// Spin's file names in the state directory.
fn default_sqlite_path(state_dir: &Path, label: &str) -> PathBuf {
    state_dir.join(if label == DEFAULT_SQLITE_LABEL {
        "sqlite_db.db".to_string()
    } else {
        format!("{label}.db")
    })
}

/// Opens every store and database some component lists, as Spin does at start-up.
fn open_storage(
    manifest: &Manifest,
    runtime_config: &RuntimeConfig,
    state_dir: &Path,
) -> Result<StorageCatalog> {
    let mut catalog = StorageCatalog::default();
    let mut backends: BTreeMap<PathBuf, Arc<KeyValueBackend>> = BTreeMap::new();
    // SQLite labels placed in the state directory by their name alone.
    let mut derived: Vec<(&String, &String, PathBuf)> = Vec::new();
    for (id, component) in &manifest.components {
        for label in &component.key_value_stores {
            if catalog.key_value.contains_key(label) {
                continue;
            }
            let config = runtime_config.key_value_stores.get(label);
            // Labels sharing a Redis URL or a file share one backend.
            let (location, redis_url) = match config.and_then(|c| c.redis_url.clone()) {
                Some(url) => (PathBuf::from(format!("redis:{url}")), Some(url)),
                None => (
                    config
                        .and_then(|store| store.path.clone())
                        .unwrap_or_else(|| state_dir.join("sqlite_key_value.db")),
                    None,
                ),
            };
            let backend = match backends.get(&location) {
                Some(backend) => backend.clone(),
                None => {
                    let backend = match &redis_url {
                        Some(url) => KeyValueBackend::redis(url).with_context(|| {
                            format!(
                                "key-value store {label}: runtime config \
                                 [key_value_store.{label}] url = {:?}",
                                redact_password(url)
                            )
                        }),
                        None => KeyValueBackend::open(&location)
                            .with_context(|| format!("key-value store {label}")),
                    }?;
                    let backend = Arc::new(backend);
                    backends.insert(location.clone(), backend.clone());
                    backend
                }
            };
            catalog.key_value.insert(label.clone(), backend);
        }
        for label in &component.sqlite_databases {
            let configured = runtime_config
                .sqlite_databases
                .get(label)
                .and_then(|database| database.path.clone());
            let path = match configured {
                Some(path) => path,
                None => {
                    let path = default_sqlite_path(state_dir, label);
                    if label != DEFAULT_SQLITE_LABEL {
                        derived.push((id, label, path.clone()));
                    }
                    path
                }
            };
            catalog
                .sqlite
                .insert(label.clone(), DatabaseLocation::file(path));
        }
    }
    // A label's own file must not be another store's: `sqlite_key_value`
    // (or any label whose file a key-value store uses) would give raw SQL
    // over every component's key-value data, `sqlite_db` over `default`.
    // Files compared as the same file, however their paths are spelt; every
    // key-value file counts, used by a component or not.
    let other_stores: BTreeSet<PathBuf> = backends
        .keys()
        .cloned()
        .chain(std::iter::once(state_dir.join("sqlite_key_value.db")))
        .chain(
            runtime_config
                .key_value_stores
                .values()
                .filter_map(|store| store.path.clone()),
        )
        .chain(std::iter::once(
            runtime_config
                .sqlite_databases
                .get(DEFAULT_SQLITE_LABEL)
                .and_then(|database| database.path.clone())
                .unwrap_or_else(|| default_sqlite_path(state_dir, DEFAULT_SQLITE_LABEL)),
        ))
        .map(|path| file_identity(&path))
        .collect();
    for (id, label, path) in derived {
        if other_stores.contains(&file_identity(&path)) {
            bail!(
                "component {id}: SQLite database label {label:?} would open {}, which holds \
                 another store; name the label differently or give it a path under \
                 [sqlite_database.{label}] in the runtime config",
                path.display()
            );
        }
    }
    Ok(catalog)
}

impl InternalDispatch for Arc<LoadedApp> {
    fn dispatch(
        &self,
        target: InternalTarget,
        request: http::Request<WasiBody>,
    ) -> Pin<
        Box<
            dyn std::future::Future<
                    Output = Result<http::Response<WasiBody>, wasmtime_wasi_http::Error>,
                > + Send,
        >,
    > {
        let this = self.clone();
        Box::pin(async move {
            let path = request.uri().path().to_string();
            let route = match &target {
                InternalTarget::App => this.router.route(&path),
                InternalTarget::Component(id) => this.router.chained(id, &path),
            };
            let Some(route) = route else {
                return Err(wasmtime_wasi_http::Error::DestinationNotFound);
            };
            let response = crate::server::serve_routed(&this, &route, request, None)
                .await
                .map_err(|e| wasmtime_wasi_http::Error::InternalError(Some(format!("{e:#}"))))?;
            Ok(response.map(|body| {
                body.map_err(|e| wasmtime_wasi_http::Error::InternalError(Some(format!("{e:#}"))))
                    .boxed_unsync()
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The binary of a component whose only import is an instance `name`
    /// exporting `f: func()` (hand-encoded: the host has no WAT parser).
    fn component_importing(name: &str) -> Vec<u8> {
        fn section(id: u8, content: &[u8]) -> Vec<u8> {
            let mut bytes = vec![id, u8::try_from(content.len()).unwrap()];
            bytes.extend_from_slice(content);
            bytes
        }
        // One type: instance { type 0 = func(); export "f" (func (type 0)) }.
        let types = [
            0x01, 0x42, 0x02, 0x01, 0x40, 0x00, 0x01, 0x00, 0x04, 0x00, 0x01, b'f', 0x01, 0x00,
        ];
        let mut imports = vec![0x01, 0x00, u8::try_from(name.len()).unwrap()];
        imports.extend_from_slice(name.as_bytes());
        imports.extend_from_slice(&[0x05, 0x00]);
        let mut wasm = b"\0asm\x0d\x00\x01\x00".to_vec();
        wasm.extend(section(7, &types));
        wasm.extend(section(10, &imports));
        wasm
    }

    fn host_linker(engine: &Engine) -> Linker<InstanceState> {
        let mut linker = Linker::new(engine);
        link_host_interfaces(&mut linker).unwrap();
        linker
    }

    #[test]
    fn a_missing_import_is_named_with_its_component_and_a_hint() {
        let engine = Engine::new(wasmtime::Config::new().wasm_component_model(true)).unwrap();
        let linker = host_linker(&engine);
        let name = "wasi:blobstore/container@0.2.0-draft";
        let wasm = Component::new(&engine, component_importing(name)).unwrap();
        let error = linker.instantiate_pre(&wasm).map(drop).unwrap_err();
        let error = unsatisfied_import("lacking", &wasm, &engine, error.into());
        let message = error.to_string();
        assert!(
            message.starts_with(&format!("component lacking: it imports `{name}`")),
            "{message}"
        );
        assert!(message.contains("(no match for its `f`)"), "{message}");
        assert!(message.contains("hint:"), "{message}");
        // wasmtime's explanation stays underneath: "Caused by:" is not empty.
        let causes: Vec<String> = error.chain().skip(1).map(ToString::to_string).collect();
        assert!(
            causes.first().is_some_and(|cause| cause.contains(name)),
            "{causes:?}"
        );
    }

    #[test]
    fn an_unmatched_item_of_a_provided_interface_is_named() {
        let engine = Engine::new(wasmtime::Config::new().wasm_component_model(true)).unwrap();
        let linker = host_linker(&engine);
        let wasm = Component::new(&engine, component_importing("wasi:cli/environment@0.2.0"));
        // `environment` exports no `f`: the interface is there, the item is not.
        let wasm = wasm.unwrap();
        let error = linker.instantiate_pre(&wasm).map(drop).unwrap_err();
        let message = unsatisfied_import("odd", &wasm, &engine, error.into()).to_string();
        assert!(
            message.contains(
                "`wasi:cli/environment@0.2.0`, which dol does not provide (no match for its `f`)"
            ),
            "{message}"
        );
    }

    #[test]
    fn an_unreachable_redis_store_stops_the_start_naming_the_setting() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let manifest = dol_manifest::manifest::parse(
            "spin_manifest_version = 2\n[application]\nname = \"app\"\n\
             [[trigger.http]]\nroute = \"/...\"\ncomponent = \"web\"\n\
             [component.web]\nsource = \"web.wasm\"\nkey_value_stores = [\"default\"]\n",
            Path::new("spin.toml"),
        )
        .unwrap();
        let config = RuntimeConfig::parse(
            &format!(
                "[key_value_store.default]\ntype = \"redis\"\n\
                 url = \"redis://:s3cret@127.0.0.1:{port}\"\n"
            ),
            Path::new("runtime-config.toml"),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let Err(error) = open_storage(&manifest, &config, dir.path()) else {
            panic!("started without Redis");
        };
        let message = format!("{error:#}");
        assert!(
            message.contains(&format!(
                "runtime config [key_value_store.default] url = \"redis://:***@127.0.0.1:{port}\""
            )),
            "{message}"
        );
        assert!(message.contains("Redis is unreachable"), "{message}");
        assert!(!message.contains("s3cret"), "{message}");
    }

    #[test]
    fn a_sqlite_label_cannot_open_another_store_s_file() {
        // Configured without a path, a label's file is `<label>.db` in the
        // state directory: `sqlite_key_value` would be the key-value store
        // of every component, `sqlite_db` the `default` database, and `kv`
        // a key-value store the runtime config placed at `<state>/kv.db`.
        let dir = tempfile::tempdir().unwrap();
        // Spelt differently from the label's derived path, same file.
        std::fs::create_dir(dir.path().join("x")).unwrap();
        let kv_file = dir.path().join("x").join("..").join("kv.db");
        for (label, kv_config) in [
            ("sqlite_key_value", String::new()),
            ("sqlite_db", String::new()),
            (
                "kv",
                format!(
                    "[key_value_store.default]\ntype = \"spin\"\npath = {:?}\n",
                    kv_file
                ),
            ),
        ] {
            let manifest = dol_manifest::manifest::parse(
                &format!(
                    "spin_manifest_version = 2\n[application]\nname = \"app\"\n\
                     [[trigger.http]]\nroute = \"/...\"\ncomponent = \"web\"\n\
                     [component.web]\nsource = \"web.wasm\"\nkey_value_stores = [\"default\"]\n\
                     sqlite_databases = [\"{label}\"]\n"
                ),
                Path::new("spin.toml"),
            )
            .unwrap();
            let config = RuntimeConfig::parse(
                &format!("{kv_config}[sqlite_database.{label}]\ntype = \"spin\"\n"),
                Path::new("runtime-config.toml"),
            )
            .unwrap();
            let Err(error) = open_storage(&manifest, &config, dir.path()) else {
                panic!("{label}: opened another store's file");
            };
            let message = format!("{error:#}");
            assert!(
                message.contains(&format!(
                    "component web: SQLite database label \"{label}\" would open "
                )) && message.contains(&format!("{label}.db, which holds another store")),
                "{message}"
            );
        }
        // Any other label gets its own file.
        let manifest = dol_manifest::manifest::parse(
            "spin_manifest_version = 2\n[application]\nname = \"app\"\n\
             [[trigger.http]]\nroute = \"/...\"\ncomponent = \"web\"\n\
             [component.web]\nsource = \"web.wasm\"\nkey_value_stores = [\"default\"]\n\
             sqlite_databases = [\"default\", \"reports\"]\n",
            Path::new("spin.toml"),
        )
        .unwrap();
        let config = RuntimeConfig::parse(
            "[sqlite_database.reports]\ntype = \"spin\"\n",
            Path::new("runtime-config.toml"),
        )
        .unwrap();
        assert!(open_storage(&manifest, &config, dir.path()).is_ok());
    }
}
