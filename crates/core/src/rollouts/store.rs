//! Rollouts in SQL: the `rollouts` table (one row per flag: the plan, the
//! flag's targeting before the rollout, the state) and the transactions
//! that change a rollout.
//!
//! Every change — start, a guard-loop decision, an admin pause / resume /
//! restart / cancel — runs in one `BEGIN IMMEDIATE` transaction that writes,
//! together: the new flag version (when the served percentage changes), an
//! `audit_log` entry naming the reason, the rollout row, and a message in
//! the outbox (Slack and the signed webhook, delivered by the scans). The
//! flag version is published to key-value right after the commit
//! (`flags::store::publish_latest`), in order with every other flag write.

use serde_json::{Value, json};
use thiserror::Error;

use super::guard::{
    Action, Breach, Conditions, Decision, GuardStatus, PauseCause, RolloutState, Status, Telemetry,
    decide, guard_status,
};
use super::plan::{PlanError, RolloutPlan};
use super::targeting::flag_at;
use crate::flags::admin::{AdminError, AuditEntry, FlagState};
use crate::flags::store::{self as flag_store, EditResult, FlagStoreError};
use crate::observe::scans::{ScanMessage, enqueue_message};
use crate::observe::store as outbox;
use crate::storage::{KeyValue, SqlExecutor, SqlValue, StatementError, in_transaction};

/// Scan name under which rollout messages are queued and sent.
pub const ROLLOUTS: &str = "rollouts";

/// Why a rollout operation was refused or failed. Nothing is stored when
/// this is returned.
#[derive(Debug, Error)]
pub enum RolloutError {
    /// The plan is invalid.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// No such flag.
    #[error("no flag `{0}`")]
    FlagNotFound(String),
    /// The flag has no rollout.
    #[error("flag `{0}` has no rollout")]
    NotFound(String),
    /// The operation does not fit the rollout's state (e.g. start while one
    /// is in progress, resume a rollout that is not paused).
    #[error("{0}")]
    Conflict(String),
    /// Flag storage failed.
    #[error(transparent)]
    Flags(#[from] FlagStoreError),
    /// A statement failed.
    #[error(transparent)]
    Sql(#[from] StatementError),
    /// The outbox failed.
    #[error(transparent)]
    Outbox(#[from] outbox::StoreError),
    /// A stored row or flag could not be used.
    #[error("corrupt rollout storage: {0}")]
    Corrupt(String),
}

impl RolloutError {
    /// HTTP status for this error.
    pub fn status(&self) -> u16 {
        match self {
            Self::Plan(_) => 400,
            Self::FlagNotFound(_) | Self::NotFound(_) => 404,
            Self::Conflict(_) => 409,
            Self::Flags(_) | Self::Sql(_) | Self::Outbox(_) | Self::Corrupt(_) => 500,
        }
    }

    /// The JSON error body `{"error": {"code", "message", "field"?}}`
    /// ([`crate::error::ApiError`]); internals are not included for 5xx.
    pub fn body(&self) -> Value {
        crate::error::ApiError::from(self).to_dol()
    }
}

/// One stored rollout.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutRecord {
    /// The flag.
    pub flag_key: String,
    /// The plan.
    pub plan: RolloutPlan,
    /// The flag's targeting before the rollout (restored at 0 % and on
    /// completion).
    pub original_targeting: Option<Value>,
    /// Where the rollout is.
    pub state: RolloutState,
    /// When it was created (Unix ms).
    pub created_at_ms: i64,
    /// Who created it.
    pub created_by: String,
}

impl RolloutRecord {
    /// The served percentage.
    pub fn percent(&self) -> u8 {
        self.state.percent(&self.plan)
    }

    /// The admin view.
    pub fn view(&self) -> Value {
        json!({
            "flag": self.flag_key,
            "variant": self.plan.variant,
            "control": self.plan.control,
            "percent": self.percent(),
            "status": self.state.status,
            "paused": self.state.paused,
            "step": self.state.step,
            "steps": self.plan.steps.len(),
            "step_started_at": self.state.step_started_ms,
            "reason": self.state.reason,
            "updated_at": self.state.updated_ms,
            "created_at": self.created_at_ms,
            "created_by": self.created_by,
            "plan": self.plan,
            "breaching_since": self.state.breaching_since,
        })
    }
}

/// The result of a change: the rollout after it, and the flag version
/// written (to publish), if the served rule changed.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The rollout after the change.
    pub record: RolloutRecord,
    /// What happened.
    pub action: Action,
    /// The new flag version and state, when one was written.
    pub flags: Option<(i64, FlagState)>,
}

/// An admin operation on an existing rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminOp {
    /// Hold at the current step until resumed.
    Pause,
    /// Resume a paused rollout (the step's hold starts again).
    Resume,
    /// Start a rolled-back, cancelled or paused rollout again from its first step.
    Restart,
    /// Stop it and restore the flag's original targeting.
    Cancel,
}

