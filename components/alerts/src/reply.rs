//! Answers: the response (sent first, so Slack gets it well within its 3 s)
//! and an optional follow-up to a Slack `response_url`, posted after the
//! response went out and queued in the outbox when it cannot be delivered.

use dol_core::observe::store::{self, KIND_SLACK_RESPONSE, NewMessage};
use serde_json::Value;
use spin_sdk::http::{Method, OutgoingResponse, Request, Response, ResponseOutparam, SendError};

use dol_spin_platform as platform;

use crate::db;

/// A response and what to do after sending it.
pub struct Reply {
    /// Sent to the caller at once.
    pub response: Response,
    /// Posted afterwards.
    pub follow_up: Option<FollowUp>,
}

impl Reply {
    /// A JSON response without a follow-up.
    pub fn json(status: u16, body: &Value) -> Self {
        Reply {
            response: platform::json(status, body),
            follow_up: None,
        }
    }
}

/// A message for a Slack `response_url`.
pub struct FollowUp {
    /// The `response_url` from the verified payload (a capability URL: it is
    /// never logged whole).
    pub url: String,
    /// The Slack message.
    pub message: Value,
}

/// Sends `response` through the outparam; the instance keeps running after.
pub async fn send(out: ResponseOutparam, mut response: Response) {
    let body = std::mem::take(response.body_mut());
    match OutgoingResponse::try_from(response) {
        Ok(outgoing) => {
            if let Err(err) = out.set_with_body(outgoing, body).await {
                eprintln!("alerts: writing the response failed: {err}");
            }
        }
        Err(err) => eprintln!("alerts: building the response failed: {err}"),
    }
}

/// `scheme://host` of a URL, for logs.
fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let end = url[after_scheme..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| after_scheme + i);
    &url[..end]
}

impl FollowUp {
    /// Posts the message; on failure queues it in the outbox (kind
    /// `slack_response`, the error recorded as its first failed attempt) so
    /// the delivery scan retries it.
    pub async fn deliver(self) {
        let error = match post_json(&self.url, &self.message).await {
            Ok(()) => return,
            Err(error) => error,
        };
        let now = platform::now_ms();
        let queued = db::with(|db| {
            let id = store::enqueue(
                db,
                &NewMessage {
                    kind: KIND_SLACK_RESPONSE,
                    target: &self.url,
                    payload: &self.message,
                    dedup_key: None,
                },
                now,
            )?;
            if let Some(id) = id {
                store::mark_failed(db, id, &error, now)?;
            }
            Ok(id)
        });
        match queued {
            Ok(id) => eprintln!(
                "alerts: follow-up to {} failed ({error}); queued in the outbox as #{}",
                origin(&self.url),
                id.unwrap_or_default()
            ),
            Err(err) => eprintln!(
                "alerts: follow-up to {} failed ({error}) and could not be queued: {err}",
                origin(&self.url)
            ),
        }
    }
}

/// POSTs JSON; any non-2xx answer is an error.
async fn post_json(url: &str, body: &Value) -> Result<(), String> {
    let request = Request::builder()
        .method(Method::Post)
        .uri(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .build();
    let response: Response = spin_sdk::http::send(request).await.map_err(|e| match e {
        // spin-sdk writes the body before it looks at the response, so a
        // host refused by allowed_outbound_hosts shows up as a closed stream.
        SendError::Io(io) => format!(
            "request failed: {io} (closed while sending: is the host in allowed_outbound_hosts?)"
        ),
        other => format!("request failed: {other}"),
    })?;
    let status = *response.status();
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("HTTP {status}"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn origin_drops_the_path() {
        assert_eq!(
            super::origin("https://hooks.slack.com/actions/T1/2/secret"),
            "https://hooks.slack.com"
        );
        assert_eq!(
            super::origin("http://127.0.0.1:9/x?y"),
            "http://127.0.0.1:9"
        );
        assert_eq!(super::origin("weird"), "weird");
    }
}
