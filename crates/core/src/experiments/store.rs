//! Storage for experiments (`migrations/0007_experiments.sql`) over any
//! [`SqlExecutor`]: definitions, client events, and the SQL that reduces
//! events and gateway telemetry to the per-variant sufficient statistics
//! the report needs (so no raw rows leave the database).
//!
//! What is counted, per variant, from the experiment's `start_ms` on:
//! - units: distinct `targeting_key`s with any event for the flag (clients
//!   send an `exposure` event when they show a variant); when every metric is
//!   a gateway metric, the number of gateway requests instead. A targeting
//!   key seen with two variants (the flag changed mid-experiment) counts in
//!   both — the SRM check is what notices such trouble;
//! - conversion on event E: distinct units with an event named E;
//! - mean of event E: count, sum and sum of squares of E's non-null values
//!   (per event, not per unit);
//! - gateway metrics from `requests` whose `variant` column equals the
//!   variant. That column holds the variant of the gateway's tier flag
//!   (`gateway_tier_flag`, by default `generation_pipeline`), so gateway
//!   metrics only mean something for experiments on that flag.

use serde_json::Value;
use thiserror::Error;

use super::definition::{self, Definition, MetricKind};
use super::events::EventRecord;
use super::report::{ExperimentData, MetricData, VariantData};
use super::stats::{MeanSample, ProportionSample};
use crate::storage::{SqlExecutor, SqlValue, StatementError, in_transaction};

/// Why a storage call failed. `Sql` and `Corrupt` carry database internals:
/// log them, do not send them to clients.
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
    #[error("experiments: unreadable row: {0}")]
    Corrupt(String),
}

/// So [`in_transaction`] can run store calls: its own `BEGIN` / `COMMIT`
/// failures become [`StoreError::Sql`].
impl From<StatementError> for StoreError {
    fn from(e: StatementError) -> Self {
        Self::Sql {
            context: "transaction",
            message: e.to_string(),
        }
    }
}

/// A stored experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredExperiment {
    /// Its key.
    pub key: String,
    /// The validated definition.
    pub definition: Definition,
    /// Created (Unix ms).
    pub created_at: i64,
    /// Last replaced (Unix ms).
    pub updated_at: i64,
    /// Who last wrote it.
    pub actor: String,
}

impl StoredExperiment {
    /// Admin JSON: the key, the definition and the bookkeeping.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "key": self.key,
            "definition": self.definition.to_json(),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "actor": self.actor,
        })
    }
}

