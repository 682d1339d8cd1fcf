//! One error model for the whole API: [`ApiError`] carries the status, a
//! stable machine code from one vocabulary ([`Code`]), a message, the field
//! at fault and extra headers; renderers give DOL's JSON shape, OpenAI's
//! error shape and OFREP's. Every typed error of the core converts into it
//! (`From` impls below and beside each error type), so a component maps any
//! failure with `?` and one call, and a client mistake can never become a
//! 500 by accident: only the variants that mean "our fault" map to
//! [`Code::Internal`], and those never show their details to the client.

use serde_json::{Value, json};

use crate::gateway::openai::{ErrorBody, ErrorType};

/// The stable machine codes of DOL's API (the `code` of every error body).
/// Listed, with their statuses, in the README ("Errors").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// 400: the body is not JSON (or not the JSON shape the route takes).
    InvalidJson,
    /// 400: a field, query parameter or path segment is wrong; `field` names it.
    InvalidRequest,
    /// 400: a flag definition is not valid flagd; `field` is its JSON path.
    InvalidDefinition,
    /// 400: a rollout plan is invalid; `field` names the plan field.
    InvalidPlan,
    /// 400: a webhook payload (Slack, Alertmanager, generic) does not parse.
    InvalidPayload,
    /// 401: no credentials, or wrong ones.
    Unauthorized,
    /// 401: a signed webhook has no timestamp header.
    MissingTimestamp,
    /// 401: a signed webhook's timestamp is not a number.
    BadTimestamp,
    /// 401: a signed webhook's timestamp is more than 5 minutes off.
    StaleTimestamp,
    /// 401: a signed webhook has no signature header.
    MissingSignature,
    /// 401: a signed webhook's signature is not in the expected format.
    MalformedSignature,
    /// 401: a signed webhook's signature does not match its body.
    BadSignature,
    /// 403: the credentials are valid but may not do this.
    Forbidden,
    /// 403: admin routes are closed because no admin token is configured.
    AdminClosed,
    /// 404: no such route or resource.
    NotFound,
    /// 404: no flag with that key.
    FlagNotFound,
    /// 404: the flag has no rollout.
    RolloutNotFound,
    /// 404: no alert with that id.
    AlertNotFound,
    /// 404: no scan with that name.
    UnknownScan,
    /// 404: no enabled provider serves the requested model.
    ModelNotFound,
    /// 404: no prompt template (or template version) with that name.
    TemplateNotFound,
    /// 405: the method is not served on this route (`Allow` says which are).
    MethodNotAllowed,
    /// 409: the request conflicts with the current state.
    Conflict,
    /// 409: the alert is not in a state for the action (resolve a resolved
    /// alert, acknowledge an acknowledged one).
    AlertConflict,
    /// 413: the body is larger than the route accepts.
    PayloadTooLarge,
    /// 415: the body's content type is not the one the route takes.
    UnsupportedMediaType,
    /// 429: too many requests; `Retry-After` says when to try again.
    RateLimited,
    /// 429: the key's budget is spent.
    BudgetExceeded,
    /// 500: DOL failed; the details are in its log, not in the response.
    Internal,
    /// 500: an operator's configuration (a Spin variable) is invalid.
    InvalidConfig,
    /// 502: every upstream provider failed.
    UpstreamFailed,
    /// 503: a dependency DOL needs is unavailable.
    Unavailable,
    /// 503: the route's secret or token is not configured, so it stays
    /// closed until an operator sets the Spin variable the message names.
    NotConfigured,
}

impl Code {
    /// Every code, in the order the README lists them.
    pub const ALL: [Code; 33] = [
        Code::InvalidJson,
        Code::InvalidRequest,
        Code::InvalidDefinition,
        Code::InvalidPlan,
        Code::InvalidPayload,
        Code::Unauthorized,
        Code::MissingTimestamp,
        Code::BadTimestamp,
        Code::StaleTimestamp,
        Code::MissingSignature,
        Code::MalformedSignature,
        Code::BadSignature,
        Code::Forbidden,
        Code::AdminClosed,
        Code::NotFound,
        Code::FlagNotFound,
        Code::RolloutNotFound,
        Code::AlertNotFound,
        Code::UnknownScan,
        Code::ModelNotFound,
        Code::TemplateNotFound,
        Code::MethodNotAllowed,
        Code::Conflict,
        Code::AlertConflict,
        Code::PayloadTooLarge,
        Code::UnsupportedMediaType,
        Code::RateLimited,
        Code::BudgetExceeded,
        Code::Internal,
        Code::InvalidConfig,
        Code::UpstreamFailed,
        Code::Unavailable,
        Code::NotConfigured,
    ];

