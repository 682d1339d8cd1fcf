//! Recommendations' storage (`recommendations`, migration 20): the inputs
//! of [`super::recommend::derive`] read from the telemetry, the daily scan
//! that stores the findings and queues each new one once as an info-level
//! notification, the on-demand list, and apply / dismiss, each audited in
//! the change's transaction. Applying a `cheaper-tier` finding starts a
//! guarded rollout of the tier flag (`crate::rollouts::store::start_in`) in
//! the same transaction.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use thiserror::Error;

use super::recommend::{
    Apply, Inputs, ModelStats, Recommendation, Sent, TierStats, Unpriced, derive, repeat_stats,
};
use crate::audit::{self, AuditError, Record};
use crate::error::{ApiError, Code};
use crate::experiments::stats::MeanSample;
use crate::observe::scans::{ScanMessage, enqueue_message};
use crate::observe::store::StoreError as OutboxError;
use crate::observe::system::usage_since;
use crate::rollouts::store::{self as rollouts, RolloutError};
use crate::storage::{KeyValue, Row, SqlExecutor, SqlValue, StatementError, in_transaction, run};

/// Name of the daily scan (and of its outbox messages).
pub const RECOMMENDATIONS: &str = "recommendations";
/// Telemetry window the recommender reads: the last 7 days.
pub const WINDOW_SECS: u64 = 7 * 86_400;

/// What the recommender reads from the gateway's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    /// `gateway_quality_threshold` (0–10).
    pub quality_threshold: f64,
    /// `gateway_cache_ttl_secs`.
    pub cache_ttl_secs: u64,
}

/// Most request bodies the cache-repeat count reads (the newest first are
/// enough to see a repeat rate; the scan stays bounded).
const MAX_BODIES: i64 = 50_000;

