//! What every generation route does around the core, once: read the
//! settings and open storage, name the request, run the pipeline over the
//! Spin adapters, and answer a refusal when nothing was sent yet. Each
//! route (chat, messages, responses, embeddings) only parses its body and
//! picks its wire format.

use dol_core::error::ApiError;
use dol_core::gateway::pipeline::{self, Call, Caller, Client, Io, PipelineError, Settings};
use dol_core::gateway::store;
use dol_core::orgs::Role;
use dol_spin_platform::Db;
use spin_sdk::http::Response;

use crate::client::{InProcessFlags, WallClock};
use crate::config;
use crate::net::{self, SseClient};
use crate::reply;
use crate::request::Incoming;
use crate::upstream::WasiUpstream;
use dol_spin_platform::{self as platform, SpinKv, SpinSql};

/// Settings and storage for one request.
pub struct Ready {
    /// The gateway's settings (their variables read once per instance).
    pub settings: Settings,
    /// The app's database, migrated.
    pub db: std::rc::Rc<Db>,
    /// The app's key-value store.
    pub kv: SpinKv,
}

/// Reads the settings and opens storage; `Err` is the error to answer (an
/// invalid variable names itself; a storage failure is logged, not sent).
pub fn open() -> Result<Ready, ApiError> {
    let settings = config::load().map_err(|message| {
        eprintln!("generate: configuration error: {message}");
        ApiError::from(message)
    })?;
    let db = platform::open_db().map_err(platform::internal)?;
    let kv = SpinKv::open_default().map_err(platform::internal)?;
    Ok(Ready { settings, db, kv })
}

/// Opens settings and storage and authenticates the caller, for a route
/// answering in OpenAI's shape; `Err` is that answer.
pub fn open_authenticated(req: &Incoming) -> Result<(Ready, Caller), Response> {
    let ready = open().map_err(|err| reply::openai(&err))?;
    let caller = reply::authenticate(
        req,
        &ready.db,
        &ready.settings.bootstrap_key,
        Role::Generate,
    )?;
    Ok((ready, caller))
}

/// A fresh request id ([`dol_core::gateway::intake::request_id`]).
pub fn request_id(prefix: &str) -> String {
    let now_ms = u64::try_from(dol_spin_platform::now_ms()).unwrap_or(0);
    dol_core::gateway::intake::request_id(prefix, now_ms, wasip3::random::random::get_random_u64())
}

thread_local! {
    /// What this instance keeps between its requests: the routable catalog
    /// and org privacy settings (`dol_core::gateway::store::InstanceCache`:
    /// each read again when its stamp changes).
    static CACHE: std::rc::Rc<std::cell::RefCell<store::InstanceCache>> = std::rc::Rc::default();
}

/// Runs the chat pipeline for `call`, answering through `client`.
pub async fn pipeline(
    client: &mut impl Client,
    sql: &mut SpinSql<'_>,
    kv: &mut SpinKv,
    call: &Call,
    settings: &Settings,
) -> Result<pipeline::Served, PipelineError> {
    let cache = CACHE.with(std::rc::Rc::clone);
    let io = Io {
        sql,
        kv,
        upstream: &mut WasiUpstream::new(),
        flags: &mut InProcessFlags,
        clock: &WallClock,
        cache: &cache,
    };
    pipeline::serve(io, client, call, settings).await
}

/// Logs the book-keeping warnings, queues what trails the answer
/// ([`crate::books::trail`]), and answers when nothing was sent yet:
/// the refusal, or (defensively: the core always answers) a 500 — each
/// rendered by `render` in the route's wire format.
pub async fn finish(
    mut client: SseClient,
    served: Result<pipeline::Served, PipelineError>,
    render: impl Fn(&ApiError) -> Response,
) {
    let err = match served {
        Ok(s) => {
            for warning in &s.warnings {
                eprintln!("generate: {warning}");
            }
            if let Some(booking) = s.trailing {
                crate::books::trail(booking);
            }
            ApiError::internal("the pipeline served without answering")
        }
        Err(e) => ApiError::from(&e),
    };
    if let Some(unstarted) = client.take_unstarted() {
        net::respond(unstarted, render(&err)).await;
    }
}

/// Fills `buf` with cryptographically secure random bytes. WASI 0.3's
/// `get-random-bytes` may return fewer bytes than asked (at least one), so
/// it is asked until `buf` is full.
pub fn fill_random(buf: &mut [u8]) {
    let mut filled = 0;
    while filled < buf.len() {
        let want = u64::try_from(buf.len() - filled).unwrap_or(u64::MAX);
        let bytes = wasip3::random::random::get_random_bytes(want);
        let take = bytes.len().min(buf.len() - filled);
        buf[filled..filled + take].copy_from_slice(&bytes[..take]);
        filled += take;
    }
}
