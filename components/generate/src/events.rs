//! `POST /v1/events`. Parsing, validation and the SQL live in
//! `dol_core::experiments`; this module reads the request, resolves variants
//! through the in-process flag evaluator, and maps results to HTTP.
//!
//! Variants of events: when an event has no `variant`, the flag is
//! evaluated for its targeting key (and `context`) exactly as OFREP would,
//! and the served variant is stored. When it has one, that variant is
//! stored as sent — it is what the user saw, even if the flag has changed
//! since — but it must be one of the variants the flag declares, so a typo
//! cannot create a phantom variant. Either way the flag must exist.

use std::collections::BTreeMap;

use dol_core::experiments::events::{self, EventError, EventRecord};
use dol_core::experiments::store;
use dol_core::gateway::openai::{ErrorBody, ErrorType};
use serde_json::{Value, json};
use spin_sdk::http::Response;
use spin_sdk::sqlite::Connection;

use crate::flags::{self, Served};
use crate::http::Incoming;
use crate::{config, reply};
use dol_spin_platform::{self as platform, SpinSql};

/// A 400 in the OpenAI error shape: `param` names the field, and so does
/// the message (prefixed when it does not already start with it).
fn bad_event(field: &str, message: &str) -> Response {
    let message = if message.starts_with(field) {
        message.to_owned()
    } else {
        format!("{field}: {message}")
    };
    let body = ErrorBody::new(
        &message,
        ErrorType::InvalidRequest,
        Some(field.to_owned()),
        Some("invalid_event".to_owned()),
    );
    platform::json(400, &serde_json::to_value(&body).unwrap_or(Value::Null))
}

fn event_error(e: &EventError) -> Response {
    bad_event(e.field(), &e.to_string())
}

/// The current flagd document (`flag_sets`, seeded on first use exactly as
/// flag-evaluate does).
fn flag_document(db: &Connection) -> anyhow::Result<Value> {
    let (_, state) = dol_core::flags::store::load_latest(&mut SpinSql(db), platform::now_ms())?;
    Ok(state.document)
}

/// `POST /v1/events`: authenticate (API key), parse, resolve variants, store
/// all or nothing, answer 202 with counts.
pub fn post_events(req: &Incoming) -> Response {
    let settings = match config::load() {
        Ok(s) => s,
        Err(m) => {
            eprintln!("generate: events: gateway misconfigured: {m}");
            return reply::server_error();
        }
    };
    let db = match platform::open_db() {
        Ok(db) => db,
        Err(e) => return reply::internal("events", &e),
    };
    let caller = match reply::authenticate(req, &db, &settings.bootstrap_key) {
        Ok(c) => c,
        Err(response) => return response,
    };
    let body: Value = match serde_json::from_slice(&req.body) {
        Ok(v) => v,
        Err(e) => return bad_event("body", &format!("body is not valid JSON: {e}")),
    };
    let inputs = match events::parse(&body) {
        Ok(list) => list,
        Err(e) => return event_error(&e),
    };
    let prefix = if body.get("events").is_some() {
        "events"
    } else {
        ""
    };
    let path = |i: usize, field: &str| {
        if prefix.is_empty() {
            format!("event.{field}")
        } else {
            format!("events[{i}].{field}")
        }
    };

    let now = platform::now_ms();
    let mut document: Option<Value> = None;
    let mut known_flags: BTreeMap<String, bool> = BTreeMap::new();
    let mut resolved = 0usize;
    let mut records = Vec::with_capacity(inputs.len());
    for (i, e) in inputs.into_iter().enumerate() {
        let variant = match e.variant {
            None => match flags::served_variant(&e.flag, &e.targeting_key, &e.context) {
                Served::Variant(v) => {
                    resolved += 1;
                    v
                }
                Served::NotFound => {
                    return bad_event(&path(i, "flag"), &format!("no flag {:?}", e.flag));
                }
                Served::NoVariant(why) => {
                    return bad_event(
                        &path(i, "variant"),
                        &format!(
                            "flag {:?} served no variant for this targeting key ({why}); send the variant the user saw",
                            e.flag
                        ),
                    );
                }
            },
            Some(v) => {
                // Evaluating once per flag loads the flag set (seeding it on
                // a fresh database) and tells whether the flag exists.
                let exists = *known_flags.entry(e.flag.clone()).or_insert_with(|| {
                    !matches!(
                        flags::served_variant(&e.flag, &e.targeting_key, &e.context),
                        Served::NotFound
                    )
                });
                if !exists {
                    return bad_event(&path(i, "flag"), &format!("no flag {:?}", e.flag));
                }
                if document.is_none() {
                    document = match flag_document(&db) {
                        Ok(d) => Some(d),
                        Err(err) => return reply::internal("events: flag document", &err),
                    };
                }
                let declared = document
                    .as_ref()
                    .and_then(|d| events::flag_variants(d, &e.flag))
                    .unwrap_or_default();
                if !declared.contains(&v) {
                    return bad_event(
                        &path(i, "variant"),
                        &format!(
                            "flag {:?} has no variant {v:?} (variants: {})",
                            e.flag,
                            declared.join(", ")
                        ),
                    );
                }
                v
            }
        };
        records.push(EventRecord {
            at: now,
            key_id: caller.id.clone(),
            targeting_key: e.targeting_key,
            flag: e.flag,
            variant,
            name: e.name,
            value: e.value,
        });
    }
    if let Err(e) = store::record_events(&mut SpinSql(&db), &records) {
        return reply::internal("events: store", &e);
    }
    platform::json(
        202,
        &json!({
            "accepted": records.len(),
            "variants_resolved": resolved,
        }),
    )
}