/// Why a recommendation operation failed or was refused.
#[derive(Debug, Error)]
pub enum RecommendError {
    /// No recommendation with this id (neither computed now nor stored).
    #[error("no recommendation `{0}`")]
    NotFound(String),
    /// The recommendation was applied or dismissed already.
    #[error("recommendation `{id}` is {status} already")]
    Decided {
        /// The id.
        id: String,
        /// `applied` or `dismissed`.
        status: String,
    },
    /// The recommendation cannot be applied automatically.
    #[error("recommendation `{id}` cannot be applied automatically: {reason}")]
    NotApplicable {
        /// The id.
        id: String,
        /// Why, and what to do instead.
        reason: String,
    },
    /// The request body is wrong.
    #[error("{field}: {message}")]
    Body {
        /// The field at fault.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// Starting the rollout failed or was refused.
    #[error(transparent)]
    Rollout(#[from] RolloutError),
    /// The outbox failed.
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    /// The audit log failed.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// A statement failed.
    #[error(transparent)]
    Sql(#[from] StatementError),
    /// A stored row could not be read.
    #[error("corrupt recommendation storage: {0}")]
    Corrupt(String),
}

impl From<RecommendError> for ApiError {
    fn from(e: RecommendError) -> Self {
        match e {
            RecommendError::NotFound(_) => ApiError::new(Code::NotFound, e.to_string()),
            RecommendError::Decided { .. } | RecommendError::NotApplicable { .. } => {
                ApiError::new(Code::Conflict, e.to_string())
            }
            RecommendError::Body { field, message } => ApiError::invalid(field, message),
            RecommendError::Rollout(r) => ApiError::from(r),
            RecommendError::Audit(a) => ApiError::from(a),
            other => ApiError::internal(other.to_string()),
        }
    }
}

fn corrupt(e: impl std::fmt::Display) -> RecommendError {
    RecommendError::Corrupt(e.to_string())
}

/// The template name of a `generate:<template>@<version>` route.
fn template_of(route: &str) -> Option<String> {
    let rest = route.strip_prefix("generate:")?;
    Some(rest.split('@').next().unwrap_or(rest).to_owned())
}

/// Reads the recommender's inputs for the window ending at `now_ms`.
pub fn read_inputs(
    db: &mut impl SqlExecutor,
    now_ms: i64,
    config: &Config,
) -> Result<Inputs, RecommendError> {
    let quality_threshold = config.quality_threshold;
    let window_ms = i64::try_from(WINDOW_SECS * 1_000).unwrap_or(i64::MAX);
    let from_ms = now_ms.saturating_sub(window_ms);
    // Per route and entry tier; cache hits are answers nobody paid for and
    // no model wrote just now, so they say nothing about a tier.
    let rows = run(
        db,
        "SELECT route, entry_tier, COUNT(*), SUM(COALESCE(cost_micros, 0)), SUM(latency_ms), \
         COUNT(quality), SUM(COALESCE(quality, 0)), SUM(COALESCE(quality * quality, 0)), \
         SUM(CASE WHEN quality < ? THEN 1 ELSE 0 END) \
         FROM requests WHERE ts >= ? AND cached = 0 AND route NOT IN ('embeddings', 'images', 'videos') \
         GROUP BY route, entry_tier",
        &[
            SqlValue::Real(quality_threshold),
            SqlValue::Integer(from_ms),
        ],
    )?;
    let mut tiers: BTreeMap<(Option<String>, String), TierStats> = BTreeMap::new();
    for values in &rows {
        let r = Row::new("requests", values);
        let route = r.text(0, "route").map_err(corrupt)?;
        let tier = r.text(1, "entry_tier").map_err(corrupt)?.to_owned();
        let n = |i, c| r.real(i, c).map(|v| v.max(0.0) as u64).map_err(corrupt);
        let add = TierStats {
            template: None,
            tier: tier.clone(),
            requests: n(2, "count")?,
            cost_micros: n(3, "cost")?,
            latency_sum_ms: n(4, "latency")?,
            quality: MeanSample {
                n: n(5, "quality_n")?,
                sum: r.real(6, "quality_sum").map_err(corrupt)?,
                sum_sq: r.real(7, "quality_sq").map_err(corrupt)?,
            },
            below: n(8, "below")?,
        };
        // Every row counts for all traffic; template rows also for theirs.
        let mut scopes = vec![None];
        scopes.extend(template_of(route).map(Some));
        for scope in scopes {
            let e = tiers
                .entry((scope.clone(), tier.clone()))
                .or_insert_with(|| TierStats {
                    template: scope.clone(),
                    tier: tier.clone(),
                    quality: MeanSample::from_values(&[]),
                    ..TierStats::default()
                });
            e.requests += add.requests;
            e.cost_micros += add.cost_micros;
            e.latency_sum_ms += add.latency_sum_ms;
            e.quality.n += add.quality.n;
            e.quality.sum += add.quality.sum;
            e.quality.sum_sq += add.quality.sum_sq;
            e.below += add.below;
        }
    }
    let mut models: BTreeMap<(String, String), ModelStats> = BTreeMap::new();
    let from_s = from_ms.div_euclid(1_000);
    for row in usage_since(db, from_s).map_err(corrupt)? {
        if row.outcome == "cache_hit" {
            continue;
        }
        let e = models
            .entry((row.provider.clone(), row.model.clone()))
            .or_insert_with(|| ModelStats {
                provider: row.provider.clone(),
                model: row.model.clone(),
                ..ModelStats::default()
            });
        e.agg.add(&row.agg);
    }
    // The offline provider is the pipeline's last resort, not a default
    // anyone could change.
    models.retain(|(p, _), _| p != "offline");
    let unpriced = run(
        db,
        "SELECT m.provider, m.model, \
         (SELECT COUNT(*) FROM requests r WHERE r.provider = m.provider AND r.model = m.model AND r.ts >= ?) \
         FROM models m WHERE m.input_price IS NULL OR m.output_price IS NULL ORDER BY m.provider, m.model",
        &[SqlValue::Integer(from_ms)],
    )?
    .iter()
    .map(|values| {
        let r = Row::new("models", values);
        Ok(Unpriced {
            provider: r.text(0, "provider").map_err(corrupt)?.to_owned(),
            model: r.text(1, "model").map_err(corrupt)?.to_owned(),
            requests: r.real(2, "requests").map_err(corrupt)?.max(0.0) as u64,
        })
    })
    .collect::<Result<Vec<_>, RecommendError>>()?;
    // Repeats are only visible where request bodies are logged (orgs that
    // opted in): the same key sending the same (masked) prompt again.
    let bodies = run(
        db,
        "SELECT r.key_id, b.prompt, r.ts, r.cached, COALESCE(r.cost_micros, 0) \
         FROM request_bodies b JOIN requests r ON r.id = b.request_id \
         WHERE r.ts >= ? AND r.route NOT IN ('embeddings', 'images', 'videos') \
         ORDER BY r.ts DESC LIMIT ?",
        &[SqlValue::Integer(from_ms), SqlValue::Integer(MAX_BODIES)],
    )?
    .iter()
    .map(|values| {
        let r = Row::new("request_bodies", values);
        Ok(Sent {
            key: format!(
                "{}\u{0}{}",
                r.text(0, "key_id").map_err(corrupt)?,
                r.text(1, "prompt").map_err(corrupt)?
            ),
            ts_ms: r.int(2, "ts").map_err(corrupt)?,
            cached: r.bool(3, "cached").map_err(corrupt)?,
            cost_micros: r.real(4, "cost").map_err(corrupt)?.max(0.0) as u64,
        })
    })
    .collect::<Result<Vec<_>, RecommendError>>()?;
    Ok(Inputs {
        window_secs: WINDOW_SECS,
        quality_threshold,
        cache_ttl_secs: config.cache_ttl_secs,
        repeats: repeat_stats(bodies, config.cache_ttl_secs),
        tiers: tiers.into_values().collect(),
        models: models.into_values().collect(),
        unpriced,
    })
}

/// A stored row: status and the recommendation as last computed.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// `open`, `applied` or `dismissed`.
    pub status: String,
    /// The recommendation.
    pub recommendation: Recommendation,
    /// When it was first seen (Unix ms).
    pub first_seen_ms: i64,
    /// Who decided (applied / dismissed), when, and the note.
    pub decision: Option<Value>,
}

fn stored(db: &mut impl SqlExecutor) -> Result<BTreeMap<String, Stored>, RecommendError> {
    let rows = run(
        db,
        "SELECT id, status, body, first_seen, decided_at, decided_by, note FROM recommendations",
        &[],
    )?;
    let mut out = BTreeMap::new();
    for values in &rows {
        let r = Row::new("recommendations", values);
        let decided_at = r.opt_int(4, "decided_at").map_err(corrupt)?;
        let decision = decided_at
            .map(|at| -> Result<Value, RecommendError> {
                let note = r.opt_text(6, "note").map_err(corrupt)?;
                Ok(json!({
                    "at": at,
                    "by": r.opt_text(5, "decided_by").map_err(corrupt)?,
                    "note": note.map(|n| serde_json::from_str::<Value>(n).unwrap_or(Value::String(n.to_owned()))),
                }))
            })
            .transpose()?;
        out.insert(
            r.text(0, "id").map_err(corrupt)?.to_owned(),
            Stored {
                status: r.text(1, "status").map_err(corrupt)?.to_owned(),
                recommendation: r.json(2, "body").map_err(corrupt)?,
                first_seen_ms: r.int(3, "first_seen").map_err(corrupt)?,
                decision,
            },
        );
    }
    Ok(out)
}

/// Which recommendations `GET /admin/recommendations` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListFilter {
    /// Open and applied ones (dismissed ones hidden) — the default.
    #[default]
    Active,
    /// Every one, dismissed ones marked.
    All,
}

impl ListFilter {
    /// Parses the `status` query parameter (`active` or `all`).
    pub fn parse(value: Option<&str>) -> Result<Self, ApiError> {
        match value {
            None | Some("active") => Ok(Self::Active),
            Some("all") => Ok(Self::All),
            Some(_) => Err(ApiError::invalid("status", "expected `active` or `all`")),
        }
    }
}

fn view(
    r: &Recommendation,
    status: &str,
    first_seen: Option<i64>,
    decision: Option<&Value>,
) -> Value {
    let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
    v["status"] = Value::String(status.to_owned());
    v["firstSeenMs"] = first_seen.map_or(Value::Null, Value::from);
    v["decision"] = decision.cloned().unwrap_or(Value::Null);
    v
}

/// Recomputes the recommendations at `now_ms` and marks each with its
/// stored status; stored findings that no longer hold but were decided
/// stay listed (with their last figures) so a decision is never lost.
pub fn list(
    db: &mut impl SqlExecutor,
    now_ms: i64,
    config: &Config,
    filter: ListFilter,
) -> Result<Value, RecommendError> {
    let current = derive(&read_inputs(db, now_ms, config)?);
    let mut stored = stored(db)?;
    let mut items = Vec::new();
    for r in &current {
        let s = stored.remove(&r.id);
        let status = s.as_ref().map_or("open", |s| s.status.as_str());
        if filter == ListFilter::Active && status == "dismissed" {
            continue;
        }
        items.push(view(
            r,
            status,
            s.as_ref().map(|s| s.first_seen_ms),
            s.as_ref().and_then(|s| s.decision.as_ref()),
        ));
    }
    for s in stored.values().filter(|s| s.status != "open") {
        if filter == ListFilter::Active && s.status == "dismissed" {
            continue;
        }
        let mut v = view(
            &s.recommendation,
            &s.status,
            Some(s.first_seen_ms),
            s.decision.as_ref(),
        );
        v["current"] = Value::Bool(false);
        items.push(v);
    }
    Ok(json!({
        "windowSecs": super::recommend_store::WINDOW_SECS,
        "computedAtMs": now_ms,
        "recommendations": items,
    }))
}

/// What the daily scan did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ScanSummary {
    /// Recommendations computed.
    pub computed: usize,
    /// Of those, new (stored and queued as a notification now).
    pub new: Vec<String>,
}

