//! The components' HTTP export: `wasi:http/handler@0.3.0` (WASI 0.3), so
//! Spin 4 and `dol up` reuse an instance across requests (Spin's
//! `--max-instance-reuse-count`, 128 by default) and what an instance keeps
//! — its database connection, the schema check, compiled flags — serves the
//! requests after the first. Handlers stay plain functions from spin-sdk's
//! [`Request`] to its [`Response`]: [`serve`] reads the request whole (up to
//! [`MAX_BODY`]) and writes the answer back. The Spin APIs the handlers
//! call (key-value, SQLite, variables, outbound HTTP) are spin-sdk's, which
//! Spin serves to WASI 0.3 components unchanged.
//!
//! Export one with [`crate::http_service!`]; a handler never runs two
//! requests at once in one instance, because it does not yield while it
//! runs.

use dol_core::error::{ApiError, Code};
use spin_sdk::http::{Method, Request, Response};
use wasip3::http::types::{self as wasi, ErrorCode, Fields, Method as WasiMethod, Scheme};
use wasip3::wit_bindgen::{StreamResult, StreamWriter};
use wasip3::{wit_future, wit_stream};

/// The largest request body read: the largest any route accepts
/// (`dol_core::hygiene::GATEWAY_BODY_LIMIT`); a longer one is refused with a
/// 413 before it is read to the end.
pub const MAX_BODY: usize = dol_core::hygiene::GATEWAY_BODY_LIMIT;

/// Reads `request`, calls `handler`, and answers with its response.
pub async fn serve(
    request: wasi::Request,
    handler: fn(Request) -> Response,
) -> Result<wasi::Response, ErrorCode> {
    let response = match read_request(request).await {
        Ok(request) => handler(request),
        Err(refusal) => crate::fail("", &refusal),
    };
    respond(response)
}

/// Runs `work` about `delay_ms` milliseconds from now, on a task of the
/// current request's instance (WASI 0.3: the task outlives the response,
/// and Spin and `dol up` keep the instance until it ends). Work that
/// batches the requests of those milliseconds — counters written once for
/// many answers — schedules itself with this. Call it from a request's
/// task (a handler or what it calls), not from a plain in-process export.
pub fn run_after(delay_ms: u64, work: impl FnOnce() + 'static) {
    wasip3::wit_bindgen::spawn(async move {
        wasip3::clocks::monotonic_clock::wait_for(delay_ms.saturating_mul(1_000_000)).await;
        work();
    });
}

/// A request read whole: what [`read_parts`] gives.
pub struct Parts {
    /// The method.
    pub method: Method,
    /// The URI as spin-sdk gives it: `scheme://authority` and the path with
    /// its query (or the path alone when the request names no authority).
    pub uri: String,
    /// The path with its query, as sent.
    pub path_with_query: String,
    /// The header fields in the order sent, repeated names kept.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body.
    pub body: Vec<u8>,
}

/// `request` as spin-sdk's buffered request (method, absolute URI, headers,
/// body); see [`read_parts`] for the refusals.
pub async fn read_request(request: wasi::Request) -> Result<Request, ApiError> {
    let parts = read_parts(request).await?;
    Ok(Request::builder()
        .method(parts.method)
        .uri(parts.uri)
        .headers(parts.headers)
        .body(parts.body)
        .build())
}

