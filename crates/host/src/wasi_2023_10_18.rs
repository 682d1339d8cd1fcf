//! WASI 0.2.0-rc-2023-10-18, as Spin still serves it: `wasi:http` types and
//! outgoing handler with the `wasi:io` poll and streams of that release
//! candidate, for components built against it (Spin's own runtime tests
//! `internal-http` and `internal-http-streaming` are).
//!
//! Nothing here is a second implementation: the old interfaces are bound
//! (`crate::bindings::wasi_2023_10_18`) with the current implementation's
//! resource types, and every function forwards to the current WASI 0.2 host
//! (`wasmtime-wasi` streams and poll, `wasmtime-wasi-http` types and outgoing
//! handler), converting only the types whose shape changed. Outbound requests
//! therefore take the same path as 0.2 ones: the component's
//! `allowed_outbound_hosts`, `*.spin.internal` chaining and `self` requests
//! ([`crate::outbound::OutboundHooks`]).

use std::time::Duration;

use wasmtime::component::Resource;
use wasmtime::format_err;
use wasmtime_wasi::p2::bindings::io::{error as io_error, poll as io_poll, streams as io_streams};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, DynPollable, IoError, StreamError};
use wasmtime_wasi_http::p2::bindings::http::{outgoing_handler as http_outgoing, types as http};
use wasmtime_wasi_http::p2::body::{HostFutureTrailers, HostIncomingBody, HostOutgoingBody};
use wasmtime_wasi_http::p2::types::{
    HostFutureIncomingResponse, HostIncomingRequest, HostIncomingResponse, HostOutgoingRequest,
    HostOutgoingResponse, HostResponseOutparam,
};
use wasmtime_wasi_http::p2::{HeaderError, HttpError};
use wasmtime_wasi_http::{FieldMap, RequestOptions, WasiHttpView};

use crate::bindings::wasi_2023_10_18::wasi::http::{
    outgoing_handler as old_outgoing, types as old,
};
use crate::bindings::wasi_2023_10_18::wasi::io::{poll as old_poll, streams as old_streams};
use crate::instance::InstanceState;

type StreamResult<T> = Result<T, StreamError>;

/// How many bytes one step of `output-stream.forward` moves.
const FORWARD_CHUNK: u64 = 64 * 1024;

/// A borrow of the resource `resource` names, for passing it on while keeping it.
fn borrow<T: 'static>(resource: &Resource<T>) -> Resource<T> {
    Resource::new_borrow(resource.rep())
}

/// The current `method` of an old one.
fn method_to_current(method: old::Method) -> http::Method {
    match method {
        old::Method::Get => http::Method::Get,
        old::Method::Head => http::Method::Head,
        old::Method::Post => http::Method::Post,
        old::Method::Put => http::Method::Put,
        old::Method::Delete => http::Method::Delete,
        old::Method::Connect => http::Method::Connect,
        old::Method::Options => http::Method::Options,
        old::Method::Trace => http::Method::Trace,
        old::Method::Patch => http::Method::Patch,
        old::Method::Other(other) => http::Method::Other(other),
    }
}

/// The old `method` of a current one.
fn method_from_current(method: http::Method) -> old::Method {
    match method {
        http::Method::Get => old::Method::Get,
        http::Method::Head => old::Method::Head,
        http::Method::Post => old::Method::Post,
        http::Method::Put => old::Method::Put,
        http::Method::Delete => old::Method::Delete,
        http::Method::Connect => old::Method::Connect,
        http::Method::Options => old::Method::Options,
        http::Method::Trace => old::Method::Trace,
        http::Method::Patch => old::Method::Patch,
        http::Method::Other(other) => old::Method::Other(other),
    }
}

fn scheme_to_current(scheme: old::Scheme) -> http::Scheme {
    match scheme {
        old::Scheme::Http => http::Scheme::Http,
        old::Scheme::Https => http::Scheme::Https,
        old::Scheme::Other(other) => http::Scheme::Other(other),
    }
}