fn exec(
    db: &mut impl SqlExecutor,
    sql: &str,
    params: &[SqlValue],
) -> Result<Vec<Vec<SqlValue>>, RolloutError> {
    Ok(flag_store::exec(db, sql, params)?)
}

const COLUMNS: &str = "flag_key, plan, original_targeting, state, created_at, created_by";

fn from_row(row: &[SqlValue]) -> Result<RolloutRecord, RolloutError> {
    let text = |i: usize| row.get(i).and_then(SqlValue::as_str);
    let corrupt = |what: &str| RolloutError::Corrupt(format!("rollouts.{what}"));
    let flag_key = text(0).ok_or_else(|| corrupt("flag_key"))?.to_owned();
    let plan = text(1)
        .and_then(|t| serde_json::from_str(t).ok())
        .ok_or_else(|| corrupt("plan"))?;
    let original_targeting = match text(2) {
        Some(t) => Some(serde_json::from_str(t).map_err(|_| corrupt("original_targeting"))?),
        None => None,
    };
    let state = text(3)
        .and_then(|t| serde_json::from_str(t).ok())
        .ok_or_else(|| corrupt("state"))?;
    Ok(RolloutRecord {
        flag_key,
        plan,
        original_targeting,
        state,
        created_at_ms: row.get(4).and_then(SqlValue::as_i64).unwrap_or(0),
        created_by: text(5).unwrap_or("").to_owned(),
    })
}

/// The rollout of `flag`, if any.
pub fn get(db: &mut impl SqlExecutor, flag: &str) -> Result<Option<RolloutRecord>, RolloutError> {
    let rows = exec(
        db,
        &format!("SELECT {COLUMNS} FROM rollouts WHERE flag_key = ?"),
        &[SqlValue::Text(flag.to_owned())],
    )?;
    rows.first().map(|r| from_row(r)).transpose()
}

/// Every rollout, by flag key.
pub fn list(db: &mut impl SqlExecutor) -> Result<Vec<RolloutRecord>, RolloutError> {
    let rows = exec(
        db,
        &format!("SELECT {COLUMNS} FROM rollouts ORDER BY flag_key"),
        &[],
    )?;
    rows.iter().map(|r| from_row(r)).collect()
}

/// The rollouts the guard loop looks at (active or paused).
pub fn in_progress(db: &mut impl SqlExecutor) -> Result<Vec<RolloutRecord>, RolloutError> {
    let rows = exec(
        db,
        &format!(
            "SELECT {COLUMNS} FROM rollouts WHERE status IN ('active', 'paused') ORDER BY flag_key"
        ),
        &[],
    )?;
    rows.iter().map(|r| from_row(r)).collect()
}

