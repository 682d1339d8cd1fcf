//! Data protection: per-org settings (the opt-in request log, custom masking
//! patterns, retention per data class), the masked request log, retention of
//! bodies, events and audit rows, and deleting one end user's data.
//!
//! Org ids: `''` is the default org (no org); settings are keyed by org so
//! organizations can own them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use serde_json::{Value, json};

use crate::error::{ApiError, Code};
use crate::masking::{Masker, PatternSpec};
use crate::storage::{SqlExecutor, SqlValue, StatementError, in_transaction, run};

/// The default org's id.
pub const DEFAULT_ORG: &str = "";
/// Default days request bodies are kept (the "userContent 90 days").
pub const DEFAULT_BODY_DAYS: u32 = 90;
/// Longest retention one may set, days (10 years).
pub const MAX_RETENTION_DAYS: u32 = 3650;

/// Days kept per data class; `None` = the default (bodies 90 days,
/// telemetry the `retention_days` variable, events and audit forever).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Stored prompts and answers.
    pub request_bodies: Option<u32>,
    /// Request rows and usage telemetry.
    pub telemetry: Option<u32>,
    /// Experiment events (`POST /v1/events`).
    pub events: Option<u32>,
    /// Audit log rows.
    pub audit: Option<u32>,
}

/// One org's trust settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OrgSettings {
    /// Keep masked prompts and answers (opt-in; default off).
    pub store_bodies: bool,
    /// Custom masking patterns, on top of the built-in detectors.
    pub mask_patterns: Vec<PatternSpec>,
    /// Retention per data class.
    pub retention: Retention,
}

impl OrgSettings {
    /// The settings as the admin API shows them.
    pub fn to_json(&self) -> Value {
        json!({
            "store_bodies": self.store_bodies,
            "mask_patterns": self.mask_patterns,
            "retention": self.retention,
        })
    }

    /// The masker of this org (its patterns were validated when stored).
    pub fn masker(&self) -> Masker {
        Masker::new(&self.mask_patterns).unwrap_or_default()
    }
}

/// Parses `PUT /admin/settings`: a whole settings object; every bad member is
/// its own 400 naming it. Missing members take their defaults.
pub fn parse_settings(body: &Value) -> Result<OrgSettings, ApiError> {
    let object = body
        .as_object()
        .ok_or_else(|| ApiError::new(Code::InvalidJson, "settings must be a JSON object"))?;
    if let Some(unknown) = object
        .keys()
        .find(|k| !["store_bodies", "mask_patterns", "retention"].contains(&k.as_str()))
    {
        return Err(ApiError::invalid(
            unknown.clone(),
            format!(
                "unknown setting {unknown:?}; settings are store_bodies, mask_patterns, retention"
            ),
        ));
    }
    let store_bodies = match object.get("store_bodies") {
        None => false,
        Some(v) => v.as_bool().ok_or_else(|| {
            ApiError::invalid("store_bodies", "store_bodies must be true or false")
        })?,
    };
    let mask_patterns: Vec<PatternSpec> = match object.get("mask_patterns") {
        None => Vec::new(),
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| {
            ApiError::invalid(
                "mask_patterns",
                format!("mask_patterns must be a list of {{\"name\", \"pattern\"}}: {e}"),
            )
        })?,
    };
    Masker::new(&mask_patterns)?;
    let retention = match object.get("retention") {
        None => Retention::default(),
        Some(v) => parse_retention(v)?,
    };
    Ok(OrgSettings {
        store_bodies,
        mask_patterns,
        retention,
    })
}

fn parse_retention(v: &Value) -> Result<Retention, ApiError> {
    let object = v.as_object().ok_or_else(|| {
        ApiError::invalid(
            "retention",
            "retention must be an object of days per data class",
        )
    })?;
    let mut retention = Retention::default();
    for (class, days) in object {
        let slot = match class.as_str() {
            "request_bodies" => &mut retention.request_bodies,
            "telemetry" => &mut retention.telemetry,
            "events" => &mut retention.events,
            "audit" => &mut retention.audit,
            _ => {
                return Err(ApiError::invalid(
                    format!("retention.{class}"),
                    format!(
                        "unknown data class {class:?}; one of request_bodies, telemetry, events, audit"
                    ),
                ));
            }
        };
        *slot = match days {
            Value::Null => None,
            _ => Some(
                days.as_u64()
                    .and_then(|d| u32::try_from(d).ok())
                    .filter(|d| (1..=MAX_RETENTION_DAYS).contains(d))
                    .ok_or_else(|| {
                        ApiError::invalid(
                            format!("retention.{class}"),
                            format!("retention.{class} must be whole days from 1 to {MAX_RETENTION_DAYS}, or null for the default"),
                        )
                    })?,
            ),
        };
    }
    Ok(retention)
}