/// The daily scan at `now_ms`: stores every finding (new ones as `open`,
/// known ones with their new figures and status kept) and queues each new
/// one once, as an info-level notification, in one transaction.
pub fn scan(
    db: &mut impl SqlExecutor,
    now_ms: i64,
    config: &Config,
) -> Result<ScanSummary, RecommendError> {
    let current = derive(&read_inputs(db, now_ms, config)?);
    in_transaction(db, |db| {
        let known = stored(db)?;
        let mut summary = ScanSummary {
            computed: current.len(),
            new: Vec::new(),
        };
        for r in &current {
            let body = serde_json::to_string(r).map_err(corrupt)?;
            if known.contains_key(&r.id) {
                run(
                    db,
                    "UPDATE recommendations SET body = ?, last_seen = ? WHERE id = ?",
                    &[body.into(), SqlValue::Integer(now_ms), r.id.clone().into()],
                )?;
                continue;
            }
            insert(db, r, "open", now_ms)?;
            let message = ScanMessage {
                scan: RECOMMENDATIONS.to_owned(),
                title: format!("Recommendation: {}", r.title),
                text: format!(
                    "{} (confidence {:.0} %). Apply or dismiss: POST /admin/recommendations/{}/apply or /dismiss",
                    r.kind.as_str(),
                    r.confidence * 100.0,
                    r.id
                ),
                data: json!({"level": "info", "recommendation": r}),
            };
            enqueue_message(db, &message, &format!("recommendation:{}", r.id), now_ms)?;
            summary.new.push(r.id.clone());
        }
        Ok(summary)
    })
}

