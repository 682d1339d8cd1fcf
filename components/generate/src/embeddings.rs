//! `POST /v1/embeddings`: parse the request, build the Spin adapters, run
//! `dol_core::gateway::embedding_pipeline`, write what it answers. Every
//! decision is the core's.

use dol_core::gateway::embedding_pipeline::{self, EmbedCall};
use dol_core::gateway::embeddings::EmbeddingRequest;
use dol_core::gateway::intake;
use dol_core::gateway::pipeline::PipelineError;
use dol_core::orgs::Role;
use spin_sdk::http::Response;

use crate::client::WallClock;
use crate::request::Incoming;
use crate::upstream::WasiUpstream;
use crate::{reply, run};
use dol_spin_platform::{self as platform, SpinSql};

/// Serves one embeddings request end to end.
pub async fn serve(req: &Incoming) -> Response {
    let started_ms = u64::try_from(platform::now_ms()).unwrap_or(0);
    let run::Ready {
        settings,
        db,
        mut kv,
    } = match run::open() {
        Ok(ready) => ready,
        Err(err) => return reply::openai(&err),
    };
    let mut sql = SpinSql(&db);
    let call = intake::authenticate(
        &mut sql,
        req.header("authorization"),
        req.header("x-api-key"),
        &settings.bootstrap_key,
        Role::Generate,
    )
    .and_then(|caller| {
        let request = EmbeddingRequest::from_json(&req.body).map_err(PipelineError::BadRequest)?;
        Ok(EmbedCall {
            caller,
            request,
            cache_control: req.header("cache-control").map(str::to_owned),
            id: run::request_id("emb"),
            started_ms,
        })
    });
    let call = match call {
        Ok(c) => c,
        Err(e) => return reply::error(&e),
    };
    let served = embedding_pipeline::serve(
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
            for warning in &s.warnings {
                eprintln!("generate: {warning}");
            }
            match s.answer {
                Ok((headers, body)) => {
                    let headers: Vec<(&str, String)> = headers
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.clone()))
                        .collect();
                    platform::json_with(200, &body, &headers)
                }
                Err(e) => reply::error(&e),
            }
        }
    }
}
