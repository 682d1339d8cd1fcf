//! The router. Uses the streaming request/response API so the host's
//! streaming is exercised (`/probe/echo`).

use futures::{SinkExt as _, StreamExt as _};
use spin_sdk::http::{Fields, IncomingRequest, Method, OutgoingResponse, ResponseOutparam};
use spin_sdk::http_component;

use crate::reply::{Reply, fail};
use crate::routes;

/// Routes `/probe/...`.
#[http_component]
async fn handle(req: IncomingRequest, out: ResponseOutparam) {
    let path_and_query = req.path_with_query().unwrap_or_default();
    let path = path_and_query
        .split('?')
        .next()
        .unwrap_or_default()
        .to_owned();
    let segments: Vec<&str> = path.trim_start_matches("/probe/").split('/').collect();
    let method = req.method();
    let reply = match (&method, segments.as_slice()) {
        (Method::Post, ["echo"]) => return echo(req, out).await,
        (Method::Get, ["hello"]) => routes::hello(),
        (Method::Get, ["headers"]) => routes::headers(&req, &method, &path),
        (Method::Get, ["kv", store, key @ ..]) => routes::kv_get(store, &key.join("/")),
        (Method::Put, ["kv", store, key @ ..]) => match body(req).await {
            Ok(value) => routes::kv_set(store, &key.join("/"), &value),
            Err(reply) => reply,
        },
        (Method::Delete, ["kv", store, key @ ..]) => routes::kv_delete(store, &key.join("/")),
        (Method::Post, ["sqlite", db]) => match text(req).await {
            Ok(sql) => routes::sqlite_v2(db, &sql),
            Err(reply) => reply,
        },
        (Method::Post, ["sqlite3", db]) => match text(req).await {
            Ok(sql) => routes::sqlite_v3(db, &sql),
            Err(reply) => reply,
        },
        (Method::Get, ["var", name]) => routes::variable(name),
        (Method::Get, ["env", name]) => routes::env(name),
        (Method::Post, ["outbound"]) => match text(req).await {
            Ok(url) => routes::outbound(url.trim()).await,
            Err(reply) => reply,
        },
        (Method::Get, ["sqlite3-fresh", db]) => routes::sqlite3_fresh(db),
        (Method::Post, ["sqlite3-slow-tx", db, ms]) => match ms.parse() {
            Ok(ms) => routes::sqlite3_slow_transaction(db, ms),
            Err(_) => fail(400, "bad-duration"),
        },
        (Method::Get, ["loop"]) => routes::spin_forever(),
        (Method::Get, ["alloc"]) => routes::allocate_forever(),
        (
            _,
            [
                "hello" | "headers" | "kv" | "sqlite" | "sqlite3" | "sqlite3-fresh"
                | "sqlite3-slow-tx" | "var" | "env" | "outbound" | "echo" | "loop" | "alloc",
                ..,
            ],
        ) => fail(405, "method-not-allowed"),
        _ => fail(404, "not-found"),
    };
    respond(out, reply).await;
}

/// The whole request body.
async fn body(req: IncomingRequest) -> Result<Vec<u8>, Reply> {
    req.into_body()
        .await
        .map_err(|_| fail(400, "unreadable-body"))
}

/// The whole request body as UTF-8 text.
async fn text(req: IncomingRequest) -> Result<String, Reply> {
    String::from_utf8(body(req).await?).map_err(|_| fail(400, "body-not-utf8"))
}

/// Response headers with one content type.
fn headers(content_type: &str) -> Fields {
    let entry = [("content-type".to_owned(), content_type.as_bytes().to_vec())];
    Fields::from_list(&entry).unwrap_or_else(|_| Fields::new())
}

/// Sends a JSON reply.
async fn respond(out: ResponseOutparam, (status, body): Reply) {
    let response = OutgoingResponse::new(headers("application/json"));
    if response.set_status_code(status).is_err() {
        eprintln!("probe: invalid status {status}");
    }
    if let Err(err) = out
        .set_with_body(response, body.to_string().into_bytes())
        .await
    {
        eprintln!("probe: writing the response failed: {err}");
    }
}

/// Streams the request body back chunk by chunk as it arrives.
async fn echo(req: IncomingRequest, out: ResponseOutparam) {
    let response = OutgoingResponse::new(headers("application/octet-stream"));
    let mut sink = response.take_body();
    out.set(response);
    let mut stream = req.into_body_stream();
    while let Some(chunk) = stream.next().await {
        let sent = match chunk {
            Ok(chunk) => sink.send(chunk).await.map_err(|e| e.to_string()),
            Err(err) => Err(err.to_string()),
        };
        if let Err(err) = sent {
            eprintln!("probe: echo stopped: {err}");
            return;
        }
    }
}