fn status_text(status: Status) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn save(db: &mut impl SqlExecutor, r: &RolloutRecord) -> Result<(), RolloutError> {
    exec(
        db,
        "INSERT INTO rollouts (flag_key, plan, original_targeting, state, status, created_at, created_by, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (flag_key) DO UPDATE SET plan = excluded.plan, \
         original_targeting = excluded.original_targeting, state = excluded.state, status = excluded.status, \
         created_at = excluded.created_at, created_by = excluded.created_by, updated_at = excluded.updated_at",
        &[
            SqlValue::Text(r.flag_key.clone()),
            SqlValue::Text(to_text(&r.plan)),
            r.original_targeting
                .as_ref()
                .map_or(SqlValue::Null, |t| SqlValue::Text(t.to_string())),
            SqlValue::Text(to_text(&r.state)),
            SqlValue::Text(status_text(r.state.status)),
            SqlValue::Integer(r.created_at_ms),
            SqlValue::Text(r.created_by.clone()),
            SqlValue::Integer(r.state.updated_ms),
        ],
    )?;
    Ok(())
}

/// JSON text of a stored struct. Serialising plans and states cannot fail
/// (plain fields; `breaching_since` has integer keys, which serde writes as
/// strings), so the fallback is never stored in practice.
fn to_text<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".to_owned())
}

/// Is `flag` owned by a rollout in progress (so direct edits of its
/// definition must be refused)?
pub fn blocks_edit(db: &mut impl SqlExecutor, flag: &str) -> Result<bool, RolloutError> {
    Ok(get(db, flag)?.is_some_and(|r| !r.state.status.is_finished()))
}

/// Refuses `edited` (an edit of `before`) when it changes the definition of
/// a flag that a rollout in progress owns, since the rollout rewrites that
/// flag's targeting at every step; kill switches stay allowed. Meant for the
/// edit closure of `flags::store::write_with`, which runs inside the write
/// transaction: a rollout that starts between an admin's read and write is
/// therefore seen, and the write refused (409) instead of overwriting it.
pub fn refuse_edits_under_rollout(
    db: &mut impl SqlExecutor,
    before: &FlagState,
    edited: EditResult,
) -> Result<EditResult, FlagStoreError> {
    let Ok((next, audit)) = edited else {
        return Ok(edited);
    };
    let owned = in_progress(db).map_err(|err| match err {
        RolloutError::Flags(flags) => flags,
        RolloutError::Sql(sql) => FlagStoreError::Sql(sql),
        other => FlagStoreError::Corrupt(other.to_string()),
    })?;
    if let Some(record) = owned
        .iter()
        .find(|r| next.flag(&r.flag_key) != before.flag(&r.flag_key))
    {
        let key = &record.flag_key;
        return Ok(Err(AdminError::Conflict(format!(
            "flag `{key}` is being rolled out; cancel the rollout (DELETE /admin/flags/{key}/rollout) before editing it"
        ))));
    }
    Ok(Ok((next, audit)))
}

/// Audit action name for a rollout change.
fn audit_action(action: Action, op: Option<AdminOp>) -> &'static str {
    match (op, action) {
        (Some(AdminOp::Pause), _) => "rollout-pause",
        (Some(AdminOp::Resume), _) => "rollout-resume",
        (Some(AdminOp::Restart), _) => "rollout-restart",
        (Some(AdminOp::Cancel), _) => "rollout-cancel",
        (None, Action::Advance) => "rollout-advance",
        (None, Action::Complete) => "rollout-complete",
        (None, Action::RollBack) => "rollout-rollback",
        (None, Action::Pause) => "rollout-pause",
        (None, Action::Resume) => "rollout-resume",
        (None, Action::Hold | Action::None) => "rollout-start",
    }
}

fn snapshot(r: &RolloutRecord) -> Value {
    json!({
        "variant": r.plan.variant,
        "percent": r.percent(),
        "status": r.state.status,
        "paused": r.state.paused,
        "step": r.state.step,
    })
}

/// The outbox message announcing a change.
pub fn message(
    flag: &str,
    r: &RolloutRecord,
    action: Action,
    breach: Option<&Breach>,
) -> ScanMessage {
    let what = match r.state.status {
        Status::RolledBack => "rolled back".to_owned(),
        Status::Completed => "completed".to_owned(),
        Status::Cancelled => "cancelled".to_owned(),
        Status::Paused => format!("paused at {} %", r.percent()),
        Status::Active => format!("at {} %", r.percent()),
    };
    ScanMessage {
        scan: ROLLOUTS.to_owned(),
        title: format!("Rollout of {flag} → {}: {what}", r.plan.variant),
        text: r.state.reason.clone(),
        data: json!({
            "flag": flag,
            "action": action,
            "variant": r.plan.variant,
            "control": r.plan.control,
            "percent": r.percent(),
            "status": r.state.status,
            "reason": r.state.reason,
            "breach": breach,
        }),
    }
}

