//! Storage for alerting (`migrations/0004_alerts.sql`): alert states,
//! silences, the notification outbox and control values, over any
//! [`SqlExecutor`] (Spin's SQLite in the components, rusqlite in tests).
//!
//! The state machine stays in [`super::alerts`]; the functions here load the
//! states it needs, run it, and write the result back together with the
//! notifications it produced, in one `BEGIN IMMEDIATE` transaction, so a
//! refused action or a failed statement changes nothing. Functions that open
//! a transaction say so: do not call them inside another one.
//!
//! Times are Unix epoch milliseconds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use super::alerts::{
    self, ActionError, AlertRule, AlertSource, AlertState, AlertStatus, ExternalAlert, Matcher,
    MetricValues, Notification, Severity, Silence,
};
use super::score::{EmergencyConfig, EmergencyReason, EmergencyState, Override, decide_emergency};
use crate::storage::{ColumnError, Row, SqlExecutor, SqlValue};

/// Outbox kind of an alert notification; the payload is a [`Notification`]
/// and the target [`TARGET_DEFAULT`].
pub const KIND_ALERT: &str = "alert";
/// Outbox kind of a Slack `response_url` follow-up; the target is the URL and
/// the payload the Slack message.
pub const KIND_SLACK_RESPONSE: &str = "slack_response";
/// Target meaning "the app's configured notification channels".
pub const TARGET_DEFAULT: &str = "default";

/// Control key of the emergency-mode override.
pub const EMERGENCY_KEY: &str = "emergency_mode";

/// Control key of the automatic emergency state (`{"active": bool}`), written
/// by the health evaluation; an operator override under [`EMERGENCY_KEY`] wins.
pub const EMERGENCY_AUTO_KEY: &str = "emergency_auto";

/// First retry delay of a failed outbox delivery, ms.
pub const BACKOFF_BASE_MS: i64 = 30_000;
/// Longest retry delay, ms: failed messages are retried at least hourly,
/// never dropped.
pub const BACKOFF_MAX_MS: i64 = 3_600_000;
/// `last_error` is cut to this many characters.
pub const MAX_ERROR_CHARS: usize = 500;

/// Why a storage call failed. `Sql`, `Corrupt`, `Column`, `KeyValue` and
/// `Json` carry storage internals: log them, do not send them to clients.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum StoreError {
    /// A statement failed.
    #[error("{context}: {message}")]
    Sql {
        /// What was being done.
        context: &'static str,
        /// The database's message.
        message: String,
    },
    /// A stored row has an unexpected shape.
    #[error("{table}: unreadable row: {reason}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A column of a result row is missing or does not hold the type its
    /// reader expects.
    #[error(transparent)]
    Column(#[from] ColumnError),
    /// A key-value call failed.
    #[error("{context}: {message}")]
    KeyValue {
        /// What was being done.
        context: &'static str,
        /// The store's message.
        message: String,
    },
    /// A value could not be written as JSON.
    #[error("encoding JSON: {0}")]
    Json(String),
    /// The alert state machine refused the action (unknown id, not firing,
    /// already acknowledged); nothing was changed.
    #[error(transparent)]
    Refused(#[from] ActionError),
    /// A silence with this id exists already.
    #[error("silence `{0}` exists already")]
    DuplicateSilence(String),
    /// The silence is not usable (no matchers, or it ends before it starts).
    #[error("invalid silence: {0}")]
    InvalidSilence(&'static str),
}

/// So [`crate::storage::in_transaction`] can run store calls: its own
/// `BEGIN` / `COMMIT` failures become [`StoreError::Sql`].
impl From<crate::storage::StatementError> for StoreError {
    fn from(e: crate::storage::StatementError) -> Self {
        Self::Sql {
            context: "transaction",
            message: e.to_string(),
        }
    }
}

/// One stored alert: its state-machine state plus what DOL shows about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRecord {
    /// The state (fingerprint = alert id).
    pub state: AlertState,
    /// Latest one-line description.
    pub summary: String,
    /// Last write, ms.
    pub updated_at_ms: i64,
}

/// Which alerts [`list_alerts`] returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AlertQuery {
    /// Only this status.
    pub status: Option<AlertStatus>,
    /// Only this source.
    pub source: Option<AlertSource>,
    /// At most this many (all when `None`).
    pub limit: Option<u32>,
}

/// What an acknowledge or resolve did.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionOutcome {
    /// The alert after the action.
    pub alert: AlertRecord,
    /// Outbox id of the notification queued, if one was (`None` when silenced).
    pub queued: Option<i64>,
}

/// What [`apply_external_alerts`] did, by fingerprint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalOutcome {
    /// Started firing (new, or firing again).
    pub fired: Vec<String>,
    /// Resolved.
    pub resolved: Vec<String>,
    /// Already in that state (a repeat), or a resolve of an unknown or
    /// non-firing alert: nothing changed.
    pub unchanged: Vec<String>,
    /// Ids of alerts of another source (a rule's, an anomaly's, another
    /// webhook's): left alone, since ids are per source.
    pub conflicting: Vec<String>,
    /// Notifications queued in the outbox.
    pub queued: usize,
}

/// A message to put in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage<'a> {
    /// What it is ([`KIND_ALERT`], [`KIND_SLACK_RESPONSE`], …).
    pub kind: &'a str,
    /// Where it goes (a URL, or [`TARGET_DEFAULT`]).
    pub target: &'a str,
    /// The body.
    pub payload: &'a Value,
    /// Idempotency key: a second message with the same key is not queued.
    pub dedup_key: Option<&'a str>,
}

