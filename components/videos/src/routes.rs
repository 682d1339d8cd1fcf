//! One function per route: authenticate, parse, call
//! `dol_core::video::service`, answer (errors in OpenAI's shape).

use dol_core::error::{ApiError, Code};
use dol_core::gateway::intake;
use dol_core::gateway::pipeline::Caller;
use dol_core::video::VideoRequest;
use dol_core::video::platforms::VideoSettings;
use dol_core::video::service::{self, ListQuery};
use dol_core::video::webhook::Signed;
use dol_spin_platform::Db;
use serde_json::Value;
use spin_sdk::http::{Request, Response};

use dol_spin_platform::net::BlockingNet;
use dol_spin_platform::{self as platform, SpinSql};

pub(crate) const NAME: &str = "videos";

pub(crate) fn fail(err: &ApiError) -> Response {
    platform::fail_openai(NAME, err)
}

fn answer(result: Result<Value, ApiError>) -> Response {
    match result {
        Ok(v) => platform::json(200, &v),
        Err(e) => fail(&e),
    }
}

pub(crate) fn now() -> u64 {
    u64::try_from(platform::now_ms()).unwrap_or(0)
}

/// Settings and the database for one request.
pub(crate) fn open() -> Result<(VideoSettings, std::rc::Rc<Db>), ApiError> {
    let settings = VideoSettings::from_variables(platform::var).map_err(|e| {
        eprintln!("{NAME}: configuration error: {e}");
        ApiError::new(Code::InvalidConfig, e.to_string())
    })?;
    let db = platform::open_db().map_err(platform::internal)?;
    Ok((settings, db))
}

pub(crate) fn caller(req: &Request, db: &Db, settings: &VideoSettings) -> Result<Caller, ApiError> {
    intake::authenticate(
        &mut SpinSql(db),
        platform::header(req, "authorization"),
        platform::header(req, "x-api-key"),
        &settings.bootstrap_key,
        dol_core::orgs::Role::Generate,
    )
    .map_err(|e| ApiError::from(&e))
}

/// Runs `body` with the settings, database and authenticated caller.
fn authed(
    req: &Request,
    body: impl FnOnce(&VideoSettings, &Db, Caller) -> Result<Value, ApiError>,
) -> Result<Value, ApiError> {
    let (settings, db) = open()?;
    let who = caller(req, &db, &settings)?;
    body(&settings, &db, who)
}

pub(crate) fn query(req: &Request, name: &str) -> Result<Option<String>, ApiError> {
    platform::query_param(req.query(), name)
}

fn new_id() -> String {
    let bytes = wasi::random::random::get_random_bytes(16);
    let mut id = String::from("video_");
    dol_core::hex::encode_into(&mut id, &bytes);
    id
}

/// `POST /v1/videos/{id}/remix`.
pub fn remix(req: &Request, id: &str) -> Response {
    answer(authed(req, |settings, db, who| {
        let prompt = dol_core::video::remix_prompt(req.body())?;
        service::remix(
            &mut SpinSql(db),
            &mut BlockingNet,
            settings,
            &who,
            id,
            prompt,
            new_id(),
            now(),
        )
    }))
}

/// `POST /v1/videos`.
pub fn create(req: &Request) -> Response {
    answer(authed(req, |settings, db, who| {
        dol_core::video::input::check_create_body(req.body().len())?;
        let request = VideoRequest::from_body(platform::header(req, "content-type"), req.body())?;
        service::create(
            &mut SpinSql(db),
            &mut BlockingNet,
            settings,
            &who,
            request,
            new_id(),
            now(),
        )
    }))
}

/// `GET /v1/videos`.
pub fn list(req: &Request) -> Response {
    answer(authed(req, |_, db, who| {
        let q = ListQuery::parse(
            query(req, "after")?,
            query(req, "limit")?,
            query(req, "order")?,
        )?;
        service::list(&mut SpinSql(db), &who.id, &q)
    }))
}

/// `GET /v1/videos/{id}`.
pub fn retrieve(req: &Request, id: &str) -> Response {
    answer(authed(req, |settings, db, who| {
        service::retrieve(
            &mut SpinSql(db),
            &mut BlockingNet,
            settings,
            &who.id,
            id,
            now(),
        )
    }))
}

/// `DELETE /v1/videos/{id}`.
pub fn cancel(req: &Request, id: &str) -> Response {
    answer(authed(req, |settings, db, who| {
        service::cancel(
            &mut SpinSql(db),
            &mut BlockingNet,
            settings,
            &who.id,
            id,
            now(),
        )
    }))
}

/// `POST /v1/videos/{id}/callback` (a platform's signed callback; no API key).
pub fn callback(req: &Request, id: &str) -> Response {
    answer(open().and_then(|(settings, db)| {
        let signed = Signed {
            id: platform::header(req, "webhook-id"),
            timestamp: platform::header(req, "webhook-timestamp"),
            signature: platform::header(req, "webhook-signature"),
        };
        service::callback(
            &mut SpinSql(&db),
            &mut BlockingNet,
            &settings,
            id,
            signed,
            req.body(),
            now(),
        )
    }))
}

/// 405 with `Allow`.
pub fn not_allowed(allow: &str) -> Response {
    fail(&ApiError::method_not_allowed(allow))
}

/// 404 for a path under `/v1/videos` that names no route.
pub fn not_found(path: &str) -> Response {
    fail(&ApiError::new(Code::NotFound, format!("No route {path}.")))
}
