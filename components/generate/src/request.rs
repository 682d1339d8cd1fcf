//! The request, read into memory once (generation bodies are small JSON
//! documents), for every route of the component.

use dol_core::error::ApiError;
use spin_sdk::http::Method;
use wasip3::http::types::Request;

/// A request read into memory (generation bodies are small JSON documents).
pub struct Incoming {
    /// Method.
    pub method: Method,
    /// Path without the query.
    pub path: String,
    /// Query string without `?`.
    pub query: String,
    /// Headers, names lowercase.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Incoming {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads the whole request; a body over 4 MiB
/// (`dol_core::hygiene::GATEWAY_BODY_LIMIT`, `service::MAX_BODY`) is a 413,
/// one the client did not finish sending a 400.
pub async fn read(request: Request) -> Result<Incoming, ApiError> {
    let parts = dol_spin_platform::service::read_parts(request).await?;
    // In the order sent, repeated names kept: `header` is the first value.
    let headers = parts
        .headers
        .into_iter()
        .map(|(name, value)| {
            (
                name.to_ascii_lowercase(),
                String::from_utf8_lossy(&value).into_owned(),
            )
        })
        .collect();
    let (path, query) = match parts.path_with_query.split_once('?') {
        Some((path, query)) => (path.to_owned(), query.to_owned()),
        None => (parts.path_with_query, String::new()),
    };
    Ok(Incoming {
        method: parts.method,
        path,
        query,
        headers,
        body: parts.body,
    })
}