fn insert(
    db: &mut impl SqlExecutor,
    r: &Recommendation,
    status: &str,
    now_ms: i64,
) -> Result<(), RecommendError> {
    let body = serde_json::to_string(r).map_err(corrupt)?;
    run(
        db,
        "INSERT INTO recommendations (id, kind, status, body, first_seen, last_seen) VALUES (?, ?, ?, ?, ?, ?)",
        &[
            r.id.clone().into(),
            r.kind.as_str().into(),
            status.into(),
            body.into(),
            SqlValue::Integer(now_ms),
            SqlValue::Integer(now_ms),
        ],
    )?;
    Ok(())
}

/// The recommendation `id` as it stands now: computed at `now_ms`, else as
/// stored; refused when it was decided already.
fn open_one(
    db: &mut impl SqlExecutor,
    id: &str,
    now_ms: i64,
    config: &Config,
) -> Result<Recommendation, RecommendError> {
    let known = stored(db)?;
    if let Some(s) = known.get(id)
        && s.status != "open"
    {
        return Err(RecommendError::Decided {
            id: id.to_owned(),
            status: s.status.clone(),
        });
    }
    let current = derive(&read_inputs(db, now_ms, config)?);
    current
        .into_iter()
        .find(|r| r.id == id)
        .or_else(|| known.get(id).map(|s| s.recommendation.clone()))
        .ok_or_else(|| RecommendError::NotFound(id.to_owned()))
}