/// What a transition is: the action, the admin operation behind it (if
/// any), the breach (if any) and who.
struct Change<'a> {
    action: Action,
    op: Option<AdminOp>,
    breach: Option<&'a Breach>,
    actor: &'a str,
}

/// Writes `next` for `current` in the open transaction: the flag version
/// (when the served rule changes), the audit entry, the row, the message.
fn transition(
    db: &mut impl SqlExecutor,
    kv: &mut impl KeyValue,
    current: &RolloutRecord,
    next: RolloutRecord,
    change: Change<'_>,
    now_ms: i64,
) -> Result<Applied, RolloutError> {
    let Change {
        action,
        op,
        breach,
        actor,
    } = change;
    let (version, flags) = flag_store::select_latest(db)?
        .ok_or_else(|| RolloutError::Corrupt("flag_sets is empty".to_owned()))?;
    let flag = flags
        .flag(&current.flag_key)
        .cloned()
        .ok_or_else(|| RolloutError::FlagNotFound(current.flag_key.clone()))?;
    let completed = next.state.status == Status::Completed;
    let def = flag_at(
        &flag,
        next.original_targeting.as_ref(),
        &next.plan,
        next.percent(),
        completed,
    );
    let entry = AuditEntry {
        action: audit_action(action, op),
        flag_key: Some(current.flag_key.clone()),
        before: Some(snapshot(current)),
        after: Some({
            let mut after = snapshot(&next);
            after["reason"] = Value::String(next.state.reason.clone());
            if let Some(b) = breach {
                after["breach"] = json!(b);
            }
            after
        }),
    };
    let mut written = None;
    let audit_version = if def == flag {
        version
    } else {
        let (state, _) = flags
            .put_flag(&current.flag_key, def)
            .map_err(admin_corrupt)?;
        flag_store::store_version(db, kv, version + 1, &state, actor, now_ms)?;
        written = Some((version + 1, state));
        version + 1
    };
    flag_store::insert_audit(db, &entry, actor, audit_version, now_ms)?;
    save(db, &next)?;
    let msg = message(&current.flag_key, &next, action, breach);
    let key = format!(
        "rollout:{}:{}:{}",
        current.flag_key, entry.action, next.state.updated_ms
    );
    enqueue_message(db, &msg, &key, now_ms)?;
    Ok(Applied {
        record: next,
        action,
        flags: written,
    })
}

fn admin_corrupt(e: AdminError) -> RolloutError {
    RolloutError::Corrupt(format!("the rolled-out flag no longer validates: {e:?}"))
}

/// Starts a rollout of `flag` from `body` (a plan), replacing a finished
/// one. Refused while another is in progress.
pub fn start(
    db: &mut impl SqlExecutor,
    kv: &mut impl KeyValue,
    flag: &str,
    body: &Value,
    actor: &str,
    now_ms: i64,
) -> Result<Applied, RolloutError> {
    flag_store::load_latest(db, now_ms)?;
    let applied = in_transaction(db, |db| start_in(db, kv, flag, body, actor, now_ms))?;
    publish(db, kv, &applied, now_ms);
    Ok(applied)
}

/// Publishes the flag version a committed change wrote. A failed
/// publication leaves `flags::store::UNPUBLISHED` set, under which
/// evaluators read SQLite, so the change is served either way.
pub fn publish(db: &mut impl SqlExecutor, kv: &mut impl KeyValue, applied: &Applied, now_ms: i64) {
    if applied.flags.is_some() {
        let _ = flag_store::publish_latest(db, kv, now_ms);
    }
}

