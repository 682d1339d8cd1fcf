//! The engine's I/O over wasi-http: provider calls with timeouts, streamed
//! responses to the client, timers on the wasi monotonic clock, randomness.

use std::future::Future;
use std::pin::{Pin, pin};
use std::task::Poll;

use dol_core::gateway::engine::{Downstream, TransportError, Upstream};
use dol_core::gateway::providers::HttpRequestSpec;
use futures::future::{Either, select};
use futures::{SinkExt, Stream, StreamExt};
use spin_sdk::http::{
    ErrorCode, Fields, IncomingResponse, Method, OutgoingResponse, Request, ResponseOutparam,
    SendError,
};
use wasi::clocks::monotonic_clock;

/// A timer on the wasi monotonic clock, driven by spin-sdk's executor.
struct Sleep {
    deadline_ns: u64,
    /// Keeps the clock subscription registered with the executor until the timer fires or is dropped.
    registration: Option<spin_executor::CancelOnDropToken>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        if monotonic_clock::now() >= self.deadline_ns {
            self.registration = None;
            return Poll::Ready(());
        }
        let pollable = monotonic_clock::subscribe_instant(self.deadline_ns);
        self.registration =
            Some(spin_executor::push_waker_and_get_token(pollable, cx.waker().clone()).into());
        Poll::Pending
    }
}

/// Waits `ms` milliseconds.
pub fn sleep(ms: u64) -> impl Future<Output = ()> {
    Sleep {
        deadline_ns: monotonic_clock::now().saturating_add(ms.saturating_mul(1_000_000)),
        registration: None,
    }
}

/// Runs `fut` for at most `ms` milliseconds.
pub async fn timeout<T>(ms: u64, fut: impl Future<Output = T>) -> Option<T> {
    let fut = pin!(fut);
    let timer = pin!(sleep(ms));
    match select(fut, timer).await {
        Either::Left((value, _)) => Some(value),
        Either::Right(((), _)) => None,
    }
}

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
            Some(Some(Err(e))) => Err(TransportError::Connect(format!("body: {e:?}"))),
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

type BodySink = Pin<Box<dyn futures::Sink<Vec<u8>, Error = wasi::io::streams::StreamError>>>;

/// A streamed response to the client: the head is sent on [`Downstream::start`].
pub struct SseClient {
    out: Option<ResponseOutparam>,
    sink: Option<BodySink>,
    /// Whether the head was sent.
    pub started: bool,
}

impl SseClient {
    /// Wraps the response slot of the request.
    pub fn new(out: ResponseOutparam) -> Self {
        Self {
            out: Some(out),
            sink: None,
            started: false,
        }
    }

    /// The response slot, when no head was sent (to answer with a plain response instead).
    pub fn take_unstarted(&mut self) -> Option<ResponseOutparam> {
        if self.started { None } else { self.out.take() }
    }
}

impl Downstream for SseClient {
    async fn start(&mut self, headers: Vec<(String, String)>) -> bool {
        let Some(out) = self.out.take() else {
            return false;
        };
        let mut list: Vec<(String, Vec<u8>)> = vec![
            ("content-type".to_owned(), b"text/event-stream".to_vec()),
            ("cache-control".to_owned(), b"no-cache".to_vec()),
        ];
        list.extend(headers.into_iter().map(|(k, v)| (k, v.into_bytes())));
        let Ok(fields) = Fields::from_list(&list) else {
            return false;
        };
        let response = OutgoingResponse::new(fields);
        if response.set_status_code(200).is_err() {
            return false;
        }
        self.sink = Some(Box::pin(response.take_body()));
        out.set(response);
        self.started = true;
        true
    }

    async fn send(&mut self, bytes: Vec<u8>) -> bool {
        match self.sink.as_mut() {
            Some(sink) => sink.send(bytes).await.is_ok(),
            None => false,
        }
    }
}

/// Header fields as `(lowercase name, text)` pairs.
pub fn header_list(fields: &Fields) -> Vec<(String, String)> {
    fields
        .entries()
        .into_iter()
        .map(|(k, v)| {
            (
                k.to_ascii_lowercase(),
                String::from_utf8_lossy(&v).into_owned(),
            )
        })
        .collect()
}

/// Writes a complete response to the slot.
pub async fn respond(out: ResponseOutparam, response: spin_sdk::http::Response) {
    let list: Vec<(String, Vec<u8>)> = response
        .headers()
        .map(|(k, v)| (k.to_owned(), v.as_bytes().to_vec()))
        .collect();
    let Ok(fields) = Fields::from_list(&list) else {
        return;
    };
    let outgoing = OutgoingResponse::new(fields);
    if outgoing.set_status_code(*response.status()).is_err() {
        return;
    }
    let body = response.into_body();
    if let Err(e) = out.set_with_body(outgoing, body).await {
        eprintln!("generate: writing the response failed: {e:?}");
    }
}
