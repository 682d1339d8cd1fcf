//! Outbound HTTP: Spin's `allowed_outbound_hosts` enforcement, in-process
//! chaining to `http://<component>.spin.internal`, and `self` requests.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use dol_manifest::outbound::AllowedHosts;
use http_body_util::BodyExt;
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi_http::p2::bindings::http::outgoing_handler;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::types::HostOutgoingRequest;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks, WasiHttpView};

/// Authority the host gives a request a guest sent with a relative URL (no
/// authority), which Spin treats as a request to the app itself. `.invalid` can
/// never be a real host (RFC 2606), so no guest can forge it by accident.
pub const SELF_AUTHORITY: &str = "self.dol.invalid";

/// Suffix of the hosts that name a component of the same app.
const INTERNAL_SUFFIX: &str = ".spin.internal";

/// Where an in-process request goes.
#[derive(Debug, Clone)]
pub enum InternalTarget {
    /// The component with this id, whatever its route (private routes included).
    Component(String),
    /// The app's own router, as an external request to the same path would be.
    App,
}

/// A boxed, sendable future, as the wasi:http hooks want them.
pub type BoxedFuture<T> = Box<dyn Future<Output = T> + Send>;

/// Sends requests to components of the same app without a network hop.
pub trait InternalDispatch: Send + Sync {
    /// Serves `request` with `target` and returns its response.
    fn dispatch(
        &self,
        target: InternalTarget,
        request: http::Request<WasiBody>,
    ) -> Pin<Box<dyn Future<Output = Result<http::Response<WasiBody>, Error>> + Send>>;
}

/// The per-instance outbound policy.
pub struct OutboundHooks {
    component: String,
    allowed: Arc<AllowedHosts>,
    dispatch: Arc<dyn InternalDispatch>,
}

impl OutboundHooks {
    /// Hooks for `component`, allowed to reach `allowed`.
    pub fn new(
        component: String,
        allowed: Arc<AllowedHosts>,
        dispatch: Arc<dyn InternalDispatch>,
    ) -> Self {
        Self {
            component,
            allowed,
            dispatch,
        }
    }
}

type SendResult = Result<(http::Response<WasiBody>, BoxedFuture<Result<(), Error>>), Error>;

fn denied(component: &str, uri: &http::Uri) -> BoxedFuture<SendResult> {
    // Say which host to add: the most common fix is one manifest line.
    tracing::warn!(
        "component {component}: outbound request to {uri} denied: not in allowed_outbound_hosts"
    );
    Box::new(async { Err(Error::HttpRequestDenied) })
}

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: BoxedFuture<Result<(), Error>>,
    ) -> BoxedFuture<SendResult> {
        drop(fut);
        let uri = request.uri().clone();
        let scheme = uri.scheme_str().unwrap_or("https");
        let host = uri.host().unwrap_or_default();
        let internal = if host == SELF_AUTHORITY {
            if !self.allowed.allows_self() {
                return denied(&self.component, &uri);
            }
            Some(InternalTarget::App)
        } else if let Some(component) = host.strip_suffix(INTERNAL_SUFFIX) {
            if !self.allowed.allows(scheme, host, uri.port_u16()) {
                return denied(&self.component, &uri);
            }
            Some(InternalTarget::Component(component.to_string()))
        } else {
            if !self.allowed.allows(scheme, host, uri.port_u16()) {
                return denied(&self.component, &uri);
            }
            None
        };
        match internal {
            Some(target) => {
                let response = self.dispatch.dispatch(target, request);
                Box::new(async move {
                    let response = response.await?;
                    let io: BoxedFuture<Result<(), Error>> = Box::new(async { Ok(()) });
                    Ok((response, io))
                })
            }
            None => Box::new(async move {
                let (response, io) =
                    wasmtime_wasi_http::default_send_request(request, options).await?;
                let io: BoxedFuture<Result<(), Error>> = Box::new(io);
                Ok((response.map(BodyExt::boxed_unsync), io))
            }),
        }
    }
}

/// The `wasi:http/outgoing-handler` version wasmtime-wasi-http 48 implements;
/// the linker serves every semver-compatible 0.2.x import with it.
const OUTGOING_HANDLER: &str = "wasi:http/outgoing-handler@0.2.12";

/// Links `wasi:http/outgoing-handler` as Spin implements it: like wasmtime's,
/// except that a request without an authority goes to the app itself (`self`).
pub fn link_outgoing_handler<T: WasiHttpView + 'static>(
    linker: &mut Linker<T>,
) -> anyhow::Result<()> {
    let mut instance = linker
        .instance(OUTGOING_HANDLER)
        .map_err(anyhow::Error::from)?;
    instance
        .func_wrap(
            "handle",
            |mut store: StoreContextMut<'_, T>,
             (request, options): (
                Resource<HostOutgoingRequest>,
                Option<Resource<RequestOptions>>,
            )| {
                let mut view = store.data_mut().http();
                let outgoing = view.table.get_mut(&request)?;
                // spin-sdk sends a relative URL with no authority, or with only a
                // port (`:443`) when it filled in the default scheme: no host either way.
                let host_is_missing = outgoing
                    .authority
                    .as_deref()
                    .is_none_or(|authority| authority.is_empty() || authority.starts_with(':'));
                if host_is_missing {
                    outgoing.authority = Some(SELF_AUTHORITY.to_string());
                    outgoing.scheme = Some(Scheme::Http);
                }
                match outgoing_handler::Host::handle(&mut view, request, options) {
                    Ok(future) => Ok((Ok::<_, ErrorCode>(future),)),
                    // A guest-visible error code, or else a trap.
                    Err(error) => Ok((Err(error.downcast()?),)),
                }
            },
        )
        .map_err(anyhow::Error::from)?;
    Ok(())
}