/// [`start`] inside the caller's open transaction (e.g. with another
/// change and its audit entry, `audit::audited`); the caller publishes the
/// written flag version with [`publish`] after the commit, and must have
/// run `flags::store::load_latest` before the transaction.
pub fn start_in(
    db: &mut impl SqlExecutor,
    kv: &mut impl KeyValue,
    flag: &str,
    body: &Value,
    actor: &str,
    now_ms: i64,
) -> Result<Applied, RolloutError> {
    let (_, flags) = flag_store::select_latest(db)?
        .ok_or_else(|| RolloutError::Corrupt("flag_sets is empty".to_owned()))?;
    let def = flags
        .flag(flag)
        .ok_or_else(|| RolloutError::FlagNotFound(flag.to_owned()))?;
    let previous = get(db, flag)?;
    if let Some(p) = &previous
        && !p.state.status.is_finished()
    {
        return Err(RolloutError::Conflict(format!(
            "flag `{flag}` has a rollout in progress ({} at {} %); cancel it first",
            status_text(p.state.status),
            p.percent()
        )));
    }
    let variants: Vec<String> = def
        .get("variants")
        .and_then(Value::as_object)
        .map(|v| v.keys().cloned().collect())
        .unwrap_or_default();
    let default_variant = def.get("defaultVariant").and_then(Value::as_str);
    let plan = RolloutPlan::parse(body, &variants, default_variant)?;
    let record = RolloutRecord {
        flag_key: flag.to_owned(),
        original_targeting: own_targeting(def),
        state: RolloutState::start(now_ms),
        plan,
        created_at_ms: now_ms,
        created_by: actor.to_owned(),
    };
    // The "before" of a start is the previous rollout (or nothing at 0 %).
    let before = previous.unwrap_or_else(|| RolloutRecord {
        state: RolloutState {
            status: Status::Cancelled,
            ..record.state.clone()
        },
        ..record.clone()
    });
    let mut next = record;
    next.state.reason = format!(
        "started by {actor} at {} % ({} steps)",
        next.percent(),
        next.plan.steps.len()
    );
    let change = Change {
        action: Action::Hold,
        op: None,
        breach: None,
        actor,
    };
    transition(db, kv, &before, next, change, now_ms)
}

/// Applies a guard-loop decision made on `seen` (the record the decision
/// was computed from). If the rollout changed in between (an admin acted),
/// nothing is written and `Ok(None)` is returned; the next tick decides
/// again. Holds update the row (reason, breach clocks) without an audit
/// entry or message.
pub fn apply_decision(
    db: &mut impl SqlExecutor,
    kv: &mut impl KeyValue,
    seen: &RolloutRecord,
    decision: &Decision,
    now_ms: i64,
) -> Result<Option<Applied>, RolloutError> {
    let applied = in_transaction(db, |db| apply_in_tx(db, kv, seen, decision, now_ms))?;
    if let Some(applied) = &applied {
        publish(db, kv, applied, now_ms);
    }
    Ok(applied)
}

fn apply_in_tx(
    db: &mut impl SqlExecutor,
    kv: &mut impl KeyValue,
    seen: &RolloutRecord,
    decision: &Decision,
    now_ms: i64,
) -> Result<Option<Applied>, RolloutError> {
    let Some(current) = get(db, &seen.flag_key)? else {
        return Ok(None);
    };
    if current != *seen {
        return Ok(None);
    }
    let next = RolloutRecord {
        state: decision.next.clone(),
        ..current.clone()
    };
    if !decision.action.is_notable() {
        if next != current {
            save(db, &next)?;
        }
        return Ok(Some(Applied {
            record: next,
            action: decision.action,
            flags: None,
        }));
    }
    let change = Change {
        action: decision.action,
        op: None,
        breach: decision.breach.as_ref(),
        actor: ROLLOUTS,
    };
    transition(db, kv, &current, next, change, now_ms).map(Some)
}

/// An admin operation on the rollout of `flag`.
pub fn admin(
    db: &mut impl SqlExecutor,
    kv: &mut impl KeyValue,
    flag: &str,
    op: AdminOp,
    actor: &str,
    now_ms: i64,
) -> Result<Applied, RolloutError> {
    flag_store::load_latest(db, now_ms)?;
    let applied = in_transaction(db, |db| admin_in_tx(db, kv, flag, op, actor, now_ms))?;
    publish(db, kv, &applied, now_ms);
    Ok(applied)
}

