//! The host's outbound HTTP client: one keep-alive pool per authority
//! (scheme, host, port), shared by every instance of the app, as Spin's
//! outbound HTTP factor pools its connections (`hyper_util`'s pooled client
//! behind a connector that honours the guest's connect timeout).
//!
//! The allow-list is checked before a request gets here
//! ([`crate::outbound::OutboundHooks`]); this module only moves bytes. The
//! guest's timeouts keep their meaning: `connect-timeout` bounds the TCP
//! connect of a new connection, `first-byte-timeout` the wait for the response
//! head (including, as on Spin, the connect when no pooled connection is idle),
//! `between-bytes-timeout` every wait between body frames. A pooled connection
//! found dead before the request was written to it is replaced by a fresh one
//! transparently; a request that was sent is never sent again.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http::uri::Scheme;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

/// Idle connections kept per authority. Enough for the gateway's concurrency
/// on one machine; beyond it, connections are closed when their response ends.
pub const MAX_IDLE_PER_AUTHORITY: usize = 32;

/// How long an idle pooled connection is kept (providers close theirs after a
/// minute or more; hyper's default).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// What a guest gets when it sets no timeout (wasmtime's default).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

tokio::task_local! {
    // The pooled client's connector cannot take per-request arguments, so the
    // guest's connect timeout travels with the task that asks for a connection.
    static CONNECT_TIMEOUT: Duration;
}

/// The app's pooled outbound HTTP/1.1 client (plain and TLS): one pool per
/// HTTP worker thread (and one for every other thread), so a pooled
/// connection is driven by the thread whose guest uses it.
#[derive(Clone)]
pub struct OutboundClient {
    clients: Arc<[Client<Connector, WasiBody>]>,
}

impl Default for OutboundClient {
    fn default() -> Self {
        Self::new()
    }
}

impl OutboundClient {
    /// A client with empty pools.
    pub fn new() -> Self {
        let clients = (0..=crate::server::worker_count())
            .map(|_| Self::pool())
            .collect();
        Self { clients }
    }

    /// One keep-alive pool.
    fn pool() -> Client<Connector, WasiBody> {
        let tls = tokio_rustls::TlsConnector::from(Arc::new(
            rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.into(),
                })
                .with_no_client_auth(),
        ));
        Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(MAX_IDLE_PER_AUTHORITY)
            .pool_idle_timeout(IDLE_TIMEOUT)
            // A request that never reached a reused connection goes out on a new one.
            .retry_canceled_requests(true)
            .build(Connector { tls })
    }

    /// Sends `request` (absolute URI) on a pooled or new connection.
    pub async fn send(
        &self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<http::Response<WasiBody>, Error> {
        let timeout = |pick: fn(&RequestOptions) -> Option<Duration>| {
            options.as_ref().and_then(pick).unwrap_or(DEFAULT_TIMEOUT)
        };
        let connect_timeout = timeout(|o| o.connect_timeout);
        let first_byte_timeout = timeout(|o| o.first_byte_timeout);
        let between_bytes_timeout = timeout(|o| o.between_bytes_timeout);
        if request.uri().authority().is_none() {
            return Err(Error::HttpRequestUriInvalid);
        }
        let client = &self.clients[crate::server::current_worker() % self.clients.len()];
        let response = CONNECT_TIMEOUT.scope(connect_timeout, client.request(request));
        let response = tokio::time::timeout(first_byte_timeout, response)
            .await
            .map_err(|_| Error::ConnectionReadTimeout)?
            .map_err(|error| from_client_error(&error))?;
        Ok(response.map(|incoming| {
            BetweenBytes {
                incoming,
                timeout: between_bytes_timeout,
                sleep: None,
            }
            .boxed_unsync()
        }))
    }
}

/// Why a new connection could not be made.
#[derive(Debug, thiserror::Error)]
enum ConnectError {
    /// The TCP connect took longer than the guest's connect timeout.
    #[error("connect timed out")]
    Timeout,
    /// The TCP connect failed (refused, unreachable, name not resolved).
    #[error("connect: {0}")]
    Tcp(io::Error),
    /// The TLS handshake failed.
    #[error("TLS: {0}")]
    Tls(io::Error),
    /// The host is no valid TLS server name.
    #[error("invalid DNS name: {0}")]
    DnsName(rustls::pki_types::InvalidDnsNameError),
    /// The URI names no host.
    #[error("no host in URI")]
    NoHost,
}