fn run(
    db: &mut (impl SqlExecutor + ?Sized),
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

fn int_at(row: &[SqlValue], i: usize) -> Result<i64, StoreError> {
    match row.get(i) {
        Some(SqlValue::Integer(n)) => Ok(*n),
        Some(SqlValue::Null) => Ok(0),
        other => Err(StoreError::Corrupt(format!(
            "column {i}: expected an integer, got {other:?}"
        ))),
    }
}

fn count_at(row: &[SqlValue], i: usize) -> Result<u64, StoreError> {
    Ok(u64::try_from(int_at(row, i)?).unwrap_or(0))
}

fn real_at(row: &[SqlValue], i: usize) -> Result<f64, StoreError> {
    match row.get(i) {
        Some(SqlValue::Real(r)) => Ok(*r),
        Some(SqlValue::Integer(n)) => Ok(*n as f64),
        Some(SqlValue::Null) => Ok(0.0),
        other => Err(StoreError::Corrupt(format!(
            "column {i}: expected a number, got {other:?}"
        ))),
    }
}

fn text_at(row: &[SqlValue], i: usize) -> Result<String, StoreError> {
    match row.get(i) {
        Some(SqlValue::Text(t)) => Ok(t.clone()),
        other => Err(StoreError::Corrupt(format!(
            "column {i}: expected text, got {other:?}"
        ))),
    }
}

/// Creates or replaces experiment `key`. Returns `true` when it was created.
/// The definition must already be validated ([`definition::parse`]).
pub fn put(
    db: &mut (impl SqlExecutor + ?Sized),
    key: &str,
    def: &Definition,
    actor: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let existed = !run(
        db,
        "find experiment",
        "SELECT 1 FROM experiments WHERE key = ?",
        &[text(key)],
    )?
    .is_empty();
    // One statement, so a concurrent writer cannot interleave: created_at
    // survives a replace.
    run(
        db,
        "store experiment",
        "INSERT INTO experiments (key, definition, created_at, updated_at, actor) \
         VALUES (?, ?, ?, ?, ?) \
         ON CONFLICT (key) DO UPDATE SET definition = excluded.definition, \
         updated_at = excluded.updated_at, actor = excluded.actor",
        &[
            text(key),
            SqlValue::Text(def.to_json().to_string()),
            SqlValue::Integer(now_ms),
            SqlValue::Integer(now_ms),
            text(actor),
        ],
    )?;
    Ok(!existed)
}

fn experiment_row(row: &[SqlValue]) -> Result<StoredExperiment, StoreError> {
    let key = text_at(row, 0)?;
    let doc: Value = serde_json::from_str(&text_at(row, 1)?)
        .map_err(|e| StoreError::Corrupt(format!("{key}: definition is not JSON: {e}")))?;
    // Stored definitions always carry start_ms, so the clock is not used.
    let definition = definition::parse(&doc, 0)
        .map_err(|e| StoreError::Corrupt(format!("{key}: stored definition: {e}")))?;
    Ok(StoredExperiment {
        key,
        definition,
        created_at: int_at(row, 2)?,
        updated_at: int_at(row, 3)?,
        actor: text_at(row, 4)?,
    })
}

const COLUMNS: &str = "key, definition, created_at, updated_at, actor";

/// One experiment.
pub fn get(
    db: &mut (impl SqlExecutor + ?Sized),
    key: &str,
) -> Result<Option<StoredExperiment>, StoreError> {
    let rows = run(
        db,
        "read experiment",
        &format!("SELECT {COLUMNS} FROM experiments WHERE key = ?"),
        &[text(key)],
    )?;
    rows.first().map(|r| experiment_row(r)).transpose()
}

/// Every experiment, by key.
pub fn list(db: &mut (impl SqlExecutor + ?Sized)) -> Result<Vec<StoredExperiment>, StoreError> {
    run(
        db,
        "list experiments",
        &format!("SELECT {COLUMNS} FROM experiments ORDER BY key"),
        &[],
    )?
    .iter()
    .map(|r| experiment_row(r))
    .collect()
}

/// Deletes an experiment (its events stay: they belong to the flag, and
/// other experiments on the flag may use them). Returns whether it existed.
pub fn delete(db: &mut (impl SqlExecutor + ?Sized), key: &str) -> Result<bool, StoreError> {
    let existed = get(db, key)?.is_some();
    run(
        db,
        "delete experiment",
        "DELETE FROM experiments WHERE key = ?",
        &[text(key)],
    )?;
    Ok(existed)
}

/// Stores one request's events all or none, in one `BEGIN IMMEDIATE`
/// transaction (`POST /v1/events`).
pub fn record_events(db: &mut impl SqlExecutor, events: &[EventRecord]) -> Result<(), StoreError> {
    in_transaction(db, |tx| insert_events(tx, events))
}

/// Inserts events. Call inside a transaction so a request's events are
/// stored all or none ([`record_events`] does).
pub fn insert_events(
    db: &mut (impl SqlExecutor + ?Sized),
    events: &[EventRecord],
) -> Result<(), StoreError> {
    for e in events {
        run(
            db,
            "insert event",
            "INSERT INTO events (at, key_id, targeting_key, flag_key, variant, name, value) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
            &[
                SqlValue::Integer(e.at),
                text(&e.key_id),
                text(&e.targeting_key),
                text(&e.flag),
                text(&e.variant),
                text(&e.name),
                e.value.map_or(SqlValue::Null, SqlValue::Real),
            ],
        )?;
    }
    Ok(())
}

/// SQL for gateway metrics: `(variant, n, sum, sum_sq)` or, for success,
/// `(variant, n, successes)`, over requests since `?`.
fn gateway_sql(kind: &MetricKind) -> Option<&'static str> {
    // Squares are summed as floats: on PostgreSQL a BIGINT square overflows
    // (and fails the read) once one request costs more than about $3,000.
    Some(match kind {
        MetricKind::Quality => {
            "SELECT variant, COUNT(quality), TOTAL(quality), TOTAL(quality * quality) \
             FROM requests WHERE ts >= ? AND quality IS NOT NULL GROUP BY variant"
        }
        MetricKind::LatencyMs => {
            "SELECT variant, COUNT(*), TOTAL(latency_ms), \
             TOTAL(CAST(latency_ms AS REAL) * latency_ms) \
             FROM requests WHERE ts >= ? GROUP BY variant"
        }
        MetricKind::Cost => {
            "SELECT variant, COUNT(*), TOTAL(cost_micros), \
             TOTAL(CAST(cost_micros AS REAL) * cost_micros) \
             FROM requests WHERE ts >= ? AND cost_unknown = 0 AND cost_micros IS NOT NULL \
             GROUP BY variant"
        }
        // The same error rule as the telemetry (`offline` and `stream_aborted`).
        MetricKind::Success => {
            "SELECT variant, COUNT(*), \
             SUM(CASE WHEN outcome IN ('offline', 'stream_aborted') THEN 0 ELSE 1 END) \
             FROM requests WHERE ts >= ? GROUP BY variant"
        }
        MetricKind::Feedback => FEEDBACK_SQL,
        MetricKind::Conversion { .. } | MetricKind::Mean { .. } => return None,
    })
}