/// One outbox row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxMessage {
    /// Row id.
    pub id: i64,
    /// Kind.
    pub kind: String,
    /// Target.
    pub target: String,
    /// Body.
    pub payload: Value,
    /// Idempotency key.
    pub dedup_key: Option<String>,
    /// Failed deliveries so far.
    pub attempts: u32,
    /// Not to be tried before this, ms.
    pub next_attempt_at_ms: i64,
    /// Delivered at, ms.
    pub delivered_at_ms: Option<i64>,
    /// Last delivery error (never holds secrets: callers pass safe text).
    pub last_error: Option<String>,
    /// Queued at, ms.
    pub created_at_ms: i64,
}

/// One control value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlValue {
    /// Key.
    pub key: String,
    /// Value.
    pub value: Value,
    /// Who set it.
    pub updated_by: String,
    /// When, ms.
    pub updated_at_ms: i64,
}

/// An operator's override of emergency mode (stored under [`EMERGENCY_KEY`];
/// no row means automatic: on when health is low, off when it recovers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmergencyOverride {
    /// Forced on.
    On,
    /// Forced off.
    Off,
}

// ---------------------------------------------------------------------------
// Small helpers

fn exec(
    db: &mut impl SqlExecutor,
    context: &'static str,
    sql: &str,
    params: &[SqlValue],
) -> Result<Vec<Vec<SqlValue>>, StoreError> {
    db.execute(sql, params)
        .map_err(|message| StoreError::Sql { context, message })
}

fn text(s: &str) -> SqlValue {
    SqlValue::Text(s.to_owned())
}

fn opt_text(s: Option<&str>) -> SqlValue {
    s.map_or(SqlValue::Null, text)
}

fn opt_int(i: Option<i64>) -> SqlValue {
    i.map_or(SqlValue::Null, SqlValue::Integer)
}

fn u64_int(n: u64) -> SqlValue {
    SqlValue::Integer(i64::try_from(n).unwrap_or(i64::MAX))
}

fn to_json<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Json(e.to_string()))
}

fn u64_of(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

// ---------------------------------------------------------------------------
// Alert states

const ALERT_COLUMNS: &str = "fingerprint, name, source, severity, status, labels, summary, value, \
active_since, fired_at, resolved_at, acknowledged_by, acknowledged_at, resolved_by, incidents, \
total_repair_ms, last_repair_ms, updated_at";

fn status_str(s: AlertStatus) -> &'static str {
    match s {
        AlertStatus::Inactive => "inactive",
        AlertStatus::Pending => "pending",
        AlertStatus::Firing => "firing",
        AlertStatus::Resolved => "resolved",
    }
}

fn parse_status(s: &str) -> Option<AlertStatus> {
    Some(match s {
        "inactive" => AlertStatus::Inactive,
        "pending" => AlertStatus::Pending,
        "firing" => AlertStatus::Firing,
        "resolved" => AlertStatus::Resolved,
        _ => return None,
    })
}

fn alert_from_row(values: &[SqlValue]) -> Result<AlertRecord, StoreError> {
    let r = Row::new("alert_states", values);
    let source = AlertSource::parse(r.text(2, "source")?)
        .ok_or_else(|| r.error("source", "a known source"))?;
    let severity = Severity::parse(r.text(3, "severity")?)
        .ok_or_else(|| r.error("severity", "a known severity"))?;
    let status =
        parse_status(r.text(4, "status")?).ok_or_else(|| r.error("status", "a known status"))?;
    let labels: BTreeMap<String, String> = r.json(5, "labels")?;
    let state = AlertState {
        fingerprint: r.text(0, "fingerprint")?.to_owned(),
        name: r.text(1, "name")?.to_owned(),
        source,
        severity,
        labels,
        status,
        value: r.opt_real(7, "value")?,
        active_since_ms: r.opt_int(8, "active_since")?,
        fired_at_ms: r.opt_int(9, "fired_at")?,
        resolved_at_ms: r.opt_int(10, "resolved_at")?,
        acknowledged_by: r.opt_text(11, "acknowledged_by")?.map(str::to_owned),
        acknowledged_at_ms: r.opt_int(12, "acknowledged_at")?,
        resolved_by: r.opt_text(13, "resolved_by")?.map(str::to_owned),
        incidents: u64_of(r.int(14, "incidents")?),
        total_repair_ms: u64_of(r.int(15, "total_repair_ms")?),
        last_repair_ms: r.opt_int(16, "last_repair_ms")?.map(u64_of),
    };
    Ok(AlertRecord {
        state,
        summary: r.text(6, "summary")?.to_owned(),
        updated_at_ms: r.int(17, "updated_at")?,
    })
}

/// One alert by id (fingerprint).
pub fn get_alert(db: &mut impl SqlExecutor, id: &str) -> Result<Option<AlertRecord>, StoreError> {
    let rows = exec(
        db,
        "read alert",
        &format!("SELECT {ALERT_COLUMNS} FROM alert_states WHERE fingerprint = ?"),
        &[text(id)],
    )?;
    rows.first().map(|row| alert_from_row(row)).transpose()
}

/// Alerts matching `query`, most severe first, then most recently fired
/// first, then by name.
pub fn list_alerts(
    db: &mut impl SqlExecutor,
    query: &AlertQuery,
) -> Result<Vec<AlertRecord>, StoreError> {
    let mut sql = format!("SELECT {ALERT_COLUMNS} FROM alert_states WHERE 1 = 1");
    let mut params = Vec::new();
    if let Some(status) = query.status {
        sql.push_str(" AND status = ?");
        params.push(text(status_str(status)));
    }
    if let Some(source) = query.source {
        sql.push_str(" AND source = ?");
        params.push(text(source.as_str()));
    }
    sql.push_str(
        " ORDER BY CASE severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END, \
         fired_at DESC, name, fingerprint",
    );
    if let Some(limit) = query.limit {
        sql.push_str(" LIMIT ?");
        params.push(SqlValue::Integer(i64::from(limit)));
    }
    exec(db, "list alerts", &sql, &params)?
        .iter()
        .map(|row| alert_from_row(row))
        .collect()
}

