//! The request, read into memory once (generation bodies are small JSON
//! documents), for every route of the component.

use dol_core::error::{ApiError, Code};
use spin_sdk::http::{IncomingRequest, Method};

use crate::net;

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

/// Reads the whole request; a body over 4 MiB is a 413, an unreadable one a 400.
pub async fn read(req: IncomingRequest) -> Result<Incoming, ApiError> {
    let method = req.method();
    let path_and_query = req.path_with_query().unwrap_or_default();
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p.to_owned(), q.to_owned()),
        None => (path_and_query, String::new()),
    };
    let headers = net::header_list(&req.headers());
    let body = req
        .into_body()
        .await
        .map_err(|_| ApiError::new(Code::InvalidRequest, "could not read the request body"))?;
    dol_core::hygiene::check_body(body.len(), MAX_BODY)?;
    Ok(Incoming {
        method,
        path,
        query,
        headers,
        body,
    })
}