/// The same error wasmtime's default sender reports for each failure, so the
/// guest sees the same `error-code` with and without the pool.
fn from_client_error(error: &hyper_util::client::legacy::Error) -> Error {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(connect) = cause.downcast_ref::<ConnectError>() {
            let copy = |e: &io::Error| io::Error::new(e.kind(), e.to_string());
            return match connect {
                ConnectError::Timeout => Error::ConnectionTimeout,
                ConnectError::Tcp(e) => Error::Connect(copy(e)),
                ConnectError::Tls(e) => Error::Tls(copy(e)),
                ConnectError::DnsName(_) => {
                    Error::InvalidDnsNameError(rustls::pki_types::InvalidDnsNameError)
                }
                ConnectError::NoHost => Error::HttpRequestUriInvalid,
            };
        }
        if let Some(hyper) = cause.downcast_ref::<hyper::Error>()
            && hyper.is_timeout()
        {
            return Error::HttpResponseTimeout;
        }
        source = cause.source();
    }
    tracing::debug!("outbound request failed: {error:?}");
    Error::HttpProtocolError
}

/// Opens plain or TLS connections for the pool.
#[derive(Clone)]
struct Connector {
    tls: tokio_rustls::TlsConnector,
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<Stream>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tls = self.tls.clone();
        // Outside a send (never in practice) the default applies.
        let connect_timeout = CONNECT_TIMEOUT.try_with(|t| *t).unwrap_or(DEFAULT_TIMEOUT);
        Box::pin(async move {
            let use_tls = uri.scheme() == Some(&Scheme::HTTPS);
            let host = uri.host().ok_or(ConnectError::NoHost)?;
            // `Uri::host` keeps an IPv6 literal's brackets; the resolver wants it bare.
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            let port = uri.port_u16().unwrap_or(if use_tls { 443 } else { 80 });
            let tcp = tokio::time::timeout(connect_timeout, TcpStream::connect((bare, port)))
                .await
                .map_err(|_| ConnectError::Timeout)?
                .map_err(ConnectError::Tcp)?;
            // Small requests and answers: do not wait to coalesce segments.
            let _ = tcp.set_nodelay(true);
            if !use_tls {
                return Ok(TokioIo::new(Stream::Plain(tcp)));
            }
            let name = match bare.parse::<std::net::IpAddr>() {
                Ok(ip) => rustls::pki_types::ServerName::from(ip),
                Err(_) => rustls::pki_types::ServerName::try_from(bare.to_string())
                    .map_err(ConnectError::DnsName)?,
            };
            let stream = tls.connect(name, tcp).await.map_err(ConnectError::Tls)?;
            Ok(TokioIo::new(Stream::Tls(Box::new(stream))))
        })
    }
}

