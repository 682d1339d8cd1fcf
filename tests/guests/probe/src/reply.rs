//! JSON replies and the error naming the conformance tests assert on.

use serde_json::{Value, json};

/// A status code and a JSON body.
pub type Reply = (u16, Value);

/// 200 with `body`.
pub fn ok(body: Value) -> Reply {
    (200, body)
}

/// A non-Spin failure (bad route, missing key…): `{"error": code}`.
pub fn fail(status: u16, code: &str) -> Reply {
    (status, json!({ "error": code }))
}

/// A Spin error: 500 `{"error": "<kebab variant>", "detail": "<Display>"}`.
pub fn spin_error<E: std::fmt::Debug + std::fmt::Display>(err: &E) -> Reply {
    let name = kebab(&variant_name(err));
    (500, json!({ "error": name, "detail": err.to_string() }))
}

/// The variant name of a wit-bindgen enum/variant from its `Debug` form
/// (`Error::NoSuchStore`, `Error::Io("…")`, `ErrorCode::DnsError(…)`).
pub fn variant_name<E: std::fmt::Debug>(err: &E) -> String {
    let debug = format!("{err:?}");
    let head = debug.split(['(', ' ', '{']).next().unwrap_or_default();
    head.rsplit("::").next().unwrap_or_default().to_owned()
}

/// `NoSuchStore` → `no-such-store`.
pub fn kebab(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_spin_errors_like_the_wit() {
        use spin_sdk::{key_value, sqlite, variables};
        assert_eq!(
            kebab(&variant_name(&key_value::Error::NoSuchStore)),
            "no-such-store"
        );
        assert_eq!(
            kebab(&variant_name(&key_value::Error::StoreTableFull)),
            "store-table-full"
        );
        assert_eq!(
            kebab(&variant_name(&sqlite::Error::Io("x (y)".into()))),
            "io"
        );
        assert_eq!(
            kebab(&variant_name(&variables::Error::Undefined("a b".into()))),
            "undefined"
        );
        assert_eq!(
            kebab(&variant_name(&variables::Error::InvalidName("".into()))),
            "invalid-name"
        );
        let denied = spin_sdk::http::ErrorCode::HttpRequestDenied;
        assert_eq!(variant_name(&denied), "HttpRequestDenied");
    }

    #[test]
    fn spin_error_is_500_with_name_and_detail() {
        let (status, body) = spin_error(&spin_sdk::key_value::Error::AccessDenied);
        assert_eq!(status, 500);
        assert_eq!(body["error"], "access-denied");
        assert!(body["detail"].is_string());
    }
}