/// Marks `r` decided (`status`) by `actor` with `note`, storing it first
/// when it was only ever computed on demand.
fn decide(
    db: &mut impl SqlExecutor,
    r: &Recommendation,
    status: &str,
    actor: &str,
    note: &Value,
    now_ms: i64,
) -> Result<(), RecommendError> {
    let exists = !run(
        db,
        "SELECT 1 FROM recommendations WHERE id = ?",
        &[r.id.clone().into()],
    )?
    .is_empty();
    if !exists {
        insert(db, r, "open", now_ms)?;
    }
    run(
        db,
        "UPDATE recommendations SET status = ?, decided_at = ?, decided_by = ?, note = ? WHERE id = ?",
        &[
            status.into(),
            SqlValue::Integer(now_ms),
            actor.into(),
            note.to_string().into(),
            r.id.clone().into(),
        ],
    )?;
    Ok(())
}

/// Checks an apply or dismiss body: empty, or a JSON object with at most a
/// string `reason`.
pub fn parse_body(body: &[u8]) -> Result<Option<String>, RecommendError> {
    let bad = |field: &str, message: &str| RecommendError::Body {
        field: field.to_owned(),
        message: message.to_owned(),
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| bad("$", "expected a JSON object (or no body)"))?;
    let obj = value
        .as_object()
        .ok_or_else(|| bad("$", "expected a JSON object"))?;
    if let Some(k) = obj.keys().find(|k| k.as_str() != "reason") {
        return Err(bad(k, "unknown field; expected `reason`"));
    }
    match obj.get("reason") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= 500 => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(bad("reason", "at most 500 characters")),
        Some(_) => Err(bad("reason", "expected a string")),
    }
}

/// Dismisses `id` (audited in the same transaction); answers its view.
pub fn dismiss(
    db: &mut impl SqlExecutor,
    id: &str,
    reason: Option<&str>,
    actor: &str,
    now_ms: i64,
    config: &Config,
) -> Result<Value, ApiError> {
    let r = open_one(db, id, now_ms, config)?;
    let note = json!({"reason": reason});
    audit::audited(db, actor, now_ms, |tx| {
        decide(tx, &r, "dismissed", actor, &note, now_ms)?;
        let after = view(&r, "dismissed", None, Some(&note));
        let record = Record::new("recommendation", "dismiss", id).after(after.clone());
        Ok((after, record))
    })
}

/// Applies `id`: a `cheaper-tier` finding becomes a guarded rollout of
/// `tier_flag` (the plan from its evidence), started in the same
/// transaction as the decision and its audit entry, and published after
/// the commit. Others are refused with the reason (409).
pub fn apply(
    db: &mut impl SqlExecutor,
    kv: &mut impl KeyValue,
    id: &str,
    tier_flag: &str,
    actor: &str,
    now_ms: i64,
    config: &Config,
) -> Result<Value, ApiError> {
    let r = open_one(db, id, now_ms, config)?;
    let plan = match &r.apply {
        Apply::Rollout { plan, .. } => plan.clone(),
        Apply::Manual { reason } => {
            return Err(RecommendError::NotApplicable {
                id: id.to_owned(),
                reason: reason.clone(),
            }
            .into());
        }
    };
    // The seed flag set must exist before the transaction (as a rollout
    // started by hand does).
    crate::flags::store::load_latest(db, now_ms).map_err(RolloutError::from)?;
    let applied = audit::audited(db, actor, now_ms, |tx| {
        let applied = rollouts::start_in(tx, kv, tier_flag, &plan, actor, now_ms)?;
        let note = json!({"rollout": {"flag": tier_flag, "plan": plan}});
        decide(tx, &r, "applied", actor, &note, now_ms)?;
        let after = view(&r, "applied", None, Some(&note));
        let record = Record::new("recommendation", "apply", id).after(after);
        Ok((applied, record))
    })?;
    rollouts::publish(db, kv, &applied, now_ms);
    let mut out = view(&r, "applied", None, None);
    out["rollout"] = applied.record.view();
    Ok(out)
}
