//! Every way a webhook request can fail, and the one mapping from failure to
//! HTTP status and JSON body (`{"error": {"code", "message"}}`). 5xx bodies
//! never carry internals; those are logged (without secrets) instead.

use dol_core::observe::alertmanager::AmError;
use dol_core::observe::alerts::ActionError;
use dol_core::observe::inbound::GenericError;
use dol_core::observe::slack::{PayloadError, VerifyError};
use dol_core::observe::store::StoreError;
use spin_sdk::http::Response;

use dol_spin_platform as platform;

/// Why a request was refused or failed. Nothing is stored when a request is
/// refused.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    /// No such route.
    #[error("no such route")]
    NotFound,
    /// Only POST is served.
    #[error("use POST")]
    Method,
    /// The Spin variable holding the secret or token is empty or unreadable:
    /// the route stays closed.
    #[error("not configured: set the Spin variable `{0}`")]
    NotConfigured(&'static str),
    /// A Slack or generic-webhook signature check failed.
    #[error("{0}")]
    Signature(VerifyError),
    /// No `Authorization: Bearer` token.
    #[error("missing credentials: send Authorization: Bearer <alertmanager_token>")]
    MissingToken,
    /// The bearer token is wrong.
    #[error("the bearer token is not the alertmanager token")]
    WrongToken,
    /// The body's content type is not the one the route takes.
    #[error("expected Content-Type: {0}")]
    ContentType(&'static str),
    /// The body is not UTF-8.
    #[error("the body is not UTF-8")]
    NotUtf8,
    /// A Slack payload could not be parsed.
    #[error("{0}")]
    Slack(#[from] PayloadError),
    /// An Alertmanager payload could not be parsed.
    #[error("{0}")]
    Alertmanager(#[from] AmError),
    /// A generic webhook body could not be parsed.
    #[error("{0}")]
    Generic(#[from] GenericError),
    /// The alert action was refused (unknown id, not firing, acknowledged).
    #[error("{0}")]
    Alert(ActionError),
    /// The flags admin API refused the flag key.
    #[error("`{0}` is not a valid flag key")]
    InvalidFlag(String),
    /// The flag to kill does not exist.
    #[error("no flag with key `{0}`")]
    FlagNotFound(String),
    /// The flags admin API (flag-evaluate, through service chaining) failed
    /// or refused the admin token; the text is for the log.
    #[error("flags admin API: {0}")]
    FlagService(String),
    /// Storage failed; the text is for the log.
    #[error("storage: {0}")]
    Storage(StoreError),
    /// Opening storage failed; the text is for the log.
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for Rejection {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Refused(action) => Rejection::Alert(action),
            other => Rejection::Storage(other),
        }
    }
}

impl Rejection {
    /// HTTP status and error code.
    fn status(&self) -> (u16, &'static str) {
        match self {
            Rejection::NotFound => (404, "not-found"),
            Rejection::Method => (405, "method-not-allowed"),
            Rejection::NotConfigured(_) => (503, "not-configured"),
            Rejection::Signature(err) => (
                401,
                match err {
                    VerifyError::MissingTimestamp => "missing-timestamp",
                    VerifyError::BadTimestamp => "bad-timestamp",
                    VerifyError::Stale { .. } => "stale-timestamp",
                    VerifyError::MissingSignature => "missing-signature",
                    VerifyError::BadSignatureFormat => "malformed-signature",
                    VerifyError::Mismatch => "bad-signature",
                    VerifyError::NoSecret => "not-configured",
                },
            ),
            Rejection::MissingToken | Rejection::WrongToken => (401, "unauthorized"),
            Rejection::ContentType(_) => (400, "wrong-content-type"),
            Rejection::NotUtf8
            | Rejection::Slack(_)
            | Rejection::Generic(_)
            | Rejection::Alertmanager(_) => (400, "invalid-payload"),
            Rejection::Alert(ActionError::NotFound(_)) => (404, "alert-not-found"),
            Rejection::Alert(_) => (409, "alert-conflict"),
            Rejection::InvalidFlag(_) => (400, "invalid-flag-key"),
            Rejection::FlagNotFound(_) => (404, "flag-not-found"),
            Rejection::FlagService(_) => (502, "flags-unavailable"),
            Rejection::Storage(_) | Rejection::Internal(_) => (500, "internal"),
        }
    }

    /// The response for this failure. Server-side failures are logged here
    /// and answered without details.
    pub fn response(&self) -> Response {
        let (status, code) = self.status();
        let message = match self {
            Rejection::FlagService(_) => {
                eprintln!("alert-webhook: {self}");
                "the flags admin API failed".to_owned()
            }
            Rejection::Storage(_) | Rejection::Internal(_) => {
                eprintln!("alert-webhook: {self}");
                "internal error".to_owned()
            }
            _ => self.to_string(),
        };
        let mut headers = Vec::new();
        match self {
            Rejection::MissingToken | Rejection::WrongToken => {
                headers.push(("www-authenticate", "Bearer".to_owned()));
            }
            Rejection::Method => headers.push(("allow", "POST".to_owned())),
            _ => {}
        }
        platform::json_with(
            status,
            &serde_json::json!({ "error": { "code": code, "message": message } }),
            &headers,
        )
    }
}
