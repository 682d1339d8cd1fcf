//! Writing responses: a whole response, or an SSE stream whose head goes out
//! on the first [`Downstream::start`]; and reading request headers.

use std::pin::Pin;

use dol_core::gateway::engine::Downstream;
use futures::SinkExt;
use spin_sdk::http::{Fields, OutgoingResponse, ResponseOutparam};

thread_local! {
    /// Headers every response to the current request carries (CORS for an
    /// allowed browser origin). Spin runs one request per instance; the entry
    /// point sets them first thing, so nothing leaks between requests.
    static EXTRA_HEADERS: std::cell::RefCell<Vec<(String, String)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Sets the headers every response to this request carries.
pub fn set_extra_headers(headers: Vec<(String, String)>) {
    EXTRA_HEADERS.with(|extra| *extra.borrow_mut() = headers);
}

fn extra_headers() -> Vec<(String, Vec<u8>)> {
    EXTRA_HEADERS.with(|extra| {
        extra
            .borrow()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
            .collect()
    })
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
        list.extend(extra_headers());
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
    let mut list: Vec<(String, Vec<u8>)> = response
        .headers()
        .map(|(k, v)| (k.to_owned(), v.as_bytes().to_vec()))
        .collect();
    list.extend(extra_headers());
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
