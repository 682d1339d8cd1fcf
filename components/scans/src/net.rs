//! Outbound HTTP for the scans (blocking: the cron export is synchronous).

use dol_core::gateway::providers::HttpRequestSpec;
use spin_sdk::http::{Method, Request, Response, SendError};

/// An answer: status and body.
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Body bytes.
    pub body: Vec<u8>,
}

fn method(m: &str) -> Method {
    match m {
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        _ => Method::Get,
    }
}

/// Sends `spec` and waits for the whole answer. The error names the failure
/// without secrets (no headers).
pub fn send(spec: &HttpRequestSpec) -> Result<Answer, String> {
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
        Ok(Answer {
            status: *response.status(),
            body: response.into_body(),
        })
    })
}

/// POSTs a JSON body with extra headers; any non-2xx answer is an error.
pub fn post_json(url: &str, body: &[u8], headers: &[(&str, String)]) -> Result<(), String> {
    let mut all = vec![("content-type".to_owned(), "application/json".to_owned())];
    all.extend(headers.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    let answer = send(&HttpRequestSpec {
        method: "POST".to_owned(),
        url: url.to_owned(),
        headers: all,
        body: body.to_vec(),
    })?;
    if (200..300).contains(&answer.status) {
        Ok(())
    } else {
        Err(format!("HTTP {}", answer.status))
    }
}
