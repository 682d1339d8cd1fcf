//! `POST /v1/events`: authenticate (API key), attribute the batch to
//! variants (`dol_core::experiments::attribution`, over the in-process flag
//! evaluator and the stored flag set), store it all or nothing, answer 202
//! with counts.

use dol_core::error::ApiError;
use dol_core::experiments::attribution::{self, FlagLookup, Served};
use dol_core::experiments::store;
use serde_json::{Map, Value, json};
use spin_sdk::http::Response;

use crate::request::Incoming;
use crate::{config, flags, reply};
use dol_spin_platform::{self as platform, SpinSql};

/// The flags, through the composed flag-evaluate component (its
/// `dol:platform/flag-evaluator` export): no HTTP hop, no direct read of
/// its tables.
struct Lookup;

impl FlagLookup for Lookup {
    fn served(&mut self, flag: &str, targeting_key: &str, context: &Map<String, Value>) -> Served {
        flags::served_variant(flag, targeting_key, context)
    }

    fn declared_variants(&mut self, flag: &str) -> Result<Vec<String>, String> {
        flags::declared_variants(flag).map(Option::unwrap_or_default)
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
    let caller = match reply::authenticate(
        req,
        &db,
        &settings.bootstrap_key,
        dol_core::orgs::Role::Events,
    ) {
        Ok(c) => c,
        Err(response) => return response,
    };
    let batch = match attribution::attribute(&req.body, &mut Lookup, &caller.id, platform::now_ms())
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
