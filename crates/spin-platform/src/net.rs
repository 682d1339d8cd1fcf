//! Blocking outbound HTTP for the synchronous handlers (the cron export,
//! the scans' and the video routes' handlers): one request, the whole answer.

use dol_core::gateway::providers::HttpRequestSpec;
use dol_core::video::service::VideoNet;
use spin_sdk::http::{Method, Request, Response, SendError};

fn method(m: &str) -> Method {
    match m {
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "PATCH" => Method::Patch,
        _ => Method::Get,
    }
}

/// Sends `spec` and waits for the whole answer: status and body. The error
/// names the failure without secrets (no headers).
pub fn send(spec: &HttpRequestSpec) -> Result<(u16, Vec<u8>), String> {
    fetch(spec).map(|(status, _, body)| (status, body))
}

/// [`send`], also answering the response's `Content-Type` (empty when it
/// sent none): for passing a platform's media on as what it is.
pub fn fetch(spec: &HttpRequestSpec) -> Result<(u16, String, Vec<u8>), String> {
    let mut b = Request::builder();
    b.method(method(&spec.method)).uri(spec.url.as_str());
    for (k, v) in &spec.headers {
        b.header(k.as_str(), v.as_str());
    }
    let request = b.body(spec.body.clone()).build();
    spin_sdk::http::run(async move {
        let response: Response = spin_sdk::http::send(request).await.map_err(|e| match e {
            SendError::Io(io) => format!(
                "request failed: {io} (closed while sending: is the host in allowed_outbound_hosts?)"
            ),
            other => format!("request failed: {other}"),
        })?;
        let content_type = response
            .header("content-type")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned();
        Ok((*response.status(), content_type, response.into_body()))
    })
}

/// [`VideoNet`] over [`send`].
pub struct BlockingNet;

impl VideoNet for BlockingNet {
    fn send(&mut self, spec: &HttpRequestSpec) -> Result<(u16, Vec<u8>), String> {
        send(spec)
    }
}