fn scheme_from_current(scheme: http::Scheme) -> old::Scheme {
    match scheme {
        http::Scheme::Http => old::Scheme::Http,
        http::Scheme::Https => old::Scheme::Https,
        http::Scheme::Other(other) => old::Scheme::Other(other),
    }
}

/// The old four-way `error` for a current `error-code`: timeouts, URL and
/// protocol problems keep their kind; everything else (a denied host among
/// them) is `unexpected-error` naming the current code.
fn error_from_code(code: http::ErrorCode) -> old::Error {
    use http::ErrorCode as Code;
    let text = format!("{code:?}");
    match code {
        Code::DnsTimeout
        | Code::ConnectionTimeout
        | Code::ConnectionReadTimeout
        | Code::ConnectionWriteTimeout
        | Code::HttpResponseTimeout => old::Error::TimeoutError(text),
        Code::HttpRequestUriInvalid | Code::HttpRequestUriTooLong => old::Error::InvalidUrl(text),
        Code::HttpProtocolError
        | Code::HttpResponseIncomplete
        | Code::HttpRequestMethodInvalid
        | Code::HttpResponseTransferCoding(_)
        | Code::HttpResponseContentCoding(_) => old::Error::ProtocolError(text),
        _ => old::Error::UnexpectedError(text),
    }
}

/// The current `error-code` a guest's old `error` stands for.
fn error_to_code(error: old::Error) -> http::ErrorCode {
    match error {
        old::Error::InvalidUrl(_) => http::ErrorCode::HttpRequestUriInvalid,
        old::Error::TimeoutError(_) => http::ErrorCode::HttpResponseTimeout,
        old::Error::ProtocolError(_) => http::ErrorCode::HttpProtocolError,
        old::Error::UnexpectedError(message) => http::ErrorCode::InternalError(Some(message)),
    }
}

/// The old `fields` functions have no error case: a header the current
/// implementation refuses (forbidden or malformed) traps, naming why.
fn header_result<T>(what: &str, result: Result<T, HeaderError>) -> wasmtime::Result<T> {
    result.or_else(|error| Err(format_err!("{what}: {:?}", error.downcast()?)))
}

/// An `error-code` where the old interface has no error case traps, naming it.
fn http_result<T>(what: &str, result: Result<T, HttpError>) -> wasmtime::Result<T> {
    result.or_else(|error| Err(format_err!("{what}: {:?}", error.downcast()?)))
}

impl old_poll::Host for InstanceState {
    async fn poll_list(
        &mut self,
        pollables: Vec<Resource<DynPollable>>,
    ) -> wasmtime::Result<Vec<u32>> {
        io_poll::Host::poll(&mut self.table, pollables).await
    }

    async fn poll_one(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        io_poll::HostPollable::block(&mut self.table, pollable).await
    }
}

impl old_poll::HostPollable for InstanceState {
    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        io_poll::HostPollable::drop(&mut self.table, pollable)
    }
}

impl old_streams::Host for InstanceState {
    fn convert_stream_error(
        &mut self,
        error: StreamError,
    ) -> wasmtime::Result<old_streams::StreamError> {
        match error {
            StreamError::Closed => Ok(old_streams::StreamError::Closed),
            StreamError::LastOperationFailed(error) => Ok(
                old_streams::StreamError::LastOperationFailed(self.table.push(error)?),
            ),
            StreamError::Trap(error) => Err(error),
        }
    }
}

impl old_streams::HostError for InstanceState {
    fn to_debug_string(&mut self, error: Resource<IoError>) -> wasmtime::Result<String> {
        io_error::HostError::to_debug_string(&mut self.table, error)
    }

    fn drop(&mut self, error: Resource<IoError>) -> wasmtime::Result<()> {
        io_error::HostError::drop(&mut self.table, error)
    }
}

