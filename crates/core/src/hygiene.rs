//! HTTP hygiene: CORS for browser clients of the OpenAI routes, request body
//! limits, and the security headers of DOL's responses.

use crate::error::{ApiError, Code};

/// Largest body the gateway routes (`/v1/...`) and the generate admin API read.
pub const GATEWAY_BODY_LIMIT: usize = 4 * 1024 * 1024;
/// Largest body any other route reads (admin JSON, webhooks, OFREP, sign-in).
pub const BODY_LIMIT: usize = 1024 * 1024;

/// Security headers on every DOL JSON response (admin APIs included): no
/// content sniffing, no framing, no referrer, and a CSP that lets a JSON
/// document load nothing. Console pages set their own page CSP.
pub const SECURITY_HEADERS: [(&str, &str); 4] = [
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
];

/// Methods a browser may use on the OpenAI routes.
const CORS_METHODS: &str = "GET, POST, OPTIONS";
/// Response headers a browser client may read: every `x-dol-*` header an
/// answer carries (`openai::DolInfo::headers`, the auto entry's
/// `x-dol-selection`) and `retry-after`.
const CORS_EXPOSE: &str = "x-dol-request-id, x-dol-tier, x-dol-provider, x-dol-model, \
x-dol-attempts, x-dol-cost-micros, x-dol-cache, x-dol-quality, x-dol-selection, retry-after";

/// A 413 naming the limit, for a body of `len` bytes over `limit`.
pub fn check_body(len: usize, limit: usize) -> Result<(), ApiError> {
    if len <= limit {
        return Ok(());
    }
    Err(ApiError::new(
        Code::PayloadTooLarge,
        format!(
            "request body too large: {len} bytes, the limit is {limit} bytes ({})",
            human(limit)
        ),
    ))
}

fn human(bytes: usize) -> String {
    if bytes.is_multiple_of(1024 * 1024) {
        format!("{} MiB", bytes / (1024 * 1024))
    } else {
        format!("{} KiB", bytes / 1024)
    }
}

/// Which browser origins may call the OpenAI routes (`cors_allowed_origins`:
/// empty = none, `*` = any, or a comma-separated list of origins).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cors {
    any: bool,
    origins: Vec<String>,
}