/// Firing alerts, most severe first.
pub fn active_alerts(db: &mut impl SqlExecutor) -> Result<Vec<AlertRecord>, StoreError> {
    list_alerts(
        db,
        &AlertQuery {
            status: Some(AlertStatus::Firing),
            ..AlertQuery::default()
        },
    )
}

/// Inserts or replaces an alert's state. `summary` replaces the stored one
/// when given; a new row without one gets the alert's name.
pub fn upsert_alert(
    db: &mut impl SqlExecutor,
    state: &AlertState,
    summary: Option<&str>,
    now_ms: i64,
) -> Result<(), StoreError> {
    let s = state;
    exec(
        db,
        "write alert",
        "INSERT INTO alert_states (fingerprint, name, source, severity, status, labels, summary, \
         value, active_since, fired_at, resolved_at, acknowledged_by, acknowledged_at, resolved_by, \
         incidents, total_repair_ms, last_repair_ms, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, COALESCE(?, ?), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (fingerprint) DO UPDATE SET name = excluded.name, source = excluded.source, \
         severity = excluded.severity, status = excluded.status, labels = excluded.labels, \
         summary = COALESCE(?, alert_states.summary), value = excluded.value, \
         active_since = excluded.active_since, fired_at = excluded.fired_at, \
         resolved_at = excluded.resolved_at, acknowledged_by = excluded.acknowledged_by, \
         acknowledged_at = excluded.acknowledged_at, resolved_by = excluded.resolved_by, \
         incidents = excluded.incidents, total_repair_ms = excluded.total_repair_ms, \
         last_repair_ms = excluded.last_repair_ms, updated_at = excluded.updated_at",
        &[
            text(&s.fingerprint),
            text(&s.name),
            text(s.source.as_str()),
            text(s.severity.as_str()),
            text(status_str(s.status)),
            SqlValue::Text(to_json(&s.labels)?),
            opt_text(summary),
            text(&s.name),
            s.value
                .filter(|v| v.is_finite())
                .map_or(SqlValue::Null, SqlValue::Real),
            opt_int(s.active_since_ms),
            opt_int(s.fired_at_ms),
            opt_int(s.resolved_at_ms),
            opt_text(s.acknowledged_by.as_deref()),
            opt_int(s.acknowledged_at_ms),
            opt_text(s.resolved_by.as_deref()),
            u64_int(s.incidents),
            u64_int(s.total_repair_ms),
            s.last_repair_ms.map_or(SqlValue::Null, u64_int),
            SqlValue::Integer(now_ms),
            SqlValue::Integer(now_ms),
            opt_text(summary),
        ],
    )?;
    record_incident(db, state)
}

/// Adds or completes the incident of `state`'s current period (migration
/// 16): a fired alert has one row per `fired_at`; its acknowledgement and
/// resolution are set once and never moved. `resolved_at` of an alert that
/// fired again is the previous period's, so it only counts while resolved.
fn record_incident(db: &mut impl SqlExecutor, s: &AlertState) -> Result<(), StoreError> {
    let Some(fired_at) = s.fired_at_ms else {
        return Ok(());
    };
    let resolved_at = s
        .resolved_at_ms
        .filter(|r| s.status == AlertStatus::Resolved && *r >= fired_at);
    exec(
        db,
        "record incident",
        "INSERT INTO alert_incidents (fingerprint, fired_at, name, severity, source, \
         acknowledged_at, acknowledged_by, resolved_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (fingerprint, fired_at) DO UPDATE SET \
         acknowledged_at = COALESCE(alert_incidents.acknowledged_at, excluded.acknowledged_at), \
         acknowledged_by = COALESCE(alert_incidents.acknowledged_by, excluded.acknowledged_by), \
         resolved_at = COALESCE(alert_incidents.resolved_at, excluded.resolved_at)",
        &[
            text(&s.fingerprint),
            SqlValue::Integer(fired_at),
            text(&s.name),
            text(s.severity.as_str()),
            text(s.source.as_str()),
            opt_int(s.acknowledged_at_ms),
            opt_text(s.acknowledged_by.as_deref()),
            opt_int(resolved_at),
        ],
    )?;
    Ok(())
}

/// How fast incidents that started in a window were answered.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct IncidentStats {
    /// Incidents that started in the window.
    pub incidents: u64,
    /// Of those, acknowledged by someone.
    pub acknowledged: u64,
    /// Of those, resolved (by the rule clearing or by hand).
    pub resolved: u64,
    /// Of those, still open.
    pub open: u64,
    /// Mean time to acknowledge over the acknowledged ones, ms.
    pub mtta_ms: Option<u64>,
    /// Mean time to resolve over the resolved ones, ms.
    pub mttr_ms: Option<u64>,
}

/// [`IncidentStats`] over the last 7 and the last 30 days at `now_ms`,
/// keyed `7d` and `30d` (what `GET /admin/alerts` and the console show).
pub fn incident_windows(
    db: &mut impl SqlExecutor,
    now_ms: i64,
) -> Result<BTreeMap<&'static str, IncidentStats>, StoreError> {
    const DAY_MS: i64 = 86_400_000;
    Ok(BTreeMap::from([
        ("7d", incident_stats(db, now_ms - 7 * DAY_MS)?),
        ("30d", incident_stats(db, now_ms - 30 * DAY_MS)?),
    ]))
}

