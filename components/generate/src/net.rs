//! Writing responses over `wasi:http@0.3.0`: a whole response, or an SSE
//! stream whose head goes out on the first [`Downstream::start`]; the
//! entry point ([`crate::http`]) returns the head to the host as soon as
//! one of them sends it, while the request's task goes on writing the body
//! (and, after it, the book-keeping that trails the answer).

use dol_core::gateway::engine::Downstream;
use dol_spin_platform::service;
use futures::channel::oneshot;
use wasip3::http::types::Response as WasiResponse;
use wasip3::wit_bindgen::StreamWriter;

/// Where one request's response goes, with the headers every response to
/// it carries (CORS for an allowed browser origin). Per request, not per
/// instance: a reused instance serves other requests meanwhile.
pub struct ResponseSlot {
    head: oneshot::Sender<WasiResponse>,
    extra_headers: Vec<(String, Vec<u8>)>,
}

impl ResponseSlot {
    /// A slot and the receiver the entry point awaits the head on.
    pub fn new() -> (Self, oneshot::Receiver<WasiResponse>) {
        let (head, receiver) = oneshot::channel();
        (
            Self {
                head,
                extra_headers: Vec::new(),
            },
            receiver,
        )
    }

    /// Sets the headers every response to this request carries.
    pub fn set_extra_headers(&mut self, headers: Vec<(String, String)>) {
        self.extra_headers = headers
            .into_iter()
            .map(|(name, value)| (name, value.into_bytes()))
            .collect();
    }

    /// Sends the head (`status`, `headers` and this slot's extra headers);
    /// the body is written through the returned writer. `None` when the
    /// head cannot be built (a header the host refuses) or nobody waits.
    fn send_head(
        self,
        status: u16,
        mut headers: Vec<(String, Vec<u8>)>,
    ) -> Option<StreamWriter<u8>> {
        headers.extend(self.extra_headers);
        let (response, writer) = match service::response_head(status, &headers) {
            Ok(head) => head,
            Err(error) => {
                eprintln!("generate: {error:?}");
                return None;
            }
        };
        self.head.send(response).ok()?;
        Some(writer)
    }
}

/// A streamed response to the client: the head is sent on [`Downstream::start`].
pub struct SseClient {
    slot: Option<ResponseSlot>,
    body: Option<StreamWriter<u8>>,
    /// Whether the head was sent.
    pub started: bool,
}

impl SseClient {
    /// Wraps the response slot of the request.
    pub fn new(slot: ResponseSlot) -> Self {
        Self {
            slot: Some(slot),
            body: None,
            started: false,
        }
    }

    /// The response slot, when no head was sent (to answer with a plain response instead).
    pub fn take_unstarted(&mut self) -> Option<ResponseSlot> {
        if self.started { None } else { self.slot.take() }
    }
}

impl Downstream for SseClient {
    async fn start(&mut self, headers: Vec<(String, String)>) -> bool {
        let Some(slot) = self.slot.take() else {
            return false;
        };
        let mut list: Vec<(String, Vec<u8>)> = vec![
            ("content-type".to_owned(), b"text/event-stream".to_vec()),
            ("cache-control".to_owned(), b"no-cache".to_vec()),
        ];
        list.extend(headers.into_iter().map(|(k, v)| (k, v.into_bytes())));
        self.body = slot.send_head(200, list);
        self.started = self.body.is_some();
        self.started
    }

    async fn send(&mut self, bytes: Vec<u8>) -> bool {
        match self.body.as_mut() {
            // What is left unwritten means the client went away.
            Some(body) => body.write_all(bytes).await.is_empty(),
            None => false,
        }
    }
}

/// Writes a complete response to the slot.
pub async fn respond(slot: ResponseSlot, response: spin_sdk::http::Response) {
    let headers: Vec<(String, Vec<u8>)> = response
        .headers()
        .map(|(k, v)| (k.to_owned(), v.as_bytes().to_vec()))
        .collect();
    let status = *response.status();
    let Some(mut body) = slot.send_head(status, headers) else {
        return;
    };
    // A client that went away leaves the rest unwritten: nothing to do.
    drop(body.write_all(response.into_body()).await);
}