/// Mean normalized feedback (0–1) per variant since `?`: `(variant, n, sum,
/// sum_sq)`. The `feedback` table carries the request's variant (migration 12).
const FEEDBACK_SQL: &str = "SELECT variant, COUNT(score), TOTAL(score), TOTAL(score * score) \
     FROM feedback WHERE ts >= ? GROUP BY variant";

/// Collects the per-variant sufficient statistics of every metric of `def`.
/// Variants outside the definition are ignored.
pub fn collect(
    db: &mut (impl SqlExecutor + ?Sized),
    def: &Definition,
) -> Result<ExperimentData, StoreError> {
    let mut data = ExperimentData::new();
    for v in &def.variants {
        data.insert(v.name.clone(), VariantData::default());
    }
    let start = SqlValue::Integer(def.start_ms);
    let flag = text(&def.flag);

    let units_rows = if def.units_from_events() {
        run(
            db,
            "count units",
            "SELECT variant, COUNT(DISTINCT targeting_key) FROM events \
             WHERE flag_key = ? AND at >= ? GROUP BY variant",
            &[flag.clone(), start.clone()],
        )?
    } else {
        run(
            db,
            "count requests",
            "SELECT variant, COUNT(*) FROM requests WHERE ts >= ? GROUP BY variant",
            std::slice::from_ref(&start),
        )?
    };
    for row in &units_rows {
        if let Some(d) = data.get_mut(&text_at(row, 0)?) {
            d.units = count_at(row, 1)?;
        }
    }
    // Event units are the trials of conversion metrics; keep them apart from
    // `units`, which may come from requests.
    let event_units: Vec<(String, u64)> = if def.units_from_events() {
        data.iter().map(|(k, v)| (k.clone(), v.units)).collect()
    } else {
        Vec::new()
    };

    for metric in def.metrics() {
        match &metric.kind {
            MetricKind::Conversion { event } => {
                for (variant, n) in &event_units {
                    if let Some(d) = data.get_mut(variant) {
                        d.metrics.insert(
                            metric.name.clone(),
                            MetricData::Proportion(ProportionSample {
                                n: *n,
                                successes: 0,
                            }),
                        );
                    }
                }
                let rows = run(
                    db,
                    "count conversions",
                    "SELECT variant, COUNT(DISTINCT targeting_key) FROM events \
                     WHERE flag_key = ? AND name = ? AND at >= ? GROUP BY variant",
                    &[flag.clone(), text(event), start.clone()],
                )?;
                for row in &rows {
                    if let Some(d) = data.get_mut(&text_at(row, 0)?)
                        && let Some(MetricData::Proportion(p)) = d.metrics.get_mut(&metric.name)
                    {
                        p.successes = count_at(row, 1)?;
                    }
                }
            }
            MetricKind::Mean { event } => {
                let rows = run(
                    db,
                    "sum event values",
                    "SELECT variant, COUNT(value), TOTAL(value), TOTAL(value * value) FROM events \
                     WHERE flag_key = ? AND name = ? AND at >= ? AND value IS NOT NULL \
                     GROUP BY variant",
                    &[flag.clone(), text(event), start.clone()],
                )?;
                insert_means(&mut data, &metric.name, &rows)?;
            }
            MetricKind::Success => {
                let sql = gateway_sql(&metric.kind).unwrap_or_default();
                let rows = run(db, "gateway success", sql, std::slice::from_ref(&start))?;
                for row in &rows {
                    if let Some(d) = data.get_mut(&text_at(row, 0)?) {
                        d.metrics.insert(
                            metric.name.clone(),
                            MetricData::Proportion(ProportionSample {
                                n: count_at(row, 1)?,
                                successes: count_at(row, 2)?,
                            }),
                        );
                    }
                }
            }
            kind => {
                let sql = gateway_sql(kind).unwrap_or_default();
                let rows = run(db, "gateway metric", sql, std::slice::from_ref(&start))?;
                insert_means(&mut data, &metric.name, &rows)?;
            }
        }
    }
    // Every report shows each variant's user feedback, declared or not.
    let rows = run(db, "feedback", FEEDBACK_SQL, std::slice::from_ref(&start))?;
    for row in &rows {
        if let Some(d) = data.get_mut(&text_at(row, 0)?) {
            d.feedback = Some(MeanSample {
                n: count_at(row, 1)?,
                sum: real_at(row, 2)?,
                sum_sq: real_at(row, 3)?,
            });
        }
    }
    Ok(data)
}

fn insert_means(
    data: &mut ExperimentData,
    metric: &str,
    rows: &[Vec<SqlValue>],
) -> Result<(), StoreError> {
    for row in rows {
        if let Some(d) = data.get_mut(&text_at(row, 0)?) {
            d.metrics.insert(
                metric.to_owned(),
                MetricData::Mean(MeanSample {
                    n: count_at(row, 1)?,
                    sum: real_at(row, 2)?,
                    sum_sq: real_at(row, 3)?,
                }),
            );
        }
    }
    Ok(())
}