/// [`IncidentStats`] of the incidents that fired at or after `since_ms`.
pub fn incident_stats(
    db: &mut impl SqlExecutor,
    since_ms: i64,
) -> Result<IncidentStats, StoreError> {
    let rows = exec(
        db,
        "read incident statistics",
        "SELECT COUNT(*), COUNT(acknowledged_at), COUNT(resolved_at), \
         AVG(acknowledged_at - fired_at), AVG(resolved_at - fired_at) \
         FROM alert_incidents WHERE fired_at >= ?",
        &[SqlValue::Integer(since_ms)],
    )?;
    let Some(values) = rows.first() else {
        return Ok(IncidentStats::default());
    };
    let r = Row::new("alert_incidents", values);
    let count = |i, c| r.int(i, c).map(u64_of);
    let mean = |i, c| -> Result<Option<u64>, StoreError> {
        // AVG of whole milliseconds; a negative one (clock steps) reads as 0.
        Ok(r.opt_real(i, c)?.map(|ms| ms.max(0.0).round() as u64))
    };
    let incidents = count(0, "fired_at")?;
    let resolved = count(2, "resolved_at")?;
    Ok(IncidentStats {
        incidents,
        acknowledged: count(1, "acknowledged_at")?,
        resolved,
        open: incidents.saturating_sub(resolved),
        mtta_ms: mean(3, "acknowledged_at")?,
        mttr_ms: mean(4, "resolved_at")?,
    })
}

/// Deletes an alert; returns whether it existed.
pub fn delete_alert(db: &mut impl SqlExecutor, id: &str) -> Result<bool, StoreError> {
    let existed = get_alert(db, id)?.is_some();
    exec(
        db,
        "delete alert",
        "DELETE FROM alert_states WHERE fingerprint = ?",
        &[text(id)],
    )?;
    Ok(existed)
}

/// Which manual action [`act`] runs.
#[derive(Clone, Copy)]
enum Action {
    Acknowledge,
    Resolve,
}

fn act(
    db: &mut impl SqlExecutor,
    action: Action,
    id: &str,
    by: &str,
    now_ms: i64,
) -> Result<ActionOutcome, StoreError> {
    crate::storage::in_transaction(db, |db| {
        let Some(record) = get_alert(db, id)? else {
            return Err(ActionError::NotFound(id.to_owned()).into());
        };
        let silences = active_silences(db, now_ms)?;
        let mut states = [record.state];
        let note = match action {
            Action::Acknowledge => alerts::acknowledge(&mut states, id, by, &silences, now_ms)?,
            Action::Resolve => alerts::resolve(&mut states, id, by, &silences, now_ms)?,
        };
        let [state] = states;
        upsert_alert(db, &state, None, now_ms)?;
        let queued = match &note {
            Some(n) => enqueue_notification(db, n, now_ms)?,
            None => None,
        };
        Ok(ActionOutcome {
            alert: AlertRecord {
                state,
                summary: record.summary,
                updated_at_ms: now_ms,
            },
            queued,
        })
    })
}

/// Acknowledges a firing alert and queues the notification, in one
/// transaction (refusals change nothing: [`StoreError::Refused`]).
pub fn acknowledge_alert(
    db: &mut impl SqlExecutor,
    id: &str,
    by: &str,
    now_ms: i64,
) -> Result<ActionOutcome, StoreError> {
    act(db, Action::Acknowledge, id, by, now_ms)
}

/// Resolves a firing (or pending) alert by hand, recording MTTR, and queues
/// the notification, in one transaction.
pub fn resolve_alert(
    db: &mut impl SqlExecutor,
    id: &str,
    by: &str,
    now_ms: i64,
) -> Result<ActionOutcome, StoreError> {
    act(db, Action::Resolve, id, by, now_ms)
}

/// Applies external alerts (Alertmanager, the generic webhook) from
/// `source`, deduplicated by fingerprint (see
/// [`alerts::apply_external_from`]), stores the changed states with their
/// summaries and queues the notifications, in one transaction.
pub fn apply_external_alerts(
    db: &mut impl SqlExecutor,
    source: AlertSource,
    incoming: &[ExternalAlert],
    now_ms: i64,
) -> Result<ExternalOutcome, StoreError> {
    crate::storage::in_transaction(db, |db| {
        let mut states = Vec::new();
        let mut conflicting: Vec<String> = Vec::new();
        for a in incoming {
            if states
                .iter()
                .any(|s: &AlertState| s.fingerprint == a.fingerprint)
                || conflicting.contains(&a.fingerprint)
            {
                continue;
            }
            if let Some(r) = get_alert(db, &a.fingerprint)? {
                // An id of another source's alert: a webhook must not fire,
                // resolve or rewrite a rule's (or another sender's) alert.
                if r.state.source != source {
                    conflicting.push(a.fingerprint.clone());
                    continue;
                }
                states.push(r.state);
            }
        }
        let incoming: Vec<ExternalAlert> = incoming
            .iter()
            .filter(|a| !conflicting.contains(&a.fingerprint))
            .cloned()
            .collect();
        let incoming = incoming.as_slice();
        let before = states.clone();
        let silences = active_silences(db, now_ms)?;
        let notes = alerts::apply_external_from(&mut states, incoming, source, &silences, now_ms);
        let mut outcome = ExternalOutcome {
            conflicting,
            ..ExternalOutcome::default()
        };
        for a in incoming {
            let fp = &a.fingerprint;
            let was = before.iter().find(|s| &s.fingerprint == fp);
            let now = states.iter().find(|s| &s.fingerprint == fp);
            let seen = outcome
                .fired
                .iter()
                .chain(&outcome.resolved)
                .chain(&outcome.unchanged)
                .any(|x| x == fp);
            if seen {
                continue;
            }
            match now {
                Some(s) if Some(s) != was => {
                    upsert_alert(db, s, Some(&a.summary), now_ms)?;
                    if s.status == AlertStatus::Firing {
                        outcome.fired.push(fp.clone());
                    } else {
                        outcome.resolved.push(fp.clone());
                    }
                }
                _ => outcome.unchanged.push(fp.clone()),
            }
        }
        for n in &notes {
            if enqueue_notification(db, n, now_ms)?.is_some() {
                outcome.queued += 1;
            }
        }
        Ok(outcome)
    })
}

