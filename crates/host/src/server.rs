//! The HTTP trigger: accept loop, routing, Spin's request headers, access log,
//! and graceful shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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

/// A JSON error response in DOL's error shape and codes (`not-found`,
/// `internal`), with the security headers DOL's own JSON answers carry (no
/// sniffing, no framing, a CSP that loads nothing); 5xx bodies never carry
/// internals.
pub(crate) fn json_error(status: StatusCode, code: &str, message: &str) -> Response<ResponseBody> {
    let body = serde_json::json!({ "error": { "code": code, "message": message } }).to_string();
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// The security headers of [`json_error`] (as `dol_core::hygiene` sets them
/// on the components' JSON answers).
const SECURITY_HEADERS: [(&str, &str); 4] = [
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
];

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
                "not-found",
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
                        "internal",
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

/// How many threads serve HTTP connections: one per core.
pub(crate) fn worker_count() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
}

thread_local! {
    /// Which HTTP worker this thread is (1-based; 0 = not a worker thread).
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The HTTP worker the current thread is (1..=[`worker_count`]), or 0 on
/// any other thread; per-worker resources (the outbound pools) index by it.
pub(crate) fn current_worker() -> usize {
    WORKER.get()
}

/// An accepted connection on its way to a worker.
struct Accepted {
    stream: std::net::TcpStream,
    client: SocketAddr,
}

/// How long open connections may take to finish after shutdown starts.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// One serving thread: a single-threaded runtime that owns the connections
/// handed to it, their component instances and its outbound connections, so
/// a request's steps (reading it, running the guest, the provider call,
/// writing the answer) wake tasks on the same thread, never across threads.
struct Worker {
    connections: tokio::sync::mpsc::UnboundedSender<Accepted>,
    /// Connections it serves now (the next one goes to the least busy).
    open: Arc<AtomicUsize>,
    /// Resolves (with an error: the sender is dropped) when the thread ends.
    done: tokio::sync::oneshot::Receiver<()>,
}

/// Serves one connection on the worker's runtime; once `shutdown` flips it
/// finishes the request in flight and closes.
async fn serve_connection(
    app: Arc<LoadedApp>,
    stream: tokio::net::TcpStream,
    client: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    let service = service_fn(move |request| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(serve_external(app, request, client).await) }
    });
    let connection =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    let finished = tokio::select! {
        result = connection.as_mut() => Some(result),
        _ = shutdown.wait_for(|stop| *stop) => None,
    };
    let result = match finished {
        Some(result) => result,
        None => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!("connection from {client}: {error}");
    }
}

/// Starts worker `index`; it ends when its sender is dropped and its
/// connections have closed (or [`SHUTDOWN_GRACE`] has passed).
fn spawn_worker(
    index: usize,
    app: Arc<LoadedApp>,
    shutdown: watch::Receiver<bool>,
) -> Result<Worker> {
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<Accepted>();
    let (done_sender, done) = tokio::sync::oneshot::channel::<()>();
    let open = Arc::new(AtomicUsize::new(0));
    let counter = open.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name(format!("dol-http-{index}"))
        .spawn(move || {
            WORKER.set(index);
            runtime.block_on(async move {
                let mut connections = tokio::task::JoinSet::new();
                while let Some(Accepted { stream, client }) = receiver.recv().await {
                    // Reap finished connections so the set does not grow.
                    while connections.try_join_next().is_some() {}
                    // Small writes go out at once: a response's head and its
                    // body can leave in separate writes (a WASI 0.3 body is
                    // written after the head is returned), and Nagle's
                    // algorithm would hold the second until the client's
                    // delayed ACK (40 ms on Linux).
                    if let Err(error) = stream.set_nodelay(true) {
                        tracing::debug!("connection from {client}: TCP_NODELAY: {error}");
                    }
                    let stream = match tokio::net::TcpStream::from_std(stream) {
                        Ok(stream) => stream,
                        Err(error) => {
                            tracing::warn!("connection from {client}: {error}");
                            counter.fetch_sub(1, Ordering::Relaxed);
                            continue;
                        }
                    };
                    let (app, shutdown, counter) = (app.clone(), shutdown.clone(), counter.clone());
                    connections.spawn(async move {
                        serve_connection(app, stream, client, shutdown).await;
                        counter.fetch_sub(1, Ordering::Relaxed);
                    });
                }
                // The acceptor stopped: let open connections finish, within the grace.
                let drain = async { while connections.join_next().await.is_some() {} };
                if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
                    tracing::warn!(
                        "HTTP worker {index}: connections still open after {SHUTDOWN_GRACE:?}; closing them"
                    );
                }
            });
            // Dropping the runtime cancels whatever is left; then say so.
            drop(runtime);
            drop(done_sender);
        })?;
    Ok(Worker {
        connections: sender,
        open,
        done,
    })
}

/// The index of the worker serving the fewest connections (the first of
/// equals), `None` when there is none.
fn least_busy(workers: &[Worker]) -> Option<usize> {
    workers
        .iter()
        .enumerate()
        .min_by_key(|(_, w)| w.open.load(Ordering::Relaxed))
        .map(|(index, _)| index)
}

/// Accepts connections until `shutdown` flips, handing each to the least
/// busy of one worker thread per core; then waits for the workers to finish
/// their connections.
pub(crate) async fn run(
    app: Arc<LoadedApp>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut workers = Vec::new();
    for index in 1..=worker_count() {
        match spawn_worker(index, app.clone(), shutdown.clone()) {
            Ok(worker) => workers.push(worker),
            Err(error) => tracing::error!("starting HTTP worker {index}: {error:#}"),
        }
    }
    if workers.is_empty() {
        tracing::error!("no HTTP worker could start; not serving");
        return;
    }
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
                // The worker registers it with its own runtime's reactor.
                let stream = match stream.into_std() {
                    Ok(stream) => stream,
                    Err(error) => {
                        tracing::warn!("connection from {client}: {error}");
                        continue;
                    }
                };
                let Some(index) = least_busy(&workers) else {
                    break;
                };
                let worker = &workers[index];
                worker.open.fetch_add(1, Ordering::Relaxed);
                if worker.connections.send(Accepted { stream, client }).is_err() {
                    // Its thread ended (it only does on a panic): serve on the others.
                    tracing::error!("an HTTP worker thread stopped; connection from {client} dropped");
                    workers.swap_remove(index);
                    if workers.is_empty() {
                        tracing::error!("no HTTP worker left; not serving");
                        break;
                    }
                }
            }
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
    drop(listener);
    let mut finished = Vec::new();
    for worker in workers {
        // Dropping the sender tells the worker no more connections come.
        drop(worker.connections);
        finished.push(worker.done);
    }
    for done in finished {
        // Each worker bounds its own wait by SHUTDOWN_GRACE.
        let _ = done.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(open: usize) -> Worker {
        let (connections, _) = tokio::sync::mpsc::unbounded_channel();
        let (_, done) = tokio::sync::oneshot::channel();
        Worker {
            connections,
            open: Arc::new(AtomicUsize::new(open)),
            done,
        }
    }

    #[test]
    fn a_new_connection_goes_to_the_least_busy_worker() {
        assert_eq!(least_busy(&[worker(2), worker(0), worker(1)]), Some(1));
        // Equals: the first, so one connection at a time stays on one thread.
        assert_eq!(least_busy(&[worker(1), worker(1)]), Some(0));
        assert_eq!(least_busy(&[]), None);
    }
}