fn admin_in_tx(
    db: &mut impl SqlExecutor,
    kv: &mut impl KeyValue,
    flag: &str,
    op: AdminOp,
    actor: &str,
    now_ms: i64,
) -> Result<Applied, RolloutError> {
    let current = get(db, flag)?.ok_or_else(|| RolloutError::NotFound(flag.to_owned()))?;
    let status = current.state.status;
    let percent = current.percent();
    let mut state = current.state.clone();
    let mut original_targeting = current.original_targeting.clone();
    state.updated_ms = now_ms;
    state.breaching_since.clear();
    let (action, reason) = match op {
        AdminOp::Pause => {
            if status != Status::Active {
                return Err(RolloutError::Conflict(format!(
                    "only an active rollout can be paused; this one is {}",
                    status_text(status)
                )));
            }
            state.status = Status::Paused;
            state.paused = Some(PauseCause::Admin);
            (Action::Pause, format!("paused at {percent} % by {actor}"))
        }
        AdminOp::Resume => {
            if status != Status::Paused {
                return Err(RolloutError::Conflict(format!(
                    "only a paused rollout can be resumed; this one is {}",
                    status_text(status)
                )));
            }
            state.status = Status::Active;
            state.paused = None;
            state.step_started_ms = now_ms;
            (Action::Resume, format!("resumed at {percent} % by {actor}"))
        }
        AdminOp::Restart => {
            if matches!(status, Status::Active | Status::Completed) {
                return Err(RolloutError::Conflict(format!(
                    "a {} rollout cannot be restarted; restart is for rolled-back, cancelled or paused ones",
                    status_text(status)
                )));
            }
            if status.is_finished() {
                // A finished rollout gave its flag back: the admin may have
                // edited it since, so the restart starts from the flag as it
                // is now, as a new rollout would, and the targeting that a
                // later cancel or roll-back restores is today's.
                original_targeting = current_targeting_for_restart(db, &current)?;
            }
            state = RolloutState::start(now_ms);
            (
                Action::Resume,
                format!("restarted by {actor} at {} %", current.plan.percent_at(0)),
            )
        }
        AdminOp::Cancel => {
            if status.is_finished() {
                return Err(RolloutError::Conflict(format!(
                    "the rollout is already {}",
                    status_text(status)
                )));
            }
            state.status = Status::Cancelled;
            state.paused = None;
            (
                Action::RollBack,
                format!("cancelled by {actor} at {percent} %; the flag's targeting is restored"),
            )
        }
    };
    state.reason = reason;
    let next = RolloutRecord {
        state,
        original_targeting,
        ..current.clone()
    };
    let change = Change {
        action,
        op: Some(op),
        breach: None,
        actor,
    };
    transition(db, kv, &current, next, change, now_ms)
}

/// The targeting of `current`'s flag as it is now, for restarting a
/// finished rollout; refused (409) when the flag no longer has the plan's
/// variants, since the restart would serve a variant that does not exist.
fn current_targeting_for_restart(
    db: &mut impl SqlExecutor,
    current: &RolloutRecord,
) -> Result<Option<Value>, RolloutError> {
    let (_, flags) = flag_store::select_latest(db)?
        .ok_or_else(|| RolloutError::Corrupt("flag_sets is empty".to_owned()))?;
    let def = flags
        .flag(&current.flag_key)
        .ok_or_else(|| RolloutError::FlagNotFound(current.flag_key.clone()))?;
    let variants = def.get("variants").and_then(Value::as_object);
    for variant in [&current.plan.variant, &current.plan.control] {
        if !variants.is_some_and(|v| v.contains_key(variant.as_str())) {
            return Err(RolloutError::Conflict(format!(
                "flag `{}` no longer has variant `{variant}`; start a new rollout instead of restarting this one",
                current.flag_key
            )));
        }
    }
    Ok(own_targeting(def))
}