// ---------------------------------------------------------------------------
// Silences

fn silence_from_row(values: &[SqlValue]) -> Result<Silence, StoreError> {
    let r = Row::new("silences", values);
    let matchers: Vec<Matcher> = r.json(1, "matchers")?;
    Ok(Silence {
        id: r.text(0, "id")?.to_owned(),
        matchers,
        starts_at_ms: r.int(2, "starts_at")?,
        ends_at_ms: r.int(3, "ends_at")?,
        created_by: r.text(4, "created_by")?.to_owned(),
        comment: r.text(5, "comment")?.to_owned(),
    })
}

const SILENCE_COLUMNS: &str = "id, matchers, starts_at, ends_at, created_by, comment";

/// Stores a new silence. Refused without matchers (it would mute nothing),
/// when it ends before it starts, or when the id is taken.
pub fn create_silence(
    db: &mut impl SqlExecutor,
    silence: &Silence,
    now_ms: i64,
) -> Result<(), StoreError> {
    if silence.matchers.is_empty() {
        return Err(StoreError::InvalidSilence("it has no matchers"));
    }
    if silence.ends_at_ms <= silence.starts_at_ms {
        return Err(StoreError::InvalidSilence("it ends before it starts"));
    }
    if get_silence(db, &silence.id)?.is_some() {
        return Err(StoreError::DuplicateSilence(silence.id.clone()));
    }
    exec(
        db,
        "write silence",
        "INSERT INTO silences (id, matchers, starts_at, ends_at, created_by, comment, created_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
        &[
            text(&silence.id),
            SqlValue::Text(to_json(&silence.matchers)?),
            SqlValue::Integer(silence.starts_at_ms),
            SqlValue::Integer(silence.ends_at_ms),
            text(&silence.created_by),
            text(&silence.comment),
            SqlValue::Integer(now_ms),
        ],
    )?;
    Ok(())
}

/// One silence by id.
pub fn get_silence(db: &mut impl SqlExecutor, id: &str) -> Result<Option<Silence>, StoreError> {
    let rows = exec(
        db,
        "read silence",
        &format!("SELECT {SILENCE_COLUMNS} FROM silences WHERE id = ?"),
        &[text(id)],
    )?;
    rows.first().map(|row| silence_from_row(row)).transpose()
}

/// Every silence, by start time.
pub fn list_silences(db: &mut impl SqlExecutor) -> Result<Vec<Silence>, StoreError> {
    exec(
        db,
        "list silences",
        &format!("SELECT {SILENCE_COLUMNS} FROM silences ORDER BY starts_at, id"),
        &[],
    )?
    .iter()
    .map(|row| silence_from_row(row))
    .collect()
}

/// Silences in force at `now_ms` (start inclusive, end exclusive).
pub fn active_silences(db: &mut impl SqlExecutor, now_ms: i64) -> Result<Vec<Silence>, StoreError> {
    exec(
        db,
        "list active silences",
        &format!(
            "SELECT {SILENCE_COLUMNS} FROM silences WHERE starts_at <= ? AND ends_at > ? \
             ORDER BY starts_at, id"
        ),
        &[SqlValue::Integer(now_ms), SqlValue::Integer(now_ms)],
    )?
    .iter()
    .map(|row| silence_from_row(row))
    .collect()
}

/// Deletes a silence; returns whether it existed.
pub fn delete_silence(db: &mut impl SqlExecutor, id: &str) -> Result<bool, StoreError> {
    let existed = get_silence(db, id)?.is_some();
    exec(
        db,
        "delete silence",
        "DELETE FROM silences WHERE id = ?",
        &[text(id)],
    )?;
    Ok(existed)
}

/// Deletes silences that ended before `before_ms`; returns how many.
pub fn purge_silences(db: &mut impl SqlExecutor, before_ms: i64) -> Result<usize, StoreError> {
    let rows = exec(
        db,
        "purge silences",
        "DELETE FROM silences WHERE ends_at <= ? RETURNING id",
        &[SqlValue::Integer(before_ms)],
    )?;
    Ok(rows.len())
}

// ---------------------------------------------------------------------------
// Outbox

const OUTBOX_COLUMNS: &str = "id, kind, target, payload, dedup_key, attempts, next_attempt_at, \
delivered_at, last_error, created_at";

