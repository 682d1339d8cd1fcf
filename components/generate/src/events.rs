//! `POST /v1/events`: authenticate (API key), attribute the batch to
//! variants (`dol_core::experiments::attribution`, over the in-process flag
//! evaluator and the stored flag set), store it all or nothing, answer 202
//! with counts.

use dol_core::error::ApiError;
use dol_core::experiments::attribution::{self, FlagLookup, Served};
use dol_core::experiments::{events, store};
use serde_json::{Map, Value, json};
use spin_sdk::http::Response;
use spin_sdk::sqlite::Connection;

use crate::http::Incoming;
use crate::{config, flags, reply};
use dol_spin_platform::{self as platform, SpinSql};

/// The in-process evaluator, and the flag document read once per request.
struct Lookup<'a> {
    db: &'a Connection,
    document: Option<Value>,
}

impl FlagLookup for Lookup<'_> {
    fn served(&mut self, flag: &str, targeting_key: &str, context: &Map<String, Value>) -> Served {
        flags::served_variant(flag, targeting_key, context)
    }

    fn declared_variants(&mut self, flag: &str) -> Result<Vec<String>, String> {
        if self.document.is_none() {
            let (_, state) =
                dol_core::flags::store::load_latest(&mut SpinSql(self.db), platform::now_ms())
                    .map_err(|e| e.to_string())?;
            self.document = Some(state.document);
        }
        Ok(self
            .document
            .as_ref()
            .and_then(|d| events::flag_variants(d, flag))
            .unwrap_or_default())
    }
}

/// Serves `POST /v1/events`.
pub fn post_events(req: &Incoming) -> Response {
    let settings = match config::load() {
        Ok(s) => s,
        Err(e) => return reply::openai(&ApiError::from(e)),
    };
    let db = match platform::open_db() {
        Ok(db) => db,
        Err(e) => return reply::internal("events", &e),
    };
    let caller = match reply::authenticate(req, &db, &settings.bootstrap_key) {
        Ok(c) => c,
        Err(response) => return response,
    };
    let mut lookup = Lookup {
        db: &db,
        document: None,
    };
    let batch = match attribution::attribute(&req.body, &mut lookup, &caller.id, platform::now_ms())
    {
        Ok(batch) => batch,
        Err(e) => return reply::openai(&ApiError::from(e)),
    };
    if let Err(e) = store::record_events(&mut SpinSql(&db), &batch.records) {
        return reply::internal("events: store", &e);
    }
    platform::json(
        202,
        &json!({
            "accepted": batch.records.len(),
            "variants_resolved": batch.variants_resolved,
        }),
    )
}
