//! `POST /v1/images/generations`: parse the request, build the Spin
//! adapters, run `dol_core::gateway::image_pipeline`, write what it answers.
//! Every decision is the core's.

use dol_core::gateway::image_pipeline::{self, ImageCall};
use dol_core::gateway::images::ImageRequest;
use dol_core::gateway::pipeline::PipelineError;
use spin_sdk::http::Response;

use crate::client::WallClock;
use crate::request::Incoming;
use crate::upstream::WasiUpstream;
use crate::{reply, run};
use dol_spin_platform::{self as platform, SpinSql};

/// Serves one image generation request end to end.
pub async fn serve(req: &Incoming) -> Response {
    let started_ms = u64::try_from(platform::now_ms()).unwrap_or(0);
    let (ready, caller) = match run::open_authenticated(req) {
        Ok(r) => r,
        Err(response) => return response,
    };
    let request = match ImageRequest::from_json(&req.body) {
        Ok(r) => r,
        Err(e) => return reply::error(&PipelineError::BadRequest(e)),
    };
    let call = ImageCall {
        caller,
        request,
        id: run::request_id("img"),
        started_ms,
    };
    let (settings, mut kv) = (ready.settings, ready.kv);
    let mut sql = SpinSql(&ready.db);
    let served = image_pipeline::serve(
        &mut sql,
        &mut kv,
        &mut WasiUpstream::new(),
        &WallClock,
        &call,
        &settings,
    )
    .await;
    match served {
        Err(e) => reply::error(&e),
        Ok(s) => {
            if let Some(booking) = s.trailing {
                crate::books::trail(booking);
            }
            reply::answer(s.answer, &s.warnings)
        }
    }
}
