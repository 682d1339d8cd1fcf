//! The benchmark baseline: a native hyper hello-world on the same machine.
//!
//! `native-hello [ADDR]` (default `127.0.0.1:3900`) answers every request with
//! `hello`, the same body the probe's `/probe/hello` route returns through `dol up`.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3900".to_string());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("native-hello on http://{addr}");
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let service = service_fn(|_request| async {
                Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                    b"hello",
                ))))
            });
            // A client hanging up mid-request is normal under load.
            let _closed = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