/// A pooled connection: plain TCP or TLS over TCP.
enum Stream {
    /// `http://`
    Plain(TcpStream),
    /// `https://`
    Tls(Box<TlsStream<TcpStream>>),
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        match self {
            Stream::Plain(tcp) => tcp.connected(),
            Stream::Tls(tls) => tls.get_ref().0.connected(),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The response body with the guest's between-bytes timeout.
struct BetweenBytes {
    incoming: hyper::body::Incoming,
    timeout: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Body for BetweenBytes {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.incoming).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.sleep = None;
                Poll::Ready(frame.map(|f| {
                    f.map_err(|e| {
                        if e.is_timeout() {
                            Error::HttpResponseTimeout
                        } else {
                            Error::from(e)
                        }
                    })
                }))
            }
            Poll::Pending => {
                let timeout = this.timeout;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                ready!(sleep.as_mut().poll(cx));
                Poll::Ready(Some(Err(Error::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::{Empty, Full};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    use super::*;

    /// What the test server does with each connection it accepts.
    #[derive(Clone, Copy)]
    enum Behaviour {
        /// Answers every request on the connection (keep-alive).
        KeepAlive,
        /// Answers one request, then closes without saying so.
        CloseAfterOne,
        /// Reads one request and closes without answering.
        HangUp,
    }

    /// A minimal HTTP/1.1 server that counts accepted connections and requests read.
    struct Server {
        addr: std::net::SocketAddr,
        connections: Arc<AtomicUsize>,
        requests: Arc<AtomicUsize>,
    }

    async fn server(behaviour: Behaviour) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let (c, r) = (connections.clone(), requests.clone());
        tokio::spawn(async move {
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                c.fetch_add(1, Ordering::SeqCst);
                let r = r.clone();
                tokio::spawn(async move {
                    let mut socket = BufReader::new(socket);
                    loop {
                        // Read one request head (the tests send no bodies).
                        let mut line = String::new();
                        loop {
                            line.clear();
                            if socket.read_line(&mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            if line == "\r\n" {
                                break;
                            }
                        }
                        r.fetch_add(1, Ordering::SeqCst);
                        if let Behaviour::HangUp = behaviour {
                            return;
                        }
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if socket.get_mut().write_all(answer).await.is_err() {
                            return;
                        }
                        if let Behaviour::CloseAfterOne = behaviour {
                            return;
                        }
                    }
                });
            }
        });
        Server {
            addr,
            connections,
            requests,
        }
    }

    fn get(addr: std::net::SocketAddr) -> http::Request<WasiBody> {
        let body = Empty::<Bytes>::new()
            .map_err(|never| match never {})
            .boxed_unsync();
        http::Request::get(format!("http://{addr}/v1/models"))
            .body(body)
            .unwrap()
    }

    async fn read_all(client: &OutboundClient, addr: std::net::SocketAddr) -> Result<Bytes, Error> {
        let response = client.send(get(addr), None).await?;
        Ok(response.into_body().collect().await?.to_bytes())
    }

    #[tokio::test]
    async fn sequential_requests_reuse_one_connection() {
        let server = server(Behaviour::KeepAlive).await;
        let client = OutboundClient::new();
        for _ in 0..5 {
            assert_eq!(read_all(&client, server.addr).await.unwrap(), "ok");
        }
        assert_eq!(server.requests.load(Ordering::SeqCst), 5);
        assert_eq!(server.connections.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn concurrent_requests_open_connections_and_return_them_to_the_pool() {
        let server = server(Behaviour::KeepAlive).await;
        let client = OutboundClient::new();
        for _ in 0..3 {
            let sends = (0..4).map(|_| read_all(&client, server.addr));
            for answer in futures::future::join_all(sends).await {
                assert_eq!(answer.unwrap(), "ok");
            }
        }
        // At most one connection per request in flight, never one per request.
        assert!(server.connections.load(Ordering::SeqCst) <= 4);
        assert_eq!(server.requests.load(Ordering::SeqCst), 12);
    }

    #[tokio::test]
    async fn a_pooled_connection_the_server_closed_is_replaced_transparently() {
        let server = server(Behaviour::CloseAfterOne).await;
        let client = OutboundClient::new();
        for _ in 0..3 {
            assert_eq!(read_all(&client, server.addr).await.unwrap(), "ok");
        }
        assert_eq!(server.requests.load(Ordering::SeqCst), 3);
        assert_eq!(server.connections.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_request_that_was_sent_is_never_sent_again() {
        let server = server(Behaviour::HangUp).await;
        let client = OutboundClient::new();
        let body = Full::new(Bytes::from_static(b"{}"))
            .map_err(|never| match never {})
            .boxed_unsync();
        let request = http::Request::post(format!("http://{}/v1/chat", server.addr))
            .body(body)
            .unwrap();
        assert!(client.send(request, None).await.is_err());
        assert_eq!(server.requests.load(Ordering::SeqCst), 1);
        assert_eq!(server.connections.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn timeouts_keep_their_meaning() {
        // Nothing answers on a listener that never accepts: the first byte never comes.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = OutboundClient::new();
        let options = RequestOptions {
            connect_timeout: Some(Duration::from_secs(5)),
            first_byte_timeout: Some(Duration::from_millis(50)),
            between_bytes_timeout: None,
        };
        let error = client.send(get(addr), Some(options)).await.unwrap_err();
        assert!(matches!(error, Error::ConnectionReadTimeout), "{error:?}");
        // A closed port: the connect error wasmtime's sender reports.
        drop(listener);
        let error = client.send(get(addr), None).await.unwrap_err();
        assert!(matches!(error, Error::Connect(_)), "{error:?}");
    }
}