fn message_from_row(values: &[SqlValue]) -> Result<OutboxMessage, StoreError> {
    let r = Row::new("outbox", values);
    Ok(OutboxMessage {
        id: r.int(0, "id")?,
        kind: r.text(1, "kind")?.to_owned(),
        target: r.text(2, "target")?.to_owned(),
        payload: r.json(3, "payload")?,
        dedup_key: r.opt_text(4, "dedup_key")?.map(str::to_owned),
        attempts: u32::try_from(r.int(5, "attempts")?).unwrap_or(u32::MAX),
        next_attempt_at_ms: r.int(6, "next_attempt_at")?,
        delivered_at_ms: r.opt_int(7, "delivered_at")?,
        last_error: r.opt_text(8, "last_error")?.map(str::to_owned),
        created_at_ms: r.int(9, "created_at")?,
    })
}

/// Queues a message, due at once. Returns its id, or `None` when a message
/// with the same `dedup_key` is already queued (then nothing is written).
pub fn enqueue(
    db: &mut impl SqlExecutor,
    message: &NewMessage<'_>,
    now_ms: i64,
) -> Result<Option<i64>, StoreError> {
    let rows = exec(
        db,
        "queue message",
        "INSERT INTO outbox (kind, target, payload, dedup_key, attempts, next_attempt_at, created_at) \
         VALUES (?, ?, ?, ?, 0, ?, ?) ON CONFLICT (dedup_key) DO NOTHING RETURNING id",
        &[
            text(message.kind),
            text(message.target),
            SqlValue::Text(message.payload.to_string()),
            opt_text(message.dedup_key),
            SqlValue::Integer(now_ms),
            SqlValue::Integer(now_ms),
        ],
    )?;
    Ok(rows
        .first()
        .and_then(|r| r.first())
        .and_then(SqlValue::as_i64))
}

/// Queues an alert notification ([`KIND_ALERT`] to [`TARGET_DEFAULT`]),
/// deduplicated by [`Notification::dedup_key`].
pub fn enqueue_notification(
    db: &mut impl SqlExecutor,
    notification: &Notification,
    now_ms: i64,
) -> Result<Option<i64>, StoreError> {
    let payload =
        serde_json::to_value(notification).map_err(|e| StoreError::Json(e.to_string()))?;
    let key = notification.dedup_key();
    enqueue(
        db,
        &NewMessage {
            kind: KIND_ALERT,
            target: TARGET_DEFAULT,
            payload: &payload,
            dedup_key: Some(&key),
        },
        now_ms,
    )
}

/// One message by id.
pub fn get_message(
    db: &mut impl SqlExecutor,
    id: i64,
) -> Result<Option<OutboxMessage>, StoreError> {
    let rows = exec(
        db,
        "read message",
        &format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = ?"),
        &[SqlValue::Integer(id)],
    )?;
    rows.first().map(|row| message_from_row(row)).transpose()
}

/// Undelivered messages due at `now_ms`, oldest first, at most `limit`.
pub fn due_messages(
    db: &mut impl SqlExecutor,
    now_ms: i64,
    limit: u32,
) -> Result<Vec<OutboxMessage>, StoreError> {
    exec(
        db,
        "list due messages",
        &format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE delivered_at IS NULL AND next_attempt_at <= ? \
             ORDER BY next_attempt_at, id LIMIT ?"
        ),
        &[SqlValue::Integer(now_ms), SqlValue::Integer(i64::from(limit))],
    )?
    .iter()
    .map(|row| message_from_row(row))
    .collect()
}

/// Every undelivered message (due or waiting for a retry), oldest first.
pub fn pending_messages(
    db: &mut impl SqlExecutor,
    limit: u32,
) -> Result<Vec<OutboxMessage>, StoreError> {
    exec(
        db,
        "list pending messages",
        &format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE delivered_at IS NULL ORDER BY id LIMIT ?"
        ),
        &[SqlValue::Integer(i64::from(limit))],
    )?
    .iter()
    .map(|row| message_from_row(row))
    .collect()
}

/// How long a claimed message is held by its sender ([`claim_message`]):
/// time for one delivery; a sender that dies holds it no longer.
pub const CLAIM_HOLD_MS: i64 = 120_000;

/// Claims the due message `id` for one sender at `now_ms`, atomically:
/// true for one caller only, which then delivers it and marks it delivered
/// or failed. Its next try moves to [`CLAIM_HOLD_MS`] from now, so overlapping
/// delivery runs (the `alerts` and `rollouts` scans, several replicas) never
/// send it together, and a sender that dies leaves it due again after the
/// hold (delivery stays at least once). False: not due, delivered, or
/// claimed by another sender.
pub fn claim_message(db: &mut impl SqlExecutor, id: i64, now_ms: i64) -> Result<bool, StoreError> {
    let rows = exec(
        db,
        "claim message",
        "UPDATE outbox SET next_attempt_at = ?1 \
         WHERE id = ?2 AND delivered_at IS NULL AND next_attempt_at <= ?3 RETURNING id",
        &[
            SqlValue::Integer(now_ms.saturating_add(CLAIM_HOLD_MS)),
            SqlValue::Integer(id),
            SqlValue::Integer(now_ms),
        ],
    )?;
    Ok(!rows.is_empty())
}

/// Gives the claimed message `id` back, due at `due_ms` again (its sender
/// found no channel to send it to); false when it is delivered or gone.
pub fn unclaim_message(
    db: &mut impl SqlExecutor,
    id: i64,
    due_ms: i64,
) -> Result<bool, StoreError> {
    let rows = exec(
        db,
        "unclaim message",
        "UPDATE outbox SET next_attempt_at = ? WHERE id = ? AND delivered_at IS NULL RETURNING id",
        &[SqlValue::Integer(due_ms), SqlValue::Integer(id)],
    )?;
    Ok(!rows.is_empty())
}

