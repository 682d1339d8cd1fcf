//! Outbound HTTP: Spin's `allowed_outbound_hosts` enforcement, in-process
//! chaining to `http://<component>.spin.internal`, and `self` requests.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use dol_manifest::outbound::AllowedHosts;
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi_http::p2::bindings::http::outgoing_handler;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::types::HostOutgoingRequest;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks, WasiHttpView};

pub use crate::outbound_client::OutboundClient;

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
    client: OutboundClient,
}

impl OutboundHooks {
    /// Hooks for `component`, allowed to reach `allowed`, sending what leaves
    /// the app through `client` (the app's shared connection pool).
    pub fn new(
        component: String,
        allowed: Arc<AllowedHosts>,
        dispatch: Arc<dyn InternalDispatch>,
        client: OutboundClient,
    ) -> Self {
        Self {
            component,
            allowed,
            dispatch,
            client,
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

impl OutboundHooks {
    /// The component's `allowed_outbound_hosts`.
    pub fn allowed(&self) -> &AllowedHosts {
        &self.allowed
    }
}

/// Spin's check of a database or Redis address (`redis://host:port`,
/// `postgres://user:pw@host/db`): allowed when `allowed_outbound_hosts` allows
/// its scheme (`default_scheme` when it has none), host and port (the scheme's
/// well-known port when it has none).
pub fn address_allowed(allowed: &AllowedHosts, address: &str, default_scheme: &str) -> bool {
    let (scheme, rest) = address
        .split_once("://")
        .unwrap_or((default_scheme, address));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    // Credentials never take part in the match.
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
        match bracketed.split_once(']') {
            Some((host, rest)) => (host, rest.strip_prefix(':')),
            None => return false,
        }
    } else {
        match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    let port = match port {
        Some(port) => match port.parse::<u16>() {
            Ok(port) => Some(port),
            Err(_) => return false,
        },
        None => None,
    };
    !host.is_empty() && allowed.allows(scheme, &host.to_ascii_lowercase(), port)
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
            None => {
                let client = self.client.clone();
                Box::new(async move {
                    let response = client.send(request, options).await?;
                    // The pool drives the connection; its errors reach the guest
                    // through the response body, as on Spin.
                    let io: BoxedFuture<Result<(), Error>> = Box::new(async { Ok(()) });
                    Ok((response, io))
                })
            }
        }
    }
}

/// Spin's `wasi:sockets` rule: a TCP connection or UDP traffic is allowed when
/// `allowed_outbound_hosts` allows `tcp://ip:port` (or `udp://ip:port`); listening
/// and accepting are refused. Explicit binds are refused as on Spin; the implicit
/// bind wasmtime checks before a connect (the unspecified address, port 0)
/// binds nothing in particular and is allowed, or no connect could ever start.
pub fn socket_allowed(allowed: &AllowedHosts, addr: SocketAddr, addr_use: SocketAddrUse) -> bool {
    let scheme = match addr_use {
        SocketAddrUse::TcpBind | SocketAddrUse::UdpBind => {
            return addr.ip().is_unspecified() && addr.port() == 0;
        }
        SocketAddrUse::TcpListen | SocketAddrUse::TcpAccept => return false,
        SocketAddrUse::TcpConnect => "tcp",
        SocketAddrUse::UdpSend | SocketAddrUse::UdpReceive => "udp",
    };
    let allowed_here = allowed.allows(scheme, &addr.ip().to_string(), Some(addr.port()));
    if !allowed_here {
        tracing::warn!(
            "outbound {scheme} connection to {addr} denied: not in allowed_outbound_hosts"
        );
    }
    allowed_here
}

/// The `wasi:http/outgoing-handler` version wasmtime-wasi-http 48 implements;
/// the linker serves every semver-compatible 0.2.x import with it.
const OUTGOING_HANDLER: &str = "wasi:http/outgoing-handler@0.2.12";

/// Spin's rule for a request without a host: it goes to the app itself
/// (`self`). spin-sdk sends a relative URL with no authority, or with only a
/// port (`:443`) when it filled in the default scheme: no host either way.
pub(crate) fn address_relative_to_self(outgoing: &mut HostOutgoingRequest) {
    let host_is_missing = outgoing
        .authority
        .as_deref()
        .is_none_or(|authority| authority.is_empty() || authority.starts_with(':'));
    if host_is_missing {
        outgoing.authority = Some(SELF_AUTHORITY.to_string());
        outgoing.scheme = Some(Scheme::Http);
    }
}

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
                address_relative_to_self(view.table.get_mut(&request)?);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(entries: &[&str]) -> AllowedHosts {
        let entries: Vec<String> = entries.iter().map(|e| (*e).to_owned()).collect();
        AllowedHosts::parse(&entries).unwrap()
    }

