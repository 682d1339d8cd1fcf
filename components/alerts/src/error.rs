//! Every way a webhook request can fail, and the one mapping from failure to
//! the one error model (`dol_core::error::ApiError`, DOL's JSON shape). 5xx bodies
//! never carry internals; those are logged (without secrets) instead.

use dol_core::error::{ApiError, Code};
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

impl From<&Rejection> for ApiError {
    fn from(rejection: &Rejection) -> Self {
        let code = match rejection {
            Rejection::NotFound => Code::NotFound,
            Rejection::Method => return ApiError::method_not_allowed("POST"),
            Rejection::NotConfigured(_) | Rejection::Signature(VerifyError::NoSecret) => {
                Code::NotConfigured
            }
            Rejection::Signature(err) => match err {
                VerifyError::MissingTimestamp => Code::MissingTimestamp,
                VerifyError::BadTimestamp => Code::BadTimestamp,
                VerifyError::Stale { .. } => Code::StaleTimestamp,
                VerifyError::MissingSignature => Code::MissingSignature,
                VerifyError::BadSignatureFormat => Code::MalformedSignature,
                VerifyError::Mismatch | VerifyError::NoSecret => Code::BadSignature,
            },
            Rejection::MissingToken | Rejection::WrongToken => {
                return ApiError::new(Code::Unauthorized, rejection.to_string())
                    .with_header("www-authenticate", "Bearer");
            }
            Rejection::ContentType(_) => Code::UnsupportedMediaType,
            Rejection::NotUtf8
            | Rejection::Slack(_)
            | Rejection::Generic(_)
            | Rejection::Alertmanager(_) => Code::InvalidPayload,
            Rejection::Alert(ActionError::NotFound(_)) => Code::AlertNotFound,
            Rejection::Alert(_) => Code::AlertConflict,
            Rejection::InvalidFlag(_) => {
                return ApiError::invalid("flag", rejection.to_string());
            }
            Rejection::FlagNotFound(_) => Code::FlagNotFound,
            Rejection::FlagService(_) => {
                return ApiError {
                    internal: Some(rejection.to_string()),
                    ..ApiError::new(Code::UpstreamFailed, "the flags admin API failed")
                };
            }
            Rejection::Storage(_) | Rejection::Internal(_) => {
                return ApiError::internal(rejection.to_string());
            }
        };
        ApiError::new(code, rejection.to_string())
    }
}

impl Rejection {
    /// The response for this failure. Server-side failures are logged and
    /// answered without details.
    pub fn response(&self) -> Response {
        platform::fail("alerts", &ApiError::from(self))
    }
}