/// The flag's own targeting, `None` when it has none: flagd reads `null`
/// and `{}` as "no targeting" too, and a rollout that wrapped `{}` in its
/// rule made every evaluation of the flag fail.
fn own_targeting(def: &Value) -> Option<Value> {
    def.get("targeting")
        .filter(|t| !t.is_null() && t.as_object().is_none_or(|o| !o.is_empty()))
        .cloned()
}

/// What the guard loop did for one rollout.
#[derive(Debug, Clone)]
pub struct GuardOutcome {
    /// The flag.
    pub flag_key: String,
    /// The telemetry read.
    pub telemetry: Telemetry,
    /// The decision.
    pub decision: Decision,
    /// The served percentage after the decision.
    pub percent: u8,
    /// What was written; `None` when an admin changed the rollout since it
    /// was read (the next tick decides again).
    pub applied: Option<Applied>,
}

impl GuardOutcome {
    /// The scan summary entry.
    pub fn summary(&self) -> Value {
        json!({
            "flag": self.flag_key,
            "action": self.decision.action,
            "percent": self.percent,
            "status": self.decision.next.status,
            "reason": self.decision.reason,
            "breach": self.decision.breach,
            "telemetry": self.telemetry,
            "stale": self.applied.is_none(),
        })
    }
}

/// What the guard loop reads for `record` at `now_ms`: the per-variant
/// telemetry of the gateway's `requests` rows over each guard's window.
pub fn telemetry(
    db: &mut impl SqlExecutor,
    record: &RolloutRecord,
    now_ms: i64,
) -> Result<Telemetry, RolloutError> {
    let sql = super::variant_aggregate_sql();
    super::readings(&record.plan, &record.state, now_ms, |from_ms| {
        let rows = exec(
            db,
            &sql,
            &[
                SqlValue::Integer(from_ms),
                SqlValue::Text(record.plan.variant.clone()),
                SqlValue::Text(record.plan.control.clone()),
            ],
        )?;
        Ok::<_, RolloutError>(rows.iter().filter_map(|r| super::agg_from_row(r)).collect())
    })
}

/// Each guard of `record` against its threshold on the readings the guard
/// loop would take at `now_ms`; empty for a finished rollout (its windows
/// are over, and reading them would scan its whole history).
pub fn guards_now(
    db: &mut impl SqlExecutor,
    record: &RolloutRecord,
    now_ms: i64,
) -> Result<Vec<GuardStatus>, RolloutError> {
    if record.state.status.is_finished() {
        return Ok(Vec::new());
    }
    let telemetry = telemetry(db, record, now_ms)?;
    Ok(guard_status(&record.plan, &record.state, &telemetry))
}

/// The guard loop over every rollout in progress at `now_ms`: reads the
/// per-variant telemetry from `requests`, the emergency state and the
/// kill switches, decides, and applies each decision in its own
/// transaction, publishing each flag version it writes. The caller delivers
/// the queued messages.
pub fn run_guards(
    db: &mut impl SqlExecutor,
    kv: &mut impl KeyValue,
    now_ms: i64,
) -> Result<Vec<GuardOutcome>, RolloutError> {
    let rollouts = in_progress(db)?;
    if rollouts.is_empty() {
        return Ok(Vec::new());
    }
    let emergency = outbox::emergency_active(db)?;
    let (_, flags) = flag_store::load_latest(db, now_ms)?;
    let mut outcomes = Vec::with_capacity(rollouts.len());
    for record in rollouts {
        let telemetry = telemetry(db, &record, now_ms)?;
        let conditions = Conditions {
            emergency,
            killed: flags.kills.contains_key(&record.flag_key),
        };
        let decision = decide(&record.plan, &record.state, &telemetry, conditions, now_ms);
        let applied = apply_decision(db, kv, &record, &decision, now_ms)?;
        outcomes.push(GuardOutcome {
            flag_key: record.flag_key.clone(),
            percent: decision.next.percent(&record.plan),
            telemetry,
            decision,
            applied,
        });
    }
    Ok(outcomes)
}
