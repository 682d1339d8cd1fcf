//! The instance-reuse probe: a WASI 0.3 component written against the
//! `wasip3` bindings alone (no DOL code, no spin-sdk), whose routes show how
//! a host reuses its instances:
//!
//! - `GET /reuse/count`: `{"instance": ID, "served": N}` — ID is drawn once
//!   per instance (its first request), N counts the requests that instance
//!   has served, this one included;
//! - `GET /reuse/trap?if=ID`: panics (the instance traps) if it is the
//!   instance ID, else answers 409 with `{"instance": ID'}` (so a test can
//!   trap the one instance it knows);
//! - `GET /reuse/spin`: computes for ever (the request time limit stops it).

// wit-bindgen's export glue (`wasip3::http::service::export!`) needs `unsafe`
// (raw canonical-ABI pointers, `#[export_name]`); scoped to that module.
#[allow(unsafe_code)]
mod export {
    use crate::Probe;
    wasip3::http::service::export!(Probe);
}

use std::cell::Cell;

use wasip3::http::types::{ErrorCode, Fields, Request, Response};
use wasip3::{wit_future, wit_stream};

/// The component's `wasi:http/handler@0.3.0` implementation.
pub struct Probe;

thread_local! {
    /// This instance's id: 0 until its first request draws one.
    static INSTANCE: Cell<u64> = const { Cell::new(0) };
    /// Requests this instance has served.
    static SERVED: Cell<u64> = const { Cell::new(0) };
}

impl wasip3::exports::http::handler::Guest for Probe {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let path = request.get_path_with_query().unwrap_or_default();
        if INSTANCE.get() == 0 {
            INSTANCE.set(wasip3::random::random::get_random_u64() | 1);
        }
        if let Some(id) = path.strip_prefix("/reuse/trap?if=") {
            if id == INSTANCE.get().to_string() {
                // `abort` is a wasm `unreachable`: the instance traps.
                std::process::abort();
            }
            return answer(
                409,
                format!("{{\"instance\":{}}}", INSTANCE.get()).into_bytes(),
            );
        }
        match path.as_str() {
            "/reuse/count" => {
                SERVED.set(SERVED.get() + 1);
                let body = format!(
                    "{{\"instance\":{},\"served\":{}}}",
                    INSTANCE.get(),
                    SERVED.get()
                );
                answer(200, body.into_bytes())
            }
            "/reuse/spin" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            _ => answer(404, b"no such route".to_vec()),
        }
    }
}

/// A response with `status` and `body`, written by a spawned task.
fn answer(status: u16, body: Vec<u8>) -> Result<Response, ErrorCode> {
    let (mut writer, reader) = wit_stream::new::<u8>();
    let (_, trailers) = wit_future::new::<Result<Option<Fields>, ErrorCode>>(|| Ok(None));
    let (response, _sent) = Response::new(Fields::new(), Some(reader), trailers);
    response
        .set_status_code(status)
        .map_err(|()| ErrorCode::InternalError(None))?;
    wasip3::wit_bindgen::spawn(async move {
        drop(writer.write_all(body).await);
    });
    Ok(response)
}