    /// The code as it appears in bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::InvalidJson => "invalid-json",
            Code::InvalidRequest => "invalid-request",
            Code::InvalidDefinition => "invalid-definition",
            Code::InvalidPlan => "invalid-plan",
            Code::InvalidPayload => "invalid-payload",
            Code::Unauthorized => "unauthorized",
            Code::MissingTimestamp => "missing-timestamp",
            Code::BadTimestamp => "bad-timestamp",
            Code::StaleTimestamp => "stale-timestamp",
            Code::MissingSignature => "missing-signature",
            Code::MalformedSignature => "malformed-signature",
            Code::BadSignature => "bad-signature",
            Code::Forbidden => "forbidden",
            Code::AdminClosed => "admin-closed",
            Code::NotConfigured => "not-configured",
            Code::NotFound => "not-found",
            Code::FlagNotFound => "flag-not-found",
            Code::RolloutNotFound => "rollout-not-found",
            Code::AlertNotFound => "alert-not-found",
            Code::UnknownScan => "unknown-scan",
            Code::ModelNotFound => "model-not-found",
            Code::TemplateNotFound => "template-not-found",
            Code::MethodNotAllowed => "method-not-allowed",
            Code::Conflict => "conflict",
            Code::AlertConflict => "alert-conflict",
            Code::PayloadTooLarge => "payload-too-large",
            Code::UnsupportedMediaType => "unsupported-media-type",
            Code::RateLimited => "rate-limited",
            Code::BudgetExceeded => "budget-exceeded",
            Code::Internal => "internal",
            Code::InvalidConfig => "invalid-config",
            Code::UpstreamFailed => "upstream-failed",
            Code::Unavailable => "unavailable",
        }
    }

    /// The HTTP status the code is sent with.
    pub fn status(self) -> u16 {
        match self {
            Code::InvalidJson
            | Code::InvalidRequest
            | Code::InvalidDefinition
            | Code::InvalidPlan
            | Code::InvalidPayload => 400,
            Code::Unauthorized
            | Code::MissingTimestamp
            | Code::BadTimestamp
            | Code::StaleTimestamp
            | Code::MissingSignature
            | Code::MalformedSignature
            | Code::BadSignature => 401,
            Code::Forbidden | Code::AdminClosed => 403,
            Code::NotFound
            | Code::FlagNotFound
            | Code::RolloutNotFound
            | Code::AlertNotFound
            | Code::UnknownScan
            | Code::ModelNotFound
            | Code::TemplateNotFound => 404,
            Code::MethodNotAllowed => 405,
            Code::Conflict | Code::AlertConflict => 409,
            Code::PayloadTooLarge => 413,
            Code::UnsupportedMediaType => 415,
            Code::RateLimited | Code::BudgetExceeded => 429,
            Code::Internal | Code::InvalidConfig => 500,
            Code::UpstreamFailed => 502,
            Code::Unavailable | Code::NotConfigured => 503,
        }
    }

    /// The code in OpenAI's error shape: OpenAI's own code for the cases its
    /// clients know (a bad key, an unknown model, a rate limit, a spent
    /// quota), DOL's code for everything else.
    pub fn openai(self) -> &'static str {
        match self {
            Code::Unauthorized => "invalid_api_key",
            Code::ModelNotFound => "model_not_found",
            Code::RateLimited => "rate_limit_exceeded",
            Code::BudgetExceeded => "insufficient_quota",
            other => other.as_str(),
        }
    }

    /// Whether the code means DOL's own failure (5xx): its message is then
    /// generic and the details go to the log only.
    pub fn is_server_error(self) -> bool {
        self.status() >= 500
    }
}

/// An error on its way to a client: what went wrong, in one shape that
/// every wire format renders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The machine code (and through it, the status).
    pub code: Code,
    /// What went wrong, for a person. Generic for server errors.
    pub message: String,
    /// The request field, query parameter or JSON path at fault, if any.
    pub field: Option<String>,
    /// Extra response headers (`Allow`, `Retry-After`, `WWW-Authenticate`).
    pub headers: Vec<(String, String)>,
    /// For server errors: the details to log, never to send.
    pub internal: Option<String>,
}