impl Cors {
    /// Parses the variable; a malformed origin is a configuration error
    /// naming it (never silently "allow all").
    pub fn parse(variable: &str) -> Result<Self, ApiError> {
        let mut cors = Self::default();
        for item in variable.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if item == "*" {
                cors.any = true;
                continue;
            }
            let valid = item.split_once("://").is_some_and(|(scheme, rest)| {
                matches!(scheme, "http" | "https")
                    && !rest.is_empty()
                    && !rest.contains(['/', '?', '#', ' ', '*'])
            });
            if !valid {
                return Err(ApiError::new(
                    Code::InvalidConfig,
                    format!(
                        "cors_allowed_origins: {item:?} is not an origin (scheme://host[:port], no path), or *"
                    ),
                ));
            }
            cors.origins.push(item.to_ascii_lowercase());
        }
        Ok(cors)
    }

    /// Whether `origin` may call.
    pub fn allows(&self, origin: &str) -> bool {
        self.any || self.origins.iter().any(|o| o.eq_ignore_ascii_case(origin))
    }

    /// Headers for an actual (non-preflight) response to `origin`; none when
    /// the request has no Origin or it is not allowed (the browser blocks).
    pub fn response_headers(&self, origin: Option<&str>) -> Vec<(String, String)> {
        match origin {
            Some(origin) if self.allows(origin) => vec![
                ("access-control-allow-origin".into(), origin.to_owned()),
                ("access-control-expose-headers".into(), CORS_EXPOSE.into()),
                ("vary".into(), "Origin".into()),
            ],
            _ => Vec::new(),
        }
    }

    /// Answers a preflight (`OPTIONS` with `Origin` and
    /// `Access-Control-Request-Method`): the headers of a 204, or the error.
    pub fn preflight(
        &self,
        origin: Option<&str>,
        method: Option<&str>,
        request_headers: Option<&str>,
    ) -> Result<Vec<(String, String)>, ApiError> {
        let origin = origin.ok_or_else(|| {
            ApiError::invalid("origin", "a preflight request needs an Origin header")
        })?;
        if !self.allows(origin) {
            return Err(ApiError::new(
                Code::Forbidden,
                format!("origin {origin} is not allowed (cors_allowed_origins)"),
            ));
        }
        let method = method.ok_or_else(|| {
            ApiError::invalid(
                "access-control-request-method",
                "a preflight request needs an Access-Control-Request-Method header",
            )
        })?;
        if !matches!(method.to_ascii_uppercase().as_str(), "GET" | "POST") {
            return Err(ApiError::new(
                Code::Forbidden,
                format!("method {method} is not allowed from browsers; allowed: {CORS_METHODS}"),
            ));
        }
        let mut headers = vec![
            ("access-control-allow-origin".into(), origin.to_owned()),
            ("access-control-allow-methods".into(), CORS_METHODS.into()),
            ("access-control-max-age".into(), "600".into()),
            ("vary".into(), "Origin".into()),
        ];
        if let Some(requested) = request_headers.filter(|h| !h.trim().is_empty()) {
            // Browser SDKs send their own headers (x-stainless-*, anthropic-*);
            // an allowed origin may send what it asks for.
            headers.push(("access-control-allow-headers".into(), requested.to_owned()));
        }
        Ok(headers)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn body_limit_names_the_limit() {
        assert!(check_body(10, 10).is_ok());
        let error = check_body(BODY_LIMIT + 1, BODY_LIMIT).unwrap_err();
        assert_eq!(error.code, Code::PayloadTooLarge);
        assert!(
            error.message.contains("1048576 bytes (1 MiB)"),
            "{}",
            error.message
        );
    }

    #[test]
    fn empty_variable_allows_no_origin() {
        let cors = Cors::parse("").unwrap();
        assert!(!cors.allows("https://a.example"));
        assert!(cors.response_headers(Some("https://a.example")).is_empty());
    }

    #[test]
    fn listed_origins_and_star() {
        let cors = Cors::parse(" https://a.example , http://localhost:5173").unwrap();
        assert!(cors.allows("https://a.example"));
        assert!(cors.allows("http://localhost:5173"));
        assert!(!cors.allows("https://b.example"));
        assert!(Cors::parse("*").unwrap().allows("https://anything.example"));
    }

    #[test]
    fn each_malformed_origin_is_a_config_error() {
        for bad in [
            "a.example",
            "ftp://a.example",
            "https://a.example/path",
            "https://",
            "https://*.a.example",
        ] {
            let error = Cors::parse(bad).unwrap_err();
            assert_eq!(error.code, Code::InvalidConfig, "{bad}");
        }
    }

    #[test]
    fn preflight_answers_and_refusals() {
        let cors = Cors::parse("https://a.example").unwrap();
        let ok = cors
            .preflight(
                Some("https://a.example"),
                Some("POST"),
                Some("authorization, content-type"),
            )
            .unwrap();
        assert!(ok.contains(&(
            "access-control-allow-headers".into(),
            "authorization, content-type".into()
        )));
        assert_eq!(
            cors.preflight(None, Some("POST"), None)
                .unwrap_err()
                .field
                .as_deref(),
            Some("origin")
        );
        assert_eq!(
            cors.preflight(Some("https://b.example"), Some("POST"), None)
                .unwrap_err()
                .code,
            Code::Forbidden
        );
        assert_eq!(
            cors.preflight(Some("https://a.example"), None, None)
                .unwrap_err()
                .field
                .as_deref(),
            Some("access-control-request-method")
        );
        assert_eq!(
            cors.preflight(Some("https://a.example"), Some("DELETE"), None)
                .unwrap_err()
                .code,
            Code::Forbidden
        );
    }
}
