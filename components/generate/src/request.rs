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

/// Largest request body accepted.
const MAX_BODY: usize = dol_core::hygiene::GATEWAY_BODY_LIMIT;

/// Reads the whole request; a body over 4 MiB is a 413.
pub async fn read(request: Request) -> Result<Incoming, ApiError> {
    let request = dol_spin_platform::service::read_request(request).await?;
    dol_core::hygiene::check_body(request.body().len(), MAX_BODY)?;
    let headers = request
        .headers()
        .map(|(name, value)| {
            (
                name.to_ascii_lowercase(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    // From the URI as sent, not as parsed: a path `http::Uri` would refuse
    // still reaches the router (and its 404).
    let (path, query) = path_and_query(request.uri());
    Ok(Incoming {
        method: request.method().clone(),
        path,
        query,
        headers,
        body: request.into_body(),
    })
}

/// The path and the query (without `?`) of an absolute or origin-form URI.
fn path_and_query(uri: &str) -> (String, String) {
    let origin_form = match uri.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |at| &rest[at..]),
        None => uri,
    };
    match origin_form.split_once('?') {
        Some((path, query)) => (path.to_owned(), query.to_owned()),
        None => (origin_form.to_owned(), String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::path_and_query;

    #[test]
    fn the_path_and_query_come_from_the_uri_as_sent() {
        let split = |uri: &str| path_and_query(uri);
        assert_eq!(
            split("http://127.0.0.1:3000/v1/chat/completions?x=1&y"),
            ("/v1/chat/completions".into(), "x=1&y".into())
        );
        assert_eq!(
            split("http://h/v1/models"),
            ("/v1/models".into(), String::new())
        );
        assert_eq!(
            split("/admin/keys?org=a"),
            ("/admin/keys".into(), "org=a".into())
        );
        assert_eq!(split("http://h"), ("/".into(), String::new()));
    }
}