/// Reads `request` whole: a 413 for a body over [`MAX_BODY`] (refused
/// before it is read to the end, and never buffered past the limit), a 400
/// for one the client did not finish sending (the stream ended with an
/// error: a connection cut mid-body, a broken chunked encoding).
pub async fn read_parts(request: wasi::Request) -> Result<Parts, ApiError> {
    let method = method(request.get_method());
    let uri = uri(&request);
    let path_with_query = request.get_path_with_query().unwrap_or_default();
    let headers = request.get_headers().copy_all();
    let (_, body_done) = wit_future::new::<Result<(), ErrorCode>>(|| Ok(()));
    let (mut stream, ended) = wasi::Request::consume_body(request, body_done);
    let declared = declared_length(&headers);
    let mut body: Vec<u8> = Vec::with_capacity(declared.unwrap_or(0).min(MAX_BODY + 1));
    loop {
        // Spare room for at most what still fits under the limit (plus one
        // byte, to see that it is over), 16 KiB at a time: a read fills
        // the spare capacity, so it never reads past the limit.
        if body.capacity() == body.len() {
            body.reserve_exact((MAX_BODY + 1 - body.len()).min(16 * 1024));
        }
        let (status, read) = stream.read(body).await;
        body = read;
        if body.len() > MAX_BODY {
            return Err(ApiError::new(
                Code::PayloadTooLarge,
                format!(
                    "request body too large: more than {MAX_BODY} bytes ({} MiB), the most any \
                     route accepts",
                    MAX_BODY / (1024 * 1024)
                ),
            ));
        }
        match status {
            StreamResult::Complete(_) => {}
            StreamResult::Dropped | StreamResult::Cancelled => break,
        }
    }
    // The stream ends the same way whole or cut. A body as long as its
    // `content-length` is whole (the host ends a shorter one early); else
    // the host says which in the trailers' place, one more wait.
    let whole = declared.is_some_and(|length| length == body.len());
    if !whole && let Err(error) = ended.await {
        return Err(ApiError::new(
            Code::InvalidRequest,
            format!("could not read the request body: {error:?}"),
        ));
    }
    Ok(Parts {
        method,
        uri,
        path_with_query,
        headers,
        body,
    })
}

/// The body length the request declares (`content-length`), if any.
fn declared_length(headers: &[(String, Vec<u8>)]) -> Option<usize> {
    headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| std::str::from_utf8(value).ok()?.trim().parse().ok())
}

/// The request's URI as spin-sdk gives it: `scheme://authority` and the
/// path with its query.
fn uri(request: &wasi::Request) -> String {
    let path = request.get_path_with_query().unwrap_or_default();
    match (request.get_scheme(), request.get_authority()) {
        (Some(scheme), Some(authority)) => {
            let scheme = match scheme {
                Scheme::Http => "http".to_owned(),
                Scheme::Https => "https".to_owned(),
                Scheme::Other(other) => other,
            };
            format!("{scheme}://{authority}{path}")
        }
        _ => path,
    }
}

/// WASI's method as spin-sdk's.
fn method(method: WasiMethod) -> Method {
    match method {
        WasiMethod::Get => Method::Get,
        WasiMethod::Head => Method::Head,
        WasiMethod::Post => Method::Post,
        WasiMethod::Put => Method::Put,
        WasiMethod::Delete => Method::Delete,
        WasiMethod::Connect => Method::Connect,
        WasiMethod::Options => Method::Options,
        WasiMethod::Trace => Method::Trace,
        WasiMethod::Patch => Method::Patch,
        WasiMethod::Other(other) => Method::Other(other),
    }
}

/// `response` as a WASI response whose body a spawned task writes.
fn respond(response: Response) -> Result<wasi::Response, ErrorCode> {
    let headers: Vec<(String, Vec<u8>)> = response
        .headers()
        .map(|(name, value)| (name.to_owned(), value.as_bytes().to_vec()))
        .collect();
    let (answer, mut writer) = response_head(*response.status(), &headers)?;
    let body = response.into_body();
    wasip3::wit_bindgen::spawn(async move {
        // A client that went away leaves the rest unwritten: nothing to do.
        drop(writer.write_all(body).await);
    });
    Ok(answer)
}

/// A WASI response with `status` and `headers` (no trailers), and the
/// writer of its body: the body ends when the writer is dropped.
pub fn response_head(
    status: u16,
    headers: &[(String, Vec<u8>)],
) -> Result<(wasi::Response, StreamWriter<u8>), ErrorCode> {
    let fields = Fields::from_list(headers).map_err(|error| {
        ErrorCode::InternalError(Some(format!("a response header is invalid: {error:?}")))
    })?;
    let (writer, reader) = wit_stream::new::<u8>();
    let (_, trailers) = wit_future::new::<Result<Option<Fields>, ErrorCode>>(|| Ok(None));
    let (response, _sent) = wasi::Response::new(fields, Some(reader), trailers);
    response
        .set_status_code(status)
        .map_err(|()| ErrorCode::InternalError(Some(format!("invalid status {status}"))))?;
    Ok((response, writer))
}