/// Marks a message delivered; returns `false` when there is no such
/// undelivered message.
pub fn mark_delivered(db: &mut impl SqlExecutor, id: i64, now_ms: i64) -> Result<bool, StoreError> {
    let rows = exec(
        db,
        "mark message delivered",
        "UPDATE outbox SET delivered_at = ? WHERE id = ? AND delivered_at IS NULL RETURNING id",
        &[SqlValue::Integer(now_ms), SqlValue::Integer(id)],
    )?;
    Ok(!rows.is_empty())
}

/// Delay before the next try after `attempts` failed deliveries:
/// [`BACKOFF_BASE_MS`] doubled per further failure, at most
/// [`BACKOFF_MAX_MS`].
pub fn backoff_ms(attempts: u32) -> i64 {
    let doublings = attempts.saturating_sub(1).min(20);
    BACKOFF_BASE_MS
        .saturating_mul(1_i64 << doublings)
        .min(BACKOFF_MAX_MS)
}

/// Records a failed delivery: one more attempt, `error` (cut to
/// [`MAX_ERROR_CHARS`]; pass text without secrets) and the next try after
/// [`backoff_ms`]. Returns when the next try is due, or `None` when there is
/// no such undelivered message.
pub fn mark_failed(
    db: &mut impl SqlExecutor,
    id: i64,
    error: &str,
    now_ms: i64,
) -> Result<Option<i64>, StoreError> {
    let Some(message) = get_message(db, id)? else {
        return Ok(None);
    };
    if message.delivered_at_ms.is_some() {
        return Ok(None);
    }
    let attempts = message.attempts.saturating_add(1);
    let next = now_ms.saturating_add(backoff_ms(attempts));
    let error: String = error.chars().take(MAX_ERROR_CHARS).collect();
    exec(
        db,
        "mark message failed",
        "UPDATE outbox SET attempts = ?, next_attempt_at = ?, last_error = ? WHERE id = ?",
        &[
            SqlValue::Integer(i64::from(attempts)),
            SqlValue::Integer(next),
            SqlValue::Text(error),
            SqlValue::Integer(id),
        ],
    )?;
    Ok(Some(next))
}

/// Deletes messages delivered before `before_ms` (retention); returns how many.
pub fn purge_delivered(db: &mut impl SqlExecutor, before_ms: i64) -> Result<usize, StoreError> {
    let rows = exec(
        db,
        "purge delivered messages",
        "DELETE FROM outbox WHERE delivered_at IS NOT NULL AND delivered_at < ? RETURNING id",
        &[SqlValue::Integer(before_ms)],
    )?;
    Ok(rows.len())
}

// ---------------------------------------------------------------------------
// Control values

const CONTROL_COLUMNS: &str = "key, value, updated_by, updated_at";

/// A control value by key.
pub fn get_control(
    db: &mut impl SqlExecutor,
    key: &str,
) -> Result<Option<ControlValue>, StoreError> {
    let rows = exec(
        db,
        "read control value",
        &format!("SELECT {CONTROL_COLUMNS} FROM control WHERE key = ?"),
        &[text(key)],
    )?;
    let Some(values) = rows.first() else {
        return Ok(None);
    };
    let r = Row::new("control", values);
    Ok(Some(ControlValue {
        key: r.text(0, "key")?.to_owned(),
        value: r.json(1, "value")?,
        updated_by: r.text(2, "updated_by")?.to_owned(),
        updated_at_ms: r.int(3, "updated_at")?,
    }))
}

/// Sets a control value, recording who and when.
pub fn set_control(
    db: &mut impl SqlExecutor,
    key: &str,
    value: &Value,
    by: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    exec(
        db,
        "write control value",
        "INSERT INTO control (key, value, updated_by, updated_at) VALUES (?, ?, ?, ?) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_by = excluded.updated_by, \
         updated_at = excluded.updated_at",
        &[
            text(key),
            SqlValue::Text(value.to_string()),
            text(by),
            SqlValue::Integer(now_ms),
        ],
    )?;
    Ok(())
}

/// Deletes a control value; returns whether it existed.
pub fn delete_control(db: &mut impl SqlExecutor, key: &str) -> Result<bool, StoreError> {
    let rows = exec(
        db,
        "delete control value",
        "DELETE FROM control WHERE key = ? RETURNING key",
        &[text(key)],
    )?;
    Ok(!rows.is_empty())
}

/// The emergency-mode override with who set it and when (`None`: automatic).
/// An unreadable stored value counts as automatic.
pub fn emergency_override(
    db: &mut impl SqlExecutor,
) -> Result<Option<(EmergencyOverride, ControlValue)>, StoreError> {
    Ok(get_control(db, EMERGENCY_KEY)?.and_then(|c| {
        let mode = c.value.get("mode").cloned()?;
        let mode: EmergencyOverride = serde_json::from_value(mode).ok()?;
        Some((mode, c))
    }))
}

/// Forces emergency mode on or off (`Some`), or returns it to automatic
/// (`None`), recording who and when.
pub fn set_emergency_override(
    db: &mut impl SqlExecutor,
    mode: Option<EmergencyOverride>,
    by: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    match mode {
        Some(mode) => set_control(
            db,
            EMERGENCY_KEY,
            &serde_json::json!({ "mode": mode }),
            by,
            now_ms,
        ),
        None => delete_control(db, EMERGENCY_KEY).map(|_| ()),
    }
}

/// Whether emergency mode is in force: the operator's override when set,
/// otherwise the automatic state (off when never computed).
pub fn emergency_active(db: &mut impl SqlExecutor) -> Result<bool, StoreError> {
    // Both keys in one statement: every gateway request asks this.
    let rows = exec(
        db,
        "read emergency mode",
        "SELECT key, value FROM control WHERE key IN (?, ?)",
        &[text(EMERGENCY_KEY), text(EMERGENCY_AUTO_KEY)],
    )?;
    emergency_from_rows(&rows)
}