/// The settings of `org_id` (defaults when none were stored).
pub fn load_settings(
    db: &mut impl SqlExecutor,
    org_id: &str,
) -> Result<OrgSettings, StatementError> {
    let rows = run(
        db,
        "SELECT store_bodies, mask_patterns, retention FROM org_settings WHERE org_id = ?",
        &[SqlValue::Text(org_id.to_owned())],
    )?;
    let Some(row) = rows.first() else {
        return Ok(OrgSettings::default());
    };
    let text = |i: usize| row.get(i).and_then(SqlValue::as_str).unwrap_or_default();
    // Rows are only written from validated settings; an unreadable member
    // falls back to its default rather than stopping every request.
    Ok(OrgSettings {
        store_bodies: row.first().and_then(SqlValue::as_i64) == Some(1),
        mask_patterns: serde_json::from_str(text(1)).unwrap_or_default(),
        retention: serde_json::from_str(text(2)).unwrap_or_default(),
    })
}

/// Stores `settings` for `org_id`; returns the settings before.
pub fn save_settings(
    db: &mut impl SqlExecutor,
    org_id: &str,
    settings: &OrgSettings,
    actor: &str,
    now_ms: i64,
) -> Result<OrgSettings, StatementError> {
    in_transaction(db, |tx| {
        save_settings_in(tx, org_id, settings, actor, now_ms)
    })
}

/// [`save_settings`] inside the caller's transaction (with its audit
/// entry: [`crate::audit::audited`]).
pub fn save_settings_in(
    tx: &mut impl SqlExecutor,
    org_id: &str,
    settings: &OrgSettings,
    actor: &str,
    now_ms: i64,
) -> Result<OrgSettings, StatementError> {
    let before = load_settings(tx, org_id)?;
    crate::gateway::store::stamp(
        tx,
        crate::gateway::store::ORG_SETTINGS_STAMP_KEY,
        actor,
        now_ms,
    )?;
    run(
        tx,
        "INSERT INTO org_settings (org_id, store_bodies, mask_patterns, retention, updated_at, actor) \
         VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (org_id) DO UPDATE SET store_bodies = excluded.store_bodies, \
         mask_patterns = excluded.mask_patterns, retention = excluded.retention, \
         updated_at = excluded.updated_at, actor = excluded.actor",
        &[
            SqlValue::Text(org_id.to_owned()),
            SqlValue::Integer(i64::from(settings.store_bodies)),
            SqlValue::Text(json!(settings.mask_patterns).to_string()),
            SqlValue::Text(json!(settings.retention).to_string()),
            SqlValue::Integer(now_ms),
            SqlValue::Text(actor.to_owned()),
        ],
    )?;
    Ok(before)
}

/// What one served request leaves in the request log.
#[derive(Clone, Copy)]
pub struct Logged<'a> {
    /// The request id (`requests.id`).
    pub request_id: &'a str,
    /// The end user (OpenAI `user`), if the client named one.
    pub subject: Option<&'a str>,
    /// When it arrived, Unix ms.
    pub ts_ms: i64,
    /// The prompt as sent (the messages, JSON), built only when the org
    /// stores bodies (most do not, and serialising it is per-request work).
    pub prompt: &'a dyn Fn() -> Value,
    /// The answer text.
    pub answer: &'a str,
}

/// After a request is recorded (its subject on the request row, written by
/// the settlement's `INSERT`: `RequestRecord::subject`): when the org opted
/// in, stores its prompt and answer masked.
pub fn log_request(
    db: &mut impl SqlExecutor,
    org_id: &str,
    logged: &Logged<'_>,
) -> Result<(), StatementError> {
    let settings = load_settings(db, org_id)?;
    log_request_with(db, &settings, org_id, logged)
}

