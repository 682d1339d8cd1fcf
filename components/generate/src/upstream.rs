//! The engine's provider calls over `wasi:http/client@0.3.0` (the host's
//! outbound HTTP, under `allowed_outbound_hosts`), with timeouts on the
//! WASI monotonic clock, and randomness for jitter.

use dol_core::gateway::engine::{TransportError, Upstream};
use dol_core::gateway::providers::HttpRequestSpec;
use wasip3::clocks::monotonic_clock;
use wasip3::http::client;
use wasip3::http::types::{ErrorCode, Fields, Method, Request, Response, Scheme};
use wasip3::wit_bindgen::{FutureReader, StreamReader, StreamResult};
use wasip3::{wit_future, wit_stream};

use crate::timer::{sleep, timeout};

/// An open provider response body, and how it ended (the host reports a
/// broken body there, after the stream's end).
pub struct OpenBody {
    stream: StreamReader<u8>,
    ended: Option<FutureReader<Result<Option<Fields>, ErrorCode>>>,
}

/// [`Upstream`] over WASI 0.3's outbound HTTP.
pub struct WasiUpstream {
    started_ns: u64,
}

impl WasiUpstream {
    /// Starts the request clock now.
    pub fn new() -> Self {
        Self {
            started_ns: monotonic_clock::now(),
        }
    }
}

fn method(m: &str) -> Method {
    match m {
        "GET" => Method::Get,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        _ => Method::Post,
    }
}

fn transport_error(code: ErrorCode) -> TransportError {
    match code {
        ErrorCode::HttpRequestDenied => {
            TransportError::Denied("destination not in allowed_outbound_hosts".to_owned())
        }
        ErrorCode::ConnectionTimeout
        | ErrorCode::ConnectionReadTimeout
        | ErrorCode::HttpResponseTimeout => TransportError::Timeout,
        code => TransportError::Connect(format!("{code:?}")),
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

/// The outgoing request for `spec`, its body written by a spawned task.
fn request(spec: &HttpRequestSpec) -> Result<Request, TransportError> {
    let (scheme, authority, path) = split_url(&spec.url).ok_or_else(|| {
        TransportError::Connect(format!("the provider URL {:?} is not absolute", spec.url))
    })?;
    let headers: Vec<(String, Vec<u8>)> = spec
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    let fields = Fields::from_list(&headers)
        .map_err(|error| TransportError::Connect(format!("a request header: {error:?}")))?;
    let (mut body, contents) = wit_stream::new::<u8>();
    let (_, trailers) = wit_future::new::<Result<Option<Fields>, ErrorCode>>(|| Ok(None));
    let (request, _sent) = Request::new(fields, Some(contents), trailers, None);
    let invalid = |what: &str| TransportError::Connect(format!("invalid {what} in {:?}", spec.url));
    request
        .set_method(&method(&spec.method))
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
    let payload = spec.body.clone();
    wasip3::wit_bindgen::spawn(async move {
        // The provider closing early leaves the rest unwritten; its answer says why.
        drop(body.write_all(payload).await);
    });
    Ok(request)
}

impl Upstream for WasiUpstream {
    type Body = OpenBody;

    async fn send(
        &mut self,
        spec: &HttpRequestSpec,
        timeout_ms: u64,
    ) -> Result<(u16, Vec<(String, String)>, OpenBody), TransportError> {
        let request = request(spec)?;
        let response = timeout(timeout_ms, client::send(request))
            .await
            .ok_or(TransportError::Timeout)?
            .map_err(transport_error)?;
        let status = response.get_status_code();
        let headers = response
            .get_headers()
            .copy_all()
            .into_iter()
            .map(|(k, v)| {
                (
                    k.to_ascii_lowercase(),
                    String::from_utf8_lossy(&v).into_owned(),
                )
            })
            .collect();
        let (_, done) = wit_future::new::<Result<(), ErrorCode>>(|| Ok(()));
        let (stream, ended) = Response::consume_body(response, done);
        Ok((
            status,
            headers,
            OpenBody {
                stream,
                ended: Some(ended),
            },
        ))
    }

    async fn read(
        &mut self,
        body: &mut OpenBody,
        timeout_ms: u64,
    ) -> Result<Option<Vec<u8>>, TransportError> {
        loop {
            let read = body.stream.read(Vec::with_capacity(16 * 1024));
            let (status, bytes) = timeout(timeout_ms, read)
                .await
                .ok_or(TransportError::Timeout)?;
            match status {
                StreamResult::Complete(_) if bytes.is_empty() => continue,
                StreamResult::Complete(_) => return Ok(Some(bytes)),
                StreamResult::Dropped | StreamResult::Cancelled if !bytes.is_empty() => {
                    return Ok(Some(bytes));
                }
                StreamResult::Dropped | StreamResult::Cancelled => {}
            }
            // The end: whole, or cut (the host says so in the trailers' place).
            let Some(ended) = body.ended.take() else {
                return Ok(None);
            };
            return match timeout(timeout_ms, ended.into_future()).await {
                None => Err(TransportError::Timeout),
                Some(Ok(_)) => Ok(None),
                Some(Err(code)) => Err(TransportError::Connect(format!(
                    "the provider's body could not be read: {code:?}"
                ))),
            };
        }
    }

    async fn sleep(&mut self, ms: u64) {
        sleep(ms).await;
    }

    fn elapsed_ms(&self) -> u64 {
        monotonic_clock::now().saturating_sub(self.started_ns) / 1_000_000
    }

    fn now_unix_s(&self) -> u64 {
        u64::try_from(dol_spin_platform::now_ms()).unwrap_or(0) / 1_000
    }

    fn random_u64(&mut self) -> u64 {
        wasip3::random::random::get_random_u64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_urls_split_into_scheme_authority_and_path() {
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