/// Emergency mode from `control` rows (`key`, `value`) as read by
/// [`emergency_active`] — or by a statement that read other keys with them
/// (the gateway reads its stamps and these in one), whose rows are skipped.
pub fn emergency_from_rows(rows: &[Vec<SqlValue>]) -> Result<bool, StoreError> {
    let mut forced = None;
    let mut automatic = false;
    for values in rows {
        let r = Row::new("control", values);
        let key = r.text(0, "key")?;
        if key != EMERGENCY_KEY && key != EMERGENCY_AUTO_KEY {
            continue;
        }
        let value: Value = r.json(1, "value")?;
        if key == EMERGENCY_KEY {
            // Something unreadable under the override counts as automatic.
            forced = value
                .get("mode")
                .and_then(|m| serde_json::from_value::<EmergencyOverride>(m.clone()).ok());
        } else {
            automatic = value
                .get("active")
                .and_then(Value::as_bool)
                .unwrap_or(false);
        }
    }
    Ok(forced.map_or(automatic, |mode| mode == EmergencyOverride::On))
}

/// The automatic emergency state as last stored under
/// [`EMERGENCY_AUTO_KEY`]; `None` when never decided, the default state
/// when unreadable (the next decision rewrites it).
fn stored_auto_emergency(db: &mut impl SqlExecutor) -> Result<Option<EmergencyState>, StoreError> {
    Ok(get_control(db, EMERGENCY_AUTO_KEY)?
        .map(|c| serde_json::from_value(c.value).unwrap_or_default()))
}

/// Automatic emergency mode: feeds the health `score` at `now_ms` to
/// [`decide_emergency`] with the stored automatic state and stores the next
/// state when it changed (or was never stored), as `by`. The operator's
/// override ([`EMERGENCY_KEY`]) is separate and wins when read
/// ([`emergency_active`]).
pub fn apply_auto_emergency(
    db: &mut impl SqlExecutor,
    score: u8,
    by: &str,
    now_ms: i64,
) -> Result<(EmergencyState, EmergencyReason), StoreError> {
    let stored = stored_auto_emergency(db)?;
    let prev = stored.clone().unwrap_or_default();
    let (next, reason) = decide_emergency(&prev, score, now_ms, &EmergencyConfig::default());
    if stored.as_ref() != Some(&next) {
        let value = serde_json::to_value(&next).map_err(|e| StoreError::Json(e.to_string()))?;
        set_control(db, EMERGENCY_AUTO_KEY, &value, by, now_ms)?;
    }
    Ok((next, reason))
}

/// Emergency mode as `/api/health` shows it: the automatic state with the
/// operator's override applied (mode and activity), and who set the
/// override.
pub fn emergency_state(
    db: &mut impl SqlExecutor,
) -> Result<(EmergencyState, Option<String>), StoreError> {
    let auto = get_control(db, EMERGENCY_AUTO_KEY)?;
    let mut state: EmergencyState = auto
        .as_ref()
        .and_then(|c| serde_json::from_value(c.value.clone()).ok())
        .unwrap_or_default();
    // An older or partial value still says whether it is active.
    if let Some(active) = auto
        .as_ref()
        .and_then(|c| c.value.get("active"))
        .and_then(Value::as_bool)
    {
        state.active = active;
    }
    match emergency_override(db)? {
        Some((mode, c)) => {
            state.override_mode = match mode {
                EmergencyOverride::On => Override::ForceOn,
                EmergencyOverride::Off => Override::ForceOff,
            };
            state.active = mode == EmergencyOverride::On;
            Ok((state, Some(c.updated_by)))
        }
        None => {
            state.override_mode = Override::Auto;
            Ok((state, None))
        }
    }
}

/// What [`evaluate_rule_alerts`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleEvaluation {
    /// Names of the rule alerts firing now.
    pub firing: Vec<String>,
    /// Notifications queued in the outbox.
    pub queued: usize,
}

/// Runs the alert state machine over `rules` with the metric `values` at
/// `now_ms` ([`alerts::evaluate`], silences respected), stores the rule
/// alerts' states with their rules' descriptions and queues the
/// notifications, in one transaction.
pub fn evaluate_rule_alerts(
    db: &mut impl SqlExecutor,
    rules: &[AlertRule],
    values: &MetricValues,
    now_ms: i64,
) -> Result<RuleEvaluation, StoreError> {
    crate::storage::in_transaction(db, |tx| {
        let previous: Vec<AlertState> = list_alerts(
            tx,
            &AlertQuery {
                source: Some(AlertSource::Rule),
                ..AlertQuery::default()
            },
        )?
        .into_iter()
        .map(|r| r.state)
        .collect();
        let silences = active_silences(tx, now_ms)?;
        let (states, notes) = alerts::evaluate(rules, values, &previous, &silences, now_ms);
        for s in states.iter().filter(|s| s.source == AlertSource::Rule) {
            let summary = rules
                .iter()
                .find(|r| r.name == s.name)
                .and_then(|r| r.description.as_deref());
            upsert_alert(tx, s, summary, now_ms)?;
        }
        let mut queued = 0;
        for n in &notes {
            if enqueue_notification(tx, n, now_ms)?.is_some() {
                queued += 1;
            }
        }
        let firing = states
            .iter()
            .filter(|s| s.status == AlertStatus::Firing)
            .map(|s| s.name.clone())
            .collect();
        Ok(RuleEvaluation { firing, queued })
    })
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