/// [`log_request`] with the org's `settings` already read (the chat
/// pipeline keeps them per instance: `gateway::store::InstanceCache`).
pub fn log_request_with(
    db: &mut impl SqlExecutor,
    settings: &OrgSettings,
    org_id: &str,
    logged: &Logged<'_>,
) -> Result<(), StatementError> {
    if !settings.store_bodies {
        return Ok(());
    }
    let masker = settings.masker();
    let prompt = masker.mask(&(logged.prompt)().to_string());
    let answer = masker.mask(logged.answer);
    let mut counts = prompt.counts;
    for (kind, n) in answer.counts {
        *counts.entry(kind).or_insert(0) += n;
    }
    run(
        db,
        "INSERT INTO request_bodies (request_id, org_id, subject, ts, prompt, answer, masked) \
         VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (request_id) DO UPDATE SET \
         org_id = excluded.org_id, subject = excluded.subject, ts = excluded.ts, \
         prompt = excluded.prompt, answer = excluded.answer, masked = excluded.masked",
        &[
            SqlValue::Text(logged.request_id.to_owned()),
            SqlValue::Text(org_id.to_owned()),
            logged
                .subject
                .map_or(SqlValue::Null, |s| SqlValue::Text(s.to_owned())),
            SqlValue::Integer(logged.ts_ms),
            SqlValue::Text(prompt.text),
            SqlValue::Text(answer.text),
            SqlValue::Text(json!(counts).to_string()),
        ],
    )?;
    Ok(())
}

/// The stored (masked) bodies of request `id` and its subject, for
/// `GET /admin/requests/{id}`: `{"subject", "bodies": null | {...}}`.
pub fn request_extras(db: &mut impl SqlExecutor, id: &str) -> Result<Value, StatementError> {
    let subject = run(
        db,
        "SELECT subject FROM requests WHERE id = ?",
        &[SqlValue::Text(id.to_owned())],
    )?
    .first()
    .and_then(|r| r.first().and_then(SqlValue::as_str).map(str::to_owned));
    let bodies = run(
        db,
        "SELECT prompt, answer, masked FROM request_bodies WHERE request_id = ?",
        &[SqlValue::Text(id.to_owned())],
    )?
    .first()
    .map(|row| {
        let text = |i: usize| row.get(i).and_then(SqlValue::as_str).unwrap_or_default();
        json!({
            // The prompt was JSON before masking; replacements keep it JSON.
            "prompt": serde_json::from_str::<Value>(text(0)).unwrap_or_else(|_| json!(text(0))),
            "answer": text(1),
            "masked": serde_json::from_str::<Value>(text(2)).unwrap_or(Value::Null),
        })
    });
    Ok(json!({"subject": subject, "bodies": bodies}))
}

/// Rows removed by [`delete_subject`], per table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct SubjectDeleted {
    /// Experiment events.
    pub events: usize,
    /// Request rows.
    pub requests: usize,
    /// Stored request bodies.
    pub request_bodies: usize,
    /// Feedback on the deleted requests (it may hold comments).
    pub feedback: usize,
}

/// Deletes one end user's events, request rows, the feedback on them and
/// stored bodies in org `org_id` (`""`: keys of no org) in one transaction.
/// A subject is the tenant's own name for its user, so the same name in
/// another org is another person and is left alone. Aggregates (usage per
/// minute and hour, flag evaluation counts) hold no subject and stay as they
/// are.
pub fn delete_subject(
    db: &mut impl SqlExecutor,
    org_id: &str,
    subject: &str,
) -> Result<SubjectDeleted, StatementError> {
    in_transaction(db, |tx| delete_subject_in(tx, org_id, subject))
}

/// "The row's `key_id` belongs to org `?`" (keys of no org have a NULL or
/// empty `org_id`; the bootstrap key has no row and so no org).
fn key_of_org(table: &str) -> String {
    format!("COALESCE((SELECT a.org_id FROM api_keys a WHERE a.id = {table}.key_id), '') = ?")
}

/// [`delete_subject`] inside the caller's transaction (with its audit
/// entry: [`crate::audit::audited`]).
pub fn delete_subject_in(
    tx: &mut impl SqlExecutor,
    org_id: &str,
    subject: &str,
) -> Result<SubjectDeleted, StatementError> {
    let param = [
        SqlValue::Text(subject.to_owned()),
        SqlValue::Text(org_id.to_owned()),
    ];
    let requests_of_subject = format!("requests WHERE subject = ? AND {}", key_of_org("requests"));
    Ok(SubjectDeleted {
        // Before the requests, which are how feedback names its subject.
        feedback: run(
            tx,
            &format!(
                "DELETE FROM feedback WHERE request_id IN (SELECT id FROM {requests_of_subject}) RETURNING 1"
            ),
            &param,
        )?
        .len(),
        request_bodies: run(
            tx,
            "DELETE FROM request_bodies WHERE subject = ? AND org_id = ? RETURNING 1",
            &param,
        )?
        .len(),
        requests: run(
            tx,
            &format!("DELETE FROM {requests_of_subject} RETURNING 1"),
            &param,
        )?
        .len(),
        events: run(
            tx,
            &format!(
                "DELETE FROM events WHERE targeting_key = ? AND {} RETURNING 1",
                key_of_org("events")
            ),
            &param,
        )?
        .len(),
    })
}

