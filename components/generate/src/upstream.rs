//! The engine's provider calls over Spin's outbound wasi-http, with
//! timeouts on the wasi monotonic clock, and randomness for jitter.

use std::pin::Pin;

use dol_core::gateway::engine::{TransportError, Upstream};
use dol_core::gateway::providers::HttpRequestSpec;
use futures::{Stream, StreamExt};
use spin_sdk::http::{ErrorCode, IncomingResponse, Method, Request, SendError};
use wasi::clocks::monotonic_clock;

use crate::net::header_list;
use crate::timer::{sleep, timeout};

type BodyStream = Pin<Box<dyn Stream<Item = Result<Vec<u8>, wasi::io::streams::Error>>>>;

/// An open provider response: the response must outlive its body stream.
pub struct OpenBody {
    _response: IncomingResponse,
    stream: BodyStream,
}

/// [`Upstream`] over Spin's outbound HTTP.
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

fn method(m: &str) -> Method {
    match m {
        "GET" => Method::Get,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        _ => Method::Post,
    }
}

fn transport_error(e: SendError) -> TransportError {
    match e {
        SendError::Http(ErrorCode::HttpRequestDenied) => {
            TransportError::Denied("destination not in allowed_outbound_hosts".to_owned())
        }
        SendError::Http(
            ErrorCode::ConnectionTimeout
            | ErrorCode::ConnectionReadTimeout
            | ErrorCode::HttpResponseTimeout,
        ) => TransportError::Timeout,
        SendError::Http(code) => TransportError::Connect(format!("{code:?}")),
        other => TransportError::Connect(other.to_string()),
    }
}

impl Upstream for WasiUpstream {
    type Body = OpenBody;

    async fn send(
        &mut self,
        spec: &HttpRequestSpec,
        timeout_ms: u64,
    ) -> Result<(u16, Vec<(String, String)>, OpenBody), TransportError> {
        let mut builder = Request::builder();
        builder.method(method(&spec.method)).uri(spec.url.as_str());
        for (k, v) in &spec.headers {
            builder.header(k.as_str(), v.as_str());
        }
        let request = builder.body(spec.body.clone()).build();
        let sent = timeout(
            timeout_ms,
            spin_sdk::http::send::<_, IncomingResponse>(request),
        )
        .await;
        let response = sent
            .ok_or(TransportError::Timeout)?
            .map_err(transport_error)?;
        let status = response.status();
        let headers = header_list(&response.headers());
        let stream: BodyStream = Box::pin(response.take_body_stream());
        Ok((
            status,
            headers,
            OpenBody {
                _response: response,
                stream,
            },
        ))
    }

    async fn read(
        &mut self,
        body: &mut OpenBody,
        timeout_ms: u64,
    ) -> Result<Option<Vec<u8>>, TransportError> {
        match timeout(timeout_ms, body.stream.next()).await {
            None => Err(TransportError::Timeout),
            Some(None) => Ok(None),
            Some(Some(Ok(bytes))) => Ok(Some(bytes)),
            // The stream error is a host resource; its debug form names only a handle.
            Some(Some(Err(_))) => Err(TransportError::Connect(
                "the provider's body could not be read".to_owned(),
            )),
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
        wasi::random::random::get_random_u64()
    }
}
