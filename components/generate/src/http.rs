//! HTTP entry point: reads the request ([`crate::request`]), then routes it.

use dol_core::error::{ApiError, Code};
use dol_core::gateway::offline;
use dol_core::gateway::openai::ModelList;
use dol_core::hygiene::Cors;
use spin_sdk::http::Method;
use wasip3::http::types::{ErrorCode, Request as WasiRequest, Response as WasiResponse};

use dol_core::gateway::store;
use dol_core::orgs::Role;
use dol_spin_platform::{self as platform, SpinSql};

use crate::net::ResponseSlot;
use crate::request::{self, Incoming};
use crate::{
    admin, chat, completions, embeddings, events, feedback, images, messages, net, reply, responses,
};

/// The component's `wasi:http/handler@0.3.0` export (WASI 0.3: Spin and
/// `dol up` reuse the instance, with what it keeps, across requests).
struct Gateway;

impl wasip3::exports::http::handler::Guest for Gateway {
    /// Serves the request on a task of its own and returns the response's
    /// head as soon as that task sends it; the task goes on writing the
    /// body (a stream) and whatever trails the answer.
    async fn handle(request: WasiRequest) -> Result<WasiResponse, ErrorCode> {
        let (slot, head) = net::ResponseSlot::new();
        wasip3::wit_bindgen::spawn(serve(request, slot));
        head.await.map_err(|_| {
            ErrorCode::InternalError(Some("the gateway ended without answering".to_owned()))
        })
    }
}

wasip3::http::service::export!(Gateway);

/// Routes `/v1/...` (chat, completions, generate, embeddings, images, messages, responses, models, events, feedback) and `/admin/...`.
async fn serve(req: WasiRequest, mut out: ResponseSlot) {
    let req = match request::read(req).await {
        Ok(r) => r,
        Err(err) => return net::respond(out, reply::openai(&err)).await,
    };
    let path = req.path.trim_end_matches('/');
    if path.starts_with("/v1/") {
        match cors(&req) {
            Ok(headers) => out.set_extra_headers(headers),
            Err(response) => return net::respond(out, response).await,
        }
    }
    match (path, &req.method) {
        ("/v1/chat/completions", Method::Post) => chat::serve(req, out, false).await,
        ("/v1/generate", Method::Post) => chat::serve(req, out, true).await,
        ("/v1/completions", Method::Post) => completions::serve(req, out).await,
        ("/v1/embeddings", Method::Post) => net::respond(out, embeddings::serve(&req).await).await,
        ("/v1/images/generations", Method::Post) => {
            net::respond(out, images::serve(&req).await).await
        }
        ("/v1/messages", Method::Post) => messages::serve(req, out).await,
        ("/v1/responses", Method::Post) => responses::serve(req, out).await,
        ("/v1/models", Method::Get) => net::respond(out, models(&req)).await,
        ("/v1/events", Method::Post) => net::respond(out, events::post_events(&req)).await,
        ("/v1/events", _) => net::respond(out, platform::method_not_allowed("POST")).await,
        ("/v1/feedback", Method::Post) => {
            net::respond(out, feedback::post_feedback(&req).await).await
        }
        ("/v1/feedback", _) => net::respond(out, platform::method_not_allowed("POST")).await,
        (
            "/v1/chat/completions"
            | "/v1/completions"
            | "/v1/generate"
            | "/v1/embeddings"
            | "/v1/images/generations"
            | "/v1/messages"
            | "/v1/responses",
            _,
        ) => net::respond(out, platform::method_not_allowed("POST")).await,
        ("/v1/models", _) => net::respond(out, platform::method_not_allowed("GET")).await,
        (p, _) if p.starts_with("/admin/") => net::respond(out, admin::handle(&req).await).await,
        _ => {
            let err = ApiError::new(Code::NotFound, format!("Unknown route {}", req.path));
            net::respond(out, reply::openai(&err)).await
        }
    }
}

/// CORS for browser clients of the OpenAI routes (`cors_allowed_origins`):
/// answers a preflight (`Err` holds the response to send) or gives the
/// headers every response to an allowed origin carries.
fn cors(req: &Incoming) -> Result<Vec<(String, String)>, spin_sdk::http::Response> {
    let origin = req.header("origin");
    let cors = match Cors::parse(&platform::var("cors_allowed_origins")) {
        Ok(cors) => cors,
        // A typo must not open the gateway to every site, nor stop
        // server-side clients, who send no Origin: browsers get the error.
        Err(err) if origin.is_some() => return Err(reply::openai(&err)),
        Err(err) => {
            eprintln!("generate: {}", err.message);
            return Ok(Vec::new());
        }
    };
    if req.method == Method::Options {
        let headers = cors
            .preflight(
                origin,
                req.header("access-control-request-method"),
                req.header("access-control-request-headers"),
            )
            .map_err(|err| reply::openai(&err))?;
        let mut builder = spin_sdk::http::Response::builder();
        builder.status(204);
        for (name, value) in &headers {
            builder.header(name.as_str(), value.as_str());
        }
        return Err(builder.build());
    }
    Ok(cors.response_headers(origin))
}

/// `GET /v1/models`: the catalog's models of enabled providers, and always the offline model.
fn models(req: &Incoming) -> spin_sdk::http::Response {
    let settings = match crate::config::load() {
        Ok(s) => s,
        Err(m) => return reply::openai(&ApiError::from(m)),
    };
    let db = match platform::open_db() {
        Ok(db) => db,
        Err(e) => return reply::internal("models", &e),
    };
    let caller = match reply::authenticate(req, &db, &settings.bootstrap_key, Role::Generate) {
        Ok(c) => c,
        Err(response) => return response,
    };
    // An org's keys see only the models its allow-list admits.
    let catalog = match store::routable_catalog(&mut SpinSql(&db), platform::now_ms()) {
        Ok(c) => caller.routable(c, "auto"),
        Err(e) => return reply::internal("models", &e),
    };
    let catalog = match catalog {
        Ok(c) => c,
        Err(e) => return reply::error(&e),
    };
    let enabled = dol_core::gateway::catalog::enabled_providers(&settings.providers);
    let mut pairs: Vec<(&str, &str)> = vec![("auto", "dol"), (offline::MODEL, offline::PROVIDER)];
    pairs.extend(
        catalog
            .iter()
            .filter(|e| enabled.iter().any(|p| p.name == e.provider))
            .map(|e| (e.model.as_str(), e.provider.as_str())),
    );
    let created = u64::try_from(platform::now_ms()).unwrap_or(0) / 1_000;
    let list = ModelList::new(pairs, created);
    platform::json(200, &serde_json::to_value(list).unwrap_or_default())
}