/// Exports `handler` (a `fn(spin_sdk::http::Request) -> spin_sdk::http::Response`)
/// as the component's `wasi:http/handler@0.3.0`, through [`serve`].
#[macro_export]
macro_rules! http_service {
    ($handler:path) => {
        /// The component's `wasi:http/handler@0.3.0` export.
        struct HttpService;

        impl $crate::service::wasip3::exports::http::handler::Guest for HttpService {
            async fn handle(
                request: $crate::service::wasip3::http::types::Request,
            ) -> ::core::result::Result<
                $crate::service::wasip3::http::types::Response,
                $crate::service::wasip3::http::types::ErrorCode,
            > {
                $crate::service::serve(request, $handler).await
            }
        }

        $crate::service::wasip3::http::service::export!(HttpService);
    };
}

#[doc(hidden)]
pub use wasip3;

/// An outgoing WASI 0.3 request (`wasi:http/client`): `method` to the
/// absolute `url` with `headers`; `body` is written by a spawned task, so
/// the request can be sent while it goes out. The error names what is
/// wrong with the URL or a header.
pub fn outgoing_request(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> Result<wasi::Request, String> {
    let (scheme, authority, path) =
        split_url(url).ok_or_else(|| format!("the URL {url:?} is not absolute"))?;
    let headers: Vec<(String, Vec<u8>)> = headers
        .iter()
        .map(|(name, value)| (name.clone(), value.clone().into_bytes()))
        .collect();
    let fields =
        Fields::from_list(&headers).map_err(|error| format!("a request header: {error:?}"))?;
    let (mut writer, contents) = wit_stream::new::<u8>();
    let (_, trailers) = wit_future::new::<Result<Option<Fields>, ErrorCode>>(|| Ok(None));
    let (request, _sent) = wasi::Request::new(fields, Some(contents), trailers, None);
    let invalid = |what: &str| format!("invalid {what} in {url:?}");
    request
        .set_method(&outgoing_method(method))
        .map_err(|()| invalid("method"))?;
    request
        .set_scheme(Some(&scheme))
        .map_err(|()| invalid("scheme"))?;
    request
        .set_authority(Some(&authority))
        .map_err(|()| invalid("authority"))?;
    request
        .set_path_with_query(Some(&path))
        .map_err(|()| invalid("path"))?;
    wasip3::wit_bindgen::spawn(async move {
        // The server closing early leaves the rest unwritten; its answer says why.
        drop(writer.write_all(body).await);
    });
    Ok(request)
}

/// A method name as WASI's method.
fn outgoing_method(method: &str) -> WasiMethod {
    match method {
        "GET" => WasiMethod::Get,
        "HEAD" => WasiMethod::Head,
        "POST" => WasiMethod::Post,
        "PUT" => WasiMethod::Put,
        "DELETE" => WasiMethod::Delete,
        "PATCH" => WasiMethod::Patch,
        "OPTIONS" => WasiMethod::Options,
        other => WasiMethod::Other(other.to_owned()),
    }
}

/// `url` as scheme, authority and path with query; `None` unless absolute.
fn split_url(url: &str) -> Option<(Scheme, String, String)> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => Scheme::Other(other.to_owned()),
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(at) => (&rest[..at], rest[at..].to_owned()),
        None => (rest, "/".to_owned()),
    };
    if authority.is_empty() {
        return None;
    }
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path
    };
    Some((scheme, authority.to_owned(), path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_scheme_authority_and_path() {
        let split = |url: &str| {
            split_url(url)
                .map(|(scheme, authority, path)| (matches!(scheme, Scheme::Https), authority, path))
        };
        assert_eq!(
            split("https://api.openai.com/v1/chat/completions"),
            Some((true, "api.openai.com".into(), "/v1/chat/completions".into()))
        );
        assert_eq!(
            split("http://127.0.0.1:3960/v1/models?x=1"),
            Some((false, "127.0.0.1:3960".into(), "/v1/models?x=1".into()))
        );
        assert_eq!(
            split("http://h.example"),
            Some((false, "h.example".into(), "/".into()))
        );
        assert_eq!(
            split("http://h.example?k=v"),
            Some((false, "h.example".into(), "/?k=v".into()))
        );
        assert_eq!(split("/v1/x"), None);
        assert_eq!(split("http:///v1"), None);
    }
}
