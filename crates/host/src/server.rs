//! The HTTP trigger: accept loop, routing, Spin's request headers, access log,
//! and graceful shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use bytes::Bytes;
use dol_manifest::routes::{RouteMatch, spin_headers};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::app::{LoadedApp, ResponseBody};

/// A JSON error response; 5xx bodies never carry internals.
pub(crate) fn json_error(status: StatusCode, code: &str, message: &str) -> Response<ResponseBody> {
    let body = serde_json::json!({ "error": { "code": code, "message": message } }).to_string();
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Serves `request` with the matched component, adding Spin's `spin-*` headers.
/// `client` is the peer address (`None` for in-process chained requests).
pub(crate) async fn serve_routed<B>(
    app: &Arc<LoadedApp>,
    route: &RouteMatch,
    request: Request<B>,
    client: Option<SocketAddr>,
) -> Result<Response<ResponseBody>>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let (mut parts, body) = request.into_parts();
    let authority = parts.uri.authority().map(|a| a.to_string()).or_else(|| {
        parts
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
    });
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_string();
    let full_url = app.full_url(authority.as_deref(), &path_and_query);
    let client_addr = client.map_or_else(|| app.listen.to_string(), |c| c.to_string());
    // Headers a client sent under Spin's names must not pass for the host's own.
    let forged: Vec<HeaderName> = parts
        .headers
        .keys()
        .filter(|name| name.as_str().starts_with("spin-"))
        .cloned()
        .collect();
    for name in forged {
        parts.headers.remove(name);
    }
    for (name, value) in spin_headers(
        route,
        &full_url,
        &client_addr,
        &app.manifest.application.http_base,
    ) {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            parts.headers.insert(name, value);
        }
    }
    // wasi:http wants an absolute URI (scheme + authority) on incoming requests.
    parts.uri = full_url.parse()?;
    app.handle_http(route, Request::from_parts(parts, body))
        .await
}

async fn serve_external(
    app: Arc<LoadedApp>,
    request: Request<Incoming>,
    client: SocketAddr,
) -> Response<ResponseBody> {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let (component, response) = match app.router.route(&path) {
        None => (
            None,
            json_error(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("no route matches {path}"),
            ),
        ),
        Some(route) => {
            let response = match serve_routed(&app, &route, request, Some(client)).await {
                Ok(response) => response,
                Err(error) => {
                    tracing::error!("{method} {path}: {error:#}");
                    json_error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal_error",
                        "the component failed to handle the request",
                    )
                }
            };
            (Some(route.component), response)
        }
    };
    tracing::info!(
        "{method} {path} component={} status={} duration_ms={:.2}",
        component.as_deref().unwrap_or("-"),
        response.status().as_u16(),
        started.elapsed().as_secs_f64() * 1000.0
    );
    response
}

/// Accepts connections until `shutdown` flips, then waits for open connections.
pub(crate) async fn run(
    app: Arc<LoadedApp>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, client) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: keep serving the rest.
                        tracing::warn!("accept failed: {error}");
                        continue;
                    }
                };
                let app = app.clone();
                let service = service_fn(move |request| {
                    let app = app.clone();
                    async move { Ok::<_, Infallible>(serve_external(app, request, client).await) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service);
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!("connection from {client}: {error}");
                    }
                });
            }
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(std::time::Duration::from_secs(10)) => {
            tracing::warn!("connections still open after 10 s; closing them");
        }
    }
}
