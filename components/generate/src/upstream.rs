//! The engine's provider calls over `wasi:http/client@0.3.0` (the host's
//! outbound HTTP, under `allowed_outbound_hosts`), with timeouts on the
//! WASI monotonic clock, and randomness for jitter.

use dol_core::gateway::engine::{TransportError, Upstream};
use dol_core::gateway::providers::HttpRequestSpec;
use dol_spin_platform::service;
use wasip3::clocks::monotonic_clock;
use wasip3::http::client;
use wasip3::http::types::{ErrorCode, Fields, Request, Response};
use wasip3::wit_bindgen::{FutureReader, StreamReader, StreamResult};
use wasip3::wit_future;

use crate::timer::{sleep, timeout};

/// An open provider response body, and how it ended (the host reports a
/// broken body there, after the stream's end).
pub struct OpenBody {
    stream: StreamReader<u8>,
    ended: Option<FutureReader<Result<Option<Fields>, ErrorCode>>>,
}

/// [`Upstream`] over WASI 0.3's outbound HTTP.
pub struct WasiUpstream {
    started_ns: u64,
}

impl WasiUpstream {
    /// Starts the request clock now.
    pub fn new() -> Self {
        Self {
            started_ns: monotonic_clock::now(),
        }
    }
}

fn transport_error(code: ErrorCode) -> TransportError {
    match code {
        ErrorCode::HttpRequestDenied => {
            TransportError::Denied("destination not in allowed_outbound_hosts".to_owned())
        }
        ErrorCode::ConnectionTimeout
        | ErrorCode::ConnectionReadTimeout
        | ErrorCode::HttpResponseTimeout => TransportError::Timeout,
        code => TransportError::Connect(format!("{code:?}")),
    }
}

/// The outgoing request for `spec`, its body written by a spawned task.
fn request(spec: &HttpRequestSpec) -> Result<Request, TransportError> {
    service::outgoing_request(&spec.method, &spec.url, &spec.headers, spec.body.clone())
        .map_err(|why| TransportError::Connect(format!("the provider request: {why}")))
}

impl Upstream for WasiUpstream {
    type Body = OpenBody;

    async fn send(
        &mut self,
        spec: &HttpRequestSpec,
        timeout_ms: u64,
    ) -> Result<(u16, Vec<(String, String)>, OpenBody), TransportError> {
        let request = request(spec)?;
        let response = timeout(timeout_ms, client::send(request))
            .await
            .ok_or(TransportError::Timeout)?
            .map_err(transport_error)?;
        let status = response.get_status_code();
        let headers = response
            .get_headers()
            .copy_all()
            .into_iter()
            .map(|(k, v)| {
                (
                    k.to_ascii_lowercase(),
                    String::from_utf8_lossy(&v).into_owned(),
                )
            })
            .collect();
        let (_, done) = wit_future::new::<Result<(), ErrorCode>>(|| Ok(()));
        let (stream, ended) = Response::consume_body(response, done);
        Ok((
            status,
            headers,
            OpenBody {
                stream,
                ended: Some(ended),
            },
        ))
    }

    async fn read(
        &mut self,
        body: &mut OpenBody,
        timeout_ms: u64,
    ) -> Result<Option<Vec<u8>>, TransportError> {
        loop {
            let read = body.stream.read(Vec::with_capacity(16 * 1024));
            let (status, bytes) = timeout(timeout_ms, read)
                .await
                .ok_or(TransportError::Timeout)?;
            match status {
                StreamResult::Complete(_) if bytes.is_empty() => continue,
                StreamResult::Complete(_) => return Ok(Some(bytes)),
                StreamResult::Dropped | StreamResult::Cancelled if !bytes.is_empty() => {
                    return Ok(Some(bytes));
                }
                StreamResult::Dropped | StreamResult::Cancelled => {}
            }
            // The end: whole, or cut (the host says so in the trailers' place).
            let Some(ended) = body.ended.take() else {
                return Ok(None);
            };
            return match timeout(timeout_ms, ended.into_future()).await {
                None => Err(TransportError::Timeout),
                Some(Ok(_)) => Ok(None),
                Some(Err(code)) => Err(TransportError::Connect(format!(
                    "the provider's body could not be read: {code:?}"
                ))),
            };
        }
    }

    async fn sleep(&mut self, ms: u64) {
        sleep(ms).await;
    }

    fn elapsed_ms(&self) -> u64 {
        monotonic_clock::now().saturating_sub(self.started_ns) / 1_000_000
    }

    fn now_unix_s(&self) -> u64 {
        u64::try_from(dol_spin_platform::now_ms()).unwrap_or(0) / 1_000
    }

    fn random_u64(&mut self) -> u64 {
        wasip3::random::random::get_random_u64()
    }
}
