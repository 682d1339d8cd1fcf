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
use wasip3::wit_bindgen::StreamResult;
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

/// `request` as spin-sdk's buffered request (method, absolute URI, headers,
/// body), or the 413 for a body over [`MAX_BODY`].
pub async fn read_request(request: wasi::Request) -> Result<Request, ApiError> {
    let method = method(request.get_method());
    let uri = uri(&request);
    let headers = request.get_headers().copy_all();
    let (_, body_done) = wit_future::new::<Result<(), ErrorCode>>(|| Ok(()));
    let (mut body, _trailers) = wasi::Request::consume_body(request, body_done);
    let mut bytes: Vec<u8> = Vec::new();
    loop {
        // Read into spare room of at least 16 KiB, so a large body is a
        // few reads, not one per byte of capacity.
        let want = bytes.len() + 16 * 1024;
        bytes.reserve(want.saturating_sub(bytes.capacity()));
        let (status, buffer) = body.read(bytes).await;
        bytes = buffer;
        if bytes.len() > MAX_BODY {
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
    Ok(Request::builder()
        .method(method)
        .uri(uri)
        .headers(headers)
        .body(bytes)
        .build())
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
    let fields = Fields::from_list(&headers).map_err(|error| {
        ErrorCode::InternalError(Some(format!("a response header is invalid: {error:?}")))
    })?;
    let status = *response.status();
    let body = response.into_body();
    let (mut writer, reader) = wit_stream::new::<u8>();
    let (_, trailers) = wit_future::new::<Result<Option<Fields>, ErrorCode>>(|| Ok(None));
    let (answer, _sent) = wasi::Response::new(fields, Some(reader), trailers);
    answer
        .set_status_code(status)
        .map_err(|()| ErrorCode::InternalError(Some(format!("invalid status {status}"))))?;
    wasip3::wit_bindgen::spawn(async move {
        // A client that went away leaves the rest unwritten: nothing to do.
        drop(writer.write_all(body).await);
    });
    Ok(answer)
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
