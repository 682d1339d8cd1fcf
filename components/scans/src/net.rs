//! Outbound HTTP for the scans (blocking: the cron export is synchronous).

use dol_core::gateway::providers::HttpRequestSpec;

/// An answer: status and body.
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// Sends `spec` and waits for the whole answer. The error names the failure
/// without secrets (no headers).
pub fn send(spec: &HttpRequestSpec) -> Result<Answer, String> {
    dol_spin_platform::net::send(spec).map(|(status, body)| Answer { status, body })
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