    #[test]
    fn addresses_are_matched_by_scheme_host_and_port() {
        let allowed = hosts(&["redis://localhost:6380", "postgres://db.internal"]);
        assert!(address_allowed(&allowed, "redis://localhost:6380", "redis"));
        assert!(address_allowed(
            &allowed,
            "redis://user:pw@localhost:6380/0",
            "redis"
        ));
        assert!(!address_allowed(
            &allowed,
            "redis://localhost:6379",
            "redis"
        ));
        assert!(!address_allowed(&allowed, "redis://localhost", "redis"));
        assert!(!address_allowed(
            &allowed,
            "rediss://localhost:6380",
            "redis"
        ));
        // No port: the scheme's well-known one (postgres 5432).
        assert!(address_allowed(
            &allowed,
            "postgres://u:p@db.internal/app",
            "postgres"
        ));
        assert!(!address_allowed(
            &allowed,
            "postgres://db.internal:6543/app",
            "postgres"
        ));
        // Without a scheme the default applies.
        assert!(address_allowed(&allowed, "localhost:6380", "redis"));
        assert!(!address_allowed(
            &hosts(&[]),
            "redis://localhost:6380",
            "redis"
        ));
        assert!(!address_allowed(
            &allowed,
            "redis://localhost:notaport",
            "redis"
        ));
    }

    #[test]
    fn sockets_follow_spins_allow_list_rules() {
        let allowed = hosts(&["*://127.0.0.0/24:7000", "tcp://10.0.0.1:5000"]);
        let addr = |text: &str| text.parse::<SocketAddr>().unwrap();
        assert!(socket_allowed(
            &allowed,
            addr("127.0.0.1:7000"),
            SocketAddrUse::TcpConnect
        ));
        assert!(socket_allowed(
            &allowed,
            addr("127.0.0.9:7000"),
            SocketAddrUse::TcpConnect
        ));
        assert!(!socket_allowed(
            &allowed,
            addr("127.0.1.1:7000"),
            SocketAddrUse::TcpConnect
        ));
        assert!(!socket_allowed(
            &allowed,
            addr("127.0.0.1:7001"),
            SocketAddrUse::TcpConnect
        ));
        assert!(socket_allowed(
            &allowed,
            addr("10.0.0.1:5000"),
            SocketAddrUse::TcpConnect
        ));
        // `tcp://` allows TCP only.
        assert!(!socket_allowed(
            &allowed,
            addr("10.0.0.1:5000"),
            SocketAddrUse::UdpSend
        ));
        // The implicit bind before a connect is allowed; explicit binds and listening are not.
        assert!(socket_allowed(
            &allowed,
            addr("0.0.0.0:0"),
            SocketAddrUse::TcpBind
        ));
        assert!(!socket_allowed(
            &allowed,
            addr("127.0.0.1:7000"),
            SocketAddrUse::TcpBind
        ));
        assert!(!socket_allowed(
            &allowed,
            addr("0.0.0.0:8080"),
            SocketAddrUse::TcpBind
        ));
        assert!(!socket_allowed(
            &allowed,
            addr("127.0.0.1:7000"),
            SocketAddrUse::TcpListen
        ));
        assert!(!socket_allowed(
            &hosts(&[]),
            addr("127.0.0.1:7000"),
            SocketAddrUse::TcpConnect
        ));
    }
}