impl ApiError {
    /// An error with `code` and `message`.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            field: None,
            headers: Vec::new(),
            internal: None,
        }
    }

    /// A 400 naming the field at fault.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Code::InvalidRequest, message).with_field(field)
    }

    /// A 500 whose `detail` is kept for the log; the client reads only
    /// "internal error".
    pub fn internal(detail: impl Into<String>) -> Self {
        Self {
            internal: Some(detail.into()),
            ..Self::new(Code::Internal, "internal error")
        }
    }

    /// A 405 listing the allowed methods in `Allow`.
    pub fn method_not_allowed(allow: &str) -> Self {
        Self::new(Code::MethodNotAllowed, format!("use {allow}")).with_header("allow", allow)
    }

    /// Names the field at fault.
    #[must_use]
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// Adds a response header.
    #[must_use]
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.code.status()
    }

    /// DOL's JSON shape: `{"error": {"code", "message", "field"?}}`.
    pub fn to_dol(&self) -> Value {
        let mut error = json!({ "code": self.code.as_str(), "message": self.message });
        if let Some(field) = &self.field {
            error["field"] = Value::String(field.clone());
        }
        json!({ "error": error })
    }

    /// OpenAI's error shape (`{"error": {"message", "type", "param",
    /// "code"}}`), for the OpenAI-compatible routes: the type follows the
    /// status as OpenAI's SDKs expect, `param` is the field, and `code` is
    /// OpenAI's own code where OpenAI defines one for the case
    /// ([`Code::openai`]), DOL's otherwise.
    pub fn to_openai(&self) -> ErrorBody {
        let kind = match self.status() {
            // A provider's failure passed on, as OpenAI-compatible gateways
            // report it (`server_error` stays DOL's own failure).
            _ if self.code == Code::UpstreamFailed => ErrorType::Api,
            401 => ErrorType::Authentication,
            403 => ErrorType::Permission,
            404 => ErrorType::NotFound,
            429 => ErrorType::RateLimit,
            status if status >= 500 => ErrorType::Server,
            _ => ErrorType::InvalidRequest,
        };
        ErrorBody::new(
            self.message.clone(),
            kind,
            self.field.clone(),
            Some(self.code.openai().to_owned()),
        )
    }

    /// OFREP's error shape (`{"errorCode", "errorDetails"}`), with OFREP's
    /// own codes: PARSE_ERROR, INVALID_CONTEXT, FLAG_NOT_FOUND or GENERAL.
    pub fn to_ofrep(&self) -> Value {
        let code = match self.code {
            Code::InvalidJson => "PARSE_ERROR",
            Code::InvalidRequest => "INVALID_CONTEXT",
            Code::FlagNotFound => "FLAG_NOT_FOUND",
            _ => "GENERAL",
        };
        json!({ "errorCode": code, "errorDetails": self.message })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status(),
            self.code.as_str(),
            self.message
        )?;
        if let Some(internal) = &self.internal {
            write!(f, " ({internal})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

impl From<crate::flags::admin::AdminError> for ApiError {
    fn from(err: crate::flags::admin::AdminError) -> Self {
        use crate::flags::admin::AdminError;
        match err {
            AdminError::Json(message) => ApiError::new(Code::InvalidJson, message),
            AdminError::Invalid { path, message } => {
                ApiError::new(Code::InvalidDefinition, format!("{path}: {message}"))
                    .with_field(path)
            }
            AdminError::NotFound(key) => {
                ApiError::new(Code::FlagNotFound, format!("no flag with key '{key}'"))
            }
            AdminError::Conflict(message) => ApiError::new(Code::Conflict, message),
        }
    }
}

impl From<crate::flags::store::FlagStoreError> for ApiError {
    fn from(err: crate::flags::store::FlagStoreError) -> Self {
        ApiError::internal(err.to_string())
    }
}

impl From<crate::rollouts::store::RolloutError> for ApiError {
    fn from(err: crate::rollouts::store::RolloutError) -> Self {
        ApiError::from(&err)
    }
}

impl From<&crate::rollouts::store::RolloutError> for ApiError {
    fn from(err: &crate::rollouts::store::RolloutError) -> Self {
        use crate::rollouts::store::RolloutError;
        match err {
            RolloutError::Plan(plan) => {
                ApiError::new(Code::InvalidPlan, err.to_string()).with_field(plan.field.clone())
            }
            RolloutError::FlagNotFound(_) => ApiError::new(Code::FlagNotFound, err.to_string()),
            RolloutError::NotFound(_) => ApiError::new(Code::RolloutNotFound, err.to_string()),
            RolloutError::Conflict(_) => ApiError::new(Code::Conflict, err.to_string()),
            RolloutError::Flags(_)
            | RolloutError::Sql(_)
            | RolloutError::Outbox(_)
            | RolloutError::Corrupt(_) => ApiError::internal(err.to_string()),
        }
    }
}

impl From<&crate::observe::admin::AdminError> for ApiError {
    /// 400 bad input, 404 unknown rule/silence/alert, 409 an alert not in a
    /// state for the action or a duplicate silence, 500 configuration or
    /// storage (whose text stays in the log).
    fn from(err: &crate::observe::admin::AdminError) -> Self {
        use crate::observe::admin::AdminError;
        use crate::observe::alerts::ActionError;
        use crate::observe::store::StoreError;
        let code = match err {
            AdminError::Invalid { field, .. } => {
                return ApiError::invalid(field.clone(), err.to_string());
            }
            AdminError::Store(StoreError::InvalidSilence(_)) => Code::InvalidRequest,
            AdminError::NotFound(_) => Code::NotFound,
            AdminError::Store(StoreError::Refused(ActionError::NotFound(_))) => Code::AlertNotFound,
            AdminError::Store(StoreError::Refused(_)) => Code::AlertConflict,
            AdminError::Store(StoreError::DuplicateSilence(_)) => Code::Conflict,
            AdminError::Config(_) => {
                // An operator's configuration mistake: named in the body
                // (it is theirs to fix), but still a server-side failure.
                return ApiError::new(Code::InvalidConfig, err.to_string());
            }
            AdminError::Store(_) => return ApiError::internal(err.to_string()),
        };
        ApiError::new(code, err.to_string())
    }
}

impl From<crate::observe::admin::AdminError> for ApiError {
    fn from(err: crate::observe::admin::AdminError) -> Self {
        ApiError::from(&err)
    }
}

impl From<crate::experiments::definition::DefinitionError> for ApiError {
    fn from(err: crate::experiments::definition::DefinitionError) -> Self {
        ApiError::invalid(err.field().to_owned(), err.to_string())
    }
}

impl From<crate::experiments::store::StoreError> for ApiError {
    fn from(err: crate::experiments::store::StoreError) -> Self {
        ApiError::internal(err.to_string())
    }
}

impl From<crate::gateway::settings::SettingsError> for ApiError {
    /// The operator's configuration is wrong: a 500 that names the variable
    /// (the operator reads it; no internals are in it).
    fn from(err: crate::gateway::settings::SettingsError) -> Self {
        ApiError::new(Code::InvalidConfig, format!("gateway misconfigured: {err}"))
    }
}

impl From<crate::gateway::pipeline::PipelineError> for ApiError {
    fn from(err: crate::gateway::pipeline::PipelineError) -> Self {
        ApiError::from(&err)
    }
}

impl From<crate::experiments::attribution::AttributionError> for ApiError {
    fn from(err: crate::experiments::attribution::AttributionError) -> Self {
        use crate::experiments::attribution::AttributionError;
        match err {
            AttributionError::Invalid(e) => ApiError::invalid(e.field().to_owned(), e.to_string()),
            AttributionError::Lookup(_) => ApiError::internal(err.to_string()),
        }
    }
}

impl From<crate::storage::StatementError> for ApiError {
    fn from(err: crate::storage::StatementError) -> Self {
        ApiError::internal(err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::admin::AdminError;

    #[test]
    fn every_code_is_distinct_kebab_case_with_a_status() {
        let mut seen = std::collections::BTreeSet::new();
        for code in Code::ALL {
            let text = code.as_str();
            assert!(seen.insert(text), "{text} twice");
            assert!(
                text.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
                "{text}"
            );
            assert!((400..600).contains(&code.status()), "{text}");
        }
    }

    #[test]
    fn dol_shape_names_code_message_and_field() {
        let err = ApiError::invalid("rules[2].threshold", "must be a number");
        assert_eq!(err.status(), 400);
        assert_eq!(
            err.to_dol(),
            json!({"error": {"code": "invalid-request", "message": "must be a number", "field": "rules[2].threshold"}})
        );
        let plain = ApiError::new(Code::NotFound, "no such route");
        assert_eq!(
            plain.to_dol(),
            json!({"error": {"code": "not-found", "message": "no such route"}})
        );
    }

    #[test]
    fn server_errors_keep_their_details_out_of_every_body() {
        let err = ApiError::internal("INSERT INTO keys: disk I/O error at /var/dol");
        assert_eq!(err.status(), 500);
        for body in [
            err.to_dol().to_string(),
            serde_json::to_string(&err.to_openai()).unwrap(),
            err.to_ofrep().to_string(),
        ] {
            assert!(!body.contains("disk"), "{body}");
            assert!(body.contains("internal error"), "{body}");
        }
        assert!(
            err.to_string().contains("disk I/O"),
            "the log line keeps it"
        );
    }

    #[test]
    fn openai_shape_follows_the_status() {
        let cases = [
            (
                ApiError::invalid("messages", "required"),
                "invalid_request_error",
            ),
            (
                ApiError::new(Code::Unauthorized, "bad key"),
                "authentication_error",
            ),
            (ApiError::new(Code::Forbidden, "no"), "permission_error"),
            (ApiError::new(Code::NotFound, "no"), "not_found_error"),
            (
                ApiError::new(Code::BudgetExceeded, "spent"),
                "rate_limit_error",
            ),
            (ApiError::internal("x"), "server_error"),
        ];
        for (err, kind) in cases {
            let body = serde_json::to_value(err.to_openai()).unwrap();
            assert_eq!(body["error"]["type"], kind, "{body}");
            assert_eq!(body["error"]["code"], err.code.openai());
            assert_eq!(body["error"]["param"], json!(err.field));
        }
    }

    #[test]
    fn openai_shape_uses_openais_codes_where_it_has_them() {
        let code = |c: Code| {
            serde_json::to_value(ApiError::new(c, "x").to_openai()).unwrap()["error"]["code"]
                .clone()
        };
        assert_eq!(code(Code::Unauthorized), "invalid_api_key");
        assert_eq!(code(Code::ModelNotFound), "model_not_found");
        assert_eq!(code(Code::RateLimited), "rate_limit_exceeded");
        assert_eq!(code(Code::BudgetExceeded), "insufficient_quota");
        // Everything else is DOL's vocabulary, as in DOL's own shape.
        assert_eq!(code(Code::InvalidRequest), "invalid-request");
        assert_eq!(code(Code::TemplateNotFound), "template-not-found");
    }

    #[test]
    fn ofrep_shape_uses_ofrep_codes() {
        assert_eq!(
            ApiError::new(Code::InvalidJson, "not JSON").to_ofrep(),
            json!({"errorCode": "PARSE_ERROR", "errorDetails": "not JSON"})
        );
        assert_eq!(
            ApiError::new(Code::FlagNotFound, "x").to_ofrep()["errorCode"],
            "FLAG_NOT_FOUND"
        );
        assert_eq!(
            ApiError::new(Code::RateLimited, "slow down").to_ofrep()["errorCode"],
            "GENERAL"
        );
    }

    #[test]
    fn flag_admin_errors_keep_their_codes_and_statuses() {
        let cases = [
            (AdminError::Json("x".into()), 400, "invalid-json"),
            (
                AdminError::Invalid {
                    path: "flags.x.state".into(),
                    message: "bad".into(),
                },
                400,
                "invalid-definition",
            ),
            (AdminError::NotFound("k".into()), 404, "flag-not-found"),
            (AdminError::Conflict("c".into()), 409, "conflict"),
        ];
        for (err, status, code) in cases {
            let api = ApiError::from(err.clone());
            assert_eq!((api.status(), api.code.as_str()), (status, code));
            assert_eq!(api.status(), err.status());
            assert_eq!(api.to_dol()["error"]["code"], err.body()["error"]["code"]);
        }
    }

    #[test]
    fn method_not_allowed_lists_the_methods() {
        let err = ApiError::method_not_allowed("GET, PUT");
        assert_eq!(err.status(), 405);
        assert_eq!(
            err.headers,
            vec![("allow".to_owned(), "GET, PUT".to_owned())]
        );
    }
}