/// Validates a subject from the path: 1–256 characters, no control characters.
pub fn parse_subject(raw: &str) -> Result<&str, ApiError> {
    if raw.is_empty() || raw.len() > 256 || raw.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "targetingKey",
            "the targeting key must be 1-256 characters without control characters",
        ));
    }
    Ok(raw)
}

/// The telemetry retention of `org_id` in the form of the `retention_days`
/// variable: the org's `telemetry` days when set, else `variable` as is.
pub fn telemetry_days(
    db: &mut impl SqlExecutor,
    org_id: &str,
    variable: &str,
) -> Result<String, StatementError> {
    Ok(load_settings(db, org_id)?
        .retention
        .telemetry
        .map_or_else(|| variable.to_owned(), |days| days.to_string()))
}

/// Rows removed by [`apply_retention`], per data class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct RetentionDeleted {
    /// Stored request bodies.
    pub request_bodies: usize,
    /// Experiment events.
    pub events: usize,
    /// Audit rows.
    pub audit: usize,
}

/// Cut-off for `days` before `now_ms`.
fn cutoff(now_ms: i64, days: u32) -> i64 {
    now_ms.saturating_sub(i64::from(days) * 86_400_000)
}

/// Deletes request bodies, events and audit rows older than the org's
/// retention (bodies default to [`DEFAULT_BODY_DAYS`]; events and audit are
/// kept unless set), in one transaction. Telemetry is the `retention` scan's
/// (`observe::scan_store::retention`, with [`Retention::telemetry`]).
pub fn apply_retention(
    db: &mut impl SqlExecutor,
    org_id: &str,
    now_ms: i64,
) -> Result<RetentionDeleted, StatementError> {
    let retention = load_settings(db, org_id)?.retention;
    let org = SqlValue::Text(org_id.to_owned());
    in_transaction(db, |tx| {
        let bodies_days = retention.request_bodies.unwrap_or(DEFAULT_BODY_DAYS);
        let mut deleted = RetentionDeleted {
            request_bodies: run(
                tx,
                "DELETE FROM request_bodies WHERE org_id = ? AND ts < ? RETURNING 1",
                &[org.clone(), SqlValue::Integer(cutoff(now_ms, bodies_days))],
            )?
            .len(),
            ..RetentionDeleted::default()
        };
        // Events carry no org: the default org's setting is the one for them.
        if let Some(days) = retention.events.filter(|_| org_id == DEFAULT_ORG) {
            deleted.events = run(
                tx,
                "DELETE FROM events WHERE at < ? RETURNING 1",
                &[SqlValue::Integer(cutoff(now_ms, days))],
            )?
            .len();
        }
        if let Some(days) = retention.audit {
            deleted.audit = run(
                tx,
                "DELETE FROM audit_log WHERE org_id = ? AND at < ? RETURNING 1",
                &[org.clone(), SqlValue::Integer(cutoff(now_ms, days))],
            )?
            .len();
        }
        Ok(deleted)
    })
}

/// [`apply_retention`] for the default org and then every org that has
/// settings of its own, keyed by org id (`""`: the default).
pub fn apply_retention_to_every_org(
    db: &mut impl SqlExecutor,
    now_ms: i64,
) -> Result<BTreeMap<String, RetentionDeleted>, StatementError> {
    let mut orgs = vec![DEFAULT_ORG.to_owned()];
    for row in run(
        db,
        "SELECT org_id FROM org_settings WHERE org_id <> '' ORDER BY org_id",
        &[],
    )? {
        if let Some(id) = row.first().and_then(SqlValue::as_str) {
            orgs.push(id.to_owned());
        }
    }
    let mut deleted = BTreeMap::new();
    for org in orgs {
        let d = apply_retention(db, &org, now_ms)?;
        deleted.insert(org, d);
    }
    Ok(deleted)
}

#[cfg(test)]
#[path = "privacy_tests.rs"]
mod tests;
