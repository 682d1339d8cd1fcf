//! `POST /v1/events` and the experiments admin API. Parsing, validation,
//! statistics and the SQL live in `dol_core::experiments`; this module reads
//! the request, resolves variants through the in-process flag evaluator,
//! and maps results to HTTP.
//!
//! Variants of events: when an event has no `variant`, the flag is
//! evaluated for its targeting key (and `context`) exactly as OFREP would,
//! and the served variant is stored. When it has one, that variant is
//! stored as sent — it is what the user saw, even if the flag has changed
//! since — but it must be one of the variants the flag declares, so a typo
//! cannot create a phantom variant. Either way the flag must exist.

use std::collections::BTreeMap;

use dol_core::experiments::definition::{self, DefinitionError};
use dol_core::experiments::events::{self, EventError, EventRecord};
use dol_core::experiments::{report, store};
use dol_core::gateway::openai::{ErrorBody, ErrorType};
use serde_json::{Value, json};
use spin_sdk::http::Response;
use spin_sdk::sqlite::Connection;

use crate::flags::{self, Served};
use crate::http::Incoming;
use crate::{chat, config, store as gw_store};
use dol_spin_platform::{self as platform, SpinSql, in_transaction};

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
            return chat::server_error();
        }
    };
    let db = match gw_store::db() {
        Ok(db) => db,
        Err(e) => return chat::internal("events", &e),
    };
    let caller = match chat::authenticate(req, &db, &settings.bootstrap_key) {
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
                        Err(err) => return chat::internal("events: flag document", &err),
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
    let stored = in_transaction(&mut SpinSql(&db), |db| {
        store::insert_events(db, &records).map_err(anyhow::Error::from)
    });
    if let Err(e) = stored {
        return chat::internal("events: store", &e);
    }
    platform::json(
        202,
        &json!({
            "accepted": records.len(),
            "variants_resolved": resolved,
        }),
    )
}

fn definition_error(e: &DefinitionError) -> Response {
    platform::json(
        400,
        &json!({"error": {"code": "bad-request", "field": e.field(), "message": e.to_string()}}),
    )
}

/// `GET /admin/experiments`.
pub fn list(db: &Connection) -> anyhow::Result<Response> {
    let all = store::list(&mut SpinSql(db))?;
    let items: Vec<Value> = all.iter().map(store::StoredExperiment::to_json).collect();
    Ok(platform::json(200, &json!({ "experiments": items })))
}

/// `PUT /admin/experiments/{key}`: validate, then create or replace.
pub fn put(
    body: &Value,
    db: &Connection,
    key: &str,
    actor: &str,
    now: i64,
) -> anyhow::Result<Response> {
    if let Err(e) = definition::check_key(key) {
        return Ok(definition_error(&e));
    }
    let def = match definition::parse(body, now) {
        Ok(d) => d,
        Err(e) => return Ok(definition_error(&e)),
    };
    let created = store::put(&mut SpinSql(db), key, &def, actor, now)?;
    let stored = store::get(&mut SpinSql(db), key)?;
    let body = stored.map_or(Value::Null, |s| s.to_json());
    Ok(platform::json(if created { 201 } else { 200 }, &body))
}

/// `GET /admin/experiments/{key}`: the report.
pub fn get(db: &Connection, key: &str) -> anyhow::Result<Response> {
    if let Err(e) = definition::check_key(key) {
        return Ok(definition_error(&e));
    }
    let Some(exp) = store::get(&mut SpinSql(db), key)? else {
        return Ok(platform::error(
            404,
            "not-found",
            &format!("no experiment {key}"),
        ));
    };
    let data = store::collect(&mut SpinSql(db), &exp.definition)?;
    let report = report::build(key, &exp.definition, &data);
    let mut body = serde_json::to_value(&report)?;
    body["definition"] = exp.definition.to_json();
    body["created_at"] = json!(exp.created_at);
    body["updated_at"] = json!(exp.updated_at);
    body["actor"] = json!(exp.actor);
    Ok(platform::json(200, &body))
}

/// `DELETE /admin/experiments/{key}` (its events stay).
pub fn delete(db: &Connection, key: &str) -> anyhow::Result<Response> {
    if let Err(e) = definition::check_key(key) {
        return Ok(definition_error(&e));
    }
    Ok(if store::delete(&mut SpinSql(db), key)? {
        platform::json(200, &json!({ "deleted": key }))
    } else {
        platform::error(404, "not-found", &format!("no experiment {key}"))
    })
}