impl old_streams::HostInputStream for InstanceState {
    fn read(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<Vec<u8>> {
        io_streams::HostInputStream::read(&mut self.table, stream, len)
    }

    async fn blocking_read(
        &mut self,
        stream: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<Vec<u8>> {
        io_streams::HostInputStream::blocking_read(&mut self.table, stream, len).await
    }

    fn skip(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<u64> {
        io_streams::HostInputStream::skip(&mut self.table, stream, len)
    }

    async fn blocking_skip(
        &mut self,
        stream: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        io_streams::HostInputStream::blocking_skip(&mut self.table, stream, len).await
    }

    fn subscribe(
        &mut self,
        stream: Resource<DynInputStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        io_streams::HostInputStream::subscribe(&mut self.table, stream)
    }

    async fn drop(&mut self, stream: Resource<DynInputStream>) -> wasmtime::Result<()> {
        io_streams::HostInputStream::drop(&mut self.table, stream).await
    }
}

impl old_streams::HostOutputStream for InstanceState {
    fn check_write(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<u64> {
        io_streams::HostOutputStream::check_write(&mut self.table, stream)
    }

    fn write(&mut self, stream: Resource<DynOutputStream>, contents: Vec<u8>) -> StreamResult<()> {
        io_streams::HostOutputStream::write(&mut self.table, stream, contents)
    }

    async fn blocking_write_and_flush(
        &mut self,
        stream: Resource<DynOutputStream>,
        contents: Vec<u8>,
    ) -> StreamResult<()> {
        io_streams::HostOutputStream::blocking_write_and_flush(&mut self.table, stream, contents)
            .await
    }

    fn flush(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<()> {
        io_streams::HostOutputStream::flush(&mut self.table, stream)
    }

    async fn blocking_flush(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<()> {
        io_streams::HostOutputStream::blocking_flush(&mut self.table, stream).await
    }

    fn subscribe(
        &mut self,
        stream: Resource<DynOutputStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        io_streams::HostOutputStream::subscribe(&mut self.table, stream)
    }

    fn write_zeroes(&mut self, stream: Resource<DynOutputStream>, len: u64) -> StreamResult<()> {
        io_streams::HostOutputStream::write_zeroes(&mut self.table, stream, len)
    }

    async fn blocking_write_zeroes_and_flush(
        &mut self,
        stream: Resource<DynOutputStream>,
        len: u64,
    ) -> StreamResult<()> {
        io_streams::HostOutputStream::blocking_write_zeroes_and_flush(&mut self.table, stream, len)
            .await
    }

    fn splice(
        &mut self,
        stream: Resource<DynOutputStream>,
        src: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        // The old `splice` takes the input stream (an owned handle): it is
        // done with once the call returns.
        let moved =
            io_streams::HostOutputStream::splice(&mut self.table, stream, borrow(&src), len);
        self.table
            .delete(src)
            .map_err(|e| StreamError::Trap(e.into()))?;
        moved
    }

    async fn blocking_splice(
        &mut self,
        stream: Resource<DynOutputStream>,
        src: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        let moved = io_streams::HostOutputStream::blocking_splice(
            &mut self.table,
            stream,
            borrow(&src),
            len,
        )
        .await;
        self.table
            .delete(src)
            .map_err(|e| StreamError::Trap(e.into()))?;
        moved
    }

    async fn forward(
        &mut self,
        stream: Resource<DynOutputStream>,
        src: Resource<DynInputStream>,
    ) -> StreamResult<u64> {
        // Until the input ends: the bytes moved, or the first real failure.
        let mut total = 0u64;
        let outcome = loop {
            match io_streams::HostOutputStream::blocking_splice(
                &mut self.table,
                borrow(&stream),
                borrow(&src),
                FORWARD_CHUNK,
            )
            .await
            {
                Ok(moved) => total = total.saturating_add(moved),
                Err(StreamError::Closed) => break Ok(total),
                Err(error) => break Err(error),
            }
        };
        self.table
            .delete(src)
            .map_err(|e| StreamError::Trap(e.into()))?;
        outcome
    }

    async fn drop(&mut self, stream: Resource<DynOutputStream>) -> wasmtime::Result<()> {
        io_streams::HostOutputStream::drop(&mut self.table, stream).await
    }
}

impl old::Host for InstanceState {}

impl old::HostFields for InstanceState {
    fn new(&mut self, entries: Vec<(String, Vec<u8>)>) -> wasmtime::Result<Resource<FieldMap>> {
        header_result(
            "fields",
            http::HostFields::from_list(&mut self.http(), entries),
        )
    }

    fn get(&mut self, fields: Resource<FieldMap>, name: String) -> wasmtime::Result<Vec<Vec<u8>>> {
        http::HostFields::get(&mut self.http(), fields, name)
    }

    fn set(
        &mut self,
        fields: Resource<FieldMap>,
        name: String,
        values: Vec<Vec<u8>>,
    ) -> wasmtime::Result<()> {
        header_result(
            "fields.set",
            http::HostFields::set(&mut self.http(), fields, name, values),
        )
    }

    fn delete(&mut self, fields: Resource<FieldMap>, name: String) -> wasmtime::Result<()> {
        header_result(
            "fields.delete",
            http::HostFields::delete(&mut self.http(), fields, name),
        )
    }

    fn append(
        &mut self,
        fields: Resource<FieldMap>,
        name: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<()> {
        header_result(
            "fields.append",
            http::HostFields::append(&mut self.http(), fields, name, value),
        )
    }

    fn entries(&mut self, fields: Resource<FieldMap>) -> wasmtime::Result<Vec<(String, Vec<u8>)>> {
        http::HostFields::entries(&mut self.http(), fields)
    }

    fn clone(&mut self, fields: Resource<FieldMap>) -> wasmtime::Result<Resource<FieldMap>> {
        http::HostFields::clone(&mut self.http(), fields)
    }

    fn drop(&mut self, fields: Resource<FieldMap>) -> wasmtime::Result<()> {
        http::HostFields::drop(&mut self.http(), fields)
    }
}

impl old::HostIncomingRequest for InstanceState {
    fn method(&mut self, request: Resource<HostIncomingRequest>) -> wasmtime::Result<old::Method> {
        http::HostIncomingRequest::method(&mut self.http(), request).map(method_from_current)
    }

    fn path_with_query(
        &mut self,
        request: Resource<HostIncomingRequest>,
    ) -> wasmtime::Result<Option<String>> {
        http::HostIncomingRequest::path_with_query(&mut self.http(), request)
    }

    fn scheme(
        &mut self,
        request: Resource<HostIncomingRequest>,
    ) -> wasmtime::Result<Option<old::Scheme>> {
        Ok(http::HostIncomingRequest::scheme(&mut self.http(), request)?.map(scheme_from_current))
    }

    fn authority(
        &mut self,
        request: Resource<HostIncomingRequest>,
    ) -> wasmtime::Result<Option<String>> {
        http::HostIncomingRequest::authority(&mut self.http(), request)
    }

    fn headers(
        &mut self,
        request: Resource<HostIncomingRequest>,
    ) -> wasmtime::Result<Resource<FieldMap>> {
        http::HostIncomingRequest::headers(&mut self.http(), request)
    }

    fn consume(
        &mut self,
        request: Resource<HostIncomingRequest>,
    ) -> wasmtime::Result<Result<Resource<HostIncomingBody>, ()>> {
        http::HostIncomingRequest::consume(&mut self.http(), request)
    }

    fn drop(&mut self, request: Resource<HostIncomingRequest>) -> wasmtime::Result<()> {
        http::HostIncomingRequest::drop(&mut self.http(), request)
    }
}

impl old::HostOutgoingRequest for InstanceState {
    fn new(
        &mut self,
        method: old::Method,
        path_with_query: Option<String>,
        scheme: Option<old::Scheme>,
        authority: Option<String>,
        headers: Resource<FieldMap>,
    ) -> wasmtime::Result<Resource<HostOutgoingRequest>> {
        let mut view = self.http();
        // The old constructor borrows the headers; the current one takes them.
        let headers = http::HostFields::clone(&mut view, headers)?;
        let request = http::HostOutgoingRequest::new(&mut view, headers)?;
        let method = method_to_current(method);
        let scheme = scheme.map(scheme_to_current);
        let checks = [
            (
                "method",
                http::HostOutgoingRequest::set_method(&mut view, borrow(&request), method)?,
            ),
            (
                "path-with-query",
                http::HostOutgoingRequest::set_path_with_query(
                    &mut view,
                    borrow(&request),
                    path_with_query,
                )?,
            ),
            (
                "scheme",
                http::HostOutgoingRequest::set_scheme(&mut view, borrow(&request), scheme)?,
            ),
            (
                "authority",
                http::HostOutgoingRequest::set_authority(&mut view, borrow(&request), authority)?,
            ),
        ];
        // The old constructor cannot fail: a malformed part traps, naming it.
        if let Some((part, _)) = checks.iter().find(|(_, outcome)| outcome.is_err()) {
            http::HostOutgoingRequest::drop(&mut view, request)?;
            return Err(format_err!("outgoing-request: invalid {part}"));
        }
        Ok(request)
    }

    fn write(
        &mut self,
        request: Resource<HostOutgoingRequest>,
    ) -> wasmtime::Result<Result<Resource<HostOutgoingBody>, ()>> {
        http::HostOutgoingRequest::body(&mut self.http(), request)
    }

    fn drop(&mut self, request: Resource<HostOutgoingRequest>) -> wasmtime::Result<()> {
        http::HostOutgoingRequest::drop(&mut self.http(), request)
    }
}

impl old::HostResponseOutparam for InstanceState {
    fn set(
        &mut self,
        param: Resource<HostResponseOutparam>,
        response: Result<Resource<HostOutgoingResponse>, old::Error>,
    ) -> wasmtime::Result<()> {
        http::HostResponseOutparam::set(&mut self.http(), param, response.map_err(error_to_code))
    }

    fn drop(&mut self, param: Resource<HostResponseOutparam>) -> wasmtime::Result<()> {
        http::HostResponseOutparam::drop(&mut self.http(), param)
    }
}

impl old::HostIncomingResponse for InstanceState {
    fn status(&mut self, response: Resource<HostIncomingResponse>) -> wasmtime::Result<u16> {
        http::HostIncomingResponse::status(&mut self.http(), response)
    }

    fn headers(
        &mut self,
        response: Resource<HostIncomingResponse>,
    ) -> wasmtime::Result<Resource<FieldMap>> {
        http::HostIncomingResponse::headers(&mut self.http(), response)
    }

    fn consume(
        &mut self,
        response: Resource<HostIncomingResponse>,
    ) -> wasmtime::Result<Result<Resource<HostIncomingBody>, ()>> {
        http::HostIncomingResponse::consume(&mut self.http(), response)
    }

    fn drop(&mut self, response: Resource<HostIncomingResponse>) -> wasmtime::Result<()> {
        http::HostIncomingResponse::drop(&mut self.http(), response)
    }
}

impl old::HostIncomingBody for InstanceState {
    fn stream(
        &mut self,
        body: Resource<HostIncomingBody>,
    ) -> wasmtime::Result<Result<Resource<DynInputStream>, ()>> {
        http::HostIncomingBody::stream(&mut self.http(), body)
    }

    fn finish(
        &mut self,
        body: Resource<HostIncomingBody>,
    ) -> wasmtime::Result<Resource<HostFutureTrailers>> {
        http::HostIncomingBody::finish(&mut self.http(), body)
    }

    fn drop(&mut self, body: Resource<HostIncomingBody>) -> wasmtime::Result<()> {
        http::HostIncomingBody::drop(&mut self.http(), body)
    }
}

impl old::HostFutureTrailers for InstanceState {
    fn subscribe(
        &mut self,
        trailers: Resource<HostFutureTrailers>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        http::HostFutureTrailers::subscribe(&mut self.http(), trailers)
    }

    fn get(
        &mut self,
        trailers: Resource<HostFutureTrailers>,
    ) -> wasmtime::Result<Option<Result<Resource<FieldMap>, old::Error>>> {
        let mut view = self.http();
        let outcome = match http::HostFutureTrailers::get(&mut view, trailers)? {
            None => None,
            Some(Ok(Ok(Some(trailers)))) => Some(Ok(trailers)),
            // The old interface always hands out a trailers resource.
            Some(Ok(Ok(None))) => Some(Ok(http::HostFields::new(&mut view)?)),
            Some(Ok(Err(code))) => Some(Err(error_from_code(code))),
            Some(Err(())) => Some(Err(old::Error::UnexpectedError(
                "the trailers were already retrieved".to_string(),
            ))),
        };
        Ok(outcome)
    }

    fn drop(&mut self, trailers: Resource<HostFutureTrailers>) -> wasmtime::Result<()> {
        http::HostFutureTrailers::drop(&mut self.http(), trailers)
    }
}

impl old::HostOutgoingResponse for InstanceState {
    fn new(
        &mut self,
        status: u16,
        headers: Resource<FieldMap>,
    ) -> wasmtime::Result<Resource<HostOutgoingResponse>> {
        let mut view = self.http();
        // The old constructor borrows the headers; the current one takes them.
        let headers = http::HostFields::clone(&mut view, headers)?;
        let response = http::HostOutgoingResponse::new(&mut view, headers)?;
        if http::HostOutgoingResponse::set_status_code(&mut view, borrow(&response), status)?
            .is_err()
        {
            http::HostOutgoingResponse::drop(&mut view, response)?;
            return Err(format_err!(
                "outgoing-response: invalid status code {status}"
            ));
        }
        Ok(response)
    }

    fn write(
        &mut self,
        response: Resource<HostOutgoingResponse>,
    ) -> wasmtime::Result<Result<Resource<HostOutgoingBody>, ()>> {
        http::HostOutgoingResponse::body(&mut self.http(), response)
    }

    fn drop(&mut self, response: Resource<HostOutgoingResponse>) -> wasmtime::Result<()> {
        http::HostOutgoingResponse::drop(&mut self.http(), response)
    }
}

impl old::HostOutgoingBody for InstanceState {
    fn write(
        &mut self,
        body: Resource<HostOutgoingBody>,
    ) -> wasmtime::Result<Result<Resource<DynOutputStream>, ()>> {
        http::HostOutgoingBody::write(&mut self.http(), body)
    }

    fn finish(
        &mut self,
        body: Resource<HostOutgoingBody>,
        trailers: Option<Resource<FieldMap>>,
    ) -> wasmtime::Result<()> {
        http_result(
            "outgoing-body.finish",
            http::HostOutgoingBody::finish(&mut self.http(), body, trailers),
        )
    }

    fn drop(&mut self, body: Resource<HostOutgoingBody>) -> wasmtime::Result<()> {
        http::HostOutgoingBody::drop(&mut self.http(), body)
    }
}

impl old::HostFutureIncomingResponse for InstanceState {
    fn get(
        &mut self,
        response: Resource<HostFutureIncomingResponse>,
    ) -> wasmtime::Result<Option<Result<Result<Resource<HostIncomingResponse>, old::Error>, ()>>>
    {
        let outcome = http::HostFutureIncomingResponse::get(&mut self.http(), response)?;
        Ok(outcome.map(|ready| ready.map(|response| response.map_err(error_from_code))))
    }

    fn subscribe(
        &mut self,
        response: Resource<HostFutureIncomingResponse>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        http::HostFutureIncomingResponse::subscribe(&mut self.http(), response)
    }

    fn drop(&mut self, response: Resource<HostFutureIncomingResponse>) -> wasmtime::Result<()> {
        http::HostFutureIncomingResponse::drop(&mut self.http(), response)
    }
}

/// An old `request-options` record as the current resource's value.
fn request_options(options: old::RequestOptions) -> RequestOptions {
    let millis = |ms: Option<u32>| ms.map(|ms| Duration::from_millis(u64::from(ms)));
    RequestOptions {
        connect_timeout: millis(options.connect_timeout_ms),
        first_byte_timeout: millis(options.first_byte_timeout_ms),
        between_bytes_timeout: millis(options.between_bytes_timeout_ms),
    }
}

impl old_outgoing::Host for InstanceState {
    fn handle(
        &mut self,
        request: Resource<HostOutgoingRequest>,
        options: Option<old::RequestOptions>,
    ) -> wasmtime::Result<Result<Resource<HostFutureIncomingResponse>, old::Error>> {
        let mut view = self.http();
        crate::outbound::address_relative_to_self(view.table.get_mut(&request)?);
        // The current handler reads its options from a resource: a temporary one.
        let options = match options {
            Some(options) => Some(view.table.push(request_options(options))?),
            None => None,
        };
        let options_rep = options.as_ref().map(Resource::rep);
        let outcome = http_outgoing::Host::handle(&mut view, request, options);
        if let Some(rep) = options_rep {
            view.table
                .delete(Resource::<RequestOptions>::new_own(rep))?;
        }
        match outcome {
            Ok(future) => Ok(Ok(future)),
            // A guest-visible error code, or else a trap.
            Err(error) => Ok(Err(error_from_code(error.downcast()?))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::{Arc, Mutex};

    use http_body_util::{BodyExt, Empty};
    use wasmtime_wasi_http::WasiBody;

    use super::*;
    use crate::outbound::{InternalDispatch, InternalTarget};

    /// Answers every in-process request with an empty 200 and notes where it went.
    #[derive(Default)]
    struct RecordingDispatch {
        targets: Mutex<Vec<String>>,
    }

    impl InternalDispatch for RecordingDispatch {
        fn dispatch(
            &self,
            target: InternalTarget,
            request: ::http::Request<WasiBody>,
        ) -> Pin<
            Box<
                dyn Future<Output = Result<::http::Response<WasiBody>, wasmtime_wasi_http::Error>>
                    + Send,
            >,
        > {
            self.targets
                .lock()
                .unwrap()
                .push(format!("{target:?} {}", request.uri().path()));
            Box::pin(async {
                let body = Empty::new().map_err(|never| match never {}).boxed_unsync();
                Ok(::http::Response::new(body))
            })
        }
    }

    fn state(allowed: &[&str], dispatch: Arc<RecordingDispatch>) -> InstanceState {
        InstanceState::for_tests(allowed, dispatch)
    }

    /// An old outgoing request to `authority` (`path` on it), headers `x-probe: 1`.
    fn request(
        state: &mut InstanceState,
        scheme: old::Scheme,
        authority: &str,
        path: &str,
    ) -> wasmtime::Result<Resource<HostOutgoingRequest>> {
        let headers = old::HostFields::new(state, vec![("x-probe".to_string(), b"1".to_vec())])?;
        old::HostOutgoingRequest::new(
            state,
            old::Method::Post,
            Some(path.to_string()),
            Some(scheme),
            Some(authority.to_string()),
            headers,
        )
    }

    /// Sends `request` through the old outgoing handler and waits for the outcome.
    async fn send(
        state: &mut InstanceState,
        request: Resource<HostOutgoingRequest>,
    ) -> Result<Resource<HostIncomingResponse>, old::Error> {
        let future = old_outgoing::Host::handle(state, request, None).unwrap()?;
        let pollable = old::HostFutureIncomingResponse::subscribe(state, borrow(&future)).unwrap();
        old_poll::Host::poll_one(state, pollable).await.unwrap();
        old::HostFutureIncomingResponse::get(state, future)
            .unwrap()
            .unwrap()
            .unwrap()
    }

    #[test]
    fn the_old_constructor_borrows_its_headers_and_sets_every_part() {
        let mut state = state(&[], Arc::default());
        let headers =
            old::HostFields::new(&mut state, vec![("x-probe".to_string(), b"1".to_vec())]).unwrap();
        let request = old::HostOutgoingRequest::new(
            &mut state,
            old::Method::Put,
            Some("/p?q=1".to_string()),
            Some(old::Scheme::Https),
            Some("example.com:8443".to_string()),
            borrow(&headers),
        )
        .unwrap();
        // The guest still owns its headers after the constructor.
        let values = old::HostFields::get(&mut state, headers, "x-probe".to_string()).unwrap();
        assert_eq!(values, vec![b"1".to_vec()]);
        let outgoing = state.table.get(&request).unwrap();
        assert!(matches!(outgoing.method, http::Method::Put));
        assert!(matches!(outgoing.scheme, Some(http::Scheme::Https)));
        assert_eq!(outgoing.authority.as_deref(), Some("example.com:8443"));
        assert_eq!(outgoing.path_with_query.as_deref(), Some("/p?q=1"));
    }

    #[test]
    fn a_malformed_part_of_an_outgoing_request_traps_naming_it() {
        let mut state = state(&[], Arc::default());
        let error = request(&mut state, old::Scheme::Https, "bad host", "/").unwrap_err();
        assert!(error.to_string().contains("invalid authority"), "{error}");
        let error = request(&mut state, old::Scheme::Https, "example.com", "no-slash").unwrap_err();
        assert!(
            error.to_string().contains("invalid path-with-query"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_host_outside_allowed_outbound_hosts_is_refused() {
        let dispatch = Arc::new(RecordingDispatch::default());
        let mut state = state(&["http://middle.spin.internal"], dispatch.clone());
        let denied = request(&mut state, old::Scheme::Https, "example.com", "/").unwrap();
        match send(&mut state, denied).await {
            Err(old::Error::UnexpectedError(text)) => {
                assert!(text.contains("HttpRequestDenied"), "{text}");
            }
            other => panic!("{other:?}"),
        }
        // Another component than the one allowed is refused too, before dispatch.
        let other = request(&mut state, old::Scheme::Http, "back.spin.internal", "/").unwrap();
        assert!(send(&mut state, other).await.is_err());
        assert!(dispatch.targets.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn spin_internal_hosts_are_chained_in_process() {
        let dispatch = Arc::new(RecordingDispatch::default());
        let mut state = state(&["http://middle.spin.internal"], dispatch.clone());
        let chained = request(
            &mut state,
            old::Scheme::Http,
            "middle.spin.internal",
            "/hello",
        )
        .unwrap();
        let response = send(&mut state, chained).await.unwrap();
        assert_eq!(
            old::HostIncomingResponse::status(&mut state, response).unwrap(),
            200
        );
        assert_eq!(
            *dispatch.targets.lock().unwrap(),
            vec![r#"Component("middle") /hello"#.to_string()]
        );
    }

    #[test]
    fn methods_and_schemes_survive_the_round_trip() {
        for method in [
            old::Method::Get,
            old::Method::Post,
            old::Method::Patch,
            old::Method::Other("PURGE".to_string()),
        ] {
            let text = format!("{method:?}");
            assert_eq!(
                format!("{:?}", method_from_current(method_to_current(method))),
                text
            );
        }
        for scheme in [
            old::Scheme::Http,
            old::Scheme::Https,
            old::Scheme::Other("ftp".into()),
        ] {
            let text = format!("{scheme:?}");
            assert_eq!(
                format!("{:?}", scheme_from_current(scheme_to_current(scheme))),
                text
            );
        }
    }

    #[test]
    fn error_codes_keep_their_kind() {
        assert!(matches!(
            error_from_code(http::ErrorCode::ConnectionTimeout),
            old::Error::TimeoutError(_)
        ));
        assert!(matches!(
            error_from_code(http::ErrorCode::HttpRequestUriInvalid),
            old::Error::InvalidUrl(_)
        ));
        assert!(matches!(
            error_from_code(http::ErrorCode::HttpProtocolError),
            old::Error::ProtocolError(_)
        ));
        // A denied host is not one of the old kinds: it says so in words.
        match error_from_code(http::ErrorCode::HttpRequestDenied) {
            old::Error::UnexpectedError(text) => {
                assert!(text.contains("HttpRequestDenied"), "{text}")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            error_to_code(old::Error::UnexpectedError("boom".into())),
            http::ErrorCode::InternalError(Some(ref message)) if message == "boom"
        ));
        assert!(matches!(
            error_to_code(old::Error::TimeoutError(String::new())),
            http::ErrorCode::HttpResponseTimeout
        ));
    }

    #[test]
    fn request_options_become_durations() {
        let options = request_options(old::RequestOptions {
            connect_timeout_ms: Some(1500),
            first_byte_timeout_ms: None,
            between_bytes_timeout_ms: Some(0),
        });
        assert_eq!(options.connect_timeout, Some(Duration::from_millis(1500)));
        assert_eq!(options.first_byte_timeout, None);
        assert_eq!(options.between_bytes_timeout, Some(Duration::ZERO));
    }
}
